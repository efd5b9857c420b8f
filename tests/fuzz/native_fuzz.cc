// fuzz_native — the kv module's native protocol decoders (keel/kv/native_codec.h) against
// arbitrary payloads.
//
// The first input byte picks the message type: (byte % 25) is 0-23 for the kv types
// 100-123 (even: requests, which the server reads; odd: responses, which the client reads)
// or 24 for a keel.wire.Error (the payload of an error frame). The rest of the input is the
// payload, as one frame carries it. It first gets the check both ends make before reading
// anything — wire::verify_payload, the FlatBuffers Verifier for the type's root table (the
// server's verified<> in modules/kv/module/src/native.cc, the client's frame_decoder) —
// and, if it passes, is read the way the receiving end reads it:
//   requests:  native::decode for Range, Put, DeleteRange, Txn and WatchCreate; the
//              table's own fields for the others (the server reads those directly);
//   responses: native::decode_payload, as kv::client does; errors: native::decode(Error).
// What must hold (abort() otherwise, so that libFuzzer reports the input):
//   - a request decoder refuses exactly what native_codec.h says it refuses (an enum out of
//     range, a txn op that is not a range, put or delete), with errc::invalid_argument and
//     etcd's "etcdserver: " text (the server sends the message to the client as it is);
//   - what decodes, encoded again by the codec's own encoder, passes the Verifier and
//     decodes to an equal value: the codec loses nothing and invents nothing;
//   - decoded responses keep native_codec.h's promises (revision == header.revision; one
//     txn response per op body, one event per event, ...);
//   - decode_payload refuses a payload labelled with another type.
// Seeds: tests/fuzz/corpus/native/ (make-native-seeds.py).
#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "keel/kv/native_codec.h"

using namespace keel;
using namespace keel::kv;
using keel::wire::frame_type;

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_native: %s\n", what);
    std::abort();
  }
}

// A payload in an allocation of its own: ::operator new aligns it to 16 bytes (payloads
// are 8-byte aligned in frames, and verify_payload requires it), and ASan knows its end.
using payload = std::vector<std::uint8_t>;

template <typename Table>
const Table& root(const payload& bytes) {
  return *flatbuffers::GetRoot<Table>(bytes.data());
}

// The check both ends run before reading a payload of `type`.
bool verifies(frame_type type, const payload& bytes) {
  status verified = wire::verify_payload(type, bytes.data(), bytes.size());
  // Every type fuzzed here is in the registry: a refusal can only be the Verifier's.
  require(verified.is_ok() || verified.code() == errc::corruption,
          "a kv type is not in the registry");
  return verified.is_ok();
}

// Lets `encode` fill a builder with the codec's encoder; the payload, kept in `keep`,
// must pass the receiver's check. Returns its root table.
template <typename Table, typename Encode>
const Table& encoded_again(frame_type type, payload& keep, Encode encode) {
  flatbuffers::FlatBufferBuilder b;
  encode(b);
  keep.assign(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  require(verifies(type, keep), "a re-encoded payload fails the Verifier");
  return root<Table>(keep);
}

// ---- equality: mvcc.h's request and result types have no operator== -------------------------

auto fields(const range_request& r) {
  return std::tie(r.key, r.range_end, r.limit, r.revision, r.order, r.target, r.keys_only,
                  r.count_only, r.min_mod_revision, r.max_mod_revision, r.min_create_revision,
                  r.max_create_revision);
}
auto fields(const put_request& r) {
  return std::tie(r.key, r.value, r.lease, r.prev_kv, r.ignore_value, r.ignore_lease);
}
auto fields(const delete_range_request& r) { return std::tie(r.key, r.range_end, r.prev_kv); }
auto fields(const compare& c) {
  return std::tie(c.result, c.target, c.key, c.range_end, c.number, c.value);
}
auto fields(const request_op& op) {
  return std::tuple_cat(std::tie(op.type), fields(op.range), fields(op.put),
                        fields(op.delete_range));
}
auto fields(const native::watch_create_request& w) { return std::tie(w); }  // has operator==
auto fields(const range_result& r) { return std::tie(r.kvs, r.more, r.count, r.revision); }
auto fields(const put_result& r) { return std::tie(r.revision, r.prev_kv, r.events); }
auto fields(const delete_range_result& r) {
  return std::tie(r.revision, r.deleted, r.prev_kvs, r.events);
}
auto fields(const response_op& op) {
  return std::tuple_cat(std::tie(op.type), fields(op.range), fields(op.put),
                        fields(op.delete_range));
}
auto fields(const native::range_response& r) {
  return std::tuple_cat(std::tie(r.header), fields(static_cast<const range_result&>(r)));
}
auto fields(const native::put_response& r) {
  return std::tuple_cat(std::tie(r.header), fields(static_cast<const put_result&>(r)));
}
auto fields(const native::delete_range_response& r) {
  return std::tuple_cat(std::tie(r.header), fields(static_cast<const delete_range_result&>(r)));
}
auto fields(const native::compaction_response& r) { return std::tie(r.header); }
auto fields(const native::lease_grant_response& r) {
  return std::tie(r.header, r.id, r.ttl, r.error);
}
auto fields(const native::lease_revoke_response& r) { return std::tie(r.header); }
auto fields(const native::lease_keep_alive_response& r) { return std::tie(r.header, r.id, r.ttl); }
auto fields(const native::lease_time_to_live_response& r) {
  return std::tie(r.header, r.id, r.ttl, r.granted_ttl, r.keys);
}
auto fields(const native::lease_leases_response& r) { return std::tie(r.header, r.ids); }
auto fields(const native::watch_response& r) {
  return std::tie(r.header, r.watch_id, r.created, r.canceled, r.compact_revision, r.cancel_reason,
                  r.fragment, r.events);
}
auto fields(const native::watch_cancel_response& r) { return std::tie(r.header); }

template <typename T>
bool same(const T& a, const T& b) {
  return fields(a) == fields(b);
}
bool same(const txn_request& a, const txn_request& b);
bool same(const txn_result& a, const txn_result& b);

// An op's fields, then its nested txn (empty unless the op is one).
bool same(const request_op& a, const request_op& b) { return fields(a) == fields(b) && same(a.txn, b.txn); }
bool same(const response_op& a, const response_op& b) { return fields(a) == fields(b) && same(a.txn, b.txn); }

template <typename T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const T& x, const T& y) { return same(x, y); });
}
bool same(const txn_request& a, const txn_request& b) {
  return same(a.compares, b.compares) && same(a.success, b.success) && same(a.failure, b.failure);
}
bool same(const txn_result& a, const txn_result& b) {
  return a.succeeded == b.succeeded && a.revision == b.revision && same(a.responses, b.responses) &&
         a.events == b.events;
}
bool same(const native::txn_response& a, const native::txn_response& b) {
  return a.header == b.header &&
         same(static_cast<const txn_result&>(a), static_cast<const txn_result&>(b));
}

// ---- requests: what the decoders refuse, read from the table on its own -------------------

template <typename Enum>
bool in_range(Enum value) {
  return value >= Enum::MIN && value <= Enum::MAX;
}

bool valid(const wire::RangeRequest& r) {
  return in_range(r.sort_order()) && in_range(r.sort_target());
}
bool valid(const wire::PutRequest&) { return true; }          // never refused
bool valid(const wire::DeleteRangeRequest&) { return true; }  // never refused
bool valid(const wire::Compare& c) { return in_range(c.result()) && in_range(c.target()); }
bool valid(const wire::TxnRequest& t);
// A nested txn is read recursively; the Verifier's depth limit (64 tables) keeps it far
// below mvcc_txn_depth_max, so the decoder's own depth refusal is never reached here.
bool valid(const wire::RequestOp& op) {
  if (op.request() == nullptr) return false;  // NONE, or a body type without its body
  switch (op.request_type()) {
    case wire::RequestOpBody::RangeRequest: return valid(*op.request_as_RangeRequest());
    case wire::RequestOpBody::PutRequest:
    case wire::RequestOpBody::DeleteRangeRequest: return true;
    case wire::RequestOpBody::TxnRequest: return valid(*op.request_as_TxnRequest());
    default: return false;  // a body type kv.fbs does not have
  }
}
template <typename T>
bool all_valid(const flatbuffers::Vector<flatbuffers::Offset<T>>* items) {
  return items == nullptr ||
         std::all_of(items->begin(), items->end(), [](const T* item) { return valid(*item); });
}
bool valid(const wire::TxnRequest& t) {
  return all_valid(t.compare()) && all_valid(t.success()) && all_valid(t.failure());
}
bool valid(const wire::WatchCreateRequest& w) {
  const auto* filters = w.filters();
  return filters == nullptr || std::all_of(filters->begin(), filters->end(),
                                           [](wire::WatchFilterType f) { return in_range(f); });
}

// The decoders that never refuse return the value itself.
template <typename T>
bool decoded_as_documented(const T&, bool) {
  return true;
}
// A refusal must be the documented one, for a table that has what the decoder refuses.
template <typename T>
bool decoded_as_documented(const result<T>& decoded, bool valid) {
  if (decoded.is_ok()) {
    require(valid, "the decoder accepted a request it must refuse");
    return true;
  }
  require(!valid, "the decoder refused a valid request");
  require(decoded.error().code() == errc::invalid_argument,
          "a refusal that is not invalid_argument");
  require(decoded.error().message().rfind("etcdserver: ", 0) == 0,
          "a refusal without etcd's prefix");
  return false;
}

template <typename T>
T value_of(T decoded) {
  return decoded;
}
template <typename T>
T value_of(result<T> decoded) {
  require(decoded.is_ok(), "the decoder refused a re-encoded request");
  return std::move(decoded).value();
}

// What a table carries beside the decoded value: RangeRequest's `serializable`, which the
// server reads from the table itself.
template <typename Table>
bool same_beside_value(const Table&, const Table&) {
  return true;
}
bool same_beside_value(const wire::RangeRequest& a, const wire::RangeRequest& b) {
  return a.serializable() == b.serializable();
}

// A request the server decodes with native::decode: refused as documented, or encoded
// again by the client's encoder (`encode(builder, value, table)`) and decoded to the same.
template <typename Table, typename Encode>
void decoded_request(frame_type type, const payload& bytes, Encode encode) {
  const Table& table = root<Table>(bytes);
  auto decoded = native::decode(table);
  if (!decoded_as_documented(decoded, valid(table))) return;
  auto first = value_of(std::move(decoded));
  payload keep;
  const Table& again = encoded_again<Table>(type, keep, [&](auto& b) { encode(b, first, table); });
  require(same(value_of(native::decode(again)), first), "a request changed in a round trip");
  require(same_beside_value(again, table),
          "a request lost a field the server reads in a round trip");
}

// A request the server reads field by field: `read(table)` gives the fields as a tuple,
// and the client's encoder, given them, must write the same fields.
template <typename Table, typename Read, typename Encode>
void plain_request(frame_type type, const payload& bytes, Read read, Encode encode) {
  auto first = read(root<Table>(bytes));
  payload keep;
  const Table& again = encoded_again<Table>(
      type, keep, [&](auto& b) { std::apply([&](auto... field) { encode(b, field...); }, first); });
  require(read(again) == first, "a request changed in a round trip");
}

// The client's encoder of each request the server decodes.
constexpr auto encode_range = [](auto& b, const range_request& r, const wire::RangeRequest& table) {
  native::encode(b, r, table.serializable());
};
constexpr auto encode_request = [](auto& b, const auto& r, const auto&) { native::encode(b, r); };

// The fields of the requests the server reads field by field.
constexpr auto no_fields = [](const auto&) { return std::tuple<>(); };
constexpr auto id_field = [](const auto& t) { return std::tuple(t.id()); };
constexpr auto compaction_fields = [](const auto& t) {
  return std::tuple(t.revision(), t.physical());
};
constexpr auto grant_fields = [](const auto& t) { return std::tuple(t.ttl(), t.id()); };
constexpr auto time_to_live_fields = [](const auto& t) { return std::tuple(t.id(), t.keys()); };
constexpr auto watch_id_field = [](const auto& t) { return std::tuple(t.watch_id()); };

void read_request(frame_type type, const payload& bytes) {
  using T = frame_type;
  switch (type) {
    case T::range_request: return decoded_request<wire::RangeRequest>(type, bytes, encode_range);
    case T::put_request: return decoded_request<wire::PutRequest>(type, bytes, encode_request);
    case T::delete_range_request:
      return decoded_request<wire::DeleteRangeRequest>(type, bytes, encode_request);
    case T::txn_request: return decoded_request<wire::TxnRequest>(type, bytes, encode_request);
    case T::watch_create_request:
      return decoded_request<wire::WatchCreateRequest>(type, bytes, encode_request);
    case T::compaction_request:
      return plain_request<wire::CompactionRequest>(type, bytes, compaction_fields,
                                                    native::encode_compaction);
    case T::lease_grant_request:
      return plain_request<wire::LeaseGrantRequest>(type, bytes, grant_fields,
                                                    native::encode_lease_grant);
    case T::lease_revoke_request:
      return plain_request<wire::LeaseRevokeRequest>(type, bytes, id_field,
                                                     native::encode_lease_revoke);
    case T::lease_keepalive_request:
      return plain_request<wire::LeaseKeepAliveRequest>(type, bytes, id_field,
                                                        native::encode_lease_keep_alive);
    case T::lease_time_to_live_request:
      return plain_request<wire::LeaseTimeToLiveRequest>(type, bytes, time_to_live_fields,
                                                         native::encode_lease_time_to_live);
    case T::lease_leases_request:
      return plain_request<wire::LeaseLeasesRequest>(type, bytes, no_fields,
                                                     native::encode_lease_leases);
    case T::watch_cancel_request:
      return plain_request<wire::WatchCancelRequest>(type, bytes, watch_id_field,
                                                     native::encode_watch_cancel);
    default: require(false, "not a kv request type");
  }
}

// ---- responses ------------------------------------------------------------------------------

template <typename Table>
std::size_t count(const flatbuffers::Vector<flatbuffers::Offset<Table>>* items) {
  return items == nullptr ? 0 : items->size();
}

// What native_codec.h promises about a decoded response, checked against its table.
template <typename Table, typename Response>
void keeps_promises(const Table&, const Response&) {}
void keeps_promises(const wire::RangeResponse& t, const native::range_response& r) {
  require(r.revision == r.header.revision, "range: revision != header.revision");
  require(r.kvs.size() == count(t.kvs()), "range: kvs lost or invented");
}
void keeps_promises(const wire::PutResponse&, const native::put_response& r) {
  require(r.revision == r.header.revision, "put: revision != header.revision");
  require(r.events.empty(), "put: events decoded");
}
void keeps_promises(const wire::DeleteRangeResponse& t, const native::delete_range_response& r) {
  require(r.revision == r.header.revision, "delete: revision != header.revision");
  require(r.prev_kvs.size() == count(t.prev_kvs()), "delete: prev_kvs lost or invented");
  require(r.events.empty(), "delete: events decoded");
}
// One response per op with a range, put or delete table; the decoder skips the others (NONE,
// an absent table, a nested txn, which keel never sends).
std::size_t plain_ops(const wire::TxnResponse& t) {
  const auto* ops = t.responses();
  if (ops == nullptr) return 0;
  return static_cast<std::size_t>(
      std::count_if(ops->begin(), ops->end(), [](const wire::ResponseOp* op) {
        auto body = op->response_type();
        return op->response() != nullptr && (body == wire::ResponseOpBody::RangeResponse ||
                                             body == wire::ResponseOpBody::PutResponse ||
                                             body == wire::ResponseOpBody::DeleteRangeResponse ||
                                             body == wire::ResponseOpBody::TxnResponse);
      }));
}
void keeps_promises(const wire::TxnResponse& t, const native::txn_response& r) {
  require(r.revision == r.header.revision, "txn: revision != header.revision");
  require(r.responses.size() == plain_ops(t), "txn: responses lost or invented");
  require(r.events.empty(), "txn: events decoded");
}
void keeps_promises(const wire::LeaseTimeToLiveResponse& t,
                    const native::lease_time_to_live_response& r) {
  require(r.keys.size() == count(t.keys()), "time to live: keys lost or invented");
}
void keeps_promises(const wire::LeaseLeasesResponse& t, const native::lease_leases_response& r) {
  require(r.ids.size() == count(t.leases()), "leases: ids lost or invented");
}
void keeps_promises(const wire::WatchResponse& t, const native::watch_response& r) {
  require(r.events.size() == count(t.events()), "watch: events lost or invented");
}

// A response as the client reads it: decode_payload of the right type (and a refusal under
// another type), the promises, then encoded again by the server's encoder
// (`encode(builder, response)`) and read again to the same response.
template <typename Table, typename Response, typename Encode>
void decoded_response(frame_type type, const payload& bytes, Encode encode) {
  Response first;
  require(native::decode_payload(type, bytes, first).is_ok(),
          "a verified response does not decode");
  keeps_promises(root<Table>(bytes), first);
  Response mislabelled;
  auto request_type = static_cast<frame_type>(static_cast<std::uint16_t>(type) - 1);
  require(native::decode_payload(request_type, bytes, mislabelled).code() == errc::invalid_argument,
          "decode_payload read a payload of another type");
  payload keep;
  encoded_again<Table>(type, keep, [&](auto& b) { encode(b, first); });
  Response second;
  require(native::decode_payload(type, keep, second).is_ok(),
          "a re-encoded response does not decode");
  require(same(second, first), "a response changed in a round trip");
}

// The server's encoder of each response.
void encode_watch(flatbuffers::FlatBufferBuilder& b, const native::watch_response& r) {
  std::vector<const event*> events;
  bool prev_kv = false;
  for (const event& e : r.events) {
    events.push_back(&e);
    prev_kv = prev_kv || e.prev_kv.has_value();
  }
  native::encode_watch_response(b, r.header, r, events, prev_kv);
}
constexpr auto encode_range_r = [](auto& b, const auto& r) {
  native::encode_range_response(b, r.header, r);
};
constexpr auto encode_put_r = [](auto& b, const auto& r) {
  native::encode_put_response(b, r.header, r);
};
constexpr auto encode_delete_r = [](auto& b, const auto& r) {
  native::encode_delete_range_response(b, r.header, r);
};
constexpr auto encode_txn_r = [](auto& b, const auto& r) {
  native::encode_txn_response(b, r.header, r);
};
constexpr auto encode_compaction_r = [](auto& b, const auto& r) {
  native::encode_compaction_response(b, r.header);
};
constexpr auto encode_grant_r = [](auto& b, const auto& r) {
  native::encode_lease_grant_response(b, r.header, r.id, r.ttl, r.error);
};
constexpr auto encode_revoke_r = [](auto& b, const auto& r) {
  native::encode_lease_revoke_response(b, r.header);
};
constexpr auto encode_keep_alive_r = [](auto& b, const auto& r) {
  native::encode_lease_keep_alive_response(b, r.header, r.id, r.ttl);
};
constexpr auto encode_time_to_live_r = [](auto& b, const auto& r) {
  native::encode_lease_time_to_live_response(b, r.header, r.id, r.ttl, r.granted_ttl, r.keys);
};
constexpr auto encode_leases_r = [](auto& b, const auto& r) {
  native::encode_lease_leases_response(b, r.header, r.ids);
};
constexpr auto encode_watch_cancel_r = [](auto& b, const auto& r) {
  native::encode_watch_cancel_response(b, r.header);
};

void read_response(frame_type type, const payload& bytes) {
  using T = frame_type;
  namespace n = native;
  switch (type) {
    case T::range_response:
      return decoded_response<wire::RangeResponse, n::range_response>(type, bytes, encode_range_r);
    case T::put_response:
      return decoded_response<wire::PutResponse, n::put_response>(type, bytes, encode_put_r);
    case T::delete_range_response:
      return decoded_response<wire::DeleteRangeResponse, n::delete_range_response>(type, bytes,
                                                                                   encode_delete_r);
    case T::txn_response:
      return decoded_response<wire::TxnResponse, n::txn_response>(type, bytes, encode_txn_r);
    case T::compaction_response:
      return decoded_response<wire::CompactionResponse, n::compaction_response>(
          type, bytes, encode_compaction_r);
    case T::lease_grant_response:
      return decoded_response<wire::LeaseGrantResponse, n::lease_grant_response>(type, bytes,
                                                                                 encode_grant_r);
    case T::lease_revoke_response:
      return decoded_response<wire::LeaseRevokeResponse, n::lease_revoke_response>(type, bytes,
                                                                                   encode_revoke_r);
    case T::lease_keepalive_response:
      return decoded_response<wire::LeaseKeepAliveResponse, n::lease_keep_alive_response>(
          type, bytes, encode_keep_alive_r);
    case T::lease_time_to_live_response:
      return decoded_response<wire::LeaseTimeToLiveResponse, n::lease_time_to_live_response>(
          type, bytes, encode_time_to_live_r);
    case T::lease_leases_response:
      return decoded_response<wire::LeaseLeasesResponse, n::lease_leases_response>(type, bytes,
                                                                                   encode_leases_r);
    case T::watch_response:
      return decoded_response<wire::WatchResponse, n::watch_response>(type, bytes, encode_watch);
    case T::watch_cancel_response:
      return decoded_response<wire::WatchCancelResponse, n::watch_cancel_response>(
          type, bytes, encode_watch_cancel_r);
    default: require(false, "not a kv response type");
  }
}

// ---- errors ---------------------------------------------------------------------------------

// An error frame's payload as both ends read it. Encoded again, code and gRPC code come
// back, and the message comes back whole or cut to error_message_bytes_max bytes, before
// a UTF-8 continuation byte (encode_error's promise).
void read_error(const payload& bytes) {
  native::error_payload first = native::decode(root<wire::Error>(bytes));
  if (first.code > 0xFF) return;  // keel::errc is one byte: encode_error cannot write this code
  payload keep;
  const auto& again = encoded_again<wire::Error>(frame_type::error, keep, [&](auto& b) {
    native::encode_error(b, static_cast<errc>(first.code), first.grpc_code, first.message);
  });
  native::error_payload second = native::decode(again);
  require(second.code == first.code && second.grpc_code == first.grpc_code,
          "error: a code changed");
  const std::string& whole = first.message;
  const std::string& cut = second.message;
  require(whole.compare(0, cut.size(), cut) == 0,
          "error: the message is not a prefix of the original");
  if (whole.size() <= wire::error_message_bytes_max) {
    require(cut.size() == whole.size(), "error: a short message was cut");
  } else {
    require(cut.size() <= wire::error_message_bytes_max, "error: a long message was not cut");
    require(cut.empty() || (static_cast<unsigned char>(whole[cut.size()]) & 0xC0) != 0x80,
            "error: cut inside a UTF-8 character");
  }
}

// 24 kv types (100-123) and the error payload.
constexpr unsigned kinds = 25;

frame_type type_of(std::uint8_t selector) {
  unsigned index = selector % kinds;
  return index == kinds - 1 ? frame_type::error : static_cast<frame_type>(100 + index);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  frame_type type = type_of(data[0]);
  payload bytes(data + 1, data + size);
  if (!verifies(type, bytes)) return 0;  // both ends drop it here, unread
  if (type == frame_type::error) {
    read_error(bytes);
  } else if (static_cast<std::uint16_t>(type) % 2 == 0) {
    read_request(type, bytes);
  } else {
    read_response(type, bytes);
  }
  return 0;
}
