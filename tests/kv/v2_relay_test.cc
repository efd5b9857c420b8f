// The encodings of a v2 write relayed from a follower to the leader (v2.h, "relaying
// writes"): every field of a write survives, malformed bytes from the peer port are refused
// (never read past their end), and an outcome renders on the follower exactly as on the
// leader.
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

// Every truncation of `good` and `good` with one byte too many are refused; 20,000 random
// corruptions are decoded without reading out of bounds (ASan checks), whatever they give.
template <typename Decode>
void refuses_truncations_and_survives_noise(const std::string& good, Decode decode, std::uint64_t seed) {
  for (std::size_t cut = 0; cut < good.size(); ++cut)
    BOOST_TEST(!decode(good.substr(0, cut)).has_value(), "cut at " << cut);
  BOOST_TEST(!decode(good + "x").has_value());
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 20000; ++i) {
    std::string noise = good;
    noise[rng() % noise.size()] = static_cast<char>(rng());
    noise.resize(rng() % (noise.size() + 1));
    (void)decode(noise);
  }
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
  refuses_truncations_and_survives_noise(good, decode_relayed_request, 7);
  std::string wrong_kind = good;
  wrong_kind[0] = 0x7e;
  BOOST_TEST(!decode_relayed_request(wrong_kind).has_value());
  std::string bad_method = good;
  bad_method[1] = 9;
  BOOST_TEST(!decode_relayed_request(bad_method).has_value());
  std::string unknown_flag = good;
  unknown_flag[3] = static_cast<char>(0x80);
  BOOST_TEST(!decode_relayed_request(unknown_flag).has_value());
  for (const char* path : {"dir/k", "/a/", "/a//b", "/a/../b", ""}) {
    key_request odd = sample();
    odd.path = path;
    BOOST_TEST(!decode_relayed_request(*encode_relayed_request(odd)).has_value(), "path " << path);
  }
  // A path length far past the end.
  std::string huge = good;
  std::size_t path_len_at = 1 + 1 + 2 + 8 + 8;
  huge[path_len_at + 3] = static_cast<char>(0x7f);
  BOOST_TEST(!decode_relayed_request(huge).has_value());
}

BOOST_AUTO_TEST_CASE(outcomes_survive_and_render_the_same) {
  outcome swapped;
  swapped.index = 42;
  swapped.result.what = action::compare_and_swap;
  node now;
  now.key = "/k";
  now.value = std::string("<v\0>", 4);
  now.expiration_ns = 1'800'000'000'123'456'789;
  now.ttl = 30;
  now.modified_index = 42;
  now.created_index = 7;
  node before = now;
  before.value = "old";
  before.modified_index = 41;
  swapped.result.current = now;
  swapped.result.previous = before;
  node dir;
  dir.key = "/d";
  dir.dir = true;
  dir.nodes.push_back(now);  // no write's event lists children, but the encoding keeps them
  outcome removed;
  removed.index = 43;
  removed.result.what = action::remove;
  removed.result.current = dir;
  for (const outcome& o : {swapped, removed}) {
    auto back = decode_relayed_outcome(encode_relayed_outcome(o));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST(!back->failure.has_value());
    BOOST_TEST(back->index == o.index);
    BOOST_TEST(back->result.is_created() == o.result.is_created());
    BOOST_TEST(event_json(back->result) == event_json(o.result));
    BOOST_TEST(event_json(back->result, true) == event_json(o.result, true));
  }

  outcome failed;
  failed.failure = error{codes::test_failed, "[old != x]", 41};
  auto f = decode_relayed_outcome(encode_relayed_outcome(failed));
  BOOST_REQUIRE(f.has_value() && f->failure.has_value());
  BOOST_TEST(f->failure->code == codes::test_failed);
  BOOST_TEST(f->failure->index == 41);
  BOOST_TEST(error_json(*f->failure) == error_json(*failed.failure));
}

BOOST_AUTO_TEST_CASE(malformed_outcomes_are_refused) {
  outcome o;
  o.index = 5;
  o.result.what = action::set;
  node n;
  n.key = "/k";
  n.value = "v";
  o.result.current = n;
  std::string good = encode_relayed_outcome(o);
  refuses_truncations_and_survives_noise(good, decode_relayed_outcome, 11);
  std::string bad_action = good;
  bad_action[1] = 99;
  BOOST_TEST(!decode_relayed_outcome(bad_action).has_value());
  // A node claiming more children than bytes follow.
  std::string many = good;
  many.replace(many.size() - 4, 4, std::string("\xff\xff\xff\x7f", 4));
  BOOST_TEST(!decode_relayed_outcome(many).has_value());
  // Nodes nested deeper than the decoder allows (64 below the event's node) are refused;
  // as deep as allowed is read.
  auto nested = [](int depth) {
    node root;
    root.key = "/d";
    root.dir = true;
    node* at = &root;
    for (int i = 0; i < depth; ++i) {
      at->nodes.emplace_back();
      at = &at->nodes.back();
      at->key = "/d";
      at->dir = true;
    }
    outcome deep;
    deep.index = 1;
    deep.result.what = action::get;
    deep.result.current = root;
    return encode_relayed_outcome(deep);
  };
  BOOST_TEST(decode_relayed_outcome(nested(64)).has_value());
  BOOST_TEST(!decode_relayed_outcome(nested(65)).has_value());
}
