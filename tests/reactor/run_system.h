// run_system(shards, body): starts `shards` unpinned shards, runs the coroutine
// `body(system&)` on shard 0, stops everything when it returns and waits for the threads.
#pragma once

#include <boost/test/unit_test.hpp>

#include "keel/reactor/shard.h"

template <typename Body>
void run_system(unsigned shards, Body body) {
  keel::system sys;
  keel::status started = sys.start({shards, false}, nullptr);
  BOOST_REQUIRE_MESSAGE(started.is_ok(), started.to_string());
  sys.post(0, [&] {
    keel::spawn([](keel::system& s, Body& b) -> keel::task<void> {
      co_await b(s);
      s.stop();
    }(sys, body));
  });
  sys.wait();
}
