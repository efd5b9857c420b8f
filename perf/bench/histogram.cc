// histogram.cc — see histogram.h for the bucket layout and its precision.
#include "histogram.h"

#include <algorithm>
#include <cmath>

namespace keel::bench {

static_assert(histogram::bucket_count == 3776);

std::size_t histogram::index_of(std::uint64_t value) noexcept {
  if (value < sub_bucket_count) return static_cast<std::size_t>(value);
  unsigned k = 63u - static_cast<unsigned>(__builtin_clzll(value));  // >= sub_bucket_bits
  std::uint64_t sub = (value >> (k - sub_bucket_bits)) & (sub_bucket_count - 1);
  return sub_bucket_count + (k - sub_bucket_bits) * sub_bucket_count + sub;
}

std::uint64_t histogram::lowest_of(std::size_t index) noexcept {
  if (index < sub_bucket_count) return index;
  std::size_t k = (index - sub_bucket_count) / sub_bucket_count + sub_bucket_bits;
  std::uint64_t sub = (index - sub_bucket_count) % sub_bucket_count;
  return (std::uint64_t{1} << k) + (sub << (k - sub_bucket_bits));
}

std::uint64_t histogram::width_of(std::size_t index) noexcept {
  if (index < sub_bucket_count) return 1;
  std::size_t k = (index - sub_bucket_count) / sub_bucket_count + sub_bucket_bits;
  return std::uint64_t{1} << (k - sub_bucket_bits);
}

void histogram::record(std::uint64_t value) noexcept {
  ++_counts[index_of(value)];
  ++_count;
  _min = std::min(_min, value);
  _max = std::max(_max, value);
  _sum += value;
}

void histogram::merge(const histogram& other) noexcept {
  for (std::size_t i = 0; i < bucket_count; ++i) _counts[i] += other._counts[i];
  _count += other._count;
  _min = std::min(_min, other._min);
  _max = std::max(_max, other._max);
  _sum += other._sum;
}

void histogram::reset() noexcept { *this = histogram(); }

std::uint64_t histogram::percentile(double q) const noexcept {
  if (_count == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(_count)));
  rank = std::clamp<std::uint64_t>(rank, 1, _count);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += _counts[i];
    if (seen >= rank) {
      std::uint64_t middle = lowest_of(i) + (width_of(i) - 1) / 2;
      return std::clamp(middle, min(), _max);
    }
  }
  return _max;
}

}  // namespace keel::bench
