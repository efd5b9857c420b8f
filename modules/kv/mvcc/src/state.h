// The private state of mvcc_store, shared by store.cc and invariants.cc. absl stays here,
// out of the public header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "keel/assert.h"
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

// Every key's history, found two ways: in key order (ranges, compaction, snapshots) and
// by hash (a put, a get, a compare or a single-key range: the hot path). Each key and its
// history live in one heap node that neither container moves, and both hold views of its
// key. The two always name the same nodes (check_invariants verifies it).
//
// Why two: the ordered map alone is an absl::btree_map whose slots (key + history, 56
// bytes) fit four to a node, so a point lookup among 100,000 keys walked ~9 levels and
// ~20 comparisons, 11% of the owner's CPU in a put benchmark; a hash lookup touches ~3
// cache lines. The hash is a set of the owning pointers, looked up by key (its hash and
// equality read the key through the pointer), so a slot is 8 bytes.
class key_index {
 public:
  struct node {
    std::string key;
    key_history history;
  };
  using ordered_map = absl::btree_map<absl::string_view, node*>;

 private:
  using owned = std::unique_ptr<node>;
  static absl::string_view key_of(absl::string_view key) noexcept { return key; }
  static absl::string_view key_of(const owned& n) noexcept { return as_absl(n->key); }
  // Hash and equality of a node and a key alike (absl's heterogeneous lookup).
  struct by_key_hash {
    using is_transparent = void;
    template <typename K>
    std::size_t operator()(const K& k) const { return absl::Hash<absl::string_view>{}(key_of(k)); }
  };
  struct by_key_eq {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const { return key_of(a) == key_of(b); }
  };

 public:
  key_index() = default;
  key_index(key_index&&) noexcept = default;
  key_index& operator=(key_index&&) noexcept = default;

  std::size_t size() const noexcept { return _by_key.size(); }
  bool empty() const noexcept { return _by_key.empty(); }

  // The node of `key`, or nullptr.
  node* find(std::string_view key) {
    auto it = _by_key.find(as_absl(key));
    return it == _by_key.end() ? nullptr : it->get();
  }
  const node* find(std::string_view key) const { return const_cast<key_index*>(this)->find(key); }

  // The history of `key`, a new empty one if it had none (the caller gives it a version).
  key_history& find_or_insert(std::string_view key) {
    if (node* found = find(key)) return found->history;
    return adopt(std::make_unique<node>(node{std::string(key), {}}), _ordered.end(), false);
  }

  // Room for n keys without rehashing (a snapshot being loaded knows its count).
  void reserve(std::size_t n) { _by_key.reserve(n); }

  // Adds a key larger than every key in the index (a snapshot's keys are sorted).
  void append(std::string key, key_history history) {
    adopt(std::make_unique<node>(node{std::move(key), std::move(history)}), _ordered.end(), true);
  }

  // In key order. Histories may be changed through the pointers; keys never.
  const ordered_map& ordered() const noexcept { return _ordered; }

  // Removes the key at `at`; returns the next one.
  ordered_map::const_iterator erase(ordered_map::const_iterator at) {
    absl::string_view key = at->first;
    auto next = _ordered.erase(at);
    _by_key.erase(key);  // frees the node, and the bytes `key` viewed: last
    return next;
  }

 private:
  // Enters a new node in both maps (both view the node's key); `hinted`: it goes at
  // `where` in key order. If the second map cannot take it, the first gives it up again,
  // so the two never disagree.
  key_history& adopt(std::unique_ptr<node> made, ordered_map::const_iterator where, bool hinted) {
    absl::string_view own = key_of(made);
    node* n = made.get();
    bool entered = _by_key.insert(std::move(made)).second;
    KEEL_ASSERT(entered);  // callers look the key up first; a snapshot's keys are unique
    try {
      entered = hinted ? _ordered.insert(where, {own, n})->second == n : _ordered.emplace(own, n).second;
    } catch (...) {
      _by_key.erase(own);
      throw;
    }
    KEEL_ASSERT(entered);
    return n->history;
  }

  absl::flat_hash_set<owned, by_key_hash, by_key_eq> _by_key;  // owns the nodes
  ordered_map _ordered;
};

struct mvcc_state {
  std::int64_t current = 1;     // etcd: a fresh store is at 1, the first write gets 2
  std::int64_t compacted = -1;  // etcd's compactMainRev; -1 = never compacted
  key_index index;
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
  for (const auto& [key, n] : s.index.ordered())
    for (const version_entry& v : n->history.versions) total += version_bytes(n->key, v);
  return total;
}

// Rules 2 to 5 of README.md "Invariants" for one key's history: "" when it keeps them,
// else what is wrong (and at which revision). check_invariants() and load() use it.
std::string history_violation(const key_history& history, std::int64_t current,
                              std::int64_t compacted);

}  // namespace keel::kv::detail
