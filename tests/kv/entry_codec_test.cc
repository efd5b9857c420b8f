// The kv module's WAL entries (codec.h, README "WAL entry encoding"): the bytes are the
// documented format (a log written by one keeld is read by the next), kinds 3 and 8 carry
// one txn body and differ only in their lease rule, and malformed entries are refused.
#define BOOST_TEST_MODULE kv_entry_codec
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>

#include "codec.h"

using namespace keel;
using namespace keel::kv_module;

namespace {

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

kv::txn_request sample_txn() {
  kv::compare missing;
  missing.key = "k";
  missing.target = kv::compare_target::version;
  missing.result = kv::compare_result::equal;
  kv::put_request mine;
  mine.key = "k";
  mine.value = "me";
  mine.lease = 99;  // in the success branch
  kv::range_request holder;
  holder.key = "k";
  kv::txn_request t;
  t.compares.push_back(missing);
  t.success.push_back(kv::request_op::of(mine));
  t.failure.push_back(kv::request_op::of(holder));
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_put_entry_is_the_documented_bytes) {
  put_entry put{"k", "v", 7, true, false, true};
  std::string bytes = encode_put_entry(put);
  // kind 1 | flags (1 prev_kv | 4 ignore_lease) | i64 lease | u32 1 | "k" | u32 1 | "v"
  BOOST_TEST(hex(bytes) == "01" "05" "0700000000000000" "01000000" "6b" "01000000" "76");
  auto back = decode_entry(bytes);
  BOOST_REQUIRE(back.has_value());
  BOOST_TEST(back->kind == entry_kind_put);
  BOOST_TEST(back->put.key == "k");
  BOOST_TEST(back->put.value == "v");
  BOOST_TEST(back->put.lease == 7);
  BOOST_TEST(back->put.prev_kv);
  BOOST_TEST(!back->put.ignore_value);
  BOOST_TEST(back->put.ignore_lease);
}

BOOST_AUTO_TEST_CASE(txn_kinds_3_and_8_share_one_body_and_differ_in_the_lease_rule) {
  kv::txn_request t = sample_txn();
  std::string three = encode_txn_entry(t);
  std::string eight = encode_txn_entry(t, true);
  BOOST_TEST(static_cast<int>(static_cast<unsigned char>(three[0])) == 3);
  BOOST_TEST(static_cast<int>(static_cast<unsigned char>(eight[0])) == 8);
  BOOST_TEST(three.substr(1) == eight.substr(1));

  auto older = decode_entry(three);
  auto newer = decode_entry(eight);
  BOOST_REQUIRE(older.has_value());
  BOOST_REQUIRE(newer.has_value());
  BOOST_TEST(older->kind == entry_kind_txn);
  BOOST_TEST(!older->txn_leases_on_path);
  BOOST_TEST(newer->kind == entry_kind_txn);  // applied by the txn path, with etcd's rule
  BOOST_TEST(newer->txn_leases_on_path);
  BOOST_TEST(encode_txn_entry(older->txn) == three);  // the body survives whole
  BOOST_TEST(encode_txn_entry(newer->txn, true) == eight);

  // A v2 write's note may wrap either kind; the rule comes through.
  v2_note_fields note;
  note.action = 3;
  auto noted = decode_entry(encode_v2_noted_entry(note, eight));
  BOOST_REQUIRE(noted.has_value());
  BOOST_TEST(noted->kind == entry_kind_txn);
  BOOST_TEST(noted->txn_leases_on_path);
  BOOST_REQUIRE(noted->v2_note.has_value());
  BOOST_TEST(noted->v2_note->action == 3);
}

BOOST_AUTO_TEST_CASE(unknown_kinds_truncations_and_trailing_bytes_are_refused) {
  std::string eight = encode_txn_entry(sample_txn(), true);
  BOOST_TEST(!decode_entry(std::string("\x09") + eight.substr(1)).has_value());  // no kind 9 yet
  BOOST_TEST(!decode_entry(eight + "x").has_value());
  for (std::size_t length = 0; length < eight.size(); ++length)
    BOOST_TEST(!decode_entry(std::string_view(eight).substr(0, length)).has_value(), "length " << length);
}
