// net.cc — listeners and connections.
#include "keel/reactor/net.h"

#include <arpa/inet.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <coroutine>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "keel/limits.h"
#include "keel/reactor/io.h"

namespace keel {

namespace {

// The connections of this shard with bytes to send this turn.
struct flush_list {
  std::vector<connection*> pending;
  bool hooked = false;
};
thread_local flush_list t_flush;

// Connections whose receive ended because the shard's buffer ring ran dry. They are
// armed again once per loop turn in which buffers went back to the ring.
struct starved_list {
  std::vector<connection*> waiting;
  std::uint64_t returned_at_park = 0;
};
thread_local starved_list t_starved;

void rearm_starved();

void schedule_flush(connection* conn);

void park_starved(connection* conn) {
  if (t_starved.waiting.empty()) t_starved.returned_at_park = shard::current()->recv_buffers_returned();
  t_starved.waiting.push_back(conn);
  schedule_flush(nullptr);  // installs the per-turn hook that re-arms them
}

void rearm_starved() {
  if (t_starved.waiting.empty()) return;
  if (shard::current()->recv_buffers_returned() == t_starved.returned_at_park) return;
  std::vector<connection*> batch;
  batch.swap(t_starved.waiting);
  for (connection* c : batch) c->rearm_after_starvation();
}

void schedule_flush(connection* conn) {
  if (!t_flush.hooked) {
    t_flush.hooked = true;
    shard::current()->add_pre_submit_hook([] {
      rearm_starved();
      if (t_flush.pending.empty()) return;
      std::vector<connection*> batch;
      batch.swap(t_flush.pending);
      for (connection* c : batch) c->flush();
    });
    shard::current()->at_stop([] {
      t_flush.hooked = false;
      t_starved.waiting.clear();
    });
  }
  if (conn) t_flush.pending.push_back(conn);
}

status errno_status(const std::string& what, int error) {
  return {errc::io_error, what + ": " + std::strerror(error)};
}

}  // namespace

result<endpoint> parse_endpoint(std::string_view text) {
  std::string_view rest = text;
  if (auto scheme = rest.find("://"); scheme != std::string_view::npos) rest.remove_prefix(scheme + 3);
  if (auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  endpoint out;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return status{errc::invalid_argument, "bad address \"" + std::string(text) + "\": expected [ipv6]:port"};
    out.host = std::string(rest.substr(1, close - 1));
    port_text = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos)
      return status{errc::invalid_argument, "bad address \"" + std::string(text) + "\": expected host:port"};
    out.host = std::string(rest.substr(0, colon));
    port_text = rest.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 || out.host.empty())
    return status{errc::invalid_argument, "bad address \"" + std::string(text) + "\": bad host or port"};
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

namespace {
result<addrinfo*> resolve(const endpoint& where, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* found = nullptr;
  std::string port = std::to_string(where.port);
  int rc = getaddrinfo(where.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0)
    return status{errc::not_found, "cannot resolve \"" + where.host + "\": " + gai_strerror(rc)};
  return found;
}

// An address literal ("127.0.0.1", "::1") resolves without asking anyone: done inline.
bool is_address_literal(const std::string& host) {
  in6_addr v6{};
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

// Every address a name resolves to, in getaddrinfo's order.
struct socket_address {
  sockaddr_storage storage{};
  socklen_t size = 0;
  int family = 0;
};
using address_list = std::vector<socket_address>;

result<address_list> lookup_addresses(const endpoint& where) {
  auto found = resolve(where, false);
  if (!found) return found.error();
  address_list out;
  for (addrinfo* info = found.value(); info != nullptr; info = info->ai_next) {
    if (info->ai_addrlen > sizeof(sockaddr_storage)) continue;
    socket_address address;
    std::memcpy(&address.storage, info->ai_addr, info->ai_addrlen);
    address.size = static_cast<socklen_t>(info->ai_addrlen);
    address.family = info->ai_family;
    out.push_back(address);
  }
  freeaddrinfo(found.value());
  return out;
}

// A name is resolved on a thread of its own, which hands the answer back to the shard
// through system::post: getaddrinfo may wait seconds on a slow or silent DNS server, and
// on the shard that would stall every connection it serves. Connects are rare (peer links
// and relays are pooled), so a thread per lookup costs nothing that matters.
struct off_shard_lookup {
  endpoint where;
  result<address_list> found = status{errc::not_found, "not resolved"};
  keel::system* owner = nullptr;
  unsigned shard_id = 0;
  std::coroutine_handle<> waiter;
};

struct off_shard_resolve {
  std::shared_ptr<off_shard_lookup> lookup;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> waiter) {
    lookup->waiter = waiter;
    std::thread([lookup = lookup] {
      lookup->found = lookup_addresses(lookup->where);
      // If the system is being destroyed (keeld stopping), the answer is dropped.
      detail::post_if_running(*lookup->owner, lookup->shard_id, [lookup] { lookup->waiter.resume(); });
    }).detach();
  }
  result<address_list> await_resume() noexcept { return std::move(lookup->found); }
};

task<result<address_list>> resolve_for_connect(endpoint where) {
  if (is_address_literal(where.host)) co_return lookup_addresses(where);
  auto lookup = std::make_shared<off_shard_lookup>();
  lookup->where = std::move(where);
  lookup->owner = &shard::current()->system();
  lookup->shard_id = shard::current()->id();
  off_shard_resolve resolving{std::move(lookup)};  // a named awaiter: no temporary held over the suspension
  co_return co_await resolving;
}

// The inodes of the TCP sockets listening on `port`, from /proc/net/tcp and tcp6
// ("sl local_address rem_address st ... inode": the port is the hex after the colon,
// state 0A is LISTEN).
std::vector<std::string> listening_inodes(std::uint16_t port) {
  std::vector<std::string> inodes;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the column names
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode))
        continue;
      std::size_t colon = local.rfind(':');
      if (state != "0A" || colon == std::string::npos) continue;
      unsigned long local_port = std::strtoul(local.c_str() + colon + 1, nullptr, 16);
      if (local_port == port) inodes.push_back(inode);
    }
  }
  return inodes;
}

// Whether the process at `process` (/proc/<pid>) has one of the sockets `inodes` open.
bool holds_socket(const std::filesystem::path& process, const std::vector<std::string>& inodes) {
  // Processes come and go while /proc is read: every step takes an error_code (a ranged
  // for would throw from its increment) and a vanished entry is skipped.
  std::error_code error;
  for (std::filesystem::directory_iterator fd(process / "fd", error), end; !error && fd != end; fd.increment(error)) {
    std::string target = std::filesystem::read_symlink(fd->path(), error).string();
    error.clear();
    for (const std::string& inode : inodes)
      if (target == "socket:[" + inode + "]") return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> listening_process(std::uint16_t port) {
  std::vector<std::string> inodes = listening_inodes(port);
  if (inodes.empty()) return std::nullopt;
  std::error_code error;
  for (std::filesystem::directory_iterator process("/proc", error), end; !error && process != end;
       process.increment(error)) {
    std::string pid = process->path().filename();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0])) || !holds_socket(process->path(), inodes))
      continue;
    std::ifstream comm(process->path() / "comm");
    std::string name;
    std::getline(comm, name);
    return "pid " + pid + " (" + name + ")";
  }
  return std::nullopt;
}

result<int> listen_tcp(const endpoint& where, bind_mode mode) {
  auto found = resolve(where, true);
  if (!found) return found.error();
  addrinfo* info = found.value();
  int fd = socket(info->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(info);
    return errno_status("socket", errno);
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (mode == bind_mode::beside) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  std::string where_text = where.host + ":" + std::to_string(where.port);
  // A keeld killed a moment ago holds its ports until the kernel has torn its io_uring
  // down (its armed accepts keep the sockets): 5-11 ms measured after the process was
  // reaped, and longer while an fdatasync it had issued still runs (a large snapshot
  // being written). A port that a live process holds is reported at once, naming it; one
  // that no process holds is waited for, up to exclusive_bind_patience.
  auto give_up = std::chrono::steady_clock::now() + exclusive_bind_patience;
  auto next_look = std::chrono::steady_clock::now();
  std::optional<std::string> holder;
  while (bind(fd, info->ai_addr, info->ai_addrlen) < 0) {
    int error = errno;
    bool busy_alone = error == EADDRINUSE && mode == bind_mode::exclusive;
    if (busy_alone && std::chrono::steady_clock::now() >= next_look) {
      holder = listening_process(where.port);
      next_look = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    }
    if (busy_alone && !holder && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    freeaddrinfo(info);
    ::close(fd);
    status failed = errno_status("bind " + where_text, error);
    if (holder) return status{failed.code(), failed.message() + " (listening: " + *holder + ")"};
    return failed;
  }
  freeaddrinfo(info);
  // Bound alone: now the group may form, before listen() hashes the socket.
  if (mode == bind_mode::exclusive) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (listen(fd, static_cast<int>(limits::listen_backlog)) < 0) {
    int error = errno;
    ::close(fd);
    return errno_status("listen " + where_text, error);
  }
  return fd;
}

std::uint16_t local_port(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

// ---------------------------------------------------------------------------------
// tcp_listener

tcp_listener::tcp_listener(int fd, std::function<void(int)> on_accept)
    : _fd(fd), _on_accept(std::move(on_accept)) {}

tcp_listener* tcp_listener::start(int fd, std::function<void(int)> on_accept) {
  auto* listener = new tcp_listener(fd, std::move(on_accept));
  listener->arm();
  return listener;
}

void tcp_listener::arm() noexcept {
  io_uring_sqe* sqe = shard::current()->get_sqe();
  io_uring_prep_multishot_accept(sqe, _fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, this);
  _armed = true;
}

void tcp_listener::complete(int result, unsigned cqe_flags) noexcept {
  if (result >= 0) {
    if (_closing) {
      ::close(result);
    } else {
      bump(shard::current()->stats().connections_accepted);
      _on_accept(result);
    }
  }
  if (cqe_flags & IORING_CQE_F_MORE) return;
  _armed = false;
  if (_closing) {
    ::close(_fd);
    delete this;
    return;
  }
  // The kernel ended the multishot accept (an error such as EMFILE, or an overflow):
  // arm it again, so one bad moment does not stop the server accepting.
  arm();
}

void tcp_listener::close() noexcept {
  if (_closing) return;
  _closing = true;
  if (!_armed) {
    ::close(_fd);
    delete this;
    return;
  }
  io_uring_sqe* sqe = shard::current()->get_sqe();
  io_uring_prep_cancel(sqe, this, 0);
  io_uring_sqe_set_data64(sqe, user_data_ignore);
}

// ---------------------------------------------------------------------------------
// connection

connection::connection(int fd) : _fd(fd), _shard(shard::current()) {
  _send_completion.owner = this;
  bump(_shard->stats().connections_open);
}

// The connections of this shard with a silence limit, and whether its sweeper runs.
struct silence_watch {
  std::vector<connection*> armed;
  bool sweeping = false;
};
thread_local silence_watch t_silence;

void connection::limit_silence(std::chrono::milliseconds quiet) noexcept {
  if (quiet.count() <= 0) {
    if (_silence_limit.count() > 0) std::erase(t_silence.armed, this);
    _silence_limit = {};
    return;
  }
  if (_silence_limit.count() == 0) t_silence.armed.push_back(this);
  _silence_limit = quiet;
  _silence_seen = _received;
  _silence_since = std::chrono::steady_clock::now();
  _timed_out = false;
  if (!t_silence.sweeping) spawn(sweep_silent());
}

task<void> connection::sweep_silent() {
  t_silence.sweeping = true;
  while (!t_silence.armed.empty() && !shard::current()->stopping()) {
    auto shortest = std::chrono::milliseconds(4000);
    for (connection* c : t_silence.armed) shortest = std::min(shortest, c->_silence_limit);
    auto period = std::clamp(shortest / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    int slept = co_await keel::sleep_for(period);
    if (slept != -ETIME) break;
    auto now = std::chrono::steady_clock::now();
    std::vector<connection*> silent;
    for (connection* c : t_silence.armed) {
      if (c->_received != c->_silence_seen) {
        c->_silence_seen = c->_received;
        c->_silence_since = now;
      } else if (now - c->_silence_since >= c->_silence_limit) {
        silent.push_back(c);
      }
    }
    for (connection* c : silent) {
      c->limit_silence({});
      c->_timed_out = true;
      ::shutdown(c->_fd, SHUT_RDWR);  // the receive ends; the reader sees EOF
    }
  }
  t_silence.sweeping = false;
}

connection::~connection() {
  if (_silence_limit.count() > 0) std::erase(t_silence.armed, this);
  ::close(_fd);
  auto& open = _shard->stats().connections_open;
  open.store(open.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

connection* connection::adopt(int fd) {
  KEEL_ASSERT(shard::current() != nullptr);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto* conn = new connection(fd);
  conn->arm_recv();
  return conn;
}

task<result<connection*>> connection::connect(endpoint where, std::chrono::milliseconds limit) {
  task<result<address_list>> resolving = resolve_for_connect(where);
  auto found = co_await std::move(resolving);
  if (!found) co_return found.error();
  // Each address in turn, as Go's dialer does: "localhost" gives ::1 and 127.0.0.1, and a
  // member may listen on only one of them.
  status failed{errc::not_found, "cannot resolve \"" + where.host + "\": no address"};
  for (socket_address& address : found.value()) {
    int fd = socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      failed = errno_status("socket", errno);
      continue;
    }
    // Two SYN retries (about 7 s) instead of Linux's six (about 2 minutes): a caller that
    // reconnects to a peer behind a dropped route learns it is unreachable in seconds.
    int syn_retries = 2;
    setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &syn_retries, sizeof(syn_retries));
    const auto* target = reinterpret_cast<sockaddr*>(&address.storage);
    io_request connecting = limit.count() > 0 ? connect_socket_within(fd, target, address.size, limit)
                                              : connect_socket(fd, target, address.size);
    int rc = co_await connecting;
    if (rc >= 0) co_return adopt(fd);
    ::close(fd);
    std::string what = "connect " + where.host + ":" + std::to_string(where.port);
    if (rc == -ECANCELED && limit.count() > 0) {
      failed = status{errc::unavailable, what + ": timed out after " + std::to_string(limit.count()) + " ms"};
    } else {
      failed = errno_status(what, -rc);
    }
  }
  co_return failed;
}

void connection::arm_recv() noexcept {
  io_uring_sqe* sqe = _shard->get_sqe();
  io_uring_prep_recv_multishot(sqe, _fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = shard::recv_buffer_group;
  io_uring_sqe_set_data(sqe, this);
  _recv_armed = true;
}

void connection::complete(int result, unsigned cqe_flags) noexcept { on_recv(result, cqe_flags); }

void connection::on_recv(int result, unsigned cqe_flags) noexcept {
  bool more = cqe_flags & IORING_CQE_F_MORE;
  if (result > 0) {
    KEEL_ASSERT(cqe_flags & IORING_CQE_F_BUFFER);
    auto id = static_cast<unsigned short>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    bump(_shard->stats().bytes_received, static_cast<std::uint64_t>(result));
    _received += static_cast<std::uint64_t>(result);
    if (_released || _queue_size == queue_capacity) {
      // Released: nobody will read it. Full: the kernel outran the pause by more than
      // the slack, which the limits make impossible; drop the connection, never grow.
      _shard->return_recv_buffer(id);
      if (!_released && !_eof) {
        _error = -ENOBUFS;
        _eof = true;
      }
    } else {
      _queue[(_queue_head + _queue_size) % queue_capacity] = {id, static_cast<unsigned>(result)};
      ++_queue_size;
      if (_queue_size >= queue_pause_items && more && !_recv_paused) pause_recv();
    }
  } else if (result == -ENOBUFS) {
    // The shard's buffer ring ran dry; buffers return as readers consume them.
    bump(_shard->stats().recv_buffers_exhausted);
  } else if (result == -ECANCELED && _recv_paused && !_shard->stopping()) {
    // Our own pause landed; take_more() arms the receive again.
  } else {
    // 0 is EOF; anything else is an error that ends receiving.
    _eof = true;
    if (result < 0 && result != -ECANCELED) _error = result;
  }
  if (!more) {
    _recv_armed = false;
    if (_recv_paused && _queue_size <= queue_resume_items) _recv_paused = false;  // drained meanwhile
    if (result == -ENOBUFS && !_eof && !_released) {
      // Re-arming now would fail again at once (a busy loop): wait until the shard has
      // buffers back, then every starved connection is armed again (see starved_list).
      park_starved(this);
    } else if (!_eof && !_released && !_recv_paused) {
      arm_recv();
    }
  }
  wake_reader();
  maybe_free();
}

void connection::rearm_after_starvation() noexcept {
  if (!_recv_armed && !_eof && !_released && !_recv_paused) arm_recv();
  wake_reader();
  maybe_free();
}

void connection::pause_recv() noexcept {
  _recv_paused = true;
  io_uring_sqe* sqe = _shard->get_sqe();
  io_uring_prep_cancel(sqe, this, 0);
  io_uring_sqe_set_data64(sqe, user_data_ignore);
}

void connection::wake_reader() noexcept {
  if (_reader && (_queue_size > 0 || _eof)) {
    _shard->schedule(std::exchange(_reader, {}));
  }
}

recv_buffer connection::take() noexcept {
  if (_queue_size == 0) return {};
  received item = _queue[_queue_head];
  _queue_head = (_queue_head + 1) % queue_capacity;
  --_queue_size;
  if (_recv_paused && !_recv_armed && !_eof && !_released && _queue_size <= queue_resume_items) {
    _recv_paused = false;
    arm_recv();
  }
  return _shard->lend_recv_buffer(item.buffer_id, item.size);
}

void connection::write(std::string_view data) {
  if (_error != 0 || _shut_down) return;
  _out.append(data);
  if (!_in_flush_list && !_send_in_flight) {
    _in_flush_list = true;
    schedule_flush(this);
  }
}

std::string* connection::send_queue() noexcept {
  if (!_in_flush_list && !_send_in_flight && _error == 0 && !_shut_down) {
    _in_flush_list = true;
    schedule_flush(this);
  }
  return &_out;
}

bool connection::drain_awaiter::await_ready() const noexcept {
  return self->_error != 0 || self->queued_bytes() < limits::connection_send_buffer_bytes_max;
}

void connection::flush() noexcept {
  _in_flush_list = false;
  if (_send_in_flight || _out.empty()) {
    maybe_free();
    return;
  }
  _sending.swap(_out);
  _out.clear();
  _sent = 0;
  _send_in_flight = true;
  io_uring_sqe* sqe = _shard->get_sqe();
  io_uring_prep_send(sqe, _fd, _sending.data(), _sending.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, &_send_completion);
}

void connection::on_send(int result) noexcept {
  _send_in_flight = false;
  if (result < 0) {
    _error = result;
    _out.clear();
    _sending.clear();
  } else {
    bump(_shard->stats().bytes_sent, static_cast<std::uint64_t>(result));
    _sent += static_cast<std::size_t>(result);
    if (_sent < _sending.size()) {
      // A short send: send the rest before anything queued after it.
      _send_in_flight = true;
      io_uring_sqe* sqe = _shard->get_sqe();
      io_uring_prep_send(sqe, _fd, _sending.data() + _sent, _sending.size() - _sent, MSG_NOSIGNAL);
      io_uring_sqe_set_data(sqe, &_send_completion);
      return;
    }
    _sending.clear();
    if (!_out.empty() && !_in_flush_list) {
      _in_flush_list = true;
      schedule_flush(this);
    }
  }
  wake_drain_waiters();
  maybe_free();
}

void connection::wake_drain_waiters() noexcept {
  if (_drain_waiters.empty()) return;
  if (_error == 0 && queued_bytes() >= limits::connection_send_buffer_bytes_max) return;
  for (auto waiter : _drain_waiters) _shard->schedule(waiter);
  _drain_waiters.clear();
}

void connection::release() noexcept {
  KEEL_ASSERT(!_released);
  _released = true;
  limit_silence({});
  _reader = {};
  while (_queue_size > 0) take();  // returns the buffers
  maybe_free();
}

void connection::maybe_free() noexcept {
  if (!_released) return;
  if (_send_in_flight || _in_flush_list || (!_out.empty() && _error == 0)) return;
  if (_recv_armed) {
    // Shutting the socket down ends the multishot receive, which then completes
    // without IORING_CQE_F_MORE and calls back here.
    if (!_shut_down) {
      _shut_down = true;
      ::shutdown(_fd, SHUT_RDWR);
    }
    return;
  }
  std::erase(t_starved.waiting, this);
  delete this;
}

}  // namespace keel
