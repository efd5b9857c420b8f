// Pre-vote and check-quorum (thesis §9.6), ReadIndex (thesis §6.4), membership changes one
// server at a time (thesis §4.1) and leadership transfer (thesis §3.10), on the
// deterministic simulator (sim.h) with the invariant checker after every event.
#define BOOST_TEST_MODULE raft_feature
#include <boost/test/unit_test.hpp>
#include <map>
#include <set>
#include <string>

#include "sim.h"

using namespace keel;
using namespace keel::raft;
using namespace keel::raft::sim;

namespace {

options base(std::size_t nodes, std::uint64_t seed, bool pre_vote, bool check_quorum) {
  options o;
  o.nodes = nodes;
  o.seed = seed;
  o.pre_vote = pre_vote;
  o.check_quorum = check_quorum;
  return o;
}

node_id some_follower(cluster& c, node_id leader) {
  for (node_id id : c.ids())
    if (id != leader && c.up(id)) return id;
  throw sim_failure("no follower");
}

bool applied_everywhere(cluster& c, std::uint64_t index, const std::vector<node_id>& ids) {
  for (node_id id : ids)
    if (!c.up(id) || c.applied_index(id) < index) return false;
  return true;
}

}  // namespace

// ---- pre-vote and check-quorum -----------------------------------------------------------

// A follower cut off for many election timeouts rejoins: with pre-vote its term never
// moved, so the leader and term stay. Without pre-vote its raised term deposes the leader.
BOOST_AUTO_TEST_CASE(prevote_rejoining_node_does_not_disrupt) {
  for (std::uint64_t seed : seeds(30)) {
    for (bool pre_vote : {true, false}) {
      cluster c(base(3, seed, pre_vote, true));
      node_id leader = check_one_leader(c);
      std::uint64_t term = c.raft(leader).term();
      node_id cut = some_follower(c, leader);
      c.disconnect(cut);
      c.run_for(5 * election_timeout_us);
      c.one("during", 2, true);
      if (pre_vote) BOOST_REQUIRE_EQUAL(c.raft(cut).term(), term);
      if (!pre_vote) BOOST_REQUIRE_GT(c.raft(cut).term(), term);
      c.connect(cut);
      c.run_for(3 * election_timeout_us);
      node_id after = check_one_leader(c);
      if (pre_vote) {
        BOOST_REQUIRE_EQUAL(after, leader);
        BOOST_REQUIRE_EQUAL(c.raft(after).term(), term);
      } else {
        BOOST_REQUIRE_GT(c.raft(after).term(), term);  // the disruption pre-vote prevents
      }
      c.one("after", 3, true);
      BOOST_TEST_MESSAGE("events " << c.events() << " messages " << c.sent_total() << " t "
                                   << c.now());
    }
  }
}

// With nothing written during the partition the rejoining node's log is as up to date as
// everyone's, so pre-vote alone would let it win; check-quorum's leader lease makes the
// followers, who hear from their leader, refuse it (etcd TestPreVoteWithCheckQuorum).
BOOST_AUTO_TEST_CASE(prevote_with_check_quorum_idle_partition) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(5, seed, true, true));
    c.one("x", 5, true);
    node_id leader = check_one_leader(c);
    std::uint64_t term = c.raft(leader).term();
    node_id cut = some_follower(c, leader);
    c.disconnect(cut);
    c.run_for(4 * election_timeout_us);
    c.connect(cut);
    c.run_for(4 * election_timeout_us);
    BOOST_REQUIRE_EQUAL(check_one_leader(c), leader);
    BOOST_REQUIRE_EQUAL(c.raft(leader).term(), term);
  }
}

// A leader cut off from a quorum steps down within about an election timeout; without
// check-quorum it would go on believing it leads.
BOOST_AUTO_TEST_CASE(check_quorum_leader_steps_down) {
  for (std::uint64_t seed : seeds(30)) {
    for (bool check_quorum : {true, false}) {
      cluster c(base(3, seed, false, check_quorum));
      node_id leader = check_one_leader(c);
      std::vector<std::vector<node_id>> groups = {{leader}, {}};
      for (node_id id : c.ids())
        if (id != leader) groups[1].push_back(id);
      c.partition(groups);
      c.run_for(2 * election_timeout_us);
      BOOST_REQUIRE_EQUAL(c.raft(leader).role() == role::leader, !check_quorum);
      c.heal();
      c.one("healed", 3, true);
    }
  }
}

// ---- ReadIndex ---------------------------------------------------------------------------

namespace {

// Waits for a read to be served on `id`; returns it.
std::optional<served_read> await_read(cluster& c, node_id id, const std::string& context,
                                      std::uint64_t timeout_us) {
  std::optional<served_read> found;
  c.run_until(
      [&] {
        if (!c.up(id)) return false;
        for (const served_read& r : c.reads(id))
          if (r.context == context) found = r;
        return found.has_value();
      },
      timeout_us);
  return found;
}

}  // namespace

// A read after a completed write sees it, on the leader and on a follower (forwarded).
BOOST_AUTO_TEST_CASE(read_index_sees_completed_write) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(3, seed, true, true));
    std::uint64_t index = c.one("written", 3, true);
    node_id leader = check_one_leader(c);
    for (node_id reader : {leader, some_follower(c, leader)}) {
      std::string context = "read-" + std::to_string(reader);
      BOOST_REQUIRE(c.read_index(reader, context).is_ok());
      std::optional<served_read> read = await_read(c, reader, context, 1000 * ms);
      BOOST_REQUIRE(read.has_value());
      BOOST_REQUIRE_GE(read->index, index);
      BOOST_REQUIRE_GE(read->applied, read->index);
      BOOST_REQUIRE_EQUAL(c.applied(reader)[index - 1].data, "written");
    }
  }
}

// A leader cut off from the majority (no check-quorum, so it still thinks it leads) must
// not serve a read: the other side may have a new leader and newer writes.
BOOST_AUTO_TEST_CASE(read_index_stale_leader_does_not_serve) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(3, seed, false, false));
    c.one("first", 3, true);
    node_id old_leader = check_one_leader(c);
    c.disconnect(old_leader);
    c.one("second", 2, true);  // a new leader commits a write the old one never sees
    BOOST_REQUIRE(c.raft(old_leader).role() == role::leader);
    BOOST_REQUIRE(c.read_index(old_leader, "stale").is_ok());
    BOOST_REQUIRE(!await_read(c, old_leader, "stale", 3 * election_timeout_us).has_value());
    c.connect(old_leader);
    c.one("third", 3, true);
  }
}

// Randomized: writes and reads from random nodes while nodes crash, restart and get
// partitioned. Every served read must reflect every write completed before it was asked
// (linearizability of reads against writes; the state machines agree by the checker).
BOOST_AUTO_TEST_CASE(read_index_linearizable_under_faults) {
  for (std::uint64_t seed : seeds(60)) {
    cluster c(base(5, seed, seed % 2 == 0, seed % 2 == 0));
    network_options net;
    net.delay_us_max = 10 * ms;
    net.drop = 0.05;
    c.set_network(net);
    std::uint64_t completed = 0;                 // highest index of a write known committed
    std::map<std::string, std::uint64_t> asked;  // read context -> `completed` when asked
    std::size_t served = 0;
    auto collect = [&] {
      for (node_id id : c.ids()) {
        if (!c.up(id)) continue;
        for (const served_read& r : c.reads(id)) {
          auto it = asked.find(r.context);
          if (it == asked.end()) continue;
          BOOST_REQUIRE_MESSAGE(r.applied >= it->second, "read " << r.context << " at " << r.applied
                                                                 << " misses write " << it->second
                                                                 << " (seed " << seed << ")");
          asked.erase(it);
          ++served;
        }
      }
    };
    for (int op = 0; op < 120; ++op) {
      std::uint64_t dice = c.random(100);
      if (dice < 5) {
        node_id id = c.random(5) + 1;
        if (c.up(id)) c.crash(id);
      } else if (dice < 15) {
        std::vector<node_id> down;
        for (node_id id : c.ids())
          if (!c.up(id)) down.push_back(id);
        if (!down.empty()) c.restart(down[c.random(down.size())]);
      } else if (dice < 20) {
        c.heal();
        if (c.random(2) == 0) c.partition({{1, 2}, {3, 4, 5}});
      } else if (dice < 55) {
        for (node_id id : c.ids()) {
          if (!c.up(id)) continue;
          result<entry_id> r = c.propose(id, "w" + std::to_string(op));
          if (!r) continue;
          std::uint64_t index = r.value().index;
          std::string data = "w" + std::to_string(op);
          if (c.run_until([&] { return c.n_committed(index).first > 0; }, 300 * ms) &&
              c.n_committed(index).second == data)
            completed = std::max(completed, index);
          break;
        }
      } else {
        node_id id = c.random(5) + 1;
        std::string context = "r" + std::to_string(op);
        if (c.up(id) && c.read_index(id, context).is_ok()) asked[context] = completed;
      }
      c.run_for(c.random(50 * ms));
      collect();
    }
    // Healed: one more read on every node must be served and see every completed write.
    c.heal();
    c.set_network({});
    for (node_id id : c.ids())
      if (!c.up(id)) c.restart(id);
    for (node_id id : c.ids()) {
      // A node may be mid-election or not know the leader yet, and a read dies with its
      // leader: retry with a new context, as a client would.
      bool done = false;
      for (int attempt = 0; attempt < 10 && !done; ++attempt) {
        std::string context = "final" + std::to_string(id) + "-" + std::to_string(attempt);
        if (!c.run_until([&] { return c.read_index(id, context).is_ok(); }, election_timeout_us))
          continue;
        asked[context] = completed;
        done = c.run_until(
            [&] {
              collect();
              return !asked.contains(context);
            },
            election_timeout_us);
        asked.erase(context);
      }
      BOOST_REQUIRE_MESSAGE(done, "seed " << seed << ": no read served on " << id);
    }
    BOOST_TEST_MESSAGE("seed " << seed << ": " << served << " reads served, last write "
                               << completed);
  }
}

// ---- membership --------------------------------------------------------------------------

namespace {

std::uint64_t change(cluster& c, conf_change_type type, node_id id) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    node_id leader = check_one_leader(c);
    result<entry_id> r = c.propose_conf_change(leader, {type, id, {}});
    if (r) {
      std::uint64_t index = r.value().index;
      if (c.run_until([&] { return c.n_committed(index).first > 0; }, 2 * election_timeout_us) &&
          c.n_committed(index).second == encode_conf_change({type, id, {}}))
        return index;
    } else {
      c.run_for(100 * ms);
    }
  }
  throw sim_failure("conf change did not commit");
}

}  // namespace

BOOST_AUTO_TEST_CASE(add_voter) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(3, seed, true, true));
    c.one("before", 3, true);
    std::uint64_t index = change(c, conf_change_type::add_voter, 4);
    c.add_node(4);
    BOOST_REQUIRE(c.run_until(
        [&] {
          return applied_everywhere(c, index, {1, 2, 3, 4});
        },
        5 * election_timeout_us));
    for (node_id id : c.ids()) BOOST_REQUIRE_EQUAL(c.raft(id).membership().voters.size(), 4u);
    c.one("after", 4, true);
    // Four voters: a quorum is three; two cannot commit.
    node_id leader = check_one_leader(c);
    c.disconnect(some_follower(c, leader));
    c.one("three of four", 3, true);
  }
}

BOOST_AUTO_TEST_CASE(learner_catches_up_and_is_promoted) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(3, seed, true, true));
    c.one("before", 3, true);
    std::uint64_t added = change(c, conf_change_type::add_learner, 4);
    c.add_node(4);
    BOOST_REQUIRE(c.run_until(
        [&] {
          return applied_everywhere(c, added, {1, 2, 3, 4});
        },
        5 * election_timeout_us));
    BOOST_REQUIRE(c.raft(4).membership().is_learner(4));
    // A learner does not count towards a quorum and never campaigns.
    node_id leader = check_one_leader(c);
    for (node_id id : {1, 2, 3})
      if (id != leader) c.disconnect(id);
    result<entry_id> lone = c.propose(leader, "needs a voter");
    BOOST_REQUIRE(lone.is_ok());
    c.run_for(3 * election_timeout_us);
    BOOST_REQUIRE_EQUAL(c.n_committed(lone.value().index).first, 0u);
    BOOST_REQUIRE(c.raft(4).role() == role::follower);
    c.heal();
    c.one("healed", 4, true);
    // Far behind: promotion refused.
    c.disconnect(4);
    for (int i = 0; i < 40; ++i) c.one("behind" + std::to_string(i), 3, true);
    leader = check_one_leader(c);
    result<entry_id> early = c.propose_conf_change(leader, {conf_change_type::add_voter, 4, {}});
    BOOST_REQUIRE(!early.is_ok());
    BOOST_REQUIRE_EQUAL(early.error().message(), "raft: learner not caught up");
    // Caught up: promoted, and the group now needs three of four.
    c.connect(4);
    c.one("caught up", 4, true);
    std::uint64_t promoted = change(c, conf_change_type::add_voter, 4);
    BOOST_REQUIRE(c.run_until(
        [&] {
          return applied_everywhere(c, promoted, {1, 2, 3, 4});
        },
        5 * election_timeout_us));
    for (node_id id : c.ids()) BOOST_REQUIRE(c.raft(id).membership().is_voter(4));
    c.one("four voters", 4, true);
  }
}

BOOST_AUTO_TEST_CASE(remove_follower_and_leader) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(5, seed, true, true));
    c.one("before", 5, true);
    node_id leader = check_one_leader(c);
    node_id removed = some_follower(c, leader);
    std::uint64_t index = change(c, conf_change_type::remove_node, removed);
    std::vector<node_id> rest;
    for (node_id id : c.ids())
      if (id != removed) rest.push_back(id);
    BOOST_REQUIRE(
        c.run_until([&] { return applied_everywhere(c, index, rest); }, 5 * election_timeout_us));
    c.crash(removed);
    c.one("four", 4, true);
    // The leader removes itself: it steps down once the change is applied; the others go on.
    leader = check_one_leader(c);
    index = change(c, conf_change_type::remove_node, leader);
    BOOST_REQUIRE(c.run_until([&] { return c.raft(leader).role() != role::leader; },
                              5 * election_timeout_us));
    c.crash(leader);
    c.one("three", 3, true);
    BOOST_REQUIRE_EQUAL(c.raft(check_one_leader(c)).membership().voters.size(), 3u);
    c.check_full();
  }
}

BOOST_AUTO_TEST_CASE(one_conf_change_at_a_time) {
  cluster c(base(3, 1, false, false));
  c.one("x", 3, true);
  node_id leader = check_one_leader(c);
  BOOST_REQUIRE(c.propose_conf_change(leader, {conf_change_type::add_learner, 4, {}}).is_ok());
  result<entry_id> second = c.propose_conf_change(leader, {conf_change_type::add_learner, 5, {}});
  BOOST_REQUIRE(!second.is_ok());
  BOOST_REQUIRE(second.error().code() == errc::unavailable);
  // Changes that change nothing or remove the last voter are refused outright.
  result<entry_id> again = c.propose_conf_change(leader, {conf_change_type::add_voter, leader, {}});
  BOOST_REQUIRE(again.error().code() == errc::unavailable ||
                again.error().code() == errc::invalid_argument);
}

// A member added after the leader compacted its log gets a snapshot, with the membership.
BOOST_AUTO_TEST_CASE(add_voter_from_snapshot) {
  for (std::uint64_t seed : seeds(20)) {
    options o = base(3, seed, true, true);
    o.snapshot_every = 10;
    cluster c(o);
    for (int i = 0; i < 25; ++i) c.one("v" + std::to_string(i), 3, true);
    std::uint64_t index = change(c, conf_change_type::add_voter, 4);
    for (int i = 0; i < 12; ++i) c.one("w" + std::to_string(i), 3, true);
    c.add_node(4);
    BOOST_REQUIRE(c.run_until(
        [&] {
          return applied_everywhere(c, index + 12, {1, 2, 3, 4});
        },
        5 * election_timeout_us));
    BOOST_REQUIRE_GT(c.sent(message_type::snapshot), 0u);
    BOOST_REQUIRE(c.raft(4).membership().is_voter(4));
    c.one("after", 4, true);
  }
}

// ---- leadership transfer -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(transfer_to_up_to_date_follower) {
  for (std::uint64_t seed : seeds(30)) {
    for (bool pre_vote : {false, true}) {
      cluster c(base(3, seed, pre_vote, pre_vote));
      c.one("x", 3, true);
      node_id leader = check_one_leader(c);
      std::uint64_t term = c.raft(leader).term();
      node_id target = some_follower(c, leader);
      BOOST_REQUIRE(c.transfer_leadership(leader, target).is_ok());
      // Much faster than an election timeout (500 ms or more): no one waits for a timer.
      BOOST_REQUIRE(c.run_until([&] { return c.raft(target).role() == role::leader; }, 100 * ms));
      BOOST_REQUIRE_EQUAL(c.raft(target).term(), term + 1);
      c.one("y", 3, true);
    }
  }
}

BOOST_AUTO_TEST_CASE(transfer_to_lagging_follower) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(3, seed, true, true));
    c.one("x", 3, true);
    node_id leader = check_one_leader(c);
    node_id target = some_follower(c, leader);
    c.disconnect(target);
    for (int i = 0; i < 20; ++i) c.one("v" + std::to_string(i), 2, true);
    leader = check_one_leader(c);
    if (leader == target) continue;
    c.connect(target);
    std::uint64_t last = c.raft(leader).last_index();
    BOOST_REQUIRE(c.transfer_leadership(leader, target).is_ok());
    // Proposals are refused while the transfer is on.
    BOOST_REQUIRE(!c.propose(leader, "refused").is_ok());
    BOOST_REQUIRE(c.run_until([&] { return c.raft(target).role() == role::leader; }, 400 * ms));
    BOOST_REQUIRE_GE(c.raft(target).last_index(), last);
    c.one("y", 3, true);
  }
}

BOOST_AUTO_TEST_CASE(transfer_to_dead_follower_is_abandoned) {
  for (std::uint64_t seed : seeds(30)) {
    cluster c(base(3, seed, false, false));
    c.one("x", 3, true);
    node_id leader = check_one_leader(c);
    node_id target = some_follower(c, leader);
    c.crash(target);
    BOOST_REQUIRE(c.transfer_leadership(leader, target).is_ok());
    BOOST_REQUIRE_EQUAL(c.raft(leader).lead_transferee(), target);
    BOOST_REQUIRE(!c.propose(leader, "refused").is_ok());
    // After an election timeout the leader gives up and serves again.
    c.run_for(election_timeout_us);
    BOOST_REQUIRE_EQUAL(c.raft(leader).lead_transferee(), no_node);
    BOOST_REQUIRE(c.raft(leader).role() == role::leader);
    c.one("y", 2, true);
  }
}
