// The fault-injecting in-memory storage of the WAL tests (LevelDB's
// fault_injection_test.cc in spirit: unsynced bytes are lost on crash).
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keel/kv/wal_memory_storage.h"

namespace keel::kv {
namespace {

// Whether the sector that a crash reaches next persists: xorshift64 over `state`, whose
// seed the test chose, so every crash is repeatable.
bool sector_persists(std::uint64_t& state) noexcept {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return (state & 1) != 0;
}

}  // namespace

memory_wal_storage::file* memory_wal_storage::find(const std::string& name) {
  auto it = _names.find(name);
  return it == _names.end() ? nullptr : &_files.at(it->second);
}

result<std::vector<std::string>> memory_wal_storage::list() {
  if (_down) return status{errc::io_error, "list: Input/output error"};
  std::vector<std::string> names;
  for (const auto& [name, handle] : _names) names.push_back(name);
  return names;
}

result<std::vector<std::byte>> memory_wal_storage::read_all(const std::string& name) {
  file* target = find(name);
  if (_down || target == nullptr) return status{errc::io_error, "read " + name + ": cannot read"};
  return target->written;
}

status memory_wal_storage::zero_and_sync(const std::string& name, std::uint64_t offset, std::uint64_t bytes) {
  file* target = find(name);
  if (_down || target == nullptr) return {errc::io_error, "write " + name + ": Input/output error"};
  if (target->written.size() < offset + bytes) target->written.resize(offset + bytes);
  std::memset(target->written.data() + offset, 0, bytes);
  target->durable = target->written;
  ++_syncs;
  return status::ok();
}

status memory_wal_storage::remove(const std::string& name) {
  if (_down || _names.erase(name) == 0) return {errc::io_error, "unlink " + name + ": failed"};
  return status::ok();
}

status memory_wal_storage::rename(const std::string& from, const std::string& to) {
  auto it = _names.find(from);
  if (_down || it == _names.end()) return {errc::io_error, "rename " + from + ": failed"};
  int handle = it->second;
  _names.erase(it);
  _names[to] = handle;
  return status::ok();
}

status memory_wal_storage::sync_directory() {
  if (_down) return {errc::io_error, "fsync directory: Input/output error"};
  _durable_names = _names;
  return status::ok();
}

result<int> memory_wal_storage::open_file(const std::string& name) {
  auto it = _names.find(name);
  if (_down || it == _names.end()) return status{errc::io_error, "open " + name + ": failed"};
  return it->second;
}

result<int> memory_wal_storage::create_file(const std::string& name) {
  if (_down) return status{errc::io_error, "create " + name + ": Input/output error"};
  if (_names.count(name) != 0) return status{errc::already_exists, "create " + name + ": File exists"};
  int handle = _next_handle++;
  _files[handle] = file{};
  _names[name] = handle;
  return handle;
}

task<int> memory_wal_storage::allocate(int handle, std::uint64_t bytes) {
  if (_down) co_return -EIO;
  if (_fail_allocate != 0) co_return -std::exchange(_fail_allocate, 0);
  file& target = _files.at(handle);
  if (target.written.size() < bytes) target.written.resize(bytes);
  co_return 0;
}

void memory_wal_storage::persist_torn(file& target, const std::byte* data, std::size_t size,
                                      std::uint64_t offset) {
  auto keep = [&](std::uint64_t from, std::uint64_t to) {  // [from, to) of the write
    if (target.durable.size() < offset + to) target.durable.resize(offset + to);
    std::memcpy(target.durable.data() + offset + from, data + from, to - from);
  };
  switch (_tear.kind) {
    case tear_kind::nothing: break;
    case tear_kind::everything: keep(0, size); break;
    case tear_kind::prefix: {
      // Disks write whole sectors: the cut falls on a sector boundary of the file.
      std::uint64_t cut = (offset + std::min<std::uint64_t>(_tear.prefix_bytes, size)) / 512 * 512;
      if (cut > offset) keep(0, cut - offset);
      break;
    }
    case tear_kind::sectors: {
      std::uint64_t state = _tear.seed | 1;
      std::uint64_t from = 0;
      while (from < size) {
        std::uint64_t to = std::min<std::uint64_t>(size, (offset + from) / 512 * 512 + 512 - offset);
        if (sector_persists(state)) keep(from, to);
        from = to;
      }
      break;
    }
  }
}

task<int> memory_wal_storage::write_then_datasync(int handle, const std::byte* data, std::size_t size,
                                                  std::uint64_t offset) {
  if (_down) co_return -EIO;
  ++_writes;
  file& target = _files.at(handle);
  if (_crash_countdown == 0) {
    // The machine dies with this write in flight: some of it may have reached the disk.
    _crash_countdown = -1;
    _down = true;
    persist_torn(target, data, size, offset);
    co_return -EIO;
  }
  if (_crash_countdown > 0) --_crash_countdown;
  if (_fail_write != 0) co_return -std::exchange(_fail_write, 0);
  // The write lands in the page cache at once, as uring_wal_storage's pwrite does; what
  // a test holds is the fdatasync, and a later one makes this write durable too.
  if (target.written.size() < offset + size) target.written.resize(offset + size);
  std::memcpy(target.written.data() + offset, data, size);
  if (_hold) {
    std::uint64_t generation = _generation;
    co_await hold_awaiter{this};
    if (generation != _generation || _down) co_return -EIO;  // the machine crashed meanwhile
  }
  if (_fail_sync != 0) co_return -std::exchange(_fail_sync, 0);
  target.durable = target.written;
  ++_syncs;
  co_return static_cast<int>(size);
}

task<void> memory_wal_storage::end_of_turn() { co_return; }

void memory_wal_storage::release_held_write() {
  KEEL_ASSERT(!_held.empty());
  std::coroutine_handle<> oldest = _held.front();
  _held.pop_front();
  oldest.resume();
}

void memory_wal_storage::release_newest_held_write() {
  KEEL_ASSERT(!_held.empty());
  std::coroutine_handle<> newest = _held.back();
  _held.pop_back();
  newest.resume();
}

void memory_wal_storage::crash() {
  _names = _durable_names;
  for (auto it = _files.begin(); it != _files.end();) {
    bool named = false;
    for (const auto& [name, handle] : _names) named = named || handle == it->first;
    if (!named) {
      it = _files.erase(it);
    } else {
      it->second.written = it->second.durable;
      ++it;
    }
  }
  _down = false;
  _crash_countdown = -1;
  _fail_write = _fail_sync = _fail_allocate = 0;
  ++_generation;  // held writes stay suspended; released, they fail and write nothing
}

void memory_wal_storage::crash_writing_back(std::uint64_t seed) {
  std::uint64_t state = seed | 1;
  for (auto& [handle, target] : _files) {
    if (target.durable.size() < target.written.size()) target.durable.resize(target.written.size());
    for (std::size_t sector = 0; sector < target.written.size(); sector += 512) {
      std::size_t end = std::min(target.written.size(), sector + 512);
      if (std::equal(target.written.begin() + sector, target.written.begin() + end, target.durable.begin() + sector))
        continue;
      if (sector_persists(state)) std::copy(target.written.begin() + sector, target.written.begin() + end, target.durable.begin() + sector);
    }
  }
  crash();
}

void memory_wal_storage::crash_during_write(std::uint64_t writes_from_now, tear how) {
  _crash_countdown = static_cast<std::int64_t>(writes_from_now);
  _tear = how;
}

void memory_wal_storage::flip_bit(const std::string& name, std::uint64_t offset, unsigned bit) {
  file* target = find(name);
  KEEL_ASSERT(target != nullptr && offset < target->written.size());
  target->written[offset] ^= std::byte(1u << bit);
  if (offset < target->durable.size()) target->durable[offset] ^= std::byte(1u << bit);
}

void memory_wal_storage::overwrite(const std::string& name, std::uint64_t offset,
                                   const std::vector<std::byte>& bytes) {
  file* target = find(name);
  KEEL_ASSERT(target != nullptr);
  for (auto* view : {&target->written, &target->durable}) {
    if (view->size() < offset + bytes.size()) view->resize(offset + bytes.size());
    std::memcpy(view->data() + offset, bytes.data(), bytes.size());
  }
}

}  // namespace keel::kv
