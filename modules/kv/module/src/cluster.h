// cluster.h — the kv engine replicated by Raft: the owner shard's Raft group, its log in
// the kv WAL, and the peer port. Used only by core.cc (and module.cc to configure it).
//
// Cluster mode is chosen at the first start: --initial-cluster names more than one
// member (or --discovery found several). The data dir then holds member.json, and every
// later start rejoins from it and ignores the bootstrap flags (as etcd). A data dir made
// by a single node stays single: its log is written directly, without Raft (core.cc).
//
// How a write moves (README "Cluster mode"):
//   - on the leader: the owner primitive logs the request with cluster_log(), which
//     proposes it to Raft, and applies it at once (speculatively, in log order: the leader
//     accepts proposals only once everything in its log is applied). owner_commit() waits
//     until Raft commits it; only then are its events published and the client answered.
//     A leader that steps down with applied but uncommitted entries rebuilds its state
//     from the committed log (rebuild_state) before it applies anything else.
//   - on a follower: the primitive runs in capture mode (log_entry keeps the entry, the
//     store is not touched); cluster_forward() sends the entry to the leader over the peer
//     port, the leader proposes it wrapped with (origin, request id), and the follower
//     answers its client with the outcome of applying that entry itself.
//   - a v2 write on a follower: cluster_relay() sends the parsed request (v2.h, "relaying
//     writes"); the leader runs it as its own and returns its answer with its last
//     entry's (index, term); the follower answers once it has applied that entry.
//   - every member applies committed entries in order (apply_entry_data) and publishes
//     their events to its own watchers.
//   - linearizable reads: cluster_read_barrier() (Raft's ReadIndex, batched), then the
//     read is served at the newest published (committed) revision.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "keel/reactor/task.h"
#include "keel/status.h"

namespace keel {
class module_context;
class shard;
}  // namespace keel

namespace keel::kv_module {

struct apply_outcome;

struct cluster_member {
  std::uint64_t id = 0;
  std::string name;
  std::vector<std::string> peer_urls;
};

struct cluster_options {
  std::string data_dir;            // member.json lives here
  std::string name;                // this member
  std::vector<cluster_member> members;  // the bootstrap membership (ignored on a restart)
  std::vector<std::string> advertise_peer_urls;    // this member's, for a single node's view
  std::vector<std::string> advertise_client_urls;  // this member's; published to the others
  std::string token;               // --initial-cluster-token
  bool join_existing = false;      // --initial-cluster-state existing: join, do not bootstrap
  std::uint64_t cluster_id = 0;    // of the bootstrap membership (etcd's computation)
  std::vector<std::string> listen_peer_urls;
  unsigned heartbeat_ms = 100;
  unsigned election_ms = 1000;
};

// True when this start is a cluster member: the data dir has member.json, or the
// bootstrap membership has more than one member. Recovery then leaves the WAL's entries
// to Raft instead of replaying them.
bool cluster_mode_wanted(const cluster_options& options);
// Main thread, after core_start recovered the snapshot. Decides the mode: false (single
// node) when this data dir has no member.json and `options` has one member. Otherwise
// reads or writes member.json, rebuilds Raft's state from the WAL records kept by
// recovery (g->recovered) and sets g->cluster. Errors name the file or the flag.
result<bool> cluster_start(module_context* context, const cluster_options& options);
// Owner shard start / stop: the peer listener, the ticker and the ready loop.
void cluster_on_owner_start(shard& s);
void cluster_on_owner_stop();

// ---- used by core.cc on the owner shard (REQUIRES: g->cluster) ---------------------------

// log_entry in cluster mode: proposes `data` (wrapped when a forwarded write is being
// logged). errc::unavailable "etcdserver: not leader" when this member cannot propose.
status cluster_log(std::string data);
// True on the leader once everything in its log is applied (proposals are accepted).
bool cluster_can_propose();
// Waits (a little) until this member can propose, or returns false.
task<bool> cluster_wait_can_propose();
bool cluster_is_leader();
// The Raft term now.
std::uint64_t cluster_term();
// Waits until the last entry logged so far is committed and its events published.
task<status> cluster_commit();
// Linearizable read barrier: ok once this member has applied everything committed
// before the call (Raft ReadIndex, confirmed by a quorum). Times out with unavailable.
task<status> cluster_read_barrier();
// A follower's write: `entry` (WAL entry encoding) goes to the leader; the outcome is
// what applying it gave here.
task<apply_outcome> cluster_forward(std::string entry);
// Follower: has the leader run a v2 write (v2.h, "relaying writes"; `request` from
// encode_relayed_request) and returns the leader's answer once this member has applied
// the leader's log through the entry the result names, and holds that very entry. Retries
// a leader that was not leading any more. Errors (unavailable): "etcdserver: leader
// changed" when the entry was replaced or the leader lost its leadership while it answered;
// "etcdserver: no leader" when none was known in time; "etcdserver: request timed out"
// after request_timeout, or when the leader could not confirm its leadership for a
// refusal in time; the leader's own refusal ("etcdserver: not leader" once the deadline
// passed, "... too large to relay").
task<result<std::string>> cluster_relay(std::string request);
// Leader: a ReadIndex round (cluster_read_barrier), then whether this member still leads
// in `term`: so a read of its own state made before the call was of the only leader's
// state. unavailable "etcdserver: leader changed" otherwise.
task<status> cluster_confirm_leading(std::uint64_t term);
// A follower's lease keep-alive, renewed by the leader: the TTL or lease_not_found.
task<result<std::int64_t>> cluster_forward_keep_alive(std::int64_t lease_id);
// Called by apply_entry_data's caller for a forwarded entry whose origin is this member.
void cluster_deliver_outcome(std::uint64_t request_id, apply_outcome outcome);

// core.cc's finish_snapshot: the snapshot at `index` is durable; Raft may drop its log
// up to `previous` (the snapshot before it, so lagging members still get entries).
void cluster_snapshot_done(std::uint64_t index, std::uint64_t previous);

struct cluster_status {
  std::uint64_t member_id = 0;
  std::uint64_t cluster_id = 0;
  std::uint64_t leader = 0;
  std::uint64_t term = 0;
  std::uint64_t raft_index = 0;    // last entry in the log
  std::uint64_t applied_index = 0; // committed and applied
  std::uint64_t commit_index = 0;
  bool learner = false;            // this member is a learner (not yet promoted)
};
cluster_status cluster_status_now();
// Owner: whether this member is a learner. etcd 3.4's learner serves only serializable
// reads and the member status; everything else is "rpc not supported for learner".
bool cluster_self_is_learner();
// How long a client request may wait for its entry (etcd's 5 s + 2 election timeouts).
// Any shard: fixed before the shards start.
std::chrono::milliseconds cluster_request_timeout();
// The leader's apply of the entry it just logged changed the store (core.cc collect()).
void cluster_note_applied();
// Leader only: hands leadership to `target` (a voting member) and waits until it leads,
// as etcd's MoveLeader. errc::unavailable "etcdserver: not leader" elsewhere,
// errc::not_found for an unknown member, timed out after an election timeout x 2.
task<status> cluster_move_leader(std::uint64_t target);

struct cluster_member_info {
  std::uint64_t id = 0;
  std::string name;  // "" until the member published its attributes (etcd: "unstarted")
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;  // published by the member through the log
  bool learner = false;
};
std::vector<cluster_member_info> cluster_members();

// Membership changes (etcd's MemberAdd / MemberRemove / MemberPromote), one at a time,
// through Raft conf-change entries whose context carries the peer URLs. Any member may be
// asked: a follower forwards the change to the leader and answers once it applied it.
// A new member's id is etcd's computation from its peer URLs and the cluster token, so
// the member started with --initial-cluster-state existing and the same URLs and token
// knows its own id. Errors (etcd's messages): unavailable "etcdserver: not leader" /
// "etcdserver: unhealthy cluster"; already_exists "etcdserver: peerURL exists" or
// "etcdserver: member ID already exist"; not_found "etcdserver: member not found";
// failed_precondition as unavailable "etcdserver: can only promote a learner member which
// is in sync with leader".
result<cluster_member_info> cluster_plan_add(const std::vector<std::string>& peer_urls, bool learner);
task<status> cluster_change_membership(std::uint8_t type, std::uint64_t id, std::vector<std::string> peer_urls);

// Entry-data of a member's attributes (etcd publishes them through Raft the same way once
// a member starts): u8 kind 0x7c | u64 id | u32 n | name | u32 count | (u32 n | url)*.
inline constexpr std::uint8_t entry_kind_member_attributes = 0x7c;
// Entry-data of a member's new peer URLs (etcd's MemberUpdate; Raft's membership is
// unchanged): u8 kind 0x7a | u64 id | u32 count | (u32 n | url)*.
inline constexpr std::uint8_t entry_kind_member_update = 0x7a;
task<status> cluster_update_member(std::uint64_t id, std::vector<std::string> peer_urls);

// Entry-data envelope of a forwarded write: u8 kind 0x7e | u64 origin | u64 request id |
// the request's own entry bytes.
inline constexpr std::uint8_t entry_kind_forwarded = 0x7e;
std::string wrap_forwarded(std::uint64_t origin, std::uint64_t request_id, std::string_view inner);
struct forwarded_view {
  std::uint64_t origin = 0;
  std::uint64_t request_id = 0;
  std::string_view inner;
};
std::optional<forwarded_view> unwrap_forwarded(std::string_view data);

}  // namespace keel::kv_module
