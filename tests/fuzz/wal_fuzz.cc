// fuzz_wal — the WAL segment decoder (scan_wal_segment) against arbitrary bytes.
//
// The first input byte picks the mode:
//   bit 0: the segment is the last one (torn-tail rules) or not;
//   bit 1: raw — the rest is the file as it is; or framed — the rest is turned into a
//          valid segment header followed by records [type u16][length u16][payload]
//          sealed with correct chained crcs, so the fuzzer gets past the crc to the
//          payload checks, then the tail of the input is appended raw.
// The decoder must return ok or a corruption status, never read outside the input
// (ASan), and what it returns must be self-consistent.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <vector>

#include "keel/kv/wal_format.h"

using namespace keel;
using namespace keel::kv;

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_wal: %s\n", what);
    std::abort();
  }
}

std::vector<std::byte> framed_segment(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> out;
  std::uint32_t crc = encode_wal_segment_header({3, 100, 0, 4096}, out);
  while (size >= 4) {
    std::uint16_t type = static_cast<std::uint16_t>(data[0] | data[1] << 8);
    std::size_t length = std::min<std::size_t>(data[2] | data[3] << 8, size - 4);
    data += 4;
    size -= 4;
    if (length == 0) break;
    std::size_t start = out.size();
    out.resize(start + wal_record_header_bytes + ((length + 7) & ~std::size_t{7}));
    std::uint32_t length32 = static_cast<std::uint32_t>(length);
    std::memcpy(out.data() + start, &length32, 4);
    std::memcpy(out.data() + start + 8, &type, 2);
    std::memcpy(out.data() + start + wal_record_header_bytes, data, length);
    crc = seal_wal_record(out.data() + start, crc);
    data += length;
    size -= length;
  }
  const std::byte* rest = reinterpret_cast<const std::byte*>(data);
  out.insert(out.end(), rest, rest + size);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint8_t control = data[0];
  ++data;
  --size;
  std::vector<std::byte> segment =
      (control & 2) ? framed_segment(data, size)
                    : std::vector<std::byte>(reinterpret_cast<const std::byte*>(data),
                                             reinterpret_cast<const std::byte*>(data) + size);
  wal_scan_options options{"fuzz.wal", (control & 1) != 0, 3, 100, std::nullopt};
  wal_segment_scan scan = scan_wal_segment(segment, options);
  if (!scan.outcome.is_ok()) {
    require(scan.outcome.code() == errc::corruption, "a failure that is not corruption");
    require(scan.outcome.message().rfind("fuzz.wal:", 0) == 0, "corruption without the file name");
    return 0;
  }
  require(scan.end_offset <= segment.size(), "end past the file");
  require(scan.end_offset % 8 == 0, "misaligned end");
  require(scan.end_offset + scan.torn_bytes <= segment.size(), "torn tail past the file");
  require(options.last || scan.torn_bytes == 0, "torn tail outside the last segment");
  // Re-encoding what was decoded gives back the same bytes and crc chain.
  std::vector<std::byte> again;
  std::uint32_t crc = encode_wal_segment_header(scan.header, again);
  for (const wal_record& record : scan.records) crc = encode_wal_record(record, crc, again);
  require(again.size() == scan.end_offset, "re-encoded size differs");
  require(std::memcmp(again.data(), segment.data(), again.size()) == 0, "re-encoded bytes differ");
  require(crc == scan.last_crc, "re-encoded crc differs");
  return 0;
}
