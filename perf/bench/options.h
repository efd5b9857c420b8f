// options.h — keel-bench's command line (perf/bench/README.md lists every flag).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codec.h"
#include "keel/status.h"

namespace keel::bench {

struct options {
  std::string command;                 // put range txn-put watch watch-latency lease-keepalive mixed
  std::vector<std::string> arguments;  // range: KEY [END]
  std::vector<std::string> endpoints{"http://127.0.0.1:2379"};
  unsigned clients = 1;
  unsigned conns = 1;
  std::uint64_t total = 10000;
  double duration_seconds = 0;  // > 0: run this long; --total is then ignored
  double rate = 0;              // requests per second over all clients; 0 = unlimited
  std::size_t key_size = 8;
  std::size_t val_size = 8;
  std::uint64_t key_space_size = 1;
  bool sequential_keys = false;
  bool linearizable = true;  // --consistency l (true) or s
  target_kind target = target_kind::v3json;
  std::string json_file;
  std::vector<int> cpus;
  unsigned shards = 1;
  unsigned streams = 10;
  unsigned watchers_per_stream = 10;
  double put_rate = 100;
  double read_ratio = 0.9;
  unsigned txn_ops = 1;
  std::string prefix = "keel-bench/";
  double timeout_seconds = 10;
  bool progress = false;
  std::string command_line;  // exactly as given, for the report
};

// Parses argv. On a bad or unknown flag returns errc::invalid_argument with one sentence
// (keel-bench prints it and exits 2). "--help" returns errc::cancelled with the usage.
result<options> parse_options(int argc, char** argv);
std::string usage_text();

}  // namespace keel::bench
