// config.cc — read access to the effective configuration.
#include "config_impl.h"
#include "core_schema.h"

namespace keel::config {
namespace {

const detail::json_value& lookup(const detail::json_document& document, std::string_view pointer) {
  const rapidjson::Pointer parsed(pointer.data(), pointer.size());
  KEEL_ASSERT_MSG(parsed.IsValid(), "config: malformed JSON Pointer");
  const detail::json_value* value = parsed.Get(document);
  KEEL_ASSERT_MSG(value != nullptr, "config: no such key");
  return *value;
}

}  // namespace

config::config(std::unique_ptr<impl> state) : _impl(std::move(state)) {
  KEEL_ASSERT(_impl != nullptr && _impl->document.IsObject());
}

config::config(const config& other) : _impl(std::make_unique<impl>()) {
  _impl->document.CopyFrom(other._impl->document, _impl->document.GetAllocator());
}

config& config::operator=(const config& other) {
  if (this != &other) {
    auto copy = std::make_unique<impl>();
    copy->document.CopyFrom(other._impl->document, copy->document.GetAllocator());
    _impl = std::move(copy);
  }
  return *this;
}

config::config(config&& other) noexcept = default;
config& config::operator=(config&& other) noexcept = default;
config::~config() = default;

std::string config::get_string(std::string_view pointer) const {
  const detail::json_value& value = lookup(_impl->document, pointer);
  KEEL_ASSERT_MSG(value.IsString(), "config: key is not a string");
  return std::string(detail::as_view(value));
}

std::int64_t config::get_int(std::string_view pointer) const {
  const detail::json_value& value = lookup(_impl->document, pointer);
  KEEL_ASSERT_MSG(value.IsInt64(), "config: key is not a 64-bit integer");
  return value.GetInt64();
}

double config::get_number(std::string_view pointer) const {
  const detail::json_value& value = lookup(_impl->document, pointer);
  KEEL_ASSERT_MSG(value.IsNumber(), "config: key is not a number");
  return value.GetDouble();
}

bool config::get_bool(std::string_view pointer) const {
  const detail::json_value& value = lookup(_impl->document, pointer);
  KEEL_ASSERT_MSG(value.IsBool(), "config: key is not a boolean");
  return value.GetBool();
}

std::vector<std::string> config::get_strings(std::string_view pointer) const {
  const detail::json_value& value = lookup(_impl->document, pointer);
  KEEL_ASSERT_MSG(value.IsArray(), "config: key is not an array");
  std::vector<std::string> strings;
  strings.reserve(value.Size());
  for (auto it = value.Begin(); it != value.End(); ++it) {
    KEEL_ASSERT_MSG(it->IsString(), "config: array item is not a string");
    strings.emplace_back(detail::as_view(*it));
  }
  return strings;
}

bool config::has(std::string_view pointer) const {
  const rapidjson::Pointer parsed(pointer.data(), pointer.size());
  KEEL_ASSERT_MSG(parsed.IsValid(), "config: malformed JSON Pointer");
  return parsed.Get(_impl->document) != nullptr;
}

std::string config::section_json(std::string_view module) const {
  const detail::json_value* section = detail::find_member(_impl->document, module);
  KEEL_ASSERT_MSG(section != nullptr && section->IsObject(), "config: no such module section");
  return detail::json_text(*section, /*pretty=*/false);
}

std::string config::core_json() const {
  // The core keys are the core schema's properties; everything else is a module section.
  detail::json_document core_schema;
  const std::string_view schema_text = detail::core_schema_json();
  core_schema.Parse(schema_text.data(), schema_text.size());
  KEEL_ASSERT(!core_schema.HasParseError());
  const detail::json_value& properties = *detail::find_member(core_schema, "properties");
  detail::json_document core;
  core.SetObject();
  for (auto it = _impl->document.MemberBegin(); it != _impl->document.MemberEnd(); ++it) {
    if (detail::find_member(properties, detail::as_view(it->name)) == nullptr) continue;
    detail::json_value name(it->name, core.GetAllocator());
    detail::json_value value(it->value, core.GetAllocator());
    core.AddMember(name, value, core.GetAllocator());
  }
  return detail::json_text(core, /*pretty=*/false);
}

std::string config::to_json(bool pretty) const {
  std::string text = detail::json_text(_impl->document, pretty);
  if (pretty) text += '\n';
  return text;
}

std::string config::data_dir() const {
  std::string directory = get_string("/data-dir");
  if (directory.empty()) directory = get_string("/name") + ".keel";
  return directory;
}

}  // namespace keel::config
