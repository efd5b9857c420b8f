// histogram.h — a log-bucketed latency histogram (HdrHistogram-like), fixed memory.
//
// Values are unsigned 64-bit (keel-bench records nanoseconds). Values below 64 have a
// bucket each. Above, every power of two [2^k, 2^(k+1)) is split into 64 linear
// sub-buckets of width 2^(k-6), so a bucket is at most 1/64 of its lower bound wide and
// the midpoint reported for a percentile is within 1/128 (0.79%) of every value in the
// bucket: `relative_error_max`. 3,776 counters (30 KiB) cover the whole uint64 range, so
// recording never allocates and never saturates.
//
// Percentiles walk the counters (no sorting of samples). min, max and the sum are exact.
// Histograms of different generator shards are merged with merge(); a histogram belongs
// to one thread at a time (no atomics).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace keel::bench {

class histogram {
 public:
  static constexpr unsigned sub_bucket_bits = 6;
  static constexpr std::uint64_t sub_bucket_count = 1u << sub_bucket_bits;  // 64
  static constexpr std::size_t bucket_count = sub_bucket_count + (64 - sub_bucket_bits) * sub_bucket_count;
  // A reported percentile is within this fraction of the exact sample at that rank.
  static constexpr double relative_error_max = 1.0 / (2 * sub_bucket_count);

  void record(std::uint64_t value) noexcept;
  void merge(const histogram& other) noexcept;
  void reset() noexcept;

  std::uint64_t count() const noexcept { return _count; }
  std::uint64_t min() const noexcept { return _count ? _min : 0; }
  std::uint64_t max() const noexcept { return _max; }
  double mean() const noexcept { return _count ? static_cast<double>(_sum) / static_cast<double>(_count) : 0; }
  // The value at quantile q in [0, 1]: the sample of rank ceil(q * count) (1-based,
  // at least 1), reported as its bucket's midpoint clamped to [min, max]. 0 when empty.
  std::uint64_t percentile(double q) const noexcept;

  // Bucket arithmetic, public for the tests.
  static std::size_t index_of(std::uint64_t value) noexcept;
  static std::uint64_t lowest_of(std::size_t index) noexcept;
  static std::uint64_t width_of(std::size_t index) noexcept;

 private:
  std::array<std::uint64_t, bucket_count> _counts{};
  std::uint64_t _count = 0;
  std::uint64_t _min = UINT64_MAX;
  std::uint64_t _max = 0;
  unsigned __int128 _sum = 0;
};

}  // namespace keel::bench
