// go_strconv.h — Go's strconv number and boolean parsing, exactly, for the places where
// keel must accept what etcd (a Go program) accepts and refuse what it refuses: v2 query
// parameters, the discovery service's form fields. Header-only, so that modules (loaded
// with dlopen) get it without needing a symbol from keeld.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace keel::go {

// strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False; nullopt otherwise.
inline std::optional<bool> parse_bool(std::string_view text) {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"})
    if (text == t) return true;
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"})
    if (text == f) return false;
  return std::nullopt;
}

// strconv.ParseUint(text, 10, 64): decimal digits only (no sign, no blanks), that fit.
inline std::optional<std::uint64_t> parse_uint(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// strconv.Atoi on 64 bits: an optional sign, then decimal digits that fit.
inline std::optional<long long> parse_int(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  auto magnitude = parse_uint(text);
  if (!magnitude || *magnitude > static_cast<std::uint64_t>(std::numeric_limits<long long>::max()))
    return std::nullopt;
  long long v = static_cast<long long>(*magnitude);
  return negative ? -v : v;
}

}  // namespace keel::go
