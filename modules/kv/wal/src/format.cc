// The WAL's record codec and the segment scanner of recovery (docs/formats/wal.md).
#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "keel/assert.h"
#include "keel/kv/wal_format.h"
#include "keel/wire/crc32c.h"

namespace keel::kv {
namespace {

// The fuzzer and the machines keel runs on are little-endian; the format is too.
static_assert(std::endian::native == std::endian::little);

template <typename T>
T load(const std::byte* at) noexcept {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
template <typename T>
void store(std::byte* at, T value) noexcept {
  std::memcpy(at, &value, sizeof value);
}

std::size_t padded(std::size_t bytes) noexcept { return (bytes + 7) & ~std::size_t{7}; }

std::size_t payload_bytes(const wal_record& record) noexcept {
  switch (record.type) {
    case wal_record_type::entry: return 16 + record.data.size();
    case wal_record_type::hard_state: return 24;
    case wal_record_type::snapshot: return 16;
    case wal_record_type::durable_mark:
    case wal_record_type::segment_header: break;
  }
  KEEL_ASSERT_MSG(false, "not a loggable record type");
  return 0;
}

// The crc of a record whose bytes (header + padded payload) are in place.
std::uint32_t record_crc(const std::byte* record, std::size_t total, std::uint32_t seed) noexcept {
  std::uint32_t crc = wire::crc32c(record, 4, seed);
  return wire::crc32c(record + 8, total - 8, crc);
}

// Appends header + payload space + padding, zeroed; returns the record's start.
std::byte* reserve(std::vector<std::byte>& out, wal_record_type type, std::size_t payload) {
  std::size_t start = out.size();
  out.resize(start + wal_record_header_bytes + padded(payload));
  std::byte* record = out.data() + start;
  store<std::uint32_t>(record, static_cast<std::uint32_t>(payload));
  store<std::uint16_t>(record + 8, static_cast<std::uint16_t>(type));
  return record;
}

// ---- scanning -------------------------------------------------------------------

// The unit a disk writes whole or not at all (docs/formats/wal.md, "Torn tail or damage").
constexpr std::uint64_t sector_bytes = 512;

// Whether a record header could have been written as it is: a loggable type, zero flags
// and reserved bytes, and the payload size that type has.
bool plausible_header(const std::byte* record) noexcept {
  std::uint32_t length = load<std::uint32_t>(record);
  if (load<std::uint16_t>(record + 10) != 0 || load<std::uint32_t>(record + 12) != 0) return false;
  switch (static_cast<wal_record_type>(load<std::uint16_t>(record + 8))) {
    case wal_record_type::entry: return length >= 16 && length - 16 <= limits::wal_entry_data_bytes_max;
    case wal_record_type::hard_state: return length == 24;
    case wal_record_type::snapshot: return length == 16;
    case wal_record_type::durable_mark: return length == wal_durable_mark_payload_bytes;
    case wal_record_type::segment_header: return false;
  }
  return false;
}

// A durable mark's own check, independent of the crc chain: crc32c of its claim and its
// place, seeded with the segment header's crc (which no client can know).
std::uint32_t durable_mark_check(std::uint64_t durable_offset, std::uint64_t mark_offset,
                                 std::uint32_t segment_header_crc) noexcept {
  std::byte bytes[16];
  store(bytes, durable_offset);
  store(bytes + 8, mark_offset);
  return wire::crc32c(bytes, sizeof bytes, segment_header_crc);
}

// The durable offset claimed by a durable mark at `at` of `segment`, if one is there and
// its own check holds (its chained crc is not needed).
std::optional<std::uint64_t> durable_mark_claim(std::span<const std::byte> segment, std::uint64_t at,
                                                std::uint32_t segment_header_crc) noexcept {
  if (segment.size() - at < wal_durable_mark_record_bytes) return std::nullopt;
  const std::byte* record = segment.data() + at;
  if (load<std::uint16_t>(record + 8) != static_cast<std::uint16_t>(wal_record_type::durable_mark) ||
      !plausible_header(record) || load<std::uint32_t>(record + 28) != 0) {
    return std::nullopt;
  }
  std::uint64_t durable = load<std::uint64_t>(record + 16);
  if (load<std::uint32_t>(record + 24) != durable_mark_check(durable, at, segment_header_crc)) return std::nullopt;
  return durable;
}

class segment_scanner {
 public:
  segment_scanner(std::span<const std::byte> bytes, const wal_scan_options& options)
      : _bytes(bytes), _options(options) {}

  wal_segment_scan run();

 private:
  // Why the record at `offset` does not verify, or "" when it does. Sets `_torn_shape`
  // when the only failure is the crc of a record whose header is whole and plausible:
  // the one failure a torn write can leave behind a whole header.
  std::string check_record(std::uint64_t offset, std::uint32_t seed, std::uint64_t& total);
  // Whether a 512-byte sector after the one holding `offset`, overlapping the record
  // [offset, offset + total), reads as all zeros: the mark of a sector never written.
  bool has_unwritten_sector(std::uint64_t offset, std::uint64_t total) const noexcept;
  // Why the bytes from `offset` on cannot be a torn tail, or "" when they can.
  std::string not_torn_because(std::uint64_t offset, const std::string& failure) const;
  // A durable mark in [offset + 8, reach) whose claim lies beyond `offset`: "" if none.
  std::string durable_past(std::uint64_t offset, std::uint64_t reach) const;
  std::string check_header(const std::byte* payload, std::size_t length, wal_segment_header& out) const;
  static std::string check_payload(wal_record_type type, const std::byte* payload,
                                   std::size_t length, wal_record& out);
  bool all_zero(std::uint64_t from, std::uint64_t to) const noexcept;
  status corruption(std::uint64_t offset, const std::string& what) const {
    return {errc::corruption, std::string(_options.file) + ":" + std::to_string(offset) + ": " + what};
  }
  void finish_at(std::uint64_t offset, const std::string& failure);

  std::span<const std::byte> _bytes;
  const wal_scan_options& _options;
  wal_segment_scan _scan;
  bool _torn_shape = false;
  std::uint64_t _failed_total = 0;  // with _torn_shape: the failing record's size
};

bool segment_scanner::all_zero(std::uint64_t from, std::uint64_t to) const noexcept {
  for (std::uint64_t i = from; i < to; ++i) {
    if (_bytes[i] != std::byte{0}) return false;
  }
  return true;
}

std::string segment_scanner::check_header(const std::byte* payload, std::size_t length,
                                          wal_segment_header& out) const {
  if (length != wal_segment_header_payload_bytes) return "segment header of wrong size";
  if (load<std::uint32_t>(payload) != wal_magic) return "bad segment magic";
  if (load<std::uint16_t>(payload + 4) != wal_version) {
    return "unsupported WAL version " + std::to_string(load<std::uint16_t>(payload + 4));
  }
  if (load<std::uint16_t>(payload + 6) != 0) return "nonzero reserved field in segment header";
  out.sequence = load<std::uint64_t>(payload + 8);
  out.first_index = load<std::uint64_t>(payload + 16);
  out.previous_crc = load<std::uint32_t>(payload + 24);
  out.batch_bytes_max = load<std::uint32_t>(payload + 28);
  if (out.sequence != _options.sequence || out.first_index != _options.first_index) {
    return "segment header (sequence " + hex16(out.sequence) + ", first index " +
           hex16(out.first_index) + ") disagrees with the file name";
  }
  if (out.batch_bytes_max < wal_batch_bytes_min || out.batch_bytes_max > limits::wal_batch_bytes_max ||
      out.batch_bytes_max % 8 != 0) {
    return "segment header declares an invalid batch size " + std::to_string(out.batch_bytes_max);
  }
  if (_options.previous_crc && *_options.previous_crc != out.previous_crc) {
    return "segment header's previous crc does not match the previous segment's last record";
  }
  return "";
}

std::string segment_scanner::check_payload(wal_record_type type, const std::byte* payload,
                                           std::size_t length, wal_record& out) {
  out.type = type;
  switch (type) {
    case wal_record_type::entry:
      if (length < 16) return "entry record too short";
      if (length - 16 > limits::wal_entry_data_bytes_max) return "entry data too large";
      out.term = load<std::uint64_t>(payload);
      out.index = load<std::uint64_t>(payload + 8);
      out.data.assign(reinterpret_cast<const char*>(payload + 16), length - 16);
      return "";
    case wal_record_type::hard_state:
      if (length != 24) return "hard_state record of wrong size";
      out.term = load<std::uint64_t>(payload);
      out.vote = load<std::uint64_t>(payload + 8);
      out.commit = load<std::uint64_t>(payload + 16);
      return "";
    case wal_record_type::snapshot:
      if (length != 16) return "snapshot record of wrong size";
      out.index = load<std::uint64_t>(payload);
      out.term = load<std::uint64_t>(payload + 8);
      return "";
    case wal_record_type::durable_mark: return "durable mark not checked where it is";  // run() checks marks
    case wal_record_type::segment_header: break;
  }
  return "segment header record after the start of the segment";
}

// Checks framing and crc of the record at `offset`; on success sets `total` to its size.
std::string segment_scanner::check_record(std::uint64_t offset, std::uint32_t seed,
                                          std::uint64_t& total) {
  _torn_shape = false;
  std::uint64_t size = _bytes.size();
  if (size - offset < wal_record_header_bytes) return "truncated record header";
  const std::byte* record = _bytes.data() + offset;
  std::uint32_t length = load<std::uint32_t>(record);
  std::uint16_t type = load<std::uint16_t>(record + 8);
  if (length == 0) return "record of length 0";
  if (length > limits::wal_record_bytes_max - wal_record_header_bytes) {
    return "record length " + std::to_string(length) + " exceeds the limit";
  }
  total = wal_record_header_bytes + padded(length);
  if (total > size - offset) {
    return "record of " + std::to_string(total) + " bytes runs past the end of the file";
  }
  std::uint32_t stored = load<std::uint32_t>(record + 4);
  std::uint32_t computed = record_crc(record, total, seed);
  std::string type_name = wal_record_type_name(static_cast<wal_record_type>(type));
  if (stored != computed) {
    // A header in a sector's last 8 bytes has its type, flags and reserved word in the
    // next sector, which may be the one that was not written.
    bool second_half_unwritten =
        offset % sector_bytes == sector_bytes - 8 && all_zero(offset + 8, std::min(size, offset + 8 + sector_bytes));
    _torn_shape = plausible_header(record) || second_half_unwritten;
    _failed_total = total;
    return "crc mismatch in " + type_name + " record of " + std::to_string(total) + " bytes";
  }
  // The crc matched, so what follows is what a writer wrote; these checks catch a writer
  // of another version, or a crc collision.
  if (type < 1 || type > 5) return "unknown record type " + std::to_string(type);
  if (load<std::uint16_t>(record + 10) != 0 || load<std::uint32_t>(record + 12) != 0) {
    return "nonzero flags or reserved bytes in " + type_name + " record";
  }
  if (!all_zero(offset + wal_record_header_bytes + length, offset + total)) {
    return "nonzero padding in " + type_name + " record";
  }
  return "";
}

bool segment_scanner::has_unwritten_sector(std::uint64_t offset, std::uint64_t total) const noexcept {
  std::uint64_t size = _bytes.size();
  for (std::uint64_t sector = (offset / sector_bytes + 1) * sector_bytes; sector < offset + total;
       sector += sector_bytes) {
    if (all_zero(sector, std::min(size, sector + sector_bytes))) return true;
  }
  return false;
}

std::string segment_scanner::not_torn_because(std::uint64_t offset, const std::string& failure) const {
  // A torn write loses whole sectors, which read as zeros (the segment was preallocated;
  // recovery zeroes what it truncates), and keeps the rest whole. So where the length and
  // crc of a record were not written, neither was anything after them in their sector;
  // and a record whose length and crc were written but which fails has a plausible
  // header and a later sector that was not written.
  std::uint64_t size = _bytes.size();
  std::uint64_t sector_end = std::min<std::uint64_t>(size, (offset / sector_bytes + 1) * sector_bytes);
  if (all_zero(offset, std::min<std::uint64_t>(size, offset + 8))) {
    if (all_zero(offset, sector_end)) return "";
    return (failure.empty() ? std::string("an empty record header") : failure) +
           ", with nonzero bytes after it in its sector: a damaged record, not a torn write";
  }
  if (!_torn_shape) return failure + ": a damaged record, not a torn write (a torn write leaves a header whole)";
  if (has_unwritten_sector(offset, _failed_total)) return "";
  return failure + ", and every sector of it was written: a damaged record, not a torn write";
}

std::string segment_scanner::durable_past(std::uint64_t offset, std::uint64_t reach) const {
  for (std::uint64_t at = offset + 8; at < reach && _bytes.size() - at >= wal_durable_mark_record_bytes; at += 8) {
    if (_bytes[at + 8] != std::byte{static_cast<std::uint8_t>(wal_record_type::durable_mark)}) continue;
    auto claim = durable_mark_claim(_bytes, at, _scan.header_crc);
    if (claim && *claim > offset) {
      return "the durable mark at offset " + std::to_string(at) + " says the segment was durable up to offset " +
             std::to_string(*claim);
    }
  }
  return "";
}

// Ends the scan at `offset`, where the record failed (`failure`) or the log ended ("").
void segment_scanner::finish_at(std::uint64_t offset, const std::string& failure) {
  std::uint64_t size = _bytes.size();
  _scan.end_offset = offset;
  if (!_options.last) {
    if (!failure.empty()) {
      _scan.outcome = corruption(offset, failure);
    } else if (!all_zero(offset, size)) {
      _scan.outcome = corruption(offset, "nonzero bytes after the end of the segment's records");
    }
    return;
  }
  // The last segment: the bytes from `offset` on may be the remains of the batches whose
  // write+fdatasync did not complete, if they have the shape a torn write leaves.
  if (std::string why = not_torn_because(offset, failure); !why.empty()) {
    _scan.outcome = corruption(offset, why);
    return;
  }
  // Those batches began at or before `offset` and were at most batch_bytes_max long
  // together, so nothing at or after offset + batch_bytes_max can be theirs.
  std::uint64_t reach = std::min<std::uint64_t>(size, offset + _scan.header.batch_bytes_max);
  // And none of them was issued after `offset` had become durable.
  if (std::string why = durable_past(offset, reach); !why.empty()) {
    _scan.outcome = corruption(offset, (failure.empty() ? std::string("end of records") : failure) + ", but " + why +
                                           ": a damaged record, not a torn write");
    return;
  }
  if (!all_zero(reach, size)) {
    std::uint64_t stray = reach;
    while (_bytes[stray] == std::byte{0}) ++stray;
    _scan.outcome = corruption(
        offset, (failure.empty() ? std::string("end of records") : failure) +
                    ", and nonzero bytes at offset " + std::to_string(stray) +
                    " beyond the largest batch, so this is not a torn write");
    return;
  }
  std::uint64_t last_nonzero = reach;
  while (last_nonzero > offset && _bytes[last_nonzero - 1] == std::byte{0}) --last_nonzero;
  _scan.torn_bytes = last_nonzero - offset;
}

wal_segment_scan segment_scanner::run() {
  std::uint64_t size = _bytes.size();
  // The segment header: it was durable before the file got its name, so a bad one is
  // never a torn write.
  std::uint64_t total = 0;
  std::uint32_t header_seed = 0;
  if (size >= wal_segment_header_record_bytes) {
    header_seed = load<std::uint32_t>(_bytes.data() + wal_record_header_bytes + 24);
  }
  std::string failure = check_record(0, header_seed, total);
  if (failure.empty() &&
      load<std::uint16_t>(_bytes.data() + 8) != static_cast<std::uint16_t>(wal_record_type::segment_header)) {
    failure = "the segment does not start with a segment header";
  }
  if (failure.empty()) {
    failure = check_header(_bytes.data() + wal_record_header_bytes,
                           load<std::uint32_t>(_bytes.data()), _scan.header);
  }
  if (!failure.empty()) {
    _scan.outcome = corruption(0, failure);
    return std::move(_scan);
  }
  std::uint64_t offset = total;
  _scan.last_crc = load<std::uint32_t>(_bytes.data() + 4);
  _scan.header_crc = _scan.last_crc;

  for (;;) {
    // End of log: a zero header (or fewer than 16 bytes left, all zero).
    if (all_zero(offset, std::min<std::uint64_t>(size, offset + wal_record_header_bytes))) {
      finish_at(offset, "");
      break;
    }
    failure = check_record(offset, _scan.last_crc, total);
    const std::byte* record = _bytes.data() + offset;
    wal_record decoded;
    bool mark = false;
    if (failure.empty()) {  // a whole header: its type can be read
      auto type = static_cast<wal_record_type>(load<std::uint16_t>(record + 8));
      mark = type == wal_record_type::durable_mark;
      if (mark) {
        auto claim = durable_mark_claim(_bytes, offset, _scan.header_crc);
        if (!claim || *claim > offset) failure = "durable mark that does not check";
      } else {
        failure = check_payload(type, record + wal_record_header_bytes, load<std::uint32_t>(record), decoded);
      }
    }
    if (!failure.empty()) {
      finish_at(offset, failure);
      break;
    }
    if (!mark) _scan.records.push_back(std::move(decoded));
    _scan.last_crc = load<std::uint32_t>(record + 4);
    offset += total;
  }
  return std::move(_scan);
}

}  // namespace

const char* wal_record_type_name(wal_record_type type) noexcept {
  switch (type) {
    case wal_record_type::segment_header: return "segment_header";
    case wal_record_type::entry: return "entry";
    case wal_record_type::hard_state: return "hard_state";
    case wal_record_type::snapshot: return "snapshot";
    case wal_record_type::durable_mark: return "durable_mark";
  }
  return "unknown";
}

wal_record wal_record::entry(std::uint64_t term, std::uint64_t index, std::string data) {
  wal_record record;
  record.type = wal_record_type::entry;
  record.term = term;
  record.index = index;
  record.data = std::move(data);
  return record;
}

wal_record wal_record::hard_state(std::uint64_t term, std::uint64_t vote, std::uint64_t commit) {
  wal_record record;
  record.type = wal_record_type::hard_state;
  record.term = term;
  record.vote = vote;
  record.commit = commit;
  return record;
}

wal_record wal_record::snapshot(std::uint64_t index, std::uint64_t term) {
  wal_record record;
  record.type = wal_record_type::snapshot;
  record.index = index;
  record.term = term;
  return record;
}

std::size_t wal_record_bytes(const wal_record& record) noexcept {
  return wal_record_header_bytes + padded(payload_bytes(record));
}

std::uint32_t seal_wal_record(std::byte* record, std::uint32_t seed) noexcept {
  std::size_t total = wal_record_header_bytes + padded(load<std::uint32_t>(record));
  std::uint32_t crc = record_crc(record, total, seed);
  store<std::uint32_t>(record + 4, crc);
  return crc;
}

std::uint32_t encode_wal_record(const wal_record& record, std::uint32_t seed,
                                std::vector<std::byte>& out) {
  KEEL_ASSERT(record.data.size() <= limits::wal_entry_data_bytes_max);
  std::size_t payload = payload_bytes(record);
  std::size_t start = out.size();
  std::byte* at = reserve(out, record.type, payload) + wal_record_header_bytes;
  switch (record.type) {
    case wal_record_type::entry:
      store(at, record.term);
      store(at + 8, record.index);
      if (!record.data.empty()) std::memcpy(at + 16, record.data.data(), record.data.size());
      break;
    case wal_record_type::hard_state:
      store(at, record.term);
      store(at + 8, record.vote);
      store(at + 16, record.commit);
      break;
    case wal_record_type::snapshot:
      store(at, record.index);
      store(at + 8, record.term);
      break;
    case wal_record_type::durable_mark:
    case wal_record_type::segment_header: KEEL_ASSERT(false);
  }
  return seal_wal_record(out.data() + start, seed);
}

void encode_wal_durable_mark(std::uint64_t durable_offset, std::uint64_t mark_offset,
                             std::uint32_t segment_header_crc, std::vector<std::byte>& out) {
  KEEL_ASSERT(durable_offset <= mark_offset);
  std::byte* at = reserve(out, wal_record_type::durable_mark, wal_durable_mark_payload_bytes) +
                  wal_record_header_bytes;
  store(at, durable_offset);
  store(at + 8, durable_mark_check(durable_offset, mark_offset, segment_header_crc));
}

std::uint32_t encode_wal_segment_header(const wal_segment_header& header, std::vector<std::byte>& out) {
  std::size_t start = out.size();
  std::byte* at = reserve(out, wal_record_type::segment_header, wal_segment_header_payload_bytes) +
                  wal_record_header_bytes;
  store(at, wal_magic);
  store(at + 4, wal_version);
  store(at + 8, header.sequence);
  store(at + 16, header.first_index);
  store(at + 24, header.previous_crc);
  store(at + 28, header.batch_bytes_max);
  return seal_wal_record(out.data() + start, header.previous_crc);
}

std::string hex16(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016" PRIx64, value);
  return text;
}

std::string hex_pair_name(std::uint64_t first, std::uint64_t second, std::string_view suffix) {
  return hex16(first) + "-" + hex16(second) + std::string(suffix);
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_hex_pair_name(std::string_view name,
                                                                           std::string_view suffix) {
  if (name.size() != 33 + suffix.size() || name[16] != '-' || name.substr(33) != suffix) return std::nullopt;
  auto parse = [](std::string_view digits) -> std::optional<std::uint64_t> {
    std::uint64_t value = 0;
    for (char c : digits) {
      int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (digit < 0) return std::nullopt;
      value = value << 4 | static_cast<std::uint64_t>(digit);
    }
    return value;
  };
  auto first = parse(name.substr(0, 16));
  auto second = parse(name.substr(17, 16));
  if (!first || !second) return std::nullopt;
  return std::pair{*first, *second};
}

std::string wal_segment_name(std::uint64_t sequence, std::uint64_t first_index) {
  return hex_pair_name(sequence, first_index, ".wal");
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_wal_segment_name(std::string_view name) {
  return parse_hex_pair_name(name, ".wal");
}

wal_segment_scan scan_wal_segment(std::span<const std::byte> bytes, const wal_scan_options& options) {
  return segment_scanner(bytes, options).run();
}

}  // namespace keel::kv
