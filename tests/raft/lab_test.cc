// MIT 6.824 lab 2 (2A election, 2B agreement, 2C persistence, 2D snapshots), ported from
// raft/test_test.go to the deterministic simulator (sim.h). Each test loops over seeds; a
// failure names the seed. Virtual time: 6.824's sleeps are run_for() calls.
#define BOOST_TEST_MODULE raft_lab
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sim.h"

using namespace keel;
using namespace keel::raft;
using namespace keel::raft::sim;

namespace {

// The node k places after id, among 1..n (6.824's (leader + k) % n).
node_id after(node_id id, std::size_t k, std::size_t n) { return (id - 1 + k) % n + 1; }

// KEEL_TEST_RAFT_READY_DEPTH=2 runs every scenario with pipelined readies (ctest
// raft_lab_pipelined_test): each node takes its next ready while the last one's fsync runs.
std::size_t ready_depth() {
  const char* text = std::getenv("KEEL_TEST_RAFT_READY_DEPTH");
  return text && std::atoi(text) > 0 ? static_cast<std::size_t>(std::atoi(text)) : 1;
}

options lab(std::size_t nodes, std::uint64_t seed) {
  options o;
  o.nodes = nodes;
  o.seed = seed;
  o.ready_depth = ready_depth();
  return o;
}

network_options unreliable() {
  network_options net;
  net.delay_us_max = 27 * ms;  // labrpc: 0-27 ms, 10% lost
  net.drop = 0.1;
  return net;
}

std::string value(cluster& c) { return "v" + std::to_string(c.random(1'000'000'000)); }

// 6.824 crash1 / start1 + connect: the node loses what is not durable.
void crash(cluster& c, node_id id) {
  c.disconnect(id);
  c.crash(id);
}
void revive(cluster& c, node_id id) {
  c.restart(id);
  c.connect(id);
}

}  // namespace

// ---- 2A: leader election -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(initial_election) {
  for (std::uint64_t seed : seeds(50)) {
    cluster c(lab(3, seed));
    check_one_leader(c);
    // Everyone agrees on the term, and it does not move while nothing fails.
    c.run_for(50 * ms);
    std::uint64_t term1 = check_terms(c);
    BOOST_REQUIRE_GE(term1, 2u);  // bootstrap is term 1; the first election is term 2
    c.run_for(2 * election_timeout_us);
    BOOST_REQUIRE_EQUAL(check_terms(c), term1);
    check_one_leader(c);
  }
}

BOOST_AUTO_TEST_CASE(re_election) {
  for (std::uint64_t seed : seeds(50)) {
    cluster c(lab(3, seed));
    node_id leader1 = check_one_leader(c);
    // The leader disconnects: a new one is elected.
    c.disconnect(leader1);
    check_one_leader(c);
    // The old leader rejoins: still one leader.
    c.connect(leader1);
    node_id leader2 = check_one_leader(c);
    // No quorum: no leader.
    c.disconnect(leader2);
    c.disconnect(after(leader2, 1, 3));
    c.run_for(2 * election_timeout_us);
    check_no_leader(c);
    // A quorum again: a leader.
    c.connect(after(leader2, 1, 3));
    check_one_leader(c);
    c.connect(leader2);
    check_one_leader(c);
  }
}

BOOST_AUTO_TEST_CASE(many_elections) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(7, seed));
    check_one_leader(c);
    for (int iteration = 0; iteration < 10; ++iteration) {
      std::vector<node_id> cut;
      for (int i = 0; i < 3; ++i) cut.push_back(c.random(7) + 1);
      for (node_id id : cut) c.disconnect(id);
      // Four or more of seven remain: they elect a leader (or keep one).
      check_one_leader(c);
      for (node_id id : cut) c.connect(id);
    }
    check_one_leader(c);
  }
}

// ---- 2B: agreement -----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(basic_agree) {
  for (std::uint64_t seed : seeds(20)) {
    cluster c(lab(3, seed));
    std::uint64_t previous = 0;
    for (int i = 0; i < 3; ++i) {
      std::string data = value(c);
      std::uint64_t index = c.one(data, 3, false);
      BOOST_REQUIRE_GT(index, previous);
      previous = index;
    }
  }
}

// Each command goes to each follower once on a reliable network (6.824 TestRPCBytes).
BOOST_AUTO_TEST_CASE(rpc_bytes) {
  cluster c(lab(3, 1));
  c.one("warm-up", 3, false);
  std::uint64_t before = c.sent_entry_bytes();
  std::uint64_t sent = 0;
  for (int i = 0; i < 10; ++i) {
    std::string data(5000, static_cast<char>('a' + i));
    c.one(data, 3, false);
    sent += data.size();
  }
  std::uint64_t got = c.sent_entry_bytes() - before;
  BOOST_TEST_MESSAGE("entry bytes on the wire " << got << " for " << sent << " x 2 followers");
  BOOST_REQUIRE_LE(got, 2 * sent + 5000);
}

BOOST_AUTO_TEST_CASE(fail_agree) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(3, seed));
    c.one("101", 3, false);
    node_id leader = check_one_leader(c);
    c.disconnect(after(leader, 1, 3));
    // The leader and the remaining follower agree on their own.
    c.one("102", 2, false);
    c.one("103", 2, false);
    c.run_for(election_timeout_us);
    c.one("104", 2, false);
    c.one("105", 2, false);
    // The follower comes back and catches up.
    c.connect(after(leader, 1, 3));
    c.one("106", 3, true);
    c.run_for(election_timeout_us);
    c.one("107", 3, true);
  }
}

BOOST_AUTO_TEST_CASE(fail_no_agree) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(5, seed));
    c.one("10", 5, false);
    node_id leader = check_one_leader(c);
    for (std::size_t k = 1; k <= 3; ++k) c.disconnect(after(leader, k, 5));
    result<entry_id> proposed = c.propose(leader, "20");
    BOOST_REQUIRE(proposed.is_ok());
    c.run_for(2 * election_timeout_us);
    BOOST_REQUIRE_EQUAL(c.n_committed(proposed.value().index).first, 0u);
    for (std::size_t k = 1; k <= 3; ++k) c.connect(after(leader, k, 5));
    // The disconnected majority may have chosen its own leader; either way agreement
    // resumes.
    check_one_leader(c);
    c.one("1000", 5, true);
  }
}

BOOST_AUTO_TEST_CASE(concurrent_starts) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(3, seed));
    node_id leader = check_one_leader(c);
    c.one("first", 3, true);
    // Five proposals at the same instant, as 6.824's goroutines.
    std::map<std::uint64_t, std::string> proposed;
    std::uint64_t term = 0;
    for (int i = 0; i < 5; ++i) {
      result<entry_id> r = c.propose(leader, "c" + std::to_string(i));
      BOOST_REQUIRE(r.is_ok());
      BOOST_REQUIRE(term == 0 || term == r.value().term);
      term = r.value().term;
      proposed[r.value().index] = "c" + std::to_string(i);
    }
    std::uint64_t last = proposed.rbegin()->first;
    BOOST_REQUIRE(c.run_until([&] { return c.n_committed(last).first == 3; }, 5 * 1000 * ms));
    for (const auto& [index, data] : proposed)
      BOOST_REQUIRE_EQUAL(c.n_committed(index).second, data);
  }
}

BOOST_AUTO_TEST_CASE(rejoin) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(3, seed));
    c.one("101", 3, true);
    // The leader, cut off, takes proposals it cannot commit.
    node_id leader1 = check_one_leader(c);
    c.disconnect(leader1);
    for (const char* data : {"102", "103", "104"}) BOOST_REQUIRE(c.propose(leader1, data).is_ok());
    // A new leader commits at the same indexes.
    c.one("103", 2, true);
    node_id leader2 = check_one_leader(c);
    c.disconnect(leader2);
    // The old leader rejoins: its entries are overwritten.
    c.connect(leader1);
    c.one("104", 2, true);
    c.connect(leader2);
    c.one("105", 3, true);
    c.check_full();
  }
}

// 6.824 TestBackup: a leader backs up over 50 conflicting entries quickly. With fast
// back-tracking (a rejection hints the follower's conflicting term) each follower needs a
// handful of rejected round trips, not one per entry.
BOOST_AUTO_TEST_CASE(backup) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(5, seed));
    c.one(value(c), 5, true);
    // Leader and one follower in a minority, with 50 uncommitted entries.
    node_id leader1 = check_one_leader(c);
    for (std::size_t k = 2; k <= 4; ++k) c.disconnect(after(leader1, k, 5));
    for (int i = 0; i < 50; ++i) BOOST_REQUIRE(c.propose(leader1, value(c)).is_ok());
    c.run_for(election_timeout_us / 2);
    c.disconnect(leader1);
    c.disconnect(after(leader1, 1, 5));
    // The other three commit 50 entries of their own.
    for (std::size_t k = 2; k <= 4; ++k) c.connect(after(leader1, k, 5));
    for (int i = 0; i < 50; ++i) c.one(value(c), 3, true);
    // Their leader, with one follower cut off, takes 50 it cannot commit.
    node_id leader2 = check_one_leader(c);
    node_id other = after(leader1, 2, 5);
    if (other == leader2) other = after(leader2, 1, 5);
    c.disconnect(other);
    for (int i = 0; i < 50; ++i) BOOST_REQUIRE(c.propose(leader2, value(c)).is_ok());
    c.run_for(election_timeout_us / 2);
    // The first two come back with `other`: 50 conflicting entries each to back over.
    for (node_id id : c.ids()) c.disconnect(id);
    c.connect(leader1);
    c.connect(after(leader1, 1, 5));
    c.connect(other);
    std::uint64_t rejections = c.rejections();
    for (int i = 0; i < 50; ++i) c.one(value(c), 3, true);
    std::uint64_t backed_up = c.rejections() - rejections;
    // Everyone back.
    for (node_id id : c.ids()) c.connect(id);
    rejections = c.rejections();
    c.one(value(c), 5, true);
    std::uint64_t rejoined = c.rejections() - rejections;
    BOOST_TEST_MESSAGE("seed " << seed << ": rejections " << backed_up << " then " << rejoined);
    // Two followers over 50 entries each: without the hint this is >= 100.
    BOOST_REQUIRE_LE(backed_up, 12u);
    BOOST_REQUIRE_LE(rejoined, 12u);
    c.check_full();
  }
}

// 6.824 TestCount: no more messages than needed, idle or busy.
BOOST_AUTO_TEST_CASE(count) {
  cluster c(lab(3, 1));
  check_one_leader(c);
  std::uint64_t elect = c.sent_total();
  BOOST_TEST_MESSAGE("messages to elect: " << elect);
  // Five ticks of 50 ms of heartbeats at most per follower, plus the election itself.
  BOOST_REQUIRE_LE(elect, 200u);
  std::uint64_t before = c.sent_total();
  for (int i = 0; i < 10; ++i) c.one(value(c), 3, false);
  std::uint64_t busy = c.sent_total() - before;
  BOOST_TEST_MESSAGE("messages for 10 agreements: " << busy);
  before = c.sent_total();
  c.run_for(1000 * ms);
  std::uint64_t idle = c.sent_total() - before;
  BOOST_TEST_MESSAGE("messages idle for 1 s: " << idle);
  // One heartbeat and one response per follower per 50 ms tick.
  BOOST_REQUIRE_LE(idle, 2u * 2u * 20u + 8u);
}

// ---- 2C: persistence ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(persist1) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(3, seed));
    c.one("11", 3, true);
    for (node_id id : c.ids()) crash(c, id);
    for (node_id id : c.ids()) revive(c, id);
    c.one("12", 3, true);
    node_id leader1 = check_one_leader(c);
    crash(c, leader1);
    revive(c, leader1);
    c.one("13", 3, true);
    node_id leader2 = check_one_leader(c);
    crash(c, leader2);
    std::uint64_t index = c.one("14", 2, true);
    revive(c, leader2);
    BOOST_REQUIRE(c.run_until([&] { return c.n_committed(index).first == 3; }, 10 * 1000 * ms));
    node_id i3 = after(check_one_leader(c), 1, 3);
    crash(c, i3);
    c.one("15", 2, true);
    revive(c, i3);
    c.one("16", 3, true);
  }
}

BOOST_AUTO_TEST_CASE(persist2) {
  for (std::uint64_t seed : seeds(20)) {
    cluster c(lab(5, seed));
    int index = 1;
    for (int iteration = 0; iteration < 5; ++iteration) {
      c.one(std::to_string(10 + index++), 5, true);
      node_id leader1 = check_one_leader(c);
      crash(c, after(leader1, 1, 5));
      crash(c, after(leader1, 2, 5));
      c.one(std::to_string(10 + index++), 3, true);
      crash(c, leader1);
      crash(c, after(leader1, 3, 5));
      crash(c, after(leader1, 4, 5));
      revive(c, after(leader1, 1, 5));
      revive(c, after(leader1, 2, 5));
      c.run_for(election_timeout_us);
      revive(c, after(leader1, 3, 5));
      c.one(std::to_string(10 + index++), 3, true);
      revive(c, after(leader1, 4, 5));
      revive(c, leader1);
    }
    c.one("1000", 5, true);
  }
}

BOOST_AUTO_TEST_CASE(persist3) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(lab(3, seed));
    c.one("101", 3, true);
    node_id leader = check_one_leader(c);
    crash(c, after(leader, 2, 3));
    c.one("102", 2, true);
    crash(c, leader);
    crash(c, after(leader, 1, 3));
    revive(c, after(leader, 2, 3));
    revive(c, leader);
    c.one("103", 2, true);
    revive(c, after(leader, 1, 3));
    c.one("104", 3, true);
  }
}

namespace {

// 6.824's Figure 8 tests: leaders crash (or disconnect) right after proposing, often
// before their entries reach anyone, so logs diverge across many terms; an entry of an
// old term must never be committed by counting replicas (§5.4.2).
void figure8(std::uint64_t seed, bool unreliable_network, int iterations) {
  options o = lab(5, seed);
  // One entry per append half of the time: a new leader then gets acknowledgements for
  // entries of earlier terms alone, the case the §5.4.2 rule is about (otherwise they
  // travel with the new leader's no-op and commit with it).
  if (seed % 2 == 0) o.max_size_per_msg = 1;
  cluster c(o);
  if (unreliable_network) {
    c.set_network(unreliable());
  } else {
    network_options net;
    net.delay_us_max = 13 * ms;  // so that a crash often catches appends in flight
    c.set_network(net);
  }
  c.one(value(c), 1, true);
  std::size_t nup = 5;
  for (int iteration = 0; iteration < iterations; ++iteration) {
    if (unreliable_network && iteration == iterations / 5) {
      network_options net = unreliable();
      net.long_delay = 0.66;  // labrpc's long reordering
      c.set_network(net);
    }
    std::optional<node_id> leader;
    for (node_id id : c.ids()) {
      bool reachable = unreliable_network ? c.connected(id) : c.up(id);
      if (reachable && c.up(id) && c.propose(id, value(c)).is_ok()) leader = id;
    }
    c.run_for(c.random(1000) < 100 ? c.random(election_timeout_us / 2) : c.random(13 * ms));
    if (leader && (!unreliable_network || c.random(1000) < 500)) {
      if (unreliable_network) {
        c.disconnect(*leader);
      } else {
        c.crash(*leader);
      }
      --nup;
    }
    if (nup < 3) {
      node_id s = c.random(5) + 1;
      bool down = unreliable_network ? !c.connected(s) : !c.up(s);
      if (down) {
        if (unreliable_network) {
          c.connect(s);
        } else {
          c.restart(s);
        }
        ++nup;
      }
    }
  }
  for (node_id id : c.ids()) {
    if (!c.up(id)) c.restart(id);
    c.connect(id);
  }
  c.set_network({});
  std::uint64_t last = c.one(value(c), 5, true);
  c.check_full();
  std::uint64_t top_term = 0;
  for (node_id id : c.ids()) top_term = std::max(top_term, c.raft(id).term());
  BOOST_TEST_MESSAGE("figure8 seed " << seed << ": " << c.now() / 1000 << " ms virtual, "
                                     << c.sent_total() << " messages, last index " << last
                                     << ", term " << top_term);
}

}  // namespace

// The paper's Figure 8, scripted: (a) S1 leads term T and gets X to S2 only; (b) S5 leads
// T+1 with S3 and S4 and writes Y at X's index, alone; (c) S1 leads again and gets X to a
// majority, but its own entries do not get out; (d) S5 leads again and overwrites X with
// Y. That is legal only because (c) did not commit X: an entry of an earlier term is not
// committed by counting replicas (§5.4.2). The checker would flag (d) otherwise.
BOOST_AUTO_TEST_CASE(figure8_scripted) {
  for (std::uint64_t seed : seeds(30)) {
    options o = lab(5, seed);
    o.max_size_per_msg = 1;  // X travels alone, not with S1's no-op
    // Other nodes' timers still fire; with pre-vote their (filtered) campaigns move no
    // term and spend no vote.
    o.pre_vote = true;
    cluster c(o);
    c.one("init", 5, true);
    node_id s1 = check_one_leader(c);
    node_id s2 = after(s1, 1, 5), s3 = after(s1, 2, 5), s5 = after(s1, 4, 5);
    // Only the scripted candidate of each phase may ask for votes.
    auto only_candidate = [](const message& m, node_id candidate) {
      return (m.type == message_type::vote || m.type == message_type::pre_vote) &&
             m.from != candidate;
    };
    auto lead = [&](node_id id) {
      return c.run_until(
          [&] {
            if (c.raft(id).role() == role::leader) return true;
            if (c.raft(id).role() == role::follower) c.campaign(id);
            return false;
          },
          election_timeout_us);
    };
    // (a)
    c.set_filter([&](message& m) { return only_candidate(m, s1); });
    for (node_id id : c.ids())
      if (id != s2) c.block_link(s1, id);
    entry_id x = c.propose(s1, "X").value();
    BOOST_REQUIRE_MESSAGE(c.run_until(
                              [&] {
                                return c.raft(s2).term_at(x.index) == x.term &&
                                       c.raft(s1).persisted_index() >= x.index;
                              },
                              100 * ms),
                          "seed " << seed);
    c.crash(s1);
    c.heal();
    // (b) S5 leads; its appends go nowhere.
    c.set_filter([&](message& m) {
      return only_candidate(m, s5) || (m.from == s5 && m.type == message_type::append);
    });
    BOOST_REQUIRE_MESSAGE(lead(s5), "seed " << seed);
    BOOST_REQUIRE_EQUAL(c.raft(s5).term_at(x.index).value(), c.raft(s5).term());
    // Y must be durable before S5 crashes, or the crash takes it away.
    BOOST_REQUIRE_MESSAGE(
        c.run_until([&] { return c.raft(s5).persisted_index() >= x.index; }, 100 * ms),
        "seed " << seed);
    c.crash(s5);
    // (c) S1 back and leading: only entries of X's term leave it (newer ones are stripped
    // from its appends, which still probe).
    c.set_filter([&](message& m) {
      if (only_candidate(m, s1)) return true;
      if (m.type == message_type::append && m.from == s1)
        std::erase_if(m.entries, [&](const entry& e) { return e.term > x.term; });
      return false;
    });
    c.restart(s1);
    BOOST_REQUIRE_MESSAGE(lead(s1), "seed " << seed);
    BOOST_REQUIRE_MESSAGE(
        c.run_until([&] { return c.raft(s3).term_at(x.index) == x.term; }, 100 * ms),
        "seed " << seed);
    c.run_for(100 * ms);
    BOOST_REQUIRE_LT(c.raft(s1).commit_index(), x.index);  // X is on a majority, not committed
    c.crash(s1);
    // (d) S5 back: its Y (term T+1) beats X (term T); X is overwritten everywhere.
    c.set_filter([&](message& m) { return only_candidate(m, s5); });
    c.restart(s5);
    BOOST_REQUIRE_MESSAGE(lead(s5), "seed " << seed);
    BOOST_REQUIRE(
        c.run_until([&] { return c.n_committed(x.index).first >= 3; }, election_timeout_us));
    BOOST_REQUIRE_NE(c.n_committed(x.index).second, "X");
    c.set_filter({});
    c.restart(s1);
    c.one("after", 5, true);
    c.check_full();
  }
}

BOOST_AUTO_TEST_CASE(figure8_reliable) {
  for (std::uint64_t seed : seeds(60)) figure8(seed, false, 1000);
}

BOOST_AUTO_TEST_CASE(figure8_unreliable) {
  for (std::uint64_t seed : seeds(30)) figure8(seed, true, 1000);
}

BOOST_AUTO_TEST_CASE(unreliable_agree) {
  for (std::uint64_t seed : seeds(20)) {
    cluster c(lab(5, seed));
    c.set_network(unreliable());
    for (int iteration = 1; iteration < 50; ++iteration) {
      for (int j = 0; j < 4; ++j) c.one(std::to_string(100 * iteration + j), 1, true);
      c.one(std::to_string(iteration), 1, true);
    }
    c.set_network({});
    c.one("100", 5, true);
  }
}

namespace {

// 6.824's churn tests: clients keep proposing while nodes crash, restart, disconnect
// and reconnect at random; every value a client saw committed must be in the final log.
// Returns how many values clients saw committed (a seed may legitimately see none: the
// schedule can keep a majority down or cut off throughout).
std::size_t churn(std::uint64_t seed, bool unreliable_network) {
  cluster c(lab(5, seed));
  if (unreliable_network) c.set_network(unreliable());
  struct pending {
    std::uint64_t index, term;
    std::string data;
  };
  std::vector<pending> proposals;
  std::vector<std::string> committed_seen;
  auto clients = [&] {
    for (int client = 0; client < 3; ++client) {
      node_id id = c.random(5) + 1;
      if (!c.up(id)) continue;
      std::string data = "client" + std::to_string(client) + "-" + value(c);
      result<entry_id> r = c.propose(id, data);
      if (r) proposals.push_back({r.value().index, r.value().term, data});
    }
    // A client learns its value committed when some node applied it at its index.
    std::vector<pending> waiting;
    for (pending& p : proposals) {
      auto [count, data] = c.n_committed(p.index);
      if (count == 0) {
        waiting.push_back(std::move(p));
      } else if (data == p.data) {
        committed_seen.push_back(p.data);
      }
    }
    proposals = std::move(waiting);
  };
  for (int iteration = 0; iteration < 20; ++iteration) {
    if (c.random(1000) < 200) c.disconnect(c.random(5) + 1);
    if (c.random(1000) < 500) {
      node_id id = c.random(5) + 1;
      if (!c.up(id)) c.restart(id);
      c.connect(id);
    }
    if (c.random(1000) < 200) {
      node_id id = c.random(5) + 1;
      if (c.up(id)) c.crash(id);
    }
    // 6.824 sleeps (RaftElectionTimeout * 7) / 10 between changes.
    for (int step = 0; step < 7; ++step) {
      clients();
      c.run_for(100 * ms);
    }
  }
  c.set_network({});
  for (node_id id : c.ids()) {
    if (!c.up(id)) c.restart(id);
    c.connect(id);
  }
  std::uint64_t last = c.one(value(c), 5, true);
  std::set<std::string> final_log;
  for (std::uint64_t i = 1; i <= last; ++i) final_log.insert(c.n_committed(i).second);
  for (const std::string& data : committed_seen) BOOST_REQUIRE(final_log.contains(data));
  BOOST_TEST_MESSAGE("seed " << seed << ": " << committed_seen.size() << " values committed");
  c.check_full();
  return committed_seen.size();
}

}  // namespace

BOOST_AUTO_TEST_CASE(reliable_churn) {
  std::size_t committed = 0;
  for (std::uint64_t seed : seeds(50)) committed += churn(seed, false);
  BOOST_REQUIRE_GT(committed, 0u);
}

BOOST_AUTO_TEST_CASE(unreliable_churn) {
  std::size_t committed = 0;
  for (std::uint64_t seed : seeds(50)) committed += churn(seed, true);
  BOOST_REQUIRE_GT(committed, 0u);
}

// Not in 6.824 (whose persister is synchronous): fsyncs are slow (up to 20 ms) and any
// node, leader or follower, crashes at random, often inside the window between its
// ready() and the fsync that makes the ready durable. Whatever it sent before the fsync
// must not be a promise the crash breaks (keel/raft/raft.h, "The persistence rule").
BOOST_AUTO_TEST_CASE(crash_inside_fsync_window) {
  for (std::uint64_t seed : seeds(150)) {
    options o = lab(3, seed);
    o.fsync_us_max = 20 * ms;
    cluster c(o);
    for (int iteration = 0; iteration < 400; ++iteration) {
      for (node_id id : c.ids())
        if (c.up(id)) (void)c.propose(id, value(c));
      c.run_for(c.random(15 * ms));
      std::uint64_t dice = c.random(1000);
      node_id id = c.random(3) + 1;
      if (dice < 40 && c.up(id)) c.crash(id);
      if (dice >= 900 && !c.up(id)) c.restart(id);
    }
    for (node_id id : c.ids())
      if (!c.up(id)) c.restart(id);
    std::uint64_t last = c.one(value(c), 3, true);
    c.check_full();
    if (seed == 1)
      BOOST_TEST_MESSAGE("events " << c.events() << ", messages " << c.sent_total() << ", "
                                   << c.now() / 1000 << " ms, last index " << last);
  }
}

// ---- 2D: snapshots -----------------------------------------------------------------------

namespace {

constexpr std::uint64_t snapshot_interval = 10;  // 6.824's SnapShotInterval

options with_snapshots(std::size_t nodes, std::uint64_t seed) {
  options o = lab(nodes, seed);
  o.snapshot_every = snapshot_interval;
  return o;
}

// 6.824 snapcommon: a follower falls behind a leader that compacted its log, by
// disconnection or crash, possibly on a lossy network, and must be brought back with a
// snapshot.
void snapshot_common(std::uint64_t seed, bool disconnect, bool unreliable_network,
                     bool crash_victim) {
  cluster c(with_snapshots(3, seed));
  if (unreliable_network) c.set_network(unreliable());
  c.one(value(c), 3, true);
  node_id leader1 = check_one_leader(c);
  for (int iteration = 0; iteration < 12; ++iteration) {
    node_id victim = after(leader1, 1, 3);
    node_id sender = leader1;
    if (iteration % 3 == 1) {
      sender = after(leader1, 1, 3);
      victim = leader1;
    }
    if (disconnect) {
      c.disconnect(victim);
      c.one(value(c), 2, true);
    }
    if (crash_victim) {
      crash(c, victim);
      c.one(value(c), 2, true);
    }
    // Enough entries for every live node to compact past what the victim has.
    for (std::uint64_t i = 0; i < snapshot_interval + 1; ++i) (void)c.propose(sender, value(c));
    if (!disconnect && !crash_victim) {
      c.one(value(c), 3, true);
    } else {
      c.one(value(c), 2, true);
    }
    if (disconnect) {
      c.connect(victim);
      c.one(value(c), 3, true);
      leader1 = check_one_leader(c);
    }
    if (crash_victim) {
      revive(c, victim);
      c.one(value(c), 3, true);
      leader1 = check_one_leader(c);
    }
  }
  c.set_network({});
  c.one(value(c), 3, true);
  c.check_full();
  if (disconnect || crash_victim) BOOST_REQUIRE_GT(c.sent(message_type::snapshot), 0u);
}

}  // namespace

BOOST_AUTO_TEST_CASE(snapshot_basic) {
  for (std::uint64_t seed : seeds(20)) {
    snapshot_common(seed, false, false, false);
  }
  // The log really is compacted.
  cluster c(with_snapshots(3, 7));
  for (int i = 0; i < 3 * static_cast<int>(snapshot_interval); ++i) c.one(value(c), 3, true);
  for (node_id id : c.ids()) BOOST_REQUIRE_GT(c.raft(id).first_index(), snapshot_interval);
}

BOOST_AUTO_TEST_CASE(snapshot_install) {
  for (std::uint64_t seed : seeds(20)) snapshot_common(seed, true, false, false);
}

BOOST_AUTO_TEST_CASE(snapshot_install_unreliable) {
  for (std::uint64_t seed : seeds(20)) snapshot_common(seed, true, true, false);
}

BOOST_AUTO_TEST_CASE(snapshot_install_crash) {
  for (std::uint64_t seed : seeds(20)) snapshot_common(seed, false, false, true);
}

BOOST_AUTO_TEST_CASE(snapshot_install_unreliable_crash) {
  for (std::uint64_t seed : seeds(20)) snapshot_common(seed, false, true, true);
}

// Everyone crashes, often: restarts come from snapshot + log, and indexes only grow.
BOOST_AUTO_TEST_CASE(snapshot_all_crash) {
  for (std::uint64_t seed : seeds(20)) {
    cluster c(with_snapshots(3, seed));
    c.one(value(c), 3, true);
    for (int iteration = 0; iteration < 5; ++iteration) {
      for (std::uint64_t i = 0; i < snapshot_interval + 1; ++i) c.one(value(c), 3, true);
      std::uint64_t index1 = c.one(value(c), 3, true);
      for (node_id id : c.ids()) crash(c, id);
      for (node_id id : c.ids()) revive(c, id);
      std::uint64_t index2 = c.one(value(c), 3, true);
      BOOST_REQUIRE_GT(index2, index1);
    }
    c.check_full();
  }
}

// Restarting from a snapshot alone (6.824 TestSnapshotInit): the state machine is rebuilt
// from it and the log continues after it.
BOOST_AUTO_TEST_CASE(snapshot_init) {
  for (std::uint64_t seed : seeds(20)) {
    cluster c(with_snapshots(3, seed));
    c.one(value(c), 3, true);
    for (std::uint64_t i = 0; i < snapshot_interval + 1; ++i) c.one(value(c), 3, true);
    for (node_id id : c.ids()) crash(c, id);
    for (node_id id : c.ids()) revive(c, id);
    c.one(value(c), 3, true);
    for (node_id id : c.ids()) crash(c, id);
    for (node_id id : c.ids()) revive(c, id);
    c.one(value(c), 3, true);
    for (node_id id : c.ids()) BOOST_REQUIRE_GT(c.raft(id).last_snapshot().metadata.index, 0u);
  }
}
