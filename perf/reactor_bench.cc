// reactor-bench — figures for the reactor itself (perf/RESULTS.md):
//   cross-shard   round trip of run_on() from shard 0 to shard 1 and back, in ns
//                 (median of --rounds batches), beside the same call on one shard;
//   echo          io_uring TCP echo on loopback: --connections clients on shard 0 each
//                 ping-ponging --message-bytes with an echo server on shard 1, for
//                 --seconds; messages per second and the mean round trip.
// Usage: reactor-bench [cross-shard|echo|all] [--rounds N] [--connections N]
//                      [--message-bytes N] [--seconds N] [--idle-poll-us N]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "keel/reactor/cross.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/reactor/shard.h"

using namespace std::chrono;
using keel::task;

namespace {

struct options {
  std::string what = "all";
  int rounds = 21;
  int connections = 32;
  int message_bytes = 64;
  int seconds = 5;
  int idle_poll_us = 0;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> int {
      if (i + 1 >= argc) { std::fprintf(stderr, "reactor-bench: %s needs a value\n", a.c_str()); std::exit(2); }
      return std::atoi(argv[++i]);
    };
    if (a == "--rounds") o.rounds = value();
    else if (a == "--connections") o.connections = value();
    else if (a == "--message-bytes") o.message_bytes = value();
    else if (a == "--seconds") o.seconds = value();
    else if (a == "--idle-poll-us") o.idle_poll_us = value();
    else if (a == "cross-shard" || a == "echo" || a == "all") o.what = a;
    else { std::fprintf(stderr, "reactor-bench: unknown argument %s\n", a.c_str()); std::exit(2); }
  }
  return o;
}

unsigned g_idle_poll_us = 0;

template <typename Body>
void run_system(unsigned shards, Body body) {
  keel::system sys;
  keel::status started = sys.start({shards, true, g_idle_poll_us}, nullptr);
  if (!started) { std::fprintf(stderr, "reactor-bench: %s\n", started.message().c_str()); std::exit(1); }
  sys.post(0, [&] {
    keel::spawn([](keel::system& s, Body& b) -> task<void> { co_await b(s); s.stop(); }(sys, body));
  });
  sys.wait();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void cross_shard(const options& o) {
  constexpr int calls = 20000;
  std::vector<double> remote, local;
  run_system(2, [&](keel::system&) -> task<void> {
    for (int r = 0; r < o.rounds; ++r) {
      for (unsigned target : {1u, 0u}) {
        auto begin = steady_clock::now();
        for (int i = 0; i < calls; ++i) co_await keel::run_on(target, [] { return 1; });
        double ns = duration<double, std::nano>(steady_clock::now() - begin).count() / calls;
        (target == 1 ? remote : local).push_back(ns);
      }
    }
  });
  std::printf("cross-shard run_on round trip: median %.0f ns (shard 0 -> 1 -> 0), %.0f ns on one shard; "
              "%d batches of %d calls\n", median(remote), median(local), o.rounds, calls);
}

task<void> echo_server_connection(keel::connection* conn) {
  for (;;) {
    keel::recv_buffer b = co_await conn->read();
    if (b.size() == 0) break;
    conn->write({b.data(), b.size()});
  }
  conn->release();
}

task<void> echo_client(keel::endpoint where, int bytes, steady_clock::time_point until,
                       std::uint64_t& messages) {
  auto connected = co_await keel::connection::connect(where);
  if (!connected) { std::fprintf(stderr, "reactor-bench: %s\n", connected.error().message().c_str()); co_return; }
  keel::connection* conn = connected.value();
  std::string message(static_cast<std::size_t>(bytes), 'e');
  while (steady_clock::now() < until) {
    conn->write(message);
    std::size_t got = 0;
    while (got < message.size()) {
      keel::recv_buffer b = co_await conn->read();
      if (b.size() == 0) { conn->release(); co_return; }
      got += b.size();
    }
    ++messages;
  }
  conn->release();
}

void echo(const options& o) {
  std::atomic<std::uint16_t> port{0};
  std::uint64_t messages = 0;
  double seconds = 0;
  keel::system sys;
  if (!sys.start({2, true, g_idle_poll_us}, nullptr)) std::exit(1);
  sys.post(1, [&] {
    auto fd = keel::listen_tcp({"127.0.0.1", 0});
    port = keel::local_port(fd.value());
    auto* l = keel::tcp_listener::start(fd.value(), [](int c) { keel::spawn(echo_server_connection(keel::connection::adopt(c))); });
    keel::shard::current()->at_stop([l] { l->close(); });
  });
  while (port.load() == 0) std::this_thread::sleep_for(milliseconds(1));
  sys.post(0, [&] {
    keel::spawn([](keel::system& s, const options& o, std::uint16_t p, std::uint64_t& n, double& secs) -> task<void> {
      auto begin = steady_clock::now();
      auto until = begin + std::chrono::seconds(o.seconds);
      std::vector<task<void>> clients;
      for (int c = 0; c < o.connections; ++c) clients.push_back(echo_client({"127.0.0.1", p}, o.message_bytes, until, n));
      task<void> all = keel::when_all(std::move(clients));
      co_await std::move(all);
      secs = duration<double>(steady_clock::now() - begin).count();
      s.stop();
    }(sys, o, port.load(), messages, seconds));
  });
  sys.wait();
  std::printf("io_uring TCP echo: %.0f messages/s (%d connections, %d-byte messages, %.1f s, client and "
              "server shards pinned to the 2 cores), mean round trip %.1f us\n",
              messages / seconds, o.connections, o.message_bytes, seconds,
              seconds * 1e6 * o.connections / static_cast<double>(messages ? messages : 1));
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  g_idle_poll_us = static_cast<unsigned>(o.idle_poll_us);
  std::printf("idle polling: %d us\n", o.idle_poll_us);
  if (o.what == "cross-shard" || o.what == "all") cross_shard(o);
  if (o.what == "echo" || o.what == "all") echo(o);
  return 0;
}
