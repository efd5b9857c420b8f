// core.cc — the kv engine: log + apply on the owner shard, leases, watch fan-out. See core.h
// and ../README.md.
#include "core.h"
#include "v2.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <coroutine>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "core_internal.h"
#include "le_bytes.h"
#include "cluster.h"
#include "keel/kv/snapshot.h"
#include "keel/kv/wal.h"
#include "keel/kv/wal_recovery.h"
#include "keel/limits.h"
#include "keel/module.h"
#include "keel/version.h"
#include "keel/reactor/io.h"

namespace keel::kv_module {


core_state* g = nullptr;

// gperftools' C entry point, defined when keeld runs on tcmalloc (KEEL_TCMALLOC) and null
// otherwise: a weak reference, resolved against keeld when the module is loaded.
extern "C" void MallocExtension_ReleaseFreeMemory(void) __attribute__((weak));

// Hands the allocator's free pages back to the system. tcmalloc keeps freed memory for
// reuse; after recovery that is the WAL's records and the snapshot's bytes, ~65 bytes
// per key at 1M keys, which a store that has stopped growing would hold for good.
namespace {
void release_free_memory() {
  if (MallocExtension_ReleaseFreeMemory != nullptr) MallocExtension_ReleaseFreeMemory();
}
}  // namespace

status fail(errc code, std::string_view message) { return {code, std::string(message)}; }

// ---- the WAL ----------------------------------------------------------------------------

struct open_awaiter {
  bool await_ready() const noexcept { return g->opened; }
  void await_suspend(std::coroutine_handle<> handle) { g->open_waiters.push_back(handle); }
  void await_resume() const noexcept {}
};

task<void> open_writer() {
  kv::wal_writer_options options;
  options.first_index = g->next_index;  // used only when the log is new (after a snapshot)
  if (g->wal_segment_bytes) options.segment_bytes = g->wal_segment_bytes;
  task<result<std::unique_ptr<kv::wal_writer>>> opening = kv::wal_writer::open(*g->storage, g->recovered, options);
  auto opened = co_await std::move(opening);
  if (opened) {
    g->writer = std::move(opened.value());
    g->context->log(log_level::info, "WAL open in " + g->wal_dir + ", next index " + std::to_string(g->next_index) +
                                         ", revision " + std::to_string(g->store.current_revision()) +
                                         (g->storage->direct_for(options.segment_bytes)
                                              ? ", written directly (O_DIRECT, RWF_DSYNC)"
                                              : ", written through the page cache (fdatasync)"));
  } else {
    g->open_failure = opened.error();
    g->context->log(log_level::error, "cannot open the WAL writer: " + opened.error().to_string());
  }
  g->opened = true;
  if (g->writer) g->reads_anywhere.store(true, std::memory_order_release);
  if (!g->cluster && g->writer) {
    // A single node is its own leader from the start (etcd's single member elects itself
    // at once and has seen one leader change).
    g->leader_seen.store(g->ids.member_id, std::memory_order_relaxed);
    g->leading.store(true, std::memory_order_relaxed);
    g->leader_changes.store(1, std::memory_order_relaxed);
    g->committed_index.store(g->next_index - 1, std::memory_order_relaxed);
    g->applied_index.store(g->next_index - 1, std::memory_order_relaxed);
    g->proposals_counted_through = g->next_index - 1;  // what recovery replayed was no proposal
  }
  g->bytes_held.store(g->store.bytes_held(), std::memory_order_relaxed);
  auto waiters = std::move(g->open_waiters);
  g->open_waiters.clear();
  for (auto handle : waiters) shard::current()->schedule(handle);
}

void stop_reads_here() noexcept { g->reads_anywhere.store(false, std::memory_order_release); }

// Says once, in the log, that the WAL stopped taking writes and why.
void note_wal_failure(const status& failure) {
  stop_reads_here();
  if (g->wal_failure_logged) return;
  g->wal_failure_logged = true;
  g->context->log(log_level::error, "the WAL failed, no more writes are accepted (reads go on at revision " +
                                        std::to_string(g->published_local) + "): " + failure.to_string());
}

status writer_unusable() {
  if (!g->open_failure.is_ok())
    return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + g->open_failure.message());
  if (!g->writer->failure().is_ok()) {
    note_wal_failure(g->writer->failure());
    return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + g->writer->failure().message());
  }
  return status::ok();
}

std::uint64_t request_bytes_max() noexcept { return g->request_bytes_max; }

void owner_note_v2_write(const v2_note_fields* note) noexcept {
  if (note) g->v2_note_pending = *note;
  else g->v2_note_pending.reset();
}

// Appends one entry. Nothing is applied here; the caller applies right after.
// etcd's --max-request-bytes limits the request as it is logged (etcd: the marshalled
// raft request), not the HTTP body that carried it: a v3 gateway body is base64 in JSON,
// a third larger, and etcd takes a 1.4 MB value through it. Over the limit: etcd's
// "request is too large" (gateway 400, gRPC code 3).
status log_entry(std::string data) {
  if (g->replaying || g->applying) return status::ok();
  if (data.size() > g->request_bytes_max) return fail(errc::too_large, kv_messages::request_too_large);
  bool makes_revision = !data.empty() && (static_cast<std::uint8_t>(data[0]) == entry_kind_put ||
                                           static_cast<std::uint8_t>(data[0]) == entry_kind_delete ||
                                           static_cast<std::uint8_t>(data[0]) == entry_kind_txn ||
                                           static_cast<std::uint8_t>(data[0]) == entry_kind_txn_leases_on_path);
  if (g->v2_note_pending && makes_revision) {  // not a lease the write grants or revokes
    data = encode_v2_noted_entry(*g->v2_note_pending, data);
    v2_note_fields hidden;  // what follows in the same v2 write only moves keys
    hidden.action = static_cast<std::uint8_t>(v2::action::update);
    hidden.refresh = true;
    g->v2_note_pending = hidden;
  }
  if (g->capture) {  // a follower's write: the caller forwards it (write_on_owner)
    *g->capture = std::move(data);
    return fail(errc::unavailable, "captured for the leader");
  }
  if (g->cluster) return cluster_log(std::move(data));
  if (!g->opened || !g->writer) return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + "not open yet");
  if (status bad = writer_unusable(); !bad) return bad;
  if (data.size() > limits::wal_entry_data_bytes_max) return fail(errc::too_large, kv_messages::request_too_large);
  status appended = g->writer->append(kv::wal_record::entry(g->ids.raft_term, g->next_index, std::move(data)));
  if (!appended) {
    if (appended.code() == errc::too_large)
      return fail(errc::unavailable, std::string(kv_messages::too_many_requests) + ": " + appended.message());
    return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + appended.message());
  }
  ++g->next_index;
  return status::ok();
}

// ---- applying -----------------------------------------------------------------------------

void track_lease_attachments(const kv::event& e) {
  if (e.prev_kv && e.prev_kv->lease != 0) {
    auto it = g->leases.find(e.prev_kv->lease);
    if (it != g->leases.end()) it->second.keys.erase(e.kv.key);
  }
  if (e.type == kv::event_type::put && e.kv.lease != 0) {
    auto it = g->leases.find(e.kv.lease);
    if (it != g->leases.end()) it->second.keys.insert(e.kv.key);
  }
}

void collect(std::vector<kv::event>& events, bool expiry) {
  for (kv::event& e : events) {
    track_lease_attachments(e);
    if (expiry) {
      if (g->pending_expiry.empty() || g->pending_expiry.back() != e.kv.mod_revision)
        g->pending_expiry.push_back(e.kv.mod_revision);
      g->expiry_revisions.insert(e.kv.mod_revision);
    }
    if (!g->replaying) g->pending_events.push_back(std::move(e));
  }
  events.clear();
  g->revision.store(g->store.current_revision(), std::memory_order_relaxed);
  if (g->cluster && !g->applying && !g->replaying) cluster_note_applied();
}

status check_lease(std::int64_t lease) {
  if (lease != 0 && !g->leases.contains(lease)) return fail(errc::not_found, kv_messages::lease_not_found);
  return status::ok();
}

// Every put of both branches, nested txns too: entry kind 3's rule (codec.h).
status check_txn_leases(const kv::txn_request& request) {
  for (const auto* ops : {&request.success, &request.failure})
    for (const kv::request_op& op : *ops) {
      if (op.type == kv::request_op::kind::put)
        if (status bad = check_lease(op.put.lease); !bad) return bad;
      if (op.type == kv::request_op::kind::txn)
        if (status bad = check_txn_leases(op.txn); !bad) return bad;
    }
  return status::ok();
}

std::int64_t pick_lease_id() {
  // Positive, non-zero, unused; the id is logged, so replay does not need this sequence.
  for (;;) {
    g->lease_id_state += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = g->lease_id_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    auto id = static_cast<std::int64_t>(z & 0x7fffffffffffffffull);
    if (id != 0 && !g->leases.contains(id)) return id;
  }
}

void apply_lease_grant(std::int64_t id, std::int64_t ttl) {
  lease_entry& lease = g->leases[id];
  lease.granted_ttl = ttl;
  lease.expiry = clock::now() + std::chrono::seconds(ttl);
  lease.granted_order = ++g->lease_grants;
  g->leases_live.store(g->leases.size(), std::memory_order_relaxed);
}

// Deletes every key attached to the lease, at one revision (as etcd).
std::int64_t apply_lease_revoke(std::int64_t id, bool expired) {
  auto it = g->leases.find(id);
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  g->leases.erase(it);
  g->leases_live.store(g->leases.size(), std::memory_order_relaxed);
  if (expired) g->leases_expired.fetch_add(1, std::memory_order_relaxed);
  // etcd's v2 expireCount: one per expired node (a directory's keys share its lease and
  // are not counted again), on every member that applies the expiry; not while replaying
  // (the stats count this process's operations).
  if (expired && !g->replaying && std::any_of(keys.begin(), keys.end(), [](const std::string& k) {
        return k.starts_with('/');
      }))
    v2::counters().expire_count.fetch_add(1, std::memory_order_relaxed);
  store_change changing;
  kv::delete_range_result deleted = g->store.delete_keys(keys);
  collect(deleted.events, expired);
  return g->store.current_revision();
}

// ---- publishing ------------------------------------------------------------------------------

namespace {
void deliver(const std::shared_ptr<const event_batch>& batch);
}  // namespace

// Takes the first n elements out of v, leaving the rest in order. When everything goes
// (the usual case: every pending write is durable) the buffer is handed over whole, and v
// gets room for as many again, allocated first so that a failed allocation loses nothing.
template <typename T>
std::vector<T> take_front(std::vector<T>& v, std::size_t n) {
  std::vector<T> taken;
  if (n == v.size()) {
    taken.reserve(v.size());
    taken.swap(v);
    return taken;
  }
  taken.assign(std::make_move_iterator(v.begin()), std::make_move_iterator(v.begin() + static_cast<std::ptrdiff_t>(n)));
  v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n));
  return taken;
}

// Publishes the pending events of revisions <= through (they are durable).
void publish_through(std::int64_t through) {
  if (through <= g->published_local) return;
  std::size_t n = 0;
  while (n < g->pending_events.size() && g->pending_events[n].kv.mod_revision <= through) ++n;
  std::size_t m = 0;
  while (m < g->pending_expiry.size() && g->pending_expiry[m] <= through) ++m;
  auto batch = std::make_shared<event_batch>();
  batch->events = take_front(g->pending_events, n);
  batch->expiry_revisions = take_front(g->pending_expiry, m);
  batch->revision = through;
  g->published_local = through;
  g->published.store(through, std::memory_order_release);
  g->events_published.fetch_add(n, std::memory_order_relaxed);
  // A watcher registers (and counts itself) before asking the owner for its history, so
  // when nobody watches, no batch is needed by anyone.
  if (g->watchers.load(std::memory_order_acquire) == 0) return;
  std::shared_ptr<const event_batch> shared = std::move(batch);
  unsigned self = shard::current()->id();
  for (unsigned s = 0; s < g->shards.size(); ++s) {
    if (s == self) continue;
    post_to(s, [shared] { deliver(shared); });
  }
  deliver(shared);
}

void publish_resync(std::int64_t through) {
  g->pending_events.clear();
  g->pending_expiry.clear();
  auto batch = std::make_shared<event_batch>();
  batch->revision = through;
  batch->resync = true;
  g->published_local = through;
  g->published.store(through, std::memory_order_release);
  std::shared_ptr<const event_batch> shared = std::move(batch);
  unsigned self = shard::current()->id();
  for (unsigned s = 0; s < g->shards.size(); ++s) {
    if (s == self) continue;
    post_to(s, [shared] { deliver(shared); });
  }
  deliver(shared);
}

task<status> durable_now() {
  task<status> committing = g->writer->commit();
  ++g->commits_in_flight;
  status durable = co_await std::move(committing);
  --g->commits_in_flight;
  // /metrics' WAL counters, on every member: a follower's syncs come only through here.
  const kv::wal_writer_stats& stats = g->writer->stats();
  g->wal_batches.store(stats.batches, std::memory_order_relaxed);
  g->wal_records.store(stats.records, std::memory_order_relaxed);
  g->wal_bytes.store(stats.bytes, std::memory_order_relaxed);
  for (std::size_t i = 0; i < stats.sync_counts.size(); ++i)
    g->wal_sync_counts[i].store(stats.sync_counts[i], std::memory_order_relaxed);
  g->wal_sync_nanoseconds.store(stats.sync_nanoseconds, std::memory_order_relaxed);
  co_return durable;
}

// ---- snapshots (owner shard; docs/formats/snapshot.md) ----------------------------------------

// The payload: u32 version 1 | u64 bytes | mvcc_store::save | u64 leases | (i64 id, i64
// granted ttl, u64 keys, (u64 bytes, key)*)* | u64 expiry revisions | i64*.
// Leases are written in the order they were granted, so that a store loaded from the
// snapshot grants them again in that order, and ones that fall due together expire in it
// (a snapshot written before this rule has them by id: their order is lost once).
// The store is saved straight into `out` and its length written in after: a separate
// string appended here cost the child two more copies of the whole store.
std::string encode_state() {
  std::string out;
  out += std::string("\x01\x00\x00\x00", 4);
  std::size_t length_at = out.size();
  put_u64(out, 0);
  g->store.save(out);
  std::string length;
  put_u64(length, out.size() - length_at - 8);
  out.replace(length_at, 8, length);
  put_u64(out, g->leases.size());
  std::vector<const std::pair<const std::int64_t, lease_entry>*> by_grant;
  by_grant.reserve(g->leases.size());
  for (const auto& entry : g->leases) by_grant.push_back(&entry);
  std::sort(by_grant.begin(), by_grant.end(),
            [](const auto* a, const auto* b) { return a->second.granted_order < b->second.granted_order; });
  for (const auto* entry : by_grant) {
    const auto& [id, lease] = *entry;
    put_u64(out, static_cast<std::uint64_t>(id));
    put_u64(out, static_cast<std::uint64_t>(lease.granted_ttl));
    put_u64(out, lease.keys.size());
    for (const std::string& key : lease.keys) {
      put_u64(out, key.size());
      out += key;
    }
  }
  put_u64(out, g->expiry_revisions.size());
  for (std::int64_t r : g->expiry_revisions) put_u64(out, static_cast<std::uint64_t>(r));
  return out;
}

struct payload_reader {
  std::string_view data;
  std::size_t at = 0;
  bool ok = true;
  std::uint64_t u64() {
    if (data.size() - at < 8) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t(static_cast<unsigned char>(data[at + i])) << (8 * i);
    at += 8;
    return v;
  }
  std::string_view bytes(std::uint64_t n) {
    if (data.size() - at < n) {
      ok = false;
      return {};
    }
    std::string_view v = data.substr(at, n);
    at += n;
    return v;
  }
};

// `more_keys`: room to make in the store's point index for keys the caller is about to add.
status decode_state(std::string_view payload, const std::string& file, std::size_t more_keys) {
  auto bad = [&file](const std::string& what) { return status{errc::corruption, file + ": " + what}; };
  if (payload.size() < 4 || payload.substr(0, 4) != std::string_view("\x01\x00\x00\x00", 4))
    return bad("unknown kv snapshot payload version");
  payload_reader in{payload, 4};
  std::uint64_t store_bytes = in.u64();
  std::string_view store = in.bytes(store_bytes);
  if (!in.ok) return bad("payload shorter than its store");
  auto loaded = kv::mvcc_store::load(store, more_keys);
  if (!loaded) return bad(loaded.error().message());
  store_change changing;
  g->store = std::move(loaded.value());
  std::uint64_t leases = in.u64();
  for (std::uint64_t i = 0; in.ok && i < leases; ++i) {
    auto id = static_cast<std::int64_t>(in.u64());
    auto ttl = static_cast<std::int64_t>(in.u64());
    std::uint64_t keys = in.u64();
    apply_lease_grant(id, ttl);
    for (std::uint64_t k = 0; in.ok && k < keys; ++k) g->leases[id].keys.emplace(in.bytes(in.u64()));
  }
  std::uint64_t expiries = in.u64();
  for (std::uint64_t i = 0; in.ok && i < expiries; ++i) g->expiry_revisions.insert(static_cast<std::int64_t>(in.u64()));
  if (!in.ok || in.at != payload.size()) return bad("kv snapshot payload is truncated or has trailing bytes");
  return status::ok();
}

// ---- taking a snapshot in a forked child -------------------------------------------------
//
// Encoding the store stops the owner for as long as it takes (312 ms for 200k versions
// measured in-process), so the owner forks instead: the child gets a copy-on-write image
// of the state at entry S, encodes it and writes the file while the owner goes on. The
// owner's only stall is fork() itself. Protocol, with two pipes:
//   1. owner: fork at entry S; child: encode the payload;
//   2. owner: wait until the WAL holds S durably (a snapshot must never get ahead of the
//      log it replaces), then write "y" to the go pipe ("n" if the WAL failed);
//   3. child: on "y" write_snapshot + remove_old_snapshots, write "ok" or the error text
//      to the result pipe, _exit; the owner reaps it in finish_snapshot().
// The child runs only this code: no logging, no reactor, no io_uring; PR_SET_PDEATHSIG
// kills it if keeld dies.

// The child's first step: it keeps stdin/out/err and its two pipes, and closes its
// copies of everything else keeld had open. The listening sockets above all: a keeld
// restarted after a kill -9 binds its ports exclusively and would be refused while this
// child (killed with it, but slow to be scheduled at nice 19) held them; likewise
// keel.lock, whose flock stays with the parent. Allocates nothing.
void keep_only(int a, int b) {
  unsigned low = static_cast<unsigned>(std::min(a, b)), high = static_cast<unsigned>(std::max(a, b));
  if (low > 3) (void)::close_range(3, low - 1, 0);
  if (high > low + 1) (void)::close_range(low + 1, high - 1, 0);
  (void)::close_range(high + 1, ~0u, 0);
}

[[noreturn]] void snapshot_child(int go_fd, int result_fd, std::string dir, std::uint64_t term,
                                 std::uint64_t index) {
  // Lowest priority: the child runs mostly on CPU time the shards leave idle. At normal
  // priority it takes a whole core from the shards for as long as it encodes (seconds
  // for a large store); nice 19 still guarantees it progress on a saturated machine.
  (void)::setpriority(PRIO_PROCESS, 0, 19);
  std::string payload = encode_state();
  char go = 'n';
  while (::read(go_fd, &go, 1) < 0 && errno == EINTR) {
  }
  status written = go == 'y' ? kv::write_snapshot(dir, term, index, payload)
                             : status{errc::cancelled, "the WAL did not make the entry durable"};
  if (written) written = kv::remove_old_snapshots(dir, kv::snapshots_kept_default);
  std::string text = written ? std::string("ok ") + std::to_string(payload.size()) : written.to_string();
  (void)!::write(result_fd, text.data(), std::min<std::size_t>(text.size(), 4000));
  ::_exit(written ? 0 : 1);
}

// Tests only: KEEL_TEST_SNAPSHOT_CHILD_DEADLOCK=N makes the first N snapshot children
// block on a lock held at their fork, as a lock of another thread would (the fault
// check_snapshot_child() recovers from).
pthread_mutex_t test_fork_lock = PTHREAD_MUTEX_INITIALIZER;
bool test_deadlock_next_child() {
  static int left = [] {
    const char* n = std::getenv("KEEL_TEST_SNAPSHOT_CHILD_DEADLOCK");
    return n != nullptr ? std::atoi(n) : 0;
  }();
  if (left <= 0) return false;
  --left;
  return true;
}

task<void> take_snapshot(std::uint64_t index, std::uint64_t term) {
  g->snapshot_busy = true;
  int go[2], result[2];
  if (::pipe2(go, O_CLOEXEC) != 0) {
    g->snapshot_busy = false;
    co_return;
  }
  if (::pipe2(result, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(go[0]);
    ::close(go[1]);
    g->snapshot_busy = false;
    co_return;
  }
  auto started = clock::now();
  g->snapshot_started = started;
  g->snapshot_go_sent = false;
  g->snapshot_slow_warnings = 0;
  g->snapshot_checked = started;
  bool deadlock = test_deadlock_next_child();
  if (deadlock) ::pthread_mutex_lock(&test_fork_lock);
  pid_t parent = ::getpid();
  pid_t child = ::fork();
  if (child == 0) {
    keep_only(go[0], result[1]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // keeld died before the line above
    if (deadlock) ::pthread_mutex_lock(&test_fork_lock);  // never returns: locked at the fork
    snapshot_child(go[0], result[1], g->snap_dir, term, index);
  }
  if (deadlock) ::pthread_mutex_unlock(&test_fork_lock);
  int fork_errno = errno;
  g->snapshot_last_save_microseconds.store(
      std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count(), std::memory_order_relaxed);
  ::close(go[0]);
  ::close(result[1]);
  if (child < 0) {
    ::close(go[1]);
    ::close(result[0]);
    g->snapshot_busy = false;
    g->context->log(log_level::error, std::string("snapshot: fork failed (the WAL is kept): ") + std::strerror(fork_errno));
    co_return;
  }
  g->snapshot_child = child;
  g->snapshot_result_fd = result[0];
  g->snapshot_pending_index = index;
  g->snapshot_pending_term = term;
  task<status> committing = durable_now();
  status durable = co_await std::move(committing);
  char verdict = durable ? 'y' : 'n';
  (void)!::write(go[1], &verdict, 1);
  ::close(go[1]);
  g->snapshot_go_sent = true;
}

// What /proc says a process is doing: its state letter and the kernel function it sleeps
// in ("futex_wait_queue", "pipe_read", "0" when running).
struct process_report {
  char state = '?';
  std::string wchan;
  std::string text() const { return std::string("state ") + state + ", waiting in " + (wchan.empty() ? "?" : wchan); }
};

process_report read_process(pid_t pid) {
  process_report r;
  std::string where = "/proc/" + std::to_string(pid);
  if (FILE* f = std::fopen((where + "/stat").c_str(), "r")) {
    char line[512];
    if (std::fgets(line, sizeof line, f)) {
      // "pid (comm) S ...": the state follows the last ')'.
      const char* close = std::strrchr(line, ')');
      if (close != nullptr && close[1] == ' ' && close[2] != '\0') r.state = close[2];
    }
    std::fclose(f);
  }
  if (FILE* f = std::fopen((where + "/wchan").c_str(), "r")) {
    char line[128];
    if (std::fgets(line, sizeof line, f)) r.wchan = line;
    std::fclose(f);
  }
  return r;
}

// The child is single-threaded: a futex wait there can never be woken. It means a lock
// was held by another thread at the fork (ASan's allocator has no fork handler in GCC 12,
// so a shard allocating at that moment leaves the child's next allocation blocked for
// good). Such a child is killed; the next snapshot is attempted as if this one failed.
bool snapshot_child_deadlocked(const process_report& r) {
  return r.state == 'S' && r.wchan.find("futex") != std::string::npos;
}

void kill_snapshot_child(const std::string& why) {
  ::kill(g->snapshot_child, SIGKILL);
  ::waitpid(g->snapshot_child, nullptr, 0);
  ::close(g->snapshot_result_fd);
  g->snapshot_result_fd = -1;
  g->snapshot_child = 0;
  g->snapshot_busy = false;
  g->snapshot_children_killed.fetch_add(1, std::memory_order_relaxed);
  g->context->log(log_level::warn, "snapshot at entry " + std::to_string(g->snapshot_pending_index) + ": " + why +
                                       "; killed it (the WAL is kept; the next snapshot is tried now)");
}

// Once a second while the child runs: kills it if it deadlocked, and says at 10 s, 20 s,
// 40 s, ... that it is still running and what it is doing (a snapshot that never
// finishes would hold back every later one, and the WAL's release).
void check_snapshot_child() {
  auto now = clock::now();
  if (now - g->snapshot_checked < std::chrono::seconds(1)) return;
  g->snapshot_checked = now;
  process_report r = read_process(g->snapshot_child);
  auto ran = std::chrono::duration_cast<std::chrono::seconds>(now - g->snapshot_started).count();
  std::string process = "its process " + std::to_string(g->snapshot_child);
  if (snapshot_child_deadlocked(r)) {
    kill_snapshot_child(process + " waits on a lock held when it was forked (" + r.text() + ")");
    return;
  }
  if (ran < (10LL << g->snapshot_slow_warnings)) return;
  ++g->snapshot_slow_warnings;
  g->context->log(log_level::warn,
                  "snapshot at entry " + std::to_string(g->snapshot_pending_index) + ": " + process + " has run for " +
                      std::to_string(ran) + " s (" +
                      (g->snapshot_go_sent ? "encoding or writing" : "the WAL has not yet made the entry durable") +
                      "; " + r.text() + ")");
}

// On the owner: reaps a finished snapshot child. The WAL is then released up to the
// snapshot before this one (so a broken newest snapshot can still fall back, see the
// format doc).
void finish_snapshot() {
  if (g->snapshot_child <= 0) return;
  int wstatus = 0;
  pid_t reaped = ::waitpid(g->snapshot_child, &wstatus, WNOHANG);
  if (reaped == 0) {  // still running
    check_snapshot_child();
    return;
  }
  char text[4096];
  ssize_t n = ::read(g->snapshot_result_fd, text, sizeof text - 1);
  std::string said = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
  ::close(g->snapshot_result_fd);
  g->snapshot_result_fd = -1;
  g->snapshot_child = 0;
  g->snapshot_busy = false;
  bool ok = reaped > 0 && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 && said.starts_with("ok ");
  if (!ok) {
    if (said.empty()) said = reaped < 0 ? std::string("waitpid: ") + std::strerror(errno) : "the snapshot process died";
    g->context->log(log_level::error, "snapshot at entry " + std::to_string(g->snapshot_pending_index) +
                                          " failed (the WAL is kept; the next try in 10 s): " + said);
    g->snapshot_retry_after = clock::now() + std::chrono::seconds(10);
    return;
  }
  g->snapshot_last_bytes.store(std::strtoull(said.c_str() + 3, nullptr, 10), std::memory_order_relaxed);
  g->snapshot_previous_index = g->snapshot_index;
  g->snapshot_index = g->snapshot_pending_index;
  g->snapshots_taken.fetch_add(1, std::memory_order_relaxed);
  if (g->writer && g->writer->failure().is_ok()) {
    (void)g->writer->append(kv::wal_record::snapshot(g->snapshot_index, g->snapshot_pending_term));
    std::size_t before = g->writer->segment_names().size();
    if (g->snapshot_previous_index > 0) {
      status released = g->writer->release_before(g->snapshot_previous_index + 1);
      if (!released) g->context->log(log_level::error, "releasing WAL segments: " + released.to_string());
    }
    std::size_t after = g->writer->segment_names().size();
    g->wal_segments_released.fetch_add(before - after, std::memory_order_relaxed);
  }
  g->context->log(log_level::info, "snapshot at entry " + std::to_string(g->snapshot_index) + " (" +
                                       std::to_string(g->snapshot_last_bytes.load()) + " bytes, " +
                                       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          clock::now() - g->snapshot_started)
                                                          .count()) +
                                       " ms)");
  if (g->cluster) cluster_snapshot_done(g->snapshot_index, g->snapshot_previous_index);
}

std::uint64_t snapshot_interval() {
  // In a cluster a member that falls behind Raft's log gets the newest snapshot and then
  // every entry after it: a longer interval makes that tail longer (perf/catchup, 1M keys:
  // ~7.2 s against ~5.5 s), and Raft's in-memory log with it. So clusters keep etcd's.
  if (g->cluster) return g->snapshot_count;
  // A lower bound of the history's size in versions, in O(1): every revision since the
  // compaction made at least one version (revision 1 is the empty store's, and the compact
  // revision is -1 before the first compaction), and every key has at least one.
  auto revisions = static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, g->store.current_revision() - std::max<std::int64_t>(g->store.compact_revision(), 1)));
  std::uint64_t history = std::max<std::uint64_t>(revisions, g->store.key_count());
  std::uint64_t cap = g->snapshot_count > UINT64_MAX / snapshot_interval_cap ? UINT64_MAX
                                                                              : g->snapshot_count * snapshot_interval_cap;
  return std::max(g->snapshot_count, std::min(cap, history / 2));
}

bool snapshot_due(std::uint64_t applied) {
  return applied > g->snapshot_index && applied - g->snapshot_index >= snapshot_interval();
}

void start_snapshot(std::uint64_t index, std::uint64_t term) {
  finish_snapshot();
  if (g->snapshot_busy || g->replaying || clock::now() < g->snapshot_retry_after) return;
  spawn(take_snapshot(index, term));
}

// Called after every commit. While a child runs (seconds, at nice 19) it is reaped at most
// every 10 ms: a waitpid per commit was 2% of the owner's CPU under load.
void maybe_snapshot() {
  if (g->snapshot_child > 0) {
    auto now = clock::now();
    if (now - g->snapshot_polled < std::chrono::milliseconds(10)) return;
    g->snapshot_polled = now;
    finish_snapshot();
  }
  if (g->snapshot_busy || g->replaying) return;
  if (!snapshot_due(g->next_index - 1)) return;
  if (clock::now() < g->snapshot_retry_after) return;
  spawn(take_snapshot(g->next_index - 1, g->ids.raft_term));
}

// ---- the lease expiry loop (owner shard) ------------------------------------------------------

task<void> expire_leases() {
  keel::timer tick;
  while (!g->stopping.load(std::memory_order_relaxed)) {
    task<bool> sleeping = tick.sleep(std::chrono::milliseconds(250));
    bool elapsed = co_await std::move(sleeping);
    if (!elapsed || g->stopping.load(std::memory_order_relaxed)) break;
    finish_snapshot();
    if (!g->opened || !g->writer || !writer_unusable()) continue;
    if (g->cluster && !cluster_can_propose()) continue;  // the leader decides expiry
    auto now = clock::now();
    // Revoked in the order they fell due (etcd's v2 expires from a heap by expiry time),
    // not the map's (by id, which is random), so keys written one after another expire one
    // after another. Leases whose clocks were restarted together (a new leader) fall due
    // together: those go in the order they were granted.
    std::vector<std::tuple<clock::time_point, std::uint64_t, std::int64_t>> due;
    for (auto& [id, lease] : g->leases)
      if (lease.expiry <= now) due.emplace_back(lease.expiry, lease.granted_order, id);
    if (due.empty()) continue;
    std::sort(due.begin(), due.end());
    for (const auto& [expiry, order, id] : due)
      if (!owner_lease_revoke(id, true)) break;
    task<status> committing = owner_commit();
    status durable = co_await std::move(committing);
    if (!durable) g->context->log(log_level::error, "lease expiry not durable: " + durable.to_string());
  }
}


// ---- identity and errors ------------------------------------------------------------------

const identity& ids() noexcept { return g->ids; }
std::int64_t published_revision() noexcept { return g->published.load(std::memory_order_acquire); }

kv_error kv_error_of(const status& failure) noexcept {
  if (failure.is_ok()) return kv_error::none;
  std::string_view m = failure.message();
  if (kv::mvcc_error_of(failure) != kv::mvcc_error::other && kv::mvcc_error_of(failure) != kv::mvcc_error::none)
    return kv_error::mvcc;
  if (m == kv_messages::request_too_large) return kv_error::request_too_large;
  if (m.starts_with(kv_messages::too_many_requests)) return kv_error::too_many_requests;
  if (m.starts_with(kv_messages::wal_unavailable)) return kv_error::wal_unavailable;
  if (m == kv_messages::lease_not_found) return kv_error::lease_not_found;
  if (m == kv_messages::lease_exists) return kv_error::lease_exists;
  if (m == kv_messages::lease_ttl_too_large) return kv_error::lease_ttl_too_large;
  return kv_error::other;
}

int grpc_code_of(const status& failure) noexcept {
  switch (kv_error_of(failure)) {
    case kv_error::none: return 0;
    case kv_error::mvcc:
      switch (kv::mvcc_error_of(failure)) {
        case kv::mvcc_error::compacted:
        case kv::mvcc_error::future_revision: return 11;
        default: return 3;
      }
    case kv_error::request_too_large: return 3;
    case kv_error::too_many_requests: return 8;
    case kv_error::wal_unavailable: return 14;
    case kv_error::lease_not_found: return 5;
    case kv_error::lease_exists: return 9;
    case kv_error::lease_ttl_too_large: return 11;
    case kv_error::other: break;
  }
  if (failure.message() == kv_messages::not_enough_started_members) return 9;  // FailedPrecondition
  if (failure.code() == errc::invalid_argument) return 3;
  if (failure.code() == errc::unavailable) return 14;
  return 13;
}

// ---- owner primitives ---------------------------------------------------------------------------

task<status> owner_ready() {
  if (!g->opened) co_await open_awaiter{};
  // A leader that cannot propose for a moment (a snapshot is due, or it was just elected
  // and applies its log) makes the surfaces that log through owner primitives (v2) wait.
  if (g->cluster && cluster_is_leader() && !cluster_can_propose()) {
    task<bool> waiting = cluster_wait_can_propose();
    (void)co_await std::move(waiting);
  }
  co_return writer_unusable();
}

bool owner_follows() { return g->cluster && !cluster_can_propose(); }

std::uint64_t owner_term() { return g->cluster ? cluster_term() : 0; }

task<status> owner_confirm_leading(std::uint64_t term) {
  if (!g->cluster) co_return status::ok();
  task<status> confirming = cluster_confirm_leading(term);
  co_return co_await std::move(confirming);
}

task<result<std::int64_t>> owner_read_barrier() {
  if (!g->cluster) co_return std::int64_t{0};
  task<status> barrier = cluster_read_barrier();
  if (status confirmed = co_await std::move(barrier); !confirmed) co_return confirmed;
  co_return g->published_local;
}

const kv::mvcc_store& owner_store() { return g->store; }

bool in_cluster() noexcept { return g->cluster != nullptr; }

// ---- reads on any shard ---------------------------------------------------------------------

namespace {
constexpr std::uint32_t store_gate_changing = 0x80000000u;
}

store_change::store_change() noexcept {
  if (g->store_change_depth++ > 0) return;
  g->store_gate.fetch_or(store_gate_changing, std::memory_order_acquire);
  // A reader is inside for a few microseconds, unless its thread lost its CPU there: after
  // a short spin, give the CPU away between looks, so that a reader preempted on this
  // core can finish.
  for (int spins = 0; (g->store_gate.load(std::memory_order_acquire) & ~store_gate_changing) != 0; ++spins) {
    if (spins < 256) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();
    }
  }
}

store_change::~store_change() {
  if (--g->store_change_depth > 0) return;
  g->store_gate.fetch_and(~store_gate_changing, std::memory_order_release);
}

store_read::store_read() noexcept {
  if (!g->reads_anywhere.load(std::memory_order_acquire)) return;
  std::uint32_t gate = g->store_gate.load(std::memory_order_relaxed);
  do {
    if (gate & store_gate_changing) return;
  } while (!g->store_gate.compare_exchange_weak(gate, gate + 1, std::memory_order_acquire,
                                                std::memory_order_relaxed));
  // Inside: the store cannot change until we leave. `published` only grows towards the
  // store's revision, so equal now means every change in the store is published.
  if (g->store.current_revision() != g->published.load(std::memory_order_acquire)) {
    g->store_gate.fetch_sub(1, std::memory_order_release);
    return;
  }
  _held = true;
}

store_read::~store_read() {
  if (_held) g->store_gate.fetch_sub(1, std::memory_order_release);
}

const kv::mvcc_store& store_read::store() const noexcept { return g->store; }

void store_read::answered() noexcept { g->reads_here.fetch_add(1, std::memory_order_relaxed); }

// A request from a client (not an entry replayed or applied from the log): what etcd's
// gRPC layer refuses before its apply is refused here; the log then holds only requests
// well formed, and an older log replays as it was served.
bool serving_a_client() noexcept { return !g->replaying && !g->applying; }

result<kv::put_result> owner_put(const kv::put_request& request) {
  if (serving_a_client())
    if (status bad = kv::check_put_form(request); !bad) return bad;
  if (request.key.empty()) return fail(errc::invalid_argument, kv::mvcc_messages::empty_key);
  if (status bad = check_lease(request.lease); !bad) return bad;
  if (status logged = log_entry(encode_put_entry(put_entry{request.key, request.value, request.lease, request.prev_kv,
                                                           request.ignore_value, request.ignore_lease}));
      !logged)
    return logged;
  store_change changing;
  auto applied = g->store.put(request);
  if (applied) collect(applied->events, false);
  return applied;
}

result<kv::delete_range_result> owner_delete_range(const kv::delete_range_request& request) {
  if (request.key.empty()) return fail(errc::invalid_argument, kv::mvcc_messages::empty_key);
  if (status logged = log_entry(encode_delete_entry(request)); !logged) return logged;
  store_change changing;
  auto applied = g->store.delete_range(request);
  if (applied) collect(applied->events, false);
  return applied;
}

result<kv::txn_result> owner_txn(const kv::txn_request& request, bool leases_on_path) {
  // etcd's gRPC layer refuses a malformed txn before its apply looks at leases.
  bool serving = serving_a_client();
  if (serving)
    if (status bad = kv::check_txn_form(request); !bad) return bad;
  // Serving, a txn whose every put (both branches) names an existing lease is kind 3,
  // which every keeld applies alike; only one that the older rule would refuse is kind 8
  // (codec.h). Under etcd's rule the store checks the chosen path's leases, after the
  // entry is logged: every apply and replay refuses it alike (a lease exists or not by
  // logged entries only).
  if (serving) {
    leases_on_path = !check_txn_leases(request);
  } else if (!leases_on_path) {
    if (status bad = check_txn_leases(request); !bad) return bad;  // kind 3, as logged then
  }
  if (status logged = log_entry(encode_txn_entry(request, leases_on_path)); !logged) return logged;
  store_change changing;
  auto applied = g->store.txn(request, leases_on_path ? &check_lease : nullptr);
  if (applied) collect(applied->events, false);
  return applied;
}

result<lease_status> owner_lease_grant(std::int64_t ttl, std::int64_t id) {
  if (ttl > lease_ttl_max_seconds) return fail(errc::invalid_argument, kv_messages::lease_ttl_too_large);
  if (id < 0) return fail(errc::invalid_argument, "etcdserver: lease ID must be positive");
  if (id != 0 && g->leases.contains(id)) return fail(errc::already_exists, kv_messages::lease_exists);
  if (id == 0) id = pick_lease_id();
  if (status logged = log_entry(encode_lease_grant_entry(id, ttl)); !logged) return logged;
  apply_lease_grant(id, ttl);
  lease_status granted;
  granted.id = id;
  granted.ttl = ttl;
  granted.granted_ttl = ttl;
  granted.revision = g->store.current_revision();
  return granted;
}

result<std::int64_t> owner_lease_revoke(std::int64_t id, bool expired) {
  if (!g->leases.contains(id)) return fail(errc::not_found, kv_messages::lease_not_found);
  if (status logged = log_entry(encode_lease_revoke_entry(id, expired)); !logged) return logged;
  return apply_lease_revoke(id, expired);
}

result<std::int64_t> owner_compact(std::int64_t revision, bool physical) {
  if (!g->replaying && !g->applying) {
    // Refused before logging: a compaction the store would refuse changes nothing. In a
    // cluster only committed (published) revisions may be compacted: reads run there.
    std::int64_t newest = g->cluster ? g->published_local : g->store.current_revision();
    if (revision > newest) return fail(errc::invalid_argument, kv::mvcc_messages::future_revision);
    if (revision <= g->store.compact_revision()) return fail(errc::invalid_argument, kv::mvcc_messages::compacted);
  }
  if (status logged = log_entry(encode_compact_entry(revision, physical)); !logged) return logged;
  store_change changing;
  status compacted = g->store.compact(revision);
  if (!compacted) return compacted;
  return g->store.current_revision();
}

std::optional<lease_status> owner_lease(std::int64_t id, bool keys) {
  auto it = g->leases.find(id);
  if (it == g->leases.end()) return std::nullopt;
  lease_status s;
  s.id = id;
  s.granted_ttl = it->second.granted_ttl;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(it->second.expiry - clock::now()).count();
  s.ttl = left <= 0 ? 0 : left / 1000;  // whole seconds left, truncated (etcd: int64(Remaining().Seconds()))
  if (keys) s.keys.assign(it->second.keys.begin(), it->second.keys.end());
  s.revision = g->store.current_revision();
  return s;
}

task<status> owner_commit() {
  if (g->cluster) {
    task<status> committing = cluster_commit();
    co_return co_await std::move(committing);
  }
  std::int64_t through = g->store.current_revision();
  std::uint64_t logged = g->next_index - 1;
  if (!g->writer) co_return writer_unusable();
  // Reads and lease checks come here too (to wait until what they saw is durable): only
  // the first caller after something new was logged is a proposal in etcd's metrics (a
  // write reaches here right after logging, with no suspension between).
  bool proposes = logged > g->proposals_counted_through;
  if (proposes) g->proposals_counted_through = logged;
  if (proposes) g->proposals_pending.fetch_add(1, std::memory_order_relaxed);
  task<status> committing = durable_now();
  status durable = co_await std::move(committing);
  if (proposes) g->proposals_pending.fetch_sub(1, std::memory_order_relaxed);
  if (!durable) {
    if (proposes) g->proposals_failed.fetch_add(1, std::memory_order_relaxed);
    note_wal_failure(durable);
    co_return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + durable.message());
  }
  // A single node commits and applies an entry once it is durable (it was applied when
  // logged; its answer waited for this).
  if (logged > g->committed_index.load(std::memory_order_relaxed)) {
    g->committed_index.store(logged, std::memory_order_relaxed);
    g->applied_index.store(logged, std::memory_order_relaxed);
  }
  g->bytes_held.store(g->store.bytes_held(), std::memory_order_relaxed);
  publish_through(through);
  maybe_snapshot();
  co_return status::ok();
}

std::int64_t owner_read_revision_after_wal_failure(bool linearizable) {
  if (!g->writer || !g->open_failure.is_ok()) return 0;
  if (g->cluster && linearizable) return 0;
  if (g->published_local < g->store.compact_revision()) return 0;
  return g->published_local;
}

bool owner_revision_is_expiry(std::int64_t revision) { return g->expiry_revisions.contains(revision); }

// ---- operations -----------------------------------------------------------------------------

namespace {

// What a follower's client gets from applying its forwarded entry.
result<kv::put_result> outcome_as(apply_outcome& o, kv::put_result*) {
  if (!o.failure.is_ok()) return o.failure;
  if (!o.put) return fail(errc::corruption, "the forwarded entry was not a put");
  return std::move(*o.put);
}
result<kv::delete_range_result> outcome_as(apply_outcome& o, kv::delete_range_result*) {
  if (!o.failure.is_ok()) return o.failure;
  if (!o.deleted) return fail(errc::corruption, "the forwarded entry was not a delete");
  return std::move(*o.deleted);
}
result<kv::txn_result> outcome_as(apply_outcome& o, kv::txn_result*) {
  if (!o.failure.is_ok()) return o.failure;
  if (!o.txn) return fail(errc::corruption, "the forwarded entry was not a txn");
  return std::move(*o.txn);
}
result<lease_status> outcome_as(apply_outcome& o, lease_status*) {
  if (!o.failure.is_ok()) return o.failure;
  if (!o.lease) return fail(errc::corruption, "the forwarded entry was not a lease grant");
  return std::move(*o.lease);
}
result<std::int64_t> outcome_as(apply_outcome& o, std::int64_t*) {
  if (!o.failure.is_ok()) return o.failure;
  return o.revision;
}

// Cluster mode on a follower: runs `write` in capture mode (its checks run here, the
// entry it would log is kept) and has the leader log it; the answer is what applying the
// entry gave on this member.
template <typename T, typename F>
task<result<T>> forward_write(F& write) {
  std::string captured;
  g->capture = &captured;
  result<T> checked = write();
  g->capture = nullptr;
  if (captured.empty()) co_return checked;  // refused before logging
  task<apply_outcome> forwarding = cluster_forward(std::move(captured));
  apply_outcome outcome = co_await std::move(forwarding);
  co_return outcome_as(outcome, static_cast<T*>(nullptr));
}

// Runs the owner primitive `write` once the WAL is open, then waits for durability.
template <typename T, typename F>
task<result<T>> write_on_owner(F write) {
  task<result<T>> work = run_on_owner<result<T>>([write = std::move(write)]() mutable -> task<result<T>> {
    return [](F write) -> task<result<T>> {
      task<status> waiting = owner_ready();
      if (status ready = co_await std::move(waiting); !ready) co_return ready;
      if (g->cluster) {
        if (cluster_self_is_learner()) co_return fail(errc::unavailable, kv_messages::not_supported_for_learner);
        task<bool> leading = cluster_wait_can_propose();
        if (!co_await std::move(leading)) {
          task<result<T>> forwarded = forward_write<T>(write);
          co_return co_await std::move(forwarded);
        }
      }
      result<T> done = write();
      if (!done) co_return done;
      task<status> committing = owner_commit();
      if (status durable = co_await std::move(committing); !durable) co_return durable;
      co_return done;
    }(std::move(write));
  });
  co_return co_await std::move(work);
}

// Runs `read` (a plain function returning result<T>, reading the owner's state) on the
// owner once the WAL is open.
template <typename T, typename F>
task<result<T>> read_on_owner(F read) {
  task<result<T>> work = run_on_owner<result<T>>([read = std::move(read)]() mutable -> task<result<T>> {
    return [](F read) -> task<result<T>> {
      task<status> waiting = owner_ready();
      if (status ready = co_await std::move(waiting); !ready) co_return ready;
      co_return read();
    }(std::move(read));
  });
  co_return co_await std::move(work);
}

}  // namespace

task<result<kv::put_result>> put(kv::put_request request) {
  return write_on_owner<kv::put_result>([request = std::move(request)] { return owner_put(request); });
}

task<result<kv::delete_range_result>> delete_range(kv::delete_range_request request) {
  return write_on_owner<kv::delete_range_result>([request = std::move(request)] { return owner_delete_range(request); });
}

task<result<kv::txn_result>> txn(kv::txn_request request) {
  return write_on_owner<kv::txn_result>([request = std::move(request)] { return owner_txn(request); });
}

task<result<std::int64_t>> compact(std::int64_t revision, bool physical) {
  return write_on_owner<std::int64_t>([revision, physical] { return owner_compact(revision, physical); });
}

namespace {
// A single-key range at the newest revision, read on this shard from the owner's store
// when a store_read allows it (README "Reads on any shard"): the owner's answer without
// the hop. A single node's linearizable read is the same read (nothing unpublished to wait
// for); a cluster member's needs a ReadIndex round on the owner. Past revisions, prefixes
// and intervals stay on the owner (history may hold an undurable compaction; a range's
// count walks every key).
std::optional<result<kv::range_result>> range_here(const kv::range_request& request, bool serializable) {
  if (shard::current()->id() == owner_shard) return std::nullopt;  // no hop to save
  if (!request.range_end.empty() || request.revision > 0 || request.key.empty()) return std::nullopt;
  if (!serializable && g->cluster) return std::nullopt;
  store_read reading;
  if (!reading) return std::nullopt;
  result<kv::range_result> found = reading.store().range(request);
  reading.answered();
  return found;
}
}  // namespace

task<result<kv::range_result>> range(kv::range_request request, bool serializable) {
  if (auto here = range_here(request, serializable)) return [](result<kv::range_result> found) -> task<result<kv::range_result>> {
    co_return found;
  }(std::move(*here));
  return run_on_owner<result<kv::range_result>>([request = std::move(request), serializable]() -> task<result<kv::range_result>> {
    return [](kv::range_request request, bool serializable) -> task<result<kv::range_result>> {
      task<status> waiting = owner_ready();
      if (status ready = co_await std::move(waiting); !ready) {
        // The WAL failed (disk full, fdatasync error): writes stop, reads go on at the
        // last durable revision (the store may hold applied entries that never became
        // durable, and those must not be shown).
        // A cluster member whose log failed stops following the leader: only what it
        // committed before may be served, and only to a serializable read.
        std::int64_t durable = owner_read_revision_after_wal_failure(!serializable);
        if (durable == 0) co_return ready;
        if (request.revision <= 0 || request.revision > durable) request.revision = durable;
        auto found = g->store.range(request);
        if (found) found->revision = g->published_local;
        co_return found;
      }
      if (g->cluster) {
        if (!serializable && cluster_self_is_learner())
          co_return fail(errc::unavailable, kv_messages::not_supported_for_learner);
        // Committed state only: a linearizable read first confirms (ReadIndex) that
        // nothing newer was committed elsewhere; both read at the published revision.
        if (!serializable) {
          task<status> barrier = cluster_read_barrier();
          if (status confirmed = co_await std::move(barrier); !confirmed) co_return confirmed;
        }
        if (request.revision <= 0 || request.revision > g->published_local) {
          if (request.revision > g->published_local) co_return fail(errc::invalid_argument, kv::mvcc_messages::future_revision);
          request.revision = g->published_local;
        }
        auto found = g->store.range(request);
        if (found) found->revision = g->published_local;
        co_return found;
      }
      auto found = g->store.range(request);
      // Everything the read saw must be durable before it is shown.
      task<status> committing = owner_commit();
      if (status durable = co_await std::move(committing); !durable) co_return durable;
      co_return found;
    }(std::move(request), serializable);
  });
}

task<result<lease_status>> lease_grant(std::int64_t ttl, std::int64_t id) {
  ttl = std::max(ttl, lease_ttl_min_seconds);  // etcd's lessor; v2 TTLs have none (v2_store.cc)
  return write_on_owner<lease_status>([ttl, id] { return owner_lease_grant(ttl, id); });
}

task<result<std::int64_t>> lease_revoke(std::int64_t id) {
  return write_on_owner<std::int64_t>([id] { return owner_lease_revoke(id); });
}

task<bool> self_is_learner() {
  // g->cluster is set before any shard starts: a single node asks no other shard.
  if (!g->cluster) co_return false;
  task<bool> asking = run_on_owner<bool>([]() -> task<bool> { co_return cluster_self_is_learner(); });
  co_return co_await std::move(asking);
}

task<result<lease_status>> lease_keep_alive(std::int64_t id) {
  // In a cluster only the leader's clock decides expiry: a follower has it renew there.
  enum class renew { here, at_leader, refused };
  task<renew> choosing = run_on_owner<renew>([]() -> task<renew> {
    if (!g->cluster) co_return renew::here;
    if (cluster_self_is_learner()) co_return renew::refused;
    co_return cluster_is_leader() ? renew::here : renew::at_leader;
  });
  renew where = co_await std::move(choosing);
  if (where == renew::refused) co_return fail(errc::unavailable, kv_messages::not_supported_for_learner);
  if (where == renew::at_leader) {
    task<result<std::int64_t>> renewing = run_on_owner<result<std::int64_t>>(
        [id]() -> task<result<std::int64_t>> { return cluster_forward_keep_alive(id); });
    auto renewed = co_await std::move(renewing);
    if (!renewed) co_return renewed.error();
    lease_status s;
    s.id = id;
    s.ttl = s.granted_ttl = renewed.value();
    s.revision = g->published.load(std::memory_order_acquire);
    co_return s;
  }
  task<result<lease_status>> local = read_on_owner<lease_status>([id]() -> result<lease_status> {
    auto it = g->leases.find(id);
    if (it == g->leases.end()) return fail(errc::not_found, kv_messages::lease_not_found);
    it->second.expiry = clock::now() + std::chrono::seconds(it->second.granted_ttl);
    lease_status s;
    s.id = id;
    s.ttl = s.granted_ttl = it->second.granted_ttl;
    s.revision = g->published_local;
    return s;
  });
  co_return co_await std::move(local);
}

task<result<lease_status>> lease_time_to_live(std::int64_t id, bool keys) {
  return read_on_owner<lease_status>([id, keys]() -> result<lease_status> {
    auto found = owner_lease(id, keys);
    if (!found) return fail(errc::not_found, kv_messages::lease_not_found);
    found->revision = g->published_local;
    return std::move(*found);
  });
}

task<result<std::vector<std::int64_t>>> lease_list() {
  return read_on_owner<std::vector<std::int64_t>>([]() -> result<std::vector<std::int64_t>> {
    std::vector<std::int64_t> ids;
    for (auto& [id, lease] : g->leases) ids.push_back(id);
    return ids;
  });
}

// The bytes of the regular files directly in `dir` (0 when it cannot be read).
std::uint64_t bytes_of_files_in(const std::string& dir) {
  std::uint64_t total = 0;
  std::error_code failed;
  // Advanced with increment(error_code): a range-for's ++ throws on a readdir error.
  for (std::filesystem::directory_iterator it(dir, failed), end; !failed && it != end; it.increment(failed)) {
    std::error_code ignored;
    if (!it->is_regular_file(ignored)) continue;
    std::uintmax_t size = it->file_size(ignored);
    if (!ignored) total += size;
  }
  return total;
}

task<bool> healthy_now() {
  return run_on_owner<bool>([]() -> task<bool> {
    // While the WAL opens (just after keeld says READY) requests wait for it, and so does
    // this answer: then it says whether the store can serve.
    if (!g->opened) co_await open_awaiter{};
    if (!g->writer || !writer_unusable()) co_return false;
    if (!g->cluster) co_return true;
    if (cluster_status_now().leader == 0) co_return false;
    task<status> barrier = cluster_read_barrier();
    status confirmed = co_await std::move(barrier);
    co_return confirmed.is_ok();
  });
}

task<result<member_status>> status_now() {
  return read_on_owner<member_status>([]() -> result<member_status> {
    member_status s;
    s.db_size = bytes_of_files_in(g->wal_dir) + bytes_of_files_in(g->snap_dir);
    s.db_size_in_use = g->store.bytes_held();
    s.revision = g->published_local;
    s.raft_index = g->next_index - 1;
    s.raft_applied_index = s.raft_index;
    s.leader = g->ids.member_id;
    s.raft_term = g->ids.raft_term;
    if (g->cluster) {
      cluster_status c = cluster_status_now();
      s.raft_index = c.raft_index;
      s.raft_applied_index = c.applied_index;
      s.leader = c.leader;
      s.raft_term = c.term;
      s.learner = c.learner;
    }
    return s;
  });
}

task<member_view> members_now() {
  return run_on_owner<member_view>([]() -> task<member_view> {
    member_view view;
    if (g->cluster) {
      view.members = cluster_members();
      view.leader = cluster_status_now().leader;
      view.cluster = true;
    } else {
      view.members.push_back({g->ids.member_id, g->configured.name, g->configured.advertise_peer_urls,
                              g->configured.advertise_client_urls});
      view.leader = g->ids.member_id;
    }
    co_return view;
  });
}

namespace {
status no_raft_group() {
  return fail(errc::unsupported, "keel: this member runs as a single node (no Raft group): start the first member "
                                 "with a --initial-cluster of the members to be, or change membership on a cluster");
}

task<result<member_change>> change_membership(std::uint8_t type, std::uint64_t id, std::vector<std::string> urls,
                                              cluster_member_info planned) {
  return run_on_owner<result<member_change>>(
      [type, id, urls = std::move(urls), planned = std::move(planned)]() mutable -> task<result<member_change>> {
        return [](std::uint8_t type, std::uint64_t id, std::vector<std::string> urls,
                  cluster_member_info planned) -> task<result<member_change>> {
          if (!g->cluster) co_return no_raft_group();
          task<status> changing = cluster_change_membership(type, id, std::move(urls));
          status changed = co_await std::move(changing);
          if (!changed) co_return changed;
          member_change out;
          out.members = cluster_members();
          out.member = std::move(planned);
          for (const cluster_member_info& m : out.members)
            if (m.id == id) out.member = m;
          co_return out;
        }(type, id, std::move(urls), std::move(planned));
      });
}
}  // namespace

task<result<member_change>> member_add(std::vector<std::string> peer_urls, bool learner) {
  task<result<cluster_member_info>> planning = run_on_owner<result<cluster_member_info>>(
      [peer_urls, learner]() -> task<result<cluster_member_info>> {
        if (!g->cluster) co_return no_raft_group();
        co_return cluster_plan_add(peer_urls, learner);
      });
  auto planned = co_await std::move(planning);
  if (!planned) co_return planned.error();
  std::uint64_t id = planned->id;
  task<result<member_change>> adding = change_membership(learner ? 1 : 0, id, std::move(peer_urls), planned.value());
  co_return co_await std::move(adding);
}

task<result<member_change>> member_remove(std::uint64_t id) {
  return change_membership(2, id, {}, cluster_member_info{id, "", {}, {}, false});
}

task<result<member_change>> member_promote(std::uint64_t id) {
  return change_membership(3, id, {}, cluster_member_info{id, "", {}, {}, false});  // 3: promote (cluster.cc)
}

task<result<member_change>> member_update(std::uint64_t id, std::vector<std::string> peer_urls) {
  return run_on_owner<result<member_change>>(
      [id, peer_urls = std::move(peer_urls)]() mutable -> task<result<member_change>> {
        return [](std::uint64_t id, std::vector<std::string> urls) -> task<result<member_change>> {
          if (!g->cluster) co_return no_raft_group();
          task<status> updating = cluster_update_member(id, std::move(urls));
          status updated = co_await std::move(updating);
          if (!updated) co_return updated;
          member_change out;
          out.members = cluster_members();
          for (const cluster_member_info& m : out.members)
            if (m.id == id) out.member = m;
          co_return out;
        }(id, std::move(peer_urls));
      });
}

task<status> move_leader(std::uint64_t target) {
  return run_on_owner<status>([target]() -> task<status> {
    if (!g->cluster) {
      if (target != g->ids.member_id) co_return fail(errc::not_found, "etcdserver: bad leader transferee");
      co_return status::ok();
    }
    task<status> moving = cluster_move_leader(target);
    co_return co_await std::move(moving);
  });
}

// ---- watches -----------------------------------------------------------------------------------

struct watcher::state {
  watch_request request;
  std::int64_t next_rev = 0;  // <= 0 until the first history step says where "now" is
  bool synced = false;
  bool finished = false;
  std::int64_t compact_revision = 0;
  std::vector<const kv::event*> pending;
  std::vector<std::shared_ptr<const void>> keep;
  std::vector<std::int64_t> expiry;
  keel::timer wake;
  bool waiting = false;
  // Batches that arrive while a history step is being asked for (see next()).
  bool asking = false;
  std::vector<std::shared_ptr<const event_batch>> held;
  std::size_t held_events = 0;
  bool held_overflow = false;  // more than watch_pending_events_max: read history again
  shard_watchers* home = nullptr;
  std::size_t slot = 0;  // index in home->list
};

namespace {

bool in_range(const watch_request& w, std::string_view key) {
  if (w.range_end.empty()) return key == w.key;
  if (key < std::string_view(w.key)) return false;
  if (w.range_end == std::string_view("\0", 1)) return true;
  return key < std::string_view(w.range_end);
}

bool wanted(const watch_request& w, const kv::event& e) {
  if (e.type == kv::event_type::put && w.no_put) return false;
  if (e.type == kv::event_type::remove && w.no_delete) return false;
  return in_range(w, e.kv.key);
}

void wake(watcher::state& w) {
  if (!w.waiting) return;
  w.waiting = false;  // one cancel is enough
  w.wake.cancel();
}

// Takes `batch`'s matching events into the watcher; drops to catch-up when over its bound.
void offer(watcher::state& w, const std::shared_ptr<const event_batch>& batch) {
  bool took = false;
  for (const kv::event& e : batch->events) {
    if (e.kv.mod_revision < w.next_rev || !wanted(w.request, e)) continue;
    w.pending.push_back(&e);
    took = true;
  }
  if (took) {
    w.keep.push_back(batch);
    for (std::int64_t r : batch->expiry_revisions)
      if (r >= w.next_rev) w.expiry.push_back(r);
  }
  w.next_rev = std::max(w.next_rev, batch->revision + 1);
  if (w.pending.size() > limits::watch_pending_events_max) {
    // Too far behind: forget what is queued and read it again from history.
    w.next_rev = w.pending.front()->kv.mod_revision;
    w.pending.clear();
    w.keep.clear();
    w.expiry.clear();
    w.synced = false;
    g->watch_catchups.fetch_add(1, std::memory_order_relaxed);
  }
  if (took || !w.synced) wake(w);
}

void deliver(const std::shared_ptr<const event_batch>& batch) {
  shard_watchers& here = *g->shards[shard::current()->id()];
  here.last_revision = std::max(here.last_revision, batch->revision);
  for (watcher::state* w : here.list) {
    if (w->finished) continue;
    if (batch->resync) {
      // Read everything from next_rev on from history (the store was replaced).
      if (w->asking) {
        w->held.clear();
        w->held_overflow = true;
      } else if (w->synced) {
        if (!w->pending.empty()) w->next_rev = w->pending.front()->kv.mod_revision;
        w->pending.clear();
        w->keep.clear();
        w->expiry.clear();
        w->synced = false;
        wake(*w);
      }
      continue;
    }
    if (w->synced) {
      offer(*w, batch);
    } else if (w->asking && !w->held_overflow) {
      w->held_events += batch->events.size();
      if (w->held_events > limits::watch_pending_events_max) {
        w->held.clear();
        w->held_overflow = true;
      } else {
        w->held.push_back(batch);
      }
    }
  }
}

// One step of catch-up, run on the owner: durable events from `start` on, and where the
// published log ends.
struct history_step {
  status failure;
  std::shared_ptr<event_batch> batch;  // revision = published revision at the time
  std::int64_t next_revision = 0;
  std::int64_t compact_revision = 0;
};

history_step read_history(const watch_request& w, std::int64_t start) {
  history_step step;
  std::int64_t published = g->published_local;
  step.batch = std::make_shared<event_batch>();
  step.batch->revision = published;
  if (start <= 0 || start > published) {
    step.next_revision = start <= 0 ? published + 1 : start;
    return step;
  }
  auto found = g->store.events_since(start, w.key, w.range_end, limits::watch_history_events_per_step);
  if (!found) {
    step.failure = found.error();
    step.compact_revision = g->store.compact_revision() + 1;
    return step;
  }
  for (kv::event& e : found->events) {
    if (e.kv.mod_revision > published) break;
    if (g->expiry_revisions.contains(e.kv.mod_revision) &&
        (step.batch->expiry_revisions.empty() || step.batch->expiry_revisions.back() != e.kv.mod_revision))
      step.batch->expiry_revisions.push_back(e.kv.mod_revision);
    step.batch->events.push_back(std::move(e));
  }
  step.next_revision = std::min(found->next_revision, published + 1);
  return step;
}

}  // namespace

watcher::watcher(std::unique_ptr<state> s) noexcept : _state(std::move(s)) {}

watcher::~watcher() {
  if (!_state || !_state->home) return;
  auto& list = _state->home->list;
  std::size_t slot = _state->slot;
  list[slot] = list.back();
  list[slot]->slot = slot;
  list.pop_back();
  g->watchers.fetch_sub(1, std::memory_order_release);
}

std::unique_ptr<watcher> watcher::create(watch_request request) {
  auto s = std::make_unique<state>();
  s->request = std::move(request);
  s->next_rev = s->request.start_revision;
  s->home = g->shards[shard::current()->id()].get();
  s->slot = s->home->list.size();
  s->home->list.push_back(s.get());
  g->watchers.fetch_add(1, std::memory_order_release);
  return std::make_unique<watcher>(std::move(s));
}

std::int64_t watcher::next_revision() const noexcept { return _state->next_rev; }

task<std::optional<watch_update>> watcher::next(std::chrono::milliseconds timeout) {
  state& w = *_state;
  for (;;) {
    if (!w.pending.empty()) {
      watch_update update;
      update.events = std::move(w.pending);
      update.keep = std::move(w.keep);
      std::sort(w.expiry.begin(), w.expiry.end());
      w.expiry.erase(std::unique(w.expiry.begin(), w.expiry.end()), w.expiry.end());
      update.expiry_revisions = std::move(w.expiry);
      w.pending.clear();
      w.keep.clear();
      w.expiry.clear();
      update.revision = std::max(w.home->last_revision, update.events.back()->kv.mod_revision);
      co_return update;
    }
    if (w.finished) {
      watch_update update;
      update.canceled = true;
      update.compact_revision = w.compact_revision;
      update.cancel_reason = std::string(kv::mvcc_messages::compacted);
      update.revision = w.home->last_revision;
      w.compact_revision = 0;
      if (update.compact_revision == 0) co_return std::nullopt;  // already reported
      co_return update;
    }
    if (!w.synced) {
      watch_request request = w.request;
      std::int64_t start = w.next_rev;
      history_step step;
      if (shard::current()->id() == owner_shard) {
        step = read_history(request, start);
      } else {
        w.asking = true;
        auto asking = run_on(owner_shard, [request, start] { return read_history(request, start); });
        step = co_await asking;  // a named awaiter: see the GCC 12 rule in reactor/README.md
      }
      w.asking = false;
      std::vector<std::shared_ptr<const event_batch>> held = std::move(w.held);
      bool held_overflow = w.held_overflow;
      w.held.clear();
      w.held_events = 0;
      w.held_overflow = false;
      w.home->last_revision = std::max(w.home->last_revision, step.batch->revision);
      if (!step.failure.is_ok()) {
        w.finished = true;
        w.compact_revision = step.compact_revision;
        continue;
      }
      std::shared_ptr<const event_batch> batch = std::move(step.batch);
      for (const kv::event& e : batch->events)
        if (wanted(w.request, e)) w.pending.push_back(&e);
      if (!w.pending.empty()) {
        w.keep.push_back(batch);
        w.expiry = batch->expiry_revisions;
      }
      w.next_rev = step.next_revision;
      if (w.next_rev > batch->revision && !held_overflow) {
        // History reached the published end; the batches that arrived while we waited
        // for the answer (the answer resumes us through the ready queue, so batches
        // queued behind it are delivered first) carry on from there.
        w.synced = true;
        for (const auto& later : held)
          if (later->revision > batch->revision && w.synced) offer(w, later);
      }
      continue;
    }
    w.waiting = true;
    task<bool> sleeping = w.wake.sleep(timeout);
    bool elapsed = co_await std::move(sleeping);
    w.waiting = false;
    if (elapsed && w.pending.empty() && w.synced && !w.finished) co_return std::nullopt;
  }
}

std::uint64_t watchers_total() noexcept { return g ? g->watchers.load(std::memory_order_relaxed) : 0; }

// ---- lifecycle ------------------------------------------------------------------------------------

namespace {

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// Runs one decoded entry through the owner primitives: with logging off (replay, a
// committed entry, a rebuild) a request refused when served is refused identically; on a
// leader running a follower's forwarded request, it is checked, logged and applied.
apply_outcome apply_entry(const wal_entry& entry) {
  apply_outcome out;
  const std::int64_t before = g->store.current_revision();
  switch (entry.kind) {
    case entry_kind_put: {
      auto done = owner_put(kv::put_request{entry.put.key, entry.put.value, entry.put.lease, entry.put.prev_kv,
                                            entry.put.ignore_value, entry.put.ignore_lease});
      if (done) out.put = std::move(done.value());
      else out.failure = done.error();
      break;
    }
    case entry_kind_delete: {
      auto done = owner_delete_range(entry.delete_range);
      if (done) out.deleted = std::move(done.value());
      else out.failure = done.error();
      break;
    }
    case entry_kind_txn: {
      auto done = owner_txn(entry.txn, entry.txn_leases_on_path);
      if (done) out.txn = std::move(done.value());
      else out.failure = done.error();
      break;
    }
    case entry_kind_compact: {
      auto done = owner_compact(entry.compact_revision, entry.physical);
      if (!done) out.failure = done.error();
      break;
    }
    case entry_kind_lease_grant: {
      auto done = owner_lease_grant(entry.lease_ttl, entry.lease_id);
      if (done) out.lease = std::move(done.value());
      else out.failure = done.error();
      break;
    }
    case entry_kind_lease_revoke: {
      auto done = owner_lease_revoke(entry.lease_id, entry.lease_expired);
      if (!done) out.failure = done.error();
      break;
    }
  }
  out.revision = g->store.current_revision();
  if (entry.v2_note && out.failure.is_ok() && out.revision > before) {
    v2::revision_note note;
    note.what = static_cast<v2::action>(entry.v2_note->action);
    note.refresh = entry.v2_note->refresh;
    note.node_expiration_ns = entry.v2_note->node_expiration_ns;
    note.node_ttl = entry.v2_note->node_ttl;
    note.previous_expiration_ns = entry.v2_note->previous_expiration_ns;
    note.previous_ttl = entry.v2_note->previous_ttl;
    for (std::int64_t r = before + 1; r <= out.revision; ++r) {
      v2::note_revision(r, note);
      note = v2::revision_note{v2::action::update, true};  // the rest only moves keys (v2_store.cc)
    }
  }
  return out;
}

// Loads the newest snapshot that verifies into the store and leases; its index, or 0.
// `more_keys` as decode_state's.
result<std::uint64_t> load_snapshot(core_state& s, std::size_t more_keys = 0) {
  std::vector<std::string> warnings;
  auto newest = kv::load_newest_snapshot(s.snap_dir, &warnings);
  for (const std::string& w : warnings) s.context->log(log_level::warn, w);
  if (!newest) return newest.error();
  if (!newest.value()) return std::uint64_t{0};
  const kv::loaded_snapshot& snap = *newest.value();
  if (status decoded = decode_state(snap.payload, snap.file, more_keys); !decoded) return decoded;
  s.snapshot_term = snap.term;
  s.context->log(log_level::info, "loaded snapshot " + snap.file + " (entry " + std::to_string(snap.index) +
                                      ", revision " + std::to_string(s.store.current_revision()) + ")");
  return snap.index;
}

// `replay`: apply the WAL's entries now (a single node). A cluster member leaves them
// in s.recovered.records for Raft, which hands the committed ones out to be applied.
status recover(core_state& s, bool replay) {
  status made = kv::posix_wal_directory::create_directories(s.wal_dir);
  if (!made) return made;
  // KEEL_TEST_WAL_BUFFERED (set to anything): the buffered write path where direct would
  // apply (for comparisons and its tests; kv::uring_wal_storage).
  s.storage = std::make_unique<kv::uring_wal_storage>(s.wal_dir, std::getenv("KEEL_TEST_WAL_BUFFERED") == nullptr);
  // Read and check everything before changing anything: a start that is refused leaves
  // the WAL as it found it. The WAL is read before the snapshot is loaded so that the
  // store's point index is sized once for the keys its entries may add (growing it
  // later rehashes every loaded key: 4% of a 1M-key restart, perf/RESULTS.md session 16).
  auto recovered = kv::recover_wal(*s.storage, kv::wal_recovery_mode::check);
  if (!recovered) return recovered.error();
  s.recovered = std::move(recovered.value());
  std::size_t wal_entries = s.recovered.entries;
  auto snapshot = load_snapshot(s, wal_entries);
  if (!snapshot) return snapshot.error();
  std::uint64_t snapshot_index = snapshot.value();
  s.snapshot_index = snapshot_index;
  if (snapshot_index == 0) s.store.reserve_keys(wal_entries);
  // A cluster member's snapshot may come from the leader, ahead of its own log.
  if (status joined = kv::check_wal_joins_snapshot(s.recovered, snapshot_index, s.snapshot_term, s.wal_dir, replay); !joined) {
    if (s.recovered.torn_tail) return {joined.code(), joined.message() + " (" + s.recovered.torn_tail_text(true) + ")"};
    return joined;
  }
  if (status repaired = kv::repair_wal(*s.storage, s.recovered); !repaired) return repaired;
  if (!s.recovered.torn_tail_text(false).empty()) s.context->log(log_level::warn, s.recovered.torn_tail_text(false));
  if (s.recovered.segments.empty() && snapshot_index > 0) {
    s.context->log(log_level::warn, s.wal_dir + " holds no WAL: starting from the snapshot at entry " +
                                        std::to_string(snapshot_index) + " alone");
  }
  std::uint64_t entries = 0;
  s.replaying = true;
  for (const kv::wal_record& record : s.recovered.records) {
    if (!replay) break;
    if (record.type != kv::wal_record_type::entry || record.index <= snapshot_index) continue;
    auto entry = decode_entry(record.data);
    if (!entry) {
      s.replaying = false;
      return {errc::corruption, s.wal_dir + ": entry " + std::to_string(record.index) + " is not a kv request (" +
                                    std::to_string(record.data.size()) + " bytes)"};
    }
    (void)apply_entry(*entry);  // a request refused when served is refused identically
    ++entries;
  }
  s.replaying = false;
  std::uint64_t last = s.recovered.last_index ? *s.recovered.last_index : 0;
  s.next_index = std::max(last, snapshot_index) + 1;
  if (replay) {
    s.recovered.records.clear();
    s.recovered.records.shrink_to_fit();
    release_free_memory();
  }
  s.replayed = entries;
  s.revision = s.store.current_revision();
  s.published = s.store.current_revision();
  s.published_local = s.store.current_revision();
  return status::ok();
}

}  // namespace

apply_outcome apply_entry_data(std::string_view data) {
  auto entry = decode_entry(data);
  if (!entry) {
    apply_outcome out;
    out.failure = fail(errc::corruption, "a committed entry of " + std::to_string(data.size()) + " bytes is not a kv request");
    out.undecodable = true;
    g->context->log(log_level::error, out.failure.message());
    return out;
  }
  return apply_entry(*entry);
}

status run_forwarded_request(std::string_view data, std::int64_t* ttl_out) {
  if (!data.empty() && static_cast<std::uint8_t>(data[0]) == 0x7d) {  // keep-alive (cluster.cc)
    if (data.size() != 9) return fail(errc::invalid_argument, "a malformed forwarded keep-alive");
    std::uint64_t id = 0;
    for (int i = 0; i < 8; ++i) id |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(data[1 + i])) << (8 * i);
    auto it = g->leases.find(static_cast<std::int64_t>(id));
    if (it == g->leases.end()) return fail(errc::not_found, kv_messages::lease_not_found);
    it->second.expiry = clock::now() + std::chrono::seconds(it->second.granted_ttl);
    *ttl_out = it->second.granted_ttl;
    return status::ok();
  }
  auto entry = decode_entry(data);
  if (!entry) return fail(errc::invalid_argument, "a forwarded request that is not a kv request");
  // A forwarded v2 write (none today: a follower's v2 write is run by the leader as its own) keeps its note
  // in the entry the leader logs.
  if (entry->v2_note) owner_note_v2_write(&*entry->v2_note);
  status applied = apply_entry(*entry).failure;
  if (entry->v2_note) owner_note_v2_write(nullptr);
  return applied;
}

status rebuild_state(std::uint64_t through_index,
                     const std::function<const std::string*(std::uint64_t index)>& entry_data_at) {
  std::int64_t published = g->published_local;
  const std::int64_t taken_back_through = g->store.current_revision();
  store_change changing;  // no reader sees the store rebuilt halfway
  g->store = kv::mvcc_store();
  g->leases.clear();
  g->replaying = true;
  auto snapshot = load_snapshot(*g);
  if (!snapshot) {
    g->replaying = false;
    return snapshot.error();
  }
  for (std::uint64_t i = snapshot.value() + 1; i <= through_index; ++i) {
    const std::string* data = entry_data_at(i);
    if (data == nullptr) {
      g->replaying = false;
      return fail(errc::corruption, "entry " + std::to_string(i) + " is no longer in the log");
    }
    if (data->empty()) continue;
    auto forwarded = unwrap_forwarded(*data);
    if (apply_entry_data(forwarded ? forwarded->inner : std::string_view(*data)).undecodable) {
      g->replaying = false;
      return fail(errc::corruption, "entry " + std::to_string(i) + " of the log is not a kv request this keeld can apply");
    }
  }
  g->replaying = false;
  std::int64_t revision = g->store.current_revision();
  v2::forget_notes(revision, taken_back_through);
  std::erase_if(g->pending_events, [revision](const kv::event& e) { return e.kv.mod_revision > revision; });
  std::erase_if(g->pending_expiry, [revision](std::int64_t r) { return r > revision; });
  std::erase_if(g->expiry_revisions, [revision](std::int64_t r) { return r > revision; });
  g->revision.store(revision, std::memory_order_relaxed);
  g->leases_live.store(g->leases.size(), std::memory_order_relaxed);
  if (revision < published) {
    // Later writes could bring the store back to `published` with other contents: no
    // store_read may trust the equality any more.
    stop_reads_here();
    g->context->log(log_level::error, "rebuilt revision " + std::to_string(revision) + " is below the published " +
                                          std::to_string(published));
  }
  return status::ok();
}

void refresh_lease_expiries() {
  auto now = clock::now();
  for (auto& [id, lease] : g->leases) lease.expiry = now + std::chrono::seconds(lease.granted_ttl);
}

status core_start(module_context* context, const core_options& options) {
  auto state = std::make_unique<core_state>();
  state->context = context;
  state->dir = options.dir.empty() ? "./default.keel" : options.dir;
  state->wal_dir = state->dir + "/wal";
  state->snap_dir = state->dir + "/snap";
  state->snapshot_count = options.snapshot_count;
  state->request_bytes_max = options.request_bytes_max;
  state->wal_segment_bytes = options.wal_segment_bytes;
  state->ids.cluster_id = fnv1a("keel-kv cluster " + state->dir);
  state->ids.member_id = fnv1a("keel-kv member " + state->dir);
  state->lease_id_state = static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) ^ state->ids.member_id;
  for (unsigned i = 0; i < context->shard_count(); ++i) state->shards.push_back(std::make_unique<shard_watchers>());
  // One keeld per data dir (etcd locks its WAL the same way): a second one would write
  // the same log. The lock lives as long as the process (the fd is never closed).
  if (status made = kv::posix_wal_directory::create_directories(state->dir); !made) return made;
  std::string lock_path = state->dir + "/keel.lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return {errc::io_error, lock_path + ": " + std::strerror(errno)};
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return {errc::unavailable, "the data dir " + state->dir + " is in use by another keeld (" + lock_path +
                                   " is locked); stop it first"};
  }
  state->data_dir_lock_fd = lock_fd;
  g = state.get();
  cluster_options cluster = options.cluster;
  cluster.data_dir = state->dir;
  state->configured = cluster;
  bool clustered = cluster_mode_wanted(cluster);
  status recovered = recover(*state, !clustered);
  if (!recovered) {
    g = nullptr;
    return {recovered.code(), "recovering " + state->wal_dir + ": " + recovered.message()};
  }
  if (clustered) {
    auto joined = cluster_start(context, cluster);
    if (!joined) {
      g = nullptr;
      return joined.error();
    }
  }
  for (auto& sw : state->shards) sw->last_revision = state->store.current_revision();
  if (clustered) {
    // A member applies its log as Raft commits it, after this: "recovered 0 entries"
    // read as if the log had been lost.
    context->log(log_level::info, "opened " + state->wal_dir + ": entries through index " +
                                      std::to_string(state->next_index - 1) + " (snapshot at " +
                                      std::to_string(state->snapshot_index) + ", revision " +
                                      std::to_string(state->store.current_revision()) +
                                      "); they are applied as the cluster commits them");
  } else {
    context->log(log_level::info, "recovered " + std::to_string(state->replayed.load()) + " entries from " +
                                      state->wal_dir + ", revision " + std::to_string(state->store.current_revision()) +
                                      ", " + std::to_string(state->leases.size()) + " leases");
  }
  (void)state.release();
  return status::ok();
}

namespace {
task<void> start_cluster_when_open() {
  if (!g->opened) co_await open_awaiter{};
  if (g->writer) cluster_on_owner_start(*shard::current());
}
}  // namespace

void core_on_shard_start(shard& s) {
  if (s.id() != owner_shard) return;
  spawn(open_writer());
  if (g->cluster) spawn(start_cluster_when_open());
  spawn(expire_leases());
}

void core_on_shard_stop(shard& s) {
  if (s.id() != owner_shard) return;
  g->stopping.store(true, std::memory_order_relaxed);
  if (g->cluster && g->opened && g->writer) cluster_on_owner_stop();
}

void core_stop() {
  if (!g) return;
  // A snapshot still being written is abandoned, not waited for (writing and syncing a
  // big one takes seconds): its .tmp file is removed at the next start, and the previous
  // snapshot and the WAL are intact.
  if (g->snapshot_child > 0) {
    ::kill(g->snapshot_child, SIGKILL);
    ::waitpid(g->snapshot_child, nullptr, 0);
    g->snapshot_child = 0;
  }
  // The writer's destructor asserts no commit is in flight; a coroutine cancelled at stop
  // may still be suspended in one, so then the writer is left, still owned by `g`, to the
  // process exit (reachable through `retired` below: no leak report).
  if (g->commits_in_flight == 0) g->writer.reset();
  // The store is not freed: keeld exits right after the modules stop, and freeing
  // millions of versions allocated on shard 0's thread takes the main thread a second or
  // more (glibc's cross-arena frees), which would break "SIGTERM stops within a second".
  // `retired` keeps it reachable, so leak checkers do not report it.
  // (volatile: a store the compiler must keep, so the pointer stays in memory where
  // LeakSanitizer finds it; it also silences -Wunused-but-set-variable.)
  [[maybe_unused]] static core_state* volatile retired = nullptr;
  retired = g;
  g = nullptr;
}

// etcd 3.4's own metric names, HELP texts and types (README "Metrics"), so that etcd's
// dashboards and alerts (etcd_server_has_leader == 0, leader changes, failed proposals,
// WAL fsync latency) work against keel unchanged. Read from atomics: any shard.
void append_metric_head(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void append_metric(std::string& out, const char* name, const char* type, const char* help, std::uint64_t value) {
  append_metric_head(out, name, type, help);
  out += std::string(name) + " " + std::to_string(value) + "\n";
}

void etcd_metrics(std::string& out) {
  auto head = [&out](const char* name, const char* type, const char* help) { append_metric_head(out, name, type, help); };
  auto line = [&out](const char* name, const char* type, const char* help, std::uint64_t value) {
    append_metric(out, name, type, help, value);
  };
  auto load = [](const auto& a) { return static_cast<std::uint64_t>(a.load(std::memory_order_relaxed)); };
  line("etcd_disk_wal_write_bytes_total", "gauge", "Total number of bytes written in WAL.", load(g->wal_bytes));
  head("etcd_disk_wal_fsync_duration_seconds", "histogram", "The latency distributions of fsync called by WAL.");
  static constexpr const char* bounds[kv::wal_writer_stats::sync_buckets] = {
      "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128",
      "0.256", "0.512", "1.024", "2.048", "4.096", "8.192", "+Inf"};
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kv::wal_writer_stats::sync_buckets; ++i) {
    cumulative += load(g->wal_sync_counts[i]);
    out += std::string("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"") + bounds[i] + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.9g", static_cast<double>(load(g->wal_sync_nanoseconds)) / 1e9);
  out += std::string("etcd_disk_wal_fsync_duration_seconds_sum ") + seconds + "\n";
  out += "etcd_disk_wal_fsync_duration_seconds_count " + std::to_string(cumulative) + "\n";
  // dbSize as /v3/maintenance/status counts it (core.h member_status).
  line("etcd_mvcc_db_total_size_in_bytes", "gauge", "Total size of the underlying database physically allocated in bytes.",
       bytes_of_files_in(g->wal_dir) + bytes_of_files_in(g->snap_dir));
  line("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
       "Total size of the underlying database logically in use in bytes.", load(g->bytes_held));
  line("etcd_server_has_leader", "gauge", "Whether or not a leader exists. 1 is existence, 0 is not.",
       load(g->leader_seen) != 0 ? 1 : 0);
  char id[24];
  auto [end, ignored] = std::to_chars(id, id + sizeof id, g->ids.member_id, 16);
  (void)ignored;
  head("etcd_server_id", "gauge", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.");
  out += "etcd_server_id{server_id=\"" + std::string(id, end) + "\"} 1\n";
  line("etcd_server_is_leader", "gauge", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
       load(g->leading));
  line("etcd_server_is_learner", "gauge", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
       load(g->learner));
  line("etcd_server_leader_changes_seen_total", "counter", "The number of leader changes seen.",
       load(g->leader_changes));
  line("etcd_server_proposals_applied_total", "gauge", "The total number of consensus proposals applied.",
       load(g->applied_index));
  line("etcd_server_proposals_committed_total", "gauge", "The total number of consensus proposals committed.",
       load(g->committed_index));
  line("etcd_server_proposals_failed_total", "counter", "The total number of failed proposals seen.",
       load(g->proposals_failed));
  std::int64_t pending = g->proposals_pending.load(std::memory_order_relaxed);
  line("etcd_server_proposals_pending", "gauge", "The current number of pending proposals to commit.",
       pending > 0 ? static_cast<std::uint64_t>(pending) : 0);
  line("etcd_server_read_indexes_failed_total", "counter", "The total number of failed read indexes seen.",
       load(g->read_indexes_failed));
  line("etcd_server_slow_read_indexes_total", "counter",
       "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
       load(g->read_indexes_slow));
  head("etcd_server_version", "gauge", "Which version is running. 1 for 'server_version' label with current version.");
  out += std::string("etcd_server_version{server_version=\"") + etcd_server_version + "\"} 1\n";
  std::lock_guard<std::mutex> hold(g->peer_metrics_lock);
  out += g->peer_metrics;
}

void core_metrics(std::string& out) {
  auto line = [&out](const char* name, const char* type, const char* help, std::uint64_t value) {
    append_metric(out, name, type, help, value);
  };
  line("keel_kv_revision", "gauge", "The store's current revision.",
       static_cast<std::uint64_t>(g->revision.load(std::memory_order_relaxed)));
  line("keel_kv_watchers", "gauge", "Watchers registered on every shard.", g->watchers.load(std::memory_order_relaxed));
  line("keel_kv_leases", "gauge", "Live leases.", g->leases_live.load(std::memory_order_relaxed));
  line("keel_kv_leases_expired_total", "counter", "Leases revoked by expiry.",
       g->leases_expired.load(std::memory_order_relaxed));
  line("keel_kv_events_published_total", "counter", "Events made durable and published to watchers.",
       g->events_published.load(std::memory_order_relaxed));
  line("keel_kv_snapshots_total", "counter", "Snapshots written.", g->snapshots_taken.load(std::memory_order_relaxed));
  line("keel_kv_snapshot_processes_killed_total", "counter",
       "Snapshot processes killed because they deadlocked on a lock held at their fork.",
       g->snapshot_children_killed.load(std::memory_order_relaxed));
  line("keel_kv_snapshot_bytes", "gauge", "Size of the last snapshot's payload.",
       g->snapshot_last_bytes.load(std::memory_order_relaxed));
  line("keel_kv_snapshot_save_microseconds", "gauge",
       "Time the owner shard stopped for the last snapshot (the fork; a child process encodes and writes it).",
       g->snapshot_last_save_microseconds.load(std::memory_order_relaxed));
  line("keel_kv_wal_segments_released_total", "counter", "WAL segments removed after snapshots.",
       g->wal_segments_released.load(std::memory_order_relaxed));
  line("keel_kv_wal_fdatasyncs_total", "counter",
       "WAL write+fdatasync pairs (group commits); records_total / this = writes per fdatasync.",
       g->wal_batches.load(std::memory_order_relaxed));
  line("keel_kv_wal_records_total", "counter", "WAL records made durable.", g->wal_records.load(std::memory_order_relaxed));
  line("keel_kv_wal_bytes_total", "counter", "WAL record bytes made durable.", g->wal_bytes.load(std::memory_order_relaxed));
  line("keel_kv_reads_here_total", "counter",
       "Reads answered on the client's shard from the owner's store, without the hop to the owner (v2 GET, single-key v3 and native ranges).",
       g->reads_here.load(std::memory_order_relaxed));
  line("keel_kv_watch_catchups_total", "counter", "Times a slow watcher dropped its queue and caught up from history.",
       g->watch_catchups.load(std::memory_order_relaxed));
  etcd_metrics(out);
}

}  // namespace keel::kv_module
