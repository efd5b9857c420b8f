// config_fuzz.cc — the config loader must turn any keel.json into a config or an error.
//
// Input: keel.json content, then optionally '\0' and up to 8 '\0'-separated command-line
// arguments (arguments naming a config file are dropped: no file I/O here). With the
// echo module's schema added, the loader runs collect → modules → finish. A config that
// comes out must print to JSON that loads back to the very same config.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "keel/config/config.h"

namespace {

constexpr std::string_view echo_schema = R"({
  "type": "object", "additionalProperties": false,
  "properties": {
    "prefix": {"type": "string", "description": "d", "default": ">", "maxLength": 8},
    "repeat": {"type": "integer", "minimum": 1, "default": 1, "description": "d"},
    "ratio": {"type": "number", "description": "d", "default": 0.5},
    "loud": {"type": "boolean", "default": false, "description": "d"},
    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "description": "d"},
    "nested": {"type": "object", "additionalProperties": false, "description": "d",
               "properties": {"depth": {"type": "integer", "description": "d", "default": 2}}}
  }
})";

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_config: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('\0');
  const std::string_view json = input.substr(0, split);

  std::vector<std::string> arguments = {"keeld"};
  if (split != std::string_view::npos) {
    std::string_view rest = input.substr(split + 1);
    while (!rest.empty() && arguments.size() < 9) {
      const std::size_t end = rest.find('\0');
      const std::string argument(rest.substr(0, end));
      if (argument.find("config") == std::string::npos) arguments.push_back(argument);
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
  }
  std::vector<const char*> argv;
  for (const std::string& argument : arguments) argv.push_back(argument.c_str());
  argv.push_back(nullptr);
  const char* const envp[] = {"ETCDCTL_API=3", nullptr};

  keel::config::loader loader;
  if (!loader.collect_file_text(json, "keel.json").is_ok()) return 0;
  if (!loader.collect(static_cast<int>(arguments.size()), argv.data(), envp).is_ok()) return 0;
  (void)loader.modules();
  require(loader.add_section_schema("echo", echo_schema).is_ok(), "echo schema rejected");
  (void)loader.usage("keeld");
  keel::result<keel::config::config> finished = loader.finish();
  if (!finished.is_ok()) {
    require(!finished.error().message().empty(), "error without a message");
    return 0;
  }

  const keel::config::config& config = finished.value();
  const std::int64_t shards = config.get_int("/shards");
  require(shards >= 0 && shards <= 64, "shards out of range");
  (void)config.get_strings("/listen-client-urls");
  (void)config.get_strings("/modules");
  (void)config.data_dir();
  (void)config.get_string("/echo/prefix");
  (void)config.get_int("/echo/nested/depth");
  (void)config.section_json("echo");

  // Round trip: the printed config is a keel.json that yields the same config.
  const std::string printed = config.to_json(true);
  keel::config::loader again;
  require(again.collect_file_text(printed, "printed.json").is_ok(), "printed config does not parse");
  require(again.add_section_schema("echo", echo_schema).is_ok(), "echo schema rejected");
  keel::result<keel::config::config> reloaded = again.finish();
  if (!reloaded.is_ok()) std::fprintf(stderr, "%s\n%s\n", printed.c_str(), reloaded.error().message().c_str());
  require(reloaded.is_ok(), "printed config does not load");
  require(reloaded.value().to_json(true) == printed, "printed config loads differently");
  return 0;
}
