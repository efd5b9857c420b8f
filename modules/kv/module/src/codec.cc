#include "codec.h"

#include <array>
#include <cstring>

namespace keel::kv_module {

namespace {
constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  table['-'] = 62;  // URL-safe alphabet
  table['_'] = 63;
  return table;
}
constexpr auto decode_table = make_decode_table();

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_le(std::string_view data, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t(static_cast<unsigned char>(data[at + i])) << (8 * i);
  return v;
}
}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16) |
                      (std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                      std::uint32_t(static_cast<unsigned char>(bytes[i + 2]));
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out += "==";
  } else if (rest == 2) {
    std::uint32_t v = (std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16) |
                      (std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  // Strip up to two '=' of padding; then the length mod 4 must not be 1.
  std::size_t end = text.size();
  int padding = 0;
  while (end > 0 && text[end - 1] == '=' && padding < 2) {
    --end;
    ++padding;
  }
  if (padding > 0 && text.size() % 4 != 0) return std::nullopt;
  std::string_view body = text.substr(0, end);
  if (body.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(body.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : body) {
    std::int8_t v = decode_table[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero (canonical encoding, as Go's StdEncoding checks).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string encode_put_entry(const put_entry& put) {
  std::string out;
  out.reserve(2 + 8 + 4 + put.key.size() + 4 + put.value.size());
  out.push_back(static_cast<char>(entry_kind_put));
  std::uint8_t flags = (put.prev_kv ? 1 : 0) | (put.ignore_value ? 2 : 0) | (put.ignore_lease ? 4 : 0);
  out.push_back(static_cast<char>(flags));
  put_u64(out, static_cast<std::uint64_t>(put.lease));
  put_u32(out, static_cast<std::uint32_t>(put.key.size()));
  out += put.key;
  put_u32(out, static_cast<std::uint32_t>(put.value.size()));
  out += put.value;
  return out;
}

std::optional<put_entry> decode_put_entry(std::string_view data) {
  if (data.size() < 2 + 8 + 4) return std::nullopt;
  if (static_cast<std::uint8_t>(data[0]) != entry_kind_put) return std::nullopt;
  std::uint8_t flags = static_cast<std::uint8_t>(data[1]);
  if (flags & ~7u) return std::nullopt;
  put_entry put;
  put.prev_kv = flags & 1;
  put.ignore_value = flags & 2;
  put.ignore_lease = flags & 4;
  put.lease = static_cast<std::int64_t>(get_le(data, 2, 8));
  std::size_t at = 10;
  std::uint64_t key_bytes = get_le(data, at, 4);
  at += 4;
  if (data.size() - at < key_bytes + 4) return std::nullopt;
  put.key.assign(data.substr(at, key_bytes));
  at += key_bytes;
  std::uint64_t value_bytes = get_le(data, at, 4);
  at += 4;
  if (data.size() - at != value_bytes) return std::nullopt;
  put.value.assign(data.substr(at, value_bytes));
  return put;
}

}  // namespace keel::kv_module
