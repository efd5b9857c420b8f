// The write-ahead log: format round trips, group commit, rollover, recovery, the crash
// points of the fault-injecting storage, corruption reports, failed syncs, and a real
// file test on the reactor. docs/formats/wal.md is the specification.
#define BOOST_TEST_MODULE wal
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "../reactor/run_system.h"
#include "keel/kv/wal.h"
#include "keel/kv/wal_memory_storage.h"
#include "keel/reactor/io.h"

using namespace keel;
using namespace keel::kv;

namespace {

// Runs a task that never really suspends (the memory storage completes at once).
template <typename T>
T run_now(task<T> work) {
  std::optional<T> out;
  spawn([](task<T> owned, std::optional<T>* into) -> task<void> {
    *into = co_await std::move(owned);
  }(std::move(work), &out));
  BOOST_REQUIRE_MESSAGE(out.has_value(), "task suspended");
  return std::move(*out);
}

wal_writer_options small_options() {
  wal_writer_options options;
  options.segment_bytes = 64 * 1024;
  options.batch_bytes_max = 8 * 1024;
  options.first_index = 1;
  return options;
}

wal_recovery recover_ok(wal_directory& directory, wal_recovery_mode mode = wal_recovery_mode::repair) {
  auto recovered = recover_wal(directory, mode);
  BOOST_REQUIRE_MESSAGE(recovered.is_ok(), recovered.error().to_string());
  return std::move(recovered.value());
}

std::unique_ptr<wal_writer> open_writer(wal_storage& storage, wal_writer_options options = small_options()) {
  wal_recovery recovered = recover_ok(storage);
  auto writer = run_now(wal_writer::open(storage, recovered, options));
  BOOST_REQUIRE_MESSAGE(writer.is_ok(), writer.error().to_string());
  return std::move(writer.value());
}

// A workload generator: entries with rising indexes, now and then a hard state.
struct workload {
  std::mt19937_64 random;
  std::uint64_t next_index = 1;
  explicit workload(std::uint64_t seed) : random(seed) {}
  wal_record next() {
    if (random() % 8 == 0) return wal_record::hard_state(next_index / 10 + 1, 1, next_index - 1);
    std::string data(random() % 700, '\0');
    for (char& c : data) c = static_cast<char>('a' + random() % 26);
    std::uint64_t index = next_index++;
    return wal_record::entry(index / 10 + 1, index, std::move(data));
  }
};

std::string first_segment(memory_wal_storage& storage) {
  auto names = storage.list();
  BOOST_REQUIRE(names.is_ok());
  for (const auto& name : *names) {
    if (parse_wal_segment_name(name)) return name;
  }
  BOOST_FAIL("no segment");
  return "";
}

}  // namespace

namespace keel {
std::ostream& operator<<(std::ostream& out, errc code) { return out << errc_name(code); }
namespace kv {
std::ostream& operator<<(std::ostream& out, const wal_record& record) {
  return out << wal_record_type_name(record.type) << "{term " << record.term << ", index " << record.index
             << ", vote " << record.vote << ", commit " << record.commit << ", " << record.data.size()
             << " bytes}";
}
}  // namespace kv
}  // namespace keel

BOOST_AUTO_TEST_CASE(record_round_trip) {
  std::vector<wal_record> records = {
      wal_record::entry(3, 7, "hello"), wal_record::entry(3, 8, ""), wal_record::hard_state(3, 2, 7),
      wal_record::snapshot(6, 2), wal_record::entry(4, 9, std::string(1000, 'x'))};
  std::vector<std::byte> segment;
  std::uint32_t crc = encode_wal_segment_header({5, 7, 0x1234, 8192}, segment);
  for (const auto& record : records) {
    std::size_t before = segment.size();
    crc = encode_wal_record(record, crc, segment);
    BOOST_TEST(segment.size() - before == wal_record_bytes(record));
    BOOST_TEST(segment.size() % 8 == 0);
  }
  std::size_t end = segment.size();
  segment.resize(64 * 1024);
  wal_segment_scan scan = scan_wal_segment(segment, {"s.wal", true, 5, 7, 0x1234});
  BOOST_REQUIRE_MESSAGE(scan.outcome.is_ok(), scan.outcome.to_string());
  BOOST_TEST((scan.records == records));
  BOOST_TEST(scan.end_offset == end);
  BOOST_TEST(scan.last_crc == crc);
  BOOST_TEST(scan.torn_bytes == 0u);
  BOOST_TEST((scan.header == wal_segment_header{5, 7, 0x1234, 8192}));

  BOOST_TEST(wal_segment_name(1, 0xa3f21) == "0000000000000001-00000000000a3f21.wal");
  auto ids = parse_wal_segment_name("0000000000000001-00000000000a3f21.wal");
  BOOST_REQUIRE(ids.has_value());
  BOOST_TEST(ids->first == 1u);
  BOOST_TEST(ids->second == 0xa3f21u);
  BOOST_TEST(!parse_wal_segment_name("0000000000000001-00000000000a3f21.wal.tmp").has_value());
  // The previous segment's crc must match.
  scan = scan_wal_segment(segment, {"s.wal", true, 5, 7, 0x9999});
  BOOST_TEST(scan.outcome.code() == errc::corruption);
}

BOOST_AUTO_TEST_CASE(many_batches_across_segment_rollover) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  workload load(1);
  std::vector<wal_record> written;
  std::mt19937 random(2);
  for (int batch = 0; batch < 300; ++batch) {
    int count = 1 + static_cast<int>(random() % 30);
    for (int i = 0; i < count; ++i) {
      written.push_back(load.next());
      BOOST_REQUIRE(writer->append(written.back()).is_ok());
    }
    status committed = run_now(writer->commit());
    BOOST_REQUIRE_MESSAGE(committed.is_ok(), committed.to_string());
  }
  BOOST_TEST(writer->durable_records() == written.size());
  BOOST_TEST(writer->stats().segments_created > 10u);
  BOOST_TEST(writer->stats().batches >= 300u);
  // Every durable batch lands in exactly one bucket of the sync-duration histogram.
  std::uint64_t timed = 0;
  for (std::uint64_t n : writer->stats().sync_counts) timed += n;
  BOOST_TEST(timed == writer->stats().batches);
  writer.reset();

  wal_recovery recovered = recover_ok(storage);
  BOOST_TEST(recovered.records.size() == written.size());
  BOOST_TEST((recovered.records == written));
  BOOST_TEST(!recovered.torn_tail.has_value());
  BOOST_TEST(recovered.segments.size() == storage.list()->size());
  BOOST_TEST(*recovered.first_index == 1u);
  BOOST_TEST(*recovered.last_index == load.next_index - 1);
}

// etcd_disk_wal_fsync_duration_seconds' buckets: at most 1 ms, 2 ms, ... 8.192 s, more.
BOOST_AUTO_TEST_CASE(sync_duration_buckets_are_etcds) {
  constexpr std::uint64_t ms = 1'000'000;
  BOOST_TEST(wal_sync_bucket(0) == 0u);
  BOOST_TEST(wal_sync_bucket(ms) == 0u);
  BOOST_TEST(wal_sync_bucket(ms + 1) == 1u);
  BOOST_TEST(wal_sync_bucket(2 * ms) == 1u);
  BOOST_TEST(wal_sync_bucket(3 * ms) == 2u);
  BOOST_TEST(wal_sync_bucket(8192 * ms) == 13u);
  BOOST_TEST(wal_sync_bucket(8192 * ms + 1) == 14u);
  BOOST_TEST(wal_sync_bucket(~std::uint64_t{0}) == 14u);
  BOOST_TEST(wal_writer_stats::sync_buckets == 15u);
}

BOOST_AUTO_TEST_CASE(recovery_after_clean_close_then_more_appends) {
  memory_wal_storage storage;
  workload load(3);
  std::vector<wal_record> written;
  for (int round = 0; round < 4; ++round) {
    auto writer = open_writer(storage);
    for (int i = 0; i < 200; ++i) {
      written.push_back(load.next());
      BOOST_REQUIRE(writer->append(written.back()).is_ok());
      if (i % 17 == 0) BOOST_REQUIRE(run_now(writer->commit()).is_ok());
    }
    BOOST_REQUIRE(run_now(writer->commit()).is_ok());
    writer.reset();
    storage.crash();  // a clean close then a power cut: everything was synced
    wal_recovery recovered = recover_ok(storage);
    BOOST_TEST((recovered.records == written));
  }
}

// The heart of it: kill the machine at hundreds of points, tear the write in flight in
// every way, and require that recovery returns a prefix of what was appended that holds
// every acknowledged record.
BOOST_AUTO_TEST_CASE(crash_points_lose_no_acknowledged_record) {
  std::mt19937_64 random(42);
  int torn_tails = 0;
  for (int iteration = 0; iteration < 600; ++iteration) {
    memory_wal_storage storage;
    auto writer = open_writer(storage);
    memory_wal_storage::tear how;
    how.kind = static_cast<memory_wal_storage::tear_kind>(random() % 4);
    how.prefix_bytes = random() % 9000;
    how.seed = random();
    storage.crash_during_write(random() % 80, how);

    workload load(random());
    std::vector<wal_record> appended;
    std::size_t acknowledged = 0;
    for (int round = 0; round < 100 && !storage.down(); ++round) {
      int count = 1 + static_cast<int>(random() % 25);
      for (int i = 0; i < count; ++i) {
        appended.push_back(load.next());
        if (!writer->append(appended.back()).is_ok()) break;
      }
      if (run_now(writer->commit()).is_ok()) acknowledged = writer->durable_records();
    }
    writer.reset();
    storage.crash();

    wal_recovery recovered = recover_ok(storage);
    torn_tails += recovered.torn_tail.has_value();
    BOOST_REQUIRE_GE(recovered.records.size(), acknowledged);
    BOOST_REQUIRE_LE(recovered.records.size(), appended.size());
    for (std::size_t i = 0; i < recovered.records.size(); ++i) {
      BOOST_REQUIRE_MESSAGE(recovered.records[i] == appended[i],
                            "iteration " << iteration << ": record " << i << " differs");
    }

    // Appending after recovery continues the same log, and recovery is idempotent.
    std::vector<wal_record> expected = recovered.records;
    auto reopened = open_writer(storage);
    load.next_index = recovered.last_index.value_or(0) + 1;
    for (int i = 0; i < 20; ++i) {
      expected.push_back(load.next());
      BOOST_REQUIRE(reopened->append(expected.back()).is_ok());
    }
    BOOST_REQUIRE(run_now(reopened->commit()).is_ok());
    reopened.reset();
    storage.crash();
    wal_recovery again = recover_ok(storage);
    BOOST_REQUIRE(!again.torn_tail.has_value());
    BOOST_REQUIRE_MESSAGE(again.records == expected, "iteration " << iteration << ": reopened log differs");
  }
  BOOST_TEST_MESSAGE("torn tails truncated: " << torn_tails << " of 600 crashes");
  BOOST_TEST(torn_tails > 50);
}

BOOST_AUTO_TEST_CASE(torn_tail_is_truncated_and_reported) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  for (int i = 1; i <= 10; ++i) BOOST_REQUIRE(writer->append(wal_record::entry(1, i, "durable")).is_ok());
  BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  storage.crash_during_write(0, {memory_wal_storage::tear_kind::prefix, 100, 0});
  for (int i = 11; i <= 20; ++i) BOOST_REQUIRE(writer->append(wal_record::entry(1, i, "lost")).is_ok());
  status failed = run_now(writer->commit());
  BOOST_TEST(failed.code() == errc::io_error);
  writer.reset();
  storage.crash();

  wal_recovery checked = recover_ok(storage, wal_recovery_mode::check);
  BOOST_REQUIRE(checked.torn_tail.has_value());
  BOOST_TEST(checked.torn_tail->bytes > 0u);
  BOOST_TEST(checked.torn_tail->bytes <= 100u);
  BOOST_TEST(checked.torn_tail_text(true).find("would truncate torn tail of") == 0u);
  // The lost batch starts at 48 + 10 * 40 = 448 with a 32-byte durable mark (the durable
  // end moved since the first batch); its first 100 bytes reach 548, cut to the sector
  // boundary at 512. That holds the mark and the first 32 bytes of the 40-byte record 11,
  // whose second sector was not written.
  BOOST_TEST(checked.records.size() == 10u);
  BOOST_TEST(checked.records.back() == wal_record::entry(1, 10, "durable"));
  BOOST_TEST(checked.torn_tail->offset == 480u);
  BOOST_TEST(checked.torn_tail->bytes <= 32u);
  // Check mode changed nothing; repair zeroes it; afterwards the log is clean.
  wal_recovery repaired = recover_ok(storage);
  BOOST_REQUIRE(repaired.torn_tail.has_value());
  BOOST_TEST(repaired.torn_tail_text(false) ==
             "truncated torn tail of " + std::to_string(checked.torn_tail->bytes) + " bytes at " +
                 first_segment(storage) + ":" + std::to_string(checked.torn_tail->offset));
  BOOST_TEST(!recover_ok(storage).torn_tail.has_value());
}

BOOST_AUTO_TEST_CASE(corruption_in_a_non_last_segment_names_file_and_offset) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  workload load(5);
  for (int i = 0; i < 600; ++i) {
    BOOST_REQUIRE(writer->append(load.next()).is_ok());
    if (i % 10 == 9) BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  }
  BOOST_REQUIRE(writer->segment_names().size() > 2);
  std::string victim = writer->segment_names()[1];
  writer.reset();
  // The first record after the header starts at 48; flip a bit in its payload.
  storage.flip_bit(victim, 48 + 20, 3);
  auto recovered = recover_wal(storage, wal_recovery_mode::check);
  BOOST_REQUIRE(!recovered.is_ok());
  BOOST_TEST(recovered.error().code() == errc::corruption);
  BOOST_TEST_MESSAGE(recovered.error().to_string());
  BOOST_TEST(recovered.error().message().find(victim + ":48: crc mismatch") == 0u);
  BOOST_TEST(recover_wal(storage, wal_recovery_mode::repair).error().code() == errc::corruption);
}

BOOST_AUTO_TEST_CASE(corruption_before_the_tail_of_the_last_segment_is_not_truncated) {
  memory_wal_storage storage;
  wal_writer_options options = small_options();
  options.segment_bytes = 1024 * 1024;
  auto writer = open_writer(storage, options);
  for (int i = 1; i <= 400; ++i) {
    BOOST_REQUIRE(writer->append(wal_record::entry(1, i, std::string(100, 'v'))).is_ok());
    if (i % 20 == 0) BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  }
  std::string name = writer->segment_names().back();
  writer.reset();
  // The second record, far more than one batch before the end of the log.
  storage.flip_bit(name, 48 + 136 + 30, 0);
  auto recovered = recover_wal(storage, wal_recovery_mode::repair);
  BOOST_REQUIRE(!recovered.is_ok());
  BOOST_TEST_MESSAGE(recovered.error().to_string());
  BOOST_TEST(recovered.error().code() == errc::corruption);
  BOOST_TEST(recovered.error().message().find(name + ":184: crc mismatch in entry record") == 0u);
  BOOST_TEST(recovered.error().message().find("not a torn write") != std::string::npos);
}

// Fifty acknowledged writes of 56-byte records, each its own batch (from the second on
// behind a 32-byte durable mark), in one segment: the whole log lies within one
// batch_bytes_max of its end, where damage used to pass for a torn tail and be truncated
// with every acknowledged record after it.
std::string fifty_acknowledged_records(memory_wal_storage& storage) {
  auto writer = open_writer(storage);
  for (int i = 1; i <= 50; ++i) {
    BOOST_REQUIRE(writer->append(wal_record::entry(1, i, std::string(24, 'a' + i % 26))).is_ok());
    BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  }
  BOOST_REQUIRE(writer->durable_records() == 50u);
  std::string name = writer->segment_names().back();
  writer.reset();
  return name;
}

// Where each record of a segment starts (segment header and durable marks included), and
// its type, by walking the length fields from offset 0.
std::vector<std::pair<std::uint64_t, std::uint16_t>> record_starts(memory_wal_storage& storage,
                                                                   const std::string& name) {
  auto bytes = storage.read_all(name);
  BOOST_REQUIRE(bytes.is_ok());
  std::vector<std::pair<std::uint64_t, std::uint16_t>> starts;
  std::uint64_t at = 0;
  while (at + 16 <= bytes->size()) {
    std::uint32_t length = 0;
    std::uint16_t type = 0;
    std::memcpy(&length, bytes->data() + at, 4);
    std::memcpy(&type, bytes->data() + at + 8, 2);
    if (length == 0) break;
    starts.emplace_back(at, type);
    at += 16 + (length + 7) / 8 * 8;
  }
  return starts;
}

// The offset of the n-th entry record (1-based).
std::uint64_t entry_at(const std::vector<std::pair<std::uint64_t, std::uint16_t>>& starts, int n) {
  for (const auto& [offset, type] : starts)
    if (type == static_cast<std::uint16_t>(wal_record_type::entry) && --n == 0) return offset;
  BOOST_FAIL("no such entry");
  return 0;
}

void require_corruption(memory_wal_storage& storage, const std::string& starts, const std::string& contains) {
  for (auto mode : {wal_recovery_mode::check, wal_recovery_mode::repair}) {
    auto recovered = recover_wal(storage, mode);
    std::size_t records = recovered.is_ok() ? recovered.value().records.size() : 0;
    BOOST_REQUIRE_MESSAGE(!recovered.is_ok(), "recovered " << records << " records, reported no corruption");
    BOOST_TEST_MESSAGE(recovered.error().to_string());
    BOOST_TEST(recovered.error().code() == errc::corruption);
    BOOST_TEST(recovered.error().message().find(starts) == 0u, recovered.error().message());
    BOOST_TEST(recovered.error().message().find(contains) != std::string::npos, recovered.error().message());
  }
}

BOOST_AUTO_TEST_CASE(damage_near_the_end_of_the_log_is_corruption_not_a_torn_tail) {
  {  // Four bytes overwritten inside the record that holds offset 2000.
    memory_wal_storage storage;
    std::string name = fifty_acknowledged_records(storage);
    auto starts = record_starts(storage, name);
    BOOST_REQUIRE_EQUAL(starts.size(), 1u + 50 + 49);  // header, entries, marks
    std::uint64_t holder = 0;
    for (const auto& [offset, type] : starts)
      if (offset <= 2000) holder = offset;
    storage.overwrite(name, 2000, {std::byte{0xde}, std::byte{0xad}, std::byte{0xbe}, std::byte{0xef}});
    require_corruption(storage, name + ":" + std::to_string(holder) + ": crc mismatch",
                       "every sector of it was written: a damaged record, not a torn write");
  }
  {  // One bit of the last acknowledged record.
    memory_wal_storage storage;
    std::string name = fifty_acknowledged_records(storage);
    std::uint64_t last = entry_at(record_starts(storage, name), 50);
    storage.flip_bit(name, last + 40, 2);
    require_corruption(storage, name + ":" + std::to_string(last) + ": crc mismatch in entry record",
                       "not a torn write");
  }
  {  // A record header overwritten with zeros: the rest of its sector was written.
    memory_wal_storage storage;
    std::string name = fifty_acknowledged_records(storage);
    auto starts = record_starts(storage, name);
    std::uint64_t victim = 0;
    for (int n = 30; victim == 0 || victim % 512 > 400; ++n) victim = entry_at(starts, n);
    storage.overwrite(name, victim, std::vector<std::byte>(16));
    require_corruption(storage,
                       name + ":" + std::to_string(victim) +
                           ": an empty record header, with nonzero bytes after it in its sector",
                       "not a torn write");
  }
  {  // A record's type damaged: a torn write leaves a header whole or not at all.
    memory_wal_storage storage;
    std::string name = fifty_acknowledged_records(storage);
    std::uint64_t victim = entry_at(record_starts(storage, name), 40);
    storage.overwrite(name, victim + 8, {std::byte{9}});
    require_corruption(storage, name + ":" + std::to_string(victim) + ": crc mismatch in unknown record",
                       "leaves a header whole");
  }
  {  // A whole sector zeroed (a lost write): a torn write's shape, but the durable marks
     // of the batches after it say it was durable.
    memory_wal_storage storage;
    std::string name = fifty_acknowledged_records(storage);
    auto starts = record_starts(storage, name);
    storage.overwrite(name, 1024, std::vector<std::byte>(512));
    std::uint64_t first_failing = 0;
    for (const auto& [offset, type] : starts)
      if (offset < 1024 + 512) first_failing = offset;
    for (const auto& [offset, type] : starts)
      if (offset + 16 > 1024 && first_failing > offset) first_failing = offset;
    require_corruption(storage, name + ":" + std::to_string(first_failing) + ": ",
                       "says the segment was durable up to offset");
  }
}

// Marks claim only what was durable: a crash that tears a batch beginning with a mark
// (any subset of its sectors persisted) is still a torn tail, and appends after the
// truncation write marks that claim the truncated end, not the lost one. (Two batches in
// flight: power_cuts_with_two_batches_in_flight_are_never_refused.)
BOOST_AUTO_TEST_CASE(durable_marks_never_claim_what_a_crash_can_lose) {
  for (int tear = 0; tear < 40; ++tear) {
    memory_wal_storage storage;
    auto writer = open_writer(storage);
    std::vector<wal_record> appended;
    for (int i = 1; i <= 5; ++i) {
      appended.push_back(wal_record::entry(1, i, std::string(100, 'd')));
      BOOST_REQUIRE(writer->append(appended.back()).is_ok());
      BOOST_REQUIRE(run_now(writer->commit()).is_ok());
    }
    storage.crash_during_write(0, {memory_wal_storage::tear_kind::sectors, 0, static_cast<std::uint64_t>(tear) + 1});
    for (int i = 6; i <= 30; ++i) {
      appended.push_back(wal_record::entry(1, i, std::string(100, 'l')));
      (void)writer->append(appended.back());
    }
    BOOST_TEST(!run_now(writer->commit()).is_ok());
    writer.reset();
    storage.crash();
    wal_recovery recovered = recover_ok(storage);
    BOOST_REQUIRE_GE(recovered.records.size(), 5u);
    for (std::size_t i = 0; i < recovered.records.size(); ++i) BOOST_REQUIRE(recovered.records[i] == appended[i]);
    auto reopened = open_writer(storage);
    BOOST_REQUIRE(reopened->append(wal_record::entry(1, recovered.records.size() + 1, "after")).is_ok());
    BOOST_REQUIRE(run_now(reopened->commit()).is_ok());
    BOOST_REQUIRE(reopened->append(wal_record::entry(1, recovered.records.size() + 2, "after")).is_ok());
    BOOST_REQUIRE(run_now(reopened->commit()).is_ok());
    reopened.reset();
    BOOST_TEST(recover_ok(storage).records.size() == recovered.records.size() + 2);
  }
}

// A segment of two entry records, the second starting at `second` and `second_bytes` of
// data long, the rest zeros up to 64 KiB.
std::vector<std::byte> two_record_segment(std::size_t second, std::size_t second_bytes) {
  std::vector<std::byte> segment;
  std::uint32_t crc = encode_wal_segment_header({0, 1, 0, 8192}, segment);
  crc = encode_wal_record(wal_record::entry(1, 1, std::string(second - 48 - 32, 'x')), crc, segment);
  BOOST_REQUIRE(segment.size() == second);
  encode_wal_record(wal_record::entry(1, 2, std::string(second_bytes, 'y')), crc, segment);
  segment.resize(64 * 1024);
  return segment;
}

BOOST_AUTO_TEST_CASE(torn_writes_across_a_record_header_are_torn_tails) {
  // A header in a sector's last 8 bytes: its length and crc in one sector, its type and
  // the payload in the next. Either sector may be the one a torn write lost.
  std::vector<std::byte> second_sector_lost = two_record_segment(504, 600);
  std::fill(second_sector_lost.begin() + 512, second_sector_lost.begin() + 1024, std::byte{0});
  wal_segment_scan scan = scan_wal_segment(second_sector_lost, {"s.wal", true, 0, 1, std::nullopt});
  BOOST_REQUIRE_MESSAGE(scan.outcome.is_ok(), scan.outcome.to_string());
  BOOST_TEST(scan.records.size() == 1u);
  BOOST_TEST(scan.end_offset == 504u);
  BOOST_TEST(scan.torn_bytes == 632u);  // to the record's last byte, at 504 + 632

  std::vector<std::byte> first_sector_lost = two_record_segment(504, 600);
  std::fill(first_sector_lost.begin() + 504, first_sector_lost.begin() + 512, std::byte{0});
  scan = scan_wal_segment(first_sector_lost, {"s.wal", true, 0, 1, std::nullopt});
  BOOST_REQUIRE_MESSAGE(scan.outcome.is_ok(), scan.outcome.to_string());
  BOOST_TEST(scan.records.size() == 1u);
  BOOST_TEST(scan.end_offset == 504u);

  // The same record whole but damaged in its payload: corruption.
  std::vector<std::byte> damaged = two_record_segment(504, 600);
  damaged[700] = std::byte{'z'};
  scan = scan_wal_segment(damaged, {"s.wal", true, 0, 1, std::nullopt});
  BOOST_TEST(scan.outcome.code() == errc::corruption);
  BOOST_TEST(scan.outcome.message().find("s.wal:504: crc mismatch") == 0u, scan.outcome.message());
  // Its last sector lost: a torn tail (a damaged record whose later sector reads as zeros
  // cannot be told from one; docs/formats/wal.md says so).
  std::vector<std::byte> tail_lost = two_record_segment(504, 600);
  std::fill(tail_lost.begin() + 1024, tail_lost.begin() + 1536, std::byte{0});
  scan = scan_wal_segment(tail_lost, {"s.wal", true, 0, 1, std::nullopt});
  BOOST_TEST(scan.outcome.is_ok());
  BOOST_TEST(scan.end_offset == 504u);
}

BOOST_AUTO_TEST_CASE(failed_fdatasync_leaves_the_writer_failed) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  BOOST_REQUIRE(writer->append(wal_record::entry(1, 1, "a")).is_ok());
  BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  storage.fail_next_sync(EIO);
  BOOST_REQUIRE(writer->append(wal_record::entry(1, 2, "b")).is_ok());
  status failed = run_now(writer->commit());
  BOOST_TEST(failed.code() == errc::io_error);
  BOOST_TEST_MESSAGE(failed.to_string());
  BOOST_TEST(failed.message().find("write+fdatasync 0000000000000000-0000000000000001.wal at offset") == 0u);
  BOOST_TEST(failed.message().find("Input/output error") != std::string::npos);
  BOOST_TEST(writer->durable_records() == 1u);
  // Stays failed although the storage works again: nothing more is acknowledged.
  BOOST_TEST(writer->append(wal_record::entry(1, 3, "c")).code() == errc::io_error);
  BOOST_TEST(run_now(writer->commit()).message() == failed.message());
  BOOST_TEST(writer->release_before(100).code() == errc::io_error);
}

BOOST_AUTO_TEST_CASE(no_space_on_write_or_rollover_reports_errno_text) {
  {
    memory_wal_storage storage;
    auto writer = open_writer(storage);
    storage.fail_next_write(ENOSPC);
    BOOST_REQUIRE(writer->append(wal_record::entry(1, 1, "a")).is_ok());
    status failed = run_now(writer->commit());
    BOOST_TEST(failed.code() == errc::io_error);
    BOOST_TEST(failed.message().find("No space left on device") != std::string::npos);
    BOOST_TEST(writer->durable_records() == 0u);
  }
  {
    memory_wal_storage storage;
    auto writer = open_writer(storage);
    storage.fail_next_allocate(ENOSPC);
    status last;
    for (int i = 1; i <= 200 && last.is_ok(); ++i) {
      BOOST_REQUIRE(writer->append(wal_record::entry(1, i, std::string(1000, 'z'))).is_ok());
      last = run_now(writer->commit());
    }
    BOOST_TEST(last.code() == errc::io_error);
    BOOST_TEST_MESSAGE(last.to_string());
    BOOST_TEST(last.message().find("fallocate 0000000000000001-") == 0u);
    BOOST_TEST(last.message().find("No space left on device") != std::string::npos);
    // The half-made segment is a .tmp that recovery removes; the log is intact.
    std::uint64_t durable = writer->durable_records();
    writer.reset();
    wal_recovery recovered = recover_ok(storage);
    BOOST_TEST(recovered.records.size() == durable);
    BOOST_TEST(recovered.temporary_files.size() == 1u);
  }
}

BOOST_AUTO_TEST_CASE(chained_crc_rejects_a_stale_valid_looking_record) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  for (int i = 1; i <= 5; ++i) BOOST_REQUIRE(writer->append(wal_record::entry(1, i, "abc")).is_ok());
  BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  std::string name = writer->segment_names().back();
  writer.reset();
  wal_recovery before = recover_ok(storage);
  std::uint64_t end = before.segments.back().end_offset;
  auto read = storage.read_all(name);
  BOOST_REQUIRE(read.is_ok());
  std::vector<std::byte> bytes = read.value();
  // A stale copy of the last record right behind it: a well-formed record, whose crc
  // was right after its own predecessor but is not after itself.
  std::size_t size = wal_record_bytes(wal_record::entry(1, 5, "abc"));
  std::vector<std::byte> stale(bytes.begin() + static_cast<std::ptrdiff_t>(end - size),
                               bytes.begin() + static_cast<std::ptrdiff_t>(end));
  storage.overwrite(name, end, stale);
  // And a record sealed with no chain at all (seed 0).
  std::vector<std::byte> unchained;
  (void)encode_wal_record(wal_record::entry(1, 6, "abc"), 0, unchained);
  storage.overwrite(name, end + size, unchained);

  // It does not verify, and it is no torn write (its one sector was written whole), so
  // recovery refuses, naming it, rather than reading it or truncating it.
  auto after = recover_wal(storage, wal_recovery_mode::repair);
  BOOST_REQUIRE(!after.is_ok());
  BOOST_TEST(after.error().message().find(name + ":" + std::to_string(end) + ": crc mismatch in entry record") == 0u,
             after.error().message());
}

// Two batches in flight: the second may finish first, but nothing of it counts until the
// first has. Its fdatasync made the first batch's bytes durable too (they were in the page
// cache before its write), so a crash then keeps both, although neither was acknowledged.
BOOST_AUTO_TEST_CASE(two_batches_in_flight_become_durable_in_order) {
  for (bool crash_before_first : {false, true}) {
    memory_wal_storage storage;
    auto writer = open_writer(storage);
    storage.hold_writes(true);
    std::vector<wal_record> appended;
    for (int i = 1; i <= 3; ++i) {
      appended.push_back(wal_record::entry(1, i, "first batch"));
      BOOST_REQUIRE(writer->append(appended.back()).is_ok());
    }
    std::vector<std::optional<status>> done(2);
    auto committer = [](wal_writer* w, std::optional<status>* out) -> task<void> {
      task<status> committing = w->commit();
      *out = co_await std::move(committing);
    };
    spawn(committer(writer.get(), &done[0]));
    for (int i = 4; i <= 8; ++i) {
      appended.push_back(wal_record::entry(1, i, "second batch"));
      BOOST_REQUIRE(writer->append(appended.back()).is_ok());
    }
    spawn(committer(writer.get(), &done[1]));
    BOOST_REQUIRE_EQUAL(storage.held_writes(), 2u);  // both batches in flight at once
    storage.release_newest_held_write();             // the second finishes first
    BOOST_TEST((!done[0] && !done[1]));
    BOOST_TEST(writer->durable_records() == 0u);
    if (crash_before_first) {
      storage.crash();  // the second fdatasync completed; the first was still in flight
      wal_recovery recovered = recover_ok(storage);
      BOOST_TEST((recovered.records == appended));  // on disk, a prefix of what was appended
      BOOST_TEST(!recovered.torn_tail.has_value());
      // Let the old writer finish (its held write fails: it was lost in the crash).
      storage.release_held_write();
      BOOST_REQUIRE(done[0].has_value() && done[1].has_value());
      BOOST_TEST((!done[0]->is_ok() && !done[1]->is_ok()));
      continue;
    }
    storage.release_held_write();
    BOOST_REQUIRE(done[0].has_value() && done[1].has_value());
    BOOST_TEST((done[0]->is_ok() && done[1]->is_ok()));
    BOOST_TEST(writer->durable_records() == 8u);
    BOOST_TEST(writer->stats().batches == 2u);
    storage.hold_writes(false);
    writer.reset();
    storage.crash();
    wal_recovery recovered = recover_ok(storage);
    BOOST_TEST((recovered.records == appended));
  }
}

// Power cuts with two batches in flight (their bytes in the page cache, their fdatasyncs
// held, completing in any order), every sector written back or not: recovery must never
// refuse (no damage happened), and must keep every acknowledged record. This is the shape
// rule and the durable marks under the writer's real concurrency.
BOOST_AUTO_TEST_CASE(power_cuts_with_two_batches_in_flight_are_never_refused) {
  std::mt19937_64 random(7);
  int torn = 0;
  for (int iteration = 0; iteration < 400; ++iteration) {
    memory_wal_storage storage;
    auto writer = open_writer(storage);
    storage.hold_writes(true);
    workload load(random());
    std::vector<wal_record> appended;
    std::vector<std::optional<status>> done(200);
    std::size_t commits = 0;
    auto committer = [](wal_writer* w, std::optional<status>* out) -> task<void> {
      task<status> committing = w->commit();
      *out = co_await std::move(committing);
    };
    int steps = 5 + static_cast<int>(random() % 40);
    for (int step = 0; step < steps && commits < done.size(); ++step) {
      switch (random() % 4) {
        case 0:
        case 1: {  // a turn's appends and a commit
          int count = 1 + static_cast<int>(random() % 12);
          for (int i = 0; i < count; ++i) {
            appended.push_back(load.next());
            BOOST_REQUIRE(writer->append(appended.back()).is_ok());
          }
          spawn(committer(writer.get(), &done[commits++]));
          break;
        }
        case 2:
          if (storage.has_held_write()) storage.release_held_write();
          break;
        case 3:
          if (storage.has_held_write()) storage.release_newest_held_write();
          break;
      }
    }
    std::size_t acknowledged = writer->durable_records();
    storage.crash_writing_back(random());
    while (storage.has_held_write()) storage.release_held_write();  // they fail: the machine is gone
    writer.reset();
    auto recovered = recover_wal(storage, wal_recovery_mode::repair);
    BOOST_REQUIRE_MESSAGE(recovered.is_ok(), "iteration " << iteration << ": " << recovered.error().to_string());
    torn += recovered->torn_tail.has_value();
    BOOST_REQUIRE_GE(recovered->records.size(), acknowledged);
    BOOST_REQUIRE_LE(recovered->records.size(), appended.size());
    for (std::size_t i = 0; i < recovered->records.size(); ++i)
      BOOST_REQUIRE_MESSAGE(recovered->records[i] == appended[i], "iteration " << iteration << ": record " << i);
  }
  BOOST_TEST_MESSAGE("torn tails: " << torn << " of 400 power cuts");
  BOOST_TEST(torn > 40);
}

BOOST_AUTO_TEST_CASE(group_commit_a_batch_in_flight_the_next_collects_the_rest) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  storage.hold_writes(true);
  std::uint64_t writes_before = storage.writes();
  for (int i = 1; i <= 3; ++i) BOOST_REQUIRE(writer->append(wal_record::entry(1, i, "x")).is_ok());
  std::vector<std::optional<status>> done(3);
  auto committer = [](wal_writer* w, std::optional<status>* out) -> task<void> {
    task<status> committing = w->commit();
    *out = co_await std::move(committing);
  };
  spawn(committer(writer.get(), &done[0]));
  BOOST_REQUIRE(storage.has_held_write());
  // While the first batch is in flight: more records, two more committers.
  for (int i = 4; i <= 8; ++i) BOOST_REQUIRE(writer->append(wal_record::entry(1, i, "y")).is_ok());
  spawn(committer(writer.get(), &done[1]));
  spawn(committer(writer.get(), &done[2]));
  BOOST_TEST((!done[0] && !done[1] && !done[2]));
  storage.release_held_write();  // batch 1 (3 records) durable; a waiter writes batch 2
  BOOST_REQUIRE(done[0].has_value());
  BOOST_TEST(done[0]->is_ok());
  BOOST_TEST((!done[1] && !done[2]));
  BOOST_TEST(writer->durable_records() == 3u);
  BOOST_REQUIRE(storage.has_held_write());
  storage.release_held_write();
  BOOST_REQUIRE(done[1].has_value() && done[2].has_value());
  BOOST_TEST((done[1]->is_ok() && done[2]->is_ok()));
  BOOST_TEST(writer->durable_records() == 8u);
  BOOST_TEST(storage.writes() - writes_before == 2u);
  BOOST_TEST(writer->stats().batches == 2u);
  storage.hold_writes(false);
}

BOOST_AUTO_TEST_CASE(release_before_removes_whole_segments_below_the_index) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  std::vector<wal_record> written;
  for (int i = 1; i <= 1000; ++i) {
    written.push_back(wal_record::entry(1, i, std::string(300, 'r')));
    BOOST_REQUIRE(writer->append(written.back()).is_ok());
    if (i % 10 == 0) BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  }
  std::vector<std::string> segments = writer->segment_names();
  BOOST_REQUIRE(segments.size() > 4);
  std::uint64_t third_first = parse_wal_segment_name(segments[2])->second;
  BOOST_REQUIRE(writer->release_before(third_first).is_ok());
  BOOST_TEST(writer->segment_names().size() == segments.size() - 2);
  BOOST_TEST(writer->segment_names().front() == segments[2]);
  BOOST_REQUIRE(writer->release_before(1000000).is_ok());
  BOOST_TEST(writer->segment_names().size() == 1u);  // never the one being written
  writer.reset();
  storage.crash();
  wal_recovery recovered = recover_ok(storage);
  BOOST_REQUIRE(!recovered.records.empty());
  BOOST_TEST(recovered.records.back() == written.back());
  BOOST_TEST(*recovered.first_index == written[written.size() - recovered.records.size()].index);
}

// After a snapshot the log is released up to it: the first remaining segment has a
// sequence above 0 and a first index above 1. Recovery, re-opening and further rollovers
// must take that as the start of the log (docs/formats/snapshot.md, "Recovery").
BOOST_AUTO_TEST_CASE(a_released_log_reopens_and_recovers_from_the_released_point) {
  memory_wal_storage storage;
  std::vector<wal_record> written;
  auto append_entries = [&](wal_writer& writer, std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t i = from; i <= to; ++i) {
      written.push_back(
          wal_record::entry(1 + i / 500, i, std::string(300, static_cast<char>('a' + i % 26))));
      BOOST_REQUIRE(writer.append(written.back()).is_ok());
      if (i % 10 == 0 || i == to) BOOST_REQUIRE(run_now(writer.commit()).is_ok());
    }
  };
  // The records recovery must return: everything from the first entry of `segment` on.
  auto from_segment = [&](const std::string& segment) {
    std::uint64_t first = parse_wal_segment_name(segment)->second;
    return std::vector<wal_record>(written.begin() + static_cast<std::ptrdiff_t>(first - 1),
                                   written.end());
  };

  auto writer = open_writer(storage);
  append_entries(*writer, 1, 700);
  std::vector<std::string> segments = writer->segment_names();
  BOOST_REQUIRE(segments.size() >= 3u);
  std::uint64_t released_point = parse_wal_segment_name(segments[2])->second;
  BOOST_REQUIRE(released_point > 1u);
  BOOST_REQUIRE(writer->release_before(released_point).is_ok());
  writer.reset();
  storage.crash();

  wal_recovery recovered = recover_ok(storage);
  BOOST_TEST(recovered.segments.front().sequence == 2u);
  BOOST_TEST(recovered.segments.front().first_index == released_point);
  BOOST_TEST(*recovered.first_index == released_point);
  BOOST_TEST(*recovered.last_index == 700u);
  BOOST_TEST((recovered.records == from_segment(segments[2])));

  // Re-open at the released log and write across more rollovers.
  writer = open_writer(storage);
  append_entries(*writer, 701, 1400);
  segments = writer->segment_names();
  BOOST_TEST(parse_wal_segment_name(segments.front())->first == 2u);
  for (std::size_t i = 1; i < segments.size(); ++i) {
    BOOST_TEST(parse_wal_segment_name(segments[i])->first ==
               parse_wal_segment_name(segments[i - 1])->first + 1);
  }
  writer.reset();
  storage.crash();
  recovered = recover_ok(storage);
  BOOST_TEST((recovered.records == from_segment(segments.front())));
  BOOST_TEST(*recovered.last_index == 1400u);

  // Release all but the segment being written; re-open; append; recover.
  writer = open_writer(storage);
  BOOST_REQUIRE(writer->release_before(1000000).is_ok());
  segments = writer->segment_names();
  BOOST_REQUIRE(segments.size() == 1u);
  append_entries(*writer, 1401, 1410);
  writer.reset();
  storage.crash();
  recovered = recover_ok(storage);
  BOOST_TEST(recovered.segments.size() >= 1u);
  BOOST_TEST(recovered.segments.front().name == segments.front());
  BOOST_TEST((recovered.records == from_segment(segments.front())));
  BOOST_TEST(*recovered.last_index == 1410u);
}

BOOST_AUTO_TEST_CASE(a_missing_middle_segment_is_corruption) {
  memory_wal_storage storage;
  auto writer = open_writer(storage);
  for (int i = 1; i <= 600; ++i) {
    BOOST_REQUIRE(writer->append(wal_record::entry(1, i, std::string(300, 'm'))).is_ok());
    if (i % 10 == 0) BOOST_REQUIRE(run_now(writer->commit()).is_ok());
  }
  std::vector<std::string> segments = writer->segment_names();
  writer.reset();
  BOOST_REQUIRE(storage.remove(segments[1]).is_ok());
  auto recovered = recover_wal(storage, wal_recovery_mode::check);
  BOOST_REQUIRE(!recovered.is_ok());
  BOOST_TEST(recovered.error().message().find(segments[2] + ":0: segment sequence gap") == 0u);
}

namespace {

// Recovers `storage` (repair mode) and opens a writer at the end it found.
task<result<std::unique_ptr<wal_writer>>> recover_and_open(wal_storage& storage, wal_writer_options options) {
  auto recovered = recover_wal(storage, wal_recovery_mode::repair);
  if (!recovered) co_return recovered.error();
  task<result<std::unique_ptr<wal_writer>>> opening = wal_writer::open(storage, *recovered, options);
  co_return co_await std::move(opening);
}

}  // namespace

namespace {

// Real files, real fdatasync, on one shard: 10,000 entries written by group commit in
// three starts of the writer (so that the second and third start in the middle of a
// block that a direct write must read back), then read back. `direct`: O_DIRECT +
// RWF_DSYNC (where the file system allows it) or the page cache and fdatasync.
// `whole_blocks`: the segment size is a whole number of 4 KiB blocks, so direct writes
// are expected when direct applies.
void write_and_recover_10000_entries(bool direct, std::uint64_t segment_bytes = 256 * 1024) {
  bool whole_blocks = segment_bytes % wal_direct_block_bytes == 0;
  char pattern[] = "/tmp/keel-wal-test-XXXXXX";
  BOOST_REQUIRE(::mkdtemp(pattern) != nullptr);
  std::string directory = std::string(pattern) + "/wal";
  BOOST_REQUIRE(posix_wal_directory::create_directories(directory).is_ok());
  int tmp = ::open(pattern, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  BOOST_REQUIRE(tmp >= 0);
  bool direct_applies = direct && wal_zero_ahead_applies(tmp);
  ::close(tmp);
  if (direct && !direct_applies) BOOST_TEST_MESSAGE("/tmp is neither ext4 nor XFS: written buffered");
  bool expect_direct_writes = direct_applies && whole_blocks;
  // What each start's storage wrote directly.
  std::vector<uring_wal_storage::direct_counts> counts;
  std::vector<wal_record> written;
  for (int i = 1; i <= 10000; ++i) {
    written.push_back(wal_record::entry(1 + i / 1000, i, "value-" + std::to_string(i) + std::string(i % 97, 'p')));
  }
  status outcome;
  wal_writer_stats stats;
  std::size_t next = 0;
  wal_writer_options options;
  options.segment_bytes = segment_bytes;
  options.batch_bytes_max = 64 * 1024;
  // One start of a writer on `directory`: `body` writes with it; its stats and what the
  // storage wrote directly are added up.
  auto start_writer = [&](auto body) {
    run_system(1, [&](keel::system&) -> task<void> {
      uring_wal_storage storage(directory, direct);
      task<result<std::unique_ptr<wal_writer>>> opening = recover_and_open(storage, options);
      auto writer = co_await std::move(opening);
      if (!writer) {
        outcome = writer.error();
        co_return;
      }
      BOOST_TEST(storage.direct() == direct_applies);
      task<void> writing = body(writer->get());
      co_await std::move(writing);
      stats.records += (*writer)->stats().records;
      stats.batches += (*writer)->stats().batches;
      stats.segments_created += (*writer)->stats().segments_created;
      counts.push_back(storage.counts());
    });
    BOOST_REQUIRE_MESSAGE(outcome.is_ok(), outcome.to_string());
  };
  // 50 rounds of 100 entries with one commit each.
  start_writer([&](wal_writer* log) -> task<void> {
    for (int round = 0; round < 50 && outcome.is_ok(); ++round) {
      for (int i = 0; i < 100; ++i) outcome = log->append(written[next++]);
      task<status> committing = log->commit();
      outcome = co_await std::move(committing);
    }
  });
  // 20 rounds where ten coroutines append ten entries each and commit: group commit
  // shares batches. Then 2,000 entries one commit each: small batches within one block.
  start_writer([&](wal_writer* log) -> task<void> {
    for (int round = 0; round < 20 && outcome.is_ok(); ++round) {
      std::vector<task<void>> committers;
      for (int c = 0; c < 10; ++c) {
        committers.push_back([](wal_writer* w, const wal_record* first, status* out) -> task<void> {
          for (int i = 0; i < 10; ++i) {
            status appended = w->append(first[i]);
            if (!appended) *out = appended;
          }
          task<status> committing = w->commit();
          status committed = co_await std::move(committing);
          if (!committed) *out = committed;
        }(log, &written[next], &outcome));
        next += 10;
      }
      task<void> all = when_all(std::move(committers));
      co_await std::move(all);
    }
    for (int i = 0; i < 2000 && outcome.is_ok(); ++i) {
      outcome = log->append(written[next++]);
      task<status> committing = log->commit();
      if (outcome.is_ok()) outcome = co_await std::move(committing);
    }
  });
  // The rest, 1,000 entries in commits of 7.
  start_writer([&](wal_writer* log) -> task<void> {
    while (next < written.size() && outcome.is_ok()) {
      for (int i = 0; i < 7 && next < written.size() && outcome.is_ok(); ++i) outcome = log->append(written[next++]);
      task<status> committing = log->commit();
      if (outcome.is_ok()) outcome = co_await std::move(committing);
    }
  });
  BOOST_TEST(next == 10000u);
  BOOST_REQUIRE(counts.size() == 3u);
  for (std::size_t start = 0; start < 3; ++start) {
    BOOST_TEST_CONTEXT("writer start " << start + 1) {
      const auto& c = counts[start];
      BOOST_TEST_MESSAGE("direct writes " << c.writes << ", read back " << c.read_backs << ", zero writes " << c.zero_writes);
      if (expect_direct_writes) {
        BOOST_TEST(c.writes > 0u);
        BOOST_TEST(c.zero_writes > 0u);
        // The first start begins a new log; the others begin where the last one ended,
        // in the middle of a block, and read it back once.
        BOOST_TEST(c.read_backs == (start == 0 ? 0u : 1u));
      } else {
        BOOST_TEST(c.writes == 0u);
        BOOST_TEST(c.read_backs == 0u);
        BOOST_TEST(c.zero_writes == 0u);
      }
    }
  }
  BOOST_TEST(stats.records == 10000u);
  BOOST_TEST_MESSAGE("batches " << stats.batches << ", segments " << stats.segments_created);
  BOOST_TEST(stats.batches < 3500u);  // 2,000 single commits, the rest never one batch per record

  posix_wal_directory reread(directory);
  wal_recovery recovered = recover_ok(reread, wal_recovery_mode::check);
  BOOST_TEST(recovered.records.size() == 10000u);
  BOOST_TEST((recovered.records == written));
  BOOST_TEST(!recovered.torn_tail.has_value());
  BOOST_TEST(recovered.segments.size() > 3u);
  // No segment grew past its preallocated size (a direct write of a last block that is
  // not whole would have).
  for (const auto& entry : std::filesystem::directory_iterator(directory))
    BOOST_TEST(std::filesystem::file_size(entry.path()) == segment_bytes, entry.path().string());
  if (std::getenv("KEEL_WAL_TEST_KEEP") != nullptr) {
    BOOST_TEST_MESSAGE("kept " << directory);  // for trying `keelctl wal check` by hand
  } else {
    std::filesystem::remove_all(pattern);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(real_files_on_the_reactor_write_and_recover_10000_entries) {
  write_and_recover_10000_entries(true);
}

BOOST_AUTO_TEST_CASE(real_files_through_the_page_cache_write_and_recover_10000_entries) {
  write_and_recover_10000_entries(false);
}

// wal-segment-bytes need not be a whole number of 4 KiB blocks: such a segment is written
// through the page cache (a direct write of its last block would grow the file).
BOOST_AUTO_TEST_CASE(real_files_in_segments_of_a_size_that_is_not_whole_blocks) {
  write_and_recover_10000_entries(true, 256 * 1024 + 3000);
}

namespace {

// The byte ranges of `path` that the filesystem holds as unwritten extents (FIEMAP).
std::vector<std::pair<std::uint64_t, std::uint64_t>> unwritten_ranges(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  constexpr unsigned slots = 256;
  std::vector<std::byte> buffer(sizeof(fiemap) + slots * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buffer.data());
  map->fm_start = 0;
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = slots;
  BOOST_REQUIRE_MESSAGE(::ioctl(fd, FS_IOC_FIEMAP, map) == 0, "FIEMAP: " << std::strerror(errno));
  ::close(fd);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> unwritten;
  for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
    const fiemap_extent& e = map->fm_extents[i];
    if (e.fe_flags & FIEMAP_EXTENT_UNWRITTEN) unwritten.emplace_back(e.fe_logical, e.fe_logical + e.fe_length);
  }
  return unwritten;
}

// One run of the zero-ahead check below with `rounds` commits of ~40 KiB, written
// directly (O_DIRECT + RWF_DSYNC) or through the page cache.
void check_zero_ahead_after(int rounds, bool direct) {
  BOOST_TEST_CONTEXT("rounds " << rounds << (direct ? ", direct" : ", buffered")) {
    char pattern[] = "/tmp/keel-wal-test-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(pattern) != nullptr);
    int tmp = ::open(pattern, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    BOOST_REQUIRE(tmp >= 0);
    bool applies = wal_zero_ahead_applies(tmp);
    ::close(tmp);
    if (!applies) {
      std::filesystem::remove_all(pattern);
      BOOST_TEST_MESSAGE("skipped: /tmp is neither ext4 nor XFS, the file systems that get zero-ahead");
      return;
    }
    std::string directory = std::string(pattern) + "/wal";
    BOOST_REQUIRE(posix_wal_directory::create_directories(directory).is_ok());
    status outcome;
    std::vector<std::string> names;
    bool wrote_directly = false;
    run_system(1, [&](keel::system&) -> task<void> {
      uring_wal_storage storage(directory, direct);
      wal_writer_options options;
      options.segment_bytes = 16 * wal_zero_ahead_bytes;
      options.batch_bytes_max = 64 * 1024;
      task<result<std::unique_ptr<wal_writer>>> opening = recover_and_open(storage, options);
      auto writer = co_await std::move(opening);
      if (!writer) {
        outcome = writer.error();
        co_return;
      }
      // ~40 KiB per commit.
      for (int round = 0; round < rounds && outcome.is_ok(); ++round) {
        for (int i = 0; i < 10 && outcome.is_ok(); ++i)
          outcome = (*writer)->append(wal_record::entry(1, 1 + round * 10 + i, std::string(4000, 'v')));
        task<status> committing = (*writer)->commit();
        if (outcome.is_ok()) outcome = co_await std::move(committing);
      }
      names = (*writer)->segment_names();
      wrote_directly = storage.direct();
    });
    BOOST_REQUIRE_MESSAGE(outcome.is_ok(), outcome.to_string());
    BOOST_TEST(wrote_directly == direct);
    BOOST_REQUIRE(names.size() == 1u);
    // The log reads back whole; its end is where the zero-ahead is measured from.
    posix_wal_directory reread(directory);
    wal_recovery recovered = recover_ok(reread, wal_recovery_mode::check);
    BOOST_TEST(recovered.records.size() == static_cast<std::size_t>(rounds) * 10);
    BOOST_TEST(!recovered.torn_tail.has_value());
    std::uint64_t end = recovered.segments.back().end_offset;
    BOOST_REQUIRE(end > 2 * wal_zero_ahead_bytes);
    // After every write at least half of wal_zero_ahead_bytes past the end is written
    // (less a page), and at most all of it (from the block after the end's, when
    // direct): the rest of the segment is still unwritten.
    auto unwritten = unwritten_ranges(directory + "/" + names[0]);
    BOOST_REQUIRE_MESSAGE(!unwritten.empty(), "the segment was zeroed whole, or not fallocated");
    std::uint64_t first_unwritten = unwritten.front().first;
    BOOST_TEST(first_unwritten >= end + wal_zero_ahead_bytes / 2 - 4096);
    std::uint64_t zeroed_from = direct ? (end + wal_direct_block_bytes - 1) & ~(wal_direct_block_bytes - 1) : end;
    BOOST_TEST(first_unwritten <= zeroed_from + wal_zero_ahead_bytes);
    // Zeros after the end of the log.
    auto bytes = reread.read_all(names[0]);
    BOOST_REQUIRE(bytes.is_ok());
    std::size_t nonzero_after_end = 0;
    for (std::size_t i = end; i < bytes->size(); ++i) nonzero_after_end += bytes.value()[i] != std::byte{0};
    BOOST_TEST(nonzero_after_end == 0u);
    std::filesystem::remove_all(pattern);
  }
}

}  // namespace

// Zero-ahead (wal.h, uring_wal_storage): on ext4 a segment is fallocated, and every
// fdatasync after a write into an unwritten extent commits the journal. The storage writes
// zeros ahead of the log, so that the region the next batches go to is already written;
// and never zeros the whole segment at once. Checked with FIEMAP on real files.
BOOST_AUTO_TEST_CASE(real_files_are_written_ahead_of_the_log_end_with_zeros) {
  // Ends before, at and after the points where a zero write happens.
  for (bool direct : {true, false})
    for (int rounds : {77, 79, 80, 81, 84, 90}) check_zero_ahead_after(rounds, direct);
}
