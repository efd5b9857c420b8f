// client.cc — the blocking native kv client. See client.h.
#include "keel/kv/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace keel::kv {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t send_batch_bytes = 64 * 1024;  // queued bytes that trigger a send
constexpr std::size_t receive_chunk_bytes = 64 * 1024;
constexpr std::string_view deadline_exceeded = "context deadline exceeded";  // Go's, as etcdctl prints

int remaining_ms(clock::time_point deadline, bool forever) {
  if (forever) return -1;
  auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left + 1, 1 << 30));
}

std::string errno_text(int error) { return std::strerror(error); }

// Go's net package words some errnos differently from strerror; etcdctl users know Go's.
std::string go_errno_text(int error) {
  switch (error) {
    case ECONNREFUSED: return "connection refused";
    case ECONNRESET: return "connection reset by peer";
    case ETIMEDOUT: return "i/o timeout";
    case EHOSTUNREACH: return "no route to host";
    case ENETUNREACH: return "network is unreachable";
    default: {
      std::string text = errno_text(error);
      if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
      return text;
    }
  }
}

}  // namespace

// ---- endpoints ------------------------------------------------------------------------------

std::string client_endpoint::text() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

client_result<client_endpoint> parse_client_endpoint(std::string_view text) {
  std::string_view original = text;
  auto bad = [&](std::string why) {
    return client_error{errc::invalid_argument, 0, "bad endpoint \"" + std::string(original) + "\": " + why};
  };
  if (text.starts_with("https://")) return bad("TLS is not supported by the native protocol");
  if (text.starts_with("http://")) text.remove_prefix(7);
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    if (text.substr(slash) != "/") return bad("a path is not allowed");
    text = text.substr(0, slash);
  }
  client_endpoint out;
  std::string_view port_text;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    out.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':' after ']'");
      port_text = rest.substr(1);
    }
  } else {
    auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) return bad("an IPv6 address needs [brackets]");
    out.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) port_text = text.substr(colon + 1);
  }
  if (out.host.empty()) return bad("no host");
  if (!port_text.empty() || text.ends_with(':')) {
    unsigned port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return bad("bad port");
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port_text.empty() || port == 0 || port > 65535) return bad("bad port");
    out.port = static_cast<std::uint16_t>(port);
  }
  return out;
}

// ---- connecting -----------------------------------------------------------------------------

client_result<std::unique_ptr<client>> client::connect(std::string_view endpoint_text, client_options options) {
  auto parsed = parse_client_endpoint(endpoint_text);
  if (!parsed) return parsed.error();
  const client_endpoint& where = parsed.value();
  std::string name = where.text();
  auto dial_error = [&](std::string why) {
    return client_error{errc::unavailable, 0, "dial tcp " + name + ": " + why};
  };

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(where.port);
  if (int rc = ::getaddrinfo(where.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return dial_error("lookup " + where.host + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, ::freeaddrinfo);

  auto deadline = clock::now() + options.dial_timeout;
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = "socket: " + go_errno_text(errno);
      continue;
    }
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int ready = ::poll(&p, 1, remaining_ms(deadline, options.dial_timeout.count() == 0));
      if (ready == 0) {
        ::close(fd);
        return dial_error("i/o timeout");
      }
      int error = 0;
      socklen_t length = sizeof error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
      rc = error == 0 ? 0 : -1;
      errno = error;
    }
    if (rc < 0) {
      last_error = "connect: " + go_errno_text(errno);
      ::close(fd);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return std::unique_ptr<client>(new client(fd, name, options));
  }
  return dial_error(last_error);
}

client::client(int fd, std::string endpoint, client_options options)
    : _fd(fd), _endpoint(std::move(endpoint)), _options(options) {}

client::~client() {
  if (_fd >= 0) {
    (void)flush();
    ::close(_fd);
  }
}

// ---- frames ---------------------------------------------------------------------------------

client_error client::broken(errc code, std::string message) {
  if (!_broken) _broken = client_error{code, 0, std::move(message)};
  return *_broken;
}

client_result<std::uint64_t> client::send_frame(wire::frame_type type, const flatbuffers::FlatBufferBuilder& builder) {
  if (_broken) return *_broken;
  std::uint64_t id = _next_id++;
  status appended = native::append_request(_out, type, id, builder);
  if (!appended) return client_error{appended.code(), 0, "etcdserver: request is too large (" + appended.message() + ")"};
  _open.insert(id);
  if (_out.size() >= send_batch_bytes) {
    if (auto failure = flush()) return *failure;
  }
  return id;
}

std::optional<client_error> client::flush() {
  if (_broken) return _broken;
  auto deadline = clock::now() + _options.request_timeout;
  bool forever = _options.request_timeout.count() == 0;
  std::size_t sent = 0;
  while (sent < _out.size()) {
    ssize_t n = ::send(_fd, _out.data() + sent, _out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      _out.clear();
      return broken(errc::unavailable, _endpoint + ": send: " + go_errno_text(errno));
    }
    // The socket is full: read answers while waiting for room, so that a server that
    // stops reading until we read never deadlocks with us.
    pollfd p{_fd, POLLIN | POLLOUT, 0};
    int ready = ::poll(&p, 1, remaining_ms(deadline, forever));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      _out.clear();
      return broken(errc::timed_out, std::string(deadline_exceeded));
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      if (auto failure = pump(clock::now(), false)) {
        _out.clear();
        return failure;
      }
    }
  }
  _out.clear();
  return std::nullopt;
}

void client::file(const wire::frame_view& view) {
  if (view.header.request_id == 0) {  // connection-level error: the server closes next
    frame f;
    f.type = view.header.type;
    f.flags = view.header.flags;
    f.size = view.payload.size();
    f.words.resize((f.size + 7) / 8);
    std::memcpy(f.words.data(), view.payload.data(), f.size);
    client_error e = error_of(f);
    broken(e.code == errc::ok ? errc::corruption : e.code, _endpoint + ": server closed the connection: " + e.message);
    return;
  }
  auto open = _open.find(view.header.request_id);
  if (open == _open.end()) return;  // forgotten (timed out, abandoned stream)
  frame f;
  f.type = view.header.type;
  f.flags = view.header.flags;
  f.size = view.payload.size();
  f.words.resize((f.size + 7) / 8);
  if (f.size) std::memcpy(f.words.data(), view.payload.data(), f.size);
  if (f.end_of_stream()) _open.erase(open);
  _inbox[view.header.request_id].push_back(std::move(f));
}

std::optional<client_error> client::pump(clock::time_point deadline, bool forever) {
  if (_broken) return _broken;
  pollfd p{_fd, POLLIN, 0};
  int ready = ::poll(&p, 1, remaining_ms(deadline, forever));
  if (ready < 0 && errno == EINTR) return std::nullopt;
  if (ready <= 0) return std::nullopt;  // the caller checks its deadline
  char chunk[receive_chunk_bytes];
  ssize_t n = ::recv(_fd, chunk, sizeof chunk, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return std::nullopt;
    return broken(errc::unavailable, _endpoint + ": recv: " + go_errno_text(errno));
  }
  if (n == 0) {
    status finished = _decoder.finish();
    if (!finished) return broken(errc::corruption, _endpoint + ": " + finished.message());
    return broken(errc::unavailable, _endpoint + ": connection closed by the server");
  }
  status decoded = wire::decode_frames(_decoder, chunk, static_cast<std::size_t>(n), [&](const wire::frame_view& f) {
    file(f);
    return true;
  });
  if (!decoded) return broken(errc::corruption, _endpoint + ": " + decoded.message());
  return _broken;
}

client_result<std::optional<client::frame>> client::poll_frame(std::uint64_t id, milliseconds timeout) {
  if (auto failure = flush()) return *failure;
  bool forever = timeout.count() == 0;
  auto deadline = clock::now() + timeout;
  for (;;) {
    auto kept = _inbox.find(id);
    if (kept != _inbox.end() && !kept->second.empty()) {
      frame f = std::move(kept->second.front());
      kept->second.pop_front();
      if (kept->second.empty()) _inbox.erase(kept);
      return std::optional<frame>(std::move(f));
    }
    if (_broken) return *_broken;
    if (!_open.contains(id)) {
      return client_error{errc::invalid_argument, 0, "request id " + std::to_string(id) + " has no answer pending"};
    }
    if (!forever && clock::now() >= deadline) return std::optional<frame>();
    if (auto failure = pump(deadline, forever)) return *failure;
  }
}

client_result<client::frame> client::wait_frame(std::uint64_t id, milliseconds timeout) {
  auto next = poll_frame(id, timeout);
  if (!next) return next.error();
  if (!next.value()) {
    forget(id);
    return client_error{errc::timed_out, 0, std::string(deadline_exceeded)};
  }
  return std::move(*next.value());
}

void client::forget(std::uint64_t id) {
  _open.erase(id);
  _inbox.erase(id);
}

client_error client::error_of(const frame& f) const {
  native::error_payload e = native::decode(*flatbuffers::GetRoot<wire::Error>(f.payload().data()));
  return client_error{static_cast<errc>(e.code), e.grpc_code, std::move(e.message)};
}

// ---- typed requests -------------------------------------------------------------------------

client_result<pending<native::range_response>> client::send_range(const range_request& request, bool serializable) {
  native::encode(_builder, request, serializable);
  return send_built<native::range_response>(wire::frame_type::range_request);
}
client_result<pending<native::put_response>> client::send_put(const put_request& request) {
  native::encode(_builder, request);
  return send_built<native::put_response>(wire::frame_type::put_request);
}
client_result<pending<native::delete_range_response>> client::send_delete_range(const delete_range_request& request) {
  native::encode(_builder, request);
  return send_built<native::delete_range_response>(wire::frame_type::delete_range_request);
}
client_result<pending<native::txn_response>> client::send_txn(const txn_request& request) {
  native::encode(_builder, request);
  return send_built<native::txn_response>(wire::frame_type::txn_request);
}
client_result<pending<native::compaction_response>> client::send_compact(std::int64_t revision, bool physical) {
  native::encode_compaction(_builder, revision, physical);
  return send_built<native::compaction_response>(wire::frame_type::compaction_request);
}
client_result<pending<native::lease_grant_response>> client::send_lease_grant(std::int64_t ttl, std::int64_t id) {
  native::encode_lease_grant(_builder, ttl, id);
  return send_built<native::lease_grant_response>(wire::frame_type::lease_grant_request);
}
client_result<pending<native::lease_revoke_response>> client::send_lease_revoke(std::int64_t id) {
  native::encode_lease_revoke(_builder, id);
  return send_built<native::lease_revoke_response>(wire::frame_type::lease_revoke_request);
}
client_result<pending<native::lease_keep_alive_response>> client::send_lease_keep_alive(std::int64_t id) {
  native::encode_lease_keep_alive(_builder, id);
  return send_built<native::lease_keep_alive_response>(wire::frame_type::lease_keepalive_request);
}
client_result<pending<native::lease_time_to_live_response>> client::send_lease_time_to_live(std::int64_t id,
                                                                                           bool keys) {
  native::encode_lease_time_to_live(_builder, id, keys);
  return send_built<native::lease_time_to_live_response>(wire::frame_type::lease_time_to_live_request);
}
client_result<pending<native::lease_leases_response>> client::send_lease_leases() {
  native::encode_lease_leases(_builder);
  return send_built<native::lease_leases_response>(wire::frame_type::lease_leases_request);
}

namespace {
template <typename Response>
client_result<Response> finish(client& c, client_result<pending<Response>> sent) {
  if (!sent) return sent.error();
  return c.wait(sent.value());
}
}  // namespace

client_result<native::range_response> client::range(const range_request& r, bool serializable) {
  return finish(*this, send_range(r, serializable));
}
client_result<native::put_response> client::put(const put_request& r) { return finish(*this, send_put(r)); }
client_result<native::delete_range_response> client::delete_range(const delete_range_request& r) {
  return finish(*this, send_delete_range(r));
}
client_result<native::txn_response> client::txn(const txn_request& r) { return finish(*this, send_txn(r)); }
client_result<native::compaction_response> client::compact(std::int64_t revision, bool physical) {
  return finish(*this, send_compact(revision, physical));
}
client_result<native::lease_grant_response> client::lease_grant(std::int64_t ttl, std::int64_t id) {
  return finish(*this, send_lease_grant(ttl, id));
}
client_result<native::lease_revoke_response> client::lease_revoke(std::int64_t id) {
  return finish(*this, send_lease_revoke(id));
}
client_result<native::lease_keep_alive_response> client::lease_keep_alive(std::int64_t id) {
  return finish(*this, send_lease_keep_alive(id));
}
client_result<native::lease_time_to_live_response> client::lease_time_to_live(std::int64_t id, bool keys) {
  return finish(*this, send_lease_time_to_live(id, keys));
}
client_result<native::lease_leases_response> client::lease_leases() { return finish(*this, send_lease_leases()); }

// ---- watches --------------------------------------------------------------------------------

client_result<std::unique_ptr<watch_stream>> client::watch(const native::watch_create_request& request) {
  native::encode(_builder, request);
  auto id = send_frame(wire::frame_type::watch_create_request, _builder);
  if (!id) return id.error();
  auto first = wait_frame(id.value(), _options.request_timeout);
  if (!first) return first.error();
  native::watch_response created;
  if (auto failure = decode_answer(first.value(), created)) return *failure;
  auto stream = std::make_unique<watch_stream>(*this, id.value(), std::move(created));
  return stream;
}

watch_stream::watch_stream(client& owner, std::uint64_t request_id, native::watch_response created)
    : _client(owner), _request_id(request_id), _created(std::move(created)) {
  // A refused watch is created and canceled in one answer, which also ends the stream.
  _ended = _created.canceled;
}

watch_stream::~watch_stream() {
  if (_ended) return;
  _client.forget(_request_id);
  flatbuffers::FlatBufferBuilder builder(64);
  native::encode_watch_cancel(builder, _created.watch_id);
  auto id = _client.send_frame(wire::frame_type::watch_cancel_request, builder);
  if (id) _client.forget(id.value());
  (void)_client.flush();
}

client_result<std::optional<native::watch_response>> watch_stream::next(milliseconds timeout) {
  if (_ended) return client_error{errc::unavailable, 0, "watch stream has ended"};
  auto f = _client.poll_frame(_request_id, timeout);
  if (!f) {
    _ended = true;
    return f.error();
  }
  if (!f.value()) return std::optional<native::watch_response>();
  const client::frame& got = *f.value();
  if (got.end_of_stream()) _ended = true;
  native::watch_response response;
  if (auto failure = _client.decode_answer(got, response)) {
    _ended = true;
    return *failure;
  }
  return std::optional<native::watch_response>(std::move(response));
}

client_result<native::watch_response> watch_stream::run(
    const std::function<bool(const native::watch_response&)>& on_response) {
  native::watch_response last = _created;
  while (!_ended) {
    auto next_response = next(milliseconds(0));
    if (!next_response) return next_response.error();
    if (!next_response.value()) continue;
    last = std::move(*next_response.value());
    if (!on_response(last)) break;
  }
  return last;
}

client_result<native::watch_cancel_response> watch_stream::cancel() {
  flatbuffers::FlatBufferBuilder builder(64);
  native::encode_watch_cancel(builder, _created.watch_id);
  auto id = _client.send_frame(wire::frame_type::watch_cancel_request, builder);
  if (!id) return id.error();
  // The stream ends (its last frame has end_of_stream) before or after the answer.
  while (!_ended) {
    auto dropped = next(_client.options().request_timeout);
    if (!dropped) return dropped.error();
    if (!dropped.value()) {
      _client.forget(_request_id);
      _ended = true;
      _client.forget(id.value());
      return client_error{errc::timed_out, 0, std::string(deadline_exceeded)};
    }
  }
  auto answer = _client.wait_frame(id.value(), _client.options().request_timeout);
  if (!answer) return answer.error();
  native::watch_cancel_response out;
  if (auto failure = _client.decode_answer(answer.value(), out)) return *failure;
  return out;
}

}  // namespace keel::kv
