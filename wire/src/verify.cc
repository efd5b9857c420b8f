// verify.cc — the type registry and verify-on-receive.
//
// This is the one place that maps a frame type number to a generated root table. Adding a
// message type means one row in kinds[] (and the enum, and frame.md's registry).
#include <flatbuffers/flatbuffers.h>

#include <cinttypes>

#include "keel/wire/common_generated.h"
#include "keel/wire/echo_generated.h"
#include "keel/wire/frame.h"
#include "keel/wire/health_generated.h"
#include "keel/wire/kv_generated.h"
#include "keel/wire/raft_generated.h"
#include "text.h"

namespace keel::wire {
namespace {

using detail::format;

template <typename root_table>
bool verify_root(const std::uint8_t* data, std::size_t size) noexcept {
  flatbuffers::Verifier::Options options;
  options.max_depth = limits::flatbuffers_depth_max;
  options.max_tables = limits::flatbuffers_tables_max;
  options.check_alignment = true;
  options.check_nested_flatbuffers = true;
  flatbuffers::Verifier verifier(data, size, options);
  return verifier.VerifyBuffer<root_table>(nullptr);
}

struct type_kind {
  frame_type type;
  const char* name;
  const char* root_table;
  bool (*verify)(const std::uint8_t* data, std::size_t size) noexcept;
};

constexpr type_kind kinds[] = {
    {frame_type::error, "error", "keel.wire.Error", verify_root<Error>},
    {frame_type::envelope, "envelope", "keel.wire.Envelope", verify_root<Envelope>},
    {frame_type::health_request, "health_request", "keel.wire.HealthRequest",
     verify_root<HealthRequest>},
    {frame_type::health_response, "health_response", "keel.wire.HealthResponse",
     verify_root<HealthResponse>},
    {frame_type::echo_request, "echo_request", "keel.wire.EchoRequest",
     verify_root<EchoRequest>},
    {frame_type::echo_response, "echo_response", "keel.wire.EchoResponse",
     verify_root<EchoResponse>},
    {frame_type::range_request, "range_request", "keel.wire.RangeRequest", verify_root<RangeRequest>},
    {frame_type::range_response, "range_response", "keel.wire.RangeResponse", verify_root<RangeResponse>},
    {frame_type::put_request, "put_request", "keel.wire.PutRequest", verify_root<PutRequest>},
    {frame_type::put_response, "put_response", "keel.wire.PutResponse", verify_root<PutResponse>},
    {frame_type::delete_range_request, "delete_range_request", "keel.wire.DeleteRangeRequest", verify_root<DeleteRangeRequest>},
    {frame_type::delete_range_response, "delete_range_response", "keel.wire.DeleteRangeResponse", verify_root<DeleteRangeResponse>},
    {frame_type::txn_request, "txn_request", "keel.wire.TxnRequest", verify_root<TxnRequest>},
    {frame_type::txn_response, "txn_response", "keel.wire.TxnResponse", verify_root<TxnResponse>},
    {frame_type::compaction_request, "compaction_request", "keel.wire.CompactionRequest", verify_root<CompactionRequest>},
    {frame_type::compaction_response, "compaction_response", "keel.wire.CompactionResponse", verify_root<CompactionResponse>},
    {frame_type::lease_grant_request, "lease_grant_request", "keel.wire.LeaseGrantRequest", verify_root<LeaseGrantRequest>},
    {frame_type::lease_grant_response, "lease_grant_response", "keel.wire.LeaseGrantResponse", verify_root<LeaseGrantResponse>},
    {frame_type::lease_revoke_request, "lease_revoke_request", "keel.wire.LeaseRevokeRequest", verify_root<LeaseRevokeRequest>},
    {frame_type::lease_revoke_response, "lease_revoke_response", "keel.wire.LeaseRevokeResponse", verify_root<LeaseRevokeResponse>},
    {frame_type::lease_keepalive_request, "lease_keepalive_request", "keel.wire.LeaseKeepAliveRequest", verify_root<LeaseKeepAliveRequest>},
    {frame_type::lease_keepalive_response, "lease_keepalive_response", "keel.wire.LeaseKeepAliveResponse", verify_root<LeaseKeepAliveResponse>},
    {frame_type::lease_time_to_live_request, "lease_time_to_live_request", "keel.wire.LeaseTimeToLiveRequest", verify_root<LeaseTimeToLiveRequest>},
    {frame_type::lease_time_to_live_response, "lease_time_to_live_response", "keel.wire.LeaseTimeToLiveResponse", verify_root<LeaseTimeToLiveResponse>},
    {frame_type::lease_leases_request, "lease_leases_request", "keel.wire.LeaseLeasesRequest", verify_root<LeaseLeasesRequest>},
    {frame_type::lease_leases_response, "lease_leases_response", "keel.wire.LeaseLeasesResponse", verify_root<LeaseLeasesResponse>},
    {frame_type::watch_create_request, "watch_create_request", "keel.wire.WatchCreateRequest", verify_root<WatchCreateRequest>},
    {frame_type::watch_response, "watch_response", "keel.wire.WatchResponse", verify_root<WatchResponse>},
    {frame_type::watch_cancel_request, "watch_cancel_request", "keel.wire.WatchCancelRequest", verify_root<WatchCancelRequest>},
    {frame_type::watch_cancel_response, "watch_cancel_response", "keel.wire.WatchCancelResponse", verify_root<WatchCancelResponse>},
    {frame_type::raft_message, "raft_message", "keel.wire.RaftMessage", verify_root<RaftMessage>},
    {frame_type::raft_proposal, "raft_proposal", "keel.wire.RaftProposal", verify_root<RaftProposal>},
    {frame_type::raft_proposal_result, "raft_proposal_result", "keel.wire.RaftProposalResult", verify_root<RaftProposalResult>},
    {frame_type::raft_snapshot_chunk, "raft_snapshot_chunk", "keel.wire.RaftSnapshotChunk", verify_root<RaftSnapshotChunk>},
};

const type_kind* find_kind(frame_type type) noexcept {
  for (const type_kind& kind : kinds) {
    if (kind.type == type) return &kind;
  }
  return nullptr;
}

unsigned number(frame_type type) noexcept { return static_cast<unsigned>(type); }

status unknown_type(frame_type type) {
  return status(errc::invalid_argument, format("unknown frame type %u", number(type)));
}

// The envelope is verified; now its inner payload, as its own type.
status verify_envelope_contents(const std::uint8_t* data) noexcept {
  const Envelope* envelope = flatbuffers::GetRoot<Envelope>(data);
  if ((envelope->flags() & frame_flags::reserved) != 0) {
    return status(errc::invalid_argument,
                  format("envelope sets reserved flag bits 0x%02X", envelope->flags()));
  }
  auto inner_type = static_cast<frame_type>(envelope->type());
  if (inner_type == frame_type::envelope) {
    return status(errc::invalid_argument, "an envelope may not carry another envelope");
  }
  if (find_kind(inner_type) == nullptr) {
    return status(errc::invalid_argument,
                  format("envelope carries unknown frame type %u", number(inner_type)));
  }
  const flatbuffers::Vector<std::uint8_t>* payload = envelope->payload();
  const std::uint8_t* inner = payload != nullptr ? payload->data() : nullptr;
  std::size_t inner_bytes = payload != nullptr ? payload->size() : 0;
  if (inner != nullptr && (inner - data) % frame_alignment_bytes != 0) {
    return status(errc::corruption,
                  format("envelope payload (type %u) is not 8-byte aligned", number(inner_type)));
  }
  bool inner_is_error = (envelope->flags() & frame_flags::error) != 0;
  status verified = verify_payload(inner_is_error ? frame_type::error : inner_type, inner,
                                   inner_bytes);
  if (!verified) return status(verified.code(), "envelope payload: " + verified.message());
  return status::ok();
}

}  // namespace

const char* frame_type_name(frame_type type) noexcept {
  const type_kind* kind = find_kind(type);
  return kind != nullptr ? kind->name : nullptr;
}

const char* frame_root_table_name(frame_type type) noexcept {
  const type_kind* kind = find_kind(type);
  return kind != nullptr ? kind->root_table : nullptr;
}

status verify_payload(frame_type type, const std::uint8_t* data, std::size_t size) noexcept {
  KEEL_ASSERT(size == 0 ||
              reinterpret_cast<std::uintptr_t>(data) % frame_alignment_bytes == 0);
  const type_kind* kind = find_kind(type);
  if (kind == nullptr) return unknown_type(type);
  if (!kind->verify(data, size)) {
    return status(errc::corruption,
                  format("payload of %zu bytes failed the FlatBuffers verifier for %s "
                         "(type %u)",
                         size, kind->root_table, number(type)));
  }
  if (type == frame_type::envelope) return verify_envelope_contents(data);
  return status::ok();
}

status verify_frame(const frame_header& header, const std::uint8_t* payload) noexcept {
  if (number(header.type) == 0) {
    return status(errc::invalid_argument, "frame type 0 is reserved");
  }
  if ((header.flags & frame_flags::reserved) != 0) {
    return status(errc::invalid_argument,
                  format("bad flags 0x%02X: reserved bits set", header.flags));
  }
  if (header.is_error() && !header.end_of_stream()) {
    return status(errc::invalid_argument,
                  format("bad flags 0x%02X: error without end_of_stream", header.flags));
  }
  if (header.type == frame_type::error && !header.is_error()) {
    return status(errc::invalid_argument,
                  format("bad flags 0x%02X: type error without the error flag", header.flags));
  }
  if (find_kind(header.type) == nullptr) return unknown_type(header.type);
  frame_type root = header.is_error() ? frame_type::error : header.type;
  return verify_payload(root, payload, header.payload_bytes);
}

}  // namespace keel::wire
