// keel/kv/client.h — a small blocking client for keeld's native kv protocol.
//
// What it is for: keelctl's v3 verbs and tests. One client is one TCP connection to one
// endpoint speaking native frames (docs/formats/frame.md) that carry kv.fbs messages
// (keel/kv/native_codec.h). It uses plain POSIX sockets and poll(): no reactor, no
// threads. It is not thread-safe: one thread uses one client.
//
// Pipelining: send_*() queues a request and returns at once with its id (a pending<R>);
// wait() blocks until that id's answer has come. Any number of requests may be in flight;
// answers are matched by request id whatever order they come back in, and answers that
// arrive while waiting for another are kept until asked for. The blocking calls (put(),
// range(), ...) are send + wait.
//
// Watches: watch() opens a stream (one request id, many WatchResponse frames) and returns
// a watch_stream once the server has confirmed it (created); next() reads it, cancel()
// ends it. A stream belongs to its client and must not outlive it.
//
// Errors come back as client_error values, never exceptions:
//   - the server refused the request: code is keel's errc from the error frame, grpc_code
//     etcd's gRPC code (3 InvalidArgument, 5 NotFound, 11 OutOfRange, ...) and message
//     etcd's text ("etcdserver: mvcc: required revision has been compacted");
//   - the endpoint could not be reached: errc::unavailable, "dial tcp 127.0.0.1:2379:
//     connect: connection refused" (Go's wording, which etcdctl prints);
//   - no answer within the timeout: errc::timed_out, "context deadline exceeded" (the id
//     is forgotten; a late answer is dropped);
//   - the connection broke or the server sent a bad frame: errc::unavailable /
//     errc::corruption naming the endpoint; every later call fails the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "keel/kv/native_codec.h"
#include "keel/status.h"
#include "keel/wire/frame.h"

namespace keel::kv {

struct client_error {
  errc code = errc::ok;
  std::uint16_t grpc_code = 0;  // 0: not an error the server reported
  std::string message;
};

template <typename T>
class [[nodiscard]] client_result {
 public:
  client_result(T value) : _state(std::move(value)) {}
  client_result(client_error failure) : _state(std::move(failure)) {}
  bool is_ok() const noexcept { return _state.index() == 0; }
  explicit operator bool() const noexcept { return is_ok(); }
  T& value() & { KEEL_ASSERT(is_ok()); return std::get<0>(_state); }
  T&& value() && { KEEL_ASSERT(is_ok()); return std::get<0>(std::move(_state)); }
  T* operator->() { return &value(); }
  // REQUIRES: !is_ok().
  const client_error& error() const { KEEL_ASSERT(!is_ok()); return std::get<1>(_state); }

 private:
  std::variant<T, client_error> _state;
};

struct client_options {
  std::chrono::milliseconds dial_timeout{2000};     // connect()
  std::chrono::milliseconds request_timeout{5000};  // default wait() for one answer
};

// A request in flight; wait() turns it into its Response.
template <typename Response>
struct pending {
  std::uint64_t id = 0;
};

// "127.0.0.1:2379", "http://127.0.0.1:2379", "[::1]:2379", "localhost" (port 2379).
struct client_endpoint {
  std::string host;  // without IPv6 brackets
  std::uint16_t port = 2379;
  std::string text() const;  // "host:port" ("[::1]:2379")
};
client_result<client_endpoint> parse_client_endpoint(std::string_view text);

class watch_stream;

class client {
 public:
  static client_result<std::unique_ptr<client>> connect(std::string_view endpoint, client_options options = {});
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  const std::string& endpoint() const noexcept { return _endpoint; }
  const client_options& options() const noexcept { return _options; }

  // ---- one request, one answer (send + wait) ----
  client_result<native::range_response> range(const range_request& request, bool serializable = false);
  client_result<native::put_response> put(const put_request& request);
  client_result<native::delete_range_response> delete_range(const delete_range_request& request);
  client_result<native::txn_response> txn(const txn_request& request);
  client_result<native::compaction_response> compact(std::int64_t revision, bool physical = false);
  client_result<native::lease_grant_response> lease_grant(std::int64_t ttl_seconds, std::int64_t id = 0);
  client_result<native::lease_revoke_response> lease_revoke(std::int64_t id);
  client_result<native::lease_keep_alive_response> lease_keep_alive(std::int64_t id);
  client_result<native::lease_time_to_live_response> lease_time_to_live(std::int64_t id, bool keys = false);
  client_result<native::lease_leases_response> lease_leases();

  // ---- pipelining ----
  client_result<pending<native::range_response>> send_range(const range_request& request, bool serializable = false);
  client_result<pending<native::put_response>> send_put(const put_request& request);
  client_result<pending<native::delete_range_response>> send_delete_range(const delete_range_request& request);
  client_result<pending<native::txn_response>> send_txn(const txn_request& request);
  client_result<pending<native::compaction_response>> send_compact(std::int64_t revision, bool physical = false);
  client_result<pending<native::lease_grant_response>> send_lease_grant(std::int64_t ttl_seconds, std::int64_t id = 0);
  client_result<pending<native::lease_revoke_response>> send_lease_revoke(std::int64_t id);
  client_result<pending<native::lease_keep_alive_response>> send_lease_keep_alive(std::int64_t id);
  client_result<pending<native::lease_time_to_live_response>> send_lease_time_to_live(std::int64_t id, bool keys);
  client_result<pending<native::lease_leases_response>> send_lease_leases();

  // Waits for the answer to `request` (options().request_timeout when `timeout` is unset).
  template <typename Response>
  client_result<Response> wait(pending<Response> request,
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    auto frame = wait_frame(request.id, timeout.value_or(_options.request_timeout));
    if (!frame) return frame.error();
    Response out;
    if (auto failure = decode_answer(frame.value(), out)) return *failure;
    return out;
  }

  // ---- watches ----
  // Opens a watch and waits for the server's "created" answer. A watch the server refuses
  // at once (a compacted start revision, a bad key) comes back as a stream whose first
  // response is canceled, not as an error, as with etcd.
  client_result<std::unique_ptr<watch_stream>> watch(const native::watch_create_request& request);

  // ---- raw frames (what the typed calls are made of) ----
  struct frame {
    wire::frame_type type = wire::frame_type::error;
    std::uint8_t flags = 0;
    std::vector<std::uint64_t> words;  // 8-byte aligned payload storage
    std::size_t size = 0;
    std::span<const std::uint8_t> payload() const noexcept {
      return {reinterpret_cast<const std::uint8_t*>(words.data()), size};
    }
    bool end_of_stream() const noexcept { return (flags & wire::frame_flags::end_of_stream) != 0; }
    bool is_error() const noexcept { return (flags & wire::frame_flags::error) != 0; }
  };
  // Queues one request frame built in `builder`; returns its id. Queued bytes go out when
  // 64 KiB have gathered, at flush(), or when anything waits.
  client_result<std::uint64_t> send_frame(wire::frame_type type, const flatbuffers::FlatBufferBuilder& builder);
  // Sends everything queued (reading answers meanwhile, so a full socket never deadlocks).
  std::optional<client_error> flush();
  // The next frame for `id`; timed_out after `timeout` (0: forever). After the id's last
  // frame (end_of_stream) it is unknown again.
  client_result<frame> wait_frame(std::uint64_t id, std::chrono::milliseconds timeout);
  // As wait_frame, but nullopt (not an error) when the timeout passes; the id stays open.
  client_result<std::optional<frame>> poll_frame(std::uint64_t id, std::chrono::milliseconds timeout);
  // Stops expecting frames for `id`: those already kept and any that arrive are dropped.
  void forget(std::uint64_t id);
  // An error frame's content as a client_error, and a decode failure as corruption.
  template <typename Response>
  std::optional<client_error> decode_answer(const frame& f, Response& out) {
    if (f.is_error()) return error_of(f);
    status decoded = native::decode_payload(f.type, f.payload(), out);
    if (!decoded) return client_error{errc::corruption, 0, _endpoint + ": " + decoded.message()};
    return std::nullopt;
  }
  client_error error_of(const frame& f) const;

 private:
  client(int fd, std::string endpoint, client_options options);
  template <typename Response>
  client_result<pending<Response>> send_built(wire::frame_type type) {
    auto id = send_frame(type, _builder);
    if (!id) return id.error();
    return pending<Response>{id.value()};
  }
  // Reads what the socket has (waiting at most until `deadline`) and files the frames.
  std::optional<client_error> pump(std::chrono::steady_clock::time_point deadline, bool forever);
  void file(const wire::frame_view& frame);
  client_error broken(errc code, std::string message);

  int _fd;
  std::string _endpoint;
  client_options _options;
  flatbuffers::FlatBufferBuilder _builder{1024};
  wire::frame_decoder _decoder;
  std::string _out;
  std::uint64_t _next_id = 1;
  std::unordered_set<std::uint64_t> _open;                       // ids whose answers we want
  std::unordered_map<std::uint64_t, std::deque<frame>> _inbox;  // their frames not yet taken
  std::optional<client_error> _broken;                           // the connection is unusable
};

// One open watch. next() returns the server's responses in order: events, progress
// notifications (only if asked for), and finally one with canceled = true (cancel(), a
// compacted start revision, or the server ending the watch), after which the stream has
// ended.
class watch_stream {
 public:
  watch_stream(client& owner, std::uint64_t request_id, native::watch_response created);
  ~watch_stream();  // an open stream is cancelled without waiting for the answer
  watch_stream(const watch_stream&) = delete;
  watch_stream& operator=(const watch_stream&) = delete;

  std::int64_t watch_id() const noexcept { return _created.watch_id; }
  const native::watch_response& created() const noexcept { return _created; }
  bool ended() const noexcept { return _ended; }

  // The next response, or nullopt when `timeout` passes first (0: wait forever).
  // errc::unavailable "watch stream has ended" after the end.
  client_result<std::optional<native::watch_response>> next(std::chrono::milliseconds timeout);
  // Calls `on_response` for each response until it returns false or the stream ends;
  // returns the last response given.
  client_result<native::watch_response> run(const std::function<bool(const native::watch_response&)>& on_response);
  // WatchCancel for this watch; reads the stream to its end (dropping what was in flight)
  // and returns the cancel answer.
  client_result<native::watch_cancel_response> cancel();

 private:
  client& _client;
  std::uint64_t _request_id;
  native::watch_response _created;
  bool _ended = false;
};

}  // namespace keel::kv
