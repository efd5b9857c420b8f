// v2_json.cc — etcd's v2 JSON, byte for byte as Go's encoding/json writes it: struct field
// order, omitempty, HTML-safe string escapes, RFC3339Nano times. See v2.h.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>

#include "v2.h"

namespace keel::kv_module::v2 {

std::string_view error_message(int code) noexcept {
  switch (code) {
    case 100: return "Key not found";
    case 101: return "Compare failed";
    case 102: return "Not a file";
    case 103: return "Reached the max number of peers in the cluster";
    case 104: return "Not a directory";
    case 105: return "Key already exists";
    case 106: return "The prefix of given key is a keyword in etcd";
    case 107: return "Root is read only";
    case 108: return "Directory not empty";
    case 109: return "Peer address has existed";
    case 110: return "The request requires user authentication";
    case 200: return "Value is Required in POST form";
    case 201: return "PrevValue is Required in POST form";
    case 202: return "The given TTL in POST form is not a number";
    case 203: return "The given index in POST form is not a number";
    case 204: return "Value or TTL is required in POST form";
    case 205: return "The given timeout in POST form is not a number";
    case 206: return "Name is required in POST form";
    case 207: return "Index or value is required";
    case 208: return "Index and value cannot both be specified";
    case 209: return "Invalid field";
    case 210: return "Invalid POST form";
    case 211: return "Value provided on refresh";
    case 212: return "A TTL must be provided on refresh";
    case 300: return "Raft Internal Error";
    case 301: return "During Leader Election";
    case 400: return "watcher is cleared due to etcd recovery";
    case 401: return "The event in requested index is outdated and cleared";
    case 402: return "Standby Internal Error";
    case 403: return "Invalid active size";
    case 404: return "Standby remove delay";
    case 500: return "Client Internal Error";
    default: return "";
  }
}

// v2error.Error.StatusCode.
int error_http_status(int code) noexcept {
  switch (code) {
    case 100: return 404;
    case 101:
    case 105: return 412;
    case 102:
    case 108: return 403;
    case 110: return 401;
    case 300:
    case 301: return 500;
    default: return 400;
  }
}

std::string_view action_name(action a) noexcept {
  switch (a) {
    case action::none: return "";
    case action::get: return "get";
    case action::set: return "set";
    case action::create: return "create";
    case action::update: return "update";
    case action::compare_and_swap: return "compareAndSwap";
    case action::remove: return "delete";
    case action::compare_and_delete: return "compareAndDelete";
    case action::expire: return "expire";
  }
  return "";
}

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

// One UTF-8 sequence at `s` as Go's utf8.DecodeRuneInString accepts it (no overlongs, no
// surrogates, nothing above U+10FFFF). Returns its length, or 0 if it is not valid.
std::size_t valid_utf8_length(std::string_view s, char32_t& rune) noexcept {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b0 = byte(0);
  auto continuation = [&](std::size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!continuation(1)) return 0;
    rune = static_cast<char32_t>(((b0 & 0x1F) << 6) | (byte(1) & 0x3F));
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return 0;
    rune = static_cast<char32_t>(((b0 & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F));
    if (rune < 0x800 || (rune >= 0xD800 && rune <= 0xDFFF)) return 0;
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    rune = static_cast<char32_t>(((b0 & 0x07) << 18) | ((byte(1) & 0x3F) << 12) |
                                 ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F));
    if (rune < 0x10000 || rune > 0x10FFFF) return 0;
    return 4;
  }
  return 0;
}

void append_number(std::string& out, const char* name, std::int64_t value) {
  out += ",\"";
  out += name;
  out += "\":";
  out += std::to_string(value);
}

}  // namespace

namespace {

// Bytes Go's encoder copies as they are: printable ASCII except \ " < > &.
constexpr bool copied_as_is(unsigned char b) noexcept {
  return b >= 0x20 && b < 0x80 && b != '\\' && b != '"' && b != '<' && b != '>' && b != '&';
}

// Whether any of the 8 bytes of `w` is not copied_as_is (SWAR: each test leaves a byte's
// top bit set where it holds; a borrow may also flag the byte above a flagged one, which
// only sends that word the byte-by-byte way).
constexpr bool word_needs_care(std::uint64_t w) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  auto zero_byte = [](std::uint64_t x) { return (x - ones) & ~x & highs; };
  std::uint64_t flagged = (w - ones * 0x20) & ~w;  // below 0x20 (for bytes < 0x80)
  flagged |= w;                                    // 0x80 and above
  flagged |= zero_byte(w ^ (ones * '\\')) | zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '<')) |
             zero_byte(w ^ (ones * '>')) | zero_byte(w ^ (ones * '&'));
  return (flagged & highs) != 0;
}

// The end of the run of copied_as_is bytes that starts at `from`.
std::size_t plain_run_end(std::string_view text, std::size_t from) noexcept {
  std::size_t i = from;
  while (i + 8 <= text.size()) {
    std::uint64_t w;
    std::memcpy(&w, text.data() + i, 8);
    if (word_needs_care(w)) break;
    i += 8;
  }
  while (i < text.size() && copied_as_is(static_cast<unsigned char>(text[i]))) ++i;
  return i;
}

}  // namespace

void append_go_string(std::string& out, std::string_view text) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    // The plain run up to the next byte that needs care goes in with one append.
    std::size_t run = plain_run_end(text, i);
    if (run > i) {
      out.append(text.data() + i, run - i);
      i = run;
      continue;
    }
    unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      switch (b) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (b < 0x20 || b == '<' || b == '>' || b == '&') {
            out += "\\u00";
            out.push_back(hex_digits[b >> 4]);
            out.push_back(hex_digits[b & 15]);
          } else {
            out.push_back(static_cast<char>(b));
          }
      }
      ++i;
      continue;
    }
    char32_t rune = 0;
    std::size_t length = valid_utf8_length(text.substr(i), rune);
    if (length == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (rune == 0x2028 || rune == 0x2029) {
      out += "\\u202";
      out.push_back(hex_digits[rune & 15]);
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  out.push_back('"');
}

std::string format_rfc3339_nano(std::int64_t unix_ns) {
  std::int64_t seconds = unix_ns / 1'000'000'000;
  std::int64_t nanos = unix_ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --seconds;
  }
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm utc{};
  ::gmtime_r(&t, &utc);
  char text[64];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string out(text, n);
  if (nanos != 0) {
    char fraction[16];
    std::snprintf(fraction, sizeof fraction, ".%09lld", static_cast<long long>(nanos));
    std::string f(fraction);
    while (f.back() == '0') f.pop_back();  // RFC3339Nano drops trailing zeros
    out += f;
  }
  out += 'Z';
  return out;
}

std::int64_t unix_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t ttl_seconds(std::int64_t expiration_ns, std::int64_t now_ns) noexcept {
  std::int64_t left = expiration_ns - now_ns;
  std::int64_t ttl = left / 1'000'000'000;  // Go truncates toward zero...
  if (left % 1'000'000'000 > 0) ++ttl;      // ...and rounds a positive remainder up
  return ttl;
}

// NodeExtern's field order: key, value, dir, expiration, ttl, nodes, modifiedIndex,
// createdIndex; every field but value is omitempty.
void append_node(std::string& out, const node& n) {
  out += '{';
  std::size_t mark = out.size();
  if (!n.key.empty()) {
    out += "\"key\":";
    append_go_string(out, n.key);
  }
  auto comma = [&] {
    if (out.size() != mark) out += ',';
  };
  if (n.value) {
    comma();
    out += "\"value\":";
    append_go_string(out, *n.value);
  }
  if (n.dir) {
    comma();
    out += "\"dir\":true";
  }
  if (n.expiration_ns != 0) {
    comma();
    out += "\"expiration\":\"" + format_rfc3339_nano(n.expiration_ns) + "\"";
  }
  if (n.ttl != 0) {
    comma();
    out += "\"ttl\":" + std::to_string(n.ttl);
  }
  if (!n.nodes.empty()) {
    comma();
    out += "\"nodes\":[";
    for (std::size_t i = 0; i < n.nodes.size(); ++i) {
      if (i) out += ',';
      append_node(out, n.nodes[i]);
    }
    out += ']';
  }
  if (n.modified_index != 0) {
    if (out.size() == mark)
      out += "\"modifiedIndex\":" + std::to_string(n.modified_index);
    else
      append_number(out, "modifiedIndex", n.modified_index);
  }
  if (n.created_index != 0) {
    if (out.size() == mark)
      out += "\"createdIndex\":" + std::to_string(n.created_index);
    else
      append_number(out, "createdIndex", n.created_index);
  }
  out += '}';
}

std::string event_json(const event& e, bool no_value_on_success) {
  std::string out = "{\"action\":";
  append_go_string(out, action_name(e.what));
  bool strip =
      no_value_on_success && (e.what == action::set || e.what == action::compare_and_swap ||
                              e.what == action::create || e.what == action::update);
  if (!strip && e.current) {
    out += ",\"node\":";
    append_node(out, *e.current);
  }
  if (!strip && e.previous) {
    out += ",\"prevNode\":";
    append_node(out, *e.previous);
  }
  out += "}\n";
  return out;
}

std::string error_json(const error& e) {
  std::string out = "{\"errorCode\":" + std::to_string(e.code) + ",\"message\":";
  append_go_string(out, error_message(e.code));
  if (!e.cause.empty()) {
    out += ",\"cause\":";
    append_go_string(out, e.cause);
  }
  out += ",\"index\":" + std::to_string(e.index) + "}\n";
  return out;
}

}  // namespace keel::kv_module::v2
