// leader.cc — the leader: proposals, replication with flow control and fast
// back-tracking (§5.3), commitment (§5.4.2), ReadIndex (thesis §6.4), check-quorum and
// leadership transfer (thesis §3.10).
#include <algorithm>
#include <string>
#include <utility>

#include "keel/assert.h"
#include "raft.h"

namespace keel::raft::detail {

status consensus::not_leader() const {
  std::string hint = _leader == no_node ? "leader unknown" : "leader is " + std::to_string(_leader);
  return {errc::unavailable, "not leader; " + hint};
}

status consensus::refuse_proposals() const {
  if (_role != role::leader) return not_leader();
  if (!_progress.contains(_id)) return {errc::unavailable, "raft: removed from the group"};
  if (_lead_transferee != no_node)
    return {errc::unavailable, "raft: leadership transfer in progress"};
  if (_log.last_index() - _log.committed() >= _cfg.max_uncommitted_entries)
    return {errc::unavailable, "raft: too many uncommitted entries"};
  return status::ok();
}

result<entry_id> consensus::propose(std::string data) {
  status refused = refuse_proposals();
  if (!refused) return refused;
  std::vector<entry> entries(1);
  entries[0].data = std::move(data);
  entry_id id = append_as_leader(std::move(entries));
  _proposals_unsent = true;  // sent at ready(), batched with the turn's other proposals
  return id;
}

entry_id consensus::append_as_leader(std::vector<entry> entries) {
  std::uint64_t index = _log.last_index();
  for (entry& e : entries) {
    e.term = _term;
    e.index = ++index;
  }
  _log.append(std::move(entries));
  // Our own copy counts towards commitment only once durable: at the advance() after the
  // ready that hands these entries out.
  message self = make(message_type::append_response, _id);
  self.index = index;
  send(std::move(self));
  return {index, _term};
}

// ---- replication ------------------------------------------------------------------------

void consensus::broadcast_append() {
  for (auto& [id, pr] : _progress)
    if (id != _id) send_append(id);
}

void consensus::flush_proposals() {
  if (!_proposals_unsent) return;
  _proposals_unsent = false;
  if (_role != role::leader) return;
  // As many appends as each follower's window takes: a replicating follower gets the
  // whole batch pipelined in max_size_per_msg pieces, a probing one a single probe.
  for (auto& [id, pr] : _progress) {
    if (id == _id) continue;
    while (maybe_send_append(id, false)) {}
  }
}

// Sends the follower what it needs next, if its flow control allows: entries from next
// on (up to max_size_per_msg), or the snapshot when they are compacted. An empty append
// (send_if_empty) carries the commit index or probes.
bool consensus::maybe_send_append(node_id to, bool send_if_empty) {
  progress& pr = _progress.at(to);
  if (pr.is_paused()) return false;
  std::optional<std::uint64_t> previous_term = _log.term(pr.next - 1);
  if (!previous_term) return maybe_send_snapshot(to, pr);
  std::vector<entry> entries;
  // A full window sends only empty appends: they reach the follower, get answered, and the
  // answer frees the window even if every append that filled it was lost.
  bool window_full = pr.state == progress_state::replicate && pr.window.full();
  if (!window_full && pr.next <= _log.last_index())
    entries = _log.slice(pr.next, _cfg.max_size_per_msg);
  if (entries.empty() && !send_if_empty) return false;
  message m = make(message_type::append, to);
  m.index = pr.next - 1;
  m.log_term = *previous_term;
  m.commit = _log.committed();
  pr.sent_entries(entries.size());
  m.entries = std::move(entries);
  send(std::move(m));
  return true;
}

bool consensus::maybe_send_snapshot(node_id to, progress& pr) {
  // Only to a member we have heard from: a snapshot is large.
  if (!pr.recent_active) return false;
  const snapshot& s = _log.last_snapshot();
  KEEL_ASSERT_MSG(!s.empty(), "entries compacted without a snapshot");
  pr.become_snapshot(s.metadata.index);
  message m = make(message_type::snapshot, to);
  m.snapshot = s;
  send(std::move(m));
  return true;
}

void consensus::broadcast_heartbeat(const std::string& context) {
  for (auto& [id, pr] : _progress)
    if (id != _id) send_heartbeat(id, context);
}

void consensus::send_heartbeat(node_id to, const std::string& context) {
  // Never more than the follower is known to hold: it may not have our entries yet.
  message m = make(message_type::heartbeat, to);
  m.commit = std::min(_progress.at(to).match, _log.committed());
  m.context = context;
  send(std::move(m));
}

void consensus::send_timeout_now(node_id to) { send(make(message_type::timeout_now, to)); }

void consensus::handle_append_response(const message& m, progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    handle_append_rejection(m, pr);
    return;
  }
  if (m.from == _id) KEEL_ASSERT_MSG(m.index <= _log.stable(), "self-ack of undurable entries");
  // An ack of entries this leader never had can only come from a member that took appends
  // from another "leader" of this term: a forged or broken peer. Counted, it could commit
  // entries that do not exist (and the next append to it would find none to send).
  if (m.index > _log.last_index()) return;
  // A probe answered at exactly match also moves the follower to replicate.
  bool updated = pr.maybe_update(m.index);
  if (!updated && !(pr.match == m.index && pr.state == progress_state::probe)) return;
  switch (pr.state) {
    case progress_state::probe: pr.become_replicate(); break;
    case progress_state::snapshot:
      // Whatever index the snapshot really got the follower to, continue from the log if
      // it can (etcd); through probe so that next is right.
      if (pr.match + 1 >= _log.first_index()) {
        pr.become_probe();
        pr.become_replicate();
      }
      break;
    case progress_state::replicate: pr.window.free_le(m.index); break;
  }
  if (maybe_commit()) {
    release_reads_before_commit();
    broadcast_append();  // tell followers the new commit index
  }
  if (m.from != _id) {
    // The window may have opened for several messages at once.
    while (maybe_send_append(m.from, false)) {}
  }
  if (m.from == _lead_transferee && pr.match == _log.last_index()) send_timeout_now(m.from);
}

void consensus::handle_append_rejection(const message& m, progress& pr) {
  // The follower's hint is the highest (index, term) where its log may match ours. If
  // our term there is higher still, skip to the last entry we have of at most its term:
  // one round trip per term instead of one per entry.
  std::uint64_t next_probe = m.reject_hint;
  if (m.log_term > 0) next_probe = _log.find_conflict_by_term(m.reject_hint, m.log_term).index;
  if (!pr.maybe_decrease_to(m.index, next_probe)) return;
  if (pr.state == progress_state::replicate) pr.become_probe();
  send_append(m.from);
}

void consensus::handle_heartbeat_response(const message& m, progress& pr) {
  pr.recent_active = true;
  pr.paused = false;
  // A lagging or probing follower gets an append now (empty if the window is full), so
  // that replication recovers even if every append in flight was lost.
  if (pr.match < _log.last_index() || pr.state == progress_state::probe) send_append(m.from);
  if (!m.context.empty()) acknowledge_read(m.from, m.context);
}

// §5.4.2 (Figure 8): only an entry of the current term commits by counting replicas;
// earlier ones commit with it.
bool consensus::maybe_commit() {
  std::uint64_t index = quorum_match_index();
  if (index <= _log.committed() || _log.term(index) != _term) return false;
  _log.commit_to(index);
  return true;
}

std::uint64_t consensus::quorum_match_index() const {
  std::vector<std::uint64_t> matches;
  for (node_id voter : _conf.voters) {
    auto it = _progress.find(voter);
    matches.push_back(it == _progress.end() ? 0 : it->second.match);
  }
  if (matches.empty()) return 0;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  return matches[matches.size() / 2];
}

bool consensus::quorum_active() const {
  std::size_t active = 0;
  for (node_id voter : _conf.voters) {
    auto it = _progress.find(voter);
    if (voter == _id || (it != _progress.end() && it->second.recent_active)) ++active;
  }
  return active >= _conf.voters.size() / 2 + 1;
}

// A leader that has not heard from a quorum for an election timeout may have been
// replaced on the other side of a partition: it steps down instead of serving.
void consensus::check_quorum() {
  if (!quorum_active()) {
    become_follower(_term, no_node);
    return;
  }
  for (auto& [id, pr] : _progress)
    if (id != _id) pr.recent_active = false;
}

// ---- ReadIndex (thesis §6.4) -----------------------------------------------------------

bool consensus::committed_entry_in_current_term() const {
  return _log.term(_log.committed()) == _term;
}

status consensus::read_index(std::string context) {
  if (_role == role::leader) {
    if (_reads.size() + _reads_before_commit.size() >= pending_reads_max)
      return {errc::unavailable, "raft: too many pending reads"};
    handle_read_request(_id, std::move(context));
    return status::ok();
  }
  if (_role == role::follower && _leader != no_node) {
    message m = make(message_type::read_index, _leader);
    m.context = std::move(context);
    send(std::move(m));
    return status::ok();
  }
  return not_leader();
}

void consensus::handle_read_request(node_id from, std::string context) {
  // Until an entry of this term is committed, our commit index may be behind entries
  // that earlier leaders committed: a read at it could miss a completed write.
  if (!committed_entry_in_current_term()) {
    if (_reads_before_commit.size() < pending_reads_max)
      _reads_before_commit.push_back({from, std::move(context), 0, {}});
    return;
  }
  if (_conf.voters.size() == 1 && _conf.is_voter(_id)) {
    answer_read(from, std::move(context), _log.committed());
    return;
  }
  start_read(from, std::move(context));
}

void consensus::start_read(node_id from, std::string context) {
  for (const pending_read& read : _reads)
    if (read.context == context) return;  // contexts are unique; a repeat is a retry
  if (_reads.size() >= pending_reads_max) return;
  _reads.push_back({from, context, _log.committed(), {_id}});
  broadcast_heartbeat(context);
}

void consensus::acknowledge_read(node_id from, const std::string& context) {
  auto it = std::find_if(_reads.begin(), _reads.end(),
                         [&](const pending_read& read) { return read.context == context; });
  if (it == _reads.end()) return;
  if (std::find(it->acks.begin(), it->acks.end(), from) == it->acks.end()) it->acks.push_back(from);
  std::size_t voters = 0;
  for (node_id id : it->acks)
    if (_conf.is_voter(id)) ++voters;
  if (voters < _conf.voters.size() / 2 + 1) return;
  // A quorum confirmed us after this read (and every earlier one) was registered.
  std::size_t released = static_cast<std::size_t>(it - _reads.begin()) + 1;
  for (std::size_t i = 0; i < released; ++i) {
    pending_read read = std::move(_reads.front());
    _reads.pop_front();
    answer_read(read.from, std::move(read.context), read.index);
  }
}

void consensus::answer_read(node_id from, std::string context, std::uint64_t index) {
  if (from == _id) {
    _read_states.push_back({index, std::move(context)});
    return;
  }
  message m = make(message_type::read_index_response, from);
  m.index = index;
  m.context = std::move(context);
  send(std::move(m));
}

void consensus::release_reads_before_commit() {
  if (_reads_before_commit.empty() || !committed_entry_in_current_term()) return;
  std::vector<pending_read> waiting = std::move(_reads_before_commit);
  _reads_before_commit.clear();
  for (pending_read& read : waiting) handle_read_request(read.from, std::move(read.context));
}

// ---- leadership transfer (thesis §3.10) -------------------------------------------------

status consensus::transfer_leadership(node_id to) {
  if (_role != role::leader) return not_leader();
  auto it = _progress.find(to);
  if (it == _progress.end()) return {errc::invalid_argument, "raft: transfer to a non-member"};
  if (it->second.is_learner) return {errc::invalid_argument, "raft: a learner cannot lead"};
  if (to == _id || to == _lead_transferee) return status::ok();
  abort_leader_transfer();
  // The transfer has one election timeout to finish (tick_heartbeat abandons it).
  _election_elapsed = 0;
  _lead_transferee = to;
  if (it->second.match == _log.last_index()) {
    send_timeout_now(to);
  } else {
    send_append(to);
  }
  return status::ok();
}

void consensus::report_unreachable(node_id to) {
  if (_role != role::leader) return;
  auto it = _progress.find(to);
  // An optimistic pipeline to an unreachable member has probably lost messages.
  if (it != _progress.end() && it->second.state == progress_state::replicate)
    it->second.become_probe();
}

void consensus::report_snapshot(node_id to, bool succeeded) {
  if (_role != role::leader) return;
  auto it = _progress.find(to);
  if (it == _progress.end() || it->second.state != progress_state::snapshot) return;
  progress& pr = it->second;
  // On failure probe from match, not from the snapshot that never arrived.
  if (!succeeded) pr.pending_snapshot = 0;
  pr.become_probe();
  // Delivered: wait for the follower's answer. Lost: wait for a heartbeat response.
  pr.paused = true;
}

}  // namespace keel::raft::detail
