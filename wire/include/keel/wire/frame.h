// keel/wire/frame.h — the native frame: encode, decode incrementally, verify.
//
// The format is written down in docs/formats/frame.md; read it first. In short: a 24-byte
// little-endian header (magic, version, flags, type, request id, payload length, CRC-32C)
// followed by one FlatBuffers buffer and zero padding to a multiple of 8 bytes.
//
// Invariants this header keeps:
//   - every frame is checksummed when it is encoded (append_frame, encode_frame_header)
//     and checked when it is decoded;
//   - frame_decoder hands out only frames whose CRC matched and whose payload passed the
//     FlatBuffers Verifier for its type, so nothing reads an unverified payload;
//   - payloads handed out are 8-byte aligned in memory.
//
// Shard model: nothing here is shared. A frame_decoder belongs to one connection and so to
// the shard that owns the connection. The free functions are thread-safe.
//
// The generated message headers (keel/wire/<schema>_generated.h) are not included here;
// code that builds or reads messages includes the one it needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "keel/limits.h"
#include "keel/status.h"
#include "keel/wire/crc32c.h"

namespace keel::wire {

// ---- Constants (frame.md "Layout") -------------------------------------------------------

// The bytes C7 4B 45 4C ("\xC7KEL") read as a little-endian u32. 0xC7 is not ASCII, so a
// frame can never be mistaken for an HTTP request line on the shared client port.
inline constexpr std::uint32_t frame_magic = 0x4C454BC7;
inline constexpr std::uint8_t frame_magic_first_byte = 0xC7;
inline constexpr std::uint8_t frame_version = 1;
inline constexpr std::size_t frame_header_bytes = 24;
inline constexpr std::size_t frame_alignment_bytes = 8;
// A whole frame (header + payload + padding) is at most limits::frame_bytes_max.
inline constexpr std::uint32_t frame_payload_bytes_max =
    limits::frame_bytes_max - static_cast<std::uint32_t>(frame_header_bytes);
// Error.message is cut to this many bytes by append_error_frame().
inline constexpr std::size_t error_message_bytes_max = 1024;

static_assert(frame_header_bytes % frame_alignment_bytes == 0);
static_assert(limits::frame_bytes_max % frame_alignment_bytes == 0,
              "padding must never push a legal payload past the frame limit");
static_assert(limits::http_body_bytes_max <= frame_payload_bytes_max);
static_assert(error_message_bytes_max < frame_payload_bytes_max);

// Flag bits (frame.md "Flags").
namespace frame_flags {
inline constexpr std::uint8_t none = 0x00;
inline constexpr std::uint8_t end_of_stream = 0x01;  // last frame for this request id
inline constexpr std::uint8_t error = 0x02;          // payload is keel.wire.Error; implies end_of_stream
inline constexpr std::uint8_t reserved = 0xFC;       // must be zero in version 1
}  // namespace frame_flags

// The type registry (frame.md "Type registry"): which root table a payload holds. Ranges
// 100-199 kv, 200-299 raft, 300-399 discovery, 400-499 scheduler, 500-599 locks are
// reserved for those modules. A number never changes meaning.
enum class frame_type : std::uint16_t {
  error = 1,             // keel.wire.Error (connection-level errors; request id 0)
  envelope = 2,          // keel.wire.Envelope (bus message between nodes)
  health_request = 10,   // keel.wire.HealthRequest
  health_response = 11,  // keel.wire.HealthResponse
  echo_request = 20,     // keel.wire.EchoRequest
  echo_response = 21,    // keel.wire.EchoResponse
  range_request = 100,        // keel.wire.RangeRequest (kv.fbs)
  range_response = 101,       // keel.wire.RangeResponse (kv.fbs)
  put_request = 102,          // keel.wire.PutRequest (kv.fbs)
  put_response = 103,         // keel.wire.PutResponse (kv.fbs)
  delete_range_request = 104, // keel.wire.DeleteRangeRequest (kv.fbs)
  delete_range_response = 105, // keel.wire.DeleteRangeResponse (kv.fbs)
  txn_request = 106,          // keel.wire.TxnRequest (kv.fbs)
  txn_response = 107,         // keel.wire.TxnResponse (kv.fbs)
  compaction_request = 108,   // keel.wire.CompactionRequest (kv.fbs)
  compaction_response = 109,  // keel.wire.CompactionResponse (kv.fbs)
  lease_grant_request = 110,  // keel.wire.LeaseGrantRequest (kv.fbs)
  lease_grant_response = 111, // keel.wire.LeaseGrantResponse (kv.fbs)
  lease_revoke_request = 112, // keel.wire.LeaseRevokeRequest (kv.fbs)
  lease_revoke_response = 113, // keel.wire.LeaseRevokeResponse (kv.fbs)
  lease_keepalive_request = 114, // keel.wire.LeaseKeepAliveRequest (kv.fbs)
  lease_keepalive_response = 115, // keel.wire.LeaseKeepAliveResponse (kv.fbs)
  lease_time_to_live_request = 116,  // keel.wire.LeaseTimeToLiveRequest (kv.fbs)
  lease_time_to_live_response = 117, // keel.wire.LeaseTimeToLiveResponse (kv.fbs)
  lease_leases_request = 118,   // keel.wire.LeaseLeasesRequest (kv.fbs)
  lease_leases_response = 119,  // keel.wire.LeaseLeasesResponse (kv.fbs)
  watch_create_request = 120, // keel.wire.WatchCreateRequest (kv.fbs)
  watch_response = 121,       // keel.wire.WatchResponse (kv.fbs)
  watch_cancel_request = 122, // keel.wire.WatchCancelRequest (kv.fbs)
  watch_cancel_response = 123, // keel.wire.WatchCancelResponse (kv.fbs)
  raft_message = 200,          // keel.wire.RaftMessage (raft.fbs), peer port only
  raft_proposal = 201,         // keel.wire.RaftProposal (raft.fbs), peer port only
  raft_proposal_result = 202,  // keel.wire.RaftProposalResult (raft.fbs), peer port only
  raft_snapshot_chunk = 203,   // keel.wire.RaftSnapshotChunk (raft.fbs), peer port only
};

// "echo_request", or nullptr when `type` is not in the registry.
const char* frame_type_name(frame_type type) noexcept;
// The fully qualified root table, "keel.wire.EchoRequest", or nullptr when unknown.
const char* frame_root_table_name(frame_type type) noexcept;

// Zero bytes that follow a payload of `payload_bytes` so the frame ends 8-byte aligned.
constexpr std::size_t frame_padding_bytes(std::size_t payload_bytes) noexcept {
  return (frame_alignment_bytes - payload_bytes % frame_alignment_bytes) % frame_alignment_bytes;
}
// Bytes a frame with this payload occupies on the wire.
constexpr std::size_t frame_total_bytes(std::size_t payload_bytes) noexcept {
  return frame_header_bytes + payload_bytes + frame_padding_bytes(payload_bytes);
}

// ---- Header ------------------------------------------------------------------------------

// A parsed header: the fields as numbers, not the memory layout (that is frame.md's).
struct frame_header {
  std::uint32_t magic = frame_magic;
  std::uint8_t version = frame_version;
  std::uint8_t flags = frame_flags::none;
  frame_type type = frame_type::error;
  std::uint64_t request_id = 0;
  std::uint32_t payload_bytes = 0;
  std::uint32_t crc = 0;

  bool end_of_stream() const noexcept { return (flags & frame_flags::end_of_stream) != 0; }
  bool is_error() const noexcept { return (flags & frame_flags::error) != 0; }
};

// Reads the 24 header bytes at `data` without checking anything.
// REQUIRES: data points at frame_header_bytes readable bytes.
frame_header parse_frame_header(const std::uint8_t* data) noexcept;

// Writes the 24 header bytes of a frame into `out`, CRC included. The caller sends `out`,
// the payload, then frame_padding_bytes(size) zero bytes (e.g. with one writev, without
// copying the payload). REQUIRES: size <= frame_payload_bytes_max; `flags` has no reserved
// bit; the error flag only together with end_of_stream; type error only with the error
// flag. These are programmer errors and stop the process.
void encode_frame_header(std::uint8_t* out, frame_type type, std::uint64_t request_id,
                         std::uint8_t flags, const void* payload, std::size_t size) noexcept;

// Appends one whole frame (header, payload, padding) to `out`. Same REQUIRES as
// encode_frame_header except the size: a payload larger than frame_payload_bytes_max
// appends nothing and returns errc::too_large, so the caller can answer with an error
// frame instead.
status append_frame(std::string& out, frame_type type, std::uint64_t request_id,
                    std::uint8_t flags, const void* payload, std::size_t size);
inline status append_frame(std::string& out, frame_type type, std::uint64_t request_id,
                           std::uint8_t flags, std::span<const std::uint8_t> payload) {
  return append_frame(out, type, request_id, flags, payload.data(), payload.size());
}

// Appends an error frame: flags error | end_of_stream, payload keel.wire.Error{code =
// failure.code(), message = failure.message() cut to error_message_bytes_max bytes}.
// `type` is the response type the request expected, or frame_type::error with request id
// 0 for a connection-level error. REQUIRES: !failure.is_ok().
void append_error_frame(std::string& out, frame_type type, std::uint64_t request_id,
                        const status& failure);

// ---- Telling frames from HTTP on a shared port -------------------------------------------

// True when the first min(size, 4) bytes of a connection are the frame magic's first
// bytes, i.e. the connection speaks frames rather than HTTP. One byte is enough to decide
// (0xC7 never starts an HTTP request); more bytes only make a "true" more certain.
// REQUIRES: size >= 1.
bool looks_like_frame(const void* data, std::size_t size) noexcept;

// ---- Verify-on-receive -------------------------------------------------------------------

// Runs the FlatBuffers Verifier over [data, data + size) for the root table of `type`,
// with limits::flatbuffers_depth_max and limits::flatbuffers_tables_max and alignment
// checks. An envelope's inner payload is verified too, as its own type (an envelope may
// not nest an envelope). Returns
//   errc::invalid_argument  `type` is not in the registry (the message names the number);
//   errc::corruption        the Verifier refused the buffer (the message names the table).
// REQUIRES: data is 8-byte aligned (frame_decoder's payloads are), or size == 0.
status verify_payload(frame_type type, const std::uint8_t* data, std::size_t size) noexcept;

// verify_payload for a frame's payload, honouring the error flag (its payload is always a
// keel.wire.Error) and checking the header rules frame.md lists after the CRC (reserved
// flags, error implies end_of_stream, type error implies the error flag, type 0).
// Errors as verify_payload, and errc::invalid_argument for a header rule.
status verify_frame(const frame_header& header, const std::uint8_t* payload) noexcept;

// ---- Incremental decoder -----------------------------------------------------------------

// One decoded frame. `payload` points into the decoder's buffer and stays valid until the
// next call to that decoder's feed() or next(); copy what must live longer.
struct frame_view {
  frame_header header;
  std::span<const std::uint8_t> payload;  // verified; 8-byte aligned; padding excluded
  std::uint64_t stream_offset = 0;        // where the frame started in the byte stream
};

// What frame_decoder::next() found: more bytes are needed, a frame, or an error.
class decoded {
 public:
  enum class kind : std::uint8_t { need_more, frame, error };

  static decoded need_more() noexcept { return decoded(); }
  static decoded of_frame(const frame_view& frame) noexcept;
  static decoded of_error(status failure);  // REQUIRES: !failure.is_ok()

  kind what() const noexcept { return _kind; }
  bool is_need_more() const noexcept { return _kind == kind::need_more; }
  bool is_frame() const noexcept { return _kind == kind::frame; }
  bool is_error() const noexcept { return _kind == kind::error; }
  // REQUIRES: is_frame().
  const frame_view& frame() const noexcept;
  // REQUIRES: is_error().
  const status& error() const noexcept;

 private:
  decoded() noexcept = default;
  kind _kind = kind::need_more;
  frame_view _frame;
  status _error;
};

// Splits one connection's byte stream into verified frames.
//
// Feed it what recv() returned, then call next() until it says need_more. Each frame is
// checked in frame.md's order (magic, version, length, CRC-32C, header rules, padding,
// Verifier); the first failure puts the decoder in the error state for good and every
// later next() returns the same error. Its message starts "frame at stream offset N: ".
// The owner then sends an error frame (append_error_frame with frame_type::error and
// request id 0) if it can, and closes the connection.
//
// Memory: the buffer grows as frames need it, up to capacity_bytes (one largest frame plus
// one receive buffer), and is released when it empties after holding a large frame. A
// connection that sends nothing costs no buffer at all.
class frame_decoder {
 public:
  // One largest frame plus one receive buffer's worth of the next frame.
  static constexpr std::size_t capacity_bytes =
      limits::frame_bytes_max + limits::recv_buffer_bytes;

  frame_decoder() noexcept = default;
  frame_decoder(frame_decoder&&) noexcept = default;
  frame_decoder& operator=(frame_decoder&&) noexcept = default;
  frame_decoder(const frame_decoder&) = delete;
  frame_decoder& operator=(const frame_decoder&) = delete;

  // Appends up to capacity_bytes - buffered_bytes() of [data, data + size) and returns
  // how many bytes it took. Fewer than `size` only when a whole frame (or an error) is
  // already buffered: call next() and offer the rest again. Feeding each recv() after
  // next() said need_more always takes everything (a recv is <= recv_buffer_bytes). In
  // the error state it takes everything and keeps nothing. Invalidates the last frame_view.
  [[nodiscard]] std::size_t feed(const void* data, std::size_t size);

  // The next verified frame, need_more, or the error. Invalidates the last frame_view.
  decoded next();

  // The peer closed the connection. Returns ok when the stream ended on a frame boundary;
  // otherwise errc::corruption "frame at stream offset N: truncated: the stream ended
  // after X of Y bytes". In the error state, returns that error. REQUIRES: next() has been
  // called until it did not return a frame, so that whole frames are not mistaken for a
  // torn one.
  status finish() const;

  bool failed() const noexcept { return !_error.is_ok(); }
  // The error, or ok.
  const status& error() const noexcept { return _error; }
  // Bytes fed but not yet handed out as frames.
  std::size_t buffered_bytes() const noexcept { return _end - _begin; }
  // Stream offset of the first byte not yet handed out as part of a frame.
  std::uint64_t stream_offset() const noexcept { return _stream_offset; }

 private:
  const std::uint8_t* data() const noexcept;
  std::uint8_t* data() noexcept;
  void reserve_for(std::size_t incoming_bytes);
  decoded fail(status failure);

  std::unique_ptr<std::uint64_t[]> _words;  // 8-byte aligned storage
  std::size_t _capacity = 0;                // bytes in _words
  std::size_t _begin = 0;                   // first unconsumed byte; a multiple of 8
  std::size_t _end = 0;                     // one past the last buffered byte
  std::uint64_t _stream_offset = 0;         // stream offset of data()[_begin]
  status _error;
};

// Feeds `size` received bytes to `decoder` and calls `on_frame(const frame_view&)` for
// every complete, verified frame, in order. `on_frame` returns false to stop early
// (returns ok). Returns the decoder's error, after the frames before it, when one fails.
// The loop every frame reader needs: feed() may take only part of the bytes while a
// whole frame is waiting, so feeding and taking frames alternate.
template <typename OnFrame>
status decode_frames(frame_decoder& decoder, const void* data, std::size_t size, OnFrame&& on_frame) {
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  while (size > 0) {
    std::size_t taken = decoder.feed(bytes, size);
    bytes += taken;
    size -= taken;
    for (;;) {
      decoded next = decoder.next();
      if (next.is_need_more()) break;
      if (next.is_error()) return next.error();
      if (!on_frame(next.frame())) return status::ok();
    }
  }
  return status::ok();
}

}  // namespace keel::wire
