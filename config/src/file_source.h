// file_source.h — reads keel.json and remembers the line of every value.
//
// The file is opened read-only, checked to be a regular file of at most
// config_file_bytes_max bytes, read whole and never written. It is parsed with a
// rapidjson Reader over a line-counting stream and a SAX handler that builds the
// Document while recording, for each JSON Pointer, the line its value starts on, so that
// a validation error much later can still say "keel.json:4".
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "json.h"
#include "keel/status.h"

namespace keel::config::detail {

// Bounds on a config file (keel/limits.h is outside this component; see README).
inline constexpr std::size_t config_file_bytes_max = 1024 * 1024;
inline constexpr unsigned config_nesting_depth_max = 32;

struct parsed_file {
  std::string name;                   // as given: "keel.json", "/etc/keel/keel.json"
  json_document document;             // REQUIRES (after parse): an object
  std::map<std::string, int> lines;   // JSON Pointer → 1-based line of its value
};

// Reads the whole file at `path` into `text`. errc::not_found, errc::io_error or
// errc::too_large, each naming the path.
status read_config_file(const std::string& path, std::string& text);

// Parses `text` into `out`. Errors (errc::invalid_argument unless noted):
//   "<name>:L:C: <rapidjson message>"            syntax
//   "<name>:L:C: NUL byte"                        a NUL byte anywhere
//   "<name>:L: <pointer>: duplicate key \"k\""    a key given twice in one object
//   "<name>:L: nesting deeper than 32"            errc::too_large
//   "<name>:L: top level must be an object, got array"
status parse_config_text(std::string_view text, std::string_view name, parsed_file& out);

}  // namespace keel::config::detail
