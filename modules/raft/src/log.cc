// log.cc — the in-memory Raft log (log.h).
#include "log.h"

#include <algorithm>
#include <utility>

#include "keel/assert.h"

namespace keel::raft::detail {

raft_log::raft_log(snapshot snap, std::vector<entry> entries, std::uint64_t committed)
    : _snapshot(std::move(snap)), _entries(entries.begin(), entries.end()) {
  std::uint64_t base = _snapshot.metadata.index;
  for (std::size_t i = 0; i < _entries.size(); ++i) KEEL_ASSERT(_entries[i].index == base + 1 + i);
  _committed = std::max(committed, base);
  KEEL_ASSERT(_committed <= last_index());
  // On a restart the state machine is rebuilt from the snapshot and the committed entries
  // after it, so everything after the snapshot is handed out again.
  _applied = base;
  _applying = base;
  _stable = last_index();
}

std::optional<std::uint64_t> raft_log::term(std::uint64_t index) const {
  if (index == _snapshot.metadata.index) return _snapshot.metadata.term;
  if (index < first_index() || index > last_index()) return std::nullopt;
  return _entries[index - first_index()].term;
}

const entry* raft_log::at(std::uint64_t index) const {
  if (index < first_index() || index > last_index()) return nullptr;
  return &_entries[index - first_index()];
}

bool raft_log::is_up_to_date(entry_id last) const {
  entry_id mine = last_id();
  return last.term > mine.term || (last.term == mine.term && last.index >= mine.index);
}

std::optional<std::uint64_t> raft_log::maybe_append(entry_id prev,
                                                    const std::vector<entry>& entries,
                                                    std::uint64_t commit) {
  if (!match_term(prev)) return std::nullopt;
  std::uint64_t last_new = prev.index + entries.size();
  // The first entry that is new or conflicts (a different term at its index). Entries
  // before it are already here, identical by the Log Matching property.
  std::size_t first_new = 0;
  while (first_new < entries.size() &&
         match_term({entries[first_new].index, entries[first_new].term}))
    ++first_new;
  if (first_new < entries.size()) {
    KEEL_ASSERT_MSG(entries[first_new].index > _committed, "a committed entry would change");
    truncate_and_append(std::vector<entry>(entries.begin() + first_new, entries.end()));
  }
  commit_to(std::min(commit, last_new));
  return last_new;
}

void raft_log::append(std::vector<entry> entries) {
  if (entries.empty()) return;
  KEEL_ASSERT(entries.front().index == last_index() + 1);
  truncate_and_append(std::move(entries));
}

void raft_log::truncate_and_append(std::vector<entry> entries) {
  std::uint64_t from = entries.front().index;
  KEEL_ASSERT(from > _committed && from >= first_index() && from <= last_index() + 1);
  _entries.erase(_entries.begin() + (from - first_index()), _entries.end());
  // A durable tail that is replaced must be written again (the driver truncates the
  // persisted log at `from` when it persists these).
  _stable = std::min(_stable, from - 1);
  for (auto& e : entries) {
    KEEL_ASSERT(e.index == last_index() + 1);
    KEEL_ASSERT(e.term >= *term(last_index()));
    _entries.push_back(std::move(e));
  }
}

entry_id raft_log::find_conflict_by_term(std::uint64_t index, std::uint64_t term_max) const {
  index = std::min(index, last_index());
  for (; index > 0; --index) {
    std::optional<std::uint64_t> mine = term(index);
    // Compacted: a possible match that the leader resolves (with a snapshot if needed).
    if (!mine) return {index, 0};
    if (*mine <= term_max) return {index, *mine};
  }
  return {0, 0};
}

void raft_log::commit_to(std::uint64_t index) {
  if (index <= _committed) return;
  KEEL_ASSERT_MSG(index <= last_index(), "commit beyond the log");
  _committed = index;
}

std::vector<entry> raft_log::slice(std::uint64_t low, std::uint64_t max_bytes) const {
  KEEL_ASSERT(low >= first_index());
  std::vector<entry> out;
  std::uint64_t bytes = 0;
  for (std::uint64_t i = low; i <= last_index(); ++i) {
    const entry& e = _entries[i - first_index()];
    bytes += entry_bytes(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

std::vector<entry> raft_log::unstable_entries() const { return entries_after(_stable); }

std::vector<entry> raft_log::entries_after(std::uint64_t index) const {
  std::uint64_t from = std::max(index, _snapshot.metadata.index) + 1;
  if (from > last_index()) return {};
  return std::vector<entry>(_entries.begin() + (from - first_index()), _entries.end());
}

void raft_log::stable_to(entry_id id) {
  // The log may have been truncated (and re-appended at another term) or replaced by a
  // snapshot since these entries were handed out: then they are written again.
  if (id.index <= _snapshot.metadata.index || !match_term(id)) return;
  _stable = std::max(_stable, id.index);
}

void raft_log::snapshot_stable(std::uint64_t index) {
  if (_snapshot_unstable && _snapshot.metadata.index == index) _snapshot_unstable = false;
}

std::uint64_t raft_log::next_committed_limit() const {
  if (_snapshot_unstable) return _applying;  // the snapshot is applied first
  return std::min(_committed, _stable);
}

std::vector<entry> raft_log::next_committed(std::uint64_t max_bytes) {
  std::uint64_t limit = next_committed_limit();
  std::vector<entry> out;
  std::uint64_t bytes = 0;
  for (std::uint64_t i = _applying + 1; i <= limit; ++i) {
    const entry& e = _entries[i - first_index()];
    bytes += entry_bytes(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  if (!out.empty()) _applying = out.back().index;
  return out;
}

void raft_log::applied_to(std::uint64_t index) {
  KEEL_ASSERT(index <= _applying);
  _applied = std::max(_applied, index);
}

void raft_log::restore(snapshot s) {
  KEEL_ASSERT(s.metadata.index > _committed);
  _entries.clear();
  _snapshot = std::move(s);
  _snapshot_unstable = true;
  _committed = _snapshot.metadata.index;
  _stable = _snapshot.metadata.index;
  // The snapshot replaces the state machine: nothing before it is applied one by one.
  _applying = _snapshot.metadata.index;
}

void raft_log::compact(std::uint64_t index, conf_state conf, std::string data) {
  KEEL_ASSERT(index > _snapshot.metadata.index && index <= _applied && index <= last_index());
  std::uint64_t index_term = *term(index);
  _entries.erase(_entries.begin(), _entries.begin() + (index - first_index() + 1));
  _snapshot.metadata = {index, index_term, std::move(conf)};
  _snapshot.data = std::move(data);
}

}  // namespace keel::raft::detail
