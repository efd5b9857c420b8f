// keel/kv/native_codec.h — the kv API's native frames (kv.fbs, types 100-123) to and from
// C++ values, for both ends: the client encodes requests and decodes responses, the kv
// module decodes requests and encodes responses. One codec, so both ends agree by
// construction. keel-bench's keel target and keelctl use it too.
//
// Formats: docs/formats/frame.md (frames) and wire/schemas/kv.fbs (payloads), which mirror
// etcd's rpc.proto. Values are the store's own types (keel/kv/mvcc.h): a put_request
// encodes to a PutRequest and decodes back to an equal put_request.
//
// Pure: no I/O, no clock, no allocation beyond the values and the builder. Thread-safe
// (no shared state). Every decode_* takes a table the FlatBuffers Verifier has already
// accepted (wire::frame_decoder verifies every frame; verify_payload() for other sources).
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keel/kv/mvcc.h"
#include "keel/status.h"
#include "keel/wire/common_generated.h"
#include "keel/wire/frame.h"
#include "keel/wire/kv_generated.h"

namespace keel::kv::native {

// ---- values that have no store type ---------------------------------------------------------

// etcd's ResponseHeader. Nested txn responses carry only `revision` (as etcd).
struct response_header {
  std::uint64_t cluster_id = 0;
  std::uint64_t member_id = 0;
  std::int64_t revision = 0;
  std::uint64_t raft_term = 0;
  bool operator==(const response_header&) const = default;
};

// Responses as a client sees them: the store's result plus the header. (`revision` of
// the store result and header.revision are the same number.)
struct range_response : range_result {
  response_header header;
};
struct put_response : put_result {  // events stay empty
  response_header header;
};
struct delete_range_response : delete_range_result {  // events stay empty
  response_header header;
};
struct txn_response : txn_result {  // events stay empty
  response_header header;
};
struct compaction_response {
  response_header header;
};
struct lease_grant_response {
  response_header header;
  std::int64_t id = 0;
  std::int64_t ttl = 0;
  std::string error;
};
struct lease_revoke_response {
  response_header header;
};
struct lease_keep_alive_response {
  response_header header;
  std::int64_t id = 0;
  std::int64_t ttl = 0;  // <= 0: the lease has expired or never existed
};
struct lease_time_to_live_response {
  response_header header;
  std::int64_t id = 0;
  std::int64_t ttl = 0;  // -1: expired or never granted
  std::int64_t granted_ttl = 0;
  std::vector<std::string> keys;
};
struct lease_leases_response {
  response_header header;
  std::vector<std::int64_t> ids;
};

// WatchCreateRequest (etcd's fields; filters as two flags).
struct watch_create_request {
  std::string key;
  std::string range_end;
  std::int64_t start_revision = 0;  // <= 0: from the next write
  bool progress_notify = false;
  bool no_put = false;
  bool no_delete = false;
  bool prev_kv = false;
  std::int64_t watch_id = 0;  // 0: the server picks
  bool fragment = false;
  bool operator==(const watch_create_request&) const = default;
};

// A WatchResponse without its events (what the server states about the watch).
struct watch_status {
  std::int64_t watch_id = 0;
  bool created = false;
  bool canceled = false;
  std::int64_t compact_revision = 0;
  std::string cancel_reason;
  bool fragment = false;
};
struct watch_response : watch_status {
  response_header header;
  std::vector<event> events;
  // etcd's IsProgressNotify: nothing but a header.
  bool is_progress_notify() const noexcept {
    return events.empty() && !created && !canceled && compact_revision == 0 && header.revision != 0;
  }
};
struct watch_cancel_response {
  response_header header;
};

// A keel.wire.Error payload: keel's code, etcd's gRPC code (0 if none), the message.
struct error_payload {
  std::uint16_t code = 0;
  std::uint16_t grpc_code = 0;
  std::string message;
};

// ---- frames ---------------------------------------------------------------------------------

// Appends `builder`'s finished buffer as one frame (request: end_of_stream) to `out`.
// errc::too_large when it does not fit in a frame (nothing is appended).
status append_request(std::string& out, wire::frame_type type, std::uint64_t request_id,
                      const flatbuffers::FlatBufferBuilder& builder);
// The response type of a request type (request + 1, frame.md).
constexpr wire::frame_type response_type_of(wire::frame_type request) noexcept {
  return static_cast<wire::frame_type>(static_cast<std::uint16_t>(request) + 1);
}

// ---- requests: encode (client side) -----------------------------------------------------------
// Each clears `b` and leaves it finished with the request as root.

void encode(flatbuffers::FlatBufferBuilder& b, const range_request& request, bool serializable = false);
void encode(flatbuffers::FlatBufferBuilder& b, const put_request& request);
// The hot path of a load generator: a put without copying key and value into a request.
void encode_put(flatbuffers::FlatBufferBuilder& b, std::string_view key, std::string_view value,
                std::int64_t lease = 0);
void encode(flatbuffers::FlatBufferBuilder& b, const delete_range_request& request);
void encode(flatbuffers::FlatBufferBuilder& b, const txn_request& request);
void encode_compaction(flatbuffers::FlatBufferBuilder& b, std::int64_t revision, bool physical);
void encode_lease_grant(flatbuffers::FlatBufferBuilder& b, std::int64_t ttl_seconds, std::int64_t id);
void encode_lease_revoke(flatbuffers::FlatBufferBuilder& b, std::int64_t id);
void encode_lease_keep_alive(flatbuffers::FlatBufferBuilder& b, std::int64_t id);
void encode_lease_time_to_live(flatbuffers::FlatBufferBuilder& b, std::int64_t id, bool keys);
void encode_lease_leases(flatbuffers::FlatBufferBuilder& b);
void encode(flatbuffers::FlatBufferBuilder& b, const watch_create_request& request);
void encode_watch_cancel(flatbuffers::FlatBufferBuilder& b, std::int64_t watch_id);

// ---- requests: decode (server side) -----------------------------------------------------------
// errc::invalid_argument for what a verified buffer can still get wrong: an enum value
// outside its range, a Compare whose target names no field, a txn op without a request
// (NONE, or a body type whose table is absent, which the Verifier lets through).
// A nested txn decodes (recursively); one nested deeper than mvcc_txn_depth_max is
// errc::too_large, "too many operations" (the Verifier's own depth limit, 64 tables,
// refuses far shallower frames first).

result<range_request> decode(const wire::RangeRequest& request);
put_request decode(const wire::PutRequest& request);
delete_range_request decode(const wire::DeleteRangeRequest& request);
result<txn_request> decode(const wire::TxnRequest& request);
result<watch_create_request> decode(const wire::WatchCreateRequest& request);

// ---- responses: encode (server side) ----------------------------------------------------------

void encode_range_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                           const range_result& result);
void encode_put_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                         const put_result& result);
void encode_delete_range_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                                  const delete_range_result& result);
// Nested responses get a header with only their own revision (as etcd).
void encode_txn_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                         const txn_result& result);
void encode_compaction_response(flatbuffers::FlatBufferBuilder& b, const response_header& header);
void encode_lease_grant_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                                 std::int64_t id, std::int64_t ttl, std::string_view error = {});
void encode_lease_revoke_response(flatbuffers::FlatBufferBuilder& b, const response_header& header);
void encode_lease_keep_alive_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                                      std::int64_t id, std::int64_t ttl);
void encode_lease_time_to_live_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                                        std::int64_t id, std::int64_t ttl, std::int64_t granted_ttl,
                                        std::span<const std::string> keys);
void encode_lease_leases_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                                  std::span<const std::int64_t> ids);
// `events` in revision order; each event's prev_kv is written only when `prev_kv`.
void encode_watch_response(flatbuffers::FlatBufferBuilder& b, const response_header& header,
                           const watch_status& state, std::span<const event* const> events,
                           bool prev_kv);
void encode_watch_cancel_response(flatbuffers::FlatBufferBuilder& b, const response_header& header);
// A keel.wire.Error; the message is cut to wire::error_message_bytes_max bytes (at a UTF-8
// character boundary).
void encode_error(flatbuffers::FlatBufferBuilder& b, errc code, std::uint16_t grpc_code,
                  std::string_view message);

// Bytes one event takes in an encoded WatchResponse, roughly (to split large batches).
std::size_t encoded_event_bytes(const event& e, bool prev_kv) noexcept;

// ---- responses: decode (client side) ----------------------------------------------------------

response_header decode(const wire::ResponseHeader* header);
range_response decode(const wire::RangeResponse& response);
put_response decode(const wire::PutResponse& response);
delete_range_response decode(const wire::DeleteRangeResponse& response);
txn_response decode(const wire::TxnResponse& response);
compaction_response decode(const wire::CompactionResponse& response);
lease_grant_response decode(const wire::LeaseGrantResponse& response);
lease_keep_alive_response decode(const wire::LeaseKeepAliveResponse& response);
lease_time_to_live_response decode(const wire::LeaseTimeToLiveResponse& response);
lease_leases_response decode(const wire::LeaseLeasesResponse& response);
watch_response decode(const wire::WatchResponse& response);
error_payload decode(const wire::Error& error);

lease_revoke_response decode(const wire::LeaseRevokeResponse& response);
watch_cancel_response decode(const wire::WatchCancelResponse& response);

// Decodes a verified frame payload into the response `out` is: errc::invalid_argument
// ("expected a put_response frame, got type 105") when `type` is not that response's.
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, range_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, put_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, delete_range_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, txn_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, compaction_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, lease_grant_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, lease_revoke_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, lease_keep_alive_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, lease_time_to_live_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, lease_leases_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, watch_response& out);
status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, watch_cancel_response& out);

}  // namespace keel::kv::native
