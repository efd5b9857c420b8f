// keel/assert.h — the one assertion macro for programmer errors.
//
// KEEL_ASSERT stays on in release builds: a broken invariant in the reactor, the WAL or
// Raft must stop the process with the expression, file and line, never carry on with
// corrupt state. Errors that can happen in operation (bad input, a full disk) are not
// assertions: they travel as keel::status values (keel/status.h).
#pragma once

namespace keel::detail {
[[noreturn]] void assert_failed(const char* expression, const char* file, int line,
                                const char* message) noexcept;
}

#define KEEL_ASSERT(expression)                                                          \
  ((expression) ? static_cast<void>(0)                                                   \
                : ::keel::detail::assert_failed(#expression, __FILE__, __LINE__, nullptr))

#define KEEL_ASSERT_MSG(expression, message)                                             \
  ((expression) ? static_cast<void>(0)                                                   \
                : ::keel::detail::assert_failed(#expression, __FILE__, __LINE__, (message)))

// An impossible system-call failure: print what failed and errno's text, then abort.
#define KEEL_PANIC(message) ::keel::detail::assert_failed("panic", __FILE__, __LINE__, (message))
