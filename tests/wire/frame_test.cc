// Encoding: the header layout frame.md documents, error frames, size limits, and telling
// frames from HTTP on a shared port.
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "wire_test_util.h"

using namespace keel;
using namespace keel::wire;
using namespace keel::wire::testing;

namespace {
std::uint64_t load_le(const std::string& bytes, std::size_t offset, std::size_t size) {
  std::uint64_t value = 0;
  for (std::size_t i = size; i > 0; --i) {
    value = (value << 8) | static_cast<std::uint8_t>(bytes[offset + i - 1]);
  }
  return value;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(frame_encoding)

BOOST_AUTO_TEST_CASE(lays_out_the_header_as_frame_md_documents) {
  std::vector<std::uint8_t> payload = echo_request("hello", 3);
  std::string frame = frame_of(frame_type::echo_request, 0x0102030405060708ull,
                               frame_flags::end_of_stream, payload);
  BOOST_TEST(frame.size() == frame_total_bytes(payload.size()));
  BOOST_TEST(frame.size() % 8 == 0);
  BOOST_TEST(static_cast<std::uint8_t>(frame[0]) == 0xC7);
  BOOST_TEST(frame.substr(1, 3) == "KEL");
  BOOST_TEST(load_le(frame, 0, 4) == frame_magic);
  BOOST_TEST(frame[4] == 1);
  BOOST_TEST(frame[5] == frame_flags::end_of_stream);
  BOOST_TEST(load_le(frame, 6, 2) == 20u);
  BOOST_TEST(load_le(frame, 8, 8) == 0x0102030405060708ull);
  BOOST_TEST(load_le(frame, 16, 4) == payload.size());
  BOOST_TEST(std::memcmp(frame.data() + 24, payload.data(), payload.size()) == 0);
  for (std::size_t i = 24 + payload.size(); i < frame.size(); ++i) BOOST_TEST(frame[i] == 0);
  // The CRC covers header bytes 0-19, then payload and padding.
  std::uint32_t crc = crc32c(frame.data(), 20);
  crc = crc32c(frame.data() + 24, frame.size() - 24, crc);
  BOOST_TEST(load_le(frame, 20, 4) == crc);

  frame_header header = parse_frame_header(reinterpret_cast<const std::uint8_t*>(frame.data()));
  BOOST_TEST(header.magic == frame_magic);
  BOOST_TEST(header.version == frame_version);
  BOOST_TEST(header.end_of_stream());
  BOOST_TEST(!header.is_error());
  BOOST_TEST(header.type == frame_type::echo_request);
  BOOST_TEST(header.payload_bytes == payload.size());
  BOOST_TEST(header.crc == crc);
}

BOOST_AUTO_TEST_CASE(pads_every_payload_length_to_a_multiple_of_eight) {
  for (std::size_t size = 0; size < 64; ++size) {
    BOOST_TEST(frame_total_bytes(size) % 8 == 0);
    BOOST_TEST(frame_padding_bytes(size) < 8);
    BOOST_TEST(frame_total_bytes(size) == 24 + size + frame_padding_bytes(size));
  }
  BOOST_TEST(frame_total_bytes(frame_payload_bytes_max) == limits::frame_bytes_max);
}

BOOST_AUTO_TEST_CASE(encode_frame_header_matches_append_frame) {
  std::vector<std::uint8_t> payload = health_response(true, "0.1.0", 4);
  std::string frame = frame_of(frame_type::health_response, 9, frame_flags::end_of_stream,
                               payload);
  std::uint8_t header[frame_header_bytes];
  encode_frame_header(header, frame_type::health_response, 9, frame_flags::end_of_stream,
                      payload.data(), payload.size());
  BOOST_TEST(std::memcmp(header, frame.data(), frame_header_bytes) == 0);
}

BOOST_AUTO_TEST_CASE(refuses_a_payload_over_the_limit_and_appends_nothing) {
  std::string out = "kept";
  std::vector<std::uint8_t> big(frame_payload_bytes_max + 1);
  status appended = append_frame(out, frame_type::echo_request, 1, frame_flags::end_of_stream,
                                 big.data(), big.size());
  BOOST_TEST(!appended.is_ok());
  BOOST_TEST((appended.code() == errc::too_large));
  BOOST_TEST(out == "kept");
}

BOOST_AUTO_TEST_CASE(builds_error_frames_that_carry_code_and_message) {
  std::string out;
  append_error_frame(out, frame_type::echo_response, 77,
                     status(errc::not_found, "no such key"));
  frame_decoder decoder;
  collected got = decode_all(decoder, out);
  BOOST_REQUIRE(got.error.is_ok());
  BOOST_REQUIRE(got.headers.size() == 1u);
  BOOST_TEST(got.headers[0].is_error());
  BOOST_TEST(got.headers[0].end_of_stream());
  BOOST_TEST((got.headers[0].type == frame_type::echo_response));
  BOOST_TEST(got.headers[0].request_id == 77u);
  const Error* error = flatbuffers::GetRoot<Error>(got.payloads[0].data());
  BOOST_TEST(error->code() == static_cast<std::uint16_t>(errc::not_found));
  BOOST_TEST(error->message()->str() == "no such key");
}

BOOST_AUTO_TEST_CASE(cuts_long_error_messages_at_a_character_boundary) {
  std::string message(error_message_bytes_max - 1, 'x');
  message += "\xC3\xA9 and more";  // a two-byte character straddling the limit
  std::string out;
  append_error_frame(out, frame_type::error, 0, status(errc::corruption, message));
  frame_decoder decoder;
  collected got = decode_all(decoder, out);
  BOOST_REQUIRE(got.headers.size() == 1u);
  const Error* error = flatbuffers::GetRoot<Error>(got.payloads[0].data());
  BOOST_TEST(error->message()->size() == error_message_bytes_max - 1);
}

BOOST_AUTO_TEST_CASE(tells_frames_from_http_and_tls_on_a_shared_port) {
  std::string frame = frame_of(frame_type::health_request, 1, frame_flags::end_of_stream,
                               health_request());
  for (std::size_t size = 1; size <= frame.size(); ++size) {
    BOOST_TEST(looks_like_frame(frame.data(), size));
  }
  for (const char* other : {"GET / HTTP/1.1\r\n", "POST /v3/kv/put", "PUT /v2/keys/a",
                            "DELETE /v2/keys/a", "PRI * HTTP/2.0", "\x16\x03\x01", "\xC7KEY",
                            "\xC7\x4B\x45\x4D"}) {
    BOOST_TEST(!looks_like_frame(other, std::strlen(other)), other);
  }
}

BOOST_AUTO_TEST_CASE(names_every_registered_type) {
  for (frame_type type : {frame_type::error, frame_type::envelope, frame_type::health_request,
                          frame_type::health_response, frame_type::echo_request,
                          frame_type::echo_response}) {
    BOOST_TEST(frame_type_name(type) != nullptr);
    BOOST_TEST(std::string(frame_root_table_name(type)).rfind("keel.wire.", 0) == 0u);
  }
  BOOST_TEST(frame_type_name(static_cast<frame_type>(0)) == nullptr);
  BOOST_TEST(frame_type_name(static_cast<frame_type>(150)) == nullptr);
  BOOST_TEST(std::string(frame_type_name(frame_type::echo_request)) == "echo_request");
}

BOOST_AUTO_TEST_SUITE_END()
