// kv — the key-value module: etcd's v3 JSON gateway, etcd's v2 keys API and the native kv
// frames on one durable MVCC store. See ../README.md; the engine is core.h.
//
// Threads: start() (main thread) recovers the WAL and replays it into the store. From
// then on the engine's state belongs to the owner shard (shard 0); the surfaces parse and
// format on the connection's shard.
#include <rapidjson/document.h>

#include <cstdio>
#include <string>

#include "core.h"
#include "keel/module.h"
#include "keel/reactor/shard.h"

namespace {

namespace kvm = keel::kv_module;

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  rapidjson::Document config;
  std::string text(context->config_json());
  config.Parse(text.c_str());
  if (config.HasParseError() || !config.IsObject() || !config.HasMember("dir") || !config["dir"].IsString()) {
    std::snprintf(error, error_bytes, "config section is not {\"dir\": string, ...}: %s", text.c_str());
    return 1;
  }
  kvm::core_options options;
  options.dir = config["dir"].GetString();
  if (config.HasMember("snapshot-count") && config["snapshot-count"].IsUint64())
    options.snapshot_count = config["snapshot-count"].GetUint64();
  if (config.HasMember("wal-segment-bytes") && config["wal-segment-bytes"].IsUint64())
    options.wal_segment_bytes = config["wal-segment-bytes"].GetUint64();
  keel::status started = kvm::core_start(context, options);
  if (!started) {
    std::snprintf(error, error_bytes, "%s", started.to_string().c_str());
    return 1;
  }
  context->on_shard_start([](keel::shard& shard) { kvm::core_on_shard_start(shard); });
  context->on_shard_stop([](keel::shard& shard) { kvm::core_on_shard_stop(shard); });
  kvm::register_v3_routes(context->router());
  kvm::register_v2_routes(context->router());
  kvm::register_native_handlers(context->bus());
  context->add_metrics([](std::string& out) { kvm::core_metrics(out); });
  return 0;
}

void stop(keel::module_context*) { kvm::core_stop(); }

constexpr const char* schema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "dir": {"type": "string", "default": "", "description": "Directory of the kv store (WAL in <dir>/wal, snapshots in <dir>/snap); \"\" means \"./default.keel\". The module cannot see --data-dir, so set this."},
    "snapshot-count": {"type": "integer", "default": 100000, "minimum": 1, "description": "Committed entries between snapshots (etcd's --snapshot-count); the WAL before the snapshot preceding the newest is released."},
    "wal-segment-bytes": {"type": "integer", "default": 67108864, "minimum": 16777216, "maximum": 67108864, "description": "Size of each preallocated WAL segment (16 MiB to 64 MiB); smaller suits small disks and tests."}
  }
})";

const keel_module_descriptor descriptor = {
    KEEL_MODULE_ABI_VERSION, "kv", "0.2.0", schema, nullptr, start, stop,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}
