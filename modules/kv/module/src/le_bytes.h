// le_bytes.h — the kv module's little-endian byte encodings: appends, and a bounds-checked
// reader. One set for every encoding the module defines itself: WAL entry data (codec.cc),
// member entries (cluster.cc) and relayed v2 writes (v2_relay.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace keel::kv_module {

// Appends the low `bytes` bytes of `v`, least significant first.
inline void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_u32(std::string& out, std::uint32_t v) { put_le(out, v, 4); }
inline void put_u64(std::string& out, std::uint64_t v) { put_le(out, v, 8); }
// u32 length | bytes.
inline void put_string(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out += s;
}

// REQUIRES: data.size() >= at + bytes.
inline std::uint64_t get_le(std::string_view data, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t(static_cast<unsigned char>(data[at + i])) << (8 * i);
  return v;
}

// Bounds-checked little-endian reader; `ok` turns false at the first overrun, and every
// later read returns 0 or "".
struct le_reader {
  std::string_view data;
  std::size_t at = 0;
  bool ok = true;

  std::size_t left() const { return data.size() - at; }
  std::uint64_t le(int bytes) {
    if (!ok || left() < static_cast<std::size_t>(bytes)) {
      ok = false;
      return 0;
    }
    std::uint64_t v = get_le(data, at, bytes);
    at += bytes;
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }
  std::int64_t i64() { return static_cast<std::int64_t>(le(8)); }
  // u32 length | bytes (put_string).
  std::string str() {
    std::uint64_t n = le(4);
    if (!ok || left() < n) {
      ok = false;
      return {};
    }
    std::string s(data.substr(at, n));
    at += n;
    return s;
  }
  bool done() const { return ok && at == data.size(); }
};

}  // namespace keel::kv_module
