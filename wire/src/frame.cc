// frame.cc — encoding frames and the incremental decoder. Format: docs/formats/frame.md.
#include "keel/wire/frame.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "keel/wire/common_generated.h"
#include "text.h"

namespace keel::wire {
namespace {

using detail::format;

// Byte offsets of the header fields (frame.md "Layout").
constexpr std::size_t magic_offset = 0;
constexpr std::size_t version_offset = 4;
constexpr std::size_t flags_offset = 5;
constexpr std::size_t type_offset = 6;
constexpr std::size_t request_id_offset = 8;
constexpr std::size_t payload_bytes_offset = 16;
constexpr std::size_t crc_offset = 20;
static_assert(crc_offset + 4 == frame_header_bytes);
static_assert(request_id_offset % 8 == 0);

constexpr std::uint8_t zero_padding[frame_alignment_bytes] = {};

// A decoder whose buffer grew past this gives it back when it empties, so a connection
// that once sent a 4 MiB frame does not keep 4 MiB for the rest of its life.
constexpr std::size_t decoder_keep_bytes_max = 4 * limits::recv_buffer_bytes;
constexpr std::size_t decoder_first_bytes = 512;

void store_le(std::uint8_t* out, std::uint64_t value, std::size_t bytes) noexcept {
  for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

std::uint64_t load_le(const std::uint8_t* in, std::size_t bytes) noexcept {
  std::uint64_t value = 0;
  for (std::size_t i = bytes; i > 0; --i) value = (value << 8) | in[i - 1];
  return value;
}

// The CRC of a frame whose header and payload (and padding) are contiguous at `start`:
// header bytes 0-19, then payload and padding.
std::uint32_t frame_crc(const std::uint8_t* start, std::uint32_t payload_bytes) noexcept {
  std::uint32_t crc = crc32c(start, crc_offset);
  std::size_t body = payload_bytes + frame_padding_bytes(payload_bytes);
  return crc32c(start + frame_header_bytes, body, crc);
}

// Frames we send follow the rules receivers check; breaking them is a bug in the sender.
void check_send_rules(frame_type type, std::uint8_t flags, std::size_t size) noexcept {
  KEEL_ASSERT_MSG((flags & frame_flags::reserved) == 0, "reserved frame flag set");
  KEEL_ASSERT_MSG((flags & frame_flags::error) == 0 || (flags & frame_flags::end_of_stream) != 0,
                  "an error frame must end its stream");
  KEEL_ASSERT_MSG(type != frame_type::error || (flags & frame_flags::error) != 0,
                  "a frame of type error needs the error flag");
  KEEL_ASSERT_MSG(static_cast<unsigned>(type) != 0, "frame type 0 is reserved");
  KEEL_ASSERT(size <= frame_payload_bytes_max);
}

std::string where(std::uint64_t stream_offset) {
  return format("frame at stream offset %" PRIu64 ": ", stream_offset);
}

}  // namespace

// ---- Header ------------------------------------------------------------------------------

frame_header parse_frame_header(const std::uint8_t* data) noexcept {
  frame_header header;
  header.magic = static_cast<std::uint32_t>(load_le(data + magic_offset, 4));
  header.version = data[version_offset];
  header.flags = data[flags_offset];
  header.type = static_cast<frame_type>(load_le(data + type_offset, 2));
  header.request_id = load_le(data + request_id_offset, 8);
  header.payload_bytes = static_cast<std::uint32_t>(load_le(data + payload_bytes_offset, 4));
  header.crc = static_cast<std::uint32_t>(load_le(data + crc_offset, 4));
  return header;
}

void encode_frame_header(std::uint8_t* out, frame_type type, std::uint64_t request_id,
                         std::uint8_t flags, const void* payload, std::size_t size) noexcept {
  check_send_rules(type, flags, size);
  KEEL_ASSERT(payload != nullptr || size == 0);
  store_le(out + magic_offset, frame_magic, 4);
  out[version_offset] = frame_version;
  out[flags_offset] = flags;
  store_le(out + type_offset, static_cast<std::uint16_t>(type), 2);
  store_le(out + request_id_offset, request_id, 8);
  store_le(out + payload_bytes_offset, size, 4);
  std::uint32_t crc = crc32c(out, crc_offset);
  crc = crc32c(payload, size, crc);
  crc = crc32c(zero_padding, frame_padding_bytes(size), crc);
  store_le(out + crc_offset, crc, 4);
}

status append_frame(std::string& out, frame_type type, std::uint64_t request_id,
                    std::uint8_t flags, const void* payload, std::size_t size) {
  if (size > frame_payload_bytes_max) {
    return status(errc::too_large,
                  format("%s payload of %zu bytes exceeds the frame limit of %" PRIu32 " bytes",
                         frame_type_name(type) ? frame_type_name(type) : "frame", size,
                         frame_payload_bytes_max));
  }
  std::uint8_t header[frame_header_bytes];
  encode_frame_header(header, type, request_id, flags, payload, size);
  out.reserve(out.size() + frame_total_bytes(size));
  out.append(reinterpret_cast<const char*>(header), frame_header_bytes);
  if (size > 0) out.append(static_cast<const char*>(payload), size);
  out.append(reinterpret_cast<const char*>(zero_padding), frame_padding_bytes(size));
  return status::ok();
}

void append_error_frame(std::string& out, frame_type type, std::uint64_t request_id,
                        const status& failure) {
  KEEL_ASSERT(!failure.is_ok());
  // Cut the message at a UTF-8 character boundary at or below the limit.
  const std::string& message = failure.message();
  std::size_t length = std::min(message.size(), error_message_bytes_max);
  if (length < message.size()) {
    while (length > 0 && (static_cast<unsigned char>(message[length]) & 0xC0) == 0x80) --length;
  }
  flatbuffers::FlatBufferBuilder builder(64 + length);
  auto text = builder.CreateString(message.data(), length);
  builder.Finish(CreateError(builder, static_cast<std::uint16_t>(failure.code()), text));
  status appended = append_frame(out, type, request_id,
                                 frame_flags::error | frame_flags::end_of_stream,
                                 builder.GetBufferPointer(), builder.GetSize());
  KEEL_ASSERT(appended.is_ok());  // a cut message always fits
}

bool looks_like_frame(const void* data, std::size_t size) noexcept {
  KEEL_ASSERT(size >= 1);
  std::uint8_t magic[4];
  store_le(magic, frame_magic, 4);
  return std::memcmp(data, magic, std::min<std::size_t>(size, 4)) == 0;
}

// ---- decoded -----------------------------------------------------------------------------

decoded decoded::of_frame(const frame_view& frame) noexcept {
  decoded result;
  result._kind = kind::frame;
  result._frame = frame;
  return result;
}

decoded decoded::of_error(status failure) {
  KEEL_ASSERT(!failure.is_ok());
  decoded result;
  result._kind = kind::error;
  result._error = std::move(failure);
  return result;
}

const frame_view& decoded::frame() const noexcept {
  KEEL_ASSERT(is_frame());
  return _frame;
}

const status& decoded::error() const noexcept {
  KEEL_ASSERT(is_error());
  return _error;
}

// ---- frame_decoder -----------------------------------------------------------------------

const std::uint8_t* frame_decoder::data() const noexcept {
  return reinterpret_cast<const std::uint8_t*>(_words.get());
}

std::uint8_t* frame_decoder::data() noexcept {
  return reinterpret_cast<std::uint8_t*>(_words.get());
}

// Makes room for `incoming_bytes` after _end: first by sliding the unconsumed bytes to the
// front (they start on a frame boundary, so moving them by a multiple of 8 keeps payloads
// aligned), then by growing geometrically up to capacity_bytes.
void frame_decoder::reserve_for(std::size_t incoming_bytes) {
  std::size_t buffered = _end - _begin;
  KEEL_ASSERT(buffered + incoming_bytes <= capacity_bytes);
  if (_capacity - _end >= incoming_bytes) return;
  if (_begin > 0) {
    KEEL_ASSERT(_begin % frame_alignment_bytes == 0);
    std::memmove(data(), data() + _begin, buffered);
    _begin = 0;
    _end = buffered;
    if (_capacity - _end >= incoming_bytes) return;
  }
  std::size_t wanted = std::max({buffered + incoming_bytes, 2 * _capacity, decoder_first_bytes});
  wanted = std::min(wanted, capacity_bytes);
  std::size_t words = (wanted + sizeof(std::uint64_t) - 1) / sizeof(std::uint64_t);
  auto grown = std::make_unique_for_overwrite<std::uint64_t[]>(words);
  if (buffered > 0) std::memcpy(grown.get(), data(), buffered);
  _words = std::move(grown);
  _capacity = words * sizeof(std::uint64_t);
}

std::size_t frame_decoder::feed(const void* bytes, std::size_t size) {
  KEEL_ASSERT(bytes != nullptr || size == 0);
  if (failed()) return size;  // the stream is dead; drop what arrives until close
  std::size_t taken = std::min(size, capacity_bytes - buffered_bytes());
  if (taken == 0) return 0;
  reserve_for(taken);
  std::memcpy(data() + _end, bytes, taken);
  _end += taken;
  return taken;
}

decoded frame_decoder::fail(status failure) {
  _error = status(failure.code(), where(_stream_offset) + failure.message());
  _words.reset();
  _capacity = _begin = _end = 0;
  return decoded::of_error(_error);
}

decoded frame_decoder::next() {
  if (failed()) return decoded::of_error(_error);
  if (_begin == _end) {
    // Empty: start over at the front, and give back a buffer a large frame left behind.
    _begin = _end = 0;
    if (_capacity > decoder_keep_bytes_max) {
      _words.reset();
      _capacity = 0;
    }
  }
  std::size_t available = _end - _begin;
  if (available < frame_header_bytes) return decoded::need_more();

  const std::uint8_t* start = data() + _begin;
  frame_header header = parse_frame_header(start);
  if (header.magic != frame_magic) {
    return fail(status(errc::invalid_argument,
                       format("bad magic 0x%08" PRIX32 " (expected 0x%08" PRIX32
                              "): not a keel frame, or the stream lost sync",
                              header.magic, frame_magic)));
  }
  if (header.version != frame_version) {
    return fail(status(errc::unsupported,
                       format("unsupported version %u (this build speaks version %u)",
                              unsigned{header.version}, unsigned{frame_version})));
  }
  if (header.payload_bytes > frame_payload_bytes_max) {
    return fail(status(errc::too_large,
                       format("payload length %" PRIu32 " exceeds the limit of %" PRIu32
                              " bytes",
                              header.payload_bytes, frame_payload_bytes_max)));
  }
  std::size_t total = frame_total_bytes(header.payload_bytes);
  if (available < total) return decoded::need_more();

  std::uint32_t actual = frame_crc(start, header.payload_bytes);
  if (actual != header.crc) {
    return fail(status(errc::corruption,
                       format("CRC-32C mismatch: header says 0x%08" PRIX32
                              ", frame has 0x%08" PRIX32,
                              header.crc, actual)));
  }
  const std::uint8_t* payload = start + frame_header_bytes;
  std::size_t padding = frame_padding_bytes(header.payload_bytes);
  if (std::memcmp(payload + header.payload_bytes, zero_padding, padding) != 0) {
    return fail(status(errc::invalid_argument, "non-zero padding"));
  }
  status verified = verify_frame(header, payload);
  if (!verified) return fail(std::move(verified));

  frame_view view;
  view.header = header;
  view.payload = std::span<const std::uint8_t>(payload, header.payload_bytes);
  view.stream_offset = _stream_offset;
  _begin += total;
  _stream_offset += total;
  return decoded::of_frame(view);
}

status frame_decoder::finish() const {
  if (failed()) return _error;
  std::size_t available = buffered_bytes();
  if (available == 0) return status::ok();
  if (available < frame_header_bytes) {
    return status(errc::corruption,
                  where(_stream_offset) +
                      format("truncated: the stream ended after %zu of the %zu header bytes",
                             available, frame_header_bytes));
  }
  frame_header header = parse_frame_header(data() + _begin);
  std::size_t total = frame_total_bytes(header.payload_bytes);
  KEEL_ASSERT_MSG(available < total, "finish() with a whole frame not yet taken by next()");
  return status(errc::corruption,
                where(_stream_offset) +
                    format("truncated: the stream ended after %zu of %zu bytes", available,
                           total));
}

}  // namespace keel::wire
