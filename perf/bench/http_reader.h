// http_reader.h — splits one keep-alive connection's bytes into HTTP/1.1 responses
// (libhttp-parser in HTTP_RESPONSE mode), chunked or with Content-Length.
//
// Responses come out in order in `responses()`; a response still being received exposes
// its complete body lines through take_line() (for streamed watch answers, which never
// complete). One reader per connection; not thread-safe.
#pragma once

#include <http_parser.h>

#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace keel::bench {

struct http_response {
  int status = 0;
  std::string body;
};

class http_reader {
 public:
  http_reader();
  http_reader(const http_reader&) = delete;
  http_reader& operator=(const http_reader&) = delete;

  // Parses bytes. false on a protocol error (then error() says which); the reader stays
  // failed and the connection must be closed.
  bool feed(const char* data, std::size_t size);
  const std::string& error() const noexcept { return _error; }

  // Completed responses, oldest first.
  std::deque<http_response>& responses() noexcept { return _done; }
  // Headers of the response in progress have arrived (its status is known).
  bool in_progress() const noexcept { return _in_message && _headers_done; }
  int in_progress_status() const noexcept { return _current.status; }
  // The next complete '\n'-terminated line of the response in progress (without '\n');
  // removes it from the body.
  std::optional<std::string> take_line();

 private:
  static int on_message_begin(http_parser* parser);
  static int on_headers_complete(http_parser* parser);
  static int on_body(http_parser* parser, const char* at, std::size_t length);
  static int on_message_complete(http_parser* parser);

  http_parser _parser;
  http_parser_settings _settings;
  http_response _current;
  bool _in_message = false;
  bool _headers_done = false;
  std::deque<http_response> _done;
  std::string _error;
};

}  // namespace keel::bench
