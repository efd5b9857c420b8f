// describe.cc — validation failures in words. One handle_<keyword>() per keyword group.
#include "describe.h"

#include <algorithm>
#include <vector>

namespace keel::config::detail {
namespace {

std::string pointer_text(const rapidjson::Pointer& pointer) {
  rapidjson::StringBuffer buffer;
  pointer.Stringify(buffer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// A value as it appears after "got": strings keep their quotes so "" is visible.
std::string got(const json_value* value) {
  if (value == nullptr) return "nothing";
  return std::string(json_type_name(*value)) + " " + json_excerpt(*value);
}

// A schema value as a bound or list item: bare strings, JSON for everything else.
std::string bare(const json_value& value) {
  if (value.IsString()) return std::string(as_view(value));
  return json_excerpt(value);
}

std::string last_token(std::string_view pointer) {
  const std::size_t slash = pointer.rfind('/');
  std::string token(pointer.substr(slash == std::string_view::npos ? 0 : slash + 1));
  // Unescape ~1 then ~0, in that order (RFC 6901 §4).
  for (std::size_t at = token.find("~1"); at != std::string::npos; at = token.find("~1", at))
    token.replace(at, 2, "/");
  for (std::size_t at = token.find("~0"); at != std::string::npos; at = token.find("~0", at + 1))
    token.replace(at, 2, "~");
  return token;
}

std::vector<std::string> property_names(const json_value& schema) {
  std::vector<std::string> names;
  const json_value* properties = find_member(schema, "properties");
  if (properties == nullptr || !properties->IsObject()) return names;
  for (auto it = properties->MemberBegin(); it != properties->MemberEnd(); ++it)
    names.emplace_back(as_view(it->name));
  return names;
}

std::string handle_type(const json_value& schema, const json_value* value) {
  std::string expected;
  const json_value* type = find_member(schema, "type");
  if (type != nullptr && type->IsString()) {
    expected = as_view(*type);
  } else if (type != nullptr && type->IsArray()) {
    for (auto it = type->Begin(); it != type->End(); ++it) {
      if (!expected.empty()) expected += " or ";
      expected += bare(*it);
    }
  }
  return "expected " + expected + ", got " + got(value);
}

std::string handle_enum(const json_value& schema, const json_value* value) {
  std::string choices;
  const json_value* values = find_member(schema, "enum");
  if (values != nullptr && values->IsArray()) {
    for (auto it = values->Begin(); it != values->End(); ++it) {
      if (!choices.empty()) choices += ", ";
      choices += bare(*it);
    }
  }
  return "must be one of " + choices + ", got " + (value ? json_excerpt(*value) : "nothing");
}

std::string handle_bound(const json_value& schema, std::string_view keyword,
                         const json_value* value) {
  const bool minimum = keyword == "minimum";
  const json_value* exclusive = find_member(schema, minimum ? "exclusiveMinimum" : "exclusiveMaximum");
  const bool strict = exclusive != nullptr && exclusive->IsTrue();
  const json_value* bound = find_member(schema, minimum ? "minimum" : "maximum");
  std::string relation = minimum ? (strict ? ">" : ">=") : (strict ? "<" : "<=");
  return "must be " + relation + " " + (bound ? bare(*bound) : "?") + ", got " +
         (value ? json_excerpt(*value) : "nothing");
}

std::string handle_count(const json_value& schema, std::string_view keyword,
                         const json_value* value) {
  const json_value* bound = find_member(schema, keyword);
  const std::string count = bound ? bare(*bound) : "?";
  const std::string_view least = keyword.substr(0, 3) == "min" ? "at least " : "at most ";
  std::string unit = "items";
  if (keyword.ends_with("Length")) unit = "characters";
  if (keyword.ends_with("Properties")) unit = "keys";
  return "must have " + std::string(least) + count + " " + unit + ", got " + got(value);
}

std::string handle_required(const json_value& schema, const json_value* value) {
  const json_value* required = find_member(schema, "required");
  if (required != nullptr && required->IsArray() && value != nullptr && value->IsObject()) {
    for (auto it = required->Begin(); it != required->End(); ++it) {
      if (it->IsString() && find_member(*value, as_view(*it)) == nullptr)
        return "missing required key \"" + std::string(as_view(*it)) + "\"";
    }
  }
  return "missing a required key";
}

std::string describe(const json_value& schema, std::string_view keyword, const std::string& pointer,
                     const json_value* value) {
  if (keyword == "type") return handle_type(schema, value);
  if (keyword == "enum") return handle_enum(schema, value);
  if (keyword == "minimum" || keyword == "maximum") return handle_bound(schema, keyword, value);
  if (keyword == "minLength" || keyword == "maxLength" || keyword == "minItems" ||
      keyword == "maxItems" || keyword == "minProperties" || keyword == "maxProperties")
    return handle_count(schema, keyword, value);
  if (keyword == "required") return handle_required(schema, value);
  if (keyword == "additionalProperties") {
    const std::string key = last_token(pointer);
    std::string text = "unknown key \"" + key + "\"";
    const std::string near = closest_name(key, property_names(schema));
    if (!near.empty()) text += " (did you mean \"" + near + "\"?)";
    return text;
  }
  if (keyword == "uniqueItems") return "duplicate item " + (value ? json_excerpt(*value) : "");
  if (keyword == "pattern") {
    const json_value* pattern = find_member(schema, "pattern");
    return "must match " + (pattern ? bare(*pattern) : std::string("its pattern")) + ", got " +
           got(value);
  }
  if (keyword == "multipleOf") {
    const json_value* factor = find_member(schema, "multipleOf");
    return "must be a multiple of " + (factor ? bare(*factor) : "?") + ", got " + got(value);
  }
  if (keyword == "additionalItems") return "too many items";
  if (keyword == "dependencies") return "a key is present without the keys it depends on";
  if (keyword == "not") return "must not match the schema under \"not\", got " + got(value);
  return "does not satisfy \"" + std::string(keyword) + "\" of its schema, got " + got(value);
}

}  // namespace

std::optional<validation_failure> validate(const rapidjson::SchemaDocument& schema,
                                           const json_value& schema_root,
                                           const json_value& instance) {
  rapidjson::SchemaValidator validator(schema);
  if (instance.Accept(validator)) return std::nullopt;

  validation_failure failure;
  failure.pointer = pointer_text(validator.GetInvalidDocumentPointer());
  const json_value* subschema = validator.GetInvalidSchemaPointer().Get(schema_root);
  KEEL_ASSERT(subschema != nullptr && subschema->IsObject());
  const json_value* value = validator.GetInvalidDocumentPointer().Get(instance);
  failure.text = describe(*subschema, validator.GetInvalidSchemaKeyword(), failure.pointer, value);
  return failure;
}

std::string closest_name(std::string_view word, const std::vector<std::string>& candidates) {
  // Levenshtein distance with one row; names are short.
  auto distance = [](std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
      std::size_t diagonal = row[0];
      row[0] = i;
      for (std::size_t j = 1; j <= b.size(); ++j) {
        const std::size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diagonal = above;
      }
    }
    return row[b.size()];
  };
  if (word.size() > 64) return {};
  std::string best;
  std::size_t best_distance = 3;
  for (const std::string& candidate : candidates) {
    const std::size_t d = distance(word, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

}  // namespace keel::config::detail
