// Raft messages as peer-port frames (keel/raft/wire.h): every field survives a round trip,
// and what a peer must not be able to do (another cluster, garbage, a forged term, a
// message for someone else) is refused before Raft sees it.
#define BOOST_TEST_MODULE raft_wire
#include <boost/test/unit_test.hpp>

#include <random>

#include "keel/raft/wire.h"

using namespace keel::raft;

namespace {

constexpr std::uint64_t cluster = 0x1234abcd;

const std::uint8_t* bytes(const std::string& s) { return reinterpret_cast<const std::uint8_t*>(s.data()); }

std::string random_bytes(std::mt19937_64& rng, std::size_t max) {
  std::string s(rng() % (max + 1), '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A valid message of `type` from 2 to 1 with random contents.
message random_message(std::mt19937_64& rng, message_type type) {
  message m;
  m.type = type;
  m.from = 2;
  m.to = 1;
  m.term = 5 + rng() % 100;
  m.log_term = rng() % (m.term + 1);
  m.index = rng() % 1000;
  m.commit = rng() % 1000;
  m.reject = rng() % 2;
  m.reject_hint = rng() % 1000;
  m.context = random_bytes(rng, 20);
  if (type == message_type::append) {
    std::size_t n = rng() % 5;
    for (std::size_t i = 0; i < n; ++i) {
      entry e;
      e.index = m.index + 1 + i;
      e.term = rng() % (m.term + 1);
      e.type = rng() % 3 == 0 ? entry_type::conf_change : entry_type::normal;
      e.data = random_bytes(rng, 64);
      m.entries.push_back(std::move(e));
    }
  }
  if (type == message_type::snapshot) {
    m.snapshot.metadata.index = 1 + rng() % 1000;
    m.snapshot.metadata.term = 1 + rng() % m.term;
    m.snapshot.metadata.conf.voters = {1, 2, 3};
    m.snapshot.metadata.conf.learners = {4};
    m.snapshot.data = random_bytes(rng, 200);
  }
  return m;
}


}  // namespace

BOOST_AUTO_TEST_CASE(every_type_round_trips_with_every_field) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    for (int t = 0; t < message_type_count; ++t) {
      message m = random_message(rng, static_cast<message_type>(t));
      std::string wire = encode_raft_message(m, cluster);
      auto back = decode_raft_message(bytes(wire), wire.size(), cluster, 1);
      if (!back.is_ok()) BOOST_FAIL(back.error().to_string());
      BOOST_TEST((back.value() == m), describe(m));
    }
  }
}

BOOST_AUTO_TEST_CASE(another_cluster_is_refused) {
  std::mt19937_64 rng(1);
  message m = random_message(rng, message_type::heartbeat);
  std::string wire = encode_raft_message(m, cluster + 1);
  auto back = decode_raft_message(bytes(wire), wire.size(), cluster, 1);
  BOOST_REQUIRE(!back.is_ok());
  BOOST_TEST(back.error().message().find("from cluster") != std::string::npos, back.error().message());
}

BOOST_AUTO_TEST_CASE(garbage_and_truncations_never_reach_raft) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 2000; ++i) {
    std::string junk = random_bytes(rng, 300);
    auto back = decode_raft_message(bytes(junk), junk.size(), cluster, 1);
    if (back.is_ok()) {
      // A random buffer that happens to verify must still pass every semantic check.
      BOOST_TEST(back.value().to == 1u);
      BOOST_TEST(back.value().from != 0u);
    }
  }
  message m = random_message(rng, message_type::append);
  std::string wire = encode_raft_message(m, cluster);
  for (std::size_t cut = 0; cut < wire.size(); ++cut) {
    // A cut that removes only trailing alignment padding still verifies, and must then
    // give the very same message; any other cut is refused. (The frame around it has its
    // own length and CRC-32C, docs/formats/frame.md.)
    auto back = decode_raft_message(bytes(wire), cut, cluster, 1);
    BOOST_TEST((!back.is_ok() || back.value() == m), "truncated at " << cut << " of " << wire.size());
  }
}

BOOST_AUTO_TEST_CASE(forged_and_misaddressed_messages_are_refused) {
  std::mt19937_64 rng(5);
  auto refused = [](const message& m, std::uint64_t self, const std::string& needle) {
    std::string wire = encode_raft_message(m, cluster);
    auto back = decode_raft_message(bytes(wire), wire.size(), cluster, self);
    BOOST_REQUIRE_MESSAGE(!back.is_ok(), "not refused: " << describe(m));
    BOOST_TEST(back.error().message().find(needle) != std::string::npos, back.error().message());
  };
  message m = random_message(rng, message_type::append);
  refused(m, 3, "addressed to 1");
  message zero = m;
  zero.from = 0;
  refused(zero, 1, "from node 0");
  message self_sent = m;
  self_sent.from = 1;
  refused(self_sent, 1, "from and to");
  message forged = random_message(rng, message_type::append);
  forged.entries.push_back(entry{forged.term + 1, forged.index + forged.entries.size() + 1, entry_type::normal, "x"});
  refused(forged, 1, "an entry of term");
  message gap = random_message(rng, message_type::append);
  gap.entries.push_back(entry{1, gap.index + gap.entries.size() + 2, entry_type::normal, "x"});
  refused(gap, 1, "not consecutive");
  message high_log_term = random_message(rng, message_type::vote);
  high_log_term.log_term = high_log_term.term + 1;
  refused(high_log_term, 1, "log_term");
  message snap_on_vote = random_message(rng, message_type::snapshot);
  snap_on_vote.type = message_type::vote;
  refused(snap_on_vote, 1, "a snapshot on a");
  message empty_snapshot = random_message(rng, message_type::snapshot);
  empty_snapshot.snapshot = {};
  refused(empty_snapshot, 1, "without a snapshot");
}

// The leader's answer to a forwarded request (frame 202): every field, the relayed v2
// answer included (binary, with NULs), survives; one written without an answer (as before
// the field existed) reads back with none; another cluster's is refused.
BOOST_AUTO_TEST_CASE(proposal_results_round_trip) {
  proposal_result r;
  r.index = 77;
  r.term = 3;
  r.answer = std::string("\x00\xc9\x00{\"action\":\"set\"}\n", 20);
  std::string wire = encode_proposal_result(r, cluster);
  auto back = decode_proposal_result(bytes(wire), wire.size(), cluster);
  BOOST_REQUIRE(back.is_ok());
  BOOST_TEST(back->index == 77u);
  BOOST_TEST(back->term == 3u);
  BOOST_TEST(back->answer == r.answer);
  BOOST_TEST(back->code == 0);

  proposal_result refused;
  refused.code = 14;
  refused.message = "etcdserver: not leader";
  refused.ttl = 9;
  wire = encode_proposal_result(refused, cluster);
  back = decode_proposal_result(bytes(wire), wire.size(), cluster);
  BOOST_REQUIRE(back.is_ok());
  BOOST_TEST(back->code == 14);
  BOOST_TEST(back->message == refused.message);
  BOOST_TEST(back->ttl == 9);
  BOOST_TEST(back->answer.empty());

  auto other = decode_proposal_result(bytes(wire), wire.size(), cluster + 1);
  BOOST_TEST(!other.is_ok());
}
