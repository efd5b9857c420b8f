// schema_set.cc — assembling and checking the schema.
#include "schema_set.h"

#include <algorithm>
#include <functional>

#include "core_schema.h"
#include "describe.h"
#include "file_source.h"
#include "keel/limits.h"

namespace keel::config::detail {
namespace {

bool is_module_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() < 'a' || name.front() > 'z') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// Property names become flag and environment names, so they are restricted.
bool is_property_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '_' || name.front() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool has_properties(const json_value& schema) {
  const json_value* properties = find_member(schema, "properties");
  return properties != nullptr && properties->IsObject();
}

// Calls `visit(subschema, pointer)` for `schema` and every schema nested in it through the
// draft-04 keywords that hold schemas.
void for_each_schema(const json_value& schema, const std::string& pointer,
                     const std::function<void(const json_value&, const std::string&)>& visit) {
  if (!schema.IsObject()) return;
  visit(schema, pointer);
  for (const char* keyword : {"properties", "patternProperties", "definitions", "dependencies"}) {
    const json_value* map = find_member(schema, keyword);
    if (map == nullptr || !map->IsObject()) continue;
    for (auto it = map->MemberBegin(); it != map->MemberEnd(); ++it)
      for_each_schema(it->value, pointer + "/" + keyword + "/" + escape_pointer_token(as_view(it->name)), visit);
  }
  for (const char* keyword : {"additionalProperties", "additionalItems", "not", "items"}) {
    const json_value* sub = find_member(schema, keyword);
    if (sub != nullptr) for_each_schema(*sub, pointer + "/" + keyword, visit);
  }
  for (const char* keyword : {"allOf", "anyOf", "oneOf", "items"}) {
    const json_value* list = find_member(schema, keyword);
    if (list == nullptr || !list->IsArray()) continue;
    for (rapidjson::SizeType i = 0; i < list->Size(); ++i)
      for_each_schema((*list)[i], pointer + "/" + keyword + "/" + std::to_string(i), visit);
  }
}

// rapidjson 1.1's regex parser asserts instead of failing on an unclosed '(' (it
// evaluates the leftover parenthesis as an operator), and our RAPIDJSON_ASSERT is
// KEEL_ASSERT. So parentheses are counted here first, skipping escapes and classes.
bool parentheses_balanced(std::string_view pattern) {
  int depth = 0;
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;
    } else if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && --depth < 0) {
      return false;
    }
  }
  return depth == 0 && !in_class;
}

bool valid_regex(std::string_view pattern) {
  if (!parentheses_balanced(pattern) || pattern.find('\0') != std::string_view::npos) return false;
  const std::string source(pattern);
  rapidjson::internal::Regex regex(source.c_str());
  return regex.IsValid();
}

// keel's rules on top of the meta-schema: flags need named, described leaves; unknown
// keys must be errors; "$ref" would resolve against the assembled root, not the module's.
status check_keel_rules(const json_value& schema, const std::string& where) {
  status failure;
  for_each_schema(schema, "", [&](const json_value& sub, const std::string& pointer) {
    if (!failure.is_ok()) return;
    const std::string at = where + ": " + display_pointer(pointer) + ": ";
    if (find_member(sub, "$ref") != nullptr) {
      failure = status(errc::invalid_argument, at + "\"$ref\" is not supported in a section schema");
    } else if (const json_value* pattern = find_member(sub, "pattern");
               pattern != nullptr && !valid_regex(as_view(*pattern))) {
      failure = status(errc::invalid_argument, at + "pattern " + json_excerpt(*pattern) +
                                                   " is not a valid rapidjson regex");
    } else if (const json_value* patterns = find_member(sub, "patternProperties")) {
      for (auto it = patterns->MemberBegin(); it != patterns->MemberEnd(); ++it)
        if (!valid_regex(as_view(it->name)) && failure.is_ok())
          failure = status(errc::invalid_argument, at + "patternProperties key \"" +
                                                       std::string(as_view(it->name)) +
                                                       "\" is not a valid rapidjson regex");
    }
  });
  if (!failure.is_ok()) return failure;

  // The object schemas along "properties" chains: the section and its nested objects.
  std::function<status(const json_value&, const std::string&)> check_object =
      [&](const json_value& object, const std::string& pointer) -> status {
    const std::string at = where + ": " + display_pointer(pointer) + ": ";
    const json_value* type = find_member(object, "type");
    if (type == nullptr || !type->IsString() || as_view(*type) != "object")
      return status(errc::invalid_argument, at + "must have \"type\": \"object\"");
    const json_value* additional = find_member(object, "additionalProperties");
    if (additional == nullptr || !additional->IsFalse())
      return status(errc::invalid_argument, at + "must have \"additionalProperties\": false");
    if (!has_properties(object))
      return status(errc::invalid_argument, at + "must have \"properties\"");
    const json_value& properties = *find_member(object, "properties");
    for (auto it = properties.MemberBegin(); it != properties.MemberEnd(); ++it) {
      const std::string_view name = as_view(it->name);
      const std::string child = pointer + "/properties/" + escape_pointer_token(name);
      if (!is_property_name(name))
        return status(errc::invalid_argument, where + ": " + child +
                                                  ": property names must match ^[a-z0-9][a-z0-9_-]*$");
      const json_value* description = find_member(it->value, "description");
      if (description == nullptr || !description->IsString() || description->GetStringLength() == 0)
        return status(errc::invalid_argument, where + ": " + child + ": needs a \"description\"");
      if (has_properties(it->value)) {
        if (status nested = check_object(it->value, child); !nested) return nested;
      }
    }
    return status::ok();
  };
  return check_object(schema, "");
}

void collect_keys(const json_value& schema, const std::string& pointer, const std::string& flag,
                  const std::string& schema_pointer, const std::string& module,
                  std::vector<key_info>& keys) {
  const json_value& properties = *find_member(schema, "properties");
  for (auto it = properties.MemberBegin(); it != properties.MemberEnd(); ++it) {
    const std::string_view name = as_view(it->name);
    const std::string token = escape_pointer_token(name);
    key_info key{pointer + "/" + token, flag.empty() ? std::string(name) : flag + "." + std::string(name),
                 "", module, schema_pointer + "/properties/" + token};
    if (has_properties(it->value)) {
      collect_keys(it->value, key.pointer, key.flag, key.schema_pointer,
                   module.empty() ? std::string(name) : module, keys);
    } else {
      key.env_suffix = env_suffix_of(key.flag);
      keys.push_back(std::move(key));
    }
  }
}

}  // namespace

std::string env_suffix_of(std::string_view flag) {
  std::string suffix;
  suffix.reserve(flag.size());
  for (char c : flag) {
    if (c == '-' || c == '.') {
      suffix += '_';
    } else if (c >= 'a' && c <= 'z') {
      suffix += static_cast<char>(c - 'a' + 'A');
    } else {
      suffix += c;
    }
  }
  return suffix;
}

schema_set::schema_set() {
  _root.Parse(core_schema_json().data(), core_schema_json().size());
  KEEL_ASSERT_MSG(!_root.HasParseError() && has_properties(_root), "core_schema.cc is not valid");
  const json_value& properties = *find_member(_root, "properties");
  for (auto it = properties.MemberBegin(); it != properties.MemberEnd(); ++it)
    _core_names.emplace_back(as_view(it->name));
  rebuild();
}

void schema_set::rebuild() {
  _keys.clear();
  collect_keys(_root, "", "", "", "", _keys);
  _compiled = std::make_unique<rapidjson::SchemaDocument>(_root);
}

status schema_set::add_section(std::string_view module, std::string_view schema_text) {
  const std::string where = "schema of module " + std::string(module);
  if (!is_module_name(module))
    return status(errc::invalid_argument, where + ": the name must match ^[a-z][a-z0-9_-]*$");
  if (is_core_property(module))
    return status(errc::invalid_argument, where + ": \"" + std::string(module) +
                                              "\" is a core key and cannot name a section");
  if (has_section(module)) return status(errc::already_exists, where + ": already added");
  if (_sections.size() >= limits::modules_max)
    return status(errc::too_large, where + ": more than " + std::to_string(limits::modules_max) +
                                       " sections");

  // 1. JSON. parse_config_text gives line:column, duplicate keys and the depth bound.
  parsed_file parsed;
  if (status syntax = parse_config_text(schema_text, where, parsed); !syntax) return syntax;
  const json_value& section = parsed.document;

  // 2. The draft-04 meta-schema, then keel's own rules.
  json_document meta;
  meta.Parse(meta_schema_json().data(), meta_schema_json().size());
  KEEL_ASSERT(!meta.HasParseError());
  const rapidjson::SchemaDocument meta_compiled(meta);
  if (auto failure = validate(meta_compiled, meta, section))
    return status(errc::invalid_argument, where + ": " + display_pointer(failure->pointer) + ": " + failure->text);
  if (status rules = check_keel_rules(section, where); !rules) return rules;

  // 3. Its defaults must satisfy it: a section left out of keel.json gets exactly them.
  json_document defaults;
  defaults.SetObject();
  std::vector<std::string> filled;
  fill_defaults(section, defaults, defaults.GetAllocator(), "", filled);
  const rapidjson::SchemaDocument section_compiled(section);
  if (auto failure = validate(section_compiled, section, defaults))
    return status(errc::invalid_argument, where + ": default of /" + std::string(module) +
                                              failure->pointer + ": " + failure->text);

  // 4. No two keys may share an environment name (echo.a-b vs echo.a_b, or a section
  //    key shadowing a core key such as data.dir vs data-dir).
  std::vector<key_info> added;
  collect_keys(section, "/" + std::string(module), std::string(module),
               "/properties/" + std::string(module), std::string(module), added);
  for (const key_info& key : added) {
    for (const key_info& other : _keys) {
      if (other.env_suffix == key.env_suffix)
        return status(errc::invalid_argument, where + ": key " + key.pointer +
                                                  " and key " + other.pointer +
                                                  " would share the environment variable KEEL_" +
                                                  key.env_suffix);
    }
    for (const key_info& other : added) {
      if (&other != &key && other.env_suffix == key.env_suffix)
        return status(errc::invalid_argument, where + ": keys " + key.pointer + " and " +
                                                  other.pointer + " would share KEEL_" + key.env_suffix);
    }
  }

  json_value name(module.data(), static_cast<rapidjson::SizeType>(module.size()), _root.GetAllocator());
  json_value copy(section, _root.GetAllocator());
  find_member(_root, "properties")->AddMember(name, copy, _root.GetAllocator());
  _sections.emplace_back(module);
  rebuild();
  return status::ok();
}

const key_info* schema_set::find_flag(std::string_view flag) const {
  for (const key_info& key : _keys)
    if (key.flag == flag) return &key;
  return nullptr;
}

const key_info* schema_set::find_env(std::string_view env_suffix) const {
  for (const key_info& key : _keys)
    if (key.env_suffix == env_suffix) return &key;
  return nullptr;
}

const json_value& schema_set::schema_of(const key_info& key) const {
  const json_value* schema = rapidjson::Pointer(key.schema_pointer.c_str()).Get(_root);
  KEEL_ASSERT(schema != nullptr && schema->IsObject());
  return *schema;
}

bool schema_set::is_core_property(std::string_view name) const {
  return std::find(_core_names.begin(), _core_names.end(), name) != _core_names.end();
}

bool schema_set::has_section(std::string_view module) const {
  return std::find(_sections.begin(), _sections.end(), module) != _sections.end();
}

void fill_defaults(const json_value& schema, json_value& instance, json_allocator& allocator,
                   const std::string& pointer, std::vector<std::string>& filled) {
  if (!instance.IsObject() || !has_properties(schema)) return;
  const json_value& properties = *find_member(schema, "properties");
  for (auto it = properties.MemberBegin(); it != properties.MemberEnd(); ++it) {
    const std::string child = pointer + "/" + escape_pointer_token(as_view(it->name));
    if (json_value* present = find_member(instance, as_view(it->name))) {
      fill_defaults(it->value, *present, allocator, child, filled);
      continue;
    }
    const json_value* fallback = it->value.IsObject() ? find_member(it->value, "default") : nullptr;
    if (fallback != nullptr) {
      instance.AddMember(json_value(it->name, allocator), json_value(*fallback, allocator), allocator);
      filled.push_back(child);
    } else if (has_properties(it->value)) {
      instance.AddMember(json_value(it->name, allocator), json_value(rapidjson::kObjectType), allocator);
      filled.push_back(child);
      fill_defaults(it->value, *find_member(instance, as_view(it->name)), allocator, child, filled);
    }
  }
}

void order_like_schema(const json_value& schema, json_value& instance, json_allocator& allocator) {
  if (!instance.IsObject() || !has_properties(schema)) return;
  const json_value& properties = *find_member(schema, "properties");
  json_value ordered(rapidjson::kObjectType);
  for (auto it = properties.MemberBegin(); it != properties.MemberEnd(); ++it) {
    json_value* present = find_member(instance, as_view(it->name));
    if (present == nullptr) continue;
    order_like_schema(it->value, *present, allocator);
    ordered.AddMember(json_value(it->name, allocator), *present, allocator);  // moves
    instance.RemoveMember(it->name);
  }
  // By index: comparing non-const rapidjson member iterators is ambiguous in C++20.
  for (rapidjson::SizeType i = 0; i < instance.MemberCount(); ++i) {
    auto& member = instance.MemberBegin()[i];
    ordered.AddMember(member.name, member.value, allocator);
  }
  instance = ordered;  // move
}

}  // namespace keel::config::detail
