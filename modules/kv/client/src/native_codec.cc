// native_codec.cc — kv.fbs tables to and from the store's values. See native_codec.h.
#include "keel/kv/native_codec.h"

#include <algorithm>

namespace keel::kv::native {

namespace fb = flatbuffers;

namespace {

using bytes_offset = fb::Offset<fb::Vector<std::uint8_t>>;

bytes_offset bytes_of(fb::FlatBufferBuilder& b, std::string_view text) {
  return b.CreateVector(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}
// Absent instead of an empty vector: FlatBuffers reads both as empty, and absent is smaller.
bytes_offset optional_bytes_of(fb::FlatBufferBuilder& b, std::string_view text) {
  return text.empty() ? bytes_offset() : bytes_of(b, text);
}

std::string string_of(const fb::Vector<std::uint8_t>* bytes) {
  if (bytes == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size());
}

fb::Offset<wire::ResponseHeader> header_of(fb::FlatBufferBuilder& b, const response_header& h) {
  return wire::CreateResponseHeader(b, h.cluster_id, h.member_id, h.revision, h.raft_term);
}

fb::Offset<wire::ResponseHeader> revision_header(fb::FlatBufferBuilder& b, std::int64_t revision) {
  return wire::CreateResponseHeader(b, 0, 0, revision, 0);
}

fb::Offset<wire::KeyValue> key_value_of(fb::FlatBufferBuilder& b, const key_value& kv) {
  auto key = bytes_of(b, kv.key);
  auto value = optional_bytes_of(b, kv.value);
  return wire::CreateKeyValue(b, key, kv.create_revision, kv.mod_revision, kv.version, value, kv.lease);
}

fb::Offset<fb::Vector<fb::Offset<wire::KeyValue>>> key_values_of(fb::FlatBufferBuilder& b,
                                                                  const std::vector<key_value>& kvs) {
  if (kvs.empty()) return {};
  std::vector<fb::Offset<wire::KeyValue>> offsets;
  offsets.reserve(kvs.size());
  for (const key_value& kv : kvs) offsets.push_back(key_value_of(b, kv));
  return b.CreateVector(offsets);
}

key_value decode_key_value(const wire::KeyValue& kv) {
  key_value out;
  out.key = string_of(kv.key());
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.value = string_of(kv.value());
  out.lease = kv.lease();
  return out;
}

std::vector<key_value> decode_key_values(const fb::Vector<fb::Offset<wire::KeyValue>>* kvs) {
  std::vector<key_value> out;
  if (kvs == nullptr) return out;
  out.reserve(kvs->size());
  for (const wire::KeyValue* kv : *kvs) out.push_back(decode_key_value(*kv));
  return out;
}

// ---- enums (kv.fbs numbers are the proto's; mvcc's are its own) ----

wire::CompareResult wire_of(compare_result r) {
  switch (r) {
    case compare_result::equal: return wire::CompareResult::EQUAL;
    case compare_result::greater: return wire::CompareResult::GREATER;
    case compare_result::less: return wire::CompareResult::LESS;
    case compare_result::not_equal: return wire::CompareResult::NOT_EQUAL;
  }
  return wire::CompareResult::EQUAL;
}

std::optional<compare_result> compare_result_of(wire::CompareResult r) {
  switch (r) {
    case wire::CompareResult::EQUAL: return compare_result::equal;
    case wire::CompareResult::GREATER: return compare_result::greater;
    case wire::CompareResult::LESS: return compare_result::less;
    case wire::CompareResult::NOT_EQUAL: return compare_result::not_equal;
  }
  return std::nullopt;
}

wire::CompareTarget wire_of(compare_target t) {
  switch (t) {
    case compare_target::version: return wire::CompareTarget::VERSION;
    case compare_target::create: return wire::CompareTarget::CREATE;
    case compare_target::mod: return wire::CompareTarget::MOD;
    case compare_target::value: return wire::CompareTarget::VALUE;
    case compare_target::lease: return wire::CompareTarget::LEASE;
  }
  return wire::CompareTarget::VERSION;
}

std::optional<compare_target> compare_target_of(wire::CompareTarget t) {
  switch (t) {
    case wire::CompareTarget::VERSION: return compare_target::version;
    case wire::CompareTarget::CREATE: return compare_target::create;
    case wire::CompareTarget::MOD: return compare_target::mod;
    case wire::CompareTarget::VALUE: return compare_target::value;
    case wire::CompareTarget::LEASE: return compare_target::lease;
  }
  return std::nullopt;
}

wire::SortOrder wire_of(sort_order o) {
  switch (o) {
    case sort_order::none: return wire::SortOrder::NONE;
    case sort_order::ascend: return wire::SortOrder::ASCEND;
    case sort_order::descend: return wire::SortOrder::DESCEND;
  }
  return wire::SortOrder::NONE;
}

std::optional<sort_order> sort_order_of(wire::SortOrder o) {
  switch (o) {
    case wire::SortOrder::NONE: return sort_order::none;
    case wire::SortOrder::ASCEND: return sort_order::ascend;
    case wire::SortOrder::DESCEND: return sort_order::descend;
  }
  return std::nullopt;
}

wire::SortTarget wire_of(sort_target t) {
  switch (t) {
    case sort_target::key: return wire::SortTarget::KEY;
    case sort_target::version: return wire::SortTarget::VERSION;
    case sort_target::create: return wire::SortTarget::CREATE;
    case sort_target::mod: return wire::SortTarget::MOD;
    case sort_target::value: return wire::SortTarget::VALUE;
  }
  return wire::SortTarget::KEY;
}

std::optional<sort_target> sort_target_of(wire::SortTarget t) {
  switch (t) {
    case wire::SortTarget::KEY: return sort_target::key;
    case wire::SortTarget::VERSION: return sort_target::version;
    case wire::SortTarget::CREATE: return sort_target::create;
    case wire::SortTarget::MOD: return sort_target::mod;
    case wire::SortTarget::VALUE: return sort_target::value;
  }
  return std::nullopt;
}

status bad_enum(const char* what, int value) {
  return status(errc::invalid_argument,
                "etcdserver: invalid " + std::string(what) + " " + std::to_string(value));
}

// ---- request tables, shared by the top level and txn ops ----

fb::Offset<wire::RangeRequest> range_table(fb::FlatBufferBuilder& b, const range_request& r, bool serializable) {
  auto key = bytes_of(b, r.key);
  auto end = optional_bytes_of(b, r.range_end);
  return wire::CreateRangeRequest(b, key, end, r.limit, r.revision, wire_of(r.order), wire_of(r.target),
                                  serializable, r.keys_only, r.count_only, r.min_mod_revision,
                                  r.max_mod_revision, r.min_create_revision, r.max_create_revision);
}

fb::Offset<wire::PutRequest> put_table(fb::FlatBufferBuilder& b, const put_request& r) {
  auto key = bytes_of(b, r.key);
  auto value = optional_bytes_of(b, r.value);
  return wire::CreatePutRequest(b, key, value, r.lease, r.prev_kv, r.ignore_value, r.ignore_lease);
}

fb::Offset<wire::DeleteRangeRequest> delete_table(fb::FlatBufferBuilder& b, const delete_range_request& r) {
  auto key = bytes_of(b, r.key);
  auto end = optional_bytes_of(b, r.range_end);
  return wire::CreateDeleteRangeRequest(b, key, end, r.prev_kv);
}

fb::Offset<wire::TxnRequest> txn_table(fb::FlatBufferBuilder& b, const txn_request& request);

fb::Offset<fb::Vector<fb::Offset<wire::RequestOp>>> ops_of(fb::FlatBufferBuilder& b,
                                                           const std::vector<request_op>& ops) {
  std::vector<fb::Offset<wire::RequestOp>> offsets;
  offsets.reserve(ops.size());
  for (const request_op& op : ops) {
    switch (op.type) {
      case request_op::kind::range:
        offsets.push_back(wire::CreateRequestOp(b, wire::RequestOpBody::RangeRequest,
                                                range_table(b, op.range, false).Union()));
        break;
      case request_op::kind::put:
        offsets.push_back(wire::CreateRequestOp(b, wire::RequestOpBody::PutRequest, put_table(b, op.put).Union()));
        break;
      case request_op::kind::delete_range:
        offsets.push_back(wire::CreateRequestOp(b, wire::RequestOpBody::DeleteRangeRequest,
                                                delete_table(b, op.delete_range).Union()));
        break;
      case request_op::kind::txn:
        offsets.push_back(wire::CreateRequestOp(b, wire::RequestOpBody::TxnRequest, txn_table(b, op.txn).Union()));
        break;
    }
  }
  return b.CreateVector(offsets);
}

fb::Offset<wire::TxnRequest> txn_table(fb::FlatBufferBuilder& b, const txn_request& request) {
  std::vector<fb::Offset<wire::Compare>> compares;
  compares.reserve(request.compares.size());
  for (const compare& c : request.compares) {
    auto key = bytes_of(b, c.key);
    auto end = optional_bytes_of(b, c.range_end);
    bool is_value = c.target == compare_target::value;
    auto value = is_value ? bytes_of(b, c.value) : bytes_offset();
    wire::CompareBuilder cb(b);
    cb.add_result(wire_of(c.result));
    cb.add_target(wire_of(c.target));
    cb.add_key(key);
    if (!c.range_end.empty()) cb.add_range_end(end);
    switch (c.target) {
      case compare_target::version: cb.add_version(c.number); break;
      case compare_target::create: cb.add_create_revision(c.number); break;
      case compare_target::mod: cb.add_mod_revision(c.number); break;
      case compare_target::lease: cb.add_lease(c.number); break;
      case compare_target::value: cb.add_value(value); break;
    }
    compares.push_back(cb.Finish());
  }
  auto compare_vector = b.CreateVector(compares);
  auto success = ops_of(b, request.success);
  auto failure = ops_of(b, request.failure);
  return wire::CreateTxnRequest(b, compare_vector, success, failure);
}

constexpr std::string_view op_without_request_message =
    "etcdserver: txn operation without a request";

result<txn_request> decode_txn(const wire::TxnRequest& request, std::size_t depth);

// `depth`: how many txns enclose these ops.
result<std::vector<request_op>> decode_ops(const fb::Vector<fb::Offset<wire::RequestOp>>* ops, std::size_t depth) {
  std::vector<request_op> out;
  if (ops == nullptr) return out;
  out.reserve(ops->size());
  for (const wire::RequestOp* op : *ops) {
    // The Verifier accepts a body type whose table is absent: no request, as with NONE.
    if (op->request() == nullptr) {
      return status(errc::invalid_argument, std::string(op_without_request_message));
    }
    switch (op->request_type()) {
      case wire::RequestOpBody::RangeRequest: {
        auto range = decode(*op->request_as_RangeRequest());
        if (!range) return range.error();
        out.push_back(request_op::of(std::move(range).value()));
        break;
      }
      case wire::RequestOpBody::PutRequest:
        out.push_back(request_op::of(decode(*op->request_as_PutRequest())));
        break;
      case wire::RequestOpBody::DeleteRangeRequest:
        out.push_back(request_op::of(decode(*op->request_as_DeleteRangeRequest())));
        break;
      case wire::RequestOpBody::TxnRequest: {
        // Deeper than the store's op budget allows (mvcc_store::txn), as the gateway.
        if (depth >= mvcc_txn_depth_max) return status(errc::too_large, std::string(mvcc_messages::too_many_operations));
        auto nested = decode_txn(*op->request_as_TxnRequest(), depth + 1);
        if (!nested) return nested.error();
        out.push_back(request_op::of(std::move(nested).value()));
        break;
      }
      default:
        // A body type kv.fbs does not have (NONE has no table: refused above). etcd's
        // applier would fail on an op without a request too.
        return status(errc::invalid_argument, std::string(op_without_request_message));
    }
  }
  return out;
}

}  // namespace

// ---- frames ---------------------------------------------------------------------------------

status append_request(std::string& out, wire::frame_type type, std::uint64_t request_id,
                      const fb::FlatBufferBuilder& builder) {
  return wire::append_frame(out, type, request_id, wire::frame_flags::end_of_stream, builder.GetBufferPointer(),
                            builder.GetSize());
}

// ---- requests: encode -----------------------------------------------------------------------

void encode(fb::FlatBufferBuilder& b, const range_request& request, bool serializable) {
  b.Clear();
  b.Finish(range_table(b, request, serializable));
}

void encode(fb::FlatBufferBuilder& b, const put_request& request) {
  b.Clear();
  b.Finish(put_table(b, request));
}

void encode_put(fb::FlatBufferBuilder& b, std::string_view key, std::string_view value, std::int64_t lease) {
  b.Clear();
  auto k = bytes_of(b, key);
  auto v = optional_bytes_of(b, value);
  b.Finish(wire::CreatePutRequest(b, k, v, lease));
}

void encode(fb::FlatBufferBuilder& b, const delete_range_request& request) {
  b.Clear();
  b.Finish(delete_table(b, request));
}

void encode(fb::FlatBufferBuilder& b, const txn_request& request) {
  b.Clear();
  b.Finish(txn_table(b, request));
}

void encode_compaction(fb::FlatBufferBuilder& b, std::int64_t revision, bool physical) {
  b.Clear();
  b.Finish(wire::CreateCompactionRequest(b, revision, physical));
}

void encode_lease_grant(fb::FlatBufferBuilder& b, std::int64_t ttl_seconds, std::int64_t id) {
  b.Clear();
  b.Finish(wire::CreateLeaseGrantRequest(b, ttl_seconds, id));
}

void encode_lease_revoke(fb::FlatBufferBuilder& b, std::int64_t id) {
  b.Clear();
  b.Finish(wire::CreateLeaseRevokeRequest(b, id));
}

void encode_lease_keep_alive(fb::FlatBufferBuilder& b, std::int64_t id) {
  b.Clear();
  b.Finish(wire::CreateLeaseKeepAliveRequest(b, id));
}

void encode_lease_time_to_live(fb::FlatBufferBuilder& b, std::int64_t id, bool keys) {
  b.Clear();
  b.Finish(wire::CreateLeaseTimeToLiveRequest(b, id, keys));
}

void encode_lease_leases(fb::FlatBufferBuilder& b) {
  b.Clear();
  b.Finish(wire::CreateLeaseLeasesRequest(b));
}

void encode(fb::FlatBufferBuilder& b, const watch_create_request& request) {
  b.Clear();
  auto key = bytes_of(b, request.key);
  auto end = optional_bytes_of(b, request.range_end);
  std::vector<wire::WatchFilterType> filters;
  if (request.no_put) filters.push_back(wire::WatchFilterType::NOPUT);
  if (request.no_delete) filters.push_back(wire::WatchFilterType::NODELETE);
  auto filter_vector = filters.empty() ? fb::Offset<fb::Vector<wire::WatchFilterType>>() : b.CreateVector(filters);
  b.Finish(wire::CreateWatchCreateRequest(b, key, end, request.start_revision, request.progress_notify,
                                          filter_vector, request.prev_kv, request.watch_id, request.fragment));
}

void encode_watch_cancel(fb::FlatBufferBuilder& b, std::int64_t watch_id) {
  b.Clear();
  b.Finish(wire::CreateWatchCancelRequest(b, watch_id));
}

// ---- requests: decode -----------------------------------------------------------------------

result<range_request> decode(const wire::RangeRequest& request) {
  range_request out;
  out.key = string_of(request.key());
  out.range_end = string_of(request.range_end());
  out.limit = request.limit();
  out.revision = request.revision();
  auto order = sort_order_of(request.sort_order());
  if (!order) return bad_enum("sort order", static_cast<int>(request.sort_order()));
  auto target = sort_target_of(request.sort_target());
  if (!target) return bad_enum("sort target", static_cast<int>(request.sort_target()));
  out.order = *order;
  out.target = *target;
  out.keys_only = request.keys_only();
  out.count_only = request.count_only();
  out.min_mod_revision = request.min_mod_revision();
  out.max_mod_revision = request.max_mod_revision();
  out.min_create_revision = request.min_create_revision();
  out.max_create_revision = request.max_create_revision();
  return out;
}

put_request decode(const wire::PutRequest& request) {
  put_request out;
  out.key = string_of(request.key());
  out.value = string_of(request.value());
  out.lease = request.lease();
  out.prev_kv = request.prev_kv();
  out.ignore_value = request.ignore_value();
  out.ignore_lease = request.ignore_lease();
  return out;
}

delete_range_request decode(const wire::DeleteRangeRequest& request) {
  delete_range_request out;
  out.key = string_of(request.key());
  out.range_end = string_of(request.range_end());
  out.prev_kv = request.prev_kv();
  return out;
}

result<txn_request> decode(const wire::TxnRequest& request) { return decode_txn(request, 0); }

namespace {

result<txn_request> decode_txn(const wire::TxnRequest& request, std::size_t depth) {
  txn_request out;
  if (const auto* compares = request.compare()) {
    out.compares.reserve(compares->size());
    for (const wire::Compare* c : *compares) {
      auto result = compare_result_of(c->result());
      if (!result) return bad_enum("compare result", static_cast<int>(c->result()));
      auto target = compare_target_of(c->target());
      if (!target) return bad_enum("compare target", static_cast<int>(c->target()));
      compare decoded;
      decoded.result = *result;
      decoded.target = *target;
      decoded.key = string_of(c->key());
      decoded.range_end = string_of(c->range_end());
      switch (*target) {
        case compare_target::version: decoded.number = c->version(); break;
        case compare_target::create: decoded.number = c->create_revision(); break;
        case compare_target::mod: decoded.number = c->mod_revision(); break;
        case compare_target::lease: decoded.number = c->lease(); break;
        case compare_target::value: decoded.value = string_of(c->value()); break;
      }
      out.compares.push_back(std::move(decoded));
    }
  }
  auto success = decode_ops(request.success(), depth);
  if (!success) return success.error();
  auto failure = decode_ops(request.failure(), depth);
  if (!failure) return failure.error();
  out.success = std::move(success).value();
  out.failure = std::move(failure).value();
  return out;
}

}  // namespace

result<watch_create_request> decode(const wire::WatchCreateRequest& request) {
  watch_create_request out;
  out.key = string_of(request.key());
  out.range_end = string_of(request.range_end());
  out.start_revision = request.start_revision();
  out.progress_notify = request.progress_notify();
  if (const auto* filters = request.filters()) {
    for (auto filter : *filters) {
      if (filter == wire::WatchFilterType::NOPUT) out.no_put = true;
      else if (filter == wire::WatchFilterType::NODELETE) out.no_delete = true;
      else return bad_enum("watch filter", static_cast<int>(filter));
    }
  }
  out.prev_kv = request.prev_kv();
  out.watch_id = request.watch_id();
  out.fragment = request.fragment();
  return out;
}

// ---- responses: encode ----------------------------------------------------------------------

namespace {

fb::Offset<wire::RangeResponse> range_response_table(fb::FlatBufferBuilder& b, fb::Offset<wire::ResponseHeader> header,
                                                     const range_result& r) {
  auto kvs = key_values_of(b, r.kvs);
  return wire::CreateRangeResponse(b, header, kvs, r.more, r.count);
}

fb::Offset<wire::PutResponse> put_response_table(fb::FlatBufferBuilder& b, fb::Offset<wire::ResponseHeader> header,
                                                 const put_result& r) {
  fb::Offset<wire::KeyValue> prev;
  if (r.prev_kv) prev = key_value_of(b, *r.prev_kv);
  return wire::CreatePutResponse(b, header, prev);
}

fb::Offset<wire::DeleteRangeResponse> delete_response_table(fb::FlatBufferBuilder& b,
                                                            fb::Offset<wire::ResponseHeader> header,
                                                            const delete_range_result& r) {
  auto prev = key_values_of(b, r.prev_kvs);
  return wire::CreateDeleteRangeResponse(b, header, r.deleted, prev);
}

}  // namespace

void encode_range_response(fb::FlatBufferBuilder& b, const response_header& header, const range_result& result) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(range_response_table(b, h, result));
}

void encode_put_response(fb::FlatBufferBuilder& b, const response_header& header, const put_result& result) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(put_response_table(b, h, result));
}

void encode_delete_range_response(fb::FlatBufferBuilder& b, const response_header& header,
                                  const delete_range_result& result) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(delete_response_table(b, h, result));
}

namespace {

// The responses of a txn's branch; a nested txn's response has no header (etcd 3.4's is
// empty) and its own branch and responses.
fb::Offset<fb::Vector<fb::Offset<wire::ResponseOp>>> response_ops_of(fb::FlatBufferBuilder& b,
                                                                     const std::vector<response_op>& responses) {
  std::vector<fb::Offset<wire::ResponseOp>> ops;
  ops.reserve(responses.size());
  for (const response_op& op : responses) {
    switch (op.type) {
      case request_op::kind::range: {
        auto t = range_response_table(b, revision_header(b, op.range.revision), op.range);
        ops.push_back(wire::CreateResponseOp(b, wire::ResponseOpBody::RangeResponse, t.Union()));
        break;
      }
      case request_op::kind::put: {
        auto t = put_response_table(b, revision_header(b, op.put.revision), op.put);
        ops.push_back(wire::CreateResponseOp(b, wire::ResponseOpBody::PutResponse, t.Union()));
        break;
      }
      case request_op::kind::delete_range: {
        auto t = delete_response_table(b, revision_header(b, op.delete_range.revision), op.delete_range);
        ops.push_back(wire::CreateResponseOp(b, wire::ResponseOpBody::DeleteRangeResponse, t.Union()));
        break;
      }
      case request_op::kind::txn: {
        auto nested = response_ops_of(b, op.txn.responses);
        auto t = wire::CreateTxnResponse(b, 0, op.txn.succeeded, nested);
        ops.push_back(wire::CreateResponseOp(b, wire::ResponseOpBody::TxnResponse, t.Union()));
        break;
      }
    }
  }
  return b.CreateVector(ops);
}

}  // namespace

void encode_txn_response(fb::FlatBufferBuilder& b, const response_header& header, const txn_result& result) {
  b.Clear();
  auto responses = response_ops_of(b, result.responses);
  auto h = header_of(b, header);
  b.Finish(wire::CreateTxnResponse(b, h, result.succeeded, responses));
}

void encode_compaction_response(fb::FlatBufferBuilder& b, const response_header& header) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(wire::CreateCompactionResponse(b, h));
}

void encode_lease_grant_response(fb::FlatBufferBuilder& b, const response_header& header, std::int64_t id,
                                 std::int64_t ttl, std::string_view error) {
  b.Clear();
  auto h = header_of(b, header);
  auto e = error.empty() ? fb::Offset<fb::String>() : b.CreateString(error.data(), error.size());
  b.Finish(wire::CreateLeaseGrantResponse(b, h, id, ttl, e));
}

void encode_lease_revoke_response(fb::FlatBufferBuilder& b, const response_header& header) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(wire::CreateLeaseRevokeResponse(b, h));
}

void encode_lease_keep_alive_response(fb::FlatBufferBuilder& b, const response_header& header, std::int64_t id,
                                      std::int64_t ttl) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(wire::CreateLeaseKeepAliveResponse(b, h, id, ttl));
}

void encode_lease_time_to_live_response(fb::FlatBufferBuilder& b, const response_header& header, std::int64_t id,
                                        std::int64_t ttl, std::int64_t granted_ttl,
                                        std::span<const std::string> keys) {
  b.Clear();
  fb::Offset<fb::Vector<fb::Offset<wire::LeaseKey>>> key_vector;
  if (!keys.empty()) {
    std::vector<fb::Offset<wire::LeaseKey>> offsets;
    offsets.reserve(keys.size());
    for (const std::string& key : keys) offsets.push_back(wire::CreateLeaseKey(b, bytes_of(b, key)));
    key_vector = b.CreateVector(offsets);
  }
  auto h = header_of(b, header);
  b.Finish(wire::CreateLeaseTimeToLiveResponse(b, h, id, ttl, granted_ttl, key_vector));
}

void encode_lease_leases_response(fb::FlatBufferBuilder& b, const response_header& header,
                                  std::span<const std::int64_t> ids) {
  b.Clear();
  std::vector<fb::Offset<wire::LeaseStatus>> offsets;
  offsets.reserve(ids.size());
  for (std::int64_t id : ids) offsets.push_back(wire::CreateLeaseStatus(b, id));
  auto leases = b.CreateVector(offsets);
  auto h = header_of(b, header);
  b.Finish(wire::CreateLeaseLeasesResponse(b, h, leases));
}

void encode_watch_response(fb::FlatBufferBuilder& b, const response_header& header, const watch_status& state,
                           std::span<const event* const> events, bool prev_kv) {
  b.Clear();
  fb::Offset<fb::Vector<fb::Offset<wire::Event>>> event_vector;
  if (!events.empty()) {
    std::vector<fb::Offset<wire::Event>> offsets;
    offsets.reserve(events.size());
    for (const event* e : events) {
      auto kv = key_value_of(b, e->kv);
      fb::Offset<wire::KeyValue> prev;
      if (prev_kv && e->prev_kv) prev = key_value_of(b, *e->prev_kv);
      auto type = e->type == event_type::put ? wire::EventType::PUT : wire::EventType::DELETE;
      offsets.push_back(wire::CreateEvent(b, type, kv, prev));
    }
    event_vector = b.CreateVector(offsets);
  }
  auto reason = state.cancel_reason.empty() ? fb::Offset<fb::String>() : b.CreateString(state.cancel_reason);
  auto h = header_of(b, header);
  b.Finish(wire::CreateWatchResponse(b, h, state.watch_id, state.created, state.canceled,
                                     state.compact_revision, reason, state.fragment, event_vector));
}

void encode_watch_cancel_response(fb::FlatBufferBuilder& b, const response_header& header) {
  b.Clear();
  auto h = header_of(b, header);
  b.Finish(wire::CreateWatchCancelResponse(b, h));
}

void encode_error(fb::FlatBufferBuilder& b, errc code, std::uint16_t grpc_code, std::string_view message) {
  b.Clear();
  std::size_t length = std::min(message.size(), wire::error_message_bytes_max);
  if (length < message.size()) {
    while (length > 0 && (static_cast<unsigned char>(message[length]) & 0xC0) == 0x80) --length;
  }
  auto text = b.CreateString(message.data(), length);
  b.Finish(wire::CreateError(b, static_cast<std::uint16_t>(code), text, grpc_code));
}

std::size_t encoded_event_bytes(const event& e, bool prev_kv) noexcept {
  constexpr std::size_t key_value_overhead_bytes = 80;  // tables, vtables, vector lengths
  std::size_t bytes = key_value_overhead_bytes + e.kv.key.size() + e.kv.value.size();
  if (prev_kv && e.prev_kv) bytes += key_value_overhead_bytes + e.prev_kv->key.size() + e.prev_kv->value.size();
  return bytes;
}

// ---- responses: decode ----------------------------------------------------------------------

response_header decode(const wire::ResponseHeader* header) {
  response_header out;
  if (header == nullptr) return out;
  out.cluster_id = header->cluster_id();
  out.member_id = header->member_id();
  out.revision = header->revision();
  out.raft_term = header->raft_term();
  return out;
}

range_response decode(const wire::RangeResponse& response) {
  range_response out;
  out.header = decode(response.header());
  out.revision = out.header.revision;
  out.kvs = decode_key_values(response.kvs());
  out.more = response.more();
  out.count = response.count();
  return out;
}

put_response decode(const wire::PutResponse& response) {
  put_response out;
  out.header = decode(response.header());
  out.revision = out.header.revision;
  if (response.prev_kv() != nullptr) out.prev_kv = decode_key_value(*response.prev_kv());
  return out;
}

delete_range_response decode(const wire::DeleteRangeResponse& response) {
  delete_range_response out;
  out.header = decode(response.header());
  out.revision = out.header.revision;
  out.deleted = response.deleted();
  out.prev_kvs = decode_key_values(response.prev_kvs());
  return out;
}

namespace {

// A txn's responses; the verifier's depth limit bounds the recursion.
std::vector<response_op> decode_response_ops(const fb::Vector<fb::Offset<wire::ResponseOp>>* ops) {
  std::vector<response_op> out;
  if (ops == nullptr) return out;
  for (const wire::ResponseOp* op : *ops) {
    // The Verifier accepts a body type whose table is absent: nothing to read, as NONE.
    if (op->response() == nullptr) continue;
    response_op decoded;
    switch (op->response_type()) {
      case wire::ResponseOpBody::RangeResponse: {
        decoded.type = request_op::kind::range;
        range_response r = decode(*op->response_as_RangeResponse());
        decoded.range = std::move(static_cast<range_result&>(r));
        break;
      }
      case wire::ResponseOpBody::PutResponse: {
        decoded.type = request_op::kind::put;
        put_response r = decode(*op->response_as_PutResponse());
        decoded.put = std::move(static_cast<put_result&>(r));
        break;
      }
      case wire::ResponseOpBody::DeleteRangeResponse: {
        decoded.type = request_op::kind::delete_range;
        delete_range_response r = decode(*op->response_as_DeleteRangeResponse());
        decoded.delete_range = std::move(static_cast<delete_range_result&>(r));
        break;
      }
      case wire::ResponseOpBody::TxnResponse: {
        const wire::TxnResponse& nested = *op->response_as_TxnResponse();
        decoded.type = request_op::kind::txn;
        decoded.txn.succeeded = nested.succeeded();  // its header is empty: not read
        decoded.txn.responses = decode_response_ops(nested.responses());
        break;
      }
      default:
        continue;  // a body type kv.fbs does not have
    }
    out.push_back(std::move(decoded));
  }
  return out;
}

}  // namespace

txn_response decode(const wire::TxnResponse& response) {
  txn_response out;
  out.header = decode(response.header());
  out.revision = out.header.revision;
  out.succeeded = response.succeeded();
  out.responses = decode_response_ops(response.responses());
  return out;
}

compaction_response decode(const wire::CompactionResponse& response) {
  return {decode(response.header())};
}

lease_grant_response decode(const wire::LeaseGrantResponse& response) {
  lease_grant_response out;
  out.header = decode(response.header());
  out.id = response.id();
  out.ttl = response.ttl();
  if (response.error() != nullptr) out.error = response.error()->str();
  return out;
}

lease_revoke_response decode(const wire::LeaseRevokeResponse& response) {
  return {decode(response.header())};
}

lease_keep_alive_response decode(const wire::LeaseKeepAliveResponse& response) {
  return {decode(response.header()), response.id(), response.ttl()};
}

lease_time_to_live_response decode(const wire::LeaseTimeToLiveResponse& response) {
  lease_time_to_live_response out;
  out.header = decode(response.header());
  out.id = response.id();
  out.ttl = response.ttl();
  out.granted_ttl = response.granted_ttl();
  if (const auto* keys = response.keys()) {
    for (const wire::LeaseKey* key : *keys) out.keys.push_back(string_of(key->key()));
  }
  return out;
}

lease_leases_response decode(const wire::LeaseLeasesResponse& response) {
  lease_leases_response out;
  out.header = decode(response.header());
  if (const auto* leases = response.leases()) {
    for (const wire::LeaseStatus* lease : *leases) out.ids.push_back(lease->id());
  }
  return out;
}

watch_response decode(const wire::WatchResponse& response) {
  watch_response out;
  out.header = decode(response.header());
  out.watch_id = response.watch_id();
  out.created = response.created();
  out.canceled = response.canceled();
  out.compact_revision = response.compact_revision();
  if (response.cancel_reason() != nullptr) out.cancel_reason = response.cancel_reason()->str();
  out.fragment = response.fragment();
  if (const auto* events = response.events()) {
    out.events.reserve(events->size());
    for (const wire::Event* e : *events) {
      event decoded;
      decoded.type = e->type() == wire::EventType::DELETE ? event_type::remove : event_type::put;
      if (e->kv() != nullptr) decoded.kv = decode_key_value(*e->kv());
      if (e->prev_kv() != nullptr) decoded.prev_kv = decode_key_value(*e->prev_kv());
      out.events.push_back(std::move(decoded));
    }
  }
  return out;
}

watch_cancel_response decode(const wire::WatchCancelResponse& response) {
  return {decode(response.header())};
}

error_payload decode(const wire::Error& error) {
  error_payload out;
  out.code = error.code();
  out.grpc_code = error.grpc_code();
  if (error.message() != nullptr) out.message = error.message()->str();
  return out;
}

namespace {

template <typename Table, typename Response>
status decode_as(wire::frame_type type, wire::frame_type expected, std::span<const std::uint8_t> payload,
                 Response& out) {
  if (type != expected) {
    const char* name = wire::frame_type_name(expected);
    return status(errc::invalid_argument, std::string("expected a ") + (name ? name : "?") + " frame, got type " +
                                              std::to_string(static_cast<unsigned>(type)));
  }
  out = decode(*fb::GetRoot<Table>(payload.data()));
  return status::ok();
}

}  // namespace

#define KEEL_KV_DECODE_PAYLOAD(response_struct, table, frame)                                            \
  status decode_payload(wire::frame_type type, std::span<const std::uint8_t> payload, response_struct& out) { \
    return decode_as<wire::table>(type, wire::frame_type::frame, payload, out);                        \
  }

KEEL_KV_DECODE_PAYLOAD(range_response, RangeResponse, range_response)
KEEL_KV_DECODE_PAYLOAD(put_response, PutResponse, put_response)
KEEL_KV_DECODE_PAYLOAD(delete_range_response, DeleteRangeResponse, delete_range_response)
KEEL_KV_DECODE_PAYLOAD(txn_response, TxnResponse, txn_response)
KEEL_KV_DECODE_PAYLOAD(compaction_response, CompactionResponse, compaction_response)
KEEL_KV_DECODE_PAYLOAD(lease_grant_response, LeaseGrantResponse, lease_grant_response)
KEEL_KV_DECODE_PAYLOAD(lease_revoke_response, LeaseRevokeResponse, lease_revoke_response)
KEEL_KV_DECODE_PAYLOAD(lease_keep_alive_response, LeaseKeepAliveResponse, lease_keepalive_response)
KEEL_KV_DECODE_PAYLOAD(lease_time_to_live_response, LeaseTimeToLiveResponse, lease_time_to_live_response)
KEEL_KV_DECODE_PAYLOAD(lease_leases_response, LeaseLeasesResponse, lease_leases_response)
KEEL_KV_DECODE_PAYLOAD(watch_response, WatchResponse, watch_response)
KEEL_KV_DECODE_PAYLOAD(watch_cancel_response, WatchCancelResponse, watch_cancel_response)

#undef KEEL_KV_DECODE_PAYLOAD

}  // namespace keel::kv::native
