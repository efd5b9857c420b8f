// v2_json_test.cc — append_go_string against Go's encoding/json escapes, with every byte
// that needs care at every offset within and across the 8-byte words its fast path reads.
#define BOOST_TEST_MODULE v2_json
#include <boost/test/unit_test.hpp>

#include <string>
#include <utility>
#include <vector>

#include "v2.h"

using keel::kv_module::v2::append_go_string;

namespace {

std::string quoted(std::string_view text) {
  std::string out;
  append_go_string(out, text);
  return out;
}

// What Go's encoder writes for each piece (encoding/json with HTML escaping, as etcd).
const std::vector<std::pair<std::string, std::string>> pieces = {
    {std::string(1, '\0'), "\\u0000"},
    {"\x1f", "\\u001f"},
    {"\n", "\\n"},
    {"\t", "\\t"},
    {"\r", "\\r"},
    {"\\", "\\\\"},
    {"\"", "\\\""},
    {"<", "\\u003c"},
    {">", "\\u003e"},
    {"&", "\\u0026"},
    {"\x7f", "\x7f"},                   // DEL is copied
    {"\x80", "\\ufffd"},                // a lone continuation byte
    {"\xff", "\\ufffd"},                // never valid in UTF-8
    {"\xc3\xa9", "\xc3\xa9"},           // é is copied
    {"\xe2\x80\xa8", "\\u2028"},        // LINE SEPARATOR
    {"\xe2\x80\xa9", "\\u2029"},        // PARAGRAPH SEPARATOR
    {"\xf0\x9f\x99\x82", "\xf0\x9f\x99\x82"},  // a 4-byte rune is copied
    {"\xe2\x80", "\\ufffd\\ufffd"},     // a cut 3-byte rune: each byte replaced
};

}  // namespace

BOOST_AUTO_TEST_CASE(plain_text_is_copied_whole) {
  BOOST_TEST(quoted("") == "\"\"");
  for (std::size_t n = 1; n <= 40; ++n) {
    std::string plain(n, 'v');
    BOOST_TEST(quoted(plain) == "\"" + plain + "\"");
  }
  BOOST_TEST(quoted(" !#$%'()*+,-./09:;=?@AZ[]^_`az{|}~") == "\" !#$%'()*+,-./09:;=?@AZ[]^_`az{|}~\"");
}

BOOST_AUTO_TEST_CASE(every_escape_at_every_offset) {
  for (const auto& [piece, escaped] : pieces) {
    for (std::size_t length = 0; length <= 24; ++length) {
      for (std::size_t at = 0; at <= length; ++at) {
        std::string text = std::string(at, 'a') + piece + std::string(length - at, 'b');
        std::string want = "\"" + std::string(at, 'a') + escaped + std::string(length - at, 'b') + "\"";
        BOOST_TEST(quoted(text) == want, "piece " << escaped << " at " << at << " of " << length);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(two_escapes_in_one_word) {
  BOOST_TEST(quoted("ab<c>d&e") == "\"ab\\u003cc\\u003ed\\u0026e\"");
  BOOST_TEST(quoted("12345678\"2345678\\") == "\"12345678\\\"2345678\\\\\"");
}
