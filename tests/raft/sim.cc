// sim.cc — the deterministic Raft simulator (sim.h).
#include "sim.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace keel::raft::sim {

namespace {

constexpr std::uint64_t second_us = 1'000'000;
constexpr std::uint64_t long_delay_min_us = 200'000;
constexpr std::uint64_t long_delay_span_us = 2'000'000;

[[noreturn]] void fail(const std::string& what) { throw sim_failure(what); }

}  // namespace

cluster::cluster(options opts) : _opts(opts), _random_state(opts.seed * 0x9e3779b97f4a7c15ull + 1) {
  for (node_id id = 1; id <= _opts.nodes; ++id) {
    member& m = _members[id];
    m.id = id;
    m.bootstrap = true;
  }
  for (auto& [id, m] : _members) start(m);
}

std::uint64_t cluster::random(std::uint64_t bound) {
  std::uint64_t z = (_random_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return bound == 0 ? 0 : z % bound;
}

namespace {
bool chance(cluster& c, double p) { return p > 0 && c.random(1'000'000) < p * 1'000'000; }
}  // namespace

// ---- nodes ------------------------------------------------------------------------------

config cluster::config_for(const member& m) const {
  config cfg;
  cfg.id = m.id;
  if (m.bootstrap)
    for (node_id id = 1; id <= _opts.nodes; ++id) cfg.voters.push_back(id);
  cfg.election_tick = _opts.election_tick;
  cfg.heartbeat_tick = _opts.heartbeat_tick;
  cfg.pre_vote = _opts.pre_vote;
  cfg.check_quorum = _opts.check_quorum;
  cfg.max_inflight_msgs = _opts.max_inflight_msgs;
  cfg.max_size_per_msg = _opts.max_size_per_msg;
  cfg.max_outstanding_readies = _opts.ready_depth;
  cfg.seed = _opts.seed * 1'000'003 + m.id * 7'919 + m.incarnation;
  cfg.initial_hard_state = m.durable.hard;
  cfg.initial_snapshot = m.durable.snap;
  cfg.initial_entries = m.durable.entries;
  return cfg;
}

void cluster::start(member& m) {
  ++m.incarnation;
  config cfg = config_for(m);
  status valid = validate(cfg);
  if (!valid) fail("restart config of node " + std::to_string(m.id) + ": " + valid.to_string());
  m.raft = std::make_unique<node>(std::move(cfg));
  m.state = decode_state(m.durable.snap.data);
  m.last_compaction = m.durable.snap.metadata.index;
  m.in_flight.clear();
  schedule({_now + random(_opts.tick_us) + 1, 0, event_kind::tick, m.id, m.incarnation, {}});
  pump(m);
}

void cluster::crash(node_id id) {
  member& m = at(id);
  m.raft.reset();
  m.in_flight.clear();  // their fsyncs never complete: those readies are lost
  m.state.clear();
  m.reads.clear();
  ++m.incarnation;
}

void cluster::restart(node_id id) {
  member& m = at(id);
  if (m.raft) crash(id);
  _checker.note_restart(id);
  start(m);
  check();
}

bool cluster::up(node_id id) const { return at(id).raft != nullptr; }

void cluster::add_node(node_id id) {
  member& m = _members[id];
  if (m.id != no_node) fail("node " + std::to_string(id) + " exists");
  m.id = id;
  start(m);
}

std::vector<node_id> cluster::ids() const {
  std::vector<node_id> out;
  for (const auto& [id, m] : _members) out.push_back(id);
  return out;
}

cluster::member& cluster::at(node_id id) {
  auto it = _members.find(id);
  if (it == _members.end()) fail("no node " + std::to_string(id));
  return it->second;
}

const cluster::member& cluster::at(node_id id) const {
  auto it = _members.find(id);
  if (it == _members.end()) fail("no node " + std::to_string(id));
  return it->second;
}

node& cluster::raft(node_id id) {
  member& m = at(id);
  if (!m.raft) fail("node " + std::to_string(id) + " is down");
  return *m.raft;
}

// ---- events -----------------------------------------------------------------------------

void cluster::schedule(event e) {
  e.sequence = ++_sequence;
  _events.push_back(std::move(e));
  std::push_heap(_events.begin(), _events.end(), later());
}

void cluster::run_for(std::uint64_t us) {
  std::uint64_t until = _now + us;
  while (!_events.empty() && _events.front().time <= until) {
    std::pop_heap(_events.begin(), _events.end(), later());
    event e = std::move(_events.back());
    _events.pop_back();
    _now = e.time;
    ++_processed;
    process(e);
    if (_opts.check_every_event) check();
  }
  _now = until;
}

bool cluster::run_until(const std::function<bool()>& pred, std::uint64_t timeout_us) {
  std::uint64_t until = _now + timeout_us;
  while (!pred()) {
    if (_now >= until) return false;
    run_for(std::min<std::uint64_t>(10'000, until - _now));
  }
  return true;
}

void cluster::process(const event& e) {
  switch (e.kind) {
    case event_kind::tick: {
      member& m = at(e.node);
      if (!m.raft || m.incarnation != e.incarnation) return;
      m.raft->tick();
      pump(m);
      schedule({_now + _opts.tick_us, 0, event_kind::tick, m.id, m.incarnation, {}});
      return;
    }
    case event_kind::deliver: deliver(e.msg, e.incarnation); return;
    case event_kind::fsync_done: {
      member& m = at(e.node);
      if (!m.raft || m.incarnation != e.incarnation) return;
      fsync_done(m);
      return;
    }
    case event_kind::snapshot_report: {
      member& m = at(e.node);
      if (!m.raft) return;
      m.raft->report_snapshot(e.msg.to, !e.msg.reject);
      pump(m);
      return;
    }
  }
}

void cluster::check() {
  std::vector<const node*> live;
  for (const auto& [id, m] : _members)
    if (m.raft) live.push_back(m.raft.get());
  status checked = _checker.check(live);
  if (!checked)
    fail(checked.to_string() + " [seed " + std::to_string(_opts.seed) + ", t " +
         std::to_string(_now) + " us]");
}

void cluster::check_full() {
  std::vector<const node*> live;
  for (const auto& [id, m] : _members)
    if (m.raft) live.push_back(m.raft.get());
  status checked = _checker.check_full(live);
  if (!checked) fail(checked.to_string() + " [seed " + std::to_string(_opts.seed) + "]");
}

// ---- the driver loop (keel/raft/raft.h) -------------------------------------------------

void cluster::pump(member& m) {
  while (m.raft && m.in_flight.size() < _opts.ready_depth && m.raft->has_ready()) {
    ready rd = m.raft->ready();
    // Sendable before the fsync: the leader's appends go out in parallel with its write.
    for (const message& msg : rd.messages) transmit(msg);
    rd.messages.clear();
    m.in_flight.push_back(std::move(rd));
    schedule(
        {_now + random(_opts.fsync_us_max + 1), 0, event_kind::fsync_done, m.id, m.incarnation, {}});
  }
}

void cluster::fsync_done(member& m) {
  // Fsyncs complete in order: whichever event fires, the oldest ready is the durable one.
  if (m.in_flight.empty()) return;
  ready rd = std::move(m.in_flight.front());
  m.in_flight.pop_front();
  persist(m, rd);
  for (const message& msg : rd.messages_after_persist) transmit(msg);
  apply(m, rd);
  m.raft->advance();
  maybe_compact(m);
  pump(m);
}

void cluster::persist(member& m, const ready& rd) {
  disk& d = m.durable;
  if (!rd.snapshot.empty()) {
    d.snap = rd.snapshot;
    d.entries.clear();
  }
  if (!rd.entries.empty()) {
    std::uint64_t first = rd.entries.front().index;
    // Writing index i replaces the persisted log from i on.
    while (!d.entries.empty() && d.entries.back().index >= first) d.entries.pop_back();
    std::uint64_t expected =
        d.entries.empty() ? d.snap.metadata.index + 1 : d.entries.back().index + 1;
    if (first != expected)
      fail("node " + std::to_string(m.id) + " persisted a gap at " + std::to_string(first));
    d.entries.insert(d.entries.end(), rd.entries.begin(), rd.entries.end());
  }
  if (rd.hard) {
    d.hard = *rd.hard;
    status noted = _checker.note_persisted(m.id, d.hard);
    if (!noted) fail(noted.to_string());
  }
}

void cluster::apply(member& m, const ready& rd) {
  if (!rd.snapshot.empty()) {
    m.state = decode_state(rd.snapshot.data);
    m.last_compaction = rd.snapshot.metadata.index;
    if (m.state.size() != rd.snapshot.metadata.index) fail("snapshot of the wrong length");
    for (std::size_t i = 0; i < m.state.size(); ++i) {
      entry e{m.state[i].term, i + 1, m.state[i].type, m.state[i].data};
      status noted = _checker.note_applied(m.id, e);
      if (!noted) fail(noted.to_string());
    }
  }
  for (const entry& e : rd.committed_entries) apply_entry(m, e);
  for (const read_state& read : rd.read_states) {
    if (read.index > m.state.size()) fail("a read state released before its index was applied");
    m.reads.push_back({read.context, read.index, m.state.size()});
  }
}

void cluster::apply_entry(member& m, const entry& e) {
  if (e.index != m.state.size() + 1)
    fail("node " + std::to_string(m.id) + " applies " + std::to_string(e.index) + " after " +
         std::to_string(m.state.size()));
  status noted = _checker.note_applied(m.id, e);
  if (!noted) fail(noted.to_string());
  if (e.type == entry_type::conf_change) {
    result<conf_change> change = decode_conf_change(e.data);
    if (!change) fail(change.error().to_string());
    m.raft->apply_conf_change(change.value());
  }
  m.state.push_back({e.term, e.type, e.data});
}

void cluster::maybe_compact(member& m) {
  if (_opts.snapshot_every == 0) return;
  std::uint64_t applied = m.raft->applied_index();
  if (applied < m.last_compaction + _opts.snapshot_every) return;
  if (applied != m.state.size()) fail("applied index and state machine disagree");
  status compacted = m.raft->compact(applied, m.raft->membership(), encode_state(m.state));
  if (!compacted) fail(compacted.to_string());
  // The snapshot file is written, then the log before it released.
  m.durable.snap = m.raft->last_snapshot();
  auto& entries = m.durable.entries;
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [&](const entry& e) { return e.index <= applied; }),
                entries.end());
  m.last_compaction = applied;
}

// ---- the network ------------------------------------------------------------------------

bool cluster::can_talk(node_id from, node_id to) const {
  if (_disconnected.contains(from) || _disconnected.contains(to)) return false;
  if (_blocked.contains({from, to})) return false;
  if (!_group.empty()) {
    auto a = _group.find(from), b = _group.find(to);
    if (a == _group.end() || b == _group.end() || a->second != b->second) return false;
  }
  return true;
}

void cluster::transmit(message msg) {
  ++_sent[static_cast<int>(msg.type)];
  if (msg.type == message_type::append_response && msg.reject) ++_rejections;
  if (msg.type == message_type::vote_response && !msg.reject) {
    auto [it, first] = _granted.try_emplace({msg.from, msg.term}, msg.to);
    if (!first && it->second != msg.to)
      fail("node " + std::to_string(msg.from) + " voted for two candidates in term " +
           std::to_string(msg.term) + " [seed " + std::to_string(_opts.seed) + "]");
  }
  for (const entry& e : msg.entries) _sent_entry_bytes += e.data.size();
  bool lost = !can_talk(msg.from, msg.to) || (_filter && _filter(msg)) || chance(*this, _net.drop);
  std::uint64_t delay = chance(*this, _net.long_delay)
                            ? long_delay_min_us + random(long_delay_span_us)
                            : random(_net.delay_us_max + 1);
  if (lost) {
    // The transport notices a snapshot stream that failed and tells the sender.
    if (msg.type == message_type::snapshot) {
      message report;
      report.to = msg.to;
      report.reject = true;
      schedule({_now + delay, 0, event_kind::snapshot_report, msg.from, 0, report});
    }
    return;
  }
  schedule({_now + delay, 0, event_kind::deliver, msg.to, at(msg.from).incarnation, msg});
}

void cluster::deliver(const message& msg, std::uint64_t sender_incarnation) {
  auto it = _members.find(msg.to);
  bool arrived = it != _members.end() && it->second.raft && can_talk(msg.from, msg.to);
  if (arrived && at(msg.from).incarnation != sender_incarnation)
    arrived = !chance(*this, _net.lost_with_sender);
  if (msg.type == message_type::snapshot) {
    message report;
    report.to = msg.to;
    report.reject = !arrived;
    schedule({_now, 0, event_kind::snapshot_report, msg.from, 0, report});
  }
  if (!arrived) return;
  member& m = it->second;
  status stepped = m.raft->step(msg);
  if (!stepped) fail("step " + describe(msg) + ": " + stepped.to_string());
  pump(m);
}

void cluster::disconnect(node_id id) { _disconnected.insert(id); }
void cluster::connect(node_id id) { _disconnected.erase(id); }
bool cluster::connected(node_id id) const { return !_disconnected.contains(id); }

void cluster::partition(const std::vector<std::vector<node_id>>& groups) {
  _group.clear();
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (node_id id : groups[g]) _group[id] = static_cast<int>(g);
}

void cluster::heal() {
  _group.clear();
  _disconnected.clear();
  _blocked.clear();
}

// ---- clients ----------------------------------------------------------------------------

result<entry_id> cluster::propose(node_id id, std::string data) {
  member& m = at(id);
  if (!m.raft) return status{errc::unavailable, "down"};
  result<entry_id> out = m.raft->propose(std::move(data));
  pump(m);
  return out;
}

result<entry_id> cluster::propose_conf_change(node_id id, const conf_change& change) {
  member& m = at(id);
  if (!m.raft) return status{errc::unavailable, "down"};
  result<entry_id> out = m.raft->propose_conf_change(change);
  pump(m);
  return out;
}

status cluster::read_index(node_id id, std::string context) {
  member& m = at(id);
  if (!m.raft) return {errc::unavailable, "down"};
  status out = m.raft->read_index(std::move(context));
  pump(m);
  return out;
}

status cluster::transfer_leadership(node_id from, node_id to) {
  member& m = at(from);
  if (!m.raft) return {errc::unavailable, "down"};
  status out = m.raft->transfer_leadership(to);
  pump(m);
  return out;
}

void cluster::campaign(node_id id) {
  member& m = at(id);
  if (!m.raft) return;
  m.raft->campaign();
  pump(m);
}

// ---- observation ------------------------------------------------------------------------

const std::vector<applied_entry>& cluster::applied(node_id id) const { return at(id).state; }
std::uint64_t cluster::applied_index(node_id id) const { return at(id).state.size(); }
const std::vector<served_read>& cluster::reads(node_id id) const { return at(id).reads; }

std::optional<node_id> cluster::leader() const {
  std::optional<node_id> best;
  std::uint64_t best_term = 0;
  for (const auto& [id, m] : _members) {
    if (!m.raft || !connected(id) || m.raft->role() != role::leader) continue;
    if (!best || m.raft->term() > best_term) {
      best = id;
      best_term = m.raft->term();
    }
  }
  return best;
}

std::pair<std::size_t, std::string> cluster::n_committed(std::uint64_t index) const {
  std::size_t count = 0;
  std::optional<std::string> data;
  for (const auto& [id, m] : _members) {
    if (!m.raft || m.state.size() < index) continue;
    const std::string& here = m.state[index - 1].data;
    if (data && *data != here) fail("nodes applied different data at " + std::to_string(index));
    data = here;
    ++count;
  }
  return {count, data.value_or("")};
}

std::uint64_t cluster::one(const std::string& data, std::size_t expected, bool retry) {
  std::uint64_t start = _now;
  std::vector<node_id> all = ids();
  std::size_t next = 0;
  while (_now - start < 10 * second_us) {
    std::uint64_t index = 0;
    for (std::size_t tried = 0; tried < all.size() && index == 0; ++tried) {
      next = (next + 1) % all.size();
      node_id id = all[next];
      if (!up(id) || !connected(id)) continue;
      result<entry_id> proposed = propose(id, data);
      if (proposed) index = proposed.value().index;
    }
    if (index == 0) {
      run_for(50'000);
      continue;
    }
    std::uint64_t proposed_at = _now;
    while (_now - proposed_at < 2 * second_us) {
      auto [count, committed] = n_committed(index);
      if (count > 0 && count >= expected && committed == data) return index;
      run_for(20'000);
    }
    if (!retry) fail("one(" + data + ") failed to reach agreement");
  }
  fail("one(" + data + ") failed to reach agreement in 10 s [seed " + std::to_string(_opts.seed) +
       "]");
}

std::uint64_t cluster::sent_total() const {
  std::uint64_t total = 0;
  for (std::uint64_t n : _sent) total += n;
  return total;
}

// ---- the state machine's snapshot encoding (tests only) ---------------------------------

std::string cluster::encode_state(const std::vector<applied_entry>& state) {
  std::string out;
  auto put = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(state.size());
  for (const applied_entry& e : state) {
    put(e.term);
    put(static_cast<std::uint64_t>(e.type));
    put(e.data.size());
    out += e.data;
  }
  return out;
}

std::vector<applied_entry> cluster::decode_state(const std::string& bytes) {
  std::vector<applied_entry> state;
  if (bytes.empty()) return state;
  std::size_t at = 0;
  auto get = [&]() {
    if (at + 8 > bytes.size()) fail("truncated state machine snapshot");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= std::uint64_t{static_cast<std::uint8_t>(bytes[at + i])} << (8 * i);
    at += 8;
    return v;
  };
  std::uint64_t count = get();
  for (std::uint64_t i = 0; i < count; ++i) {
    applied_entry e;
    e.term = get();
    e.type = static_cast<entry_type>(get());
    std::uint64_t size = get();
    if (at + size > bytes.size()) fail("truncated state machine snapshot");
    e.data = bytes.substr(at, size);
    at += size;
    state.push_back(std::move(e));
  }
  return state;
}

std::vector<std::uint64_t> seeds(std::uint64_t n) {
  if (const char* only = std::getenv("KEEL_RAFT_SEED")) return {std::strtoull(only, nullptr, 10)};
  const char* scale = std::getenv("KEEL_RAFT_SEED_SCALE");
  std::uint64_t factor = scale == nullptr ? 1 : std::strtoull(scale, nullptr, 10);
  std::vector<std::uint64_t> out;
  for (std::uint64_t seed = 1; seed <= n * std::max<std::uint64_t>(factor, 1); ++seed)
    out.push_back(seed);
  return out;
}

// ---- 6.824 helpers ----------------------------------------------------------------------

node_id check_one_leader(cluster& c) {
  for (int iteration = 0; iteration < 10; ++iteration) {
    c.run_for(450 * ms + c.random(100 * ms));
    std::map<std::uint64_t, std::vector<node_id>> leaders;
    for (node_id id : c.ids()) {
      if (c.up(id) && c.connected(id) && c.raft(id).role() == role::leader)
        leaders[c.raft(id).term()].push_back(id);
    }
    for (const auto& [term, ids] : leaders)
      if (ids.size() > 1) fail("term " + std::to_string(term) + " has more than one leader");
    if (!leaders.empty()) return leaders.rbegin()->second.front();
  }
  fail("expected one leader, got none [seed " + std::to_string(c.seed()) + "]");
}

std::uint64_t check_terms(cluster& c) {
  std::optional<std::uint64_t> term;
  for (node_id id : c.ids()) {
    if (!c.up(id) || !c.connected(id)) continue;
    if (term && *term != c.raft(id).term()) fail("servers disagree on term");
    term = c.raft(id).term();
  }
  return term.value_or(0);
}

void check_no_leader(cluster& c) {
  for (node_id id : c.ids())
    if (c.up(id) && c.connected(id) && c.raft(id).role() == role::leader)
      fail("expected no leader, but " + std::to_string(id) + " claims to be leader");
}

}  // namespace keel::raft::sim
