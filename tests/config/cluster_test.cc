// cluster_test.cc — keel/cluster.h: --initial-cluster parsing and etcd 3.4's member and
// cluster ids, pinned to ids a real etcd 3.4.23 (Debian's etcd-server) printed.
#define BOOST_TEST_MODULE cluster
#include "keel/cluster.h"

#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using keel::cluster_member_spec;
using keel::compute_cluster_id;
using keel::compute_member_id;
using keel::format_member_id;
using keel::parse_initial_cluster;

std::string error_of(std::string_view text) {
  auto parsed = parse_initial_cluster(text);
  BOOST_REQUIRE_MESSAGE(!parsed.is_ok(), "expected an error for " << text);
  BOOST_TEST((parsed.error().code() == keel::errc::invalid_argument));
  return parsed.error().message();
}

}  // namespace

BOOST_AUTO_TEST_CASE(parses_members_in_order_of_first_appearance_merging_urls) {
  auto parsed = parse_initial_cluster(
      "infra0=http://10.0.0.1:2380,infra1=http://10.0.0.2:2380,infra0=https://"
      "[fd00::1]:2380,infra2=http://node-2:0");
  BOOST_REQUIRE_MESSAGE(parsed.is_ok(), parsed.error().message());
  const std::vector<cluster_member_spec> expected = {
      {"infra0", {"http://10.0.0.1:2380", "https://[fd00::1]:2380"}},
      {"infra1", {"http://10.0.0.2:2380"}},
      {"infra2", {"http://node-2:0"}},
  };
  BOOST_TEST((parsed.value() == expected));
}

BOOST_AUTO_TEST_CASE(parses_etcds_default_and_skips_empty_items_as_etcd_does) {
  auto single = parse_initial_cluster("default=http://localhost:2380");
  BOOST_REQUIRE(single.is_ok());
  BOOST_TEST(
      (single.value() == std::vector<cluster_member_spec>{{"default", {"http://localhost:2380"}}}));
  auto sparse = parse_initial_cluster(",a=http://a:1,,b=http://b:2,");
  BOOST_REQUIRE_MESSAGE(sparse.is_ok(), sparse.error().message());
  BOOST_TEST(sparse.value().size() == 2u);
  auto empty = parse_initial_cluster("");
  BOOST_REQUIRE(empty.is_ok());
  BOOST_TEST(empty.value().empty());
}

BOOST_AUTO_TEST_CASE(rejects_an_empty_name_naming_the_pair) {
  BOOST_TEST(error_of("a=http://a:2380,=http://b:2380") ==
             "initial-cluster: \"=http://b:2380\": empty member name");
}

BOOST_AUTO_TEST_CASE(rejects_a_pair_without_equals) {
  BOOST_TEST(error_of("a=http://a:2380,b") ==
             "initial-cluster: \"b\": missing '=' (want name=peerURL)");
  BOOST_TEST(error_of("http://a:2380").find("missing '='") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(rejects_urls_that_are_not_http_host_port) {
  BOOST_TEST(
      error_of("a=ftp://a:2380") ==
      "initial-cluster: \"a=ftp://a:2380\": URL \"ftp://a:2380\" is not http(s)://host:port");
  for (const char* bad : {"a=", "a=http://a", "a=http://a:", "a=http://:2380", "a=http://a:2380/",
                          "a=http://a:2380/path", "a=http://a:70000", "a=http://a:123456",
                          "a=http://a:2x", "a=http://[::1:2380", "a=http://[]:2380",
                          "a=http://[zz]:2380", "a=unix://a:1", "a=http://a b:1", "a=HTTP://a:1"}) {
    BOOST_TEST(error_of(bad).find("is not http(s)://host:port") != std::string::npos, bad);
  }
}

BOOST_AUTO_TEST_CASE(rejects_a_duplicate_url_in_one_member_or_across_members) {
  BOOST_TEST(error_of("a=http://a:2380,b=http://a:2380") ==
             "initial-cluster: \"b=http://a:2380\": duplicate URL \"http://a:2380\"");
  BOOST_TEST(error_of("a=http://a:2380,a=http://a:2380").find("duplicate URL") !=
             std::string::npos);
}

// Reference values, observed with etcd 3.4.23 and etcdctl 3.4.23 (Debian 12 etcd-server,
// etcd-client) on 127.0.0.1:
//
//   etcd --name a --data-dir /tmp/h3-etcd-1 --listen-peer-urls http://127.0.0.1:29380
//        --initial-advertise-peer-urls http://127.0.0.1:29380
//        --listen-client-urls http://127.0.0.1:29379 --advertise-client-urls http://127.0.0.1:29379
//        --initial-cluster a=http://127.0.0.1:29380 --initial-cluster-token tok1
//   ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:29379 member list -w json
//   → {"header":{"cluster_id":3954927930480793377,"member_id":14343291829331574334,...},
//      "members":[{"ID":14343291829331574334,"name":"a","peerURLs":["http://127.0.0.1:29380"],...}]}
BOOST_AUTO_TEST_CASE(single_member_ids_match_etcd) {
  const std::uint64_t member = compute_member_id({"http://127.0.0.1:29380"}, "tok1");
  BOOST_TEST(member == 14343291829331574334ull);
  BOOST_TEST(compute_cluster_id({member}) == 3954927930480793377ull);
  BOOST_TEST(format_member_id(member) == "c70d9becbd123e3e");
}

// Three members, "a" with two peer URLs given out of sorted order, token tok3; each
// member started as
//
//   IC=a=http://localhost:29385,a=http://127.0.0.1:29380,b=http://127.0.0.1:29382,c=http://127.0.0.1:29384
//   etcd --name a --data-dir /tmp/h3-etcd-3a
//        --listen-peer-urls http://127.0.0.1:29380,http://127.0.0.1:29385
//        --initial-advertise-peer-urls http://localhost:29385,http://127.0.0.1:29380
//        --listen-client-urls http://127.0.0.1:29379 --advertise-client-urls http://127.0.0.1:29379
//        --initial-cluster $IC --initial-cluster-token tok3
//   etcd --name b ... peer http://127.0.0.1:29382, client http://127.0.0.1:29381 (same IC, token)
//   etcd --name c ... peer http://127.0.0.1:29384, client http://127.0.0.1:29383 (same IC, token)
//   ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:29379 member list -w json
//   → cluster_id 18327765881452086549; members
//     a 3493715624886503258  peerURLs ["http://127.0.0.1:29380","http://localhost:29385"]
//     b 13074133560755418750 peerURLs ["http://127.0.0.1:29382"]
//     c 702668911357437009   peerURLs ["http://127.0.0.1:29384"]
BOOST_AUTO_TEST_CASE(three_member_ids_match_etcd) {
  auto parsed = parse_initial_cluster(
      "a=http://localhost:29385,a=http://127.0.0.1:29380,b=http://127.0.0.1:29382,c=http://"
      "127.0.0.1:29384");
  BOOST_REQUIRE_MESSAGE(parsed.is_ok(), parsed.error().message());
  BOOST_REQUIRE(parsed.value().size() == 3u);
  std::vector<std::uint64_t> ids;
  for (const cluster_member_spec& member : parsed.value())
    ids.push_back(compute_member_id(member.peer_urls, "tok3"));
  BOOST_TEST(ids == (std::vector<std::uint64_t>{3493715624886503258ull, 13074133560755418750ull,
                                                702668911357437009ull}),
             boost::test_tools::per_element());
  BOOST_TEST(compute_cluster_id(ids) == 18327765881452086549ull);
  // The order of the ids given does not matter: they are sorted first.
  BOOST_TEST(compute_cluster_id({ids[2], ids[0], ids[1]}) == 18327765881452086549ull);
  // Nor does the order of a member's URLs.
  BOOST_TEST(compute_member_id({"http://127.0.0.1:29380", "http://localhost:29385"}, "tok3") ==
             ids[0]);
  // etcd prints ids with %x: no leading zeros.
  BOOST_TEST(format_member_id(ids[2]) == "9c061a6e82ba451");
  BOOST_TEST(format_member_id(18327765881452086549ull) == "fe594df6ea79c515");
}

BOOST_AUTO_TEST_CASE(the_token_changes_the_ids) {
  BOOST_TEST(compute_member_id({"http://127.0.0.1:29380"}, "tok1") !=
             compute_member_id({"http://127.0.0.1:29380"}, "tok3"));
}

// With no URLs a member id is the first 8 bytes of SHA-1(token), so the FIPS 180 SHA-1
// examples check the hash itself, across one and two blocks and a long message.
BOOST_AUTO_TEST_CASE(sha1_matches_the_fips_examples) {
  BOOST_TEST(compute_member_id({}, "abc") == 0xa9993e364706816aull);
  BOOST_TEST(compute_member_id({}, "") == 0xda39a3ee5e6b4b0dull);
  BOOST_TEST(compute_member_id({}, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
             0x84983e441c3bd26eull);
  BOOST_TEST(compute_member_id({}, std::string(1000000, 'a')) == 0x34aa973cd4c4daa4ull);
}

BOOST_AUTO_TEST_CASE(formats_ids_as_lower_case_hex_without_leading_zeros) {
  BOOST_TEST(format_member_id(0) == "0");
  BOOST_TEST(format_member_id(0xabcull) == "abc");
  BOOST_TEST(format_member_id(0xffffffffffffffffull) == "ffffffffffffffff");
}
