// keel/raft/invariants.h — Raft's safety properties, checked over a set of nodes.
//
// What it is for: tests (and a debug driver) call check() after every step of a run with
// every live member, and tell the checker what the driver made durable (note_persisted),
// what the state machine applied (note_applied) and when a member restarted from its
// durable state (note_restart). It remembers history, so "never" properties hold across
// the whole run, not only between nodes alive at one instant. After LogCabin's
// RaftConsensusInvariants and the paper's Figure 3:
//
//   1. election safety      at most one leader per term, over the whole run; a leader
//                           voted for itself in its term
//   2. log matching         two entries with the same (index, term) hold the same data and
//                           follow entries of the same term (so, by induction, the logs
//                           are identical up to them)
//   3. leader completeness  a leader's log holds every entry known committed (at any node)
//                           in an earlier term than the leader's
//   4. committed entries never change; commit <= last index; applied <= commit
//   5. state machine safety no two members apply different entries at one index, and
//                           only committed entries are applied
//   6. monotonic            a live node's term and commit never decrease; the durable
//                           term and commit never decrease, and a durable vote is never
//                           changed within a term (one vote per term); a restarted node
//                           starts at its durable term and commit
//
// check() is incremental (each entry is compared when a node first holds it);
// check_full() compares every entry of every log and is meant for the end of a run.
// Not thread-safe; one checker per simulated cluster.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "keel/raft/raft.h"
#include "keel/status.h"

namespace keel::raft {

class invariant_checker {
 public:
  // The first violated invariant, named, with the node and index; ok otherwise.
  status check(std::span<const node* const> nodes);
  status check_full(std::span<const node* const> nodes);
  status note_persisted(node_id id, const hard_state& hard);
  status note_applied(node_id id, const entry& e);
  // After a crash: the node's volatile state restarts from its durable state.
  void note_restart(node_id id);

  std::uint64_t committed_known() const { return _committed.empty() ? 0 : _committed.size() - 1; }

 private:
  struct entry_record {
    std::uint64_t term = 0;
    std::string data;
    std::uint64_t previous_term = 0;
  };
  struct node_record {
    std::uint64_t term = 0;
    std::uint64_t commit = 0;
    std::vector<std::uint64_t> verified_terms;  // by index; 0 = not yet verified
    std::uint64_t verified_through = 0;
    std::uint64_t commit_checked_through = 0;
    std::uint64_t leader_term = 0;  // the term the completeness check below was for
    std::uint64_t leader_checked_through = 0;
    std::optional<hard_state> persisted;
  };
  struct committed_record {
    bool known = false;
    std::uint64_t term = 0;
    std::string data;
    std::uint64_t commit_term = 0;  // the observer's term when first seen committed
  };

  status check_node(const node& n, bool full);
  status check_monotonic(const node& n, node_record& record);
  status check_election(const node& n);
  status check_log_matching(const node& n, node_record& record, bool full);
  status verify_entry(const node& n, std::uint64_t index);
  status check_committed(const node& n, node_record& record, bool full);
  status check_leader_completeness(const node& n, node_record& record);

  std::map<node_id, node_record> _nodes;
  std::map<std::uint64_t, node_id> _leader_of_term;
  std::map<std::pair<std::uint64_t, std::uint64_t>, entry_record> _entries;  // (index, term)
  std::vector<committed_record> _committed;                                  // by index
  std::map<std::uint64_t, std::pair<std::uint64_t, std::string>> _applied;  // index -> (term, data)
};

}  // namespace keel::raft
