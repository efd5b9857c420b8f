// uring_wal_storage: metadata with POSIX calls, data through the shard's io_uring.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
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

void uring_wal_storage::close_file(int file) noexcept {
  std::erase_if(_zeroed, [file](const zeroed_file& z) { return z.file == file; });
  ::close(file);
}

task<int> uring_wal_storage::allocate(int file, std::uint64_t bytes) {
  co_return co_await keel::allocate(file, 0, static_cast<std::size_t>(bytes));
}

bool wal_zero_ahead_applies(int fd) noexcept {
  struct statfs fs {};
  return ::fstatfs(fd, &fs) == 0 && (fs.f_type == EXT4_SUPER_MAGIC || fs.f_type == XFS_SUPER_MAGIC);
}

// The file's zero-ahead state, created on its first write: a segment opened at a restart
// starts with nothing known to be written ahead; a file zero-ahead does not apply to
// counts as empty, so that nothing is ever zeroed in it.
uring_wal_storage::zeroed_file& uring_wal_storage::zeroed_state(int file) {
  for (zeroed_file& z : _zeroed)
    if (z.file == file) return z;
  struct stat st {};
  std::uint64_t size = ::fstat(file, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  _zeroed.push_back({file, wal_zero_ahead_applies(file) ? size : 0, 0});
  return _zeroed.back();
}

// After a write ending at `end`: once what is written ahead is less than half of
// wal_zero_ahead_bytes, zeros up to wal_zero_ahead_bytes past `end`, starting no nearer
// than a quarter of it, so that the next batches (written while this fdatasync may be
// writing the zeros back) do not land in those pages (wal.md, "Zero-ahead").
long uring_wal_storage::zero_ahead(int file, std::uint64_t end) {
  zeroed_file& z = zeroed_state(file);
  if (end + wal_zero_ahead_bytes / 2 <= z.zeroed_to || end >= z.file_bytes) return 0;
  std::uint64_t from = std::max(z.zeroed_to, (end + wal_zero_ahead_bytes / 4 + 4095) & ~std::uint64_t{4095});
  std::uint64_t to = std::min(z.file_bytes, (end + wal_zero_ahead_bytes) & ~std::uint64_t{4095});
  if (to <= from) return 0;
  if (_zeros.empty()) _zeros.resize(wal_zero_ahead_bytes);
  long written = detail::pwrite_all(file, _zeros.data(), static_cast<std::size_t>(to - from), from);
  if (written != static_cast<long>(to - from)) return written < 0 ? written : -EIO;
  z.zeroed_to = to;
  return 0;
}

task<int> uring_wal_storage::write_then_datasync(int file, const std::byte* data, std::size_t size,
                                                 std::uint64_t offset) {
  long written = detail::pwrite_all(file, data, size, offset);
  if (written != static_cast<long>(size)) co_return static_cast<int>(written);  // -errno or short
  if (long zeroed = zero_ahead(file, offset + size); zeroed < 0) co_return static_cast<int>(zeroed);
  int synced = co_await keel::datasync(file);
  co_return synced < 0 ? synced : static_cast<int>(size);
}

// A no-op through the ring completes after this turn's ready tasks and incoming
// cross-shard messages have run (shard.h, loop steps 1-6).
task<void> uring_wal_storage::end_of_turn() { (void)co_await keel::nop(); }

}  // namespace keel::kv
