// mvcc_store::save and mvcc_store::load: the snapshot encoding of README.md "Snapshot
// encoding". The decoder trusts nothing: every length is checked against the bytes left
// before it is used, no count is used to allocate more than the input could hold, and the
// decoded histories and change log are checked against the store's invariants before the
// store exists, so that no later write can trip an assertion on a state the write path
// could never have made.
#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "keel/assert.h"
#include "keel/kv/mvcc.h"
#include "state.h"

namespace keel::kv {

using detail::key_history;
using detail::version_entry;

namespace {

static_assert(std::endian::native == std::endian::little, "the encoding is little-endian");

constexpr std::uint8_t kind_live = 0;
constexpr std::uint8_t kind_tombstone = 1;
// The smallest encodings, to bound what a count may ask for before anything is read.
constexpr std::size_t header_bytes = 32;
constexpr std::size_t live_version_bytes_min = 1 + 8 + 8 + 8 + 8 + 4;
constexpr std::size_t key_bytes_min = 4 + 1 + 4 + live_version_bytes_min;
constexpr std::size_t revision_bytes_min = 8 + 4 + 4;

// ---- writing --------------------------------------------------------------------------

class encoder {
 public:
  explicit encoder(std::string& out) : _out(out) {}

  template <typename T>
  void fixed(T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof value);
    _out.append(bytes, sizeof bytes);
  }
  void text(const std::string& bytes) {
    KEEL_ASSERT(bytes.size() <= std::numeric_limits<std::uint32_t>::max());
    fixed(static_cast<std::uint32_t>(bytes.size()));
    _out.append(bytes);
  }
  void version(const version_entry& v) {
    fixed(v.tombstone ? kind_tombstone : kind_live);
    fixed(v.mod_revision);
    if (v.tombstone) return;
    fixed(v.create_revision);
    fixed(v.version);
    fixed(v.lease);
    text(v.value);
  }

 private:
  std::string& _out;
};

// ---- reading --------------------------------------------------------------------------

// "'key'" with bytes outside printable ASCII as \xNN, cut after 64 bytes.
std::string printable(std::string_view key) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "'";
  for (std::size_t i = 0; i < key.size() && i < 64; ++i) {
    auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      out += {'\\', 'x', digits[c >> 4], digits[c & 15]};
    }
  }
  return out + (key.size() > 64 ? "'..." : "'");
}

// Bounds-checked little-endian reads. The first failure is kept, with the offset of the
// field that caused it; every read after a failure fails too.
class reader {
 public:
  explicit reader(std::string_view bytes) : _bytes(bytes) {}

  std::size_t offset() const noexcept { return _offset; }
  std::size_t left() const noexcept { return _bytes.size() - _offset; }

  template <typename T>
  bool fixed(T& value, std::string_view what) {
    if (!_failure.is_ok()) return false;
    if (left() < sizeof(T)) {
      return fail(_offset, std::string(what) + " needs " + std::to_string(sizeof(T)) + " bytes, " +
                               std::to_string(left()) + " left");
    }
    std::memcpy(&value, _bytes.data() + _offset, sizeof value);
    _offset += sizeof value;
    return true;
  }
  // A u32 length, then that many bytes.
  bool text(std::string& out, std::string_view what) {
    std::size_t at = _offset;
    std::uint32_t length = 0;
    if (!fixed(length, what)) return false;  // no string built unless it fails
    if (length > left()) {
      return fail(at, std::string(what) + " of " + std::to_string(length) +
                          " bytes runs past the end (" + std::to_string(left()) + " left)");
    }
    out.assign(_bytes.data() + _offset, length);
    _offset += length;
    return true;
  }
  bool fail(std::size_t at, const std::string& what) {
    if (_failure.is_ok()) {
      _failure =
          status(errc::corruption, "mvcc snapshot: byte " + std::to_string(at) + ": " + what);
    }
    return false;
  }
  const status& failure() const noexcept { return _failure; }

 private:
  std::string_view _bytes;
  std::size_t _offset = 0;
  status _failure;
};

bool has_version_at(const key_history& history, std::int64_t revision) {
  const auto& versions = history.versions;
  auto at = std::lower_bound(
      versions.begin(), versions.end(), revision,
      [](const version_entry& entry, std::int64_t rev) { return entry.mod_revision < rev; });
  return at != versions.end() && at->mod_revision == revision;
}

struct decoded_key {
  std::string key;
  key_history history;
};

// Decodes the sections in order into a state that is only handed out once complete and
// checked.
class decoder {
 public:
  decoder(std::string_view bytes, std::size_t more_keys) : _in(bytes), _more_keys(more_keys) {}

  result<detail::mvcc_state> run() {
    if (read_header() && read_keys() && read_change_log() && read_end()) {
      _state.index.reserve(_keys.size() + _more_keys);
      for (decoded_key& item : _keys) {
        _state.index.append(std::move(item.key), std::move(item.history));
      }
      return std::move(_state);
    }
    return _in.failure();
  }

 private:
  bool read_header();
  bool read_keys();
  bool read_key();
  bool read_version(version_entry& v);
  bool read_change_log();
  bool read_revision(std::int64_t expected);
  bool read_end();

  reader _in;
  std::size_t _more_keys;  // room in the point index for keys added after the load
  detail::mvcc_state _state;
  std::uint64_t _key_count = 0;
  std::vector<decoded_key> _keys;
  std::uint64_t _versions_above_compaction = 0;
  std::uint64_t _logged = 0;
};

bool decoder::read_header() {
  std::uint32_t magic = 0;
  std::uint16_t version = 0;
  std::uint16_t reserved = 0;
  if (!_in.fixed(magic, "magic")) return false;
  if (magic != mvcc_snapshot_magic) return _in.fail(0, "not an MVCC snapshot (bad magic)");
  if (!_in.fixed(version, "format version")) return false;
  if (version != mvcc_snapshot_version) {
    return _in.fail(4, "unsupported format version " + std::to_string(version));
  }
  if (!_in.fixed(reserved, "reserved field")) return false;
  if (reserved != 0) return _in.fail(6, "nonzero reserved field");
  if (!_in.fixed(_state.current, "current revision")) return false;
  // One below the maximum, so that the next write's revision is representable.
  if (_state.current < 1 || _state.current == std::numeric_limits<std::int64_t>::max()) {
    return _in.fail(8, "current revision " + std::to_string(_state.current) + " out of range");
  }
  if (!_in.fixed(_state.compacted, "compact revision")) return false;
  if (_state.compacted < -1 || _state.compacted > _state.current) {
    return _in.fail(16, "compact revision " + std::to_string(_state.compacted) +
                            " outside [-1, current " + std::to_string(_state.current) + "]");
  }
  if (!_in.fixed(_key_count, "key count")) return false;
  KEEL_ASSERT(_in.offset() == header_bytes);
  if (_key_count > std::numeric_limits<std::uint32_t>::max() ||
      _key_count > _in.left() / key_bytes_min) {
    return _in.fail(24, "key count " + std::to_string(_key_count) + " cannot fit in the " +
                            std::to_string(_in.left()) + " bytes left");
  }
  return true;
}

bool decoder::read_keys() {
  _keys.reserve(_key_count);
  for (std::uint64_t i = 0; i < _key_count; ++i) {
    if (!read_key()) return false;
  }
  return true;
}

bool decoder::read_key() {
  std::size_t at = _in.offset();
  decoded_key item;
  if (!_in.text(item.key, "key")) return false;
  if (item.key.empty()) return _in.fail(at, "empty key");
  if (!_keys.empty() && item.key <= _keys.back().key) {
    return _in.fail(at, "key " + printable(item.key) + " not after the previous key " +
                            printable(_keys.back().key));
  }
  std::size_t count_at = _in.offset();
  std::uint32_t count = 0;
  if (!_in.fixed(count, "version count")) return false;
  if (count == 0) return _in.fail(count_at, "key " + printable(item.key) + " has no versions");
  item.history.versions.reserve(std::min<std::size_t>(count, _in.left() / 9));
  for (std::uint32_t i = 0; i < count; ++i) {
    version_entry v;
    if (!read_version(v)) return false;
    _versions_above_compaction += v.mod_revision > _state.compacted;
    item.history.versions.push_back(std::move(v));
  }
  std::string wrong = detail::history_violation(item.history, _state.current, _state.compacted);
  if (!wrong.empty()) return _in.fail(at, "key " + printable(item.key) + ": " + wrong);
  _keys.push_back(std::move(item));
  return true;
}

bool decoder::read_version(version_entry& v) {
  std::size_t at = _in.offset();
  std::uint8_t kind = 0;
  if (!_in.fixed(kind, "version kind")) return false;
  if (kind != kind_live && kind != kind_tombstone) {
    return _in.fail(at, "unknown version kind " + std::to_string(kind));
  }
  v.tombstone = kind == kind_tombstone;
  if (!_in.fixed(v.mod_revision, "mod revision")) return false;
  if (v.tombstone) return true;
  return _in.fixed(v.create_revision, "create revision") && _in.fixed(v.version, "version") &&
         _in.fixed(v.lease, "lease") && _in.text(v.value, "value");
}

// The change log holds every revision in (max(compacted, 1), current], in order.
bool decoder::read_change_log() {
  std::size_t at = _in.offset();
  std::uint64_t count = 0;
  if (!_in.fixed(count, "change log revision count")) return false;
  std::int64_t first = std::max<std::int64_t>(_state.compacted, 1) + 1;
  auto expected = static_cast<std::uint64_t>(_state.current - first + 1);
  if (count != expected) {
    return _in.fail(at, "change log of " + std::to_string(count) + " revisions, expected " +
                            std::to_string(expected) + " (every revision in (" +
                            std::to_string(first - 1) + ", " + std::to_string(_state.current) +
                            "])");
  }
  if (count > _in.left() / revision_bytes_min) {
    return _in.fail(at, "change log of " + std::to_string(count) + " revisions cannot fit in the " +
                            std::to_string(_in.left()) + " bytes left");
  }
  for (std::int64_t revision = first; revision <= _state.current; ++revision) {
    if (!read_revision(revision)) return false;
  }
  if (_logged != _versions_above_compaction) {
    return _in.fail(_in.offset(), "the change log names " + std::to_string(_logged) +
                                      " versions, the histories hold " +
                                      std::to_string(_versions_above_compaction) +
                                      " above the compact revision");
  }
  return true;
}

// One change log entry: the revision, then the positions of its keys in operation order.
bool decoder::read_revision(std::int64_t expected) {
  std::size_t at = _in.offset();
  std::int64_t revision = 0;
  std::uint32_t count = 0;
  if (!_in.fixed(revision, "change log revision")) return false;
  if (revision != expected) {
    return _in.fail(at, "change log revision " + std::to_string(revision) + ", expected " +
                            std::to_string(expected));
  }
  if (!_in.fixed(count, "change count")) return false;
  if (count == 0 || count > _in.left() / 4) {
    return _in.fail(at + 8, "change count " + std::to_string(count) + " at revision " +
                                std::to_string(revision) + " is 0 or runs past the end");
  }
  std::vector<std::string> keys;
  std::vector<std::uint32_t> positions;
  keys.reserve(count);
  positions.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    std::size_t key_at = _in.offset();
    std::uint32_t ordinal = 0;
    if (!_in.fixed(ordinal, "key position")) return false;
    if (ordinal >= _keys.size()) {
      return _in.fail(key_at, "key position " + std::to_string(ordinal) + " of " +
                                  std::to_string(_keys.size()) + " keys");
    }
    const decoded_key& item = _keys[ordinal];
    if (!has_version_at(item.history, revision)) {
      return _in.fail(key_at, "key " + printable(item.key) + " has no version at revision " +
                                  std::to_string(revision));
    }
    positions.push_back(ordinal);
    keys.push_back(item.key);
  }
  std::sort(positions.begin(), positions.end());
  auto twice = std::adjacent_find(positions.begin(), positions.end());
  if (twice != positions.end()) {
    return _in.fail(at, "key " + printable(_keys[*twice].key) + " twice at revision " +
                            std::to_string(revision));
  }
  _logged += count;
  _state.changes.insert(_state.changes.end(), {revision, std::move(keys)});
  return true;
}

bool decoder::read_end() {
  if (_in.left() == 0) return true;
  return _in.fail(_in.offset(), std::to_string(_in.left()) + " bytes after the change log");
}

// At least the bytes save() appends, given the store's `versions` (version_count()), so
// that `out` is allocated once: growing a string of ~100 MB by doubling reallocates it ~27
// times and copies about its final size again, into fresh pages that the snapshot child
// must fault in. s.bytes counts a key once per version, and the change log names each
// version above the compact revision once (README "Invariants"), so per version 64 bytes
// cover its fixed fields, its change log entry and its revision's header.
std::size_t encoded_size_bound(const detail::mvcc_state& s, std::size_t versions) {
  return 64 + s.bytes + 8 * s.index.size() + 64 * versions;
}

}  // namespace

void mvcc_store::save(std::string& out) const {
  const detail::mvcc_state& s = *_state;
  out.reserve(out.size() + encoded_size_bound(s, version_count()));
  encoder to(out);
  to.fixed(mvcc_snapshot_magic);
  to.fixed(mvcc_snapshot_version);
  to.fixed(std::uint16_t{0});
  to.fixed(s.current);
  to.fixed(s.compacted);
  KEEL_ASSERT(s.index.size() <= std::numeric_limits<std::uint32_t>::max());
  to.fixed(static_cast<std::uint64_t>(s.index.size()));
  // The change log names keys by their position in the key section.
  absl::flat_hash_map<absl::string_view, std::uint32_t> position;
  if (!s.changes.empty()) position.reserve(s.index.size());
  for (const auto& [key, n] : s.index.ordered()) {
    if (!s.changes.empty()) position.emplace(key, static_cast<std::uint32_t>(position.size()));
    to.text(n->key);
    to.fixed(static_cast<std::uint32_t>(n->history.versions.size()));
    for (const version_entry& v : n->history.versions) to.version(v);
  }
  to.fixed(static_cast<std::uint64_t>(s.changes.size()));
  for (const auto& [revision, keys] : s.changes) {
    to.fixed(revision);
    to.fixed(static_cast<std::uint32_t>(keys.size()));
    for (const std::string& key : keys) to.fixed(position.at(detail::as_absl(key)));
  }
}

result<mvcc_store> mvcc_store::load(std::string_view bytes, std::size_t more_keys) {
  auto decoded = decoder(bytes, more_keys).run();
  if (!decoded) return decoded.error();
  mvcc_store store;
  *store._state = std::move(decoded.value());
  store._state->bytes = detail::count_bytes(*store._state);
  return store;
}

}  // namespace keel::kv
