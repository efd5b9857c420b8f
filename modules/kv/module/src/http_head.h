// http_head.h — the head of an HTTP/1.x response read from an upstream server: a member
// that etcd's v2 proxy relays to (proxy.cc). It reads a status line, Content-Length,
// Transfer-Encoding and Connection; what to do with the body (framing, which headers to
// pass on) stays with the caller.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::kv_module {

// `s` in ASCII lowercase: header names and tokens compare case-insensitively.
std::string lower(std::string_view s);

struct response_head {
  int status = 0;         // 100-999
  bool http_1_1 = false;  // the status line is HTTP/1.1 (keep-alive unless told otherwise)
  std::string content_type;
  // Every other header, in order: the name as sent, the value without the blanks (space,
  // tab) around it. Content-Type, Content-Length, Transfer-Encoding and Connection are
  // read into the fields here instead.
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::size_t> content_length;  // nullopt when the head has none
  bool chunked = false;                       // Transfer-Encoding names chunked
  // The last Connection: close (false) or keep-alive (true); nullopt when neither came.
  std::optional<bool> connection_keep_alive;
  std::size_t body_at = 0;  // where the body starts, counted from the head's first byte
};

enum class head_parse { incomplete, complete, malformed };

// Parses the response head at the start of `bytes` into `out`.
//   incomplete  no blank line yet, within 64 KiB: read more and call again;
//   malformed   a head that cannot be one: no "HTTP/1.x NNN" status line, a status out of
//               100-999, a Content-Length that is not a decimal number, or 64 KiB
//               without the blank line that ends a head;
//   complete    `out` describes the head; the body (or the next answer) is at body_at.
// REQUIRES: `out` default-constructed (fields are filled, not cleared).
head_parse parse_response_head(std::string_view bytes, response_head& out);

}  // namespace keel::kv_module
