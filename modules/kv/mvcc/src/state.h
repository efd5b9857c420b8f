// The private state of mvcc_store, shared by store.cc and invariants.cc. absl stays here,
// out of the public header.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "keel/kv/mvcc.h"

namespace keel::kv::detail {

// One version of a key. A tombstone ends a generation: it has no value, create, version
// or lease.
struct version_entry {
  std::int64_t mod_revision = 0;
  std::int64_t create_revision = 0;
  std::int64_t version = 0;
  std::string value;
  std::int64_t lease = 0;
  bool tombstone = false;
};

// A key's versions in increasing mod_revision order. Never empty while in the index.
struct key_history {
  std::vector<version_entry> versions;
};

// Range ends as etcd: empty = the single key, "\0" = every key >= key, else [key, end).
inline bool range_to_infinity(std::string_view range_end) {
  return range_end.size() == 1 && range_end[0] == '\0';
}
inline bool in_range(std::string_view key, std::string_view range_end, std::string_view k) {
  if (range_end.empty()) return k == key;
  if (range_to_infinity(range_end)) return k >= key;
  return k >= key && k < range_end;
}

// The Debian absl has its own string_view; the index is searched with these.
inline absl::string_view as_absl(std::string_view s) { return {s.data(), s.size()}; }

struct mvcc_state {
  std::int64_t current = 1;     // etcd: a fresh store is at 1, the first write gets 2
  std::int64_t compacted = -1;  // etcd's compactMainRev; -1 = never compacted
  absl::btree_map<std::string, key_history> index;
  // revision -> the keys changed at it, in operation order. Only revisions above
  // `compacted`: events_since reads it, compact prunes it.
  absl::btree_map<std::int64_t, std::vector<std::string>> changes;
  // Sum of version_bytes() over every retained version (mvcc_store::bytes_held).
  std::uint64_t bytes = 0;
};

// What one retained version counts towards mvcc_store::bytes_held(): its key and value.
inline std::uint64_t version_bytes(std::string_view key, const version_entry& v) {
  return key.size() + v.value.size();
}
// The bytes of every version in the index, counted from scratch (load, invariants).
inline std::uint64_t count_bytes(const mvcc_state& s) {
  std::uint64_t total = 0;
  for (const auto& [key, history] : s.index)
    for (const version_entry& v : history.versions) total += version_bytes(key, v);
  return total;
}

// Rules 2 to 5 of README.md "Invariants" for one key's history: "" when it keeps them,
// else what is wrong (and at which revision). check_invariants() and load() use it.
std::string history_violation(const key_history& history, std::int64_t current,
                              std::int64_t compacted);

}  // namespace keel::kv::detail
