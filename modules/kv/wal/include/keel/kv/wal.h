// keel/kv/wal.h — the write-ahead log: group-committed appends on the owner shard.
//
// Format and recovery rules: docs/formats/wal.md. Reading back: keel/kv/wal_recovery.h.
//
// Life of a WAL:
//   posix_wal_directory::create_directories(dir);
//   uring_wal_storage storage(dir);                              // or memory_wal_storage
//   auto recovered = recover_wal(storage, wal_recovery_mode::repair);   // before serving
//   task<result<std::unique_ptr<wal_writer>>> opening = wal_writer::open(storage, *recovered, {});
//   auto writer = co_await std::move(opening);                   // on the owner shard
//   writer->append(wal_record::entry(term, index, data));       // any number, this turn
//   task<status> committing = (*writer)->commit();
//   status durable = co_await std::move(committing);            // then, and only then, reply
//
// Ownership and threads: one wal_writer per WAL directory, owned by and used only on the
// shard that owns the Raft group. The storage outlives the writer.
#pragma once

#include <cstddef>
#include <algorithm>
#include <array>
#include <cstdint>
#include <coroutine>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "keel/kv/wal_format.h"
#include "keel/kv/wal_recovery.h"
#include "keel/limits.h"
#include "keel/reactor/task.h"
#include "keel/status.h"

namespace keel::kv {

// The WAL's whole file interface: the synchronous directory operations plus the three
// that sit on the data path. File handles are storage-specific ints.
// Metadata operations (open, create, rename, directory fsync) are synchronous: they
// happen once per segment (every wal_segment_bytes_max bytes) and io.h has no openat or
// renameat. The data path — allocate, write+fdatasync — goes through the ring.
class wal_storage : public wal_directory {
 public:
  // Opens an existing file for writing; returns its handle.
  virtual result<int> open_file(const std::string& name) = 0;
  // Creates a new, empty file (fails if it exists); returns its handle.
  virtual result<int> create_file(const std::string& name) = 0;
  virtual void close_file(int file) noexcept = 0;
  // fallocate(file, 0, 0, bytes): >= 0 or -errno.
  virtual task<int> allocate(int file, std::uint64_t bytes) = 0;
  // One write made durable (a write linked to one fdatasync, or one RWF_DSYNC write): the
  // byte count once it is durable, or -errno (a short count, or -EIO from a direct write,
  // means it was short and nothing more ran). The storage may also write zeros past the
  // write's end (only past the end of the log: uring_wal_storage's zero-ahead, and the
  // rest of the last block of a direct write), and a direct write rewrites the bytes
  // before `offset` in its first block with the same bytes: no other write may be in
  // flight to that file (see batches_in_flight_max).
  virtual task<int> write_then_datasync(int file, const std::byte* data, std::size_t size,
                                        std::uint64_t offset) = 0;
  // How many write_then_datasync calls may be in flight at once (1 or 2; the writer
  // takes the smaller of this and wal_batches_in_flight_max). Fixed once a file is open.
  virtual unsigned batches_in_flight_max() const noexcept { return 2; }
  // Resumes after every task made ready in this reactor turn has run, so that a commit
  // started in the turn collects all of the turn's appends.
  virtual task<void> end_of_turn() = 0;
};

// The unit of a direct write: offsets, sizes and buffers are multiples of it. 4096 covers
// devices with 512-byte and 4 KiB logical blocks.
inline constexpr std::uint64_t wal_direct_block_bytes = 4096;

// The real storage: POSIX for metadata and recovery, the shard's io_uring for the data
// path. Two ways to write a batch (docs/formats/wal.md, "Writing: group commit"):
//   - direct (ext4 and XFS, unless `direct_wanted` is false): the segments are opened with
//     O_DIRECT and a batch is one RWF_DSYNC write of whole 4 KiB blocks from an aligned
//     staging buffer, the first block starting with the log's bytes already in it (kept
//     from the last write, or read back after a restart) and the last one padded with
//     zeros. One batch in flight: the next batch rewrites the block this one ends in.
//     The kernel submits an overwrite of written blocks from the shard itself; the
//     buffered way hands every fdatasync to an io-wq worker thread.
//   - buffered (elsewhere, or for comparison): a pwrite into the page cache on the
//     shard, then an io_uring fdatasync; two batches in flight. In direct mode a segment
//     whose size is not a whole number of blocks is written this way too (still one
//     batch in flight), so that no write grows it.
// In direct mode an existing segment is fdatasynced when opened: recovery read it through
// the page cache, and a direct write makes only its own blocks durable.
// REQUIRES: the task-returning functions are awaited on a shard thread.
class uring_wal_storage final : public wal_storage {
 public:
  explicit uring_wal_storage(std::string path, bool direct_wanted = true)
      : _directory(std::move(path)), _direct_wanted(direct_wanted) {}
  ~uring_wal_storage() override;

  result<std::vector<std::string>> list() override { return _directory.list(); }
  result<std::vector<std::byte>> read_all(const std::string& name) override { return _directory.read_all(name); }
  status zero_and_sync(const std::string& name, std::uint64_t offset, std::uint64_t bytes) override {
    return _directory.zero_and_sync(name, offset, bytes);
  }
  status remove(const std::string& name) override { return _directory.remove(name); }
  status rename(const std::string& from, const std::string& to) override { return _directory.rename(from, to); }
  status sync_directory() override { return _directory.sync_directory(); }
  std::string describe(const std::string& name) const override { return _directory.describe(name); }

  result<int> open_file(const std::string& name) override;
  result<int> create_file(const std::string& name) override;
  void close_file(int file) noexcept override;
  task<int> allocate(int file, std::uint64_t bytes) override;
  task<int> write_then_datasync(int file, const std::byte* data, std::size_t size,
                                std::uint64_t offset) override;
  task<void> end_of_turn() override;
  unsigned batches_in_flight_max() const noexcept override { return _direct ? 1 : 2; }
  // Whether batches are written directly (decided when the first file is opened).
  bool direct() const noexcept { return _direct; }
  // Whether a file of `file_bytes` is written directly: direct mode, and whole blocks (a
  // direct write of a partial last block would grow the file; such a file is buffered).
  bool direct_for(std::uint64_t file_bytes) const noexcept {
    return _direct && file_bytes % wal_direct_block_bytes == 0;
  }
  // What the direct way did (for tests): RWF_DSYNC batch writes, blocks read back for a
  // write's prefix, zero-ahead writes.
  struct direct_counts {
    std::uint64_t writes = 0;
    std::uint64_t read_backs = 0;
    std::uint64_t zero_writes = 0;
  };
  direct_counts counts() const noexcept { return _direct_counts; }

 private:
  // Zero-ahead (docs/formats/wal.md, "Zero-ahead"): a segment is fallocated, and ext4
  // must commit its journal at the fdatasync of every write into an unwritten extent. So
  // a write after which less than half of wal_zero_ahead_bytes is known written ahead is
  // followed by zeros from a quarter of it to all of it past its end, flushed by the same
  // fdatasync: later batches overwrite written blocks, and their fdatasyncs commit no
  // journal. The zeros are what recovery expects past the end of the log anyway.
  // In direct mode the zeros go through the ring (O_DIRECT, no DSYNC: past the end of
  // the log they need not be durable) and start at the block after the write's last
  // (there is no page cache to race), and the batch counts as written once they are, so
  // no later batch's write can be in flight with them.
  struct zeroed_file {
    int file = -1;
    std::uint64_t file_bytes = 0;  // its size when first written (0 off ext4/XFS): never zeroed past it
    std::uint64_t zeroed_to = 0;   // every byte before this was written (data or zeros)
    // Direct mode: the log's bytes in the block where the last write ended, from
    // tail_block on (tail_valid once a write succeeded).
    bool buffered = false;  // direct mode, but this file's size is not whole blocks
    bool tail_valid = false;
    std::uint64_t tail_block = 0;
    std::vector<std::byte> tail;
  };
  zeroed_file& zeroed_state(int file);
  // The zeros due after a write ending at `end` when the next ones may start no nearer
  // than `nearest`: [from, to), empty when enough is written ahead.
  std::pair<std::uint64_t, std::uint64_t> zero_range(const zeroed_file& z, std::uint64_t end,
                                                     std::uint64_t nearest) const;
  const std::byte* zeros();  // wal_zero_ahead_bytes of zeros, block-aligned (either way)
  long zero_ahead(int file, std::uint64_t end);  // 0, or -errno / -EIO for a short write
  // Decides the mode from the first file opened: direct when wanted, on ext4/XFS, and
  // O_DIRECT can be set. Returns -errno when O_DIRECT cannot be set on a later file.
  int prepare_file(int fd);
  task<int> write_direct(zeroed_file& z, const std::byte* data, std::size_t size, std::uint64_t offset);
  task<int> zero_ahead_direct(zeroed_file& z, std::uint64_t end);
  std::byte* staging(std::size_t bytes);  // aligned, at least `bytes`

  posix_wal_directory _directory;
  bool _direct_wanted = true;
  bool _mode_decided = false;
  bool _direct = false;
  bool _direct_in_flight = false;
  direct_counts _direct_counts;
  std::list<zeroed_file> _zeroed;  // a list: a write holds its entry across suspensions
  std::byte* _staging = nullptr;  // direct mode: aligned to wal_direct_block_bytes
  std::size_t _staging_bytes = 0;
  std::byte* _zeros = nullptr;  // see zeros()
};

// How far past a write uring_wal_storage writes zeros ahead (a multiple of 4096).
inline constexpr std::uint64_t wal_zero_ahead_bytes = std::uint64_t{1} << 20;
// Whether the file system of `fd` (a file or a directory) gets zero-ahead: ext4 and XFS,
// which keep fallocated blocks as unwritten extents. Elsewhere (copy-on-write file systems
// above all) zeros would only double the bytes written.
bool wal_zero_ahead_applies(int fd) noexcept;

struct wal_writer_options {
  // Size of each new segment (preallocated). REQUIRES: >= 2 * batch_bytes_max and
  // <= limits::wal_segment_bytes_max.
  std::uint64_t segment_bytes = limits::wal_segment_bytes_max;
  // Largest single write. REQUIRES: multiple of 8, within [wal_batch_bytes_min,
  // limits::wal_batch_bytes_max]. Records larger than this are refused (too_large).
  std::uint32_t batch_bytes_max = limits::wal_batch_bytes_max;
  // The first segment's first index when the log is new.
  std::uint64_t first_index = 1;
};

struct wal_writer_stats {
  std::uint64_t batches = 0;          // write+fdatasync pairs for records
  std::uint64_t records = 0;          // records made durable
  std::uint64_t bytes = 0;            // record bytes made durable
  std::uint64_t segments_created = 0;
  // How long each durable batch took from its write's issue to its completion (the write
  // and the fdatasync it carries), in etcd's etcd_disk_wal_fsync_duration_seconds
  // buckets: [i] counts batches above 2^(i-1) ms and at most 2^i ms (i < 14: up to
  // 8.192 s); [14] those above 8.192 s. Not cumulative.
  static constexpr std::size_t sync_buckets = 15;
  std::array<std::uint64_t, sync_buckets> sync_counts{};
  std::uint64_t sync_nanoseconds = 0;  // the sum of those durations
};

// The bucket of wal_writer_stats::sync_counts a duration falls in.
std::size_t wal_sync_bucket(std::uint64_t nanoseconds) noexcept;

// At most this many batches (write+fdatasync pairs) are in flight at once (fewer when the
// storage says so: wal_storage::batches_in_flight_max).
inline constexpr unsigned wal_batches_in_flight_max = 2;

// Appends records and makes them durable by group commit (docs/formats/wal.md,
// "Writing"). Invariants:
//   - at most wal_batches_in_flight_max write+fdatasync pairs are in flight, together at
//     most the segment's batch_bytes_max bytes, contiguous from the durable end (so the
//     torn-tail rule of recovery holds); batches become durable in order, each once its
//     own fdatasync and every earlier batch's have completed;
//   - commit() returns ok only once every record appended before the call is covered by
//     a completed fdatasync — no reply may be sent before that;
//   - after any write, fdatasync or segment-creation failure the writer is failed for
//     good: append, commit and release_before return that failure (errc::io_error with
//     the file and errno's text), and nothing more is written.
class wal_writer {
 public:
  // Opens the writer at the end `recovered` found (or starts segment 0 of a new log).
  // REQUIRES: `recovered` is what recover_wal(storage, repair) returned just before;
  // on a shard thread; `storage` outlives the writer.
  static task<result<std::unique_ptr<wal_writer>>> open(wal_storage& storage, const wal_recovery& recovered,
                                                        wal_writer_options options);
  ~wal_writer();
  wal_writer(const wal_writer&) = delete;
  wal_writer& operator=(const wal_writer&) = delete;

  // Buffers a record for the next batch. Fails with too_large when the record exceeds
  // the batch size or wal_pending_bytes_max bytes wait already; with the failure when
  // the writer is failed. REQUIRES: record.type != segment_header.
  status append(const wal_record& record);

  // Completes when every record appended before the call is durable (ok), or the
  // writer failed. Concurrent callers share batches: the first waits for the end of the
  // turn, then writes everything appended so far; callers arriving while a batch is in
  // flight are served by the next one.
  task<status> commit();

  // Removes whole segments whose entries are all below `index` (the segment after them
  // starts at or below it), oldest first, then fsyncs the directory. Never removes the
  // segment being written. REQUIRES: no commit in flight is rolling over (call it from
  // the owner shard between commits, e.g. after a snapshot is durable).
  status release_before(std::uint64_t index);

  const status& failure() const noexcept { return _failure; }
  const wal_writer_stats& stats() const noexcept { return _stats; }
  std::uint64_t appended_records() const noexcept { return _appended; }
  std::uint64_t durable_records() const noexcept { return _durable; }
  // Segments currently in the directory, oldest first.
  std::vector<std::string> segment_names() const;

 private:
  unsigned batches_in_flight_max() const noexcept {
    return std::min(wal_batches_in_flight_max, _storage.batches_in_flight_max());
  }
  struct segment {
    std::string name;
    std::uint64_t sequence;
    std::uint64_t first_index;
  };
  struct waiter;

  wal_writer(wal_storage& storage, wal_writer_options options) : _storage(storage), _options(options) {}
  struct batch {
    std::vector<std::byte> data;  // the records, crcs chained
    std::size_t count = 0;        // records
    std::uint64_t offset = 0;
    std::uint32_t crc = 0;        // the chain after its last record
    std::uint64_t next_index = 0; // the log's next entry index after it
    bool done = false;
    int result = 0;
    std::uint64_t nanoseconds = 0;  // from the write's issue to its completion
  };
  task<status> start_segment();
  // Builds the next batch from the pending records if it fits beside what is in flight
  // (null when it does not: wait for a batch to complete, or roll over when the segment
  // is full and nothing is in flight).
  batch* issue_batch();
  bool needs_rollover() const;
  task<void> write_one(batch* b);
  void complete_in_order();
  void fail(status failure);
  void wake_waiters();

  wal_storage& _storage;
  wal_writer_options _options;
  status _failure;

  std::vector<segment> _segments;  // oldest first; the last is being written
  int _file = -1;                  // the last segment's handle
  std::uint64_t _segment_file_bytes = 0;
  std::uint64_t _offset = 0;       // the durable end of the log in the last segment
  std::uint32_t _last_crc = 0;     // crc chain: the last durable record
  std::uint64_t _next_index = 1;   // last durable entry index + 1: a new segment's first index
  // The end as issued (durable or in flight): where the next batch goes.
  std::uint64_t _issued_offset = 0;
  std::uint32_t _issued_crc = 0;
  std::uint64_t _issued_next_index = 1;
  std::uint64_t _issued = 0;        // records issued, ever
  std::uint64_t _in_flight_bytes = 0;
  std::uint32_t _segment_batch_bytes_max = 0;  // the last segment's declared batch limit
  std::uint32_t _segment_header_crc = 0;       // the last segment's header crc (marks' seed)
  std::uint64_t _marked_offset = 0;            // the durable offset the last mark claimed

  struct pending_record {
    std::uint32_t bytes;
    std::uint64_t next_index;  // an entry's index + 1; 0 for other records
  };
  std::vector<std::byte> _pending;              // encoded, crc not chained yet
  std::vector<pending_record> _pending_records;  // one per pending record
  std::deque<std::unique_ptr<batch>> _batches;  // issued and not yet durable, oldest first
  std::uint64_t _appended = 0;                  // records appended, ever
  std::uint64_t _durable = 0;                   // records durable, ever
  unsigned _flushers = 0;                       // commit() callers issuing batches
  bool _rolling = false;                        // a rollover is being made
  std::vector<std::coroutine_handle<>> _waiters;
  wal_writer_stats _stats;
};

}  // namespace keel::kv
