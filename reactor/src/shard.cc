// shard.cc — the per-core loop. Read shard.h first: it lists the loop's steps in order.
//
// Everything that talks to the kernel's io_uring interface directly is in this file and
// in io.cc; constants newer than liburing 2.3's headers are defined here.
#include "keel/reactor/shard.h"

#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "keel/limits.h"

#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)  // kernel 5.19; liburing 2.3 lacks the constant
#endif

namespace keel {

// One producer shard, one consumer shard. The producer writes slots and publishes them
// by storing `tail` with release; the consumer reads up to `tail` (acquire) and frees
// the slots by storing `head`. Head and tail sit on separate cache lines.
class spsc_queue {
 public:
  static constexpr unsigned capacity = limits::cross_shard_queue_items;

  // Producer side: stage a message; it is visible only after publish().
  bool try_stage(cross_message* message) noexcept {
    unsigned tail = _tail_staged;
    if (tail - _head_cached == capacity) {
      _head_cached = _head.load(std::memory_order_acquire);
      if (tail - _head_cached == capacity) return false;
    }
    _slots[tail & (capacity - 1)] = message;
    _tail_staged = tail + 1;
    return true;
  }
  unsigned staged() const noexcept { return _tail_staged - _tail.load(std::memory_order_relaxed); }
  void publish() noexcept { _tail.store(_tail_staged, std::memory_order_release); }

  // After every shard has stopped: frees what was published but never run (a message
  // sent to a shard that had already left its loop) and what was staged but never
  // published. The work they carried is dropped; the process is shutting down.
  void discard() noexcept {
    for (unsigned at = _head.load(std::memory_order_relaxed); at != _tail_staged; ++at)
      delete _slots[at & (capacity - 1)];
    _head.store(_tail_staged, std::memory_order_relaxed);
    _tail.store(_tail_staged, std::memory_order_relaxed);
  }

  // Consumer side.
  bool empty() const noexcept {
    return _head.load(std::memory_order_relaxed) == _tail.load(std::memory_order_acquire);
  }
  // Runs every published message; returns how many ran.
  unsigned drain() noexcept {
    unsigned head = _head.load(std::memory_order_relaxed);
    unsigned tail = _tail.load(std::memory_order_acquire);
    unsigned ran = 0;
    while (head != tail) {
      cross_message* message = _slots[head & (capacity - 1)];
      ++head;
      ++ran;
      message->run();
      delete message;
      // Free the slots in batches so the producer sees room without a store per item.
      if ((ran & (limits::cross_shard_batch_items - 1)) == 0)
        _head.store(head, std::memory_order_release);
    }
    _head.store(head, std::memory_order_release);
    return ran;
  }

 private:
  cross_message* _slots[capacity] = {};
  alignas(64) std::atomic<unsigned> _head{0};
  alignas(64) std::atomic<unsigned> _tail{0};
  alignas(64) unsigned _tail_staged = 0;  // producer-private
  unsigned _head_cached = 0;              // producer-private
};

namespace {
thread_local shard* t_current = nullptr;

std::string errno_text(int error) { return std::strerror(error); }

// The flags every shard ring is created with; see DESIGN.md "The reactor".
constexpr unsigned ring_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
                                IORING_SETUP_TASKRUN_FLAG;

int create_ring(io_uring* ring, unsigned flags) {
  io_uring_params params{};
  params.flags = flags;
  params.cq_entries = limits::uring_cq_entries;
  return io_uring_queue_init_params(limits::uring_sq_entries, ring, &params);
}

std::string ring_refused_message(int error) {
  return "io_uring is not available: io_uring_setup failed: " + errno_text(error) +
         " (keeld needs Linux >= 6.1 with io_uring enabled; check "
         "/proc/sys/kernel/io_uring_disabled and any seccomp policy)";
}
}  // namespace

// ---------------------------------------------------------------------------------
// recv_buffer

recv_buffer& recv_buffer::operator=(recv_buffer&& other) noexcept {
  if (this != &other) {
    release();
    _owner = std::exchange(other._owner, nullptr);
    _id = other._id;
    _data = other._data;
    _size = other._size;
  }
  return *this;
}

void recv_buffer::release() noexcept {
  if (_owner) _owner->return_recv_buffer(_id);
  _owner = nullptr;
}

// ---------------------------------------------------------------------------------
// shard

shard* shard::current() noexcept { return t_current; }
unsigned shard::count() const noexcept { return _system.count(); }

shard::shard(keel::system& owner, unsigned id) : _system(owner), _id(id), _ring(new io_uring{}) {
  _ready.reserve(1024);
  _running.reserve(1024);
}

shard::~shard() {
  if (_buf_ring) {
    munmap(_buf_ring, _buf_ring_bytes);
    std::free(_buf_memory);
  }
}

status shard::setup_ring() {
  int rc = create_ring(_ring.get(), ring_flags);
  if (rc < 0) return {errc::unsupported, ring_refused_message(-rc)};
  io_uring_register_ring_fd(_ring.get());  // an optimisation; failure is harmless
  return setup_recv_buffers();
}

status shard::setup_recv_buffers() {
  constexpr unsigned count = limits::recv_buffer_count;
  _buf_ring_bytes = count * sizeof(io_uring_buf);
  void* mapped = mmap(nullptr, _buf_ring_bytes, PROT_READ | PROT_WRITE,
                      MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mapped == MAP_FAILED) return {errc::io_error, "mmap of the buffer ring: " + errno_text(errno)};
  _buf_ring = static_cast<io_uring_buf_ring*>(mapped);
  _buf_memory = static_cast<char*>(std::aligned_alloc(4096, std::size_t{count} * limits::recv_buffer_bytes));
  KEEL_ASSERT(_buf_memory != nullptr);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(_buf_ring);
  reg.ring_entries = count;
  reg.bgid = recv_buffer_group;
  int rc = io_uring_register_buf_ring(_ring.get(), &reg, 0);
  if (rc < 0)
    return {errc::unsupported, "io_uring provided-buffer rings are not available: " + errno_text(-rc)};
  io_uring_buf_ring_init(_buf_ring);
  for (unsigned i = 0; i < count; ++i)
    io_uring_buf_ring_add(_buf_ring, _buf_memory + std::size_t{i} * limits::recv_buffer_bytes,
                          limits::recv_buffer_bytes, static_cast<unsigned short>(i), count - 1, static_cast<int>(i));
  io_uring_buf_ring_advance(_buf_ring, static_cast<int>(count));
  return status::ok();
}

void shard::return_recv_buffer(unsigned id) noexcept {
  KEEL_ASSERT(id < limits::recv_buffer_count);
  io_uring_buf_ring_add(_buf_ring, _buf_memory + std::size_t{id} * limits::recv_buffer_bytes,
                        limits::recv_buffer_bytes, static_cast<unsigned short>(id),
                        limits::recv_buffer_count - 1, 0);
  io_uring_buf_ring_advance(_buf_ring, 1);
  ++_recv_buffers_returned;
}

recv_buffer shard::lend_recv_buffer(unsigned id, std::size_t size) noexcept {
  KEEL_ASSERT(id < limits::recv_buffer_count && size <= limits::recv_buffer_bytes);
  return recv_buffer(this, id, _buf_memory + std::size_t{id} * limits::recv_buffer_bytes, size);
}

io_uring_sqe* shard::get_sqe() noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(_ring.get());
  if (!sqe) {
    // The SQ is full: hand what we have to the kernel and take a fresh slot.
    io_uring_submit(_ring.get());
    sqe = io_uring_get_sqe(_ring.get());
    KEEL_ASSERT_MSG(sqe != nullptr, "io_uring SQ still full after submit");
  }
  return sqe;
}

void shard::send_to(unsigned target, std::unique_ptr<cross_message> message) noexcept {
  KEEL_ASSERT(t_current == this && target < count());
  bump(_stats.cross_sent);
  if (!_spilled.empty() || !_outgoing[target]->try_stage(message.get())) {
    // The target's queue is full: keep the order by spilling every later message too.
    _spilled.push_back(std::move(message));
    _spilled_target.push_back(target);
    return;
  }
  message.release();
  if (_outgoing[target]->staged() >= limits::cross_shard_batch_items) {
    _outgoing[target]->publish();
    wake(target);
  }
}

void shard::wake(unsigned target) noexcept {
  if (target == _id) return;
  shard& other = _system.at(target);
  // Pairs with the fence in submit_and_reap(): either the target sees our published
  // messages when it re-checks its queues, or we see that it is sleeping.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!other._sleeping.load(std::memory_order_relaxed)) return;
  if (!other._sleeping.exchange(false, std::memory_order_acq_rel)) return;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_msg_ring(sqe, other._ring->ring_fd, 0, user_data_wakeup, 0);
  io_uring_sqe_set_data64(sqe, user_data_ignore);
  bump(_stats.wakeups_sent);
}

void shard::flush_outgoing() noexcept {
  if (!_spilled.empty()) {
    std::size_t kept = 0;
    bool blocked = false;
    for (std::size_t i = 0; i < _spilled.size(); ++i) {
      if (!blocked && _outgoing[_spilled_target[i]]->try_stage(_spilled[i].get())) {
        _spilled[i].release();
        continue;
      }
      blocked = true;  // keep order: once one is stuck, everything after it waits
      _spilled[kept] = std::move(_spilled[i]);
      _spilled_target[kept] = _spilled_target[i];
      ++kept;
    }
    _spilled.resize(kept);
    _spilled_target.resize(kept);
  }
  for (unsigned target = 0; target < count(); ++target) {
    if (_outgoing[target]->staged() == 0) continue;
    _outgoing[target]->publish();
    wake(target);
  }
}

bool shard::has_incoming() const noexcept {
  for (spsc_queue* queue : _incoming)
    if (!queue->empty()) return true;
  return false;
}

void shard::drain_incoming() noexcept {
  for (spsc_queue* queue : _incoming) {
    if (queue->empty()) continue;
    bump(_stats.cross_received, queue->drain());
  }
}

void shard::drain_external() noexcept {
  if (!_external_pending.load(std::memory_order_acquire)) return;
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(_external_mutex);
    work.swap(_external);
    _external_pending.store(false, std::memory_order_relaxed);
  }
  for (auto& fn : work) fn();
}

bool shard::run_ready_tasks() noexcept {
  // Runs what was ready at the start of the turn plus what they make ready, until the
  // quota is spent; the rest waits for the next turn so I/O is polled in between.
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::microseconds(limits::task_quota_microseconds);
  std::uint64_t ran = 0;
  std::uint64_t checked_at = 0;
  while (!_ready.empty()) {
    _running.swap(_ready);
    for (std::size_t i = 0; i < _running.size(); ++i) {
      _running[i].resume();
      ++ran;
    }
    _running.clear();
    if (ran - checked_at >= 64 && (checked_at = ran, clock::now() > deadline)) {
      bump(_stats.quota_exceeded);
      break;
    }
  }
  bump(_stats.tasks_run, ran);
  return !_ready.empty();
}

void shard::reap() noexcept {
  io_uring_cqe* cqe;
  unsigned head;
  unsigned seen = 0;
  io_uring_for_each_cqe(_ring.get(), head, cqe) {
    ++seen;
    std::uint64_t data = io_uring_cqe_get_data64(cqe);
    if (data == user_data_ignore || data == user_data_wakeup) continue;
    reinterpret_cast<completion*>(data)->complete(cqe->res, cqe->flags);
  }
  io_uring_cq_advance(_ring.get(), seen);
  bump(_stats.completions, seen);
}

void shard::submit_and_reap(bool may_sleep) noexcept {
  if (may_sleep && _idle_poll_microseconds > 0) {
    // Poll a little before sleeping: a completion that lands within the window is taken
    // without a context switch. The window is short so a shard that shares its core
    // with other work does not starve it.
    io_uring_submit_and_get_events(_ring.get());
    reap();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::microseconds(_idle_poll_microseconds);
    // Cross-shard queues are plain memory and cost nothing to check; the ring is
    // entered (a syscall) only every 16th check.
    for (unsigned spin = 1; _ready.empty() && !has_incoming(); ++spin) {
      if ((spin & 15) == 0) {
        io_uring_get_events(_ring.get());
        reap();
        if (std::chrono::steady_clock::now() >= deadline) break;
      }
      __builtin_ia32_pause();
    }
    if (!_ready.empty() || has_incoming()) return;
  }
  if (may_sleep) {
    _sleeping.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (has_incoming() || _external_pending.load(std::memory_order_relaxed)) {
      _sleeping.store(false, std::memory_order_relaxed);
      may_sleep = false;
    }
  }
  int rc;
  do {
    rc = may_sleep ? io_uring_submit_and_wait(_ring.get(), 1)
                   : io_uring_submit_and_get_events(_ring.get());
  } while (rc == -EINTR);
  if (rc < 0 && rc != -EBUSY && rc != -EAGAIN && rc != -ETIME)
    KEEL_PANIC(("io_uring_enter: " + errno_text(-rc)).c_str());
  if (rc > 0) bump(_stats.submissions, static_cast<std::uint64_t>(rc));
  if (may_sleep) {
    bump(_stats.sleeps);
    _sleeping.store(false, std::memory_order_relaxed);
  }
  reap();
}

void shard::run() {
  t_current = this;
  bool stop_hooks_ran = false;
  std::chrono::steady_clock::time_point stop_deadline{};
  for (;;) {
    bump(_stats.loop_turns);
    drain_external();
    drain_incoming();
    bool more = run_ready_tasks();
    for (auto& hook : _pre_submit_hooks) hook();
    if (_stop_requested && !stop_hooks_ran) {
      // Stop: listeners and connections close themselves in their hooks; everything
      // still waiting on the ring is cancelled, so every waiter resumes and ends.
      stop_hooks_ran = true;
      stop_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(800);
      for (auto& hook : _stop_hooks) hook();
      more = true;
    }
    if (stop_hooks_ran) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, user_data_ignore);
      flush_outgoing();
      submit_and_reap(false);
      if (_ready.empty() && !has_incoming()) {
        // One short wait lets cancelled operations post their completions.
        __kernel_timespec wait{0, 5'000'000};
        io_uring_cqe* cqe = nullptr;
        io_uring_submit_and_wait_timeout(_ring.get(), &cqe, 1, &wait, nullptr);
        reap();
        if (_ready.empty() && !has_incoming() && _io_waiting == 0) break;
      }
      if (std::chrono::steady_clock::now() > stop_deadline) break;
      continue;
    }
    flush_outgoing();
    // Messages still spilled wait for room in a full queue: poll instead of sleeping,
    // since the consumer does not wake producers when it frees slots.
    submit_and_reap(!more && _ready.empty() && _spilled.empty());
  }
  _pre_submit_hooks.clear();
  io_uring_queue_exit(_ring.get());
  t_current = nullptr;
}

// ---------------------------------------------------------------------------------
// system

namespace {
// The systems not yet being destroyed, for post_if_running from threads that may outlive
// theirs. A process has one system (tests a few in turn), so a set under a lock is enough.
// Never destroyed: a lookup thread may still call in while the process exits.
std::mutex& running_systems_mutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
std::vector<system*>& running_systems() {
  static auto* systems = new std::vector<system*>;
  return *systems;
}
}  // namespace

bool detail::post_if_running(system& owner, unsigned id, std::function<void()> fn) {
  std::lock_guard lock(running_systems_mutex());
  auto& systems = running_systems();
  if (std::find(systems.begin(), systems.end(), &owner) == systems.end()) return false;
  owner.post(id, std::move(fn));
  return true;
}

system::system() {
  std::lock_guard lock(running_systems_mutex());
  running_systems().push_back(this);
}

system::~system() {
  {
    std::lock_guard lock(running_systems_mutex());
    std::erase(running_systems(), this);
  }
  stop();
  wait();
  for (auto& queue : _queues) queue->discard();
  for (shard* s : _shards) delete s;
  if (_outside_ring) io_uring_queue_exit(_outside_ring.get());
}

status probe_io_uring() noexcept {
  io_uring ring{};
  int rc = create_ring(&ring, ring_flags);
  if (rc < 0) return {errc::unsupported, ring_refused_message(-rc)};
  io_uring_queue_exit(&ring);
  return status::ok();
}

status system::start(const system_options& options,
                     std::function<void(shard&)> on_shard_start) {
  KEEL_ASSERT(_shards.empty());
  if (status probe = probe_io_uring(); !probe) return probe;
  unsigned n = options.shards;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof(allowed), &allowed);
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  if (n == 0) n = static_cast<unsigned>(cpus.size());
  if (n == 0) n = 1;
  if (n > limits::shards_max)
    return {errc::invalid_argument, "shards: " + std::to_string(n) + " is more than the limit " +
                                        std::to_string(limits::shards_max)};

  _outside_ring.reset(new io_uring{});
  if (int rc = io_uring_queue_init(8, _outside_ring.get(), 0); rc < 0) {
    _outside_ring.reset();
    return {errc::unsupported, ring_refused_message(-rc)};
  }
  for (unsigned i = 0; i < n * n; ++i) _queues.push_back(std::make_unique<spsc_queue>());
  for (unsigned i = 0; i < n; ++i) {
    _shards.push_back(new shard(*this, i));
    _shards.back()->_idle_poll_microseconds = options.idle_poll_microseconds;
  }
  for (unsigned i = 0; i < n; ++i) {
    for (unsigned j = 0; j < n; ++j) {
      _shards[i]->_incoming.push_back(_queues[j * n + i].get());
      _shards[i]->_outgoing.push_back(_queues[i * n + j].get());
    }
  }

  // Each ring is created by its own thread (SINGLE_ISSUER binds the ring to the task
  // that creates it). The starter waits until every shard reports its setup result;
  // the shared state outlives start() because threads still leave the wait after it.
  struct setup_state {
    std::mutex mutex;
    std::condition_variable changed;
    unsigned reported = 0;
    bool go = false;
    status first_failure;
    std::function<void(shard&)> on_start;
  };
  auto setup = std::make_shared<setup_state>();
  setup->on_start = std::move(on_shard_start);
  for (unsigned i = 0; i < n; ++i) {
    int cpu = options.pin_threads && !cpus.empty() ? cpus[i % cpus.size()] : -1;
    _threads.push_back(new std::thread([this, i, cpu, setup] {
      std::string name = "keel-shard-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
      }
      status ring_setup = _shards[i]->setup_ring();
      bool failed;
      {
        std::unique_lock lock(setup->mutex);
        if (!ring_setup && setup->first_failure.is_ok()) setup->first_failure = ring_setup;
        ++setup->reported;
        setup->changed.notify_all();
        setup->changed.wait(lock, [&] { return setup->go; });
        failed = !setup->first_failure.is_ok();
      }
      if (failed) {
        if (ring_setup) io_uring_queue_exit(_shards[i]->_ring.get());
        return;
      }
      t_current = _shards[i];
      if (setup->on_start) setup->on_start(*_shards[i]);
      _shards[i]->run();
    }));
  }
  status failure;
  {
    std::unique_lock lock(setup->mutex);
    setup->changed.wait(lock, [&] { return setup->reported == n; });
    setup->go = true;
    failure = setup->first_failure;
    setup->changed.notify_all();
  }
  if (!failure.is_ok()) {
    wait();
    return failure;
  }
  return status::ok();
}

void system::post(unsigned id, std::function<void()> fn) {
  KEEL_ASSERT(id < _shards.size());
  shard& target = *_shards[id];
  {
    std::lock_guard lock(target._external_mutex);
    target._external.push_back(std::move(fn));
    target._external_pending.store(true, std::memory_order_release);
  }
  if (shard::current() == &target) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (target._sleeping.exchange(false, std::memory_order_acq_rel)) wake_from_outside(id);
}

void system::wake_from_outside(unsigned id) noexcept {
  // Not the data path: a shared ring under a lock, used for start-up, tests and stop.
  std::lock_guard lock(_outside_mutex);
  io_uring_sqe* sqe = io_uring_get_sqe(_outside_ring.get());
  KEEL_ASSERT(sqe != nullptr);
  io_uring_prep_msg_ring(sqe, _shards[id]->_ring->ring_fd, 0, user_data_wakeup, 0);
  io_uring_sqe_set_data64(sqe, user_data_ignore);
  io_uring_submit(_outside_ring.get());
  io_uring_cqe* cqe;
  if (io_uring_wait_cqe(_outside_ring.get(), &cqe) == 0) io_uring_cqe_seen(_outside_ring.get(), cqe);
}

void system::stop() noexcept {
  if (_shards.empty() || _stopping.exchange(true)) return;
  for (unsigned i = 0; i < _shards.size(); ++i) {
    shard* target = _shards[i];
    post(i, [target] { target->request_stop(); });
  }
}

void system::wait() noexcept {
  for (std::thread* thread : _threads) {
    if (thread->joinable()) thread->join();
    delete thread;
  }
  _threads.clear();
}

}  // namespace keel
