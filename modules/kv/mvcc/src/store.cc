// mvcc_store: puts, deletes, ranges, transactions, compaction and history. The rules are
// etcd 3.4's (mvcc/kvstore_txn.go, mvcc/key_index.go, etcdserver/apply.go); where keel
// differs the comment says why.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

#include "keel/assert.h"
#include "keel/kv/mvcc.h"
#include "state.h"

namespace keel::kv {

using detail::in_range;
using detail::key_history;
using detail::range_to_infinity;
using detail::version_entry;

namespace {

status error(errc code, std::string_view message) { return status(code, std::string(message)); }
status empty_key_error() { return error(errc::invalid_argument, mvcc_messages::empty_key); }
status compacted_error() { return error(errc::not_found, mvcc_messages::compacted); }
status future_error() { return error(errc::invalid_argument, mvcc_messages::future_revision); }

// The version live at `revision` (the latest with mod_revision <= revision), or null if
// there is none or it is a tombstone.
const version_entry* live_at(const key_history& history, std::int64_t revision) {
  const auto& versions = history.versions;
  auto after = std::upper_bound(
      versions.begin(), versions.end(), revision,
      [](std::int64_t rev, const version_entry& entry) { return rev < entry.mod_revision; });
  if (after == versions.begin()) return nullptr;
  const version_entry& entry = *std::prev(after);
  return entry.tombstone ? nullptr : &entry;
}

const version_entry* live_latest(const key_history& history) {
  KEEL_ASSERT(!history.versions.empty());
  const version_entry& last = history.versions.back();
  return last.tombstone ? nullptr : &last;
}

key_value to_key_value(const std::string& key, const version_entry& entry) {
  return key_value{key,           entry.create_revision, entry.mod_revision,
                   entry.version, entry.value,           entry.lease};
}

// Calls fn(key, history) for every key of the index in [key, range_end), in key order;
// stops when fn returns false. A single key is found by hash. Index is a key_index or a
// const one: the history fn gets is as const as the index; the key is always const (both
// of the index's maps view it).
template <typename Index, typename Fn>
void for_each_in_range(Index& index, std::string_view key, std::string_view range_end, Fn fn) {
  auto call = [&](auto* n) {
    if constexpr (std::is_const_v<Index>) return fn(std::as_const(n->key), std::as_const(n->history));
    else return fn(std::as_const(n->key), n->history);
  };
  if (range_end.empty()) {
    if (auto* n = index.find(key)) call(n);
    return;
  }
  bool to_end = range_to_infinity(range_end);
  const auto& ordered = index.ordered();
  for (auto it = ordered.lower_bound(detail::as_absl(key)); it != ordered.end(); ++it) {
    if (!to_end && std::string_view(it->first.data(), it->first.size()) >= range_end) break;
    if (!call(it->second)) break;
  }
}

// ---- range ----------------------------------------------------------------------------

bool passes_filters(const range_request& r, const key_value& kv) {
  if (r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision) return false;
  if (r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision) return false;
  if (r.min_create_revision != 0 && kv.create_revision < r.min_create_revision) return false;
  if (r.max_create_revision != 0 && kv.create_revision > r.max_create_revision) return false;
  return true;
}

bool has_filters(const range_request& r) {
  return r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 ||
         r.max_create_revision != 0;
}

// Negative, zero or positive as a is before, with or after b on the target.
int compare_on(sort_target target, const key_value& a, const key_value& b) {
  auto three_way = [](auto x, auto y) { return x < y ? -1 : (y < x ? 1 : 0); };
  switch (target) {
    case sort_target::key: return a.key.compare(b.key) < 0 ? -1 : (a.key == b.key ? 0 : 1);
    case sort_target::version: return three_way(a.version, b.version);
    case sort_target::create: return three_way(a.create_revision, b.create_revision);
    case sort_target::mod: return three_way(a.mod_revision, b.mod_revision);
    case sort_target::value:
      return a.value.compare(b.value) < 0 ? -1 : (a.value == b.value ? 0 : 1);
  }
  KEEL_PANIC("unknown sort target");
}

void sort_kvs(const range_request& r, std::vector<key_value>& kvs) {
  sort_order order = r.order;
  // etcd: results come in ascending key order; any other target with no order is ascend.
  if (r.target != sort_target::key && order == sort_order::none) order = sort_order::ascend;
  if (order == sort_order::none) return;
  // Stable, so ties keep ascending key order (etcd's sort.Sort leaves ties unspecified).
  if (order == sort_order::ascend) {
    std::stable_sort(kvs.begin(), kvs.end(), [&](const key_value& a, const key_value& b) {
      return compare_on(r.target, a, b) < 0;
    });
  } else {
    std::stable_sort(kvs.begin(), kvs.end(), [&](const key_value& a, const key_value& b) {
      return compare_on(r.target, a, b) > 0;
    });
  }
}

// `current` is the revision of the read view: the store's, or inside a transaction that
// has written, the transaction's own.
result<range_result> do_range(const detail::mvcc_state& s, const range_request& r,
                              std::int64_t current) {
  if (r.key.empty()) return empty_key_error();
  std::int64_t revision = r.revision <= 0 ? current : r.revision;
  if (revision > current) return future_error();
  if (revision < s.compacted) return compacted_error();

  range_result out;
  out.revision = current;
  // Without a sort order or filters only limit + 1 kvs are copied (count is always every
  // key). As etcd's applierV3backend.Range, a target other than key with no order sorts
  // ascending only those: the first limit + 1 keys in key order, not the whole range.
  bool fetch_all = r.order != sort_order::none || has_filters(r);
  // keys_only blanks values after the sort, which may be on them.
  bool blank_now = r.keys_only && r.target != sort_target::value;
  std::size_t copy_max = (r.count_only)                ? 0
                         : (fetch_all || r.limit <= 0) ? SIZE_MAX
                                                       : static_cast<std::size_t>(r.limit) + 1;
  // stop_at_limit: the walk may end once limit + 1 live keys are in (count unwanted).
  const std::int64_t stop_after =
      (r.stop_at_limit && !fetch_all && !r.count_only && r.limit > 0) ? r.limit + 1 : 0;
  std::size_t walked = 0;
  for_each_in_range(s.index, r.key, r.range_end,
                    [&](const std::string& key, const key_history& history) {
                      if (r.walk_max != 0 && walked++ == r.walk_max) {
                        out.walk_cut = true;
                        return false;
                      }
                      const version_entry* entry = live_at(history, revision);
                      if (entry == nullptr) return true;
                      ++out.count;
                      if (out.kvs.size() < copy_max) {
                        out.kvs.push_back(to_key_value(key, *entry));
                        if (blank_now) out.kvs.back().value.clear();
                      }
                      return stop_after == 0 || out.count < stop_after;
                    });
  if (r.count_only) return out;
  if (has_filters(r)) {
    std::erase_if(out.kvs, [&](const key_value& kv) { return !passes_filters(r, kv); });
  }
  sort_kvs(r, out.kvs);
  if (r.limit > 0 && out.kvs.size() > static_cast<std::size_t>(r.limit)) {
    out.kvs.resize(static_cast<std::size_t>(r.limit));
    out.more = true;
  }
  if (r.keys_only && !blank_now)
    for (key_value& kv : out.kvs) kv.value.clear();
  return out;
}

// ---- writes ---------------------------------------------------------------------------

// The changes of one put, delete_range or txn, all at revision `revision`. Nothing is
// visible to other callers before finish(); the store is single-threaded, so "atomic"
// means the revision advances once, after every change is in.
class write_batch {
 public:
  explicit write_batch(detail::mvcc_state& s) : _state(s), _revision(s.current + 1) {}

  std::int64_t read_revision() const { return _changed ? _revision : _state.current; }
  std::vector<event>& events() { return _events; }

  void put(const put_request& request, put_result& out) {
    key_history& history = _state.index.find_or_insert(request.key);
    const version_entry* previous = history.versions.empty() ? nullptr : live_latest(history);
    KEEL_ASSERT(previous == nullptr || previous->mod_revision < _revision);
    version_entry entry;
    entry.mod_revision = _revision;
    entry.create_revision = previous ? previous->create_revision : _revision;
    entry.version = previous ? previous->version + 1 : 1;
    entry.value = request.ignore_value && previous ? previous->value : request.value;
    entry.lease = request.ignore_lease && previous ? previous->lease : request.lease;
    event change{event_type::put, to_key_value(request.key, entry), std::nullopt};
    if (previous) change.prev_kv = to_key_value(request.key, *previous);
    if (request.prev_kv) out.prev_kv = change.prev_kv;
    _state.bytes += detail::version_bytes(request.key, entry);
    history.versions.push_back(std::move(entry));
    record(request.key, std::move(change));
    out.revision = _revision;
  }

  void remove(const delete_range_request& request, delete_range_result& out) {
    for_each_in_range(_state.index, request.key, request.range_end,
                      [&](const std::string& key, key_history& history) {
                        const version_entry* previous = live_latest(history);
                        if (previous == nullptr) return true;
                        event change{event_type::remove, key_value{}, to_key_value(key, *previous)};
                        change.kv.key = key;
                        change.kv.mod_revision = _revision;
                        if (request.prev_kv) out.prev_kvs.push_back(*change.prev_kv);
                        version_entry tombstone;
                        tombstone.mod_revision = _revision;
                        tombstone.tombstone = true;
                        _state.bytes += detail::version_bytes(key, tombstone);
                        history.versions.push_back(std::move(tombstone));
                        ++out.deleted;
                        record(key, std::move(change));
                        return true;
                      });
    out.revision = out.deleted > 0 ? _revision : read_revision();
  }

  // Advances the store's revision if anything changed; returns the header revision.
  std::int64_t finish() {
    if (!_changed) return _state.current;
    KEEL_ASSERT(_state.current + 1 == _revision);
    _state.current = _revision;
    return _revision;
  }

 private:
  void record(const std::string& key, event change) {
    _changed = true;
    _state.changes[_revision].push_back(key);
    _events.push_back(std::move(change));
  }

  detail::mvcc_state& _state;
  std::int64_t _revision;
  bool _changed = false;
  std::vector<event> _events;
};

// etcd checkPutRequest (its gRPC layer, before the store is read): a key, and no value or
// lease beside the flag that keeps the old one.
status check_put_request(const put_request& r) {
  if (r.key.empty()) return empty_key_error();
  if (r.ignore_value && !r.value.empty()) return error(errc::invalid_argument, mvcc_messages::value_provided);
  if (r.ignore_lease && r.lease != 0) return error(errc::invalid_argument, mvcc_messages::lease_provided);
  return status::ok();
}

// etcd checkRequestPut (at apply): ignore_value / ignore_lease need the key to exist.
// Not the form (check_put_request): a log written before keel checked it must replay
// as it was served.
status check_put(const detail::mvcc_state& s, const put_request& r) {
  if (r.key.empty()) return empty_key_error();
  if (r.ignore_value || r.ignore_lease) {
    const detail::key_index::node* n = s.index.find(r.key);
    if (n == nullptr || live_latest(n->history) == nullptr) {
      return error(errc::not_found, mvcc_messages::key_not_found);
    }
  }
  return status::ok();
}

// ---- txn ------------------------------------------------------------------------------

template <typename T>
bool holds(compare_result want, T a, T b) {
  switch (want) {
    case compare_result::equal: return a == b;
    case compare_result::not_equal: return a != b;
    case compare_result::less: return a < b;
    case compare_result::greater: return a > b;
  }
  KEEL_PANIC("unknown compare result");
}

bool compare_holds(const compare& c, const key_value& kv) {
  switch (c.target) {
    case compare_target::version: return holds(c.result, kv.version, c.number);
    case compare_target::create: return holds(c.result, kv.create_revision, c.number);
    case compare_target::mod: return holds(c.result, kv.mod_revision, c.number);
    case compare_target::lease: return holds(c.result, kv.lease, c.number);
    case compare_target::value:
      return holds(c.result, std::string_view(kv.value), std::string_view(c.value));
  }
  KEEL_PANIC("unknown compare target");
}

// etcd applyCompare: every live key of the range must satisfy it; with no key, a value
// compare fails and the others compare against zeros.
bool evaluate(const detail::mvcc_state& s, const compare& c) {
  bool any = false;
  bool all = true;
  if (!c.key.empty()) {
    for_each_in_range(s.index, c.key, c.range_end,
                      [&](const std::string& key, const key_history& history) {
                        const version_entry* entry = live_latest(history);
                        if (entry == nullptr) return true;
                        any = true;
                        all = compare_holds(c, to_key_value(key, *entry));
                        return all;
                      });
  }
  if (!any) return c.target != compare_target::value && compare_holds(c, key_value{});
  return all;
}

status check_txn_request(const txn_request& t, std::size_t max, bool forms);

// etcd checkRequestOp: one op of either branch, as the request gives it.
status check_request_op(const request_op& op, std::size_t max, bool forms) {
  if (op.type == request_op::kind::txn) return check_txn_request(op.txn, max, forms);
  if (!forms) return status::ok();
  switch (op.type) {
    case request_op::kind::range: return op.range.key.empty() ? empty_key_error() : status::ok();
    case request_op::kind::put: return check_put_request(op.put);
    case request_op::kind::delete_range:
      return op.delete_range.key.empty() ? empty_key_error() : status::ok();
    case request_op::kind::txn: break;
  }
  return status::ok();
}

// etcd checkTxnRequest (its gRPC layer, before the store is read), in its order: at most
// `max` compares and ops in each branch (a nested txn gets what its parent's largest count
// leaves), a key on every compare, then every op of success and of failure well formed,
// whichever branch the compares will choose. With forms false, only the sizes: what the
// store checks at apply (a log written before keel checked the forms replays as served).
status check_txn_request(const txn_request& t, std::size_t max, bool forms) {
  std::size_t counted = std::max({t.compares.size(), t.success.size(), t.failure.size()});
  if (counted > max) return error(errc::too_large, mvcc_messages::too_many_operations);
  if (forms)
    for (const compare& c : t.compares)
      if (c.key.empty()) return empty_key_error();
  for (const auto* branch : {&t.success, &t.failure})
    for (const request_op& op : *branch)
      if (status checked = check_request_op(op, max - counted, forms); !checked) return checked;
  return status::ok();
}

// A union of key ranges, kept as disjoint [start, end) intervals ("" as end: to the end
// of the keyspace), so that covers() and any_in() take O(log n) however many deletes a
// txn tree holds (a 1.5 MiB request can hold tens of thousands).
class key_ranges {
 public:
  // A delete's range, as in_range() reads it.
  void add(std::string_view key, std::string_view range_end) {
    std::string begin(key), end;
    if (range_end.empty()) {
      end = begin;
      end.push_back('\0');  // the key alone: [key, key + "\0")
    } else if (!range_to_infinity(range_end)) {
      if (range_end <= key) return;  // an empty range
      end = std::string(range_end);
    }
    auto it = _ranges.upper_bound(begin);
    if (it != _ranges.begin()) {
      auto before = std::prev(it);
      if (before->second.empty() || before->second >= begin) {  // overlaps or touches
        begin = before->first;
        end = later_end(end, before->second);
        _ranges.erase(before);
      }
    }
    it = _ranges.lower_bound(begin);
    while (it != _ranges.end() && (end.empty() || it->first <= end)) {
      end = later_end(end, it->second);
      it = _ranges.erase(it);
    }
    _ranges.emplace(std::move(begin), std::move(end));
  }
  void add_all(const key_ranges& other) {
    for (const auto& [begin, end] : other._ranges) add_interval(begin, end);
  }
  bool covers(std::string_view key) const {
    auto it = _ranges.upper_bound(key);
    if (it == _ranges.begin()) return false;
    const std::string& end = std::prev(it)->second;
    return end.empty() || key < end;
  }
  // Whether some key of `keys` lies in one of the ranges.
  bool any_in(const std::set<std::string_view>& keys) const {
    for (const auto& [begin, end] : _ranges) {
      auto it = keys.lower_bound(begin);
      if (it != keys.end() && (end.empty() || *it < end)) return true;
    }
    return false;
  }

 private:
  static std::string later_end(const std::string& a, const std::string& b) {
    if (a.empty() || b.empty()) return {};
    return std::max(a, b);
  }
  void add_interval(const std::string& begin, const std::string& end) {
    // Re-expressed as a delete range: "" end is to infinity ("\0").
    add(begin, end.empty() ? std::string_view("\0", 1) : std::string_view(end));
  }
  std::map<std::string, std::string, std::less<>> _ranges;
};

status duplicate_key() { return error(errc::invalid_argument, mvcc_messages::duplicate_key); }

// etcd checkIntervals over one list of ops: the keys they put and the ranges they delete,
// or duplicate_key when a key is put twice or put and deleted. A key may be put once in
// each branch of a nested txn (only one of them runs). Stricter than etcd in one case: a
// key put by one nested txn and deleted by a later sibling is refused (etcd applies both
// at one revision; keel's history cannot hold a put and a tombstone of one key at one
// revision).
status check_intervals(const std::vector<request_op>& ops, std::set<std::string_view>& puts, key_ranges& deletes) {
  for (const request_op& op : ops)
    if (op.type == request_op::kind::delete_range) deletes.add(op.delete_range.key, op.delete_range.range_end);
  for (const request_op& op : ops) {
    if (op.type != request_op::kind::txn) continue;
    std::set<std::string_view> puts_then, puts_else;
    key_ranges deletes_then, deletes_else;
    if (status checked = check_intervals(op.txn.success, puts_then, deletes_then); !checked) return checked;
    if (status checked = check_intervals(op.txn.failure, puts_else, deletes_else); !checked) return checked;
    if (deletes_then.any_in(puts) || deletes_else.any_in(puts)) return duplicate_key();
    for (std::string_view key : puts_then) {
      if (puts.contains(key) || deletes.covers(key)) return duplicate_key();
      puts.insert(key);
    }
    for (std::string_view key : puts_else) {
      if ((puts.contains(key) && !puts_then.contains(key)) || deletes.covers(key)) return duplicate_key();
      puts.insert(key);
    }
    deletes.add_all(deletes_then);
    deletes.add_all(deletes_else);
  }
  for (const request_op& op : ops) {
    if (op.type != request_op::kind::put) continue;
    if (puts.contains(op.put.key) || deletes.covers(op.put.key)) return duplicate_key();
    puts.insert(op.put.key);
  }
  return status::ok();
}

status check_branches(const txn_request& t) {
  for (const auto* branch : {&t.success, &t.failure}) {
    std::set<std::string_view> puts;
    key_ranges deletes;
    if (status checked = check_intervals(*branch, puts, deletes); !checked) return checked;
  }
  return status::ok();
}

// etcd compareToPath: the branch each txn on the chosen path takes, in pre-order, all
// decided on the state before the outermost txn changes anything.
void choose_path(const detail::mvcc_state& s, const txn_request& t, std::vector<bool>& path) {
  bool succeeded = std::all_of(t.compares.begin(), t.compares.end(), [&](const compare& c) { return evaluate(s, c); });
  path.push_back(succeeded);
  for (const request_op& op : succeeded ? t.success : t.failure)
    if (op.type == request_op::kind::txn) choose_path(s, op.txn, path);
}

// Calls check(op) on every put, delete_range and range of the chosen path, in pre-order,
// until one fails (etcd's checkRequests).
template <typename Check>
status check_on_path(const txn_request& t, const std::vector<bool>& path, std::size_t& at, const Check& check) {
  for (const request_op& op : path[at++] ? t.success : t.failure) {
    status checked = op.type == request_op::kind::txn ? check_on_path(op.txn, path, at, check) : check(op);
    if (!checked) return checked;
  }
  return status::ok();
}

// What on the chosen path can fail against the store, checked before the first change and
// in etcd's order (applierV3backend.Txn): every put first (checkRequestPut), then every
// range (checkRequestRange). An empty key on the path (which check_txn_form refuses when a
// client sends it) is refused here too, so that apply_path never meets one.
status check_path(const detail::mvcc_state& s, const txn_request& t, const std::vector<bool>& path,
                  mvcc_store::lease_check leases) {
  std::size_t at = 0;
  status puts = check_on_path(t, path, at, [&](const request_op& op) {
    if (op.type == request_op::kind::delete_range && op.delete_range.key.empty()) return empty_key_error();
    if (op.type != request_op::kind::put) return status::ok();
    if (status checked = check_put(s, op.put); !checked) return checked;
    return leases && op.put.lease != 0 ? leases(op.put.lease) : status::ok();
  });
  if (!puts) return puts;
  at = 0;
  return check_on_path(t, path, at, [&](const request_op& op) {
    if (op.type != request_op::kind::range) return status::ok();
    if (op.range.key.empty()) return empty_key_error();
    if (op.range.revision > s.current) return future_error();
    if (op.range.revision > 0 && op.range.revision < s.compacted) return compacted_error();
    return status::ok();
  });
}

// Applies the chosen path in operation order; a range reads what the txn wrote before it.
void apply_path(const detail::mvcc_state& s, write_batch& batch, const txn_request& t, const std::vector<bool>& path,
                std::size_t& at, bool& succeeded, std::vector<response_op>& responses) {
  succeeded = path[at++];
  for (const request_op& op : succeeded ? t.success : t.failure) {
    response_op response;
    response.type = op.type;
    switch (op.type) {
      case request_op::kind::range: {
        auto ranged = do_range(s, op.range, batch.read_revision());
        KEEL_ASSERT_MSG(ranged.is_ok(), "txn range failed after check_path");
        response.range = std::move(ranged.value());
        break;
      }
      case request_op::kind::put: batch.put(op.put, response.put); break;
      case request_op::kind::delete_range: batch.remove(op.delete_range, response.delete_range); break;
      case request_op::kind::txn:
        apply_path(s, batch, op.txn, path, at, response.txn.succeeded, response.txn.responses);
        break;
    }
    responses.push_back(std::move(response));
  }
}

// A nested txn's header revision is the txn's. Puts and delete_ranges keep their own,
// as etcd's: the txn's new revision, except a delete_range that removed nothing before
// the txn's first change, which reads the revision before it (storeTxnWrite.DeleteRange).
void set_write_revisions(std::vector<response_op>& responses, std::int64_t revision) {
  for (response_op& response : responses) {
    if (response.type == request_op::kind::txn) {
      response.txn.revision = revision;
      set_write_revisions(response.txn.responses, revision);
    }
  }
}

}  // namespace

// ---- mvcc_store -----------------------------------------------------------------------

mvcc_store::mvcc_store() : _state(std::make_unique<detail::mvcc_state>()) {}
mvcc_store::~mvcc_store() = default;
mvcc_store::mvcc_store(mvcc_store&&) noexcept = default;
mvcc_store& mvcc_store::operator=(mvcc_store&&) noexcept = default;

std::int64_t mvcc_store::current_revision() const noexcept { return _state->current; }
std::int64_t mvcc_store::compact_revision() const noexcept { return _state->compacted; }
std::uint64_t mvcc_store::bytes_held() const noexcept { return _state->bytes; }

std::size_t mvcc_store::key_count() const noexcept { return _state->index.size(); }
void mvcc_store::reserve_keys(std::size_t more) { _state->index.reserve(_state->index.size() + more); }
std::size_t mvcc_store::version_count() const noexcept {
  std::size_t n = 0;
  for (const auto& [key, node] : _state->index.ordered()) n += node->history.versions.size();
  return n;
}

result<put_result> mvcc_store::put(const put_request& request) {
  status checked = check_put(*_state, request);
  if (!checked) return checked;
  write_batch batch(*_state);
  put_result out;
  batch.put(request, out);
  out.events = std::move(batch.events());
  out.revision = batch.finish();
  return out;
}

result<delete_range_result> mvcc_store::delete_range(const delete_range_request& request) {
  if (request.key.empty()) return empty_key_error();
  write_batch batch(*_state);
  delete_range_result out;
  batch.remove(request, out);
  out.events = std::move(batch.events());
  out.revision = batch.finish();
  return out;
}

delete_range_result mvcc_store::delete_keys(const std::vector<std::string>& keys) {
  write_batch batch(*_state);
  delete_range_result out;
  for (const std::string& key : keys) {
    if (key.empty()) continue;
    delete_range_request one;
    one.key = key;
    delete_range_result part;
    batch.remove(one, part);
    out.deleted += part.deleted;
  }
  out.events = std::move(batch.events());
  out.revision = batch.finish();
  return out;
}

std::optional<key_value> mvcc_store::get(std::string_view key) const {
  const detail::key_index::node* n = _state->index.find(key);
  if (n == nullptr || n->history.versions.empty()) return std::nullopt;
  const version_entry* latest = live_latest(n->history);
  if (latest == nullptr) return std::nullopt;
  return to_key_value(n->key, *latest);
}

result<range_result> mvcc_store::range(const range_request& request) const {
  return do_range(*_state, request, _state->current);
}

status check_put_form(const put_request& request) { return check_put_request(request); }

status check_txn_form(const txn_request& request) {
  if (status checked = check_txn_request(request, mvcc_txn_operations_max, true); !checked) return checked;
  return check_branches(request);
}

result<txn_result> mvcc_store::txn(const txn_request& request, lease_check leases) {
  if (status checked = check_txn_request(request, mvcc_txn_operations_max, false); !checked) return checked;
  if (status checked = check_branches(request); !checked) return checked;
  std::vector<bool> path;
  choose_path(*_state, request, path);
  if (status checked = check_path(*_state, request, path, leases); !checked) return checked;

  txn_result out;
  write_batch batch(*_state);
  std::size_t at = 0;
  apply_path(*_state, batch, request, path, at, out.succeeded, out.responses);
  out.events = std::move(batch.events());
  out.revision = batch.finish();
  set_write_revisions(out.responses, out.revision);
  return out;
}

status mvcc_store::compact(std::int64_t revision) {
  detail::mvcc_state& s = *_state;
  if (revision > s.current) return future_error();
  if (revision <= s.compacted) return compacted_error();
  const auto& ordered = s.index.ordered();
  for (auto it = ordered.begin(); it != ordered.end();) {
    const std::string& key = it->second->key;
    auto& versions = it->second->history.versions;
    auto after = std::upper_bound(
        versions.begin(), versions.end(), revision,
        [](std::int64_t rev, const version_entry& entry) { return rev < entry.mod_revision; });
    if (after != versions.begin()) {
      auto kept = std::prev(after);
      // The latest version at or before the compact revision stays unless it is a
      // tombstone: a tombstone only ends a generation nobody can read any more.
      auto dropped_end = kept->tombstone ? after : kept;
      for (auto v = versions.begin(); v != dropped_end; ++v) s.bytes -= detail::version_bytes(key, *v);
      versions.erase(versions.begin(), dropped_end);
    }
    if (versions.empty()) {
      it = s.index.erase(it);
    } else {
      ++it;
    }
  }
  s.changes.erase(s.changes.begin(), s.changes.upper_bound(revision));
  s.compacted = revision;
  return status::ok();
}

result<events_result> mvcc_store::events_since(std::int64_t start_revision, std::string_view key,
                                               std::string_view range_end,
                                               std::size_t limit) const {
  const detail::mvcc_state& s = *_state;
  events_result out;
  out.next_revision = s.current + 1;
  if (start_revision <= 0) return out;
  if (start_revision <= s.compacted) return compacted_error();
  for (auto it = s.changes.lower_bound(start_revision); it != s.changes.end(); ++it) {
    const std::int64_t revision = it->first;
    if (limit > 0 && out.events.size() >= limit) {
      out.next_revision = revision;
      break;
    }
    for (const std::string& changed : it->second) {
      if (!in_range(key, range_end, changed)) continue;
      const auto& versions = s.index.find(changed)->history.versions;
      auto at = std::lower_bound(
          versions.begin(), versions.end(), revision,
          [](const version_entry& entry, std::int64_t rev) { return entry.mod_revision < rev; });
      KEEL_ASSERT(at != versions.end() && at->mod_revision == revision);
      const version_entry* previous = at == versions.begin() ? nullptr : &*std::prev(at);
      if (previous != nullptr && previous->tombstone) previous = nullptr;
      event change;
      if (at->tombstone) {
        KEEL_ASSERT(previous != nullptr);
        change.type = event_type::remove;
        change.kv.key = changed;
        change.kv.mod_revision = revision;
      } else {
        change.type = event_type::put;
        change.kv = to_key_value(changed, *at);
      }
      if (previous != nullptr) change.prev_kv = to_key_value(changed, *previous);
      out.events.push_back(std::move(change));
    }
  }
  return out;
}

mvcc_error mvcc_error_of(const status& failure) noexcept {
  if (failure.is_ok()) return mvcc_error::none;
  std::string_view message = failure.message();
  if (message == mvcc_messages::compacted) return mvcc_error::compacted;
  if (message == mvcc_messages::future_revision) return mvcc_error::future_revision;
  if (message == mvcc_messages::duplicate_key) return mvcc_error::duplicate_key;
  if (message == mvcc_messages::too_many_operations) return mvcc_error::too_many_operations;
  if (message == mvcc_messages::empty_key) return mvcc_error::empty_key;
  if (message == mvcc_messages::key_not_found) return mvcc_error::key_not_found;
  if (message == mvcc_messages::value_provided) return mvcc_error::value_provided;
  if (message == mvcc_messages::lease_provided) return mvcc_error::lease_provided;
  return mvcc_error::other;
}

}  // namespace keel::kv
