// keel/reactor/net.h — TCP listeners and connections on a shard's ring.
//
// A listener is one socket per shard bound with SO_REUSEPORT to the same address, so
// the kernel spreads new connections over the shards; it keeps one multishot accept
// armed. A connection keeps one multishot receive armed into the shard's provided-buffer
// ring and batches its sends: write() only appends to the connection's send queue, and
// once per loop turn every connection with queued bytes issues one SEND of all of them.
//
// Ownership: listeners and connections are heap objects owned by the shard that
// created them. Their owner calls close()/release() once; the object frees itself after
// its last CQE has arrived. Nothing here may be touched from another shard.
#pragma once

#include <chrono>
#include <optional>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "keel/reactor/shard.h"

namespace keel {

// host:port parsed from "127.0.0.1:2379", "[::1]:2379", "localhost:2379" or an URL
// "http://127.0.0.1:2379".
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
};
result<endpoint> parse_endpoint(std::string_view text);

// How listen_tcp binds. Every listener of a keeld admits its own process's other shards
// (SO_REUSEPORT), and none of another process's:
//   exclusive: the first socket on `where`; fails "Address already in use" when any socket
//              of any process listens there, a keeld started twice included (SO_REUSEPORT
//              is set only after the bind, so the bind itself cannot join a group);
//   beside:    joins the exclusive listener this process opened on `where` before.
//              A port that a live process listens on is reported at once, naming it
//              ("... Address already in use (listening: pid N (keeld))"); one that no
//              process holds (a keeld just killed, whose io_uring the kernel still
//              tears down) is waited for, up to exclusive_bind_patience (see net.cc).
enum class bind_mode { exclusive, beside };
inline constexpr std::chrono::milliseconds exclusive_bind_patience{20000};
// "pid N (name)" of a process with a TCP socket listening on `port` open, from /proc
// (every process's as root, only one's own otherwise); nullopt if none is seen.
std::optional<std::string> listening_process(std::uint16_t port);
// Opens, binds and listens (SO_REUSEADDR, and SO_REUSEPORT as `mode` says). Returns the fd.
result<int> listen_tcp(const endpoint& where, bind_mode mode = bind_mode::exclusive);
// The port a bound socket got (for port 0 in tests).
std::uint16_t local_port(int fd);

class tcp_listener final : public completion {
 public:
  // Takes ownership of `fd`; calls on_accept(new_fd) on this shard for every accepted
  // connection. REQUIRES: on a shard thread.
  static tcp_listener* start(int fd, std::function<void(int)> on_accept);
  // Stops accepting, closes the socket, frees itself once the kernel has let go.
  void close() noexcept;
  void complete(int result, unsigned cqe_flags) noexcept override;

 private:
  tcp_listener(int fd, std::function<void(int)> on_accept);
  void arm() noexcept;
  int _fd;
  bool _closing = false;
  bool _armed = false;
  std::function<void(int)> _on_accept;
};

class connection final : public completion {
 public:
  // Takes ownership of a connected socket. REQUIRES: on a shard thread.
  static connection* adopt(int fd);
  // Connects to `where` and adopts the socket. An address literal is used as it is; a
  // name is resolved with getaddrinfo on a thread of its own, so a slow DNS server never
  // stalls the shard, and its addresses are tried in turn until one connects. An
  // unanswered SYN fails after about 7 s (two retries), not Linux's 2 minutes, or after
  // `limit` per address when it is not zero (etcd's --proxy-dial-timeout): the error then
  // says "timed out".
  // REQUIRES: on a shard thread; `where` not a temporary of the co_await expression
  // (GCC 12 destroys such a temporary twice).
  static task<result<connection*>> connect(endpoint where, std::chrono::milliseconds limit = {});

  int fd() const noexcept { return _fd; }

  // The next received bytes. An empty buffer means the peer closed (EOF) or an error
  // happened (see error()). REQUIRES: one reader at a time.
  struct read_awaiter {
    connection* self;
    bool await_ready() const noexcept { return self->_queue_size > 0 || self->_eof; }
    void await_suspend(std::coroutine_handle<> waiter) noexcept { self->_reader = waiter; }
    recv_buffer await_resume() noexcept { return self->take(); }
  };
  read_awaiter read() noexcept { return {this}; }
  // 0 or the -errno that ended receiving.
  int error() const noexcept { return _error; }
  // The peer closed its side (EOF was received) or the connection failed. Valid whether
  // or not anyone is reading: the receive stays armed while a handler runs.
  bool peer_closed() const noexcept { return _eof || _error != 0; }
  // Shuts the connection down when nothing has been received on it for `quiet`, counted
  // from this call and then from the last byte received; its reads then end as at EOF
  // and timed_out() is true. Zero disarms (release() does too). One sweeper per shard
  // checks the armed connections every quarter of the shortest limit (10 ms to 1 s), so
  // the cut comes between `quiet` and 1.25 x `quiet` (plus at most 1 s) after the last
  // byte: a bound for a peer that accepted and never answers, or went silent (no RST).
  // REQUIRES: on the connection's shard.
  void limit_silence(std::chrono::milliseconds quiet) noexcept;
  // Whether limit_silence() cut this connection.
  bool timed_out() const noexcept { return _timed_out; }

  // Queues bytes for the next batched send.
  void write(std::string_view data);
  // The send queue itself, for writers that format in place (no intermediate string);
  // what is appended goes out with the next batched send. Never null; REQUIRES: the
  // caller appends only (no erasing what is queued).
  std::string* send_queue() noexcept;
  std::size_t queued_bytes() const noexcept { return _out.size() + _sending.size(); }
  // Resumes when the queue has drained below the limit (or the connection broke).
  struct drain_awaiter {
    connection* self;
    bool await_ready() const noexcept;
    void await_suspend(std::coroutine_handle<> waiter) { self->_drain_waiters.push_back(waiter); }
    bool await_resume() const noexcept { return self->_error == 0; }
  };
  drain_awaiter drained() noexcept { return {this}; }

  // The owner is done: queued bytes are still sent, then the socket is shut down and
  // closed, and the object frees itself.
  void release() noexcept;

  void complete(int result, unsigned cqe_flags) noexcept override;
  void flush() noexcept;  // called by the shard's pre-submit hook
  // Arms the receive again after the shard's buffer ring ran dry (called once buffers
  // have come back).
  void rearm_after_starvation() noexcept;

 private:
  explicit connection(int fd);
  ~connection();
  void arm_recv() noexcept;
  void pause_recv() noexcept;
  recv_buffer take() noexcept;
  void on_recv(int result, unsigned cqe_flags) noexcept;
  void on_send(int result) noexcept;
  void maybe_free() noexcept;
  void wake_reader() noexcept;
  void wake_drain_waiters() noexcept;
  static task<void> sweep_silent();

  // The send's completion is a separate object so a recv and a send can be in flight.
  struct send_completion final : completion {
    connection* owner;
    void complete(int result, unsigned) noexcept override { owner->on_send(result); }
  };

  // Received buffers waiting for the reader. At queue_pause_items the multishot
  // receive is cancelled (back-pressure on the peer through TCP's window); it is armed
  // again when the reader has taken the queue down to queue_resume_items. The slack
  // above the pause mark holds what the kernel delivered before the cancel landed.
  static constexpr unsigned queue_capacity = 256;
  static constexpr unsigned queue_pause_items = 32;
  static constexpr unsigned queue_resume_items = 4;
  int _fd;
  int _error = 0;
  bool _eof = false;
  std::uint64_t _received = 0;
  std::chrono::milliseconds _silence_limit{0};             // 0: not armed
  std::uint64_t _silence_seen = 0;                         // _received at the last sweep
  std::chrono::steady_clock::time_point _silence_since{};  // ... when it last grew
  bool _timed_out = false;
  bool _recv_armed = false;
  bool _recv_paused = false;
  bool _send_in_flight = false;
  bool _released = false;
  bool _shut_down = false;
  bool _in_flush_list = false;
  unsigned _queue_head = 0;
  unsigned _queue_size = 0;
  struct received {
    unsigned short buffer_id;
    unsigned size;
  } _queue[queue_capacity];
  std::coroutine_handle<> _reader;
  std::vector<std::coroutine_handle<>> _drain_waiters;  // every writer waiting for room
  std::string _out;
  std::string _sending;
  std::size_t _sent = 0;
  send_completion _send_completion;
  shard* _shard;
};

}  // namespace keel
