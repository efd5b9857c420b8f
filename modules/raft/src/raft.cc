// raft.cc — construction, roles, ticks, elections and step() dispatch (raft.h).
// Section numbers are the Raft paper's (§) and the thesis's (thesis §).
#include "raft.h"

#include <algorithm>
#include <utility>

#include "keel/assert.h"

namespace keel::raft::detail {

std::uint64_t prng::next() {
  std::uint64_t z = (_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

namespace {

bool is_restart(const config& cfg) {
  return !cfg.initial_hard_state.empty() || !cfg.initial_snapshot.empty() ||
         !cfg.initial_entries.empty();
}

std::vector<node_id> sorted(std::vector<node_id> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

// etcd's Bootstrap: the initial membership as committed conf_change entries at term 1.
std::vector<entry> bootstrap_entries(const conf_state& conf) {
  std::vector<entry> out;
  auto add = [&](node_id id, conf_change_type type) {
    entry e;
    e.term = 1;
    e.index = out.size() + 1;
    e.type = entry_type::conf_change;
    e.data = encode_conf_change({type, id, {}});
    out.push_back(std::move(e));
  };
  for (node_id id : conf.voters) add(id, conf_change_type::add_voter);
  for (node_id id : conf.learners) add(id, conf_change_type::add_learner);
  return out;
}

}  // namespace

consensus::consensus(config cfg)
    : _id(cfg.id),
      _random(cfg.seed ^ (cfg.id * 0x2545f4914f6cdd1dull)),
      _log(std::move(cfg.initial_snapshot), std::move(cfg.initial_entries),
           cfg.initial_hard_state.commit) {
  if (is_restart(cfg)) {
    _term = cfg.initial_hard_state.term;
    _vote = cfg.initial_hard_state.vote;
    // Entries of a newer term were persisted without their hard state (a crash between
    // the two writes): adopt the term, with no vote — none was durably cast in it.
    if (_log.last_id().term > _term) {
      _term = _log.last_id().term;
      _vote = no_node;
    }
    _conf = _log.last_snapshot().metadata.conf;  // then the replayed conf changes
  } else if (!cfg.voters.empty()) {
    _conf = {sorted(cfg.voters), sorted(cfg.learners)};
    _term = 1;
    std::vector<entry> boot = bootstrap_entries(_conf);
    std::uint64_t last = boot.size();
    _log.append(std::move(boot));
    _log.commit_to(last);
  }
  _last_hard = cfg.initial_hard_state;
  cfg.voters.clear();
  cfg.learners.clear();
  cfg.initial_entries.clear();
  _cfg = std::move(cfg);
  become_follower(_term, no_node);
  _last_soft = current_soft_state();
}

// ---- roles ------------------------------------------------------------------------------

void consensus::reset(std::uint64_t term) {
  if (term != _term) {
    KEEL_ASSERT(term > _term);
    _term = term;
    _vote = no_node;
  }
  _leader = no_node;
  _election_elapsed = 0;
  _heartbeat_elapsed = 0;
  reset_randomized_election_timeout();
  abort_leader_transfer();
  _votes.clear();
  rebuild_progress();
  _pending_conf_index = 0;
  _proposals_unsent = false;
  _reads.clear();
  _reads_before_commit.clear();
}

void consensus::become_follower(std::uint64_t term, node_id leader) {
  reset(term);
  _leader = leader;
  _role = role::follower;
}

void consensus::become_pre_candidate() {
  KEEL_ASSERT_MSG(_role != role::leader, "a leader cannot become a pre-candidate");
  // Neither the term nor the vote changes: a pre-vote round is only a question.
  _votes.clear();
  _leader = no_node;
  _role = role::pre_candidate;
}

void consensus::become_candidate() {
  KEEL_ASSERT_MSG(_role != role::leader, "a leader cannot become a candidate");
  reset(_term + 1);
  _vote = _id;
  _role = role::candidate;
}

void consensus::become_leader() {
  KEEL_ASSERT_MSG(_role == role::candidate, "only a candidate becomes leader");
  reset(_term);
  _leader = _id;
  _role = role::leader;
  progress& self = _progress.at(_id);
  self.become_replicate();
  self.recent_active = true;
  // Entries already in the log may hold an unapplied conf change; allow a new one only
  // once all of them are applied.
  _pending_conf_index = _log.last_index();
  // §5.4.2 / §8: an entry of the new term, so that earlier entries commit with it and
  // ReadIndex can start.
  std::vector<entry> noop(1);
  append_as_leader(std::move(noop));
}

// ---- time -------------------------------------------------------------------------------

void consensus::tick() {
  if (_role == role::leader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
}

void consensus::tick_election() {
  ++_election_elapsed;
  if (promotable() && _election_elapsed >= _randomized_election_timeout) {
    _election_elapsed = 0;
    hup(_cfg.pre_vote ? campaign_kind::pre_election : campaign_kind::election);
  }
}

void consensus::tick_heartbeat() {
  ++_heartbeat_elapsed;
  ++_election_elapsed;
  if (_election_elapsed >= _cfg.election_tick) {
    _election_elapsed = 0;
    if (_cfg.check_quorum) check_quorum();
    // A transfer not finished within an election timeout is abandoned (thesis §3.10).
    if (_role == role::leader) abort_leader_transfer();
  }
  if (_role != role::leader) return;
  if (_heartbeat_elapsed >= _cfg.heartbeat_tick) {
    _heartbeat_elapsed = 0;
    // Carry the newest pending read so that a lost heartbeat round is retried.
    broadcast_heartbeat(_reads.empty() ? std::string() : _reads.back().context);
  }
}

void consensus::reset_randomized_election_timeout() {
  _randomized_election_timeout =
      _cfg.election_tick + static_cast<int>(_random.below(_cfg.election_tick));
}

bool consensus::promotable() const { return _conf.is_voter(_id) && !_log.snapshot_unstable(); }

// ---- elections (§5.2, thesis §9.6 pre-vote) ---------------------------------------------

void consensus::campaign_now() {
  hup(_cfg.pre_vote ? campaign_kind::pre_election : campaign_kind::election);
}

void consensus::hup(campaign_kind kind) {
  if (_role == role::leader || !promotable()) return;
  // A conf change committed but not applied may change who votes: wait for it.
  if (has_unapplied_conf_changes()) return;
  campaign(kind);
}

void consensus::campaign(campaign_kind kind) {
  message_type request = message_type::vote;
  std::uint64_t term = 0;
  if (kind == campaign_kind::pre_election) {
    become_pre_candidate();
    request = message_type::pre_vote;
    term = _term + 1;  // the term it would campaign at; its own term does not move
  } else {
    become_candidate();
    term = _term;
  }
  message_type response =
      request == message_type::vote ? message_type::vote_response : message_type::pre_vote_response;
  entry_id last = _log.last_id();
  for (node_id voter : _conf.voters) {
    if (voter == _id) {
      // Counted at the advance() that makes the new term and vote durable.
      message self = make(response, _id);
      self.term = term;
      send(std::move(self));
      continue;
    }
    message m = make(request, voter);
    m.term = term;
    m.index = last.index;
    m.log_term = last.term;
    if (kind == campaign_kind::transfer) m.context = std::string(transfer_context);
    send(std::move(m));
  }
}

consensus::vote_result consensus::poll(node_id from, bool granted) {
  _votes.emplace(from, granted);  // the first answer of a voter counts
  std::size_t yes = 0, missing = 0;
  for (node_id voter : _conf.voters) {
    auto it = _votes.find(voter);
    if (it == _votes.end()) {
      ++missing;
    } else if (it->second) {
      ++yes;
    }
  }
  std::size_t quorum = _conf.voters.size() / 2 + 1;
  if (yes >= quorum) return vote_result::won;
  if (yes + missing >= quorum) return vote_result::pending;
  return vote_result::lost;
}

bool consensus::has_unapplied_conf_changes() const {
  for (std::uint64_t i = _log.applied() + 1; i <= _log.committed(); ++i) {
    const entry* e = _log.at(i);
    if (e != nullptr && e->type == entry_type::conf_change) return true;
  }
  return false;
}

bool consensus::in_leader_lease() const {
  return _cfg.check_quorum && _leader != no_node && _election_elapsed < _cfg.election_tick;
}

// ---- step -------------------------------------------------------------------------------

status consensus::validate_message(const message& m, node_id self) {
  if (m.to != self) return {errc::invalid_argument, "raft: message for another node"};
  if (m.from == no_node || m.from == self)
    return {errc::invalid_argument, "raft: message without a valid sender"};
  if (static_cast<int>(m.type) >= message_type_count)
    return {errc::invalid_argument, "raft: unknown message type"};
  if (m.type == message_type::append) {
    std::uint64_t previous_term = m.log_term;
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
      const entry& e = m.entries[i];
      if (e.index != m.index + 1 + i || e.term < previous_term || e.term > m.term)
        return {errc::invalid_argument, "raft: append entries are not consecutive"};
      previous_term = e.term;
    }
  }
  if (m.type == message_type::snapshot && m.snapshot.empty())
    return {errc::invalid_argument, "raft: snapshot message without a snapshot"};
  return status::ok();
}

status consensus::step(const message& m) {
  status valid = validate_message(m, _id);
  if (!valid) return valid;
  step_validated(m);
  return status::ok();
}

void consensus::step_validated(const message& m) {
  if (m.term > _term) {
    if (!accept_higher_term(m)) return;
  } else if (m.term < _term) {
    answer_lower_term(m);
    return;
  }
  switch (m.type) {
    case message_type::vote:
    case message_type::pre_vote: handle_vote_request(m); return;
    default: break;
  }
  switch (_role) {
    case role::follower: step_follower(m); break;
    case role::pre_candidate:
    case role::candidate: step_candidate(m); break;
    case role::leader: step_leader(m); break;
  }
}

// §5.1: a higher term makes us a follower — except in the cases that would let a
// disconnected node disrupt a working cluster (thesis §9.6).
bool consensus::accept_higher_term(const message& m) {
  bool vote_request = m.type == message_type::vote || m.type == message_type::pre_vote;
  if (vote_request && m.context != transfer_context && in_leader_lease()) return false;
  if (m.type == message_type::pre_vote) return true;  // never change term for a pre-vote
  // A granted pre-vote carries the term we would campaign at; a rejection carries the
  // rejecter's (higher) term, which we then adopt below.
  if (m.type == message_type::pre_vote_response && !m.reject) return true;
  bool from_leader = m.type == message_type::append || m.type == message_type::heartbeat ||
                     m.type == message_type::snapshot;
  // Figure 2: the election timer restarts on hearing from a leader or granting a vote,
  // not on merely seeing a higher term. Otherwise candidates with stale logs, which cannot
  // win, keep resetting the timer of the one node that could (etcd resets it here; with
  // pre-vote the difference rarely shows).
  int elapsed = _election_elapsed;
  become_follower(m.term, from_leader ? m.from : no_node);
  if (vote_request) _election_elapsed = elapsed;
  return true;
}

void consensus::answer_lower_term(const message& m) {
  if ((_cfg.check_quorum || _cfg.pre_vote) &&
      (m.type == message_type::heartbeat || m.type == message_type::append)) {
    // A stale leader (say, back from a partition that pre-vote kept our term from seeing)
    // learns our term from this and steps down.
    send(make(message_type::append_response, m.from));
  } else if (m.type == message_type::pre_vote) {
    message reply = make(message_type::pre_vote_response, m.from);
    reply.reject = true;
    send(std::move(reply));
  }
}

// §5.2, §5.4.1: one vote per term, only for a log at least as up to date as ours.
void consensus::handle_vote_request(const message& m) {
  bool pre = m.type == message_type::pre_vote;
  bool can_vote =
      _vote == m.from || (_vote == no_node && _leader == no_node) || (pre && m.term > _term);
  message reply = make(pre ? message_type::pre_vote_response : message_type::vote_response, m.from);
  if (can_vote && _log.is_up_to_date({m.index, m.log_term})) {
    reply.term = m.term;
    if (!pre) {
      _election_elapsed = 0;
      _vote = m.from;
    }
  } else {
    reply.reject = true;
  }
  send(std::move(reply));
}

void consensus::step_follower(const message& m) {
  switch (m.type) {
    case message_type::append:
      _election_elapsed = 0;
      _leader = m.from;
      handle_append(m);
      break;
    case message_type::heartbeat:
      _election_elapsed = 0;
      _leader = m.from;
      handle_heartbeat(m);
      break;
    case message_type::snapshot:
      _election_elapsed = 0;
      _leader = m.from;
      handle_snapshot(m);
      break;
    case message_type::timeout_now: hup(campaign_kind::transfer); break;
    case message_type::read_index:
      // Not the leader (any more): pass it on if we know one, else the reader times out.
      if (_leader != no_node) {
        message forward = m;
        forward.to = _leader;
        forward.term = _term;
        _messages.push_back(std::move(forward));
      }
      break;
    case message_type::read_index_response: _read_states.push_back({m.index, m.context}); break;
    default: break;  // stale responses
  }
}

void consensus::step_candidate(const message& m) {
  message_type counted =
      _role == role::pre_candidate ? message_type::pre_vote_response : message_type::vote_response;
  switch (m.type) {
    case message_type::append:
      become_follower(m.term, m.from);
      handle_append(m);
      return;
    case message_type::heartbeat:
      become_follower(m.term, m.from);
      handle_heartbeat(m);
      return;
    case message_type::snapshot:
      become_follower(m.term, m.from);
      handle_snapshot(m);
      return;
    default: break;
  }
  if (m.type != counted) return;
  switch (poll(m.from, !m.reject)) {
    case vote_result::won:
      if (_role == role::pre_candidate) {
        campaign(campaign_kind::election);
      } else {
        become_leader();
        broadcast_append();
      }
      break;
    case vote_result::lost: become_follower(_term, no_node); break;
    case vote_result::pending: break;
  }
}

void consensus::step_leader(const message& m) {
  if (m.type == message_type::read_index) {
    handle_read_request(m.from, m.context);
    return;
  }
  auto it = _progress.find(m.from);
  if (it == _progress.end()) return;  // not (or no longer) a member
  switch (m.type) {
    case message_type::append_response: handle_append_response(m, it->second); break;
    case message_type::heartbeat_response: handle_heartbeat_response(m, it->second); break;
    default: break;
  }
}

// ---- messages ---------------------------------------------------------------------------

message consensus::make(message_type type, node_id to) const {
  message m;
  m.type = type;
  m.from = _id;
  m.to = to;
  m.term = _term;
  return m;
}

void consensus::send(message m) {
  if (m.to == _id) {
    _self_after_persist.push_back(std::move(m));
    return;
  }
  switch (m.type) {
    case message_type::append_response:
    case message_type::vote_response:
    case message_type::pre_vote_response: _messages_after_persist.push_back(std::move(m)); break;
    default: _messages.push_back(std::move(m)); break;
  }
}

std::optional<progress_status> consensus::progress_of(node_id member) const {
  if (_role != role::leader) return std::nullopt;
  auto it = _progress.find(member);
  if (it == _progress.end()) return std::nullopt;
  return it->second.status();
}

}  // namespace keel::raft::detail
