// modules/kv/module/src/http_head.h: the response-head parser that the v2 proxy
// (proxy.cc) reads upstream answers with. Compiled here from the module's source (the module is a dlopen'ed .so).
#define BOOST_TEST_MODULE kv_http_head
#include "http_head.h"

#include <boost/test/unit_test.hpp>
#include <string>

namespace {

using keel::kv_module::head_parse;
using keel::kv_module::parse_response_head;
using keel::kv_module::response_head;

head_parse parse(std::string_view bytes, response_head& out) {
  return parse_response_head(bytes, out);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_complete_head_with_a_length) {
  std::string bytes =
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Etcd-Index:  7 \t\r\n"
      "Content-Length: 4\r\nX-Raft-Term: 2\r\n\r\nbody";
  response_head h;
  BOOST_TEST((parse(bytes, h) == head_parse::complete));
  BOOST_TEST(h.status == 201);
  BOOST_TEST(h.http_1_1);
  BOOST_TEST(h.content_type == "application/json");
  BOOST_TEST_REQUIRE(h.headers.size() == 2u);
  BOOST_TEST(h.headers[0].first == "X-Etcd-Index");  // the name as sent, the value trimmed
  BOOST_TEST(h.headers[0].second == "7");
  BOOST_TEST(h.headers[1].first == "X-Raft-Term");
  BOOST_TEST(h.content_length.value_or(99) == 4u);
  BOOST_TEST(!h.chunked);
  BOOST_TEST(!h.connection_keep_alive.has_value());
  BOOST_TEST(bytes.substr(h.body_at) == "body");
}

BOOST_AUTO_TEST_CASE(chunked_and_connection) {
  response_head h;
  BOOST_TEST(
      (parse("HTTP/1.0 200 OK\r\nTransfer-Encoding: Chunked\r\nConnection: keep-alive\r\n\r\n",
             h) == head_parse::complete));
  BOOST_TEST(!h.http_1_1);
  BOOST_TEST(h.chunked);
  BOOST_TEST(!h.content_length.has_value());
  BOOST_TEST(h.connection_keep_alive.value_or(false));
  BOOST_TEST(h.headers.empty());  // Transfer-Encoding and Connection are read, not listed
  response_head c;
  BOOST_TEST((parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: CLOSE\r\n\r\n", c) ==
              head_parse::complete));
  BOOST_TEST(!c.connection_keep_alive.value_or(true));  // the last one counts
}

BOOST_AUTO_TEST_CASE(incomplete_until_the_blank_line) {
  response_head h;
  BOOST_TEST((parse("", h) == head_parse::incomplete));
  BOOST_TEST((parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", h) == head_parse::incomplete));
  BOOST_TEST((parse(std::string(64 * 1024, 'x'), h) == head_parse::incomplete));
  BOOST_TEST((parse(std::string(64 * 1024 + 1, 'x'), h) == head_parse::malformed));
}

BOOST_AUTO_TEST_CASE(malformed_heads) {
  for (const char* bytes :
       {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"}) {
    response_head h;
    BOOST_TEST((parse(bytes, h) == head_parse::malformed), bytes);
  }
}

BOOST_AUTO_TEST_CASE(interim_answers_parse_alone) {
  std::string bytes = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
  response_head first;
  BOOST_TEST((parse(bytes, first) == head_parse::complete));
  BOOST_TEST(first.status == 100);
  response_head second;
  BOOST_TEST(
      (parse(std::string_view(bytes).substr(first.body_at), second) == head_parse::complete));
  BOOST_TEST(second.status == 204);
}
