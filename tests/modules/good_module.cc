// good — a well-formed test module for host_test: a bus handler (type 1000), an HTTP
// route, a metrics hook and shard hooks. It reports what happens to it through
// keel_test_event(), which host_test defines and exports (modules resolve symbols
// against the executable that loads them, as they do against keeld).
#include <atomic>
#include <cstdio>
#include <string>

#include "keel/module.h"
#include "keel/reactor/bus.h"
#include "keel/reactor/http.h"
#include "keel/reactor/shard.h"

extern "C" void keel_test_event(const char* text);

namespace {

std::string g_config;                      // the config_json start was given
std::string g_core_config;                 // the core_config_json start was given
std::atomic<unsigned> g_shards_started{0};
std::atomic<unsigned> g_shards_stopped{0};

void event(const std::string& text) { keel_test_event(text.c_str()); }

keel::task<keel::result<keel::message>> handle_ping(keel::message request) {
  std::string text(reinterpret_cast<const char*>(request.payload.data()), request.payload.size());
  std::string answer_text = text + "@" + std::to_string(keel::shard::current()->id()) + "|" + g_config;
  keel::message answer;
  answer.type = 1001;
  answer.payload = keel::buffer::copy_of(answer_text.data(), answer_text.size());
  co_return answer;
}

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  g_config = std::string(context->config_json());
  g_core_config = std::string(context->core_config_json());
  g_shards_started = 0;
  g_shards_stopped = 0;
  event("start:good:" + std::string(context->module_name()) + ":" + std::to_string(context->shard_count()));
  context->bus().handle("good", 1000, handle_ping);
  context->router().add("GET", "/good/ping", [](const keel::http_request&, keel::http_response& response) {
    response.send(200, "text/plain", "pong\n");
  });
  context->add_metrics([](std::string& out) { out += "keel_test_good_up 1\n"; });
  context->on_shard_start([](keel::shard& s) {
    g_shards_started.fetch_add(1);
    event("shard_start:good:" + std::to_string(s.id()));
  });
  context->on_shard_stop([](keel::shard& s) {
    g_shards_stopped.fetch_add(1);
    event("shard_stop:good:" + std::to_string(s.id()));
  });
  context->log(keel::log_level::info, "good started");
  return 0;
}

void stop(keel::module_context*) { event("stop:good"); }

const keel_module_descriptor descriptor = {
    KEEL_MODULE_ABI_VERSION, "good", "1.2.3", R"({"type": "object"})", nullptr, start, stop,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}

// Read by host_test through dlsym on the handle the host loaded.
extern "C" __attribute__((visibility("default"))) const char* keel_test_good_config(void) {
  return g_config.c_str();
}
extern "C" __attribute__((visibility("default"))) const char* keel_test_good_core_config(void) {
  return g_core_config.c_str();
}
extern "C" __attribute__((visibility("default"))) unsigned keel_test_good_shards_started(void) {
  return g_shards_started.load();
}
extern "C" __attribute__((visibility("default"))) unsigned keel_test_good_shards_stopped(void) {
  return g_shards_stopped.load();
}
