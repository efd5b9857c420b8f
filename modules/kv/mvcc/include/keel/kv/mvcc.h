// keel/kv/mvcc.h — the multi-version key-value store behind every kv surface.
//
// What it is for: the one keyspace that etcd v2, the v3 gateway and the native protocol
// read and write. It keeps one revision counter and, for every key, the history of its
// versions, so a range can be answered at a past revision, a transaction can compare on
// version / create / mod / value / lease, and a watcher can be caught up from history.
// Semantics follow etcd 3.4's mvcc package and its applier (v3 apply.go), see
// ../shared/reference/etcd-api.md §2.3 and modules/kv/mvcc/README.md.
//
// Pure and deterministic: no I/O, no clock, no reactor, no randomness. The same sequence
// of calls gives the same revisions and results on every member. Not thread-safe: one
// mvcc_store belongs to the shard that applies the Raft group's committed entries.
//
// Revisions (as etcd): a fresh store is at revision 1 and its first write gets revision 2.
// A write that changes nothing (a delete that matches no key, a transaction whose chosen
// branch only reads) does not advance the revision. All changes of one put, delete_range
// or txn share one revision; their events are ordered as the operations were.
//
// Errors come back as keel::status values, never exceptions. The messages of the
// conditions a client can see are etcd's, exactly (mvcc_messages below); mvcc_error_of()
// names the condition of a failed status without comparing strings by hand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel::kv {

namespace detail {
struct mvcc_state;  // src/state.h
}

// etcd's --max-txn-ops default. (Belongs in keel/limits.h once the lead moves it there.)
inline constexpr std::size_t mvcc_txn_operations_max = 128;
// How deep txns nest at most. Every level takes at least one op of its parent's budget
// (mvcc_store::txn), so a txn the store accepts is never deeper; decoders refuse deeper
// input before recursing further.
inline constexpr std::size_t mvcc_txn_depth_max = mvcc_txn_operations_max;

namespace mvcc_messages {
inline constexpr std::string_view compacted = "mvcc: required revision has been compacted";
inline constexpr std::string_view future_revision = "mvcc: required revision is a future revision";
inline constexpr std::string_view duplicate_key = "etcdserver: duplicate key given in txn request";
inline constexpr std::string_view too_many_operations =
    "etcdserver: too many operations in txn request";
inline constexpr std::string_view empty_key = "etcdserver: key is not provided";
inline constexpr std::string_view key_not_found = "etcdserver: key not found";
inline constexpr std::string_view value_provided = "etcdserver: value is provided";
inline constexpr std::string_view lease_provided = "etcdserver: lease is provided";
}  // namespace mvcc_messages

// The conditions a caller maps to etcd error codes / HTTP statuses.
enum class mvcc_error : std::uint8_t {
  none,
  compacted,            // errc::not_found, mvcc_messages::compacted
  future_revision,      // errc::invalid_argument, mvcc_messages::future_revision
  duplicate_key,        // errc::invalid_argument
  too_many_operations,  // errc::too_large
  empty_key,            // errc::invalid_argument
  key_not_found,        // errc::not_found (put with ignore_value / ignore_lease)
  value_provided,       // errc::invalid_argument (ignore_value with a value)
  lease_provided,       // errc::invalid_argument (ignore_lease with a lease)
  other,
};
mvcc_error mvcc_error_of(const status& failure) noexcept;

struct put_request;
struct txn_request;
// What etcd's gRPC layer refuses in a put before the store is read (checkPutRequest):
// empty_key, value_provided (ignore_value with a value), lease_provided (ignore_lease
// with a lease). mvcc_store::put checks only the empty key: a caller serving a client
// checks the form first (the kv module does), and a log written before keel checked
// forms replays as it was served.
status check_put_form(const put_request& request);
// What etcd's gRPC layer refuses in a txn before the store is read, in its order
// (checkTxnRequest, then checkIntervals on each branch): too_many_operations (more than
// mvcc_txn_operations_max compares or ops in a branch; a nested txn gets what its
// parent's largest count leaves); empty_key (a compare, or an op of either branch,
// without a key); value_provided / lease_provided (ignore_value with a value,
// ignore_lease with a lease, in either branch); duplicate_key (a key put twice, or put
// and deleted, anywhere in a branch's tree except once in each branch of one nested txn).
// Depends on the request only, so a caller may check it before anything else.
// mvcc_store::txn checks the sizes and duplicate keys, and empty keys on the chosen path,
// but not the rest of the form, for the reason check_put_form gives.
status check_txn_form(const txn_request& request);

// etcd's mvccpb.KeyValue. A tombstone (delete event's kv) has only key and mod_revision.
struct key_value {
  std::string key;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;  // 1 at creation, +1 per put; a delete ends the generation
  std::string value;
  std::int64_t lease = 0;

  bool operator==(const key_value&) const = default;
};

enum class event_type : std::uint8_t { put, remove };

// One change, as a watcher receives it. kv.mod_revision is the revision of the change.
// prev_kv is the version the change replaced (none for a creation).
struct event {
  event_type type = event_type::put;
  key_value kv;
  std::optional<key_value> prev_kv;

  bool operator==(const event&) const = default;
};

// ---- put ----------------------------------------------------------------------------

struct put_request {
  std::string key;  // REQUIRES (else empty_key): not empty
  std::string value;
  std::int64_t lease = 0;  // not checked against the lease table: the caller does that
  bool prev_kv = false;
  bool ignore_value = false;  // keep the current value; key_not_found if there is none
  bool ignore_lease = false;  // keep the current lease; key_not_found if there is none
};

struct put_result {
  std::int64_t revision = 0;         // the revision of the put (the header revision)
  std::optional<key_value> prev_kv;  // only when asked for and the key existed
  std::vector<event> events;         // exactly one
};

// ---- delete_range -------------------------------------------------------------------

// Range ends as etcd: empty = the single key; "\0" = every key >= key; otherwise
// [key, range_end). key "\0" with range_end "\0" is every key.
struct delete_range_request {
  std::string key;  // REQUIRES (else empty_key): not empty
  std::string range_end;
  bool prev_kv = false;
};

struct delete_range_result {
  std::int64_t revision = 0;  // the new revision, or the current one if nothing matched
  std::int64_t deleted = 0;
  std::vector<key_value> prev_kvs;  // only when asked for
  std::vector<event> events;        // one per deleted key, in key order
};

// ---- range --------------------------------------------------------------------------

enum class sort_order : std::uint8_t { none, ascend, descend };
enum class sort_target : std::uint8_t { key, version, create, mod, value };

struct range_request {
  std::string key;  // REQUIRES (else empty_key): not empty
  std::string range_end;
  std::int64_t limit = 0;     // 0 = no limit
  std::int64_t revision = 0;  // <= 0 = the current revision
  sort_order order = sort_order::none;
  sort_target target = sort_target::key;
  bool keys_only = false;
  bool count_only = false;
  std::int64_t min_mod_revision = 0;  // 0 = no bound (as all four)
  std::int64_t max_mod_revision = 0;
  std::int64_t min_create_revision = 0;
  std::int64_t max_create_revision = 0;
  // Bounded walks, for keel's own callers that want neither `count` nor a scan of the whole
  // range (etcd has no such fields; no client surface sets them, the WAL does not hold them):
  // - stop_at_limit: with a limit and no sort order or filters, the walk ends once it has
  //   seen limit + 1 live keys (so `more` is still right); `count` then counts only those.
  // - walk_max > 0: at most this many keys of the index are visited, live or deleted; a
  //   walk that ends there sets range_result::walk_cut, and `kvs`, `more` and `count`
  //   describe only the keys visited.
  bool stop_at_limit = false;
  std::size_t walk_max = 0;
};

struct range_result {
  std::vector<key_value> kvs;
  bool more = false;          // limit cut the result short
  std::int64_t count = 0;     // keys in the range at the revision, before limit and filters
  std::int64_t revision = 0;  // header revision: the store's current revision
  bool walk_cut = false;      // the walk ended at walk_max (see range_request)
};

// ---- txn ----------------------------------------------------------------------------

enum class compare_result : std::uint8_t { equal, not_equal, less, greater };
enum class compare_target : std::uint8_t { version, create, mod, value, lease };

// Holds for every key of [key, range_end) (etcd). A missing key compares as version 0,
// create 0, mod 0, lease 0; a value compare on a missing key is false.
struct compare {
  compare_result result = compare_result::equal;
  compare_target target = compare_target::version;
  std::string key;
  std::string range_end;
  std::int64_t number = 0;  // version / create / mod / lease
  std::string value;        // value
};

struct request_op;

// A nested txn is a request_op of kind txn (etcd 3.3+): its compares are evaluated with
// the parent's, on the state before the outermost txn changed anything.
struct txn_request {
  std::vector<compare> compares;
  std::vector<request_op> success;
  std::vector<request_op> failure;
};

struct request_op {
  enum class kind : std::uint8_t { range, put, delete_range, txn };
  kind type = kind::range;
  range_request range;
  put_request put;
  delete_range_request delete_range;
  txn_request txn;

  static request_op of(range_request r) {
    request_op op;
    op.type = kind::range;
    op.range = std::move(r);
    return op;
  }
  static request_op of(put_request r) {
    request_op op;
    op.type = kind::put;
    op.put = std::move(r);
    return op;
  }
  static request_op of(delete_range_request r) {
    request_op op;
    op.type = kind::delete_range;
    op.delete_range = std::move(r);
    return op;
  }
  static request_op of(txn_request r) {
    request_op op;
    op.type = kind::txn;
    op.txn = std::move(r);
    return op;
  }
};

struct response_op;

struct txn_result {
  bool succeeded = false;
  std::int64_t revision = 0;  // new revision if the branch changed anything, else current
  std::vector<response_op> responses;
  std::vector<event> events;  // every change of the branch, in operation order (outermost only)
};

struct response_op {
  request_op::kind type = request_op::kind::range;
  range_result range;
  put_result put;  // events are in txn_result::events, not here
  delete_range_result delete_range;
  txn_result txn;  // a nested txn's branch and responses (its events are the outer's)
};

// ---- history ------------------------------------------------------------------------

struct events_result {
  std::vector<event> events;  // revision order, then operation order within a revision
  // The revision to ask from next: every event below it has been returned.
  std::int64_t next_revision = 0;
};

// ---- snapshots ----------------------------------------------------------------------

// The head of mvcc_store::save()'s encoding (modules/kv/mvcc/README.md, "Snapshot
// encoding"): "KMVC" in file order, then the format version.
inline constexpr std::uint32_t mvcc_snapshot_magic = 0x43564D4B;
inline constexpr std::uint16_t mvcc_snapshot_version = 1;

// ---- the store ----------------------------------------------------------------------

class mvcc_store {
 public:
  mvcc_store();
  ~mvcc_store();
  mvcc_store(mvcc_store&&) noexcept;
  mvcc_store& operator=(mvcc_store&&) noexcept;
  mvcc_store(const mvcc_store&) = delete;
  mvcc_store& operator=(const mvcc_store&) = delete;

  std::int64_t current_revision() const noexcept;
  // The bytes of keys and values of every retained version, tombstones included (a
  // tombstone counts its key): what compaction can give back. O(1).
  std::uint64_t bytes_held() const noexcept;
  // -1 until the first compact (as etcd's compactMainRev).
  std::int64_t compact_revision() const noexcept;

  result<put_result> put(const put_request& request);
  result<delete_range_result> delete_range(const delete_range_request& request);
  // Deletes each of `keys` that exists, all at one new revision (nothing changes, and the
  // revision stays, when none exists); events in the order of `keys`. No operation limit:
  // a lease revoke deletes every key attached to the lease at once, as etcd. Empty keys
  // are skipped. REQUIRES: no key twice.
  delete_range_result delete_keys(const std::vector<std::string>& keys);
  // Errors: empty_key; future_revision if request.revision > current; compacted if
  // request.revision < compact_revision() (reading at the compact revision works).
  result<range_result> range(const range_request& request) const;
  // The current version of one key, or nullopt when it does not exist (now). The same as
  // range({key}) at the current revision, without building a range result: for callers
  // that look up many single keys (etcd v2's directory walk).
  std::optional<key_value> get(std::string_view key) const;
  // The store keeps no leases: a caller that does says through this whether a put's
  // non-zero lease exists (ok, or the error to answer).
  using lease_check = status (*)(std::int64_t lease);
  // The sizes and duplicate keys of check_txn_form(request) first; then compares — a nested txn's too, along the chosen
  // branches — are evaluated at the current revision before anything changes; the chosen
  // path is checked (every put: key_not_found for ignore_value / ignore_lease on a missing
  // key, then `leases(lease)` for a non-zero lease when given; then every range:
  // future_revision, compacted) and then applied whole at one new revision, or not at all
  // (etcd 3.4's applierV3backend.Txn). Puts on the branches not taken are not checked.
  result<txn_result> txn(const txn_request& request, lease_check leases = nullptr);
  // Keeps, for each key, the latest version at or before `revision` unless it is a
  // tombstone, and drops everything older. Errors: future_revision if revision > current,
  // compacted if revision <= compact_revision().
  status compact(std::int64_t revision);

  // The changes to keys of [key, range_end) at revisions >= start_revision, at most
  // `limit` events (0 = no limit; a revision's events are never split). start_revision
  // <= 0 means "from the next write" (nothing yet). Error: compacted if start_revision
  // <= compact_revision() — stricter than etcd (which accepts == ) because a tombstone
  // at the compact revision is gone, and a watcher must never be given a silent gap; the
  // watcher is told compact_revision() and restarts after it.
  result<events_result> events_since(std::int64_t start_revision, std::string_view key,
                                     std::string_view range_end, std::size_t limit) const;

  // Appends the whole store to `out` (README "Snapshot encoding"): the current and
  // compact revisions, every key's retained history with its tombstones, and the change
  // log in operation order — everything a range at any retained revision, events_since,
  // a txn compare or a later write reads. A store load()ed from it gives the same answers
  // and takes the same writes to the same results. The encoding is canonical (equal
  // stores give equal bytes; save() of a loaded store gives the input back), has no
  // checksum of its own (the snapshot file carries one) and does not say where it ends:
  // a caller that stores more after it frames it. O(versions); does not change the store.
  void save(std::string& out) const;

  // Rebuilds a store from exactly the bytes save() appended. Errors: errc::corruption
  // "mvcc snapshot: byte N: what was wrong" for a truncated or unknown encoding, keys out
  // of order, trailing bytes, or a history or change log that breaks the invariants
  // (README). Never crashes or reads outside `bytes`, whatever they hold (fuzzed by
  // fuzz_mvcc); a store it returns passes check_invariants(). O(versions · log versions).
  // `more_keys`: how many keys the caller expects to add soon after (a WAL about to be
  // replayed): the point index is sized for them once, instead of rehashing every loaded
  // key when it grows. Only a hint; it changes no answer.
  static result<mvcc_store> load(std::string_view bytes, std::size_t more_keys = 0);
  // Room for `more` keys beyond those held, without rehashing (the same hint for a store
  // that starts without a snapshot). Changes no answer.
  void reserve_keys(std::size_t more);

  // The invariant checker (README "Invariants"). Returns the first violation found.
  // Tests run it after every step; it walks the whole store (O(versions)).
  status check_invariants() const;

  // Number of keys with any history and of stored versions (tests, stats).
  std::size_t key_count() const noexcept;
  std::size_t version_count() const noexcept;

 private:
  std::unique_ptr<detail::mvcc_state> _state;
};

}  // namespace keel::kv
