// convert.cc — typed values from the strings that flags and environment variables carry.
#include "convert.h"

#include <charconv>
#include <vector>

namespace keel::config::detail {
namespace {

status mismatch(std::string_view expected, std::string_view text) {
  json_value quoted(rapidjson::StringRef(text.data(), text.size()));
  return status(errc::invalid_argument,
                "expected " + std::string(expected) + ", got " + json_excerpt(quoted));
}

result<json_value> to_integer(std::string_view text) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  if (digits.empty() || digits.front() == '+') return mismatch("integer", text);
  std::int64_t number = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (error == std::errc::result_out_of_range) {
    json_value quoted(rapidjson::StringRef(text.data(), text.size()));
    return status(errc::invalid_argument,
                  json_excerpt(quoted) + " is out of range for a 64-bit integer");
  }
  if (error != std::errc() || end != digits.data() + digits.size()) return mismatch("integer", text);
  return json_value(static_cast<int64_t>(number));
}

result<json_value> to_number(std::string_view text) {
  // JSON's number grammar, so that a flag accepts exactly what keel.json accepts.
  json_document parsed;
  parsed.Parse(text.data(), text.size());
  if (parsed.HasParseError() || !parsed.IsNumber()) return mismatch("number", text);
  return json_value(parsed.GetDouble());
}

result<json_value> to_boolean(std::string_view text) {
  // Go's strconv.ParseBool, which etcd's boolean flags use.
  for (std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"})
    if (text == yes) return json_value(true);
  for (std::string_view no : {"0", "f", "F", "FALSE", "false", "False"})
    if (text == no) return json_value(false);
  return mismatch("boolean (true or false)", text);
}

result<json_value> to_json(std::string_view text, json_allocator& allocator) {
  json_document parsed(&allocator);
  parsed.Parse(text.data(), text.size());
  if (parsed.HasParseError()) return mismatch("JSON", text);
  json_value value;
  value.CopyFrom(parsed, allocator);
  return value;
}

result<json_value> convert_one(std::string_view text, std::string_view type,
                               const json_value& schema, json_allocator& allocator);

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

result<json_value> to_array(std::string_view text, const json_value& schema,
                            json_allocator& allocator) {
  json_value items(rapidjson::kArrayType);
  if (trim(text).empty()) return items;
  const json_value* item_schema = find_member(schema, "items");
  const bool typed_items = item_schema != nullptr && item_schema->IsObject();
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item =
        trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos
                                                                : comma - start));
    if (item.empty())
      return status(errc::invalid_argument, "empty item in the comma-separated list");
    result<json_value> converted = typed_items ? convert_text(item, *item_schema, allocator)
                                               : convert_one(item, "string", schema, allocator);
    if (!converted) {
      return status(errc::invalid_argument, "item " + std::to_string(items.Size()) + ": " +
                                                converted.error().message());
    }
    items.PushBack(std::move(converted.value()), allocator);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return items;
}

result<json_value> convert_one(std::string_view text, std::string_view type,
                               const json_value& schema, json_allocator& allocator) {
  if (type == "integer") return to_integer(text);
  if (type == "number") return to_number(text);
  if (type == "boolean") return to_boolean(text);
  if (type == "array") return to_array(text, schema, allocator);
  if (type == "string") {
    json_value value;
    value.SetString(text.data(), static_cast<rapidjson::SizeType>(text.size()), allocator);
    return value;
  }
  return to_json(text, allocator);
}

}  // namespace

result<json_value> convert_text(std::string_view text, const json_value& schema,
                                json_allocator& allocator) {
  // Files are checked for UTF-8 by the parser; flags and variables are checked here so
  // that everything in a config prints as valid JSON.
  if (!is_valid_utf8(text)) return status(errc::invalid_argument, "not valid UTF-8");
  const json_value* type = find_member(schema, "type");
  if (type != nullptr && type->IsString()) return convert_one(text, as_view(*type), schema, allocator);
  if (type != nullptr && type->IsArray() && !type->Empty()) {
    status first_failure;
    for (auto it = type->Begin(); it != type->End(); ++it) {
      if (!it->IsString()) continue;
      result<json_value> converted = convert_one(text, as_view(*it), schema, allocator);
      if (converted) return converted;
      if (first_failure.is_ok()) first_failure = converted.error();
    }
    if (!first_failure.is_ok()) return first_failure;
  }
  return to_json(text, allocator);
}

}  // namespace keel::config::detail
