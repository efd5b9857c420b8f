// The histogram's percentiles against a sorted reference, its bucket arithmetic and merge.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "histogram.h"

using keel::bench::histogram;

namespace {

// The exact sample of rank ceil(q * n), as histogram::percentile defines it.
std::uint64_t reference(const std::vector<std::uint64_t>& sorted, double q) {
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void check_against_reference(std::vector<std::uint64_t> samples) {
  histogram h;
  for (auto v : samples) h.record(v);
  std::sort(samples.begin(), samples.end());
  BOOST_TEST(h.count() == samples.size());
  BOOST_TEST(h.min() == samples.front());
  BOOST_TEST(h.max() == samples.back());
  for (double q : {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    double exact = static_cast<double>(reference(samples, q));
    double got = static_cast<double>(h.percentile(q));
    BOOST_TEST(std::abs(got - exact) <= exact * histogram::relative_error_max + 0.5,
               "q=" << q << " exact " << exact << " histogram " << got);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(bucket_bounds_cover_every_value_once) {
  for (std::size_t i = 0; i + 1 < histogram::bucket_count; ++i) {
    BOOST_TEST(histogram::lowest_of(i) + histogram::width_of(i) == histogram::lowest_of(i + 1));
    BOOST_TEST(histogram::index_of(histogram::lowest_of(i)) == i);
    BOOST_TEST(histogram::index_of(histogram::lowest_of(i) + histogram::width_of(i) - 1) == i);
  }
  BOOST_TEST(histogram::index_of(UINT64_MAX) == histogram::bucket_count - 1);
  // A bucket is at most 1/64 of its lowest value wide.
  for (std::size_t i = histogram::sub_bucket_count; i < histogram::bucket_count; ++i) {
    BOOST_TEST(histogram::width_of(i) * 64 <= histogram::lowest_of(i));
  }
}

BOOST_AUTO_TEST_CASE(percentiles_match_sorted_reference_on_uniform_data) {
  std::mt19937_64 random(1);
  std::uniform_int_distribution<std::uint64_t> d(1000, 50000000);
  std::vector<std::uint64_t> samples(100000);
  for (auto& v : samples) v = d(random);
  check_against_reference(samples);
}

BOOST_AUTO_TEST_CASE(percentiles_match_sorted_reference_on_lognormal_data) {
  std::mt19937_64 random(2);
  std::lognormal_distribution<double> d(13.0, 1.5);  // ~0.5 ms median, long tail
  std::vector<std::uint64_t> samples(200000);
  for (auto& v : samples) v = static_cast<std::uint64_t>(d(random));
  check_against_reference(samples);
}

BOOST_AUTO_TEST_CASE(percentiles_match_sorted_reference_on_bimodal_and_small_data) {
  std::mt19937_64 random(3);
  std::exponential_distribution<double> fast(1.0 / 200000), slow(1.0 / 40000000);
  std::vector<std::uint64_t> samples;
  for (int i = 0; i < 50000; ++i) samples.push_back(static_cast<std::uint64_t>(i % 10 == 0 ? slow(random) : fast(random)));
  check_against_reference(samples);
  std::vector<std::uint64_t> small;
  for (int i = 0; i < 1000; ++i) small.push_back(random() % 100);  // exact buckets below 64
  check_against_reference(small);
  check_against_reference({42});
}

BOOST_AUTO_TEST_CASE(merge_equals_recording_everything_in_one) {
  std::mt19937_64 random(4);
  histogram a, b, both;
  for (int i = 0; i < 20000; ++i) {
    std::uint64_t v = random() % 100000000;
    (i % 3 == 0 ? a : b).record(v);
    both.record(v);
  }
  histogram merged;
  merged.merge(a);
  merged.merge(b);
  BOOST_TEST(merged.count() == both.count());
  BOOST_TEST(merged.min() == both.min());
  BOOST_TEST(merged.max() == both.max());
  BOOST_TEST(merged.mean() == both.mean());
  for (double q : {0.5, 0.9, 0.99, 0.999}) BOOST_TEST(merged.percentile(q) == both.percentile(q));
}

BOOST_AUTO_TEST_CASE(empty_histogram_reports_zeros) {
  histogram h;
  BOOST_TEST(h.count() == 0u);
  BOOST_TEST(h.percentile(0.99) == 0u);
  BOOST_TEST(h.min() == 0u);
  BOOST_TEST(h.max() == 0u);
}
