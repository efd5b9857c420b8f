// WAL recovery (docs/formats/wal.md, "Recovery") and the POSIX directory it reads.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keel/kv/wal_recovery.h"
#include "posix_io.h"

namespace keel::kv {
namespace {

status io_failure(const std::string& what, int error) {
  return {errc::io_error, what + ": " + std::strerror(error)};
}

struct named_segment {
  std::string name;
  std::uint64_t sequence;
  std::uint64_t first_index;
};

}  // namespace

// ---- posix_wal_directory ----------------------------------------------------------

status posix_wal_directory::create_directories(const std::string& path) {
  for (std::size_t slash = 1; slash <= path.size(); ++slash) {
    if (slash != path.size() && path[slash] != '/') continue;
    std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return io_failure("mkdir " + prefix, errno);
  }
  return status::ok();
}

result<std::vector<std::string>> posix_wal_directory::list() {
  DIR* dir = ::opendir(_path.c_str());
  if (dir == nullptr) {
    return status{errno == ENOENT ? errc::not_found : errc::io_error,
                  "cannot open directory " + _path + ": " + std::strerror(errno)};
  }
  std::vector<std::string> names;
  while (dirent* item = ::readdir(dir)) {
    std::string name = item->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(dir);
  return names;
}

result<std::vector<std::byte>> posix_wal_directory::read_all(const std::string& name) {
  std::string path = describe(name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_failure("open " + path, errno);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int error = errno;
    ::close(fd);
    return io_failure("stat " + path, error);
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(info.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t got = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      int error = got < 0 ? errno : EIO;
      ::close(fd);
      return io_failure("read " + path, error);
    }
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  return bytes;
}

status posix_wal_directory::zero_and_sync(const std::string& name, std::uint64_t offset, std::uint64_t bytes) {
  std::string path = describe(name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return io_failure("open " + path, errno);
  std::vector<std::byte> zeros(static_cast<std::size_t>(bytes));
  long written = detail::pwrite_all(fd, zeros.data(), zeros.size(), offset);
  if (written != static_cast<long>(zeros.size())) {
    ::close(fd);
    return io_failure("write " + path, written < 0 ? static_cast<int>(-written) : EIO);
  }
  if (::fdatasync(fd) != 0) {
    int error = errno;
    ::close(fd);
    return io_failure("fdatasync " + path, error);
  }
  ::close(fd);
  return status::ok();
}

status posix_wal_directory::remove(const std::string& name) {
  if (::unlink(describe(name).c_str()) != 0) return io_failure("unlink " + describe(name), errno);
  return status::ok();
}

status posix_wal_directory::rename(const std::string& from, const std::string& to) {
  if (::rename(describe(from).c_str(), describe(to).c_str()) != 0) {
    return io_failure("rename " + describe(from) + " to " + to, errno);
  }
  return status::ok();
}

status posix_wal_directory::sync_directory() {
  int fd = ::open(_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_failure("open " + _path, errno);
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  if (rc != 0) return io_failure("fsync " + _path, error);
  return status::ok();
}

// ---- recovery ---------------------------------------------------------------------

std::string wal_recovery::torn_tail_text(bool check) const {
  if (!torn_tail) return "";
  return std::string(check ? "would truncate" : "truncated") + " torn tail of " +
         std::to_string(torn_tail->bytes) + " bytes at " + torn_tail->segment + ":" +
         std::to_string(torn_tail->offset);
}

result<wal_recovery> recover_wal(wal_directory& directory, wal_recovery_mode mode) {
  wal_recovery recovered;
  auto names = directory.list();
  if (!names) return names.error();

  std::vector<named_segment> segments;
  for (const std::string& name : *names) {
    if (name.ends_with(std::string(".wal") + std::string(wal_temporary_suffix))) {
      recovered.temporary_files.push_back(name);
    } else if (auto ids = parse_wal_segment_name(name)) {
      segments.push_back({name, ids->first, ids->second});
    }
  }
  std::sort(segments.begin(), segments.end(),
            [](const named_segment& a, const named_segment& b) { return a.sequence < b.sequence; });
  for (std::size_t i = 1; i < segments.size(); ++i) {
    if (segments[i].sequence != segments[i - 1].sequence + 1) {
      return status{errc::corruption, directory.describe(segments[i].name) +
                                          ":0: segment sequence gap (previous is " +
                                          segments[i - 1].name + ")"};
    }
  }
  std::optional<std::uint32_t> previous_crc;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const named_segment& segment = segments[i];
    auto bytes = directory.read_all(segment.name);
    if (!bytes) return bytes.error();
    std::string file = directory.describe(segment.name);
    wal_scan_options options{file, i + 1 == segments.size(), segment.sequence, segment.first_index,
                             previous_crc};
    wal_segment_scan scan = scan_wal_segment(*bytes, options);
    if (!scan.outcome) return scan.outcome;

    wal_segment_info info{segment.name, segment.sequence, segment.first_index, bytes->size(),
                          scan.end_offset, scan.records.size(), scan.header.batch_bytes_max, scan.header_crc};
    recovered.segments.push_back(info);
    // Room for this segment's records when they do not fit, growing at least
    // geometrically (an exact reserve per segment would move every earlier record once
    // per segment).
    std::size_t needed = recovered.records.size() + scan.records.size();
    if (needed > recovered.records.capacity())
      recovered.records.reserve(std::max(needed, 2 * recovered.records.capacity()));
    for (wal_record& record : scan.records) {
      if (record.type == wal_record_type::entry) {
        ++recovered.entries;
        if (!recovered.first_index) recovered.first_index = record.index;
        recovered.last_index = record.index;
        recovered.last_term = record.term;
      }
      recovered.records.push_back(std::move(record));
    }
    previous_crc = scan.last_crc;
    recovered.last_crc = scan.last_crc;
    if (scan.torn_bytes > 0) {
      KEEL_ASSERT(options.last);
      recovered.torn_tail = wal_torn_tail{file, segment.name, scan.end_offset, scan.torn_bytes};
    }
  }
  // Nothing is changed until every segment has been read and verified.
  if (mode == wal_recovery_mode::repair) {
    if (status repaired = repair_wal(directory, recovered); !repaired) return repaired;
  }
  return recovered;
}

status repair_wal(wal_directory& directory, const wal_recovery& checked) {
  // A .tmp is a segment whose creation did not finish; nothing in it was acknowledged.
  for (const std::string& name : checked.temporary_files) {
    if (status removed = directory.remove(name); !removed) return removed;
  }
  if (!checked.temporary_files.empty()) {
    if (status synced = directory.sync_directory(); !synced) return synced;
  }
  if (checked.torn_tail) {
    const wal_torn_tail& torn = *checked.torn_tail;
    if (status zeroed = directory.zero_and_sync(torn.name, torn.offset, torn.bytes); !zeroed) return zeroed;
  }
  return status::ok();
}

}  // namespace keel::kv
