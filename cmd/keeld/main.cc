// keeld — the keel daemon.
//
// Start-up, in order: block the signals every thread inherits; read the configuration
// (flags > env > keel.json > defaults); load the modules it lists and validate their
// sections; check io_uring; let the modules register routes and bus handlers; start one
// shard per core, each listening on every client URL with SO_REUSEPORT; tell systemd
// READY. SIGTERM or SIGINT (read through a signalfd on shard 0) tells systemd STOPPING,
// stops every shard (listeners close, connections end, pending I/O is cancelled) and
// then the modules, and exits 0. While the modules start (before shard 0 reads the
// signalfd), SIGTERM or SIGINT exits at once with 128 + the signal (startup_signals).
#include <signal.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "keel/config/config.h"
#include "keel/limits.h"
#include "keel/log.h"
#include "keel/reactor/bus.h"
#include "keel/reactor/host.h"
#include "keel/reactor/http.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/reactor/shard.h"
#include "keel/version.h"
#include "keel/wire/frame.h"
#include "native.h"

extern char** environ;

namespace keel::keeld {
namespace {


// A start-up error: one line, exit 1. _Exit, not exit: nothing half-built is torn down
// (threads may be running, and destructors of a half-started daemon prove nothing).
[[noreturn]] void die(std::string_view what) {
  std::fprintf(stderr, "keeld: %.*s\n", static_cast<int>(what.size()), what.data());
  std::fflush(nullptr);
  std::_Exit(1);
}

std::string executable_dir() {
  char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return ".";
  path[n] = 0;
  std::string text(path);
  return text.substr(0, text.rfind('/'));
}

log_level parse_level(const std::string& name) {
  if (name == "debug") return log_level::debug;
  if (name == "warn") return log_level::warn;
  if (name == "error") return log_level::error;
  return log_level::info;
}

// ---------------------------------------------------------------------------------
// Core HTTP routes: /version, /health, /metrics.

// Member order is destruction order reversed: the module host is declared first so it
// is destroyed last, after the router and the bus that hold the modules' functions.
struct daemon_state {
  module_host host;
  keel::system shards;
  http_router router;
  keel::bus bus;
  http_server_options http_options;
  native_options native;
  std::vector<endpoint> client_endpoints;
  std::vector<int> bound_fds;  // bound in main(), served by shard 0
  bool native_enabled = true;
  std::uint64_t watchdog_usec = 0;
};

void append_counter(std::string& out, const char* name, const char* help, daemon_state& d,
                    std::atomic<std::uint64_t> shard_stats::*field, const char* type = "counter") {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name)
      .append(" ").append(type).append("\n");
  for (unsigned i = 0; i < d.shards.count(); ++i) {
    out.append(name).append("{shard=\"").append(std::to_string(i)).append("\"} ")
        .append(std::to_string((d.shards.at(i).stats().*field).load(std::memory_order_relaxed)))
        .append("\n");
  }
}

std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

void metrics_text(daemon_state& d, std::string& out) {
  using s = shard_stats;
  append_counter(out, "keel_reactor_loop_turns_total", "Reactor loop iterations.", d, &s::loop_turns);
  append_counter(out, "keel_reactor_sleeps_total", "Times the shard blocked waiting for completions.", d, &s::sleeps);
  append_counter(out, "keel_reactor_completions_total", "io_uring completions reaped.", d, &s::completions);
  append_counter(out, "keel_reactor_submissions_total", "io_uring submissions.", d, &s::submissions);
  append_counter(out, "keel_reactor_tasks_run_total", "Coroutine resumptions.", d, &s::tasks_run);
  append_counter(out, "keel_reactor_quota_exceeded_total", "Turns that hit the task quota.", d, &s::quota_exceeded);
  append_counter(out, "keel_reactor_cross_shard_sent_total", "Messages sent to other shards.", d, &s::cross_sent);
  append_counter(out, "keel_reactor_cross_shard_received_total", "Messages received from shards.", d, &s::cross_received);
  append_counter(out, "keel_reactor_wakeups_sent_total", "MSG_RING wake-ups sent.", d, &s::wakeups_sent);
  append_counter(out, "keel_reactor_connections_accepted_total", "TCP connections accepted.", d, &s::connections_accepted);
  append_counter(out, "keel_reactor_connections_open", "TCP connections open.", d, &s::connections_open, "gauge");
  append_counter(out, "keel_reactor_received_bytes_total", "Bytes received.", d, &s::bytes_received);
  append_counter(out, "keel_reactor_sent_bytes_total", "Bytes sent.", d, &s::bytes_sent);
  append_counter(out, "keel_reactor_recv_buffers_exhausted_total", "Receives that found no free buffer.", d, &s::recv_buffers_exhausted);
  append_counter(out, "keel_http_requests_total", "HTTP requests parsed.", d, &s::http_requests);
  append_counter(out, "keel_http_malformed_requests_total", "HTTP requests refused as malformed.", d, &s::http_errors);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  out.append("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
             "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ")
      .append(std::to_string(cpu)).append("\n");
  out.append("# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
             "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes ")
      .append(std::to_string(resident_bytes())).append("\n");
  d.host.append_metrics(out);
}

void add_core_routes(daemon_state& d) {
  d.router.add("GET", "/version", [](const http_request&, http_response& response) {
    response.send(200, "application/json", version_json);
  });
  d.router.add("GET", "/health", [](const http_request&, http_response& response) {
    // Single node, no consensus module yet: healthy while the shards serve.
    response.send(200, "application/json", "{\"health\":\"true\"}");
  });
  d.router.add("GET", "/metrics", [&d](const http_request&, http_response& response) {
    std::string out;
    out.reserve(8192);
    metrics_text(d, out);
    response.send(200, "text/plain; version=0.0.4", out);
  });
}

// ---------------------------------------------------------------------------------
// Shards

task<void> watch_signals(daemon_state& d, int fd) {
  signalfd_siginfo info{};
  for (;;) {
    int got = co_await read_at(fd, &info, sizeof(info), 0);
    if (got != static_cast<int>(sizeof(info))) break;  // cancelled at stop
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      log_line(log_level::info, "keeld", std::string("received ") + strsignal(static_cast<int>(info.ssi_signo)) +
                                             ", shutting down");
      sd_notify(0, "STOPPING=1");
      d.shards.stop();
      break;
    }
  }
  close(fd);
}

task<void> watchdog(daemon_state& d) {
  auto interval = std::chrono::microseconds(d.watchdog_usec / 2);
  while (!shard::current()->stopping()) {
    sd_notify(0, "WATCHDOG=1");
    if (co_await sleep_for(interval) == -ECANCELED) break;
  }
}

void start_shard(daemon_state& d, shard& s, int signal_fd) {
  std::vector<tcp_listener*> listeners;
  for (std::size_t i = 0; i < d.client_endpoints.size(); ++i) {
    auto fd = s.id() == 0 ? result<int>(d.bound_fds[i]) : listen_tcp(d.client_endpoints[i], bind_mode::beside);
    if (!fd) die(fd.error().message());
    listeners.push_back(tcp_listener::start(fd.value(), [&d](int client) {
      spawn(serve_http(connection::adopt(client), d.http_options));
    }));
  }
  d.host.run_shard_start(s);
  s.at_stop([&d, &s, listeners] {
    for (tcp_listener* l : listeners) l->close();
    d.host.run_shard_stop(s);
  });
  if (s.id() == 0) {
    spawn(watch_signals(d, signal_fd));
    if (d.watchdog_usec) spawn(watchdog(d));
  }
}

// Answers SIGTERM and SIGINT while the modules start (before shard 0 reads the signalfd):
// a member waiting for its discovery peers, or for a slow peer, could take minutes, and
// with the signals blocked keeld ignored them (systemd's stop then waited for its kill
// timeout). Nothing runs yet that needs an orderly stop: it exits at once, as etcd does.
class startup_signals {
 public:
  explicit startup_signals(const sigset_t& handled) {
    _signals = signalfd(-1, &handled, SFD_CLOEXEC);
    _done = eventfd(0, EFD_CLOEXEC);
    if (_signals >= 0 && _done >= 0) _watcher = std::thread([this] { watch(); });
  }
  ~startup_signals() {
    if (_watcher.joinable()) {
      std::uint64_t one = 1;
      (void)!::write(_done, &one, sizeof one);
      _watcher.join();
    }
    if (_signals >= 0) ::close(_signals);
    if (_done >= 0) ::close(_done);
  }

 private:
  void watch() {
    pollfd fds[2] = {{_signals, POLLIN, 0}, {_done, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
    }
    if (!(fds[0].revents & POLLIN) || (fds[1].revents & POLLIN)) return;
    signalfd_siginfo info{};
    if (::read(_signals, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return;
    if (info.ssi_signo == SIGHUP) return;  // not a stop; shard 0 reads the next ones
    log_line(log_level::info, "keeld", std::string("received ") + strsignal(static_cast<int>(info.ssi_signo)) +
                                           " while starting, exiting");
    ::_exit(128 + static_cast<int>(info.ssi_signo));
  }
  int _signals = -1;
  int _done = -1;
  std::thread _watcher;
};

int run(int argc, char** argv) {
  // Signals: every thread blocks them; shard 0 reads them from a signalfd.
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  signal(SIGPIPE, SIG_IGN);

  config::loader loader;
  if (status collected = loader.collect(argc, argv, environ); !collected) die(collected.message());
  if (loader.requested_action() == config::action::version) {
    std::printf("keeld Version: %s\netcd API Version: %s\nModule ABI: %u\n", keel_version,
                etcd_server_version, KEEL_MODULE_ABI_VERSION);
    return 0;
  }
  auto module_names = loader.modules();
  if (!module_names) die(module_names.error().message());

  auto state = std::make_unique<daemon_state>();
  daemon_state& d = *state;

  // Modules: search the configured module path, then <exe>/../lib/keel/modules (the
  // build tree and an installed prefix), then the compiled-in directory. The module
  // path is needed before the config is final, so the raw value is read here.
  auto configured_path = loader.module_path();
  if (!configured_path) die(configured_path.error().message());
  std::vector<std::string> search = configured_path.value();
  search.push_back(executable_dir() + "/../lib/keel/modules");
  search.push_back(KEEL_MODULE_DIR);
  if (status loaded = d.host.load(module_names.value(), search); !loaded) die(loaded.message());
  // A module's section is named after it, unless that name is a core key (the discovery
  // module and etcd's --discovery): then it is "<name>-service" (docs/config.md).
  std::map<std::string, std::string, std::less<>> section_of;
  for (const loaded_module& m : d.host.modules()) {
    std::string section = m.name;
    status added = loader.add_section_schema(section, m.descriptor->config_schema);
    if (!added && added.message().find("is a core key") != std::string::npos) {
      section = m.name + "-service";
      added = loader.add_section_schema(section, m.descriptor->config_schema);
    }
    if (!added) die(added.message());
    section_of[m.name] = section;
  }
  if (loader.requested_action() == config::action::help) {
    std::fputs(loader.usage("keeld").c_str(), stdout);
    return 0;
  }
  auto cfg = loader.finish();
  if (!cfg) die(cfg.error().message());
  const config::config& conf = cfg.value();
  if (loader.requested_action() == config::action::print_config) {
    std::printf("%s\n", conf.to_json(true).c_str());
    return 0;
  }
  set_log_level(parse_level(conf.get_string("/log-level")));

  for (const std::string& url : conf.get_strings("/listen-client-urls")) {
    if (url.starts_with("https://"))
      die("listen-client-urls: " + url + ": TLS is not supported yet; use http://");
    auto where = parse_endpoint(url);
    if (!where) die("listen-client-urls: " + where.error().message());
    d.client_endpoints.push_back(where.value());
  }
  if (status probe = probe_io_uring(); !probe) die(probe.message());

  // Bind here so a busy port is one clear error before any thread starts. Shard 0
  // serves these sockets; the other shards bind their own beside them (SO_REUSEPORT).
  for (endpoint& where : d.client_endpoints) {
    auto fd = listen_tcp(where);
    if (!fd) die("cannot listen for clients: " + fd.error().message());
    if (where.port == 0) where.port = local_port(fd.value());
    d.bound_fds.push_back(fd.value());
  }

  unsigned shard_count = static_cast<unsigned>(conf.get_int("/shards"));
  if (shard_count == 0) {
    // One shard per CPU this process may run on (taskset and cgroups are honoured).
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof(allowed), &allowed);
    shard_count = static_cast<unsigned>(std::max(1, CPU_COUNT(&allowed)));
  }
  d.native_enabled = conf.get_bool("/native-port-enabled");
  d.http_options.router = &d.router;
  // max-request-bytes limits a request as the store logs it (as etcd's does); a body may
  // be larger by the v3 gateway's base64 (a third) and some JSON around it, as etcd's
  // gRPC server takes max-request-bytes + 512 KiB.
  auto request_bytes = static_cast<std::size_t>(conf.get_int("/max-request-bytes"));
  d.http_options.body_bytes_max = request_bytes + request_bytes / 3 + 512 * 1024;
  // etcd's access controller on its client port: CORS headers on every answer and a 200
  // for any preflight (embed/serve.go), so browser clients work as against etcd.
  d.http_options.default_headers =
      "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
      "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
      "Access-Control-Allow-Origin: *\r\n";
  d.http_options.answer_preflight = true;
  d.native = {&d.bus, shard_count};
  if (d.native_enabled) {
    // Decided by the first byte alone (docs/formats/frame.md): 0xC7 never starts an
    // HTTP request, and the rest of the magic may not have arrived yet.
    d.http_options.is_other_protocol = [](const char* data, std::size_t size) {
      return size > 0 && static_cast<std::uint8_t>(data[0]) == wire::frame_magic_first_byte;
    };
    d.http_options.serve_other_protocol = [&d](connection* conn, recv_buffer first) {
      return serve_native(conn, std::move(first), d.native);
    };
  }
  add_core_routes(d);
  module_services services{&d.router, &d.bus, shard_count,
                           [](log_level level, std::string_view module, std::string_view text) {
                             log_line(level, module, text);
                           }};
  services.core_config_json = conf.core_json();
  auto section_json = [&](std::string_view name) {
    auto it = section_of.find(name);
    return conf.section_json(it == section_of.end() ? name : std::string_view(it->second));
  };
  {
    startup_signals during_start(handled);
    if (status started = d.host.start(services, section_json); !started) die(started.message());
  }

  int signal_fd = signalfd(-1, &handled, SFD_CLOEXEC);
  if (signal_fd < 0) die(std::string("signalfd: ") + strerror(errno));
  // sd_watchdog_enabled honours WATCHDOG_PID (the watchdog may be meant for another
  // process); pings go out at half the interval, never more often than every 10 ms.
  if (std::uint64_t usec = 0; sd_watchdog_enabled(0, &usec) > 0)
    d.watchdog_usec = std::max<std::uint64_t>(usec, 20'000);

  status started = d.shards.start({shard_count, true}, [&d, signal_fd](shard& s) {
    start_shard(d, s, signal_fd);
  });
  if (!started) die(started.message());
  for (const endpoint& where : d.client_endpoints)
    log_line(log_level::info, "keeld", "listening for client requests on " + where.host + ":" +
                                           std::to_string(where.port));
  log_line(log_level::info, "keeld", "ready: " + std::to_string(shard_count) + " shard(s), " +
                                         std::to_string(d.host.modules().size()) + " module(s), version " +
                                         keel_version);
  sd_notify(0, "READY=1");
  d.shards.wait();
  d.host.stop();
  log_line(log_level::info, "keeld", "stopped");
  return 0;
}

}  // namespace
}  // namespace keel::keeld

int main(int argc, char** argv) { return keel::keeld::run(argc, argv); }
