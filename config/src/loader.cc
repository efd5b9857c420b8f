// loader.cc — gathering flags, environment and keel.json, then merging and validating.
//
// Why flags are parsed twice: collect() runs before the modules are loaded, so it cannot
// know whether --echo.verbose is a boolean (takes no value) or a string (takes the next
// argument). It parses leniently — an unknown dotted flag takes the next argument unless
// that starts with '-' — to learn the core keys (--modules, --config, --help). finish()
// parses again with every schema known, Go-flag exact, and insists the core keys read
// the same both times; if not, the user is told to write --flag=value.
#include <algorithm>
#include <map>
#include <optional>

#include "config_impl.h"
#include "convert.h"
#include "describe.h"
#include "file_source.h"
#include "keel/cluster.h"
#include "schema_set.h"
#include "usage.h"

namespace keel::config {
namespace {

using detail::json_allocator;
using detail::json_document;
using detail::json_value;
using detail::key_info;
using detail::schema_set;

// One value from a flag or an environment variable, still text.
struct setting {
  std::string flag;    // the key's flag name: "echo.prefix"
  std::string text;
  std::string origin;  // "flag --echo.prefix", "env KEEL_ECHO_PREFIX"

  bool operator==(const setting&) const = default;
};

struct parsed_flags {
  std::vector<setting> settings;  // in command-line order; later ones win
  action requested = action::run;
  std::optional<std::string> config_path;

  bool same_core(const parsed_flags& other, const schema_set& schemas) const;
};

// An ETCD_ or KEEL_ variable that is not on the allow-list.
struct env_variable {
  std::string name;    // "ETCD_DATA_DIR"
  std::string suffix;  // "DATA_DIR"
  std::string value;
  bool is_keel;        // KEEL_ wins over ETCD_
};

status invalid(std::string message) { return status(errc::invalid_argument, std::move(message)); }

// etcd's embed.maxElectionMs: a longer election timeout is refused.
constexpr std::int64_t election_timeout_ms_max = 50000;

std::string quoted(std::string_view text) {
  json_value value(rapidjson::StringRef(text.data(), text.size()));
  return detail::json_excerpt(value);
}

bool parse_go_bool(std::string_view text, bool& out) {
  for (std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"})
    if (text == yes) return (out = true);
  for (std::string_view no : {"0", "f", "F", "FALSE", "false", "False"})
    if (text == no) return !(out = false);
  return false;
}

bool parsed_flags::same_core(const parsed_flags& other, const schema_set& schemas) const {
  auto core = [&](const parsed_flags& flags) {
    std::vector<setting> kept;
    for (const setting& s : flags.settings) {
      const key_info* key = schemas.find_flag(s.flag);
      if (key != nullptr && key->module.empty()) kept.push_back(s);
    }
    return kept;
  };
  return requested == other.requested && config_path == other.config_path &&
         core(*this) == core(other);
}

// Go's flag package rules: -name and --name are the same; "--" ends the flags; a
// boolean takes no separate argument (--enable-v2=false, not --enable-v2 false); any
// other flag takes the next argument whatever it looks like.
class flag_parser {
 public:
  flag_parser(const std::vector<std::string>& arguments, const schema_set& schemas, bool lenient)
      : _arguments(arguments), _schemas(schemas), _lenient(lenient) {}

  status parse(parsed_flags& out) {
    while (_next < _arguments.size()) {
      const std::string& argument = _arguments[_next++];
      if (argument == "--") {
        if (_next < _arguments.size()) return positional(_arguments[_next]);
        break;
      }
      if (argument.size() < 2 || argument[0] != '-') return positional(argument);
      if (status s = handle_flag(argument, out); !s) return s;
    }
    return status::ok();
  }

 private:
  status positional(const std::string& argument) const {
    std::string text = "unexpected argument " + quoted(argument) + ": keeld takes flags only";
    if (!_last_bare_boolean.empty())
      text += " (a boolean flag takes no separate value: write --" + _last_bare_boolean + "=" +
              argument + ")";
    return invalid(std::move(text));
  }

  status handle_flag(const std::string& argument, parsed_flags& out) {
    const std::size_t dashes = argument[1] == '-' ? 2 : 1;
    std::string name = argument.substr(dashes);
    if (name.empty() || name[0] == '-' || name[0] == '=')
      return invalid("bad flag syntax: " + argument);
    std::optional<std::string> value;
    if (const std::size_t equals = name.find('='); equals != std::string::npos) {
      value = name.substr(equals + 1);
      name.resize(equals);
    }
    _last_bare_boolean.clear();

    if (name == "help" || name == "h") return handle_special_bool(name, value, action::help, out);
    if (name == "version") return handle_special_bool(name, value, action::version, out);
    if (name == "print-config") return handle_special_bool(name, value, action::print_config, out);
    if (name == "config" || name == "config-file") {
      if (!value && !take_next(value)) return invalid("flag needs an argument: --" + name);
      out.config_path = *value;
      return status::ok();
    }

    const key_info* key = _schemas.find_flag(name);
    if (key == nullptr) {
      if (_lenient && name.find('.') != std::string::npos) {
        // Possibly a module's flag; judged by finish(). Guess whether it has a value.
        if (!value && _next < _arguments.size() && !_arguments[_next].starts_with("-")) ++_next;
        return status::ok();
      }
      return unknown_flag(name);
    }
    const json_value* type = detail::find_member(_schemas.schema_of(*key), "type");
    const bool is_boolean = type != nullptr && type->IsString() && detail::as_view(*type) == "boolean";
    if (!value && is_boolean) {
      value = "true";
      _last_bare_boolean = name;
    }
    if (!value && !take_next(value)) return invalid("flag needs an argument: --" + name);
    out.settings.push_back(setting{key->flag, *value, "flag --" + name});
    return status::ok();
  }

  status handle_special_bool(const std::string& name, const std::optional<std::string>& value,
                             action wanted, parsed_flags& out) {
    bool on = true;
    if (value && !parse_go_bool(*value, on))
      return invalid("flag --" + name + ": expected boolean (true or false), got " + quoted(*value));
    // help > version > print_config > run: the enum is ordered the other way round.
    auto rank = [](action a) {
      switch (a) {
        case action::help: return 3;
        case action::version: return 2;
        case action::print_config: return 1;
        case action::run: return 0;
      }
      return 0;
    };
    if (on && rank(wanted) > rank(out.requested)) out.requested = wanted;
    if (!value) _last_bare_boolean = name;
    return status::ok();
  }

  status unknown_flag(const std::string& name) const {
    std::string text = "unknown flag: --" + name;
    if (const std::size_t dot = name.find('.'); dot != std::string::npos) {
      const std::string section = name.substr(0, dot);
      if (!_schemas.has_section(section))
        return invalid(text + " (no module section \"" + section + "\" is loaded)");
    }
    std::vector<std::string> names;
    for (const key_info& key : _schemas.keys()) names.push_back(key.flag);
    if (const std::string near = detail::closest_name(name, names); !near.empty())
      text += " (did you mean --" + near + "?)";
    return invalid(std::move(text));
  }

  bool take_next(std::optional<std::string>& value) {
    if (_next >= _arguments.size()) return false;
    value = _arguments[_next++];
    return true;
  }

  const std::vector<std::string>& _arguments;
  const schema_set& _schemas;
  const bool _lenient;
  std::size_t _next = 0;
  std::string _last_bare_boolean;  // the previous flag, if it was a bare boolean
};

// Variables that start like config variables but are not config.
bool allow_listed(std::string_view name) {
  return name.starts_with("KEEL_TEST_") || name == "ETCD_UNSUPPORTED_ARCH";
}

// JSON Pointer prefixes of `pointer`, longest first: "/a/b", "/a", "".
std::vector<std::string> prefixes(std::string pointer) {
  std::vector<std::string> all;
  for (;;) {
    all.push_back(pointer);
    if (pointer.empty()) break;
    pointer.resize(pointer.rfind('/'));
  }
  return all;
}

}  // namespace

struct loader::impl {
  schema_set schemas;
  bool collected = false;
  std::vector<std::string> arguments;       // argv[1..]
  std::vector<env_variable> environment;    // ETCD_ ones first, then KEEL_ ones
  std::optional<std::string> env_config_path;
  std::string env_config_origin;
  parsed_flags early;                       // collect()'s lenient parse
  std::optional<detail::parsed_file> file;

  status read_file(const std::string& path);
  std::optional<setting> latest_setting(const parsed_flags& flags, const key_info& key) const;
  std::optional<setting> latest_env(const key_info& key) const;
  status apply(const setting& value, json_document& merged, std::map<std::string, std::string>& origins) const;
  status check_sections(const json_value& merged) const;
  status check_values(const json_value& merged, const std::map<std::string, std::string>& origins) const;
  status check_initial_cluster(const json_value& merged, const std::map<std::string, std::string>& origins) const;
  status check_bootstrap_flags(const json_value& merged, const std::map<std::string, std::string>& origins) const;
  status check_election_timeout(const json_value& merged, const std::map<std::string, std::string>& origins) const;
  static std::string origin_of(const std::map<std::string, std::string>& origins, const std::string& pointer);
};

loader::loader() : _impl(std::make_unique<impl>()) {}
loader::~loader() = default;

status loader::impl::read_file(const std::string& path) {
  std::string text;
  if (status s = detail::read_config_file(path, text); !s) return s;
  detail::parsed_file parsed;
  if (status s = detail::parse_config_text(text, path, parsed); !s) return s;
  file = std::move(parsed);
  return status::ok();
}

status loader::collect(int argc, const char* const* argv, const char* const* envp) {
  KEEL_ASSERT_MSG(!_impl->collected, "loader::collect() called twice");
  KEEL_ASSERT(argc >= 0);
  _impl->collected = true;
  for (int i = 1; i < argc; ++i) _impl->arguments.emplace_back(argv[i]);

  // Environment. The config-file variables, by precedence (lowest rank wins).
  std::map<int, std::pair<std::string, std::string>> config_candidates;
  const std::vector<std::string_view> config_names = {"KEEL_CONFIG", "KEEL_CONFIG_FILE",
                                                      "ETCD_CONFIG_FILE", "ETCD_CONFIG"};
  std::vector<env_variable> keel_variables;
  for (const char* const* entry = envp; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    const std::string_view name = text.substr(0, equals);
    const std::string_view value = text.substr(equals + 1);
    const bool is_keel = name.starts_with("KEEL_");
    // ETCDCTL_API and friends start with "ETCDCTL", not "ETCD_", and fall through here.
    if (!is_keel && !name.starts_with("ETCD_")) continue;
    if (allow_listed(name)) continue;
    if (auto it = std::find(config_names.begin(), config_names.end(), name); it != config_names.end()) {
      if (!value.empty())
        config_candidates[static_cast<int>(it - config_names.begin())] = {std::string(name), std::string(value)};
      continue;
    }
    env_variable variable{std::string(name), std::string(name.substr(5)), std::string(value), is_keel};
    (is_keel ? keel_variables : _impl->environment).push_back(std::move(variable));
  }
  for (env_variable& variable : keel_variables) _impl->environment.push_back(std::move(variable));
  if (!config_candidates.empty()) {
    _impl->env_config_origin = "env " + config_candidates.begin()->second.first;
    _impl->env_config_path = config_candidates.begin()->second.second;
  }

  // Flags.
  flag_parser parser(_impl->arguments, _impl->schemas, /*lenient=*/true);
  if (status s = parser.parse(_impl->early); !s) return s;

  // The file: a flag names it, else the environment, else there is none.
  if (_impl->early.config_path) {
    if (_impl->early.config_path->empty()) return invalid("flag --config: empty path");
    return _impl->read_file(*_impl->early.config_path);
  }
  if (_impl->env_config_path) return _impl->read_file(*_impl->env_config_path);
  return status::ok();
}

status loader::collect_file_text(std::string_view json_text, std::string_view file_name) {
  detail::parsed_file parsed;
  if (status s = detail::parse_config_text(json_text, file_name, parsed); !s) return s;
  _impl->file = std::move(parsed);
  return status::ok();
}

action loader::requested_action() const { return _impl->early.requested; }

std::optional<setting> loader::impl::latest_setting(const parsed_flags& flags, const key_info& key) const {
  for (auto it = flags.settings.rbegin(); it != flags.settings.rend(); ++it)
    if (it->flag == key.flag) return *it;
  return std::nullopt;
}

std::optional<setting> loader::impl::latest_env(const key_info& key) const {
  // `environment` holds ETCD_ variables before KEEL_ ones, so the last match wins.
  for (auto it = environment.rbegin(); it != environment.rend(); ++it)
    if (it->suffix == key.env_suffix) return setting{key.flag, it->value, "env " + it->name};
  return std::nullopt;
}

result<std::vector<std::string>> loader::modules() const { return early_strings("modules"); }

result<std::vector<std::string>> loader::module_path() const { return early_strings("module-path"); }

result<std::vector<std::string>> loader::early_strings(std::string_view name) const {
  const std::string pointer = "/" + std::string(name);
  const key_info* key = _impl->schemas.find_flag(name);
  KEEL_ASSERT(key != nullptr);
  const json_value& schema = _impl->schemas.schema_of(*key);
  json_document value;
  std::string origin = "default";
  std::optional<setting> given = _impl->latest_setting(_impl->early, *key);
  if (!given) given = _impl->latest_env(*key);
  if (given) {
    origin = given->origin;
    result<json_value> converted = detail::convert_text(given->text, schema, value.GetAllocator());
    if (!converted) return invalid(origin + ": " + pointer + ": " + converted.error().message());
    static_cast<json_value&>(value) = converted.value();
  } else if (const json_value* in_file = _impl->file ? detail::find_member(_impl->file->document, name) : nullptr) {
    origin = _impl->file->name + ":" + std::to_string(_impl->file->lines.at(pointer));
    value.CopyFrom(*in_file, value.GetAllocator());
  } else {
    value.CopyFrom(*detail::find_member(schema, "default"), value.GetAllocator());
  }
  const rapidjson::SchemaDocument compiled(schema);
  if (auto failure = detail::validate(compiled, schema, value))
    return invalid(origin + ": " + pointer + failure->pointer + ": " + failure->text);
  std::vector<std::string> names;
  for (auto it = value.Begin(); it != value.End(); ++it) names.emplace_back(detail::as_view(*it));
  return names;
}

status loader::add_section_schema(std::string_view module, std::string_view schema_json) {
  return _impl->schemas.add_section(module, schema_json);
}

std::string loader::impl::origin_of(const std::map<std::string, std::string>& origins,
                                    const std::string& pointer) {
  for (const std::string& prefix : prefixes(pointer))
    if (auto it = origins.find(prefix); it != origins.end()) return it->second;
  return "default";
}

status loader::impl::apply(const setting& value, json_document& merged,
                           std::map<std::string, std::string>& origins) const {
  const key_info* key = schemas.find_flag(value.flag);
  KEEL_ASSERT(key != nullptr);
  result<json_value> converted =
      detail::convert_text(value.text, schemas.schema_of(*key), merged.GetAllocator());
  if (!converted) return invalid(value.origin + ": " + key->pointer + ": " + converted.error().message());
  // Pointer::Set makes missing (or non-object) parents objects: the higher-precedence
  // source replaces whatever the file had there.
  rapidjson::Pointer(key->pointer.c_str()).Set(merged, converted.value());
  const std::string below = key->pointer + "/";
  for (auto it = origins.lower_bound(below); it != origins.end() && it->first.starts_with(below);)
    it = origins.erase(it);
  origins[key->pointer] = value.origin;
  return status::ok();
}

// A file section for a module that is not loaded gets a specific message instead of the
// validator's "unknown key".
status loader::impl::check_sections(const json_value& merged) const {
  if (!file) return status::ok();
  const json_value& document = file->document;
  for (auto it = document.MemberBegin(); it != document.MemberEnd(); ++it) {
    const std::string name(detail::as_view(it->name));
    if (schemas.is_core_property(name) || schemas.has_section(name) || !it->value.IsObject()) continue;
    const std::string where = file->name + ":" +
                              std::to_string(file->lines.at("/" + detail::escape_pointer_token(name)));
    bool listed = false;
    if (const json_value* modules = detail::find_member(merged, "modules"); modules && modules->IsArray())
      for (auto m = modules->Begin(); m != modules->End(); ++m)
        listed = listed || (m->IsString() && detail::as_view(*m) == name);
    if (listed)
      return invalid(where + ": /" + name + ": section \"" + name + "\" given but module " + name +
                     " declares no configuration");
    return invalid(where + ": /" + name + ": section \"" + name + "\" given but module " + name +
                   " is not loaded");
  }
  return status::ok();
}

// What the schema cannot say: integers must fit in int64 (get_int's promise), URL ports
// must be real ports, the initial cluster must parse, and the election timeout must suit
// the heartbeat interval.
status loader::impl::check_values(const json_value& merged,
                                  const std::map<std::string, std::string>& origins) const {
  std::vector<std::pair<const json_value*, std::string>> pending{{&merged, ""}};
  while (!pending.empty()) {
    auto [value, pointer] = pending.back();
    pending.pop_back();
    if (value->IsObject()) {
      for (auto it = value->MemberBegin(); it != value->MemberEnd(); ++it)
        pending.emplace_back(&it->value, pointer + "/" + detail::escape_pointer_token(detail::as_view(it->name)));
    } else if (value->IsArray()) {
      for (rapidjson::SizeType i = 0; i < value->Size(); ++i)
        pending.emplace_back(&(*value)[i], pointer + "/" + std::to_string(i));
    } else if (value->IsUint64() && !value->IsInt64()) {
      return invalid(origin_of(origins, pointer) + ": " + pointer + ": " +
                     detail::json_excerpt(*value) + " is out of range for a 64-bit integer");
    }
  }
  for (const char* key : {"listen-client-urls", "advertise-client-urls", "listen-peer-urls",
                          "initial-advertise-peer-urls"}) {
    const json_value& urls = *detail::find_member(merged, key);
    for (rapidjson::SizeType i = 0; i < urls.Size(); ++i) {
      // The pattern guarantees "...:<digits>" with an optional trailing '/'.
      std::string_view url = detail::as_view(urls[i]);
      if (url.ends_with("/")) url.remove_suffix(1);
      const std::string_view port = url.substr(url.rfind(':') + 1);
      if (port.size() > 5 || std::stoul(std::string(port)) > 65535) {
        const std::string pointer = std::string("/") + key + "/" + std::to_string(i);
        return invalid(origin_of(origins, pointer) + ": " + pointer + ": port " + std::string(port) +
                       " of " + quoted(detail::as_view(urls[i])) + " is not in 0..65535");
      }
    }
  }
  if (status s = check_initial_cluster(merged, origins); !s) return s;
  if (status s = check_bootstrap_flags(merged, origins); !s) return s;
  return check_election_timeout(merged, origins);
}

// etcd's ErrConflictBootstrapFlags, in its words: a member bootstraps from one of
// --initial-cluster, --discovery and --discovery-srv. The default --initial-cluster does
// not count (etcd drops it when discovery is used); one that was set anywhere does.
status loader::impl::check_bootstrap_flags(const json_value& merged,
                                           const std::map<std::string, std::string>& origins) const {
  std::vector<std::string> set;
  for (const char* key : {"initial-cluster", "discovery", "discovery-srv"}) {
    const std::string pointer = std::string("/") + key;
    bool given = detail::as_view(*detail::find_member(merged, key)).size() > 0;
    if (pointer == "/initial-cluster") given = given && origin_of(origins, pointer) != "default";
    if (given) set.push_back(origin_of(origins, pointer) + ": " + pointer);
  }
  if (set.size() < 2) return status::ok();
  std::string where = set[0];
  for (std::size_t i = 1; i < set.size(); ++i) where += (i + 1 == set.size() ? " and " : ", ") + set[i];
  return invalid(where + ": multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", "
                         "\"discovery\" or \"discovery-srv\"");
}

// The --initial-cluster text is parsed here, not first where it is used, so that a typo
// is reported at start-up with where it came from. "" is allowed: etcd bootstraps
// through --discovery with an empty initial cluster.
status loader::impl::check_initial_cluster(const json_value& merged,
                                           const std::map<std::string, std::string>& origins) const {
  const std::string_view text = detail::as_view(*detail::find_member(merged, "initial-cluster"));
  result<std::vector<cluster_member_spec>> members = parse_initial_cluster(text);
  if (members) return status::ok();
  std::string why = members.error().message();
  if (why.starts_with("initial-cluster: ")) why.erase(0, std::string_view("initial-cluster: ").size());
  return invalid(origin_of(origins, "/initial-cluster") + ": /initial-cluster: " + why);
}

// etcd's embed.Config.Validate rules, with etcd's wording so that a message found in an
// etcd runbook matches. 5 * heartbeat is not computed: it could overflow int64.
status loader::impl::check_election_timeout(const json_value& merged,
                                            const std::map<std::string, std::string>& origins) const {
  const std::int64_t heartbeat = detail::find_member(merged, "heartbeat-interval")->GetInt64();
  const std::int64_t election = detail::find_member(merged, "election-timeout")->GetInt64();
  const std::string where = origin_of(origins, "/election-timeout") + ": /election-timeout: ";
  if (heartbeat > election / 5)
    return invalid(where + "--election-timeout[" + std::to_string(election) +
                   "ms] should be at least as 5 times as --heartbeat-interval[" + std::to_string(heartbeat) +
                   "ms] (heartbeat-interval from " + origin_of(origins, "/heartbeat-interval") + ")");
  if (election > election_timeout_ms_max)
    return invalid(where + "--election-timeout[" + std::to_string(election) +
                   "ms] is too long, and should be at most " + std::to_string(election_timeout_ms_max) + "ms");
  return status::ok();
}

result<config> loader::finish() {
  // 1. The command line again, now that every flag is known.
  parsed_flags flags;
  flag_parser parser(_impl->arguments, _impl->schemas, /*lenient=*/false);
  if (status s = parser.parse(flags); !s) return s;
  if (!flags.same_core(_impl->early, _impl->schemas))
    return invalid("the command line reads differently once module flags are known; "
                   "give module flag values as --section.key=value");

  // 2. Every ETCD_/KEEL_ variable must name a key.
  for (const env_variable& variable : _impl->environment) {
    if (_impl->schemas.find_env(variable.suffix) == nullptr)
      return invalid("env " + variable.name + ": unknown environment variable: no config key maps to "
                     "it (see --help; KEEL_TEST_* and ETCD_UNSUPPORTED_ARCH are the only exceptions)");
  }

  // 3. Merge: file, then environment (ETCD_ then KEEL_), then flags in order.
  json_document merged;
  std::map<std::string, std::string> origins;
  if (_impl->file) {
    merged.CopyFrom(_impl->file->document, merged.GetAllocator());
    for (const auto& [pointer, line] : _impl->file->lines)
      origins[pointer] = _impl->file->name + ":" + std::to_string(line);
  } else {
    merged.SetObject();
  }
  for (const env_variable& variable : _impl->environment) {
    const key_info* key = _impl->schemas.find_env(variable.suffix);
    if (status s = _impl->apply(setting{key->flag, variable.value, "env " + variable.name}, merged, origins); !s)
      return s;
  }
  for (const setting& value : flags.settings)
    if (status s = _impl->apply(value, merged, origins); !s) return s;

  // 4. Sections for modules that are not loaded, defaults, the schema, then the rest.
  if (status s = _impl->check_sections(merged); !s) return s;
  std::vector<std::string> filled;
  detail::fill_defaults(_impl->schemas.root(), merged, merged.GetAllocator(), "", filled);
  for (const std::string& pointer : filled) origins[pointer] = "default";
  if (auto failure = detail::validate(_impl->schemas.compiled(), _impl->schemas.root(), merged)) {
    return invalid(impl::origin_of(origins, failure->pointer) + ": " +
                   detail::display_pointer(failure->pointer) + ": " + failure->text);
  }
  if (status s = _impl->check_values(merged, origins); !s) return s;

  detail::order_like_schema(_impl->schemas.root(), merged, merged.GetAllocator());
  auto state = std::make_unique<config::impl>();
  state->document.Swap(merged);
  return config(std::move(state));
}

std::string loader::usage(std::string_view program) const {
  return detail::render_usage(program, _impl->schemas);
}

}  // namespace keel::config
