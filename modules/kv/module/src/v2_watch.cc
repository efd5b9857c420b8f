// v2_watch.cc — GET /v2/keys/<path>?wait=true: etcd's v2 watches served from the engine's
// watchers (core.h), so any waitIndex that is not compacted is answered (etcd keeps only
// the last 1000 events). See v2.h and README.md "etcd v2".
//
// A watcher sees MVCC events; this file turns the events of one revision back into the
// one v2 event that made them (a v2 write also creates the markers of missing parent
// directories, a recursive delete deletes every key under the directory, and a directory
// whose TTL changes moves its keys to its new lease) and filters them as etcd's watcher
// hub does.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "v2.h"

namespace keel::kv_module::v2 {

namespace {

// How often a quiet wait checks whether its client went away.
constexpr auto liveness_interval = std::chrono::milliseconds(1000);

// The MVCC keys a watch on `path` must see: the path, everything under it, and the
// markers of its ancestors (a deleted parent directory ends a watch on its children).
watch_request mvcc_range(const std::string& path, bool recursive, std::int64_t start) {
  watch_request w;
  w.start_revision = start;
  w.prev_kv = true;
  if (path == "/") {
    w.key = "/";
    if (recursive) w.range_end = "0";  // every key starting with "/"
    return w;
  }
  std::size_t first_slash = path.find('/', 1);
  w.key = first_slash == std::string::npos ? path : path.substr(0, first_slash + 1);
  w.range_end = path + "0";  // after "<path>/..." ('0' follows '/')
  return w;
}

// The v2 node an MVCC key stands for: "/a/b" the file or "/a/b/" the directory marker.
bool v2_path_of(std::string_view key, std::string& path, bool& dir) {
  if (key.size() < 2 || key.front() != '/') return false;
  dir = key.back() == '/';
  std::string_view p = dir ? key.substr(0, key.size() - 1) : key;
  if (p.size() < 2 || p.find("//") != std::string_view::npos) return false;
  path = std::string(p);
  return true;
}

struct item {
  const kv::event* change;
  std::string path;
  bool dir = false;
  bool keep = true;
};

// Drops the changes a v2 write made besides its own node (see the top of this file).
void collapse(std::vector<item>& items) {
  std::vector<std::size_t> order(items.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return items[a].change->kv.key < items[b].change->kv.key;
  });
  for (std::size_t at = 0; at < order.size(); ++at) {
    item& marker = items[order[at]];
    if (!marker.dir) continue;
    const std::string& prefix = marker.change->kv.key;  // "<dir>/"
    bool removed = marker.change->type == kv::event_type::remove;
    bool fresh = !removed && !marker.change->prev_kv;
    for (std::size_t next = at + 1; next < order.size(); ++next) {
      item& inside = items[order[next]];
      if (!std::string_view(inside.change->kv.key).starts_with(prefix)) break;
      if (fresh) {
        marker.keep = false;  // created on the way to the node the write was about
        break;
      }
      if ((inside.change->type == kv::event_type::remove) == removed) inside.keep = false;
    }
  }
}

// `set ?dir=true` over a file deletes the file and writes the directory's marker at one
// revision; etcd shows that as one `set` of the directory with the file as prevNode. Given
// the two changes a revision kept, drops the file's delete from `items` and returns it
// (nullptr when the revision is not that).
const item* fold_replaced_file(std::vector<item>& items) {
  item* removed_file = nullptr;
  item* new_dir = nullptr;
  for (item& i : items) {
    if (!i.keep) continue;
    bool removed = i.change->type == kv::event_type::remove;
    if (removed && !i.dir) removed_file = &i;
    if (!removed && i.dir && !i.change->prev_kv) new_dir = &i;
  }
  if (!removed_file || !new_dir || removed_file->path != new_dir->path) return nullptr;
  removed_file->keep = false;
  return removed_file;
}

// `previous`: a directory's stored modifiedIndex is its createdIndex (see dir_node).
node node_of(const kv::key_value& kv, const std::string& path, bool dir, bool previous,
             std::int64_t expiration_ns, std::int64_t ttl) {
  node n;
  n.key = path;
  n.dir = dir;
  if (!dir) n.value = kv.value;
  n.modified_index = dir && previous ? kv.create_revision : kv.mod_revision;
  n.created_index = kv.create_revision;
  n.expiration_ns = expiration_ns;
  n.ttl = ttl;
  return n;
}

// The v2 events of one revision's changes [first, last).
void convert_revision(const kv::event* const* first, const kv::event* const* last, bool expiry,
                      std::vector<event>& out) {
  std::vector<item> items;
  for (auto it = first; it != last; ++it) {
    item i{*it, {}, false, true};
    if (v2_path_of((*it)->kv.key, i.path, i.dir)) items.push_back(std::move(i));
  }
  if (items.empty()) return;
  collapse(items);
  std::size_t kept = static_cast<std::size_t>(
      std::count_if(items.begin(), items.end(), [](const item& i) { return i.keep; }));
  const item* replaced_file = kept == 2 ? fold_replaced_file(items) : nullptr;
  if (replaced_file) --kept;
  std::optional<revision_note> note = find_note((*first)->kv.mod_revision);
  if (note && note->refresh) return;  // etcd does not show TTL refreshes to watchers
  if (kept != 1) note.reset();
  for (const item& i : items) {
    if (!i.keep) continue;
    const kv::event& change = *i.change;
    event e;
    bool removed = change.type == kv::event_type::remove;
    if (expiry)
      e.what = action::expire;
    else if (note)
      e.what = note->what;
    else if (removed)
      e.what = action::remove;
    else
      e.what = change.prev_kv ? action::set : action::create;
    if (removed) {
      node n;
      n.key = i.path;
      n.dir = i.dir;
      n.modified_index = change.kv.mod_revision;
      n.created_index = change.prev_kv ? change.prev_kv->create_revision : 0;
      e.current = std::move(n);
    } else {
      e.current = node_of(change.kv, i.path, i.dir, false, note ? note->node_expiration_ns : 0,
                          note ? note->node_ttl : 0);
    }
    const std::optional<kv::key_value>* previous = &change.prev_kv;
    bool previous_dir = i.dir;
    if (!change.prev_kv && replaced_file && replaced_file->path == i.path) {
      previous = &replaced_file->change->prev_kv;  // the file a directory replaced
      previous_dir = false;
    }
    if (*previous) {
      std::int64_t expiration = note ? note->previous_expiration_ns : 0;
      std::int64_t ttl = note ? note->previous_ttl : 0;
      if (expiry) {
        // The expiration it had is in the note of the write that gave it; its ttl is the
        // one etcd computed as it expired (<= 0, so not shown), not one computed now.
        std::optional<revision_note> written = find_note((*previous)->mod_revision);
        expiration = written ? written->node_expiration_ns : 0;
        ttl = 0;
      }
      e.previous = node_of(**previous, i.path, previous_dir, true, expiration, ttl);
    }
    out.push_back(std::move(e));
  }
}

std::vector<event> convert(const watch_update& update) {
  std::vector<event> out;
  const auto& changes = update.events;
  std::size_t i = 0;
  while (i < changes.size()) {
    std::int64_t revision = changes[i]->kv.mod_revision;
    std::size_t j = i + 1;
    while (j < changes.size() && changes[j]->kv.mod_revision == revision) ++j;
    bool expiry = std::binary_search(update.expiry_revisions.begin(), update.expiry_revisions.end(),
                                     revision);
    convert_revision(changes.data() + i, changes.data() + j, expiry, out);
    i = j;
  }
  return out;
}

// etcd's watcher_hub isHidden: a change below a "_name" component under the watched path.
bool hidden(const std::string& watched, const std::string& key) {
  std::string after = "/" + key.substr(watched == "/" ? 1 : watched.size());
  return after.find("/_") != std::string::npos;
}

// Whether the node at `path` (a file, a directory's marker, or keys under it) was deleted
// at `revision` among the update's changes.
bool node_removed_at(const watch_update& update, std::int64_t revision, const std::string& path) {
  for (const kv::event* change : update.events) {
    if (change->kv.mod_revision != revision || change->type != kv::event_type::remove) continue;
    std::string_view key = change->kv.key;
    if (key == path || (key.size() > path.size() && key.starts_with(path) && key[path.size()] == '/'))
      return true;
  }
  return false;
}

// etcd's matching (watcher.notify for new events, EventHistory.scan for old ones; only new
// events hide changes under "_" components, as etcd). The delete or expiry of an enclosing
// directory reaches a live watcher only if its node was among those deleted (etcd's
// watcher hub calls back per removed node); from history any enclosing directory's
// does (etcd's scan; etcd compares there by string prefix, so a delete of /d also reaches
// a watch on /dir1/y: keel compares by path, README "etcd v2").
bool matches(const std::string& watched, bool recursive, const event& e, std::int64_t start_index,
             const watch_update& update) {
  const node& n = *e.current;
  if (n.key == watched) return true;
  if (recursive && (watched == "/" || n.key.starts_with(watched + "/")))
    return n.modified_index <= start_index || !hidden(watched, n.key);
  bool gone = e.what == action::remove || e.what == action::expire;
  if (!gone || !n.dir || !watched.starts_with(n.key + "/")) return false;
  return n.modified_index <= start_index || node_removed_at(update, n.modified_index, watched);
}

struct watcher_count {
  watcher_count() { counters().watchers.fetch_add(1, std::memory_order_relaxed); }
  ~watcher_count() { counters().watchers.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace

task<void> serve_watch(const http_request&, http_response& response, key_request parsed) {
  std::int64_t current = published_revision();
  std::int64_t since = current + 1;
  if (parsed.wait_index > 0)
    since = parsed.wait_index > static_cast<std::uint64_t>(INT64_MAX)
                ? INT64_MAX
                : static_cast<std::int64_t>(parsed.wait_index);
  std::unique_ptr<watcher> w = watcher::create(mvcc_range(parsed.path, parsed.recursive, since));
  watcher_count counted;

  // The first step reads history up to now, so a compacted waitIndex is known before the
  // 200 goes out, as etcd answers it (401) before it flushes the headers.
  task<std::optional<watch_update>> first = w->next(std::chrono::milliseconds(0));
  std::optional<watch_update> update = co_await std::move(first);
  if (update && update->canceled) {
    if (update->compact_revision > 0) {
      char cause[96];
      std::snprintf(cause, sizeof cause, "the requested history has been cleared [%lld/%llu]",
                    static_cast<long long>(update->compact_revision),
                    static_cast<unsigned long long>(parsed.wait_index));
      send_error(response, error{codes::event_index_cleared, cause, current});
    } else {
      send_error(response, error{codes::raft_internal, update->cancel_reason, 0});
    }
    co_return;
  }
  add_index_headers(response, current);
  response.start_stream(200, "application/json");
  for (;;) {
    if (update) {
      if (update->canceled) break;  // compacted while waiting: end, the client retries
      bool sent = false;
      for (const event& e : convert(*update)) {
        if (!matches(parsed.path, parsed.recursive, e, current, *update)) continue;
        response.write_chunk(event_json(e));
        sent = true;
        if (!parsed.stream) break;
      }
      if (sent && !parsed.stream) break;
      if (sent && !co_await response.drained()) break;
    }
    if (response.peer_closed() || shard::current()->stopping()) break;
    task<std::optional<watch_update>> waiting = w->next(liveness_interval);
    update = co_await std::move(waiting);
  }
  response.end_stream();
}

}  // namespace keel::kv_module::v2
