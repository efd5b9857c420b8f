// http.cc — responses, the router and the HTTP/1.1 connection loop (parsing is in
// http_parse.cc).
#include "keel/reactor/http.h"


#include <algorithm>
#include <cctype>
#include <charconv>

#include "keel/limits.h"

namespace keel {

// ---------------------------------------------------------------------------------
// response

std::string_view http_reason(int status) noexcept {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

void http_response::add_header(std::string_view name, std::string_view value) {
  KEEL_ASSERT(!_started);
  _extra_headers.append(name).append(": ").append(value).append("\r\n");
}

void http_response::write_head(int status, std::string_view content_type,
                               std::size_t content_length, framing how) {
  KEEL_ASSERT(!_started);
  _started = true;
  // Formatted straight into the connection's send queue: no string per response.
  std::string& head = *_conn->send_queue();
  char number[24];
  head.append(_version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  auto end = std::to_chars(number, number + sizeof(number), status).ptr;
  head.append(number, end).append(" ").append(http_reason(status)).append("\r\n");
  if (!content_type.empty()) head.append("Content-Type: ").append(content_type).append("\r\n");
  if (how == framing::chunked) {
    head.append("Transfer-Encoding: chunked\r\n");
  } else if (how == framing::length) {
    end = std::to_chars(number, number + sizeof(number), content_length).ptr;
    head.append("Content-Length: ").append(number, end).append("\r\n");
  }
  if (!_keep_alive) head.append("Connection: close\r\n");
  else if (_version_minor == 0) head.append("Connection: keep-alive\r\n");
  if (_default_headers) append_defaults(head);
  head.append(_extra_headers).append("\r\n");
}

// The default header lines whose names the handler did not use (names compared without
// case; a handful of short lines, so a plain search).
void http_response::append_defaults(std::string& head) const {
  std::string_view lines = *_default_headers;
  while (!lines.empty()) {
    std::size_t end = lines.find("\r\n");
    std::string_view line = lines.substr(0, end == std::string_view::npos ? lines.size() : end + 2);
    lines.remove_prefix(line.size());
    std::string_view name = line.substr(0, line.find(':'));
    bool taken = false;
    for (std::size_t at = 0; at < _extra_headers.size() && !taken;) {
      std::string_view extra(_extra_headers.data() + at, _extra_headers.size() - at);
      taken = extra.size() > name.size() && extra[name.size()] == ':' &&
              std::equal(name.begin(), name.end(), extra.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
              });
      std::size_t next = _extra_headers.find("\r\n", at);
      at = next == std::string::npos ? _extra_headers.size() : next + 2;
    }
    if (!taken) head.append(line);
  }
}

void http_response::send(int status, std::string_view content_type, std::string_view body) {
  write_head(status, content_type, body.size(), framing::length);
  if (!_head_only) _conn->write(body);
}

void http_response::send_error(int status, std::string_view message) {
  std::string body = "{\"message\":";
  append_json_string(body, message);
  body += "}\n";
  send(status, "application/json", body);
}

void http_response::start_stream(int status, std::string_view content_type) {
  if (_version_minor == 0) _keep_alive = false;  // HTTP/1.0 has no chunked coding
  write_head(status, content_type, 0, _version_minor != 0 ? framing::chunked : framing::until_close);
  _streaming = true;
}

void http_response::write_chunk(std::string_view data) {
  KEEL_ASSERT(_streaming);
  if (data.empty() || _head_only) return;  // an empty chunk would end the stream
  if (_version_minor == 0) {
    _conn->write(data);
    return;
  }
  char size[24];
  auto end = std::to_chars(size, size + sizeof(size), data.size(), 16).ptr;
  std::string frame;
  frame.reserve(data.size() + 32);
  frame.append(size, end).append("\r\n").append(data).append("\r\n");
  _conn->write(frame);
}

void http_response::end_stream() {
  KEEL_ASSERT(_streaming);
  _streaming = false;
  if (_version_minor != 0 && !_head_only) _conn->write("0\r\n\r\n");
}

void http_response::abort_stream() {
  KEEL_ASSERT(_streaming);
  _streaming = false;
  _keep_alive = false;
}

// ---------------------------------------------------------------------------------
// router

void http_router::add(std::string_view method, std::string_view path, http_sync_handler handler) {
  _routes.push_back({std::string(method), std::string(path), false, std::move(handler), {}});
}
void http_router::add_async(std::string_view method, std::string_view path, http_async_handler handler) {
  _routes.push_back({std::string(method), std::string(path), false, {}, std::move(handler)});
}
void http_router::add_prefix(std::string_view method, std::string_view prefix, http_sync_handler handler) {
  _routes.push_back({std::string(method), std::string(prefix), true, std::move(handler), {}});
}
void http_router::add_prefix_async(std::string_view method, std::string_view prefix,
                                   http_async_handler handler) {
  _routes.push_back({std::string(method), std::string(prefix), true, {}, std::move(handler)});
}

const http_router::route* http_router::find(std::string_view method, std::string_view path,
                                            std::string& allowed) const {
  // Exact paths win over prefixes; among prefixes the longest wins. When the path
  // matches but the method does not, the methods that would have matched fill `allowed`.
  auto choose = [&](auto matches) -> const route* {
    const route* chosen = nullptr;
    const route* fallback = nullptr;  // any_method
    for (const route& r : _routes) {
      if (!matches(r)) continue;
      if (r.method == method) chosen = &r;
      else if (r.method == any_method) fallback = &r;
      else if (allowed.find(r.method) == std::string::npos)
        allowed.append(allowed.empty() ? "" : ", ").append(r.method);
    }
    return chosen ? chosen : fallback;
  };
  allowed.clear();
  if (const route* exact = choose([&](const route& r) { return !r.prefix && r.path == path; }))
    return exact;
  if (!allowed.empty()) return nullptr;
  std::size_t longest = 0;
  bool any = false;
  for (const route& r : _routes)
    if (r.prefix && path.starts_with(r.path) && r.path.size() >= longest) {
      longest = r.path.size();
      any = true;
    }
  if (!any) return nullptr;
  return choose([&](const route& r) {
    return r.prefix && r.path.size() == longest && path.starts_with(r.path);
  });
}

// ---------------------------------------------------------------------------------
// the connection loop

namespace {

// Answers a request that has no handler; returns false if the connection must close.
void answer_unrouted(const http_request& request, http_response& response, const std::string& allowed) {
  if (!allowed.empty()) {
    response.add_header("Allow", allowed);
    response.send_error(405, "method " + request.method + " not allowed on " +
                                 std::string(request.path()) + "; allowed: " + allowed);
    return;
  }
  response.send_error(404, "no such path: " + std::string(request.path()));
}

}  // namespace

// ---------------------------------------------------------------------------------
// serve_http

task<void> serve_http(connection* conn, const http_server_options& options) {
  http_request_parser parser(options.body_bytes_max);
  shard_stats& stats = shard::current()->stats();
  std::string allowed;
  bool first = true;
  bool open = true;
  while (open) {
    recv_buffer buffer = co_await conn->read();
    if (buffer.size() == 0) break;
    if (first) {
      first = false;
      if (options.is_other_protocol && options.is_other_protocol(buffer.data(), buffer.size())) {
        task<void> other = options.serve_other_protocol(conn, std::move(buffer));
        co_await std::move(other);
        co_return;  // the other protocol released the connection
      }
    }
    const char* data = buffer.data();
    std::size_t size = buffer.size();
    while (size > 0 && open) {
      http_request_parser::outcome result;
      std::size_t used = parser.feed(data, size, result);
      data += used;
      size -= used;
      if (result == http_request_parser::outcome::request) {
        const http_request& request = parser.request();
        bump(stats.http_requests);
        http_response response(conn, request);
        if (!options.default_headers.empty()) response.use_default_headers(&options.default_headers);
        const http_router::route* route = options.router->find(request.method, request.path(), allowed);
        if (!route && options.answer_preflight && request.method == "OPTIONS") response.send(200, "", "");
        else if (!route) answer_unrouted(request, response, allowed);
        else if (route->sync) route->sync(request, response);
        else {
          task<void> handling = route->async(request, response);
          co_await std::move(handling);
        }
        if (!response.started()) response.send_error(500, "handler sent no response");
        if (!response.keep_alive()) open = false;
        continue;
      }
      if (result == http_request_parser::outcome::error) {
        bump(stats.http_errors);
        http_request blank;
        blank.keep_alive = false;
        http_response response(conn, blank);  // the server's answer: no default headers
        response.send_error(parser.error_status(), parser.error_message());
        open = false;
      }
      break;  // everything consumed; wait for more bytes
    }
    if (open && conn->queued_bytes() >= limits::connection_send_buffer_bytes_max) {
      if (!co_await conn->drained()) break;
    }
  }
  conn->release();
}

}  // namespace keel
