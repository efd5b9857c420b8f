// Reactor behaviour: timers, cancellation, cross-shard messages, TCP under many
// connections, file write + fdatasync, HTTP parsing answers. Everything runs on real
// io_uring rings, real sockets on loopback and real files.
#define BOOST_TEST_MODULE reactor
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "keel/limits.h"
#include "keel/reactor/cross.h"
#include "keel/reactor/http.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/reactor/shard.h"
#include "run_system.h"

using namespace std::chrono_literals;
using keel::task;

namespace {


// A blocking client socket, to drive the server from the test thread.
int blocking_connect(std::uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  return fd;
}

std::string read_until_closed(int fd) {
  std::string out;
  char buffer[4096];
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  return out;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(timer_expires_after_its_delay) {
  std::chrono::steady_clock::duration took{};
  int result = 0;
  run_system(1, [&](keel::system&) -> task<void> {
    auto begin = std::chrono::steady_clock::now();
    result = co_await keel::sleep_for(30ms);
    took = std::chrono::steady_clock::now() - begin;
  });
  BOOST_TEST(result == -ETIME);
  BOOST_TEST((took >= 30ms));
  BOOST_TEST((took < 500ms));
}

BOOST_AUTO_TEST_CASE(cancelled_timer_resumes_early_with_cancelled) {
  bool expired = true;
  std::chrono::steady_clock::duration took{};
  run_system(1, [&](keel::system&) -> task<void> {
    keel::timer t;
    auto begin = std::chrono::steady_clock::now();
    keel::spawn([](keel::timer& victim) -> task<void> {
      co_await keel::sleep_for(10ms);
      victim.cancel();
    }(t));
    expired = co_await t.sleep(10s);
    took = std::chrono::steady_clock::now() - begin;
  });
  BOOST_TEST(!expired);
  BOOST_TEST((took < 2s));
}

BOOST_AUTO_TEST_CASE(stop_cancels_pending_operations) {
  // A task asleep for a minute must not keep the shards from stopping.
  auto begin = std::chrono::steady_clock::now();
  int result = 0;
  keel::system sys;
  BOOST_REQUIRE(sys.start({2, false}, nullptr).is_ok());
  sys.post(1, [&] {
    keel::spawn([](int& out) -> task<void> { out = co_await keel::sleep_for(60s); }(result));
  });
  std::this_thread::sleep_for(20ms);
  sys.stop();
  sys.wait();
  BOOST_TEST(result == -ECANCELED);
  BOOST_TEST((std::chrono::steady_clock::now() - begin < 1s));
}

BOOST_AUTO_TEST_CASE(cross_shard_calls_run_on_the_target_and_return) {
  std::vector<unsigned> seen;
  run_system(2, [&](keel::system&) -> task<void> {
    for (unsigned i = 0; i < 1000; ++i) {
      unsigned where = co_await keel::run_on(1, [i] { return keel::shard::current()->id() * 10000 + i; });
      seen.push_back(where);
    }
  });
  BOOST_REQUIRE(seen.size() == 1000);
  for (unsigned i = 0; i < 1000; ++i) BOOST_TEST(seen[i] == 10000 + i);
}

BOOST_AUTO_TEST_CASE(cross_shard_messages_keep_order_beyond_queue_capacity) {
  // More messages than one queue holds: the spill path must keep them in order.
  std::vector<unsigned> order;
  run_system(2, [&](keel::system&) -> task<void> {
    for (unsigned i = 0; i < 3 * keel::limits::cross_shard_queue_items; ++i)
      keel::post_to(1, [&order, i] { order.push_back(i); });
    co_await keel::run_on(1, [] {});  // after everything above
  });
  BOOST_REQUIRE(order.size() == 3 * keel::limits::cross_shard_queue_items);
  for (unsigned i = 0; i < order.size(); ++i) BOOST_REQUIRE(order[i] == i);
}

BOOST_AUTO_TEST_CASE(task_runs_on_other_shard_and_awaits_io_there) {
  unsigned ran_on = 99;
  run_system(2, [&](keel::system&) -> task<void> {
    ran_on = co_await keel::run_task_on<unsigned>(1, []() -> task<unsigned> {
      co_await keel::sleep_for(1ms);
      co_return keel::shard::current()->id();
    });
  });
  BOOST_TEST(ran_on == 1u);
}

BOOST_AUTO_TEST_CASE(file_write_then_datasync_persists_bytes) {
  char path[] = "/tmp/keel-reactor-XXXXXX";
  int fd = mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  int allocated = -1, written = -1, synced = -1, linked = -1;
  run_system(1, [&](keel::system&) -> task<void> {
    allocated = co_await keel::allocate(fd, 0, 1 << 20);
    std::string data(4096, 'k');
    written = co_await keel::write_at(fd, data.data(), data.size(), 0);
    synced = co_await keel::datasync(fd);
    std::string more(100, 'z');
    linked = co_await keel::write_then_datasync(fd, more.data(), more.size(), 4096);
  });
  BOOST_TEST(allocated == 0);
  BOOST_TEST(written == 4096);
  BOOST_TEST(synced == 0);
  BOOST_TEST(linked == 100);
  struct stat st {};
  fstat(fd, &st);
  BOOST_TEST(st.st_size == 1 << 20);
  char check[4196];
  BOOST_REQUIRE(pread(fd, check, sizeof(check), 0) == static_cast<ssize_t>(sizeof(check)));
  BOOST_TEST(check[0] == 'k');
  BOOST_TEST(check[4095] == 'k');
  BOOST_TEST(check[4096] == 'z');
  close(fd);
  unlink(path);
}

BOOST_AUTO_TEST_CASE(write_to_bad_descriptor_reports_the_error) {
  int result = 0;
  run_system(1, [&](keel::system&) -> task<void> {
    char byte = 'x';
    result = co_await keel::write_then_datasync(-5, &byte, 1, 0);
  });
  BOOST_TEST(result == -EBADF);
}

BOOST_AUTO_TEST_CASE(linked_write_and_datasync_stay_linked_when_the_sq_is_nearly_full) {
  // The write and its fsync must reach the kernel in one submission; with one free SQ
  // slot the pair used to be split, the link lost, and the waiter resumed twice.
  char path[] = "/tmp/keel-reactor-XXXXXX";
  int fd = mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  int read_only = open(path, O_RDONLY);
  int linked = 0, slept = 0;
  std::chrono::steady_clock::duration took{};
  run_system(1, [&](keel::system&) -> task<void> {
    keel::shard* self = keel::shard::current();
    while (io_uring_sq_space_left(self->ring()) > 1) {
      io_uring_sqe* sqe = self->get_sqe();
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, keel::user_data_ignore);
    }
    char byte = 'x';
    linked = co_await keel::write_then_datasync(read_only, &byte, 1, 0);
    auto begin = std::chrono::steady_clock::now();
    slept = co_await keel::sleep_for(50ms);
    took = std::chrono::steady_clock::now() - begin;
  });
  BOOST_TEST(linked == -EBADF);
  BOOST_TEST(slept == -ETIME);  // not resumed early by a second completion of the pair
  BOOST_TEST((took >= 50ms));
  close(read_only);
  close(fd);
  unlink(path);
}

namespace {
// An echo server on every shard; returns the port.
task<void> echo_connection(keel::connection* conn) {
  for (;;) {
    keel::recv_buffer buffer = co_await conn->read();
    if (buffer.size() == 0) break;
    conn->write({buffer.data(), buffer.size()});
  }
  conn->release();
}
}  // namespace

BOOST_AUTO_TEST_CASE(tcp_echo_under_many_connections) {
  constexpr int clients = 200;
  constexpr int rounds = 20;
  std::atomic<std::uint16_t> port{0};
  std::atomic<int> failures{0};
  keel::system sys;
  BOOST_REQUIRE(sys.start({2, false}, nullptr).is_ok());
  // Shard 0 binds port 0; shard 1 binds the same port with SO_REUSEPORT.
  std::atomic<int> listening{0};
  for (unsigned s = 0; s < 2; ++s) {
    sys.post(s, [&, s] {
      if (s == 1) while (port.load() == 0) std::this_thread::yield();
      auto fd = keel::listen_tcp({"127.0.0.1", port.load()}, s == 0 ? keel::bind_mode::exclusive : keel::bind_mode::beside);
      BOOST_REQUIRE(fd.is_ok());
      if (s == 0) port = keel::local_port(fd.value());
      auto* listener = keel::tcp_listener::start(fd.value(), [](int client) {
        keel::spawn(echo_connection(keel::connection::adopt(client)));
      });
      keel::shard::current()->at_stop([listener] { listener->close(); });
      ++listening;
    });
  }
  while (listening.load() < 2) std::this_thread::sleep_for(1ms);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> fds;
      for (int c = 0; c < clients / 4; ++c) fds.push_back(blocking_connect(port));
      for (int r = 0; r < rounds; ++r) {
        for (std::size_t c = 0; c < fds.size(); ++c) {
          std::string message = "msg-" + std::to_string(t) + "-" + std::to_string(c) + "-" + std::to_string(r);
          if (send(fds[c], message.data(), message.size(), 0) != static_cast<ssize_t>(message.size())) ++failures;
          std::string got;
          while (got.size() < message.size()) {
            char buffer[256];
            ssize_t n = recv(fds[c], buffer, sizeof(buffer), 0);
            if (n <= 0) { ++failures; break; }
            got.append(buffer, static_cast<std::size_t>(n));
          }
          if (got != message) ++failures;
        }
      }
      for (int fd : fds) close(fd);
    });
  }
  for (auto& th : threads) th.join();
  std::uint64_t accepted = sys.at(0).stats().connections_accepted + sys.at(1).stats().connections_accepted;
  sys.stop();
  sys.wait();
  BOOST_TEST(failures.load() == 0);
  BOOST_TEST(accepted == static_cast<std::uint64_t>(clients));
}

BOOST_AUTO_TEST_CASE(a_port_taken_by_another_listener_is_refused_but_shards_may_join) {
  // A keeld started twice on one port must fail, not split the clients with the first
  // (with SO_REUSEPORT set before the bind, any process of the same user could join).
  int first = keel::listen_tcp({"127.0.0.1", 0}).value();
  std::uint16_t port = keel::local_port(first);
  auto shard = keel::listen_tcp({"127.0.0.1", port}, keel::bind_mode::beside);
  BOOST_REQUIRE(shard.is_ok());
  auto second = keel::listen_tcp({"127.0.0.1", port});
  BOOST_REQUIRE(!second.is_ok());
  BOOST_TEST(second.error().message().find("Address already in use") != std::string::npos, second.error().message());
  BOOST_TEST(second.error().message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  ::close(shard.value());
  ::close(first);
}

BOOST_AUTO_TEST_CASE(large_message_is_echoed_whole) {
  // 8 MiB through one connection: many provided buffers and short sends.
  std::atomic<std::uint16_t> port{0};
  keel::system sys;
  BOOST_REQUIRE(sys.start({1, false}, nullptr).is_ok());
  sys.post(0, [&] {
    auto fd = keel::listen_tcp({"127.0.0.1", 0});
    port = keel::local_port(fd.value());
    auto* listener = keel::tcp_listener::start(fd.value(), [](int client) {
      keel::spawn(echo_connection(keel::connection::adopt(client)));
    });
    keel::shard::current()->at_stop([listener] { listener->close(); });
  });
  while (port.load() == 0) std::this_thread::sleep_for(1ms);
  int fd = blocking_connect(port);
  std::string payload(8 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 131 % 251);
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < payload.size()) {
      ssize_t n = send(fd, payload.data() + off, payload.size() - off, 0);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    shutdown(fd, SHUT_WR);
  });
  std::string got = read_until_closed(fd);
  writer.join();
  close(fd);
  sys.stop();
  sys.wait();
  BOOST_TEST(got.size() == payload.size());
  BOOST_TEST((got == payload));
}

namespace {
struct named_connect {
  unsigned resumed_on = 99;
  std::string failure;
  std::uint16_t peer_port = 0;
};

// Connects to host:port from the current shard and notes where it resumed and to what.
task<int> connect_and_note(std::string host, std::uint16_t port, named_connect* out) {
  keel::endpoint where{std::move(host), port};  // named: GCC 12 destroys a temporary twice here
  auto connected = co_await keel::connection::connect(where);
  out->resumed_on = keel::shard::current()->id();
  if (!connected) {
    out->failure = connected.error().to_string();
    co_return 0;
  }
  sockaddr_storage peer{};
  socklen_t size = sizeof(peer);
  getpeername(connected.value()->fd(), reinterpret_cast<sockaddr*>(&peer), &size);
  out->peer_port = peer.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port)
                                              : ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
  connected.value()->release();
  co_return 0;
}
}  // namespace

BOOST_AUTO_TEST_CASE(connect_by_name_resolves_off_the_shard_and_comes_back_to_it) {
  // "localhost" is a name, not an address literal: it is looked up on a thread of its
  // own and the connect resumes on the shard that asked (shard 1 here). The listener is
  // on 127.0.0.1 only, so where "localhost" also gives ::1 first, the connect must go on
  // to the next address.
  int listener = keel::listen_tcp({"127.0.0.1", 0}).value();
  std::uint16_t port = keel::local_port(listener);
  named_connect noted;
  run_system(2, [&](keel::system&) -> task<void> {
    named_connect* out = &noted;
    co_await keel::run_task_on<int>(1, [port, out]() { return connect_and_note("localhost", port, out); });
  });
  close(listener);
  BOOST_TEST(noted.failure == "");
  BOOST_TEST(noted.resumed_on == 1u);
  BOOST_TEST(noted.peer_port == port);
}

BOOST_AUTO_TEST_CASE(connect_tries_every_address_of_a_name) {
  // Nothing listens on the port: every address is refused, and the error says so.
  int listener = keel::listen_tcp({"127.0.0.1", 0}).value();
  std::uint16_t port = keel::local_port(listener);
  close(listener);
  named_connect noted;
  run_system(1, [&](keel::system&) -> task<void> {
    co_await connect_and_note("localhost", port, &noted);
  });
  BOOST_TEST(noted.failure.find("connect localhost:" + std::to_string(port)) != std::string::npos, noted.failure);
  BOOST_TEST(noted.failure.find("refused") != std::string::npos, noted.failure);
}

BOOST_AUTO_TEST_CASE(connect_gives_up_after_its_limit) {
  // A listener that never accepts, its accept queue full: the kernel drops further SYNs,
  // as a dead host's network would, so only the limit ends the connect.
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  BOOST_REQUIRE(listen(listener, 0) == 0);
  socklen_t size = sizeof(address);
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size);
  std::uint16_t port = ntohs(address.sin_port);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {  // backlog 0 queues one; the rest wait on dropped SYNs
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    (void)connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(50ms);
  std::string failure;
  auto took = std::chrono::steady_clock::duration::zero();
  run_system(1, [&](keel::system&) -> task<void> {
    keel::endpoint where{"127.0.0.1", port};
    auto started = std::chrono::steady_clock::now();
    auto connected = co_await keel::connection::connect(where, 300ms);
    took = std::chrono::steady_clock::now() - started;
    if (connected) {
      connected.value()->release();
    } else {
      failure = connected.error().to_string();
    }
  });
  for (int fd : fillers) close(fd);
  close(listener);
  BOOST_TEST(failure.find("timed out after 300 ms") != std::string::npos, failure);
  BOOST_TEST(took >= 250ms);
  BOOST_TEST(took < 2s);
}

namespace {
// What a read with a silence limit saw: the bytes, whether it timed out, how long it took.
struct silent_read {
  std::string bytes;
  bool timed_out = false;
  std::chrono::steady_clock::duration took{};
};

// Connects to `port`, arms a silence limit of `quiet` and reads until the end.
task<void> read_with_silence_limit(std::uint16_t port, std::chrono::milliseconds quiet, silent_read* out) {
  keel::endpoint where{"127.0.0.1", port};
  auto connected = co_await keel::connection::connect(where);
  if (!connected) co_return;
  keel::connection* conn = connected.value();
  auto started = std::chrono::steady_clock::now();
  conn->limit_silence(quiet);
  for (;;) {
    keel::recv_buffer got = co_await conn->read();
    if (got.size() == 0) break;
    out->bytes.append(got.data(), got.size());
  }
  out->took = std::chrono::steady_clock::now() - started;
  out->timed_out = conn->timed_out();
  conn->release();
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_silence_limit_cuts_a_mute_peer_and_spares_a_slow_one) {
  // A peer that accepts and never answers is cut after the limit; one that sends a byte
  // every 60 ms for 600 ms (longer than the 200 ms limit in all) is read to its end.
  int listener = keel::listen_tcp({"127.0.0.1", 0}).value();
  std::uint16_t port = keel::local_port(listener);
  std::thread peers([listener] {
    int mute = accept(listener, nullptr, nullptr);
    int slow = accept(listener, nullptr, nullptr);
    for (int i = 0; i < 10; ++i) {
      (void)!write(slow, "x", 1);
      std::this_thread::sleep_for(60ms);
    }
    close(slow);
    std::this_thread::sleep_for(500ms);
    close(mute);
  });
  silent_read mute, slow;
  run_system(1, [&](keel::system&) -> task<void> {
    co_await read_with_silence_limit(port, 200ms, &mute);
    co_await read_with_silence_limit(port, 200ms, &slow);
  });
  peers.join();
  close(listener);
  BOOST_TEST(mute.timed_out);
  BOOST_TEST(mute.bytes.empty());
  BOOST_TEST(mute.took >= 190ms);
  BOOST_TEST(mute.took < 1s);
  BOOST_TEST(!slow.timed_out);
  BOOST_TEST(slow.bytes == std::string(10, 'x'));
}

namespace {
// Writes `bytes` to a peer that is not reading, then times 20 sleeps of 5 ms on the
// same shard. Signals `timed` when done, then releases the connection.
task<void> write_then_time_sleeps(keel::connection* conn, std::size_t bytes,
                                  std::chrono::steady_clock::duration* took,
                                  std::atomic<bool>* timed) {
  std::string payload(bytes, 'x');
  conn->write(payload);
  auto begin = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) co_await keel::sleep_for(5ms);
  *took = std::chrono::steady_clock::now() - begin;
  timed->store(true);
  conn->release();
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_send_blocked_on_a_full_socket_does_not_hold_up_timers) {
  // The first send of a batch goes with MSG_DONTWAIT and the shard sleeps until one
  // completion beyond it. Here the peer does not read, so that send is short and the
  // rest waits on the socket: if the shard counted the waiting send as one that
  // completes at once, it would sleep through its timers until the peer read.
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> timed{false};
  std::chrono::steady_clock::duration took{};
  constexpr std::size_t bytes = 32u << 20;  // well beyond loopback's socket buffers
  keel::system sys;
  BOOST_REQUIRE(sys.start({1, false}, nullptr).is_ok());
  sys.post(0, [&] {
    auto fd = keel::listen_tcp({"127.0.0.1", 0});
    port = keel::local_port(fd.value());
    auto* listener = keel::tcp_listener::start(fd.value(), [&](int client) {
      keel::spawn(write_then_time_sleeps(keel::connection::adopt(client), bytes, &took, &timed));
    });
    keel::shard::current()->at_stop([listener] { listener->close(); });
  });
  while (port.load() == 0) std::this_thread::sleep_for(1ms);
  int fd = blocking_connect(port);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!timed.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  if (!timed.load()) {
    // The shard is asleep for good: stopping it would hang too, so fail here.
    std::fprintf(stderr, "error: the shard's timers did not run while a send waited for room\n");
    std::_Exit(1);
  }
  // Now read: every byte arrives, so the rest of the short send was sent after all.
  std::string got = read_until_closed(fd);
  close(fd);
  sys.stop();
  sys.wait();
  BOOST_TEST((took >= 100ms));
  BOOST_TEST((took < 2s));
  BOOST_TEST(got.size() == bytes);
}

namespace {
struct http_fixture {
  keel::system sys;
  keel::http_router router;
  keel::http_server_options options;
  std::atomic<std::uint16_t> port{0};

  http_fixture() {
    router.add("GET", "/version", [](const keel::http_request&, keel::http_response& r) {
      r.send(200, "application/json", "{\"v\":1}");
    });
    router.add("PUT", "/echo", [](const keel::http_request& q, keel::http_response& r) {
      r.send(200, "text/plain", q.body);
    });
    router.add(keel::http_router::any_method, "/echo", [](const keel::http_request& q, keel::http_response& r) {
      r.send(405, "text/plain", "no " + q.method);
    });
    router.add_async("GET", "/stream", [](const keel::http_request&, keel::http_response& r) -> task<void> {
      r.start_stream(200, "text/plain");
      for (int i = 0; i < 3; ++i) {
        r.write_chunk("event-" + std::to_string(i) + "\n");
        co_await keel::sleep_for(5ms);
      }
      r.end_stream();
    });
    router.add("GET", "/own-default", [](const keel::http_request&, keel::http_response& r) {
      r.add_header("x-default", "mine");  // a default's name, set by the handler
      r.send(200, "text/plain", "ok");
    });
    options.router = &router;
    options.body_bytes_max = 1024;
    options.default_headers = "X-Default: d\r\nX-Other: o\r\n";
    options.answer_preflight = true;
    BOOST_REQUIRE(sys.start({1, false}, nullptr).is_ok());
    sys.post(0, [this] {
      auto fd = keel::listen_tcp({"127.0.0.1", 0});
      port = keel::local_port(fd.value());
      auto* listener = keel::tcp_listener::start(fd.value(), [this](int client) {
        keel::spawn(keel::serve_http(keel::connection::adopt(client), options));
      });
      keel::shard::current()->at_stop([listener] { listener->close(); });
    });
    while (port.load() == 0) std::this_thread::sleep_for(1ms);
  }
  ~http_fixture() {
    sys.stop();
    sys.wait();
  }
  // Sends raw bytes, half-closes, and returns everything the server answered.
  std::string exchange(const std::string& raw) {
    int fd = blocking_connect(port);
    send(fd, raw.data(), raw.size(), 0);
    shutdown(fd, SHUT_WR);
    std::string out = read_until_closed(fd);
    close(fd);
    return out;
  }
};
}  // namespace

BOOST_FIXTURE_TEST_SUITE(http, http_fixture)

BOOST_AUTO_TEST_CASE(answers_get_with_content_length) {
  std::string out = exchange("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 200 OK\r\n"));
  BOOST_TEST(out.find("Content-Length: 7\r\n") != std::string::npos);
  BOOST_TEST(out.ends_with("{\"v\":1}"));
}

BOOST_AUTO_TEST_CASE(answers_pipelined_requests_in_order) {
  std::string raw;
  for (int i = 0; i < 50; ++i)
    raw += "PUT /echo HTTP/1.1\r\nContent-Length: " + std::to_string(std::to_string(i).size()) +
           "\r\n\r\n" + std::to_string(i);
  std::string out = exchange(raw);
  BOOST_TEST(count(out, "HTTP/1.1 200 OK") == 50u);
  std::size_t at = 0;
  for (int i = 0; i < 50; ++i) {
    std::string needle = "\r\n\r\n" + std::to_string(i);
    at = out.find(needle, at);
    BOOST_REQUIRE_MESSAGE(at != std::string::npos, "response " << i << " missing or out of order");
    at += needle.size();
  }
}

BOOST_AUTO_TEST_CASE(unknown_path_is_404_with_json_and_keeps_connection) {
  std::string out = exchange("GET /nope HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 404 Not Found\r\n"));
  BOOST_TEST(out.find("{\"message\":\"no such path: /nope\"}") != std::string::npos);
  BOOST_TEST(out.find("HTTP/1.1 200 OK") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(head_gets_headers_without_a_body) {
  // The 404 for HEAD carries its Content-Length but no body, so the next pipelined
  // response starts right after the blank line.
  std::string out = exchange("HEAD /nope HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\n\r\n");
  auto blank = out.find("\r\n\r\n");
  BOOST_REQUIRE(blank != std::string::npos);
  BOOST_TEST(out.starts_with("HTTP/1.1 404 Not Found\r\n"));
  BOOST_TEST(out.substr(blank + 4).starts_with("HTTP/1.1 200 OK\r\n"));
}

BOOST_AUTO_TEST_CASE(wrong_method_is_405_with_allow) {
  std::string out = exchange("DELETE /version HTTP/1.1\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
  BOOST_TEST(out.find("Allow: GET\r\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(any_method_route_takes_the_methods_without_a_route) {
  std::string allowed;
  const auto* put = router.find("PUT", "/echo", allowed);
  BOOST_REQUIRE(put);
  BOOST_TEST(put->method == "PUT");  // a method's own route wins
  const auto* trace = router.find("TRACE", "/echo", allowed);
  BOOST_REQUIRE(trace);
  BOOST_TEST(trace->method == "*");
  BOOST_TEST(!router.find("TRACE", "/version", allowed));  // other paths keep their 405
  BOOST_TEST(allowed == "GET");
  std::string out = exchange("PROPFIND /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 405 "), out);
  BOOST_TEST(out.ends_with("no PROPFIND"), out);
}

BOOST_AUTO_TEST_CASE(default_headers_go_on_every_answer_the_handler_did_not_name) {
  auto count = [](const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  };
  std::string routed = exchange("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(count(routed, "X-Default: d\r\n") == 1u, routed);
  BOOST_TEST(count(routed, "X-Other: o\r\n") == 1u, routed);
  std::string own = exchange("GET /own-default HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(count(own, "x-default: mine\r\n") == 1u, own);
  BOOST_TEST(count(own, "X-Default:") == 0u, own);  // names compared without case
  BOOST_TEST(count(own, "X-Other: o\r\n") == 1u, own);
  std::string missing = exchange("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(missing.starts_with("HTTP/1.1 404 "), missing);
  BOOST_TEST(count(missing, "X-Default: d\r\n") == 1u, missing);
  std::string preflight = exchange("OPTIONS /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(preflight.starts_with("HTTP/1.1 200 OK\r\n"), preflight);
  BOOST_TEST(count(preflight, "X-Default: d\r\n") == 1u, preflight);
  std::string malformed = exchange("GARBAGE\r\n\r\n");  // the server's own answer: none
  BOOST_TEST(malformed.starts_with("HTTP/1.1 400 "), malformed);
  BOOST_TEST(count(malformed, "X-Default") == 0u, malformed);
}

BOOST_AUTO_TEST_CASE(malformed_request_is_400_and_closes) {
  std::string out = exchange("GARBAGE\x01\x02 / HTTP/9\r\n\r\nGET /version HTTP/1.1\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 400 Bad Request\r\n"));
  BOOST_TEST(out.find("Connection: close") != std::string::npos);
  BOOST_TEST(out.find("200 OK") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(oversized_body_is_413) {
  std::string out = exchange("PUT /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'a'));
  BOOST_TEST(out.starts_with("HTTP/1.1 413 Request Entity Too Large\r\n"));
  BOOST_TEST(out.find("exceeds the limit of 1024 bytes") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(oversized_headers_are_431) {
  std::string out = exchange("GET /version HTTP/1.1\r\nX-Big: " + std::string(70000, 'h') + "\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 431"));
}

BOOST_AUTO_TEST_CASE(streams_chunked_response) {
  std::string out = exchange("GET /stream HTTP/1.1\r\n\r\n");
  BOOST_TEST(out.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  BOOST_TEST(out.find("8\r\nevent-0\n\r\n") != std::string::npos);
  BOOST_TEST(out.find("8\r\nevent-2\n\r\n") != std::string::npos);
  BOOST_TEST(out.ends_with("0\r\n\r\n"));
}

BOOST_AUTO_TEST_CASE(http10_without_keepalive_closes_after_answer) {
  int fd = blocking_connect(port);
  std::string raw = "GET /version HTTP/1.0\r\n\r\n";
  send(fd, raw.data(), raw.size(), 0);
  std::string out = read_until_closed(fd);  // returns only because the server closed
  close(fd);
  BOOST_TEST(out.starts_with("HTTP/1.0 200 OK\r\n"));
}

BOOST_AUTO_TEST_SUITE_END()
