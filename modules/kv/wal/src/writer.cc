// wal_writer: group commit, segment rollover, release (docs/formats/wal.md, "Writing").
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "keel/kv/wal.h"

namespace keel::kv {
namespace {

status io_failure(const std::string& what, int result, std::size_t expected) {
  if (result >= 0) {
    return {errc::io_error, what + ": short write (" + std::to_string(result) + " of " +
                                std::to_string(expected) + " bytes)"};
  }
  return {errc::io_error, what + ": " + std::strerror(-result)};
}

}  // namespace

// Suspends a commit() caller until the batch in flight is done.
struct wal_writer::waiter {
  wal_writer* writer;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) { writer->_waiters.push_back(handle); }
  void await_resume() const noexcept {}
};

task<result<std::unique_ptr<wal_writer>>> wal_writer::open(wal_storage& storage, const wal_recovery& recovered,
                                                           wal_writer_options options) {
  KEEL_ASSERT(options.batch_bytes_max % 8 == 0);
  KEEL_ASSERT(options.batch_bytes_max >= wal_batch_bytes_min);
  KEEL_ASSERT(options.batch_bytes_max <= limits::wal_batch_bytes_max);
  KEEL_ASSERT(options.segment_bytes >= 2ull * options.batch_bytes_max);
  KEEL_ASSERT(options.segment_bytes <= limits::wal_segment_bytes_max);
  std::unique_ptr<wal_writer> writer(new wal_writer(storage, options));
  for (const wal_segment_info& info : recovered.segments) {
    writer->_segments.push_back({info.name, info.sequence, info.first_index});
  }
  writer->_last_crc = recovered.last_crc;
  if (recovered.last_index) {
    writer->_next_index = *recovered.last_index + 1;
  } else if (!recovered.segments.empty()) {
    writer->_next_index = recovered.segments.back().first_index;
  } else {
    writer->_next_index = options.first_index;
  }

  if (recovered.segments.empty()) {
    task<status> starting = writer->start_segment();
    status started = co_await std::move(starting);
    if (!started) co_return started;
    co_return std::move(writer);  // start_segment set the issued end too
  }
  const wal_segment_info& last = recovered.segments.back();
  auto file = storage.open_file(last.name);
  if (!file) co_return file.error();
  writer->_file = *file;
  writer->_offset = last.end_offset;
  writer->_segment_file_bytes = last.file_bytes;
  // Batches written into this segment must respect the limit its header declares, on
  // which the torn-tail rule of its recovery relies.
  writer->_segment_batch_bytes_max = std::min(last.batch_bytes_max, options.batch_bytes_max);
  writer->_segment_header_crc = last.header_crc;
  writer->_marked_offset = last.end_offset;
  writer->_issued_offset = writer->_offset;
  writer->_issued_crc = writer->_last_crc;
  writer->_issued_next_index = writer->_next_index;
  co_return std::move(writer);
}

wal_writer::~wal_writer() {
  KEEL_ASSERT_MSG(_flushers == 0 && _batches.empty(), "wal_writer destroyed with a commit in flight");
  if (_file >= 0) _storage.close_file(_file);
}

void wal_writer::fail(status failure) {
  KEEL_ASSERT(!failure.is_ok());
  if (_failure.is_ok()) _failure = std::move(failure);
}

status wal_writer::append(const wal_record& record) {
  if (!_failure) return _failure;
  KEEL_ASSERT(record.type != wal_record_type::segment_header);
  if (record.data.size() > limits::wal_entry_data_bytes_max) {
    return {errc::too_large, "WAL entry of " + std::to_string(record.data.size()) + " bytes exceeds " +
                                 std::to_string(limits::wal_entry_data_bytes_max)};
  }
  std::size_t bytes = wal_record_bytes(record);
  if (bytes > _options.batch_bytes_max) {
    return {errc::too_large, "WAL record of " + std::to_string(bytes) + " bytes exceeds the batch size " +
                                 std::to_string(_options.batch_bytes_max)};
  }
  if (_pending.size() + bytes > limits::wal_pending_bytes_max) {
    return {errc::too_large, "WAL has " + std::to_string(_pending.size()) +
                                 " bytes waiting to be written; refusing more"};
  }
  (void)encode_wal_record(record, 0, _pending);  // chained when written
  std::uint64_t next_index = record.type == wal_record_type::entry ? record.index + 1 : 0;
  _pending_records.push_back({static_cast<std::uint32_t>(bytes), next_index});
  ++_appended;
  return status::ok();
}

// Creates the next segment: <name>.tmp, fallocate, header record + fdatasync, rename,
// directory fsync — so a segment under its final name always has a durable header.
task<status> wal_writer::start_segment() {
  std::uint64_t sequence = _segments.empty() ? 0 : _segments.back().sequence + 1;
  std::string name = wal_segment_name(sequence, _next_index);
  std::string temporary = name + std::string(wal_temporary_suffix);
  auto created = _storage.create_file(temporary);
  if (!created) {
    fail(created.error());
    co_return _failure;
  }
  int file = *created;
  task<int> allocating = _storage.allocate(file, _options.segment_bytes);
  int allocated = co_await std::move(allocating);
  if (allocated < 0) {
    _storage.close_file(file);
    fail(io_failure("fallocate " + _storage.describe(temporary), allocated, 0));
    co_return _failure;
  }
  std::vector<std::byte> header;
  // A new log's chain starts from a random value, so that no client can compute a
  // segment header's crc, the seed of the durable marks' own checks.
  std::uint32_t previous_crc = _segments.empty() ? std::random_device{}() : _last_crc;
  wal_segment_header fields{sequence, _next_index, previous_crc, _options.batch_bytes_max};
  std::uint32_t header_crc = encode_wal_segment_header(fields, header);
  task<int> writing = _storage.write_then_datasync(file, header.data(), header.size(), 0);
  int written = co_await std::move(writing);
  if (written != static_cast<int>(header.size())) {
    _storage.close_file(file);
    fail(io_failure("write+fdatasync " + _storage.describe(temporary) + " at offset 0", written, header.size()));
    co_return _failure;
  }
  status renamed = _storage.rename(temporary, name);
  if (renamed) renamed = _storage.sync_directory();
  if (!renamed) {
    _storage.close_file(file);
    fail(std::move(renamed));
    co_return _failure;
  }
  if (_file >= 0) _storage.close_file(_file);
  _file = file;
  _offset = header.size();
  _last_crc = header_crc;
  _segment_file_bytes = _options.segment_bytes;
  _segment_batch_bytes_max = _options.batch_bytes_max;
  _segment_header_crc = header_crc;
  _marked_offset = _offset;
  _segments.push_back({name, sequence, fields.first_index});
  _issued_offset = _offset;
  _issued_crc = _last_crc;
  _issued_next_index = _next_index;
  ++_stats.segments_created;
  co_return status::ok();
}

// The room for the next batch: the segment's batch limit less what is in flight (so
// that everything in flight lies within batch_bytes_max of the durable end, which the
// torn-tail rule of recovery relies on), and what is left of the segment.
bool wal_writer::needs_rollover() const {
  return !_pending_records.empty() &&
         _segment_file_bytes - _issued_offset < wal_durable_mark_record_bytes + _pending_records.front().bytes;
}

wal_writer::batch* wal_writer::issue_batch() {
  if (_pending_records.empty() || _batches.size() >= batches_in_flight_max()) return nullptr;
  std::uint64_t room = std::min<std::uint64_t>(_segment_batch_bytes_max - _in_flight_bytes,
                                               _segment_file_bytes - _issued_offset);
  // A batch issued after the durable end moved begins with a durable mark saying where it
  // is now (wal.md, "Durable marks"): damage before it can then not pass for a torn write.
  bool mark = _offset > _marked_offset;
  std::size_t mark_bytes = mark ? wal_durable_mark_record_bytes : 0;
  std::size_t count = 0, bytes = mark_bytes;
  while (count < _pending_records.size() && bytes + _pending_records[count].bytes <= room) {
    bytes += _pending_records[count++].bytes;
  }
  if (count == 0) return nullptr;

  auto b = std::make_unique<batch>();
  // Chain the crcs in the order the records go to disk.
  b->data.reserve(bytes);
  if (mark) {
    encode_wal_durable_mark(_offset, _issued_offset, _segment_header_crc, b->data);
    _marked_offset = _offset;
  }
  b->data.insert(b->data.end(), _pending.begin(), _pending.begin() + static_cast<std::ptrdiff_t>(bytes - mark_bytes));
  std::uint32_t crc = _issued_crc;
  std::uint64_t next_index = _issued_next_index;
  std::size_t at = 0;
  if (mark) {
    crc = seal_wal_record(b->data.data(), crc);
    at = mark_bytes;
  }
  for (std::size_t i = 0; i < count; ++i) {
    crc = seal_wal_record(b->data.data() + at, crc);
    at += _pending_records[i].bytes;
    if (_pending_records[i].next_index != 0) next_index = _pending_records[i].next_index;
  }
  KEEL_ASSERT(at == bytes);
  _pending.erase(_pending.begin(), _pending.begin() + static_cast<std::ptrdiff_t>(bytes - mark_bytes));
  _pending_records.erase(_pending_records.begin(), _pending_records.begin() + static_cast<std::ptrdiff_t>(count));
  b->count = count;
  b->offset = _issued_offset;
  b->crc = crc;
  b->next_index = next_index;
  _issued_offset += bytes;
  _issued_crc = crc;
  _issued_next_index = next_index;
  _issued += count;
  _in_flight_bytes += bytes;
  _batches.push_back(std::move(b));
  return _batches.back().get();
}

// One batch as one write linked to one fdatasync; then whatever is done, in order.
task<void> wal_writer::write_one(batch* b) {
  auto issued = std::chrono::steady_clock::now();
  task<int> writing = _storage.write_then_datasync(_file, b->data.data(), b->data.size(), b->offset);
  b->result = co_await std::move(writing);
  b->nanoseconds = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - issued).count());
  b->done = true;
  complete_in_order();
  wake_waiters();
}

// Makes the completed batches at the front durable: a batch counts only once every batch
// before it has (its own fdatasync may have run before an earlier write finished).
void wal_writer::complete_in_order() {
  while (!_batches.empty() && _batches.front()->done) {
    std::unique_ptr<batch> b = std::move(_batches.front());
    _batches.pop_front();
    _in_flight_bytes -= b->data.size();
    if (!_failure) continue;  // after a failure nothing more becomes durable
    if (b->result != static_cast<int>(b->data.size())) {
      fail(io_failure("write+fdatasync " + _storage.describe(_segments.back().name) + " at offset " +
                          std::to_string(b->offset),
                      b->result, b->data.size()));
      continue;
    }
    // Durable: the fdatasync covering these records has completed, and all before them.
    _offset = b->offset + b->data.size();
    _last_crc = b->crc;
    _next_index = b->next_index;
    _durable += b->count;
    ++_stats.batches;
    ++_stats.sync_counts[wal_sync_bucket(b->nanoseconds)];
    _stats.sync_nanoseconds += b->nanoseconds;
    _stats.records += b->count;
    _stats.bytes += b->data.size();
  }
}

std::size_t wal_sync_bucket(std::uint64_t nanoseconds) noexcept {
  std::uint64_t bound = 1'000'000;  // 1 ms, doubling
  for (std::size_t i = 0; i + 1 < wal_writer_stats::sync_buckets; ++i, bound *= 2)
    if (nanoseconds <= bound) return i;
  return wal_writer_stats::sync_buckets - 1;
}

void wal_writer::wake_waiters() {
  // Every waiter re-checks: done, failed, or able to issue the next batch.
  std::vector<std::coroutine_handle<>> waiting;
  waiting.swap(_waiters);
  for (std::coroutine_handle<> handle : waiting) handle.resume();
}

task<status> wal_writer::commit() {
  std::uint64_t target = _appended;
  for (;;) {
    if (!_failure) co_return _failure;
    if (_durable >= target) co_return status::ok();
    // Someone else's batch carries our records, or every slot is taken: wait.
    if (_issued >= target || _flushers >= batches_in_flight_max() || _rolling) {
      co_await waiter{this};
      continue;
    }
    break;
  }
  // This caller issues. Let the rest of the turn run first so that every record
  // appended in this turn joins the batch.
  ++_flushers;
  task<void> turn = _storage.end_of_turn();
  co_await std::move(turn);
  std::uint64_t goal = std::max(target, _appended);
  while (_failure.is_ok() && _issued < goal) {
    if (batch* b = issue_batch()) {
      task<void> writing = write_one(b);
      co_await std::move(writing);
      continue;
    }
    if (needs_rollover() && _batches.empty() && !_rolling) {
      _rolling = true;
      task<status> rolling = start_segment();
      (void)co_await std::move(rolling);  // a failure is kept in _failure
      _rolling = false;
      wake_waiters();
      continue;
    }
    co_await waiter{this};  // room comes back when a batch in flight completes
  }
  --_flushers;
  wake_waiters();
  while (_failure.is_ok() && _durable < target) co_await waiter{this};
  if (!_failure) co_return _failure;
  co_return status::ok();
}

status wal_writer::release_before(std::uint64_t index) {
  if (!_failure) return _failure;
  bool removed = false;
  while (_segments.size() > 1 && _segments[1].first_index <= index) {
    status gone = _storage.remove(_segments.front().name);
    if (!gone) return gone;
    _segments.erase(_segments.begin());
    removed = true;
  }
  return removed ? _storage.sync_directory() : status::ok();
}

std::vector<std::string> wal_writer::segment_names() const {
  std::vector<std::string> names;
  for (const segment& s : _segments) names.push_back(s.name);
  return names;
}

}  // namespace keel::kv
