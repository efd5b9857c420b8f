// schema_set.h — the assembled schema: the core's keys plus one section per module, and
// the table of every key's JSON Pointer, flag name and environment name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "json.h"
#include "keel/status.h"

namespace keel::config::detail {

// One leaf key: something a flag or an environment variable can set.
struct key_info {
  std::string pointer;         // "/echo/prefix"
  std::string flag;            // "echo.prefix"   (--echo.prefix)
  std::string env_suffix;      // "ECHO_PREFIX"   (KEEL_ECHO_PREFIX, ETCD_ECHO_PREFIX)
  std::string module;          // "echo"; "" for a core key
  std::string schema_pointer;  // "/properties/echo/properties/prefix"
};

class schema_set {
 public:
  // Loads the core schema. The core schema is part of the program: if it is broken, the
  // process stops (KEEL_ASSERT).
  schema_set();

  // Checks `schema_text` (see loader::add_section_schema for the rules) and adds it as
  // property `module`. On error nothing changes.
  status add_section(std::string_view module, std::string_view schema_text);

  const json_document& root() const { return _root; }
  // The compiled form of root() for SchemaValidator.
  const rapidjson::SchemaDocument& compiled() const { return *_compiled; }
  const std::vector<key_info>& keys() const { return _keys; }
  const key_info* find_flag(std::string_view flag) const;
  const key_info* find_env(std::string_view env_suffix) const;
  // The property schema of `key`. REQUIRES: key comes from keys().
  const json_value& schema_of(const key_info& key) const;
  bool is_core_property(std::string_view name) const;
  bool has_section(std::string_view module) const;
  const std::vector<std::string>& sections() const { return _sections; }

 private:
  void rebuild();

  json_document _root;
  std::vector<std::string> _core_names;
  std::vector<std::string> _sections;
  std::vector<key_info> _keys;
  std::unique_ptr<rapidjson::SchemaDocument> _compiled;
};

// "echo.prefix" → "ECHO_PREFIX": upper case, '-' and '.' become '_'.
std::string env_suffix_of(std::string_view flag);

// Adds to `instance` (if an object) every property of `schema` that it lacks and that
// has a "default"; a lacking property whose schema has "properties" becomes {} filled
// the same way. Recurses into present objects. Appends each filled pointer to `filled`.
void fill_defaults(const json_value& schema, json_value& instance, json_allocator& allocator,
                   const std::string& pointer, std::vector<std::string>& filled);

// Reorders the members of `instance` (recursively) to follow the order of `schema`'s
// "properties"; members the schema does not name come last, in their order.
void order_like_schema(const json_value& schema, json_value& instance, json_allocator& allocator);

}  // namespace keel::config::detail
