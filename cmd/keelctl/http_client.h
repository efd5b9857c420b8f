// cmd/keelctl/http_client.h — a tiny blocking HTTP/1.1 client for keelctl.
//
// keelctl asks a server one question per connection: it sends a GET (or a POST with a
// JSON body) with `Connection: close`, reads the whole reply and hangs up. That is all the client
// does; it has no keep-alive, no TLS, no redirects and no reactor. It uses plain POSIX
// sockets: a non-blocking connect() bounded by the dial timeout, then poll() for every
// send and receive, bounded by one overall deadline.
//
// Errors come back as values whose text reads like Go's net package, because keelctl
// prints them where etcdctl would print its own:
//   "dial tcp 127.0.0.1:1: connect: connection refused"
//   "dial tcp 10.0.0.1:2379: i/o timeout"            (the dial timeout passed)
//   "context deadline exceeded"                      (the command timeout passed)
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace keel::ctl {

// Where to connect: parsed from "http://host:port", "host:port" or "http://[::1]:port".
struct endpoint_address {
  std::string host;  // without IPv6 brackets
  std::uint16_t port = 0;
};

// A failure, as one line of text for the user.
struct http_error {
  std::string message;
};

// Parses an endpoint URL. Only plain "http" is supported; a missing scheme means http,
// a missing port means 80. Fails with a message naming the URL.
std::variant<endpoint_address, http_error> parse_endpoint(std::string_view url);

struct http_response {
  int status_code = 0;
  std::string body;  // de-chunked when the server sent Transfer-Encoding: chunked
};

struct http_request_limits {
  std::chrono::milliseconds dial_timeout{2000};     // connect() only
  std::chrono::milliseconds command_timeout{5000};  // the whole exchange, dial included
  std::size_t response_bytes_max = 1 << 20;         // headers plus body
};

// GETs `path` (e.g. "/health") from `address` and returns the complete reply.
// The Host header carries `host_header` (normally "host:port" as the user wrote it).
std::variant<http_response, http_error> http_get(const endpoint_address& address,
                                                 std::string_view host_header,
                                                 std::string_view path,
                                                 const http_request_limits& limits);

// POSTs `body` (a JSON document, sent as application/json) to `path` and returns the
// complete reply; otherwise as http_get. Used for the v3 JSON gateway
// (/v3/cluster/member/list, /v3/maintenance/status, ...).
std::variant<http_response, http_error> http_post(const endpoint_address& address,
                                                  std::string_view host_header,
                                                  std::string_view path,
                                                  std::string_view body,
                                                  const http_request_limits& limits);

// Parses a complete or partial HTTP/1.1 response held in `bytes`.
// Returns: a response when the message is complete (or `at_eof` and the body is
// delimited by the end of the connection); std::monostate when more bytes are needed;
// an error when the bytes are not a valid response. Exposed for tests.
std::variant<std::monostate, http_response, http_error> parse_response(std::string_view bytes,
                                                                       bool at_eof);

}  // namespace keel::ctl
