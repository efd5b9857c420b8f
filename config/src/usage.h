// usage.h — the --help text, generated from the assembled schema.
#pragma once

#include <string>
#include <string_view>

#include "schema_set.h"

namespace keel::config::detail {

std::string render_usage(std::string_view program, const schema_set& schemas);

}  // namespace keel::config::detail
