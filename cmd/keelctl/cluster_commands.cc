// cmd/keelctl/cluster_commands.cc — see cluster_commands.h for the contract.
//
// Mirrors etcd 3.4's etcdctl/ctlv3/command (member_command.go, ep_command.go,
// move_leader_command.go, printer_simple.go, printer_table.go, printer_json.go): the
// checks each verb makes of its arguments and their error texts, the requests, and what
// each output format prints.
#include "cluster_commands.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "table.h"

namespace keel::ctl {
namespace {

constexpr int exit_success = 0;
constexpr int exit_failure = 1;

int fail(const std::string& message) {
  std::fprintf(stderr, "Error: %s\n", message.c_str());
  return exit_failure;
}

int usage_failure(const std::string& message) {
  std::fprintf(stderr, "Error: %s\nRun 'keelctl --help' for usage.\n", message.c_str());
  return exit_failure;
}

// ---- formatting ------------------------------------------------------------------------------

std::string hex(std::uint64_t id) {  // Go's %x / types.ID.String()
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "%" PRIx64, id);
  return buffer;
}

std::string hex16(std::uint64_t id) {  // Go's %16x: padded with spaces to 16
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "%16" PRIx64, id);
  return buffer;
}

// Go's %q for the strings etcdctl quotes (names and URLs).
std::string go_quote(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
          out += buffer;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

// Go's strings.Split(s, ","): empty pieces are kept.
std::vector<std::string> split_all(std::string_view text, char separator) {
  std::vector<std::string> out;
  for (;;) {
    std::size_t at = text.find(separator);
    out.emplace_back(text.substr(0, at));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

// ---- the gateway's JSON ----------------------------------------------------------------------

using document = std::shared_ptr<rapidjson::Document>;

// The fields that protobuf holds as 64-bit integers: the gateway (jsonpb) sends them as
// decimal strings, etcdctl's encoding/json prints them as numbers.
bool is_integer_field(std::string_view key) {
  static constexpr std::string_view keys[] = {"cluster_id", "member_id", "revision", "raft_term",
                                              "ID", "dbSize", "leader", "raftIndex", "raftTerm",
                                              "raftAppliedIndex", "dbSizeInUse"};
  return std::find(std::begin(keys), std::end(keys), key) != std::end(keys);
}

// Where a field goes in etcdctl's JSON: the order of the Go structs' fields
// (etcdserverpb.ResponseHeader, Member, StatusResponse, Member*Response).
std::size_t field_rank(std::string_view key) {
  static constexpr std::string_view order[] = {
      "header", "cluster_id", "member_id", "revision", "raft_term", "member", "members", "ID", "name",
      "peerURLs", "clientURLs", "version", "dbSize", "leader", "raftIndex", "raftTerm", "raftAppliedIndex",
      "errors", "dbSizeInUse", "isLearner"};
  auto at = std::find(std::begin(order), std::end(order), key);
  return static_cast<std::size_t>(at - std::begin(order));  // unknown fields last
}

std::uint64_t to_u64(const rapidjson::Value& v) {
  if (v.IsUint64()) return v.GetUint64();
  if (v.IsInt64()) return static_cast<std::uint64_t>(v.GetInt64());
  if (v.IsString()) return std::strtoull(v.GetString(), nullptr, 10);
  return 0;
}

// Go's omitempty: zero numbers, false, "", empty lists and absent messages are left out.
bool omitted(std::string_view key, const rapidjson::Value& v) {
  if (v.IsNull() || v.IsFalse()) return true;
  if (v.IsNumber()) return to_u64(v) == 0;
  if (v.IsString()) {
    if (v.GetStringLength() == 0) return true;
    return is_integer_field(key) && to_u64(v) == 0;
  }
  if (v.IsArray()) return v.Empty();
  return false;
}

using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_etcdctl_json(json_writer& w, const rapidjson::Value& v, std::string_view key) {
  if (v.IsObject()) {
    std::vector<const rapidjson::Value::Member*> fields;
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (!omitted(std::string_view(it->name.GetString(), it->name.GetStringLength()), it->value)) {
        fields.push_back(&*it);
      }
    }
    std::stable_sort(fields.begin(), fields.end(), [](auto* a, auto* b) {
      return field_rank(a->name.GetString()) < field_rank(b->name.GetString());
    });
    w.StartObject();
    for (auto* field : fields) {
      std::string_view name(field->name.GetString(), field->name.GetStringLength());
      w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
      write_etcdctl_json(w, field->value, name);
    }
    w.EndObject();
  } else if (v.IsArray()) {
    w.StartArray();
    for (const auto& item : v.GetArray()) write_etcdctl_json(w, item, key);
    w.EndArray();
  } else if (v.IsString() && is_integer_field(key)) {
    std::string_view text(v.GetString(), v.GetStringLength());
    if (text.starts_with('-')) w.Int64(std::strtoll(v.GetString(), nullptr, 10));
    else w.Uint64(std::strtoull(v.GetString(), nullptr, 10));
  } else {
    v.Accept(w);
  }
}

// The gateway's answer as etcdctl -w json prints the same response.
std::string etcdctl_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  json_writer w(buffer);
  write_etcdctl_json(w, v, "");
  return buffer.GetString();
}

std::uint64_t u64_field(const rapidjson::Value& object, const char* key) {
  if (!object.IsObject()) return 0;
  auto it = object.FindMember(key);
  return it == object.MemberEnd() ? 0 : to_u64(it->value);
}

std::string string_field(const rapidjson::Value& object, const char* key) {
  if (!object.IsObject()) return "";
  auto it = object.FindMember(key);
  return it != object.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

bool bool_field(const rapidjson::Value& object, const char* key) {
  if (!object.IsObject()) return false;
  auto it = object.FindMember(key);
  return it != object.MemberEnd() && it->value.IsTrue();
}

std::vector<std::string> strings_field(const rapidjson::Value& object, const char* key) {
  std::vector<std::string> out;
  if (!object.IsObject()) return out;
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsArray()) return out;
  for (const auto& item : it->value.GetArray())
    if (item.IsString()) out.emplace_back(item.GetString());
  return out;
}

const rapidjson::Value& header_of(const rapidjson::Value& doc) {
  static const rapidjson::Value none(rapidjson::kObjectType);
  if (!doc.IsObject()) return none;
  auto it = doc.FindMember("header");
  return it != doc.MemberEnd() && it->value.IsObject() ? it->value : none;
}

struct member_info {
  std::uint64_t id = 0;
  std::string name;
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;
};

std::vector<member_info> members_of(const rapidjson::Value& doc) {
  std::vector<member_info> out;
  if (!doc.IsObject()) return out;
  auto it = doc.FindMember("members");
  if (it == doc.MemberEnd() || !it->value.IsArray()) return out;
  for (const auto& m : it->value.GetArray()) {
    out.push_back({u64_field(m, "ID"), string_field(m, "name"), strings_field(m, "peerURLs"),
                   strings_field(m, "clientURLs"), bool_field(m, "isLearner")});
  }
  return out;
}

// ---- requests --------------------------------------------------------------------------------

struct call_error {
  std::string message;
  bool transport = true;  // no answer (try another endpoint), rather than the server's refusal
};

// POSTs `body` to `path` on `url`; the answer's JSON, or why there is none. A non-200
// answer is the server's error: grpc-gateway's {"error", "message", "code"} body.
std::variant<document, call_error> post(const std::string& url, std::string_view path, std::string_view body,
                                        const http_request_limits& limits) {
  auto parsed = parse_endpoint(url);
  if (auto* error = std::get_if<http_error>(&parsed)) return call_error{error->message};
  const auto& address = std::get<endpoint_address>(parsed);
  std::string host = address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host;
  auto answered = http_post(address, host + ":" + std::to_string(address.port), path, body, limits);
  if (auto* error = std::get_if<http_error>(&answered)) return call_error{error->message};
  const http_response& response = std::get<http_response>(answered);
  auto doc = std::make_shared<rapidjson::Document>();
  doc->Parse(response.body.data(), response.body.size());
  bool is_object = !doc->HasParseError() && doc->IsObject();
  if (response.status_code != 200) {
    std::string message = is_object ? string_field(*doc, "message") : "";
    if (message.empty() && is_object) message = string_field(*doc, "error");
    if (message.empty()) {
      message = "unexpected HTTP status " + std::to_string(response.status_code) + " from " + std::string(path);
    }
    return call_error{message, false};
  }
  if (!is_object) return call_error{"invalid JSON from " + std::string(path), false};
  return doc;
}

// Asks the endpoints in order until one answers, as etcd's client moves to the next
// endpoint when one cannot be reached; the server's own error ends the search. `used`
// gets the endpoint that answered.
std::variant<document, call_error> post_any(const cluster_invocation& inv, std::string_view path,
                                            std::string_view body, std::string* used = nullptr) {
  call_error last{"no endpoints"};
  for (const std::string& url : inv.endpoints) {
    auto answer = post(url, path, body, inv.limits);
    if (auto* error = std::get_if<call_error>(&answer); error && error->transport) {
      last = *error;
      continue;
    }
    if (used) *used = url;
    return answer;
  }
  return last;
}

constexpr std::string_view member_list_path = "/v3/cluster/member/list";
constexpr std::string_view status_path = "/v3/maintenance/status";

// ---- member list -----------------------------------------------------------------------------

std::vector<std::vector<std::string>> member_rows(const std::vector<member_info>& members) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : members) {
    rows.push_back({hex(m.id), m.name.empty() ? "unstarted" : "started", m.name, join(m.peer_urls, ","),
                    join(m.client_urls, ","), m.is_learner ? "true" : "false"});
  }
  return rows;
}

int member_list(const cluster_invocation& inv, const std::vector<std::string>& args) {
  if (!args.empty()) return usage_failure("unexpected argument \"" + args[0] + "\" for \"member list\"");
  auto answer = post_any(inv, member_list_path, "{}");
  if (auto* error = std::get_if<call_error>(&answer)) return fail(error->message);
  const rapidjson::Document& doc = *std::get<document>(answer);
  if (inv.format == "json") {
    std::printf("%s\n", etcdctl_json(doc).c_str());
  } else if (inv.format == "table") {
    std::fputs(render_table({"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"},
                            member_rows(members_of(doc)))
                   .c_str(),
               stdout);
  } else {
    for (const auto& row : member_rows(members_of(doc))) std::printf("%s\n", join(row, ", ").c_str());
  }
  return exit_success;
}

// ---- member add / remove / promote -----------------------------------------------------------

std::string decimal_id_body(std::uint64_t id) { return "{\"ID\":\"" + std::to_string(id) + "\"}"; }

int member_add(const cluster_invocation& inv, const std::vector<std::string>& args) {
  if (args.empty()) return fail("member name not provided");
  if (args.size() > 1) {
    std::string message = "too many arguments";
    for (const std::string& a : args) {
      std::string lower = a;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower.starts_with("http")) message += ", did you mean --peer-urls=" + a;
    }
    return fail(message);
  }
  const std::string& name = args[0];
  if (!inv.peer_urls || inv.peer_urls->empty()) return fail("member peer urls not provided");
  if (inv.format == "table") return fail("table not supported as output format");
  std::vector<std::string> urls = split_all(*inv.peer_urls, ',');

  rapidjson::StringBuffer buffer;
  json_writer w(buffer);
  w.StartObject();
  w.Key("peerURLs");
  w.StartArray();
  for (const auto& u : urls) w.String(u.c_str());
  w.EndArray();
  if (inv.learner) {
    w.Key("isLearner");
    w.Bool(true);
  }
  w.EndObject();

  std::string used;
  auto answer = post_any(inv, "/v3/cluster/member/add", buffer.GetString(), &used);
  if (auto* error = std::get_if<call_error>(&answer)) return fail(error->message);
  document doc = std::get<document>(answer);
  if (inv.format == "json") {
    std::printf("%s\n", etcdctl_json(*doc).c_str());
    return exit_success;
  }
  std::uint64_t new_id = 0;
  if (auto it = doc->FindMember("member"); it != doc->MemberEnd()) new_id = u64_field(it->value, "ID");
  std::printf("Member %s added to cluster %s\n", hex16(new_id).c_str(),
              hex16(u64_field(header_of(*doc), "cluster_id")).c_str());

  // The new ETCD_INITIAL_CLUSTER: the members the answer lists (etcd 3.4 includes them);
  // asked for separately, of the same member, when the answer does not.
  std::vector<member_info> members = members_of(*doc);
  if (!doc->HasMember("members")) {
    auto listed = post(used, member_list_path, "{}", inv.limits);
    if (auto* error = std::get_if<call_error>(&listed)) return fail(error->message);
    members = members_of(*std::get<document>(listed));
  }
  std::vector<std::string> conf;
  for (const auto& m : members) {
    for (const auto& u : m.peer_urls) conf.push_back((m.id == new_id ? name : m.name) + "=" + u);
  }
  std::printf("\n");
  std::printf("ETCD_NAME=%s\n", go_quote(name).c_str());
  std::printf("ETCD_INITIAL_CLUSTER=%s\n", go_quote(join(conf, ",")).c_str());
  std::printf("ETCD_INITIAL_ADVERTISE_PEER_URLS=%s\n", go_quote(*inv.peer_urls).c_str());
  std::printf("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
  return exit_success;
}

// member remove / member promote: `what` is "removed from" or "promoted in".
int member_change(const cluster_invocation& inv, const std::vector<std::string>& args, std::string_view path,
                  const char* what) {
  if (args.size() != 1) return fail("member ID is not provided");
  std::string error;
  auto id = parse_hex_id(args[0], error);
  if (!id) return fail("bad member ID arg (" + error + "), expecting ID in Hex");
  if (inv.format == "table") return fail("table not supported as output format");
  auto answer = post_any(inv, path, decimal_id_body(*id));
  if (auto* e = std::get_if<call_error>(&answer)) return fail(e->message);
  const rapidjson::Document& doc = *std::get<document>(answer);
  if (inv.format == "json") {
    std::printf("%s\n", etcdctl_json(doc).c_str());
  } else {
    std::printf("Member %s %s cluster %s\n", hex16(*id).c_str(), what,
                hex16(u64_field(header_of(doc), "cluster_id")).c_str());
  }
  return exit_success;
}

// ---- endpoint status -------------------------------------------------------------------------

struct endpoint_status {
  std::string endpoint;
  document doc;       // null when the endpoint did not answer
  std::string error;  // why not
};

std::vector<std::string> status_row(const endpoint_status& s) {
  const rapidjson::Value& d = *s.doc;
  std::uint64_t member = u64_field(header_of(d), "member_id");
  return {s.endpoint,
          hex(member),
          string_field(d, "version"),
          humanize_bytes(u64_field(d, "dbSize")),
          u64_field(d, "leader") == member ? "true" : "false",
          bool_field(d, "isLearner") ? "true" : "false",
          std::to_string(u64_field(d, "raftTerm")),
          std::to_string(u64_field(d, "raftIndex")),
          std::to_string(u64_field(d, "raftAppliedIndex")),
          join(strings_field(d, "errors"), ", ")};
}

int endpoint_status_command(const cluster_invocation& inv, const std::vector<std::string>& args) {
  if (!args.empty()) return usage_failure("unexpected argument \"" + args[0] + "\" for \"endpoint status\"");
  std::vector<std::string> endpoints = inv.endpoints;
  if (inv.cluster) {  // etcdctl's endpointsFromCluster: every member's client URLs
    auto answer = post_any(inv, member_list_path, "{}");
    if (auto* error = std::get_if<call_error>(&answer)) {
      return fail("failed to fetch endpoints from etcd cluster member list: " + error->message);
    }
    endpoints.clear();
    for (const auto& m : members_of(*std::get<document>(answer)))
      endpoints.insert(endpoints.end(), m.client_urls.begin(), m.client_urls.end());
  }

  // Ask every endpoint at once (one dead endpoint costs one timeout); report in order.
  std::vector<endpoint_status> results(endpoints.size());
  std::vector<std::thread> workers;
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    workers.emplace_back([&, i] {
      results[i].endpoint = endpoints[i];
      auto answer = post(endpoints[i], status_path, "{}", inv.limits);
      if (auto* error = std::get_if<call_error>(&answer)) results[i].error = error->message;
      else results[i].doc = std::get<document>(answer);
    });
  }
  for (auto& worker : workers) worker.join();

  bool failed = false;
  std::vector<const endpoint_status*> answered;
  for (const auto& r : results) {
    if (r.doc) {
      answered.push_back(&r);
    } else {
      failed = true;
      std::fprintf(stderr, "Failed to get the status of endpoint %s (%s)\n", r.endpoint.c_str(), r.error.c_str());
    }
  }
  if (inv.format == "json") {
    rapidjson::StringBuffer buffer;
    json_writer w(buffer);
    w.StartArray();
    for (const auto* r : answered) {
      w.StartObject();
      w.Key("Endpoint");
      w.String(r->endpoint.c_str());
      w.Key("Status");
      write_etcdctl_json(w, *r->doc, "");
      w.EndObject();
    }
    w.EndArray();
    std::printf("%s\n", buffer.GetString());
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto* r : answered) rows.push_back(status_row(*r));
    if (inv.format == "table") {
      std::fputs(render_table({"ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM",
                               "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"},
                              rows)
                     .c_str(),
                 stdout);
    } else {
      for (const auto& row : rows) std::printf("%s\n", join(row, ", ").c_str());
    }
  }
  return failed ? exit_failure : exit_success;
}

// ---- move-leader -----------------------------------------------------------------------------

int move_leader(const cluster_invocation& inv, const std::vector<std::string>& args) {
  if (args.size() != 1) return fail("move-leader command needs 1 argument");
  std::string error;
  auto target = parse_hex_id(args[0], error);
  if (!target) return fail(error);
  if (inv.format == "table") return fail("table not supported as output format");

  // The current leader: the first endpoint whose status names itself leader.
  std::string leader_endpoint;
  std::uint64_t leader = 0;
  for (const std::string& url : inv.endpoints) {
    auto answer = post(url, status_path, "{}", inv.limits);
    if (auto* e = std::get_if<call_error>(&answer)) return fail(e->message);
    const rapidjson::Document& doc = *std::get<document>(answer);
    std::uint64_t member = u64_field(header_of(doc), "member_id");
    if (member != 0 && member == u64_field(doc, "leader")) {
      leader_endpoint = url;
      leader = member;
      break;
    }
  }
  if (leader_endpoint.empty()) return fail("no leader endpoint given at [" + join(inv.endpoints, " ") + "]");

  auto moved = post(leader_endpoint, "/v3/maintenance/transfer-leadership",
                    "{\"targetID\":\"" + std::to_string(*target) + "\"}", inv.limits);
  if (auto* e = std::get_if<call_error>(&moved)) return fail(e->message);
  if (inv.format == "json") {
    std::printf("%s\n", etcdctl_json(*std::get<document>(moved)).c_str());
  } else {
    std::printf("Leadership transferred from %s to %s\n", hex(leader).c_str(), hex(*target).c_str());
  }
  return exit_success;
}

}  // namespace

std::optional<std::uint64_t> parse_hex_id(const std::string& text, std::string& error) {
  // strconv.ParseUint(s, 16, 64): digits only (no sign, no 0x, no '_'), range-checked as it goes.
  auto syntax = [&] {
    error = "strconv.ParseUint: parsing " + go_quote(text) + ": invalid syntax";
    return std::nullopt;
  };
  if (text.empty()) return syntax();
  constexpr std::uint64_t cutoff = UINT64_MAX / 16 + 1;
  std::uint64_t n = 0;
  for (unsigned char c : text) {
    unsigned d = 0;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (std::tolower(c) >= 'a' && std::tolower(c) <= 'f') d = static_cast<unsigned>(std::tolower(c) - 'a' + 10);
    else return syntax();
    if (n >= cutoff) {
      error = "strconv.ParseUint: parsing " + go_quote(text) + ": value out of range";
      return std::nullopt;
    }
    n = n * 16 + d;  // cannot wrap: n < 2^60 here
  }
  return n;
}

std::string humanize_bytes(std::uint64_t bytes) {
  if (bytes < 10) return std::to_string(bytes) + " B";
  static const char* sizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double e = std::floor(std::log(static_cast<double>(bytes)) / std::log(1000.0));
  double value = std::floor(static_cast<double>(bytes) / std::pow(1000.0, e) * 10 + 0.5) / 10;
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, value < 10 ? "%.1f %s" : "%.0f %s", value, sizes[static_cast<int>(e)]);
  return buffer;
}

bool is_cluster_command(const std::vector<std::string>& words) {
  if (words.empty()) return false;
  if (words[0] == "member" || words[0] == "move-leader") return true;
  return words[0] == "endpoint" && words.size() >= 2 && words[1] == "status";
}

int run_cluster_command(const cluster_invocation& inv) {
  const auto& words = inv.words;
  if (words[0] == "move-leader") return move_leader(inv, {words.begin() + 1, words.end()});
  if (words[0] == "endpoint") return endpoint_status_command(inv, {words.begin() + 2, words.end()});
  // member
  if (words.size() < 2) return usage_failure("\"member\" needs a subcommand: list, add, remove or promote");
  std::vector<std::string> args(words.begin() + 2, words.end());
  const std::string& sub = words[1];
  if (sub == "list") return member_list(inv, args);
  if (sub == "add") return member_add(inv, args);
  if (sub == "remove") return member_change(inv, args, "/v3/cluster/member/remove", "removed from");
  if (sub == "promote") return member_change(inv, args, "/v3/cluster/member/promote", "promoted in");
  return usage_failure("unknown command \"" + sub + "\" for \"keelctl member\"");
}

}  // namespace keel::ctl
