// keel/raft/wire.h — a Raft message as a frame on the peer port (wire/schemas/raft.fbs,
// frame type 200, docs/formats/frame.md).
//
// Library keel_raft_wire (the consensus core, keel_raft, knows nothing of FlatBuffers).
// decode_raft_message is what stands between the network and node::step: everything a
// peer sends is checked here first, and a message that fails a check never reaches Raft.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "keel/raft/message.h"
#include "keel/status.h"

namespace keel::raft {

// The RaftMessage FlatBuffer (the frame's payload) for `m` in cluster `cluster_id`.
std::string encode_raft_message(const message& m, std::uint64_t cluster_id);

// Reads a RaftMessage payload. Errors (errc::invalid_argument unless said), each naming
// what was wrong:
//   - errc::corruption: the bytes do not verify as a RaftMessage (FlatBuffers verifier);
//   - another cluster: cluster_id != expected_cluster_id;
//   - an unknown message or entry type;
//   - addressing: from 0, to not `self`, or from == to;
//   - append entries that are not consecutive from index + 1, or whose term is above the
//     message's term (a forged term: no leader sends entries from a later term);
//   - a log_term above term, or a snapshot on a message that is not a snapshot (and a
//     snapshot message without one).
result<message> decode_raft_message(const std::uint8_t* data, std::size_t size, std::uint64_t expected_cluster_id,
                                    node_id self);

// For a member joining a cluster whose id it does not know yet: the cluster id of a
// RaftMessage payload that verifies and is addressed to `self` (nullopt otherwise), and
// its sender. The message itself must still pass decode_raft_message.
std::optional<std::uint64_t> peek_raft_cluster_id(const std::uint8_t* data, std::size_t size, node_id self);
node_id peek_raft_sender(const std::uint8_t* data, std::size_t size);

// A follower's request that the leader propose `data` for it (frame type 201), and the
// leader's answer (202). The kv module gives `data` its meaning; Raft does not look in it.
struct proposal {
  node_id from = no_node;
  std::string data;
};
struct proposal_result {
  int code = 0;  // 0: proposed at (index, term); else etcd's gRPC code with `message`
  std::string message;
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  std::int64_t ttl = 0;
  std::string answer;  // a relayed v2 write: the answer for the follower's client
};
// One piece of a snapshot file (frame type 203).
struct snapshot_chunk {
  node_id from = no_node;
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  std::uint64_t offset = 0;
  std::uint64_t total = 0;
  std::string data;
  std::string members;  // first piece only
};
inline constexpr std::size_t snapshot_chunk_bytes_max = 1u << 20;
std::string encode_snapshot_chunk(const snapshot_chunk& c, std::uint64_t cluster_id);
// Errors as decode_proposal, and invalid_argument when the piece does not fit in total
// or carries more than snapshot_chunk_bytes_max.
result<snapshot_chunk> decode_snapshot_chunk(const std::uint8_t* data, std::size_t size,
                                             std::uint64_t expected_cluster_id);

std::string encode_proposal(const proposal& p, std::uint64_t cluster_id);
std::string encode_proposal_result(const proposal_result& r, std::uint64_t cluster_id);
// Errors as decode_raft_message: corruption (does not verify), another cluster, from 0.
result<proposal> decode_proposal(const std::uint8_t* data, std::size_t size, std::uint64_t expected_cluster_id);
result<proposal_result> decode_proposal_result(const std::uint8_t* data, std::size_t size,
                                               std::uint64_t expected_cluster_id);

}  // namespace keel::raft
