// v2_proxy.cc — etcd v2 quorum reads on a cluster follower are served by the leader: the
// follower sends the same HTTP request to the leader's client URL and relays the answer.
// (Writes go to the leader over the peer port instead: v2.h, "relaying writes".)
#include <sys/socket.h>

#include <chrono>
#include <string>

#include "core.h"
#include "http_head.h"
#include "keel/reactor/http.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/reactor/shard.h"
#include "v2.h"

namespace keel::kv_module::v2 {

namespace {

struct relayed {
  int status = 0;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Parses the head of the leader's answer once it is complete (http_head.h): status, the
// headers the relay keeps (etcd's and Raft's own), the body's length (0 without a
// Content-Length) and whether the leader closes the connection after it. False while the
// head is incomplete or malformed: a malformed head is read on until the leader closes
// the connection, which fails the request.
bool parse_head(const std::string& bytes, relayed& out, std::size_t& body_at, std::size_t& body_size, bool& close) {
  response_head head;
  if (parse_response_head(bytes, head) != head_parse::complete) return false;
  out.status = head.status;
  out.content_type = std::move(head.content_type);
  for (auto& [name, value] : head.headers) {
    std::string lowered = lower(name);
    if (lowered.starts_with("x-etcd-") || lowered.starts_with("x-raft-"))
      out.headers.emplace_back(std::move(name), std::move(value));
  }
  body_size = head.content_length.value_or(0);
  close = head.connection_keep_alive == false;
  body_at = head.body_at;
  return true;
}

// How long a relayed request waits for a leader (and its client URL) to be known.
constexpr std::chrono::seconds leader_wait_max{3};

// Idle keep-alive connections to the leader, per shard (connections belong to a shard).
struct idle_pool {
  std::string url;
  std::vector<connection*> conns;
  bool hooked = false;  // releases its connections when the shard stops
};
thread_local idle_pool pool;

// One request on `c`; nullopt when the connection failed. `answered_nothing`: it closed
// before sending a byte (a reused connection the server had closed).
task<std::optional<relayed>> exchange(connection* c, const std::string& out, bool& answered_nothing, bool& reusable) {
  c->write(out);
  std::string bytes;
  relayed r;
  std::size_t body_at = 0, body_size = 0;
  bool close = false, head = false;
  answered_nothing = true;
  reusable = false;
  for (;;) {
    recv_buffer buffer = co_await c->read();
    if (buffer.size() == 0) co_return std::nullopt;
    answered_nothing = false;
    bytes.append(buffer.data(), buffer.size());
    if (!head) head = parse_head(bytes, r, body_at, body_size, close);
    if (head && bytes.size() >= body_at + body_size) break;
    if (bytes.size() > 64u << 20) co_return std::nullopt;
  }
  r.body = bytes.substr(body_at, body_size);
  reusable = !close && bytes.size() == body_at + body_size;
  co_return r;
}

task<std::optional<relayed>> ask(const std::string& url, const http_request& request) {
  auto where = parse_endpoint(url);
  if (!where) co_return std::nullopt;
  std::string out = request.method + " " + request.url + " HTTP/1.1\r\nHost: " + where->host + ":" +
                    std::to_string(where->port) + "\r\n";
  std::string_view type = request.header("Content-Type");
  if (!type.empty()) out += "Content-Type: " + std::string(type) + "\r\n";
  out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n\r\n" + request.body;
  if (!pool.hooked) {
    pool.hooked = true;
    shard::current()->at_stop([] {
      for (connection* c : pool.conns) c->release();
      pool.conns.clear();
    });
  }
  if (pool.url != url) {  // the leader changed: its old connections go
    for (connection* c : pool.conns) c->release();
    pool.conns.clear();
    pool.url = url;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    connection* c = nullptr;
    bool reused = !pool.conns.empty();
    if (reused) {
      c = pool.conns.back();
      pool.conns.pop_back();
    } else {
      task<result<connection*>> connecting = connection::connect(where.value());
      auto conn = co_await std::move(connecting);
      if (!conn) co_return std::nullopt;
      c = conn.value();
    }
    bool answered_nothing = false, reusable = false;
    // A leader whose machine vanished (no RST, only silence) would hold the request until
    // TCP gives up, minutes later: the connection is cut after the leader's own wait for
    // the entry plus 1 s (its "request timed out" comes first when it is alive), and the
    // client gets a 503. Disarmed before `c` is pooled.
    c->limit_silence(cluster_request_timeout() + std::chrono::seconds(1));
    task<std::optional<relayed>> asking = exchange(c, out, answered_nothing, reusable);
    auto answer = co_await std::move(asking);
    c->limit_silence({});
    if (answer) {
      if (reusable && pool.url == url && pool.conns.size() < 64) pool.conns.push_back(c);
      else c->release();
      co_return answer;
    }
    c->release();
    // Only a reused connection that the server had closed before reading anything is
    // retried (the request cannot have been served then); anything else is not repeated.
    if (!(reused && answered_nothing)) co_return std::nullopt;
  }
  co_return std::nullopt;
}

}  // namespace

// The leader's first client URL; empty while no leader is known, or while its URLs are
// not (they arrive through the log when it publishes its attributes, after it starts).
std::string leader_client_url(const member_view& view) {
  for (const cluster_member_info& m : view.members)
    if (m.id == view.leader && !m.client_urls.empty()) return m.client_urls.front();
  return {};
}

task<bool> serve_on_leader(const http_request& request, http_response& response) {
  task<member_view> asking = members_now();
  member_view view = co_await std::move(asking);
  if (!view.cluster || view.leader == ids().member_id) co_return false;
  std::string url = leader_client_url(view);
  // Without a leader (an election, a cluster just formed) the request waits for one, as
  // etcd's proposals do, instead of failing at once: clients that retry at once would
  // otherwise spin on "no leader" and slow the election down.
  auto deadline = std::chrono::steady_clock::now() + leader_wait_max;
  keel::timer pause;
  while (url.empty() && std::chrono::steady_clock::now() < deadline) {
    task<bool> sleeping = pause.sleep(std::chrono::milliseconds(10));
    (void)co_await std::move(sleeping);
    task<member_view> again = members_now();
    view = co_await std::move(again);
    if (view.leader == ids().member_id) co_return false;  // this member leads now
    url = leader_client_url(view);
  }
  if (url.empty()) {
    add_cluster_headers(response);
    response.send(503, "application/json",
                  "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\"cause\":\"etcdserver: no leader\",\"index\":0}\n");
    co_return true;
  }
  task<std::optional<relayed>> relaying = ask(url, request);
  auto answer = co_await std::move(relaying);
  if (!answer) {
    add_cluster_headers(response);
    response.send(503, "application/json",
                  "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\"cause\":\"etcdserver: the leader did not "
                  "answer\",\"index\":0}\n");
    co_return true;
  }
  for (const auto& [name, value] : answer->headers) response.add_header(name, value);
  response.send(answer->status, answer->content_type.empty() ? "application/json" : answer->content_type, answer->body);
  co_return true;
}

}  // namespace keel::kv_module::v2
