// progress.h — a leader's flow control towards one member (etcd's tracker.Progress).
//
//   probe      one append in flight at a time (paused until answered or a heartbeat
//              response), used while the follower's match index is being found;
//   replicate  appends pipelined optimistically: next advances as they are sent, at most
//              max_inflight_msgs unacknowledged (the in-flight window);
//   snapshot   a snapshot is on its way; nothing else is sent until it is reported
//              (report_snapshot) or the follower answers an index the log can continue.
//
// Invariant: match < next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "keel/raft/raft.h"

namespace keel::raft::detail {

// The last index of each append message in flight, oldest first: a ring buffer of at most
// `capacity` slots, allocated on first use.
class inflights {
 public:
  explicit inflights(std::size_t capacity) : _capacity(capacity) {}
  void add(std::uint64_t last_index);
  void free_le(std::uint64_t index);  // acknowledged up to index
  void reset() { _start = _count = 0; }
  bool full() const { return _count == _capacity; }
  std::size_t count() const { return _count; }

 private:
  std::size_t _capacity;
  std::vector<std::uint64_t> _ring;
  std::size_t _start = 0;
  std::size_t _count = 0;
};

struct progress {
  progress(std::uint64_t next_index, std::size_t inflight_capacity, bool learner)
      : next(next_index), window(inflight_capacity), is_learner(learner) {}

  std::uint64_t match = 0;
  std::uint64_t next = 1;
  progress_state state = progress_state::probe;
  std::uint64_t pending_snapshot = 0;  // in snapshot state: the snapshot's index
  bool paused = false;                 // probe: an append is in flight; replicate: window full
  bool recent_active = false;          // heard from since the last quorum check
  inflights window;
  bool is_learner = false;

  void become_probe();
  void become_replicate();
  void become_snapshot(std::uint64_t snapshot_index);
  // An append carrying `entries` entries ending at next - 1 + entries was sent.
  void sent_entries(std::size_t entries);
  // An acknowledgement up to index: true if it raised match.
  bool maybe_update(std::uint64_t index);
  // A rejection of the append after `rejected`, with the follower's hint: true if next
  // moved (the rejection was not stale).
  bool maybe_decrease_to(std::uint64_t rejected, std::uint64_t match_hint);
  bool is_paused() const;
  progress_status status() const;

 private:
  void reset_state(progress_state to);
};

}  // namespace keel::raft::detail
