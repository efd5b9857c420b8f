// keel/wire/crc32c.h — CRC-32C (Castagnoli), the checksum of frames and WAL records.
//
// Polynomial 0x1EDC6F41 (reflected 0x82F63B78), initial value and final XOR 0xFFFFFFFF:
// crc32c("123456789", 9) == 0xE3069283. Uses the SSE4.2 CRC32 instruction when the CPU
// has it (checked once) and a slicing-by-8 table otherwise; both give the same answer.
// Thread-safe, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::wire {

// The CRC-32C of [data, data + size). Pass a previous result as `crc` to continue it:
// crc32c(b, m, crc32c(a, n)) == crc32c of a followed by b. REQUIRES: data != nullptr
// unless size == 0.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

namespace detail {
// The two implementations behind crc32c(), exposed so tests can check each.
std::uint32_t crc32c_portable(const void* data, std::size_t size, std::uint32_t crc) noexcept;
// REQUIRES: crc32c_hardware_available().
std::uint32_t crc32c_hardware(const void* data, std::size_t size, std::uint32_t crc) noexcept;
bool crc32c_hardware_available() noexcept;
}  // namespace detail

}  // namespace keel::wire
