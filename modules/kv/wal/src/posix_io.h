// pwrite until every byte is written (the WAL's own files only).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace keel::kv::detail {

// Writes [data, data + size) at `offset`, retrying short writes and EINTR. Returns the
// bytes written: `size`, or fewer when a write wrote nothing (no room, no error); -errno
// on an error.
inline long pwrite_all(int fd, const void* data, std::size_t size, std::uint64_t offset) {
  const char* bytes = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    ssize_t wrote = ::pwrite(fd, bytes + done, size - done, static_cast<off_t>(offset + done));
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return -errno;
    if (wrote == 0) break;
    done += static_cast<std::size_t>(wrote);
  }
  return static_cast<long>(done);
}

}  // namespace keel::kv::detail
