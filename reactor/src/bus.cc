// bus.cc — request/response and streams between modules, on one shard or across.
#include "keel/reactor/bus.h"

#include <cstring>

#include "keel/limits.h"
#include "keel/reactor/cross.h"

namespace keel {

// ---------------------------------------------------------------------------------
// buffer

namespace {
void delete_array(void* owner) { delete[] static_cast<std::uint8_t*>(owner); }
}  // namespace

buffer::buffer(std::unique_ptr<std::uint8_t[]> data, std::size_t size) noexcept
    : _owner(data.get()), _release(delete_array), _data(data.get()), _size(size) {
  data.release();
}

buffer buffer::copy_of(const void* data, std::size_t size) {
  auto bytes = std::make_unique<std::uint8_t[]>(size == 0 ? 1 : size);
  if (size) std::memcpy(bytes.get(), data, size);
  return buffer(std::move(bytes), size);
}

buffer& buffer::operator=(buffer&& other) noexcept {
  if (this != &other) {
    reset();
    _owner = std::exchange(other._owner, nullptr);
    _release = std::exchange(other._release, nullptr);
    _data = std::exchange(other._data, nullptr);
    _size = std::exchange(other._size, 0);
  }
  return *this;
}

void buffer::reset() noexcept {
  if (_release) _release(_owner);
  _owner = nullptr;
  _release = nullptr;
  _data = nullptr;
  _size = 0;
}

// ---------------------------------------------------------------------------------
// streams

struct stream_reader::channel {
  std::deque<message> items;      // touched on the reader's shard only
  std::coroutine_handle<> waiter;
  status failure;
  bool ended = false;
  std::atomic<bool> reader_gone{false};  // read by the writer's shard
  std::atomic<bool> overrun{false};
};

stream_reader::~stream_reader() {
  if (_channel) _channel->reader_gone.store(true, std::memory_order_relaxed);
}

void stream_reader::cancel() {
  if (!_channel) return;
  channel& ch = *_channel;
  ch.reader_gone.store(true, std::memory_order_relaxed);
  ch.items.clear();
  if (!ch.ended) {
    ch.failure = {errc::cancelled, "stream cancelled by its reader"};
    ch.ended = true;
  }
  if (ch.waiter) shard::current()->schedule(std::exchange(ch.waiter, {}));
}

task<result<message>> stream_reader::next() {
  KEEL_ASSERT(_channel != nullptr);
  channel& ch = *_channel;
  struct awaiter {
    channel& ch;
    bool await_ready() const noexcept { return !ch.items.empty() || ch.ended; }
    void await_suspend(std::coroutine_handle<> handle) noexcept { ch.waiter = handle; }
    void await_resume() const noexcept {}
  };
  co_await awaiter{ch};
  if (!ch.items.empty()) {
    message out = std::move(ch.items.front());
    ch.items.pop_front();
    co_return out;
  }
  if (!ch.failure.is_ok()) co_return ch.failure;
  co_return status{errc::unavailable, "stream already ended"};
}

namespace {
// Runs on the reader's shard.
void deliver(const std::shared_ptr<stream_reader::channel>& ch, message item, status failure) {
  if (ch->ended) return;
  if (!failure.is_ok()) {
    ch->failure = std::move(failure);
    ch->ended = true;
  } else if (ch->items.size() >= limits::bus_stream_items_max) {
    ch->failure = {errc::too_large, "stream reader fell more than " +
                                        std::to_string(limits::bus_stream_items_max) +
                                        " messages behind; stream ended"};
    ch->ended = true;
    ch->overrun.store(true, std::memory_order_relaxed);
  } else {
    bool last = item.flags & message_flags::end_of_stream;
    ch->items.push_back(std::move(item));
    if (last) ch->ended = true;
  }
  if (ch->waiter) shard::current()->schedule(std::exchange(ch->waiter, {}));
}
}  // namespace

bool stream_writer::open() const noexcept {
  return _channel && !_channel->reader_gone.load(std::memory_order_relaxed) &&
         !_channel->overrun.load(std::memory_order_relaxed);
}

bool stream_writer::send(std::uint16_t type, buffer payload, bool end_of_stream) {
  if (!open()) return false;
  message item;
  item.from = _from;
  item.type = type;
  item.correlation = _correlation;
  item.flags = end_of_stream ? message_flags::end_of_stream : 0;
  item.payload = std::move(payload);
  auto ch = end_of_stream ? std::move(_channel) : _channel;
  if (shard::current()->id() == _reader_shard) {
    deliver(ch, std::move(item), status::ok());
  } else {
    post_to(_reader_shard, [ch = std::move(ch), item = std::move(item)]() mutable {
      deliver(ch, std::move(item), status::ok());
    });
  }
  return true;
}

void stream_writer::fail(status reason) {
  if (!_channel) return;
  auto ch = std::move(_channel);
  if (shard::current()->id() == _reader_shard) {
    deliver(ch, {}, std::move(reason));
  } else {
    post_to(_reader_shard, [ch = std::move(ch), reason = std::move(reason)]() mutable {
      deliver(ch, {}, std::move(reason));
    });
  }
}

// ---------------------------------------------------------------------------------
// bus

std::uint16_t bus::register_module(std::string_view name) {
  std::uint16_t id;
  if (find_module(name, id)) return id;
  KEEL_ASSERT(_names.size() < limits::modules_max + 1);
  _names.emplace_back(name);
  return static_cast<std::uint16_t>(_names.size() - 1);
}

bool bus::find_module(std::string_view name, std::uint16_t& id) const {
  for (std::size_t i = 0; i < _names.size(); ++i)
    if (_names[i] == name) {
      id = static_cast<std::uint16_t>(i);
      return true;
    }
  id = 0;
  return false;
}

std::string_view bus::module_name(std::uint16_t id) const {
  return id < _names.size() ? std::string_view(_names[id]) : std::string_view("?");
}

void bus::handle(std::string_view module, std::uint16_t type, bus_handler handler) {
  std::uint16_t id = register_module(module);
  KEEL_ASSERT_MSG(find(id, type) == nullptr, "two bus handlers for one (module, type)");
  _entries.push_back({id, type, std::move(handler), {}});
}

void bus::handle_stream(std::string_view module, std::uint16_t type, bus_stream_handler handler) {
  std::uint16_t id = register_module(module);
  KEEL_ASSERT_MSG(find(id, type) == nullptr, "two bus handlers for one (module, type)");
  _entries.push_back({id, type, {}, std::move(handler)});
}

const bus::entry* bus::find(std::uint16_t module, std::uint16_t type) const {
  for (const entry& e : _entries)
    if (e.module == module && e.type == type) return &e;
  return nullptr;
}

bool bus::find_type(std::uint16_t type, std::uint16_t& module, bool& is_stream) const {
  for (const entry& e : _entries)
    if (e.type == type) {
      module = e.module;
      is_stream = static_cast<bool>(e.stream_handler);
      return true;
    }
  return false;
}

namespace {
// A callable that hands the request to the handler; it owns the message until called.
auto make_handler_call(const bus_handler* handler, std::uint16_t module, std::uint16_t type,
                       buffer payload) {
  message request_message;
  request_message.to = module;
  request_message.type = type;
  request_message.payload = std::move(payload);
  return [handler, m = std::move(request_message)]() mutable { return (*handler)(std::move(m)); };
}
}  // namespace

task<result<message>> bus::request(std::string_view module, std::uint16_t type, buffer payload,
                                   unsigned target_shard) {
  std::uint16_t id;
  if (!find_module(module, id))
    co_return status{errc::not_found, "no module named \"" + std::string(module) + "\" on the bus"};
  task<result<message>> pending = request(id, type, std::move(payload), target_shard);
  co_return co_await std::move(pending);
}

task<result<message>> bus::request(std::uint16_t module, std::uint16_t type, buffer payload,
                                   unsigned target_shard) {
  const entry* target = find(module, type);
  if (!target || !target->handler)
    co_return status{errc::not_found, "module \"" + std::string(module_name(module)) +
                                          "\" has no handler for message type " + std::to_string(type)};
  KEEL_ASSERT(target_shard < shard::current()->count());
  // The call is built outside the coroutine and every awaited task is a named local:
  // GCC 12 mishandles class-type temporaries that own resources inside a co_await
  // expression (the moved-from message was destroyed as if it still owned its buffer).
  auto call = make_handler_call(&target->handler, module, type, std::move(payload));
  if (target_shard == shard::current()->id()) {
    task<result<message>> local = call();
    co_return co_await std::move(local);
  }
  // Across shards: the message (and its buffer) moves into the closure, the closure
  // moves through the queue, and the response moves back the same way.
  task<result<message>> remote = run_task_on<result<message>>(target_shard, std::move(call));
  co_return co_await std::move(remote);
}

result<stream_reader> bus::open_stream(std::uint16_t module, std::uint16_t type, buffer payload,
                                       unsigned target_shard) {
  const entry* target = find(module, type);
  if (!target || !target->stream_handler)
    return status{errc::not_found, "module \"" + std::string(module_name(module)) +
                                       "\" has no stream handler for message type " + std::to_string(type)};
  stream_reader reader;
  reader._channel = std::make_shared<stream_reader::channel>();
  stream_writer writer;
  writer._channel = reader._channel;
  writer._reader_shard = shard::current()->id();
  writer._from = module;
  message request_message;
  request_message.to = module;
  request_message.type = type;
  request_message.payload = std::move(payload);
  auto start = [target, m = std::move(request_message), w = std::move(writer)]() mutable {
    spawn(target->stream_handler(std::move(m), std::move(w)));
  };
  if (target_shard == shard::current()->id()) start();
  else post_to(target_shard, std::move(start));
  return reader;
}

}  // namespace keel
