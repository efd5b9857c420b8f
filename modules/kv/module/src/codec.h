// codec.h — the kv module's small encodings: base64 (the v3 gateway's bytes fields) and
// the WAL entry that records one put.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel::kv_module {

// Standard base64 with padding (Go's encoding/json for []byte).
std::string base64_encode(std::string_view bytes);
// Accepts the standard and the URL-safe alphabet, with or without padding (grpc-gateway
// accepts both). nullopt when the text is not base64.
std::optional<std::string> base64_decode(std::string_view text);

// One put as a WAL entry's data (little-endian):
//   u8 kind = 1 (put) | u8 flags (1 prev_kv, 2 ignore_value, 4 ignore_lease)
//   | i64 lease | u32 key bytes | key | u32 value bytes | value
// Replaying the log applies the same puts in the same order, so revisions come back
// identical; a put that failed when it was served fails again on replay.
struct put_entry {
  std::string key;
  std::string value;
  std::int64_t lease = 0;
  bool prev_kv = false;
  bool ignore_value = false;
  bool ignore_lease = false;
};
inline constexpr std::uint8_t entry_kind_put = 1;
std::string encode_put_entry(const put_entry& put);
// nullopt when the bytes are not a well-formed put entry.
std::optional<put_entry> decode_put_entry(std::string_view data);

}  // namespace keel::kv_module
