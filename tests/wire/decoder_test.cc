// Decoding: round trips, chunking, truncation, every way a frame can be wrong, and the
// offsets error messages name.
#include <boost/test/unit_test.hpp>

#include <random>

#include "wire_test_util.h"

using namespace keel;
using namespace keel::wire;
using namespace keel::wire::testing;

namespace {

struct sample {
  frame_type type;
  std::vector<std::uint8_t> payload;
};

std::vector<sample> one_of_each_type() {
  return {
      {frame_type::error, error_message(static_cast<std::uint16_t>(errc::unavailable), "no leader")},
      {frame_type::envelope, envelope("kv", "raft", frame_type::echo_request, 5,
                                      frame_flags::end_of_stream, echo_request("inner", 2))},
      {frame_type::health_request, health_request()},
      {frame_type::health_response, health_response(true, "0.1.0", 8)},
      {frame_type::echo_request, echo_request("hello, keel", 3)},
      {frame_type::echo_response, echo_response("hello, keelhello, keelhello, keel")},
  };
}

std::uint8_t flags_for(frame_type type) {
  return type == frame_type::error ? frame_flags::error | frame_flags::end_of_stream
                                   : frame_flags::end_of_stream;
}

// Checks that a decoded payload reads back as what one_of_each_type() built.
void check_contents(frame_type type, const std::vector<std::uint8_t>& payload) {
  const std::uint8_t* data = payload.data();
  switch (type) {
    case frame_type::error: {
      auto* message = flatbuffers::GetRoot<Error>(data);
      BOOST_TEST(message->code() == static_cast<std::uint16_t>(errc::unavailable));
      BOOST_TEST(message->message()->str() == "no leader");
      break;
    }
    case frame_type::envelope: {
      auto* message = flatbuffers::GetRoot<Envelope>(data);
      BOOST_TEST(message->from()->str() == "kv");
      BOOST_TEST(message->to()->str() == "raft");
      BOOST_TEST(message->type() == static_cast<std::uint16_t>(frame_type::echo_request));
      BOOST_TEST(message->correlation() == 5u);
      auto* inner = flatbuffers::GetRoot<EchoRequest>(message->payload()->data());
      BOOST_TEST(inner->text()->str() == "inner");
      BOOST_TEST(inner->repeat() == 2u);
      break;
    }
    case frame_type::health_request:
      BOOST_TEST(flatbuffers::GetRoot<HealthRequest>(data) != nullptr);
      break;
    case frame_type::health_response: {
      auto* message = flatbuffers::GetRoot<HealthResponse>(data);
      BOOST_TEST(message->healthy());
      BOOST_TEST(message->version()->str() == "0.1.0");
      BOOST_TEST(message->shards() == 8u);
      break;
    }
    case frame_type::echo_request: {
      auto* message = flatbuffers::GetRoot<EchoRequest>(data);
      BOOST_TEST(message->text()->str() == "hello, keel");
      BOOST_TEST(message->repeat() == 3u);
      break;
    }
    case frame_type::echo_response:
      BOOST_TEST(flatbuffers::GetRoot<EchoResponse>(data)->text()->str() ==
                 "hello, keelhello, keelhello, keel");
      break;
    default:
      // one_of_each_type() builds only the types above; the kv types' round trips are
      // tested with their builders in tests/bench/codec_test.cc.
      BOOST_FAIL("no content check for frame type " << static_cast<unsigned>(type));
  }
}

std::string stream_of_each_type(std::uint64_t first_id = 1) {
  std::string stream;
  std::uint64_t id = first_id;
  for (const sample& each : one_of_each_type()) {
    std::uint64_t request_id = each.type == frame_type::error ? 0 : id++;
    stream += frame_of(each.type, request_id, flags_for(each.type), each.payload);
  }
  return stream;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(frame_decoding)

BOOST_AUTO_TEST_CASE(round_trips_each_message_type_in_any_chunking) {
  std::string stream = stream_of_each_type();
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{8}, std::size_t{24},
                            std::size_t{100}, stream.size()}) {
    BOOST_TEST_CONTEXT("chunk " << chunk) {
      frame_decoder decoder;
      collected got = decode_all(decoder, stream, chunk);
      BOOST_TEST(got.error.is_ok(), got.error.to_string());
      std::vector<sample> expected = one_of_each_type();
      BOOST_REQUIRE(got.headers.size() == expected.size());
      for (std::size_t i = 0; i < expected.size(); ++i) {
        BOOST_TEST((got.headers[i].type == expected[i].type));
        BOOST_TEST(got.payloads[i] == expected[i].payload);
        check_contents(expected[i].type, got.payloads[i]);
      }
      BOOST_TEST(decoder.finish().is_ok());
      BOOST_TEST(decoder.stream_offset() == stream.size());
      BOOST_TEST(decoder.buffered_bytes() == 0u);
    }
  }
}

BOOST_AUTO_TEST_CASE(decodes_thousands_of_frames_back_to_back_in_random_chunks) {
  std::mt19937_64 random(7);
  std::string stream;
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) {
    texts.emplace_back(random() % 200, static_cast<char>('a' + i % 26));
    stream += frame_of(frame_type::echo_response, i + 1, frame_flags::end_of_stream,
                       echo_response(texts.back()));
  }
  frame_decoder decoder;
  collected got;
  std::size_t position = 0;
  while (position < stream.size()) {
    std::size_t chunk = std::min<std::size_t>(1 + random() % 20000, stream.size() - position);
    collected part = decode_all(decoder, std::string_view(stream).substr(position, chunk));
    BOOST_REQUIRE(part.error.is_ok());
    position += chunk;
    for (std::size_t i = 0; i < part.headers.size(); ++i) {
      got.headers.push_back(part.headers[i]);
      got.payloads.push_back(part.payloads[i]);
    }
  }
  BOOST_REQUIRE(got.headers.size() == texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    BOOST_TEST(got.headers[i].request_id == i + 1);
    BOOST_TEST(flatbuffers::GetRoot<EchoResponse>(got.payloads[i].data())->text()->str() ==
               texts[i]);
  }
  BOOST_TEST(decoder.finish().is_ok());
}

BOOST_AUTO_TEST_CASE(a_truncated_frame_needs_more_and_is_an_error_only_at_eof) {
  std::string frame = frame_of(frame_type::echo_request, 4, frame_flags::end_of_stream,
                               echo_request("truncate me", 1));
  for (std::size_t size = 1; size < frame.size(); ++size) {
    frame_decoder decoder;
    BOOST_REQUIRE(decoder.feed(frame.data(), size) == size);
    BOOST_TEST(decoder.next().is_need_more());
    BOOST_TEST(decoder.next().is_need_more());
    status at_eof = decoder.finish();
    BOOST_TEST((at_eof.code() == errc::corruption));
    BOOST_TEST(at_eof.message().find("frame at stream offset 0: truncated") == 0u,
               at_eof.message());
    std::string expected = size < frame_header_bytes
        ? "after " + std::to_string(size) + " of the 24 header bytes"
        : "after " + std::to_string(size) + " of " + std::to_string(frame.size()) + " bytes";
    BOOST_TEST(at_eof.message().find(expected) != std::string::npos, at_eof.message());
    // The rest arrives after all: the frame decodes.
    BOOST_REQUIRE(decoder.feed(frame.data() + size, frame.size() - size) == frame.size() - size);
    BOOST_TEST(decoder.next().is_frame());
    BOOST_TEST(decoder.finish().is_ok());
  }
  frame_decoder empty;
  BOOST_TEST(empty.next().is_need_more());
  BOOST_TEST(empty.finish().is_ok());
}

BOOST_AUTO_TEST_CASE(rejects_bad_magic_such_as_an_http_request) {
  frame_decoder decoder;
  std::string http = "GET /v2/keys/a HTTP/1.1\r\nHost: x\r\n\r\n";
  collected got = decode_all(decoder, http);
  BOOST_TEST((got.error.code() == errc::invalid_argument));
  BOOST_TEST(got.error.message().find("frame at stream offset 0: bad magic 0x20544547") == 0u,
             got.error.message());
  BOOST_TEST(decoder.failed());
}

BOOST_AUTO_TEST_CASE(rejects_an_unsupported_version) {
  std::string frame = frame_of(frame_type::health_request, 1, frame_flags::end_of_stream,
                               health_request());
  frame[4] = 2;
  reseal(frame);
  frame_decoder decoder;
  collected got = decode_all(decoder, frame);
  BOOST_TEST((got.error.code() == errc::unsupported));
  BOOST_TEST(got.error.message().find("unsupported version 2") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(rejects_an_oversized_length_without_waiting_for_the_payload) {
  std::string frame = frame_of(frame_type::echo_request, 1, frame_flags::end_of_stream,
                               echo_request("x", 1));
  std::string header = frame.substr(0, frame_header_bytes);
  std::uint32_t too_long = frame_payload_bytes_max + 1;
  for (int i = 0; i < 4; ++i) header[16 + i] = static_cast<char>(too_long >> (8 * i));
  frame_decoder decoder;
  collected got = decode_all(decoder, header);
  BOOST_TEST((got.error.code() == errc::too_large));
  BOOST_TEST(got.error.message().find("payload length 4194281 exceeds the limit of 4194280") !=
                 std::string::npos,
             got.error.message());

  // The largest legal length just waits for its bytes.
  std::uint32_t longest = frame_payload_bytes_max;
  for (int i = 0; i < 4; ++i) header[16 + i] = static_cast<char>(longest >> (8 * i));
  frame_decoder waiting;
  BOOST_REQUIRE(waiting.feed(header.data(), header.size()) == header.size());
  BOOST_TEST(waiting.next().is_need_more());
}

BOOST_AUTO_TEST_CASE(round_trips_the_largest_frame_and_bounds_what_feed_takes) {
  std::vector<std::uint8_t> small = echo_request("", 0);
  // Text sized so the whole frame is exactly limits::frame_bytes_max.
  std::size_t text_bytes = frame_payload_bytes_max - small.size() - 8;
  std::vector<std::uint8_t> payload;
  while (true) {
    payload = echo_request(std::string(text_bytes, 'k'), 1);
    if (payload.size() <= frame_payload_bytes_max) break;
    text_bytes -= payload.size() - frame_payload_bytes_max;
  }
  std::string stream = frame_of(frame_type::echo_request, 1, frame_flags::end_of_stream, payload);
  stream += stream;  // two of them: more than the decoder will take at once
  frame_decoder decoder;
  std::size_t taken = decoder.feed(stream.data(), stream.size());
  BOOST_TEST(taken < stream.size());
  BOOST_TEST(taken <= frame_decoder::capacity_bytes);
  collected got = decode_all(decoder, std::string_view(stream).substr(taken));
  BOOST_TEST(got.error.is_ok(), got.error.to_string());
  BOOST_TEST(got.headers.size() == 2u);
  BOOST_TEST(got.payloads[0] == payload);
  BOOST_TEST(decoder.finish().is_ok());
}

BOOST_AUTO_TEST_CASE(detects_every_change_to_any_single_byte) {
  // A short frame with padding, followed by nothing; checked byte by byte, value by value.
  std::vector<std::uint8_t> payload = echo_request("flip", 1);
  std::string frame = frame_of(frame_type::echo_request, 0x1122334455667788ull,
                               frame_flags::end_of_stream, payload);
  BOOST_TEST_MESSAGE("flipping every byte of a " << frame.size() << "-byte frame");
  std::size_t detected_at_eof = 0;
  for (std::size_t position = 0; position < frame.size(); ++position) {
    for (unsigned mask = 1; mask < 256; ++mask) {
      std::string bad = frame;
      bad[position] = static_cast<char>(bad[position] ^ mask);
      frame_decoder decoder;
      collected got = decode_all(decoder, bad);
      BOOST_REQUIRE_MESSAGE(got.headers.empty(), "undetected change at byte " << position
                                                     << " mask " << mask);
      status outcome = got.error;
      if (outcome.is_ok()) {
        // Only a longer length can leave the decoder waiting; EOF then finds it.
        BOOST_REQUIRE(position >= 16 && position < 20);
        outcome = decoder.finish();
        ++detected_at_eof;
      }
      BOOST_REQUIRE(!outcome.is_ok());
      errc code = outcome.code();
      if (position < 4) {
        BOOST_REQUIRE((code == errc::invalid_argument));
      } else if (position == 4) {
        BOOST_REQUIRE((code == errc::unsupported));
      } else if (position >= 16 && position < 20) {
        BOOST_REQUIRE((code == errc::too_large || code == errc::corruption));
      } else {
        BOOST_REQUIRE_MESSAGE(code == errc::corruption, outcome.to_string());
      }
    }
  }
  BOOST_TEST(detected_at_eof > 0u);

  // With another frame behind it, a longer length swallows that frame and the CRC fails
  // without waiting for EOF.
  std::string two = frame + frame;
  two[16] = static_cast<char>(two[16] + 8);
  frame_decoder decoder;
  collected got = decode_all(decoder, two);
  BOOST_TEST((got.error.code() == errc::corruption));
}

BOOST_AUTO_TEST_CASE(error_messages_name_the_stream_offset_and_both_crcs) {
  std::string first = frame_of(frame_type::health_request, 1, frame_flags::end_of_stream,
                               health_request());
  std::string second = frame_of(frame_type::echo_request, 2, frame_flags::end_of_stream,
                                echo_request("ok", 1));
  std::string third = frame_of(frame_type::echo_request, 3, frame_flags::end_of_stream,
                               echo_request("bad", 1));
  std::uint32_t good_crc = parse_frame_header(
      reinterpret_cast<const std::uint8_t*>(third.data())).crc;
  third[frame_header_bytes + 2] ^= 0x40;
  std::string stream = first + second + third;
  std::uint32_t actual = crc32c(third.data(), 20);
  actual = crc32c(third.data() + 24, third.size() - 24, actual);

  frame_decoder decoder;
  collected got = decode_all(decoder, stream, 5);
  BOOST_TEST(got.headers.size() == 2u);
  BOOST_TEST(got.offsets == (std::vector<std::uint64_t>{0, first.size()}));
  char expected[160];
  std::snprintf(expected, sizeof expected,
                "frame at stream offset %zu: CRC-32C mismatch: header says 0x%08X, frame has "
                "0x%08X",
                first.size() + second.size(), good_crc, actual);
  BOOST_TEST(got.error.message() == expected);
  BOOST_TEST((got.error.code() == errc::corruption));
}

BOOST_AUTO_TEST_CASE(stays_failed_after_an_error) {
  std::string good = frame_of(frame_type::health_request, 1, frame_flags::end_of_stream,
                              health_request());
  std::string bad = good;
  bad[30] ^= 1;
  frame_decoder decoder;
  collected got = decode_all(decoder, bad);
  BOOST_REQUIRE(!got.error.is_ok());
  BOOST_TEST(decoder.feed(good.data(), good.size()) == good.size());
  decoded again = decoder.next();
  BOOST_REQUIRE(again.is_error());
  BOOST_TEST(again.error().message() == got.error.message());
  BOOST_TEST(decoder.finish().message() == got.error.message());
  BOOST_TEST(decoder.buffered_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(preserves_stream_flags_and_request_ids) {
  std::string stream;
  stream += frame_of(frame_type::echo_response, 42, frame_flags::none, echo_response("a"));
  stream += frame_of(frame_type::echo_response, 43, frame_flags::end_of_stream, echo_response("x"));
  stream += frame_of(frame_type::echo_response, 42, frame_flags::none, echo_response("b"));
  append_error_frame(stream, frame_type::echo_response, 42, status(errc::cancelled, "watch cancelled"));
  frame_decoder decoder;
  collected got = decode_all(decoder, stream, 7);
  BOOST_REQUIRE(got.error.is_ok());
  BOOST_REQUIRE(got.headers.size() == 4u);
  BOOST_TEST(got.headers[0].request_id == 42u);
  BOOST_TEST(!got.headers[0].end_of_stream());
  BOOST_TEST(got.headers[1].request_id == 43u);
  BOOST_TEST(got.headers[1].end_of_stream());
  BOOST_TEST(!got.headers[2].end_of_stream());
  BOOST_TEST(got.headers[3].request_id == 42u);
  BOOST_TEST(got.headers[3].end_of_stream());
  BOOST_TEST(got.headers[3].is_error());
  BOOST_TEST(flatbuffers::GetRoot<Error>(got.payloads[3].data())->message()->str() ==
             "watch cancelled");
}

BOOST_AUTO_TEST_CASE(rejects_header_rules_broken_under_a_valid_crc) {
  struct bad_case {
    std::uint8_t flags;
    std::uint16_t type;
    const char* expected;
  };
  for (bad_case each : {bad_case{0x04 | frame_flags::end_of_stream, 20, "reserved bits set"},
                        bad_case{frame_flags::error, 21, "error without end_of_stream"},
                        bad_case{frame_flags::end_of_stream, 1, "type error without the error flag"},
                        bad_case{frame_flags::end_of_stream, 0, "frame type 0 is reserved"},
                        bad_case{frame_flags::end_of_stream, 150, "unknown frame type 150"}}) {
    std::string frame = frame_of(frame_type::echo_request, 1, frame_flags::end_of_stream,
                                 echo_request("x", 1));
    frame[5] = static_cast<char>(each.flags);
    frame[6] = static_cast<char>(each.type & 0xFF);
    frame[7] = static_cast<char>(each.type >> 8);
    reseal(frame);
    frame_decoder decoder;
    collected got = decode_all(decoder, frame);
    BOOST_TEST((got.error.code() == errc::invalid_argument));
    BOOST_TEST(got.error.message().find(each.expected) != std::string::npos,
               got.error.message());
  }
}

BOOST_AUTO_TEST_CASE(rejects_non_zero_padding_under_a_valid_crc) {
  std::vector<std::uint8_t> payload;
  std::string text;
  do {  // a payload whose length is not a multiple of 8, so the frame has padding
    text += 'p';
    payload = health_response(true, text, 1);
  } while (frame_padding_bytes(payload.size()) == 0);
  std::string frame = frame_of(frame_type::health_response, 1, frame_flags::end_of_stream,
                               payload);
  frame.back() = 1;
  reseal(frame);
  frame_decoder decoder;
  collected got = decode_all(decoder, frame);
  BOOST_TEST((got.error.code() == errc::invalid_argument));
  BOOST_TEST(got.error.message().find("non-zero padding") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
