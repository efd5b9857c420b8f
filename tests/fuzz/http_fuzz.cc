// Fuzzes http_request_parser: every input, split at a point the input itself chooses,
// must parse to the same requests as the whole input, and nothing may crash or read
// out of bounds (ASan/UBSan). Requests are read in full to touch every field.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "keel/reactor/http.h"

namespace {
std::vector<std::string> parse_all(const char* data, std::size_t size, std::size_t split, int& status) {
  keel::http_request_parser parser(4096);
  std::vector<std::string> seen;
  status = 0;
  std::size_t bounds[] = {split, size};
  std::size_t at = 0;
  for (std::size_t end : bounds) {
    while (at < end) {
      keel::http_request_parser::outcome out;
      at += parser.feed(data + at, end - at, out);
      if (out == keel::http_request_parser::outcome::request) {
        const keel::http_request& r = parser.request();
        std::string summary = r.method + " " + r.url + " " + std::to_string(r.body.size());
        for (const auto& h : r.headers) summary += "|" + h.name + ":" + h.value;
        summary += std::string(r.path()) + std::string(r.query()) + std::string(r.header("host"));
        seen.push_back(summary);
        continue;
      }
      if (out == keel::http_request_parser::outcome::error) {
        status = parser.error_status();
        return seen;
      }
      break;
    }
  }
  return seen;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  int whole_status = 0, split_status = 0;
  auto whole = parse_all(text, size, size, whole_status);
  std::size_t split = size ? data[0] % (size + 1) : 0;
  auto parts = parse_all(text, size, split, split_status);
  if (whole_status == 0 && split_status == 0 && whole != parts) __builtin_trap();
  return 0;
}
