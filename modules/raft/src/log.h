// log.h — one member's Raft log in memory: the latest snapshot, then the entries after it.
//
// Indexes: [snapshot.index + 1, last_index()] are in `_entries`; snapshot.index itself is
// known by its term only; below it the log is compacted. The cursors:
//
//   applied <= applying <= committed <= last_index   (applying: handed out, not advanced)
//   applied <= stable
//
// All only grow except `_stable`, the last index durable on this node: a new leader may
// replace an uncommitted tail, durable or not, and the replaced part is written again.
// Entries after `_stable` are handed to the driver to persist; only entries at or below
// it are handed out to apply. The snapshot itself may be unstable (installed from a
// leader, not yet persisted): `_snapshot_unstable`.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "keel/raft/types.h"

namespace keel::raft::detail {

// Bytes an entry counts for in max_size_per_msg and max_committed_size_per_ready: its data
// plus a fixed overhead, so empty entries are bounded too.
inline constexpr std::uint64_t entry_overhead_bytes = 24;
inline std::uint64_t entry_bytes(const entry& e) { return e.data.size() + entry_overhead_bytes; }

class raft_log {
 public:
  // A restart (or a fresh node: everything empty). REQUIRES: validated by validate().
  raft_log(snapshot snap, std::vector<entry> entries, std::uint64_t committed);

  std::uint64_t first_index() const { return _snapshot.metadata.index + 1; }
  std::uint64_t last_index() const { return _snapshot.metadata.index + _entries.size(); }
  entry_id last_id() const { return {last_index(), *term(last_index())}; }
  std::uint64_t committed() const { return _committed; }
  std::uint64_t applied() const { return _applied; }
  std::uint64_t stable() const { return _stable; }

  // The term at index, for index in [snapshot.index, last_index]; nullopt otherwise.
  std::optional<std::uint64_t> term(std::uint64_t index) const;
  bool match_term(entry_id id) const { return term(id.index) == id.term; }
  const entry* at(std::uint64_t index) const;
  // §5.4.1: a candidate whose last entry is `last` is at least as up to date as this log.
  bool is_up_to_date(entry_id last) const;

  // The follower's side of append (§5.3): if the entry before `entries` matches, drop the
  // conflicting tail, append what is new, commit up to min(commit, last new index) and
  // return the last new index. nullopt when `prev` does not match.
  std::optional<std::uint64_t> maybe_append(entry_id prev, const std::vector<entry>& entries,
                                            std::uint64_t commit);
  // The leader's side: append after last_index(). REQUIRES: consecutive from last + 1.
  void append(std::vector<entry> entries);
  // The highest (index, term) with index <= `index` and term <= `term`: where the logs may
  // match, for fast back-tracking. Term 0 when the term at that index is not known.
  entry_id find_conflict_by_term(std::uint64_t index, std::uint64_t term) const;

  // REQUIRES: index <= last_index(). Never lowers the commit index.
  void commit_to(std::uint64_t index);
  // Entries [low, last] limited to max_bytes (at least one). REQUIRES: low >= first_index().
  std::vector<entry> slice(std::uint64_t low, std::uint64_t max_bytes) const;

  // ---- persistence ----
  std::vector<entry> unstable_entries() const;  // (stable, last]
  std::vector<entry> entries_after(std::uint64_t index) const;  // (max(index, snapshot), last]
  // The driver persisted up to `id`; ignored if the log changed under it since.
  void stable_to(entry_id id);
  const snapshot& last_snapshot() const { return _snapshot; }
  bool snapshot_unstable() const { return _snapshot_unstable; }
  void snapshot_stable(std::uint64_t index);

  // ---- applying ----
  bool has_next_committed() const { return next_committed_limit() > _applying; }
  std::vector<entry> next_committed(std::uint64_t max_bytes);  // moves `applying`
  // At advance(): the application applied up to index (what the ready handed out).
  void applied_to(std::uint64_t index);
  std::uint64_t applying() const { return _applying; }

  // ---- snapshots ----
  // A leader's snapshot replaces the whole log (REQUIRES: s.index > committed).
  void restore(snapshot s);
  // The application saved a snapshot at index: drop the log up to it.
  // REQUIRES: snapshot.index < index <= applied.
  void compact(std::uint64_t index, conf_state conf, std::string data);

 private:
  std::uint64_t next_committed_limit() const;
  void truncate_and_append(std::vector<entry> entries);

  snapshot _snapshot;
  bool _snapshot_unstable = false;
  std::deque<entry> _entries;  // _entries[i].index == first_index() + i
  std::uint64_t _committed = 0;
  std::uint64_t _applying = 0;
  std::uint64_t _applied = 0;
  std::uint64_t _stable = 0;
};

}  // namespace keel::raft::detail
