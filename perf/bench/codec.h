// codec.h — what keel-bench puts on the wire for each target and how it reads answers.
//
// Pure functions, no I/O, so tests pin the exact bytes (tests/bench/codec_test.cc).
//   v2      etcd v2 keys API: PUT /v2/keys/<key> (form body value=...), GET with
//           quorum=true for linearizable reads, wait=true&waitIndex=N for watches.
//   v3json  etcd v3 gRPC-gateway: POST /v3/kv/{put,range,txn}, /v3/lease/{grant,keepalive},
//           /v3/watch; keys and values base64, int64 as JSON strings.
//   keel    native frames (docs/formats/frame.md) carrying kv.fbs tables, built by the kv
//           module's own codec (keel/kv/native_codec.h, library keel_kv_client).
// Every request appends to a caller-owned std::string, so a client reuses one buffer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "keel/wire/frame.h"

namespace keel::bench {

enum class target_kind { keel, v2, v3json };
const char* target_name(target_kind target) noexcept;

// ---- bytes -------------------------------------------------------------------------------
std::string base64_encode(std::string_view data);
std::optional<std::string> base64_decode(std::string_view text);
// Percent-encodes everything but unreserved characters (RFC 3986) and, if keep_slash, '/'.
void append_url_escaped(std::string& out, std::string_view text, bool keep_slash);

// The key of index `index`: prefix + the index in decimal, zero-padded so the key is
// key_size bytes when that fits (longer otherwise). Printable, so v2 paths stay valid.
std::string make_key(std::string_view prefix, std::uint64_t index, std::size_t key_size);

// ---- outcome of one response ---------------------------------------------------------------
// ok, or an error kind: a short stable text that errors are counted by, e.g.
// "HTTP 404 etcd error 100 (Key not found)", "HTTP 400 grpc code 3 (...)",
// "frame error not_found: no module serves message type 102".
struct outcome {
  bool ok = true;
  std::string kind;
  static outcome success() { return {}; }
  static outcome failure(std::string kind) { return {false, std::move(kind)}; }
};

// ---- v2 ------------------------------------------------------------------------------------
// `host` is the Host header value. prev_exist: nullopt = plain set; false/true = the
// prevExist condition in the query string (etcd's Go client convention).
void v2_put(std::string& out, std::string_view host, std::string_view key, std::string_view value,
            std::optional<bool> prev_exist = std::nullopt);
// The same request from a body made once by v2_put_body ("value=" and the value escaped):
// the generator's value is fixed, so it is escaped once rather than per request.
std::string v2_put_body(std::string_view value);
void v2_put_with_body(std::string& out, std::string_view host, std::string_view key, std::string_view body,
                      std::optional<bool> prev_exist = std::nullopt);
void v2_get(std::string& out, std::string_view host, std::string_view key, bool quorum);
// A long-poll watch: GET ...?wait=true[&waitIndex=N][&recursive=true]. wait_index 0 = the
// next event after the request is registered; otherwise the first event at or after N
// (from the server's event history when N is in the past).
void v2_watch(std::string& out, std::string_view host, std::string_view key, std::uint64_t wait_index,
              bool recursive = false);
// 200/201 are ok; anything else reads {"errorCode","message"} when present.
outcome v2_classify(int http_status, std::string_view body);
// "node.value" of an event or get answer; nullopt if absent.
std::optional<std::string> v2_node_value(std::string_view body);
// One long-poll watch answer: the event's action, node.value and node.modifiedIndex (the
// next wait asks for modifiedIndex + 1). nullopt without a node or its modifiedIndex.
struct v2_event {
  std::string action;
  std::optional<std::string> value;  // absent for delete/expire
  std::uint64_t modified_index = 0;
};
std::optional<v2_event> v2_parse_event(std::string_view body);

// ---- v3 JSON gateway -----------------------------------------------------------------------
void v3_post(std::string& out, std::string_view host, std::string_view path, std::string_view body);
std::string v3_put_body(std::string_view key, std::string_view value, std::int64_t lease = 0);
// The same body from a value already in base64: the generator encodes its fixed value once
// rather than per request, so that its own CPU stays out of the server's way.
std::string v3_put_body_encoded(std::string_view key, std::string_view value_base64, std::int64_t lease = 0);
// range_end empty: the single key.
std::string v3_range_body(std::string_view key, std::string_view range_end, bool serializable);
// A txn without compares whose success branch puts every key/value pair.
std::string v3_txn_put_body(const std::vector<std::pair<std::string, std::string>>& puts);
std::string v3_lease_grant_body(std::int64_t ttl_seconds);
std::string v3_lease_keepalive_body(std::int64_t id);
std::string v3_watch_create_body(std::string_view key, std::string_view range_end);
// 200 with a body that is not an error object is ok; else "HTTP N grpc code C (message)".
// Streaming answers ({"result":...} lines) are ok unless a line carries "error". A 200 whose
// body opens with {"header": is a unary answer, never an error, and is taken without parsing.
outcome v3_classify(int http_status, std::string_view body);
// Fields read back from answers; nullopt when the answer does not have them.
std::optional<std::int64_t> v3_lease_id(std::string_view body);     // grant: "ID"
std::optional<std::int64_t> v3_range_count(std::string_view body);  // "count" (0 if omitted)
// One watch stream line: created flag and the values of its events (decoded).
struct v3_watch_line {
  bool created = false;
  bool canceled = false;
  std::vector<std::string> values;
};
std::optional<v3_watch_line> v3_parse_watch_line(std::string_view line);

// ---- keel native frames --------------------------------------------------------------------
// Each appends one request frame with end_of_stream and `request_id` (not 0) to `out`,
// building the payload in `builder` (cleared first; reused across requests).
void keel_put(std::string& out, flatbuffers::FlatBufferBuilder& builder, std::uint64_t request_id,
              std::string_view key, std::string_view value, std::int64_t lease = 0);
void keel_range(std::string& out, flatbuffers::FlatBufferBuilder& builder, std::uint64_t request_id,
                std::string_view key, std::string_view range_end, bool serializable);
void keel_txn_put(std::string& out, flatbuffers::FlatBufferBuilder& builder, std::uint64_t request_id,
                  const std::vector<std::pair<std::string, std::string>>& puts);
void keel_lease_grant(std::string& out, flatbuffers::FlatBufferBuilder& builder,
                      std::uint64_t request_id, std::int64_t ttl_seconds);
void keel_lease_keepalive(std::string& out, flatbuffers::FlatBufferBuilder& builder,
                          std::uint64_t request_id, std::int64_t id);
void keel_watch_create(std::string& out, flatbuffers::FlatBufferBuilder& builder,
                       std::uint64_t request_id, std::string_view key, std::string_view range_end);
// One frame of a watch stream (WatchResponse, 121): what the server says about the watch
// and the values of its events (a delete's value is empty). nullopt for an error frame or
// any other type (keel_classify names those).
struct keel_watch_frame {
  std::int64_t watch_id = 0;
  bool created = false;
  bool canceled = false;
  std::string cancel_reason;
  std::vector<std::string> values;
};
std::optional<keel_watch_frame> keel_parse_watch(const wire::frame_view& frame);
// The frame type a request of type `request` is answered with (request + 1).
wire::frame_type keel_response_type(wire::frame_type request) noexcept;
// An answer frame: ok when it is the expected type without the error flag; else
// "frame error <errc>: <message>" (error flag) or "frame type N unexpected".
outcome keel_classify(const wire::frame_view& frame, wire::frame_type expected);
// The lease id of a LeaseGrantResponse frame; nullopt for any other frame or an error.
std::optional<std::int64_t> keel_lease_id(const wire::frame_view& frame);

}  // namespace keel::bench
