// describe.h — runs rapidjson's SchemaValidator and says in words what failed.
//
// rapidjson 1.1 only reports the failing keyword, the schema pointer and the document
// pointer; this turns them into "expected integer, got string \"two\"", "unknown key
// \"shardz\" (did you mean \"shards\"?)", "must be <= 64, got 65" and so on.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "json.h"

namespace keel::config::detail {

struct validation_failure {
  std::string pointer;  // JSON Pointer into the instance, e.g. "/echo/prefix"
  std::string text;     // what was expected, e.g. "expected string, got integer 5"
};

// Validates `instance` against `schema`, which was built from `schema_root`.
// Returns nothing when it is valid, else the first failure rapidjson found.
std::optional<validation_failure> validate(const rapidjson::SchemaDocument& schema,
                                           const json_value& schema_root,
                                           const json_value& instance);

// The closest of `candidates` to `word` within two edits, or "".
std::string closest_name(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace keel::config::detail
