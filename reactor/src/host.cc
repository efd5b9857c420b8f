// host.cc — module loading and lifecycle.
#include "keel/reactor/host.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>

#include "keel/limits.h"

namespace keel {

struct module_host::context final : module_context {
  const loaded_module* module = nullptr;
  std::string config;
  module_services services;
  std::vector<std::function<void(shard&)>> shard_start;
  std::vector<std::function<void(shard&)>> shard_stop;
  std::vector<std::function<void(std::string&)>> metrics;

  std::string_view module_name() const override { return module->name; }
  std::string_view config_json() const override { return config; }
  http_router& router() override { return *services.router; }
  keel::bus& bus() override { return *services.bus; }
  unsigned shard_count() const override { return services.shard_count; }
  void on_shard_start(std::function<void(shard&)> fn) override { shard_start.push_back(std::move(fn)); }
  void on_shard_stop(std::function<void(shard&)> fn) override { shard_stop.push_back(std::move(fn)); }
  void add_metrics(std::function<void(std::string&)> fn) override { metrics.push_back(std::move(fn)); }
  void log(log_level level, std::string_view text) override {
    if (services.log) services.log(level, module->name, text);
  }
  std::string_view core_config_json() const override { return services.core_config_json; }
};

module_host::module_host() = default;
module_host::~module_host() {
  stop();
  for (auto& m : _modules)
    if (m.handle) dlclose(m.handle);
}

namespace {
std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out.empty() ? "(no directories)" : out;
}

status open_module(const std::string& name, const std::string& path, loaded_module& out) {
  // RTLD_NODELETE: module code stays mapped for the life of the process, because the
  // bus, the router and coroutine frames may still hold functions from it after stop.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle)
    return {errc::io_error, "module \"" + name + "\": cannot load " + path + ": " + dlerror()};
  auto entry = reinterpret_cast<keel_module_entry_fn>(dlsym(handle, KEEL_MODULE_ENTRY_SYMBOL));
  if (!entry) {
    dlclose(handle);
    return {errc::invalid_argument, "module \"" + name + "\": " + path + " exports no " +
                                        KEEL_MODULE_ENTRY_SYMBOL + "() and is not a keel module"};
  }
  const keel_module_descriptor* descriptor = entry();
  if (!descriptor) {
    dlclose(handle);
    return {errc::invalid_argument, "module \"" + name + "\": " + path + ": entry point returned no descriptor"};
  }
  if (descriptor->abi_version != KEEL_MODULE_ABI_VERSION) {
    std::string built = std::to_string(descriptor->abi_version);
    dlclose(handle);
    return {errc::abi_mismatch, "module \"" + name + "\": " + path + " was built for module ABI " +
                                    built + ", this keeld has ABI " +
                                    std::to_string(KEEL_MODULE_ABI_VERSION) + "; rebuild the module"};
  }
  if (!descriptor->name || name != descriptor->name) {
    std::string says = descriptor->name ? descriptor->name : "(null)";
    dlclose(handle);
    return {errc::invalid_argument, "module \"" + name + "\": " + path + " calls itself \"" + says + "\""};
  }
  if (!descriptor->start || !descriptor->stop || !descriptor->config_schema || !descriptor->version) {
    dlclose(handle);
    return {errc::invalid_argument, "module \"" + name + "\": " + path +
                                        ": descriptor lacks start, stop, version or config_schema"};
  }
  out = {name, path, descriptor, handle};
  return status::ok();
}
}  // namespace

status module_host::load(const std::vector<std::string>& names,
                         const std::vector<std::string>& search_path) {
  if (names.size() > limits::modules_max)
    return {errc::too_large, std::to_string(names.size()) + " modules listed; the limit is " +
                                 std::to_string(limits::modules_max)};
  for (const std::string& name : names) {
    std::string file = "libkeel-" + name + ".so";
    std::string found;
    for (const std::string& dir : search_path) {
      std::string candidate = dir + "/" + file;
      if (access(candidate.c_str(), F_OK) == 0) {
        found = candidate;
        break;
      }
    }
    if (found.empty())
      return {errc::not_found, "module \"" + name + "\" not found: looked for " + file + " in " +
                                   joined(search_path) + " (set \"module-path\" in keel.json or --module-path)"};
    loaded_module module;
    if (status opened = open_module(name, found, module); !opened) return opened;
    _modules.push_back(module);
  }
  return status::ok();
}

status module_host::start(const module_services& services,
                          const std::function<std::string(std::string_view)>& section_json) {
  // Order: a module starts after every module it depends on (Kahn's algorithm over
  // the listed modules; a dependency that is not listed is an error).
  std::vector<const loaded_module*> order;
  std::vector<bool> placed(_modules.size(), false);
  while (order.size() < _modules.size()) {
    bool progressed = false;
    for (std::size_t i = 0; i < _modules.size(); ++i) {
      if (placed[i]) continue;
      bool ready = true;
      for (const char* const* dep = _modules[i].descriptor->depends; dep && *dep; ++dep) {
        auto it = std::find_if(_modules.begin(), _modules.end(), [&](auto& m) { return m.name == *dep; });
        if (it == _modules.end())
          return {errc::invalid_argument, "module \"" + _modules[i].name + "\" needs module \"" +
                                              *dep + "\"; add it to \"modules\""};
        if (!placed[static_cast<std::size_t>(it - _modules.begin())]) ready = false;
      }
      if (!ready) continue;
      placed[i] = true;
      order.push_back(&_modules[i]);
      progressed = true;
    }
    if (!progressed) return {errc::invalid_argument, "modules depend on each other in a cycle"};
  }
  for (const loaded_module* module : order) {
    auto ctx = std::make_unique<context>();
    ctx->module = module;
    ctx->config = section_json(module->name);
    ctx->services = services;
    char error[512] = {};
    if (module->descriptor->start(ctx.get(), error, sizeof(error)) != 0) {
      stop();
      return {errc::invalid_argument, "module \"" + module->name + "\" failed to start: " +
                                          (error[0] ? std::string(error) : "no reason given")};
    }
    _started.push_back(std::move(ctx));
  }
  return status::ok();
}

void module_host::stop() noexcept {
  while (!_started.empty()) {
    auto& ctx = _started.back();
    ctx->module->descriptor->stop(ctx.get());
    _started.pop_back();
  }
}

void module_host::run_shard_start(shard& s) {
  for (auto& ctx : _started)
    for (auto& fn : ctx->shard_start) fn(s);
}

void module_host::run_shard_stop(shard& s) {
  for (auto it = _started.rbegin(); it != _started.rend(); ++it)
    for (auto& fn : (*it)->shard_stop) fn(s);
}

void module_host::append_metrics(std::string& out) {
  for (auto& ctx : _started)
    for (auto& fn : ctx->metrics) fn(out);
}

}  // namespace keel
