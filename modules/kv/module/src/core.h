// core.h — the kv module's engine, shared by every client surface (v3 JSON gateway, etcd
// v2 keys, native frames): the MVCC store, the WAL, leases and the watch fan-out.
//
// Ownership. The store, the WAL writer, the lease table and the next entry index belong
// to the owner shard (shard 0). Every write is logged and applied there, in one order.
// Watchers belong to the shard that created them (the client's connection shard); the
// owner publishes committed events to every shard in one batch per group commit.
//
// Two levels of API:
//   - Operations (put, range, ...): callable from any shard; they hop to the owner, log,
//     apply, wait for durability, and come back with the store's result. Surfaces format
//     the result in their own protocol.
//   - Owner primitives (owner_*): synchronous, on the owner shard only, for surfaces that
//     must read and then write with nothing in between (etcd v2's directory rules and
//     compare-and-swap). Run them inside run_on_owner(). A write primitive logs and
//     applies at once and returns the final result, which is NOT durable: co_await
//     owner_commit() and answer only if it returns ok.
//
// Durability and visibility: no operation answers before the fdatasync covering its entry;
// a read waits for every write it may have seen to be durable; watchers receive only
// durable events.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cluster.h"
#include "keel/kv/mvcc.h"
#include "keel/reactor/cross.h"
#include "keel/reactor/shard.h"
#include "keel/reactor/task.h"
#include "keel/status.h"

namespace keel {
class bus;
class http_router;
class module_context;
}  // namespace keel

namespace keel::kv_module {

inline constexpr unsigned owner_shard = 0;

// ---- identity ---------------------------------------------------------------------------

struct identity {
  std::uint64_t cluster_id = 0;
  std::uint64_t member_id = 0;
  std::uint64_t raft_term = 1;
};
const identity& ids() noexcept;

// The newest revision whose events have been published (durable). Any shard, any time.
std::int64_t published_revision() noexcept;
// Whether this member belongs to a Raft cluster (false: a single node). Any shard, once
// core_start() returned.
bool in_cluster() noexcept;

// ---- errors -------------------------------------------------------------------------------

// etcd's messages for the conditions the engine adds to the store's (mvcc_messages).
namespace kv_messages {
inline constexpr std::string_view request_too_large = "etcdserver: request is too large";
inline constexpr std::string_view too_many_requests = "etcdserver: too many requests";
inline constexpr std::string_view lease_not_found = "etcdserver: requested lease not found";
inline constexpr std::string_view lease_exists = "etcdserver: lease already exists";
inline constexpr std::string_view lease_ttl_too_large = "etcdserver: too large lease TTL";
inline constexpr std::string_view not_supported_for_learner = "etcdserver: rpc not supported for learner";
inline constexpr std::string_view not_enough_started_members =
    "etcdserver: re-configuration failed due to not enough started members";
// Prefix of every "the WAL cannot take writes" message (open failed, fdatasync failed,
// disk full); the rest of the message says why.
inline constexpr std::string_view wal_unavailable = "etcdserver: WAL unavailable: ";
}  // namespace kv_messages

enum class kv_error : std::uint8_t {
  none,
  mvcc,                 // see kv::mvcc_error_of
  request_too_large,    // entry over max-request-bytes (or limits::wal_entry_data_bytes_max)
  too_many_requests,    // the WAL's pending buffer is full
  wal_unavailable,      // the WAL failed or never opened: no write is accepted
  lease_not_found,
  lease_exists,
  lease_ttl_too_large,
  other,
};
kv_error kv_error_of(const status& failure) noexcept;

// etcd's gRPC code for any failure of this API (3 InvalidArgument, 5 NotFound, 8
// ResourceExhausted, 9 FailedPrecondition, 11 OutOfRange, 13 Internal, 14 Unavailable).
int grpc_code_of(const status& failure) noexcept;

// ---- operations (any shard) ----------------------------------------------------------------

// put: errc::not_found lease_not_found when request.lease names no lease.
task<result<kv::put_result>> put(kv::put_request request);
// Linearizable by default: on one node it waits until everything it saw is durable; in a
// cluster it confirms leadership first (ReadIndex) and reads committed state only.
// `serializable`: served from this member's committed state without asking anyone.
task<result<kv::range_result>> range(kv::range_request request, bool serializable = false);
task<result<kv::delete_range_result>> delete_range(kv::delete_range_request request);
task<result<kv::txn_result>> txn(kv::txn_request request);
// Returns the store's revision after the compaction (the header revision).
task<result<std::int64_t>> compact(std::int64_t revision, bool physical);

// Leases (etcd's semantics). TTLs are seconds. Expiry is decided by the owner (the member
// that leads) and applied through the log as a revoke, so it is the same on replay.
// After a restart every lease's remaining TTL starts again from its granted TTL (as etcd).
struct lease_status {
  std::int64_t id = 0;
  std::int64_t ttl = 0;          // remaining whole seconds (truncated), or the granted TTL
  std::int64_t granted_ttl = 0;
  std::vector<std::string> keys; // only when asked for
  std::int64_t revision = 0;     // header revision
};
// A client's lease grant (v3, native) below the minimum gets the minimum (etcd's lessor:
// 3/2 election timeout, 1.5 s -> 2 s). v2 TTLs have none (etcd's v2 store: `ttl=1` lives
// 1 s, `ttl=0` expires at once), so owner_lease_grant takes the TTL as given.
inline constexpr std::int64_t lease_ttl_min_seconds = 2;
inline constexpr std::int64_t lease_ttl_max_seconds = 9000000000;  // etcd: MaxLeaseTTL
// id 0: the owner picks an unused id. Errors: lease_exists, lease_ttl_too_large.
task<result<lease_status>> lease_grant(std::int64_t ttl, std::int64_t id);
// Deletes every key attached, at one revision. Returns the header revision.
task<result<std::int64_t>> lease_revoke(std::int64_t id);
// Renews; ttl = granted TTL. lease_not_found if it does not exist (any more);
// errc::unavailable not_supported_for_learner on a learner (etcd refuses its streams).
task<result<lease_status>> lease_keep_alive(std::int64_t id);
// Any shard: whether this member is a learner, which etcd 3.4 lets open no stream (watch,
// lease keep-alive): "rpc not supported for learner". False on a single node.
task<bool> self_is_learner();
task<result<lease_status>> lease_time_to_live(std::int64_t id, bool keys);
task<result<std::vector<std::int64_t>>> lease_list();

// What /v3/maintenance/status and `endpoint status` show of this member.
struct member_status {
  std::int64_t revision = 0;
  std::uint64_t raft_index = 0;  // the last logged entry
  std::uint64_t raft_applied_index = 0;  // committed and applied here
  std::uint64_t leader = 0;      // the leader's member id (0: none known)
  std::uint64_t raft_term = 0;
  bool learner = false;          // etcd's isLearner
  // etcd's dbSize is its bbolt file; keel's is the bytes of the files of the WAL and
  // snapshot directories (segments count whole: they are preallocated). dbSizeInUse:
  // the keys and values of every retained version (what compaction can give back).
  std::uint64_t db_size = 0;
  std::uint64_t db_size_in_use = 0;
};
task<result<member_status>> status_now();

// The members as /v2/members and /v3/cluster/member/list show them: a single node is
// itself (its advertised URLs); a cluster member lists the membership with the client
// URLs each member published. leader is the leader's id (0: none known).
struct member_view {
  std::vector<cluster_member_info> members;
  std::uint64_t leader = 0;
  bool cluster = false;  // a Raft cluster (else a single node)
};
task<member_view> members_now();
// Membership changes (cluster.h has the semantics). A single node has no Raft group, so
// they fail with errc::unsupported there. member_add returns the new member; all return
// the membership after the change.
struct member_change {
  cluster_member_info member;
  std::vector<cluster_member_info> members;
};
task<result<member_change>> member_add(std::vector<std::string> peer_urls, bool learner);
task<result<member_change>> member_remove(std::uint64_t id);
task<result<member_change>> member_promote(std::uint64_t id);
// etcd's MemberUpdate: new peer URLs for a member (Raft's membership is unchanged).
task<result<member_change>> member_update(std::uint64_t id, std::vector<std::string> peer_urls);

// etcd's /health (etcdhttp checkHealth): false while the WAL cannot take writes (etcd:
// an alarm), while no leader is known, or when a linearizable read through Raft (a
// ReadIndex round) fails; a single node only needs its WAL. Waits for the WAL to open
// (as requests do) rather than answering false while it opens.
task<bool> healthy_now();

// /v3/maintenance/transfer-leadership: on the leader, hands leadership to `target`.
// A single node is its own leader: target must be itself.
task<status> move_leader(std::uint64_t target);

// Runs the task-returning `fn` on the owner shard (directly when already there).
template <typename T, typename F>
task<T> run_on_owner(F fn) {
  if (shard::current()->id() == owner_shard) {
    task<T> work = fn();
    co_return co_await std::move(work);
  }
  task<T> remote = run_task_on<T>(owner_shard, std::move(fn));
  co_return co_await std::move(remote);
}

// ---- owner primitives (owner shard only) ------------------------------------------------------

// Waits until the WAL is open; errc::unavailable (wal_unavailable) if it cannot take writes.
task<status> owner_ready();
// After owner_ready(): in a cluster, whether this member cannot propose now (a follower;
// a leader that still cannot after owner_ready's wait), so that the leader must run its
// v2 writes (cluster_relay); false on a single node.
bool owner_follows();
// Before a linearizable read (v2 quorum=true), in a cluster: confirms through Raft's
// ReadIndex (cluster_read_barrier) that this member has applied everything committed
// before the call, and returns the published revision, at which the read shows committed
// state only. 0 on a single node, where such a read waits for owner_commit() instead.
task<result<std::int64_t>> owner_read_barrier();
// The Raft term now (0 on a single node), for owner_confirm_leading.
std::uint64_t owner_term();
// After a read of the leader's own state that logged nothing (a v2 write refused): in a
// cluster, confirms through a ReadIndex round that this member still leads in `term`
// (cluster_confirm_leading); OK at once on a single node.
task<status> owner_confirm_leading(std::uint64_t term);
const kv::mvcc_store& owner_store();

// ---- reads on any shard ---------------------------------------------------------------------------

// A read of the owner's store from any shard, without the hop to the owner, for a surface
// whose read may show the store's newest state (v2 GET). Never blocks: it is not held
// (false) while the owner changes the store, while anything applied is not yet published
// (durable, and in a cluster committed), or before the WAL opened or after it failed;
// the caller then asks the owner as usual. While held, the store does not change and every
// revision in it is published, so a read of the newest state needs no owner_commit(). (A
// compaction changes no revision: one not yet durable, or in a cluster not yet committed,
// may be in the store. The newest state is the same either way; a read of history through
// a store_read would have to know about it.)
// Hold it for bounded work only (point reads, a range with a small limit): the owner's
// next change waits until it is released. Not the lease table: a reader that needs a
// lease's state asks the owner.
class store_read {
 public:
  store_read() noexcept;  // tries
  ~store_read();
  store_read(const store_read&) = delete;
  store_read& operator=(const store_read&) = delete;
  explicit operator bool() const noexcept { return _held; }
  const kv::mvcc_store& store() const noexcept;  // REQUIRES: held
  // The read was answered from it: counted in /metrics (keel_kv_reads_here_total).
  void answered() noexcept;

 private:
  bool _held = false;
};
struct v2_note_fields;  // codec.h
// Owner shard: the entries logged until the next call belong to one v2 write with this
// note (nullptr ends it); see core_internal.h v2_note_pending.
void owner_note_v2_write(const v2_note_fields* note) noexcept;
// Log + apply now; the result is final but not durable (see the top of this file).
result<kv::put_result> owner_put(const kv::put_request& request);
result<kv::delete_range_result> owner_delete_range(const kv::delete_range_request& request);
// A txn's leases: serving a client, etcd's rule (puts on the chosen path only; logged as
// entry kind 8 when the older rule would refuse it). Applying or replaying an entry,
// `leases_on_path` is the entry's rule (kind 8; false for kind 3: every put of both
// branches, refused before anything changes, as keel before kind 8 applied it).
result<kv::txn_result> owner_txn(const kv::txn_request& request, bool leases_on_path = true);
// Grants exactly `ttl` seconds (0: due at the next expiry check); lease_grant applies
// the client minimum before it.
result<lease_status> owner_lease_grant(std::int64_t ttl, std::int64_t id);
// `expired`: the owner's expiry timer, not a client (etcd v2 shows it as "expire").
result<std::int64_t> owner_lease_revoke(std::int64_t id, bool expired = false);
// Compacts the store's history up to `revision` (the header revision after it). Refused
// before logging when the store would refuse it: a future revision (in a cluster, beyond
// the published one), or one already compacted.
result<std::int64_t> owner_compact(std::int64_t revision, bool physical);
// The lease's state now (remaining whole seconds, truncated as etcd), nullopt if there is none.
std::optional<lease_status> owner_lease(std::int64_t id, bool keys);
// Waits for the fdatasync covering everything logged so far, then publishes its events.
task<status> owner_commit();
// After owner_ready() failed: the last durable revision, at which a read may still be
// answered (as v3 ranges are), or 0 when it may not: the WAL never opened (a cluster
// member's store then is not its log's), a linearizable read of a cluster member (it no
// longer follows the leader), or a compaction applied past the durable revision.
std::int64_t owner_read_revision_after_wal_failure(bool linearizable);
// True when the changes at `revision` were made by a lease expiring (etcd v2's "expire").
bool owner_revision_is_expiry(std::int64_t revision);

// ---- watches (any shard; a watcher stays on the shard that created it) ---------------------

struct watch_request {
  std::string key;        // REQUIRES: not empty
  std::string range_end;  // as kv::range_request
  std::int64_t start_revision = 0;  // <= 0: from the next write
  bool prev_kv = false;   // keep prev_kv in the events (else the surface drops it)
  bool no_put = false;    // etcd's NOPUT filter
  bool no_delete = false; // etcd's NODELETE filter
};

// One delivery. `events` point into shared, immutable batches kept alive by `keep`.
struct watch_update {
  std::vector<const kv::event*> events;  // revision order, filtered for this watcher
  std::int64_t revision = 0;             // header revision (newest published when sent)
  // > 0: the watcher's next revision was compacted away; it is finished (canceled).
  std::int64_t compact_revision = 0;
  bool canceled = false;
  std::string cancel_reason;
  // Revisions among the events that were lease expiries (sorted), for etcd v2.
  std::vector<std::int64_t> expiry_revisions;
  std::vector<std::shared_ptr<const void>> keep;
};

// Bounded memory: a watcher holds at most limits::watch_pending_events_max undelivered
// events; beyond that it drops them and catches up from the store's history (which the
// compaction bounds), so a slow reader never grows memory and never misses an event.
class watcher {
 public:
  struct state;
  explicit watcher(std::unique_ptr<state> s) noexcept;
  ~watcher();  // unregisters
  watcher(const watcher&) = delete;
  watcher& operator=(const watcher&) = delete;

  // Registers on the current shard. From start_revision (or the next write).
  static std::unique_ptr<watcher> create(watch_request request);

  // The next update, or nullopt after `timeout` with nothing to deliver (surfaces use
  // the timeout to send progress notifications and to notice a closed client).
  task<std::optional<watch_update>> next(std::chrono::milliseconds timeout);
  // The revision the watcher delivers next.
  std::int64_t next_revision() const noexcept;

 private:
  std::unique_ptr<state> _state;
};

// Counts for /metrics (any shard).
std::uint64_t watchers_total() noexcept;

// ---- lifecycle (module.cc) ------------------------------------------------------------------------

struct core_options {
  std::string dir;  // "" = ./default.keel; the WAL is <dir>/wal, snapshots <dir>/snap
  std::uint64_t snapshot_count = 100000;  // entries between snapshots (etcd's --snapshot-count)
  std::uint64_t wal_segment_bytes = 0;    // 0: limits::wal_segment_bytes_max
  std::uint64_t request_bytes_max = 1572864;  // etcd's --max-request-bytes: see log_entry
  cluster_options cluster;                // cluster.h (data_dir is set from dir)
};
// The core's max-request-bytes (any shard, after core_start).
std::uint64_t request_bytes_max() noexcept;
// Main thread, before the shards run: recovers the WAL and replays it. Corruption is an
// error naming the file and offset; keeld refuses to start.
status core_start(module_context* context, const core_options& options);
// Every shard's start / stop hook (the owner opens the WAL writer and runs lease expiry).
void core_on_shard_start(shard& s);
void core_on_shard_stop(shard& s);
// After every shard stopped.
void core_stop();
void core_metrics(std::string& out);

// ---- surfaces -----------------------------------------------------------------------------------

// Each surface registers its routes / handlers while the module starts.
void register_v3_routes(http_router& router);  // v3_gateway.cc
void register_v2_routes(http_router& router);  // v2.cc
void register_native_handlers(bus& bus);       // native.cc

}  // namespace keel::kv_module
