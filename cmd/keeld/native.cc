// native.cc — serving FlatBuffers frames on the client port. See native.h.
#include "native.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <coroutine>
#include <memory>
#include <utility>
#include <vector>

#include "keel/limits.h"
#include "keel/log.h"
#include "keel/reactor/shard.h"
#include "keel/wire/frame.h"
#include "keel/wire/health_generated.h"

namespace keel::keeld {

namespace {

// Shared by the connection loop and the request tasks it spawned: the connection is
// released only when the loop has ended and the last request task has answered.
struct native_session {
  connection* conn;
  unsigned busy = 0;
  bool loop_done = false;
  std::coroutine_handle<> reader{};  // the connection loop, waiting for busy to fall
  // The open streams' readers (in their request tasks' frames). When the connection
  // ends (EOF or error; a client that only half-closes ends its streams too, as etcd's
  // watch does when its client closes the send side) they are cancelled, so a stream
  // handler (a watch) notices and frees what it holds instead of waiting for a message
  // it could never send.
  std::vector<stream_reader*> streams{};
  void cancel_streams() {
    for (stream_reader* stream : std::exchange(streams, {})) stream->cancel();
  }
  void request_done() {
    --busy;
    if (reader && busy < limits::native_requests_in_flight_max) shard::current()->schedule(std::exchange(reader, {}));
    maybe_release();
  }
  void maybe_release() {
    if (loop_done && busy == 0) {
      conn->release();
      delete this;
    }
  }
};

void write_frame(connection* conn, wire::frame_type type, std::uint64_t id, std::uint8_t flags,
                 const std::uint8_t* data, std::size_t size) {
  std::string out;
  status appended = wire::append_frame(out, type, id, flags, data, size);
  if (!appended) {
    wire::append_error_frame(out, type, id, appended);
  }
  conn->write(out);
}

void write_error(connection* conn, wire::frame_type type, std::uint64_t id, const status& failure) {
  std::string out;
  wire::append_error_frame(out, type, id, failure);
  conn->write(out);
}

buffer health_payload(unsigned shard_count) {
  auto builder = std::make_unique<flatbuffers::FlatBufferBuilder>(64);
  auto version = builder->CreateString("0.1.0");
  builder->Finish(wire::CreateHealthResponse(*builder, true, version, shard_count));
  auto* owner = builder.release();
  return buffer(owner, [](void* p) { delete static_cast<flatbuffers::FlatBufferBuilder*>(p); },
                owner->GetBufferPointer(), owner->GetSize());
}

task<void> answer_request(native_session* session, const native_options& options,
                          wire::frame_type type, std::uint64_t id, buffer payload) {
  std::uint16_t module = 0;
  bool is_stream = false;
  connection* conn = session->conn;
  if (!options.bus->find_type(static_cast<std::uint16_t>(type), module, is_stream)) {
    write_error(conn, type, id, {errc::not_found, "no module serves message type " +
                                                      std::to_string(static_cast<unsigned>(type))});
  } else if (!is_stream) {
    task<result<message>> pending = options.bus->request(module, static_cast<std::uint16_t>(type),
                                                         std::move(payload), shard::current()->id());
    auto answer = co_await std::move(pending);
    if (!answer) {
      write_error(conn, type, id, answer.error());
    } else {
      message& m = answer.value();
      // A module may answer with its own keel.wire.Error (message_flags::error), e.g.
      // to add a grpc_code; it goes out as the error frame unchanged.
      std::uint8_t flags = wire::frame_flags::end_of_stream;
      if (m.flags & message_flags::error) flags |= wire::frame_flags::error;
      write_frame(conn, static_cast<wire::frame_type>(m.type), id, flags, m.payload.data(), m.payload.size());
    }
  } else {
    auto reader = options.bus->open_stream(module, static_cast<std::uint16_t>(type),
                                           std::move(payload), shard::current()->id());
    if (!reader) {
      write_error(conn, type, id, reader.error());
    } else {
      stream_reader* stream = &reader.value();
      session->streams.push_back(stream);
      for (;;) {
        task<result<message>> pending = stream->next();
        auto item = co_await std::move(pending);
        if (!item) {
          if (!session->loop_done) write_error(conn, type, id, item.error());
          break;
        }
        message& m = item.value();
        bool last = m.flags & message_flags::end_of_stream;
        write_frame(conn, static_cast<wire::frame_type>(m.type), id,
                    last ? wire::frame_flags::end_of_stream : wire::frame_flags::none,
                    m.payload.data(), m.payload.size());
        if (last) break;
        if (!co_await conn->drained()) break;
      }
      auto& streams = session->streams;
      streams.erase(std::remove(streams.begin(), streams.end(), stream), streams.end());
    }
  }
  session->request_done();
}

void dispatch(native_session* session, const native_options& options, const wire::frame_view& frame) {
  auto type = static_cast<wire::frame_type>(frame.header.type);
  if (type == wire::frame_type::health_request) {
    buffer answer = health_payload(options.shard_count);
    write_frame(session->conn, wire::frame_type::health_response, frame.header.request_id,
                wire::frame_flags::end_of_stream, answer.data(), answer.size());
    return;
  }
  // The decoder's view is valid only until its next call: the request gets its own copy.
  buffer payload = buffer::copy_of(frame.payload.data(), frame.payload.size());
  ++session->busy;
  spawn(answer_request(session, options, type, frame.header.request_id, std::move(payload)));
}

}  // namespace

task<void> serve_native(connection* conn, recv_buffer first, const native_options& options) {
  auto* session = new native_session{conn};
  wire::frame_decoder decoder;
  recv_buffer chunk = std::move(first);
  bool open = true;
  while (open) {
    status decoded = wire::decode_frames(decoder, chunk.data(), chunk.size(), [&](const wire::frame_view& frame) {
      dispatch(session, options, frame);
      return true;
    });
    if (!decoded) {
      log_line(log_level::warn, "native", "closing connection: " + decoded.message());
      write_error(conn, wire::frame_type::error, 0, decoded);
      open = false;
    }
    if (!open) break;
    // Back-pressure on the client: at most native_requests_in_flight_max requests of one
    // connection run at once; until one ends, nothing more is read from it.
    struct room_awaiter {
      native_session* session;
      bool await_ready() const noexcept { return session->busy < limits::native_requests_in_flight_max; }
      void await_suspend(std::coroutine_handle<> handle) noexcept { session->reader = handle; }
      void await_resume() const noexcept {}
    };
    co_await room_awaiter{session};
    chunk = co_await conn->read();
    if (chunk.size() == 0) {
      if (status truncated = decoder.finish(); !truncated && conn->error() == 0)
        log_line(log_level::warn, "native", "connection closed mid-frame: " + truncated.message());
      break;
    }
    if (conn->queued_bytes() >= limits::connection_send_buffer_bytes_max && !co_await conn->drained()) break;
  }
  session->loop_done = true;
  session->cancel_streams();
  session->maybe_release();
}

}  // namespace keel::keeld
