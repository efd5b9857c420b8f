// v2_relay.cc — the two encodings of a v2 write relayed from a follower to the leader over
// the peer port (v2.h, "relaying writes"; the formats are documented there). Pure
// functions: no store, no shard.
#include <cstring>
#include <vector>

#include "le_bytes.h"
#include "v2.h"

namespace keel::kv_module::v2 {

namespace {

enum relayed_flag : std::uint16_t {
  flag_dir = 1,
  flag_prev_exist_given = 2,
  flag_prev_exist = 4,
  flag_ttl_given = 8,
  flag_refresh = 16,
  flag_recursive = 32,
  flag_no_value_on_success = 64,
  flags_known = 127,
};

enum relayed_method : std::uint8_t { method_put = 1, method_post = 2, method_delete = 3 };

}  // namespace

// Here rather than in v2.cc: the relay's decoder checks paths with it, and this file has
// no dependencies (tests/kv/v2_relay_test.cc links it alone).
std::string normalize_path(std::string_view raw) {
  std::vector<std::string_view> parts;
  while (!raw.empty()) {
    std::size_t slash = raw.find('/');
    std::string_view part = raw.substr(0, slash);
    raw = slash == std::string_view::npos ? std::string_view() : raw.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  if (parts.empty()) return "/";
  std::string out;
  for (std::string_view part : parts) {
    out += '/';
    out += part;
  }
  return out;
}

std::optional<std::string> encode_relayed_request(const key_request& r) {
  std::uint8_t method = r.method == "PUT" ? method_put : r.method == "POST" ? method_post
                        : r.method == "DELETE" ? method_delete : 0;
  if (method == 0) return std::nullopt;
  std::uint16_t flags = 0;
  if (r.dir) flags |= flag_dir;
  if (r.prev_exist) flags |= flag_prev_exist_given | (*r.prev_exist ? flag_prev_exist : 0);
  if (r.ttl) flags |= flag_ttl_given;
  if (r.refresh) flags |= flag_refresh;
  if (r.recursive) flags |= flag_recursive;
  if (r.no_value_on_success) flags |= flag_no_value_on_success;
  std::string out(1, static_cast<char>(relayed_request_kind));
  out.push_back(static_cast<char>(method));
  put_le(out, flags, 2);
  put_u64(out, static_cast<std::uint64_t>(r.prev_index));
  put_u64(out, static_cast<std::uint64_t>(r.ttl.value_or(0)));
  put_string(out, r.path);
  put_string(out, r.value);
  put_string(out, r.prev_value);
  return out;
}

std::optional<key_request> decode_relayed_request(std::string_view data) {
  le_reader in{data};
  if (in.u8() != relayed_request_kind || !in.ok) return std::nullopt;
  key_request r;
  switch (in.u8()) {
    case method_put: r.method = "PUT"; break;
    case method_post: r.method = "POST"; break;
    case method_delete: r.method = "DELETE"; break;
    default: return std::nullopt;
  }
  auto flags = static_cast<std::uint16_t>(in.le(2));
  r.prev_index = in.le(8);
  auto ttl = in.le(8);
  r.path = in.str();
  r.value = in.str();
  r.prev_value = in.str();
  if (!in.done() || (flags & ~flags_known) != 0) return std::nullopt;
  if (normalize_path(r.path) != r.path) return std::nullopt;  // the follower normalised it
  r.dir = flags & flag_dir;
  if (flags & flag_prev_exist_given) r.prev_exist = (flags & flag_prev_exist) != 0;
  if (flags & flag_ttl_given) r.ttl = ttl;
  r.refresh = flags & flag_refresh;
  r.recursive = flags & flag_recursive;
  r.no_value_on_success = flags & flag_no_value_on_success;
  return r;
}

namespace {

enum node_flag : std::uint8_t { node_has_value = 1, node_dir = 2, node_flags_known = 3 };
enum presence : std::uint8_t { has_current = 1, has_previous = 2, presence_known = 3 };
constexpr int node_depth_max = 64;  // a write's event has none below its node; listings do

void append_node_bytes(std::string& out, const node& n) {
  std::uint8_t flags = (n.value ? node_has_value : 0) | (n.dir ? node_dir : 0);
  out.push_back(static_cast<char>(flags));
  put_u64(out, static_cast<std::uint64_t>(n.expiration_ns));
  put_u64(out, static_cast<std::uint64_t>(n.ttl));
  put_u64(out, static_cast<std::uint64_t>(n.modified_index));
  put_u64(out, static_cast<std::uint64_t>(n.created_index));
  put_string(out, n.key);
  if (n.value) put_string(out, *n.value);
  put_u32(out, static_cast<std::uint32_t>(n.nodes.size()));
  for (const node& child : n.nodes) append_node_bytes(out, child);
}

bool take_node(le_reader& in, node& n, int depth) {
  auto flags = in.u8();
  n.expiration_ns = in.i64();
  n.ttl = in.i64();
  n.modified_index = in.i64();
  n.created_index = in.i64();
  n.key = in.str();
  if (flags & node_has_value) n.value = in.str();
  n.dir = flags & node_dir;
  auto children = static_cast<std::uint32_t>(in.le(4));
  if (!in.ok || (flags & ~node_flags_known) != 0) return false;
  if (children > 0 && depth >= node_depth_max) return false;
  for (std::uint32_t i = 0; i < children; ++i) {
    if (in.left() < 41) return false;  // the smallest node: a count cannot outrun the bytes
    node child;
    if (!take_node(in, child, depth + 1)) return false;
    n.nodes.push_back(std::move(child));
  }
  return true;
}

}  // namespace

std::string encode_relayed_outcome(const outcome& out) {
  std::string bytes;
  if (out.failure) {
    bytes.push_back(1);
    put_le(bytes, static_cast<std::uint32_t>(out.failure->code), 4);
    put_u64(bytes, static_cast<std::uint64_t>(out.failure->index));
    put_string(bytes, out.failure->cause);
    return bytes;
  }
  bytes.push_back(0);
  bytes.push_back(static_cast<char>(out.result.what));
  put_u64(bytes, static_cast<std::uint64_t>(out.index));
  std::uint8_t present = (out.result.current ? has_current : 0) | (out.result.previous ? has_previous : 0);
  bytes.push_back(static_cast<char>(present));
  if (out.result.current) append_node_bytes(bytes, *out.result.current);
  if (out.result.previous) append_node_bytes(bytes, *out.result.previous);
  return bytes;
}

std::optional<outcome> decode_relayed_outcome(std::string_view data) {
  le_reader in{data};
  outcome out;
  auto kind = in.u8();
  if (!in.ok) return std::nullopt;
  if (kind == 1) {
    error e;
    e.code = static_cast<std::int32_t>(in.le(4));
    e.index = in.i64();
    e.cause = in.str();
    if (!in.done() || e.code <= 0) return std::nullopt;
    out.failure = std::move(e);
    return out;
  }
  if (kind != 0) return std::nullopt;
  auto what = in.u8();
  out.index = in.i64();
  auto present = in.u8();
  if (!in.ok || what == 0 || what > static_cast<std::uint8_t>(action::expire) || (present & ~presence_known) != 0)
    return std::nullopt;
  out.result.what = static_cast<action>(what);
  if (present & has_current) {
    node n;
    if (!take_node(in, n, 0)) return std::nullopt;
    out.result.current = std::move(n);
  }
  if (present & has_previous) {
    node n;
    if (!take_node(in, n, 0)) return std::nullopt;
    out.result.previous = std::move(n);
  }
  if (!in.done()) return std::nullopt;
  return out;
}

}  // namespace keel::kv_module::v2
