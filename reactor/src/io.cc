// io.cc — how each io_request becomes SQEs.
#include "keel/reactor/io.h"

#include <fcntl.h>
#include <liburing.h>

#include <cerrno>

namespace keel {

io_request io_request::make(kind what, int fd, const void* buffer, std::size_t size,
                            std::uint64_t offset) noexcept {
  io_request request;
  request._kind = what;
  request._fd = fd;
  request._buffer = buffer;
  request._size = size;
  request._offset = offset;
  return request;
}

io_request io_request::make_timeout(std::chrono::nanoseconds delay) noexcept {
  io_request request;
  request._kind = kind::timeout;
  auto count = delay.count() < 0 ? 0 : delay.count();
  request._timeout_seconds = count / 1'000'000'000;
  request._timeout_nanoseconds = count % 1'000'000'000;
  return request;
}

io_request connect_socket_within(int fd, const sockaddr* address, std::size_t size,
                                 std::chrono::nanoseconds limit) noexcept {
  io_request request = io_request::make_timeout(limit);
  request._kind = io_request::kind::connect_within;
  request._fd = fd;
  request._buffer = address;
  request._size = size;
  return request;
}

void io_request::await_suspend(std::coroutine_handle<> waiter) noexcept {
  shard* self = shard::current();
  KEEL_ASSERT_MSG(self != nullptr, "io_request awaited off a shard thread");
  _waiter = waiter;
  _in_flight = true;
  self->note_io_started();
  // A linked pair must reach the kernel in one submission: if the SQ had room for only
  // the write, get_sqe() would submit it alone and the link to the fsync would be lost
  // (the fsync could then finish first, and both would post a completion).
  bool linked_pair = _kind == kind::write_datasync || _kind == kind::connect_within;
  if (linked_pair && io_uring_sq_space_left(self->ring()) < 2) io_uring_submit(self->ring());
  io_uring_sqe* sqe = self->get_sqe();
  switch (_kind) {
    case kind::nop:
      io_uring_prep_nop(sqe);
      break;
    case kind::timeout: {
      // The kernel copies the timespec while the SQE is submitted, and the SQE is
      // submitted before this coroutine can resume, so a pointer into *this is safe.
      static_assert(sizeof(__kernel_timespec) == 16);
      auto* spec = reinterpret_cast<__kernel_timespec*>(&_timeout_seconds);
      io_uring_prep_timeout(sqe, spec, 0, 0);
      break;
    }
    case kind::write:
      io_uring_prep_write(sqe, _fd, _buffer, static_cast<unsigned>(_size), _offset);
      break;
    case kind::write_dsync:
      io_uring_prep_write(sqe, _fd, _buffer, static_cast<unsigned>(_size), _offset);
      sqe->rw_flags = RWF_DSYNC;
      break;
    case kind::read:
      io_uring_prep_read(sqe, _fd, const_cast<void*>(_buffer), static_cast<unsigned>(_size), _offset);
      break;
    case kind::datasync:
      io_uring_prep_fsync(sqe, _fd, IORING_FSYNC_DATASYNC);
      break;
    case kind::fallocate:
      io_uring_prep_fallocate(sqe, _fd, 0, static_cast<off_t>(_offset), static_cast<off_t>(_size));
      break;
    case kind::connect:
      io_uring_prep_connect(sqe, _fd, static_cast<const sockaddr*>(_buffer),
                            static_cast<socklen_t>(_size));
      break;
    case kind::connect_within: {
      // The connect, linked to a timeout that cancels it (-ECANCELED) if it has not
      // completed by then. The timeout's own CQE is ignored; the timespec is read while
      // the pair is submitted, before this coroutine can resume.
      io_uring_prep_connect(sqe, _fd, static_cast<const sockaddr*>(_buffer), static_cast<socklen_t>(_size));
      sqe->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data(sqe, this);
      sqe = self->get_sqe();
      io_uring_prep_link_timeout(sqe, reinterpret_cast<__kernel_timespec*>(&_timeout_seconds), 0);
      io_uring_sqe_set_data64(sqe, user_data_ignore);
      return;
    }
    case kind::write_datasync: {
      // Exactly one CQE arrives for the pair. The write carries IOSQE_CQE_SKIP_SUCCESS:
      // when it is whole, only the fsync's CQE is posted (0 or -errno). When it fails or
      // is short, the kernel posts the write's CQE (-errno or a short count) and, since
      // the failed head had SKIP_SUCCESS, skips the cancelled fsync's CQE.
      io_uring_prep_write(sqe, _fd, _buffer, static_cast<unsigned>(_size), _offset);
      sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
      _write_part.owner = this;
      io_uring_sqe_set_data(sqe, &_write_part);
      sqe = self->get_sqe();
      io_uring_prep_fsync(sqe, _fd, IORING_FSYNC_DATASYNC);
      break;
    }
  }
  io_uring_sqe_set_data(sqe, this);
}

void io_request::complete(int result, unsigned cqe_flags) noexcept {
  if (_kind == kind::write_datasync && result == 0) {
    // The fsync's CQE (the write's own CQE goes to _write_part): the write was whole and
    // the data is durable.
    result = static_cast<int>(_size);
  }
  _result = result;
  _in_flight = false;
  shard::current()->note_io_finished();
  shard::current()->schedule(_waiter);
}

void io_request::write_part::complete(int result, unsigned) noexcept {
  // Posted only when the write failed or was short (a short write breaks the link, and
  // the kernel then skips the cancelled fsync's CQE): the caller sees -errno or the
  // short count, never the size it asked for.
  owner->_result = result;
  owner->_in_flight = false;
  shard::current()->note_io_finished();
  shard::current()->schedule(owner->_waiter);
}

void io_request::cancel() noexcept {
  if (!_in_flight) return;
  io_uring_sqe* sqe = shard::current()->get_sqe();
  io_uring_prep_cancel(sqe, this, 0);
  io_uring_sqe_set_data64(sqe, user_data_ignore);
}

task<bool> timer::sleep(std::chrono::nanoseconds delay) {
  io_request request = sleep_for(delay);
  _pending = &request;
  int result = co_await request;
  _pending = nullptr;
  co_return result == -ETIME;
}

void timer::cancel() noexcept {
  if (_pending) _pending->cancel();
}

}  // namespace keel
