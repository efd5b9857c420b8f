// convert.h — a flag's or environment variable's text → a JSON value of the schema's type.
#pragma once

#include <string_view>

#include "json.h"
#include "keel/status.h"

namespace keel::config::detail {

// Converts `text` per `schema`'s "type":
//   integer  decimal int64, optional sign ("12", "-3", "+4")
//   number   a finite decimal or exponent number
//   boolean  Go strconv.ParseBool: 1 t T TRUE true True 0 f F FALSE false False
//   string   the text itself
//   array    comma-separated items, each converted per "items" (string if absent),
//            blanks around items trimmed; "" is the empty array
//   object / null / no type   the text parsed as JSON
//   a list of types         the first type that converts
// Text that is not valid UTF-8 is refused whatever the type. Errors are
// errc::invalid_argument with text such as `expected integer, got "two"`,
// without the origin or pointer (the caller adds them).
result<json_value> convert_text(std::string_view text, const json_value& schema,
                                json_allocator& allocator);

}  // namespace keel::config::detail
