// invariants.cc — the safety checker (include/keel/raft/invariants.h).
#include "keel/raft/invariants.h"

#include <algorithm>
#include <string>

namespace keel::raft {

namespace {

status violated(const std::string& what, node_id id, std::uint64_t index = 0) {
  std::string where = " (node " + std::to_string(id);
  if (index != 0) where += ", index " + std::to_string(index);
  return {errc::corruption, "raft invariant violated: " + what + where + ")"};
}

}  // namespace

status invariant_checker::check(std::span<const node* const> nodes) {
  for (const node* n : nodes) {
    status checked = check_node(*n, false);
    if (!checked) return checked;
  }
  return status::ok();
}

status invariant_checker::check_full(std::span<const node* const> nodes) {
  for (const node* n : nodes) {
    status checked = check_node(*n, true);
    if (!checked) return checked;
  }
  return status::ok();
}

status invariant_checker::check_node(const node& n, bool full) {
  node_record& record = _nodes[n.id()];
  status checked = check_monotonic(n, record);
  if (checked) checked = check_election(n);
  if (checked) checked = check_log_matching(n, record, full);
  if (checked) checked = check_committed(n, record, full);
  if (checked && n.role() == role::leader) checked = check_leader_completeness(n, record);
  return checked;
}

status invariant_checker::check_monotonic(const node& n, node_record& record) {
  if (n.term() < record.term) return violated("term decreased", n.id());
  if (n.commit_index() < record.commit) return violated("commit index decreased", n.id());
  if (n.commit_index() > n.last_index()) return violated("commit beyond the log", n.id());
  if (n.applied_index() > n.commit_index()) return violated("applied beyond commit", n.id());
  record.term = n.term();
  record.commit = n.commit_index();
  return status::ok();
}

status invariant_checker::check_election(const node& n) {
  if (n.role() != role::leader) return status::ok();
  if (n.vote() != n.id()) return violated("a leader that did not vote for itself", n.id());
  auto [it, first] = _leader_of_term.emplace(n.term(), n.id());
  if (!first && it->second != n.id())
    return violated("two leaders in term " + std::to_string(n.term()) + " (also node " +
                        std::to_string(it->second) + ")",
                    n.id());
  return status::ok();
}

status invariant_checker::check_log_matching(const node& n, node_record& record, bool full) {
  std::uint64_t first = n.first_index();
  std::uint64_t last = n.last_index();
  if (record.verified_terms.size() < last + 1) record.verified_terms.resize(last + 1, 0);
  // Resume above the highest entry verified before that is still the same entry (a
  // truncation replaced everything above a conflict).
  std::uint64_t top = full ? 0 : std::min(record.verified_through, last);
  while (top >= first && n.term_at(top) != record.verified_terms[top]) --top;
  for (std::uint64_t i = std::max(top + 1, first); i <= last; ++i) {
    status checked = verify_entry(n, i);
    if (!checked) return checked;
    record.verified_terms[i] = *n.term_at(i);
  }
  record.verified_through = last;
  return status::ok();
}

status invariant_checker::verify_entry(const node& n, std::uint64_t index) {
  const entry* e = n.entry_at(index);
  if (e == nullptr || e->index != index) return violated("entry index mismatch", n.id(), index);
  std::optional<std::uint64_t> previous = n.term_at(index - 1);
  if (!previous) return violated("no term before an entry", n.id(), index);
  if (*previous > e->term) return violated("entry terms decrease", n.id(), index);
  if (e->term > n.term()) return violated("entry from a future term", n.id(), index);
  auto [it, first] =
      _entries.try_emplace({index, e->term}, entry_record{e->term, e->data, *previous});
  if (first) return status::ok();
  if (it->second.data != e->data)
    return violated("log matching: same (index, term), other data", n.id(), index);
  if (it->second.previous_term != *previous)
    return violated("log matching: same (index, term), other history", n.id(), index);
  return status::ok();
}

status invariant_checker::check_committed(const node& n, node_record& record, bool full) {
  std::uint64_t commit = n.commit_index();
  if (_committed.size() < commit + 1) _committed.resize(commit + 1);
  std::uint64_t from = full ? 1 : record.commit_checked_through + 1;
  from = std::max(from, n.first_index());
  for (std::uint64_t i = from; i <= commit; ++i) {
    const entry* e = n.entry_at(i);
    committed_record& known = _committed[i];
    if (!known.known) {
      // The committing leader's commit is observed right after the event that advanced
      // it, so the first observer's term is the term the entry was committed in.
      known = {true, e->term, e->data, n.term()};
    } else if (known.term != e->term || known.data != e->data) {
      return violated("a committed entry changed", n.id(), i);
    }
  }
  // Below the log: the snapshot's last entry must be the committed one.
  std::uint64_t snapshot_index = n.first_index() - 1;
  if (snapshot_index > 0 && snapshot_index < _committed.size() &&
      _committed[snapshot_index].known &&
      _committed[snapshot_index].term != n.term_at(snapshot_index))
    return violated("a snapshot of an uncommitted entry", n.id(), snapshot_index);
  record.commit_checked_through = std::max(record.commit_checked_through, commit);
  return status::ok();
}

status invariant_checker::check_leader_completeness(const node& n, node_record& record) {
  if (record.leader_term != n.term()) {
    record.leader_term = n.term();
    record.leader_checked_through = 0;
  }
  std::uint64_t known = committed_known();
  for (std::uint64_t i = std::max(record.leader_checked_through + 1, n.first_index()); i <= known;
       ++i) {
    // Entries committed in this leader's own term came from it; it has them.
    if (!_committed[i].known || _committed[i].commit_term >= n.term()) continue;
    if (n.term_at(i) != _committed[i].term)
      return violated("leader completeness: a leader lacks a committed entry", n.id(), i);
  }
  record.leader_checked_through = std::max(record.leader_checked_through, known);
  return status::ok();
}

status invariant_checker::note_persisted(node_id id, const hard_state& hard) {
  node_record& record = _nodes[id];
  if (record.persisted) {
    const hard_state& before = *record.persisted;
    if (hard.term < before.term) return violated("durable term decreased", id);
    if (hard.commit < before.commit) return violated("durable commit decreased", id);
    if (hard.term == before.term && before.vote != no_node && hard.vote != before.vote)
      return violated("two votes in term " + std::to_string(hard.term), id);
  }
  record.persisted = hard;
  return status::ok();
}

status invariant_checker::note_applied(node_id id, const entry& e) {
  if (e.index < _committed.size() && _committed[e.index].known &&
      (_committed[e.index].term != e.term || _committed[e.index].data != e.data))
    return violated("applied an entry other than the committed one", id, e.index);
  auto [it, first] = _applied.try_emplace(e.index, e.term, e.data);
  if (!first && (it->second.first != e.term || it->second.second != e.data))
    return violated("state machine safety: two entries applied at one index", id, e.index);
  return status::ok();
}

void invariant_checker::note_restart(node_id id) {
  node_record& record = _nodes[id];
  hard_state durable = record.persisted.value_or(hard_state{});
  record.term = durable.term;
  record.commit = durable.commit;
  record.verified_terms.clear();
  record.verified_through = 0;
  record.commit_checked_through = 0;
  record.leader_term = 0;
  record.leader_checked_through = 0;
}

}  // namespace keel::raft
