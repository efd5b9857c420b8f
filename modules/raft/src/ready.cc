// ready.cc — has_ready / ready / advance: what the driver persists, sends and applies, and
// the bookkeeping that makes the persistence rule (include/keel/raft/raft.h) hold.
#include <utility>

#include "keel/assert.h"
#include "raft.h"

namespace keel::raft::detail {

// The index after which entries have not been handed out yet: the stable index, or the
// newest entry an outstanding ready holds if it is still in the log as handed out.
std::uint64_t consensus::unhanded_after() const {
  std::uint64_t after = _log.stable();
  if (!_outstanding.empty() && _handed_last && _handed_last->index > after && _log.match_term(*_handed_last))
    after = _handed_last->index;
  return after;
}

bool consensus::has_ready() const {
  if (_outstanding.size() >= _cfg.max_outstanding_readies) return false;
  // A snapshot is persisted and applied alone: not while another ready is outstanding,
  // and nothing after it until it is advanced.
  if (!_outstanding.empty() && (_log.snapshot_unstable() || _outstanding.back().snapshot_index != 0)) return false;
  if (current_soft_state() != _last_soft || current_hard_state() != _last_hard) return true;
  if (_log.snapshot_unstable() || unhanded_after() < _log.last_index()) return true;
  if (!_messages.empty() || !_messages_after_persist.empty() || !_self_after_persist.empty())
    return true;
  if (_proposals_unsent || _log.has_next_committed()) return true;
  for (const read_state& read : _read_states)
    if (read.index <= _log.applying()) return true;
  return false;
}

raft::ready consensus::make_ready() {
  KEEL_ASSERT_MSG(_outstanding.size() < _cfg.max_outstanding_readies, "ready() again before advance()");
  flush_proposals();
  raft::ready rd;
  handed_out handed;

  soft_state soft = current_soft_state();
  if (soft != _last_soft) rd.soft = _last_soft = soft;
  hard_state hard = current_hard_state();
  if (hard != _last_hard) {
    rd.must_sync = hard.term != _last_hard.term || hard.vote != _last_hard.vote;
    rd.hard = _last_hard = hard;
  }

  if (_log.snapshot_unstable()) {
    rd.snapshot = _log.last_snapshot();
    handed.snapshot_index = rd.snapshot.metadata.index;
    rd.must_sync = true;
  }
  rd.entries = _log.entries_after(unhanded_after());
  if (!rd.entries.empty()) {
    handed.last_entry = entry_id{rd.entries.back().index, rd.entries.back().term};
    _handed_last = handed.last_entry;
    rd.must_sync = true;
  }

  rd.messages = std::move(_messages);
  _messages.clear();
  rd.messages_after_persist = std::move(_messages_after_persist);
  _messages_after_persist.clear();
  handed.self_messages = std::move(_self_after_persist);
  _self_after_persist.clear();

  rd.committed_entries = _log.next_committed(_cfg.max_committed_size_per_ready);
  handed.applied_to = _log.applying();
  // Reads covered by what the application will have applied after this ready.
  std::vector<read_state> waiting;
  for (read_state& read : _read_states) {
    (read.index <= handed.applied_to ? rd.read_states : waiting).push_back(std::move(read));
  }
  _read_states = std::move(waiting);

  _outstanding.push_back(std::move(handed));
  return rd;
}

void consensus::advance() {
  KEEL_ASSERT_MSG(!_outstanding.empty(), "advance() without a ready");
  handed_out handed = std::move(_outstanding.front());
  _outstanding.pop_front();
  if (handed.snapshot_index != 0) _log.snapshot_stable(handed.snapshot_index);
  if (handed.last_entry) _log.stable_to(*handed.last_entry);
  _log.applied_to(handed.applied_to);
  // Now durable: count our own acknowledgements (self-ack, self-vote).
  for (const message& m : handed.self_messages) step_validated(m);
}

}  // namespace keel::raft::detail
