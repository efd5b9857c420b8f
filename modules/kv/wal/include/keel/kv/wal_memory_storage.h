// keel/kv/wal_memory_storage.h — an in-memory, fault-injecting wal_storage for tests.
//
// It keeps, per file, the bytes "written" (what reads see now: the page cache) and the
// bytes "durable" (what survives a crash: made so by a completed write_then_datasync or
// zero_and_sync), and, for the directory, the names now and the names as of the last
// sync_directory(). crash() throws away everything not durable, as a power cut does.
//
// Faults:
//   - crash_during_write(n, tear): the n-th write_then_datasync from now (0 = the next)
//     is where the machine dies. Part of its bytes may reach the disk: none, a prefix cut
//     at the last sector boundary before a chosen byte, or a random subset of its
//     512-byte sectors (a disk writes a sector whole or not at all). It and every later
//     operation fail with -EIO until crash() is called, so nothing after it is
//     acknowledged.
//   - fail_next_write(errno): the next write_then_datasync fails before writing.
//   - fail_next_sync(errno): the next write lands in "written" but its fdatasync fails.
//   - fail_next_allocate(errno).
//   - flip_bit(name, offset, bit) and overwrite(name, offset, bytes): damage both views.
//   - crash_writing_back(seed): a power cut while held writes' sectors are being written
//     back: each persists whole or not at all.
//   - hold_writes(true): write_then_datasync writes (into "written", as a pwrite fills
//     the page cache) and then suspends before its fdatasync until release_held_write()
//     (oldest first) or release_newest_held_write(), so a test can append and commit
//     while batches are in flight and complete them out of order. As with a real page
//     cache, an fdatasync makes every write before it durable, held or not. A write held
//     across crash() fails with EIO when released (it was lost with the machine).
// Everything completes synchronously otherwise, so tests drive tasks without a reactor.
// Single-threaded.
#pragma once

#include <cstdint>
#include <coroutine>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "keel/kv/wal.h"

namespace keel::kv {

class memory_wal_storage final : public wal_storage {
 public:
  enum class tear_kind { nothing, prefix, sectors, everything };
  struct tear {
    tear_kind kind = tear_kind::nothing;
    std::uint64_t prefix_bytes = 0;  // prefix: at most this many bytes persist, to a sector boundary
    std::uint64_t seed = 1;          // sectors: which ones persist
  };

  memory_wal_storage() = default;

  result<std::vector<std::string>> list() override;
  result<std::vector<std::byte>> read_all(const std::string& name) override;
  status zero_and_sync(const std::string& name, std::uint64_t offset, std::uint64_t bytes) override;
  status remove(const std::string& name) override;
  status rename(const std::string& from, const std::string& to) override;
  status sync_directory() override;
  std::string describe(const std::string& name) const override { return name; }

  result<int> open_file(const std::string& name) override;
  result<int> create_file(const std::string& name) override;
  void close_file(int file) noexcept override {}
  task<int> allocate(int file, std::uint64_t bytes) override;
  task<int> write_then_datasync(int file, const std::byte* data, std::size_t size,
                                std::uint64_t offset) override;
  task<void> end_of_turn() override;

  // Faults.
  void crash();
  // A power cut with writes in the page cache not yet made durable (held fdatasyncs): each
  // 512-byte sector whose page-cache bytes differ from the durable ones reaches the disk as
  // it is in the page cache or not at all (a pseudo-random choice from `seed`); then
  // crash().
  void crash_writing_back(std::uint64_t seed);
  void crash_during_write(std::uint64_t writes_from_now, tear how);
  void fail_next_write(int error) { _fail_write = error; }
  void fail_next_sync(int error) { _fail_sync = error; }
  void fail_next_allocate(int error) { _fail_allocate = error; }
  void flip_bit(const std::string& name, std::uint64_t offset, unsigned bit);
  void overwrite(const std::string& name, std::uint64_t offset, const std::vector<std::byte>& bytes);
  void hold_writes(bool hold) { _hold = hold; }
  bool has_held_write() const noexcept { return !_held.empty(); }
  std::size_t held_writes() const noexcept { return _held.size(); }
  // REQUIRES: has_held_write(). Resumes the oldest held write, which then completes
  // normally; release_newest_held_write() resumes the newest (out of order).
  void release_held_write();
  void release_newest_held_write();

  bool down() const noexcept { return _down; }
  std::uint64_t writes() const noexcept { return _writes; }
  std::uint64_t syncs() const noexcept { return _syncs; }

 private:
  struct file {
    std::vector<std::byte> written;
    std::vector<std::byte> durable;
  };
  struct hold_awaiter {
    memory_wal_storage* self;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle) { self->_held.push_back(handle); }
    void await_resume() const noexcept {}
  };
  file* find(const std::string& name);
  void persist_torn(file& target, const std::byte* data, std::size_t size, std::uint64_t offset);

  std::map<int, file> _files;
  std::map<std::string, int> _names;
  std::map<std::string, int> _durable_names;
  int _next_handle = 1;

  bool _down = false;
  std::int64_t _crash_countdown = -1;
  tear _tear;
  int _fail_write = 0;
  int _fail_sync = 0;
  int _fail_allocate = 0;
  bool _hold = false;
  std::deque<std::coroutine_handle<>> _held;
  std::uint64_t _generation = 0;  // crash() count: a held write from before a crash fails
  std::uint64_t _writes = 0;
  std::uint64_t _syncs = 0;
};

}  // namespace keel::kv
