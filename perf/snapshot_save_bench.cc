// snapshot-save-bench — CPU time of mvcc_store::save, the snapshot child's encoding.
//
// Builds the store a put benchmark leaves behind (--puts puts of --val-size bytes over
// --keys random 8-byte keys, no compaction, so every version is kept), then times save()
// --rounds times into a fresh string and prints each time and the median. perf/RESULTS.md
// quotes it; it is not a test.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "keel/kv/mvcc.h"

namespace {

struct options {
  long puts = 300000;
  long keys = 100000;
  long val_size = 256;
  int rounds = 5;
};

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    long v = std::strtol(argv[i + 1], nullptr, 10);
    if (v <= 0) return false;
    if (!std::strcmp(argv[i], "--puts")) o.puts = v;
    else if (!std::strcmp(argv[i], "--keys")) o.keys = v;
    else if (!std::strcmp(argv[i], "--val-size")) o.val_size = v;
    else if (!std::strcmp(argv[i], "--rounds")) o.rounds = static_cast<int>(v);
    else return false;
  }
  return argc % 2 == 1;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr, "usage: snapshot-save-bench [--puts N] [--keys N] [--val-size N] [--rounds N]\n");
    return 2;
  }
  keel::kv::mvcc_store store;
  std::mt19937_64 random(7);
  for (long i = 0; i < o.puts; ++i) {
    keel::kv::put_request put;
    char key[32];
    std::snprintf(key, sizeof key, "%08llu", static_cast<unsigned long long>(random() % o.keys));
    put.key = key;
    put.value.assign(static_cast<std::size_t>(o.val_size), 'v');
    if (!store.put(put)) return 1;
  }
  std::vector<double> ms;
  for (int round = 0; round < o.rounds; ++round) {
    auto start = std::chrono::steady_clock::now();
    std::string out;
    store.save(out);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    std::printf("round %d: %zu bytes in %.1f ms\n", round + 1, out.size(), ms.back());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("median %.1f ms (%ld puts, %ld keys, %ld-byte values)\n", ms[ms.size() / 2], o.puts, o.keys, o.val_size);
}
