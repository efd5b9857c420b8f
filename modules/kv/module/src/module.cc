// kv — the key-value module: etcd's v3 JSON gateway (put, range) on one node, durable
// through the WAL and served from the MVCC store. See ../README.md.
//
// Threads: start() (main thread) recovers the WAL and replays it into the store. From
// then on the store, the WAL writer and the next entry index belong to shard 0 alone;
// HTTP handlers on every shard parse and decode the request, then run the operation on
// shard 0 with run_task_on and send the JSON it returns.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <coroutine>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codec.h"
#include "keel/kv/mvcc.h"
#include "keel/kv/wal.h"
#include "keel/kv/wal_recovery.h"
#include "keel/limits.h"
#include "keel/module.h"
#include "keel/reactor/cross.h"
#include "keel/reactor/http.h"
#include "keel/reactor/shard.h"

namespace {

using keel::errc;
using keel::status;
using keel::task;
namespace kv = keel::kv;
using namespace keel::kv_module;

constexpr unsigned owner_shard = 0;
constexpr std::uint64_t raft_term = 1;

// What shard 0 hands back to the HTTP handler: a status and the JSON body.
struct reply {
  int http_status = 200;
  std::string body;
};

struct kv_state {
  keel::module_context* context = nullptr;
  std::string dir;      // the data directory of the module
  std::string wal_dir;  // <dir>/wal
  std::uint64_t cluster_id = 0;
  std::uint64_t member_id = 0;

  // Shard 0 only once the shards run.
  std::unique_ptr<kv::uring_wal_storage> storage;
  kv::wal_recovery recovered;  // records dropped after replay; used by wal_writer::open
  kv::mvcc_store store;
  std::unique_ptr<kv::wal_writer> writer;
  status open_failure;  // wal_writer::open failed: every request answers 503
  bool opened = false;  // open finished (successfully or not)
  std::vector<std::coroutine_handle<>> open_waiters;
  std::uint64_t next_index = 1;
  std::uint64_t commits_in_flight = 0;  // our coroutines suspended in wal_writer::commit

  // Metrics (written on shard 0, read by /metrics from anywhere).
  std::atomic<std::uint64_t> puts{0};
  std::atomic<std::uint64_t> ranges{0};
  std::atomic<std::uint64_t> deletes{0};
  std::atomic<std::uint64_t> txns{0};
  std::atomic<std::uint64_t> compactions{0};
  std::atomic<std::int64_t> revision{1};
  std::atomic<std::uint64_t> replayed{0};
};
kv_state* g = nullptr;

// ---- JSON output ----------------------------------------------------------------------

void append_int_string(std::string& out, const char* name, std::int64_t value, bool& first) {
  if (!first) out += ',';
  first = false;
  out += '"';
  out += name;
  out += "\":\"";
  out += std::to_string(value);
  out += '"';
}

void append_bytes(std::string& out, const char* name, const std::string& bytes, bool& first) {
  if (!first) out += ',';
  first = false;
  out += '"';
  out += name;
  out += "\":\"";
  out += base64_encode(bytes);  // the base64 alphabet needs no JSON escaping
  out += '"';
}

void append_header(std::string& out, std::int64_t revision) {
  out += "\"header\":{\"cluster_id\":\"" + std::to_string(g->cluster_id) + "\",\"member_id\":\"" +
         std::to_string(g->member_id) + "\",\"revision\":\"" + std::to_string(revision) +
         "\",\"raft_term\":\"" + std::to_string(raft_term) + "\"}";
}

// mvccpb.KeyValue as grpc-gateway prints it: zero and empty fields omitted.
void append_key_value(std::string& out, const kv::key_value& kv) {
  out += '{';
  bool first = true;
  if (!kv.key.empty()) append_bytes(out, "key", kv.key, first);
  if (kv.create_revision != 0) append_int_string(out, "create_revision", kv.create_revision, first);
  if (kv.mod_revision != 0) append_int_string(out, "mod_revision", kv.mod_revision, first);
  if (kv.version != 0) append_int_string(out, "version", kv.version, first);
  if (!kv.value.empty()) append_bytes(out, "value", kv.value, first);
  if (kv.lease != 0) append_int_string(out, "lease", kv.lease, first);
  out += '}';
}

// The fields after the header of each response (zero and empty ones omitted).
void append_put_fields(std::string& out, const kv::put_result& put) {
  if (put.prev_kv) {
    out += ",\"prev_kv\":";
    append_key_value(out, *put.prev_kv);
  }
}

void append_range_fields(std::string& out, const kv::range_result& found) {
  if (!found.kvs.empty()) {
    out += ",\"kvs\":[";
    for (std::size_t i = 0; i < found.kvs.size(); ++i) {
      if (i) out += ',';
      append_key_value(out, found.kvs[i]);
    }
    out += ']';
  }
  if (found.more) out += ",\"more\":true";
  if (found.count != 0) out += ",\"count\":\"" + std::to_string(found.count) + "\"";
}

void append_delete_fields(std::string& out, const kv::delete_range_result& deleted) {
  if (deleted.deleted != 0) out += ",\"deleted\":\"" + std::to_string(deleted.deleted) + "\"";
  if (!deleted.prev_kvs.empty()) {
    out += ",\"prev_kvs\":[";
    for (std::size_t i = 0; i < deleted.prev_kvs.size(); ++i) {
      if (i) out += ',';
      append_key_value(out, deleted.prev_kvs[i]);
    }
    out += ']';
  }
}

// grpc-gateway's error body; the HTTP status follows the gRPC code.
reply error_reply(int grpc_code, std::string_view message) {
  int http = 500;
  switch (grpc_code) {
    case 3: http = 400; break;   // InvalidArgument
    case 5: http = 404; break;   // NotFound
    case 8: http = 429; break;   // ResourceExhausted
    case 9: http = 400; break;   // FailedPrecondition
    case 11: http = 400; break;  // OutOfRange
    case 14: http = 503; break;  // Unavailable
    default: http = 500; break;
  }
  reply r;
  r.http_status = http;
  r.body = "{\"error\":";
  keel::append_json_string(r.body, message);
  r.body += ",\"message\":";
  keel::append_json_string(r.body, message);
  r.body += ",\"code\":" + std::to_string(grpc_code) + "}";
  return r;
}

// etcd's gRPC codes for the store's errors (etcdserver/api/v3rpc/rpctypes).
reply mvcc_error_reply(const status& failure) {
  switch (kv::mvcc_error_of(failure)) {
    case kv::mvcc_error::compacted:
    case kv::mvcc_error::future_revision: return error_reply(11, failure.message());
    case kv::mvcc_error::duplicate_key:
    case kv::mvcc_error::empty_key:
    case kv::mvcc_error::key_not_found: return error_reply(3, failure.message());
    case kv::mvcc_error::too_many_operations: return error_reply(3, failure.message());
    default: return error_reply(13, failure.message());
  }
}

// ---- JSON input -------------------------------------------------------------------------

// Finds a field by its proto name or its lowerCamel JSON name (grpc-gateway accepts both).
const rapidjson::Value* field(const rapidjson::Value& object, const char* proto_name, const char* camel_name) {
  auto it = object.FindMember(proto_name);
  if (it != object.MemberEnd()) return &it->value;
  if (camel_name) {
    it = object.FindMember(camel_name);
    if (it != object.MemberEnd()) return &it->value;
  }
  return nullptr;
}

struct parse_error {
  std::string message;
};

bool read_bytes(const rapidjson::Value& object, const char* name, const char* camel, std::string& out,
                std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (!v->IsString()) {
    error = parse_error{std::string("bad input: field \"") + name + "\" must be a base64 string"};
    return false;
  }
  auto decoded = base64_decode(std::string_view(v->GetString(), v->GetStringLength()));
  if (!decoded) {
    error = parse_error{std::string("illegal base64 data in field \"") + name + "\""};
    return false;
  }
  out = std::move(*decoded);
  return true;
}

bool read_int64(const rapidjson::Value& object, const char* name, const char* camel, std::int64_t& out,
                std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsInt64()) {
    out = v->GetInt64();
    return true;
  }
  if (v->IsString()) {
    const char* s = v->GetString();
    char* end = nullptr;
    errno = 0;
    long long parsed = std::strtoll(s, &end, 10);
    if (*s != '\0' && end && *end == '\0' && errno == 0) {
      out = parsed;
      return true;
    }
  }
  error = parse_error{std::string("bad input: field \"") + name + "\" must be an int64 (number or decimal string)"};
  return false;
}

bool read_bool(const rapidjson::Value& object, const char* name, const char* camel, bool& out,
               std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsBool()) {
    out = v->GetBool();
    return true;
  }
  error = parse_error{std::string("bad input: field \"") + name + "\" must be a boolean"};
  return false;
}

// An enum given by name or number; `names` is indexed by the enum's number.
bool read_enum(const rapidjson::Value& object, const char* name, const char* camel,
               std::initializer_list<const char*> names, int& out, std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsInt() && v->GetInt() >= 0 && v->GetInt() < static_cast<int>(names.size())) {
    out = v->GetInt();
    return true;
  }
  if (v->IsString()) {
    int i = 0;
    for (const char* candidate : names) {
      if (std::strcmp(candidate, v->GetString()) == 0) {
        out = i;
        return true;
      }
      ++i;
    }
  }
  error = parse_error{std::string("bad input: unknown value for enum field \"") + name + "\""};
  return false;
}

// Checks that `object` is a JSON object whose members are all known.
std::optional<parse_error> check_object(const rapidjson::Value& doc, const char* message,
                                        std::initializer_list<const char*> known) {
  if (!doc.IsObject()) return parse_error{std::string("request body is not a JSON object for ") + message};
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    bool found = false;
    for (const char* name : known) {
      if (std::strcmp(name, it->name.GetString()) == 0) {
        found = true;
        break;
      }
    }
    if (!found) return parse_error{std::string("unknown field \"") + it->name.GetString() + "\" in " + message};
  }
  return std::nullopt;
}

std::optional<parse_error> parse_json(const std::string& body, rapidjson::Document& doc) {
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError()) {
    return parse_error{std::string("invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
                       rapidjson::GetParseError_En(doc.GetParseError())};
  }
  return std::nullopt;
}

std::optional<parse_error> parse_put(const rapidjson::Value& doc, put_entry& put) {
  auto error = check_object(doc, "etcdserverpb.PutRequest",
                            {"key", "value", "lease", "prev_kv", "prevKv", "ignore_value", "ignoreValue",
                             "ignore_lease", "ignoreLease"});
  if (error) return error;
  if (!read_bytes(doc, "key", nullptr, put.key, error) || !read_bytes(doc, "value", nullptr, put.value, error) ||
      !read_int64(doc, "lease", nullptr, put.lease, error) || !read_bool(doc, "prev_kv", "prevKv", put.prev_kv, error) ||
      !read_bool(doc, "ignore_value", "ignoreValue", put.ignore_value, error) ||
      !read_bool(doc, "ignore_lease", "ignoreLease", put.ignore_lease, error))
    return error;
  return std::nullopt;
}

std::optional<parse_error> parse_range(const rapidjson::Value& doc, kv::range_request& range) {
  auto error = check_object(
      doc, "etcdserverpb.RangeRequest",
      {"key", "range_end", "rangeEnd", "limit", "revision", "sort_order", "sortOrder", "sort_target", "sortTarget",
       "serializable", "keys_only", "keysOnly", "count_only", "countOnly", "min_mod_revision", "minModRevision",
       "max_mod_revision", "maxModRevision", "min_create_revision", "minCreateRevision", "max_create_revision",
       "maxCreateRevision"});
  if (error) return error;
  bool serializable = false;  // one node: serializable and linearizable reads are the same
  int order = 0, target = 0;
  if (!read_bytes(doc, "key", nullptr, range.key, error) ||
      !read_bytes(doc, "range_end", "rangeEnd", range.range_end, error) ||
      !read_int64(doc, "limit", nullptr, range.limit, error) ||
      !read_int64(doc, "revision", nullptr, range.revision, error) ||
      !read_enum(doc, "sort_order", "sortOrder", {"NONE", "ASCEND", "DESCEND"}, order, error) ||
      !read_enum(doc, "sort_target", "sortTarget", {"KEY", "VERSION", "CREATE", "MOD", "VALUE"}, target, error) ||
      !read_bool(doc, "serializable", nullptr, serializable, error) ||
      !read_bool(doc, "keys_only", "keysOnly", range.keys_only, error) ||
      !read_bool(doc, "count_only", "countOnly", range.count_only, error) ||
      !read_int64(doc, "min_mod_revision", "minModRevision", range.min_mod_revision, error) ||
      !read_int64(doc, "max_mod_revision", "maxModRevision", range.max_mod_revision, error) ||
      !read_int64(doc, "min_create_revision", "minCreateRevision", range.min_create_revision, error) ||
      !read_int64(doc, "max_create_revision", "maxCreateRevision", range.max_create_revision, error))
    return error;
  range.order = static_cast<kv::sort_order>(order);
  range.target = static_cast<kv::sort_target>(target);
  return std::nullopt;
}

std::optional<parse_error> parse_delete_range(const rapidjson::Value& doc, kv::delete_range_request& request) {
  auto error = check_object(doc, "etcdserverpb.DeleteRangeRequest",
                            {"key", "range_end", "rangeEnd", "prev_kv", "prevKv"});
  if (error) return error;
  if (!read_bytes(doc, "key", nullptr, request.key, error) ||
      !read_bytes(doc, "range_end", "rangeEnd", request.range_end, error) ||
      !read_bool(doc, "prev_kv", "prevKv", request.prev_kv, error))
    return error;
  return std::nullopt;
}

std::optional<parse_error> parse_compaction(const rapidjson::Value& doc, std::int64_t& revision, bool& physical) {
  auto error = check_object(doc, "etcdserverpb.CompactionRequest", {"revision", "physical"});
  if (error) return error;
  if (!read_int64(doc, "revision", nullptr, revision, error) || !read_bool(doc, "physical", nullptr, physical, error))
    return error;
  return std::nullopt;
}

kv::put_request to_request(const put_entry& put);

std::optional<parse_error> parse_compare(const rapidjson::Value& doc, kv::compare& compare) {
  auto error = check_object(doc, "etcdserverpb.Compare",
                            {"result", "target", "key", "range_end", "rangeEnd", "version", "create_revision",
                             "createRevision", "mod_revision", "modRevision", "value", "lease"});
  if (error) return error;
  // etcd's enum numbers: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3; VERSION 0, CREATE 1,
  // MOD 2, VALUE 3, LEASE 4.
  int result = 0, target = 0;
  if (!read_enum(doc, "result", nullptr, {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"}, result, error) ||
      !read_enum(doc, "target", nullptr, {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"}, target, error) ||
      !read_bytes(doc, "key", nullptr, compare.key, error) ||
      !read_bytes(doc, "range_end", "rangeEnd", compare.range_end, error))
    return error;
  static constexpr kv::compare_result results[] = {kv::compare_result::equal, kv::compare_result::greater,
                                                   kv::compare_result::less, kv::compare_result::not_equal};
  static constexpr kv::compare_target targets[] = {kv::compare_target::version, kv::compare_target::create,
                                                   kv::compare_target::mod, kv::compare_target::value,
                                                   kv::compare_target::lease};
  compare.result = results[result];
  compare.target = targets[target];
  // The oneof member that matches the target (another member leaves it 0, as etcd).
  bool ok = true;
  switch (compare.target) {
    case kv::compare_target::version: ok = read_int64(doc, "version", nullptr, compare.number, error); break;
    case kv::compare_target::create:
      ok = read_int64(doc, "create_revision", "createRevision", compare.number, error);
      break;
    case kv::compare_target::mod: ok = read_int64(doc, "mod_revision", "modRevision", compare.number, error); break;
    case kv::compare_target::value: ok = read_bytes(doc, "value", nullptr, compare.value, error); break;
    case kv::compare_target::lease: ok = read_int64(doc, "lease", nullptr, compare.number, error); break;
  }
  if (!ok) return error;
  return std::nullopt;
}

std::optional<parse_error> parse_request_op(const rapidjson::Value& doc, kv::request_op& op) {
  auto error = check_object(doc, "etcdserverpb.RequestOp",
                            {"request_range", "requestRange", "request_put", "requestPut", "request_delete_range",
                             "requestDeleteRange", "request_txn", "requestTxn"});
  if (error) return error;
  if (doc.MemberCount() != 1) return parse_error{"a txn operation must have exactly one request"};
  if (const auto* v = field(doc, "request_range", "requestRange")) {
    kv::range_request range;
    if ((error = parse_range(*v, range))) return error;
    op = kv::request_op::of(std::move(range));
  } else if (const auto* v = field(doc, "request_put", "requestPut")) {
    put_entry put;
    if ((error = parse_put(*v, put))) return error;
    op = kv::request_op::of(to_request(put));
  } else if (const auto* v = field(doc, "request_delete_range", "requestDeleteRange")) {
    kv::delete_range_request request;
    if ((error = parse_delete_range(*v, request))) return error;
    op = kv::request_op::of(std::move(request));
  } else {
    return parse_error{"nested txn (request_txn) is not supported"};
  }
  return std::nullopt;
}

std::optional<parse_error> parse_txn(const rapidjson::Value& doc, kv::txn_request& txn) {
  auto error = check_object(doc, "etcdserverpb.TxnRequest", {"compare", "success", "failure"});
  if (error) return error;
  if (const auto* v = field(doc, "compare", nullptr); v && !v->IsNull()) {
    if (!v->IsArray()) return parse_error{"bad input: field \"compare\" must be an array"};
    for (const auto& item : v->GetArray()) {
      kv::compare compare;
      if ((error = parse_compare(item, compare))) return error;
      txn.compares.push_back(std::move(compare));
    }
  }
  for (auto [name, ops] : {std::pair{"success", &txn.success}, std::pair{"failure", &txn.failure}}) {
    const auto* v = field(doc, name, nullptr);
    if (!v || v->IsNull()) continue;
    if (!v->IsArray()) return parse_error{std::string("bad input: field \"") + name + "\" must be an array"};
    for (const auto& item : v->GetArray()) {
      kv::request_op op;
      if ((error = parse_request_op(item, op))) return error;
      ops->push_back(std::move(op));
    }
  }
  return std::nullopt;
}

// ---- shard 0: the operations ------------------------------------------------------------

kv::put_request to_request(const put_entry& put) {
  kv::put_request request;
  request.key = put.key;
  request.value = put.value;
  request.lease = put.lease;
  request.prev_kv = put.prev_kv;
  request.ignore_value = put.ignore_value;
  request.ignore_lease = put.ignore_lease;
  return request;
}

// Resumes once shard 0 has opened (or failed to open) the WAL writer.
struct open_awaiter {
  bool await_ready() const noexcept { return g->opened; }
  void await_suspend(std::coroutine_handle<> handle) { g->open_waiters.push_back(handle); }
  void await_resume() const noexcept {}
};

task<void> open_writer() {
  task<keel::result<std::unique_ptr<kv::wal_writer>>> opening =
      kv::wal_writer::open(*g->storage, g->recovered, kv::wal_writer_options{});
  auto opened = co_await std::move(opening);
  if (opened) {
    g->writer = std::move(opened.value());
    g->context->log(keel::log_level::info, "WAL open in " + g->wal_dir + ", next index " +
                                               std::to_string(g->next_index) + ", revision " +
                                               std::to_string(g->store.current_revision()));
  } else {
    g->open_failure = opened.error();
    g->context->log(keel::log_level::error, "cannot open the WAL writer: " + opened.error().to_string());
  }
  g->opened = true;
  auto waiters = std::move(g->open_waiters);
  g->open_waiters.clear();
  for (auto handle : waiters) keel::shard::current()->schedule(handle);
}

// The writer, or the reason there is none.
std::optional<reply> writer_unusable() {
  if (!g->open_failure.is_ok()) return error_reply(14, "etcdserver: WAL unavailable: " + g->open_failure.message());
  if (!g->writer->failure().is_ok())
    return error_reply(14, "etcdserver: WAL failed: " + g->writer->failure().message());
  return std::nullopt;
}

// Waits until everything appended so far is durable (a commit with nothing new to
// write returns at once).
task<status> durable_now() {
  task<status> committing = g->writer->commit();
  ++g->commits_in_flight;
  status durable = co_await std::move(committing);
  --g->commits_in_flight;
  co_return durable;
}

// Every write: append the encoded request to the WAL, apply it (`apply` builds the
// answer from the store's result), wait for the fdatasync that covers it, answer. The
// log holds requests, applied in log order, so a request the store refuses is refused
// again on replay and revisions replay identically.
task<reply> do_write(std::string data, std::function<reply()> apply, std::atomic<std::uint64_t>* counter) {
  if (!g->opened) co_await open_awaiter{};
  if (auto bad = writer_unusable()) co_return std::move(*bad);
  if (data.size() > keel::limits::wal_entry_data_bytes_max) co_return error_reply(3, "etcdserver: request is too large");
  status appended = g->writer->append(kv::wal_record::entry(raft_term, g->next_index, std::move(data)));
  if (!appended) {
    if (appended.code() == errc::too_large) co_return error_reply(8, "etcdserver: too many requests: " + appended.message());
    co_return error_reply(14, "etcdserver: WAL failed: " + appended.message());
  }
  ++g->next_index;
  reply answer = apply();
  g->revision.store(g->store.current_revision(), std::memory_order_relaxed);
  task<status> committing = durable_now();
  status durable = co_await std::move(committing);
  if (!durable) co_return error_reply(14, "etcdserver: WAL failed: " + durable.message());
  counter->fetch_add(1, std::memory_order_relaxed);
  co_return answer;
}

task<reply> do_put(put_entry put) {
  if (put.key.empty()) co_return error_reply(3, kv::mvcc_messages::empty_key);
  std::string data = encode_put_entry(put);
  auto apply = [put = std::move(put)]() -> reply {
    auto applied = g->store.put(to_request(put));
    if (!applied) return mvcc_error_reply(applied.error());
    reply r;
    r.body = "{";
    append_header(r.body, applied->revision);
    append_put_fields(r.body, *applied);
    r.body += "}";
    return r;
  };
  task<reply> writing = do_write(std::move(data), std::move(apply), &g->puts);
  co_return co_await std::move(writing);
}

// range = read the store, then wait until every write it may have seen is durable, answer.
task<reply> do_range(kv::range_request range) {
  if (!g->opened) co_await open_awaiter{};
  if (auto bad = writer_unusable()) co_return std::move(*bad);
  auto found = g->store.range(range);
  task<status> committing = durable_now();
  status durable = co_await std::move(committing);
  if (!durable) co_return error_reply(14, "etcdserver: WAL failed: " + durable.message());
  g->ranges.fetch_add(1, std::memory_order_relaxed);
  if (!found) co_return mvcc_error_reply(found.error());
  reply r;
  r.body = "{";
  append_header(r.body, found->revision);
  append_range_fields(r.body, *found);
  r.body += "}";
  co_return r;
}

task<reply> do_delete_range(kv::delete_range_request request) {
  if (request.key.empty()) co_return error_reply(3, kv::mvcc_messages::empty_key);
  std::string data = encode_delete_entry(request);
  task<reply> work = do_write(
      std::move(data),
      [request = std::move(request)]() -> reply {
        auto deleted = g->store.delete_range(request);
        if (!deleted) return mvcc_error_reply(deleted.error());
        reply r;
        r.body = "{";
        append_header(r.body, deleted->revision);
        append_delete_fields(r.body, *deleted);
        r.body += "}";
        return r;
      },
      &g->deletes);
  co_return co_await std::move(work);
}

// A response inside a txn carries a header with the revision only (etcd 3.4).
void append_nested_header(std::string& out, std::int64_t revision) {
  out += "{\"header\":{\"revision\":\"" + std::to_string(revision) + "\"}";
}

task<reply> do_txn(kv::txn_request request) {
  std::string data = encode_txn_entry(request);
  task<reply> work = do_write(
      std::move(data),
      [request = std::move(request)]() -> reply {
        auto done = g->store.txn(request);
        if (!done) return mvcc_error_reply(done.error());
        reply r;
        r.body = "{";
        append_header(r.body, done->revision);
        if (done->succeeded) r.body += ",\"succeeded\":true";  // grpc-gateway omits false
        if (!done->responses.empty()) {
          r.body += ",\"responses\":[";
          for (std::size_t i = 0; i < done->responses.size(); ++i) {
            const kv::response_op& op = done->responses[i];
            if (i) r.body += ',';
            switch (op.type) {
              case kv::request_op::kind::range:
                r.body += "{\"response_range\":";
                append_nested_header(r.body, op.range.revision);
                append_range_fields(r.body, op.range);
                break;
              case kv::request_op::kind::put:
                r.body += "{\"response_put\":";
                append_nested_header(r.body, op.put.revision);
                append_put_fields(r.body, op.put);
                break;
              case kv::request_op::kind::delete_range:
                r.body += "{\"response_delete_range\":";
                append_nested_header(r.body, op.delete_range.revision);
                append_delete_fields(r.body, op.delete_range);
                break;
            }
            r.body += "}}";
          }
          r.body += ']';
        }
        r.body += "}";
        return r;
      },
      &g->txns);
  co_return co_await std::move(work);
}

task<reply> do_compaction(std::int64_t revision, bool physical) {
  task<reply> work = do_write(
      encode_compact_entry(revision, physical),
      [revision]() -> reply {
        status compacted = g->store.compact(revision);
        if (!compacted) return mvcc_error_reply(compacted);
        reply r;
        r.body = "{";
        append_header(r.body, g->store.current_revision());
        r.body += "}";
        return r;
      },
      &g->compactions);
  co_return co_await std::move(work);
}

// ---- HTTP handlers (any shard) -------------------------------------------------------------

void send_reply(keel::http_response& response, const reply& r) {
  response.send(r.http_status, "application/json", r.body);
}

template <typename F>
task<reply> on_owner(F fn) {
  if (keel::shard::current()->id() == owner_shard) {
    task<reply> work = fn();
    co_return co_await std::move(work);
  }
  task<reply> remote = keel::run_task_on<reply>(owner_shard, std::move(fn));
  co_return co_await std::move(remote);
}

struct compaction_request {
  std::int64_t revision = 0;
  bool physical = false;
};

// Every v3 kv route: parse the JSON body into a Request (a bad body is answered 400 here,
// on the connection's shard), run `execute` on the owner shard, send its reply.
template <typename Request, typename Parse, typename Execute>
task<void> serve_json(const keel::http_request& request, keel::http_response& response, Parse parse,
                      Execute execute) {
  Request parsed{};
  rapidjson::Document doc;
  auto error = parse_json(request.body, doc);
  if (!error) error = parse(doc, parsed);
  if (error) {
    send_reply(response, error_reply(3, error->message));
    co_return;
  }
  task<reply> work = on_owner([parsed = std::move(parsed), execute]() mutable { return execute(std::move(parsed)); });
  reply r = co_await std::move(work);
  send_reply(response, r);
}

task<void> http_put(const keel::http_request& request, keel::http_response& response) {
  return serve_json<put_entry>(
      request, response, [](const rapidjson::Value& doc, put_entry& put) { return parse_put(doc, put); },
      [](put_entry put) { return do_put(std::move(put)); });
}

task<void> http_range(const keel::http_request& request, keel::http_response& response) {
  return serve_json<kv::range_request>(
      request, response, [](const rapidjson::Value& doc, kv::range_request& range) { return parse_range(doc, range); },
      [](kv::range_request range) { return do_range(std::move(range)); });
}

task<void> http_delete_range(const keel::http_request& request, keel::http_response& response) {
  return serve_json<kv::delete_range_request>(
      request, response,
      [](const rapidjson::Value& doc, kv::delete_range_request& del) { return parse_delete_range(doc, del); },
      [](kv::delete_range_request del) { return do_delete_range(std::move(del)); });
}

task<void> http_txn(const keel::http_request& request, keel::http_response& response) {
  return serve_json<kv::txn_request>(
      request, response, [](const rapidjson::Value& doc, kv::txn_request& txn) { return parse_txn(doc, txn); },
      [](kv::txn_request txn) { return do_txn(std::move(txn)); });
}

task<void> http_compaction(const keel::http_request& request, keel::http_response& response) {
  return serve_json<compaction_request>(
      request, response,
      [](const rapidjson::Value& doc, compaction_request& c) { return parse_compaction(doc, c.revision, c.physical); },
      [](compaction_request c) { return do_compaction(c.revision, c.physical); });
}

// ---- start / stop ---------------------------------------------------------------------------

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// Recovers <dir>/wal and replays its entries into the store (main thread, blocking).
status recover(kv_state& s) {
  status made = kv::posix_wal_directory::create_directories(s.wal_dir);
  if (!made) return made;
  s.storage = std::make_unique<kv::uring_wal_storage>(s.wal_dir);
  auto recovered = kv::recover_wal(*s.storage, kv::wal_recovery_mode::repair);
  if (!recovered) return recovered.error();
  s.recovered = std::move(recovered.value());
  if (!s.recovered.torn_tail_text(false).empty()) s.context->log(keel::log_level::warn, s.recovered.torn_tail_text(false));
  std::uint64_t entries = 0;
  for (const kv::wal_record& record : s.recovered.records) {
    if (record.type != kv::wal_record_type::entry) continue;
    auto entry = decode_entry(record.data);
    if (!entry) {
      return {errc::corruption, s.wal_dir + ": entry " + std::to_string(record.index) +
                                    " is not a kv request (" + std::to_string(record.data.size()) + " bytes)"};
    }
    // A request the store refused when it was served is refused identically here.
    switch (entry->kind) {
      case entry_kind_put: (void)s.store.put(to_request(entry->put)); break;
      case entry_kind_delete: (void)s.store.delete_range(entry->delete_range); break;
      case entry_kind_txn: (void)s.store.txn(entry->txn); break;
      case entry_kind_compact: (void)s.store.compact(entry->compact_revision); break;
    }
    ++entries;
  }
  s.next_index = s.recovered.last_index ? *s.recovered.last_index + 1 : 1;
  s.recovered.records.clear();
  s.recovered.records.shrink_to_fit();
  s.replayed = entries;
  s.revision = s.store.current_revision();
  return status::ok();
}

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  rapidjson::Document config;
  std::string text(context->config_json());
  config.Parse(text.c_str());
  if (config.HasParseError() || !config.IsObject() || !config.HasMember("dir") || !config["dir"].IsString()) {
    std::snprintf(error, error_bytes, "config section is not {\"dir\": string, ...}: %s", text.c_str());
    return 1;
  }
  auto state = std::make_unique<kv_state>();
  state->context = context;
  state->dir = config["dir"].GetString();
  if (state->dir.empty()) state->dir = "./default.keel";
  state->wal_dir = state->dir + "/wal";
  state->cluster_id = fnv1a("keel-kv cluster " + state->dir);
  state->member_id = fnv1a("keel-kv member " + state->dir);
  status recovered = recover(*state);
  if (!recovered) {
    std::snprintf(error, error_bytes, "recovering %s: %s", state->wal_dir.c_str(), recovered.to_string().c_str());
    return 1;
  }
  context->log(keel::log_level::info, "recovered " + std::to_string(state->replayed.load()) + " entries from " +
                                          state->wal_dir + ", revision " +
                                          std::to_string(state->store.current_revision()));
  g = state.release();

  context->on_shard_start([](keel::shard& shard) {
    if (shard.id() == owner_shard) keel::spawn(open_writer());
  });
  keel::http_router& router = context->router();
  for (const char* prefix : {"/v3", "/v3beta"}) {
    router.add_async("POST", std::string(prefix) + "/kv/put", http_put);
    router.add_async("POST", std::string(prefix) + "/kv/range", http_range);
    router.add_async("POST", std::string(prefix) + "/kv/deleterange", http_delete_range);
    router.add_async("POST", std::string(prefix) + "/kv/txn", http_txn);
    router.add_async("POST", std::string(prefix) + "/kv/compaction", http_compaction);
  }
  context->add_metrics([](std::string& out) {
    out += "# HELP keel_kv_puts_total Puts answered by the kv module.\n# TYPE keel_kv_puts_total counter\n";
    out += "keel_kv_puts_total " + std::to_string(g->puts.load(std::memory_order_relaxed)) + "\n";
    out += "# HELP keel_kv_ranges_total Ranges answered by the kv module.\n# TYPE keel_kv_ranges_total counter\n";
    out += "keel_kv_ranges_total " + std::to_string(g->ranges.load(std::memory_order_relaxed)) + "\n";
    out += "# HELP keel_kv_deletes_total Delete ranges answered by the kv module.\n# TYPE keel_kv_deletes_total counter\n";
    out += "keel_kv_deletes_total " + std::to_string(g->deletes.load(std::memory_order_relaxed)) + "\n";
    out += "# HELP keel_kv_txns_total Txns answered by the kv module.\n# TYPE keel_kv_txns_total counter\n";
    out += "keel_kv_txns_total " + std::to_string(g->txns.load(std::memory_order_relaxed)) + "\n";
    out += "# HELP keel_kv_compactions_total Compactions answered by the kv module.\n# TYPE keel_kv_compactions_total counter\n";
    out += "keel_kv_compactions_total " + std::to_string(g->compactions.load(std::memory_order_relaxed)) + "\n";
    out += "# HELP keel_kv_revision The store's current revision.\n# TYPE keel_kv_revision gauge\n";
    out += "keel_kv_revision " + std::to_string(g->revision.load(std::memory_order_relaxed)) + "\n";
  });
  return 0;
}

void stop(keel::module_context*) {
  // Every shard has stopped. The writer is destroyed only when none of our coroutines
  // is still suspended inside commit() (one cancelled at stop may never be resumed):
  // its destructor asserts that no commit is in flight. Otherwise it and its storage
  // are left to the process exit.
  if (!g) return;
  if (g->writer && g->commits_in_flight != 0) {
    (void)g->writer.release();
    (void)g->storage.release();
  }
  g->writer.reset();
  delete g;
  g = nullptr;
}

constexpr const char* schema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "dir": {"type": "string", "default": "", "description": "Directory of the kv store (its WAL is <dir>/wal); \"\" means \"./default.keel\". The module cannot see --data-dir, so set this."},
    "snapshot-count": {"type": "integer", "default": 100000, "minimum": 1, "description": "Committed entries between snapshots (etcd's --snapshot-count). Accepted, not used yet."}
  }
})";

const keel_module_descriptor descriptor = {
    KEEL_MODULE_ABI_VERSION, "kv", "0.1.0", schema, nullptr, start, stop,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}
