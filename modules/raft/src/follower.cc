// follower.cc — a follower's answers to its leader: append (§5.3), heartbeat, snapshot
// (§7). Every answer is an append_response or heartbeat_response; append responses go out
// only after what they acknowledge is durable (raft.h, "The persistence rule").
#include <algorithm>

#include "keel/assert.h"
#include "raft.h"

namespace keel::raft::detail {

void consensus::handle_append(const message& m) {
  // Everything up to our commit index already matches the leader's log (§5.4): say where
  // we are instead of comparing.
  if (m.index < _log.committed()) {
    message reply = make(message_type::append_response, m.from);
    reply.index = _log.committed();
    send(std::move(reply));
    return;
  }
  if (std::optional<std::uint64_t> last_new =
          _log.maybe_append({m.index, m.log_term}, m.entries, m.commit)) {
    message reply = make(message_type::append_response, m.from);
    reply.index = *last_new;
    send(std::move(reply));
    return;
  }
  // Fast back-tracking: the logs cannot match above the highest entry whose term is at
  // most the leader's term at m.index. Hinting that (index, term) lets the leader skip
  // our whole conflicting tail, one term per round trip at most, instead of one entry
  // per round trip (etcd raft's findConflictByTerm; the 6.824 "backup" optimisation).
  entry_id hint = _log.find_conflict_by_term(std::min(m.index, _log.last_index()), m.log_term);
  message reply = make(message_type::append_response, m.from);
  reply.index = m.index;
  reply.reject = true;
  reply.reject_hint = hint.index;
  reply.log_term = hint.term;
  send(std::move(reply));
}

void consensus::handle_heartbeat(const message& m) {
  // The leader sends min(our match, its commit), so this never passes our log. A commit
  // beyond it would be a peer's bug; ignore rather than trust it.
  if (m.commit <= _log.last_index()) _log.commit_to(m.commit);
  message reply = make(message_type::heartbeat_response, m.from);
  reply.context = m.context;
  send(std::move(reply));
}

void consensus::handle_snapshot(const message& m) {
  message reply = make(message_type::append_response, m.from);
  reply.index = restore(m.snapshot) ? _log.last_index() : _log.committed();
  send(std::move(reply));
}

// Installs a leader's snapshot unless our log already covers it. Unlike etcd we do not
// refuse a snapshot whose membership lacks us: a member that is being added may be sent
// a snapshot taken before its own conf change, and refusing it would stall the member
// until the leader took a newer one.
bool consensus::restore(const snapshot& s) {
  if (s.metadata.index <= _log.committed()) return false;
  KEEL_ASSERT(_role == role::follower);
  if (_log.match_term({s.metadata.index, s.metadata.term})) {
    // Our log has the snapshot's last entry: the leader's state up to it is ours too.
    _log.commit_to(s.metadata.index);
    return false;
  }
  _log.restore(s);
  switch_membership(s.metadata.conf);
  return true;
}

}  // namespace keel::raft::detail
