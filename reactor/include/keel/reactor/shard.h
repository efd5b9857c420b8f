// keel/reactor/shard.h — one core's event loop: an io_uring, a task queue, timers and
// the cross-shard queues.
//
// A shard is a thread pinned to one core. It owns its io_uring (SINGLE_ISSUER |
// DEFER_TASKRUN), its provided-buffer ring for receives, its ready-task queue and the
// consuming ends of the queues other shards send to it. Nothing in a shard is touched by
// another thread except: the SPSC cross-shard queues (one per ordered pair), the
// `sleeping` flag that says whether a producer must wake it, the external-post queue
// (mutex, for threads that are not shards: start-up, tests, stop) and the statistics,
// which are plain relaxed atomics written only by the owner.
//
// The loop (shard::run), in the order it is decided in shard.cc:
//   1. run ready tasks until the queue is empty or the time quota is spent;
//   2. take messages from every incoming cross-shard queue and run them;
//   3. run the pre-submit hooks (connections queue their batched sends here);
//   4. publish outgoing cross-shard batches, waking sleeping targets with MSG_RING;
//   5. submit, and wait for a completion only if nothing is ready to run and the
//      shard has announced that it is going to sleep;
//   6. reap every completion, which resumes its waiter (pushes it on the ready queue).
//
// Every SQE's user_data is a pointer to a `completion`, or one of the reserved values
// below. A completion must stay alive until its last CQE has been reaped.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "keel/reactor/task.h"
#include "keel/status.h"

struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;

namespace keel {

class shard;
class system;

// Something waiting for a CQE. complete() runs on the owning shard's thread while
// completions are reaped; it must not block. `more` is true when a multishot operation
// stays armed (IORING_CQE_F_MORE).
class completion {
 public:
  virtual void complete(int result, unsigned cqe_flags) noexcept = 0;

 protected:
  ~completion() = default;
};

inline constexpr std::uint64_t user_data_ignore = 0;  // no one waits for this CQE
inline constexpr std::uint64_t user_data_wakeup = 1;  // MSG_RING from another shard

// Statistics of one shard; written by its owner only, read by /metrics from any shard.
struct shard_stats {
  std::atomic<std::uint64_t> loop_turns{0};
  std::atomic<std::uint64_t> sleeps{0};
  std::atomic<std::uint64_t> completions{0};
  std::atomic<std::uint64_t> submissions{0};
  std::atomic<std::uint64_t> tasks_run{0};
  std::atomic<std::uint64_t> quota_exceeded{0};
  std::atomic<std::uint64_t> cross_sent{0};
  std::atomic<std::uint64_t> cross_received{0};
  std::atomic<std::uint64_t> wakeups_sent{0};
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> bytes_received{0};
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<std::uint64_t> recv_buffers_exhausted{0};
  std::atomic<std::uint64_t> http_requests{0};
  std::atomic<std::uint64_t> http_errors{0};
};

// Owner-only increment: a relaxed load and store, no locked instruction.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// A unit of work sent to another shard. run() executes on the target shard, then the
// target deletes it.
class cross_message {
 public:
  virtual ~cross_message() = default;
  virtual void run() noexcept = 0;
};

class spsc_queue;

// A provided receive buffer lent to a reader; returns to the ring when released.
class recv_buffer {
 public:
  recv_buffer() noexcept = default;
  recv_buffer(shard* owner, unsigned id, const char* data, std::size_t size) noexcept
      : _owner(owner), _id(id), _data(data), _size(size) {}
  recv_buffer(recv_buffer&& other) noexcept { *this = std::move(other); }
  recv_buffer& operator=(recv_buffer&& other) noexcept;
  recv_buffer(const recv_buffer&) = delete;
  recv_buffer& operator=(const recv_buffer&) = delete;
  ~recv_buffer() { release(); }

  const char* data() const noexcept { return _data; }
  std::size_t size() const noexcept { return _size; }
  void release() noexcept;

 private:
  shard* _owner = nullptr;
  unsigned _id = 0;
  const char* _data = nullptr;
  std::size_t _size = 0;
};

class shard {
 public:
  // The shard running on this thread, or nullptr on a thread that is not a shard.
  static shard* current() noexcept;

  unsigned id() const noexcept { return _id; }
  unsigned count() const noexcept;
  keel::system& system() noexcept { return _system; }
  shard_stats& stats() noexcept { return _stats; }

  // An SQE to fill; flushes the SQ to the kernel first if it is full. Never null.
  io_uring_sqe* get_sqe() noexcept;

  // Queues a coroutine to resume in this turn. REQUIRES: called on this shard.
  void schedule(std::coroutine_handle<> handle) noexcept { _ready.push_back(handle); }

  // Starts a detached task on this shard. REQUIRES: called on this shard.
  void spawn(task<void> work) { keel::spawn(std::move(work)); }

  // Sends a message to shard `target` (which may be this one). REQUIRES: on this shard.
  // Messages from one shard to another run in the order sent.
  void send_to(unsigned target, std::unique_ptr<cross_message> message) noexcept;

  // Runs `fn` once before every submit (used to batch sends). Returns a handle id.
  void add_pre_submit_hook(std::function<void()> fn) { _pre_submit_hooks.push_back(std::move(fn)); }

  // Registers a callback run once when the shard stops (before its ring is torn down).
  void at_stop(std::function<void()> fn) { _stop_hooks.push_back(std::move(fn)); }
  bool stopping() const noexcept { return _stop_requested; }

  // The provided-buffer group for multishot receives.
  static constexpr unsigned short recv_buffer_group = 0;
  void return_recv_buffer(unsigned id) noexcept;
  // How many buffers have gone back to the ring so far (to re-arm starved receives).
  std::uint64_t recv_buffers_returned() const noexcept { return _recv_buffers_returned; }
  recv_buffer lend_recv_buffer(unsigned id, std::size_t size) noexcept;

  // Yields to other ready tasks and pending I/O.
  auto yield() noexcept {
    struct awaiter {
      shard* self;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> handle) noexcept { self->schedule(handle); }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }

  io_uring* ring() noexcept { return _ring.get(); }

  // io_request operations submitted and not yet completed; a stopping shard waits for
  // them (up to its deadline) so that every coroutine waiting on one resumes and ends,
  // instead of being left suspended (and its frame leaked) behind an uncancellable
  // io-wq operation such as a WAL segment's fallocate.
  void note_io_started() noexcept { ++_io_waiting; }
  void note_io_finished() noexcept { --_io_waiting; }

 private:
  friend class keel::system;
  shard(keel::system& owner, unsigned id);
  ~shard();
  status setup_ring();
  status setup_recv_buffers();
  void run();
  void request_stop() noexcept { _stop_requested = true; }
  bool run_ready_tasks() noexcept;
  void drain_incoming() noexcept;
  void drain_external() noexcept;
  void flush_outgoing() noexcept;
  bool has_incoming() const noexcept;
  void submit_and_reap(bool may_sleep) noexcept;
  void reap() noexcept;
  void wake(unsigned target) noexcept;

  keel::system& _system;
  unsigned _id;
  std::unique_ptr<io_uring> _ring;
  io_uring_buf_ring* _buf_ring = nullptr;
  char* _buf_memory = nullptr;
  std::size_t _buf_ring_bytes = 0;
  std::vector<std::coroutine_handle<>> _ready;
  std::vector<std::coroutine_handle<>> _running;
  std::vector<std::function<void()>> _pre_submit_hooks;
  std::vector<std::function<void()>> _stop_hooks;
  // _incoming[i]: from shard i to this one. _outgoing[i]: from this one to shard i
  // (the same objects, seen from the two ends).
  std::vector<spsc_queue*> _incoming;
  std::vector<spsc_queue*> _outgoing;
  std::vector<std::unique_ptr<cross_message>> _spilled;  // target queue was full
  std::vector<unsigned> _spilled_target;
  alignas(64) std::atomic<bool> _sleeping{false};
  std::atomic<bool> _external_pending{false};
  std::mutex _external_mutex;
  std::vector<std::function<void()>> _external;
  bool _stop_requested = false;
  unsigned _idle_poll_microseconds = 0;
  std::uint64_t _recv_buffers_returned = 0;
  shard_stats _stats;
  std::uint64_t _io_waiting = 0;  // last: modules built before it still find the rest
};

// Options for starting the shards.
struct system_options {
  unsigned shards = 0;       // 0: one per online core
  bool pin_threads = true;   // pin shard i to the i-th allowed CPU
  // Poll this long for work before a shard blocks in io_uring_enter. It cuts the
  // cross-shard round trip from tens of microseconds to a few, but where the shards
  // share their cores with other busy processes (a load generator on a 2-core machine)
  // the spinning costs more than it saves, so the default is off. perf/RESULTS.md.
  unsigned idle_poll_microseconds = 0;
};

// All shards of the process. The thread that calls start() is not a shard: it waits
// in wait() until every shard has stopped.
class system {
 public:
  system();
  ~system();
  system(const system&) = delete;
  system& operator=(const system&) = delete;

  // Creates the shards and their rings, then runs `on_shard_start` on every shard (in
  // its own thread) before the loop begins. Fails with errc::unsupported and one clear
  // message if io_uring is refused.
  status start(const system_options& options, std::function<void(shard&)> on_shard_start);
  // Asks every shard to stop; safe from any thread and from signal-driven code.
  void stop() noexcept;
  // Blocks until every shard thread has finished.
  void wait() noexcept;

  unsigned count() const noexcept { return static_cast<unsigned>(_shards.size()); }
  shard& at(unsigned id) noexcept { return *_shards[id]; }
  // Runs `fn` on shard `id` from any thread (takes a lock; not for the data path).
  void post(unsigned id, std::function<void()> fn);

 private:
  friend class shard;
  void wake_from_outside(unsigned id) noexcept;
  std::vector<shard*> _shards;
  std::vector<std::unique_ptr<spsc_queue>> _queues;  // [from * n + to]
  std::vector<std::thread*> _threads;
  std::mutex _outside_mutex;
  std::unique_ptr<io_uring> _outside_ring;  // for MSG_RING wake-ups from non-shard threads
  std::atomic<bool> _stopping{false};
};

namespace detail {
// Runs `fn` on shard `id` of `owner`, from any thread, unless `owner` has begun to be
// destroyed: then returns false and drops `fn`. For threads that may outlive the system,
// such as an off-shard name lookup (net.cc) still waiting on DNS while keeld stops.
bool post_if_running(system& owner, unsigned id, std::function<void()> fn);
}  // namespace detail

// Probes whether io_uring with the flags keel needs can be created here.
status probe_io_uring() noexcept;

}  // namespace keel
