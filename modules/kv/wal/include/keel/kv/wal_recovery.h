// keel/kv/wal_recovery.h — reading the WAL back at start-up (docs/formats/wal.md, "Recovery").
//
// Recovery runs once, before the log's owner shard serves anything, with plain blocking
// system calls (or the in-memory storage of the tests). It reads every segment, returns
// the records in order and where to append, truncates a torn tail (repair mode), and
// reports anything else as corruption naming the file and byte offset. It needs no
// reactor, so `keelctl wal check` uses it in check mode, which changes nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "keel/kv/wal_format.h"
#include "keel/status.h"

namespace keel::kv {

// The synchronous half of the WAL's file interface: what recovery, release and segment
// creation need. Names are file names inside the WAL directory, never paths.
// Implementations: posix_wal_directory (below), memory_wal_storage (wal_memory_storage.h).
class wal_directory {
 public:
  virtual ~wal_directory() = default;
  // Every file name in the directory (any order).
  virtual result<std::vector<std::string>> list() = 0;
  // The whole content of a file.
  virtual result<std::vector<std::byte>> read_all(const std::string& name) = 0;
  // Writes zeros over [offset, offset + bytes) and fdatasyncs the file.
  virtual status zero_and_sync(const std::string& name, std::uint64_t offset, std::uint64_t bytes) = 0;
  virtual status remove(const std::string& name) = 0;
  virtual status rename(const std::string& from, const std::string& to) = 0;
  // fsync of the directory: makes creations, renames and removals durable.
  virtual status sync_directory() = 0;
  // How messages name a file ("/var/lib/keel/wal/….wal").
  virtual std::string describe(const std::string& name) const = 0;
};

// A WAL directory on a real file system, with blocking POSIX calls (start-up, keelctl).
class posix_wal_directory : public wal_directory {
 public:
  // REQUIRES: `path` names a directory (create_directories() makes it).
  explicit posix_wal_directory(std::string path) : _path(std::move(path)) {}
  // mkdir -p; ok if it exists.
  static status create_directories(const std::string& path);

  result<std::vector<std::string>> list() override;
  result<std::vector<std::byte>> read_all(const std::string& name) override;
  status zero_and_sync(const std::string& name, std::uint64_t offset, std::uint64_t bytes) override;
  status remove(const std::string& name) override;
  status rename(const std::string& from, const std::string& to) override;
  status sync_directory() override;
  std::string describe(const std::string& name) const override { return _path + "/" + name; }
  const std::string& path() const noexcept { return _path; }

 private:
  std::string _path;
};

enum class wal_recovery_mode {
  repair,  // remove *.tmp, zero a torn tail and fdatasync it: ready to append
  check,   // change nothing; report what repair would do
};

struct wal_segment_info {
  std::string name;
  std::uint64_t sequence = 0;
  std::uint64_t first_index = 0;  // from the name
  std::uint64_t file_bytes = 0;
  std::uint64_t end_offset = 0;   // the byte after its last valid record
  std::uint64_t records = 0;      // not counting the segment header
  std::uint32_t batch_bytes_max = 0;
  std::uint32_t header_crc = 0;   // its segment header record's crc (durable marks' seed)
};

struct wal_torn_tail {
  std::string segment;  // as messages name it (describe())
  std::string name;     // the file name in the directory
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;  // nonzero bytes zeroed (or to be zeroed, in check mode)
};

// What recovery found. On success the log is the records, in the order written.
struct wal_recovery {
  std::vector<wal_record> records;
  std::vector<wal_segment_info> segments;   // in sequence order; empty for a new log
  std::optional<wal_torn_tail> torn_tail;
  std::vector<std::string> temporary_files;  // removed (repair) or to be removed (check)
  // Where the next record goes: the last segment's end_offset, chained to last_crc.
  std::uint32_t last_crc = 0;
  // Entries only. Raft's overwrite rule is the reader's (docs/formats/wal.md), so
  // last_index is the index of the last entry record, not the largest index.
  std::uint64_t entries = 0;
  std::optional<std::uint64_t> first_index;
  std::optional<std::uint64_t> last_index;
  std::optional<std::uint64_t> last_term;

  // "truncated torn tail of N bytes at FILE:OFFSET" (or "would truncate" in check mode);
  // "" when there was none.
  std::string torn_tail_text(bool check) const;
};

// Reads the WAL in `directory`. Returns errc::corruption naming "file:offset: what" when
// a record before the tail fails, a segment is missing from the sequence or a segment's
// header disagrees; errc::io_error when a file cannot be read or repaired. In repair mode
// the directory is ready for wal_writer::open afterwards.
result<wal_recovery> recover_wal(wal_directory& directory, wal_recovery_mode mode);

// Makes the changes a check-mode recovery reported (`checked.temporary_files` removed,
// `checked.torn_tail` zeroed and fdatasynced), so that a caller can first check what it
// read against other state (the snapshot: check_wal_joins_snapshot) and change nothing on
// disk when it refuses to start. REQUIRES: nothing wrote to `directory` since `checked`
// was read. Errors: errc::io_error naming the file.
status repair_wal(wal_directory& directory, const wal_recovery& checked);

}  // namespace keel::kv
