// cmd/keelctl/kv_commands.cc — etcdctl v3 verbs over the native kv protocol. See
// kv_commands.h. The argument rules, messages and output follow etcdctl 3.4
// (etcdctl/ctlv3/command/*.go and its printers); where keelctl differs, a comment says so.
#include "kv_commands.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "keel/kv/client.h"
#include "srv_endpoints.h"

namespace keel::ctl {
namespace {

namespace native = kv::native;
using std::chrono::milliseconds;

// etcdctl's exit codes (ctlv3/command/error.go).
constexpr int exit_success = 0;
constexpr int exit_error = 1;
constexpr int exit_bad_connection = 2;
constexpr int exit_invalid_input = 3;
constexpr int exit_bad_feature = 4;
constexpr int exit_interrupted = 5;
constexpr int exit_bad_args = 128;

constexpr std::string_view default_endpoint = "127.0.0.1:2379";

// A failure that ends the command: etcdctl's ExitWithError.
struct command_error {
  int code;
  std::string message;
};

int report(const command_error& e) {
  std::fflush(stdout);
  std::fprintf(stderr, "Error: %s\n", e.message.c_str());
  return e.code;
}

// ---- Go's number and duration parsing (etcdctl's messages quote them) ----------------------

std::variant<std::int64_t, std::string> go_parse_int(std::string_view text, int base) {
  std::string quoted = "strconv.ParseInt: parsing \"" + std::string(text) + "\": ";
  std::string_view digits = text;
  bool negative = false;
  if (!digits.empty() && (digits.front() == '+' || digits.front() == '-')) {
    negative = digits.front() == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return quoted + "invalid syntax";
  unsigned __int128 value = 0;
  for (char c : digits) {
    int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : std::isalpha(static_cast<unsigned char>(c)) ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                                          : 99;
    if (d >= base) return quoted + "invalid syntax";
    value = value * static_cast<unsigned>(base) + static_cast<unsigned>(d);
    if (value > (static_cast<unsigned __int128>(1) << 64)) value = static_cast<unsigned __int128>(1) << 64;
  }
  unsigned __int128 limit = negative ? (static_cast<unsigned __int128>(1) << 63) : ((static_cast<unsigned __int128>(1) << 63) - 1);
  if (value > limit) return quoted + "value out of range";
  return negative ? -static_cast<std::int64_t>(value - 1) - 1 : static_cast<std::int64_t>(value);
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  if (text == "0") return milliseconds(0);
  long double total_ms = 0;
  while (!text.empty()) {
    std::size_t n = 0;
    while (n < text.size() && (std::isdigit(static_cast<unsigned char>(text[n])) || text[n] == '.')) ++n;
    if (n == 0) return std::nullopt;
    long double number = std::strtold(std::string(text.substr(0, n)).c_str(), nullptr);
    text.remove_prefix(n);
    std::size_t u = 0;
    while (u < text.size() && !std::isdigit(static_cast<unsigned char>(text[u])) && text[u] != '.') ++u;
    std::string_view unit = text.substr(0, u);
    text.remove_prefix(u);
    long double scale = unit == "ns" ? 1e-6L : unit == "us" ? 1e-3L : unit == "ms" ? 1 : unit == "s" ? 1e3L
                        : unit == "m" ? 60e3L : unit == "h" ? 3600e3L : -1;
    if (scale < 0) return std::nullopt;
    total_ms += number * scale;
  }
  return milliseconds(static_cast<std::int64_t>(std::ceil(static_cast<double>(total_ms))));
}

// ---- flags (cobra/pflag's rules) ------------------------------------------------------------

struct flag_spec {
  std::string_view name;
  char shorthand;  // 0: none
  bool takes_value;
};

constexpr flag_spec global_flags[] = {
    {"endpoints", 0, true},      {"dial-timeout", 0, true},  {"command-timeout", 0, true},
    {"write-out", 'w', true},    {"hex", 0, false},          {"debug", 0, false},
    {"help", 'h', false},        {"insecure-transport", 0, false}, {"insecure-discovery", 0, false},
    {"keepalive-time", 0, true}, {"keepalive-timeout", 0, true},
    // Refused below: keeld's native protocol has no TLS or authentication yet.
    {"user", 0, true},           {"password", 0, true},      {"cacert", 0, true},
    {"cert", 0, true},           {"key", 0, true},           {"insecure-skip-tls-verify", 0, false},
    {"discovery-srv", 'd', true}, {"discovery-srv-name", 0, true},
};

constexpr flag_spec verb_flags[] = {
    {"prefix", 0, false},        {"from-key", 0, false},     {"keys-only", 0, false},
    {"print-value-only", 0, false}, {"count-only", 0, false}, {"limit", 0, true},
    {"rev", 0, true},            {"sort-by", 0, true},       {"order", 0, true},
    {"consistency", 0, true},    {"lease", 0, true},         {"prev-kv", 0, false},
    {"ignore-value", 0, false},  {"ignore-lease", 0, false}, {"progress-notify", 0, false},
    {"interactive", 'i', false}, {"physical", 0, false},     {"once", 0, false},
    {"keys", 0, false},
};

// Which verb flags each verb takes (the rest are "unknown flag" there, as with cobra).
const std::map<std::string_view, std::vector<std::string_view>>& flags_of_verb() {
  static const std::map<std::string_view, std::vector<std::string_view>> table = {
      {"get", {"prefix", "from-key", "keys-only", "print-value-only", "count-only", "limit", "rev", "sort-by", "order",
               "consistency"}},
      {"put", {"lease", "prev-kv", "ignore-value", "ignore-lease"}},
      {"del", {"prefix", "from-key", "prev-kv"}},
      {"watch", {"prefix", "rev", "prev-kv", "progress-notify", "interactive"}},
      {"txn", {"interactive"}},
      {"compact", {"physical"}},
      {"lease", {"once", "keys"}},
  };
  return table;
}

struct parsed_arguments {
  std::vector<std::string> words;              // verb, sub-verb and arguments
  std::map<std::string, std::string> flags;    // name -> value ("true" for booleans)
};

const flag_spec* find_flag(std::string_view name, char shorthand, const std::vector<std::string_view>& allowed) {
  auto matches = [&](const flag_spec& f) {
    return shorthand != 0 ? f.shorthand == shorthand : f.name == name;
  };
  for (const flag_spec& f : global_flags)
    if (matches(f)) return &f;
  for (const flag_spec& f : verb_flags)
    if (matches(f) && std::find(allowed.begin(), allowed.end(), f.name) != allowed.end()) return &f;
  return nullptr;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" || text == "True") return true;
  if (text == "0" || text == "f" || text == "F" || text == "false" || text == "FALSE" || text == "False") return false;
  return std::nullopt;
}

// Splits arguments into words and flags. `verb` picks the verb flags that are allowed.
std::variant<parsed_arguments, command_error> parse_flags(const std::vector<std::string>& args, std::string_view verb) {
  static const std::vector<std::string_view> none;
  auto known = flags_of_verb().find(verb);
  const auto& allowed = known == flags_of_verb().end() ? none : known->second;
  parsed_arguments out;
  bool flags_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (flags_done || a.size() < 2 || a[0] != '-') {
      out.words.push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    bool is_long = a[1] == '-';
    std::string_view body = std::string_view(a).substr(is_long ? 2 : 1);
    std::size_t equals = body.find('=');
    std::string_view name = body.substr(0, equals);
    const flag_spec* spec = is_long ? find_flag(name, 0, allowed)
                                    : (name.size() == 1 ? find_flag({}, name[0], allowed) : nullptr);
    if (spec == nullptr) {
      return command_error{exit_error, std::string(is_long ? "unknown flag: --" : "unknown shorthand flag: '") +
                                           std::string(is_long ? name : name.substr(0, 1)) + (is_long ? "" : "' in " + a)};
    }
    std::string value;
    if (equals != std::string_view::npos) {
      value = std::string(body.substr(equals + 1));
    } else if (spec->takes_value) {
      if (i + 1 >= args.size()) return command_error{exit_error, "flag needs an argument: --" + std::string(spec->name)};
      value = args[++i];
    } else {
      value = "true";
    }
    if (!spec->takes_value) {
      auto b = parse_bool(value);
      if (!b) {
        return command_error{exit_error, "invalid argument \"" + value + "\" for \"--" + std::string(spec->name) +
                                             "\" flag: strconv.ParseBool: parsing \"" + value + "\": invalid syntax"};
      }
      value = *b ? "true" : "false";
    }
    out.flags[std::string(spec->name)] = value;
  }
  return out;
}

bool flag_set(const parsed_arguments& p, std::string_view name) {
  auto it = p.flags.find(std::string(name));
  return it != p.flags.end() && it->second == "true";
}

std::string flag_value(const parsed_arguments& p, std::string_view name, std::string fallback = {}) {
  auto it = p.flags.find(std::string(name));
  return it == p.flags.end() ? fallback : it->second;
}

// An integer flag: pflag's message when it does not parse.
std::variant<std::int64_t, command_error> int_flag(const parsed_arguments& p, std::string_view name) {
  auto it = p.flags.find(std::string(name));
  if (it == p.flags.end()) return std::int64_t{0};
  auto parsed = go_parse_int(it->second, 10);
  if (auto* error = std::get_if<std::string>(&parsed)) {
    return command_error{exit_error, "invalid argument \"" + it->second + "\" for \"--" + std::string(name) +
                                         "\" flag: " + *error};
  }
  return std::get<std::int64_t>(parsed);
}

// ---- the session: endpoints, timeouts, output ---------------------------------------------------

enum class output_format { simple, json };

struct session {
  std::vector<std::string> endpoints;
  kv::client_options client_options;
  output_format format = output_format::simple;
  bool hex = false;
  std::unique_ptr<kv::client> client;
};

std::vector<std::string> split_list(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    if (std::string_view item = list.substr(0, comma); !item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<command_error> configure(session& s, const parsed_arguments& p) {
  for (std::string_view refused : {"user", "password", "cacert", "cert", "key"}) {
    if (p.flags.contains(std::string(refused)))
      return command_error{exit_bad_feature, "--" + std::string(refused) +
                                                 " is not supported: keeld's native protocol has no TLS or "
                                                 "authentication yet"};
  }
  if (flag_set(p, "insecure-skip-tls-verify"))
    return command_error{exit_bad_feature, "--insecure-skip-tls-verify is not supported: no TLS yet"};
  if (const char* env = std::getenv("ETCDCTL_ENDPOINTS"); env != nullptr && *env != '\0') s.endpoints = split_list(env);
  if (p.flags.contains("endpoints")) s.endpoints = split_list(flag_value(p, "endpoints"));
  if (p.flags.contains("discovery-srv")) {
    // etcdctl: --discovery-srv gives the endpoints, whatever --endpoints says.
    auto found = endpoints_from_srv(flag_value(p, "discovery-srv"), flag_value(p, "discovery-srv-name"));
    if (!found) return command_error{exit_error, found.error().message()};
    s.endpoints = std::move(found.value());
  }
  if (s.endpoints.empty()) s.endpoints.emplace_back(default_endpoint);
  for (auto [name, target] : {std::pair{"dial-timeout", &s.client_options.dial_timeout},
                              std::pair{"command-timeout", &s.client_options.request_timeout}}) {
    if (!p.flags.contains(name)) continue;
    auto d = parse_duration(flag_value(p, name));
    if (!d) {
      return command_error{exit_error, "invalid argument \"" + flag_value(p, name) + "\" for \"--" + name +
                                           "\" flag: time: invalid duration \"" + flag_value(p, name) + "\""};
    }
    *target = *d;
  }
  std::string format = flag_value(p, "write-out", "simple");
  if (format == "simple") s.format = output_format::simple;
  else if (format == "json") s.format = output_format::json;
  else return command_error{exit_bad_feature, format + " not supported as output format"};
  s.hex = flag_set(p, "hex");
  return std::nullopt;
}

// Connects to the first endpoint that answers.
std::optional<command_error> connect(session& s) {
  std::string last;
  for (const std::string& endpoint : s.endpoints) {
    auto c = kv::client::connect(endpoint, s.client_options);
    if (c) {
      s.client = std::move(c).value();
      return std::nullopt;
    }
    last = c.error().message;
  }
  return command_error{exit_error, last};
}

command_error request_failed(const kv::client_error& e, int code = exit_error) { return {code, e.message}; }

// ---- output -------------------------------------------------------------------------------------

std::string hex_bytes(std::string_view data) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : data) {
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// etcdctl's printKV: the key (unless value-only), then the value, each on its own line.
void print_kv(const session& s, const kv::key_value& kv, bool value_only = false) {
  if (!value_only) std::cout << (s.hex ? hex_bytes(kv.key) : kv.key) << '\n';
  std::cout << (s.hex ? hex_bytes(kv.value) : kv.value) << '\n';
}

std::string base64(std::string_view data) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = (std::uint8_t(data[i]) << 16) | (std::uint8_t(data[i + 1]) << 8) | std::uint8_t(data[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += alphabet[(v >> shift) & 63];
  }
  if (std::size_t rest = data.size() - i; rest > 0) {
    std::uint32_t v = std::uint8_t(data[i]) << 16;
    if (rest == 2) v |= std::uint8_t(data[i + 1]) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Go's encoding/json of etcd's protobuf structs: snake_case names with omitempty, int64
// as numbers, bytes as base64.
using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

void json_bytes(json_writer& w, const char* name, std::string_view data, bool omit_empty = true) {
  if (omit_empty && data.empty()) return;
  w.Key(name);
  std::string b = base64(data);
  w.String(b.c_str(), static_cast<rapidjson::SizeType>(b.size()));
}

void json_int(json_writer& w, const char* name, std::int64_t value, bool omit_zero = true) {
  if (omit_zero && value == 0) return;
  w.Key(name);
  w.Int64(value);
}

void json_uint(json_writer& w, const char* name, std::uint64_t value, bool omit_zero = true) {
  if (omit_zero && value == 0) return;
  w.Key(name);
  w.Uint64(value);
}

// The header's fields, inline (for clientv3 types that embed *pb.ResponseHeader).
void json_header_fields(json_writer& w, const native::response_header& h) {
  json_uint(w, "cluster_id", h.cluster_id);
  json_uint(w, "member_id", h.member_id);
  json_int(w, "revision", h.revision);
  json_uint(w, "raft_term", h.raft_term);
}

void json_header(json_writer& w, const native::response_header& h, const char* name = "header") {
  w.Key(name);
  w.StartObject();
  json_header_fields(w, h);
  w.EndObject();
}

void json_key_value(json_writer& w, const kv::key_value& kv) {
  w.StartObject();
  json_bytes(w, "key", kv.key);
  json_int(w, "create_revision", kv.create_revision);
  json_int(w, "mod_revision", kv.mod_revision);
  json_int(w, "version", kv.version);
  json_bytes(w, "value", kv.value);
  json_int(w, "lease", kv.lease);
  w.EndObject();
}

void json_key_values(json_writer& w, const char* name, const std::vector<kv::key_value>& kvs) {
  if (kvs.empty()) return;
  w.Key(name);
  w.StartArray();
  for (const auto& kv : kvs) json_key_value(w, kv);
  w.EndArray();
}

void json_range_body(json_writer& w, const native::response_header& h, const kv::range_result& r) {
  json_header(w, h);
  json_key_values(w, "kvs", r.kvs);
  if (r.more) {
    w.Key("more");
    w.Bool(true);
  }
  json_int(w, "count", r.count);
}

void json_put_body(json_writer& w, const native::response_header& h, const kv::put_result& r) {
  json_header(w, h);
  if (r.prev_kv) {
    w.Key("prev_kv");
    json_key_value(w, *r.prev_kv);
  }
}

void json_delete_body(json_writer& w, const native::response_header& h, const kv::delete_range_result& r) {
  json_header(w, h);
  json_int(w, "deleted", r.deleted);
  json_key_values(w, "prev_kvs", r.prev_kvs);
}

template <typename Body>
void print_json(Body&& body) {
  rapidjson::StringBuffer buffer;
  json_writer w(buffer);
  w.StartObject();
  body(w);
  w.EndObject();
  std::cout << buffer.GetString() << '\n';
}

native::response_header revision_only(std::int64_t revision) {
  native::response_header h;
  h.revision = revision;
  return h;
}

// ---- keys and ranges (clientv3's WithPrefix / WithFromKey) ----------------------------------------

std::string prefix_end(std::string_view key) {
  std::string end(key);
  for (std::size_t i = end.size(); i-- > 0;) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(static_cast<unsigned char>(end[i]) + 1);
      end.resize(i + 1);
      return end;
    }
  }
  return std::string(1, '\0');  // every byte 0xff: no end (etcd's noPrefixEnd)
}

struct key_range {
  std::string key;
  std::string range_end;
};

// KEY [RANGE_END] with --prefix / --from-key, as getGetOp / getDelOp.
std::variant<key_range, command_error> range_of(const std::vector<std::string>& args, bool prefix, bool from_key,
                                                std::string_view usage) {
  if (args.empty() || args.size() > 2) return command_error{exit_bad_args, std::string(usage)};
  if (prefix && from_key)
    return command_error{exit_bad_args, "`--prefix` and `--from-key` cannot be set at the same time, choose one"};
  key_range r{args[0], {}};
  if (args.size() > 1) {
    if (prefix || from_key)
      return command_error{exit_bad_args,
                           "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"};
    r.range_end = args[1];
  }
  if (prefix) {
    if (r.key.empty()) {
      r.key = std::string(1, '\0');
      r.range_end = std::string(1, '\0');
    } else {
      r.range_end = prefix_end(r.key);
    }
  }
  if (from_key) {
    if (r.key.empty()) r.key = std::string(1, '\0');
    r.range_end = std::string(1, '\0');
  }
  return r;
}

// ---- get ------------------------------------------------------------------------------------

struct get_op {
  kv::range_request request;
  bool serializable = false;
  bool print_value_only = false;
  bool count_only = false;
};

std::variant<get_op, command_error> build_get(const parsed_arguments& p, const std::vector<std::string>& args) {
  get_op op;
  std::string consistency = flag_value(p, "consistency", "l");
  if (consistency == "s") op.serializable = true;
  else if (consistency != "l") return command_error{exit_bad_feature, "unknown consistency flag \"" + consistency + "\""};
  if (args.empty())
    return command_error{exit_bad_args, "get command needs one argument as key and an optional argument as range_end"};
  // etcdctl 3.4's get reads KEY [RANGE_END] and ignores any further argument (del refuses).
  std::vector<std::string> used(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(args.size(), 2)));
  auto range = range_of(used, flag_set(p, "prefix"), flag_set(p, "from-key"),
                        "get command needs one argument as key and an optional argument as range_end");
  if (auto* e = std::get_if<command_error>(&range)) return *e;
  op.request.key = std::get<key_range>(range).key;
  op.request.range_end = std::get<key_range>(range).range_end;
  for (auto [name, target] : {std::pair{"limit", &op.request.limit}, std::pair{"rev", &op.request.revision}}) {
    auto v = int_flag(p, name);
    if (auto* e = std::get_if<command_error>(&v)) return *e;
    *target = std::get<std::int64_t>(v);
  }
  std::string order = flag_value(p, "order");
  for (char& c : order) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (order == "ASCEND") op.request.order = kv::sort_order::ascend;
  else if (order == "DESCEND") op.request.order = kv::sort_order::descend;
  else if (!order.empty()) return command_error{exit_bad_feature, "bad sort order " + flag_value(p, "order")};
  std::string target = flag_value(p, "sort-by");
  for (char& c : target) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (target == "CREATE") op.request.target = kv::sort_target::create;
  else if (target == "KEY") op.request.target = kv::sort_target::key;
  else if (target == "MODIFY") op.request.target = kv::sort_target::mod;
  else if (target == "VALUE") op.request.target = kv::sort_target::value;
  else if (target == "VERSION") op.request.target = kv::sort_target::version;
  else if (!target.empty()) return command_error{exit_bad_feature, "bad sort target " + flag_value(p, "sort-by")};
  // clientv3.WithSort: keys come sorted ascending anyway.
  if (op.request.target == kv::sort_target::key && op.request.order == kv::sort_order::ascend)
    op.request.order = kv::sort_order::none;
  op.request.keys_only = flag_set(p, "keys-only");
  op.count_only = flag_set(p, "count-only");
  op.request.count_only = op.count_only;
  op.print_value_only = flag_set(p, "print-value-only");
  if (op.print_value_only && op.request.keys_only)
    return command_error{exit_bad_args, "`--keys-only` and `--print-value-only` cannot be set at the same time, choose one"};
  return op;
}

void print_get(const session& s, const native::response_header& h, const kv::range_result& r, const get_op& op) {
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) { json_range_body(w, h, r); });
    return;
  }
  if (op.count_only) {  // etcdctl 3.5's --count-only
    std::cout << r.count << '\n';
    return;
  }
  for (const auto& kv : r.kvs) print_kv(s, kv, op.print_value_only);
}

int run_get(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  auto built = build_get(p, args);
  if (auto* e = std::get_if<command_error>(&built)) return report(*e);
  const get_op& op = std::get<get_op>(built);
  if (auto e = connect(s)) return report(*e);
  auto got = s.client->range(op.request, op.serializable);
  if (!got) return report(request_failed(got.error()));
  print_get(s, got->header, got.value(), op);
  return exit_success;
}

// ---- put ------------------------------------------------------------------------------------

std::string read_all_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

std::variant<kv::put_request, command_error> build_put(const parsed_arguments& p, const std::vector<std::string>& args,
                                                       bool allow_stdin) {
  constexpr std::string_view usage = "put command needs 1 argument and input from stdin or 2 arguments";
  if (args.empty()) return command_error{exit_bad_args, std::string(usage)};
  kv::put_request put;
  put.key = args[0];
  put.ignore_value = flag_set(p, "ignore-value");
  put.ignore_lease = flag_set(p, "ignore-lease");
  put.prev_kv = flag_set(p, "prev-kv");
  if (put.ignore_value && args.size() > 1)
    return command_error{exit_bad_args, "put command needs only 1 argument when 'ignore-value' is set"};
  if (!put.ignore_value) {
    if (args.size() > 1) {
      put.value = args[1];
    } else {
      if (allow_stdin) put.value = read_all_stdin();
      if (put.value.empty()) return command_error{exit_bad_args, std::string(usage)};
    }
  }
  auto lease = go_parse_int(flag_value(p, "lease", "0"), 16);
  if (auto* e = std::get_if<std::string>(&lease))
    return command_error{exit_bad_args, "bad lease ID (" + *e + "), expecting ID in Hex"};
  put.lease = std::get<std::int64_t>(lease);
  return put;
}

void print_put(const session& s, const native::response_header& h, const kv::put_result& r) {
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) { json_put_body(w, h, r); });
    return;
  }
  std::cout << "OK\n";
  if (r.prev_kv) print_kv(s, *r.prev_kv);
}

int run_put(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  auto built = build_put(p, args, true);
  if (auto* e = std::get_if<command_error>(&built)) return report(*e);
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->put(std::get<kv::put_request>(built));
  if (!done) return report(request_failed(done.error()));
  print_put(s, done->header, done.value());
  return exit_success;
}

// ---- del ------------------------------------------------------------------------------------

std::variant<kv::delete_range_request, command_error> build_del(const parsed_arguments& p,
                                                                const std::vector<std::string>& args) {
  auto range = range_of(args, flag_set(p, "prefix"), flag_set(p, "from-key"),
                        "del command needs one argument as key and an optional argument as range_end");
  if (auto* e = std::get_if<command_error>(&range)) return *e;
  kv::delete_range_request d;
  d.key = std::get<key_range>(range).key;
  d.range_end = std::get<key_range>(range).range_end;
  d.prev_kv = flag_set(p, "prev-kv");
  return d;
}

void print_del(const session& s, const native::response_header& h, const kv::delete_range_result& r) {
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) { json_delete_body(w, h, r); });
    return;
  }
  std::cout << r.deleted << '\n';
  for (const auto& kv : r.prev_kvs) print_kv(s, kv);
}

int run_del(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  auto built = build_del(p, args);
  if (auto* e = std::get_if<command_error>(&built)) return report(*e);
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->delete_range(std::get<kv::delete_range_request>(built));
  if (!done) return report(request_failed(done.error()));
  print_del(s, done->header, done.value());
  return exit_success;
}

// ---- compact --------------------------------------------------------------------------------

int run_compact(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  if (args.size() != 1) return report({exit_bad_args, "compaction command needs 1 argument"});
  auto revision = go_parse_int(args[0], 10);
  if (auto* e = std::get_if<std::string>(&revision)) return report({exit_error, *e});
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->compact(std::get<std::int64_t>(revision), flag_set(p, "physical"));
  if (!done) return report(request_failed(done.error()));
  // etcdctl prints this line in every output format.
  std::cout << "compacted revision " << std::get<std::int64_t>(revision) << '\n';
  return exit_success;
}

// ---- watch ----------------------------------------------------------------------------------

void print_watch(const session& s, const native::watch_response& r) {
  if (s.format == output_format::json) {
    // clientv3.WatchResponse: exported Go field names, no omitempty on its own fields.
    print_json([&](json_writer& w) {
      json_header(w, r.header, "Header");
      w.Key("Events");
      if (r.events.empty()) {
        w.Null();
      } else {
        w.StartArray();
        for (const auto& e : r.events) {
          w.StartObject();
          json_int(w, "type", e.type == kv::event_type::remove ? 1 : 0);
          w.Key("kv");
          json_key_value(w, e.kv);
          if (e.prev_kv) {
            w.Key("prev_kv");
            json_key_value(w, *e.prev_kv);
          }
          w.EndObject();
        }
        w.EndArray();
      }
      w.Key("CompactRevision");
      w.Int64(r.compact_revision);
      w.Key("Canceled");
      w.Bool(r.canceled);
      w.Key("Created");
      w.Bool(false);  // clientv3 never hands the created response to its reader
    });
  } else {
    for (const auto& e : r.events) {
      std::cout << (e.type == kv::event_type::put ? "PUT" : "DELETE") << '\n';
      if (e.prev_kv) print_kv(s, *e.prev_kv);
      print_kv(s, e.kv);
    }
  }
  std::cout.flush();
}

int run_watch(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  if (flag_set(p, "interactive")) return report({exit_bad_feature, "interactive watch is not supported by keelctl"});
  if (args.empty() || args.size() > 2) return report({exit_bad_args, "bad number of arguments"});
  bool prefix = flag_set(p, "prefix");
  if (prefix && args.size() == 2) return report({exit_bad_args, "`range_end` and `--prefix` are mutually exclusive"});
  auto revision = int_flag(p, "rev");
  if (auto* e = std::get_if<command_error>(&revision)) return report(*e);
  native::watch_create_request w;
  w.key = args[0];
  if (args.size() == 2) w.range_end = args[1];
  if (prefix) {
    if (w.key.empty()) {
      w.key = std::string(1, '\0');
      w.range_end = std::string(1, '\0');
    } else {
      w.range_end = prefix_end(w.key);
    }
  }
  w.start_revision = std::get<std::int64_t>(revision);
  w.prev_kv = flag_set(p, "prev-kv");
  w.progress_notify = flag_set(p, "progress-notify");
  if (auto e = connect(s)) return report(*e);
  auto stream = s.client->watch(w);
  if (!stream) return report(request_failed(stream.error()));
  std::optional<native::watch_response> canceled;
  if (stream.value()->created().canceled) canceled = stream.value()->created();
  if (!canceled) {
    auto last = stream.value()->run([&](const native::watch_response& r) {
      if (r.canceled) return false;
      if (!r.events.empty() || s.format == output_format::json) print_watch(s, r);
      return true;
    });
    if (!last) return report(request_failed(last.error(), exit_bad_connection));
    canceled = last.value();
  }
  if (canceled->canceled) {
    // clientv3's WatchResponse.Err(): compaction has its own error.
    std::string reason = canceled->compact_revision != 0 ? "etcdserver: mvcc: required revision has been compacted"
                                                         : canceled->cancel_reason;
    std::fflush(stdout);
    std::fprintf(stderr, "watch was canceled (%s)\n", reason.c_str());
  }
  return report({exit_interrupted, "watch is canceled by the server"});
}

// ---- txn ------------------------------------------------------------------------------------

// Go's %q for a double-quoted string (strconv.Unquote's escapes) or a `raw` string;
// advances `text` past it.
std::optional<std::string> read_go_quoted(std::string_view& text) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '`') {
    auto close = text.find('`', 1);
    if (close == std::string_view::npos) return std::nullopt;
    std::string out(text.substr(1, close - 1));
    text.remove_prefix(close + 1);
    return out;
  }
  if (text.front() != '"') return std::nullopt;
  std::string out;
  for (std::size_t i = 1; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      text.remove_prefix(i + 1);
      return out;
    }
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= text.size()) return std::nullopt;
    char e = text[i];
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\\': out += '\\'; break;
      case '"': out += '"'; break;
      case '\'': out += '\''; break;
      case 'x': {
        if (i + 2 >= text.size()) return std::nullopt;
        auto byte = go_parse_int(text.substr(i + 1, 2), 16);
        if (!std::holds_alternative<std::int64_t>(byte)) return std::nullopt;
        out += static_cast<char>(std::get<std::int64_t>(byte));
        i += 2;
        break;
      }
      default:
        if (e >= '0' && e <= '7' && i + 2 < text.size()) {
          auto byte = go_parse_int(text.substr(i, 3), 8);
          if (!std::holds_alternative<std::int64_t>(byte)) return std::nullopt;
          out += static_cast<char>(std::get<std::int64_t>(byte));
          i += 2;
          break;
        }
        return std::nullopt;
    }
  }
  return std::nullopt;
}

// etcdctl's parseCompare: target("key") op "value", e.g. value("k") = "v", mod("k") > "3".
std::variant<kv::compare, command_error> parse_compare(const std::string& line) {
  command_error malformed{exit_invalid_input, "malformed comparison: " + line};
  auto paren = line.find('(');
  if (paren == std::string::npos) return malformed;
  std::string target = line.substr(0, paren);
  std::string_view rest = std::string_view(line).substr(paren + 1);
  auto key = read_go_quoted(rest);
  if (!key || !rest.starts_with(')')) return malformed;
  rest.remove_prefix(1);
  auto skip_spaces = [&] {
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
  };
  skip_spaces();
  std::size_t op_end = 0;
  while (op_end < rest.size() && !std::isspace(static_cast<unsigned char>(rest[op_end]))) ++op_end;
  std::string op(rest.substr(0, op_end));
  rest.remove_prefix(op_end);
  skip_spaces();
  auto value = read_go_quoted(rest);
  if (!value || op.empty()) return malformed;

  kv::compare c;
  c.key = *key;
  if (op == "=" || op == "==") c.result = kv::compare_result::equal;
  else if (op == "!=") c.result = kv::compare_result::not_equal;
  else if (op == ">") c.result = kv::compare_result::greater;
  else if (op == "<") c.result = kv::compare_result::less;
  else return command_error{exit_invalid_input, "malformed comparison: " + line + " (unknown op " + op + ")"};
  int base = 10;
  if (target == "ver" || target == "version") c.target = kv::compare_target::version;
  else if (target == "c" || target == "create") c.target = kv::compare_target::create;
  else if (target == "m" || target == "mod") c.target = kv::compare_target::mod;
  else if (target == "val" || target == "value") c.target = kv::compare_target::value;
  else if (target == "lease") { c.target = kv::compare_target::lease; base = 16; }
  else return command_error{exit_invalid_input, "malformed comparison: " + line + " (unknown target " + target + ")"};
  if (c.target == kv::compare_target::value) {
    c.value = *value;
  } else {
    auto number = go_parse_int(*value, base);
    if (!std::holds_alternative<std::int64_t>(number))
      return command_error{exit_invalid_input, "invalid txn compare request: " + line};
    c.number = std::get<std::int64_t>(number);
  }
  return c;
}

// etcdctl's argify: "double quoted" (Go escapes), 'single quoted' or bare words.
std::vector<std::string> argify(std::string_view line) {
  std::vector<std::string> out;
  while (true) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    if (line.empty()) break;
    if (line.front() == '"') {
      std::string_view copy = line;
      if (auto quoted = read_go_quoted(copy)) {
        out.push_back(*quoted);
        line = copy;
        continue;
      }
    } else if (line.front() == '\'') {
      auto close = line.find('\'', 1);
      if (close != std::string_view::npos) {
        out.emplace_back(line.substr(1, close - 1));
        line.remove_prefix(close + 1);
        continue;
      }
    }
    std::size_t end = 0;
    while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
    out.emplace_back(line.substr(0, end));
    line.remove_prefix(end);
  }
  return out;
}

// One txn operation line: get / put / del with their own flags.
std::variant<kv::request_op, command_error> parse_request_op(const std::string& line) {
  command_error invalid{exit_invalid_input, "invalid txn request: " + line};
  std::vector<std::string> words = argify(line);
  if (words.size() < 2) return command_error{exit_invalid_input, "invalid txn compare request: " + line};
  std::string verb = words[0];
  if (verb == "delete") verb = "del";
  if (verb != "get" && verb != "put" && verb != "del") return invalid;
  auto parsed = parse_flags(std::vector<std::string>(words.begin() + 1, words.end()), verb);
  if (std::holds_alternative<command_error>(parsed)) return invalid;
  const parsed_arguments& p = std::get<parsed_arguments>(parsed);
  if (verb == "get") {
    auto built = build_get(p, p.words);
    if (auto* e = std::get_if<command_error>(&built)) return *e;
    return kv::request_op::of(std::get<get_op>(built).request);
  }
  if (verb == "put") {
    auto built = build_put(p, p.words, false);
    if (auto* e = std::get_if<command_error>(&built)) return *e;
    return kv::request_op::of(std::get<kv::put_request>(built));
  }
  auto built = build_del(p, p.words);
  if (auto* e = std::get_if<command_error>(&built)) return *e;
  return kv::request_op::of(std::get<kv::delete_range_request>(built));
}

// Reads lines up to a blank one; EOF before it is an error, as etcdctl's ReadString.
std::variant<std::vector<std::string>, command_error> read_section() {
  std::vector<std::string> lines;
  for (;;) {
    std::string line;
    if (!std::getline(std::cin, line)) return command_error{exit_invalid_input, "EOF"};
    auto first = line.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return lines;
    auto last = line.find_last_not_of(" \t\r\n");
    lines.push_back(line.substr(first, last - first + 1));
  }
}

std::variant<kv::txn_request, command_error> read_txn(bool interactive) {
  kv::txn_request t;
  if (interactive) std::cout << "compares:\n" << std::flush;
  auto compares = read_section();
  if (auto* e = std::get_if<command_error>(&compares)) return *e;
  for (const auto& line : std::get<std::vector<std::string>>(compares)) {
    auto c = parse_compare(line);
    if (auto* e = std::get_if<command_error>(&c)) return *e;
    t.compares.push_back(std::get<kv::compare>(c));
  }
  for (auto [title, ops] : {std::pair{"success requests (get, put, del):\n", &t.success},
                            std::pair{"failure requests (get, put, del):\n", &t.failure}}) {
    if (interactive) std::cout << title << std::flush;
    auto lines = read_section();
    if (auto* e = std::get_if<command_error>(&lines)) return *e;
    for (const auto& line : std::get<std::vector<std::string>>(lines)) {
      auto op = parse_request_op(line);
      if (auto* e = std::get_if<command_error>(&op)) return *e;
      ops->push_back(std::get<kv::request_op>(op));
    }
  }
  return t;
}

void print_txn(const session& s, const native::txn_response& r) {
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) {
      json_header(w, r.header);
      if (r.succeeded) {
        w.Key("succeeded");
        w.Bool(true);
      }
      if (r.responses.empty()) return;
      w.Key("responses");
      w.StartArray();
      for (const auto& op : r.responses) {
        // A Go oneof: {"Response":{"ResponsePut":{...}}}.
        w.StartObject();
        w.Key("Response");
        w.StartObject();
        switch (op.type) {
          case kv::request_op::kind::range:
            w.Key("ResponseRange");
            w.StartObject();
            json_range_body(w, revision_only(op.range.revision), op.range);
            w.EndObject();
            break;
          case kv::request_op::kind::put:
            w.Key("ResponsePut");
            w.StartObject();
            json_put_body(w, revision_only(op.put.revision), op.put);
            w.EndObject();
            break;
          case kv::request_op::kind::delete_range:
            w.Key("ResponseDeleteRange");
            w.StartObject();
            json_delete_body(w, revision_only(op.delete_range.revision), op.delete_range);
            w.EndObject();
            break;
          case kv::request_op::kind::txn:  // etcdctl's txn syntax cannot ask for a nested txn
            break;
        }
        w.EndObject();
        w.EndObject();
      }
      w.EndArray();
    });
    return;
  }
  std::cout << (r.succeeded ? "SUCCESS" : "FAILURE") << '\n';
  get_op plain;
  for (const auto& op : r.responses) {
    std::cout << '\n';
    switch (op.type) {
      case kv::request_op::kind::range: print_get(s, {}, op.range, plain); break;
      case kv::request_op::kind::put: print_put(s, {}, op.put); break;
      case kv::request_op::kind::delete_range: print_del(s, {}, op.delete_range); break;
      case kv::request_op::kind::txn: break;  // never asked for (etcdctl's txn syntax)
    }
  }
}

int run_txn(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  auto t = read_txn(flag_set(p, "interactive"));
  if (auto* e = std::get_if<command_error>(&t)) return report(*e);
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->txn(std::get<kv::txn_request>(t));
  if (!done) return report(request_failed(done.error()));
  print_txn(s, done.value());
  return exit_success;
}

// ---- lease ----------------------------------------------------------------------------------

std::string lease_hex(std::int64_t id) {
  char text[32];
  std::snprintf(text, sizeof text, "%016" PRIx64, static_cast<std::uint64_t>(id));
  return text;
}

std::variant<std::int64_t, command_error> lease_id_of(const std::string& arg) {
  auto id = go_parse_int(arg, 16);
  if (auto* e = std::get_if<std::string>(&id))
    return command_error{exit_bad_args, "bad lease ID arg (" + *e + "), expecting ID in Hex"};
  return std::get<std::int64_t>(id);
}

int lease_grant(session& s, const std::vector<std::string>& args) {
  if (args.size() != 1) return report({exit_bad_args, "lease grant command needs TTL argument"});
  auto ttl = go_parse_int(args[0], 10);
  if (auto* e = std::get_if<std::string>(&ttl)) return report({exit_bad_args, "bad TTL (" + *e + ")"});
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->lease_grant(std::get<std::int64_t>(ttl));
  if (!done) return report({exit_error, "failed to grant lease (" + done.error().message + ")"});
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) {
      json_header_fields(w, done->header);
      json_int(w, "ID", done->id, false);
      json_int(w, "TTL", done->ttl, false);
      w.Key("Error");
      w.String(done->error.c_str());
    });
  } else {
    std::cout << "lease " << lease_hex(done->id) << " granted with TTL(" << done->ttl << "s)\n";
  }
  return exit_success;
}

int lease_revoke(session& s, const std::vector<std::string>& args) {
  if (args.size() != 1) return report({exit_bad_args, "lease revoke command needs 1 argument"});
  auto id = lease_id_of(args[0]);
  if (auto* e = std::get_if<command_error>(&id)) return report(*e);
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->lease_revoke(std::get<std::int64_t>(id));
  if (!done) return report({exit_error, "failed to revoke lease (" + done.error().message + ")"});
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) { json_header(w, done->header); });
  } else {
    std::cout << "lease " << lease_hex(std::get<std::int64_t>(id)) << " revoked\n";
  }
  return exit_success;
}

void print_keep_alive(const session& s, const native::lease_keep_alive_response& r) {
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) {
      json_header_fields(w, r.header);
      json_int(w, "ID", r.id, false);
      json_int(w, "TTL", r.ttl, false);
    });
  } else {
    std::cout << "lease " << lease_hex(r.id) << " keepalived with TTL(" << r.ttl << ")\n";
  }
  std::cout.flush();
}

// clientv3's KeepAlive: renew now, then every TTL/3, until the lease is gone.
int lease_keep_alive(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  if (args.size() != 1) return report({exit_bad_args, "lease keep-alive command needs lease ID as argument"});
  auto id = lease_id_of(args[0]);
  if (auto* e = std::get_if<command_error>(&id)) return report(*e);
  std::int64_t lease = std::get<std::int64_t>(id);
  if (auto e = connect(s)) return report(*e);
  bool once = flag_set(p, "once");
  for (;;) {
    auto renewed = s.client->lease_keep_alive(lease);
    if (!renewed) return report(request_failed(renewed.error(), exit_bad_connection));
    if (renewed->ttl <= 0) {
      if (once) return report({exit_bad_connection, "etcdserver: requested lease not found"});
      break;
    }
    print_keep_alive(s, renewed.value());
    if (once) return exit_success;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max<std::int64_t>(renewed->ttl * 1000 / 3, 500)));
  }
  if (s.format == output_format::simple) std::cout << "lease " << lease_hex(lease) << " expired or revoked.\n";
  return exit_success;
}

int lease_time_to_live(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  if (args.size() != 1) return report({exit_bad_args, "lease timetolive command needs lease ID as argument"});
  auto id = lease_id_of(args[0]);
  if (auto* e = std::get_if<command_error>(&id)) return report(*e);
  if (auto e = connect(s)) return report(*e);
  bool keys = flag_set(p, "keys");
  auto done = s.client->lease_time_to_live(std::get<std::int64_t>(id), keys);
  if (!done) return report(request_failed(done.error(), exit_bad_connection));
  const auto& r = done.value();
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) {
      json_header_fields(w, r.header);
      json_int(w, "id", r.id, false);
      json_int(w, "ttl", r.ttl, false);
      json_int(w, "granted-ttl", r.granted_ttl, false);
      w.Key("keys");
      if (r.keys.empty()) {
        w.Null();
      } else {
        w.StartArray();
        for (const auto& k : r.keys) {
          std::string b = base64(k);
          w.String(b.c_str());
        }
        w.EndArray();
      }
    });
    return exit_success;
  }
  if (r.granted_ttl == 0 && r.ttl == -1) {
    std::cout << "lease " << lease_hex(r.id) << " already expired\n";
    return exit_success;
  }
  std::cout << "lease " << lease_hex(r.id) << " granted with TTL(" << r.granted_ttl << "s), remaining(" << r.ttl
            << "s)";
  if (keys) {  // Go's %v of a []string: [a b c]
    std::cout << ", attached keys([";
    for (std::size_t i = 0; i < r.keys.size(); ++i) std::cout << (i ? " " : "") << r.keys[i];
    std::cout << "])";
  }
  std::cout << '\n';
  return exit_success;
}

int lease_list(session& s) {
  if (auto e = connect(s)) return report(*e);
  auto done = s.client->lease_leases();
  if (!done) return report(request_failed(done.error(), exit_bad_connection));
  if (s.format == output_format::json) {
    print_json([&](json_writer& w) {
      json_header_fields(w, done->header);
      w.Key("leases");
      w.StartArray();
      for (std::int64_t id : done->ids) {
        w.StartObject();
        json_int(w, "id", id, false);
        w.EndObject();
      }
      w.EndArray();
    });
  } else {
    std::cout << "found " << done->ids.size() << " leases\n";
    for (std::int64_t id : done->ids) std::cout << lease_hex(id) << '\n';
  }
  return exit_success;
}

constexpr const char* lease_usage =
    "Usage: keelctl lease grant TTL | revoke ID | keep-alive ID [--once] | timetolive ID [--keys] | list\n";

int run_lease(session& s, const parsed_arguments& p, const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fputs(lease_usage, stdout);
    return exit_success;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  const std::string& sub = args[0];
  if (sub == "grant") return lease_grant(s, rest);
  if (sub == "revoke") return lease_revoke(s, rest);
  if (sub == "keep-alive") return lease_keep_alive(s, p, rest);
  if (sub == "timetolive") return lease_time_to_live(s, p, rest);
  if (sub == "list") return lease_list(s);
  std::fputs(lease_usage, stdout);  // cobra prints the parent's help for an unknown sub-verb
  return exit_success;
}

// ---- dispatch -------------------------------------------------------------------------------

constexpr std::string_view verbs[] = {"get", "put", "del", "watch", "txn", "compact", "lease"};

// The first word that is not a flag or a global flag's value.
std::optional<std::string> find_verb(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return i + 1 < args.size() ? std::optional(args[i + 1]) : std::nullopt;
    if (a.size() < 2 || a[0] != '-') return a;
    if (a.find('=') != std::string::npos) continue;
    bool is_long = a[1] == '-';
    std::string_view name = std::string_view(a).substr(is_long ? 2 : 1);
    for (const flag_spec& f : global_flags) {
      bool same = is_long ? f.name == name : (name.size() == 1 && f.shorthand == name[0]);
      if (same && f.takes_value) ++i;
    }
  }
  return std::nullopt;
}

}  // namespace

const char* kv_commands_usage() noexcept {
  return "  keelctl [flags] get KEY [RANGE_END]   [--prefix|--from-key] [--limit N] [--rev N] [--keys-only]\n"
         "                                      [--print-value-only] [--count-only] [--sort-by T] [--order O]\n"
         "  keelctl [flags] put KEY [VALUE]      [--lease HEX] [--prev-kv] [--ignore-value] [--ignore-lease]\n"
         "  keelctl [flags] del KEY [RANGE_END]  [--prefix|--from-key] [--prev-kv]\n"
         "  keelctl [flags] watch KEY [RANGE_END] [--prefix] [--rev N] [--prev-kv] [--progress-notify]\n"
         "  keelctl [flags] txn [-i]             compares, blank line, success ops, blank line,\n"
         "                                      failure ops, blank line (stdin)\n"
         "  keelctl [flags] compact REV          [--physical]\n"
         "  keelctl [flags] lease grant TTL | revoke ID | keep-alive ID [--once] | timetolive ID [--keys] | list\n"
         "                                      (etcdctl v3 verbs over keeld's native protocol; also -w json, --hex)\n";
}

std::optional<int> run_kv_command(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto verb = find_verb(args);
  if (!verb || std::find(std::begin(verbs), std::end(verbs), *verb) == std::end(verbs)) return std::nullopt;
  auto parsed = parse_flags(args, *verb);
  if (auto* e = std::get_if<command_error>(&parsed)) return report(*e);
  parsed_arguments& p = std::get<parsed_arguments>(parsed);
  // words[0] is the verb.
  std::vector<std::string> rest(p.words.begin() + 1, p.words.end());
  if (flag_set(p, "help")) {
    std::fputs(kv_commands_usage(), stdout);
    return exit_success;
  }
  session s;
  if (auto e = configure(s, p)) return report(*e);
  if (*verb == "get") return run_get(s, p, rest);
  if (*verb == "put") return run_put(s, p, rest);
  if (*verb == "del") return run_del(s, p, rest);
  if (*verb == "watch") return run_watch(s, p, rest);
  if (*verb == "txn") return run_txn(s, p, rest);
  if (*verb == "compact") return run_compact(s, p, rest);
  return run_lease(s, p, rest);
}

}  // namespace keel::ctl
