// mvcc_store::check_invariants — the version-chain rules of README.md "Invariants",
// checked over the whole store. Tests run it after every step; load() runs
// history_violation() on every decoded key.
#include <algorithm>
#include <set>
#include <string>

#include "keel/kv/mvcc.h"
#include "state.h"

namespace keel::kv {

namespace {

status violation(const std::string& key, const std::string& what) {
  return status(errc::corruption, "mvcc invariant: key '" + key + "': " + what);
}

// Rules 3 and 4 for one live or tombstone version, given the one before it (or null).
std::string version_violation(const detail::version_entry& v, const detail::version_entry* previous,
                              std::int64_t compacted) {
  if (v.tombstone) {
    if (previous == nullptr || previous->tombstone)
      return "tombstone does not end a live generation";
    if (v.version != 0 || v.create_revision != 0 || v.lease != 0 || !v.value.empty()) {
      return "tombstone carries data";
    }
    return "";
  }
  if (v.create_revision < 2 || v.create_revision > v.mod_revision) {
    return "create_revision outside [2, mod]";
  }
  // A generation gains at most one version per revision.
  if (v.version < 1 || v.version - 1 > v.mod_revision - v.create_revision) {
    return "version outside [1, mod - create + 1]";
  }
  bool starts_generation = previous == nullptr ? v.mod_revision > compacted : previous->tombstone;
  if (starts_generation) {
    if (v.version != 1 || v.create_revision != v.mod_revision) {
      return "generation does not start at version 1, create == mod";
    }
  } else if (previous != nullptr) {
    if (v.version != previous->version + 1) return "version gap";
    if (v.create_revision != previous->create_revision) {
      return "create_revision changed within a generation";
    }
  }
  return "";
}

}  // namespace

namespace detail {

std::string history_violation(const key_history& history, std::int64_t current,
                              std::int64_t compacted) {
  const auto& versions = history.versions;
  if (versions.empty()) return "empty history";
  if (versions.front().tombstone) return "history starts with a tombstone";
  std::size_t at_or_below_compaction = 0;
  for (std::size_t i = 0; i < versions.size(); ++i) {
    const version_entry& v = versions[i];
    const version_entry* previous = i == 0 ? nullptr : &versions[i - 1];
    std::string at = " at revision " + std::to_string(v.mod_revision);
    if (v.mod_revision < 2 || v.mod_revision > current) {
      return "mod_revision outside [2, current]" + at;
    }
    if (previous && previous->mod_revision >= v.mod_revision) {
      return "mod_revisions not strictly increasing" + at;
    }
    if (v.mod_revision <= compacted) ++at_or_below_compaction;
    std::string wrong = version_violation(v, previous, compacted);
    if (!wrong.empty()) return wrong + at;
  }
  if (at_or_below_compaction > 1) {
    return "more than the one kept version at or below the compact revision";
  }
  return "";
}

}  // namespace detail

status mvcc_store::check_invariants() const {
  const detail::mvcc_state& s = *_state;
  if (s.current < 1) return status(errc::corruption, "mvcc invariant: current revision < 1");
  if (s.compacted > s.current) {
    return status(errc::corruption, "mvcc invariant: compact revision beyond current");
  }
  if (s.index.ordered().size() != s.index.size()) {
    return status(errc::corruption, "mvcc invariant: the index's hash holds " + std::to_string(s.index.size()) +
                                         " keys, its key order " + std::to_string(s.index.ordered().size()));
  }
  std::size_t versions_above_compaction = 0;
  for (const auto& [key, n] : s.index.ordered()) {
    if (n->key.empty()) return violation(n->key, "empty key in the index");
    if (s.index.find(n->key) != n || key.data() != n->key.data()) {
      return violation(n->key, "the index's hash and key order disagree about it");
    }
    std::string wrong = detail::history_violation(n->history, s.current, s.compacted);
    if (!wrong.empty()) return violation(n->key, wrong);
    for (const auto& v : n->history.versions)
      versions_above_compaction += v.mod_revision > s.compacted;
  }
  // The change log names exactly the versions above the compact revision, once each.
  std::size_t logged = 0;
  for (const auto& [revision, keys] : s.changes) {
    std::string at = " in the change log at revision " + std::to_string(revision);
    if (revision <= s.compacted || revision > s.current || keys.empty()) {
      return status(errc::corruption, "mvcc invariant: bad entry" + at);
    }
    std::set<std::string> seen;
    for (const std::string& key : keys) {
      if (!seen.insert(key).second) return violation(key, "twice" + at);
      const detail::key_index::node* n = s.index.find(key);
      bool found = false;
      if (n != nullptr) {
        for (const auto& v : n->history.versions) found = found || v.mod_revision == revision;
      }
      if (!found) return violation(key, "no version" + at);
      ++logged;
    }
  }
  if (s.bytes != detail::count_bytes(s)) {
    return status(errc::corruption, "mvcc invariant: bytes held is " + std::to_string(s.bytes) +
                                        ", the versions add up to " + std::to_string(detail::count_bytes(s)));
  }
  if (logged != versions_above_compaction) {
    return status(errc::corruption, "mvcc invariant: change log and histories disagree");
  }
  // Every write advanced the revision by one and changed something, and compaction drops
  // exactly the revisions at or below it: the log holds each of (max(compacted, 1), current].
  std::int64_t first_logged = std::max<std::int64_t>(s.compacted, 1) + 1;
  if (static_cast<std::int64_t>(s.changes.size()) != s.current - first_logged + 1 ||
      (!s.changes.empty() &&
       (s.changes.begin()->first != first_logged || s.changes.rbegin()->first != s.current))) {
    return status(errc::corruption,
                  "mvcc invariant: the change log does not hold every revision in (" +
                      std::to_string(first_logged - 1) + ", " + std::to_string(s.current) + "]");
  }
  return status::ok();
}

}  // namespace keel::kv
