// Helpers shared by the wire tests: building messages and frames, feeding a decoder.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstring>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "keel/wire/common_generated.h"
#include "keel/wire/echo_generated.h"
#include "keel/wire/frame.h"
#include "keel/wire/health_generated.h"

namespace keel::wire {
// Lets BOOST_TEST print frame types when a comparison fails.
inline std::ostream& operator<<(std::ostream& out, frame_type type) {
  const char* name = frame_type_name(type);
  return out << (name ? name : "type") << "(" << static_cast<unsigned>(type) << ")";
}
}  // namespace keel::wire

namespace keel::wire::testing {

inline std::vector<std::uint8_t> bytes_of(const flatbuffers::FlatBufferBuilder& builder) {
  return {builder.GetBufferPointer(), builder.GetBufferPointer() + builder.GetSize()};
}

inline std::vector<std::uint8_t> echo_request(std::string_view text, std::uint32_t repeat) {
  flatbuffers::FlatBufferBuilder builder;
  auto text_offset = builder.CreateString(text.data(), text.size());
  builder.Finish(CreateEchoRequest(builder, text_offset, repeat));
  return bytes_of(builder);
}

inline std::vector<std::uint8_t> echo_response(std::string_view text) {
  flatbuffers::FlatBufferBuilder builder;
  auto text_offset = builder.CreateString(text.data(), text.size());
  builder.Finish(CreateEchoResponse(builder, text_offset));
  return bytes_of(builder);
}

inline std::vector<std::uint8_t> health_request() {
  flatbuffers::FlatBufferBuilder builder;
  builder.Finish(CreateHealthRequest(builder));
  return bytes_of(builder);
}

inline std::vector<std::uint8_t> health_response(bool healthy, std::string_view version,
                                                 std::uint32_t shards) {
  flatbuffers::FlatBufferBuilder builder;
  auto version_offset = builder.CreateString(version.data(), version.size());
  builder.Finish(CreateHealthResponse(builder, healthy, version_offset, shards));
  return bytes_of(builder);
}

inline std::vector<std::uint8_t> error_message(std::uint16_t code, std::string_view text) {
  flatbuffers::FlatBufferBuilder builder;
  auto text_offset = builder.CreateString(text.data(), text.size());
  builder.Finish(CreateError(builder, code, text_offset));
  return bytes_of(builder);
}

// An envelope around `inner`, with the inner payload 8-byte aligned as frame.md asks
// (or deliberately 4 bytes off when `misalign`).
inline std::vector<std::uint8_t> envelope(std::string_view from, std::string_view to,
                                          frame_type type, std::uint64_t correlation,
                                          std::uint8_t flags,
                                          const std::vector<std::uint8_t>& inner,
                                          bool misalign = false) {
  flatbuffers::FlatBufferBuilder builder;
  auto from_offset = builder.CreateString(from.data(), from.size());
  auto to_offset = builder.CreateString(to.data(), to.size());
  // Aligning as if 4 more bytes followed puts the data start 4 bytes past an 8 boundary.
  builder.ForceVectorAlignment(inner.size() + (misalign ? 4 : 0), 1, 8);
  auto payload_offset = builder.CreateVector(inner.data(), inner.size());
  builder.Finish(CreateEnvelope(builder, from_offset, to_offset, static_cast<std::uint16_t>(type),
                                correlation, flags, payload_offset));
  return bytes_of(builder);
}

inline std::string frame_of(frame_type type, std::uint64_t request_id, std::uint8_t flags,
                            const std::vector<std::uint8_t>& payload) {
  std::string out;
  status appended = append_frame(out, type, request_id, flags, payload.data(), payload.size());
  KEEL_ASSERT(appended.is_ok());
  return out;
}

// Recomputes the CRC of the frame at `offset` in `stream`, after a test changed a field on
// purpose (so the decoder gets past the CRC and meets the rule under test).
inline void reseal(std::string& stream, std::size_t offset = 0) {
  auto* start = reinterpret_cast<std::uint8_t*>(stream.data() + offset);
  frame_header header = parse_frame_header(start);
  std::size_t body = header.payload_bytes + frame_padding_bytes(header.payload_bytes);
  std::uint32_t crc = crc32c(start, 20);
  crc = crc32c(start + frame_header_bytes, body, crc);
  for (int i = 0; i < 4; ++i) start[20 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
}

// Feeds `bytes` in chunks of `chunk` bytes, collecting every decoded result other than
// need_more. Copies frame payloads out, since views die at the next call.
struct collected {
  std::vector<frame_header> headers;
  std::vector<std::vector<std::uint8_t>> payloads;
  std::vector<std::uint64_t> offsets;
  status error;
};

inline collected decode_all(frame_decoder& decoder, std::string_view bytes,
                            std::size_t chunk = SIZE_MAX) {
  collected result;
  std::size_t position = 0;
  auto drain = [&] {
    for (;;) {
      decoded next = decoder.next();
      if (next.is_need_more()) return true;
      if (next.is_error()) {
        result.error = next.error();
        return false;
      }
      const frame_view& view = next.frame();
      KEEL_ASSERT(reinterpret_cast<std::uintptr_t>(view.payload.data()) % 8 == 0);
      result.headers.push_back(view.header);
      result.payloads.emplace_back(view.payload.begin(), view.payload.end());
      result.offsets.push_back(view.stream_offset);
    }
  };
  while (position < bytes.size()) {
    std::size_t size = std::min(chunk, bytes.size() - position);
    std::size_t taken = decoder.feed(bytes.data() + position, size);
    position += taken;
    if (!drain()) return result;
  }
  drain();
  return result;
}

}  // namespace keel::wire::testing
