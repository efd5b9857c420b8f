// Verify-on-receive: garbage under a valid CRC, unknown types, envelopes.
#include <boost/test/unit_test.hpp>

#include <memory>
#include <random>

#include "wire_test_util.h"

using namespace keel;
using namespace keel::wire;
using namespace keel::wire::testing;

namespace {

// An 8-byte aligned copy, as verify_payload requires.
struct aligned_bytes {
  explicit aligned_bytes(const std::vector<std::uint8_t>& bytes)
      : words(new std::uint64_t[bytes.size() / 8 + 1]), size(bytes.size()) {
    if (size > 0) std::memcpy(words.get(), bytes.data(), size);
  }
  const std::uint8_t* data() const { return reinterpret_cast<const std::uint8_t*>(words.get()); }
  std::unique_ptr<std::uint64_t[]> words;
  std::size_t size;
};

status verify(frame_type type, const std::vector<std::uint8_t>& bytes) {
  aligned_bytes copy(bytes);
  return verify_payload(type, copy.data(), copy.size);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(verify_on_receive)

BOOST_AUTO_TEST_CASE(accepts_each_type_built_by_the_generated_code) {
  BOOST_TEST(verify(frame_type::error, error_message(1, "x")).is_ok());
  BOOST_TEST(verify(frame_type::envelope,
                    envelope("a", "b", frame_type::health_request, 1, 0, health_request()))
                 .is_ok());
  BOOST_TEST(verify(frame_type::health_request, health_request()).is_ok());
  BOOST_TEST(verify(frame_type::health_response, health_response(false, "v", 1)).is_ok());
  BOOST_TEST(verify(frame_type::echo_request, echo_request("e", 1)).is_ok());
  BOOST_TEST(verify(frame_type::echo_response, echo_response("e")).is_ok());
}

BOOST_AUTO_TEST_CASE(rejects_garbage_payload_that_has_a_valid_crc) {
  std::mt19937_64 random(99);
  std::size_t rejected = 0;
  for (int attempt = 0; attempt < 200; ++attempt) {
    std::vector<std::uint8_t> garbage(8 + random() % 120);
    for (auto& byte : garbage) byte = static_cast<std::uint8_t>(random());
    // Point the root offset past the end, so this garbage can never verify.
    garbage[0] = 0xF0;
    garbage[1] = garbage[2] = garbage[3] = 0xFF;
    std::string frame = frame_of(frame_type::echo_request, 1, frame_flags::end_of_stream, garbage);
    frame_decoder decoder;
    collected got = decode_all(decoder, frame);
    BOOST_REQUIRE(got.headers.empty());
    BOOST_TEST((got.error.code() == errc::corruption));
    BOOST_TEST(got.error.message().find("failed the FlatBuffers verifier for "
                                        "keel.wire.EchoRequest (type 20)") != std::string::npos,
               got.error.message());
    ++rejected;
  }
  BOOST_TEST(rejected == 200u);

  // An empty payload holds no root table.
  std::string empty = frame_of(frame_type::health_request, 1, frame_flags::end_of_stream, {});
  frame_decoder decoder;
  BOOST_TEST((decode_all(decoder, empty).error.code() == errc::corruption));
}

BOOST_AUTO_TEST_CASE(rejects_a_string_that_runs_past_the_buffer) {
  std::vector<std::uint8_t> payload = echo_response("abcdefgh");
  // Find the string's length word (8) and make it huge.
  for (std::size_t i = 0; i + 4 <= payload.size(); i += 4) {
    if (payload[i] == 8 && payload[i + 1] == 0 && payload[i + 2] == 0 && payload[i + 3] == 0 &&
        i + 4 < payload.size() && payload[i + 4] == 'a') {
      payload[i + 1] = 0x10;
    }
  }
  status verified = verify(frame_type::echo_response, payload);
  BOOST_TEST((verified.code() == errc::corruption));
}

BOOST_AUTO_TEST_CASE(names_the_number_of_an_unknown_type) {
  status verified = verify_payload(static_cast<frame_type>(4242), nullptr, 0);
  BOOST_TEST((verified.code() == errc::invalid_argument));
  BOOST_TEST(verified.message() == "unknown frame type 4242");
}

BOOST_AUTO_TEST_CASE(verifies_the_payload_inside_an_envelope_as_its_own_type) {
  std::vector<std::uint8_t> garbage(32, 0xEE);
  status inner_garbage = verify(frame_type::envelope,
                                envelope("a", "b", frame_type::echo_request, 1, 0, garbage));
  BOOST_TEST((inner_garbage.code() == errc::corruption));
  BOOST_TEST(inner_garbage.message().find("envelope payload: ") == 0u, inner_garbage.message());

  // With the error flag the inner payload is an Error, whatever the type says.
  BOOST_TEST(verify(frame_type::envelope,
                    envelope("a", "b", frame_type::echo_response, 1,
                             frame_flags::error | frame_flags::end_of_stream,
                             error_message(2, "gone")))
                 .is_ok());
  status error_as_echo = verify(frame_type::envelope,
                                envelope("a", "b", frame_type::echo_response, 1,
                                         frame_flags::end_of_stream, garbage));
  BOOST_TEST(!error_as_echo.is_ok());
}

BOOST_AUTO_TEST_CASE(rejects_envelopes_that_nest_misalign_or_name_unknown_types) {
  std::vector<std::uint8_t> inner = echo_request("in", 1);
  std::vector<std::uint8_t> one = envelope("a", "b", frame_type::echo_request, 1, 0, inner);
  status nested = verify(frame_type::envelope,
                         envelope("a", "b", frame_type::envelope, 1, 0, one));
  BOOST_TEST((nested.code() == errc::invalid_argument));
  BOOST_TEST(nested.message().find("may not carry another envelope") != std::string::npos);

  status unknown = verify(frame_type::envelope,
                          envelope("a", "b", static_cast<frame_type>(777), 1, 0, inner));
  BOOST_TEST((unknown.code() == errc::invalid_argument));
  BOOST_TEST(unknown.message().find("777") != std::string::npos);

  status reserved = verify(frame_type::envelope,
                           envelope("a", "b", frame_type::echo_request, 1, 0x80, inner));
  BOOST_TEST((reserved.code() == errc::invalid_argument));

  status misaligned = verify(frame_type::envelope,
                             envelope("a", "b", frame_type::echo_request, 1, 0, inner, true));
  BOOST_TEST((misaligned.code() == errc::corruption));
  BOOST_TEST(misaligned.message().find("not 8-byte aligned") != std::string::npos,
             misaligned.message());
}

BOOST_AUTO_TEST_SUITE_END()
