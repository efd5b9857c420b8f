// The message bus: request/response and streams, on one shard and across shards, with
// buffers that move (their bytes are never copied: the test checks the address).
#define BOOST_TEST_MODULE bus
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstring>
#include <string>

#include "keel/limits.h"
#include "keel/reactor/bus.h"
#include "keel/reactor/io.h"
#include "keel/reactor/shard.h"
#include "run_system.h"

using keel::task;

namespace {

keel::buffer text_buffer(std::string_view text) { return keel::buffer::copy_of(text.data(), text.size()); }
std::string text_of(const keel::buffer& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::atomic<const std::uint8_t*> g_seen_address{nullptr};
std::atomic<bool> g_quiet_writer_stopped{false};


keel::bus make_bus() {
  keel::bus bus;
  bus.handle("upper", 7, [](keel::message request) -> task<keel::result<keel::message>> {
    g_seen_address = request.payload.data();
    std::string text = text_of(request.payload);
    for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    text += "@" + std::to_string(keel::shard::current()->id());
    co_await keel::sleep_for(std::chrono::microseconds(100));  // a real suspension
    keel::message answer;
    answer.type = 8;
    answer.payload = text_buffer(text);
    co_return answer;
  });
  bus.handle_stream("counter", 9, [](keel::message request, keel::stream_writer out) -> task<void> {
    int count = std::stoi(text_of(request.payload));
    for (int i = 0; i < count; ++i) {
      out.send(10, text_buffer(std::to_string(i) + "@" + std::to_string(keel::shard::current()->id())),
               i + 1 == count);
      if (i % 100 == 0) co_await keel::sleep_for(std::chrono::microseconds(10));
    }
  });
  bus.handle_stream("flood", 11, [](keel::message, keel::stream_writer out) -> task<void> {
    // Never waits for the reader: the reader's bound must end the stream.
    for (int i = 0; i < 100000 && out.send(12, text_buffer("x")); ++i) {
    }
    co_return;
  });
  bus.handle_stream("quiet", 13, [](keel::message, keel::stream_writer out) -> task<void> {
    // One message, then nothing: like a watch with no events, it polls open().
    out.send(14, text_buffer("hello"));
    while (out.open()) co_await keel::sleep_for(std::chrono::milliseconds(1));
    g_quiet_writer_stopped = true;
  });
  return bus;
}

}  // namespace

BOOST_AUTO_TEST_CASE(request_on_same_shard_gets_response) {
  keel::bus bus = make_bus();
  std::string got;
  run_system(1, [&](keel::system&) -> task<void> {
    auto answer = co_await bus.request("upper", 7, text_buffer("hello"), 0);
    BOOST_REQUIRE(answer.is_ok());
    got = text_of(answer.value().payload);
  });
  BOOST_TEST(got == "HELLO@0");
}

BOOST_AUTO_TEST_CASE(request_across_shards_moves_the_buffer_without_copy) {
  keel::bus bus = make_bus();
  std::string got;
  const std::uint8_t* sent_address = nullptr;
  run_system(2, [&](keel::system&) -> task<void> {
    for (int i = 0; i < 200; ++i) {
      keel::buffer payload = text_buffer("abc" + std::to_string(i));
      sent_address = payload.data();
      auto answer = co_await bus.request("upper", 7, std::move(payload), 1);
      BOOST_REQUIRE(answer.is_ok());
      BOOST_REQUIRE(g_seen_address.load() == sent_address);
      got = text_of(answer.value().payload);
    }
  });
  BOOST_TEST(got == "ABC199@1");
}

BOOST_AUTO_TEST_CASE(request_to_unknown_module_or_type_is_not_found) {
  keel::bus bus = make_bus();
  keel::status by_name, by_type;
  run_system(1, [&](keel::system&) -> task<void> {
    by_name = (co_await bus.request("nosuch", 7, {}, 0)).error();
    by_type = (co_await bus.request("upper", 99, {}, 0)).error();
  });
  BOOST_TEST((by_name.code() == keel::errc::not_found));
  BOOST_TEST(by_name.message().find("nosuch") != std::string::npos);
  BOOST_TEST((by_type.code() == keel::errc::not_found));
  BOOST_TEST(by_type.message().find("99") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(stream_across_shards_arrives_in_order_and_ends) {
  keel::bus bus = make_bus();
  std::vector<std::string> items;
  bool ended = false;
  run_system(2, [&](keel::system&) -> task<void> {
    std::uint16_t id;
    BOOST_REQUIRE(bus.find_module("counter", id));
    auto reader = bus.open_stream(id, 9, text_buffer("1000"), 1);
    BOOST_REQUIRE(reader.is_ok());
    for (;;) {
      auto item = co_await reader.value().next();
      BOOST_REQUIRE(item.is_ok());
      items.push_back(text_of(item.value().payload));
      if (item.value().flags & keel::message_flags::end_of_stream) {
        ended = true;
        break;
      }
    }
  });
  BOOST_TEST(ended);
  BOOST_REQUIRE(items.size() == 1000u);
  for (int i = 0; i < 1000; ++i) BOOST_REQUIRE(items[i] == std::to_string(i) + "@1");
}

BOOST_AUTO_TEST_CASE(stream_that_outruns_its_reader_is_ended_not_buffered) {
  keel::bus bus = make_bus();
  keel::status ending;
  std::size_t received = 0;
  run_system(1, [&](keel::system&) -> task<void> {
    std::uint16_t id;
    BOOST_REQUIRE(bus.find_module("flood", id));
    auto reader = bus.open_stream(id, 11, {}, 0);
    BOOST_REQUIRE(reader.is_ok());
    co_await keel::sleep_for(std::chrono::milliseconds(20));  // let the writer run ahead
    for (;;) {
      auto item = co_await reader.value().next();
      if (!item) {
        ending = item.error();
        break;
      }
      ++received;
    }
  });
  BOOST_TEST(received <= keel::limits::bus_stream_items_max);
  BOOST_TEST((ending.code() == keel::errc::too_large));
}

BOOST_AUTO_TEST_CASE(cancel_wakes_the_reader_and_closes_the_writer) {
  keel::bus bus = make_bus();
  keel::status ending;
  bool writer_stopped = false;
  run_system(2, [&](keel::system&) -> task<void> {
    std::uint16_t id;
    BOOST_REQUIRE(bus.find_module("quiet", id));
    auto reader = bus.open_stream(id, 13, {}, 1);
    BOOST_REQUIRE(reader.is_ok());
    auto first = co_await reader.value().next();
    BOOST_REQUIRE(first.is_ok());
    // The reader waits for a message that will never come; its owner goes away meanwhile
    // (keeld: the connection closed) and cancels it.
    keel::stream_reader* waiting = &reader.value();
    keel::spawn([](keel::stream_reader* r) -> task<void> {
      co_await keel::sleep_for(std::chrono::milliseconds(5));
      r->cancel();
    }(waiting));
    auto item = co_await reader.value().next();
    BOOST_REQUIRE(!item.is_ok());
    ending = item.error();
    for (int i = 0; i < 1000 && !g_quiet_writer_stopped; ++i) co_await keel::sleep_for(std::chrono::milliseconds(1));
    writer_stopped = g_quiet_writer_stopped;
  });
  BOOST_TEST((ending.code() == keel::errc::cancelled));
  BOOST_TEST(writer_stopped);
}
