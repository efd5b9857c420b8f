// engine.cc — the load generator's clients, connections and workloads. See engine.h.
//
// A request's life: the client takes a ticket (--total or --duration not yet used up),
// reserves a send time from its shard's token bucket, sleeps until then, makes sure its
// connection is up, appends the request to the connection's send queue and waits for
// the connection's reader to hand it its answer. Latency runs from the *intended* send
// time, so a server that falls behind a --rate schedule is charged for the queueing it
// caused (no coordinated omission). HTTP answers arrive in request order (the FIFO of
// waiters); keel frames carry the request id and may come back in any order.
#include "engine.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <random>
#include <thread>
#include <unordered_map>

#include "codec.h"
#include "http_reader.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/reactor/shard.h"
#include "keel/reactor/task.h"
#include "keel/wire/frame.h"
#include "rate_limiter.h"

namespace keel::bench {

void shard_results::record(std::uint64_t nanoseconds, bool success, const std::string& kind) {
  if (success) {
    ++ok;
    ok_latency.record(nanoseconds);
  } else {
    ++failed;
    error_latency.record(nanoseconds);
    // A server that puts keys or ids in its messages could make every error a new kind;
    // past 64 kinds the rest are lumped together so memory stays bounded.
    if (errors.size() < 64 || errors.count(kind)) ++errors[kind];
    else ++errors["other (more than 64 kinds)"];
  }
  completed.store(completed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void shard_results::merge(const shard_results& other) {
  ok_latency.merge(other.ok_latency);
  error_latency.merge(other.error_latency);
  watch_create.merge(other.watch_create);
  for (const auto& [kind, n] : other.errors) errors[kind] += n;
  ok += other.ok;
  failed += other.failed;
  watch_events += other.watch_events;
  watch_puts += other.watch_puts;
  thread_cpu_seconds += other.thread_cpu_seconds;
  wall_seconds = std::max(wall_seconds, other.wall_seconds);
}

namespace {

using std::chrono::nanoseconds;

std::int64_t now_ns() noexcept {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return std::int64_t{t.tv_sec} * 1000000000 + t.tv_nsec;
}

double thread_cpu_seconds() noexcept {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// One request waiting for its answer.
struct waiter {
  std::coroutine_handle<> handle;
  bool done = false;
  outcome result;
  std::string body;                 // HTTP answers: kept for the few workloads that read it
  wire::frame_type expected{};      // keel: the response type
  std::int64_t started_ns = 0;
  std::int64_t lease_id = 0;        // keel lease grant answers

  void finish(outcome o) {
    if (done) return;
    done = true;
    result = std::move(o);
    if (handle) shard::current()->schedule(handle);
  }
};

struct wait_for {
  waiter* w;
  bool await_ready() const noexcept { return w->done; }
  void await_suspend(std::coroutine_handle<> h) noexcept { w->handle = h; }
  void await_resume() const noexcept {}
};

// One TCP connection to the target, shared by the clients assigned to it.
struct bench_conn {
  endpoint where;
  std::string host;  // Host header
  target_kind target = target_kind::v3json;
  connection* conn = nullptr;
  bool connecting = false;
  std::string connect_error;
  std::vector<std::coroutine_handle<>> connect_waiters;
  std::deque<waiter*> in_order;                     // HTTP
  std::unordered_map<std::uint64_t, waiter*> by_id; // keel
  std::uint64_t next_id = 1;
  std::string fail_kind;  // why the reader was told to stop (timeout)

  bool up() const noexcept { return conn != nullptr; }
  std::size_t pending() const noexcept { return in_order.size() + by_id.size(); }
  std::int64_t oldest_started() const noexcept {
    std::int64_t oldest = INT64_MAX;
    if (!in_order.empty()) oldest = in_order.front()->started_ns;
    for (const auto& [id, w] : by_id) oldest = std::min(oldest, w->started_ns);
    return oldest;
  }
  void fail_all(const std::string& kind) {
    std::deque<waiter*> waiting;
    waiting.swap(in_order);
    for (auto& [id, w] : by_id) waiting.push_back(w);
    by_id.clear();
    for (waiter* w : waiting) w->finish(outcome::failure(kind));
  }
  // Sends a request: `bytes` must already carry the request (keel: with id `id`).
  void send(waiter* w, std::string_view bytes, std::uint64_t id) {
    if (target == target_kind::keel) by_id.emplace(id, w);
    else in_order.push_back(w);
    conn->write(bytes);
  }
};

std::string connect_kind(const std::string& message) {
  if (message.find("refused") != std::string::npos) return "connect refused";
  if (message.find("timed out") != std::string::npos) return "connect timeout";
  return "connect failed: " + message;
}

// Reads answers until the connection ends, then fails whatever is still waiting.
task<void> read_http(bench_conn* c, connection* conn) {
  http_reader reader;
  std::string why = "connection closed by server";
  for (;;) {
    recv_buffer b = co_await conn->read();
    if (b.size() == 0) {
      if (conn->error() != 0 && c->fail_kind.empty()) why = std::string("connection error: ") + std::strerror(-conn->error());
      break;
    }
    if (!reader.feed(b.data(), b.size())) {
      why = reader.error();
      break;
    }
    auto& done = reader.responses();
    while (!done.empty()) {
      http_response response = std::move(done.front());
      done.pop_front();
      if (c->in_order.empty()) continue;  // an answer nobody asked for (after a timeout)
      waiter* w = c->in_order.front();
      c->in_order.pop_front();
      outcome o = c->target == target_kind::v2 ? v2_classify(response.status, response.body)
                                               : v3_classify(response.status, response.body);
      w->body = std::move(response.body);
      w->finish(std::move(o));
    }
  }
  if (!c->fail_kind.empty()) why = c->fail_kind;
  c->conn = nullptr;
  c->fail_kind.clear();
  c->fail_all(why);
  conn->release();
}

task<void> read_frames(bench_conn* c, connection* conn) {
  wire::frame_decoder decoder;
  std::string why = "connection closed by server";
  bool open = true;
  while (open) {
    recv_buffer b = co_await conn->read();
    if (b.size() == 0) {
      if (conn->error() != 0) why = std::string("connection error: ") + std::strerror(-conn->error());
      break;
    }
    status decoded = wire::decode_frames(decoder, b.data(), b.size(), [&](const wire::frame_view& frame) {
      if (frame.header.request_id == 0) {  // connection-level error from the server
        why = "frame error on connection";
        open = false;
        return false;
      }
      auto it = c->by_id.find(frame.header.request_id);
      if (it == c->by_id.end()) return true;
      waiter* w = it->second;
      // Streams (watch) stay registered until end_of_stream.
      if (frame.header.end_of_stream() || frame.header.is_error()) c->by_id.erase(it);
      if (auto lease = keel_lease_id(frame)) w->lease_id = *lease;
      w->finish(keel_classify(frame, w->expected));
      return true;
    });
    if (!decoded) {
      why = "frame decode error: " + std::string(errc_name(decoded.code()));
      open = false;
    }
  }
  if (!c->fail_kind.empty()) why = c->fail_kind;
  c->conn = nullptr;
  c->fail_kind.clear();
  c->fail_all(why);
  conn->release();
}

// true when the connection is up; otherwise c->connect_error says why.
task<bool> ensure_connected(bench_conn* c) {
  if (c->up()) co_return true;
  if (c->connecting) {
    struct park {
      bench_conn* c;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { c->connect_waiters.push_back(h); }
      void await_resume() const noexcept {}
    };
    co_await park{c};
    co_return c->up();
  }
  c->connecting = true;
  task<result<connection*>> connecting = connection::connect(c->where);
  result<connection*> connected = co_await std::move(connecting);
  c->connecting = false;
  if (connected) {
    c->conn = connected.value();
    c->connect_error.clear();
    if (c->target == target_kind::keel) spawn(read_frames(c, c->conn));
    else spawn(read_http(c, c->conn));
  } else {
    c->connect_error = connect_kind(connected.error().message());
  }
  for (auto h : c->connect_waiters) shard::current()->schedule(h);
  c->connect_waiters.clear();
  co_return c->up();
}

// ---- one generator shard -------------------------------------------------------------------

struct shard_runner {
  const options& o;
  shard_results& results;
  unsigned shard_index;
  unsigned shard_count;
  std::vector<std::unique_ptr<bench_conn>> conns;
  rate_limiter limiter;
  std::uint64_t quota = 0;     // --total share of this shard
  std::uint64_t issued = 0;
  std::int64_t deadline_ns = 0;
  std::uint64_t sequence = 0;  // sequential keys: this shard's next
  std::mt19937_64 random;
  std::string value;
  std::string value_base64;  // `value` as the v3 gateway wants it, encoded once
  std::string v2_body;       // a v2 PUT's form body for `value`, escaped once
  bool finished = false;

  shard_runner(const options& opts, shard_results& r, unsigned index, unsigned count)
      : o(opts), results(r), shard_index(index), shard_count(count), random(0x6b65656c + index),
        value(opts.val_size, 'v'), value_base64(base64_encode(value)), v2_body(v2_put_body(value)) {}

  bool take_ticket() {
    if (finished || shard::current()->stopping()) return false;
    if (o.duration_seconds > 0) return now_ns() < deadline_ns;
    if (issued >= quota) return false;
    ++issued;
    return true;
  }

  std::uint64_t next_key_index() {
    if (o.sequential_keys) {
      std::uint64_t n = sequence++ * shard_count + shard_index;
      return n % o.key_space_size;
    }
    return random() % o.key_space_size;
  }
  std::string next_key() { return make_key(o.prefix, next_key_index(), o.key_size); }
};

// What a client sends next; fills `out` (and, for keel, the id and expected type).
struct request_plan {
  std::string out;
  flatbuffers::FlatBufferBuilder builder{256};
  std::int64_t lease_id = 0;
};

enum class op { put, range, txn_put, lease_grant, lease_keepalive };

void build(shard_runner& r, bench_conn& c, request_plan& p, op what, std::uint64_t id, waiter& w) {
  const options& o = r.o;
  p.out.clear();
  switch (what) {
    case op::put: {
      std::string key = r.next_key();
      if (c.target == target_kind::v2) v2_put_with_body(p.out, c.host, key, r.v2_body);
      else if (c.target == target_kind::v3json) v3_post(p.out, c.host, "/v3/kv/put", v3_put_body_encoded(key, r.value_base64));
      else keel_put(p.out, p.builder, id, key, r.value);
      w.expected = wire::frame_type::put_response;
      break;
    }
    case op::range: {
      std::string key = o.command == "range" ? o.arguments[0] : r.next_key();
      std::string end = o.command == "range" && o.arguments.size() > 1 ? o.arguments[1] : "";
      if (c.target == target_kind::v2) v2_get(p.out, c.host, key, o.linearizable);
      else if (c.target == target_kind::v3json) v3_post(p.out, c.host, "/v3/kv/range", v3_range_body(key, end, !o.linearizable));
      else keel_range(p.out, p.builder, id, key, end, !o.linearizable);
      w.expected = wire::frame_type::range_response;
      break;
    }
    case op::txn_put: {
      std::vector<std::pair<std::string, std::string>> puts;
      for (unsigned i = 0; i < o.txn_ops; ++i) puts.emplace_back(r.next_key(), r.value);
      if (c.target == target_kind::v2) v2_put(p.out, c.host, puts[0].first, r.value, false);
      else if (c.target == target_kind::v3json) v3_post(p.out, c.host, "/v3/kv/txn", v3_txn_put_body(puts));
      else keel_txn_put(p.out, p.builder, id, puts);
      w.expected = wire::frame_type::txn_response;
      break;
    }
    case op::lease_grant:
      if (c.target == target_kind::v3json) v3_post(p.out, c.host, "/v3/lease/grant", v3_lease_grant_body(60));
      else keel_lease_grant(p.out, p.builder, id, 60);
      w.expected = wire::frame_type::lease_grant_response;
      break;
    case op::lease_keepalive:
      if (c.target == target_kind::v3json) v3_post(p.out, c.host, "/v3/lease/keepalive", v3_lease_keepalive_body(p.lease_id));
      else keel_lease_keepalive(p.out, p.builder, id, p.lease_id);
      w.expected = wire::frame_type::lease_keepalive_response;
      break;
  }
}

op choose(shard_runner& r, request_plan& p) {
  const std::string& cmd = r.o.command;
  if (cmd == "put") return op::put;
  if (cmd == "range") return op::range;
  if (cmd == "txn-put") return op::txn_put;
  if (cmd == "lease-keepalive") return p.lease_id == 0 ? op::lease_grant : op::lease_keepalive;
  // mixed
  std::uniform_real_distribution<double> uniform(0, 1);
  return uniform(r.random) < r.o.read_ratio ? op::range : op::put;
}

task<void> client_loop(shard_runner* r, bench_conn* c) {
  request_plan plan;
  while (r->take_ticket()) {
    std::int64_t intended = now_ns();
    std::int64_t wait = r->limiter.reserve(intended);
    if (wait > 0) {
      intended += wait;
      co_await sleep_for(nanoseconds(wait));
      if (shard::current()->stopping()) break;
    }
    task<bool> connecting = ensure_connected(c);
    if (!co_await std::move(connecting)) {
      r->results.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ns() - intended)), false,
                        c->connect_error.empty() ? "connect failed" : c->connect_error);
      co_await sleep_for(std::chrono::milliseconds(100));  // do not spin on a dead endpoint
      continue;
    }
    waiter w;
    w.started_ns = intended;
    op what = choose(*r, plan);
    std::uint64_t id = c->next_id++;
    build(*r, *c, plan, what, id, w);
    c->send(&w, plan.out, id);
    co_await wait_for{&w};
    std::int64_t took = std::max<std::int64_t>(0, now_ns() - intended);
    if (what == op::lease_grant && w.result.ok) {
      plan.lease_id = c->target == target_kind::keel ? w.lease_id : v3_lease_id(w.body).value_or(0);
      if (plan.lease_id == 0) w.result = outcome::failure("lease grant without ID");
    }
    r->results.record(static_cast<std::uint64_t>(took), w.result.ok, w.result.kind);
  }
}

// Cuts connections whose oldest request has waited longer than --timeout: the reader
// then fails everything on it as "timeout" and the next request reconnects.
task<void> watchdog(shard_runner* r) {
  auto limit = static_cast<std::int64_t>(r->o.timeout_seconds * 1e9);
  while (!r->finished && !shard::current()->stopping()) {
    co_await sleep_for(std::chrono::milliseconds(100));
    std::int64_t now = now_ns();
    for (auto& c : r->conns) {
      if (c->up() && c->pending() > 0 && now - c->oldest_started() > limit && c->fail_kind.empty()) {
        c->fail_kind = "timeout";
        ::shutdown(c->conn->fd(), SHUT_RDWR);
      }
    }
  }
}

std::unique_ptr<bench_conn> make_conn(const options& o, unsigned index) {
  auto c = std::make_unique<bench_conn>();
  const std::string& url = o.endpoints[index % o.endpoints.size()];
  c->where = parse_endpoint(url).value();
  c->host = c->where.host + ":" + std::to_string(c->where.port);
  c->target = o.target;
  return c;
}

task<void> run_shard(shard_runner* r, std::vector<unsigned> client_conns) {
  const options& o = r->o;
  double start_cpu = thread_cpu_seconds();
  std::int64_t start = now_ns();
  r->deadline_ns = start + static_cast<std::int64_t>(o.duration_seconds * 1e9);
  double shard_rate = o.rate / r->shard_count;
  r->limiter = rate_limiter(shard_rate, std::max(1.0, shard_rate / 100), start);
  spawn(watchdog(r));
  std::vector<task<void>> clients;
  for (unsigned conn_index : client_conns) clients.push_back(client_loop(r, r->conns[conn_index].get()));
  task<void> all = when_all(std::move(clients));
  co_await std::move(all);
  r->finished = true;
  r->results.wall_seconds = static_cast<double>(now_ns() - start) / 1e9;
  r->results.thread_cpu_seconds = thread_cpu_seconds() - start_cpu;
  for (auto& c : r->conns) {
    if (c->up()) ::shutdown(c->conn->fd(), SHUT_RDWR);  // the readers release them
  }
}

// ---- watch and watch-latency (v3json, v2 and keel; one shard) -----------------------------------------

struct watch_state {
  shard_runner* r;
  std::vector<std::int64_t> put_started;  // by put sequence number
  std::uint64_t created = 0;
  std::uint64_t wanted = 0;
  bool measure_events = true;  // watch-latency: events are the measured requests
  unsigned streams_alive = 0;
  std::vector<int> stream_fds;
};

task<void> watch_stream(watch_state* s, endpoint where, std::string host, std::string key,
                        unsigned watchers) {
  ++s->streams_alive;
  task<result<connection*>> connecting = connection::connect(where);
  result<connection*> connected = co_await std::move(connecting);
  if (!connected) {
    for (unsigned i = 0; i < watchers; ++i) s->r->results.record(0, false, connect_kind(connected.error().message()));
    --s->streams_alive;
    co_return;
  }
  connection* conn = connected.value();
  s->stream_fds.push_back(conn->fd());
  // One POST whose body carries every create_request of this stream; the gateway reads
  // them one by one and answers each with a "created" line, then streams events.
  std::string body;
  for (unsigned i = 0; i < watchers; ++i) body += v3_watch_create_body(key, "");
  std::string out;
  v3_post(out, host, "/v3/watch", body);
  std::int64_t started = now_ns();
  conn->write(out);
  http_reader reader;
  unsigned created_here = 0;
  for (;;) {
    recv_buffer b = co_await conn->read();
    if (b.size() == 0 || !reader.feed(b.data(), b.size())) break;
    if (!reader.responses().empty()) {  // the stream ended with a whole answer: an error
      http_response& answer = reader.responses().front();
      s->r->results.record(static_cast<std::uint64_t>(now_ns() - started), false,
                           v3_classify(answer.status, answer.body).kind);
      break;
    }
    while (auto line = reader.take_line()) {
      auto parsed = v3_parse_watch_line(*line);
      if (!parsed) continue;
      std::int64_t now = now_ns();
      if (parsed->created) {
        ++created_here;
        ++s->created;
        s->r->results.watch_create.record(static_cast<std::uint64_t>(now - started));
        if (!s->measure_events) s->r->results.record(static_cast<std::uint64_t>(now - started), true, "");
      }
      for (const std::string& value : parsed->values) {
        ++s->r->results.watch_events;
        std::uint64_t sequence = std::strtoull(value.c_str(), nullptr, 10);
        if (s->measure_events && sequence < s->put_started.size()) {
          s->r->results.record(static_cast<std::uint64_t>(now - s->put_started[sequence]), true, "");
        }
      }
    }
  }
  if (created_here < watchers && !s->r->finished) {
    for (unsigned i = created_here; i < watchers; ++i) s->r->results.record(0, false, "watch stream ended");
  }
  ::shutdown(conn->fd(), SHUT_RDWR);
  for (;;) {  // drain to EOF so the connection's buffers go back before release
    recv_buffer b = co_await conn->read();
    if (b.size() == 0) break;
  }
  std::erase(s->stream_fds, conn->fd());
  conn->release();
  --s->streams_alive;
}

// v2: one long-poll watcher per connection (HTTP/1.1 has one request in flight per
// connection that matters here: a wait occupies it until its event). The first
// `GET ...?wait=true` waits for the next event after it is registered; etcd registers the
// watcher, then sends the answer's headers at once (200, chunked) and the body when the
// event comes — so "created" is the arrival of those headers (or of a whole answer).
// After every event the watcher re-issues the wait with waitIndex = modifiedIndex + 1, as
// etcd's v2 clients do, so events that happen between two waits come from the server's
// history instead of being lost.
task<void> v2_watcher(watch_state* s, endpoint where, std::string host, std::string key) {
  ++s->streams_alive;
  task<result<connection*>> connecting = connection::connect(where);
  result<connection*> connected = co_await std::move(connecting);
  if (!connected) {
    s->r->results.record(0, false, connect_kind(connected.error().message()));
    --s->streams_alive;
    co_return;
  }
  connection* conn = connected.value();
  s->stream_fds.push_back(conn->fd());
  std::string out;
  v2_watch(out, host, key, 0);
  std::int64_t started = now_ns();
  conn->write(out);
  http_reader reader;
  bool created = false;
  bool failed = false;
  auto mark_created = [&](std::int64_t now) {
    created = true;
    ++s->created;
    s->r->results.watch_create.record(static_cast<std::uint64_t>(now - started));
    if (!s->measure_events) s->r->results.record(static_cast<std::uint64_t>(now - started), true, "");
  };
  while (!failed) {
    recv_buffer b = co_await conn->read();
    if (b.size() == 0 || !reader.feed(b.data(), b.size())) break;
    std::int64_t now = now_ns();
    if (!created && reader.in_progress() && reader.in_progress_status() == 200) mark_created(now);
    auto& answers = reader.responses();
    while (!answers.empty()) {
      http_response answer = std::move(answers.front());
      answers.pop_front();
      if (answer.status != 200) {
        std::string kind = v2_classify(answer.status, answer.body).kind;
        s->r->results.record(static_cast<std::uint64_t>(now - started), false, created ? "watch: " + kind : kind);
        failed = true;
        break;
      }
      if (!created) mark_created(now);
      std::optional<v2_event> event = v2_parse_event(answer.body);
      if (!event) {
        s->r->results.record(static_cast<std::uint64_t>(now - started), false, "v2 watch answer without node.modifiedIndex");
        failed = true;
        break;
      }
      ++s->r->results.watch_events;
      if (event->value) {
        std::uint64_t sequence = std::strtoull(event->value->c_str(), nullptr, 10);
        if (s->measure_events && sequence < s->put_started.size()) {
          s->r->results.record(static_cast<std::uint64_t>(now - s->put_started[sequence]), true, "");
        }
      }
      out.clear();
      v2_watch(out, host, key, event->modified_index + 1);
      conn->write(out);
    }
  }
  if (!created && !failed && !s->r->finished) s->r->results.record(0, false, "watch stream ended");
  ::shutdown(conn->fd(), SHUT_RDWR);
  for (;;) {  // drain to EOF so the connection's buffers go back before release
    recv_buffer b = co_await conn->read();
    if (b.size() == 0) break;
  }
  std::erase(s->stream_fds, conn->fd());
  conn->release();
  --s->streams_alive;
}

// keel: one connection carrying --watchers-per-stream watches, each its own
// WatchCreateRequest (120) under its own request id (1..watchers), all written at once;
// each watch's WatchResponse frames (121) come back under that id. A watch counts as
// created at its first frame with created = true; a frame with canceled = true, an error
// frame or a stream that ends (end_of_stream) while the run lasts count as errors by kind.
task<void> keel_watch_stream(watch_state* s, endpoint where, std::string key, unsigned watchers) {
  ++s->streams_alive;
  task<result<connection*>> connecting = connection::connect(where);
  result<connection*> connected = co_await std::move(connecting);
  if (!connected) {
    for (unsigned i = 0; i < watchers; ++i) s->r->results.record(0, false, connect_kind(connected.error().message()));
    --s->streams_alive;
    co_return;
  }
  connection* conn = connected.value();
  s->stream_fds.push_back(conn->fd());
  struct watcher_state {
    bool created = false;
    bool ended = false;  // canceled, error frame or end_of_stream
    std::uint64_t events = 0;
  };
  std::vector<watcher_state> watches(watchers);
  std::string out;
  flatbuffers::FlatBufferBuilder builder(256);
  for (unsigned i = 0; i < watchers; ++i) keel_watch_create(out, builder, i + 1, key, "");
  std::int64_t started = now_ns();
  conn->write(out);
  wire::frame_decoder decoder;
  std::string why;  // the connection failed as a whole
  bool open = true;
  auto end_watch = [&](watcher_state& w, std::int64_t now, const std::string& kind) {
    if (w.ended) return;
    w.ended = true;
    s->r->results.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - started)), false, kind);
  };
  while (open) {
    recv_buffer b = co_await conn->read();
    if (b.size() == 0) break;
    std::int64_t now = now_ns();
    status decoded = wire::decode_frames(decoder, b.data(), b.size(), [&](const wire::frame_view& frame) {
      if (frame.header.request_id == 0) {  // connection-level error from the server
        why = keel_classify(frame, wire::frame_type::watch_response).kind;
        open = false;
        return false;
      }
      std::uint64_t id = frame.header.request_id;
      if (id > watchers) return true;  // not one of ours
      watcher_state& w = watches[id - 1];
      if (w.ended) return true;
      std::optional<keel_watch_frame> parsed = keel_parse_watch(frame);
      if (!parsed) {
        end_watch(w, now, keel_classify(frame, wire::frame_type::watch_response).kind);
        return true;
      }
      if (parsed->created && !w.created) {
        w.created = true;
        ++s->created;
        s->r->results.watch_create.record(static_cast<std::uint64_t>(now - started));
        if (!s->measure_events) s->r->results.record(static_cast<std::uint64_t>(now - started), true, "");
      }
      for (const std::string& value : parsed->values) {
        ++w.events;
        ++s->r->results.watch_events;
        std::uint64_t sequence = std::strtoull(value.c_str(), nullptr, 10);
        if (s->measure_events && sequence < s->put_started.size()) {
          s->r->results.record(static_cast<std::uint64_t>(now - s->put_started[sequence]), true, "");
        }
      }
      if (parsed->canceled) {
        end_watch(w, now, parsed->cancel_reason.empty() ? "watch canceled" : "watch canceled: " + parsed->cancel_reason);
      } else if (frame.header.end_of_stream()) {
        end_watch(w, now, "watch stream ended");
      }
      return true;
    });
    if (!decoded) {
      why = "frame decode error: " + std::string(errc_name(decoded.code()));
      open = false;
    }
  }
  if (why.empty() && conn->error() != 0 && !s->r->finished) {
    why = std::string("connection error: ") + std::strerror(-conn->error());
  }
  if (!s->r->finished) {
    if (why.empty()) why = "watch stream ended";
    std::int64_t now = now_ns();
    for (watcher_state& w : watches) end_watch(w, now, why);
  }
  ::shutdown(conn->fd(), SHUT_RDWR);
  for (;;) {  // drain to EOF so the connection's buffers go back before release
    recv_buffer b = co_await conn->read();
    if (b.size() == 0) break;
  }
  std::erase(s->stream_fds, conn->fd());
  conn->release();
  --s->streams_alive;
}

task<void> run_watch(shard_runner* r) {
  const options& o = r->o;
  double start_cpu = thread_cpu_seconds();
  std::int64_t start = now_ns();
  watch_state s;
  s.r = r;
  s.wanted = std::uint64_t{o.streams} * o.watchers_per_stream;
  std::string key = o.prefix + "watched";
  s.measure_events = o.command == "watch-latency";
  if (o.target == target_kind::v2) {
    // --streams x --watchers-per-stream connections, one wait each (see v2_watcher).
    for (unsigned i = 0; i < o.streams * o.watchers_per_stream; ++i) {
      auto where = make_conn(o, i);
      spawn(v2_watcher(&s, where->where, where->host, key));
    }
  } else if (o.target == target_kind::keel) {
    for (unsigned i = 0; i < o.streams; ++i) {
      auto where = make_conn(o, i);
      spawn(keel_watch_stream(&s, where->where, key, o.watchers_per_stream));
    }
  } else {
    for (unsigned i = 0; i < o.streams; ++i) {
      auto where = make_conn(o, i);
      spawn(watch_stream(&s, where->where, where->host, key, o.watchers_per_stream));
    }
  }
  // Wait (at most --timeout) until every watcher is created.
  std::int64_t give_up = now_ns() + static_cast<std::int64_t>(o.timeout_seconds * 1e9);
  while (s.created < s.wanted && now_ns() < give_up && r->results.failed == 0) {
    co_await sleep_for(std::chrono::milliseconds(5));
  }
  // Puts at --put-rate on their own connection; the value is the put's sequence number.
  r->conns.push_back(make_conn(o, 0));
  bench_conn* c = r->conns.back().get();
  spawn(watchdog(r));
  rate_limiter puts(o.put_rate, 1, now_ns());
  r->deadline_ns = now_ns() + static_cast<std::int64_t>(o.duration_seconds * 1e9);
  r->quota = o.total;
  std::string out;
  flatbuffers::FlatBufferBuilder builder(256);  // keel put frames
  while (r->results.failed == 0 && r->take_ticket()) {
    std::int64_t wait = puts.reserve(now_ns());
    if (wait > 0) co_await sleep_for(nanoseconds(wait));
    task<bool> connecting = ensure_connected(c);
    if (!co_await std::move(connecting)) {
      r->results.record(0, false, c->connect_error);
      break;
    }
    std::string value = std::to_string(s.put_started.size());
    if (value.size() < o.val_size) value.insert(0, o.val_size - value.size(), '0');
    out.clear();
    std::uint64_t id = 0;
    waiter w;
    if (o.target == target_kind::v2) {
      v2_put(out, c->host, key, value);
    } else if (o.target == target_kind::v3json) {
      v3_post(out, c->host, "/v3/kv/put", v3_put_body(key, value));
    } else {
      id = c->next_id++;
      keel_put(out, builder, id, key, value);
      w.expected = wire::frame_type::put_response;
    }
    w.started_ns = now_ns();
    s.put_started.push_back(w.started_ns);
    c->send(&w, out, id);
    co_await wait_for{&w};
    ++r->results.watch_puts;
    if (!w.result.ok) r->results.record(static_cast<std::uint64_t>(now_ns() - w.started_ns), false, "put: " + w.result.kind);
  }
  // Let the last events arrive (at most 1 s).
  std::uint64_t expected = r->results.watch_puts * s.wanted;
  std::int64_t settle = now_ns() + 1000000000;
  while (r->results.watch_events < expected && now_ns() < settle) co_await sleep_for(std::chrono::milliseconds(5));
  r->finished = true;
  r->results.wall_seconds = static_cast<double>(now_ns() - start) / 1e9;
  r->results.thread_cpu_seconds = thread_cpu_seconds() - start_cpu;
  if (c->up()) ::shutdown(c->conn->fd(), SHUT_RDWR);
  for (int fd : s.stream_fds) ::shutdown(fd, SHUT_RDWR);
  while (s.streams_alive > 0) co_await sleep_for(std::chrono::milliseconds(5));  // they use `s`
}

// A bar on stderr, redrawn every 250 ms, while any shard runs: only when stderr is a
// terminal or --progress was given.
void progress_loop(const options& o, run_results& results, std::atomic<unsigned>& running,
                   std::chrono::steady_clock::time_point begin) {
  bool show = o.progress || isatty(STDERR_FILENO);
  bool drew = false;
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(show ? 250 : 20));
    if (!show) continue;
    std::uint64_t done = 0;
    for (auto& s : results.shards) done += s->completed.load(std::memory_order_relaxed);
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    double fraction = o.duration_seconds > 0 ? elapsed / o.duration_seconds
                                             : static_cast<double>(done) / static_cast<double>(o.total);
    fraction = std::clamp(fraction, 0.0, 1.0);
    int filled = static_cast<int>(fraction * 40);
    std::fprintf(stderr, "\r[%.*s%*s] %3.0f%% %llu requests %.1f s", filled,
                 "########################################", 40 - filled, "", fraction * 100,
                 static_cast<unsigned long long>(done), elapsed);
    drew = true;
  }
  if (drew) std::fprintf(stderr, "\n");
}

}  // namespace

result<run_results> run_workload(const options& o) {
  for (const std::string& url : o.endpoints) {
    auto parsed = parse_endpoint(url);
    if (!parsed) return status(errc::invalid_argument, "bad endpoint '" + url + "': " + parsed.error().message());
  }
  run_results results;
  for (unsigned i = 0; i < o.shards; ++i) results.shards.push_back(std::make_unique<shard_results>());

  keel::system sys;
  std::atomic<unsigned> running{o.shards};
  std::vector<std::unique_ptr<shard_runner>> runners;
  for (unsigned i = 0; i < o.shards; ++i) {
    runners.push_back(std::make_unique<shard_runner>(o, *results.shards[i], i, o.shards));
  }
  auto begin = std::chrono::steady_clock::now();
  status started = sys.start({o.shards, true, 0}, nullptr);
  if (!started) return started;
  for (unsigned i = 0; i < o.shards; ++i) {
    sys.post(i, [&, i] {
      shard_runner* r = runners[i].get();
      auto finish = [&sys, &running] {
        if (running.fetch_sub(1) == 1) sys.stop();
      };
      if (o.command == "watch" || o.command == "watch-latency") {
        spawn([](shard_runner* r, decltype(finish) done) -> task<void> {
          task<void> work = run_watch(r);
          co_await std::move(work);
          done();
        }(r, finish));
        return;
      }
      // Connections of this shard and the clients on them.
      std::vector<unsigned> client_conns;
      std::unordered_map<unsigned, unsigned> local_of;
      for (unsigned c = i; c < o.conns; c += o.shards) {
        local_of[c] = static_cast<unsigned>(r->conns.size());
        r->conns.push_back(make_conn(o, c));
      }
      for (unsigned client = 0; client < o.clients; ++client) {
        unsigned conn = client % o.conns;
        if (conn % o.shards == i) client_conns.push_back(local_of[conn]);
      }
      r->quota = o.total / o.shards + (i < o.total % o.shards ? 1 : 0);
      spawn([](shard_runner* r, std::vector<unsigned> cc, decltype(finish) done) -> task<void> {
        task<void> work = run_shard(r, std::move(cc));
        co_await std::move(work);
        done();
      }(r, std::move(client_conns), finish));
    });
  }
  // The progress bar and the wait happen on this (non-shard) thread.
  progress_loop(o, results, running, begin);
  sys.wait();
  for (auto& s : results.shards) results.wall_seconds = std::max(results.wall_seconds, s->wall_seconds);
  return results;
}

}  // namespace keel::bench
