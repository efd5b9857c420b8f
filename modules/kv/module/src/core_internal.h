// core_internal.h — the kv engine's state and the owner-shard functions that core.cc
// (the engine) and cluster.cc (its Raft driver) share. Not an API: only these two files
// include it. Everything here belongs to the owner shard unless it is atomic.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cluster.h"
#include "codec.h"
#include "core.h"
#include "keel/kv/wal.h"
#include "keel/kv/wal_recovery.h"

namespace keel::kv_module {

struct cluster_state;  // cluster.cc

using clock = std::chrono::steady_clock;

struct lease_entry {
  std::int64_t granted_ttl = 0;
  clock::time_point expiry;
  // The order of its grant among the leases applied here (core_state::lease_grants).
  // Leases that fall due together are revoked in this order; snapshots keep it.
  std::uint64_t granted_order = 0;
  std::set<std::string> keys;
};

// Events made durable by one group commit, shared read-only by every shard's watchers.
struct event_batch {
  std::vector<kv::event> events;
  std::vector<std::int64_t> expiry_revisions;  // sorted
  std::int64_t revision = 0;                   // the newest published revision after it
  // The store jumped to `revision` without events (a snapshot installed from the leader):
  // every watcher reads what it has not seen from the store's history instead.
  bool resync = false;
};

// One shard's watchers (touched only on that shard).
struct shard_watchers {
  std::vector<watcher::state*> list;
  std::int64_t last_revision = 0;  // the newest batch revision this shard received
};

struct core_state {
  module_context* context = nullptr;
  std::string dir, wal_dir;
  identity ids;

  // Owner shard only once the shards run.
  std::unique_ptr<kv::uring_wal_storage> storage;
  kv::wal_recovery recovered;
  kv::mvcc_store store;
  std::unique_ptr<kv::wal_writer> writer;
  status open_failure;
  bool opened = false;
  std::vector<std::coroutine_handle<>> open_waiters;
  std::uint64_t next_index = 1;
  std::uint64_t commits_in_flight = 0;
  std::map<std::int64_t, lease_entry> leases;
  std::set<std::int64_t> expiry_revisions;
  std::vector<kv::event> pending_events;         // applied, not yet durable
  std::vector<std::int64_t> pending_expiry;      // revisions among them made by expiry
  std::int64_t published_local = 1;              // owner's copy of `published`
  std::uint64_t lease_id_state = 0;
  std::uint64_t lease_grants = 0;  // leases granted (applied) so far: lease_entry::granted_order
  bool replaying = false;   // recovery: nothing is logged, no events are collected
  // Cluster mode (cluster.cc; null on a single node, whose log is written directly).
  cluster_state* cluster = nullptr;
  kv_module::cluster_options configured;  // as configured (a single node shows its URLs from here)
  bool applying = false;    // applying a committed entry: nothing is logged
  std::string* capture = nullptr;  // a follower's write: log_entry stores the entry here
  // A v2 write in progress (v2_store.cc): log_entry wraps its first entry with this note
  // (entry_kind_v2_noted) and any later ones (a directory's keys moving to its new lease)
  // with a hidden refresh, so followers and replays see etcd's action too.
  std::optional<v2_note_fields> v2_note_pending;
  std::uint64_t forward_origin = 0;   // a forwarded write being logged: who asked
  std::uint64_t forward_request = 0;  // and its request id there
  bool wal_failure_logged = false;

  std::vector<std::unique_ptr<shard_watchers>> shards;

  // Snapshots (owner shard; the file is written by a forked child, see core.cc).
  std::string snap_dir;
  std::uint64_t snapshot_count = 100000;
  std::uint64_t request_bytes_max = 1572864;  // a client's entry may not be larger (log_entry)
  std::uint64_t wal_segment_bytes = 0;
  std::uint64_t snapshot_index = 0;           // the newest durable snapshot
  std::uint64_t snapshot_term = 0;            // its term (as loaded at start)
  std::uint64_t snapshot_previous_index = 0;  // the one before: the WAL is kept from here
  std::uint64_t snapshot_pending_index = 0;   // being written
  std::uint64_t snapshot_pending_term = 0;
  bool snapshot_busy = false;  // from the fork until finish_snapshot() reaped the child
  pid_t snapshot_child = 0;     // the process writing the snapshot (0: none)
  std::chrono::steady_clock::time_point snapshot_started{};  // its fork
  bool snapshot_go_sent = false;     // the child was told the WAL holds its entry
  int snapshot_slow_warnings = 0;    // how often finish_snapshot() said it runs long
  std::chrono::steady_clock::time_point snapshot_checked{};  // its /proc last read
  std::chrono::steady_clock::time_point snapshot_polled{};   // maybe_snapshot's last waitpid
  std::atomic<std::uint64_t> snapshot_children_killed{0};    // deadlocked at their fork
  // After a snapshot failed (a full disk), none is tried before this: each try forks and
  // encodes the whole store, and at every commit that made one every ~30 ms.
  std::chrono::steady_clock::time_point snapshot_retry_after{};
  int data_dir_lock_fd = -1;  // holds keel.lock's flock for the process's life
  int snapshot_result_fd = -1;  // what it says when it is done ("ok <bytes>" or the error)
  std::atomic<std::uint64_t> snapshots_taken{0};
  std::atomic<std::uint64_t> snapshot_last_bytes{0};
  std::atomic<std::uint64_t> snapshot_last_save_microseconds{0};
  std::atomic<std::uint64_t> wal_segments_released{0};
  // Copies of the writer's statistics, refreshed by the owner after each commit.
  std::atomic<std::uint64_t> wal_batches{0};
  std::atomic<std::uint64_t> wal_records{0};
  std::atomic<std::uint64_t> wal_bytes{0};
  std::array<std::atomic<std::uint64_t>, kv::wal_writer_stats::sync_buckets> wal_sync_counts{};
  std::atomic<std::uint64_t> wal_sync_nanoseconds{0};
  std::atomic<std::uint64_t> bytes_held{0};  // store.bytes_held() after the last commit

  // What etcd's server metrics say (README "Metrics"), written by the owner shard:
  // a single node leads itself; a cluster member copies its Raft state.
  std::atomic<std::uint64_t> leader_seen{0};      // the leader's member id; 0: none known
  std::atomic<bool> leading{false};
  std::atomic<bool> learner{false};
  std::atomic<std::uint64_t> leader_changes{0};   // a new leader became known
  std::atomic<std::uint64_t> committed_index{0};
  std::atomic<std::uint64_t> applied_index{0};
  std::atomic<std::int64_t> proposals_pending{0}; // writes waiting for their commit here
  std::uint64_t proposals_counted_through = 0;     // a single node: the last entry counted (owner)
  std::atomic<std::uint64_t> proposals_failed{0}; // writes whose commit failed or timed out
  std::atomic<std::uint64_t> read_indexes_failed{0};  // a ReadIndex wait ended in an error
  std::atomic<std::uint64_t> read_indexes_slow{0};    // a ReadIndex wait timed out
  // etcd's etcd_network_* lines, rendered by the owner every Raft tick (cluster.cc
  // render_peer_metrics); /metrics on any shard copies them under the lock.
  std::mutex peer_metrics_lock;
  std::string peer_metrics;

  std::atomic<std::int64_t> published{1};
  std::atomic<std::int64_t> revision{1};
  std::atomic<std::uint64_t> watchers{0};
  std::atomic<std::uint64_t> replayed{0};
  std::atomic<std::uint64_t> leases_live{0};
  std::atomic<std::uint64_t> leases_expired{0};
  std::atomic<std::uint64_t> events_published{0};
  std::atomic<std::uint64_t> watch_catchups{0};
  std::atomic<bool> stopping{false};

  // Reads on any shard (core.h store_read; README "Reads on any shard"). store_gate's top
  // bit is set while the owner changes the store; the rest counts the readers inside.
  std::atomic<std::uint32_t> store_gate{0};
  int store_change_depth = 0;             // owner: nested store_change guards
  std::atomic<bool> reads_anywhere{false};  // the WAL opened and has not failed
  std::atomic<std::uint64_t> reads_here{0};  // store_read::answered()
};

extern core_state* g;

// Prometheus text for /metrics: a metric's HELP and TYPE lines; the same followed by its
// one unlabelled sample. Shared by core_metrics, etcd_metrics and cluster.cc's peer lines.
void append_metric_head(std::string& out, const char* name, const char* type, const char* help);
void append_metric(std::string& out, const char* name, const char* type, const char* help, std::uint64_t value);

// ---- shared by core.cc and cluster.cc (owner shard) ----------------------------------------

// Owner shard: held around every change of g->store (and its replacement), so that a
// store_read on another shard never sees one half done. Waits (spinning) for the readers
// inside to leave, which is bounded: store_read's holders do a few point reads only.
// Nests: only the outermost guard opens and closes the gate.
class store_change {
 public:
  store_change() noexcept;
  ~store_change();
  store_change(const store_change&) = delete;
  store_change& operator=(const store_change&) = delete;
};

status fail(errc code, std::string_view message);
// Publishes the pending events of revisions <= through (they are committed and durable).
void publish_through(std::int64_t through);
// After the store was replaced by a snapshot: publishes `through` with no events and has
// every watcher catch up from history (never a silent gap; a watcher behind the
// snapshot's compaction is told compact_revision).
void publish_resync(std::int64_t through);
// Waits for the fdatasync covering every record appended to the WAL so far, and updates
// the WAL counters /metrics shows (every member's syncs pass here).
task<status> durable_now();
// Says once, in the log, that the WAL stopped taking writes and why (and stop_reads_here).
void note_wal_failure(const status& failure);
// From now on no store_read is held (every GET goes to the owner, which answers as it
// must): the WAL failed, or this member stopped serving.
void stop_reads_here() noexcept;

// What applying one entry gave (for the member whose client asked, cluster.cc).
struct apply_outcome {
  status failure;
  std::optional<kv::put_result> put;
  std::optional<kv::delete_range_result> deleted;
  std::optional<kv::txn_result> txn;
  std::optional<lease_status> lease;
  std::int64_t revision = 0;  // the store's revision after the entry
  // The bytes are not an entry this build can decode (a newer keel wrote it, or they are
  // corrupt): nothing was applied, and the member must not go on applying later entries.
  bool undecodable = false;
};
// Applies one committed kv entry (WAL entry encoding; not empty) without logging it:
// events are collected for the watchers. errc::corruption and `undecodable` if the bytes
// are not an entry.
apply_outcome apply_entry_data(std::string_view data);
// Runs a client's request (WAL entry encoding) on the leader as if it had arrived here:
// checks, logs (through cluster_log) and applies. Used for a follower's forwarded write.
status run_forwarded_request(std::string_view data, std::int64_t* ttl_out);
// Rebuilds the store and leases from the newest snapshot plus `entries` (committed,
// consecutive after it; entry_at returns nullptr past the end), dropping every applied
// but uncommitted change. Pending events past the rebuilt revision are dropped.
status rebuild_state(std::uint64_t through_index,
                     const std::function<const std::string*(std::uint64_t index)>& entry_data_at);
// Starts a snapshot of the state as of entry `index` (of `term`) in a forked child, unless
// one is being written. REQUIRES: the store holds exactly the entries up to index.
void start_snapshot(std::uint64_t index, std::uint64_t term);
// Entries between the newest snapshot and the next (README.md "Snapshots", "When"):
// snapshot-count; on a single node, while the store's history is larger than twice that,
// half of it, at most snapshot_interval_cap times snapshot-count. A snapshot writes the
// whole history, so a fixed count makes the work per entry grow with the store; this keeps
// it bounded. Clusters keep snapshot-count (a lagging member's catch-up, Raft's memory).
std::uint64_t snapshot_interval();
// Whether the entry `applied` is snapshot_interval() entries past the newest snapshot.
bool snapshot_due(std::uint64_t applied);
inline constexpr std::uint64_t snapshot_interval_cap = 4;
// A new leader restarts every lease's TTL (etcd's lessor Promote).
void refresh_lease_expiries();

}  // namespace keel::kv_module
