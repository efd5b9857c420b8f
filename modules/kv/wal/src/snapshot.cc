// Snapshot files (docs/formats/snapshot.md): the codec, and writing, loading and
// retention with blocking POSIX calls.
#include "keel/kv/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <initializer_list>

#include "keel/assert.h"
#include "keel/kv/wal_recovery.h"
#include "keel/wire/crc32c.h"

namespace keel::kv {
namespace {

static_assert(std::endian::native == std::endian::little, "the format is little-endian");
static_assert(snapshot_header_bytes == 4 + 2 + 2 + 8 + 8 + 8);

template <typename T>
T load(const char* at) noexcept {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
template <typename T>
void store(char* at, T value) noexcept {
  std::memcpy(at, &value, sizeof value);
}

status io_failure(const std::string& what, int error) {
  return {errc::io_error, what + ": " + std::strerror(error)};
}

std::string join(const std::string& directory, const std::string& name) {
  return directory + "/" + name;
}

std::string header_of(std::uint64_t term, std::uint64_t index, std::size_t payload_bytes) {
  std::string header(snapshot_header_bytes, '\0');
  store(header.data(), snapshot_magic);
  store(header.data() + 4, snapshot_version);
  store(header.data() + 8, term);
  store(header.data() + 16, index);
  store(header.data() + 24, static_cast<std::uint64_t>(payload_bytes));
  return header;
}

std::string trailer_of(std::uint32_t crc) {
  std::string trailer(snapshot_trailer_bytes, '\0');
  store(trailer.data(), crc);
  return trailer;
}

std::uint32_t crc_of(std::string_view header, std::string_view payload) {
  return wire::crc32c(payload.data(), payload.size(), wire::crc32c(header.data(), header.size()));
}

// Why `bytes` (a whole file named `name`) is not a valid snapshot, or "" if it is.
std::string check_file(std::string_view bytes, std::string_view name) {
  constexpr std::size_t frame = snapshot_header_bytes + snapshot_trailer_bytes;
  auto ids = parse_snapshot_name(name);
  if (!ids) return "not a snapshot file name";
  if (bytes.size() < frame) {
    return "file of " + std::to_string(bytes.size()) + " bytes is shorter than a snapshot's " +
           std::to_string(frame) + "-byte header and trailer";
  }
  std::size_t covered = bytes.size() - snapshot_trailer_bytes;
  std::uint32_t stored = load<std::uint32_t>(bytes.data() + covered);
  std::uint32_t computed = wire::crc32c(bytes.data(), covered);
  if (stored != computed) {
    return "crc mismatch over " + std::to_string(covered) + " bytes (stored " +
           std::to_string(stored) + ", computed " + std::to_string(computed) + ")";
  }
  // The crc matched, so these were written this way (by another version of keel).
  if (load<std::uint32_t>(bytes.data()) != snapshot_magic) return "bad magic";
  std::uint16_t version = load<std::uint16_t>(bytes.data() + 4);
  if (version != snapshot_version) return "unsupported snapshot version " + std::to_string(version);
  if (load<std::uint16_t>(bytes.data() + 6) != 0) return "nonzero reserved field";
  std::uint64_t payload_bytes = load<std::uint64_t>(bytes.data() + 24);
  if (payload_bytes != bytes.size() - frame) {
    return "payload length " + std::to_string(payload_bytes) + " disagrees with the file size " +
           std::to_string(bytes.size());
  }
  std::uint64_t term = load<std::uint64_t>(bytes.data() + 8);
  std::uint64_t index = load<std::uint64_t>(bytes.data() + 16);
  if (term != ids->first || index != ids->second) {
    return "header (term " + hex16(term) + ", index " + hex16(index) +
           ") disagrees with the file name";
  }
  return "";
}

// The whole content of `path`.
result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_failure("open " + path, errno);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int error = errno;
    ::close(fd);
    return io_failure("stat " + path, error);
  }
  std::string bytes(static_cast<std::size_t>(info.st_size), '\0');
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t got = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      int error = got < 0 ? errno : EIO;  // 0: the file shrank under us
      ::close(fd);
      return io_failure("read " + path, error);
    }
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  return bytes;
}

// write(2) until every byte of `data` is written.
status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t wrote = ::write(fd, data.data(), data.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return io_failure("write " + path, wrote < 0 ? errno : EIO);
    data.remove_prefix(static_cast<std::size_t>(wrote));
  }
  return status::ok();
}

// Creates (or truncates) `path`, writes the pieces in order and fdatasyncs it.
status write_synced_file(const std::string& path, std::initializer_list<std::string_view> pieces) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_failure("open " + path, errno);
  status done;
  for (std::string_view piece : pieces) {
    if (done) done = write_all(fd, piece, path);
  }
  if (done && ::fdatasync(fd) != 0) done = io_failure("fdatasync " + path, errno);
  if (::close(fd) != 0 && done) done = io_failure("close " + path, errno);
  return done;
}

status sync_directory(const std::string& path) {
  return posix_wal_directory(path).sync_directory();
}

// mkdir -p `snap_dir`; if it had to be made, fsyncs its parent so that the new entry is
// durable before a snapshot is renamed into it.
status ensure_directory(const std::string& snap_dir) {
  struct stat info {};
  if (::stat(snap_dir.c_str(), &info) == 0) {
    if (S_ISDIR(info.st_mode)) return status::ok();
    return io_failure("snapshot directory " + snap_dir, ENOTDIR);
  }
  if (status made = posix_wal_directory::create_directories(snap_dir); !made) return made;
  std::string parent = snap_dir;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  std::size_t slash = parent.rfind('/');
  parent = slash == std::string::npos ? "." : slash == 0 ? "/" : parent.substr(0, slash);
  return sync_directory(parent);
}

// Every name in the directory; an empty list when it does not exist.
result<std::vector<std::string>> names_in(const std::string& snap_dir) {
  auto names = posix_wal_directory(snap_dir).list();
  if (!names && names.error().code() == errc::not_found) return std::vector<std::string>{};
  return names;
}

// Removes every `*.snap.tmp`: each is a write_snapshot that never reached its rename.
status remove_temporary_files(const std::string& snap_dir, const std::vector<std::string>& names) {
  posix_wal_directory directory(snap_dir);
  bool removed = false;
  for (const std::string& name : names) {
    if (!name.ends_with(snapshot_temporary_suffix)) continue;
    if (status gone = directory.remove(name); !gone) return gone;
    removed = true;
  }
  return removed ? directory.sync_directory() : status::ok();
}

// Moves a snapshot that failed its check out of the way, keeping it for inspection.
status set_aside(const std::string& snap_dir, const std::string& name, const std::string& broken) {
  posix_wal_directory directory(snap_dir);
  status renamed = directory.rename(name, broken);
  return renamed ? directory.sync_directory() : renamed;
}

}  // namespace

// ---- names ------------------------------------------------------------------------

std::string snapshot_name(std::uint64_t term, std::uint64_t index) {
  return hex_pair_name(term, index, snapshot_suffix);
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_snapshot_name(std::string_view name) {
  return parse_hex_pair_name(name, snapshot_suffix);
}

// ---- codec ------------------------------------------------------------------------

std::string encode_snapshot(std::uint64_t term, std::uint64_t index, std::string_view payload) {
  std::string out = header_of(term, index, payload.size());
  std::uint32_t crc = crc_of(out, payload);
  out.append(payload);
  out.append(trailer_of(crc));
  return out;
}

result<loaded_snapshot> decode_snapshot(std::string bytes, const std::string& file) {
  std::size_t slash = file.rfind('/');
  std::string_view name = std::string_view(file).substr(slash == std::string::npos ? 0 : slash + 1);
  std::string wrong = check_file(bytes, name);
  if (!wrong.empty()) return status{errc::corruption, file + ": " + wrong};
  loaded_snapshot out;
  out.term = load<std::uint64_t>(bytes.data() + 8);
  out.index = load<std::uint64_t>(bytes.data() + 16);
  out.file = file;
  bytes.resize(bytes.size() - snapshot_trailer_bytes);
  bytes.erase(0, snapshot_header_bytes);
  out.payload = std::move(bytes);
  return out;
}

// ---- files ------------------------------------------------------------------------

status write_snapshot(const std::string& snap_dir, std::uint64_t term, std::uint64_t index,
                      std::string_view payload) {
  if (status ready = ensure_directory(snap_dir); !ready) return ready;
  std::string name = snapshot_name(term, index);
  std::string temporary = join(snap_dir, name + ".tmp");
  std::string header = header_of(term, index, payload.size());
  std::string trailer = trailer_of(crc_of(header, payload));
  status written = write_synced_file(temporary, {header, payload, trailer});
  if (written && ::rename(temporary.c_str(), join(snap_dir, name).c_str()) != 0) {
    written = io_failure("rename " + temporary + " to " + name, errno);
  }
  if (!written) {
    // Nothing under the final name; the .tmp would be removed at the next load anyway.
    ::unlink(temporary.c_str());
    return written;
  }
  // The rename is durable only once the directory is.
  return sync_directory(snap_dir);
}

result<std::vector<std::string>> list_snapshots(const std::string& snap_dir) {
  auto names = names_in(snap_dir);
  if (!names) return names.error();
  std::vector<std::pair<std::pair<std::uint64_t, std::uint64_t>, std::string>> found;
  for (std::string& name : *names) {
    if (auto ids = parse_snapshot_name(name)) {
      found.push_back({{ids->second, ids->first}, std::move(name)});  // index, then term
    }
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& item : found) out.push_back(std::move(item.second));
  return out;
}

result<loaded_snapshot> read_snapshot(const std::string& snap_dir, const std::string& name) {
  std::string path = join(snap_dir, name);
  auto bytes = read_file(path);
  if (!bytes) return bytes.error();
  return decode_snapshot(std::move(bytes.value()), path);
}

result<std::optional<loaded_snapshot>> load_newest_snapshot(const std::string& snap_dir,
                                                            std::vector<std::string>* warnings) {
  auto names = names_in(snap_dir);
  if (!names) return names.error();
  if (status cleaned = remove_temporary_files(snap_dir, *names); !cleaned) return cleaned;
  auto candidates = list_snapshots(snap_dir);
  if (!candidates) return candidates.error();
  for (const std::string& name : *candidates) {
    auto snapshot = read_snapshot(snap_dir, name);
    if (snapshot) return std::optional<loaded_snapshot>(std::move(snapshot.value()));
    if (snapshot.error().code() != errc::corruption) return snapshot.error();
    // etcd (snap.Snapshotter.Load): a snapshot that fails its check is renamed .broken
    // and the next older one is tried.
    std::string broken = name + ".broken";
    if (warnings != nullptr) {
      warnings->push_back(snapshot.error().message() + "; skipped, renamed to " + broken);
    }
    if (status moved = set_aside(snap_dir, name, broken); !moved) return moved;
  }
  return std::optional<loaded_snapshot>();
}

status remove_old_snapshots(const std::string& snap_dir, std::size_t keep) {
  KEEL_ASSERT(keep >= 1);
  auto names = list_snapshots(snap_dir);
  if (!names) return names.error();
  if (names->size() <= keep) return status::ok();
  posix_wal_directory directory(snap_dir);
  for (std::size_t i = keep; i < names->size(); ++i) {
    if (status gone = directory.remove((*names)[i]); !gone) return gone;
  }
  return directory.sync_directory();
}


namespace {

// The entry at `index` the log holds last (Raft's overwrite rule) must have the snapshot's term.
status check_snapshot_term(const wal_recovery& wal, std::uint64_t index, std::uint64_t term,
                           const std::string& wal_dir) {
  for (auto it = wal.records.rbegin(); it != wal.records.rend(); ++it) {
    if (it->type != wal_record_type::entry || it->index != index) continue;
    if (it->term == term) return status::ok();
    return {errc::corruption, wal_dir + ": entry " + std::to_string(index) + " has term " + std::to_string(it->term) +
                                  " in the WAL but term " + std::to_string(term) + " in the newest snapshot"};
  }
  return status::ok();
}

}  // namespace

status check_wal_joins_snapshot(const wal_recovery& wal, std::uint64_t snapshot_index, std::uint64_t snapshot_term,
                                const std::string& wal_dir, bool from_own_log) {
  // Where the log starts: its first entry, or, before any entry, the entry its first
  // segment was started for (a Raft overwrite may put an entry below that).
  std::optional<std::uint64_t> start = wal.first_index;
  if (!wal.segments.empty()) start = std::min(start.value_or(UINT64_MAX), wal.segments.front().first_index);
  if (start && *start > snapshot_index + 1) {
    return {errc::corruption, wal_dir + ": the WAL starts at entry " + std::to_string(*start) +
                                  " but the newest snapshot covers only up to entry " + std::to_string(snapshot_index) +
                                  ": entries " + std::to_string(snapshot_index + 1) + " to " +
                                  std::to_string(*start - 1) + " are missing"};
  }
  if (!from_own_log || wal.segments.empty() || snapshot_index == 0) return status::ok();
  // The last entry the segments know of: the last entry record, or the entry before the
  // one the last segment was started for.
  std::uint64_t reach = wal.segments.back().first_index - 1;
  if (wal.last_index) reach = std::max(reach, *wal.last_index);
  if (reach >= snapshot_index) return check_snapshot_term(wal, snapshot_index, snapshot_term, wal_dir);
  return {errc::corruption,
          wal_dir + ": the WAL ends at entry " + std::to_string(reach) + " (" + wal.segments.back().name +
              ") but the newest snapshot, taken from this log, is at entry " + std::to_string(snapshot_index) +
              ": WAL segments after " + wal.segments.back().name +
              " are missing, and the writes they held after the snapshot with them"};
}

}  // namespace keel::kv
