// v2_relay.cc — the two encodings of a v2 write relayed from a follower to the leader over
// the peer port (v2.h, "relaying writes"; the formats are documented there). Pure
// functions: no store, no shard.
#include <cstring>

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

template <typename T>
void append_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
}

void append_text(std::string& out, std::string_view text) {
  append_le<std::uint32_t>(out, static_cast<std::uint32_t>(text.size()));
  out.append(text);
}

// Reads little-endian fields from the front of `in`; any read past the end makes ok false.
struct reader {
  std::string_view in;
  bool ok = true;

  template <typename T>
  T take() {
    if (in.size() < sizeof(T)) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in[i])) << (8 * i);
    in.remove_prefix(sizeof(T));
    return static_cast<T>(v);
  }

  std::string take_text() {
    auto n = take<std::uint32_t>();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string out(in.substr(0, n));
    in.remove_prefix(n);
    return out;
  }
};

}  // namespace

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
  append_le<std::uint16_t>(out, flags);
  append_le<std::uint64_t>(out, r.prev_index);
  append_le<std::uint64_t>(out, r.ttl.value_or(0));
  append_text(out, r.path);
  append_text(out, r.value);
  append_text(out, r.prev_value);
  return out;
}

std::optional<key_request> decode_relayed_request(std::string_view data) {
  reader in{data};
  if (in.take<std::uint8_t>() != relayed_request_kind || !in.ok) return std::nullopt;
  key_request r;
  switch (in.take<std::uint8_t>()) {
    case method_put: r.method = "PUT"; break;
    case method_post: r.method = "POST"; break;
    case method_delete: r.method = "DELETE"; break;
    default: return std::nullopt;
  }
  auto flags = in.take<std::uint16_t>();
  r.prev_index = in.take<std::uint64_t>();
  auto ttl = in.take<std::uint64_t>();
  r.path = in.take_text();
  r.value = in.take_text();
  r.prev_value = in.take_text();
  if (!in.ok || !in.in.empty() || (flags & ~flags_known) != 0) return std::nullopt;
  if (r.path.empty() || r.path.front() != '/') return std::nullopt;  // normalised by the follower
  r.dir = flags & flag_dir;
  if (flags & flag_prev_exist_given) r.prev_exist = (flags & flag_prev_exist) != 0;
  if (flags & flag_ttl_given) r.ttl = ttl;
  r.refresh = flags & flag_refresh;
  r.recursive = flags & flag_recursive;
  r.no_value_on_success = flags & flag_no_value_on_success;
  return r;
}

std::string encode_relayed_answer(const outcome& out, bool no_value_on_success) {
  std::string bytes;
  if (out.failure) {
    append_le<std::uint16_t>(bytes, static_cast<std::uint16_t>(error_http_status(out.failure->code)));
    append_le<std::int64_t>(bytes, out.failure->index);
    bytes += error_json(*out.failure);
  } else {
    append_le<std::uint16_t>(bytes, out.result.is_created() ? 201 : 200);
    append_le<std::int64_t>(bytes, out.index);
    bytes += event_json(out.result, no_value_on_success);
  }
  return bytes;
}

std::optional<relayed_answer> decode_relayed_answer(std::string_view data) {
  reader in{data};
  relayed_answer a;
  a.http_status = in.take<std::uint16_t>();
  a.index = in.take<std::int64_t>();
  if (!in.ok || a.http_status < 200 || a.http_status > 599) return std::nullopt;
  a.body = std::string(in.in);
  return a;
}

}  // namespace keel::kv_module::v2
