// node.cc — keel::raft::node: the public face of detail::raft, and validate().
#include <algorithm>
#include <set>
#include <utility>

#include "keel/assert.h"
#include "keel/raft/raft.h"
#include "raft.h"

namespace keel::raft {

namespace {

status invalid(std::string what) { return {errc::invalid_argument, "raft config: " + what}; }

status validate_members(const std::vector<node_id>& voters, const std::vector<node_id>& learners) {
  std::set<node_id> seen;
  for (const auto* ids : {&voters, &learners}) {
    for (node_id id : *ids) {
      if (id == no_node) return invalid("member id 0");
      if (!seen.insert(id).second) return invalid("member " + std::to_string(id) + " listed twice");
    }
  }
  if (voters.empty() && !learners.empty()) return invalid("learners without voters");
  return status::ok();
}

status validate_restart(const config& cfg) {
  const snapshot_metadata& snap = cfg.initial_snapshot.metadata;
  status members = validate_members(snap.conf.voters, snap.conf.learners);
  if (!members) return members;
  if (!std::is_sorted(snap.conf.voters.begin(), snap.conf.voters.end()) ||
      !std::is_sorted(snap.conf.learners.begin(), snap.conf.learners.end()))
    return invalid("snapshot membership not sorted");
  std::uint64_t last_term = snap.term;
  std::uint64_t expected = snap.index + 1;
  for (const entry& e : cfg.initial_entries) {
    if (e.index != expected) return invalid("initial entries not consecutive after the snapshot");
    if (e.term < last_term) return invalid("initial entry terms decrease");
    last_term = e.term;
    ++expected;
  }
  const hard_state& hard = cfg.initial_hard_state;
  if (hard.commit > expected - 1) return invalid("commit index beyond the persisted log");
  // hard.term below last_term is allowed: a crash between writing a ready's entries and
  // its hard state leaves exactly that (the node then starts at last_term, no vote).
  return status::ok();
}

}  // namespace

status validate(const config& cfg) {
  if (cfg.id == no_node) return invalid("id 0");
  if (cfg.heartbeat_tick <= 0) return invalid("heartbeat_tick must be positive");
  if (cfg.election_tick <= cfg.heartbeat_tick)
    return invalid("election_tick must be greater than heartbeat_tick");
  if (cfg.max_inflight_msgs == 0) return invalid("max_inflight_msgs must be positive");
  if (cfg.max_outstanding_readies == 0) return invalid("max_outstanding_readies must be at least 1");
  if (cfg.max_size_per_msg == 0 || cfg.max_committed_size_per_ready == 0)
    return invalid("message and ready sizes must be positive");
  if (cfg.max_uncommitted_entries == 0) return invalid("max_uncommitted_entries must be positive");
  status members = validate_members(cfg.voters, cfg.learners);
  if (!members) return members;
  return validate_restart(cfg);
}

node::node(config cfg) {
  status valid = validate(cfg);
  KEEL_ASSERT_MSG(valid.is_ok(), valid.message().c_str());
  _raft = std::make_unique<detail::consensus>(std::move(cfg));
}

node::~node() = default;
node::node(node&&) noexcept = default;
node& node::operator=(node&&) noexcept = default;

void node::tick() { _raft->tick(); }
status node::step(const message& m) { return _raft->step(m); }
result<entry_id> node::propose(std::string data) { return _raft->propose(std::move(data)); }
result<entry_id> node::propose_conf_change(const conf_change& change) {
  return _raft->propose_conf_change(change);
}
status node::read_index(std::string context) { return _raft->read_index(std::move(context)); }
status node::transfer_leadership(node_id to) { return _raft->transfer_leadership(to); }
void node::campaign() { _raft->campaign_now(); }
void node::report_unreachable(node_id to) { _raft->report_unreachable(to); }
void node::report_snapshot(node_id to, bool succeeded) { _raft->report_snapshot(to, succeeded); }
conf_state node::apply_conf_change(const conf_change& change) {
  return _raft->apply_conf_change(change);
}
status node::compact(std::uint64_t index, conf_state conf, std::string data) {
  return _raft->compact(index, std::move(conf), std::move(data));
}

bool node::has_ready() const { return _raft->has_ready(); }
raft::ready node::ready() { return _raft->make_ready(); }
void node::advance() { _raft->advance(); }

node_id node::id() const { return _raft->id(); }
std::uint64_t node::term() const { return _raft->term(); }
node_id node::vote() const { return _raft->vote(); }
raft::role node::role() const { return _raft->role(); }
node_id node::leader() const { return _raft->leader(); }
std::uint64_t node::commit_index() const { return _raft->log().committed(); }
std::uint64_t node::applied_index() const { return _raft->log().applied(); }
std::uint64_t node::handed_committed_index() const { return _raft->log().applying(); }
std::uint64_t node::first_index() const { return _raft->log().first_index(); }
std::uint64_t node::last_index() const { return _raft->log().last_index(); }
std::uint64_t node::persisted_index() const { return _raft->log().stable(); }
std::optional<std::uint64_t> node::term_at(std::uint64_t index) const {
  return _raft->log().term(index);
}
const entry* node::entry_at(std::uint64_t index) const { return _raft->log().at(index); }
const raft::snapshot& node::last_snapshot() const { return _raft->log().last_snapshot(); }
const conf_state& node::membership() const { return _raft->membership(); }
node_id node::lead_transferee() const { return _raft->lead_transferee(); }
std::optional<progress_status> node::progress(node_id member) const {
  return _raft->progress_of(member);
}

}  // namespace keel::raft
