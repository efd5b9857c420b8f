// rate_limiter.h — a token bucket that hands out send times (like Go's rate.Limiter
// Reserve): reserve(now) takes one token and returns how long the caller waits before it
// may send. Time comes in as an argument, so tests drive it with a fake clock.
//
// rate 0 means unlimited (reserve always returns 0). The bucket holds at most `burst`
// tokens (default: one; keel-bench uses max(1, rate / 100) so a 10 ms stall of the
// generator is caught up and no more). Owned by one generator shard; not thread-safe.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace keel::bench {

class rate_limiter {
 public:
  using clock_ns = std::int64_t;  // nanoseconds on any monotonic clock

  rate_limiter() = default;
  rate_limiter(double per_second, double burst, clock_ns now) noexcept
      : _rate(per_second), _burst(std::max(1.0, burst)), _tokens(std::max(1.0, burst)), _last(now) {}

  bool unlimited() const noexcept { return _rate <= 0; }

  // Takes a token; returns the nanoseconds to wait before using it (0: send now).
  clock_ns reserve(clock_ns now) noexcept {
    if (unlimited()) return 0;
    if (now > _last) {
      _tokens = std::min(_burst, _tokens + static_cast<double>(now - _last) * _rate / 1e9);
      _last = now;
    }
    _tokens -= 1;
    if (_tokens >= 0) return 0;
    return static_cast<clock_ns>(-_tokens / _rate * 1e9);
  }

 private:
  double _rate = 0;
  double _burst = 1;
  double _tokens = 1;
  clock_ns _last = 0;
};

}  // namespace keel::bench
