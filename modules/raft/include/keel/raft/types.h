// keel/raft/types.h — the values Raft hands to and takes from its driver.
//
// Plain, copyable structs: log entries, the durable hard state, the volatile soft state, a
// membership (conf_state), a single-server membership change (conf_change) and snapshots.
// The driver persists hard_state, entries and snapshots (raft.h says when); nothing here
// does I/O. The lead maps these to FlatBuffers for the wire and the WAL; until then
// conf_change has a small byte encoding of its own (encode_conf_change below) because it
// travels inside an entry's data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel::raft {

// A member's id. 0 means "none" (no leader, no vote) and is never a member.
using node_id = std::uint64_t;
inline constexpr node_id no_node = 0;

enum class entry_type : std::uint8_t {
  normal,       // data is the application's command (empty: a new leader's no-op)
  conf_change,  // data is encode_conf_change(...); applied with node::apply_conf_change
};

struct entry {
  std::uint64_t term = 0;
  std::uint64_t index = 0;
  entry_type type = entry_type::normal;
  std::string data;

  bool operator==(const entry&) const = default;
};

// (index, term) names an entry uniquely (the Log Matching property, §5.3).
struct entry_id {
  std::uint64_t index = 0;
  std::uint64_t term = 0;

  bool operator==(const entry_id&) const = default;
};

// What must be durable before the messages that depend on it are sent (raft.h, "The
// persistence rule"). commit is persisted so a restart need not re-learn it; losing it is
// safe, keeping a stale one is safe, a commit above the persisted log is not (write the
// entries first, or both in one atomic batch).
struct hard_state {
  std::uint64_t term = 0;
  node_id vote = no_node;
  std::uint64_t commit = 0;

  bool operator==(const hard_state&) const = default;
  bool empty() const { return term == 0 && vote == no_node && commit == 0; }
};

enum class role : std::uint8_t { follower, pre_candidate, candidate, leader };
const char* role_name(role r) noexcept;

// Volatile; handed out so the driver can route proposals and report status.
struct soft_state {
  node_id leader = no_node;
  raft::role role = role::follower;

  bool operator==(const soft_state&) const = default;
};

// A membership: voters decide elections and commitment, learners only receive the log.
// Both sorted ascending, disjoint.
struct conf_state {
  std::vector<node_id> voters;
  std::vector<node_id> learners;

  bool operator==(const conf_state&) const = default;
  bool is_voter(node_id id) const;
  bool is_learner(node_id id) const;
  bool contains(node_id id) const { return is_voter(id) || is_learner(id); }
};

enum class conf_change_type : std::uint8_t {
  add_voter,    // a new voter, or promote a learner
  add_learner,  // a new learner, or demote a voter
  remove_node,
};
const char* conf_change_type_name(conf_change_type type) noexcept;

// One server at a time (Raft thesis §4.1): any two majorities of the old and the new
// membership overlap, so no joint consensus is needed. Applied when its entry is applied
// (node::apply_conf_change), as etcd does.
struct conf_change {
  conf_change_type type = conf_change_type::add_voter;
  node_id node = no_node;
  std::string context;  // opaque to Raft (e.g. the new member's peer URLs)

  bool operator==(const conf_change&) const = default;
};

// Entry-data encoding of a conf_change: u8 type, u64 node (little-endian), then context.
std::string encode_conf_change(const conf_change& change);
// errc::corruption if the bytes are not an encode_conf_change output.
result<conf_change> decode_conf_change(std::string_view bytes);

struct snapshot_metadata {
  std::uint64_t index = 0;  // the last entry the snapshot covers
  std::uint64_t term = 0;   // that entry's term
  conf_state conf;          // the membership as of index

  bool operator==(const snapshot_metadata&) const = default;
};

// The application's state as of metadata.index. Raft never looks into data; a driver that
// streams snapshots out of band may leave it empty in messages and attach it on send.
struct snapshot {
  snapshot_metadata metadata;
  std::string data;

  bool operator==(const snapshot&) const = default;
  bool empty() const { return metadata.index == 0; }
};

// A linearizable read is safe to serve once the state machine has applied index.
// Handed out by ready() only when that is already so (see raft.h, read_index).
struct read_state {
  std::uint64_t index = 0;
  std::string context;  // the caller's read_index(context)

  bool operator==(const read_state&) const = default;
};

}  // namespace keel::raft
