// CRC-32C: known vectors, and the hardware and portable paths agreeing.
#include "keel/wire/crc32c.h"

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using keel::wire::crc32c;
using keel::wire::detail::crc32c_hardware;
using keel::wire::detail::crc32c_hardware_available;
using keel::wire::detail::crc32c_portable;

using crc_function = std::uint32_t (*)(const void*, std::size_t, std::uint32_t) noexcept;

std::vector<crc_function> implementations() {
  std::vector<crc_function> found = {
      crc32c_portable,
      [](const void* data, std::size_t size, std::uint32_t crc) noexcept {
        return crc32c(data, size, crc);
      }};
  if (crc32c_hardware_available()) found.push_back(crc32c_hardware);
  return found;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(crc32c_suite)

BOOST_AUTO_TEST_CASE(matches_known_vectors_on_every_path) {
  BOOST_TEST_MESSAGE("SSE4.2 CRC32 instruction: "
                     << (crc32c_hardware_available() ? "available" : "absent"));
  std::uint8_t zeros[32] = {};
  std::uint8_t ones[32];
  std::uint8_t ascending[32];
  std::uint8_t descending[32];
  for (int i = 0; i < 32; ++i) {
    ones[i] = 0xFF;
    ascending[i] = static_cast<std::uint8_t>(i);
    descending[i] = static_cast<std::uint8_t>(31 - i);
  }
  for (crc_function crc : implementations()) {
    BOOST_TEST(crc("123456789", 9, 0) == 0xE3069283u);
    BOOST_TEST(crc(zeros, 32, 0) == 0x8A9136AAu);  // RFC 3720 B.4
    BOOST_TEST(crc(ones, 32, 0) == 0x62A8AB43u);
    BOOST_TEST(crc(ascending, 32, 0) == 0x46DD794Eu);
    BOOST_TEST(crc(descending, 32, 0) == 0x113FDB5Cu);
    BOOST_TEST(crc(nullptr, 0, 0) == 0u);
  }
}

BOOST_AUTO_TEST_CASE(hardware_and_portable_agree_on_random_data_of_every_length_and_alignment) {
  if (!crc32c_hardware_available()) {
    BOOST_TEST_MESSAGE("no SSE4.2: only the portable path runs here");
    return;
  }
  std::mt19937_64 random(42);
  std::vector<std::uint8_t> data(4096 + 16);
  for (auto& byte : data) byte = static_cast<std::uint8_t>(random());
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t size = 0; size <= 300; ++size) {
      std::uint32_t seed = static_cast<std::uint32_t>(random());
      BOOST_TEST(crc32c_portable(data.data() + offset, size, seed) ==
                 crc32c_hardware(data.data() + offset, size, seed));
    }
    for (std::size_t size : {1023u, 1024u, 1025u, 4095u, 4096u}) {
      BOOST_TEST(crc32c_portable(data.data() + offset, size, 0) ==
                 crc32c_hardware(data.data() + offset, size, 0));
    }
  }
}

BOOST_AUTO_TEST_CASE(continues_a_previous_crc_across_any_split) {
  std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  std::uint32_t whole = crc32c(text.data(), text.size());
  for (crc_function crc : implementations()) {
    for (std::size_t split = 0; split <= text.size(); ++split) {
      std::uint32_t first = crc(text.data(), split, 0);
      BOOST_TEST(crc(text.data() + split, text.size() - split, first) == whole);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
