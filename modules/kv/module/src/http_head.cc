// http_head.cc — an upstream's HTTP/1.x response head (http_head.h).
#include "http_head.h"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>

namespace keel::kv_module {

namespace {

// A head is at most this long: past it without the blank line, it is not one.
constexpr std::size_t head_size_max = 64 * 1024;

std::string_view trim_blanks(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return value;
}

}  // namespace

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

head_parse parse_response_head(std::string_view bytes, response_head& out) {
  std::size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos)
    return bytes.size() > head_size_max ? head_parse::malformed : head_parse::incomplete;
  std::size_t line_end = bytes.find("\r\n");
  std::string_view status_line = bytes.substr(0, line_end);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) return head_parse::malformed;
  out.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  if (out.status < 100 || out.status > 999) return head_parse::malformed;
  out.http_1_1 = status_line.starts_with("HTTP/1.1");
  std::size_t at = line_end + 2;
  while (at < end) {
    std::size_t eol = bytes.find("\r\n", at);
    std::string_view line = bytes.substr(at, eol - at);
    at = eol + 2;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name = lower(line.substr(0, colon));
    std::string_view value = trim_blanks(line.substr(colon + 1));
    if (name == "content-type") {
      out.content_type = std::string(value);
    } else if (name == "content-length") {
      std::uint64_t length = 0;
      auto [stop, ec] = std::from_chars(value.data(), value.data() + value.size(), length, 10);
      if (ec != std::errc{} || stop != value.data() + value.size() || value.empty())
        return head_parse::malformed;
      out.content_length = static_cast<std::size_t>(length);
    } else if (name == "transfer-encoding") {
      out.chunked = lower(value).find("chunked") != std::string::npos;
    } else if (name == "connection") {
      std::string v = lower(value);
      if (v == "close") out.connection_keep_alive = false;
      if (v == "keep-alive") out.connection_keep_alive = true;
    } else {
      out.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    }
  }
  out.body_at = end + 4;
  return head_parse::complete;
}

}  // namespace keel::kv_module
