// uring_wal_storage: metadata with POSIX calls, data through the shard's io_uring.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "keel/assert.h"
#include "keel/kv/wal.h"
#include "posix_io.h"
#include "keel/reactor/io.h"

namespace keel::kv {

uring_wal_storage::~uring_wal_storage() {
  std::free(_staging);
  std::free(_zeros);
}

namespace {
int set_direct(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) return -errno;
  return 0;
}
}  // namespace

int uring_wal_storage::prepare_file(int fd) {
  if (!_mode_decided) {
    _mode_decided = true;
    _direct = _direct_wanted && wal_zero_ahead_applies(fd) && set_direct(fd) == 0;
    return 0;
  }
  return _direct ? set_direct(fd) : 0;
}

result<int> uring_wal_storage::open_file(const std::string& name) {
  std::string path = describe(name);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return status{errc::io_error, "open " + path + ": " + std::strerror(errno)};
  if (int prepared = prepare_file(fd); prepared < 0) {
    ::close(fd);
    return status{errc::io_error, "set O_DIRECT on " + path + ": " + std::strerror(-prepared)};
  }
  // Recovery read this file through the page cache, which may hold bytes a buffered
  // writer (this boot, before a kill) never fdatasynced. A direct write makes only its own
  // blocks durable, so make the rest durable before the log grows past it.
  if (_direct && ::fdatasync(fd) != 0) {
    int error = errno;
    ::close(fd);
    return status{errc::io_error, "fdatasync " + path + ": " + std::strerror(error)};
  }
  return fd;
}

result<int> uring_wal_storage::create_file(const std::string& name) {
  std::string path = describe(name);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return status{errno == EEXIST ? errc::already_exists : errc::io_error,
                  "create " + path + ": " + std::strerror(errno)};
  }
  if (int prepared = prepare_file(fd); prepared < 0) {
    ::close(fd);
    return status{errc::io_error, "set O_DIRECT on " + path + ": " + std::strerror(-prepared)};
  }
  return fd;
}

void uring_wal_storage::close_file(int file) noexcept {
  std::erase_if(_zeroed, [file](const zeroed_file& z) { return z.file == file; });
  ::close(file);
}

std::byte* uring_wal_storage::staging(std::size_t bytes) {
  if (bytes > _staging_bytes) {
    std::free(_staging);
    _staging_bytes = (bytes + wal_direct_block_bytes - 1) & ~(wal_direct_block_bytes - 1);
    _staging = static_cast<std::byte*>(std::aligned_alloc(wal_direct_block_bytes, _staging_bytes));
    KEEL_ASSERT_MSG(_staging != nullptr, "out of memory for the WAL's staging buffer");
  }
  return _staging;
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
  zeroed_file& z = _zeroed.emplace_back();
  z.file = file;
  z.file_bytes = wal_zero_ahead_applies(file) ? size : 0;
  z.zeroed_to = 0;
  if (_direct && !direct_for(size)) {
    // A segment whose size is not a whole number of blocks (wal-segment-bytes is any
    // integer): a direct write of its last block would grow the file. Buffered instead.
    // If O_DIRECT cannot be cleared, the buffered write fails with EINVAL and says so.
    int flags = ::fcntl(file, F_GETFL);
    if (flags >= 0) (void)::fcntl(file, F_SETFL, flags & ~O_DIRECT);
    z.buffered = true;
  }
  return z;
}

// After a write ending at `end`: once what is written ahead is less than half of
// wal_zero_ahead_bytes, zeros up to wal_zero_ahead_bytes past `end`, starting no nearer
// than a quarter of it, so that the next batches (written while this fdatasync may be
// writing the zeros back) do not land in those pages (wal.md, "Zero-ahead").
std::pair<std::uint64_t, std::uint64_t> uring_wal_storage::zero_range(const zeroed_file& z, std::uint64_t end,
                                                                       std::uint64_t nearest) const {
  constexpr std::uint64_t page = 4096;
  if (end + wal_zero_ahead_bytes / 2 <= z.zeroed_to || end >= z.file_bytes) return {0, 0};
  std::uint64_t from = std::max(z.zeroed_to, (nearest + page - 1) & ~(page - 1));
  std::uint64_t to = std::min(z.file_bytes, (end + wal_zero_ahead_bytes) & ~(page - 1));
  return {from, std::max(from, to)};
}

const std::byte* uring_wal_storage::zeros() {
  if (_zeros == nullptr) {
    _zeros = static_cast<std::byte*>(std::aligned_alloc(wal_direct_block_bytes, wal_zero_ahead_bytes));
    KEEL_ASSERT_MSG(_zeros != nullptr, "out of memory for the WAL's zero buffer");
    std::memset(_zeros, 0, wal_zero_ahead_bytes);
  }
  return _zeros;
}

long uring_wal_storage::zero_ahead(int file, std::uint64_t end) {
  zeroed_file& z = zeroed_state(file);
  auto [from, to] = zero_range(z, end, end + wal_zero_ahead_bytes / 4);
  if (to <= from) return 0;
  long written = detail::pwrite_all(file, zeros(), static_cast<std::size_t>(to - from), from);
  if (written != static_cast<long>(to - from)) return written < 0 ? written : -EIO;
  z.zeroed_to = to;
  return 0;
}

// Direct zero-ahead: once less than half of wal_zero_ahead_bytes past the block after
// `end` is known written, zeros from there (or from what is written, if further) to
// wal_zero_ahead_bytes past it. Awaited before the batch counts as written, so the next
// batch (one in flight) never races it.
task<int> uring_wal_storage::zero_ahead_direct(zeroed_file& z, std::uint64_t end) {
  std::uint64_t next_block = (end + wal_direct_block_bytes - 1) & ~(wal_direct_block_bytes - 1);
  auto [from, to] = zero_range(z, next_block, next_block);
  if (to <= from) co_return 0;
  ++_direct_counts.zero_writes;
  int written = co_await keel::write_at(z.file, zeros(), static_cast<std::size_t>(to - from), from);
  if (written != static_cast<int>(to - from)) co_return written < 0 ? written : -EIO;
  z.zeroed_to = to;
  co_return 0;
}

// One RWF_DSYNC write of the whole blocks [offset, offset + size) touches: the first
// starts with the log's bytes before `offset` (kept from the last write when it ended
// there, else read back), the last is padded with zeros (what lies past the log's end).
task<int> uring_wal_storage::write_direct(zeroed_file& z, const std::byte* data, std::size_t size,
                                          std::uint64_t offset) {
  constexpr std::uint64_t block = wal_direct_block_bytes;
  std::uint64_t first = offset & ~(block - 1);
  std::uint64_t end = offset + size;
  std::uint64_t last_end = (end + block - 1) & ~(block - 1);
  std::size_t prefix = static_cast<std::size_t>(offset - first);
  // One direct write at a time (batches_in_flight_max() is 1): the staging buffer is
  // reused, and the next write rewrites this one's last block.
  KEEL_ASSERT_MSG(!_direct_in_flight, "two direct WAL writes in flight");
  _direct_in_flight = true;
  struct clear_in_flight {
    bool& flag;
    ~clear_in_flight() { flag = false; }
  } clear{_direct_in_flight};
  std::byte* buffer = staging(static_cast<std::size_t>(last_end - first));
  if (prefix != 0) {
    if (z.tail_valid && z.tail_block == first && z.tail.size() == prefix) {
      std::memcpy(buffer, z.tail.data(), prefix);
    } else {
      // After a restart (or a write that did not end here): read the block back.
      ++_direct_counts.read_backs;
      int got = co_await keel::read_at(z.file, buffer, block, first);
      if (got < 0) co_return got;
      if (static_cast<std::size_t>(got) < prefix) co_return -EIO;
    }
  }
  ++_direct_counts.writes;
  std::memcpy(buffer + prefix, data, size);
  std::memset(buffer + prefix + size, 0, static_cast<std::size_t>(last_end - end));
  z.tail_valid = false;
  int written = co_await keel::write_dsync_at(z.file, buffer, static_cast<std::size_t>(last_end - first), first);
  if (written != static_cast<int>(last_end - first)) co_return written < 0 ? written : -EIO;
  std::uint64_t tail_block = end & ~(block - 1);
  z.tail.assign(buffer + (tail_block - first), buffer + (end - first));
  z.tail_block = tail_block;
  z.tail_valid = true;
  z.zeroed_to = std::max(z.zeroed_to, last_end);
  if (int zeroed = co_await zero_ahead_direct(z, end); zeroed < 0) co_return zeroed;
  co_return static_cast<int>(size);
}

task<int> uring_wal_storage::write_then_datasync(int file, const std::byte* data, std::size_t size,
                                                 std::uint64_t offset) {
  if (zeroed_file& z = zeroed_state(file); _direct && !z.buffered) {
    task<int> writing = write_direct(z, data, size, offset);
    co_return co_await std::move(writing);
  }
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
