// keel/kv/native_codec.h without a server: every request the client encodes decodes on the
// server side to an equal value, every answer the server encodes decodes on the client
// side to what was sent, and each goes through a real frame and the frame decoder (CRC,
// Verifier) on the way.
#define BOOST_TEST_MODULE kv_native_codec
#include <boost/test/unit_test.hpp>

#include <string>

#include "keel/kv/native_codec.h"

namespace {

using namespace keel;
namespace native = kv::native;

// Puts the builder's buffer in a frame and takes it out of a frame decoder again: the
// payload the other end would see (verified). `keep` owns the bytes.
std::span<const std::uint8_t> through_a_frame(const flatbuffers::FlatBufferBuilder& b, wire::frame_type type,
                                              std::string& keep, wire::frame_decoder& decoder) {
  keep.clear();
  BOOST_TEST_REQUIRE(native::append_request(keep, type, 42, b).is_ok());
  BOOST_TEST_REQUIRE(decoder.feed(keep.data(), keep.size()) == keep.size());
  wire::decoded next = decoder.next();
  BOOST_TEST_REQUIRE(next.is_frame(), (next.is_error() ? next.error().message() : "need more"));
  BOOST_TEST(next.frame().header.request_id == 42u);
  return next.frame().payload;
}

template <typename Table>
const Table& root(std::span<const std::uint8_t> payload) {
  return *flatbuffers::GetRoot<Table>(payload.data());
}

kv::key_value kv_of(std::string key, std::string value, std::int64_t revision) {
  return {std::move(key), revision, revision, 1, std::move(value), 0};
}

}  // namespace

BOOST_AUTO_TEST_CASE(requests_decode_to_what_was_encoded) {
  flatbuffers::FlatBufferBuilder b;
  std::string bytes;
  wire::frame_decoder decoder;

  kv::range_request range;
  range.key = "a";
  range.range_end = std::string(1, '\0');
  range.limit = 5;
  range.revision = 7;
  range.order = kv::sort_order::descend;
  range.target = kv::sort_target::mod;
  range.keys_only = true;
  range.min_create_revision = 3;
  native::encode(b, range, true);
  auto payload = through_a_frame(b, wire::frame_type::range_request, bytes, decoder);
  BOOST_TEST(root<wire::RangeRequest>(payload).serializable());
  auto decoded_range = native::decode(root<wire::RangeRequest>(payload));
  BOOST_TEST_REQUIRE(decoded_range.is_ok());
  BOOST_TEST((decoded_range.value().key == range.key && decoded_range.value().range_end == range.range_end));
  BOOST_TEST((decoded_range.value().order == kv::sort_order::descend));
  BOOST_TEST((decoded_range.value().target == kv::sort_target::mod));
  BOOST_TEST(decoded_range.value().limit == 5);
  BOOST_TEST(decoded_range.value().keys_only);
  BOOST_TEST(decoded_range.value().min_create_revision == 3);

  kv::put_request put{"k", std::string("v\0w", 3), 9, true, false, true};
  native::encode(b, put);
  payload = through_a_frame(b, wire::frame_type::put_request, bytes, decoder);
  kv::put_request decoded_put = native::decode(root<wire::PutRequest>(payload));
  BOOST_TEST((decoded_put.key == put.key && decoded_put.value == put.value));
  BOOST_TEST(decoded_put.lease == 9);
  BOOST_TEST(decoded_put.prev_kv);
  BOOST_TEST(decoded_put.ignore_lease);

  kv::txn_request txn;
  kv::compare c1{kv::compare_result::not_equal, kv::compare_target::value, "k", "", 0, "x"};
  kv::compare c2{kv::compare_result::greater, kv::compare_target::mod, "k", "z", 12, ""};
  kv::compare c3{kv::compare_result::less, kv::compare_target::lease, "k", "", 0x55, ""};
  txn.compares = {c1, c2, c3};
  txn.success = {kv::request_op::of(put), kv::request_op::of(range)};
  kv::delete_range_request del{"d", "e", true};
  txn.failure = {kv::request_op::of(del)};
  native::encode(b, txn);
  payload = through_a_frame(b, wire::frame_type::txn_request, bytes, decoder);
  auto decoded_txn = native::decode(root<wire::TxnRequest>(payload));
  BOOST_TEST_REQUIRE(decoded_txn.is_ok());
  const kv::txn_request& t = decoded_txn.value();
  BOOST_TEST_REQUIRE(t.compares.size() == 3u);
  BOOST_TEST((t.compares[0].result == kv::compare_result::not_equal && t.compares[0].value == "x"));
  BOOST_TEST((t.compares[1].result == kv::compare_result::greater && t.compares[1].number == 12));
  BOOST_TEST(t.compares[1].range_end == "z");
  BOOST_TEST((t.compares[2].target == kv::compare_target::lease && t.compares[2].number == 0x55));
  BOOST_TEST_REQUIRE(t.success.size() == 2u);
  BOOST_TEST((t.success[0].type == kv::request_op::kind::put && t.success[0].put.value == put.value));
  BOOST_TEST((t.success[1].type == kv::request_op::kind::range && t.success[1].range.limit == 5));
  BOOST_TEST_REQUIRE(t.failure.size() == 1u);
  BOOST_TEST((t.failure[0].delete_range.range_end == "e" && t.failure[0].delete_range.prev_kv));

  native::watch_create_request watch{"w", "x", 4, true, true, false, true, 7, false};
  native::encode(b, watch);
  payload = through_a_frame(b, wire::frame_type::watch_create_request, bytes, decoder);
  auto decoded_watch = native::decode(root<wire::WatchCreateRequest>(payload));
  BOOST_TEST_REQUIRE(decoded_watch.is_ok());
  BOOST_TEST((decoded_watch.value() == watch));
}

BOOST_AUTO_TEST_CASE(a_nested_txn_round_trips_through_a_frame) {
  kv::txn_request inner;
  kv::compare c;
  c.key = "k";
  c.target = kv::compare_target::value;
  c.value = "v";
  inner.compares = {c};
  kv::put_request put;
  put.key = "p";
  put.value = "1";
  inner.failure = {kv::request_op::of(put)};
  kv::txn_request middle;
  middle.success = {kv::request_op::of(inner)};
  kv::txn_request outer;
  outer.success = {kv::request_op::of(put), kv::request_op::of(middle)};
  flatbuffers::FlatBufferBuilder b;
  native::encode(b, outer);
  std::string bytes;
  wire::frame_decoder decoder;
  auto payload = through_a_frame(b, wire::frame_type::txn_request, bytes, decoder);
  auto decoded = native::decode(root<wire::TxnRequest>(payload));
  BOOST_TEST_REQUIRE(decoded.is_ok());
  const kv::txn_request& t = decoded.value();
  BOOST_TEST_REQUIRE(t.success.size() == 2u);
  BOOST_TEST_REQUIRE((t.success[1].type == kv::request_op::kind::txn));
  const kv::txn_request& m = t.success[1].txn;
  BOOST_TEST_REQUIRE((m.success.size() == 1u && m.success[0].type == kv::request_op::kind::txn));
  const kv::txn_request& i = m.success[0].txn;
  BOOST_TEST_REQUIRE((i.compares.size() == 1u && i.failure.size() == 1u));
  BOOST_TEST(i.compares[0].value == "v");
  BOOST_TEST(i.failure[0].put.key == "p");

  // The response: the nested txn's branch and responses, without a header of its own.
  kv::txn_result result;
  result.succeeded = true;
  kv::response_op put_done;
  put_done.type = kv::request_op::kind::put;
  put_done.put.revision = 7;
  kv::response_op nested;
  nested.type = kv::request_op::kind::txn;
  nested.txn.succeeded = false;
  nested.txn.responses = {put_done};
  result.responses = {put_done, nested};
  native::response_header header;
  header.revision = 7;
  native::encode_txn_response(b, header, result);
  payload = through_a_frame(b, wire::frame_type::txn_response, bytes, decoder);
  native::txn_response answer;
  BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::txn_response, payload, answer).is_ok());
  BOOST_TEST_REQUIRE(answer.responses.size() == 2u);
  BOOST_TEST_REQUIRE((answer.responses[1].type == kv::request_op::kind::txn));
  BOOST_TEST(!answer.responses[1].txn.succeeded);
  BOOST_TEST_REQUIRE(answer.responses[1].txn.responses.size() == 1u);
  BOOST_TEST(answer.responses[1].txn.responses[0].put.revision == 7);
}

// Found by fuzz_native: the Verifier accepts a union whose type is set and whose table is
// absent, and the decoders read that table through a null pointer (a txn from any client
// crashed the server). A request op without its table is refused like NONE; a response op
// without its table is skipped like NONE.
BOOST_AUTO_TEST_CASE(an_op_type_without_its_table_is_not_read) {
  flatbuffers::FlatBufferBuilder b;
  std::string bytes;
  wire::frame_decoder decoder;

  std::vector<flatbuffers::Offset<wire::RequestOp>> request_ops{
      wire::CreateRequestOp(b, wire::RequestOpBody::PutRequest, 0)};
  auto success = b.CreateVector(request_ops);
  b.Finish(wire::CreateTxnRequest(b, 0, success, 0));
  auto payload = through_a_frame(b, wire::frame_type::txn_request, bytes, decoder);
  auto decoded = native::decode(root<wire::TxnRequest>(payload));
  BOOST_TEST_REQUIRE(!decoded.is_ok());
  BOOST_TEST((decoded.error().code() == errc::invalid_argument));
  BOOST_TEST(decoded.error().message() == "etcdserver: txn operation without a request");

  b.Clear();
  std::vector<flatbuffers::Offset<wire::ResponseOp>> response_ops{
      wire::CreateResponseOp(b, wire::ResponseOpBody::RangeResponse, 0)};
  auto responses = b.CreateVector(response_ops);
  b.Finish(wire::CreateTxnResponse(b, 0, true, responses));
  payload = through_a_frame(b, wire::frame_type::txn_response, bytes, decoder);
  native::txn_response got;
  BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::txn_response, payload, got).is_ok());
  BOOST_TEST(got.succeeded);
  BOOST_TEST(got.responses.empty());
}

BOOST_AUTO_TEST_CASE(responses_decode_to_what_was_encoded) {
  flatbuffers::FlatBufferBuilder b;
  std::string bytes;
  wire::frame_decoder decoder;
  native::response_header header{11, 22, 33, 1};

  kv::range_result range;
  range.kvs = {kv_of("a", "1", 5), kv_of("b", "", 6)};
  range.more = true;
  range.count = 3;
  native::encode_range_response(b, header, range);
  native::range_response got_range;
  auto payload = through_a_frame(b, wire::frame_type::range_response, bytes, decoder);
  BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::range_response, payload, got_range).is_ok());
  BOOST_TEST((got_range.header == header));
  BOOST_TEST((got_range.kvs == range.kvs));
  BOOST_TEST(got_range.more);
  BOOST_TEST(got_range.count == 3);

  // The wrong answer type is an error, not a misread.
  native::put_response wrong;
  BOOST_TEST(!native::decode_payload(wire::frame_type::range_response, payload, wrong).is_ok());

  kv::txn_result txn;
  txn.succeeded = true;
  kv::response_op op_put;
  op_put.type = kv::request_op::kind::put;
  op_put.put.revision = 33;
  op_put.put.prev_kv = kv_of("p", "old", 2);
  kv::response_op op_del;
  op_del.type = kv::request_op::kind::delete_range;
  op_del.delete_range.revision = 33;
  op_del.delete_range.deleted = 2;
  txn.responses = {op_put, op_del};
  native::encode_txn_response(b, header, txn);
  native::txn_response got_txn;
  payload = through_a_frame(b, wire::frame_type::txn_response, bytes, decoder);
  BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::txn_response, payload, got_txn).is_ok());
  BOOST_TEST(got_txn.succeeded);
  BOOST_TEST_REQUIRE(got_txn.responses.size() == 2u);
  BOOST_TEST(got_txn.responses[0].put.revision == 33);
  BOOST_TEST((got_txn.responses[0].put.prev_kv == op_put.put.prev_kv));
  BOOST_TEST(got_txn.responses[1].delete_range.deleted == 2);

  std::vector<std::string> keys{"k1", "k2"};
  native::encode_lease_time_to_live_response(b, header, 0x77, 9, 10, keys);
  native::lease_time_to_live_response got_ttl;
  payload = through_a_frame(b, wire::frame_type::lease_time_to_live_response, bytes, decoder);
  BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::lease_time_to_live_response, payload, got_ttl).is_ok());
  BOOST_TEST((got_ttl.id == 0x77 && got_ttl.ttl == 9 && got_ttl.granted_ttl == 10));
  BOOST_TEST((got_ttl.keys == keys));

  std::vector<std::int64_t> ids{1, 2, 3};
  native::encode_lease_leases_response(b, header, ids);
  native::lease_leases_response got_leases;
  payload = through_a_frame(b, wire::frame_type::lease_leases_response, bytes, decoder);
  BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::lease_leases_response, payload, got_leases).is_ok());
  BOOST_TEST((got_leases.ids == ids));

  kv::event put_event{kv::event_type::put, kv_of("w", "new", 8), kv_of("w", "old", 7)};
  kv::event delete_event{kv::event_type::remove, kv::key_value{"w", 0, 9, 0, "", 0}, std::nullopt};
  std::vector<const kv::event*> events{&put_event, &delete_event};
  native::watch_status state;
  state.watch_id = 3;
  for (bool prev_kv : {false, true}) {
    native::encode_watch_response(b, header, state, events, prev_kv);
    native::watch_response got_watch;
    payload = through_a_frame(b, wire::frame_type::watch_response, bytes, decoder);
    BOOST_TEST_REQUIRE(native::decode_payload(wire::frame_type::watch_response, payload, got_watch).is_ok());
    BOOST_TEST(got_watch.watch_id == 3);
    BOOST_TEST_REQUIRE(got_watch.events.size() == 2u);
    BOOST_TEST((got_watch.events[0].kv == put_event.kv));
    BOOST_TEST(got_watch.events[0].prev_kv.has_value() == prev_kv);
    BOOST_TEST((got_watch.events[1].type == kv::event_type::remove));
    BOOST_TEST(!got_watch.is_progress_notify());
  }
}

BOOST_AUTO_TEST_CASE(errors_carry_the_grpc_code_and_a_cut_message) {
  flatbuffers::FlatBufferBuilder b;
  native::encode_error(b, errc::not_found, 11, "etcdserver: mvcc: required revision has been compacted");
  auto e = native::decode(*flatbuffers::GetRoot<wire::Error>(b.GetBufferPointer()));
  BOOST_TEST(e.code == static_cast<std::uint16_t>(errc::not_found));
  BOOST_TEST(e.grpc_code == 11);
  BOOST_TEST(e.message == "etcdserver: mvcc: required revision has been compacted");

  std::string long_message(wire::error_message_bytes_max - 1, 'x');
  long_message += "é";  // two bytes across the limit: cut before it, not inside
  native::encode_error(b, errc::invalid_argument, 3, long_message);
  auto cut = native::decode(*flatbuffers::GetRoot<wire::Error>(b.GetBufferPointer()));
  BOOST_TEST(cut.message.size() == wire::error_message_bytes_max - 1);
}
