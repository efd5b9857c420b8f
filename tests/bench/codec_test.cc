// Request bytes and response reading for v2, v3json and keel frames, pinned exactly.
#include <boost/test/unit_test.hpp>

#include <string>

#include "codec.h"
#include "http_reader.h"
#include "keel/kv/native_codec.h"
#include "keel/wire/kv_generated.h"
#include "options.h"

using namespace keel::bench;
namespace wire = keel::wire;

BOOST_AUTO_TEST_CASE(base64_round_trips_and_matches_rfc4648) {
  BOOST_TEST(base64_encode("") == "");
  BOOST_TEST(base64_encode("f") == "Zg==");
  BOOST_TEST(base64_encode("fo") == "Zm8=");
  BOOST_TEST(base64_encode("foo") == "Zm9v");
  BOOST_TEST(base64_encode("foobar") == "Zm9vYmFy");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  BOOST_TEST(*base64_decode(base64_encode(all)) == all);
  BOOST_TEST(!base64_decode("Zm9v!").has_value());
}

BOOST_AUTO_TEST_CASE(keys_are_prefixed_and_padded) {
  BOOST_TEST(make_key("b/", 42, 8) == "b/000042");
  BOOST_TEST(make_key("bench/", 1234567, 8) == "bench/1234567");
}

BOOST_AUTO_TEST_CASE(v2_requests_are_exact) {
  std::string out;
  v2_put(out, "127.0.0.1:2379", "bench/k 1", "v&=1");
  BOOST_TEST(out ==
             "PUT /v2/keys/bench/k%201 HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\nvalue=v%26%3D1");
  std::string same;
  v2_put_with_body(same, "127.0.0.1:2379", "bench/k 1", v2_put_body("v&=1"));
  BOOST_TEST(same == out);
  out.clear();
  v2_put(out, "h:1", "/a", "b", false);
  BOOST_TEST(out ==
             "PUT /v2/keys/a?prevExist=false HTTP/1.1\r\nHost: h:1\r\n"
             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nvalue=b");
  out.clear();
  v2_get(out, "h:1", "a", true);
  BOOST_TEST(out == "GET /v2/keys/a?quorum=true HTTP/1.1\r\nHost: h:1\r\n\r\n");
  out.clear();
  v2_watch(out, "h:1", "a", 17);
  BOOST_TEST(out == "GET /v2/keys/a?wait=true&waitIndex=17 HTTP/1.1\r\nHost: h:1\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(v2_answers_are_classified) {
  BOOST_TEST(v2_classify(201, R"({"action":"set","node":{"key":"/a","value":"b"}})").ok);
  outcome missing = v2_classify(404, R"({"errorCode":100,"message":"Key not found","cause":"/a","index":4})" "\n");
  BOOST_TEST(!missing.ok);
  BOOST_TEST(missing.kind == "HTTP 404 etcd error 100 (Key not found)");
  BOOST_TEST(v2_classify(503, "no json").kind == "HTTP 503");
  BOOST_TEST(*v2_node_value(R"({"action":"get","node":{"key":"/a","value":"b","modifiedIndex":4}})") == "b");
}

BOOST_AUTO_TEST_CASE(v2_watch_requests_are_exact) {
  std::string out;
  v2_watch(out, "h:1", "keel-bench/watched", 0);  // the first wait: the next event
  BOOST_TEST(out == "GET /v2/keys/keel-bench/watched?wait=true HTTP/1.1\r\nHost: h:1\r\n\r\n");
  out.clear();
  v2_watch(out, "h:1", "/dir", 1001, true);
  BOOST_TEST(out == "GET /v2/keys/dir?wait=true&waitIndex=1001&recursive=true HTTP/1.1\r\nHost: h:1\r\n\r\n");
  out.clear();
  v2_watch(out, "h:1", "a b", 0, true);
  BOOST_TEST(out == "GET /v2/keys/a%20b?wait=true&recursive=true HTTP/1.1\r\nHost: h:1\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(v2_watch_answers_are_parsed) {
  // As etcd 3.4 answers a wait: the event, then (set on an existing key) prevNode.
  auto set = v2_parse_event(
      R"({"action":"set","node":{"key":"/keel-bench/watched","value":"00000042","modifiedIndex":57,"createdIndex":57},)"
      R"("prevNode":{"key":"/keel-bench/watched","value":"00000041","modifiedIndex":56,"createdIndex":56}})" "\n");
  BOOST_TEST_REQUIRE(set.has_value());
  BOOST_TEST(set->action == "set");
  BOOST_TEST(*set->value == "00000042");  // the node's value, not prevNode's
  BOOST_TEST(set->modified_index == 57u);
  auto deleted = v2_parse_event(R"({"action":"delete","node":{"key":"/a","modifiedIndex":9,"createdIndex":3}})");
  BOOST_TEST_REQUIRE(deleted.has_value());
  BOOST_TEST(!deleted->value.has_value());
  BOOST_TEST(deleted->modified_index == 9u);
  BOOST_TEST(!v2_parse_event(R"({"errorCode":401,"message":"The event in requested index is outdated and cleared","index":2000})"));
  BOOST_TEST(!v2_parse_event(R"({"action":"set","node":{"key":"/a","value":"b"}})"));  // no index
  BOOST_TEST(!v2_parse_event("not json"));
  // A cleared history is an error kind of its own.
  BOOST_TEST(v2_classify(400, R"({"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [1/2]","index":2000})").kind ==
             "HTTP 400 etcd error 401 (The event in requested index is outdated and cleared)");
}

BOOST_AUTO_TEST_CASE(v3json_requests_are_exact) {
  std::string out;
  v3_post(out, "h:1", "/v3/kv/put", v3_put_body("foo", "bar"));
  BOOST_TEST(out ==
             "POST /v3/kv/put HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\n"
             "Content-Length: 29\r\n\r\n{\"key\":\"Zm9v\",\"value\":\"YmFy\"}");
  BOOST_TEST(v3_put_body("foo", "bar", 7) == R"({"key":"Zm9v","value":"YmFy","lease":"7"})");
  BOOST_TEST(v3_put_body_encoded("foo", "YmFy") == v3_put_body("foo", "bar"));
  BOOST_TEST(v3_put_body_encoded("foo", "YmFy", 7) == v3_put_body("foo", "bar", 7));
  BOOST_TEST(v3_range_body("foo", "", false) == R"({"key":"Zm9v"})");
  BOOST_TEST(v3_range_body("a", "b", true) == R"({"key":"YQ==","range_end":"Yg==","serializable":true})");
  BOOST_TEST(v3_txn_put_body({{"a", "b"}}) == R"({"success":[{"request_put":{"key":"YQ==","value":"Yg=="}}]})");
  BOOST_TEST(v3_lease_grant_body(60) == R"({"TTL":"60"})");
  BOOST_TEST(v3_lease_keepalive_body(123) == R"({"ID":"123"})");
  BOOST_TEST(v3_watch_create_body("foo", "") == R"({"create_request":{"key":"Zm9v"}})");
}

BOOST_AUTO_TEST_CASE(v3json_answers_are_read) {
  const char* put = R"({"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"}})";
  BOOST_TEST(v3_classify(200, put).ok);
  BOOST_TEST(v3_classify(200, R"({"header":{"revision":"3"},"kvs":[],"count":"1"})").ok);
  // Not a header-first answer: parsed, and the error found.
  BOOST_TEST(!v3_classify(200, R"({"error":{"grpc_code":14,"http_code":503,"message":"unavailable","code":14}})").ok);
  BOOST_TEST(!v3_classify(503, R"({"header":{}})").ok);
  outcome bad = v3_classify(400, R"({"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3})");
  BOOST_TEST(bad.kind == "HTTP 400 grpc code 3 (etcdserver: key is not provided)");
  BOOST_TEST(v3_classify(200, R"({"error":{"grpc_code":14,"http_code":503,"message":"unavailable","code":14}})" "\n").kind ==
             "HTTP 200 grpc code 14 (unavailable)");
  BOOST_TEST(*v3_lease_id(R"({"header":{},"ID":"7587869843406357521","TTL":"60"})") == 7587869843406357521LL);
  BOOST_TEST(*v3_lease_id(R"({"result":{"header":{},"ID":"9","TTL":"60"}})") == 9);
  BOOST_TEST(*v3_range_count(R"({"header":{"revision":"3"},"kvs":[],"count":"12"})") == 12);
  BOOST_TEST(*v3_range_count(R"({"header":{"revision":"3"}})") == 0);
  auto created = v3_parse_watch_line(R"({"result":{"header":{"revision":"1"},"created":true}})");
  BOOST_TEST(created->created);
  auto events = v3_parse_watch_line(
      R"({"result":{"header":{},"events":[{"kv":{"key":"Zm9v","value":"MTI="}},{"type":"DELETE","kv":{"key":"Zm9v"}}]}})");
  BOOST_TEST(events->values.size() == 2u);
  BOOST_TEST(events->values[0] == "12");
}

BOOST_AUTO_TEST_CASE(http_reader_splits_keep_alive_and_chunked_answers) {
  http_reader reader;
  std::string bytes =
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n1}\n\r\n0\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nline1\n\r\n3\r\nlin\r\n";
  for (char c : bytes) BOOST_REQUIRE(reader.feed(&c, 1));  // every split point
  BOOST_TEST(reader.responses().size() == 2u);
  BOOST_TEST(reader.responses()[0].status == 201);
  BOOST_TEST(reader.responses()[0].body == "{}");
  BOOST_TEST(reader.responses()[1].body == "{\"a\":1}\n");
  BOOST_TEST(reader.in_progress());
  BOOST_TEST(*reader.take_line() == "line1");
  BOOST_TEST(!reader.take_line().has_value());
  http_reader broken;
  BOOST_TEST(!broken.feed("garbage\r\n\r\n", 11));
}

namespace {

wire::frame_view decode_one(const std::string& bytes, wire::frame_decoder& decoder) {
  BOOST_REQUIRE(decoder.feed(bytes.data(), bytes.size()) == bytes.size());
  wire::decoded next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  return next.frame();
}

}  // namespace

BOOST_AUTO_TEST_CASE(keel_requests_round_trip_through_the_frame_decoder) {
  flatbuffers::FlatBufferBuilder builder;
  std::string out;
  keel_put(out, builder, 7, "key", "value", 3);
  wire::frame_decoder decoder;
  wire::frame_view frame = decode_one(out, decoder);
  BOOST_TEST(static_cast<unsigned>(frame.header.type) == 102u);
  BOOST_TEST(frame.header.request_id == 7u);
  BOOST_TEST(frame.header.end_of_stream());
  const auto* put = flatbuffers::GetRoot<wire::PutRequest>(frame.payload.data());
  BOOST_TEST(std::string(reinterpret_cast<const char*>(put->key()->data()), put->key()->size()) == "key");
  BOOST_TEST(std::string(reinterpret_cast<const char*>(put->value()->data()), put->value()->size()) == "value");
  BOOST_TEST(put->lease() == 3);

  out.clear();
  keel_range(out, builder, 8, "a", "b", true);
  keel_txn_put(out, builder, 9, {{"k1", "v1"}, {"k2", "v2"}});
  keel_lease_grant(out, builder, 10, 60);
  keel_lease_keepalive(out, builder, 11, 99);
  keel_watch_create(out, builder, 12, "w", "");
  BOOST_REQUIRE(decoder.feed(out.data(), out.size()) == out.size());
  wire::decoded next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  const auto* range = flatbuffers::GetRoot<wire::RangeRequest>(next.frame().payload.data());
  BOOST_TEST(range->serializable());
  BOOST_TEST(range->range_end()->size() == 1u);
  next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  const auto* txn = flatbuffers::GetRoot<wire::TxnRequest>(next.frame().payload.data());
  BOOST_REQUIRE(txn->success()->size() == 2u);
  BOOST_TEST(txn->success()->Get(1)->request_as_PutRequest()->key()->size() == 2u);
  const unsigned expected_types[] = {110, 114, 120};
  for (unsigned type : expected_types) {
    next = decoder.next();
    BOOST_REQUIRE(next.is_frame());
    BOOST_TEST(static_cast<unsigned>(next.frame().header.type) == type);
  }
  BOOST_TEST(decoder.next().is_need_more());
}

BOOST_AUTO_TEST_CASE(keel_error_frames_are_counted_by_kind) {
  std::string out;
  wire::append_error_frame(out, wire::frame_type::put_response, 5,
                           keel::status(keel::errc::not_found, "no module serves message type 102"));
  wire::frame_decoder decoder;
  wire::frame_view frame = decode_one(out, decoder);
  outcome o = keel_classify(frame, wire::frame_type::put_response);
  BOOST_TEST(!o.ok);
  BOOST_TEST(o.kind == "frame error not found: no module serves message type 102");
  BOOST_TEST((keel_response_type(wire::frame_type::put_request) == wire::frame_type::put_response));
}

BOOST_AUTO_TEST_CASE(keel_watch_frames_are_read) {
  namespace native = keel::kv::native;
  flatbuffers::FlatBufferBuilder builder;
  std::string out;
  // created (no events), then two events under the same request id, then a cancel.
  native::response_header header{1, 2, 5, 3};
  native::watch_status created;
  created.watch_id = 4;
  created.created = true;
  native::encode_watch_response(builder, header, created, {}, false);
  BOOST_REQUIRE(wire::append_frame(out, wire::frame_type::watch_response, 12, 0, builder.GetBufferSpan()).is_ok());
  keel::kv::event put;
  put.kv.key = "w";
  put.kv.value = "00000042";
  keel::kv::event removed;
  removed.type = keel::kv::event_type::remove;
  removed.kv.key = "w";
  const keel::kv::event* events[] = {&put, &removed};
  native::watch_status update;
  update.watch_id = 4;
  native::encode_watch_response(builder, header, update, events, false);
  BOOST_REQUIRE(wire::append_frame(out, wire::frame_type::watch_response, 12, 0, builder.GetBufferSpan()).is_ok());
  native::watch_status canceled;
  canceled.watch_id = 4;
  canceled.canceled = true;
  canceled.cancel_reason = "mvcc: required revision has been compacted";
  native::encode_watch_response(builder, header, canceled, {}, false);
  BOOST_REQUIRE(wire::append_frame(out, wire::frame_type::watch_response, 12, wire::frame_flags::end_of_stream,
                                   builder.GetBufferSpan()).is_ok());
  wire::append_error_frame(out, wire::frame_type::watch_response, 13,
                           keel::status(keel::errc::invalid_argument, "etcdserver: key is not provided"));

  wire::frame_decoder decoder;
  BOOST_REQUIRE(decoder.feed(out.data(), out.size()) == out.size());
  wire::decoded next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  BOOST_TEST(keel_classify(next.frame(), wire::frame_type::watch_response).ok);
  auto first = keel_parse_watch(next.frame());
  BOOST_REQUIRE(first.has_value());
  BOOST_TEST(first->created);
  BOOST_TEST(!first->canceled);
  BOOST_TEST(first->watch_id == 4);
  BOOST_TEST(first->values.empty());

  next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  auto second = keel_parse_watch(next.frame());
  BOOST_REQUIRE(second.has_value());
  BOOST_TEST(!second->created);
  BOOST_REQUIRE(second->values.size() == 2u);
  BOOST_TEST(second->values[0] == "00000042");
  BOOST_TEST(second->values[1] == "");  // a delete has no value

  next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  BOOST_TEST(next.frame().header.end_of_stream());
  auto third = keel_parse_watch(next.frame());
  BOOST_REQUIRE(third.has_value());
  BOOST_TEST(third->canceled);
  BOOST_TEST(third->cancel_reason == "mvcc: required revision has been compacted");

  next = decoder.next();
  BOOST_REQUIRE(next.is_frame());
  BOOST_TEST(!keel_parse_watch(next.frame()).has_value());  // error frame: classify names it
  outcome error = keel_classify(next.frame(), wire::frame_type::watch_response);
  BOOST_TEST(!error.ok);
  BOOST_TEST(error.kind.find("frame error") == 0u);
  BOOST_TEST(decoder.next().is_need_more());

  // Another frame type is not a watch frame.
  std::string put_frame;
  keel_put(put_frame, builder, 7, "k", "v");
  wire::frame_decoder other;
  BOOST_TEST(!keel_parse_watch(decode_one(put_frame, other)).has_value());
}

BOOST_AUTO_TEST_CASE(options_reject_unknown_flags_and_parse_known_ones) {
  const char* bad[] = {"keel-bench", "put", "--nope", "1"};
  auto r = parse_options(4, const_cast<char**>(bad));
  BOOST_TEST(!r.is_ok());
  BOOST_TEST(r.error().message() == "unknown flag --nope (see --help)");
  const char* good[] = {"keel-bench", "range", "a", "b", "--duration=2s", "--clients", "8", "--conns", "4",
                        "--consistency", "s", "--target", "keel", "--cpus", "0-1"};
  auto o = parse_options(15, const_cast<char**>(good));
  BOOST_REQUIRE(o.is_ok());
  BOOST_TEST(o->duration_seconds == 2.0);
  BOOST_TEST(o->clients == 8u);
  BOOST_TEST(!o->linearizable);
  BOOST_TEST(o->arguments.size() == 2u);
  BOOST_TEST(o->cpus.size() == 2u);
  const char* v2_lease[] = {"keel-bench", "lease-keepalive", "--target", "v2"};
  BOOST_TEST(!parse_options(4, const_cast<char**>(v2_lease)).is_ok());
}
