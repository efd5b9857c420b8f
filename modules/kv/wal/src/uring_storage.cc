// uring_wal_storage: metadata with POSIX calls, data through the shard's io_uring.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "keel/kv/wal.h"
#include "posix_io.h"
#include "keel/reactor/io.h"

namespace keel::kv {

result<int> uring_wal_storage::open_file(const std::string& name) {
  std::string path = describe(name);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return status{errc::io_error, "open " + path + ": " + std::strerror(errno)};
  return fd;
}

result<int> uring_wal_storage::create_file(const std::string& name) {
  std::string path = describe(name);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return status{errno == EEXIST ? errc::already_exists : errc::io_error,
                  "create " + path + ": " + std::strerror(errno)};
  }
  return fd;
}

void uring_wal_storage::close_file(int file) noexcept { ::close(file); }

task<int> uring_wal_storage::allocate(int file, std::uint64_t bytes) {
  co_return co_await keel::allocate(file, 0, static_cast<std::size_t>(bytes));
}

task<int> uring_wal_storage::write_then_datasync(int file, const std::byte* data, std::size_t size,
                                                 std::uint64_t offset) {
  long written = detail::pwrite_all(file, data, size, offset);
  if (written != static_cast<long>(size)) co_return static_cast<int>(written);  // -errno or short
  int synced = co_await keel::datasync(file);
  co_return synced < 0 ? synced : static_cast<int>(size);
}

// A no-op through the ring completes after this turn's ready tasks and incoming
// cross-shard messages have run (shard.h, loop steps 1-6).
task<void> uring_wal_storage::end_of_turn() { (void)co_await keel::nop(); }

}  // namespace keel::kv
