// config_test.cc — keel::config::loader and keel::config::config, through the public API.
#define BOOST_TEST_MODULE config
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "keel/config/config.h"

namespace {

using keel::config::action;
using keel::config::config;
using keel::config::loader;

constexpr const char* echo_schema = R"({
  "type": "object",
  "description": "The echo module.",
  "additionalProperties": false,
  "properties": {
    "prefix": {"type": "string", "description": "Text put before each echoed line.", "default": ">"},
    "repeat": {"type": "integer", "minimum": 1, "default": 1, "description": "Times to echo."},
    "loud": {"type": "boolean", "default": false, "description": "Echo in upper case."}
  }
})";

// A real file under /tmp, removed when the test ends.
class temp_file {
 public:
  explicit temp_file(const std::string& content) {
    char name[] = "/tmp/keel-config-test-XXXXXX";
    const int fd = ::mkstemp(name);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE_EQUAL(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    ::close(fd);
    _path = name;
  }
  ~temp_file() { ::unlink(_path.c_str()); }
  const std::string& path() const { return _path; }
  std::string content() const {
    std::ifstream in(_path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string _path;
};

// argv and envp arrays that live as long as the strings.
struct command_line {
  std::vector<std::string> arguments;
  std::vector<std::string> environment;
  std::vector<const char*> argv;
  std::vector<const char*> envp;

  command_line(std::vector<std::string> args, std::vector<std::string> env)
      : arguments(std::move(args)), environment(std::move(env)) {
    arguments.insert(arguments.begin(), "keeld");
    for (const std::string& a : arguments) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    for (const std::string& e : environment) envp.push_back(e.c_str());
    envp.push_back(nullptr);
  }
};

// The keeld sequence: collect, add the schemas of the listed modules, finish.
struct outcome {
  keel::status collected;
  std::optional<keel::result<config>> finished;

  const config& value() const {
    BOOST_REQUIRE_MESSAGE(collected.is_ok(), collected.message());
    BOOST_REQUIRE(finished.has_value());
    BOOST_REQUIRE_MESSAGE(finished->is_ok(), finished->error().message());
    return finished->value();
  }
  std::string error() const {
    if (!collected.is_ok()) return collected.message();
    BOOST_REQUIRE(finished.has_value());
    BOOST_REQUIRE_MESSAGE(!finished->is_ok(), "expected an error");
    return finished->error().message();
  }
};

outcome load(std::vector<std::string> args, std::vector<std::string> env = {},
             bool with_echo_schema = false) {
  command_line line(std::move(args), std::move(env));
  loader sources;
  outcome result{sources.collect(static_cast<int>(line.arguments.size()), line.argv.data(), line.envp.data()), std::nullopt};
  if (!result.collected.is_ok()) return result;
  if (with_echo_schema) {
    keel::status added = sources.add_section_schema("echo", echo_schema);
    BOOST_REQUIRE_MESSAGE(added.is_ok(), added.message());
  }
  result.finished.emplace(sources.finish());
  return result;
}

bool contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return true;
  BOOST_TEST_MESSAGE("\"" << text << "\" does not contain \"" << part << "\"");
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(uses_embedded_defaults_without_any_source) {
  const outcome loaded = load({});
  const config& c = loaded.value();
  BOOST_TEST(c.get_string("/name") == "default");
  BOOST_TEST(c.get_string("/data-dir") == "");
  BOOST_TEST(c.data_dir() == "default.keel");
  BOOST_TEST(c.get_strings("/listen-client-urls") == std::vector<std::string>{"http://127.0.0.1:2379"});
  BOOST_TEST(c.get_strings("/advertise-client-urls") == std::vector<std::string>{"http://127.0.0.1:2379"});
  BOOST_TEST(c.get_strings("/listen-peer-urls") == std::vector<std::string>{"http://127.0.0.1:2380"});
  BOOST_TEST(c.get_int("/shards") == 0);
  BOOST_TEST(c.get_strings("/modules") == std::vector<std::string>{"kv"});  // the store by default
  BOOST_TEST(c.get_strings("/module-path").empty());
  BOOST_TEST(c.get_string("/log-level") == "info");
  BOOST_TEST(c.get_int("/max-request-bytes") == 1572864);
  BOOST_TEST(c.get_bool("/enable-v2") == true);
  BOOST_TEST(c.get_bool("/native-port-enabled") == true);
  BOOST_TEST(!c.has("/echo"));
  // etcd 3.4's static-cluster defaults.
  BOOST_TEST(c.get_strings("/initial-advertise-peer-urls") == std::vector<std::string>{"http://localhost:2380"});
  BOOST_TEST(c.get_string("/initial-cluster") == "default=http://localhost:2380");
  BOOST_TEST(c.get_string("/initial-cluster-state") == "new");
  BOOST_TEST(c.get_string("/initial-cluster-token") == "etcd-cluster");
  BOOST_TEST(c.get_int("/heartbeat-interval") == 100);
  BOOST_TEST(c.get_int("/election-timeout") == 1000);
  BOOST_TEST(c.get_string("/discovery") == "");
  BOOST_TEST(c.get_string("/discovery-fallback") == "proxy");
}

BOOST_AUTO_TEST_CASE(reads_values_from_a_config_file) {
  temp_file file(R"({
  "name": "infra1",
  "data-dir": "/var/lib/keel",
  "shards": 4,
  "listen-client-urls": ["http://10.0.0.1:2379", "https://[::1]:2379"],
  "enable-v2": false
})");
  const outcome loaded = load({"--config", file.path()});
  const config& c = loaded.value();
  BOOST_TEST(c.get_string("/name") == "infra1");
  BOOST_TEST(c.data_dir() == "/var/lib/keel");
  BOOST_TEST(c.get_int("/shards") == 4);
  BOOST_TEST(c.get_strings("/listen-client-urls") ==
             (std::vector<std::string>{"http://10.0.0.1:2379", "https://[::1]:2379"}));
  BOOST_TEST(c.get_bool("/enable-v2") == false);
  BOOST_TEST(c.get_string("/log-level") == "info");  // default still filled
}

BOOST_AUTO_TEST_CASE(finds_the_file_through_config_file_flag_and_environment) {
  temp_file file(R"({"name": "from-file"})");
  BOOST_TEST(load({"--config-file=" + file.path()}).value().get_string("/name") == "from-file");
  BOOST_TEST(load({}, {"ETCD_CONFIG_FILE=" + file.path()}).value().get_string("/name") == "from-file");
  BOOST_TEST(load({}, {"KEEL_CONFIG=" + file.path()}).value().get_string("/name") == "from-file");
}

BOOST_AUTO_TEST_CASE(reading_the_file_never_alters_it) {
  const std::string text = "{\n  \"shards\": \"two\"\n}\n";
  temp_file file(text);
  struct stat before {};
  BOOST_REQUIRE(::stat(file.path().c_str(), &before) == 0);
  BOOST_TEST(!load({"--config", file.path()}).error().empty());
  struct stat after {};
  BOOST_REQUIRE(::stat(file.path().c_str(), &after) == 0);
  BOOST_TEST(file.content() == text);
  BOOST_TEST(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  BOOST_TEST(after.st_size == before.st_size);
}

BOOST_AUTO_TEST_CASE(missing_config_file_is_not_found) {
  command_line line({"--config", "/nonexistent/keel.json"}, {});
  loader sources;
  const keel::status s = sources.collect(static_cast<int>(line.arguments.size()), line.argv.data(), line.envp.data());
  BOOST_TEST(!s.is_ok());
  BOOST_TEST((s.code() == keel::errc::not_found));
  BOOST_TEST(contains(s.message(), "/nonexistent/keel.json"));
}

BOOST_AUTO_TEST_CASE(reports_invalid_json_with_line_and_column) {
  temp_file file("{\n  \"name\": \"x\"\n  \"shards\": 2\n}\n");
  const std::string error = load({"--config", file.path()}).error();
  BOOST_TEST(contains(error, file.path() + ":3:3: Missing a comma or '}' after an object member."));
}

BOOST_AUTO_TEST_CASE(reports_invalid_json_under_the_given_name) {
  loader sources;
  const keel::status s = sources.collect_file_text("{\"a\": tru}", "keel.json");
  BOOST_TEST(!s.is_ok());
  BOOST_TEST(contains(s.message(), "keel.json:1:10: Invalid value."));
}

BOOST_AUTO_TEST_CASE(rejects_duplicate_key_nul_byte_and_non_object_top_level) {
  loader sources;
  keel::status s = sources.collect_file_text("{\n\"name\": \"a\",\n\"name\": \"b\"}", "keel.json");
  BOOST_TEST(contains(s.message(), "keel.json:3: (top level): duplicate key \"name\""));
  s = sources.collect_file_text(std::string("{}\0{", 4), "keel.json");
  BOOST_TEST(contains(s.message(), "keel.json:1:3: NUL byte"));
  s = sources.collect_file_text("\n[1]", "keel.json");
  BOOST_TEST(contains(s.message(), "keel.json:2: top level must be an object, got array"));
  s = sources.collect_file_text(std::string(100, '[') + std::string(100, ']'), "keel.json");
  BOOST_TEST((s.code() == keel::errc::too_large));
}

BOOST_AUTO_TEST_CASE(reports_wrong_type_with_pointer_and_file_line) {
  temp_file file("{\n  \"name\": \"a\",\n  \"log-level\": \"info\",\n  \"shards\": \"two\"\n}\n");
  const std::string error = load({"--config", file.path()}).error();
  BOOST_TEST(contains(error, file.path() + ":4: /shards: expected integer, got string \"two\""));
}

BOOST_AUTO_TEST_CASE(reports_bounds_and_enums_in_words) {
  BOOST_TEST(contains(load({"--shards", "65"}).error(), "flag --shards: /shards: must be <= 64, got 65"));
  BOOST_TEST(contains(load({"--shards=-1"}).error(), "/shards: must be >= 0, got -1"));
  BOOST_TEST(contains(load({"--log-level", "loud"}).error(),
                      "flag --log-level: /log-level: must be one of debug, info, warn, error, got \"loud\""));
  BOOST_TEST(contains(load({"--max-request-bytes", "12"}).error(), "must be >= 1024, got 12"));
}

BOOST_AUTO_TEST_CASE(rejects_non_numeric_and_out_of_range_integers) {
  BOOST_TEST(contains(load({"--shards", "two"}).error(), "flag --shards: /shards: expected integer, got \"two\""));
  BOOST_TEST(contains(load({"--shards", "4x"}).error(), "expected integer, got \"4x\""));
  BOOST_TEST(contains(load({"--max-request-bytes", "99999999999999999999"}).error(),
                      "\"99999999999999999999\" is out of range for a 64-bit integer"));
  BOOST_TEST(contains(load({}, {"ETCD_SHARDS=x"}).error(), "env ETCD_SHARDS: /shards: expected integer"));
  loader sources;
  BOOST_REQUIRE(sources.collect_file_text(R"({"max-request-bytes": 18446744073709551615})", "keel.json").is_ok());
  auto finished = sources.finish();
  BOOST_TEST(contains(finished.error().message(), "keel.json:1: /max-request-bytes: 18446744073709551615 is out of range"));
}

BOOST_AUTO_TEST_CASE(rejects_unknown_key_in_file) {
  temp_file file("{\n  \"name\": \"a\",\n  \"shardz\": 2\n}\n");
  const std::string error = load({"--config", file.path()}).error();
  BOOST_TEST(contains(error, file.path() + ":3: /shardz: unknown key \"shardz\" (did you mean \"shards\"?)"));
}

BOOST_AUTO_TEST_CASE(rejects_unknown_flag) {
  BOOST_TEST(contains(load({"--foo"}).error(), "unknown flag: --foo"));
  BOOST_TEST(contains(load({"--shard=2"}).error(), "unknown flag: --shard (did you mean --shards?)"));
  BOOST_TEST(contains(load({"--raft.election-ticks=10"}).error(),
                      "unknown flag: --raft.election-ticks (no module section \"raft\" is loaded)"));
  BOOST_TEST(contains(load({"--echo.prefx=1"}, {}, true).error(), "unknown flag: --echo.prefx (did you mean --echo.prefix?)"));
}

BOOST_AUTO_TEST_CASE(names_a_flag_missing_its_value) {
  BOOST_TEST(contains(load({"--name"}).error(), "flag needs an argument: --name"));
  BOOST_TEST(contains(load({"--config"}).error(), "flag needs an argument: --config"));
}

BOOST_AUTO_TEST_CASE(rejects_positional_arguments) {
  BOOST_TEST(contains(load({"extra"}).error(), "unexpected argument \"extra\""));
  BOOST_TEST(contains(load({"--", "extra"}).error(), "unexpected argument \"extra\""));
  BOOST_TEST(contains(load({"-"}).error(), "unexpected argument \"-\""));
}

BOOST_AUTO_TEST_CASE(accepts_every_go_flag_spelling) {
  BOOST_TEST(load({"-name", "a"}).value().get_string("/name") == "a");
  BOOST_TEST(load({"-name=b"}).value().get_string("/name") == "b");
  BOOST_TEST(load({"--name", "c"}).value().get_string("/name") == "c");
  BOOST_TEST(load({"--name=d"}).value().get_string("/name") == "d");
  BOOST_TEST(load({"--name="}).value().get_string("/name") == "");
  // A non-boolean flag takes the next argument whatever it looks like, as in Go.
  BOOST_TEST(load({"--name", "--shards"}).value().get_string("/name") == "--shards");
  // The last occurrence wins.
  BOOST_TEST(load({"--shards=1", "--shards=2"}).value().get_int("/shards") == 2);
}

BOOST_AUTO_TEST_CASE(bare_boolean_flag_means_true) {
  BOOST_TEST(load({"--enable-v2"}).value().get_bool("/enable-v2") == true);
  BOOST_TEST(load({"--enable-v2=false"}).value().get_bool("/enable-v2") == false);
  BOOST_TEST(load({"-native-port-enabled=F"}).value().get_bool("/native-port-enabled") == false);
  BOOST_TEST(load({"--native-port-enabled=0", "--native-port-enabled"}).value().get_bool("/native-port-enabled") == true);
  const std::string error = load({"--enable-v2", "false"}).error();
  BOOST_TEST(contains(error, "unexpected argument \"false\""));
  BOOST_TEST(contains(error, "write --enable-v2=false"));
  BOOST_TEST(contains(load({"--enable-v2=yes"}).error(), "expected boolean (true or false), got \"yes\""));
}

BOOST_AUTO_TEST_CASE(rejects_flag_and_env_values_that_are_not_utf8) {
  BOOST_TEST(contains(load({"--name", "a\xb2"}).error(), "flag --name: /name: not valid UTF-8"));
  BOOST_TEST(contains(load({}, {"ETCD_NAME=\xed\xa0\x80"}).error(), "env ETCD_NAME: /name: not valid UTF-8"));
  BOOST_TEST(load({"--name", "\xc3\xa9t\xc3\xa9"}).value().get_string("/name") == "\xc3\xa9t\xc3\xa9");
}

BOOST_AUTO_TEST_CASE(converts_comma_separated_lists) {
  const outcome loaded = load({"--listen-client-urls", "http://a:1, http://b:2", "--module-path="});
  BOOST_TEST(loaded.value().get_strings("/listen-client-urls") == (std::vector<std::string>{"http://a:1", "http://b:2"}));
  BOOST_TEST(loaded.value().get_strings("/module-path").empty());
  BOOST_TEST(contains(load({"--module-path", "a,,b"}).error(), "empty item"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_urls_naming_them) {
  BOOST_TEST(contains(load({"--listen-client-urls", "http://a:1,ftp://b:2"}).error(),
                      "flag --listen-client-urls: /listen-client-urls/1: must match"));
  BOOST_TEST(contains(load({"--listen-client-urls", "http://a:1,ftp://b:2"}).error(), "got string \"ftp://b:2\""));
  BOOST_TEST(contains(load({"--listen-peer-urls", "http://a"}).error(), "\"http://a\""));
  BOOST_TEST(contains(load({"--advertise-client-urls", "http://a:70000"}).error(),
                      "/advertise-client-urls/0: port 70000 of \"http://a:70000\" is not in 0..65535"));
}

BOOST_AUTO_TEST_CASE(keel_env_wins_over_etcd_env) {
  BOOST_TEST(load({}, {"ETCD_NAME=etcd"}).value().get_string("/name") == "etcd");
  BOOST_TEST(load({}, {"KEEL_NAME=keel"}).value().get_string("/name") == "keel");
  BOOST_TEST(load({}, {"KEEL_NAME=keel", "ETCD_NAME=etcd"}).value().get_string("/name") == "keel");
  BOOST_TEST(load({}, {"ETCD_NAME=etcd", "KEEL_NAME=keel"}).value().get_string("/name") == "keel");
  BOOST_TEST(load({}, {"ETCD_DATA_DIR=/d"}).value().data_dir() == "/d");
  BOOST_TEST(load({}, {"ETCD_ENABLE_V2=false"}).value().get_bool("/enable-v2") == false);
}

BOOST_AUTO_TEST_CASE(flag_beats_env_beats_file_beats_default) {
  temp_file file(R"({"name": "file", "shards": 3, "log-level": "warn"})");
  const std::vector<std::string> env = {"ETCD_NAME=env", "KEEL_SHARDS=5"};
  const outcome loaded = load({"--config", file.path(), "--name", "flag"}, env);
  const config& c = loaded.value();
  BOOST_TEST(c.get_string("/name") == "flag");          // flag > env > file
  BOOST_TEST(c.get_int("/shards") == 5);                // env > file
  BOOST_TEST(c.get_string("/log-level") == "warn");     // file > default
  BOOST_TEST(c.get_int("/max-request-bytes") == 1572864);  // default
  BOOST_TEST(load({"--config", file.path()}, env).value().get_string("/name") == "env");
  BOOST_TEST(load({"--config", file.path()}).value().get_string("/name") == "file");
}

BOOST_AUTO_TEST_CASE(rejects_unknown_etcd_env_variable) {
  // etcd 2's ETCD_PROXY_DIAL_TIMEOUT is a key (proxy-dial-timeout); ETCD_PROXY_DIALS is not.
  BOOST_TEST(contains(load({}, {"ETCD_PROXY_DIALS=1"}).error(), "env ETCD_PROXY_DIALS: unknown environment variable"));
  BOOST_TEST(contains(load({}, {"ETCD_PROXY=maybe"}).error(), "env ETCD_PROXY: /proxy: must be one of off, on, readonly"));
  BOOST_TEST(contains(load({}, {"KEEL_SHARDZ=1"}).error(), "env KEEL_SHARDZ: unknown environment variable"));
}

BOOST_AUTO_TEST_CASE(ignores_etcdctl_and_allow_listed_variables) {
  const outcome loaded = load({}, {"ETCDCTL_API=3", "ETCDCTL_ENDPOINTS=http://x:1", "KEEL_TEST_SEED=7",
                                   "ETCD_UNSUPPORTED_ARCH=arm", "PATH=/bin", "ETCD=1", "KEELX=2"});
  BOOST_TEST(loaded.value().get_string("/name") == "default");
}

BOOST_AUTO_TEST_CASE(module_section_defaults_are_filled_and_section_json_returns_them) {
  const outcome loaded = load({"--modules", "echo"}, {}, true);
  const config& c = loaded.value();
  BOOST_TEST(c.get_strings("/modules") == std::vector<std::string>{"echo"});
  BOOST_TEST(c.get_string("/echo/prefix") == ">");
  BOOST_TEST(c.get_int("/echo/repeat") == 1);
  BOOST_TEST(c.section_json("echo") == R"({"prefix":">","repeat":1,"loud":false})");
}

BOOST_AUTO_TEST_CASE(module_keys_come_from_every_source) {
  temp_file file(R"({"modules": ["echo"], "echo": {"repeat": 3}})");
  const outcome loaded = load({"--config", file.path(), "--echo.prefix", "$", "--echo.loud"},
                              {"KEEL_ECHO_REPEAT=4"}, true);
  const config& c = loaded.value();
  BOOST_TEST(c.section_json("echo") == R"({"prefix":"$","repeat":4,"loud":true})");
}

BOOST_AUTO_TEST_CASE(reports_invalid_module_value_at_section_pointer) {
  temp_file file("{\n  \"modules\": [\"echo\"],\n  \"echo\": {\n    \"prefix\": 5\n  }\n}\n");
  BOOST_TEST(contains(load({"--config", file.path()}, {}, true).error(),
                      file.path() + ":4: /echo/prefix: expected string, got integer 5"));
  BOOST_TEST(contains(load({"--echo.repeat=0"}, {}, true).error(),
                      "flag --echo.repeat: /echo/repeat: must be >= 1, got 0"));
  BOOST_TEST(contains(load({}, {"ETCD_ECHO_REPEAT=x"}, true).error(),
                      "env ETCD_ECHO_REPEAT: /echo/repeat: expected integer, got \"x\""));
  temp_file unknown("{\"echo\": {\n\"prefx\": \"a\"}}");
  BOOST_TEST(contains(load({"--config", unknown.path()}, {}, true).error(),
                      unknown.path() + ":2: /echo/prefx: unknown key \"prefx\" (did you mean \"prefix\"?)"));
}

BOOST_AUTO_TEST_CASE(rejects_section_for_module_not_loaded) {
  temp_file file("{\n  \"raft\": {\"election-ticks\": 10}\n}\n");
  BOOST_TEST(contains(load({"--config", file.path()}).error(),
                      file.path() + ":2: /raft: section \"raft\" given but module raft is not loaded"));
  temp_file listed("{\"modules\": [\"raft\"], \"raft\": {}}");
  BOOST_TEST(contains(load({"--config", listed.path()}).error(), "module raft declares no configuration"));
}

BOOST_AUTO_TEST_CASE(modules_list_follows_precedence_and_checks_names) {
  temp_file file(R"({"modules": ["a", "b"]})");
  auto modules_of = [](std::vector<std::string> args, std::vector<std::string> env) {
    command_line line(std::move(args), std::move(env));
    loader sources;
    BOOST_REQUIRE(sources.collect(static_cast<int>(line.arguments.size()), line.argv.data(), line.envp.data()).is_ok());
    return sources.modules();
  };
  BOOST_TEST(modules_of({}, {}).value() == std::vector<std::string>{"kv"});
  BOOST_TEST(modules_of({"--modules="}, {}).value().empty());  // how an operator loads none
  BOOST_TEST(modules_of({"--config", file.path()}, {}).value() == (std::vector<std::string>{"a", "b"}));
  BOOST_TEST(modules_of({"--config", file.path()}, {"ETCD_MODULES=c"}).value() == std::vector<std::string>{"c"});
  BOOST_TEST(modules_of({"--config", file.path(), "--modules=d,e"}, {"ETCD_MODULES=c"}).value() ==
             (std::vector<std::string>{"d", "e"}));
  BOOST_TEST(contains(modules_of({"--modules=../evil"}, {}).error().message(),
                      "flag --modules: /modules/0: must match"));
  BOOST_TEST(contains(modules_of({"--modules=a,a"}, {}).error().message(), "/modules/1: duplicate item \"a\""));
}

BOOST_AUTO_TEST_CASE(rejects_invalid_module_schemas_naming_the_module) {
  loader sources;
  auto error_of = [&](std::string_view module, std::string_view schema) {
    const keel::status s = sources.add_section_schema(module, schema);
    BOOST_REQUIRE(!s.is_ok());
    return s.message();
  };
  BOOST_TEST(contains(error_of("echo", "{"), "schema of module echo:1:2:"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a":{"type":5,"description":"d"}}})"),
                      "schema of module echo: /properties/a/type"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","properties":{}})"),
                      "must have \"additionalProperties\": false"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"}}})"),
                      "schema of module echo: /properties/a: needs a \"description\""));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a":{"type":"string","description":"d","default":1}}})"),
                      "schema of module echo: default of /echo/a: expected string, got integer 1"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a":{"$ref":"#/x","description":"d"}}})"),
                      "\"$ref\" is not supported"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a.b":{"type":"string","description":"d"}}})"),
                      "property names must match"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a":{"type":"string","description":"d","pattern":"(("}}})"),
                      "is not a valid rapidjson regex"));
  BOOST_TEST(contains(error_of("echo", R"({"type":"object","additionalProperties":false,"properties":{"a":{"type":"string","description":"d","pattern":"a{2"}}})"),
                      "is not a valid rapidjson regex"));
  BOOST_TEST(contains(error_of("name", echo_schema), "is a core key"));
  BOOST_TEST(contains(error_of("Echo", echo_schema), "must match ^[a-z][a-z0-9_-]*$"));
  BOOST_TEST(contains(error_of("data", R"({"type":"object","additionalProperties":false,"properties":{"dir":{"type":"string","description":"d"}}})"),
                      "would share the environment variable KEEL_DATA_DIR"));
  BOOST_REQUIRE(sources.add_section_schema("echo", echo_schema).is_ok());
  const keel::status again = sources.add_section_schema("echo", echo_schema);
  BOOST_TEST((again.code() == keel::errc::already_exists));
}

BOOST_AUTO_TEST_CASE(module_flag_values_may_follow_as_separate_arguments) {
  BOOST_TEST(load({"--echo.prefix", "x", "--name", "n"}, {}, true).value().get_string("/echo/prefix") == "x");
  BOOST_TEST(load({"--echo.loud", "--name", "n"}, {}, true).value().get_bool("/echo/loud") == true);
  // Before the schema is known "-modules=x" looked like a flag; once it is known it is
  // --echo.prefix's value. Such a command line must not silently change meaning.
  BOOST_TEST(contains(load({"--echo.prefix", "-modules=x"}, {}, true).error(), "reads differently"));
}

BOOST_AUTO_TEST_CASE(special_flags_are_reported_not_configured) {
  auto action_of = [](std::vector<std::string> args) {
    command_line line(std::move(args), {});
    loader sources;
    BOOST_REQUIRE(sources.collect(static_cast<int>(line.arguments.size()), line.argv.data(), line.envp.data()).is_ok());
    return sources.requested_action();
  };
  BOOST_TEST((action_of({}) == action::run));
  BOOST_TEST((action_of({"-h"}) == action::help));
  BOOST_TEST((action_of({"--help"}) == action::help));
  BOOST_TEST((action_of({"--version"}) == action::version));
  BOOST_TEST((action_of({"--print-config"}) == action::print_config));
  BOOST_TEST((action_of({"--print-config", "--help", "--version"}) == action::help));
  BOOST_TEST((action_of({"--help=false"}) == action::run));
}

BOOST_AUTO_TEST_CASE(help_text_mentions_every_core_flag) {
  loader sources;
  BOOST_REQUIRE(sources.add_section_schema("echo", echo_schema).is_ok());
  const std::string text = sources.usage("keeld");
  for (const char* flag : {"--name string", "--data-dir string", "--listen-client-urls strings",
                           "--advertise-client-urls strings", "--listen-peer-urls strings",
                           "--shards integer", "--modules strings", "--module-path strings",
                           "--log-level string", "--max-request-bytes integer", "--enable-v2\n",
                           "--native-port-enabled\n", "--echo.prefix string",
                           "--initial-advertise-peer-urls strings", "--initial-cluster string",
                           "--initial-cluster-state string", "--initial-cluster-token string",
                           "--heartbeat-interval integer", "--election-timeout integer",
                           "--discovery string", "--discovery-fallback string",
                           "(default \"new\"; one of new, existing)", "(default \"proxy\"; one of exit, proxy)",
                           "default \"default=http://localhost:2380\"", "(default 100; >= 1)", "--help", "--version",
                           "--print-config", "--config path", "--config-file path", "KEEL_", "ETCD_",
                           "flag > environment > config file > default", "(default 0; 0..64)",
                           "one of debug, info, warn, error", "default http://127.0.0.1:2379"}) {
    BOOST_TEST(contains(text, flag));
  }
  BOOST_TEST_MESSAGE(text);
}

BOOST_AUTO_TEST_CASE(to_json_round_trips_through_collect_and_finish) {
  const outcome first = load({"--name", "n1", "--shards", "2", "--echo.prefix", "p\"q", "--modules", "echo"}, {}, true);
  const std::string pretty = first.value().to_json(true);
  temp_file file(pretty);
  const outcome second = load({"--config", file.path()}, {}, true);
  BOOST_TEST(second.value().to_json(true) == pretty);
  BOOST_TEST(second.value().to_json(false) == first.value().to_json(false));
  // Keys come out in schema order, core first.
  BOOST_TEST(pretty.find("\"name\"") < pretty.find("\"data-dir\""));
  BOOST_TEST(pretty.find("\"native-port-enabled\"") < pretty.find("\"echo\": {"));
}

BOOST_AUTO_TEST_CASE(config_copies_are_independent) {
  const outcome loaded = load({"--name", "a"});
  config copy = loaded.value();
  config moved = std::move(copy);
  BOOST_TEST(moved.get_string("/name") == "a");
  BOOST_TEST(loaded.value().get_string("/name") == "a");
}

// ---- etcd 3.4's static-cluster keys ----------------------------------------------------

namespace {

// The flags a script starting a member of a three-member etcd cluster passes.
const std::vector<std::pair<std::string, std::string>> cluster_settings = {
    {"initial-advertise-peer-urls", "http://10.0.0.1:2380,http://10.0.1.1:2380"},
    {"initial-cluster", "infra0=http://10.0.0.1:2380,infra0=http://10.0.1.1:2380,infra1=http://10.0.0.2:2380"},
    {"initial-cluster-state", "existing"},
    {"initial-cluster-token", "etcd-cluster-1"},
    {"heartbeat-interval", "200"},
    {"election-timeout", "2500"},
    {"discovery-fallback", "exit"},
};

void check_cluster_settings(const config& c) {
  BOOST_TEST(c.get_strings("/initial-advertise-peer-urls") ==
             (std::vector<std::string>{"http://10.0.0.1:2380", "http://10.0.1.1:2380"}));
  BOOST_TEST(c.get_string("/initial-cluster") == cluster_settings[1].second);
  BOOST_TEST(c.get_string("/initial-cluster-state") == "existing");
  BOOST_TEST(c.get_string("/initial-cluster-token") == "etcd-cluster-1");
  BOOST_TEST(c.get_int("/heartbeat-interval") == 200);
  BOOST_TEST(c.get_int("/election-timeout") == 2500);
  BOOST_TEST(c.get_string("/discovery-fallback") == "exit");
}

std::string env_name(const std::string& key) {
  std::string name = "ETCD_";
  for (char ch : key) name += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

}  // namespace

BOOST_AUTO_TEST_CASE(cluster_keys_come_from_flags_in_both_forms) {
  std::vector<std::string> joined, separate, single_dash;
  for (const auto& [key, value] : cluster_settings) {
    joined.push_back("--" + key + "=" + value);
    separate.push_back("--" + key);
    separate.push_back(value);
    single_dash.push_back("-" + key);
    single_dash.push_back(value);
  }
  check_cluster_settings(load(joined).value());
  check_cluster_settings(load(separate).value());
  check_cluster_settings(load(single_dash).value());
}

BOOST_AUTO_TEST_CASE(cluster_keys_come_from_etcd_environment) {
  std::vector<std::string> env;
  for (const auto& [key, value] : cluster_settings) env.push_back(env_name(key) + "=" + value);
  BOOST_TEST(env[1] == "ETCD_INITIAL_CLUSTER=" + cluster_settings[1].second);
  check_cluster_settings(load({}, env).value());
  BOOST_TEST(load({}, {"KEEL_INITIAL_CLUSTER_STATE=existing"}).value().get_string("/initial-cluster-state") ==
             "existing");
}

BOOST_AUTO_TEST_CASE(cluster_keys_come_from_the_file) {
  temp_file file(R"({
  "initial-advertise-peer-urls": ["http://10.0.0.1:2380", "http://10.0.1.1:2380"],
  "initial-cluster": "infra0=http://10.0.0.1:2380,infra0=http://10.0.1.1:2380,infra1=http://10.0.0.2:2380",
  "initial-cluster-state": "existing",
  "initial-cluster-token": "etcd-cluster-1",
  "heartbeat-interval": 200,
  "election-timeout": 2500,
  "discovery-fallback": "exit"
})");
  check_cluster_settings(load({"--config", file.path()}).value());
}

// etcd refuses to choose between bootstrap sources; the default --initial-cluster is not one.
BOOST_AUTO_TEST_CASE(one_bootstrap_source_at_most) {
  const std::string token = "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de";
  const std::string conflict =
      ": multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or "
      "\"discovery-srv\"";
  BOOST_TEST(load({"--discovery", token}).value().get_string("/discovery") == token);
  BOOST_TEST(load({"--discovery-srv", "example.com"}).value().get_string("/discovery-srv") == "example.com");
  BOOST_TEST(load({"--discovery", token, "--initial-cluster", ""}).value().get_string("/initial-cluster") == "");
  BOOST_TEST(contains(load({"--discovery", token, "--initial-cluster", "a=http://10.0.0.1:2380"}).error(),
                      "flag --initial-cluster: /initial-cluster and flag --discovery: /discovery" + conflict));
  BOOST_TEST(contains(load({"--discovery-srv", "example.com"}, {"ETCD_DISCOVERY=" + token}).error(),
                      "env ETCD_DISCOVERY: /discovery and flag --discovery-srv: /discovery-srv" + conflict));
  temp_file file("{\n  \"initial-cluster\": \"a=http://10.0.0.1:2380\"\n}");
  BOOST_TEST(contains(load({"--config", file.path(), "--discovery", token}).error(),
                      file.path() + ":2: /initial-cluster and flag --discovery: /discovery" + conflict));
}

BOOST_AUTO_TEST_CASE(cluster_keys_reject_bad_values_naming_the_source) {
  BOOST_TEST(contains(load({"--initial-cluster-state", "joining"}).error(),
                      "flag --initial-cluster-state: /initial-cluster-state: must be one of new, existing, got \"joining\""));
  BOOST_TEST(contains(load({}, {"ETCD_DISCOVERY_FALLBACK=retry"}).error(),
                      "env ETCD_DISCOVERY_FALLBACK: /discovery-fallback: must be one of exit, proxy, got \"retry\""));
  BOOST_TEST(contains(load({"--heartbeat-interval=0"}).error(), "/heartbeat-interval: must be >= 1"));
  BOOST_TEST(contains(load({"--election-timeout=ten"}).error(), "/election-timeout: expected integer"));
  BOOST_TEST(contains(load({"--initial-advertise-peer-urls", "http://a:2380,ftp://b:2380"}).error(),
                      "flag --initial-advertise-peer-urls: /initial-advertise-peer-urls/1: must match"));
  BOOST_TEST(contains(load({"--initial-advertise-peer-urls", "http://a:99999"}).error(),
                      "/initial-advertise-peer-urls/0: port 99999 of \"http://a:99999\" is not in 0..65535"));
}

BOOST_AUTO_TEST_CASE(rejects_a_malformed_initial_cluster_naming_the_pair_and_source) {
  BOOST_TEST(contains(load({"--initial-cluster", "a=http://a:2380,b"}).error(),
                      "flag --initial-cluster: /initial-cluster: \"b\": missing '='"));
  BOOST_TEST(contains(load({}, {"ETCD_INITIAL_CLUSTER=a=http://a:2380,b=http://a:2380"}).error(),
                      "env ETCD_INITIAL_CLUSTER: /initial-cluster: \"b=http://a:2380\": duplicate URL"));
  temp_file file("{\n  \"initial-cluster\": \"=http://a:2380\"\n}");
  BOOST_TEST(contains(load({"--config", file.path()}).error(),
                      file.path() + ":2: /initial-cluster: \"=http://a:2380\": empty member name"));
  // Empty is allowed: etcd bootstraps through --discovery with no initial cluster.
  BOOST_TEST(load({"--initial-cluster="}).value().get_string("/initial-cluster") == "");
}

BOOST_AUTO_TEST_CASE(election_timeout_must_be_five_heartbeats_naming_both_values) {
  const std::string error = load({"--heartbeat-interval=100", "--election-timeout=400"}).error();
  BOOST_TEST(contains(error, "flag --election-timeout: /election-timeout: "
                             "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"));
  BOOST_TEST(contains(error, "heartbeat-interval from flag --heartbeat-interval"));
  // The heartbeat alone can break the rule against the default election timeout.
  BOOST_TEST(contains(load({}, {"ETCD_HEARTBEAT_INTERVAL=300"}).error(),
                      "default: /election-timeout: --election-timeout[1000ms] should be at least as 5 times as "
                      "--heartbeat-interval[300ms] (heartbeat-interval from env ETCD_HEARTBEAT_INTERVAL)"));
  temp_file file("{\n  \"heartbeat-interval\": 50,\n  \"election-timeout\": 200\n}");
  BOOST_TEST(contains(load({"--config", file.path()}).error(), ":3: /election-timeout: --election-timeout[200ms]"));
  // Exactly 5x and exactly 50000 ms pass, as in etcd.
  BOOST_TEST(load({"--heartbeat-interval=100", "--election-timeout=500"}).value().get_int("/election-timeout") == 500);
  BOOST_TEST(load({"--election-timeout=50000"}).value().get_int("/election-timeout") == 50000);
  BOOST_TEST(contains(load({"--election-timeout=50001"}).error(),
                      "flag --election-timeout: /election-timeout: --election-timeout[50001ms] is too long"));
  // A heartbeat whose 5x overflows int64 is refused, not wrapped.
  BOOST_TEST(contains(load({"--heartbeat-interval=9223372036854775807"}).error(), "should be at least as 5 times"));
}

BOOST_AUTO_TEST_CASE(core_json_has_the_core_keys_and_no_sections) {
  const outcome loaded = load({"--modules", "echo", "--initial-cluster-token", "t1"}, {}, true);
  const std::string core = loaded.value().core_json();
  BOOST_TEST(core.starts_with("{\"name\":\"default\","));
  BOOST_TEST(contains(core, "\"initial-cluster-token\":\"t1\""));
  BOOST_TEST(contains(core, "\"heartbeat-interval\":100"));
  BOOST_TEST(contains(core, "\"modules\":[\"echo\"]"));
  BOOST_TEST(core.find("\"echo\":{") == std::string::npos);
  BOOST_TEST(core.find('\n') == std::string::npos);
}
