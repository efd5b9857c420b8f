// raft.h — the Raft state machine (detail::consensus) behind keel::raft::node (the public contract
// is in include/keel/raft/raft.h; this file says how it is built).
//
// Layout of the implementation (reading order):
//   raft.cc        construction, roles (become_*), ticks, step() dispatch, vote requests
//   follower.cc    append / heartbeat / snapshot handling on a follower or candidate
//   leader.cc      proposals, replication (flow control, fast back-tracking), commitment,
//                  ReadIndex, quorum checks, leadership transfer
//   membership.cc  conf changes: proposing, applying, switching progress
//   ready.cc       has_ready / ready / advance: the persistence rule in one place
//
// Outgoing messages are sorted by send() into three queues, which is the persistence rule:
//   _messages                  sendable at once;
//   _messages_after_persist    append/vote/pre-vote responses: promises about durable state;
//   _self_after_persist        this node's own acknowledgements (leader's copy of entries,
//                              candidate's self-vote): stepped at the advance() that covers
//                              them.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "keel/raft/raft.h"
#include "log.h"
#include "progress.h"

namespace keel::raft::detail {

// A small deterministic generator (splitmix64): the same seed gives the same election
// timeouts on every platform, unlike std::uniform_int_distribution.
class prng {
 public:
  explicit prng(std::uint64_t seed) : _state(seed) {}
  std::uint64_t next();
  std::uint64_t below(std::uint64_t bound) { return next() % bound; }

 private:
  std::uint64_t _state;
};

// Pending reads past this many are refused (errc::unavailable).
inline constexpr std::size_t pending_reads_max = 4096;
// A learner is caught up for promotion when its match is at least this share of the
// leader's commit index (percent; etcd server's readyPercent 0.9).
inline constexpr std::uint64_t learner_ready_percent = 90;

class consensus {
 public:
  explicit consensus(config cfg);

  // ---- inputs (raft.cc, leader.cc, membership.cc) ----
  void tick();
  status step(const message& m);
  result<entry_id> propose(std::string data);
  result<entry_id> propose_conf_change(const conf_change& change);
  status read_index(std::string context);
  status transfer_leadership(node_id to);
  void campaign_now();
  void report_unreachable(node_id to);
  void report_snapshot(node_id to, bool succeeded);
  conf_state apply_conf_change(const conf_change& change);
  status compact(std::uint64_t index, conf_state conf, std::string data);

  // ---- output (ready.cc) ----
  bool has_ready() const;
  raft::ready make_ready();
  void advance();

  // ---- introspection ----
  node_id id() const { return _id; }
  std::uint64_t term() const { return _term; }
  node_id vote() const { return _vote; }
  raft::role role() const { return _role; }
  node_id leader() const { return _leader; }
  const raft_log& log() const { return _log; }
  const conf_state& membership() const { return _conf; }
  node_id lead_transferee() const { return _lead_transferee; }
  std::optional<progress_status> progress_of(node_id member) const;

 private:
  enum class campaign_kind : std::uint8_t { pre_election, election, transfer };
  enum class vote_result : std::uint8_t { pending, won, lost };

  // A read waiting for its heartbeat round (thesis §6.4, etcd's readOnly).
  struct pending_read {
    node_id from = no_node;  // who asked: this node or a follower
    std::string context;
    std::uint64_t index = 0;    // the leader's commit index when it was asked
    std::vector<node_id> acks;  // voters that answered a heartbeat carrying context
  };

  // roles (raft.cc)
  void reset(std::uint64_t term);
  void become_follower(std::uint64_t term, node_id leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  hard_state current_hard_state() const { return {_term, _vote, _log.committed()}; }
  soft_state current_soft_state() const { return {_leader, _role}; }

  // time (raft.cc)
  void tick_election();
  void tick_heartbeat();
  void reset_randomized_election_timeout();
  bool promotable() const;

  // elections (raft.cc)
  void hup(campaign_kind kind);
  void campaign(campaign_kind kind);
  vote_result poll(node_id from, bool granted);
  bool has_unapplied_conf_changes() const;
  bool in_leader_lease() const;

  // step (raft.cc)
  static status validate_message(const message& m, node_id self);
  void step_validated(const message& m);
  bool accept_higher_term(const message& m);
  void answer_lower_term(const message& m);
  void handle_vote_request(const message& m);
  void step_follower(const message& m);
  void step_candidate(const message& m);
  void step_leader(const message& m);

  // follower side (follower.cc)
  void handle_append(const message& m);
  void handle_heartbeat(const message& m);
  void handle_snapshot(const message& m);
  bool restore(const snapshot& s);

  // leader side (leader.cc)
  status not_leader() const;
  status refuse_proposals() const;
  entry_id append_as_leader(std::vector<entry> entries);
  void broadcast_append();
  void flush_proposals();
  bool maybe_send_append(node_id to, bool send_if_empty);
  void send_append(node_id to) { maybe_send_append(to, true); }
  bool maybe_send_snapshot(node_id to, progress& pr);
  void broadcast_heartbeat(const std::string& context);
  void send_heartbeat(node_id to, const std::string& context);
  void send_timeout_now(node_id to);
  void handle_append_response(const message& m, progress& pr);
  void handle_append_rejection(const message& m, progress& pr);
  void handle_heartbeat_response(const message& m, progress& pr);
  bool maybe_commit();
  std::uint64_t quorum_match_index() const;
  bool quorum_active() const;
  void check_quorum();
  void abort_leader_transfer() { _lead_transferee = no_node; }
  bool committed_entry_in_current_term() const;
  void handle_read_request(node_id from, std::string context);
  void start_read(node_id from, std::string context);
  void acknowledge_read(node_id from, const std::string& context);
  void answer_read(node_id from, std::string context, std::uint64_t index);
  void release_reads_before_commit();

  // membership (membership.cc)
  status check_conf_change(const conf_change& change) const;
  void switch_membership(conf_state next);
  void rebuild_progress();

  // messages
  message make(message_type type, node_id to) const;
  void send(message m);

  node_id _id;
  config _cfg;  // the limits and switches; initial_* are moved out at construction
  prng _random;

  std::uint64_t _term = 0;
  node_id _vote = no_node;
  node_id _leader = no_node;
  raft::role _role = role::follower;
  raft_log _log;

  conf_state _conf;
  std::map<node_id, progress> _progress;  // leader only: every member, itself included
  std::map<node_id, bool> _votes;         // candidate only: voter -> granted

  int _election_elapsed = 0;  // leader: ticks since the last quorum check
  int _heartbeat_elapsed = 0;
  int _randomized_election_timeout = 0;

  node_id _lead_transferee = no_node;
  std::uint64_t _pending_conf_index = 0;  // a conf change up to here may be unapplied
  bool _proposals_unsent = false;         // new entries to flush to followers at ready()

  std::deque<pending_read> _reads;                 // leader: waiting for heartbeat acks
  std::vector<pending_read> _reads_before_commit;  // leader: waiting for a current-term commit
  std::vector<read_state> _read_states;            // confirmed, waiting to be applied

  std::vector<message> _messages;
  std::vector<message> _messages_after_persist;
  std::vector<message> _self_after_persist;

  // What the outstanding ready handed out (advance() acts on exactly this).
  struct handed_out {
    std::optional<entry_id> last_entry;
    std::uint64_t snapshot_index = 0;
    std::uint64_t applied_to = 0;
    std::vector<message> self_messages;
  };
  std::deque<handed_out> _outstanding;  // oldest first; advance() takes the front
  // The newest entry handed out by an outstanding ready; entries after it (or after the
  // stable index, if it was truncated away since) go in the next ready.
  std::optional<entry_id> _handed_last;
  std::uint64_t unhanded_after() const;
  soft_state _last_soft;
  hard_state _last_hard;
};

}  // namespace keel::raft::detail
