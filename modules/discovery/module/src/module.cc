// discovery — the discovery-token service (etcd 3.4's discovery protocol, as
// discovery.etcd.io serves it) on the client port, stored in the kv module's keyspace.
// See ../../README.md. The bootstrap client side is ../../client (keel_discovery_client).
//
// Threads: start() runs on the main thread and only registers routes; every request is
// served on its connection's shard and reaches the keyspace through the bus (kv_bus.h).
#include <rapidjson/document.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "keel/module.h"
#include "keel/reactor/bus.h"
#include "kv_bus.h"
#include "service.h"

namespace {

namespace dm = keel::discovery_module;

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  rapidjson::Document config;
  std::string text(context->config_json());
  config.Parse(text.c_str());
  if (config.HasParseError() || !config.IsObject()) {
    std::snprintf(error, error_bytes, "config section is not an object: %s", text.c_str());
    return 1;
  }
  std::uint16_t kv_id = 0;
  if (!context->bus().find_module("kv", kv_id)) {
    std::snprintf(error, error_bytes, "the discovery module needs the kv module (load it: --modules kv,discovery)");
    return 1;
  }
  dm::service_options options;
  if (config.HasMember("wait-timeout-ms") && config["wait-timeout-ms"].IsUint64())
    options.wait_timeout = std::chrono::milliseconds(config["wait-timeout-ms"].GetUint64());
  dm::set_bus(&context->bus());
  dm::register_routes(context->router(), options);
  context->log(keel::log_level::info, "serving GET /new and /discovery/<token> (keys under /_keel/discovery/)");
  return 0;
}

void stop(keel::module_context*) { dm::set_bus(nullptr); }

constexpr const char* schema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "wait-timeout-ms": {"type": "integer", "default": 60000, "minimum": 100, "maximum": 3600000, "description": "How long a discovery wait (GET ...?wait=true) is held before it is answered 200 with an empty body, in milliseconds (discovery.etcd.io: one minute)."}
  }
})";

const char* const depends[] = {"kv", nullptr};

const keel_module_descriptor descriptor = {
    KEEL_MODULE_ABI_VERSION, "discovery", "0.1.0", schema, depends, start, stop,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}
