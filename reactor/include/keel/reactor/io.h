// keel/reactor/io.h — awaitable io_uring operations: timers, files, sockets.
//
// Every function here returns an io_request, an awaitable that fills one SQE when it is
// awaited and resumes the awaiting coroutine when its CQE arrives. The result is the
// CQE's res: >= 0 on success, -errno on failure (-ECANCELED when cancelled, -ETIME when a
// timer expired). REQUIRES: awaited on a shard thread; the io_request and the memory it
// points at stay alive until it completes (they live in the coroutine frame when
// awaited directly, which is the intended use).
//
// Files follow DESIGN.md: write, fdatasync and fallocate go through the ring; a write
// that must be durable before it is acknowledged is linked to its fdatasync with
// write_then_datasync(), so both complete (or fail) as one, or carries RWF_DSYNC
// (write_dsync_at()).
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>

#include "keel/reactor/shard.h"

struct sockaddr;

namespace keel {

class io_request final : public completion {
 public:
  enum class kind : std::uint8_t { nop, timeout, write, read, datasync, fallocate, connect,
                                   write_datasync, connect_within, write_dsync };

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> waiter) noexcept;
  int await_resume() const noexcept { return _result; }
  void complete(int result, unsigned cqe_flags) noexcept override;

  // Cancels the operation if it is in flight; it then completes with -ECANCELED (or
  // with its real result if it won the race).
  void cancel() noexcept;
  bool in_flight() const noexcept { return _in_flight; }

  // Builders; see the free functions below.
  static io_request make(kind what, int fd, const void* buffer, std::size_t size,
                         std::uint64_t offset) noexcept;
  static io_request make_timeout(std::chrono::nanoseconds delay) noexcept;

  io_request(const io_request&) = delete;
  io_request(io_request&& other) noexcept = default;

  friend io_request connect_socket_within(int fd, const sockaddr* address, std::size_t size,
                                          std::chrono::nanoseconds limit) noexcept;

 private:
  io_request() noexcept = default;
  kind _kind = kind::nop;
  bool _in_flight = false;
  int _fd = -1;
  const void* _buffer = nullptr;
  std::size_t _size = 0;
  std::uint64_t _offset = 0;
  std::int64_t _timeout_seconds = 0;  // a __kernel_timespec, kept alive until submitted
  long long _timeout_nanoseconds = 0;
  int _result = 0;
  std::coroutine_handle<> _waiter;
  // The write half of write_then_datasync reports here (only when it failed or was short).
  struct write_part final : completion {
    io_request* owner = nullptr;
    void complete(int result, unsigned cqe_flags) noexcept override;
  } _write_part;
};

// Resumes after `delay`; returns -ETIME when it expired, -ECANCELED when cancelled.
inline io_request sleep_for(std::chrono::nanoseconds delay) noexcept {
  return io_request::make_timeout(delay);
}
inline io_request nop() noexcept { return io_request::make(io_request::kind::nop, -1, nullptr, 0, 0); }

// Files. Offsets in bytes; results are bytes written/read or -errno.
inline io_request write_at(int fd, const void* data, std::size_t size, std::uint64_t offset) noexcept {
  return io_request::make(io_request::kind::write, fd, data, size, offset);
}
inline io_request read_at(int fd, void* data, std::size_t size, std::uint64_t offset) noexcept {
  return io_request::make(io_request::kind::read, fd, data, size, offset);
}
inline io_request datasync(int fd) noexcept {
  return io_request::make(io_request::kind::datasync, fd, nullptr, 0, 0);
}
// Preallocates [offset, offset + size) (mode 0: the file grows).
inline io_request allocate(int fd, std::uint64_t offset, std::size_t size) noexcept {
  return io_request::make(io_request::kind::fallocate, fd, nullptr, size, offset);
}
// One write linked to one fdatasync: completes when both have, with the write's byte
// count, or the first error. No reply may be sent for the data before this completes.
inline io_request write_then_datasync(int fd, const void* data, std::size_t size,
                                      std::uint64_t offset) noexcept {
  return io_request::make(io_request::kind::write_datasync, fd, data, size, offset);
}
// A write with RWF_DSYNC: completes once the data and what is needed to read it back are
// durable (write + fdatasync of that range, as O_DSYNC). With O_DIRECT on ext4/XFS, an
// overwrite of written blocks is submitted from the shard itself, not an io-wq worker.
inline io_request write_dsync_at(int fd, const void* data, std::size_t size, std::uint64_t offset) noexcept {
  return io_request::make(io_request::kind::write_dsync, fd, data, size, offset);
}
// Sockets: connects fd to the address (a sockaddr of `size` bytes).
inline io_request connect_socket(int fd, const sockaddr* address, std::size_t size) noexcept {
  return io_request::make(io_request::kind::connect, fd, address, size, 0);
}
// The same, given up after `limit` (a linked timeout): then it completes with -ECANCELED.
io_request connect_socket_within(int fd, const sockaddr* address, std::size_t size,
                                 std::chrono::nanoseconds limit) noexcept;

// A cancellable sleep: one coroutine waits, any coroutine of the same shard may cancel.
class timer {
 public:
  // true when the time elapsed, false when cancelled.
  task<bool> sleep(std::chrono::nanoseconds delay);
  void cancel() noexcept;

 private:
  io_request* _pending = nullptr;
};

}  // namespace keel
