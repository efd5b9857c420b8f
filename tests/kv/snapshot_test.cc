// Snapshot files: names, the codec, durable writes, choosing the newest that verifies,
// falling back past a damaged one, removing unfinished and old files, and a full disk.
// docs/formats/snapshot.md is the specification.
#define BOOST_TEST_MODULE snapshot
#include "keel/kv/snapshot.h"
#include "keel/kv/wal_recovery.h"

#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

using namespace keel;
using namespace keel::kv;
namespace fs = std::filesystem;

namespace keel {
std::ostream& operator<<(std::ostream& out, errc code) { return out << errc_name(code); }
}  // namespace keel

namespace {

// A fresh directory under /tmp, removed with everything in it at the end of the test.
struct temporary_directory {
  std::string path;
  temporary_directory() {
    char pattern[] = "/tmp/keel-snapshot-test-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~temporary_directory() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string snap() const { return path + "/snap"; }
};

// Every byte value, so that the payload is not mistaken for text anywhere.
std::string binary_payload(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + seed) & 0xff);
  return out;
}

void write_ok(const std::string& dir, std::uint64_t term, std::uint64_t index,
              std::string_view payload) {
  status written = write_snapshot(dir, term, index, payload);
  BOOST_REQUIRE_MESSAGE(written.is_ok(), written.to_string());
}

std::optional<loaded_snapshot> load_ok(const std::string& dir,
                                       std::vector<std::string>* warnings = nullptr) {
  auto loaded = load_newest_snapshot(dir, warnings);
  BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.error().to_string());
  return std::move(loaded.value());
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& item : fs::directory_iterator(dir))
    names.push_back(item.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  BOOST_REQUIRE(out.good());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(names_carry_term_and_index_in_hex) {
  BOOST_TEST(snapshot_name(2, 0x186a1) == "0000000000000002-00000000000186a1.snap");
  auto ids = parse_snapshot_name("0000000000000002-00000000000186a1.snap");
  BOOST_REQUIRE(ids.has_value());
  BOOST_TEST(ids->first == 2u);
  BOOST_TEST(ids->second == 0x186a1u);
  BOOST_TEST(!parse_snapshot_name("0000000000000002-00000000000186a1.snap.tmp").has_value());
  BOOST_TEST(!parse_snapshot_name("0000000000000002-00000000000186a1.snap.broken").has_value());
  BOOST_TEST(!parse_snapshot_name("0000000000000002-00000000000186A1.snap").has_value());
  BOOST_TEST(!parse_snapshot_name("0000000000000002-00000000000186a1.wal").has_value());
}

BOOST_AUTO_TEST_CASE(write_then_load_round_trips_term_index_and_payload) {
  temporary_directory dir;  // snap/ does not exist yet: write_snapshot makes it
  std::string payload = binary_payload(100000, 7);
  write_ok(dir.snap(), 3, 12345, payload);
  std::string name = snapshot_name(3, 12345);
  BOOST_TEST((names_in(dir.snap()) == std::vector<std::string>{name}));
  std::string on_disk = file_bytes(dir.snap() + "/" + name);
  BOOST_TEST(on_disk.size() == snapshot_header_bytes + payload.size() + snapshot_trailer_bytes);
  BOOST_TEST(on_disk == encode_snapshot(3, 12345, payload));

  auto loaded = load_ok(dir.snap());
  BOOST_REQUIRE(loaded.has_value());
  BOOST_TEST(loaded->term == 3u);
  BOOST_TEST(loaded->index == 12345u);
  BOOST_TEST(loaded->payload == payload);
  BOOST_TEST(loaded->file == dir.snap() + "/" + name);

  write_ok(dir.snap(), 3, 12346, "");  // an empty payload is a valid snapshot
  loaded = load_ok(dir.snap());
  BOOST_REQUIRE(loaded.has_value());
  BOOST_TEST(loaded->index == 12346u);
  BOOST_TEST(loaded->payload.empty());
}

BOOST_AUTO_TEST_CASE(a_missing_or_empty_directory_has_no_snapshot) {
  temporary_directory dir;
  BOOST_TEST(!load_ok(dir.snap()).has_value());  // no directory
  fs::create_directory(dir.snap());
  std::vector<std::string> warnings;
  BOOST_TEST(!load_ok(dir.snap(), &warnings).has_value());
  BOOST_TEST(warnings.empty());
  BOOST_TEST(remove_old_snapshots(dir.snap(), 5).is_ok());
}

BOOST_AUTO_TEST_CASE(newest_is_chosen_by_index_then_term) {
  temporary_directory dir;
  write_ok(dir.snap(), 2, 20, "twenty");
  write_ok(dir.snap(), 3, 30, "thirty");
  write_ok(dir.snap(), 1, 10, "ten");  // written last, still not the newest
  auto listed = list_snapshots(dir.snap());
  BOOST_REQUIRE(listed.is_ok());
  BOOST_TEST((*listed == std::vector<std::string>{snapshot_name(3, 30), snapshot_name(2, 20),
                                                  snapshot_name(1, 10)}));
  auto loaded = load_ok(dir.snap());
  BOOST_REQUIRE(loaded.has_value());
  BOOST_TEST(loaded->index == 30u);
  BOOST_TEST(loaded->payload == "thirty");
  // Rewriting a snapshot with the same name replaces it whole.
  write_ok(dir.snap(), 3, 30, "thirty again");
  BOOST_TEST(load_ok(dir.snap())->payload == "thirty again");
}

BOOST_AUTO_TEST_CASE(damaged_newest_falls_back_to_an_older_one_with_a_warning) {
  temporary_directory dir;
  write_ok(dir.snap(), 1, 10, "ten");
  write_ok(dir.snap(), 1, 20, binary_payload(5000, 1));
  write_ok(dir.snap(), 2, 30, binary_payload(5000, 2));
  std::string twenty = dir.snap() + "/" + snapshot_name(1, 20);
  std::string thirty = dir.snap() + "/" + snapshot_name(2, 30);
  std::string bytes = file_bytes(thirty);
  bytes[2500] = static_cast<char>(bytes[2500] ^ 0x10);  // a bit flip in the payload
  put_file(thirty, bytes);
  put_file(twenty, file_bytes(twenty).substr(0, 20));  // and a torn one

  std::vector<std::string> warnings;
  auto loaded = load_ok(dir.snap(), &warnings);
  BOOST_REQUIRE(loaded.has_value());
  BOOST_TEST(loaded->index == 10u);
  BOOST_TEST(loaded->payload == "ten");
  BOOST_REQUIRE(warnings.size() == 2u);
  BOOST_TEST_MESSAGE(warnings[0]);
  BOOST_TEST_MESSAGE(warnings[1]);
  BOOST_TEST(warnings[0].rfind(thirty + ": crc mismatch", 0) == 0u);
  BOOST_TEST(contains(warnings[0], "renamed to " + snapshot_name(2, 30) + ".broken"));
  BOOST_TEST(warnings[1].rfind(twenty + ": file of 20 bytes is shorter", 0) == 0u);
  // Set aside, so they are neither read nor counted again.
  BOOST_TEST((names_in(dir.snap()) == std::vector<std::string>{snapshot_name(1, 10),
                                                               snapshot_name(1, 20) + ".broken",
                                                               snapshot_name(2, 30) + ".broken"}));
  warnings.clear();
  BOOST_TEST(load_ok(dir.snap(), &warnings)->index == 10u);
  BOOST_TEST(warnings.empty());
}

BOOST_AUTO_TEST_CASE(only_damaged_snapshots_means_none) {
  temporary_directory dir;
  write_ok(dir.snap(), 1, 10, "ten");
  std::string path = dir.snap() + "/" + snapshot_name(1, 10);
  put_file(path, "");
  std::vector<std::string> warnings;
  BOOST_TEST(!load_ok(dir.snap(), &warnings).has_value());
  BOOST_TEST(warnings.size() == 1u);
  BOOST_TEST(!load_ok(dir.snap(), nullptr).has_value());  // warnings are optional
}

BOOST_AUTO_TEST_CASE(a_header_that_disagrees_with_the_name_does_not_verify) {
  temporary_directory dir;
  write_ok(dir.snap(), 1, 10, "ten");
  fs::rename(dir.snap() + "/" + snapshot_name(1, 10), dir.snap() + "/" + snapshot_name(1, 11));
  auto read = read_snapshot(dir.snap(), snapshot_name(1, 11));
  BOOST_REQUIRE(!read.is_ok());
  BOOST_TEST(read.error().code() == errc::corruption);
  BOOST_TEST(
      read.error().message() ==
      dir.snap() + "/" + snapshot_name(1, 11) +
          ": header (term 0000000000000001, index 000000000000000a) disagrees with the file name");
}

BOOST_AUTO_TEST_CASE(decode_rejects_every_truncation_and_every_changed_byte) {
  std::string name = snapshot_name(4, 99);
  std::string bytes = encode_snapshot(4, 99, binary_payload(300, 3));
  auto good = decode_snapshot(bytes, "dir/" + name);
  BOOST_REQUIRE(good.is_ok());
  BOOST_TEST(good->payload == binary_payload(300, 3));
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    auto out = decode_snapshot(bytes.substr(0, length), "dir/" + name);
    BOOST_REQUIRE(!out.is_ok());
    BOOST_REQUIRE(out.error().code() == errc::corruption);
    BOOST_REQUIRE(out.error().message().rfind("dir/" + name + ": ", 0) == 0);
  }
  // A CRC-32C catches every burst of up to 32 bits, so every single changed byte.
  for (std::size_t at = 0; at < bytes.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = bytes;
      damaged[at] = static_cast<char>(damaged[at] ^ (1 << bit));
      BOOST_REQUIRE(!decode_snapshot(damaged, name).is_ok());
    }
  }
  BOOST_TEST(!decode_snapshot(bytes + "x", name).is_ok());
  BOOST_TEST(decode_snapshot(bytes, "not-a-snapshot-name").error().message() ==
             "not-a-snapshot-name: not a snapshot file name");
}

BOOST_AUTO_TEST_CASE(unfinished_temporary_files_are_removed_at_load) {
  temporary_directory dir;
  write_ok(dir.snap(), 1, 10, "ten");
  put_file(dir.snap() + "/" + snapshot_name(1, 20) + ".tmp", "half a snapshot");
  put_file(dir.snap() + "/unrelated", "left alone");
  auto loaded = load_ok(dir.snap());
  BOOST_REQUIRE(loaded.has_value());
  BOOST_TEST(loaded->index == 10u);
  BOOST_TEST((names_in(dir.snap()) == std::vector<std::string>{snapshot_name(1, 10), "unrelated"}));
}

BOOST_AUTO_TEST_CASE(a_snapshot_that_cannot_be_read_is_an_io_error_not_a_fallback) {
  temporary_directory dir;
  write_ok(dir.snap(), 1, 10, "ten");
  fs::create_directory(dir.snap() + "/" + snapshot_name(1, 20));  // read() gives EISDIR
  auto loaded = load_newest_snapshot(dir.snap(), nullptr);
  BOOST_REQUIRE(!loaded.is_ok());
  BOOST_TEST(loaded.error().code() == errc::io_error);
  BOOST_TEST_MESSAGE(loaded.error().message());
  BOOST_TEST(contains(loaded.error().message(), snapshot_name(1, 20)));
}

BOOST_AUTO_TEST_CASE(remove_old_snapshots_keeps_the_newest_n) {
  temporary_directory dir;
  for (std::uint64_t i = 1; i <= 8; ++i)
    write_ok(dir.snap(), 1 + i / 4, i * 100, "s" + std::to_string(i));
  put_file(dir.snap() + "/" + snapshot_name(9, 9999) + ".broken", "kept for an operator");
  BOOST_REQUIRE(remove_old_snapshots(dir.snap(), 5).is_ok());
  auto listed = list_snapshots(dir.snap());
  BOOST_REQUIRE(listed.is_ok());
  std::vector<std::string> expected;
  for (std::uint64_t i = 8; i >= 4; --i) expected.push_back(snapshot_name(1 + i / 4, i * 100));
  BOOST_TEST(*listed == expected);
  BOOST_TEST(fs::exists(dir.snap() + "/" + snapshot_name(9, 9999) + ".broken"));
  BOOST_REQUIRE(remove_old_snapshots(dir.snap(), 5).is_ok());  // nothing more to do
  BOOST_TEST(list_snapshots(dir.snap())->size() == 5u);
  BOOST_REQUIRE(remove_old_snapshots(dir.snap(), 1).is_ok());
  listed = list_snapshots(dir.snap());
  BOOST_REQUIRE(listed.is_ok());
  BOOST_TEST((*listed == std::vector<std::string>{snapshot_name(3, 800)}));
  BOOST_TEST(load_ok(dir.snap())->payload == "s8");
}

// ENOSPC without a full file system: the .tmp name is a symlink to /dev/full, whose
// every write fails with ENOSPC.
BOOST_AUTO_TEST_CASE(a_full_disk_gives_io_error_naming_enospc_and_leaves_no_file) {
  temporary_directory dir;
  write_ok(dir.snap(), 1, 10, "ten");
  std::string name = snapshot_name(1, 20);
  std::string temporary = dir.snap() + "/" + name + ".tmp";
  BOOST_REQUIRE(::symlink("/dev/full", temporary.c_str()) == 0);
  status written = write_snapshot(dir.snap(), 1, 20, binary_payload(10000, 4));
  BOOST_TEST_MESSAGE(written.to_string());
  BOOST_TEST(written.code() == errc::io_error);
  BOOST_TEST(written.message() == "write " + temporary + ": No space left on device");
  BOOST_TEST((names_in(dir.snap()) == std::vector<std::string>{snapshot_name(1, 10)}));
  BOOST_TEST(load_ok(dir.snap())->index == 10u);
}

namespace {

// A 64 KiB tmpfs mounted for one test (needs CAP_SYS_ADMIN); unmounted at the end.
struct small_tmpfs {
  temporary_directory dir;
  bool mounted = false;
  small_tmpfs() { mounted = ::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=64k") == 0; }
  ~small_tmpfs() {
    if (mounted) ::umount2(dir.path.c_str(), MNT_DETACH);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_full_tmpfs_gives_enospc_and_keeps_the_older_snapshot) {
  small_tmpfs disk;
  if (!disk.mounted) {
    BOOST_TEST_MESSAGE("skipped: cannot mount a tmpfs here (" << std::strerror(errno) << ")");
    return;
  }
  write_ok(disk.dir.snap(), 1, 10, binary_payload(8000, 5));
  status written = write_snapshot(disk.dir.snap(), 1, 20, binary_payload(200000, 6));
  BOOST_TEST_MESSAGE(written.to_string());
  BOOST_TEST(written.code() == errc::io_error);
  BOOST_TEST(contains(written.message(), snapshot_name(1, 20) + ".tmp: No space left on device"));
  BOOST_TEST((names_in(disk.dir.snap()) == std::vector<std::string>{snapshot_name(1, 10)}));
  auto loaded = load_ok(disk.dir.snap());
  BOOST_REQUIRE(loaded.has_value());
  BOOST_TEST(loaded->payload == binary_payload(8000, 5));
  write_ok(disk.dir.snap(), 1, 30, "fits");  // the space was given back
  BOOST_TEST(load_ok(disk.dir.snap())->index == 30u);
}

// A recovered WAL of the given segments (first indexes) and entries [first, last].
wal_recovery recovered_wal(std::vector<std::uint64_t> segment_starts, std::optional<std::uint64_t> first,
                           std::optional<std::uint64_t> last) {
  wal_recovery wal;
  for (std::size_t i = 0; i < segment_starts.size(); ++i) {
    wal_segment_info segment;
    segment.sequence = i;
    segment.first_index = segment_starts[i];
    segment.name = wal_segment_name(i, segment_starts[i]);
    wal.segments.push_back(segment);
  }
  wal.first_index = first;
  wal.last_index = last;
  return wal;
}

BOOST_AUTO_TEST_CASE(the_wal_must_join_the_newest_snapshot) {
  auto joins = [](const wal_recovery& wal, std::uint64_t snapshot, bool own) {
    status s = check_wal_joins_snapshot(wal, snapshot, 1, "d/wal", own);
    BOOST_TEST_MESSAGE(s.to_string());
    return s;
  };
  // Entries 101..300 beside a snapshot at 150: joined, either way.
  BOOST_TEST(joins(recovered_wal({101}, 101, 300), 150, true).is_ok());
  BOOST_TEST(joins(recovered_wal({101}, 101, 300), 150, false).is_ok());
  // The WAL starts after the snapshot: entries 151..160 missing, for a member too.
  for (bool own : {true, false}) {
    status gap = joins(recovered_wal({161}, 161, 300), 150, own);
    BOOST_TEST(gap.code() == errc::corruption);
    BOOST_TEST(gap.message() == "d/wal: the WAL starts at entry 161 but the newest snapshot covers only up to "
                                "entry 150: entries 151 to 160 are missing");
  }
  // A single node's WAL that ends before its snapshot: its later segments were lost.
  status lost = joins(recovered_wal({1, 120}, 1, 140), 150, true);
  BOOST_TEST(lost.code() == errc::corruption);
  BOOST_TEST(lost.message() == "d/wal: the WAL ends at entry 140 (0000000000000001-0000000000000078.wal) but the "
                               "newest snapshot, taken from this log, is at entry 150: WAL segments after "
                               "0000000000000001-0000000000000078.wal are missing, and the writes they held "
                               "after the snapshot with them");
  // A member's snapshot may come from its leader, ahead of its log.
  BOOST_TEST(joins(recovered_wal({1, 120}, 1, 140), 150, false).is_ok());
  // A last segment started for entry 151, with no entry yet, reaches 150.
  BOOST_TEST(joins(recovered_wal({1, 151}, 1, 150), 150, true).is_ok());
  BOOST_TEST(joins(recovered_wal({151}, std::nullopt, std::nullopt), 150, true).is_ok());
  // Only an empty segment started for entry 161 beside a snapshot at 150: 151..160 lost.
  BOOST_TEST(joins(recovered_wal({161}, std::nullopt, std::nullopt), 150, false).message() ==
             "d/wal: the WAL starts at entry 161 but the newest snapshot covers only up to entry 150: entries "
             "151 to 160 are missing");
  // No WAL at all: restored from the snapshot file alone.
  BOOST_TEST(joins(recovered_wal({}, std::nullopt, std::nullopt), 150, true).is_ok());
  // The entry at the snapshot's index with another term (the last one written counts).
  wal_recovery terms = recovered_wal({1}, 1, 150);
  terms.records = {wal_record::entry(1, 150, "a"), wal_record::entry(2, 150, "b")};
  status differs = check_wal_joins_snapshot(terms, 150, 1, "d/wal", true);
  BOOST_TEST(differs.message() == "d/wal: entry 150 has term 2 in the WAL but term 1 in the newest snapshot");
  BOOST_TEST(check_wal_joins_snapshot(terms, 150, 2, "d/wal", true).is_ok());
  BOOST_TEST(check_wal_joins_snapshot(terms, 150, 1, "d/wal", false).is_ok());
  // No snapshot: any WAL that starts at 1.
  BOOST_TEST(joins(recovered_wal({1}, 1, 5), 0, true).is_ok());
}
