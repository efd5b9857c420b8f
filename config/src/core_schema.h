// core_schema.h — the core's part of the configuration schema (docs/config.md).
#pragma once

#include <string_view>

namespace keel::config::detail {

// Draft-04 JSON Schema text of the core keys: an object with additionalProperties false.
// Module sections are added to its "properties" by schema_set.
std::string_view core_schema_json();

// The draft-04 meta-schema, against which module section schemas are checked.
std::string_view meta_schema_json();

// The regex (rapidjson dialect) every client/peer URL must match.
inline constexpr std::string_view url_pattern =
    "^https?://(\\[[0-9a-fA-F:.]+\\]|[^/:\\[\\] ]+):[0-9]+/?$";

}  // namespace keel::config::detail
