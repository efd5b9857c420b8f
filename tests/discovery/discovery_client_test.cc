// keel_discovery_client without a discovery service: URL rules, etcd's member value, the
// back-off schedule, and retries against a port nobody listens on. The protocol itself is
// pinned end to end by discovery_e2e_test.py (against keel's service and a real etcd).
#define BOOST_TEST_MODULE discovery_client
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>

#include "authority.h"  // the library's private header (tests include its src/)
#include "keel/discovery/client.h"

using namespace keel;
using namespace std::chrono;

namespace {

discovery::discovery_request request_for(std::string url) {
  discovery::discovery_request r;
  r.url = std::move(url);
  r.name = "n1";
  r.peer_urls = {"http://127.0.0.1:2380"};
  r.member_id = "8e9e05c52164694d";
  r.retry.base = milliseconds(50);
  r.request_timeout = milliseconds(500);
  return r;
}

// A loopback port with nothing listening (bound, then closed).
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace

BOOST_AUTO_TEST_CASE(refuses_https_with_a_clear_error) {
  auto got = discovery::discover_initial_cluster(request_for("https://discovery.etcd.io/abc"));
  BOOST_REQUIRE(!got);
  BOOST_TEST(static_cast<int>(got.error().code()) == static_cast<int>(errc::unsupported));
  BOOST_TEST(got.error().message().find("https") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(refuses_urls_without_host_or_token) {
  for (const char* url : {"ftp://x/y", "http:///token", "http://127.0.0.1:2379", "http://127.0.0.1:2379/", "http://h:p/t"}) {
    auto got = discovery::discover_initial_cluster(request_for(url));
    BOOST_REQUIRE_MESSAGE(!got, url);
    BOOST_TEST(static_cast<int>(got.error().code()) == static_cast<int>(errc::invalid_argument), url);
  }
}

BOOST_AUTO_TEST_CASE(member_value_is_etcds_sorted_urls_map) {
  std::vector<std::string> urls = {"http://10.0.0.2:2380", "http://10.0.0.1:2380"};
  BOOST_TEST(discovery::member_config("infra0", urls) == "infra0=http://10.0.0.1:2380,infra0=http://10.0.0.2:2380");
}

// The discovery URL (port 80 by default) and srv.cc's advertised peer URLs (a port
// required) both split a URL's authority here.
BOOST_AUTO_TEST_CASE(authority_splits_into_host_and_port) {
  auto plain = discovery::split_authority("example.com:2379");
  BOOST_TEST_REQUIRE(plain.has_value());
  BOOST_TEST(plain->host == "example.com");
  BOOST_TEST(plain->port.value_or("none") == "2379");
  auto no_port = discovery::split_authority("example.com");
  BOOST_TEST(no_port->host == "example.com");
  BOOST_TEST(!no_port->port.has_value());
  BOOST_TEST(discovery::split_authority("example.com:")->port.value_or("none").empty());
  auto v6 = discovery::split_authority("[::1]:2380");
  BOOST_TEST(v6->host == "::1");
  BOOST_TEST(v6->port.value_or("none") == "2380");
  BOOST_TEST(!discovery::split_authority("[::1]")->port.has_value());
  BOOST_TEST(!discovery::split_authority("[::1]x:1")->port.has_value());  // only "]:" names a port
  BOOST_TEST(!discovery::split_authority("[::1:2380").has_value());
}

// A /members body as get_cluster_from_peers and the kv module's proxy both read it.
BOOST_AUTO_TEST_CASE(members_body_is_read_leniently) {
  auto body = discovery::parse_members(
      R"([{"id":10,"name":"a","peerURLs":["http://p1"],"clientURLs":["http://c1"]},)"
      R"({"peerURLs":["http://p2"],"clientURLs":[],"isLearner":true}, 7])");
  BOOST_TEST_REQUIRE(body.has_value());
  BOOST_TEST(body->entries == 3u);
  BOOST_TEST(!body->all_have_ids);  // the second has no id, the third is no member
  BOOST_TEST_REQUIRE(body->members.size() == 2u);
  BOOST_TEST(body->members[0].id == 10u);
  BOOST_TEST(body->members[0].name == "a");
  BOOST_TEST(body->members[0].client_urls == std::vector<std::string>{"http://c1"});
  BOOST_TEST(body->members[1].id == 0u);
  BOOST_TEST(body->members[1].peer_urls == std::vector<std::string>{"http://p2"});
  BOOST_TEST(body->members[1].learner);
  BOOST_TEST(discovery::parse_members("[]")->entries == 0u);
  BOOST_TEST(discovery::parse_members(R"([{"id":1}])")->all_have_ids);
  BOOST_TEST(!discovery::parse_members(R"({"members":[]})").has_value());
  BOOST_TEST(!discovery::parse_members("[").has_value());
}

BOOST_AUTO_TEST_CASE(backoff_doubles_up_to_the_cap) {
  discovery::retry_policy etcd;  // etcd: 2^min(retries, 8) seconds
  BOOST_TEST(discovery::backoff_for(etcd, 1).count() == 2000);
  BOOST_TEST(discovery::backoff_for(etcd, 8).count() == 256000);
  BOOST_TEST(discovery::backoff_for(etcd, 100).count() == 256000);
  discovery::retry_policy fast{milliseconds(50), 3, 10};
  BOOST_TEST(discovery::backoff_for(fast, 2).count() == 200);
  BOOST_TEST(discovery::backoff_for(fast, 9).count() == 400);
}

BOOST_AUTO_TEST_CASE(unreachable_service_is_retried_then_gives_up) {
  auto request = request_for("http://127.0.0.1:" + std::to_string(closed_port()) + "/discovery/abc");
  request.retry.retries_max = 3;  // waits 100 + 200 + 400 ms
  auto started = steady_clock::now();
  auto got = discovery::discover_initial_cluster(request);
  auto took = duration_cast<milliseconds>(steady_clock::now() - started).count();
  BOOST_REQUIRE(!got);
  BOOST_TEST(static_cast<int>(got.error().code()) == static_cast<int>(errc::unavailable));
  BOOST_TEST(got.error().message() == "discovery: too many retries");
  BOOST_TEST(took >= 700);
  BOOST_TEST(took < 5000);
}
