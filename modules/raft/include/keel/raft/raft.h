// keel/raft/raft.h — the Raft consensus core: a deterministic, I/O-free state machine.
//
// What it is for: one member of one Raft group (Ongaro & Ousterhout 2014, and the thesis
// "Consensus: Bridging Theory and Practice" 2014), in the shape of etcd's raft library. It
// reads no clock (time comes in as tick()), does no I/O (it hands the driver what to
// persist, send and apply in a ready and waits for advance()), starts no thread and draws
// randomness only from the seed in its config. The same calls give the same outputs.
//
// Shard model: a node belongs to the one shard that owns the group (DESIGN.md, "How data
// moves"); it is not thread-safe.
//
// Ownership: the node keeps its log in memory from its last snapshot on (the driver's WAL
// is written from ready().entries and read back only at a restart, into config.initial_*).
// Memory is bounded by how often the application compacts (node::compact).
//
// ---- The driver loop (the Ready / advance contract) -------------------------------------
//
//   inputs at any time:  tick(), step(m), propose(..), propose_conf_change(..),
//                        read_index(..), transfer_leadership(..), report_*(..)
//   when has_ready():    rd = ready();
//     1. in parallel, start sending rd.messages and persisting, in this order,
//        rd.snapshot, rd.entries, rd.hard_state (entries before the hard state, or one
//        atomic batch: a persisted commit must never exceed the persisted log);
//     2. once all of it is durable (fdatasync done), send rd.messages_after_persist;
//     3. restore the state machine from rd.snapshot if not empty, then apply
//        rd.committed_entries in order (a conf_change entry by calling apply_conf_change);
//     4. serve rd.read_states (already covered by what step 3 applied);
//     5. advance().
//   ready() may not be called again before advance() (unless config.max_outstanding_readies
//   allows several: then each advance() concerns the oldest ready not yet advanced, and
//   the steps above run per ready, step 2 and 5 in the order the readies were handed out;
//   the persists must also become durable in that order — a promise of ready N+1 may
//   cover entries of ready N — as an fdatasync of one log file does).
//   Inputs may arrive between ready() and advance(); what they produce goes into the next
//   ready.
//
// ---- The persistence rule (exactly) ------------------------------------------------------
//
//   * Persisting rd.entries whose first index is i replaces every persisted entry at i and
//     after (a follower's log may be truncated by a new leader).
//   * rd.messages depend on nothing of this node that is not yet durable; they may be sent
//     before, during or after the persist of the same ready. They are: append, heartbeat,
//     snapshot, timeout_now, vote / pre_vote requests, read_index (forwarded),
//     read_index_response and heartbeat_response. A candidate may ask for votes before its
//     new term and self-vote are durable, and a leader may send its new entries to
//     followers before its own fdatasync (thesis §10.2.1), because neither counts its own
//     vote or its own copy of the entries until advance() says they are durable.
//   * rd.messages_after_persist are promises about durable state: append_response ("I
//     hold these entries"), vote_response ("I voted for you in this term"),
//     pre_vote_response. They may be sent only after rd's snapshot, entries and hard state
//     are durable. Sending one earlier can lose a committed entry or elect two leaders in
//     one term after a crash.
//   * The node's own acknowledgements (the leader's copy of new entries, a candidate's vote
//     for itself) are counted when advance() is called, never before.
//   * Committed entries are handed out only when they are durable on this node too.
//
// ---- Errors ---------------------------------------------------------------------------
//
//   errc::unavailable — propose / propose_conf_change / read_index / transfer_leadership
//     on a node that is not the leader ("not leader; leader is 3" or "...unknown"; the
//     hint is also leader()), during a leadership transfer, while a conf change is still
//     unapplied, or with too many uncommitted entries.
//   errc::invalid_argument — step() with a malformed message, a conf_change that does not
//     change the membership or would leave it without a voter, compact() out of range.
//   Programmer errors (ready() twice without advance(), a config that does not validate)
//   stop the process through KEEL_ASSERT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keel/raft/message.h"
#include "keel/raft/types.h"
#include "keel/status.h"

namespace keel::raft {

namespace detail {
class consensus;  // src/raft.h
}

struct config {
  node_id id = no_node;  // REQUIRES: not 0

  // Bootstrap membership. Used only on a first start (no initial_* state): the first
  // ready persists one conf_change entry per member (voters then learners, ascending, at
  // term 1, committed), so a member that joins later learns the whole membership from the
  // log, as etcd's Bootstrap. Every bootstrap member must be given the same lists. Empty on
  // a member that joins an existing group: it waits for a leader to contact it.
  // Ignored on a restart: the membership comes from initial_snapshot and the committed
  // conf_change entries, which are handed out (again) to be applied.
  std::vector<node_id> voters;
  std::vector<node_id> learners;

  // Ticks without hearing from a leader before a follower campaigns; randomized per
  // election in [election_tick, 2 * election_tick). REQUIRES: > heartbeat_tick.
  int election_tick = 10;
  int heartbeat_tick = 1;  // a leader's heartbeat period, in ticks. REQUIRES: > 0

  // Flow control: append messages in flight to one follower in replicate state, and the
  // bytes of entry data per append message (at least one entry is always sent).
  std::size_t max_inflight_msgs = 256;
  std::uint64_t max_size_per_msg = 1024 * 1024;
  // Bytes of committed entries per ready (at least one entry).
  std::uint64_t max_committed_size_per_ready = 64 * 1024 * 1024;
  // A leader refuses proposals while this many entries are not yet committed.
  std::uint64_t max_uncommitted_entries = 65536;
  // Readies the driver may hold at once (handed out by ready(), not yet advance()d). With
  // more than 1 the driver persists ready N+1 (and sends its messages) while ready N's
  // fdatasync runs, and advances them in the order they were handed out; a ready carrying
  // a snapshot is never pipelined (none is handed out while another is outstanding, and
  // none after it until it is advanced). REQUIRES: >= 1.
  std::size_t max_outstanding_readies = 1;

  // Pre-vote (thesis §9.6): a would-be candidate first asks whether it could win, without
  // raising its term, so a node rejoining from a partition does not depose a working leader.
  bool pre_vote = false;
  // Check-quorum: a leader that has not heard from a quorum within an election timeout
  // steps down, and a follower that heard from a leader within one ignores vote requests
  // (the leader lease that makes pre_vote effective against up-to-date rejoiners).
  bool check_quorum = false;

  std::uint64_t seed = 1;  // the only randomness: election timeouts

  // A restart: what the driver persisted, exactly (raft.h "The persistence rule").
  hard_state initial_hard_state;
  raft::snapshot initial_snapshot;     // the latest durable snapshot, or empty
  std::vector<entry> initial_entries;  // durable entries after it, consecutive
};

// ok, or invalid_argument naming the first bad field (id 0, ticks, an id both voter and
// learner, a commit beyond the log, entries not consecutive after the snapshot...).
status validate(const config& cfg);

struct ready {
  std::optional<soft_state> soft;  // when leader or role changed since the last ready
  std::optional<hard_state> hard;  // to persist, when changed since the last ready
  std::vector<entry> entries;      // to persist; replace the persisted log from .front().index
  raft::snapshot snapshot;         // to persist and restore (empty: none)
  std::vector<message> messages;   // send now (see the persistence rule)
  std::vector<message> messages_after_persist;  // send once this ready is durable
  std::vector<entry> committed_entries;         // apply in order, after snapshot
  std::vector<read_state> read_states;          // serve after applying committed_entries
  bool must_sync = false;  // entries, or hard state term / vote changed: fdatasync needed
};

enum class progress_state : std::uint8_t {
  probe,      // one append at a time until the follower's match index is found
  replicate,  // pipelined appends, up to max_inflight_msgs in flight
  snapshot,   // a snapshot is on its way; no appends until it is reported
};
const char* progress_state_name(progress_state state) noexcept;

// A leader's view of one member (etcd's tracker.Progress), for status and tests.
struct progress_status {
  std::uint64_t match = 0;  // highest index known durable on the member
  std::uint64_t next = 0;   // next index to send
  progress_state state = progress_state::probe;
  std::uint64_t pending_snapshot = 0;
  std::size_t inflight = 0;  // append messages in flight
  bool recent_active = false;
  bool is_learner = false;
};

class node {
 public:
  // REQUIRES: validate(cfg).is_ok().
  explicit node(config cfg);
  ~node();
  node(node&&) noexcept;
  node& operator=(node&&) noexcept;
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  // ---- inputs ----

  // One unit of logical time: followers count towards an election, leaders towards a
  // heartbeat and a quorum check.
  void tick();
  // A message from a peer. Messages of an older term are mostly ignored; invalid_argument
  // for a malformed one (to != id, from 0 or unknown type for this role).
  status step(const message& m);
  // Appends a normal entry; returns its (index, term). Committed only if it reaches a
  // majority while this node is leader: the caller learns that from committed_entries.
  result<entry_id> propose(std::string data);
  // One single-server change (types.h). Refused while an earlier one is unapplied, when
  // it changes nothing, removes the last voter, or promotes a learner that is not caught
  // up (match < 90% of the leader's commit index, as etcd's server checks).
  result<entry_id> propose_conf_change(const conf_change& change);
  // A linearizable read (thesis §6.4): on the leader, once it has committed an entry of
  // its term, records its commit index and confirms leadership with a heartbeat round
  // carrying context; a follower forwards it to its leader. ready().read_states releases
  // {index, context} once the state machine has applied index. context must be unique
  // among pending reads. A read can be lost with its leader: the caller retries on timeout.
  status read_index(std::string context);
  // Leader only: bring `to` up to date, then tell it to campaign at once (timeout_now);
  // abandoned after an election timeout. Proposals are refused meanwhile.
  status transfer_leadership(node_id to);
  // Campaign now (skips the election timer). For tests and for a single member's start.
  void campaign();
  // The transport could not reach `to`: a replicating follower goes back to probing.
  void report_unreachable(node_id to);
  // The snapshot sent to `to` was delivered (succeeded) or lost.
  void report_snapshot(node_id to, bool succeeded);

  // ---- the application's side ----

  // Apply a committed conf_change entry (call while applying it); returns the membership.
  conf_state apply_conf_change(const conf_change& change);
  // The application has saved a snapshot of its state at `index` (REQUIRES: applied by
  // the state machine, index > the current snapshot's). Raft keeps it (to send to
  // followers that fell behind) and drops the log up to index. invalid_argument if the
  // index is out of range.
  status compact(std::uint64_t index, conf_state conf, std::string data);

  // ---- output ----

  bool has_ready() const;
  raft::ready ready();  // REQUIRES: no ready outstanding
  void advance();       // REQUIRES: a ready outstanding, persisted and applied

  // ---- introspection (status pages, the invariant checker, tests) ----

  node_id id() const;
  std::uint64_t term() const;
  node_id vote() const;
  raft::role role() const;
  node_id leader() const;
  std::uint64_t commit_index() const;
  std::uint64_t applied_index() const;  // as of the last advance()
  // The last committed entry handed out in a ready (applied by the driver, or being):
  // ahead of applied_index() while readies are outstanding.
  std::uint64_t handed_committed_index() const;
  std::uint64_t first_index() const;    // first entry in memory (snapshot index + 1)
  std::uint64_t last_index() const;
  std::uint64_t persisted_index() const;                            // last entry known durable
  std::optional<std::uint64_t> term_at(std::uint64_t index) const;  // snapshot index too
  const entry* entry_at(std::uint64_t index) const;                 // nullptr outside [first, last]
  const raft::snapshot& last_snapshot() const;
  const conf_state& membership() const;
  node_id lead_transferee() const;
  std::optional<progress_status> progress(node_id member) const;  // leader only

 private:
  std::unique_ptr<detail::consensus> _raft;
};

}  // namespace keel::raft
