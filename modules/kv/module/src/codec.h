// codec.h — the kv module's small encodings: base64 (the v3 gateway's bytes fields) and
// the WAL entry that records one put.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/kv/mvcc.h"

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

// A delete_range as a WAL entry (little-endian, strings are u32 length + bytes):
//   u8 kind = 2 | u8 flags (1 prev_kv) | key | range_end
inline constexpr std::uint8_t entry_kind_delete = 2;
std::string encode_delete_entry(const kv::delete_range_request& request);

// A whole txn request (so replay recomputes the same compare outcome and applies the
// same branch):
//   u8 kind = 3 | u32 compares | compare... | u32 success ops | op... | u32 failure ops | op...
//   compare = u8 result | u8 target | key | range_end | i64 number | value
//   op      = u8 0 (range) | key | range_end | i64 limit | i64 revision | u8 sort_order
//               | u8 sort_target | u8 flags (1 keys_only, 2 count_only)
//               | i64 min_mod | i64 max_mod | i64 min_create | i64 max_create
//           | u8 1 (put) | u8 flags (as a put entry) | i64 lease | key | value
//           | u8 2 (delete) | u8 flags (1 prev_kv) | key | range_end
// (mvcc's own enum numbers for result / target / order.)
inline constexpr std::uint8_t entry_kind_txn = 3;
// The same body as kind 3, applied with etcd's lease rule: only the puts on the path the
// compares choose must name an existing lease. Kind 3's rule is every put of both
// branches (keel before 2026-11-30): a txn is logged as kind 8 only when that older rule
// would refuse it, so a keeld from before kind 8 stops on it ("cannot be applied")
// instead of applying it differently from the other members.
inline constexpr std::uint8_t entry_kind_txn_leases_on_path = 8;
std::string encode_txn_entry(const kv::txn_request& request, bool leases_on_path = false);

// A compaction: u8 kind = 4 | u8 flags (1 physical) | i64 revision
inline constexpr std::uint8_t entry_kind_compact = 4;
std::string encode_compact_entry(std::int64_t revision, bool physical);

// A lease grant: u8 kind = 5 | i64 id | i64 ttl (seconds, already clamped to the minimum)
inline constexpr std::uint8_t entry_kind_lease_grant = 5;
std::string encode_lease_grant_entry(std::int64_t id, std::int64_t ttl);

// A lease revoke: u8 kind = 6 | u8 flags (1 expired: the owner's timer, not a client) | i64 id
inline constexpr std::uint8_t entry_kind_lease_revoke = 6;
std::string encode_lease_revoke_entry(std::int64_t id, bool expired);

// What etcd's v2 watchers see of a v2 write that MVCC does not record (v2.h
// revision_note): the action, whether it only refreshed a TTL, and the TTLs shown.
struct v2_note_fields {
  std::uint8_t action = 0;  // v2::action's value
  bool refresh = false;
  std::int64_t node_expiration_ns = 0;
  std::int64_t node_ttl = 0;
  std::int64_t previous_expiration_ns = 0;
  std::int64_t previous_ttl = 0;
};

// A v2 write's entry carrying its note, so every member applying it, and every replay,
// shows v2 watchers etcd's action (not one derived from MVCC):
//   u8 kind = 7 | u8 action | u8 flags (1 refresh) | i64 node_expiration_ns | i64 node_ttl
//   | i64 previous_expiration_ns | i64 previous_ttl | the entry itself (any other kind)
inline constexpr std::uint8_t entry_kind_v2_noted = 7;
std::string encode_v2_noted_entry(const v2_note_fields& note, std::string_view inner);

// Any entry, decoded; `kind` says which member is meaningful.
struct wal_entry {
  std::uint8_t kind = 0;
  put_entry put;
  kv::delete_range_request delete_range;
  kv::txn_request txn;
  bool txn_leases_on_path = false;  // kind 8, decoded as entry_kind_txn
  std::int64_t compact_revision = 0;
  bool physical = false;
  std::int64_t lease_id = 0;   // lease grant / revoke
  std::int64_t lease_ttl = 0;  // lease grant
  bool lease_expired = false;  // lease revoke
  // Set when the entry came wrapped as entry_kind_v2_noted (`kind` is the inner one's):
  // the note belongs to the first revision the entry makes.
  std::optional<v2_note_fields> v2_note;
};
// nullopt when the bytes are not a well-formed entry of a known kind.
std::optional<wal_entry> decode_entry(std::string_view data);

}  // namespace keel::kv_module
