// The Raft core driven by hand: etcd raft's raft_paper_test.go cases (section numbers are
// the paper's), the persistence rule of keel/raft/raft.h, flow control and the log.
// A tiny synchronous network (`net`) delivers messages in FIFO order; "persisting" is
// immediate, so these tests pin behaviour, not timing.
#define BOOST_TEST_MODULE raft_paper
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "keel/raft/invariants.h"
#include "keel/raft/raft.h"
#include "log.h"  // private: unit tests of the log and flow control
#include "progress.h"

using namespace keel;
using namespace keel::raft;

namespace {

config boot(node_id id, std::size_t voters, bool pre_vote = false) {
  config cfg;
  cfg.id = id;
  for (node_id v = 1; v <= voters; ++v) cfg.voters.push_back(v);
  cfg.election_tick = 10;
  cfg.heartbeat_tick = 1;
  cfg.pre_vote = pre_vote;
  cfg.seed = id;
  return cfg;
}

// A restart from given durable state, membership {1..voters} from a snapshot at index 1.
config restarted(node_id id, std::size_t voters, std::vector<std::uint64_t> terms_from_2,
                 std::uint64_t term, std::uint64_t commit = 1) {
  config cfg;
  cfg.id = id;
  cfg.seed = id;
  cfg.initial_snapshot.metadata.index = 1;
  cfg.initial_snapshot.metadata.term = 1;
  for (node_id v = 1; v <= voters; ++v) cfg.initial_snapshot.metadata.conf.voters.push_back(v);
  std::uint64_t index = 2;
  for (std::uint64_t t : terms_from_2) {
    entry e;
    e.term = t;
    e.index = index++;
    e.data = "t" + std::to_string(t);
    cfg.initial_entries.push_back(e);
  }
  cfg.initial_hard_state = {term, no_node, commit};
  return cfg;
}

std::vector<std::uint64_t> log_terms(const node& n) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = n.first_index(); i <= n.last_index(); ++i) out.push_back(*n.term_at(i));
  return out;
}

// Everything a ready hands out, with the two message lists joined: the tests here persist
// synchronously, so the order between them does not matter.
struct drained {
  std::vector<message> messages;
  std::vector<entry> committed;
  std::vector<read_state> reads;
};

drained drain(node& n) {
  drained out;
  while (n.has_ready()) {
    ready rd = n.ready();
    for (auto* list : {&rd.messages, &rd.messages_after_persist})
      out.messages.insert(out.messages.end(), list->begin(), list->end());
    for (const entry& e : rd.committed_entries) {
      if (e.type == entry_type::conf_change)
        n.apply_conf_change(decode_conf_change(e.data).value());
      out.committed.push_back(e);
    }
    out.reads.insert(out.reads.end(), rd.read_states.begin(), rd.read_states.end());
    n.advance();
  }
  return out;
}

std::vector<message> of_type(const std::vector<message>& messages, message_type type) {
  std::vector<message> out;
  for (const message& m : messages)
    if (m.type == type) out.push_back(m);
  return out;
}

struct net {
  std::map<node_id, node> nodes;
  std::set<node_id> dead;  // messages to and from these are dropped
  std::deque<message> queue;
  invariant_checker checker;

  void add(config cfg) { nodes.emplace(cfg.id, node(std::move(cfg))); }
  node& operator[](node_id id) { return nodes.at(id); }

  void flush() {
    for (auto& [id, n] : nodes) {
      drained d = drain(n);
      for (message& m : d.messages) queue.push_back(std::move(m));
    }
  }
  void deliver(const message& m) {
    if (dead.contains(m.to) || dead.contains(m.from) || !nodes.contains(m.to)) return;
    BOOST_REQUIRE(nodes.at(m.to).step(m).is_ok());
  }
  void stabilize() {
    for (int steps = 0; steps < 100000; ++steps) {
      flush();
      check();
      if (queue.empty()) return;
      message m = std::move(queue.front());
      queue.pop_front();
      deliver(m);
    }
    BOOST_FAIL("network did not stabilize");
  }
  void send(const message& m) {
    deliver(m);
    stabilize();
  }
  void check() {
    std::vector<const node*> live;
    for (auto& [id, n] : nodes) live.push_back(&n);
    status checked = checker.check(live);
    BOOST_REQUIRE_MESSAGE(checked.is_ok(), checked.to_string());
  }
};

net cluster_of(std::size_t n, bool pre_vote = false) {
  net out;
  for (node_id id = 1; id <= n; ++id) out.add(boot(id, n, pre_vote));
  out.stabilize();
  return out;
}

message msg(message_type type, node_id from, node_id to, std::uint64_t term) {
  message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

void elect(net& network, node_id id) {
  network[id].campaign();
  network.stabilize();
  BOOST_REQUIRE(network[id].role() == role::leader);
}

}  // namespace

// ---- §5.1, §5.2: terms and elections ---------------------------------------------------

BOOST_AUTO_TEST_CASE(starts_as_follower) {
  node n(boot(1, 3));
  BOOST_REQUIRE(n.role() == role::follower);
  BOOST_REQUIRE_EQUAL(n.term(), 1u);  // bootstrap entries are at term 1
  BOOST_REQUIRE_EQUAL(n.commit_index(), 3u);
}

// etcd TestLeaderElection / TestLeaderElectionPreVote.
BOOST_AUTO_TEST_CASE(leader_election) {
  struct row {
    std::size_t size;
    std::set<node_id> dead;
    role expected;
    std::uint64_t term;
  };
  for (bool pre_vote : {false, true}) {
    std::vector<row> rows = {
        {3, {}, role::leader, 2},
        {3, {3}, role::leader, 2},
        {3, {2, 3}, pre_vote ? role::pre_candidate : role::candidate, pre_vote ? 1u : 2u},
        {4, {3, 4}, pre_vote ? role::pre_candidate : role::candidate, pre_vote ? 1u : 2u},
        {5, {4, 5}, role::leader, 2},
    };
    for (const row& r : rows) {
      net network = cluster_of(r.size, pre_vote);
      network.dead = r.dead;
      network[1].campaign();
      network.stabilize();
      BOOST_TEST_CONTEXT("pre_vote " << pre_vote << " size " << r.size << " dead "
                                     << r.dead.size()) {
        BOOST_REQUIRE(network[1].role() == r.expected);
        BOOST_REQUIRE_EQUAL(network[1].term(), r.term);
      }
    }
  }
}

// §5.1: a message with a higher term makes any role a follower of that term.
BOOST_AUTO_TEST_CASE(update_term_from_message) {
  for (role start : {role::follower, role::candidate, role::leader}) {
    net network = cluster_of(3);
    if (start != role::follower) {
      network.dead = {2, 3};
      network[1].campaign();
      network.stabilize();
      if (start == role::leader) {
        network.dead.clear();
        network[1].campaign();  // no-op for a candidate? it campaigns again at term 3
        network.stabilize();
      }
    }
    BOOST_REQUIRE(network[1].role() == start);
    message m = msg(message_type::append, 2, 1, network[1].term() + 5);
    m.index = 0;
    BOOST_REQUIRE(network[1].step(m).is_ok());
    BOOST_REQUIRE(network[1].role() == role::follower);
    BOOST_REQUIRE_EQUAL(network[1].leader(), 2u);
  }
}

// §5.1: a message from an older term is ignored (no state change).
BOOST_AUTO_TEST_CASE(reject_stale_term_message) {
  net network = cluster_of(3);
  elect(network, 1);
  std::uint64_t term = network[2].term();
  message stale = msg(message_type::append, 3, 2, term - 1);
  stale.index = 100;
  BOOST_REQUIRE(network[2].step(stale).is_ok());
  BOOST_REQUIRE_EQUAL(network[2].term(), term);
  BOOST_REQUIRE_EQUAL(network[2].leader(), 1u);
  BOOST_REQUIRE(of_type(drain(network[2]).messages, message_type::append_response).empty());
}

// §5.2: the leader sends heartbeats every heartbeat_tick.
BOOST_AUTO_TEST_CASE(leader_broadcasts_heartbeat) {
  net network = cluster_of(3);
  elect(network, 1);
  network[1].tick();
  std::vector<message> beats = of_type(drain(network[1]).messages, message_type::heartbeat);
  BOOST_REQUIRE_EQUAL(beats.size(), 2u);
  for (const message& m : beats) BOOST_REQUIRE_EQUAL(m.term, network[1].term());
}

// §5.2 (etcd TestFollowerStartElection, TestVoteRequest): after an election timeout a
// follower campaigns at term + 1, votes for itself and asks every other voter with its
// last index and term.
BOOST_AUTO_TEST_CASE(follower_starts_election) {
  for (std::uint64_t extra : {0, 2}) {
    config cfg = restarted(1, 3, std::vector<std::uint64_t>(extra, 1), 1);
    node n(std::move(cfg));
    drain(n);
    for (int i = 0; i < 2 * 10; ++i) n.tick();
    BOOST_REQUIRE(n.role() == role::candidate);
    BOOST_REQUIRE_EQUAL(n.term(), 2u);
    BOOST_REQUIRE_EQUAL(n.vote(), 1u);
    ready rd = n.ready();
    BOOST_REQUIRE(rd.hard.has_value());
    BOOST_REQUIRE_EQUAL(rd.hard->vote, 1u);
    std::vector<message> votes = of_type(rd.messages, message_type::vote);
    BOOST_REQUIRE_EQUAL(votes.size(), 2u);
    for (const message& m : votes) {
      BOOST_REQUIRE_EQUAL(m.term, 2u);
      BOOST_REQUIRE_EQUAL(m.index, 1 + extra);
      BOOST_REQUIRE_EQUAL(m.log_term, 1u);
    }
    n.advance();
  }
}

// §5.2: a candidate that hears from a leader of its term falls back to follower.
BOOST_AUTO_TEST_CASE(candidate_falls_back) {
  net network = cluster_of(3);
  network.dead = {2, 3};
  network[1].campaign();
  network.stabilize();
  BOOST_REQUIRE(network[1].role() == role::candidate);
  message m = msg(message_type::append, 2, 1, network[1].term());
  BOOST_REQUIRE(network[1].step(m).is_ok());
  BOOST_REQUIRE(network[1].role() == role::follower);
  BOOST_REQUIRE_EQUAL(network[1].leader(), 2u);
}

// §5.2 (etcd TestFollowerVote): one vote per term, first come first served.
BOOST_AUTO_TEST_CASE(follower_votes_once_per_term) {
  struct row {
    node_id voted;
    node_id candidate;
    bool reject;
  };
  for (row r : std::vector<row>{{no_node, 2, false},
                                {no_node, 3, false},
                                {2, 2, false},
                                {3, 3, false},
                                {2, 3, true},
                                {3, 2, true}}) {
    config cfg = restarted(1, 3, {}, 1);
    cfg.initial_hard_state.vote = r.voted;
    node n(std::move(cfg));
    drain(n);
    message m = msg(message_type::vote, r.candidate, 1, 1);
    m.index = 1;
    m.log_term = 1;
    BOOST_REQUIRE(n.step(m).is_ok());
    ready rd = n.ready();
    std::vector<message> replies = of_type(rd.messages_after_persist, message_type::vote_response);
    BOOST_REQUIRE_EQUAL(replies.size(), 1u);
    BOOST_REQUIRE_EQUAL(replies[0].reject, r.reject);
    n.advance();
  }
}

// §5.4.1 (etcd TestVoter): a vote only for a log at least as up to date.
BOOST_AUTO_TEST_CASE(voter_requires_up_to_date_log) {
  struct row {
    std::vector<std::uint64_t> log;  // terms from index 2
    std::uint64_t log_term, index;
    bool reject;
  };
  std::vector<row> rows = {
      {{1}, 1, 2, false}, {{1}, 1, 3, false}, {{1, 1}, 1, 2, true},   // same last term
      {{1}, 2, 2, false}, {{1}, 2, 3, false}, {{1, 1}, 2, 2, false},  // higher term
      {{2}, 1, 2, true},  {{2}, 1, 3, true},  {{2, 2}, 1, 2, true},   // lower term
  };
  for (const row& r : rows) {
    node n(restarted(1, 2, r.log, 2));
    drain(n);
    message m = msg(message_type::vote, 2, 1, 3);
    m.index = r.index;
    m.log_term = r.log_term;
    BOOST_REQUIRE(n.step(m).is_ok());
    std::vector<message> replies = of_type(drain(n).messages, message_type::vote_response);
    BOOST_REQUIRE_EQUAL(replies.size(), 1u);
    BOOST_REQUIRE_EQUAL(replies[0].reject, r.reject);
  }
}

// A restarted member does not campaign while a committed conf change is unapplied: it
// would count votes in a stale membership (here {1,2,3} instead of {1,2,3,4}).
BOOST_AUTO_TEST_CASE(no_campaign_with_unapplied_conf_change) {
  config cfg = restarted(1, 3, {}, 1, 1);
  entry add;
  add.term = 1;
  add.index = 2;
  add.type = entry_type::conf_change;
  add.data = encode_conf_change({conf_change_type::add_voter, 4, {}});
  cfg.initial_entries.push_back(add);
  cfg.initial_hard_state.commit = 2;
  node n(std::move(cfg));
  n.campaign();
  BOOST_REQUIRE(n.role() == role::follower);
  BOOST_REQUIRE_EQUAL(n.term(), 1u);
  drain(n);  // applies the conf change
  BOOST_REQUIRE_EQUAL(n.membership().voters.size(), 4u);
  n.campaign();
  BOOST_REQUIRE(n.role() == role::candidate);
  ready rd = n.ready();
  BOOST_REQUIRE_EQUAL(of_type(rd.messages, message_type::vote).size(), 3u);
  n.advance();
}

// ---- §5.3: log replication ---------------------------------------------------------------

// etcd TestLeaderStartReplication: a proposal is appended and sent to every follower with
// the entry before it and the commit index.
BOOST_AUTO_TEST_CASE(leader_starts_replication) {
  net network = cluster_of(3);
  elect(network, 1);
  node& leader = network[1];
  std::uint64_t last = leader.last_index();
  result<entry_id> proposed = leader.propose("some data");
  BOOST_REQUIRE(proposed.is_ok());
  BOOST_REQUIRE_EQUAL(proposed.value().index, last + 1);
  ready rd = leader.ready();
  BOOST_REQUIRE_EQUAL(rd.entries.size(), 1u);
  std::vector<message> appends = of_type(rd.messages, message_type::append);
  BOOST_REQUIRE_EQUAL(appends.size(), 2u);
  for (const message& m : appends) {
    BOOST_REQUIRE_EQUAL(m.index, last);
    BOOST_REQUIRE_EQUAL(m.log_term, leader.term());
    BOOST_REQUIRE_EQUAL(m.entries.size(), 1u);
    BOOST_REQUIRE_EQUAL(m.entries[0].data, "some data");
    BOOST_REQUIRE_EQUAL(m.commit, leader.commit_index());
  }
  leader.advance();
}

// etcd TestLeaderCommitEntry: once a majority has the entry the leader commits it, hands
// it out to apply, and tells followers in the next append.
BOOST_AUTO_TEST_CASE(leader_commits_entry) {
  net network = cluster_of(3);
  elect(network, 1);
  result<entry_id> proposed = network[1].propose("some data");
  network.stabilize();
  std::uint64_t index = proposed.value().index;
  for (node_id id : {1, 2, 3}) {
    BOOST_REQUIRE_EQUAL(network[id].commit_index(), index);
    BOOST_REQUIRE_EQUAL(network[id].applied_index(), index);
  }
}

// etcd TestLeaderAcknowledgeCommit: commitment needs a majority of voters, the leader
// counting itself once its copy is durable.
BOOST_AUTO_TEST_CASE(leader_acknowledges_commit) {
  struct row {
    std::size_t size;
    std::set<node_id> acks;
    bool committed;
  };
  std::vector<row> rows = {{1, {}, true},     {3, {}, false},       {3, {2}, true},
                           {3, {2, 3}, true}, {5, {}, false},       {5, {2}, false},
                           {5, {2, 3}, true}, {5, {2, 3, 4}, true}, {5, {2, 3, 4, 5}, true}};
  for (const row& r : rows) {
    net network = cluster_of(r.size);
    elect(network, 1);
    network.dead.clear();
    for (node_id id = 2; id <= r.size; ++id)
      if (!r.acks.contains(id)) network.dead.insert(id);
    result<entry_id> proposed = network[1].propose("x");
    network.stabilize();
    BOOST_TEST_CONTEXT("size " << r.size << " acks " << r.acks.size()) {
      BOOST_REQUIRE_EQUAL(network[1].commit_index() >= proposed.value().index, r.committed);
    }
  }
}

// §5.4.2, Figure 8 (etcd TestLeaderOnlyCommitsLogFromCurrentTerm): a leader does not
// commit an entry of an earlier term by counting replicas; it commits when an entry of its
// own term reaches a majority, and the earlier ones with it.
BOOST_AUTO_TEST_CASE(leader_only_commits_log_from_current_term) {
  net network;
  network.add(restarted(1, 3, {1, 2}, 2));  // entries 2 (term 1) and 3 (term 2), commit 1
  network.add(restarted(2, 3, {}, 2));
  network.add(restarted(3, 3, {}, 2));
  network.dead = {3};
  network.flush();
  network.queue.clear();
  network[1].campaign();
  // Let the vote through, but hold node 2's append answers back.
  network.flush();
  while (!network.queue.empty()) {
    message m = network.queue.front();
    network.queue.pop_front();
    if (m.type == message_type::vote || m.type == message_type::vote_response) network.deliver(m);
    network.flush();
  }
  BOOST_REQUIRE(network[1].role() == role::leader);
  BOOST_REQUIRE_EQUAL(network[1].term(), 3u);
  // Node 2 acknowledges index 3 (term 2) only: not committed, it is not of term 3.
  message ack = msg(message_type::append_response, 2, 1, 3);
  ack.index = 3;
  BOOST_REQUIRE(network[1].step(ack).is_ok());
  drain(network[1]);
  BOOST_REQUIRE_EQUAL(network[1].commit_index(), 1u);
  // Acknowledging the leader's own no-op (index 4, term 3) commits 2, 3 and 4.
  ack.index = 4;
  BOOST_REQUIRE(network[1].step(ack).is_ok());
  drain(network[1]);
  BOOST_REQUIRE_EQUAL(network[1].commit_index(), 4u);
}

// Not in etcd: an ack beyond the leader's log (from a member that took appends from a
// forged "leader" of the same term) is ignored: it commits nothing, moves no progress, and
// the leader goes on replicating to that member from what it really has.
BOOST_AUTO_TEST_CASE(leader_ignores_an_ack_beyond_its_log) {
  net network = cluster_of(3);
  elect(network, 1);
  network.stabilize();
  std::uint64_t last = network[1].last_index();
  std::uint64_t committed = network[1].commit_index();
  message ack = msg(message_type::append_response, 2, 1, network[1].term());
  ack.index = last + 5;
  BOOST_REQUIRE(network[1].step(ack).is_ok());
  drain(network[1]);
  BOOST_REQUIRE_EQUAL(network[1].commit_index(), committed);
  result<entry_id> proposed = network[1].propose("after the forged ack");
  network.stabilize();
  for (node_id id : {1, 2, 3})
    BOOST_REQUIRE_EQUAL(network[id].commit_index(), proposed.value().index);
}

// etcd TestFollowerCheckMsgApp: a follower accepts an append only if it holds the entry
// before it; a rejection carries a hint of where the logs may match.
BOOST_AUTO_TEST_CASE(follower_checks_append) {
  struct row {
    std::uint64_t log_term, index;
    bool reject;
    std::uint64_t hint_index, hint_term;
  };
  // Follower log: index 1 (snapshot, term 1), 2 (term 1), 3 (term 2); commit 2.
  std::vector<row> rows = {
      {0, 0, false, 0, 0},  // below the commit index: answered with the commit index
      {1, 1, false, 0, 0}, {1, 2, false, 0, 0}, {2, 3, false, 0, 0},
      {1, 3, true, 2, 1},  // term mismatch at 3: hint the last entry of term <= 1
      {3, 4, true, 3, 2},  // beyond the log: hint the last entry
  };
  for (const row& r : rows) {
    node n(restarted(1, 3, {1, 2}, 2, 2));
    drain(n);
    message m = msg(message_type::append, 2, 1, 2);
    m.log_term = r.log_term;
    m.index = r.index;
    BOOST_REQUIRE(n.step(m).is_ok());
    std::vector<message> replies =
        of_type(n.ready().messages_after_persist, message_type::append_response);
    n.advance();
    BOOST_TEST_CONTEXT("append after (" << r.index << ", " << r.log_term << ")") {
      BOOST_REQUIRE_EQUAL(replies.size(), 1u);
      BOOST_REQUIRE_EQUAL(replies[0].reject, r.reject);
      if (r.reject) {
        BOOST_REQUIRE_EQUAL(replies[0].reject_hint, r.hint_index);
        BOOST_REQUIRE_EQUAL(replies[0].log_term, r.hint_term);
      }
    }
  }
}

// etcd TestFollowerAppendEntries: conflicting entries are replaced, matching ones kept.
BOOST_AUTO_TEST_CASE(follower_appends_entries) {
  struct row {
    std::uint64_t index, log_term;
    std::vector<std::uint64_t> entry_terms;  // appended after index
    std::vector<std::uint64_t> want;         // follower terms from index 2
  };
  std::vector<row> rows = {
      {3, 2, {3}, {1, 2, 3}},
      {2, 1, {3, 4}, {1, 3, 4}},
      {1, 1, {1}, {1, 2}},
      {1, 1, {3}, {3}},
  };
  for (const row& r : rows) {
    node n(restarted(1, 3, {1, 2}, 2, 1));
    drain(n);
    message m = msg(message_type::append, 2, 1, 4);
    m.index = r.index;
    m.log_term = r.log_term;
    for (std::size_t i = 0; i < r.entry_terms.size(); ++i)
      m.entries.push_back({r.entry_terms[i], r.index + 1 + i, entry_type::normal, "e"});
    BOOST_REQUIRE(n.step(m).is_ok());
    drain(n);
    std::vector<std::uint64_t> got = log_terms(n);
    BOOST_REQUIRE_EQUAL_COLLECTIONS(got.begin(), got.end(), r.want.begin(), r.want.end());
  }
}

// etcd TestFollowerCommitEntry: a follower commits min(leader commit, last new entry).
BOOST_AUTO_TEST_CASE(follower_commits_entries) {
  node n(restarted(1, 3, {}, 1, 1));
  drain(n);
  message m = msg(message_type::append, 2, 1, 1);
  m.index = 1;
  m.log_term = 1;
  m.entries = {{1, 2, entry_type::normal, "a"}, {1, 3, entry_type::normal, "b"}};
  m.commit = 10;
  BOOST_REQUIRE(n.step(m).is_ok());
  drained d = drain(n);
  BOOST_REQUIRE_EQUAL(n.commit_index(), 3u);
  BOOST_REQUIRE_EQUAL(d.committed.size(), 2u);
  BOOST_REQUIRE_EQUAL(d.committed[1].data, "b");
}

// Figure 7 (etcd TestLeaderSyncFollowerLog): whatever the follower's log (missing,
// extra, conflicting entries), the leader brings it to its own.
BOOST_AUTO_TEST_CASE(leader_syncs_follower_log) {
  std::vector<std::uint64_t> leader_log = {1, 1, 4, 4, 5, 5, 6, 6, 6};  // indexes 2..10
  std::vector<std::vector<std::uint64_t>> followers = {
      {1, 1, 4, 4, 5, 5, 6, 6},           // (a)
      {1, 1, 4},                          // (b)
      {1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c)
      {1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d)
      {1, 1, 4, 4, 4, 4},                 // (e)
      {1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f)
  };
  for (const auto& follower : followers) {
    net network;
    network.add(restarted(1, 3, leader_log, 8, 10));
    network.add(restarted(2, 3, follower, 7, 1));
    network.add(restarted(3, 3, {}, 7, 1));
    network.dead = {3};
    network.stabilize();
    network[1].campaign();
    network.stabilize();
    // Node 3 (otherwise silent) grants the vote that node 2 may refuse.
    message granted = msg(message_type::vote_response, 3, 1, 9);
    BOOST_REQUIRE(network[1].step(granted).is_ok());
    network.stabilize();
    BOOST_REQUIRE(network[1].role() == role::leader);
    BOOST_REQUIRE(network[1].propose("x").is_ok());
    network.stabilize();
    BOOST_REQUIRE(log_terms(network[1]) == log_terms(network[2]));
  }
}

// ---- the persistence rule (keel/raft/raft.h) -----------------------------------------------

// A vote is a promise about durable state: sent after the ready that persists it.
BOOST_AUTO_TEST_CASE(vote_response_waits_for_persist) {
  node n(restarted(1, 3, {}, 1));
  drain(n);
  message m = msg(message_type::vote, 2, 1, 2);
  m.index = 1;
  m.log_term = 1;
  BOOST_REQUIRE(n.step(m).is_ok());
  ready rd = n.ready();
  BOOST_REQUIRE(rd.hard.has_value());
  BOOST_REQUIRE_EQUAL(rd.hard->term, 2u);
  BOOST_REQUIRE_EQUAL(rd.hard->vote, 2u);
  BOOST_REQUIRE(rd.must_sync);
  BOOST_REQUIRE(of_type(rd.messages, message_type::vote_response).empty());
  BOOST_REQUIRE_EQUAL(of_type(rd.messages_after_persist, message_type::vote_response).size(), 1u);
  n.advance();
}

// The vote is in the hard state: a restart from what was persisted still refuses a second
// candidate in the same term.
BOOST_AUTO_TEST_CASE(vote_survives_restart) {
  config cfg = restarted(1, 3, {}, 1);
  config again = cfg;
  node n(std::move(cfg));
  drain(n);
  message m = msg(message_type::vote, 2, 1, 2);
  m.index = 1;
  m.log_term = 1;
  BOOST_REQUIRE(n.step(m).is_ok());
  ready rd = n.ready();
  BOOST_REQUIRE(rd.hard.has_value());
  again.initial_hard_state = *rd.hard;
  n.advance();
  node restarted_node(std::move(again));
  m.from = 3;
  BOOST_REQUIRE(restarted_node.step(m).is_ok());
  std::vector<message> replies =
      of_type(drain(restarted_node).messages, message_type::vote_response);
  BOOST_REQUIRE_EQUAL(replies.size(), 1u);
  BOOST_REQUIRE(replies[0].reject);
}

// An append acknowledgement likewise; the entries it covers are in the same ready.
BOOST_AUTO_TEST_CASE(append_response_waits_for_persist) {
  node n(restarted(1, 3, {}, 1));
  drain(n);
  message m = msg(message_type::append, 2, 1, 1);
  m.index = 1;
  m.log_term = 1;
  m.entries = {{1, 2, entry_type::normal, "a"}};
  BOOST_REQUIRE(n.step(m).is_ok());
  ready rd = n.ready();
  BOOST_REQUIRE_EQUAL(rd.entries.size(), 1u);
  BOOST_REQUIRE(of_type(rd.messages, message_type::append_response).empty());
  std::vector<message> acks = of_type(rd.messages_after_persist, message_type::append_response);
  BOOST_REQUIRE_EQUAL(acks.size(), 1u);
  BOOST_REQUIRE_EQUAL(acks[0].index, 2u);
  n.advance();
  BOOST_REQUIRE_EQUAL(n.persisted_index(), 2u);
}

// The leader sends new entries before its own fdatasync, but counts its own copy only at
// advance(): a single-member group commits nothing until then.
BOOST_AUTO_TEST_CASE(leader_counts_itself_after_persist) {
  node n(boot(1, 1));
  drain(n);
  n.campaign();
  BOOST_REQUIRE(n.role() == role::candidate);  // its self-vote is not durable yet
  drain(n);
  BOOST_REQUIRE(n.role() == role::leader);
  std::uint64_t commit = n.commit_index();
  result<entry_id> proposed = n.propose("x");
  ready rd = n.ready();
  BOOST_REQUIRE_EQUAL(rd.entries.back().index, proposed.value().index);
  BOOST_REQUIRE_EQUAL(n.commit_index(), commit);
  BOOST_REQUIRE(rd.committed_entries.empty());
  n.advance();
  BOOST_REQUIRE_EQUAL(n.commit_index(), proposed.value().index);
  rd = n.ready();
  BOOST_REQUIRE_EQUAL(rd.committed_entries.size(), 1u);
  BOOST_REQUIRE_EQUAL(rd.committed_entries[0].data, "x");
  n.advance();
}

// In a group of three the leader's appends go out in the ready that persists the entries
// (rd.messages), and the followers' acknowledgements commit the entry even while the
// leader's own write is still outstanding; it is applied only once durable here too.
BOOST_AUTO_TEST_CASE(leader_sends_before_own_persist) {
  net network = cluster_of(3);
  elect(network, 1);
  node& leader = network[1];
  result<entry_id> proposed = leader.propose("x");
  ready rd = leader.ready();  // persisting...
  std::vector<message> appends = of_type(rd.messages, message_type::append);
  BOOST_REQUIRE_EQUAL(appends.size(), 2u);
  BOOST_REQUIRE_EQUAL(leader.progress(1)->match, proposed.value().index - 1);
  for (const message& m : appends) network.deliver(m);
  for (node_id id : {2, 3}) {
    for (const message& m : drain(network[id]).messages) BOOST_REQUIRE(leader.step(m).is_ok());
  }
  BOOST_REQUIRE_EQUAL(leader.commit_index(), proposed.value().index);  // a quorum of followers
  leader.advance();                                                    // ...persisted
  rd = leader.ready();
  BOOST_REQUIRE_EQUAL(rd.committed_entries.back().data, "x");
  leader.advance();
}

// A restart from exactly what was persisted gives back the term, vote and log.
BOOST_AUTO_TEST_CASE(restart_from_persisted_state) {
  node n(boot(1, 1));
  hard_state hard;
  std::vector<entry> log;
  auto persist = [&](node& from) {
    while (from.has_ready()) {
      ready rd = from.ready();
      if (rd.hard) hard = *rd.hard;
      for (const entry& e : rd.entries) {
        log.resize(e.index - 1);
        log.push_back(e);
      }
      for (const entry& e : rd.committed_entries)
        if (e.type == entry_type::conf_change)
          from.apply_conf_change(decode_conf_change(e.data).value());
      from.advance();
    }
  };
  persist(n);
  n.campaign();
  persist(n);
  BOOST_REQUIRE(n.propose("a").is_ok());
  BOOST_REQUIRE(n.propose("b").is_ok());
  persist(n);
  config cfg;
  cfg.id = 1;
  cfg.initial_hard_state = hard;
  cfg.initial_entries = log;
  node again(std::move(cfg));
  BOOST_REQUIRE_EQUAL(again.term(), n.term());
  BOOST_REQUIRE_EQUAL(again.vote(), 1u);
  BOOST_REQUIRE(log_terms(again) == log_terms(n));
  BOOST_REQUIRE_EQUAL(again.commit_index(), n.commit_index());
  // The committed entries are handed out again (the state machine is rebuilt), and the
  // replayed bootstrap conf change restores the membership.
  drained replay = drain(again);
  BOOST_REQUIRE_EQUAL(replay.committed.size(), n.commit_index());
  BOOST_REQUIRE(again.membership().is_voter(1));
  again.campaign();
  drain(again);
  BOOST_REQUIRE(again.role() == role::leader);
}

// ---- ReadIndex (thesis §6.4) ---------------------------------------------------------------

// A new leader serves no read before an entry of its own term is committed: until then
// its commit index may be behind what earlier leaders committed.
BOOST_AUTO_TEST_CASE(read_index_waits_for_commit_in_term) {
  net network = cluster_of(3);
  elect(network, 1);
  BOOST_REQUIRE(network[1].propose("old").is_ok());
  network.stabilize();
  // Node 2 takes over, but its no-op is not acknowledged yet.
  network[2].campaign();
  network.flush();
  while (!network.queue.empty()) {
    message m = network.queue.front();
    network.queue.pop_front();
    if (m.type == message_type::vote || m.type == message_type::vote_response) network.deliver(m);
    network.flush();
  }
  node& leader = network[2];
  BOOST_REQUIRE(leader.role() == role::leader);
  std::uint64_t noop = leader.last_index();
  BOOST_REQUIRE_LT(leader.commit_index(), noop);
  BOOST_REQUIRE(leader.read_index("r").is_ok());
  drained held = drain(leader);
  for (const message& m : held.messages) BOOST_REQUIRE(m.context.empty());  // no round yet
  BOOST_REQUIRE(held.reads.empty());
  for (message& m : held.messages) network.queue.push_back(m);
  // From now on everything gets through: heartbeats bring the no-op to the followers, it
  // commits, then the read gets its heartbeat round.
  std::vector<read_state> reads;
  for (int ticks = 0; ticks < 10 && reads.empty(); ++ticks) {
    leader.tick();
    for (int steps = 0; steps < 1000; ++steps) {
      for (auto& [id, n] : network.nodes) {
        drained d = drain(n);
        for (message& out : d.messages) network.queue.push_back(out);
        if (id == 2) reads.insert(reads.end(), d.reads.begin(), d.reads.end());
      }
      if (network.queue.empty()) break;
      message m = network.queue.front();
      network.queue.pop_front();
      network.deliver(m);
    }
  }
  BOOST_REQUIRE_EQUAL(reads.size(), 1u);
  BOOST_REQUIRE_EQUAL(reads[0].context, "r");
  BOOST_REQUIRE_GE(reads[0].index, noop);
}

// A single voter confirms reads by itself, at its commit index when asked: a write not
// yet committed then is not waited for. A read state is handed out only once applied.
BOOST_AUTO_TEST_CASE(read_index_single_voter) {
  node n(boot(1, 1));
  drain(n);
  n.campaign();
  drain(n);
  std::uint64_t commit = n.commit_index();
  BOOST_REQUIRE(n.propose("x").is_ok());
  BOOST_REQUIRE(n.read_index("r").is_ok());
  ready rd = n.ready();
  BOOST_REQUIRE_EQUAL(rd.read_states.size(), 1u);
  BOOST_REQUIRE_EQUAL(rd.read_states[0].index, commit);
  BOOST_REQUIRE_LE(rd.read_states[0].index, n.applied_index());
  n.advance();
  drain(n);
  // Asked after "x" committed, a read waits for "x" to be applied.
  BOOST_REQUIRE(n.propose("y").is_ok());
  rd = n.ready();
  n.advance();  // "y" durable: committed, not yet handed out to apply
  BOOST_REQUIRE_GT(n.commit_index(), n.applied_index());
  BOOST_REQUIRE(n.read_index("r2").is_ok());
  rd = n.ready();
  BOOST_REQUIRE_EQUAL(rd.read_states.size(), 1u);
  BOOST_REQUIRE_EQUAL(rd.committed_entries.back().index, rd.read_states[0].index);
  n.advance();
}

// ---- flow control and back-tracking --------------------------------------------------------

BOOST_AUTO_TEST_CASE(inflights_window) {
  raft::detail::inflights window(3);
  window.add(5);
  window.add(9);
  window.add(12);
  BOOST_REQUIRE(window.full());
  window.free_le(9);
  BOOST_REQUIRE_EQUAL(window.count(), 1u);
  window.add(15);
  window.add(20);
  BOOST_REQUIRE(window.full());
  window.free_le(100);
  BOOST_REQUIRE_EQUAL(window.count(), 0u);
}

BOOST_AUTO_TEST_CASE(progress_transitions) {
  raft::detail::progress pr(10, 4, false);
  // Probe: one append at a time, rejections of older probes are stale.
  pr.sent_entries(3);
  BOOST_REQUIRE(pr.is_paused());
  BOOST_REQUIRE(!pr.maybe_decrease_to(5, 2));  // not the last probe (next - 1 == 9)
  BOOST_REQUIRE(pr.maybe_decrease_to(9, 4));
  BOOST_REQUIRE_EQUAL(pr.next, 5u);
  BOOST_REQUIRE(!pr.is_paused());
  // Replicate: pipelined up to the window.
  BOOST_REQUIRE(pr.maybe_update(4));
  pr.become_replicate();
  for (int i = 0; i < 4; ++i) pr.sent_entries(1);
  BOOST_REQUIRE_EQUAL(pr.next, 9u);
  BOOST_REQUIRE(pr.is_paused());
  BOOST_REQUIRE(pr.maybe_update(6));
  pr.window.free_le(6);
  BOOST_REQUIRE(!pr.is_paused());
  // A rejection in replicate falls back to match + 1.
  BOOST_REQUIRE(pr.maybe_decrease_to(8, 0));
  BOOST_REQUIRE_EQUAL(pr.next, 7u);
  // Snapshot: probe continues after the snapshot if it was delivered.
  pr.become_snapshot(50);
  BOOST_REQUIRE(pr.is_paused());
  pr.become_probe();
  BOOST_REQUIRE_EQUAL(pr.next, 51u);
}

BOOST_AUTO_TEST_CASE(log_find_conflict_by_term) {
  // index:  1 (snapshot, term 1) 2:1 3:2 4:2 5:4 6:4
  snapshot s;
  s.metadata = {1, 1, {{1}, {}}};
  std::vector<entry> entries;
  std::uint64_t terms[] = {1, 2, 2, 4, 4};
  for (std::uint64_t i = 0; i < 5; ++i)
    entries.push_back({terms[i], i + 2, entry_type::normal, ""});
  raft::detail::raft_log log(s, entries, 1);
  BOOST_REQUIRE(log.find_conflict_by_term(6, 4) == (entry_id{6, 4}));
  BOOST_REQUIRE(log.find_conflict_by_term(6, 3) == (entry_id{4, 2}));
  BOOST_REQUIRE(log.find_conflict_by_term(6, 1) == (entry_id{2, 1}));
  BOOST_REQUIRE(log.find_conflict_by_term(10, 2) == (entry_id{4, 2}));
  BOOST_REQUIRE(log.find_conflict_by_term(6, 0) == (entry_id{0, 0}));  // below the snapshot
}

// The leader pipelines up to max_inflight_msgs appends, each at most max_size_per_msg,
// then waits; a heartbeat response lets one empty append through to recover.
BOOST_AUTO_TEST_CASE(pipelining_and_batching) {
  net network;
  for (node_id id = 1; id <= 2; ++id) {
    config cfg = boot(id, 2);
    cfg.max_inflight_msgs = 3;
    cfg.max_size_per_msg = 2 * (100 + raft::detail::entry_overhead_bytes);
    network.add(std::move(cfg));
  }
  network.stabilize();
  elect(network, 1);
  node& leader = network[1];
  BOOST_REQUIRE(leader.progress(2)->state == progress_state::replicate);
  for (int i = 0; i < 20; ++i) BOOST_REQUIRE(leader.propose(std::string(100, 'x')).is_ok());
  std::vector<message> appends = of_type(drain(leader).messages, message_type::append);
  BOOST_REQUIRE_EQUAL(appends.size(), 3u);                                     // the window
  for (const message& m : appends) BOOST_REQUIRE_EQUAL(m.entries.size(), 2u);  // the batch
  BOOST_REQUIRE(leader.progress(2)->inflight == 3);
  // Everything sent is lost. Heartbeats still flow; a response lets an empty append probe.
  leader.tick();
  std::vector<message> beats = of_type(drain(leader).messages, message_type::heartbeat);
  BOOST_REQUIRE_EQUAL(beats.size(), 1u);
  network.send(beats[0]);
  BOOST_REQUIRE_EQUAL(leader.progress(2)->match, leader.last_index());
  BOOST_REQUIRE_EQUAL(network[2].commit_index(), leader.last_index());
}

// 6.824's "backup" on one follower by hand: 50 conflicting entries of an old term are
// skipped in one rejection.
BOOST_AUTO_TEST_CASE(fast_backtracking_skips_a_term) {
  std::vector<std::uint64_t> leader_log(10, 1), follower_log(10, 1);
  for (int i = 0; i < 50; ++i) leader_log.push_back(3);
  for (int i = 0; i < 50; ++i) follower_log.push_back(2);
  net network;
  network.add(restarted(1, 2, leader_log, 3, 11));
  network.add(restarted(2, 2, follower_log, 3, 11));
  network.stabilize();
  network[1].campaign();
  std::size_t rejections = 0;
  for (int steps = 0; steps < 10000; ++steps) {
    network.flush();
    if (network.queue.empty()) break;
    message m = network.queue.front();
    network.queue.pop_front();
    if (m.type == message_type::append_response && m.reject) ++rejections;
    network.deliver(m);
  }
  BOOST_REQUIRE(network[1].role() == role::leader);
  BOOST_REQUIRE(log_terms(network[1]) == log_terms(network[2]));
  BOOST_TEST_MESSAGE("rejections: " << rejections);
  BOOST_REQUIRE_LE(rejections, 2u);
}
