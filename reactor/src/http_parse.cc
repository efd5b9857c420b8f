// http_parse.cc — HTTP/1.1 request parsing over http_parser, with no I/O: the part of
// the server that sees raw client bytes, compiled alone into the fuzz target.
#include <http_parser.h>
#include <strings.h>

#include "keel/limits.h"
#include "keel/reactor/http.h"

namespace keel {

// ---------------------------------------------------------------------------------
// request

std::string_view http_request::path() const noexcept {
  std::string_view u = url;
  auto q = u.find('?');
  return q == std::string_view::npos ? u : u.substr(0, q);
}

std::string_view http_request::query() const noexcept {
  std::string_view u = url;
  auto q = u.find('?');
  return q == std::string_view::npos ? std::string_view{} : u.substr(q + 1);
}

std::string_view http_request::header(std::string_view name) const noexcept {
  for (const auto& h : headers)
    if (h.name.size() == name.size() && strncasecmp(h.name.data(), name.data(), name.size()) == 0)
      return h.value;
  return {};
}

void http_request::clear() noexcept {
  method.clear();
  url.clear();
  headers.clear();
  body.clear();
  version_minor = 1;
  keep_alive = true;
}

namespace {

struct parse_state {
  http_parser parser;
  http_request request;
  bool in_value = false;
  std::size_t header_bytes = 0;
  std::size_t body_bytes_max = 0;
  int error_status = 0;     // set by a callback that refuses the request
  std::string error_message;
};

parse_state& state_of(http_parser* parser) { return *static_cast<parse_state*>(parser->data); }

int refuse(http_parser* parser, int status, std::string message) {
  parse_state& st = state_of(parser);
  st.error_status = status;
  st.error_message = std::move(message);
  // -1, not 1: from on_headers_complete, 1 means "no body follows", not an error.
  return -1;
}

int count_header_bytes(http_parser* parser, std::size_t size) {
  parse_state& st = state_of(parser);
  st.header_bytes += size;
  if (st.header_bytes > limits::http_header_bytes_max)
    return refuse(parser, 431, "request line and headers exceed " +
                                   std::to_string(limits::http_header_bytes_max) + " bytes");
  return 0;
}

int on_message_begin(http_parser* parser) {
  parse_state& st = state_of(parser);
  st.request.clear();
  st.header_bytes = 0;
  st.in_value = false;
  return 0;
}

int on_url(http_parser* parser, const char* at, std::size_t size) {
  if (count_header_bytes(parser, size)) return -1;
  state_of(parser).request.url.append(at, size);
  return 0;
}

int on_header_field(http_parser* parser, const char* at, std::size_t size) {
  if (count_header_bytes(parser, size)) return -1;
  parse_state& st = state_of(parser);
  if (st.in_value || st.request.headers.empty()) {
    st.request.headers.push_back({});
    st.in_value = false;
  }
  st.request.headers.back().name.append(at, size);
  return 0;
}

int on_header_value(http_parser* parser, const char* at, std::size_t size) {
  if (count_header_bytes(parser, size)) return -1;
  parse_state& st = state_of(parser);
  st.in_value = true;
  st.request.headers.back().value.append(at, size);
  return 0;
}

int on_headers_complete(http_parser* parser) {
  parse_state& st = state_of(parser);
  if ((parser->flags & F_CONTENTLENGTH) && parser->content_length > st.body_bytes_max)
    return refuse(parser, 413, "request body of " + std::to_string(parser->content_length) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(st.body_bytes_max) + " bytes");
  st.request.method = http_method_str(static_cast<http_method>(parser->method));
  st.request.version_minor = parser->http_minor;
  st.request.keep_alive = http_should_keep_alive(parser) != 0;
  return 0;
}

int on_body(http_parser* parser, const char* at, std::size_t size) {
  parse_state& st = state_of(parser);
  if (st.request.body.size() + size > st.body_bytes_max)
    return refuse(parser, 413, "request body exceeds the limit of " +
                                   std::to_string(st.body_bytes_max) + " bytes");
  st.request.body.append(at, size);
  return 0;
}

int on_message_complete(http_parser* parser) {
  // Hand one complete request to the connection loop before parsing the next: the
  // loop answers pipelined requests strictly in order.
  http_parser_pause(parser, 1);
  return 0;
}

const http_parser_settings& settings() {
  static const http_parser_settings s = [] {
    http_parser_settings init{};
    init.on_message_begin = on_message_begin;
    init.on_url = on_url;
    init.on_header_field = on_header_field;
    init.on_header_value = on_header_value;
    init.on_headers_complete = on_headers_complete;
    init.on_body = on_body;
    init.on_message_complete = on_message_complete;
    return init;
  }();
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------
// http_request_parser

struct http_request_parser::impl {
  parse_state st;
};

http_request_parser::http_request_parser(std::size_t body_bytes_max) : _impl(new impl) {
  http_parser_init(&_impl->st.parser, HTTP_REQUEST);
  _impl->st.parser.data = &_impl->st;
  _impl->st.body_bytes_max = body_bytes_max ? body_bytes_max : limits::http_body_bytes_max;
}

http_request_parser::~http_request_parser() = default;

std::size_t http_request_parser::feed(const char* data, std::size_t size, outcome& out) {
  parse_state& st = _impl->st;
  if (HTTP_PARSER_ERRNO(&st.parser) == HPE_PAUSED) http_parser_pause(&st.parser, 0);
  std::size_t used = http_parser_execute(&st.parser, &settings(), data, size);
  http_errno error = HTTP_PARSER_ERRNO(&st.parser);
  if (error == HPE_PAUSED) {
    out = outcome::request;
  } else if (error != HPE_OK) {
    out = outcome::error;
    if (!st.error_status) {
      st.error_status = 400;
      st.error_message = std::string("malformed HTTP request: ") + http_errno_description(error);
    }
  } else {
    out = outcome::need_more;
  }
  return used;
}

const http_request& http_request_parser::request() const noexcept { return _impl->st.request; }
int http_request_parser::error_status() const noexcept { return _impl->st.error_status; }
const std::string& http_request_parser::error_message() const noexcept { return _impl->st.error_message; }

}  // namespace keel
