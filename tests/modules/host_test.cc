// The module host: loading libkeel-<name>.so files with dlopen, checking their
// descriptors, starting them in dependency order, running their shard and metrics hooks,
// and stopping them in reverse. The modules are built next to this test (see
// CMakeLists.txt) into KEEL_TEST_MODULE_DIR; they report to keel_test_event(), defined
// here and exported from this executable the way keeld exports keel's symbols.
#define BOOST_TEST_MODULE module_host
#include <boost/test/unit_test.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "keel/module.h"
#include "keel/reactor/bus.h"
#include "keel/reactor/host.h"
#include "keel/reactor/http.h"
#include "keel/reactor/shard.h"

#ifndef KEEL_TEST_MODULE_DIR
#error "KEEL_TEST_MODULE_DIR must name the directory the test modules are built into"
#endif

namespace {
std::mutex g_events_mutex;
std::vector<std::string> g_events;
}  // namespace

extern "C" __attribute__((visibility("default"), used)) void keel_test_event(const char* text) {
  std::lock_guard lock(g_events_mutex);
  g_events.emplace_back(text);
}

using keel::task;

namespace {

const std::string module_dir = KEEL_TEST_MODULE_DIR;

std::vector<std::string> events() {
  std::lock_guard lock(g_events_mutex);
  return g_events;
}
void clear_events() {
  std::lock_guard lock(g_events_mutex);
  g_events.clear();
}
std::size_t index_of(const std::vector<std::string>& list, const std::string& item) {
  return static_cast<std::size_t>(std::find(list.begin(), list.end(), item) - list.begin());
}
bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Everything a module registers into. The router and bus are declared after the host so
// they are destroyed first: the std::functions they hold point into module code, which
// must stay mapped until they are gone.
struct fixture {
  fixture() { clear_events(); }
  keel::module_host host;
  keel::http_router router;
  keel::bus bus;
  std::vector<std::string> logged;
  keel::module_services services(unsigned shards = 1) {
    return {&router, &bus, shards,
            [this](keel::log_level, std::string_view module, std::string_view text) {
              logged.push_back(std::string(module) + ": " + std::string(text));
            },
            core_config()};
  }
  static std::string core_config() {
    return R"({"name":"infra1","initial-cluster":"infra1=http://10.0.0.1:2380"})";
  }
  static std::string section(std::string_view name) {
    return "{\"module\":\"" + std::string(name) + "\",\"greeting\":\"hello\"}";
  }
};

template <typename Symbol>
Symbol module_symbol(const keel::module_host& host, const std::string& module, const char* name) {
  for (const auto& m : host.modules())
    if (m.name == module) return reinterpret_cast<Symbol>(dlsym(m.handle, name));
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_CASE(loads_a_module_and_starts_it) {
  fixture f;
  keel::status loaded = f.host.load({"good"}, {"/nonexistent/keel-modules", module_dir});
  BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
  BOOST_REQUIRE_EQUAL(f.host.modules().size(), 1u);
  const keel::loaded_module& m = f.host.modules()[0];
  BOOST_TEST(m.name == "good");
  BOOST_TEST(m.path == module_dir + "/libkeel-good.so");
  BOOST_TEST(std::string(m.descriptor->version) == "1.2.3");
  BOOST_TEST(events().empty());  // load() starts nothing

  std::vector<std::string> sections_asked;
  keel::status started = f.host.start(f.services(2), [&](std::string_view name) {
    sections_asked.emplace_back(name);
    return fixture::section(name);
  });
  BOOST_REQUIRE_MESSAGE(started.is_ok(), started.message());
  BOOST_TEST(sections_asked == std::vector<std::string>{"good"}, boost::test_tools::per_element());
  BOOST_TEST(index_of(events(), "start:good:good:2") == 0u);

  // config_json is passed through unchanged.
  auto config = module_symbol<const char* (*)()>(f.host, "good", "keel_test_good_config");
  BOOST_REQUIRE(config);
  BOOST_TEST(std::string(config()) == fixture::section("good"));
  // So is core_config_json (module ABI 2).
  auto core_config = module_symbol<const char* (*)()>(f.host, "good", "keel_test_good_core_config");
  BOOST_REQUIRE(core_config);
  BOOST_TEST(std::string(core_config()) == fixture::core_config());

  // Its route, bus handler, metrics and log line are visible.
  std::string allowed;
  const keel::http_router::route* route = f.router.find("GET", "/good/ping", allowed);
  BOOST_REQUIRE(route);
  BOOST_TEST(static_cast<bool>(route->sync));
  BOOST_TEST(f.router.find("PUT", "/good/ping", allowed) == nullptr);
  BOOST_TEST(allowed == "GET");
  std::uint16_t module_id = 0, by_type = 0;
  bool is_stream = true;
  BOOST_REQUIRE(f.bus.find_module("good", module_id));
  BOOST_REQUIRE(f.bus.find_type(1000, by_type, is_stream));
  BOOST_TEST(by_type == module_id);
  BOOST_TEST(!is_stream);
  std::string metrics;
  f.host.append_metrics(metrics);
  BOOST_TEST(metrics == "keel_test_good_up 1\n");
  BOOST_TEST(f.logged == std::vector<std::string>{"good: good started"}, boost::test_tools::per_element());

  // Two shards: the hooks run on each, and the bus reaches the module on shard 1.
  std::string answer_text;
  keel::status answer_status;
  std::uint16_t answer_type = 0;
  {
    keel::system sys;
    keel::status up = sys.start({2, false}, [&](keel::shard& s) {
      f.host.run_shard_start(s);
      s.at_stop([&f, &s] { f.host.run_shard_stop(s); });
    });
    BOOST_REQUIRE_MESSAGE(up.is_ok(), up.message());
    sys.post(0, [&] {
      keel::spawn([](keel::system& s, keel::bus& bus, std::string& text, keel::status& st,
                     std::uint16_t& type) -> task<void> {
        task<keel::result<keel::message>> pending = bus.request("good", 1000, keel::buffer::copy_of("ping", 4), 1);
        auto answer = co_await std::move(pending);
        if (answer) {
          text.assign(reinterpret_cast<const char*>(answer.value().payload.data()), answer.value().payload.size());
          type = answer.value().type;
        } else {
          st = answer.error();
        }
        s.stop();
      }(sys, f.bus, answer_text, answer_status, answer_type));
    });
    sys.wait();
  }
  BOOST_TEST_MESSAGE("bus status: " << answer_status.message());
  BOOST_TEST(answer_status.is_ok());
  BOOST_TEST(answer_text == "ping@1|" + fixture::section("good"));
  BOOST_TEST(answer_type == 1001);
  auto started_count = module_symbol<unsigned (*)()>(f.host, "good", "keel_test_good_shards_started");
  auto stopped_count = module_symbol<unsigned (*)()>(f.host, "good", "keel_test_good_shards_stopped");
  BOOST_REQUIRE(started_count && stopped_count);
  BOOST_TEST(started_count() == 2u);
  BOOST_TEST(stopped_count() == 2u);
  auto seen = events();
  for (const char* e : {"shard_start:good:0", "shard_start:good:1", "shard_stop:good:0", "shard_stop:good:1"})
    BOOST_TEST(index_of(seen, e) < seen.size(), e);
  BOOST_TEST(index_of(seen, "stop:good") == seen.size());  // not stopped yet

  f.host.stop();
  BOOST_TEST(events().back() == "stop:good");
  f.host.stop();  // idempotent
  seen = events();
  BOOST_TEST(std::count(seen.begin(), seen.end(), std::string("stop:good")) == 1);
  // After stop the hooks are gone.
  metrics.clear();
  f.host.append_metrics(metrics);
  BOOST_TEST(metrics.empty());
}

BOOST_AUTO_TEST_CASE(rejects_abi_mismatch_naming_both_versions_and_the_file) {
  fixture f;
  keel::status loaded = f.host.load({"badabi"}, {module_dir});
  BOOST_TEST_MESSAGE(loaded.message());
  BOOST_TEST((loaded.code() == keel::errc::abi_mismatch));
  const std::string& text = loaded.message();
  BOOST_TEST(contains(text, "\"badabi\""));
  BOOST_TEST(contains(text, module_dir + "/libkeel-badabi.so"));
  BOOST_TEST(contains(text, "ABI " + std::to_string(KEEL_MODULE_ABI_VERSION + 1)));
  BOOST_TEST(contains(text, "ABI " + std::to_string(KEEL_MODULE_ABI_VERSION)));
  BOOST_TEST(contains(text, "rebuild"));
  BOOST_TEST(f.host.modules().empty());
}

BOOST_AUTO_TEST_CASE(rejects_unknown_module_listing_searched_directories) {
  fixture f;
  keel::status loaded = f.host.load({"nosuch"}, {"/nonexistent/first", module_dir});
  BOOST_TEST_MESSAGE(loaded.message());
  BOOST_TEST((loaded.code() == keel::errc::not_found));
  BOOST_TEST(contains(loaded.message(), "\"nosuch\""));
  BOOST_TEST(contains(loaded.message(), "libkeel-nosuch.so"));
  BOOST_TEST(contains(loaded.message(), "/nonexistent/first, " + module_dir));
  BOOST_TEST(contains(loaded.message(), "module-path"));

  keel::status nowhere = f.host.load({"good"}, {});
  BOOST_TEST((nowhere.code() == keel::errc::not_found));
  BOOST_TEST(contains(nowhere.message(), "no directories"));
  BOOST_TEST(f.host.modules().empty());
}

BOOST_AUTO_TEST_CASE(rejects_file_without_entry_point) {
  fixture f;
  keel::status loaded = f.host.load({"noentry"}, {module_dir});
  BOOST_TEST_MESSAGE(loaded.message());
  BOOST_TEST((loaded.code() == keel::errc::invalid_argument));
  BOOST_TEST(contains(loaded.message(), module_dir + "/libkeel-noentry.so"));
  BOOST_TEST(contains(loaded.message(), KEEL_MODULE_ENTRY_SYMBOL));
  BOOST_TEST(contains(loaded.message(), "not a keel module"));
  BOOST_TEST(f.host.modules().empty());
}

BOOST_AUTO_TEST_CASE(rejects_module_whose_name_differs) {
  fixture f;
  keel::status loaded = f.host.load({"misnamed"}, {module_dir});
  BOOST_TEST_MESSAGE(loaded.message());
  BOOST_TEST((loaded.code() == keel::errc::invalid_argument));
  BOOST_TEST(contains(loaded.message(), "\"misnamed\""));
  BOOST_TEST(contains(loaded.message(), "libkeel-misnamed.so"));
  BOOST_TEST(contains(loaded.message(), "calls itself \"other\""));
  BOOST_TEST(f.host.modules().empty());
}

BOOST_AUTO_TEST_CASE(reports_start_failure_with_module_message_and_stops_started_ones) {
  fixture f;
  keel::status loaded = f.host.load({"good", "failstart"}, {module_dir});
  BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
  keel::status started = f.host.start(f.services(), fixture::section);
  BOOST_TEST_MESSAGE(started.message());
  BOOST_TEST((started.code() == keel::errc::invalid_argument));
  BOOST_TEST(contains(started.message(), "\"failstart\""));
  BOOST_TEST(contains(started.message(), "failed to start"));
  BOOST_TEST(contains(started.message(), "refusing to start"));
  // good started and was stopped again; failstart, which never started, is not stopped.
  std::vector<std::string> expected{"start:good:good:1", "start:failstart", "stop:good"};
  BOOST_TEST(events() == expected, boost::test_tools::per_element());
  f.host.stop();
  BOOST_TEST(events() == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(starts_dependencies_first) {
  fixture f;
  keel::status loaded = f.host.load({"needsgood", "good"}, {module_dir});
  BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
  BOOST_REQUIRE_EQUAL(f.host.modules().size(), 2u);
  BOOST_TEST(f.host.modules()[0].name == "needsgood");  // loaded in the order listed
  keel::status started = f.host.start(f.services(), fixture::section);
  BOOST_REQUIRE_MESSAGE(started.is_ok(), started.message());
  std::vector<std::string> expected{"start:good:good:1", "start:needsgood"};
  BOOST_TEST(events() == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(rejects_missing_dependency) {
  fixture f;
  keel::status loaded = f.host.load({"needsmissing"}, {module_dir});
  BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());  // dependencies are checked at start
  keel::status started = f.host.start(f.services(), fixture::section);
  BOOST_TEST_MESSAGE(started.message());
  BOOST_TEST((started.code() == keel::errc::invalid_argument));
  BOOST_TEST(contains(started.message(), "\"needsmissing\""));
  BOOST_TEST(contains(started.message(), "\"absent\""));
  BOOST_TEST(events().empty());  // nothing started
}

BOOST_AUTO_TEST_CASE(stop_runs_in_reverse_order) {
  fixture f;
  // Listed out of dependency order: stop reverses the start order, not the list.
  keel::status loaded = f.host.load({"needsgood", "good"}, {module_dir});
  BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
  keel::status started = f.host.start(f.services(), fixture::section);
  BOOST_REQUIRE_MESSAGE(started.is_ok(), started.message());
  clear_events();
  f.host.stop();
  std::vector<std::string> expected{"stop:needsgood", "stop:good"};
  BOOST_TEST(events() == expected, boost::test_tools::per_element());
  f.host.stop();
  BOOST_TEST(events() == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(destructor_stops_started_modules) {
  {
    fixture f;
    keel::status loaded = f.host.load({"good", "needsgood"}, {module_dir});
    BOOST_REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
    keel::status started = f.host.start(f.services(), fixture::section);
    BOOST_REQUIRE_MESSAGE(started.is_ok(), started.message());
    clear_events();
  }
  std::vector<std::string> expected{"stop:needsgood", "stop:good"};
  BOOST_TEST(events() == expected, boost::test_tools::per_element());
}
