// proxy.cc — etcd 3.4's v2 proxy (proxy.h, ../PROXY.md).
#include "proxy.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include "keel/discovery/client.h"
#include "keel/module.h"
#include "keel/reactor/http.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/reactor/shard.h"
#include "http_head.h"

namespace keel::kv_module::proxy {

namespace {

using clock = std::chrono::steady_clock;

// ---- the endpoint table (etcd's director) -------------------------------------------------

struct director {
  std::mutex mutex;
  options opts;
  std::vector<std::string> endpoints;  // the members' client URLs, shuffled per refresh
  std::map<std::string, clock::time_point> failed_until;
  module_context* context = nullptr;
  bool announced = false;  // "endpoints found" is logged once, as etcd
};
director* g = nullptr;

void note(log_level level, const std::string& text) { g->context->log(level, text); }

// The endpoints not marked failed, in the refresh's shuffled order.
std::vector<std::string> available() {
  std::lock_guard lock(g->mutex);
  std::vector<std::string> out;
  clock::time_point now = clock::now();
  for (const std::string& url : g->endpoints) {
    auto it = g->failed_until.find(url);
    if (it == g->failed_until.end() || now >= it->second) out.push_back(url);
  }
  return out;
}

// etcd's endpoint.Failed: unavailable for failure_wait, then tried again.
void mark_failed(const std::string& url, const std::string& why) {
  {
    std::lock_guard lock(g->mutex);
    clock::time_point now = clock::now();
    auto it = g->failed_until.find(url);
    if (it != g->failed_until.end() && now < it->second) return;
    g->failed_until[url] = now + g->opts.failure_wait;
  }
  note(log_level::warn, "proxy: failed to direct request to " + url + ": " + why + "; marked endpoint " + url +
                            " unavailable for " + std::to_string(g->opts.failure_wait.count()) + " ms");
}

// ---- HTTP/1.1 responses from upstream -----------------------------------------------------

// Hop-by-hop headers (etcd's singleHopHeaders, from Go's ReverseProxy): not forwarded in
// either direction. Content-Length and Content-Type are set by keel's own framing.
bool is_hop_by_hop(std::string_view lowered) {
  static constexpr std::string_view names[] = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                                               "te",         "trailers",   "transfer-encoding",  "upgrade"};
  return std::find(std::begin(names), std::end(names), lowered) != std::end(names);
}

struct upstream_head {
  int status = 0;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // the ones passed on
  enum class framing { none, length, chunked, until_close } how = framing::until_close;
  std::size_t length = 0;
  bool keep_alive = true;
  bool interim = false;  // a 1xx (100 Continue, 102, 103): the real answer follows
};

// Parses a complete response head at the start of `bytes` (http_head.h) as the relay
// uses it: hop-by-hop headers dropped, the body's framing decided. body_at is where the
// body starts. False while the head is incomplete; `malformed` when it cannot be one.
bool parse_head(std::string_view bytes, bool head_request, upstream_head& out, std::size_t& body_at, bool& malformed) {
  response_head parsed;
  head_parse state = parse_response_head(bytes, parsed);
  malformed = state == head_parse::malformed;
  if (state != head_parse::complete) return false;
  out.status = parsed.status;
  out.content_type = std::move(parsed.content_type);
  for (auto& [name, value] : parsed.headers)
    if (!is_hop_by_hop(lower(name))) out.headers.emplace_back(std::move(name), std::move(value));
  out.length = parsed.content_length.value_or(0);
  out.keep_alive = parsed.connection_keep_alive.value_or(parsed.http_1_1);
  body_at = parsed.body_at;
  out.interim = out.status / 100 == 1 && out.status != 101;
  if (head_request || out.status / 100 == 1 || out.status == 204 || out.status == 304) out.how = upstream_head::framing::none;
  else if (parsed.chunked) out.how = upstream_head::framing::chunked;
  else if (parsed.content_length) out.how = upstream_head::framing::length;
  else {
    out.how = upstream_head::framing::until_close;
    out.keep_alive = false;
  }
  return true;
}

// ---- per-shard state: pooled upstream connections, relays to watch -------------------------

// A relay in progress: the sweeper shuts its upstream socket when the client has gone,
// so a held watch does not outlive its client by more than a second; the member's
// connection carries --proxy-read-timeout as its silence limit while the relay uses it.
struct active_relay {
  http_response* response;
  connection* upstream = nullptr;  // the member's connection while the relay uses it
  void start(connection* c) {
    upstream = c;
    c->limit_silence(g->opts.read_timeout);  // 0: none, as in etcd
  }
  void stop() {
    if (upstream != nullptr) upstream->limit_silence({});  // pooled connections idle freely
    upstream = nullptr;
  }
};

struct shard_state {
  std::map<std::string, std::vector<connection*>> idle;  // by endpoint URL
  std::vector<active_relay*> active;
  bool stopping = false;
  bool sweeping = false;
};
thread_local shard_state t;

constexpr std::size_t idle_per_endpoint_max = 128;  // etcd's DefaultMaxIdleConnsPerHost
// An answer up to this size is passed on whole, with its Content-Length; a larger one is
// passed on as it arrives, chunked, so a member's answer never has to fit in memory.
constexpr std::size_t buffered_body_max = 4u << 20;
// A chunk is passed on in pieces of at most this many bytes as they arrive.
constexpr std::size_t chunk_piece_max = 256u << 10;
// etcd's GetClusterFromRemotePeers gives each peer 10 s; here, 10 s without a byte.
constexpr std::chrono::seconds members_timeout{10};
// etcd's proxy transport: TCP keep-alive every 30 s, so a vanished member is noticed.
constexpr int keepalive_seconds = 30;

task<void> sweeper() {
  t.sweeping = true;
  while (!t.stopping) {
    int slept = co_await keel::sleep_for(std::chrono::seconds(1));
    if (slept != -ETIME || t.stopping) break;
    for (active_relay* a : t.active)
      if (a->upstream != nullptr && a->response->peer_closed()) ::shutdown(a->upstream->fd(), SHUT_RDWR);
  }
  t.sweeping = false;
}

void release_idle() {
  for (auto& [url, conns] : t.idle)
    for (connection* c : conns) c->release();
  t.idle.clear();
}

void keep_alive(connection* c) {
  int one = 1, seconds = keepalive_seconds;
  ::setsockopt(c->fd(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(c->fd(), IPPROTO_TCP, TCP_KEEPIDLE, &seconds, sizeof seconds);
  ::setsockopt(c->fd(), IPPROTO_TCP, TCP_KEEPINTVL, &seconds, sizeof seconds);
}

// ---- reading the members (etcd's GetClusterFromRemotePeers) ------------------------------

struct members_answer {
  std::vector<std::string> client_urls;
  std::vector<std::string> peer_urls;
};

// GET <peer>/members on the peer port; nullopt if it did not answer 200 with members.
task<std::optional<members_answer>> fetch_members(const std::string& peer_url) {
  auto where = parse_endpoint(peer_url);
  if (!where) co_return std::nullopt;
  task<result<connection*>> connecting = connection::connect(where.value());
  auto conn = co_await std::move(connecting);
  if (!conn) co_return std::nullopt;
  connection* c = conn.value();
  // HTTP/1.0: the answer is never chunked (a Go server chunks an HTTP/1.1 answer over
  // about 2 KB, as etcd's /members of a larger cluster is), and ends when it closes.
  c->write("GET /members HTTP/1.0\r\nHost: " + where->host + ":" + std::to_string(where->port) + "\r\n\r\n");
  c->limit_silence(members_timeout);  // a peer that accepted and never answers
  std::string bytes;
  for (;;) {
    recv_buffer buffer = co_await c->read();
    if (buffer.size() == 0) break;
    bytes.append(buffer.data(), buffer.size());
    if (bytes.size() > (4u << 20)) break;
  }
  c->release();
  upstream_head head;
  std::size_t body_at = 0;
  bool malformed = false;
  if (!parse_head(bytes, false, head, body_at, malformed) || head.status != 200) co_return std::nullopt;
  // etcd takes the cluster id from X-Etcd-Cluster-ID and skips a peer without one.
  bool has_cluster_id = std::any_of(head.headers.begin(), head.headers.end(), [](const auto& h) {
    return lower(h.first) == "x-etcd-cluster-id" && !h.second.empty();
  });
  if (!has_cluster_id) co_return std::nullopt;
  std::string body = bytes.substr(body_at);
  if (head.how == upstream_head::framing::length) body.resize(std::min(body.size(), head.length));
  // Read as the discovery client reads it (keel/discovery/client.h); only the URLs are
  // needed here, so an entry without an id still counts and one that is no object is
  // skipped. An empty array is no answer.
  auto parsed = keel::discovery::parse_members(body);
  if (!parsed || parsed->entries == 0) co_return std::nullopt;
  members_answer out;
  for (const keel::discovery::remote_member& m : parsed->members) {
    out.client_urls.insert(out.client_urls.end(), m.client_urls.begin(), m.client_urls.end());
    out.peer_urls.insert(out.peer_urls.end(), m.peer_urls.begin(), m.peer_urls.end());
  }
  co_return out;
}

task<void> refresh_once() {
  std::vector<std::string> peers;
  {
    std::lock_guard lock(g->mutex);
    peers = g->opts.peer_urls;
  }
  std::optional<members_answer> found;
  for (const std::string& peer : peers) {
    task<std::optional<members_answer>> asking = fetch_members(peer);
    found = co_await std::move(asking);
    if (found) break;
  }
  if (!found) {
    // etcd: the refresh finds no member, so no endpoint is used until the next one.
    note(log_level::warn, "proxy: could not read the cluster's members from any of its peer URLs");
    std::lock_guard lock(g->mutex);
    g->endpoints.clear();
    co_return;
  }
  static thread_local std::mt19937 random{std::random_device{}()};
  std::shuffle(found->client_urls.begin(), found->client_urls.end(), random);
  std::vector<std::string> sorted_peers = found->peer_urls;
  std::sort(sorted_peers.begin(), sorted_peers.end());
  bool peers_changed = false, announce = false;
  std::string cluster_file;
  {
    std::lock_guard lock(g->mutex);
    g->endpoints = found->client_urls;
    std::vector<std::string> before = g->opts.peer_urls;
    std::sort(before.begin(), before.end());
    cluster_file = g->opts.cluster_file;
    if (sorted_peers.empty()) sorted_peers = before;
    if (before != sorted_peers) {
      g->opts.peer_urls = sorted_peers;
      peers_changed = true;
    }
    if (!g->announced && !g->endpoints.empty()) announce = g->announced = true;
  }
  // etcd writes the cluster file after every successful read of the members (not at
  // start: a mistyped --initial-cluster is not kept).
  if (status saved = write_cluster_file(cluster_file, sorted_peers); !saved)
    note(log_level::warn, "proxy: " + saved.message());
  else if (peers_changed)
    note(log_level::info, "proxy: updated peer urls in cluster file " + cluster_file);
  if (announce) {
    std::string list;
    for (const std::string& u : found->client_urls) list += (list.empty() ? "" : " ") + u;
    note(log_level::info, "proxy: endpoints found: " + list);
  }
}

task<void> refresher() {
  while (!t.stopping) {
    task<void> refreshing = refresh_once();
    co_await std::move(refreshing);
    std::chrono::milliseconds wait = g->opts.refresh_interval;
    // etcd: at the default interval or more, retry every second while nothing is known.
    if (wait >= std::chrono::milliseconds(30000) && available().empty()) wait = std::chrono::milliseconds(1000);
    int slept = co_await keel::sleep_for(wait);
    if (slept != -ETIME) break;
  }
}

// ---- relaying one request ------------------------------------------------------------------

std::string request_bytes(const http_request& q, const endpoint& to) {
  std::string out = q.method + " " + q.url + " HTTP/1.1\r\n";
  bool host = false;
  for (const http_header& h : q.headers) {
    std::string name = lower(h.name);
    // The body is complete already, so an Expect: 100-continue has nothing to wait for.
    if (is_hop_by_hop(name) || name == "content-length" || name == "expect") continue;
    host = host || name == "host";
    out += h.name + ": " + h.value + "\r\n";
  }
  if (!host) out += "Host: " + to.host + ":" + std::to_string(to.port) + "\r\n";
  if (!q.body.empty() || q.method == "PUT" || q.method == "POST" || q.method == "PATCH")
    out += "Content-Length: " + std::to_string(q.body.size()) + "\r\n";
  out += "\r\n";
  out += q.body;
  return out;
}

// An upstream connection: an idle one to `url` that the member has not closed
// (`reused`), unless `fresh`, else a new one.
task<result<connection*>> upstream_to(const std::string& url, const endpoint& where, bool fresh, bool& reused) {
  auto& pool = t.idle[url];
  reused = false;
  while (!fresh && !pool.empty()) {
    connection* c = pool.back();
    pool.pop_back();
    if (c->peer_closed()) {
      c->release();  // the member closed it while it was idle (a restart, its idle timeout)
      continue;
    }
    reused = true;
    co_return c;
  }
  task<result<connection*>> connecting = connection::connect(where, g->opts.dial_timeout);
  auto conn = co_await std::move(connecting);
  if (conn) keep_alive(conn.value());
  co_return conn;
}

void give_back(const std::string& url, connection* c) {
  auto& pool = t.idle[url];
  if (t.stopping || pool.size() >= idle_per_endpoint_max) c->release();
  else pool.push_back(c);
}

// Passes the body on as it arrives. `bytes` holds what was read past the head. Returns
// true when the body ended as framed (the connection may be reused).
task<bool> relay_body(connection* c, const upstream_head& head, std::string bytes, http_response& r) {
  using framing = upstream_head::framing;
  if (head.how == framing::none) {
    r.send(head.status, head.content_type, "");
    co_return bytes.empty();
  }
  if (head.how == framing::length && head.length <= buffered_body_max) {
    while (bytes.size() < head.length) {
      recv_buffer buffer = co_await c->read();
      if (buffer.size() == 0) break;
      bytes.append(buffer.data(), buffer.size());
    }
    if (bytes.size() < head.length) {
      r.send_error(502, "httpproxy: the member closed the connection in the middle of its answer");
      co_return false;
    }
    r.send(head.status, head.content_type, std::string_view(bytes).substr(0, head.length));
    co_return bytes.size() == head.length;
  }
  if (head.how == framing::length) {
    // Too large to hold: passed on as it arrives, chunked (the client sees the same bytes).
    r.start_stream(head.status, head.content_type);
    std::size_t left = head.length;
    std::string_view first(bytes.data(), std::min(bytes.size(), left));
    if (!first.empty()) r.write_chunk(first);
    left -= first.size();
    bool extra = bytes.size() > first.size();
    while (left > 0 && !r.peer_closed()) {
      recv_buffer buffer = co_await c->read();
      if (buffer.size() == 0) break;
      std::size_t take = std::min<std::size_t>(buffer.size(), left);
      r.write_chunk({buffer.data(), take});
      extra = extra || take < buffer.size();
      left -= take;
      (void)co_await r.drained();
    }
    if (left > 0) {
      r.abort_stream();  // the member stopped short: the client must not take it as whole
      co_return false;
    }
    r.end_stream();
    co_return !extra;
  }
  r.start_stream(head.status, head.content_type);
  if (head.how == framing::until_close) {
    if (!bytes.empty()) r.write_chunk(bytes);
    for (;;) {
      recv_buffer buffer = co_await c->read();
      if (buffer.size() == 0 || r.peer_closed()) break;
      r.write_chunk({buffer.data(), buffer.size()});
      (void)co_await r.drained();
    }
    r.end_stream();
    co_return false;
  }
  // Chunked: decode each chunk and write it on as chunks of keel's own, in pieces as
  // they arrive. A chunk-size line that is not hex digits (with an optional ;extension),
  // or a size over 2^40, ends the answer: nothing after it can be trusted.
  std::size_t at = 0;
  std::uint64_t chunk_left = 0;  // bytes of the current chunk not passed on yet
  bool in_chunk = false;
  std::size_t trailer_searched = 0;  // the trailer's end was looked for up to here
  for (;;) {
    if (in_chunk) {
      std::size_t have = bytes.size() - at;
      std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left, have));
      take = std::min(take, chunk_piece_max);
      if (take > 0) {
        r.write_chunk(std::string_view(bytes).substr(at, take));
        at += take;
        chunk_left -= take;
      }
      if (chunk_left == 0 && bytes.size() - at >= 2) {
        if (bytes.compare(at, 2, "\r\n") != 0) break;  // malformed: no CRLF after the data (aborted below)
        at += 2;
        in_chunk = false;
      }
      if (at > 64 * 1024) {
        bytes.erase(0, at);
        at = 0;
      }
      if (in_chunk && (chunk_left == 0 || take == 0)) {
        recv_buffer buffer = co_await c->read();
        if (buffer.size() == 0 || r.peer_closed()) break;
        bytes.append(buffer.data(), buffer.size());
        (void)co_await r.drained();
      }
      continue;
    }
    std::size_t eol = bytes.find("\r\n", at);
    if (eol != std::string::npos) {
      std::string_view line(bytes.data() + at, eol - at);
      line = line.substr(0, line.find(';'));
      while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
      std::uint64_t size = 0;
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
      if (line.empty() || ec != std::errc{} || end != line.data() + line.size() || size > (std::uint64_t{1} << 40))
        break;  // malformed
      if (size == 0) {
        // The last chunk; the trailer (ignored, at most 64 KiB) ends with an empty line.
        std::size_t end = std::string::npos;
        if (bytes.compare(eol + 2, 2, "\r\n") == 0) end = eol + 4;
        else if (std::size_t blank = bytes.find("\r\n\r\n", std::max(eol + 2, trailer_searched));
                 blank != std::string::npos)
          end = blank + 4;
        if (end != std::string::npos) {
          r.end_stream();
          co_return end == bytes.size();
        }
        if (bytes.size() - eol > 64 * 1024) break;  // a trailer that never ends (aborted below)
        trailer_searched = bytes.size() >= 3 ? bytes.size() - 3 : 0;
      } else {
        at = eol + 2;
        chunk_left = size;
        in_chunk = true;
        continue;
      }
    } else if (bytes.size() - at > 4096) {
      break;  // a chunk-size line that never ends
    }
    recv_buffer buffer = co_await c->read();
    if (buffer.size() == 0 || r.peer_closed()) break;
    bytes.append(buffer.data(), buffer.size());
    (void)co_await r.drained();
  }
  // Every way out of the loop above is an answer that did not end as framed: a member
  // that closed mid-chunk, a malformed size or CRLF, a trailer that never ended.
  r.abort_stream();
  co_return false;
}

// One client request through the proxy (etcd's reverseProxy.ServeHTTP).
task<void> relay(const http_request& q, http_response& r) {
  if (!t.sweeping && !t.stopping) spawn(sweeper());
  if (g->opts.readonly && q.method != "GET") {
    r.send(501, "text/plain; charset=utf-8", "");
    co_return;
  }
  std::vector<std::string> endpoints = available();
  if (endpoints.empty()) {
    r.send_error(503, "httpproxy: zero endpoints currently available");
    co_return;
  }
  active_relay watch{&r};
  t.active.push_back(&watch);
  struct unregister {
    active_relay* a;
    ~unregister() { std::erase(t.active, a); }
  } on_exit{&watch};
  bool head_request = q.method == "HEAD";
  for (const std::string& url : endpoints) {
    auto where = parse_endpoint(url);
    if (!where) {
      mark_failed(url, where.error().message());
      continue;
    }
    std::string out = request_bytes(q, where.value());
    // A pooled connection the member closed just now fails before any byte of an
    // answer: then (only then) the request is sent again, on a new connection.
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool reused = false;
      task<result<connection*>> getting = upstream_to(url, where.value(), attempt > 0, reused);
      auto conn = co_await std::move(getting);
      if (!conn) {
        mark_failed(url, conn.error().message());
        break;
      }
      connection* c = conn.value();
      watch.start(c);
      c->write(out);
      std::string bytes;
      upstream_head head;
      std::size_t body_at = 0;
      bool malformed = false, complete = false;
      bool answered = false;  // any byte came back (then the request is not sent again)
      for (;;) {
        // What is buffered may already hold the next head (after a 1xx).
        if (!bytes.empty()) {
          head = upstream_head{};
          complete = parse_head(bytes, head_request, head, body_at, malformed);
          if (complete && head.interim) {
            bytes.erase(0, body_at);  // 100 Continue and the like: the answer follows
            complete = false;
            continue;
          }
          if (complete || malformed) break;
        }
        recv_buffer buffer = co_await c->read();
        if (buffer.size() == 0) break;
        answered = true;
        bytes.append(buffer.data(), buffer.size());
      }
      if (!complete) {
        bool timed_out = c->timed_out();
        watch.stop();
        c->release();
        if (r.peer_closed()) co_return;  // the client left while the member held the request
        if (timed_out) {
          mark_failed(url, "no answer within --proxy-read-timeout (" + std::to_string(g->opts.read_timeout.count()) + " ms)");
          break;
        }
        if (reused && !answered) continue;
        mark_failed(url, malformed ? "a malformed answer" : "the connection closed before an answer");
        break;
      }
      for (const auto& [name, value] : head.headers) r.add_header(name, value);
      task<bool> relaying = relay_body(c, head, bytes.substr(body_at), r);
      bool reusable = co_await std::move(relaying);
      watch.stop();
      if (reusable && head.keep_alive && !r.peer_closed()) give_back(url, c);
      else c->release();
      co_return;
    }
  }
  r.send_error(502, "httpproxy: unable to get response from " + std::to_string(endpoints.size()) + " endpoint(s)");
}

void write_config(http_response& r) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  w.StartObject();
  w.Key("endpoints");
  w.StartArray();
  for (const std::string& u : available()) w.String(u.c_str(), static_cast<rapidjson::SizeType>(u.size()));
  w.EndArray();
  w.EndObject();
  r.send(200, "application/json", std::string(out.GetString(), out.GetSize()) + "\n");
}

status fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return {errc::io_error, path + ": " + std::strerror(errno)};
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) return {errc::io_error, "fsync " + path + ": " + std::strerror(saved)};
  return status::ok();
}

}  // namespace

result<std::optional<std::vector<std::string>>> read_cluster_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return std::optional<std::vector<std::string>>{};
    return status{errc::io_error, "proxy cluster file " + path + ": " + std::strerror(errno)};
  }
  std::stringstream text;
  text << in.rdbuf();
  rapidjson::Document doc;
  std::string body = text.str();
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("PeerURLs") || !doc["PeerURLs"].IsArray())
    return status{errc::invalid_argument,
                  "proxy cluster file " + path + ": expected {\"PeerURLs\":[\"http://host:port\", ...]}, got: " + body};
  std::vector<std::string> urls;
  for (const auto& u : doc["PeerURLs"].GetArray()) {
    if (!u.IsString() || !parse_endpoint(u.GetString()))
      return status{errc::invalid_argument, "proxy cluster file " + path + ": a peer URL is not http://host:port: " + body};
    urls.emplace_back(u.GetString());
  }
  if (urls.empty()) return status{errc::invalid_argument, "proxy cluster file " + path + ": PeerURLs is empty"};
  return std::optional<std::vector<std::string>>{std::move(urls)};
}

status write_cluster_file(const std::string& path, const std::vector<std::string>& peer_urls) {
  std::string dir = path.substr(0, path.rfind('/'));
  std::string parent = dir.substr(0, dir.rfind('/'));
  for (const std::string& d : {parent, dir})
    if (!d.empty() && ::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST)
      return {errc::io_error, "mkdir " + d + ": " + std::strerror(errno)};
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  w.StartObject();
  w.Key("PeerURLs");
  w.StartArray();
  for (const std::string& u : peer_urls) w.String(u.c_str(), static_cast<rapidjson::SizeType>(u.size()));
  w.EndArray();
  w.EndObject();
  std::string temporary = path + ".bak";  // etcd's name for it
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << out.GetString();
    file.flush();
    if (!file) return {errc::io_error, "write " + temporary + ": " + std::strerror(errno)};
  }
  if (status s = fsync_path(temporary, O_RDONLY); !s) return s;
  if (::rename(temporary.c_str(), path.c_str()) != 0)
    return {errc::io_error, "rename " + temporary + " to " + path + ": " + std::strerror(errno)};
  return fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

status start(module_context* context, options o) {
  g = new director;  // lives as long as the process: shard threads read it until they end
  g->context = context;
  g->opts = std::move(o);
  http_router& router = context->router();
  for (const char* method : {"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"}) router.add_prefix_async(method, "/", relay);
  // keeld's own /version and /health (exact routes) are the cluster's answers through a
  // proxy, as in etcd's proxy, where every path but /metrics is forwarded.
  router.add_async("GET", "/version", relay);
  router.add_async("GET", "/health", relay);
  router.add("GET", "/v2/config/local/proxy", [](const http_request&, http_response& r) { write_config(r); });
  context->on_shard_start([](shard& s) {
    t.stopping = false;
    if (s.id() == 0) spawn(refresher());
  });
  context->on_shard_stop([](shard&) {
    t.stopping = true;
    release_idle();
  });
  std::string peers;
  for (const std::string& u : g->opts.peer_urls) peers += (peers.empty() ? "" : ",") + u;
  context->log(log_level::info, std::string("proxy: running as etcd's v2 proxy") + (g->opts.readonly ? " (readonly)" : "") +
                                    " with peer urls " + peers + "; cluster file " + g->opts.cluster_file);
  return status::ok();
}

void stop() {}

}  // namespace keel::kv_module::proxy
