// discovery_client_tool — runs keel_discovery_client's discover_initial_cluster() for N
// members at once, one thread each, against a discovery URL; used by
// discovery_e2e_test.py against keel's own service and against a real etcd 3.4.
//
// Usage: discovery_client_tool <discovery url> <members> [<first member number>]
// Member k is named "m<k>", advertises http://127.0.0.1:<41000+k> and http://[::1]:<41000+k>
// (two peer URLs, so the value has two sorted pairs), and registers a random 64-bit id.
// Prints one line per member: "member <k> ok <initial-cluster>" or
// "member <k> error <errc name> <message>". Exits 0 when every member succeeded with the
// same initial-cluster string, 1 otherwise.
#include <sys/random.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "keel/discovery/client.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <discovery url> <members> [<first member number>]\n", argv[0]);
    return 2;
  }
  std::string url = argv[1];
  int members = std::atoi(argv[2]);
  int first = argc > 3 ? std::atoi(argv[3]) : 1;
  std::vector<keel::result<std::string>> results(members, keel::status(keel::errc::unavailable, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < members; ++i) {
    threads.emplace_back([&, i] {
      int k = first + i;
      std::uint64_t id = 0;
      while (id == 0) (void)::getrandom(&id, sizeof id, 0);
      char hex[17];
      std::snprintf(hex, sizeof hex, "%" PRIx64, id);
      keel::discovery::discovery_request request;
      request.url = url;
      request.name = "m" + std::to_string(k);
      request.peer_urls = {"http://[::1]:" + std::to_string(41000 + k), "http://127.0.0.1:" + std::to_string(41000 + k)};
      request.member_id = hex;
      request.retry.base = std::chrono::milliseconds(50);
      request.retry.retries_max = 20;
      results[i] = keel::discovery::discover_initial_cluster(request);
    });
  }
  for (auto& t : threads) t.join();
  bool all_same = true;
  for (int i = 0; i < members; ++i) {
    if (results[i]) {
      std::printf("member %d ok %s\n", first + i, results[i].value().c_str());
      if (!results[0] || results[i].value() != results[0].value()) all_same = false;
    } else {
      std::printf("member %d error %s %s\n", first + i, keel::errc_name(results[i].error().code()),
                  results[i].error().message().c_str());
      all_same = false;
    }
  }
  return all_same ? 0 : 1;
}
