// v2_store.cc — etcd's v2 store operations (get, set/create/update/compareAndSwap, delete/
// compareAndDelete) over the MVCC keyspace, on the owner shard. See v2.h for the mapping
// and README.md "etcd v2" for the rules and where they differ from etcd.
//
// Every write reads the store, decides, and writes in one synchronous step on the owner
// shard (no co_await between the first read and the owner_txn / owner_delete_range), so
// two compare-and-swaps on one key can never both succeed; only then does it wait for
// owner_commit(), and it answers only when that succeeded.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <unordered_map>
#include <variant>

#include "codec.h"
#include "core.h"
#include "v2.h"

namespace keel::kv_module::v2 {

namespace {

using key_value = kv::key_value;

// ---- the keyspace ---------------------------------------------------------------------------

// The end of the range of every key under `prefix`, which ends in '/': "/a/" -> "/a0".
std::string under_end(std::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>('/' + 1);
  return end;
}

// The revision v2 reads see: 0 = the store's newest (the read then waits until that is
// durable: finish()); after the WAL failed, the last durable one, set by owner_get around
// read_node (read_node does not suspend). Per thread: a GET read on another shard
// (read_here) runs beside the owner's.
thread_local std::int64_t read_revision = 0;

// A GET being read on the connection's shard (read_here) rather than on the owner: the
// store is read through a store_read, and whatever only the owner may read (the lease
// table, for a TTL) or would hold the store too long (a large directory) sends the GET to
// the owner instead.
struct reading_here {
  bool needs_owner = false;
};
thread_local reading_here* here = nullptr;
// What a GET read here may cost inside the store_read, so that the owner's next change
// never waits long for it: the keys under a directory it lists, the index entries (live or
// deleted) one range may visit, the path's length. More is read on the owner.
constexpr std::int64_t keys_read_here_max = 64;
constexpr std::size_t index_walk_here_max = 1024;
constexpr std::size_t path_read_here_max = 512;

std::optional<key_value> read_key(const std::string& key) {
  if (read_revision == 0) return owner_store().get(key);
  kv::range_request request;
  request.key = key;
  request.revision = read_revision;
  auto found = owner_store().range(request);
  if (!found || found->kvs.empty()) return std::nullopt;
  return std::move(found->kvs.front());
}

// Whether some key lies under `prefix` ("/a/"), not counting the marker `prefix` itself
// when `besides_marker`.
bool any_under(const std::string& prefix, bool besides_marker) {
  kv::range_request request;
  request.key = prefix;
  if (besides_marker) request.key.push_back('\0');  // the smallest key after the marker
  request.range_end = under_end(prefix);
  request.limit = 1;
  request.keys_only = true;
  request.stop_at_limit = true;  // the first key will do; no count of them all
  request.revision = read_revision;
  if (here) request.walk_max = index_walk_here_max;
  auto found = owner_store().range(request);
  if (here && found && found->walk_cut) here->needs_owner = true;
  return found && !found->kvs.empty();
}

std::vector<key_value> read_under(const std::string& prefix) {
  kv::range_request request;
  request.key = prefix;
  request.range_end = under_end(prefix);
  request.revision = read_revision;
  if (here) {
    request.limit = keys_read_here_max;
    request.stop_at_limit = true;
    request.walk_max = index_walk_here_max;
  }
  auto found = owner_store().range(request);
  if (!found) return {};
  if (here && (found->more || found->walk_cut)) {
    here->needs_owner = true;
    return {};
  }
  return std::move(found->kvs);
}

// ---- TTLs -----------------------------------------------------------------------------------

// Owner shard only. The exact expiry of the leases v2 granted, so that "expiration" is
// what etcd would print (the engine only tells remaining seconds, rounded up).
struct owner_state {
  std::unordered_map<std::int64_t, std::int64_t> expirations;  // lease -> Unix ns
  std::uint64_t grants = 0;
};
owner_state& owner() {
  static owner_state state;
  return state;
}

struct ttl_view {
  std::int64_t expiration_ns = 0;
  std::int64_t ttl = 0;
};

// now + ttl seconds in Unix ns, or 0 when that lies beyond what int64 nanoseconds hold
// (the year 2262, ttl > ~7.4e9 s): etcd 3.4's expiration overflows there, and the key is
// shown without "expiration" and "ttl", as a permanent one; so is keel's (it used to
// print a date in 1695).
std::int64_t expiry_after(std::int64_t now, std::int64_t ttl) {
  if (ttl > (std::numeric_limits<std::int64_t>::max() - now) / 1'000'000'000) return 0;
  return now + ttl * 1'000'000'000;
}

ttl_view lease_view(std::int64_t lease, std::int64_t now) {
  if (lease == 0) return {};
  if (here) {  // the lease table is the owner's
    here->needs_owner = true;
    return {};
  }
  std::optional<lease_status> status = owner_lease(lease, false);
  if (!status) return {};
  std::int64_t expiration = expiry_after(now, status->ttl);
  if (expiration == 0) return {};
  auto it = owner().expirations.find(lease);
  // Trust our exact time unless the lease was renewed behind our back (a v3 keep-alive).
  if (it != owner().expirations.end() &&
      std::llabs(ttl_seconds(it->second, now) - status->ttl) <= 1)
    expiration = it->second;
  return {expiration, ttl_seconds(expiration, now)};
}

void forget_dead_leases() {
  auto& map = owner().expirations;
  for (auto it = map.begin(); it != map.end();) {
    if (!owner_lease(it->first, false))
      it = map.erase(it);
    else
      ++it;
  }
}

result<std::int64_t> grant(std::uint64_t ttl, std::int64_t now) {
  auto granted = owner_lease_grant(static_cast<std::int64_t>(ttl), 0);
  if (!granted) return granted.error();
  owner().expirations[granted->id] = expiry_after(now, granted->ttl);
  if (++owner().grants % 1024 == 0) forget_dead_leases();
  return granted->id;
}

// Revokes `lease` when no key uses it any more (a TTL replaced or its key deleted).
void release_if_unused(std::int64_t lease) {
  if (lease == 0) return;
  std::optional<lease_status> status = owner_lease(lease, true);
  if (status && status->keys.empty()) {
    (void)owner_lease_revoke(lease);
    owner().expirations.erase(lease);
  }
}

// ---- nodes ----------------------------------------------------------------------------------

// `inherited` is the lease of the nearest enclosing directory with a TTL: a key on it
// shares the directory's TTL and shows none of its own (as in etcd).
node file_node(const key_value& kv, std::int64_t inherited, std::int64_t now) {
  node n;
  n.key = kv.key;
  n.value = kv.value;
  n.modified_index = kv.mod_revision;
  n.created_index = kv.create_revision;
  if (kv.lease != 0 && kv.lease != inherited) {
    ttl_view view = lease_view(kv.lease, now);
    n.expiration_ns = view.expiration_ns;
    n.ttl = view.ttl;
  }
  return n;
}

// An implicit directory (keys under it, no marker) has no indexes. A directory's
// modifiedIndex is its createdIndex, as in etcd, whose Update cannot write a directory
// node (only the update event shows the new index).
node dir_node(std::string path, const key_value* marker, std::int64_t inherited, std::int64_t now) {
  node n;
  n.key = std::move(path);
  n.dir = true;
  if (marker) {
    n.modified_index = marker->create_revision;
    n.created_index = marker->create_revision;
    if (marker->lease != 0 && marker->lease != inherited) {
      ttl_view view = lease_view(marker->lease, now);
      n.expiration_ns = view.expiration_ns;
      n.ttl = view.ttl;
    }
  }
  return n;
}

// The children of the directory whose keys are kvs[begin, end) (sorted, all starting with
// the directory's prefix of `prefix_length` bytes, "/a/"). Children come out sorted by
// key; hidden ones ("_name") are left out; with `recursive`, directories carry their own.
void list_children(const std::vector<key_value>& kvs, std::size_t begin, std::size_t end,
                   std::size_t prefix_length, bool recursive, std::int64_t inherited,
                   std::int64_t now, std::vector<node>& out) {
  struct child {
    const key_value* file = nullptr;
    std::size_t first = 0, last = 0;  // the keys under "<name>/", when a directory
    bool dir = false;
  };
  std::map<std::string_view, child> children;
  std::size_t i = begin;
  while (i < end) {
    std::string_view key = kvs[i].key;
    std::string_view rest = key.substr(prefix_length);
    std::size_t slash = rest.find('/');
    if (rest.empty() || slash == 0) {  // the directory's own marker, or an empty segment
      ++i;
      continue;
    }
    if (slash == std::string_view::npos) {
      children[rest].file = &kvs[i];
      ++i;
      continue;
    }
    std::string_view sub_prefix = key.substr(0, prefix_length + slash + 1);
    std::size_t j = i + 1;
    while (j < end && std::string_view(kvs[j].key).starts_with(sub_prefix)) ++j;
    child& c = children[rest.substr(0, slash)];
    c.dir = true;
    c.first = i;
    c.last = j;
    i = j;
  }
  for (const auto& [name, c] : children) {
    if (name.front() == '_') continue;
    if (c.file) {  // a file shadows a directory of the same name (only v3 can make both)
      out.push_back(file_node(*c.file, inherited, now));
      continue;
    }
    std::size_t sub_length = prefix_length + name.size() + 1;
    const key_value& first = kvs[c.first];
    const key_value* marker = first.key.size() == sub_length ? &first : nullptr;
    node d = dir_node(first.key.substr(0, sub_length - 1), marker, inherited, now);
    if (recursive) {
      std::int64_t context = marker && marker->lease != 0 ? marker->lease : inherited;
      list_children(kvs, c.first, c.last, sub_length, true, context, now, d.nodes);
    }
    out.push_back(std::move(d));
  }
}

// ---- paths ----------------------------------------------------------------------------------

struct found_path {
  std::optional<error> failure;     // 104: an ancestor is a file
  std::optional<key_value> file;    // the key P
  std::optional<key_value> marker;  // the key "P/"
  bool dir = false;                 // P is a directory (marker or keys under "P/"); never with file
  std::int64_t inherited = 0;       // lease of the nearest ancestor directory with a TTL
  // Ancestor markers that do not exist yet, top down, each with the lease it inherits.
  std::vector<std::pair<std::string, std::int64_t>> missing;

  bool exists() const { return file || dir; }
};

// Walks P's ancestors (as etcd's walk: a file on the way is 104) and reads P.
found_path look_up(const std::string& path, std::int64_t index) {
  found_path f;
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string ancestor = path.substr(0, slash);
    if (read_key(ancestor)) {
      f.failure = error{codes::not_dir, std::move(ancestor), index};
      return f;
    }
    std::string marker = std::move(ancestor) + "/";
    if (auto m = read_key(marker)) {
      if (m->lease != 0) f.inherited = m->lease;
    } else {
      f.missing.emplace_back(std::move(marker), f.inherited);
    }
  }
  f.file = read_key(path);
  if (!f.file) {
    f.marker = read_key(path + "/");
    f.dir = f.marker || any_under(path + "/", false);
  }
  return f;
}

// etcd's 100 names the first path component that does not exist.
std::string missing_cause(const std::string& path) {
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string marker = path.substr(0, slash + 1);
    if (!read_key(marker) && !any_under(marker, false)) return path.substr(0, slash);
  }
  return path;
}

// etcd's node.Compare + getCompareFailCause; nullopt when both tests pass.
std::optional<std::string> compare_failure(const key_value& file, const std::string& prev_value,
                                           std::uint64_t prev_index) {
  bool index_match = prev_index == 0 || static_cast<std::uint64_t>(file.mod_revision) == prev_index;
  bool value_match = prev_value.empty() || file.value == prev_value;
  if (index_match && value_match) return std::nullopt;
  std::string values = "[" + prev_value + " != " + file.value + "]";
  std::string indexes =
      "[" + std::to_string(prev_index) + " != " + std::to_string(file.mod_revision) + "]";
  if (index_match) return values;
  if (value_match) return indexes;
  return values + " " + indexes;
}

outcome failed(int code, std::string cause, std::int64_t index) {
  outcome out;
  out.failure = error{code, std::move(cause), index};
  return out;
}

outcome failed(error e) {
  outcome out;
  out.failure = std::move(e);
  return out;
}

// A failure of the engine (WAL, limits) is etcd's 300 with the error text as cause.
outcome internal_failure(const status& s) { return failed(codes::raft_internal, s.message(), 0); }

// ---- get ------------------------------------------------------------------------------------

outcome read_node(const key_request& request, std::int64_t now) {
  std::int64_t index = read_revision != 0 ? read_revision : owner_store().current_revision();
  outcome out;
  out.index = index;
  out.result.what = action::get;
  if (request.path == "/") {
    node root;
    root.dir = true;
    std::vector<key_value> kvs = read_under("/");
    list_children(kvs, 0, kvs.size(), 1, request.recursive, 0, now, root.nodes);
    out.result.current = std::move(root);
    return out;
  }
  found_path f = look_up(request.path, index);
  if (f.failure) return failed(std::move(*f.failure));
  if (!f.exists()) return failed(codes::key_not_found, missing_cause(request.path), index);
  if (f.file) {
    out.result.current = file_node(*f.file, f.inherited, now);
    return out;
  }
  const key_value* marker = f.marker ? &*f.marker : nullptr;
  node d = dir_node(request.path, marker, f.inherited, now);
  std::vector<key_value> kvs = read_under(request.path + "/");
  std::int64_t context = marker && marker->lease != 0 ? marker->lease : f.inherited;
  list_children(kvs, 0, kvs.size(), request.path.size() + 1, request.recursive, context, now,
                d.nodes);
  out.result.current = std::move(d);
  return out;
}

// ---- put ------------------------------------------------------------------------------------

enum class put_kind { set, create, update, compare_and_swap };

// etcd's applierV2store.Put / Post.
put_kind choose_put(const key_request& request) {
  if (request.method == "POST") return put_kind::create;
  if (request.prev_exist) {
    if (!*request.prev_exist) return put_kind::create;
    if (request.prev_index == 0 && request.prev_value.empty()) return put_kind::update;
    return put_kind::compare_and_swap;
  }
  if (request.prev_index > 0 || !request.prev_value.empty()) return put_kind::compare_and_swap;
  return put_kind::set;
}

action action_of(put_kind kind) {
  switch (kind) {
    case put_kind::set: return action::set;
    case put_kind::create: return action::create;
    case put_kind::update: return action::update;
    case put_kind::compare_and_swap: return action::compare_and_swap;
  }
  return action::set;
}

void count(put_kind kind, bool ok) {
  store_counters& c = counters();
  switch (kind) {
    case put_kind::set:
      (ok ? c.sets_success : c.sets_fail).fetch_add(1, std::memory_order_relaxed);
      break;
    case put_kind::create:
      (ok ? c.create_success : c.create_fail).fetch_add(1, std::memory_order_relaxed);
      break;
    case put_kind::update:
      (ok ? c.update_success : c.update_fail).fetch_add(1, std::memory_order_relaxed);
      break;
    case put_kind::compare_and_swap:
      (ok ? c.compare_and_swap_success : c.compare_and_swap_fail)
          .fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

// The rules of etcd's Set / Create / Update / CompareAndSwap before anything is written.
std::optional<error> check_put(put_kind kind, const key_request& request, const found_path& f,
                               std::int64_t index) {
  const std::string& path = request.path;
  // A refresh that creates (prevExist=false, or POST) is a plain create in etcd.
  bool must_exist = kind == put_kind::update || kind == put_kind::compare_and_swap ||
                    (kind == put_kind::set && request.refresh);
  if (must_exist && !f.exists()) return error{codes::key_not_found, missing_cause(path), index};
  switch (kind) {
    case put_kind::set:
      if (f.dir) return error{codes::not_file, path, index};
      break;
    case put_kind::create:
      if (f.exists()) return error{codes::node_exist, path, index};
      break;
    case put_kind::update:
      if (f.dir && !request.value.empty()) return error{codes::not_file, path, index};
      break;
    case put_kind::compare_and_swap:
      if (f.dir) return error{codes::not_file, path, index};
      if (auto cause = compare_failure(*f.file, request.prev_value, request.prev_index))
        return error{codes::test_failed, std::move(*cause), index};
      break;
  }
  return std::nullopt;
}

kv::request_op put_op(std::string key, std::string value, std::int64_t lease) {
  kv::put_request put;
  put.key = std::move(key);
  put.value = std::move(value);
  put.lease = lease;
  return kv::request_op::of(std::move(put));
}

// Moves the keys of a directory whose TTL changes from the old lease to the new one (they
// share the directory's lease). The first batch rides in `first`; the rest, if a
// transaction would exceed the engine's operation limit, in `more`.
void move_to_lease(const std::string& path, std::int64_t from, std::int64_t to,
                   kv::txn_request& first, std::vector<kv::txn_request>& more) {
  for (key_value& kv : read_under(path + "/")) {
    if (kv.lease != from || kv.key.size() == path.size() + 1)
      continue;  // not shared, or the marker
    kv::txn_request* target = &first;
    if (first.success.size() >= kv::mvcc_txn_operations_max) {
      if (more.empty() || more.back().success.size() >= kv::mvcc_txn_operations_max)
        more.emplace_back();
      target = &more.back();
    }
    target->success.push_back(put_op(std::move(kv.key), std::move(kv.value), to));
  }
}

// What a put writes, decided from the request and the node as it is.
struct put_plan {
  put_kind kind = put_kind::set;
  bool as_dir = false;
  std::string value;
  std::int64_t lease = 0;  // the node's lease after the write (0: permanent)
  std::optional<node> previous;
};

std::variant<put_plan, outcome> plan_put(put_kind kind, const key_request& request,
                                         const found_path& f, std::int64_t now) {
  put_plan plan;
  plan.kind = kind;
  bool creating = kind == put_kind::set || kind == put_kind::create;
  plan.as_dir = creating ? request.dir : !f.file;  // update keeps the node's kind
  if (!plan.as_dir) plan.value = request.refresh && f.file ? f.file->value : request.value;
  if (f.file)
    plan.previous = file_node(*f.file, f.inherited, now);
  else if (f.dir)
    plan.previous = dir_node(request.path, f.marker ? &*f.marker : nullptr, f.inherited, now);
  plan.lease = f.inherited;  // no TTL of its own: the enclosing directory's
  if (request.ttl) {
    auto granted = grant(*request.ttl, now);
    if (!granted) return internal_failure(granted.error());
    plan.lease = *granted;
  }
  return plan;
}

// Writes the plan: missing parent markers, the node, and (a directory whose lease
// changes) its keys on the new lease. Returns the revision of the node's write.
result<std::int64_t> apply_put(const std::string& path, const put_plan& plan, const found_path& f) {
  auto release_replaced_leases = [&] {
    if (f.file && f.file->lease != plan.lease) release_if_unused(f.file->lease);
    if (f.marker && f.marker->lease != plan.lease) release_if_unused(f.marker->lease);
  };
  if (!plan.as_dir && f.missing.empty()) {  // the usual set: one put, no transaction needed
    kv::put_request put;
    put.key = path;
    put.value = plan.value;
    put.lease = plan.lease;
    auto done = owner_put(put);
    if (!done) return done.error();
    release_replaced_leases();
    return done->revision;
  }
  kv::txn_request txn;
  std::vector<kv::txn_request> more;
  for (const auto& [marker, inherited] : f.missing)
    txn.success.push_back(put_op(marker, "", inherited));
  if (plan.as_dir) {
    if (f.file) {  // set ?dir=true over a file replaces it
      kv::delete_range_request del;
      del.key = path;
      txn.success.push_back(kv::request_op::of(std::move(del)));
    }
    txn.success.push_back(put_op(path + "/", "", plan.lease));
    if (f.marker && f.marker->lease != 0 && f.marker->lease != plan.lease)
      move_to_lease(path, f.marker->lease, plan.lease, txn, more);
  } else {
    txn.success.push_back(put_op(path, plan.value, plan.lease));
  }
  auto done = owner_txn(txn);
  if (!done) return done.error();
  for (const kv::txn_request& rest : more) (void)owner_txn(rest);
  release_replaced_leases();
  return done->revision;
}

// The node's TTL as the answer shows it: none when it keeps its directory's lease.
ttl_view node_ttl_of(const put_plan& plan, const found_path& f, std::int64_t now) {
  if (plan.lease != 0 && plan.lease != f.inherited) return lease_view(plan.lease, now);
  return {};
}

revision_note note_of_put(const put_plan& plan, const found_path& f, bool refresh, std::int64_t now) {
  revision_note note;
  note.what = action_of(plan.kind);
  note.refresh = refresh;
  ttl_view view = node_ttl_of(plan, f, now);
  note.node_expiration_ns = view.expiration_ns;
  note.node_ttl = view.ttl;
  if (plan.previous) {
    note.previous_expiration_ns = plan.previous->expiration_ns;
    note.previous_ttl = plan.previous->ttl;
  }
  return note;
}

// While it lives, the entries the owner logs carry `note` (core.h owner_note_v2_write),
// so members applying them and replays show watchers this write's action.
class logged_note {
 public:
  explicit logged_note(const revision_note& note) noexcept {
    v2_note_fields fields;
    fields.action = static_cast<std::uint8_t>(note.what);
    fields.refresh = note.refresh;
    fields.node_expiration_ns = note.node_expiration_ns;
    fields.node_ttl = note.node_ttl;
    fields.previous_expiration_ns = note.previous_expiration_ns;
    fields.previous_ttl = note.previous_ttl;
    owner_note_v2_write(&fields);
  }
  ~logged_note() { owner_note_v2_write(nullptr); }
  logged_note(const logged_note&) = delete;
  logged_note& operator=(const logged_note&) = delete;
};

outcome answer_put(const std::string& path, put_plan plan, const found_path& f,
                   std::int64_t revision, bool refresh, std::int64_t now) {
  node current;
  current.key = path;
  current.dir = plan.as_dir;
  if (!plan.as_dir) current.value = std::move(plan.value);
  current.modified_index = revision;
  // The engine keeps a key's create_revision across puts (etcd's set would renew it).
  const std::optional<key_value>& before = plan.as_dir ? f.marker : f.file;
  current.created_index = before ? before->create_revision : revision;
  ttl_view view = node_ttl_of(plan, f, now);
  current.expiration_ns = view.expiration_ns;
  current.ttl = view.ttl;

  note_revision(revision, note_of_put(plan, f, refresh, now));
  for (std::int64_t r = revision + 1; r <= owner_store().current_revision(); ++r) {
    revision_note hidden;  // the rest of a directory's keys moving to its new lease
    hidden.what = action::update;
    hidden.refresh = true;
    note_revision(r, hidden);
  }

  outcome out;
  out.index = owner_store().current_revision();
  out.result.what = action_of(plan.kind);
  out.result.current = std::move(current);
  if (plan.kind != put_kind::create) out.result.previous = std::move(plan.previous);
  return out;
}

outcome write_put(key_request request, std::int64_t now) {
  std::int64_t index = owner_store().current_revision();
  put_kind kind = choose_put(request);
  if (kind == put_kind::create) request.refresh = false;  // etcd's Create ignores it: watchers see it
  if (request.method == "POST") {  // in-order key: the index the write will get, %020d
    char name[24];
    std::snprintf(name, sizeof name, "%020" PRId64, index + 1);
    request.path = (request.path == "/" ? std::string() : request.path) + "/" + name;
  }
  if (request.path == "/") return failed(codes::root_read_only, "/", index);
  found_path f = look_up(request.path, index);
  if (f.failure) return failed(std::move(*f.failure));
  if (auto refused = check_put(kind, request, f, index)) return failed(std::move(*refused));
  auto planned = plan_put(kind, request, f, now);
  if (auto* refused = std::get_if<outcome>(&planned)) return std::move(*refused);
  put_plan plan = std::move(std::get<put_plan>(planned));
  result<std::int64_t> written = [&] {
    logged_note noting(note_of_put(plan, f, request.refresh, now));
    return apply_put(request.path, plan, f);
  }();
  if (!written) {
    if (request.ttl) release_if_unused(plan.lease);
    return internal_failure(written.error());
  }
  return answer_put(request.path, std::move(plan), f, *written, request.refresh, now);
}

// ---- delete ---------------------------------------------------------------------------------

outcome write_remove(const key_request& request, std::int64_t now) {
  std::int64_t index = owner_store().current_revision();
  const std::string& path = request.path;
  bool compare = request.prev_index > 0 || !request.prev_value.empty();
  if (path == "/")  // etcd's CompareAndDelete finds the root a directory, without a cause
    return compare ? failed(codes::not_file, "", index) : failed(codes::root_read_only, "/", index);
  found_path f = look_up(path, index);
  if (f.failure) return failed(std::move(*f.failure));
  if (!f.exists()) return failed(codes::key_not_found, missing_cause(path), index);
  bool is_dir = !f.file;
  const key_value* marker = f.marker ? &*f.marker : nullptr;
  if (compare) {
    if (is_dir) return failed(codes::not_file, path, index);
    if (auto cause = compare_failure(*f.file, request.prev_value, request.prev_index))
      return failed(codes::test_failed, std::move(*cause), index);
  } else if (is_dir) {
    if (!request.dir && !request.recursive) return failed(codes::not_file, path, index);
    if (!request.recursive && any_under(path + "/", true))
      return failed(codes::dir_not_empty, path, index);
  }
  std::optional<node> previous =
      is_dir ? dir_node(path, marker, f.inherited, now) : file_node(*f.file, f.inherited, now);

  kv::delete_range_request del;
  del.prev_kv = true;
  if (is_dir) {
    del.key = path + "/";
    del.range_end = under_end(del.key);
  } else {
    del.key = path;
  }
  revision_note note;
  note.what = compare ? action::compare_and_delete : action::remove;
  note.previous_expiration_ns = previous->expiration_ns;
  note.previous_ttl = previous->ttl;
  auto done = [&] {
    logged_note noting(note);
    return owner_delete_range(del);
  }();
  if (!done) return internal_failure(done.error());
  std::vector<std::int64_t> leases;
  for (const key_value& gone : done->prev_kvs)
    if (gone.lease != 0 && std::find(leases.begin(), leases.end(), gone.lease) == leases.end())
      leases.push_back(gone.lease);
  for (std::int64_t lease : leases) release_if_unused(lease);

  std::int64_t revision = done->revision;
  node current;
  current.key = path;
  current.dir = is_dir;
  current.modified_index = revision;
  current.created_index = is_dir ? (marker ? marker->create_revision : 0) : f.file->create_revision;

  note_revision(revision, note);

  outcome out;
  out.index = revision;
  out.result.what = note.what;
  out.result.current = std::move(current);
  out.result.previous = std::move(previous);
  return out;
}

// ---- the coroutines on the owner --------------------------------------------------------------

// Reads need what they saw to be durable before they show it; writes must be.
task<outcome> finish(outcome out) {
  task<status> committing = owner_commit();
  status durable = co_await std::move(committing);
  if (!durable) co_return internal_failure(durable);
  co_return out;
}

task<outcome> owner_get(key_request request) {
  task<status> waiting = owner_ready();
  status ready = co_await std::move(waiting);
  // A failed WAL makes nothing newer durable and left everything up to the published
  // revision durable: the read is answered there, as v3 ranges are, with no wait.
  if (!ready) {
    read_revision = owner_read_revision_after_wal_failure(request.quorum);
    if (read_revision == 0) co_return internal_failure(ready);
  } else if (request.quorum) {
    // In a cluster, as etcd's QGET through Raft: committed state as of a ReadIndex
    // round, on any member (a deposed leader cannot answer it from its own state).
    task<result<std::int64_t>> confirming = owner_read_barrier();
    result<std::int64_t> confirmed = co_await std::move(confirming);
    if (!confirmed) co_return internal_failure(confirmed.error());
    read_revision = confirmed.value();
  }
  bool committed_only = read_revision != 0;
  outcome out = read_node(request, unix_now_ns());
  read_revision = 0;
  auto& c = counters();
  (out.failure ? c.gets_fail : c.gets_success).fetch_add(1, std::memory_order_relaxed);
  if (out.failure || committed_only) co_return out;
  task<outcome> finishing = finish(std::move(out));
  co_return co_await std::move(finishing);
}

// A write as the owner runs it (PUT and POST: set/create/update/compareAndSwap; DELETE:
// delete/compareAndDelete), counted for /v2/stats/store. Synchronous: decides and writes
// in one step (the file's header).
outcome write_counted(key_request request, std::int64_t now) {
  auto& c = counters();
  if (request.method == "DELETE") {
    outcome out = write_remove(request, now);
    bool compare = request.prev_index > 0 || !request.prev_value.empty();
    if (compare)
      (out.failure ? c.compare_and_delete_fail : c.compare_and_delete_success).fetch_add(1);
    else
      (out.failure ? c.delete_fail : c.delete_success).fetch_add(1);
    return out;
  }
  put_kind kind = choose_put(request);
  outcome out = write_put(std::move(request), now);
  count(kind, !out.failure);
  return out;
}

// A follower's write: the leader runs it and answers (v2.h, "relaying writes").
task<outcome> relay(const key_request& request) {
  std::optional<std::string> encoded = encode_relayed_request(request);
  if (!encoded) co_return internal_failure(status{errc::invalid_argument, "not a write: " + request.method});
  task<result<std::string>> relaying = cluster_relay(std::move(*encoded));
  result<std::string> answered = co_await std::move(relaying);
  if (!answered) co_return internal_failure(answered.error());
  std::optional<outcome> out = decode_relayed_outcome(answered.value());
  if (!out) co_return internal_failure(status{errc::corruption, "etcdserver: the leader's answer is malformed"});
  co_return std::move(*out);
}

task<outcome> owner_write(key_request request) {
  task<status> waiting = owner_ready();
  if (status ready = co_await std::move(waiting); !ready) co_return internal_failure(ready);
  if (owner_follows()) {
    task<outcome> relaying = relay(request);
    co_return co_await std::move(relaying);
  }
  std::uint64_t term = owner_term();
  outcome out = write_counted(std::move(request), unix_now_ns());
  if (out.failure) {
    // A refusal (a failed compare, a missing key) logged nothing: it is a read of this
    // member's state, answered only if this member still led, in the same term, after it
    // read (a ReadIndex round), and, below, once what it read is committed.
    task<status> confirming = owner_confirm_leading(term);
    if (status confirmed = co_await std::move(confirming); !confirmed) co_return internal_failure(confirmed);
  }
  task<outcome> finishing = finish(std::move(out));
  co_return co_await std::move(finishing);
}

// ---- revision notes
// -------------------------------------------------------------------------------

// A seqlock per slot: revision 0 while the owner rewrites it.
// One slot of the ring, a seqlock: `sequence` is odd while the owner writes the slot, and
// a reader keeps what it read only if `sequence` was even and unchanged around its read.
// (The revision alone is not enough: a rebuild can note the same revision again.)
struct note_slot {
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<std::int64_t> revision{0};
  std::atomic<std::uint32_t> flags{0};  // action | refresh << 8
  std::atomic<std::int64_t> node_expiration_ns{0};
  std::atomic<std::int64_t> node_ttl{0};
  std::atomic<std::int64_t> previous_expiration_ns{0};
  std::atomic<std::int64_t> previous_ttl{0};
};

note_slot* notes() {
  static note_slot* slots = new note_slot[revision_notes_max];  // lives as long as the process
  return slots;
}

}  // namespace

void note_revision(std::int64_t revision, const revision_note& note) noexcept {
  note_slot& slot = notes()[static_cast<std::uint64_t>(revision) % revision_notes_max];
  constexpr auto relaxed = std::memory_order_relaxed;
  std::uint64_t sequence = slot.sequence.load(relaxed);
  slot.sequence.store(sequence + 1, relaxed);  // odd: being written
  std::atomic_thread_fence(std::memory_order_release);
  slot.revision.store(revision, relaxed);
  slot.flags.store(static_cast<std::uint32_t>(note.what) | (note.refresh ? 0x100u : 0u), relaxed);
  slot.node_expiration_ns.store(note.node_expiration_ns, relaxed);
  slot.node_ttl.store(note.node_ttl, relaxed);
  slot.previous_expiration_ns.store(note.previous_expiration_ns, relaxed);
  slot.previous_ttl.store(note.previous_ttl, relaxed);
  slot.sequence.store(sequence + 2, std::memory_order_release);  // even: complete
}

void forget_notes(std::int64_t after, std::int64_t through) noexcept {
  // Only the newest revision_notes_max revisions can still be in the ring.
  std::int64_t from = std::max(after + 1, through - static_cast<std::int64_t>(revision_notes_max) + 1);
  for (std::int64_t r = from; r <= through; ++r) {
    note_slot& slot = notes()[static_cast<std::uint64_t>(r) % revision_notes_max];
    if (slot.revision.load(std::memory_order_relaxed) != r) continue;  // only the owner writes
    std::uint64_t sequence = slot.sequence.load(std::memory_order_relaxed);
    slot.sequence.store(sequence + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    slot.revision.store(0, std::memory_order_relaxed);
    slot.sequence.store(sequence + 2, std::memory_order_release);
  }
}

std::optional<revision_note> find_note(std::int64_t revision) noexcept {
  if (revision <= 0) return std::nullopt;
  note_slot& slot = notes()[static_cast<std::uint64_t>(revision) % revision_notes_max];
  constexpr auto relaxed = std::memory_order_relaxed;
  std::uint64_t sequence = slot.sequence.load(std::memory_order_acquire);
  if (sequence & 1) return std::nullopt;  // being written
  if (slot.revision.load(relaxed) != revision) return std::nullopt;
  revision_note note;
  std::uint32_t flags = slot.flags.load(relaxed);
  note.what = static_cast<action>(flags & 0xff);
  note.refresh = (flags & 0x100u) != 0;
  note.node_expiration_ns = slot.node_expiration_ns.load(relaxed);
  note.node_ttl = slot.node_ttl.load(relaxed);
  note.previous_expiration_ns = slot.previous_expiration_ns.load(relaxed);
  note.previous_ttl = slot.previous_ttl.load(relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (slot.sequence.load(relaxed) != sequence) return std::nullopt;  // written meanwhile
  return note;
}

store_counters& counters() noexcept {
  static store_counters c;
  return c;
}

// A GET on the connection's shard, without the hop to the owner: possible when the read
// needs no Raft round (not quorum, or a single node, where a quorum GET is the same read)
// and the owner's store allows it now (store_read: nothing unpublished in it, so nothing
// to wait for), and the node read holds no TTL, no large directory and no long path.
// nullopt: ask the owner. On a single node the answer is the one owner_get would give at
// this moment; a cluster member answers from its committed state at once, where the owner
// may first wait (a leader just elected, or one whose last entry is not yet committed).
std::optional<outcome> read_here(const key_request& request) {
  if (request.quorum && in_cluster()) return std::nullopt;
  if (shard::current()->id() == owner_shard) return std::nullopt;  // no hop to save
  if (request.path.size() > path_read_here_max) return std::nullopt;
  store_read reading;
  if (!reading) return std::nullopt;
  reading_here state;
  struct scope {
    explicit scope(reading_here* s) noexcept { here = s; }
    ~scope() { here = nullptr; }
  } in_scope(&state);
  outcome out = read_node(request, unix_now_ns());
  if (state.needs_owner) return std::nullopt;
  reading.answered();
  auto& c = counters();
  (out.failure ? c.gets_fail : c.gets_success).fetch_add(1, std::memory_order_relaxed);
  return out;
}

task<outcome> get(key_request request) {
  if (std::optional<outcome> out = read_here(request)) co_return std::move(*out);
  task<outcome> work = run_on_owner<outcome>(
      [request = std::move(request)]() mutable { return owner_get(std::move(request)); });
  co_return co_await std::move(work);
}

task<outcome> write(key_request request) {
  task<outcome> work = run_on_owner<outcome>(
      [request = std::move(request)]() mutable { return owner_write(std::move(request)); });
  co_return co_await std::move(work);
}

result<std::string> run_relayed(std::string_view data) {
  std::optional<key_request> request = decode_relayed_request(data);
  if (!request) return status{errc::invalid_argument, "a malformed relayed v2 write"};
  return encode_relayed_outcome(write_counted(std::move(*request), unix_now_ns()));
}

}  // namespace keel::kv_module::v2
