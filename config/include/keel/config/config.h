// keel/config/config.h — keeld's configuration: keel.json, ETCD_/KEEL_ environment
// variables and etcd-style flags, merged, checked against a JSON Schema and filled with
// defaults.
//
// Sources, highest precedence first: flag > environment > config file > schema default.
// Every key has one name in each source (docs/config.md lists them all):
//
//   keel.json          {"data-dir": "/var/lib/keel", "echo": {"prefix": ">"}}
//   flag               --data-dir /var/lib/keel      --echo.prefix=">"
//   environment        KEEL_DATA_DIR or ETCD_DATA_DIR   KEEL_ECHO_PREFIX  (KEEL_ wins)
//
// The schema is the core's (config/src/core_schema.cc) plus one section per loaded
// module, added with loader::add_section_schema(). Unknown keys, flags and ETCD_/KEEL_
// variables are errors, as in etcd.
//
// How keeld uses it (single-threaded, at start-up, before any shard runs):
//
//   keel::config::loader loader;
//   if (auto s = loader.collect(argc, argv, environ); !s) die(s);
//   auto names = loader.modules();                    // load these modules …
//   loader.add_section_schema("echo", echo_schema);    // … and add each one's schema
//   if (loader.requested_action() == action::help) print(loader.usage(argv[0]));
//   auto config = loader.finish();                    // merged, validated, defaulted
//
// Errors come back as keel::status with errc::invalid_argument (bad value, unknown key or
// flag, bad schema), errc::not_found / errc::io_error (the named config file) or
// errc::too_large (a config file over 1 MiB or nested deeper than 32). Messages name
// where the value came from, the JSON Pointer of the key and what was expected:
//
//   keel.json:4: /shards: expected integer, got string "two"
//   flag --log-level: /log-level: must be one of debug, info, warn, error, got "loud"
//   env ETCD_SHARDS: /shards: must be <= 64, got 65
//   keel.json:2: /shardz: unknown key "shardz" (did you mean "shards"?)
//   keel.json:3:9: Missing a comma or '}' after an object member.
//
// Only the first error is reported. The config file is only ever read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel::config {

// What the command line asked keeld to do besides running. Precedence when several
// special flags are given: help > version > print_config.
enum class action { run, help, version, print_config };

// The effective configuration: every key of the core and of each loaded module's section,
// with defaults filled in. Immutable; cheap to read, copyable, owned by whoever holds it.
//
// Accessors take a JSON Pointer ("/data-dir", "/echo/prefix"). REQUIRES: the key exists
// and has the accessor's type (the schema guarantees both for every declared key); asking
// for anything else is a programmer error and stops the process (KEEL_ASSERT).
class config {
 public:
  config(const config& other);
  config& operator=(const config& other);
  config(config&& other) noexcept;
  config& operator=(config&& other) noexcept;
  ~config();

  // REQUIRES: a JSON string.
  std::string get_string(std::string_view pointer) const;
  // REQUIRES: a JSON integer that fits in int64 (finish() rejects larger ones).
  std::int64_t get_int(std::string_view pointer) const;
  // REQUIRES: a JSON number (integer or not).
  double get_number(std::string_view pointer) const;
  // REQUIRES: true or false.
  bool get_bool(std::string_view pointer) const;
  // REQUIRES: an array whose items are all strings.
  std::vector<std::string> get_strings(std::string_view pointer) const;
  // Whether the key exists. REQUIRES: pointer is a syntactically valid JSON Pointer.
  bool has(std::string_view pointer) const;

  // Compact JSON text of one module's section, e.g. {"prefix":">"}; what the module's
  // init function receives. REQUIRES: the module's section schema was added.
  std::string section_json(std::string_view module) const;
  // Compact JSON text of the core keys only (every key of core_schema.cc, defaults
  // filled, in schema order; no module sections); what module_context::core_config_json
  // gives each module.
  std::string core_json() const;
  // The whole effective configuration, keys in schema order; `keeld --print-config`
  // prints it pretty. Feeding it back as keel.json yields the same configuration.
  std::string to_json(bool pretty) const;

  // The data directory: /data-dir, or "<name>.keel" when /data-dir is "" (etcd's
  // "${name}.etcd" convention).
  std::string data_dir() const;

 private:
  friend class loader;
  struct impl;
  explicit config(std::unique_ptr<impl> state);
  std::unique_ptr<impl> _impl;
};

// Gathers the sources, takes the module schemas and produces a config. One loader per
// start-up; not thread-safe; not copyable.
//
// Call order: collect() (and/or collect_file_text()) → modules() → add_section_schema()
// per module → usage() or finish(). Every step may be repeated except collect().
class loader {
 public:
  loader();
  ~loader();
  loader(const loader&) = delete;
  loader& operator=(const loader&) = delete;

  // Parses argv (argv[0] is the program name) and the environment (envp: NULL-terminated
  // "NAME=value" strings; pass environ) and reads the config file if one was named by
  // --config/--config-file or KEEL_CONFIG/KEEL_CONFIG_FILE/ETCD_CONFIG_FILE/ETCD_CONFIG.
  // Reports at once: malformed or unknown core flags, positional arguments, a missing
  // flag value, an unreadable file, a JSON syntax error (file:line:column), a duplicate
  // key, a top level that is not an object. Does not check values or module keys yet:
  // flags such as --echo.prefix and unknown ETCD_/KEEL_ variables are judged by finish(),
  // once every module schema is in.
  // REQUIRES: called at most once.
  status collect(int argc, const char* const* argv, const char* const* envp);

  // Uses `json_text` as the config file's content, reported under `file_name` in
  // messages. For tests and the fuzzer; whichever of this and a file named to collect()
  // comes last is the file source. Errors as for collect()'s file.
  status collect_file_text(std::string_view json_text, std::string_view file_name);

  // What the special flags asked for (action::run if none).
  action requested_action() const;

  // The module list as the sources give it (--modules a,b > KEEL_MODULES/ETCD_MODULES >
  // keel.json "modules" > []). Names are checked (^[a-z][a-z0-9_-]*$, unique) because
  // the caller turns them into file names.
  result<std::vector<std::string>> modules() const;
  // The module search path from the same sources (--module-path > env > file > []),
  // needed to find the modules before their schemas are known.
  result<std::vector<std::string>> module_path() const;

  // Adds `module`'s section to the schema: a draft-04 JSON Schema object with
  // "type": "object", "additionalProperties": false, a "description" on every property,
  // property names matching ^[a-z0-9][a-z0-9_-]*$, no "$ref", patterns in rapidjson's
  // regex dialect, and defaults that satisfy their own schema. Errors
  // (errc::invalid_argument, errc::already_exists) name the module.
  status add_section_schema(std::string_view module, std::string_view schema_json);

  // Merges the sources, converts flag and environment strings per the schema type,
  // fills defaults (an absent module section becomes {} plus its defaults), validates the
  // result against the assembled schema and returns it.
  result<config> finish();

  // The --help text: every flag with type, default and description (core, then each
  // module section added so far), the special flags, precedence and environment naming.
  std::string usage(std::string_view program) const;

 private:
  result<std::vector<std::string>> early_strings(std::string_view name) const;
  struct impl;
  std::unique_ptr<impl> _impl;
};

}  // namespace keel::config
