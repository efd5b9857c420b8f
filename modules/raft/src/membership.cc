// membership.cc — single-server membership changes (thesis §4.1) and compaction.
//
// A change is proposed as a conf_change entry and takes effect on each member when that
// member applies the entry (apply_conf_change), as in etcd. At most one change is in the
// log unapplied at a time (_pending_conf_index), so the memberships of any two
// consecutive configurations differ by one server and their majorities overlap.
#include <algorithm>
#include <utility>

#include "keel/assert.h"
#include "raft.h"

namespace keel::raft::detail {

namespace {

void erase_id(std::vector<node_id>& ids, node_id id) {
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
}

void insert_id(std::vector<node_id>& ids, node_id id) {
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
}

}  // namespace

status consensus::check_conf_change(const conf_change& change) const {
  if (change.node == no_node) return {errc::invalid_argument, "raft: conf change for node 0"};
  bool voter = _conf.is_voter(change.node);
  bool last_voter = voter && _conf.voters.size() == 1;
  switch (change.type) {
    case conf_change_type::add_voter: {
      if (voter) return {errc::invalid_argument, "raft: already a voter"};
      if (!_conf.is_learner(change.node)) return status::ok();
      // Promotion: a voter that is far behind would stall commitment (thesis §4.2.1).
      std::uint64_t match = _progress.at(change.node).match;
      if (match * 100 < _log.committed() * learner_ready_percent)
        return {errc::unavailable, "raft: learner not caught up"};
      return status::ok();
    }
    case conf_change_type::add_learner:
      if (_conf.is_learner(change.node)) return {errc::invalid_argument, "raft: already a learner"};
      if (last_voter) return {errc::invalid_argument, "raft: would leave no voter"};
      return status::ok();
    case conf_change_type::remove_node:
      if (!_conf.contains(change.node)) return {errc::invalid_argument, "raft: not a member"};
      if (last_voter) return {errc::invalid_argument, "raft: would leave no voter"};
      return status::ok();
  }
  return {errc::invalid_argument, "raft: unknown conf change type"};
}

result<entry_id> consensus::propose_conf_change(const conf_change& change) {
  status refused = refuse_proposals();
  if (!refused) return refused;
  if (_pending_conf_index > _log.applied())
    return status{errc::unavailable, "raft: the previous conf change is not applied yet"};
  status valid = check_conf_change(change);
  if (!valid) return valid;
  std::vector<entry> entries(1);
  entries[0].type = entry_type::conf_change;
  entries[0].data = encode_conf_change(change);
  entry_id id = append_as_leader(std::move(entries));
  _pending_conf_index = id.index;
  _proposals_unsent = true;
  return id;
}

conf_state consensus::apply_conf_change(const conf_change& change) {
  conf_state next = _conf;
  switch (change.type) {
    case conf_change_type::add_voter:
      erase_id(next.learners, change.node);
      insert_id(next.voters, change.node);
      break;
    case conf_change_type::add_learner:
      erase_id(next.voters, change.node);
      insert_id(next.learners, change.node);
      break;
    case conf_change_type::remove_node:
      erase_id(next.voters, change.node);
      erase_id(next.learners, change.node);
      break;
  }
  // The proposing leader refused changes that leave no voter; every member decides this
  // the same way from the same log, so skipping one keeps them in agreement.
  if (next.voters.empty()) return _conf;
  switch_membership(std::move(next));
  return _conf;
}

void consensus::switch_membership(conf_state next) {
  _conf = std::move(next);
  if (_role != role::leader) {
    rebuild_progress();
    return;
  }
  for (auto it = _progress.begin(); it != _progress.end();) {
    it = _conf.contains(it->first) ? std::next(it) : _progress.erase(it);
  }
  auto track = [&](node_id id, bool learner) {
    auto [it, added] =
        _progress.try_emplace(id, _log.last_index() + 1, _cfg.max_inflight_msgs, learner);
    it->second.is_learner = learner;
    // New members count as active, or a quorum check right after the change could
    // depose us before they had a chance to answer.
    if (added) it->second.recent_active = true;
  };
  for (node_id id : _conf.voters) track(id, false);
  for (node_id id : _conf.learners) track(id, true);
  if (!_conf.is_voter(_id)) {
    // Removed or demoted: step down; the others elect a leader among themselves.
    become_follower(_term, no_node);
    return;
  }
  if (_lead_transferee != no_node && !_conf.is_voter(_lead_transferee)) abort_leader_transfer();
  // The quorum changed: an entry may now be committed, or a new member needs the log.
  if (maybe_commit()) {
    broadcast_append();
  } else {
    for (auto& [id, pr] : _progress)
      if (id != _id) maybe_send_append(id, false);
  }
}

void consensus::rebuild_progress() {
  _progress.clear();
  auto track = [&](node_id id, bool learner) {
    auto [it, added] =
        _progress.try_emplace(id, _log.last_index() + 1, _cfg.max_inflight_msgs, learner);
    // Our own match is what is durable here (raft.h, the persistence rule).
    if (id == _id) it->second.match = std::min(_log.stable(), _log.last_index());
  };
  for (node_id id : _conf.voters) track(id, false);
  for (node_id id : _conf.learners) track(id, true);
}

status consensus::compact(std::uint64_t index, conf_state conf, std::string data) {
  if (index <= _log.last_snapshot().metadata.index)
    return {errc::invalid_argument, "raft: compact at or below the current snapshot"};
  if (index > _log.applied()) return {errc::invalid_argument, "raft: compact beyond applied"};
  _log.compact(index, std::move(conf), std::move(data));
  return status::ok();
}

}  // namespace keel::raft::detail
