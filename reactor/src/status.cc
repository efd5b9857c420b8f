// status.cc — the names of error codes and the assertion failure path.
#include "keel/status.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace keel {

const char* errc_name(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid argument";
    case errc::not_found: return "not found";
    case errc::already_exists: return "already exists";
    case errc::io_error: return "I/O error";
    case errc::corruption: return "corruption";
    case errc::unsupported: return "unsupported";
    case errc::abi_mismatch: return "ABI mismatch";
    case errc::too_large: return "too large";
    case errc::cancelled: return "cancelled";
    case errc::timed_out: return "timed out";
    case errc::unavailable: return "unavailable";
  }
  return "unknown";
}

std::string status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(errc_name(_code)) + ": " + _message;
}

namespace detail {
void assert_failed(const char* expression, const char* file, int line,
                   const char* message) noexcept {
  int saved_errno = errno;
  std::fprintf(stderr, "keel: assertion failed: %s at %s:%d%s%s (errno: %s)\n", expression,
               file, line, message ? ": " : "", message ? message : "",
               std::strerror(saved_errno));
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

}  // namespace keel
