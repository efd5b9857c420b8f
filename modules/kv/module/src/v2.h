// v2.h — etcd's v2 keys API as a view of the kv engine's MVCC keyspace (core.h). Shared by
// v2.cc (HTTP: routes, parameters, members, stats), v2_store.cc (the owner-side
// operations), v2_watch.cc (waits) and v2_json.cc (etcd's JSON).
//
// The mapping (README "etcd v2"): the v2 node at the normalised path P ("/a/b") is the MVCC
// key P; a directory D exists when a key lies under "D/", and its marker key "D/" (empty
// value) gives it indexes and a TTL. X-Etcd-Index is the store revision, modifiedIndex the
// key's mod_revision, createdIndex its create_revision. A TTL is a lease of its own; keys
// created in a directory with a TTL share the directory's lease, so they expire with it.
//
// Threads: the operations (get/put/remove) hop to the owner shard and read, decide and
// write there with no suspension in between; they return plain values that the
// connection's shard formats. The revision notes are written by the owner only and read by
// any shard (see note_revision).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core.h"
#include "keel/reactor/http.h"

namespace keel::kv_module::v2 {

// ---- errors (etcd's v2error/error.go) -----------------------------------------------------

namespace codes {
inline constexpr int key_not_found = 100;
inline constexpr int test_failed = 101;
inline constexpr int not_file = 102;
inline constexpr int not_dir = 104;
inline constexpr int node_exist = 105;
inline constexpr int root_read_only = 107;
inline constexpr int dir_not_empty = 108;
inline constexpr int value_required = 200;
inline constexpr int prev_value_required = 201;
inline constexpr int ttl_nan = 202;
inline constexpr int index_nan = 203;
inline constexpr int invalid_field = 209;
inline constexpr int invalid_form = 210;
inline constexpr int refresh_value = 211;
inline constexpr int refresh_ttl_required = 212;
inline constexpr int raft_internal = 300;
inline constexpr int event_index_cleared = 401;
}  // namespace codes

// etcd's message for a code ("Key not found"), and the HTTP status it is sent with.
std::string_view error_message(int code) noexcept;
int error_http_status(int code) noexcept;

struct error {
  int code = 0;
  std::string cause;       // omitted when empty
  std::int64_t index = 0;  // the store index when it happened (0 for parameter errors)
};

// ---- nodes and events (etcd's v2store NodeExtern and Event) ---------------------------------

struct node {
  std::string key;                   // "" only for the root (omitted, as etcd)
  std::optional<std::string> value;  // files only ("value":"" is printed)
  bool dir = false;
  std::int64_t expiration_ns = 0;   // Unix nanoseconds; 0 = permanent (no expiration)
  std::int64_t ttl = 0;             // remaining seconds, rounded up; printed when != 0
  std::vector<node> nodes;          // listings
  std::int64_t modified_index = 0;  // omitted when 0
  std::int64_t created_index = 0;   // omitted when 0
};

enum class action : std::uint8_t {
  none,  // "no note" in the revision notes
  get,
  set,
  create,
  update,
  compare_and_swap,
  remove,  // "delete"
  compare_and_delete,
  expire,
};
std::string_view action_name(action a) noexcept;

struct event {
  action what = action::none;
  std::optional<node> current;   // "node"
  std::optional<node> previous;  // "prevNode"
  // etcd's Event.IsCreated: answered 201 rather than 200.
  bool is_created() const noexcept {
    return what == action::create || (what == action::set && !previous);
  }
};

// ---- requests -------------------------------------------------------------------------------

struct key_request {
  std::string method;  // GET HEAD PUT POST DELETE
  std::string path;    // normalised: "/" or "/a/b" (see normalize_path)
  std::string value;
  bool dir = false;
  std::string prev_value;  // empty = not given ("prevValue=" is refused while parsing)
  std::uint64_t prev_index = 0;
  std::optional<bool> prev_exist;
  std::optional<std::uint64_t> ttl;  // empty or absent = no TTL
  bool refresh = false;
  bool recursive = false;
  bool sorted = false;
  bool wait = false;
  std::uint64_t wait_index = 0;
  bool stream = false;
  bool quorum = false;
  bool no_value_on_success = false;
};

// What an operation answers: an error, or an event at store index `index`.
struct outcome {
  std::optional<error> failure;
  event result;
  std::int64_t index = 0;  // X-Etcd-Index
};

// ---- relaying writes (v2_relay.cc) ----------------------------------------------------------
//
// In a cluster, a follower has the leader run its v2 writes, because v2's compare-and-swap
// and directory rules read and write the leader's state in one step. The follower parses
// and checks the request itself, sends it over the peer port as a proposal (frame 201) whose
// data is the request below, and answers its client with the outcome the leader returns in
// the result (frame 202's `answer`) once it has applied the leader's log through the
// result's (index, term) (cluster.h cluster_relay). Never logged as such: the leader logs
// the entries the write makes, as its own.
//
// Request (the proposal's data), little-endian:
//   u8 kind 0x78 | u8 method (1 PUT, 2 POST, 3 DELETE) | u16 flags (1 dir, 2 prevExist
//   given, 4 prevExist true, 8 ttl given, 16 refresh, 32 recursive, 64 noValueOnSuccess) |
//   u64 prevIndex | u64 ttl | u32 n | path | u32 n | value | u32 n | prevValue
// The path is normalised (normalize_path); an empty prevValue means none was given.
// Outcome (the result's answer), little-endian; the follower renders the JSON itself:
//   an error: u8 1 | i32 errorCode | i64 index | u32 n | cause
//   an event: u8 0 | u8 action | i64 index | u8 present (1 node, 2 prevNode) | node? | node?
//   node: u8 flags (1 value, 2 dir) | i64 expiration_ns | i64 ttl | i64 modifiedIndex |
//         i64 createdIndex | u32 n | key | (u32 n | value)? | u32 children | node...
// (0x79 was this request with a JSON answer in 7295c24..f6d4eeb, the same day: refused
// now, as any kind a member does not know, so mixed builds fail cleanly.)
inline constexpr std::uint8_t relayed_request_kind = 0x78;
// nullopt for a method that is not a write (GET, HEAD).
std::optional<std::string> encode_relayed_request(const key_request& request);
// nullopt when `data` is not a well-formed request (unknown flags, trailing bytes, a path
// that is not normalised).
std::optional<key_request> decode_relayed_request(std::string_view data);
std::string encode_relayed_outcome(const outcome& out);
// nullopt when `data` is not a well-formed outcome.
std::optional<outcome> decode_relayed_outcome(std::string_view data);

// Go's path.Clean(path.Join("/", raw)) of an already percent-decoded path: one leading
// "/", no trailing "/", "//" collapsed, "." and ".." resolved.
std::string normalize_path(std::string_view raw);

// ---- operations (any shard; they run on the owner) -----------------------------------------

// GET / HEAD without wait. With quorum=true in a cluster, committed state as of a ReadIndex
// round (owner_read_barrier); otherwise the member's state, answered once what it shows is
// committed.
task<outcome> get(key_request request);
// PUT (set, create, update, compareAndSwap, refresh), POST (in-order create) and DELETE
// (delete, compareAndDelete): the method decides. On a cluster follower the leader runs the
// write ("relaying writes" below).
task<outcome> write(key_request request);
// Owner shard, on the leader: runs a follower's relayed write (a request from
// encode_relayed_request) as if it had arrived here, without waiting for its commit; the
// outcome for the follower (encode_relayed_outcome). invalid_argument when `data` is
// malformed.
result<std::string> run_relayed(std::string_view data);

// ---- revision notes ---------------------------------------------------------------------------

// MVCC events do not say which v2 action made them, nor whether a put only refreshed a
// TTL (etcd does not show refreshes to watchers). The owner notes this for every revision
// a v2 write makes, in a fixed ring of atomics (revision_notes_max entries, no locks); a
// watcher on any shard reads the note of the revision it is about to report. A note is
// written before owner_commit() publishes the revision's events, and the cross-shard queue
// that carries them orders the write before the read. A revision without a note (written
// through v3 or natively, older than the ring, or before a restart) gets derived actions
// (README "etcd v2", watches).
inline constexpr std::size_t revision_notes_max = 16384;

struct revision_note {
  action what = action::none;
  bool refresh = false;  // a TTL refresh: hidden from watchers
  std::int64_t node_expiration_ns = 0;
  std::int64_t node_ttl = 0;
  std::int64_t previous_expiration_ns = 0;
  std::int64_t previous_ttl = 0;
};
// Owner shard only.
void note_revision(std::int64_t revision, const revision_note& note) noexcept;
// Any shard: the note of `revision`, if the ring still holds it.
std::optional<revision_note> find_note(std::int64_t revision) noexcept;
// Owner shard: forgets the notes of revisions (after, through], which a rebuild of the
// store (a leader that stepped down with speculative writes) has taken back, so the
// revisions' new writes do not show their notes.
void forget_notes(std::int64_t after, std::int64_t through) noexcept;

// ---- statistics (/v2/stats/store) -------------------------------------------------------------

struct store_counters {
  std::atomic<std::uint64_t> gets_success{0}, gets_fail{0};
  std::atomic<std::uint64_t> sets_success{0}, sets_fail{0};
  std::atomic<std::uint64_t> delete_success{0}, delete_fail{0};
  std::atomic<std::uint64_t> update_success{0}, update_fail{0};
  std::atomic<std::uint64_t> create_success{0}, create_fail{0};
  std::atomic<std::uint64_t> compare_and_swap_success{0}, compare_and_swap_fail{0};
  std::atomic<std::uint64_t> compare_and_delete_success{0}, compare_and_delete_fail{0};
  std::atomic<std::uint64_t> expire_count{0};
  std::atomic<std::int64_t> watchers{0};
};
store_counters& counters() noexcept;

// ---- JSON (v2_json.cc) ------------------------------------------------------------------------

// A JSON string literal exactly as Go's encoding/json writes it (HTML-safe: <, >, & as
// \u003c \u003e \u0026; U+2028/9 escaped; invalid UTF-8 as \ufffd).
void append_go_string(std::string& out, std::string_view text);
// Go's time.Time.Format(time.RFC3339Nano) in UTC ("2026-11-28T21:03:54.743032345Z").
std::string format_rfc3339_nano(std::int64_t unix_ns);
void append_node(std::string& out, const node& n);
// The event as etcd's json.Encoder writes it (trailing newline included). With
// no_value_on_success, set/create/update/compareAndSwap lose node and prevNode.
std::string event_json(const event& e, bool no_value_on_success = false);
std::string error_json(const error& e);

// Wall clock in Unix nanoseconds (the only clock v2 reads: TTLs shown to clients).
std::int64_t unix_now_ns() noexcept;
// etcd's node.expirationAndTTL: remaining seconds, rounded up (Go's integer division).
std::int64_t ttl_seconds(std::int64_t expiration_ns, std::int64_t now_ns) noexcept;

// ---- HTTP (v2.cc) ------------------------------------------------------------------------------

// X-Etcd-Cluster-Id: on every /v2/keys and /v2/members answer. (etcd's CORS headers are
// keeld's client-port defaults, http_server_options::default_headers, on every answer.)
void add_cluster_headers(http_response& response);
// X-Etcd-Index, X-Raft-Index and X-Raft-Term of an event answered at store index `index`.
void add_index_headers(http_response& response, std::int64_t index);
// etcd's v2error.WriteTo (the cluster headers are the caller's).
void send_error(http_response& response, const error& e);

// ---- the watch surface (v2_watch.cc) ------------------------------------------------------------

// Serves GET ?wait=true: one event, or with stream=true every event until the client goes.
task<void> serve_watch(const http_request& request, http_response& response, key_request parsed);

}  // namespace keel::kv_module::v2
