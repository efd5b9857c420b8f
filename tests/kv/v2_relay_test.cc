// The encodings of a v2 write relayed from a follower to the leader (v2.h, "relaying
// writes"): every field of a write survives, malformed bytes from the peer port are refused
// (never read past their end), and the answer carries the status, index and body the
// follower's client must get.
#define BOOST_TEST_MODULE kv_v2_relay
#include <boost/test/unit_test.hpp>

#include <random>
#include <string>

#include "v2.h"

using namespace keel::kv_module::v2;

namespace {

key_request sample() {
  key_request r;
  r.method = "PUT";
  r.path = "/dir/k\xc3\xa9y";
  r.value = std::string("v\0al", 4);
  r.prev_value = "old";
  r.prev_index = 0x1122334455667788ull;
  r.prev_exist = false;
  r.ttl = 30;
  r.refresh = true;
  r.no_value_on_success = true;
  return r;
}

void check_same(const key_request& a, const key_request& b) {
  BOOST_TEST(a.method == b.method);
  BOOST_TEST(a.path == b.path);
  BOOST_TEST(a.value == b.value);
  BOOST_TEST(a.dir == b.dir);
  BOOST_TEST(a.prev_value == b.prev_value);
  BOOST_TEST(a.prev_index == b.prev_index);
  BOOST_TEST(a.prev_exist.has_value() == b.prev_exist.has_value());
  if (a.prev_exist && b.prev_exist) BOOST_TEST(*a.prev_exist == *b.prev_exist);
  BOOST_TEST(a.ttl.has_value() == b.ttl.has_value());
  if (a.ttl && b.ttl) BOOST_TEST(*a.ttl == *b.ttl);
  BOOST_TEST(a.refresh == b.refresh);
  BOOST_TEST(a.recursive == b.recursive);
  BOOST_TEST(a.no_value_on_success == b.no_value_on_success);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_field_of_every_write_survives) {
  key_request put = sample();
  key_request post;
  post.method = "POST";
  post.path = "/queue";
  post.value = "job";
  post.prev_exist = true;
  key_request del;
  del.method = "DELETE";
  del.path = "/dir";
  del.dir = true;
  del.recursive = true;
  key_request ttl_zero;  // "ttl=" given and empty is no TTL; ttl=0 is a TTL of 0
  ttl_zero.method = "PUT";
  ttl_zero.path = "/";
  ttl_zero.ttl = 0;
  for (const key_request& r : {put, post, del, ttl_zero}) {
    auto bytes = encode_relayed_request(r);
    BOOST_REQUIRE(bytes.has_value());
    BOOST_TEST(static_cast<std::uint8_t>((*bytes)[0]) == relayed_request_kind);
    auto back = decode_relayed_request(*bytes);
    BOOST_REQUIRE_MESSAGE(back.has_value(), r.method << " " << r.path);
    check_same(r, *back);
  }
}

BOOST_AUTO_TEST_CASE(reads_are_not_relayed) {
  key_request get;
  get.method = "GET";
  get.path = "/k";
  BOOST_TEST(!encode_relayed_request(get).has_value());
}

BOOST_AUTO_TEST_CASE(malformed_requests_are_refused) {
  std::string good = *encode_relayed_request(sample());
  // Every truncation, and one byte too many.
  for (std::size_t cut = 0; cut < good.size(); ++cut)
    BOOST_TEST(!decode_relayed_request(good.substr(0, cut)).has_value(), "cut at " << cut);
  BOOST_TEST(!decode_relayed_request(good + "x").has_value());
  std::string wrong_kind = good;
  wrong_kind[0] = 0x7e;
  BOOST_TEST(!decode_relayed_request(wrong_kind).has_value());
  std::string bad_method = good;
  bad_method[1] = 9;
  BOOST_TEST(!decode_relayed_request(bad_method).has_value());
  std::string unknown_flag = good;
  unknown_flag[3] = static_cast<char>(0x80);
  BOOST_TEST(!decode_relayed_request(unknown_flag).has_value());
  key_request relative = sample();
  relative.path = "dir/k";
  BOOST_TEST(!decode_relayed_request(*encode_relayed_request(relative)).has_value());
  // A path length far past the end.
  std::string huge = good;
  std::size_t path_len_at = 1 + 1 + 2 + 8 + 8;
  huge[path_len_at + 3] = static_cast<char>(0x7f);
  BOOST_TEST(!decode_relayed_request(huge).has_value());
  // Random bytes never decode to something that reads out of bounds (ASan checks).
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string noise = good;
    noise[rng() % noise.size()] = static_cast<char>(rng());
    noise.resize(rng() % (noise.size() + 1));
    (void)decode_relayed_request(noise);
  }
}

BOOST_AUTO_TEST_CASE(answers_carry_status_index_and_body) {
  outcome created;
  created.index = 42;
  created.result.what = action::create;
  node n;
  n.key = "/k";
  n.value = "v";
  n.modified_index = n.created_index = 42;
  created.result.current = n;
  auto a = decode_relayed_answer(encode_relayed_answer(created, false));
  BOOST_REQUIRE(a.has_value());
  BOOST_TEST(a->http_status == 201);
  BOOST_TEST(a->index == 42);
  BOOST_TEST(a->body == event_json(created.result));
  auto quiet = decode_relayed_answer(encode_relayed_answer(created, true));
  BOOST_REQUIRE(quiet.has_value());
  BOOST_TEST(quiet->body == event_json(created.result, true));
  BOOST_TEST(quiet->body.find("\"node\"") == std::string::npos);

  outcome failed;
  failed.failure = error{codes::test_failed, "[old != x]", 41};
  auto f = decode_relayed_answer(encode_relayed_answer(failed, false));
  BOOST_REQUIRE(f.has_value());
  BOOST_TEST(f->http_status == 412);
  BOOST_TEST(f->index == 41);
  BOOST_TEST(f->body == error_json(*failed.failure));

  BOOST_TEST(!decode_relayed_answer(std::string("\xc9", 1)).has_value());
  BOOST_TEST(!decode_relayed_answer(std::string(10, '\0')).has_value());  // status 0
}
