// keel/kv/wal_format.h — the WAL's records and segments, encoded and decoded.
//
// The format is written down in docs/formats/wal.md; read it first. This header is pure:
// no I/O, no reactor, no clock, so keelctl and the fuzzer use it as they are. Everything
// here is thread-safe (no shared state).
//
// Record on disk (8-byte aligned, little-endian):
//   u32 length | u32 crc | u16 type | u16 flags | u32 reserved | payload | zero padding
// crc = crc32c(header without crc, payload, padding) seeded with the previous record's crc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/limits.h"
#include "keel/status.h"

namespace keel::kv {

enum class wal_record_type : std::uint16_t {
  segment_header = 1,
  entry = 2,
  hard_state = 3,
  snapshot = 4,
  durable_mark = 5,  // written by the writer, checked and skipped by the reader
};
const char* wal_record_type_name(wal_record_type type) noexcept;

inline constexpr std::size_t wal_record_header_bytes = 16;
inline constexpr std::uint32_t wal_magic = 0x4C41574B;  // "KWAL"
inline constexpr std::uint16_t wal_version = 1;
inline constexpr std::size_t wal_segment_header_payload_bytes = 32;
inline constexpr std::size_t wal_segment_header_record_bytes =
    wal_record_header_bytes + wal_segment_header_payload_bytes;
// A durable mark: header + u64 durable offset, u32 check, u32 reserved (wal.md).
inline constexpr std::size_t wal_durable_mark_payload_bytes = 16;
inline constexpr std::size_t wal_durable_mark_record_bytes = 16 + wal_durable_mark_payload_bytes;
// The smallest batch_bytes_max a segment may declare.
inline constexpr std::uint32_t wal_batch_bytes_min = 4096;
static_assert(wal_segment_header_record_bytes % 8 == 0);

// The first record of every segment.
struct wal_segment_header {
  std::uint64_t sequence = 0;
  std::uint64_t first_index = 0;
  std::uint32_t previous_crc = 0;     // crc of the previous segment's last record
  std::uint32_t batch_bytes_max = 0;  // the largest write its writer issues
  bool operator==(const wal_segment_header&) const = default;
};

// One logical record: an entry, a hard state or a snapshot marker. Fields that the type
// does not use are zero.
struct wal_record {
  wal_record_type type = wal_record_type::entry;
  std::uint64_t term = 0;    // entry, hard_state, snapshot
  std::uint64_t index = 0;   // entry, snapshot
  std::uint64_t vote = 0;    // hard_state
  std::uint64_t commit = 0;  // hard_state
  std::string data;          // entry

  static wal_record entry(std::uint64_t term, std::uint64_t index, std::string data);
  static wal_record hard_state(std::uint64_t term, std::uint64_t vote, std::uint64_t commit);
  static wal_record snapshot(std::uint64_t index, std::uint64_t term);
  bool operator==(const wal_record&) const = default;
};

// Bytes the record takes on disk: header, payload, padding. REQUIRES: type != segment_header.
std::size_t wal_record_bytes(const wal_record& record) noexcept;

// Appends the encoded record to `out` and returns its crc (the seed of the next record).
// REQUIRES: record.type != segment_header; record.data.size() <= wal_entry_data_bytes_max.
std::uint32_t encode_wal_record(const wal_record& record, std::uint32_t seed,
                                std::vector<std::byte>& out);
// Appends a segment header record, seeded with header.previous_crc; returns its crc.
std::uint32_t encode_wal_segment_header(const wal_segment_header& header,
                                        std::vector<std::byte>& out);
// Appends a durable mark (docs/formats/wal.md, "Durable marks"), unsealed: the record at
// `mark_offset` of a segment whose header record's crc is `segment_header_crc` says that
// the writer knew the segment durable up to `durable_offset` when it issued its batch.
void encode_wal_durable_mark(std::uint64_t durable_offset, std::uint64_t mark_offset,
                             std::uint32_t segment_header_crc, std::vector<std::byte>& out);
// Recomputes the crc of the encoded record at `record` (header + padded payload, already
// in place) with `seed`, stores it in the crc field and returns it. The writer encodes
// records when they are appended and chains them when it writes them.
std::uint32_t seal_wal_record(std::byte* record, std::uint32_t seed) noexcept;

// "%016x-%016x<suffix>": the names of WAL segments (sequence, first index; ".wal") and
// of snapshots (term, index; ".snap"). 16 lower-case hex digits each.
std::string hex_pair_name(std::uint64_t first, std::uint64_t second, std::string_view suffix);
// {first, second} of such a name; nullopt for any other name (another suffix, ".tmp" too).
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_hex_pair_name(std::string_view name,
                                                                           std::string_view suffix);
// "%016x", for names and messages.
std::string hex16(std::uint64_t value);

// "%016x-%016x.wal"
std::string wal_segment_name(std::uint64_t sequence, std::uint64_t first_index);
// {sequence, first_index} of a segment name; nullopt for any other name (".tmp" too).
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_wal_segment_name(std::string_view name);
inline constexpr std::string_view wal_temporary_suffix = ".tmp";

// How to read one segment (recovery; docs/formats/wal.md, "Recovery").
struct wal_scan_options {
  std::string_view file;  // named in messages ("dir/name.wal" or just the name)
  bool last = false;      // the last segment: a torn tail may be truncated
  // From the file name; the header must agree.
  std::uint64_t sequence = 0;
  std::uint64_t first_index = 0;
  // The previous segment's last crc; nullopt for the first segment of the directory.
  std::optional<std::uint32_t> previous_crc;
};

struct wal_segment_scan {
  status outcome;  // ok, or errc::corruption naming "file:offset: what failed"
  wal_segment_header header;        // valid when outcome is ok
  std::vector<wal_record> records;  // entries, hard states, snapshots, in order (no marks)
  std::uint32_t header_crc = 0;     // the segment header record's crc (durable marks' seed)
  std::uint64_t end_offset = 0;     // the byte after the last valid record
  std::uint32_t last_crc = 0;       // crc of the last valid record (the header's at least)
  // Last segment only: nonzero bytes of a torn tail found at end_offset, to be zeroed
  // (the count of bytes from end_offset to the last nonzero byte inclusive); 0 if clean.
  std::uint64_t torn_bytes = 0;
};

// Decodes a whole segment file. Never reads outside `bytes`; any input gives ok or a
// corruption status, never a crash (fuzzed by fuzz_wal).
wal_segment_scan scan_wal_segment(std::span<const std::byte> bytes, const wal_scan_options& options);

}  // namespace keel::kv
