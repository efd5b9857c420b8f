// mvcc_store::check_invariants — the version-chain rules of README.md "Invariants",
// checked over the whole store. Tests run it after every step.
#include <set>
#include <string>

#include "keel/kv/mvcc.h"
#include "state.h"

namespace keel::kv {

namespace {

status violation(const std::string& key, const std::string& what) {
  return status(errc::corruption, "mvcc invariant: key '" + key + "': " + what);
}

}  // namespace

status mvcc_store::check_invariants() const {
  const detail::mvcc_state& s = *_state;
  if (s.current < 1) return status(errc::corruption, "mvcc invariant: current revision < 1");
  if (s.compacted > s.current) {
    return status(errc::corruption, "mvcc invariant: compact revision beyond current");
  }
  std::size_t versions_above_compaction = 0;
  for (const auto& [key, history] : s.index) {
    const auto& versions = history.versions;
    if (key.empty()) return violation(key, "empty key in the index");
    if (versions.empty()) return violation(key, "empty history in the index");
    if (versions.front().tombstone) return violation(key, "history starts with a tombstone");
    std::size_t at_or_below_compaction = 0;
    for (std::size_t i = 0; i < versions.size(); ++i) {
      const auto& v = versions[i];
      const auto* previous = i == 0 ? nullptr : &versions[i - 1];
      std::string at = " at revision " + std::to_string(v.mod_revision);
      if (v.mod_revision < 2 || v.mod_revision > s.current) {
        return violation(key, "mod_revision outside [2, current]" + at);
      }
      if (previous && previous->mod_revision >= v.mod_revision) {
        return violation(key, "mod_revisions not strictly increasing" + at);
      }
      if (v.mod_revision <= s.compacted) {
        ++at_or_below_compaction;
      } else {
        ++versions_above_compaction;
      }
      if (v.tombstone) {
        if (previous == nullptr || previous->tombstone) {
          return violation(key, "tombstone does not end a live generation" + at);
        }
        if (v.version != 0 || v.create_revision != 0 || v.lease != 0 || !v.value.empty()) {
          return violation(key, "tombstone carries data" + at);
        }
        continue;
      }
      if (v.create_revision > v.mod_revision) return violation(key, "create > mod" + at);
      bool starts_generation =
          previous == nullptr ? v.mod_revision > s.compacted : previous->tombstone;
      if (starts_generation) {
        if (v.version != 1 || v.create_revision != v.mod_revision) {
          return violation(key, "generation does not start at version 1, create == mod" + at);
        }
      } else if (previous != nullptr) {
        if (v.version != previous->version + 1) return violation(key, "version gap" + at);
        if (v.create_revision != previous->create_revision) {
          return violation(key, "create_revision changed within a generation" + at);
        }
      } else if (v.version < 1 || v.create_revision < 2) {
        return violation(key, "kept version has no version or create_revision" + at);
      }
    }
    if (at_or_below_compaction > 1) {
      return violation(key, "more than the one kept version at or below the compact revision");
    }
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
      auto it = s.index.find(detail::as_absl(key));
      bool found = false;
      if (it != s.index.end()) {
        for (const auto& v : it->second.versions) found = found || v.mod_revision == revision;
      }
      if (!found) return violation(key, "no version" + at);
      ++logged;
    }
  }
  if (logged != versions_above_compaction) {
    return status(errc::corruption, "mvcc invariant: change log and histories disagree");
  }
  if (!s.changes.empty() && s.changes.rbegin()->first != s.current) {
    // The newest change is the current revision, unless compaction removed it all.
    return status(errc::corruption, "mvcc invariant: newest change is not the current revision");
  }
  return status::ok();
}

}  // namespace keel::kv
