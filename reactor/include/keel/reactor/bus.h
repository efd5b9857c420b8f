// keel/reactor/bus.h — how modules talk: FlatBuffers messages addressed by module name.
//
// A message is an envelope (from, to, type, correlation id, flags) around one owned
// FlatBuffers buffer. The bus moves the buffer's ownership, never its bytes: a request
// to a module on another shard travels through the SPSC queue as a pointer, and the
// response comes back the same way.
//
// Registration happens while modules start (on the main thread, before the shards
// run); afterwards the handler tables are read-only and shared by every shard. A
// handler runs on the shard the request was addressed to, and must use only that
// shard's state.
//
// Streams: a stream handler gets a stream_writer and sends any number of messages, the
// last with end_of_stream. The reader side (stream_reader) lives on the requesting
// shard; it holds at most limits::bus_stream_items_max undelivered messages, and a
// writer that outruns it has its stream ended with errc::too_large rather than growing
// memory without bound.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keel/reactor/task.h"
#include "keel/status.h"

namespace keel {

// One owned FlatBuffers buffer (or any bytes). Movable, not copyable.
class buffer {
 public:
  buffer() noexcept = default;
  // Takes `data` allocated with new[].
  buffer(std::unique_ptr<std::uint8_t[]> data, std::size_t size) noexcept;
  // Takes any owner: `release(owner)` is called when the buffer dies. `data` points into
  // the owner's memory (a FlatBufferBuilder's DetachedBuffer, for example).
  buffer(void* owner, void (*release)(void*), const std::uint8_t* data, std::size_t size) noexcept
      : _owner(owner), _release(release), _data(data), _size(size) {}
  static buffer copy_of(const void* data, std::size_t size);
  buffer(buffer&& other) noexcept { *this = std::move(other); }
  buffer& operator=(buffer&& other) noexcept;
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  const std::uint8_t* data() const noexcept { return _data; }
  std::size_t size() const noexcept { return _size; }
  bool empty() const noexcept { return _size == 0; }
  void reset() noexcept;

 private:
  void* _owner = nullptr;
  void (*_release)(void*) = nullptr;
  const std::uint8_t* _data = nullptr;
  std::size_t _size = 0;
};

namespace message_flags {
inline constexpr std::uint8_t end_of_stream = 0x01;
inline constexpr std::uint8_t error = 0x02;  // payload is a keel.wire.Error
}  // namespace message_flags

struct message {
  std::uint16_t from = 0;       // module id (0 is the core)
  std::uint16_t to = 0;
  std::uint16_t type = 0;       // a wire::frame_type number
  std::uint8_t flags = 0;
  std::uint64_t correlation = 0;
  buffer payload;
};

// The receiving end of a stream, owned by the coroutine that opened it.
class stream_reader {
 public:
  stream_reader() = default;
  stream_reader(stream_reader&&) noexcept = default;
  stream_reader& operator=(stream_reader&&) noexcept = default;
  ~stream_reader();
  // The next message; an error status when the stream ended abnormally, and a message
  // with end_of_stream set as the last one of a normal stream. After the end: unavailable.
  task<result<message>> next();
  // Ends the stream from the reading side (the owner went away, e.g. its connection
  // closed): a pending or later next() returns errc::cancelled, undelivered messages are
  // dropped, and the writer's open() turns false, so a stream handler that checks it
  // stops. REQUIRES: on the reader's shard.
  void cancel();

  struct channel;  // shared with the writer, touched only on the reader's shard

 private:
  friend class bus;
  std::shared_ptr<channel> _channel;
};

// The sending end, held by a stream handler on the target shard.
class stream_writer {
 public:
  // Queues one message for the reader; false once the reader is gone or overrun.
  bool send(std::uint16_t type, buffer payload, bool end_of_stream = false);
  // Ends the stream with an error the reader sees as a status.
  void fail(status reason);
  bool open() const noexcept;

 private:
  friend class bus;
  std::shared_ptr<stream_reader::channel> _channel;
  unsigned _reader_shard = 0;
  std::uint16_t _from = 0;
  std::uint64_t _correlation = 0;
};

using bus_handler = std::function<task<result<message>>(message request)>;
using bus_stream_handler = std::function<task<void>(message request, stream_writer writer)>;

class bus {
 public:
  // Module ids: names are registered once at start-up. The core is id 0, "core".
  std::uint16_t register_module(std::string_view name);
  // 0 and false if unknown.
  bool find_module(std::string_view name, std::uint16_t& id) const;
  std::string_view module_name(std::uint16_t id) const;

  // REQUIRES: before the shards start; one handler per (module, type).
  void handle(std::string_view module, std::uint16_t type, bus_handler handler);
  void handle_stream(std::string_view module, std::uint16_t type, bus_stream_handler handler);
  // Which module answers a message type (for the native protocol, which has only types).
  bool find_type(std::uint16_t type, std::uint16_t& module, bool& is_stream) const;

  // Sends `payload` as a request of `type` to `module` on shard `target_shard` and
  // returns its response. errc::not_found when no such module or handler.
  // REQUIRES: on a shard thread.
  task<result<message>> request(std::string_view module, std::uint16_t type, buffer payload,
                                unsigned target_shard);
  task<result<message>> request(std::uint16_t module, std::uint16_t type, buffer payload,
                                unsigned target_shard);
  // Opens a stream; messages arrive through the returned reader.
  result<stream_reader> open_stream(std::uint16_t module, std::uint16_t type, buffer payload,
                                    unsigned target_shard);

 private:
  struct entry {
    std::uint16_t module;
    std::uint16_t type;
    bus_handler handler;
    bus_stream_handler stream_handler;
  };
  const entry* find(std::uint16_t module, std::uint16_t type) const;
  std::vector<std::string> _names{"core"};
  std::vector<entry> _entries;
};

}  // namespace keel
