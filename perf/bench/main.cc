// keel-bench — load generator for keel and etcd (v2, v3 JSON gateway, keel frames).
// perf/bench/README.md describes the workloads, the flags and how to read the output.
#include <sched.h>
#include <sys/resource.h>

#include <cstdio>
#include <string>

#include "engine.h"
#include "options.h"

using namespace keel::bench;

namespace {

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') { out.push_back('\\'); out.push_back(c); }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); out += b; }
    else out.push_back(c);
  }
  return out;
}

double ms(std::uint64_t nanoseconds) { return static_cast<double>(nanoseconds) / 1e6; }

struct figures {
  double seconds;
  double throughput;
  double cpu_seconds;
  double cpu_per_1000;
  double busiest_shard;
};

void print_histogram(const char* name, const histogram& h) {
  if (h.count() == 0) return;
  std::printf("%-14s n=%llu  min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f ms\n", name,
              static_cast<unsigned long long>(h.count()), ms(h.min()), ms(h.percentile(0.5)), ms(h.percentile(0.9)),
              ms(h.percentile(0.99)), ms(h.percentile(0.999)), ms(h.max()), h.mean() / 1e6);
}

void json_histogram(std::FILE* f, const char* name, const histogram& h) {
  std::fprintf(f,
               "  \"%s\": {\"count\": %llu, \"min_ms\": %.6f, \"p50_ms\": %.6f, \"p90_ms\": %.6f, \"p99_ms\": %.6f, "
               "\"p999_ms\": %.6f, \"max_ms\": %.6f, \"mean_ms\": %.6f},\n",
               name, static_cast<unsigned long long>(h.count()), ms(h.min()), ms(h.percentile(0.5)),
               ms(h.percentile(0.9)), ms(h.percentile(0.99)), ms(h.percentile(0.999)), ms(h.max()), h.mean() / 1e6);
}

bool write_json(const options& o, const shard_results& all, const run_results& run, const figures& f) {
  std::FILE* out = std::fopen(o.json_file.c_str(), "w");
  if (out == nullptr) return false;
  std::fprintf(out, "{\n  \"command_line\": \"%s\",\n", json_escape(o.command_line).c_str());
  std::fprintf(out, "  \"config\": {\"command\": \"%s\", \"arguments\": [", o.command.c_str());
  for (std::size_t i = 0; i < o.arguments.size(); ++i) std::fprintf(out, "%s\"%s\"", i ? ", " : "", json_escape(o.arguments[i]).c_str());
  std::fprintf(out, "], \"endpoints\": [");
  for (std::size_t i = 0; i < o.endpoints.size(); ++i) std::fprintf(out, "%s\"%s\"", i ? ", " : "", json_escape(o.endpoints[i]).c_str());
  std::fprintf(out,
               "], \"target\": \"%s\", \"clients\": %u, \"conns\": %u, \"total\": %llu, \"duration_s\": %.3f, "
               "\"rate\": %.3f, \"key_size\": %zu, \"val_size\": %zu, \"key_space_size\": %llu, \"sequential_keys\": %s, "
               "\"consistency\": \"%s\", \"prefix\": \"%s\", \"txn_ops\": %u, \"streams\": %u, \"watchers_per_stream\": %u, "
               "\"put_rate\": %.3f, \"read_ratio\": %.3f, \"timeout_s\": %.3f, \"shards\": %u, \"cpus\": [",
               target_name(o.target), o.clients, o.conns, static_cast<unsigned long long>(o.total), o.duration_seconds,
               o.rate, o.key_size, o.val_size, static_cast<unsigned long long>(o.key_space_size),
               o.sequential_keys ? "true" : "false", o.linearizable ? "l" : "s", json_escape(o.prefix).c_str(), o.txn_ops,
               o.streams, o.watchers_per_stream, o.put_rate, o.read_ratio, o.timeout_seconds, o.shards);
  for (std::size_t i = 0; i < o.cpus.size(); ++i) std::fprintf(out, "%s%d", i ? ", " : "", o.cpus[i]);
  std::fprintf(out, "]},\n");
  std::fprintf(out, "  \"seconds\": %.6f,\n  \"succeeded\": %llu,\n  \"failed\": %llu,\n  \"throughput_per_s\": %.3f,\n",
               f.seconds, static_cast<unsigned long long>(all.ok), static_cast<unsigned long long>(all.failed), f.throughput);
  json_histogram(out, "latency", all.ok_latency);
  json_histogram(out, "error_latency", all.error_latency);
  json_histogram(out, "watch_create_latency", all.watch_create);
  std::fprintf(out, "  \"watch_events\": %llu,\n  \"watch_puts\": %llu,\n",
               static_cast<unsigned long long>(all.watch_events), static_cast<unsigned long long>(all.watch_puts));
  std::fprintf(out, "  \"errors\": {");
  bool first = true;
  for (const auto& [kind, n] : all.errors) {
    std::fprintf(out, "%s\"%s\": %llu", first ? "" : ", ", json_escape(kind).c_str(), static_cast<unsigned long long>(n));
    first = false;
  }
  std::fprintf(out, "},\n  \"generator\": {\"cpu_seconds\": %.6f, \"cpu_seconds_per_1000_requests\": %.6f, "
               "\"busiest_shard_fraction\": %.4f, \"saturated\": %s, \"shards\": [",
               f.cpu_seconds, f.cpu_per_1000, f.busiest_shard, f.busiest_shard > 0.9 ? "true" : "false");
  for (std::size_t i = 0; i < run.shards.size(); ++i) {
    const shard_results& s = *run.shards[i];
    std::fprintf(out, "%s{\"cpu_seconds\": %.6f, \"wall_seconds\": %.6f, \"busy_fraction\": %.4f}", i ? ", " : "",
                 s.thread_cpu_seconds, s.wall_seconds, s.wall_seconds > 0 ? s.thread_cpu_seconds / s.wall_seconds : 0);
  }
  std::fprintf(out, "]}\n}\n");
  return std::fclose(out) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_options(argc, argv);
  if (!parsed) {
    if (parsed.error().code() == keel::errc::cancelled) {
      std::fputs(parsed.error().message().c_str(), stdout);
      return 0;
    }
    std::fprintf(stderr, "keel-bench: %s\n", parsed.error().message().c_str());
    return 2;
  }
  options o = std::move(parsed.value());
  if (!o.cpus.empty()) {
    // keel::system pins shard i to the i-th CPU the process may use: restrict that set.
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : o.cpus) CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
      std::perror("keel-bench: --cpus");
      return 2;
    }
  }
  double cpu_before = process_cpu_seconds();
  auto ran = run_workload(o);
  if (!ran) {
    std::fprintf(stderr, "keel-bench: %s\n", ran.error().message().c_str());
    return ran.error().code() == keel::errc::invalid_argument || ran.error().code() == keel::errc::unsupported ? 2 : 1;
  }
  run_results& run = ran.value();
  shard_results all;
  for (auto& s : run.shards) all.merge(*s);

  figures f{};
  f.seconds = run.wall_seconds;
  std::uint64_t requests = all.ok + all.failed;
  f.throughput = f.seconds > 0 ? static_cast<double>(all.ok) / f.seconds : 0;
  f.cpu_seconds = process_cpu_seconds() - cpu_before;
  std::uint64_t work = requests + all.watch_puts;
  f.cpu_per_1000 = work > 0 ? f.cpu_seconds * 1000 / static_cast<double>(work) : 0;
  for (auto& s : run.shards) {
    if (s->wall_seconds > 0) f.busiest_shard = std::max(f.busiest_shard, s->thread_cpu_seconds / s->wall_seconds);
  }

  std::printf("%s\n", o.command_line.c_str());
  std::printf("%s against %s (%s), %u clients over %u connections, %u generator shard%s\n", o.command.c_str(),
              o.endpoints[0].c_str(), target_name(o.target), o.clients, o.conns, o.shards, o.shards == 1 ? "" : "s");
  std::printf("%-14s %llu succeeded, %llu failed in %.3f s: %.1f requests/s\n", "summary",
              static_cast<unsigned long long>(all.ok), static_cast<unsigned long long>(all.failed), f.seconds, f.throughput);
  print_histogram(o.command == "watch-latency" ? "event latency" : "latency", all.ok_latency);
  print_histogram("error latency", all.error_latency);
  print_histogram("watch create", all.watch_create);
  if (o.command == "watch" || o.command == "watch-latency") {
    std::printf("%-14s %llu puts, %llu events received\n", "watch", static_cast<unsigned long long>(all.watch_puts),
                static_cast<unsigned long long>(all.watch_events));
  }
  for (const auto& [kind, n] : all.errors) std::printf("%-14s %llu  %s\n", "error", static_cast<unsigned long long>(n), kind.c_str());
  std::printf("%-14s %.3f CPU s, %.4f CPU s per 1,000 requests, busiest shard %.0f%% busy\n", "generator", f.cpu_seconds,
              f.cpu_per_1000, f.busiest_shard * 100);
  if (f.busiest_shard > 0.9) {
    std::printf("WARNING: generator saturated (a shard was busy %.0f%% of the run): the figures measure keel-bench, "
                "not the server; add --shards or --cpus\n", f.busiest_shard * 100);
  }
  if (!o.json_file.empty() && !write_json(o, all, run, f)) {
    std::fprintf(stderr, "keel-bench: cannot write %s\n", o.json_file.c_str());
    return 1;
  }
  return 0;
}
