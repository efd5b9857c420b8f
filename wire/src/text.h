// text.h — printf-style formatting into a std::string for error messages (private).
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

namespace keel::wire::detail {

[[gnu::format(printf, 1, 2)]] inline std::string format(const char* pattern, ...) {
  char small[256];
  va_list arguments;
  va_start(arguments, pattern);
  int length = std::vsnprintf(small, sizeof small, pattern, arguments);
  va_end(arguments);
  if (length < 0) return pattern;
  if (static_cast<std::size_t>(length) < sizeof small) return std::string(small, length);
  std::string text(static_cast<std::size_t>(length), '\0');
  va_start(arguments, pattern);
  std::vsnprintf(text.data(), text.size() + 1, pattern, arguments);
  va_end(arguments);
  return text;
}

}  // namespace keel::wire::detail
