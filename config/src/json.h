// json.h — the one way config's sources include rapidjson, plus small JSON helpers.
//
// rapidjson's own assertions become KEEL_ASSERT so that misuse (GetInt() on a string)
// stops the process in release builds too instead of reading garbage. Include this
// header before any other rapidjson header.
#pragma once

#include <string>
#include <string_view>

#include "keel/assert.h"

#ifndef RAPIDJSON_ASSERT
#define RAPIDJSON_ASSERT(x) KEEL_ASSERT(x)
#endif

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/pointer.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace keel::config::detail {

using json_value = rapidjson::Value;
using json_document = rapidjson::Document;
using json_allocator = rapidjson::Document::AllocatorType;

// One reference token of a JSON Pointer, escaped ("a/b" → "a~1b", "~" → "~0").
std::string escape_pointer_token(std::string_view token);

// `pointer` for messages: "(top level)" for the empty pointer, else itself.
std::string display_pointer(std::string_view pointer);

// "string", "integer", "number", "boolean", "null", "array" or "object".
const char* json_type_name(const json_value& value);

// Compact JSON text of `value`, cut to about `max_chars` with "…" when longer.
std::string json_excerpt(const json_value& value, std::size_t max_chars = 60);

// Compact or pretty (two-space indent) JSON text.
std::string json_text(const json_value& value, bool pretty);

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF): what rapidjson's kParseValidateEncodingFlag accepts in a file.
bool is_valid_utf8(std::string_view text);

// The member called `name` of object `object`, or nullptr.
const json_value* find_member(const json_value& object, std::string_view name);
json_value* find_member(json_value& object, std::string_view name);

inline std::string_view as_view(const json_value& string_value) {
  KEEL_ASSERT(string_value.IsString());
  return {string_value.GetString(), string_value.GetStringLength()};
}

}  // namespace keel::config::detail
