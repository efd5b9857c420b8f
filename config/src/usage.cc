// usage.cc — --help, in the shape of Go's flag.PrintDefaults so etcd users feel at home:
//
//   --shards integer
//         Number of reactor shards ... (default 0, 0..64)
#include "usage.h"

namespace keel::config::detail {
namespace {

std::string type_word(const json_value& schema) {
  const json_value* type = find_member(schema, "type");
  if (type == nullptr) return "json";
  if (type->IsString()) {
    const std::string_view name = as_view(*type);
    if (name == "array") {
      const json_value* items = find_member(schema, "items");
      const json_value* item_type = items && items->IsObject() ? find_member(*items, "type") : nullptr;
      const std::string item = item_type && item_type->IsString() ? std::string(as_view(*item_type)) : "string";
      return item + "s";  // "strings", comma-separated
    }
    if (name == "boolean") return "";  // Go prints nothing for booleans
    return std::string(name);
  }
  return "json";
}

std::string default_text(const json_value& value) {
  if (value.IsString()) return json_excerpt(value, 200);
  if (value.IsArray()) {  // the way the flag would be written: a,b
    std::string joined;
    for (auto it = value.Begin(); it != value.End(); ++it) {
      if (!joined.empty()) joined += ",";
      joined += it->IsString() ? std::string(as_view(*it)) : json_excerpt(*it);
    }
    return joined.empty() ? "none" : joined;
  }
  return json_excerpt(value, 200);
}

std::string constraints(const json_value& schema) {
  std::string text;
  auto add = [&](const std::string& part) { text += (text.empty() ? "" : "; ") + part; };
  if (const json_value* choices = find_member(schema, "enum"); choices && choices->IsArray()) {
    std::string list;
    for (auto it = choices->Begin(); it != choices->End(); ++it)
      list += (list.empty() ? "" : ", ") + (it->IsString() ? std::string(as_view(*it)) : json_excerpt(*it));
    add("one of " + list);
  }
  const json_value* minimum = find_member(schema, "minimum");
  const json_value* maximum = find_member(schema, "maximum");
  if (minimum && maximum) {
    add(json_excerpt(*minimum) + ".." + json_excerpt(*maximum));
  } else if (minimum) {
    add(">= " + json_excerpt(*minimum));
  } else if (maximum) {
    add("<= " + json_excerpt(*maximum));
  }
  return text;
}

}  // namespace

std::string render_usage(std::string_view program, const schema_set& schemas) {
  std::string text = "Usage: " + std::string(program) + " [flags]\n\n"
      "Every flag --a.b-c is also the environment variable KEEL_A_B_C or ETCD_A_B_C\n"
      "(KEEL_ wins) and the key \"a\": {\"b-c\": ...} in keel.json.\n"
      "Precedence: flag > environment > config file > default.\n"
      "Flags may be written -name value, -name=value, --name value or --name=value;\n"
      "booleans may be bare (--enable-v2) or --enable-v2=false. Lists are comma-separated.\n\n"
      "Special flags:\n"
      "  -h, --help\n"
      "        Print this help and exit.\n"
      "  --version\n"
      "        Print the version and exit.\n"
      "  --print-config\n"
      "        Print the effective configuration as JSON and exit.\n"
      "  --config path, --config-file path\n"
      "        Read keel.json from path (env KEEL_CONFIG, KEEL_CONFIG_FILE, ETCD_CONFIG_FILE,\n"
      "        ETCD_CONFIG). Without one, only flags, environment and defaults apply.\n";
  std::string current_module = "-";
  for (const key_info& key : schemas.keys()) {
    if (key.module != current_module) {
      current_module = key.module;
      if (current_module.empty()) {
        text += "\nCore flags:\n";
      } else {
        text += "\nModule " + current_module + ":";
        const json_value* section = rapidjson::Pointer(("/properties/" + current_module).c_str()).Get(schemas.root());
        const json_value* about = section ? find_member(*section, "description") : nullptr;
        if (about != nullptr && about->IsString()) text += " " + std::string(as_view(*about));
        text += "\n";
      }
    }
    const json_value& schema = schemas.schema_of(key);
    const std::string type = type_word(schema);
    text += "  --" + key.flag + (type.empty() ? "" : " " + type) + "\n";
    const json_value* description = find_member(schema, "description");
    text += "        " + (description && description->IsString() ? std::string(as_view(*description)) : "");
    std::string notes;
    if (const json_value* fallback = find_member(schema, "default"))
      notes = "default " + default_text(*fallback);
    if (const std::string limits = constraints(schema); !limits.empty())
      notes += (notes.empty() ? "" : "; ") + limits;
    if (!notes.empty()) text += " (" + notes + ")";
    text += "\n";
  }
  return text;
}

}  // namespace keel::config::detail
