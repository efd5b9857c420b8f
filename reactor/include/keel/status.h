// keel/status.h — errors as values.
//
// Every error that can happen in operation crosses a module boundary as a status or a
// result<T>: a code from one closed set plus a human message that says what was wrong
// and where ("keel.json:12: /client-port: expected integer"). Reactor paths are
// noexcept; exceptions never cross a module boundary.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "keel/assert.h"

namespace keel {

enum class errc : std::uint8_t {
  ok = 0,
  invalid_argument,   // bad input from a user, a client or a peer
  not_found,          // a named thing does not exist (a file, a module, a key)
  already_exists,
  io_error,           // a system call failed; the message names it and errno's text
  corruption,         // data on disk or on the wire failed its checksum or verifier
  unsupported,        // the kernel or the build lacks a needed feature
  abi_mismatch,       // a module was built against another ABI version
  too_large,          // a limit in keel/limits.h was exceeded
  cancelled,
  timed_out,
  unavailable,        // try again later (no leader, shutting down)
};

const char* errc_name(errc code) noexcept;

class [[nodiscard]] status {
 public:
  status() noexcept = default;
  status(errc code, std::string message) : _code(code), _message(std::move(message)) {}

  static status ok() noexcept { return {}; }
  bool is_ok() const noexcept { return _code == errc::ok; }
  explicit operator bool() const noexcept { return is_ok(); }
  errc code() const noexcept { return _code; }
  const std::string& message() const noexcept { return _message; }
  // "<code name>: <message>"
  std::string to_string() const;

 private:
  errc _code = errc::ok;
  std::string _message;
};

// A value or a failed status. REQUIRES: value() only when is_ok().
template <typename T>
class [[nodiscard]] result {
 public:
  result(T value) : _state(std::move(value)) {}
  result(status failure) : _state(std::move(failure)) {
    KEEL_ASSERT(!std::get<status>(_state).is_ok());
  }

  bool is_ok() const noexcept { return _state.index() == 0; }
  explicit operator bool() const noexcept { return is_ok(); }
  T& value() & { KEEL_ASSERT(is_ok()); return std::get<0>(_state); }
  const T& value() const& { KEEL_ASSERT(is_ok()); return std::get<0>(_state); }
  T&& value() && { KEEL_ASSERT(is_ok()); return std::get<0>(std::move(_state)); }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }
  // The failure; status::ok() when there is a value.
  status error() const { return is_ok() ? status::ok() : std::get<1>(_state); }

 private:
  std::variant<T, status> _state;
};

}  // namespace keel
