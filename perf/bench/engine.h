// engine.h — runs one keel-bench workload on reactor shards and collects the figures.
//
// Shard model: the generator runs `--shards` keel::system shards. Connection i belongs to
// shard i % shards and client j uses connection j % conns, so every client, its
// connection and its results live on one shard and nothing is shared while the run
// lasts. Each shard fills its own shard_results; main() merges them after the shards
// stopped (histogram::merge), so no figure is read while it is written except the
// relaxed `completed` counter the progress bar reads.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "histogram.h"
#include "options.h"

namespace keel::bench {

struct shard_results {
  histogram ok_latency;      // nanoseconds, successful requests (events for watch-latency)
  histogram error_latency;   // nanoseconds, failed requests (never dropped)
  histogram watch_create;    // watch: time to the "created" answer
  std::map<std::string, std::uint64_t> errors;  // by kind
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  std::uint64_t watch_events = 0;   // events received (watch, watch-latency)
  std::uint64_t watch_puts = 0;     // puts done to make them
  double thread_cpu_seconds = 0;    // CLOCK_THREAD_CPUTIME_ID of the shard over the run
  double wall_seconds = 0;          // this shard's run
  std::atomic<std::uint64_t> completed{0};  // for the progress bar (relaxed)

  void record(std::uint64_t nanoseconds, bool success, const std::string& kind);
  void merge(const shard_results& other);
};

struct run_results {
  std::vector<std::unique_ptr<shard_results>> shards;
  double wall_seconds = 0;
};

// Runs the workload. Returns the per-shard results, or a failure that stopped the run
// before it began (io_uring refused, bad endpoint).
result<run_results> run_workload(const options& o);

}  // namespace keel::bench
