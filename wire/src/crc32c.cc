// crc32c.cc — CRC-32C, hardware and portable.
//
// The portable path is slicing-by-8 (eight 256-entry tables built at compile time): it
// consumes 8 bytes per step with independent table lookups. The hardware path uses the
// SSE4.2 CRC32 instruction, which computes exactly this polynomial; it is compiled with a
// target attribute so the rest of the build needs no -msse4.2, and chosen once at start
// with __builtin_cpu_supports.
#include "keel/wire/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "keel/assert.h"

namespace keel::wire {
namespace {

constexpr std::uint32_t reflected_polynomial = 0x82F63B78;

using crc_tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr crc_tables make_tables() {
  crc_tables tables{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (reflected_polynomial & (0u - (crc & 1)));
    tables[0][byte] = crc;
  }
  for (std::size_t slice = 1; slice < 8; ++slice) {
    for (std::uint32_t byte = 0; byte < 256; ++byte) {
      std::uint32_t previous = tables[slice - 1][byte];
      tables[slice][byte] = (previous >> 8) ^ tables[0][previous & 0xFF];
    }
  }
  return tables;
}

constexpr crc_tables tables = make_tables();
static_assert(tables[0][1] == 0xF26B8303, "CRC-32C table");

std::uint64_t load_le64(const std::uint8_t* bytes) noexcept {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

bool detect_hardware() noexcept {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

// Decided once, before main. A static initialiser elsewhere that runs before this one
// sees false and takes the portable path, which gives the same answer.
const bool hardware_available = detect_hardware();

}  // namespace

namespace detail {

std::uint32_t crc32c_portable(const void* data, std::size_t size, std::uint32_t crc) noexcept {
  KEEL_ASSERT(data != nullptr || size == 0);
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  std::uint32_t state = ~crc;
  while (size >= 8) {
    std::uint64_t word = load_le64(bytes) ^ state;
    state = tables[7][word & 0xFF] ^ tables[6][(word >> 8) & 0xFF] ^
            tables[5][(word >> 16) & 0xFF] ^ tables[4][(word >> 24) & 0xFF] ^
            tables[3][(word >> 32) & 0xFF] ^ tables[2][(word >> 40) & 0xFF] ^
            tables[1][(word >> 48) & 0xFF] ^ tables[0][word >> 56];
    bytes += 8;
    size -= 8;
  }
  while (size > 0) {
    state = (state >> 8) ^ tables[0][(state ^ *bytes) & 0xFF];
    ++bytes;
    --size;
  }
  return ~state;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
std::uint32_t crc32c_hardware(const void* data, std::size_t size, std::uint32_t crc) noexcept {
  KEEL_ASSERT(data != nullptr || size == 0);
  KEEL_ASSERT(hardware_available);
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  std::uint64_t state = ~crc;
  // Byte steps up to an 8-byte boundary, so the word loads below are aligned.
  while (size > 0 && (reinterpret_cast<std::uintptr_t>(bytes) & 7) != 0) {
    state = _mm_crc32_u8(static_cast<std::uint32_t>(state), *bytes);
    ++bytes;
    --size;
  }
  while (size >= 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes, sizeof word);
    state = _mm_crc32_u64(state, word);
    bytes += 8;
    size -= 8;
  }
  while (size > 0) {
    state = _mm_crc32_u8(static_cast<std::uint32_t>(state), *bytes);
    ++bytes;
    --size;
  }
  return ~static_cast<std::uint32_t>(state);
}
#else
std::uint32_t crc32c_hardware(const void*, std::size_t, std::uint32_t) noexcept {
  KEEL_PANIC("crc32c_hardware: no CRC32 instruction on this architecture");
}
#endif

bool crc32c_hardware_available() noexcept { return hardware_available; }

}  // namespace detail

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) noexcept {
  if (hardware_available) return detail::crc32c_hardware(data, size, crc);
  return detail::crc32c_portable(data, size, crc);
}

}  // namespace keel::wire
