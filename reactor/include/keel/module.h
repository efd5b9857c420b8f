// keel/module.h — the module ABI: what a loadable module exports and what it gets.
//
// A module is a shared object `libkeel-<name>.so` that exports one C function,
//
//     extern "C" const keel_module_descriptor* keel_module_entry(void);
//
// returning a static descriptor. keeld loads the modules named in keel.json's
// "modules" list from the module path (config "module-path", then the built-in module
// directory), checks `abi_version` against KEEL_MODULE_ABI_VERSION, adds the module's
// config schema to the validated config, and calls `start` once on the main thread
// before the shards run, in the order the modules are listed after their `depends`.
// `stop` is called once after every shard has stopped, in reverse order.
//
// The ABI version covers this header and every header a module includes from keel
// (the reactor's classes are used across the boundary, so a module must be built by the
// same compiler against the same keel headers); bump it with any change to them.
// Symbols a module calls are resolved against keeld itself (keeld exports them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#define KEEL_MODULE_ABI_VERSION 2u  // 2: module_context::core_config_json
#define KEEL_MODULE_ENTRY_SYMBOL "keel_module_entry"

namespace keel {
class bus;
class http_router;
class shard;

enum class log_level { debug, info, warn, error };

// What keeld offers a module while it starts. Valid until stop returns.
class module_context {
 public:
  virtual ~module_context() = default;
  virtual std::string_view module_name() const = 0;
  // The module's config section as compact JSON, defaults filled in, validated.
  virtual std::string_view config_json() const = 0;
  // Register HTTP routes (under the module's own prefix) and bus handlers now; both
  // tables are frozen when the shards start.
  virtual http_router& router() = 0;
  virtual keel::bus& bus() = 0;
  virtual unsigned shard_count() const = 0;
  // Called on every shard's thread as it starts and as it stops.
  virtual void on_shard_start(std::function<void(shard&)> fn) = 0;
  virtual void on_shard_stop(std::function<void(shard&)> fn) = 0;
  // Appends Prometheus text lines for this module to /metrics.
  virtual void add_metrics(std::function<void(std::string& out)> fn) = 0;
  virtual void log(log_level level, std::string_view text) = 0;
  // The core keys of the effective config as compact JSON, defaults filled in
  // (name, data-dir, listen-peer-urls, initial-cluster, heartbeat-interval, …; see
  // docs/config.md), no module sections. Added in ABI 2; keep new members after it.
  virtual std::string_view core_config_json() const = 0;
};
}  // namespace keel

extern "C" {

struct keel_module_descriptor {
  std::uint32_t abi_version;       // KEEL_MODULE_ABI_VERSION when built
  const char* name;                // matches the file name libkeel-<name>.so
  const char* version;             // the module's own version, for /version and logs
  // JSON Schema (draft-04) of the module's section: an object schema with
  // "additionalProperties": false and a "description" on every property (they become
  // the module's --help lines); see config/README.md for the full rules.
  const char* config_schema;
  const char* const* depends;      // null-terminated names started before this one, or null
  // Returns 0 on success; on failure writes a message into `error` and returns non-zero.
  int (*start)(keel::module_context* context, char* error, std::size_t error_bytes);
  void (*stop)(keel::module_context* context);
};

typedef const keel_module_descriptor* (*keel_module_entry_fn)(void);
}
