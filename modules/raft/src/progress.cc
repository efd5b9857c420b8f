// progress.cc — per-member flow control (progress.h), after etcd's tracker/progress.go.
#include "progress.h"

#include <algorithm>

#include "keel/assert.h"

namespace keel::raft::detail {

void inflights::add(std::uint64_t last_index) {
  KEEL_ASSERT(!full());
  if (_ring.empty()) _ring.resize(_capacity);
  _ring[(_start + _count) % _capacity] = last_index;
  ++_count;
}

void inflights::free_le(std::uint64_t index) {
  while (_count > 0 && _ring[_start] <= index) {
    _start = (_start + 1) % _capacity;
    --_count;
  }
  if (_count == 0) _start = 0;
}

void progress::reset_state(progress_state to) {
  paused = false;
  pending_snapshot = 0;
  state = to;
  window.reset();
}

void progress::become_probe() {
  // From snapshot: continue after the snapshot if it was delivered (pending_snapshot is
  // cleared by a failure report), else from match.
  std::uint64_t after = state == progress_state::snapshot ? pending_snapshot : 0;
  reset_state(progress_state::probe);
  next = std::max(match + 1, after + 1);
}

void progress::become_replicate() {
  reset_state(progress_state::replicate);
  next = match + 1;
}

void progress::become_snapshot(std::uint64_t snapshot_index) {
  reset_state(progress_state::snapshot);
  pending_snapshot = snapshot_index;
  next = snapshot_index + 1;
}

void progress::sent_entries(std::size_t entries) {
  switch (state) {
    case progress_state::replicate:
      if (entries > 0) {
        next += entries;
        window.add(next - 1);
      }
      paused = window.full();
      break;
    case progress_state::probe:
      if (entries > 0) paused = true;
      break;
    case progress_state::snapshot: KEEL_PANIC("append sent in snapshot state");
  }
}

bool progress::maybe_update(std::uint64_t index) {
  if (index <= match) return false;
  match = index;
  next = std::max(next, index + 1);
  paused = false;
  return true;
}

bool progress::maybe_decrease_to(std::uint64_t rejected, std::uint64_t match_hint) {
  if (state == progress_state::replicate) {
    // Stale if already matched past it; otherwise fall back to just after match (the
    // caller moves to probe).
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probes go one at a time: a rejection of anything but the last probe is stale.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  paused = false;
  return true;
}

bool progress::is_paused() const {
  switch (state) {
    case progress_state::probe:
    case progress_state::replicate: return paused;
    case progress_state::snapshot: return true;
  }
  return true;
}

progress_status progress::status() const {
  return {match, next, state, pending_snapshot, window.count(), recent_active, is_learner};
}

}  // namespace keel::raft::detail
