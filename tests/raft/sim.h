// sim.h — a deterministic simulator for keel::raft: N nodes, a virtual clock, a network
// that drops, delays, reorders and partitions, and crashes that lose everything not yet
// durable. Used by the Raft tests only.
//
// Time is virtual (microseconds). Each node ticks every options.tick_us, at its own phase.
// Everything happens as events in one queue ordered by (time, sequence number), and every
// random choice comes from one generator seeded from options.seed: a seed replays a run
// exactly.
//
// The driver loop per node is the contract of keel/raft/raft.h, with the fsync made
// visible:
//   ready()  -> rd.messages go on the network at once (before the fsync, as allowed);
//            -> an fsync_done event is scheduled fsync_us later;
//   fsync_done -> rd's snapshot, entries and hard state become durable (the node's `disk`),
//                 rd.messages_after_persist go on the network, the state machine restores
//                 rd.snapshot and applies rd.committed_entries, advance().
// The persistence boundary is `disk`: crash() throws away the node object, its state
// machine and any ready whose fsync had not completed; restart() builds a new node from
// `disk` only (hard state, snapshot, entries) and rebuilds the state machine from the
// snapshot; the committed entries after it are applied again.
//
// The invariant checker (keel/raft/invariants.h) runs after every event; a violation
// throws sim_failure, which Boost.Test reports with the seed.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "keel/raft/invariants.h"
#include "keel/raft/raft.h"

namespace keel::raft::sim {

struct sim_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  std::size_t nodes = 3;  // ids 1..nodes, all bootstrap voters
  std::uint64_t seed = 1;
  int election_tick = 10;
  int heartbeat_tick = 1;
  std::uint64_t tick_us = 50'000;  // 50 ms: elections after 0.5-1 s
  bool pre_vote = false;
  bool check_quorum = false;
  std::size_t max_inflight_msgs = 64;
  std::uint64_t max_size_per_msg = 64 * 1024;
  std::uint64_t fsync_us_max = 2'000;  // each fsync takes [0, this]
  // Readies a node holds at once (config.max_outstanding_readies): with 2, a node takes
  // its next ready and sends its messages while the previous one's fsync runs; fsyncs
  // complete in the order they were issued (a disk's, as keel's WAL writer guarantees).
  std::size_t ready_depth = 1;
  std::uint64_t snapshot_every = 0;    // compact after this many applied entries; 0 never
  bool check_every_event = true;
};

// The network between nodes. Reliable by default: 0-2 ms, nothing lost.
struct network_options {
  std::uint64_t delay_us_max = 2'000;
  double drop = 0.0;        // per message
  double long_delay = 0.0;  // per message: delayed 200-2200 ms instead
  // A message still in flight when its sender crashes was in the dead process's socket
  // buffer: lost with this probability (6.824's labrpc drops all of them).
  double lost_with_sender = 0.5;
};

// The state machine of every node: the sequence of applied entries (term and data),
// which is also what a snapshot holds.
struct applied_entry {
  std::uint64_t term = 0;
  entry_type type = entry_type::normal;
  std::string data;
  bool operator==(const applied_entry&) const = default;
};

struct served_read {
  std::string context;
  std::uint64_t index = 0;
  std::uint64_t applied = 0;  // the state machine's applied index when served
};

class cluster {
 public:
  explicit cluster(options opts);

  // ---- time ----
  std::uint64_t now() const { return _now; }
  std::uint64_t seed() const { return _opts.seed; }
  void run_for(std::uint64_t us);
  void run_ticks(int ticks) { run_for(ticks * _opts.tick_us); }
  // Runs until pred() or timeout; true if pred() held.
  bool run_until(const std::function<bool()>& pred, std::uint64_t timeout_us);

  // ---- faults ----
  void set_network(network_options net) { _net = net; }
  void disconnect(node_id id);  // 6.824: cut every link of id
  void connect(node_id id);
  bool connected(node_id id) const;
  // Only nodes of the same group talk; nodes in no group are cut off. heal() undoes.
  void partition(const std::vector<std::vector<node_id>>& groups);
  void heal();
  void crash(node_id id);
  void restart(node_id id);
  bool up(node_id id) const;
  // Drop every message (or only those matching) from -> to until allowed again.
  void block_link(node_id from, node_id to) { _blocked.insert({from, to}); }
  void unblock_link(node_id from, node_id to) { _blocked.erase({from, to}); }
  // Scripted scenarios: filter(m) may edit a message on its way (say, strip entries) and
  // returns true to lose it instead; {} clears it.
  void set_filter(std::function<bool(message&)> filter) { _filter = std::move(filter); }

  // ---- membership ----
  // A new, empty node that joins when a leader adds it (not a bootstrap voter).
  void add_node(node_id id);
  std::vector<node_id> ids() const;

  // ---- clients ----
  result<entry_id> propose(node_id id, std::string data);
  result<entry_id> propose_conf_change(node_id id, const conf_change& change);
  status read_index(node_id id, std::string context);
  status transfer_leadership(node_id from, node_id to);
  void campaign(node_id id);

  // ---- observation ----
  node& raft(node_id id);                                       // REQUIRES: up(id)
  const std::vector<applied_entry>& applied(node_id id) const;  // [i] = entry at i + 1
  std::uint64_t applied_index(node_id id) const;
  const std::vector<served_read>& reads(node_id id) const;
  // The leader of the highest term among up and connected nodes, if any.
  std::optional<node_id> leader() const;
  // 6.824's nCommitted: how many nodes applied index, and its data. Throws if two differ.
  std::pair<std::size_t, std::string> n_committed(std::uint64_t index) const;
  // 6.824's one(): propose data through whichever up, connected node accepts it until
  // `expected` nodes applied it; retries on other leaders if `retry`. Returns the index,
  // or throws sim_failure after 10 virtual seconds.
  std::uint64_t one(const std::string& data, std::size_t expected, bool retry);
  // Counts of messages put on the network, by type.
  std::uint64_t sent(message_type type) const { return _sent[static_cast<int>(type)]; }
  std::uint64_t sent_total() const;
  std::uint64_t rejections() const { return _rejections; }
  std::uint64_t events() const { return _processed; }  // append_response with reject
  std::uint64_t sent_entry_bytes() const { return _sent_entry_bytes; }
  invariant_checker& checker() { return _checker; }
  void check_full();
  std::uint64_t random(std::uint64_t bound);  // the simulation's own generator

 private:
  enum class event_kind { tick, deliver, fsync_done, snapshot_report };
  struct event {
    std::uint64_t time;
    std::uint64_t sequence;
    event_kind kind;
    node_id node;
    std::uint64_t incarnation;  // tick, fsync_done: the node's; deliver: the sender's
    message msg;                // deliver; snapshot_report: from/to/reject
  };
  struct later {
    bool operator()(const event& a, const event& b) const {
      return a.time != b.time ? a.time > b.time : a.sequence > b.sequence;
    }
  };
  struct disk {
    hard_state hard;
    snapshot snap;
    std::vector<entry> entries;  // after snap
  };
  struct member {
    node_id id = no_node;
    bool bootstrap = false;
    std::unique_ptr<node> raft;  // null while crashed
    std::uint64_t incarnation = 0;
    disk durable;
    std::deque<ready> in_flight;       // handed out, fsync not done; oldest first
    std::vector<applied_entry> state;  // the state machine
    std::uint64_t last_compaction = 0;
    std::vector<served_read> reads;
  };

  config config_for(const member& m) const;
  void start(member& m);
  void schedule(event e);
  void process(const event& e);
  void pump(member& m);
  void fsync_done(member& m);
  void persist(member& m, const ready& rd);
  void apply(member& m, const ready& rd);
  void apply_entry(member& m, const entry& e);
  void maybe_compact(member& m);
  void transmit(message m);
  void deliver(const message& m, std::uint64_t sender_incarnation);
  bool can_talk(node_id from, node_id to) const;
  void check();
  member& at(node_id id);
  const member& at(node_id id) const;
  static std::string encode_state(const std::vector<applied_entry>& state);
  static std::vector<applied_entry> decode_state(const std::string& bytes);

  options _opts;
  network_options _net;
  std::uint64_t _now = 0;
  std::uint64_t _sequence = 0;
  std::uint64_t _random_state;
  std::vector<event> _events;  // a heap ordered by `later`
  std::map<node_id, member> _members;
  std::set<node_id> _disconnected;
  std::map<node_id, int> _group;  // partition: node -> group; empty = no partition
  std::set<std::pair<node_id, node_id>> _blocked;
  std::function<bool(message&)> _filter;
  // (voter, term) -> the candidate it granted a vote to: one vote per term, across
  // restarts, checked where the promise leaves the node.
  std::map<std::pair<node_id, std::uint64_t>, node_id> _granted;
  invariant_checker _checker;
  std::uint64_t _sent[message_type_count] = {};
  std::uint64_t _rejections = 0;
  std::uint64_t _processed = 0;
  std::uint64_t _sent_entry_bytes = 0;
};

// 6.824's config helpers, in virtual time.
inline constexpr std::uint64_t ms = 1'000;                        // microseconds
inline constexpr std::uint64_t election_timeout_us = 1'000 * ms;  // 6.824's RaftElectionTimeout

// The seeds a test loops over: 1..n, times KEEL_RAFT_SEED_SCALE from the environment
// (default 1) for soak runs; only KEEL_RAFT_SEED if that is set (to replay a failure).
std::vector<std::uint64_t> seeds(std::uint64_t n);

// Waits (up to ~5 s) for exactly one leader among up, connected nodes in the newest term;
// throws if a term has two.
node_id check_one_leader(cluster& c);
// All up, connected nodes agree on the term; returns it.
std::uint64_t check_terms(cluster& c);
// No up, connected node thinks it is leader.
void check_no_leader(cluster& c);

}  // namespace keel::raft::sim
