// cluster.cc — --initial-cluster parsing and etcd's member and cluster ids.
//
// SHA-1 is written out here (FIPS 180-4 §6.1) rather than taken from OpenSSL: it is
// needed only to reproduce etcd's ids, never for security, and keel has no other use
// for libcrypto. cluster_test checks it against the FIPS examples and against ids a
// real etcd printed.
#include "keel/cluster.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>

namespace keel {
namespace {

using sha1_digest = std::array<std::uint8_t, 20>;

std::uint32_t rotate_left(std::uint32_t value, int bits) {
  return (value << bits) | (value >> (32 - bits));
}

void sha1_block(std::array<std::uint32_t, 5>& state, const std::uint8_t* block) {
  std::array<std::uint32_t, 80> words;
  for (int i = 0; i < 16; ++i)
    words[i] = std::uint32_t{block[4 * i]} << 24 | std::uint32_t{block[4 * i + 1]} << 16 |
               std::uint32_t{block[4 * i + 2]} << 8 | std::uint32_t{block[4 * i + 3]};
  for (int i = 16; i < 80; ++i)
    words[i] = rotate_left(words[i - 3] ^ words[i - 8] ^ words[i - 14] ^ words[i - 16], 1);
  std::uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
  for (int i = 0; i < 80; ++i) {
    std::uint32_t mixed, constant;
    if (i < 20) {
      mixed = (b & c) | (~b & d);
      constant = 0x5a827999;
    } else if (i < 40) {
      mixed = b ^ c ^ d;
      constant = 0x6ed9eba1;
    } else if (i < 60) {
      mixed = (b & c) | (b & d) | (c & d);
      constant = 0x8f1bbcdc;
    } else {
      mixed = b ^ c ^ d;
      constant = 0xca62c1d6;
    }
    const std::uint32_t next = rotate_left(a, 5) + mixed + e + constant + words[i];
    e = d;
    d = c;
    c = rotate_left(b, 30);
    b = a;
    a = next;
  }
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
  state[4] += e;
}

sha1_digest sha1(const std::string& message) {
  std::array<std::uint32_t, 5> state = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  // Padding: 0x80, zeros to 56 mod 64, then the bit length as 64 bits big-endian.
  std::string padded = message;
  padded.push_back(static_cast<char>(0x80));
  while (padded.size() % 64 != 56) padded.push_back('\0');
  const std::uint64_t bits = static_cast<std::uint64_t>(message.size()) * 8;
  for (int shift = 56; shift >= 0; shift -= 8)
    padded.push_back(static_cast<char>((bits >> shift) & 0xff));
  for (std::size_t offset = 0; offset < padded.size(); offset += 64)
    sha1_block(state, reinterpret_cast<const std::uint8_t*>(padded.data() + offset));
  sha1_digest digest;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j)
      digest[4 * i + j] = static_cast<std::uint8_t>(state[i] >> (24 - 8 * j));
  return digest;
}

std::uint64_t first_eight_bytes(const sha1_digest& digest) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = value << 8 | digest[i];
  return value;
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

status bad_pair(std::string_view pair, const std::string& why) {
  return status(errc::invalid_argument, "initial-cluster: " + quoted(pair) + ": " + why);
}

// http(s)://host:port, the host a bracketed IPv6 address or a name/IPv4 address without
// '/', ':', '[', ']' or blanks; the same shape as the config's URL pattern, minus the
// trailing '/' (etcd's types.NewURLs refuses any path).
bool is_peer_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return false;
  }
  std::size_t host_end = 0;
  if (rest.starts_with("[")) {
    host_end = rest.find(']');
    if (host_end == std::string_view::npos || host_end == 1) return false;
    for (char c : rest.substr(1, host_end - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    ++host_end;
  } else {
    host_end = rest.find(':');
    if (host_end == std::string_view::npos || host_end == 0) return false;
    for (char c : rest.substr(0, host_end))
      if (c == '/' || c == '[' || c == ']' || c == ' ') return false;
  }
  if (host_end >= rest.size() || rest[host_end] != ':') return false;
  const std::string_view port = rest.substr(host_end + 1);
  if (port.empty() || port.size() > 5) return false;
  unsigned long number = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    number = number * 10 + static_cast<unsigned long>(c - '0');
  }
  return number <= 65535;
}

}  // namespace

result<std::vector<cluster_member_spec>> parse_initial_cluster(std::string_view text) {
  std::vector<cluster_member_spec> members;
  std::vector<std::string> seen_urls;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::size_t end = comma == std::string_view::npos ? text.size() : comma;
    const std::string_view pair = text.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;  // etcd's parse() skips empty items
    const std::size_t equals = pair.find('=');
    if (equals == std::string_view::npos) return bad_pair(pair, "missing '=' (want name=peerURL)");
    const std::string_view name = pair.substr(0, equals);
    const std::string_view url = pair.substr(equals + 1);
    if (name.empty()) return bad_pair(pair, "empty member name");
    if (!is_peer_url(url))
      return bad_pair(pair, "URL " + quoted(url) + " is not http(s)://host:port");
    if (std::find(seen_urls.begin(), seen_urls.end(), url) != seen_urls.end())
      return bad_pair(pair, "duplicate URL " + quoted(url));
    seen_urls.emplace_back(url);
    auto member = std::find_if(members.begin(), members.end(),
                               [&](const cluster_member_spec& m) { return m.name == name; });
    if (member == members.end())
      member = members.insert(members.end(), cluster_member_spec{std::string(name), {}});
    member->peer_urls.emplace_back(url);
  }
  return members;
}

std::uint64_t compute_member_id(std::vector<std::string> peer_urls,
                                std::string_view cluster_token) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string message;
  for (const std::string& url : peer_urls) message += url;
  message += cluster_token;
  return first_eight_bytes(sha1(message));
}

std::uint64_t compute_cluster_id(std::vector<std::uint64_t> member_ids) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string message;
  for (std::uint64_t id : member_ids)
    for (int shift = 56; shift >= 0; shift -= 8)
      message.push_back(static_cast<char>((id >> shift) & 0xff));
  return first_eight_bytes(sha1(message));
}

std::string format_member_id(std::uint64_t id) {
  char text[17];
  std::snprintf(text, sizeof(text), "%llx", static_cast<unsigned long long>(id));
  return text;
}

}  // namespace keel
