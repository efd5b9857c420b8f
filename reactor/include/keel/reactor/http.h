// keel/reactor/http.h — the HTTP/1.1 server on the reactor.
//
// Requests are parsed with the packaged http_parser (libhttp-parser) straight out of the
// shard's receive buffers. A connection is served by one coroutine that handles its
// requests strictly in order, so pipelined requests are answered in order; keep-alive is
// the HTTP/1.1 default, HTTP/1.0 keeps alive only when asked. A handler answers with
// send() (one complete response) or streams with start_stream() / write_chunk() /
// end_stream() (chunked transfer coding, for watches).
//
// Bad requests never reach a handler: malformed HTTP gets 400, a body over the limit
// 413, header fields over the limit 431, an unknown path 404 and a known path with
// another method 405 with an Allow header. Each error body is JSON
// {"message":"..."} and the connection is closed after a parse error (its byte stream
// can no longer be trusted); 404 and 405 keep the connection.
//
// Routes are registered before the shards start and are read-only afterwards, so one
// router is shared by every shard without locks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keel/reactor/net.h"
#include "keel/reactor/task.h"

namespace keel {

struct http_header {
  std::string name;
  std::string value;
};

struct http_request {
  std::string method;  // "GET", "PUT", ...
  std::string url;     // as sent: path and query
  std::vector<http_header> headers;
  std::string body;
  unsigned version_minor = 1;
  bool keep_alive = true;

  std::string_view path() const noexcept;   // url without the query
  std::string_view query() const noexcept;  // after '?', or empty
  // The first header with this name (case-insensitive), or empty.
  std::string_view header(std::string_view name) const noexcept;
  void clear() noexcept;
};

class http_response {
 public:
  http_response(connection* conn, const http_request& request) noexcept
      : _conn(conn), _keep_alive(request.keep_alive), _head_only(request.method == "HEAD"),
        _version_minor(request.version_minor) {}

  // Adds a header to the response not yet sent. REQUIRES: !started().
  void add_header(std::string_view name, std::string_view value);
  // Sends a complete response. REQUIRES: !started().
  void send(int status, std::string_view content_type, std::string_view body);
  // Sends {"message":<text>} with the status.
  void send_error(int status, std::string_view message);

  // Chunked streaming. REQUIRES for write_chunk/end_stream: start_stream() was called.
  void start_stream(int status, std::string_view content_type);
  void write_chunk(std::string_view data);
  void end_stream();
  // Ends a stream that went wrong without its terminating chunk, and closes the
  // connection after it: the client sees a truncated answer, not a complete one (Go's
  // ReverseProxy does the same when the backend breaks mid-answer).
  void abort_stream();
  // Resumes when the connection's send queue is below its limit; false if it broke.
  connection::drain_awaiter drained() noexcept { return _conn->drained(); }

  bool started() const noexcept { return _started; }
  // The client went away (long-lived streams poll this: see connection::peer_closed).
  bool peer_closed() const noexcept { return _conn->peer_closed(); }
  bool keep_alive() const noexcept { return _keep_alive; }
  // The handler may ask for the connection to close after this response.
  void close_after() noexcept { _keep_alive = false; }
  // Header lines ("Name: value\r\n" each) the server adds to every response unless the
  // handler added a header of the same name (serve_http passes its options' defaults).
  void use_default_headers(const std::string* lines) noexcept { _default_headers = lines; }
  // This response goes out without them (an answer that stands for the server, not a
  // handler). REQUIRES: !started().
  void skip_default_headers() noexcept { _default_headers = nullptr; }

 private:
  // How the body's end is marked: Content-Length, chunked coding, or (HTTP/1.0 streams)
  // the connection closing.
  enum class framing { length, chunked, until_close };
  void write_head(int status, std::string_view content_type, std::size_t content_length,
                  framing how);
  void append_defaults(std::string& head) const;
  connection* _conn;
  std::string _extra_headers;
  const std::string* _default_headers = nullptr;
  bool _keep_alive;
  bool _head_only;  // a HEAD request: headers as for GET, no body
  bool _started = false;
  bool _streaming = false;
  unsigned _version_minor;
};

// The text of a status code ("Not Found").
std::string_view http_reason(int status) noexcept;
// Writes `text` as a JSON string literal, quotes included, into `out`.
void append_json_string(std::string& out, std::string_view text);

using http_sync_handler = std::function<void(const http_request&, http_response&)>;
using http_async_handler = std::function<task<void>(const http_request&, http_response&)>;

class http_router {
 public:
  // A route registered for this method matches every method that has no route of its
  // own on the same path (a handler that answers 405 in its own words), and is not
  // listed in another route's 405 Allow header.
  static constexpr std::string_view any_method = "*";

  // Exact path. A later registration of the same method and path replaces the earlier
  // one (a module may refine a core route: the kv module's /health replaces keeld's).
  void add(std::string_view method, std::string_view path, http_sync_handler handler);
  void add_async(std::string_view method, std::string_view path, http_async_handler handler);
  // Every path that starts with `prefix` (longest prefix wins after exact paths).
  void add_prefix(std::string_view method, std::string_view prefix, http_sync_handler handler);
  void add_prefix_async(std::string_view method, std::string_view prefix, http_async_handler handler);

  struct route {
    std::string method;
    std::string path;
    bool prefix = false;
    http_sync_handler sync;
    http_async_handler async;
  };
  // The route for the request; nullptr with `allowed` filled (for 405) or empty (404).
  const route* find(std::string_view method, std::string_view path, std::string& allowed) const;

 private:
  std::vector<route> _routes;
};

// The request parser of serve_http, without I/O (also driven by the fuzzer). feed()
// consumes bytes until one request is complete (outcome::request: request() holds it
// until the next feed), the bytes run out (need_more) or the input is refused (error:
// error_status() is 400, 413 or 431 and error_message() says why; feed no more).
class http_request_parser {
 public:
  enum class outcome { need_more, request, error };
  explicit http_request_parser(std::size_t body_bytes_max);  // 0: limits default
  ~http_request_parser();
  http_request_parser(const http_request_parser&) = delete;
  http_request_parser& operator=(const http_request_parser&) = delete;

  std::size_t feed(const char* data, std::size_t size, outcome& out);
  const http_request& request() const noexcept;
  int error_status() const noexcept;
  const std::string& error_message() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> _impl;
};

// Extra dispatch for the native protocol on the same port: when the first bytes of a
// connection are not HTTP, the server hands the connection to this function instead.
struct http_server_options {
  const http_router* router = nullptr;
  std::size_t body_bytes_max = 0;  // 0: limits::http_body_bytes_max
  // Added to every response whose handler did not set a header of the same name, errors
  // and unrouted paths included ("Name: value\r\n" lines; etcd's CORS headers on keeld's
  // client port).
  std::string default_headers;
  // An OPTIONS request no route takes is answered 200 with no body (a CORS preflight, as
  // etcd's access controller answers it on every path) instead of 405.
  bool answer_preflight = false;
  // Returns true when these first bytes belong to another protocol.
  std::function<bool(const char* data, std::size_t size)> is_other_protocol;
  // Serves such a connection; `first` holds the bytes already received.
  std::function<task<void>(connection*, recv_buffer first)> serve_other_protocol;
};

// Serves one accepted connection until it closes; frees it at the end.
task<void> serve_http(connection* conn, const http_server_options& options);

}  // namespace keel
