// keel/reactor/host.h — loads modules with dlopen and runs their start/stop.
//
// Contract (see keel/module.h for the module side):
//   load():  for each name, looks for libkeel-<name>.so in each search directory in
//            order, dlopens it, finds keel_module_entry, and checks the descriptor
//            (ABI version, name). Every failure is a status naming what was looked for
//            and where. Nothing is started by load().
//   start(): orders modules so that each starts after its `depends`, calls each start
//            with a module_context, and stops the ones already started if one fails.
//   stop():  calls stop in reverse start order. Idempotent.
// All of it runs on the main thread, before the shards start and after they stop.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keel/module.h"
#include "keel/status.h"

namespace keel {

class bus;
class http_router;
class shard;

struct loaded_module {
  std::string name;
  std::string path;   // the file that was loaded
  const keel_module_descriptor* descriptor = nullptr;
  void* handle = nullptr;
};

// What the host hands to every module's context.
struct module_services {
  http_router* router = nullptr;
  keel::bus* bus = nullptr;
  unsigned shard_count = 1;
  std::function<void(log_level, std::string_view module, std::string_view text)> log;
  // What module_context::core_config_json() returns: keel::config::config::core_json().
  std::string core_config_json = "{}";
};

class module_host {
 public:
  module_host();
  ~module_host();
  module_host(const module_host&) = delete;
  module_host& operator=(const module_host&) = delete;

  status load(const std::vector<std::string>& names, const std::vector<std::string>& search_path);
  const std::vector<loaded_module>& modules() const noexcept { return _modules; }

  // `section_json(name)` returns the module's validated config section.
  status start(const module_services& services,
               const std::function<std::string(std::string_view)>& section_json);
  void stop() noexcept;

  // Hooks the modules registered, run by keeld on each shard and for /metrics.
  void run_shard_start(shard& s);
  void run_shard_stop(shard& s);
  void append_metrics(std::string& out);

  struct context;

 private:
  std::vector<loaded_module> _modules;
  std::vector<std::unique_ptr<context>> _started;  // in start order
};

}  // namespace keel
