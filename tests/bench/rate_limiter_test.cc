// The token bucket against a fake clock: clients that always want to send get the
// target rate within 5% over a 1 s window, and unlimited never waits.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "rate_limiter.h"

using keel::bench::rate_limiter;

namespace {

// `clients` senders, each sends at the time the limiter granted it and immediately asks
// again (as keel-bench's clients do with zero-latency answers). Counts sends in [0, 1 s).
std::uint64_t sends_in_one_second(double rate, int clients) {
  constexpr std::int64_t second = 1000000000;
  rate_limiter limiter(rate, std::max(1.0, rate / 100), 0);
  std::vector<std::int64_t> next(static_cast<std::size_t>(clients), 0);
  std::uint64_t sent = 0;
  for (;;) {
    std::size_t earliest = 0;
    for (std::size_t i = 1; i < next.size(); ++i) if (next[i] < next[earliest]) earliest = i;
    std::int64_t now = next[earliest];
    if (now >= second) break;
    std::int64_t at = now + limiter.reserve(now);
    if (at < second) ++sent;
    next[earliest] = at + 1;  // answered at once; asks again
  }
  return sent;
}

}  // namespace

BOOST_AUTO_TEST_CASE(achieved_rate_is_within_five_percent_of_target) {
  for (double rate : {10.0, 100.0, 1000.0, 25000.0}) {
    for (int clients : {1, 8, 64}) {
      double got = static_cast<double>(sends_in_one_second(rate, clients));
      BOOST_TEST(std::abs(got - rate) <= rate * 0.05 + 1, "rate " << rate << " clients " << clients << " got " << got);
    }
  }
}

BOOST_AUTO_TEST_CASE(slow_clients_are_not_held_back_and_burst_is_bounded) {
  rate_limiter limiter(1000, 10, 0);
  // After a long idle gap only `burst` sends go out without waiting.
  int immediate = 0;
  for (int i = 0; i < 100; ++i) immediate += limiter.reserve(5000000000) == 0 ? 1 : 0;
  BOOST_TEST(immediate == 10);
}

BOOST_AUTO_TEST_CASE(zero_rate_is_unlimited) {
  rate_limiter limiter(0, 1, 0);
  BOOST_TEST(limiter.unlimited());
  for (int i = 0; i < 1000; ++i) BOOST_TEST(limiter.reserve(0) == 0);
}
