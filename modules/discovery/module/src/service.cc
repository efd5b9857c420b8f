// service.cc — the discovery service over HTTP: GET /new and etcd v2 keys semantics under
// /discovery/<token>, exactly as etcd 3.4's discovery client (v2discovery) uses them. See
// ../../README.md for the routes, the key layout and the differences from
// discovery.etcd.io.
//
// Everything is stored in the kv module's keyspace through kv_bus.h; nothing is kept
// here between requests, so the registry is as durable (and, later, as replicated) as kv.
// Handlers run on the connection's shard; each kv request is one atomic operation on the
// owner (a write that must check first is one txn: compares, then the write or a read that
// says why it failed).
#include "service.h"

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/go_strconv.h"
#include "keel/reactor/io.h"
#include "keel/reactor/shard.h"
#include "kv_bus.h"

namespace keel::discovery_module {
namespace {

namespace native = kv::native;

service_options g_options;

constexpr int default_size = 3;
// A path below the token has at most this many segments (each costs a compare in a write).
constexpr std::size_t path_segments_max = 16;
constexpr std::size_t token_bytes_max = 64;
// How often a held wait looks whether its client went away.
constexpr auto liveness_interval = std::chrono::seconds(1);

// ---- parameters ---------------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; `plus_is_space` for form and query values (Go's QueryUnescape).
// nullopt on a bad escape.
std::optional<std::string> unescape(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int high = hex_value(text[i + 1]);
      int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

using form = std::vector<std::pair<std::string, std::string>>;

void parse_form_into(std::string_view text, form& out) {
  while (!text.empty()) {
    std::size_t end = text.find('&');
    std::string_view pair = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (pair.empty()) continue;
    std::size_t equals = pair.find('=');
    auto name = unescape(pair.substr(0, equals), true);
    auto value = unescape(equals == std::string_view::npos ? std::string_view{} : pair.substr(equals + 1), true);
    if (name && value) out.emplace_back(std::move(*name), std::move(*value));  // Go skips bad pairs
  }
}

// Go's Request.ParseForm: a PUT/POST form body first, then the query; the first value of
// a name wins.
form parameters_of(const http_request& request) {
  form out;
  bool body_method = request.method == "PUT" || request.method == "POST";
  if (body_method && request.header("Content-Type").starts_with("application/x-www-form-urlencoded"))
    parse_form_into(request.body, out);
  parse_form_into(request.query(), out);
  return out;
}

const std::string* find(const form& f, std::string_view name) {
  for (const auto& [n, v] : f)
    if (n == name) return &v;
  return nullptr;
}

using go::parse_bool;
using go::parse_int;
using go::parse_uint;

// ---- etcd v2 JSON -------------------------------------------------------------------------

// etcd's v2error codes used here, their messages and HTTP statuses (v2error/error.go).
enum v2_code : int {
  key_not_found = 100,
  not_file = 102,
  not_dir = 104,
  node_exist = 105,
  dir_not_empty = 108,
  index_nan = 203,
  invalid_field = 209,
  raft_internal = 300,
  event_index_cleared = 401,
};

std::string_view v2_message(int code) {
  switch (code) {
    case key_not_found: return "Key not found";
    case not_file: return "Not a file";
    case not_dir: return "Not a directory";
    case node_exist: return "Key already exists";
    case dir_not_empty: return "Directory not empty";
    case index_nan: return "The given index in POST form is not a number";
    case invalid_field: return "Invalid field";
    case raft_internal: return "Raft Internal Error";
    case event_index_cleared: return "The event in requested index is outdated and cleared";
  }
  return "Unknown error";
}

int v2_status(int code) {
  switch (code) {
    case key_not_found: return 404;
    case node_exist: return 412;
    case not_file:
    case dir_not_empty: return 403;
    case raft_internal: return 500;
  }
  return code == event_index_cleared ? 400 : 400;
}

void send_v2_error(http_response& response, int code, std::string_view cause, std::int64_t index) {
  std::string body = "{\"errorCode\":" + std::to_string(code) + ",\"message\":";
  append_json_string(body, v2_message(code));
  if (!cause.empty()) {
    body += ",\"cause\":";
    append_json_string(body, cause);
  }
  body += ",\"index\":" + std::to_string(index) + "}\n";
  response.add_header("X-Etcd-Index", std::to_string(index));
  response.send(v2_status(code), "application/json", body);
}

// A failure of the kv module (WAL down, kv not loaded): etcd wraps such errors as 300.
void send_kv_failure(http_response& response, const status& failure) {
  send_v2_error(response, raft_internal, failure.message(), 0);
}

void append_indexes(std::string& out, std::int64_t modified, std::int64_t created) {
  if (modified != 0) out += ",\"modifiedIndex\":" + std::to_string(modified);
  if (created != 0) out += ",\"createdIndex\":" + std::to_string(created);
}

void append_file_node(std::string& out, std::string_view path, std::string_view value, std::int64_t modified,
                      std::int64_t created) {
  out += "{\"key\":";
  append_json_string(out, path);
  out += ",\"value\":";
  append_json_string(out, value);
  append_indexes(out, modified, created);
  out += '}';
}

void append_dir_head(std::string& out, std::string_view path) {
  out += "{\"key\":";
  append_json_string(out, path);
  out += ",\"dir\":true";
}

// ---- where a request points ---------------------------------------------------------------

// The path a request names, under /discovery/<token>, and the v3 key it maps to.
struct target {
  std::string token;
  std::vector<std::string> rest;  // the segments below the token
  std::string path;               // "/discovery/<token>[/<rest>...]" (cleaned: the client's path.Join)
  std::string key;                // "/_keel/discovery/<token>[/<rest>...]"
  std::string token_key;          // "/_keel/discovery/<token>"

  // The client-visible path of a v3 key at or below `key`.
  std::string path_of(std::string_view v3_key) const { return path + std::string(v3_key.substr(key.size())); }
  std::string range_end() const { return key + "0"; }  // '0' follows '/': [key, key0) is key and below
};

bool valid_token(std::string_view token) {
  if (token.empty() || token.size() > token_bytes_max || token[0] == '_') return false;
  return std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
  });
}

std::optional<target> parse_target(std::string_view url_path, std::string& why) {
  KEEL_ASSERT(url_path.starts_with(url_root));
  std::string_view rest = url_path.substr(url_root.size());
  std::vector<std::string> segments;
  while (!rest.empty()) {
    std::size_t end = rest.find('/');
    std::string_view raw = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    if (raw.empty()) continue;  // "//" and a trailing "/" (path.Join cleans them)
    auto segment = unescape(raw, false);
    if (!segment || segment->empty() || *segment == "." || *segment == ".." ||
        segment->find('/') != std::string::npos || segment->find('\0') != std::string::npos) {
      why = "invalid path segment \"" + std::string(raw) + "\"";
      return std::nullopt;
    }
    segments.push_back(std::move(*segment));
  }
  if (segments.empty() || !valid_token(segments[0])) {
    why = "invalid discovery token in " + std::string(url_path) +
          " (expected /discovery/<token> with 1 to 64 characters of [0-9A-Za-z_-], not starting with '_')";
    return std::nullopt;
  }
  if (segments.size() - 1 > path_segments_max) {
    why = "path too deep: at most " + std::to_string(path_segments_max) + " segments below the token";
    return std::nullopt;
  }
  target t;
  t.token = segments[0];
  t.rest.assign(segments.begin() + 1, segments.end());
  t.path = std::string(url_root) + t.token;
  t.token_key = std::string(key_root) + t.token;
  t.key = t.token_key;
  for (const std::string& s : t.rest) {
    t.path += "/" + s;
    t.key += "/" + s;
  }
  return t;
}

// ---- kv requests --------------------------------------------------------------------------

kv::compare compare_of(kv::compare_target what, kv::compare_result how, std::string key, std::int64_t number,
                       std::string range_end = {}) {
  kv::compare c;
  c.target = what;
  c.result = how;
  c.key = std::move(key);
  c.range_end = std::move(range_end);
  c.number = number;
  return c;
}

kv::range_request range_of(std::string key, std::string range_end) {
  kv::range_request r;
  r.key = std::move(key);
  r.range_end = std::move(range_end);
  return r;
}

// The keys of a range at or below t.key: t.key itself and those under "t.key/" (the range
// [key, key0) also holds siblings such as "key-x", which are dropped).
struct below {
  const kv::key_value* self = nullptr;
  std::vector<const kv::key_value*> children;  // key order
};
below split(const target& t, const std::vector<kv::key_value>& kvs) {
  below out;
  std::string dir = t.key + "/";
  for (const kv::key_value& kv : kvs) {
    if (kv.key == t.key) out.self = &kv;
    else if (kv.key.starts_with(dir)) out.children.push_back(&kv);
  }
  return out;
}

std::int64_t first_created(const std::vector<const kv::key_value*>& kvs) {
  std::int64_t first = 0;
  for (const kv::key_value* kv : kvs)
    if (first == 0 || kv->create_revision < first) first = kv->create_revision;
  return first;
}

// ---- listing ------------------------------------------------------------------------------

// A directory's children: `rel` is each key's path below the directory.
struct entry {
  std::string_view rel;
  const kv::key_value* kv;
};

void append_children(std::string& out, const std::string& path, const std::vector<entry>& entries, bool recursive);

// One child directory: its indexes are the first creation below it (keel's directories
// are implicit, see README).
void append_dir_child(std::string& out, const std::string& path, const std::vector<entry>& entries, bool recursive) {
  append_dir_head(out, path);
  std::int64_t created = 0;
  for (const entry& e : entries)
    if (created == 0 || e.kv->create_revision < created) created = e.kv->create_revision;
  if (recursive) {
    std::string nodes;
    append_children(nodes, path, entries, recursive);
    if (nodes != "[]") out += ",\"nodes\":" + nodes;
  }
  append_indexes(out, created, created);
  out += '}';
}

// Writes the JSON array of the children (hidden names, starting with '_', left out as
// etcd's loadInternalNode does), sorted by name.
void append_children(std::string& out, const std::string& path, const std::vector<entry>& entries, bool recursive) {
  std::map<std::string_view, const kv::key_value*> files;
  std::map<std::string_view, std::vector<entry>> dirs;
  for (const entry& e : entries) {
    std::size_t slash = e.rel.find('/');
    std::string_view name = e.rel.substr(0, slash);
    if (name.empty() || name[0] == '_') continue;
    if (slash == std::string_view::npos) files[name] = e.kv;
    else dirs[name].push_back({e.rel.substr(slash + 1), e.kv});
  }
  std::map<std::string_view, bool> names;  // name -> is a file (a file shadows a directory)
  for (const auto& d : dirs) names[d.first] = false;
  for (const auto& f : files) names[f.first] = true;
  out += '[';
  bool first = true;
  for (const auto& [name, is_file] : names) {
    if (!first) out += ',';
    first = false;
    std::string child = path + "/" + std::string(name);
    if (is_file) {
      const kv::key_value* kv = files[name];
      append_file_node(out, child, kv->value, kv->mod_revision, kv->create_revision);
    } else {
      append_dir_child(out, child, dirs[name], recursive);
    }
  }
  out += ']';
}

void send_event(http_response& response, int status, std::int64_t index, const std::string& body) {
  response.add_header("X-Etcd-Index", std::to_string(index));
  response.send(status, "application/json", body);
}

// ---- GET ----------------------------------------------------------------------------------

task<void> get_node(const target& t, bool recursive, http_response& response) {
  task<result<native::range_response>> reading = kv_range(range_of(t.key, t.range_end()));
  auto got = co_await std::move(reading);
  if (!got) {
    send_kv_failure(response, got.error());
    co_return;
  }
  std::int64_t index = got->header.revision;
  below found = split(t, got->kvs);
  std::string body = "{\"action\":\"get\",\"node\":";
  if (found.self != nullptr) {
    append_file_node(body, t.path, found.self->value, found.self->mod_revision, found.self->create_revision);
  } else if (!found.children.empty()) {
    std::vector<entry> entries;
    entries.reserve(found.children.size());
    for (const kv::key_value* kv : found.children) entries.push_back({std::string_view(kv->key).substr(t.key.size() + 1), kv});
    append_dir_head(body, t.path);
    std::string nodes;
    append_children(nodes, t.path, entries, recursive);
    if (nodes != "[]") body += ",\"nodes\":" + nodes;
    std::int64_t created = first_created(found.children);
    append_indexes(body, created, created);
    body += '}';
  } else {
    send_v2_error(response, key_not_found, t.path, index);
    co_return;
  }
  body += "}\n";
  send_event(response, 200, index, body);
}

// ---- waits --------------------------------------------------------------------------------

// Shared by a waiting request and its watchdog, which cancels the kv stream when the wait
// has lasted wait_timeout or the client went away. `done` is set when the request ends;
// both run on the connection's shard.
struct wait_state {
  stream_reader* reader = nullptr;
  const http_response* response = nullptr;
  std::chrono::steady_clock::time_point deadline;
  bool done = false;
};

task<void> watchdog(std::shared_ptr<wait_state> state) {
  while (!state->done) {
    auto now = std::chrono::steady_clock::now();
    auto step = std::min<std::chrono::nanoseconds>(liveness_interval, state->deadline - now);
    if (step.count() > 0) (void)co_await sleep_for(step);
    if (state->done) break;
    if (std::chrono::steady_clock::now() >= state->deadline || state->response->peer_closed()) {
      state->reader->cancel();
      break;
    }
  }
}

// Does a watch event concern the waiting request? Recursive waits see the key and the keys
// below it except under a hidden ('_') component (etcd's watcher hub), e.g. _config.
bool matches(const target& t, bool recursive, const std::string& key) {
  if (key == t.key) return true;
  if (!recursive || !key.starts_with(t.key + "/")) return false;
  std::string_view rel = std::string_view(key).substr(t.key.size() + 1);
  for (std::size_t at = 0; at <= rel.size();) {
    if (rel.substr(at).starts_with("_")) return false;
    std::size_t slash = rel.find('/', at);
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  return true;
}

// One kv event as etcd's v2 event: a put of a new key is "create", of an existing one
// "set" (kv does not record which v2 action wrote it); a delete is "delete".
std::string event_json(const target& t, const kv::event& e) {
  std::string path = t.path_of(e.kv.key);
  std::string body;
  if (e.type == kv::event_type::put) {
    body = e.prev_kv ? "{\"action\":\"set\",\"node\":" : "{\"action\":\"create\",\"node\":";
    append_file_node(body, path, e.kv.value, e.kv.mod_revision, e.kv.create_revision);
  } else {
    body = "{\"action\":\"delete\",\"node\":{\"key\":";
    append_json_string(body, path);
    append_indexes(body, e.kv.mod_revision, e.prev_kv ? e.prev_kv->create_revision : 0);
    body += '}';
  }
  if (e.prev_kv) {
    body += ",\"prevNode\":";
    append_file_node(body, path, e.prev_kv->value, e.prev_kv->mod_revision, e.prev_kv->create_revision);
  }
  body += "}\n";
  return body;
}

// GET ?wait=true: the first matching event at or after waitIndex (or the next one), or
// after wait_timeout 200 with an empty body (the client asks again).
task<void> wait_for_event(const target& t, bool recursive, std::uint64_t wait_index, http_response& response) {
  native::watch_create_request create;
  create.key = t.key;
  if (recursive) create.range_end = t.range_end();
  create.start_revision = static_cast<std::int64_t>(
      std::min<std::uint64_t>(wait_index, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())));
  create.prev_kv = true;
  auto opened = kv_watch(create);
  if (!opened) {
    send_kv_failure(response, opened.error());
    co_return;
  }
  stream_reader& reader = opened.value();
  auto state = std::make_shared<wait_state>();
  state->reader = &reader;
  state->response = &response;
  state->deadline = std::chrono::steady_clock::now() + g_options.wait_timeout;
  spawn(watchdog(state));

  std::int64_t index = 0;  // the store's index when the watch was registered (etcd's header)
  bool created = false;
  std::string answer;
  int error_code = 0;
  std::string error_cause;
  for (;;) {
    task<result<message>> pending = reader.next();
    result<message> item = co_await std::move(pending);
    if (!item) break;  // the watchdog's cancel (timeout, client gone) or the stream failed
    auto decoded = decode_watch_message(item.value());
    if (!decoded) break;
    const native::watch_response& w = decoded.value();
    if (!created && w.created) {
      created = true;
      index = w.header.revision;
    }
    if (w.canceled) {
      if (w.compact_revision != 0) {
        // etcd: "the requested history has been cleared [<first watchable>/<waitIndex>]".
        error_code = event_index_cleared;
        error_cause = "the requested history has been cleared [" + std::to_string(w.compact_revision) + "/" +
                      std::to_string(wait_index) + "]";
        if (index == 0) index = w.header.revision;
      } else if (!w.cancel_reason.empty()) {
        error_code = raft_internal;
        error_cause = w.cancel_reason;
      }
      break;
    }
    for (const kv::event& e : w.events) {
      if (matches(t, recursive, e.kv.key)) {
        answer = event_json(t, e);
        break;
      }
    }
    if (!answer.empty() || (item.value().flags & message_flags::end_of_stream)) break;
  }
  state->done = true;
  reader.cancel();  // the kv side's watch ends within its liveness interval
  if (error_code != 0) {
    send_v2_error(response, error_code, error_cause, error_code == raft_internal ? 0 : index);
    co_return;
  }
  response.add_header("X-Etcd-Index", std::to_string(index));
  // An empty body on timeout: etcd's Go client (client/keys.go) treats 200 + empty body
  // as ErrEmptyBody and asks again.
  response.send(200, "application/json", answer);
}

// ---- PUT ----------------------------------------------------------------------------------

enum class put_mode { set, create, update };

// Why a write's compares failed, from the token's keys read in the failure branch.
void send_put_refusal(const target& t, put_mode mode, const native::txn_response& done, http_response& response) {
  std::int64_t index = done.header.revision;
  const std::vector<kv::key_value>* kvs = nullptr;
  if (!done.responses.empty() && done.responses[0].type == kv::request_op::kind::range)
    kvs = &done.responses[0].range.kvs;
  static const std::vector<kv::key_value> none;
  if (kvs == nullptr) kvs = &none;
  auto exists = [&](const std::string& key) {
    return std::any_of(kvs->begin(), kvs->end(), [&](const kv::key_value& kv) { return kv.key == key; });
  };
  // A file on the way (etcd 104, the first one from the top): the token key, then each
  // ancestor below it, up to (not including) the key itself.
  std::string ancestor = t.token_key;
  std::string ancestor_path = std::string(url_root) + t.token;
  for (std::size_t i = 0; i < t.rest.size(); ++i) {
    if (exists(ancestor)) {
      send_v2_error(response, not_dir, ancestor_path, index);
      return;
    }
    ancestor += "/" + t.rest[i];
    ancestor_path += "/" + t.rest[i];
  }
  std::string dir = t.key + "/";
  bool is_dir = std::any_of(kvs->begin(), kvs->end(), [&](const kv::key_value& kv) { return kv.key.starts_with(dir); });
  if (is_dir) {
    send_v2_error(response, not_file, t.path, index);
  } else if (mode == put_mode::create && exists(t.key)) {
    send_v2_error(response, node_exist, t.path, index);
  } else {
    send_v2_error(response, key_not_found, t.path, index);  // update of a missing key
  }
}

task<void> put_node(const target& t, put_mode mode, std::string value, http_response& response) {
  if (t.rest.empty()) {  // the token itself is a directory
    task<result<native::range_response>> reading = kv_range(range_of(t.key, t.range_end()));
    auto got = co_await std::move(reading);
    if (!got) {
      send_kv_failure(response, got.error());
      co_return;
    }
    send_v2_error(response, not_file, t.path, got->header.revision);
    co_return;
  }
  kv::txn_request txn;
  // No file on the way: the token key and every ancestor below it do not exist ...
  std::string ancestor = t.token_key;
  for (std::size_t i = 0; i < t.rest.size(); ++i) {
    txn.compares.push_back(compare_of(kv::compare_target::create, kv::compare_result::equal, ancestor, 0));
    ancestor += "/" + t.rest[i];
  }
  // ... the key is not a directory ...
  txn.compares.push_back(
      compare_of(kv::compare_target::version, kv::compare_result::equal, t.key + "/", 0, t.range_end()));
  // ... and exists (update) or does not (create).
  if (mode == put_mode::create)
    txn.compares.push_back(compare_of(kv::compare_target::create, kv::compare_result::equal, t.key, 0));
  if (mode == put_mode::update)
    txn.compares.push_back(compare_of(kv::compare_target::version, kv::compare_result::greater, t.key, 0));
  kv::put_request put;
  put.key = t.key;
  put.value = value;
  put.prev_kv = true;
  txn.success.push_back(kv::request_op::of(std::move(put)));
  txn.failure.push_back(kv::request_op::of(range_of(t.token_key, t.token_key + "0")));
  task<result<native::txn_response>> writing = kv_txn(std::move(txn));
  auto done = co_await std::move(writing);
  if (!done) {
    send_kv_failure(response, done.error());
    co_return;
  }
  if (!done->succeeded) {
    send_put_refusal(t, mode, done.value(), response);
    co_return;
  }
  std::int64_t index = done->header.revision;
  const std::optional<kv::key_value>* prev = nullptr;
  if (!done->responses.empty() && done->responses[0].type == kv::request_op::kind::put)
    prev = &done->responses[0].put.prev_kv;
  bool had_prev = prev != nullptr && prev->has_value();
  std::int64_t created = had_prev ? (*prev)->create_revision : index;
  std::string_view action = mode == put_mode::create ? "create" : (mode == put_mode::update ? "update" : "set");
  std::string body = "{\"action\":\"" + std::string(action) + "\",\"node\":";
  append_file_node(body, t.path, value, index, created);
  if (had_prev) {
    body += ",\"prevNode\":";
    append_file_node(body, t.path, (*prev)->value, (*prev)->mod_revision, (*prev)->create_revision);
  }
  body += "}\n";
  // etcd: 201 for a create, or a set that made the node.
  send_event(response, (mode == put_mode::create || (mode == put_mode::set && !had_prev)) ? 201 : 200, index, body);
}

// ---- DELETE -------------------------------------------------------------------------------

task<void> delete_node(const target& t, bool dir, bool recursive, http_response& response) {
  // A file: deleted with its previous version, in one step.
  kv::txn_request txn;
  txn.compares.push_back(compare_of(kv::compare_target::version, kv::compare_result::greater, t.key, 0));
  kv::delete_range_request one;
  one.key = t.key;
  one.prev_kv = true;
  txn.success.push_back(kv::request_op::of(std::move(one)));
  txn.failure.push_back(kv::request_op::of(range_of(t.key + "/", t.range_end())));
  task<result<native::txn_response>> deleting = kv_txn(std::move(txn));
  auto done = co_await std::move(deleting);
  if (!done) {
    send_kv_failure(response, done.error());
    co_return;
  }
  std::int64_t index = done->header.revision;
  if (done->succeeded) {
    const kv::delete_range_result& d = done->responses.at(0).delete_range;
    std::string body = "{\"action\":\"delete\",\"node\":{\"key\":";
    append_json_string(body, t.path);
    std::int64_t created = d.prev_kvs.empty() ? 0 : d.prev_kvs[0].create_revision;
    append_indexes(body, index, created);
    body += '}';
    if (!d.prev_kvs.empty()) {
      body += ",\"prevNode\":";
      const kv::key_value& p = d.prev_kvs[0];
      append_file_node(body, t.path, p.value, p.mod_revision, p.create_revision);
    }
    body += "}\n";
    send_event(response, 200, index, body);
    co_return;
  }
  const std::vector<kv::key_value>& under = done->responses.at(0).range.kvs;
  if (under.empty()) {
    send_v2_error(response, key_not_found, t.path, index);
    co_return;
  }
  if (!recursive) {  // keel's directories are never empty (README): dir=true alone is 108
    send_v2_error(response, dir ? dir_not_empty : not_file, t.path, index);
    co_return;
  }
  std::int64_t created = 0;
  for (const kv::key_value& kv : under)
    if (created == 0 || kv.create_revision < created) created = kv.create_revision;
  kv::delete_range_request all;
  all.key = t.key + "/";
  all.range_end = t.range_end();
  task<result<native::delete_range_response>> clearing = kv_delete_range(std::move(all));
  auto cleared = co_await std::move(clearing);
  if (!cleared) {
    send_kv_failure(response, cleared.error());
    co_return;
  }
  if (cleared->deleted == 0) {  // deleted by someone else in between
    send_v2_error(response, key_not_found, t.path, cleared->header.revision);
    co_return;
  }
  index = cleared->header.revision;
  std::string body;
  body = "{\"action\":\"delete\",\"node\":";
  append_dir_head(body, t.path);
  append_indexes(body, index, created);
  body += "},\"prevNode\":";
  append_dir_head(body, t.path);
  append_indexes(body, created, created);
  body += "}}\n";
  send_event(response, 200, index, body);
}

// ---- handlers -----------------------------------------------------------------------------

// Reads a boolean parameter; false (and the 209 sent) when it does not parse.
bool read_bool(const form& params, std::string_view name, bool& out, http_response& response) {
  const std::string* text = find(params, name);
  if (text == nullptr) return true;
  auto parsed = parse_bool(*text);
  if (!parsed) {
    send_v2_error(response, invalid_field, "invalid value for \"" + std::string(name) + "\"", 0);
    return false;
  }
  out = *parsed;
  return true;
}

task<void> http_token(const http_request& request, http_response& response) {
  std::string why;
  auto t = parse_target(request.path(), why);
  if (!t) {
    response.send_error(400, why);
    co_return;
  }
  form params = parameters_of(request);
  bool recursive = false;
  bool dir = false;
  bool wait = false;
  if (!read_bool(params, "recursive", recursive, response) || !read_bool(params, "dir", dir, response) ||
      !read_bool(params, "wait", wait, response))
    co_return;
  if (request.method == "GET") {
    if (!wait) {
      task<void> getting = get_node(*t, recursive, response);
      co_await std::move(getting);
      co_return;
    }
    std::uint64_t wait_index = 0;
    if (const std::string* text = find(params, "waitIndex")) {
      auto parsed = parse_uint(*text);
      if (!parsed) {
        send_v2_error(response, index_nan, "invalid value for \"waitIndex\"", 0);
        co_return;
      }
      wait_index = *parsed;
    }
    task<void> waiting = wait_for_event(*t, recursive, wait_index, response);
    co_await std::move(waiting);
    co_return;
  }
  if (wait) {
    send_v2_error(response, invalid_field, "\"wait\" can only be used with GET requests", 0);
    co_return;
  }
  if (request.method == "DELETE") {
    task<void> deleting = delete_node(*t, dir || recursive, recursive, response);
    co_await std::move(deleting);
    co_return;
  }
  // PUT: prevExist=false → create, true → update, absent → set (etcd's store operations;
  // prevValue / prevIndex / ttl are not part of the discovery protocol: README).
  put_mode mode = put_mode::set;
  if (const std::string* text = find(params, "prevExist")) {
    auto parsed = parse_bool(*text);
    if (!parsed) {
      send_v2_error(response, invalid_field, "invalid value for \"prevExist\"", 0);
      co_return;
    }
    mode = *parsed ? put_mode::update : put_mode::create;
  }
  const std::string* value = find(params, "value");
  task<void> putting = put_node(*t, mode, value != nullptr ? *value : std::string(), response);
  co_await std::move(putting);
}

std::string random_token() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    KEEL_ASSERT_MSG(n > 0, "getrandom failed");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token.push_back(hex[b >> 4]);
    token.push_back(hex[b & 15]);
  }
  return token;
}

// GET /new?size=N: a fresh token whose _config/size is N.
task<void> http_new(const http_request& request, http_response& response) {
  form params = parameters_of(request);
  long long size = default_size;
  if (const std::string* text = find(params, "size"); text != nullptr && !text->empty()) {
    auto parsed = parse_int(*text);
    if (!parsed || *parsed < 1 || *parsed > std::numeric_limits<int>::max()) {
      response.send_error(400, "invalid size \"" + *text + "\": expected a positive integer");
      co_return;
    }
    size = *parsed;
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string token = random_token();
    std::string token_key = std::string(key_root) + token;
    kv::txn_request txn;  // a fresh token: nothing under it yet
    txn.compares.push_back(compare_of(kv::compare_target::version, kv::compare_result::equal, token_key, 0,
                                      token_key + "0"));
    kv::put_request put;
    put.key = token_key + "/_config/size";
    put.value = std::to_string(size);
    txn.success.push_back(kv::request_op::of(std::move(put)));
    task<result<native::txn_response>> writing = kv_txn(std::move(txn));
    auto done = co_await std::move(writing);
    if (!done) {
      response.send_error(503, "unable to generate token: " + done.error().message());
      co_return;
    }
    if (!done->succeeded) continue;  // 2^-128: someone has this token
    std::string_view host = request.header("Host");
    std::string body = "http://" + std::string(host.empty() ? "127.0.0.1:2379" : host) + std::string(url_root) + token;
    response.send(200, "text/plain", body);
    co_return;
  }
  response.send_error(503, "unable to generate token");
}

}  // namespace

void register_routes(http_router& router, const service_options& options) {
  g_options = options;
  router.add_async("GET", "/new", http_new);
  for (const char* method : {"GET", "PUT", "DELETE"}) router.add_prefix_async(method, url_root, http_token);
}

}  // namespace keel::discovery_module
