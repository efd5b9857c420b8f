#include "codec.h"

#include <array>
#include <cstring>

#include "le_bytes.h"

namespace keel::kv_module {

namespace {
constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  table['-'] = 62;  // URL-safe alphabet
  table['_'] = 63;
  return table;
}
constexpr auto decode_table = make_decode_table();

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16) |
                      (std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                      std::uint32_t(static_cast<unsigned char>(bytes[i + 2]));
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out += "==";
  } else if (rest == 2) {
    std::uint32_t v = (std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16) |
                      (std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  // Strip up to two '=' of padding; then the length mod 4 must not be 1.
  std::size_t end = text.size();
  int padding = 0;
  while (end > 0 && text[end - 1] == '=' && padding < 2) {
    --end;
    ++padding;
  }
  if (padding > 0 && text.size() % 4 != 0) return std::nullopt;
  std::string_view body = text.substr(0, end);
  if (body.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(body.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : body) {
    std::int8_t v = decode_table[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero (canonical encoding, as Go's StdEncoding checks).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string encode_put_entry(const put_entry& put) {
  std::string out;
  out.reserve(2 + 8 + 4 + put.key.size() + 4 + put.value.size());
  out.push_back(static_cast<char>(entry_kind_put));
  std::uint8_t flags = (put.prev_kv ? 1 : 0) | (put.ignore_value ? 2 : 0) | (put.ignore_lease ? 4 : 0);
  out.push_back(static_cast<char>(flags));
  put_u64(out, static_cast<std::uint64_t>(put.lease));
  put_u32(out, static_cast<std::uint32_t>(put.key.size()));
  out += put.key;
  put_u32(out, static_cast<std::uint32_t>(put.value.size()));
  out += put.value;
  return out;
}

std::optional<put_entry> decode_put_entry(std::string_view data) {
  if (data.size() < 2 + 8 + 4) return std::nullopt;
  if (static_cast<std::uint8_t>(data[0]) != entry_kind_put) return std::nullopt;
  std::uint8_t flags = static_cast<std::uint8_t>(data[1]);
  if (flags & ~7u) return std::nullopt;
  put_entry put;
  put.prev_kv = flags & 1;
  put.ignore_value = flags & 2;
  put.ignore_lease = flags & 4;
  put.lease = static_cast<std::int64_t>(get_le(data, 2, 8));
  std::size_t at = 10;
  std::uint64_t key_bytes = get_le(data, at, 4);
  at += 4;
  if (data.size() - at < key_bytes + 4) return std::nullopt;
  put.key.assign(data.substr(at, key_bytes));
  at += key_bytes;
  std::uint64_t value_bytes = get_le(data, at, 4);
  at += 4;
  if (data.size() - at != value_bytes) return std::nullopt;
  put.value.assign(data.substr(at, value_bytes));
  return put;
}

namespace {

using reader = le_reader;

void put_txn_body(std::string& out, const kv::txn_request& request);
bool get_txn_body(reader& in, kv::txn_request& txn, std::size_t depth);

void put_op(std::string& out, const kv::request_op& op) {
  switch (op.type) {
    case kv::request_op::kind::range: {
      const auto& r = op.range;
      out.push_back(0);
      put_string(out, r.key);
      put_string(out, r.range_end);
      put_u64(out, static_cast<std::uint64_t>(r.limit));
      put_u64(out, static_cast<std::uint64_t>(r.revision));
      out.push_back(static_cast<char>(r.order));
      out.push_back(static_cast<char>(r.target));
      out.push_back(static_cast<char>((r.keys_only ? 1 : 0) | (r.count_only ? 2 : 0)));
      put_u64(out, static_cast<std::uint64_t>(r.min_mod_revision));
      put_u64(out, static_cast<std::uint64_t>(r.max_mod_revision));
      put_u64(out, static_cast<std::uint64_t>(r.min_create_revision));
      put_u64(out, static_cast<std::uint64_t>(r.max_create_revision));
      break;
    }
    case kv::request_op::kind::put: {
      const auto& p = op.put;
      out.push_back(1);
      out.push_back(static_cast<char>((p.prev_kv ? 1 : 0) | (p.ignore_value ? 2 : 0) | (p.ignore_lease ? 4 : 0)));
      put_u64(out, static_cast<std::uint64_t>(p.lease));
      put_string(out, p.key);
      put_string(out, p.value);
      break;
    }
    case kv::request_op::kind::delete_range: {
      const auto& d = op.delete_range;
      out.push_back(2);
      out.push_back(static_cast<char>(d.prev_kv ? 1 : 0));
      put_string(out, d.key);
      put_string(out, d.range_end);
      break;
    }
    case kv::request_op::kind::txn:
      out.push_back(3);
      put_txn_body(out, op.txn);
      break;
  }
}

bool get_op(reader& in, kv::request_op& op, std::size_t depth) {
  std::uint8_t kind = in.u8();
  if (kind == 0) {
    kv::range_request r;
    r.key = in.str();
    r.range_end = in.str();
    r.limit = in.i64();
    r.revision = in.i64();
    std::uint8_t order = in.u8(), target = in.u8(), flags = in.u8();
    if (order > 2 || target > 4 || (flags & ~3u)) return false;
    r.order = static_cast<kv::sort_order>(order);
    r.target = static_cast<kv::sort_target>(target);
    r.keys_only = flags & 1;
    r.count_only = flags & 2;
    r.min_mod_revision = in.i64();
    r.max_mod_revision = in.i64();
    r.min_create_revision = in.i64();
    r.max_create_revision = in.i64();
    op = kv::request_op::of(std::move(r));
  } else if (kind == 1) {
    kv::put_request p;
    std::uint8_t flags = in.u8();
    if (flags & ~7u) return false;
    p.prev_kv = flags & 1;
    p.ignore_value = flags & 2;
    p.ignore_lease = flags & 4;
    p.lease = in.i64();
    p.key = in.str();
    p.value = in.str();
    op = kv::request_op::of(std::move(p));
  } else if (kind == 2) {
    kv::delete_range_request d;
    std::uint8_t flags = in.u8();
    if (flags & ~1u) return false;
    d.prev_kv = flags & 1;
    d.key = in.str();
    d.range_end = in.str();
    op = kv::request_op::of(std::move(d));
  } else if (kind == 3) {
    if (depth >= kv::mvcc_txn_depth_max) return false;
    kv::txn_request nested;
    if (!get_txn_body(in, nested, depth + 1)) return false;
    op = kv::request_op::of(std::move(nested));
  } else {
    return false;
  }
  return in.ok;
}

bool get_ops(reader& in, std::vector<kv::request_op>& ops, std::size_t depth) {
  std::uint64_t n = in.le(4);
  if (!in.ok || n > in.data.size() - in.at) return false;  // each op takes at least one byte
  // One at a time: memory grows with what decodes, not with what a count claims.
  for (std::uint64_t i = 0; i < n; ++i) {
    kv::request_op op;
    if (!get_op(in, op, depth)) return false;
    ops.push_back(std::move(op));
  }
  return true;
}

// compares, success, failure (README "WAL entry encoding").
void put_txn_body(std::string& out, const kv::txn_request& request) {
  put_u32(out, static_cast<std::uint32_t>(request.compares.size()));
  for (const auto& c : request.compares) {
    out.push_back(static_cast<char>(c.result));
    out.push_back(static_cast<char>(c.target));
    put_string(out, c.key);
    put_string(out, c.range_end);
    put_u64(out, static_cast<std::uint64_t>(c.number));
    put_string(out, c.value);
  }
  for (const auto* ops : {&request.success, &request.failure}) {
    put_u32(out, static_cast<std::uint32_t>(ops->size()));
    for (const auto& op : *ops) put_op(out, op);
  }
}

// `depth`: how many txns enclose this one (0 for the entry's own).
bool get_txn_body(reader& in, kv::txn_request& txn, std::size_t depth) {
  std::uint64_t n = in.le(4);
  if (!in.ok || n > in.data.size() - in.at) return false;
  for (std::uint64_t i = 0; i < n && in.ok; ++i) {
    kv::compare c;
    std::uint8_t result = in.u8(), target = in.u8();
    if (result > 3 || target > 4) return false;
    c.result = static_cast<kv::compare_result>(result);
    c.target = static_cast<kv::compare_target>(target);
    c.key = in.str();
    c.range_end = in.str();
    c.number = in.i64();
    c.value = in.str();
    txn.compares.push_back(std::move(c));
  }
  return in.ok && get_ops(in, txn.success, depth) && get_ops(in, txn.failure, depth);
}

}  // namespace

std::string encode_delete_entry(const kv::delete_range_request& request) {
  std::string out;
  out.push_back(static_cast<char>(entry_kind_delete));
  out.push_back(static_cast<char>(request.prev_kv ? 1 : 0));
  put_string(out, request.key);
  put_string(out, request.range_end);
  return out;
}

std::string encode_txn_entry(const kv::txn_request& request, bool leases_on_path) {
  std::string out;
  out.push_back(static_cast<char>(leases_on_path ? entry_kind_txn_leases_on_path : entry_kind_txn));
  put_txn_body(out, request);
  return out;
}

std::string encode_compact_entry(std::int64_t revision, bool physical) {
  std::string out;
  out.push_back(static_cast<char>(entry_kind_compact));
  out.push_back(static_cast<char>(physical ? 1 : 0));
  put_u64(out, static_cast<std::uint64_t>(revision));
  return out;
}

std::string encode_v2_noted_entry(const v2_note_fields& note, std::string_view inner) {
  std::string out;
  out.reserve(43 + inner.size());
  out.push_back(static_cast<char>(entry_kind_v2_noted));
  out.push_back(static_cast<char>(note.action));
  out.push_back(static_cast<char>(note.refresh ? 1 : 0));
  put_u64(out, static_cast<std::uint64_t>(note.node_expiration_ns));
  put_u64(out, static_cast<std::uint64_t>(note.node_ttl));
  put_u64(out, static_cast<std::uint64_t>(note.previous_expiration_ns));
  put_u64(out, static_cast<std::uint64_t>(note.previous_ttl));
  out.append(inner);
  return out;
}

std::optional<wal_entry> decode_entry(std::string_view data) {
  if (data.empty()) return std::nullopt;
  if (static_cast<std::uint8_t>(data[0]) == entry_kind_v2_noted) {
    reader note_in{data, 1};
    v2_note_fields note;
    note.action = note_in.u8();
    std::uint8_t flags = note_in.u8();
    note.node_expiration_ns = note_in.i64();
    note.node_ttl = note_in.i64();
    note.previous_expiration_ns = note_in.i64();
    note.previous_ttl = note_in.i64();
    if (!note_in.ok || (flags & ~1u) || note_in.at >= data.size() ||
        static_cast<std::uint8_t>(data[note_in.at]) == entry_kind_v2_noted)
      return std::nullopt;
    note.refresh = flags & 1;
    auto inner = decode_entry(data.substr(note_in.at));
    if (!inner) return std::nullopt;
    inner->v2_note = note;
    return inner;
  }
  wal_entry entry;
  entry.kind = static_cast<std::uint8_t>(data[0]);
  reader in{data, 1};
  switch (entry.kind) {
    case entry_kind_put: {
      auto put = decode_put_entry(data);
      if (!put) return std::nullopt;
      entry.put = std::move(*put);
      return entry;
    }
    case entry_kind_delete: {
      std::uint8_t flags = in.u8();
      if (flags & ~1u) return std::nullopt;
      entry.delete_range.prev_kv = flags & 1;
      entry.delete_range.key = in.str();
      entry.delete_range.range_end = in.str();
      break;
    }
    case entry_kind_txn_leases_on_path:
      entry.kind = entry_kind_txn;
      entry.txn_leases_on_path = true;
      [[fallthrough]];
    case entry_kind_txn:
      if (!get_txn_body(in, entry.txn, 0)) return std::nullopt;
      break;
    case entry_kind_compact: {
      std::uint8_t flags = in.u8();
      if (flags & ~1u) return std::nullopt;
      entry.physical = flags & 1;
      entry.compact_revision = in.i64();
      break;
    }
    case entry_kind_lease_grant:
      entry.lease_id = in.i64();
      entry.lease_ttl = in.i64();
      break;
    case entry_kind_lease_revoke: {
      std::uint8_t flags = in.u8();
      if (flags & ~1u) return std::nullopt;
      entry.lease_expired = flags & 1;
      entry.lease_id = in.i64();
      break;
    }
    default: return std::nullopt;
  }
  if (!in.done()) return std::nullopt;
  return entry;
}

std::string encode_lease_grant_entry(std::int64_t id, std::int64_t ttl) {
  std::string out;
  out.push_back(static_cast<char>(entry_kind_lease_grant));
  put_u64(out, static_cast<std::uint64_t>(id));
  put_u64(out, static_cast<std::uint64_t>(ttl));
  return out;
}

std::string encode_lease_revoke_entry(std::int64_t id, bool expired) {
  std::string out;
  out.push_back(static_cast<char>(entry_kind_lease_revoke));
  out.push_back(static_cast<char>(expired ? 1 : 0));
  put_u64(out, static_cast<std::uint64_t>(id));
  return out;
}

}  // namespace keel::kv_module
