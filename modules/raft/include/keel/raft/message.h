// keel/raft/message.h — the one message struct Raft peers exchange.
//
// A plain, copyable struct (the lead maps it to FlatBuffers; every field below is on the
// wire). Which fields a type uses:
//
//   type                from → to   fields used
//   append              leader → f  term, index (of the entry before entries), log_term (its
//                                   term), entries, commit
//   append_response     f → leader  term, index (last index now matching; or, when reject,
//                                   the rejected index), reject, reject_hint + log_term
//                                   (when reject: the follower's guess of the highest
//                                   (index, term) where the logs may match — §"fast
//                                   back-tracking" in README.md)
//   vote / pre_vote     cand → all  term (pre_vote: the term it would campaign at), index +
//                                   log_term (the candidate's last entry), context
//                                   ("transfer" when forced by a leadership transfer)
//   vote_response /     any → cand  term, reject
//     pre_vote_response
//   heartbeat           leader → f  term, commit (min(follower's match, leader's commit)),
//                                   context (a pending read_index context, or empty)
//   heartbeat_response  f → leader  term, context (echoed)
//   snapshot            leader → f  term, snapshot
//   timeout_now         leader → f  term (campaign now, skipping pre-vote and leases)
//   read_index          f → leader  term, context (a follower's read_index forwarded)
//   read_index_response leader → f  term, index (the read index), context
//
// A message is valid input to node::step only when to is the node's id, from is not 0,
// type is one of these and, for append, the entries are consecutive from index + 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "keel/raft/types.h"

namespace keel::raft {

enum class message_type : std::uint8_t {
  append,
  append_response,
  vote,
  vote_response,
  pre_vote,
  pre_vote_response,
  heartbeat,
  heartbeat_response,
  snapshot,
  timeout_now,
  read_index,
  read_index_response,
};
inline constexpr int message_type_count = 12;
const char* message_type_name(message_type type) noexcept;

// The context of a vote / pre_vote sent because of a leadership transfer: receivers grant
// it even inside a leader lease (check_quorum), as etcd's campaignTransfer.
inline constexpr std::string_view transfer_context = "transfer";

struct message {
  message_type type = message_type::append;
  node_id from = no_node;
  node_id to = no_node;
  std::uint64_t term = 0;
  std::uint64_t log_term = 0;
  std::uint64_t index = 0;
  std::vector<entry> entries;
  std::uint64_t commit = 0;
  bool reject = false;
  std::uint64_t reject_hint = 0;
  raft::snapshot snapshot;  // empty unless type == snapshot
  std::string context;

  bool operator==(const message&) const = default;
};

// "append 1→2 term 3 index 7 log_term 2 entries 4 commit 6" — for logs and test failures.
std::string describe(const message& m);

}  // namespace keel::raft
