// fuzz_frame — the frame decoder and verify-on-receive against arbitrary input.
//
// The first input byte picks a mode and a chunking seed:
//   raw    (bit 0 clear): the rest of the input is the byte stream, as a peer might send it;
//   framed (bit 0 set):   the rest is records [type u16][flags u8][length u16][payload],
//          each wrapped in a header with a correct CRC-32C, so the fuzzer reaches the
//          header rules and the FlatBuffers Verifier instead of dying at the CRC.
// The stream is decoded twice — fed whole, and in pseudo-random chunks — and both runs
// must agree on every frame and on the final error. Every frame handed out must pass
// verify_frame again and is read field by field, so ASan catches a verifier that let an
// out-of-bounds offset through.
#include <flatbuffers/flatbuffers.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "keel/wire/common_generated.h"
#include "keel/wire/echo_generated.h"
#include "keel/wire/frame.h"
#include "keel/wire/health_generated.h"

using namespace keel;
using namespace keel::wire;

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_frame: %s\n", what);
    std::abort();
  }
}

std::size_t string_bytes(const flatbuffers::String* text) {
  if (text == nullptr) return 0;
  std::size_t sum = 0;
  for (char c : text->string_view()) sum += static_cast<unsigned char>(c);
  return sum + text->size();
}

// Reads every field of a verified payload.
std::size_t touch(frame_type type, const std::uint8_t* data, int depth = 0) {
  switch (type) {
    case frame_type::error: {
      auto* message = flatbuffers::GetRoot<Error>(data);
      return message->code() + string_bytes(message->message());
    }
    case frame_type::envelope: {
      auto* message = flatbuffers::GetRoot<Envelope>(data);
      std::size_t sum = string_bytes(message->from()) + string_bytes(message->to()) +
                        message->type() + message->correlation() + message->flags();
      if (message->payload() != nullptr && depth == 0) {
        frame_type inner = (message->flags() & frame_flags::error) ? frame_type::error
                                                                   : frame_type(message->type());
        sum += touch(inner, message->payload()->data(), depth + 1);
      }
      return sum;
    }
    case frame_type::health_request:
      return flatbuffers::GetRoot<HealthRequest>(data) != nullptr;
    case frame_type::health_response: {
      auto* message = flatbuffers::GetRoot<HealthResponse>(data);
      return message->healthy() + string_bytes(message->version()) + message->shards();
    }
    case frame_type::echo_request: {
      auto* message = flatbuffers::GetRoot<EchoRequest>(data);
      return string_bytes(message->text()) + message->repeat();
    }
    case frame_type::echo_response:
      return string_bytes(flatbuffers::GetRoot<EchoResponse>(data)->text());
    default:
      // The kv types (100-199): verified like every other type; their fields are read
      // by keel-bench's codec tests. A type the registry does not know must never get
      // here, since the decoder refuses it before verification.
      require(frame_type_name(type) != nullptr, "verified frame of an unknown type");
      return 0;
  }
}

struct outcome {
  std::vector<std::uint64_t> frame_offsets;
  std::vector<std::uint32_t> frame_crcs;
  std::string error;
  std::string at_eof;
};

outcome decode(const std::string& stream, std::uint32_t seed) {
  outcome result;
  frame_decoder decoder;
  std::uint32_t state = seed | 1;
  std::size_t position = 0;
  bool done = false;
  auto drain = [&] {
    for (;;) {
      decoded next = decoder.next();
      if (next.is_need_more()) return;
      if (next.is_error()) {
        result.error = next.error().to_string();
        done = true;
        return;
      }
      const frame_view& view = next.frame();
      require(reinterpret_cast<std::uintptr_t>(view.payload.data()) % 8 == 0, "misaligned");
      require(verify_frame(view.header, view.payload.data()).is_ok(), "re-verify failed");
      frame_type root = view.header.is_error() ? frame_type::error : view.header.type;
      volatile std::size_t sink = touch(root, view.payload.data());
      (void)sink;
      result.frame_offsets.push_back(view.stream_offset);
      result.frame_crcs.push_back(view.header.crc);
    }
  };
  while (position < stream.size() && !done) {
    std::size_t chunk = stream.size() - position;
    if (seed != 0) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      chunk = std::min<std::size_t>(chunk, 1 + state % 64);
    }
    position += decoder.feed(stream.data() + position, chunk);
    drain();
  }
  if (!done) drain();
  result.at_eof = decoder.finish().to_string();
  return result;
}

// Wraps fuzzer records into frames with correct CRCs (any flags and type, even illegal).
std::string framed_stream(const std::uint8_t* data, std::size_t size) {
  std::string stream;
  std::uint64_t request_id = 1;
  while (size >= 5) {
    std::uint16_t type = static_cast<std::uint16_t>(data[0] | data[1] << 8);
    std::uint8_t flags = data[2];
    std::size_t length = std::min<std::size_t>(data[3] | data[4] << 8, size - 5);
    data += 5;
    size -= 5;
    std::uint8_t header[frame_header_bytes] = {};
    std::uint32_t magic = frame_magic;
    std::memcpy(header, &magic, 4);  // the fuzzer runs on little-endian x86
    header[4] = frame_version;
    header[5] = flags;
    std::memcpy(header + 6, &type, 2);
    std::memcpy(header + 8, &request_id, 8);
    std::uint32_t length32 = static_cast<std::uint32_t>(length);
    std::memcpy(header + 16, &length32, 4);
    static const std::uint8_t zeros[8] = {};
    std::uint32_t crc = crc32c(header, 20);
    crc = crc32c(data, length, crc);
    crc = crc32c(zeros, frame_padding_bytes(length), crc);
    std::memcpy(header + 20, &crc, 4);
    stream.append(reinterpret_cast<const char*>(header), sizeof header);
    stream.append(reinterpret_cast<const char*>(data), length);
    stream.append(frame_padding_bytes(length), '\0');
    data += length;
    size -= length;
    ++request_id;
  }
  return stream;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint8_t control = data[0];
  ++data;
  --size;
  std::string stream = (control & 1) ? framed_stream(data, size)
                                     : std::string(reinterpret_cast<const char*>(data), size);
  if (!stream.empty()) (void)looks_like_frame(stream.data(), stream.size());

  outcome whole = decode(stream, 0);
  outcome chunked = decode(stream, control >> 1);
  require(whole.frame_offsets == chunked.frame_offsets, "chunking changed the frames");
  require(whole.frame_crcs == chunked.frame_crcs, "chunking changed the frames");
  require(whole.error == chunked.error, "chunking changed the error");
  require(whole.at_eof == chunked.at_eof, "chunking changed the end");
  return 0;
}
