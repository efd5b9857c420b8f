// cmd/keelctl/main.cc — keelctl, a small etcdctl-compatible client for keeld.
//
// It speaks the HTTP side of the etcd API (GET /health, GET /version), so it works
// against keeld and against a real etcd alike, and it prints what etcdctl v3 prints so
// that scripts written for one work with the other:
//
//   keelctl [global flags] endpoint health
//   keelctl [global flags] endpoint status [--cluster]      (cluster_commands.h: these
//   keelctl [global flags] member list|add|remove|promote    POST to the v3 JSON gateway)
//   keelctl [global flags] move-leader HEXID
//   keelctl [global flags] version
//   keelctl wal check DIR      (offline: what WAL recovery would do; changes nothing)
//
// Global flags may come before or after the command words, as with etcdctl (cobra).
// Exit status: 0 on success, 1 on any failure (bad usage, an unhealthy endpoint, no
// endpoint answering, a corrupt WAL).
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "cluster_commands.h"
#include "http_client.h"
#include "kv_commands.h"
#include "srv_endpoints.h"
#include "table.h"
#include "keel/kv/snapshot.h"
#include "keel/kv/wal_recovery.h"
#include "v2_commands.h"

#ifndef KEELCTL_VERSION
#define KEELCTL_VERSION "0.0.0"
#endif

namespace keel::ctl {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr int exit_success = 0;
constexpr int exit_failure = 1;
constexpr std::string_view default_endpoint = "http://127.0.0.1:2379";

enum class output_format { simple, json, table };

struct options {
  std::vector<std::string> endpoints;
  http_request_limits limits;
  output_format format = output_format::simple;
  bool help = false;
  bool version = false;
  std::vector<std::string> command;  // the non-flag words, e.g. {"endpoint", "health"}
  // The cluster verbs' own flags (cluster_commands.h).
  bool cluster = false;                  // endpoint status --cluster
  std::optional<std::string> peer_urls;  // member add --peer-urls
  bool learner = false;                  // member add --learner
  std::string discovery_srv;             // --discovery-srv: endpoints from DNS SRV records
  std::string discovery_srv_name;        // --discovery-srv-name
};

struct usage_error {
  std::string message;
};

void print_usage(std::FILE* out) {
  std::fputs(
      "keelctl — a small etcdctl-compatible client for keeld (and etcd)\n"
      "\n"
      "Usage:\n"
      "  keelctl [flags] endpoint health   check that each endpoint answers GET /health\n"
      "  keelctl [flags] endpoint status [--cluster]\n"
      "                                    each endpoint's member id, version, db size, leader,\n"
      "                                    raft term and index (POST /v3/maintenance/status);\n"
      "                                    --cluster: every member's client URLs instead\n"
      "  keelctl [flags] member list       the members: id, status, name, peer and client URLs,\n"
      "                                    learner (POST /v3/cluster/member/list)\n"
      "  keelctl [flags] member add NAME --peer-urls=URL[,URL] [--learner]\n"
      "  keelctl [flags] member remove ID | member promote ID   (ID in hex)\n"
      "  keelctl [flags] move-leader ID    hand leadership to member ID (hex), asking the\n"
      "                                    leader among the endpoints\n"
      "  keelctl [flags] version           print the server's etcdserver/etcdcluster versions\n"
      "  keelctl v2 COMMAND ...            etcdctl's v2 commands (set, get, ls, watch...; also\n"
      "                                    ETCDCTL_API=2 keelctl COMMAND); keelctl v2 --help\n"
      "  keelctl [flags] get|put|del|watch|txn|compact|lease ...\n"
      "                                    etcdctl v3 verbs over keeld's native protocol; keelctl get --help\n"
      "  keelctl wal check DIR             report what WAL recovery would do in DIR (a WAL\n"
      "                                    directory, or a data directory holding wal/),\n"
      "                                    and the newest snapshot that verifies in the\n"
      "                                    snap/ beside it; changes nothing; exit 1 on\n"
      "                                    corruption\n"
      "  keelctl wal truncate DIR FILE:OFFSET\n"
      "                                    after keeld refused a WAL naming FILE:OFFSET in\n"
      "                                    its newest segment, and only when that was no\n"
      "                                    damage (a power cut: docs/formats/wal.md): zero\n"
      "                                    the segment from there on; records after it are\n"
      "                                    lost\n"
      "\n"
      "Flags:\n"
      "      --endpoints=URLS         comma-separated endpoints (default http://127.0.0.1:2379;\n"
      "                               $ETCDCTL_ENDPOINTS when the flag is absent)\n"
      "  -d, --discovery-srv=DOMAIN   endpoints from the SRV records _etcd-client._tcp.DOMAIN\n"
      "                               (wins over --endpoints, as etcdctl's)\n"
      "      --discovery-srv-name=N   query _etcd-client-N._tcp.DOMAIN instead\n"
      "      --dial-timeout=DUR       timeout for connecting (default 2s)\n"
      "      --command-timeout=DUR    timeout for the whole request (default 5s)\n"
      "  -w, --write-out=FORMAT       simple, json or table (default simple)\n"
      "  -h, --help                   show this help\n"
      "      --version                print keelctl's version\n"
      "\n"
      "Durations are Go-style: 500ms, 2s, 1m, 1m30s.\n",
      out);
}

// Parses a Go time.ParseDuration string ("1.5s", "1m30s", "250ms"). Rejects values
// without a unit (except "0") and negative values, which make no sense as timeouts.
std::optional<nanoseconds> parse_go_duration(std::string_view text) {
  if (text == "0") return nanoseconds{0};
  if (text.empty()) return std::nullopt;
  long double total = 0;
  while (!text.empty()) {
    std::size_t number_end = 0;
    while (number_end < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[number_end])) || text[number_end] == '.')) {
      ++number_end;
    }
    if (number_end == 0) return std::nullopt;
    std::string number(text.substr(0, number_end));
    text.remove_prefix(number_end);
    std::size_t unit_end = 0;
    while (unit_end < text.size() &&
           !std::isdigit(static_cast<unsigned char>(text[unit_end])) && text[unit_end] != '.') {
      ++unit_end;
    }
    std::string_view unit = text.substr(0, unit_end);
    text.remove_prefix(unit_end);
    long double scale = 0;
    if (unit == "ns") scale = 1;
    else if (unit == "us" || unit == "µs" || unit == "μs") scale = 1e3;
    else if (unit == "ms") scale = 1e6;
    else if (unit == "s") scale = 1e9;
    else if (unit == "m") scale = 60e9;
    else if (unit == "h") scale = 3600e9;
    else return std::nullopt;
    char* end = nullptr;
    long double value = std::strtold(number.c_str(), &end);
    if (end != number.c_str() + number.size()) return std::nullopt;
    total += value * scale;
  }
  if (total > 1e18L) return std::nullopt;
  return nanoseconds{static_cast<std::int64_t>(std::llround(static_cast<double>(total)))};
}

// Appends v's last `precision` decimal digits as a fraction with trailing zeros removed
// (".5", ".001234", or nothing) and returns v with those digits dropped, like Go's fmtFrac.
std::uint64_t append_fraction(std::string& out, std::uint64_t v, int precision) {
  std::string digits;
  bool printing = false;
  for (int i = 0; i < precision; ++i) {
    char digit = static_cast<char>('0' + v % 10);
    printing = printing || digit != '0';
    if (printing) digits.insert(digits.begin(), digit);
    v /= 10;
  }
  if (printing) out += "." + digits;
  return v;
}

// Formats a duration exactly as Go's time.Duration.String() does ("1.974817ms",
// "5.001117473s", "1m0s"), because etcdctl prints "took" that way.
std::string format_go_duration(nanoseconds duration) {
  std::uint64_t u = static_cast<std::uint64_t>(std::max<std::int64_t>(0, duration.count()));
  if (u == 0) return "0s";
  std::string fraction;
  if (u < 1'000) return std::to_string(u) + "ns";
  if (u < 1'000'000) {
    std::uint64_t whole = append_fraction(fraction, u, 3);
    return std::to_string(whole) + fraction + "µs";
  }
  if (u < 1'000'000'000) {
    std::uint64_t whole = append_fraction(fraction, u, 6);
    return std::to_string(whole) + fraction + "ms";
  }
  std::uint64_t seconds = append_fraction(fraction, u, 9);
  std::string out = std::to_string(seconds % 60) + fraction + "s";
  if (seconds >= 60) out = std::to_string(seconds / 60 % 60) + "m" + out;
  if (seconds >= 3600) out = std::to_string(seconds / 3600) + "h" + out;
  return out;
}

std::vector<std::string> split_endpoints(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<usage_error> apply_flag(options& parsed, std::string_view name, std::string_view value) {
  if (name == "endpoints") {
    parsed.endpoints = split_endpoints(value);
    if (parsed.endpoints.empty()) return usage_error{"--endpoints needs at least one URL"};
  } else if (name == "dial-timeout" || name == "command-timeout") {
    auto duration = parse_go_duration(value);
    if (!duration || duration->count() <= 0) {
      return usage_error{"invalid argument \"" + std::string(value) + "\" for \"--" +
                         std::string(name) + "\" flag: want a positive Go duration like 2s or 500ms"};
    }
    auto rounded = std::chrono::ceil<milliseconds>(*duration);
    (name == "dial-timeout" ? parsed.limits.dial_timeout : parsed.limits.command_timeout) = rounded;
  } else if (name == "cluster" || name == "learner") {
    bool on = false;
    if (value == "true" || value == "1" || value == "t" || value == "T" || value == "TRUE" || value == "True") {
      on = true;
    } else if (!(value == "false" || value == "0" || value == "f" || value == "F" || value == "FALSE" ||
                 value == "False")) {
      return usage_error{"invalid argument \"" + std::string(value) + "\" for \"--" + std::string(name) +
                         "\" flag: strconv.ParseBool: parsing \"" + std::string(value) + "\": invalid syntax"};
    }
    (name == "cluster" ? parsed.cluster : parsed.learner) = on;
  } else if (name == "peer-urls") {
    parsed.peer_urls = std::string(value);
  } else if (name == "discovery-srv") {
    parsed.discovery_srv = std::string(value);
  } else if (name == "discovery-srv-name") {
    parsed.discovery_srv_name = std::string(value);
  } else if (name == "write-out") {
    if (value == "simple") parsed.format = output_format::simple;
    else if (value == "json") parsed.format = output_format::json;
    else if (value == "table") parsed.format = output_format::table;
    else return usage_error{"unsupported output format \"" + std::string(value) + "\" (want simple, json or table)"};
  }
  return std::nullopt;
}

// Maps a flag as typed ("-w", "--write-out") to its long name, or "" if unknown.
// `takes_value` says whether it needs an argument.
std::string_view canonical_flag(std::string_view typed, bool& takes_value) {
  takes_value = true;
  if (typed == "--endpoints") return "endpoints";
  if (typed == "--dial-timeout") return "dial-timeout";
  if (typed == "--command-timeout") return "command-timeout";
  if (typed == "-w" || typed == "--write-out") return "write-out";
  if (typed == "--peer-urls") return "peer-urls";
  if (typed == "-d" || typed == "--discovery-srv") return "discovery-srv";
  if (typed == "--discovery-srv-name") return "discovery-srv-name";
  takes_value = false;
  if (typed == "--insecure-discovery") return "insecure-discovery";  // plain http only: accepted
  if (typed == "--cluster") return "cluster";
  if (typed == "--learner") return "learner";
  if (typed == "-h" || typed == "--help") return "help";
  if (typed == "--version") return "version";
  return "";
}

std::variant<options, usage_error> parse_arguments(int argc, char** argv) {
  options parsed;
  // Environment first, so that flags override it.
  if (const char* env = std::getenv("ETCDCTL_ENDPOINTS"); env != nullptr && *env != '\0') {
    parsed.endpoints = split_endpoints(env);
  }
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    if (flags_done || !argument.starts_with('-') || argument == "-") {
      parsed.command.emplace_back(argument);
      continue;
    }
    if (argument == "--") {
      flags_done = true;
      continue;
    }
    std::size_t equals = argument.find('=');
    std::string_view typed = argument.substr(0, equals);
    bool takes_value = false;
    std::string_view name = canonical_flag(typed, takes_value);
    if (name.empty()) return usage_error{"unknown flag: " + std::string(typed)};
    if (name == "help") { parsed.help = true; continue; }
    if (name == "version") { parsed.version = true; continue; }
    std::string_view value;
    if (!takes_value) {  // a boolean: --cluster, --cluster=false
      value = equals != std::string_view::npos ? argument.substr(equals + 1) : "true";
    } else if (equals != std::string_view::npos) {
      value = argument.substr(equals + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error{"flag needs an argument: " + std::string(typed)};
    }
    if (auto error = apply_flag(parsed, name, value)) return *error;
  }
  if (!parsed.discovery_srv.empty()) {
    // etcdctl: --discovery-srv gives the endpoints, whatever --endpoints says.
    auto found = endpoints_from_srv(parsed.discovery_srv, parsed.discovery_srv_name);
    if (!found) return usage_error{found.error().message()};
    parsed.endpoints = std::move(found.value());
  }
  if (parsed.endpoints.empty()) parsed.endpoints.emplace_back(default_endpoint);
  return parsed;
}

// ---- output helpers -------------------------------------------------------------

int fail(const std::string& message) {
  std::fprintf(stderr, "Error: %s\n", message.c_str());
  return exit_failure;
}

int usage_failure(const std::string& message) {
  std::fprintf(stderr, "Error: %s\nRun 'keelctl --help' for usage.\n", message.c_str());
  return exit_failure;
}

// GETs `path` from the endpoint URL `url`.
std::variant<http_response, http_error> fetch(const std::string& url, std::string_view path,
                                              const http_request_limits& limits) {
  auto parsed = parse_endpoint(url);
  if (auto* error = std::get_if<http_error>(&parsed)) return *error;
  const auto& address = std::get<endpoint_address>(parsed);
  std::string host = address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host;
  return http_get(address, host + ":" + std::to_string(address.port), path, limits);
}

// ---- endpoint health -------------------------------------------------------------

struct endpoint_health {
  std::string endpoint;
  bool healthy = false;
  nanoseconds took{0};
  std::string error;  // empty when healthy
};

// Healthy means HTTP 200 and a JSON object whose "health" is "true" (etcd sends the
// string; a boolean true is accepted too).
std::string judge_health(const http_response& response) {
  rapidjson::Document body;
  body.Parse(response.body.data(), response.body.size());
  bool is_object = !body.HasParseError() && body.IsObject();
  if (is_object && body.HasMember("reason") && body["reason"].IsString() &&
      body["reason"].GetStringLength() > 0 && response.status_code != 200) {
    return body["reason"].GetString();
  }
  if (response.status_code != 200) {
    return "unexpected HTTP status " + std::to_string(response.status_code) + " from /health";
  }
  if (body.HasParseError()) {
    return std::string("invalid JSON from /health: ") + rapidjson::GetParseError_En(body.GetParseError());
  }
  if (!is_object || !body.HasMember("health")) return "no \"health\" field in /health response";
  const auto& health = body["health"];
  if ((health.IsString() && std::string_view(health.GetString()) == "true") || health.IsTrue()) {
    return "";
  }
  return "server reports health \"" + std::string(health.IsString() ? health.GetString() : "false") + "\"";
}

endpoint_health check_health(const std::string& url, const http_request_limits& limits) {
  endpoint_health result;
  result.endpoint = url;
  auto start = std::chrono::steady_clock::now();
  auto fetched = fetch(url, "/health", limits);
  result.took = std::chrono::steady_clock::now() - start;
  if (auto* error = std::get_if<http_error>(&fetched)) {
    result.error = error->message;
  } else {
    result.error = judge_health(std::get<http_response>(fetched));
  }
  result.healthy = result.error.empty();
  return result;
}

void print_health_simple(const std::vector<endpoint_health>& results) {
  for (const auto& r : results) {
    if (r.healthy) {
      std::printf("%s is healthy: successfully committed proposal: took = %s\n", r.endpoint.c_str(),
                  format_go_duration(r.took).c_str());
    } else {
      std::fprintf(stderr, "%s is unhealthy: failed to commit proposal: %s\n", r.endpoint.c_str(),
                   r.error.c_str());
    }
  }
}

void print_health_json(const std::vector<endpoint_health>& results) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartArray();
  for (const auto& r : results) {
    writer.StartObject();
    writer.Key("endpoint");
    writer.String(r.endpoint.c_str());
    writer.Key("health");
    writer.Bool(r.healthy);
    writer.Key("took");
    writer.String(format_go_duration(r.took).c_str());
    if (!r.healthy) {  // etcdctl: `json:"error,omitempty"`
      writer.Key("error");
      writer.String(r.error.c_str());
    }
    writer.EndObject();
  }
  writer.EndArray();
  std::printf("%s\n", buffer.GetString());
}

void print_health_table(const std::vector<endpoint_health>& results) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : results) {
    rows.push_back({r.endpoint, r.healthy ? "true" : "false", format_go_duration(r.took), r.error});
  }
  std::fputs(render_table({"ENDPOINT", "HEALTH", "TOOK", "ERROR"}, rows).c_str(), stdout);
}

int handle_endpoint_health(const options& opts) {
  // Check every endpoint at once, as etcdctl does, so one dead endpoint costs one
  // timeout rather than one per endpoint; print in the order given.
  std::vector<endpoint_health> results(opts.endpoints.size());
  std::vector<std::thread> workers;
  for (std::size_t i = 0; i < opts.endpoints.size(); ++i) {
    workers.emplace_back([&, i] { results[i] = check_health(opts.endpoints[i], opts.limits); });
  }
  for (auto& worker : workers) worker.join();

  switch (opts.format) {
    case output_format::simple: print_health_simple(results); break;
    case output_format::json: print_health_json(results); break;
    case output_format::table: print_health_table(results); break;
  }
  for (const auto& r : results) {
    if (!r.healthy) return fail("unhealthy cluster");
  }
  return exit_success;
}

// ---- version ---------------------------------------------------------------------

struct server_version {
  std::string endpoint;
  std::string server;   // "etcdserver"
  std::string cluster;  // "etcdcluster"
};

std::variant<server_version, http_error> fetch_version(const std::string& url,
                                                       const http_request_limits& limits) {
  auto fetched = fetch(url, "/version", limits);
  if (auto* error = std::get_if<http_error>(&fetched)) return http_error{url + ": " + error->message};
  const auto& response = std::get<http_response>(fetched);
  if (response.status_code != 200) {
    return http_error{url + ": unexpected HTTP status " + std::to_string(response.status_code) + " from /version"};
  }
  rapidjson::Document body;
  body.Parse(response.body.data(), response.body.size());
  if (body.HasParseError() || !body.IsObject()) return http_error{url + ": invalid JSON from /version"};
  auto field = [&](const char* name) {
    return body.HasMember(name) && body[name].IsString() ? std::string(body[name].GetString()) : "";
  };
  return server_version{url, field("etcdserver"), field("etcdcluster")};
}

void print_version(const server_version& v, output_format format) {
  if (format == output_format::simple) {
    std::printf("etcdserver: %s\netcdcluster: %s\n", v.server.c_str(), v.cluster.c_str());
  } else if (format == output_format::table) {
    std::fputs(render_table({"ENDPOINT", "ETCDSERVER", "ETCDCLUSTER"}, {{v.endpoint, v.server, v.cluster}}).c_str(),
               stdout);
  } else {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    writer.StartObject();
    writer.Key("endpoint");
    writer.String(v.endpoint.c_str());
    writer.Key("etcdserver");
    writer.String(v.server.c_str());
    writer.Key("etcdcluster");
    writer.String(v.cluster.c_str());
    writer.EndObject();
    std::printf("%s\n", buffer.GetString());
  }
}

// Asks the endpoints in order and reports the first that answers.
int handle_version(const options& opts) {
  std::string last_error;
  for (const auto& url : opts.endpoints) {
    auto version = fetch_version(url, opts.limits);
    if (auto* v = std::get_if<server_version>(&version)) {
      print_version(*v, opts.format);
      return exit_success;
    }
    last_error = std::get<http_error>(version).message;
  }
  return fail(last_error);
}

// ---- wal check -------------------------------------------------------------------

bool is_directory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// The snap/ directory next to a WAL: DIR/snap when DIR is a data directory or holds one,
// else WAL/../snap. "" when there is none.
std::string snapshot_directory_of(const std::string& argument, const std::string& wal_directory) {
  for (const std::string& candidate : {argument + "/snap", wal_directory + "/../snap"}) {
    if (is_directory(candidate)) return candidate;
  }
  return "";
}

// Prints the snapshot that start-up would load (docs/formats/snapshot.md, "Loading") and
// the newer ones it would skip; reads only. Returns it (index 0 when there is none).
struct newest_snapshot {
  std::uint64_t index = 0;  // 0: none
  std::uint64_t term = 0;
};

newest_snapshot print_newest_snapshot(const std::string& snap) {
  if (snap.empty()) return {};
  auto names = kv::list_snapshots(snap);
  if (!names) {
    std::printf("snapshot: %s\n", names.error().to_string().c_str());
    return {};
  }
  for (const std::string& name : *names) {
    auto snapshot = kv::read_snapshot(snap, name);
    if (!snapshot) {
      std::printf("snapshot would be skipped: %s\n", snapshot.error().message().c_str());
      continue;
    }
    std::printf("snapshot: %s (term %llu, index %llu, %zu payload bytes)\n", snapshot->file.c_str(),
                static_cast<unsigned long long>(snapshot->term),
                static_cast<unsigned long long>(snapshot->index), snapshot->payload.size());
    return {snapshot->index, snapshot->term};
  }
  std::printf("snapshot: none in %s\n", snap.c_str());
  return {};
}

// The WAL directory a `wal` command's argument names: DIR/wal when DIR holds one, else DIR.
std::string wal_directory_of(const std::string& argument) {
  std::string directory = argument;
  while (directory.size() > 1 && directory.back() == '/') directory.pop_back();
  if (is_directory(directory + "/wal")) directory += "/wal";
  return directory;
}

// Runs WAL recovery in check mode over DIR (or DIR/wal) and prints what it found and
// what repair would change; the files are only read.
int handle_wal_check(const std::string& argument) {
  std::string directory = wal_directory_of(argument);
  if (!is_directory(directory)) return fail("not a directory: " + directory);
  kv::posix_wal_directory files(directory);
  auto recovered = kv::recover_wal(files, kv::wal_recovery_mode::check);
  if (!recovered) {
    std::printf("wal: %s\nresult: corrupt\n", directory.c_str());
    return fail(recovered.error().to_string());
  }
  const kv::wal_recovery& found = recovered.value();
  std::uint64_t counts[5] = {};
  for (const auto& record : found.records) ++counts[static_cast<unsigned>(record.type)];
  std::printf("wal: %s\n", directory.c_str());
  std::printf("segments: %zu\n", found.segments.size());
  for (const auto& segment : found.segments) {
    std::printf("  %s  %llu records, %llu of %llu bytes used\n", segment.name.c_str(),
                static_cast<unsigned long long>(segment.records),
                static_cast<unsigned long long>(segment.end_offset),
                static_cast<unsigned long long>(segment.file_bytes));
  }
  std::printf("records: %zu (entries %llu, hard states %llu, snapshots %llu)\n", found.records.size(),
              static_cast<unsigned long long>(counts[2]), static_cast<unsigned long long>(counts[3]),
              static_cast<unsigned long long>(counts[4]));
  auto optional_number = [](const std::optional<std::uint64_t>& value) {
    return value ? std::to_string(*value) : std::string("none");
  };
  std::printf("first index: %s\nlast index: %s\nlast term: %s\n", optional_number(found.first_index).c_str(),
              optional_number(found.last_index).c_str(), optional_number(found.last_term).c_str());
  std::printf("torn tail: %s\n", found.torn_tail ? found.torn_tail_text(true).c_str() : "none");
  for (const auto& name : found.temporary_files) {
    std::printf("would remove unfinished segment: %s\n", name.c_str());
  }
  std::string snap = snapshot_directory_of(argument, directory);
  newest_snapshot snapshot = print_newest_snapshot(snap);
  // A cluster member (member.json beside snap/) may hold a snapshot from its leader, ahead
  // of its own log; a single node's snapshots come from its log.
  std::string data_dir = snap.empty() ? directory + "/.." : snap + "/..";
  bool member = ::access((data_dir + "/member.json").c_str(), F_OK) == 0;
  if (status joined = kv::check_wal_joins_snapshot(found, snapshot.index, snapshot.term, directory, !member); !joined) {
    std::printf("result: corrupt\n");
    return fail(joined.to_string());
  }
  if (found.segments.empty() && snapshot.index > 0) {
    std::printf("no WAL: keeld would start from the snapshot alone\n");
  }
  std::printf("result: ok\n");
  return exit_success;
}

// `keelctl wal truncate DIR FILE:OFFSET`: the operator's way on after a refusal that was
// not damage (docs/formats/wal.md, "What the rule assumes"): zeroes the newest segment from
// the failing record that recovery names, which the operator repeats as confirmation, to
// its end. Refuses anything else: a WAL that recovers, a failure elsewhere, another offset.
int handle_wal_truncate(const std::string& argument, const std::string& where) {
  std::string directory = wal_directory_of(argument);
  if (!is_directory(directory)) return fail("not a directory: " + directory);
  std::size_t colon = where.rfind(':');
  std::uint64_t offset = 0;
  if (colon == std::string::npos || colon + 1 == where.size() ||
      where.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
    return usage_failure("\"wal truncate\" needs FILE:OFFSET as recovery named it, got \"" + where + "\"");
  }
  offset = std::strtoull(where.c_str() + colon + 1, nullptr, 10);
  std::string file = where.substr(0, colon);
  file = file.substr(file.rfind('/') == std::string::npos ? 0 : file.rfind('/') + 1);
  kv::posix_wal_directory files(directory);
  auto names = files.list();
  if (!names) return fail(names.error().to_string());
  std::string last;
  std::uint64_t last_sequence = 0;
  for (const std::string& name : *names) {
    auto ids = kv::parse_wal_segment_name(name);
    if (ids && (last.empty() || ids->first > last_sequence)) {
      last = name;
      last_sequence = ids->first;
    }
  }
  if (file != last) return fail(file + " is not the newest segment (" + (last.empty() ? "none" : last) + "): nothing truncated");
  auto recovered = kv::recover_wal(files, kv::wal_recovery_mode::check);
  if (recovered) return fail("the WAL in " + directory + " recovers as it is: nothing truncated");
  if (recovered.error().code() != errc::corruption) return fail(recovered.error().to_string());
  std::string named = files.describe(last) + ":" + std::to_string(offset) + ": ";
  if (!recovered.error().message().starts_with(named)) {
    return fail("recovery fails elsewhere, not at " + last + ":" + std::to_string(offset) + " (" +
                recovered.error().message() + "): nothing truncated");
  }
  if (offset < kv::wal_segment_header_record_bytes) {
    return fail("the segment header itself fails (" + recovered.error().message() +
                "): nothing truncated; move the segment aside instead");
  }
  auto bytes = files.read_all(last);
  if (!bytes) return fail(bytes.error().to_string());
  // Said before it is done: damage that a durable mark proves (no power cut explains it)
  // loses acknowledged writes when truncated; the operator may still want what is before.
  std::printf("recovery: %s\n", recovered.error().message().c_str());
  std::uint64_t end = bytes->size();
  while (end > offset && (*bytes)[end - 1] == std::byte{0}) --end;
  if (status zeroed = files.zero_and_sync(last, offset, end - offset); !zeroed) return fail(zeroed.to_string());
  std::printf("zeroed %llu bytes of %s from offset %llu: the log now ends there; every record after it is gone\n",
              static_cast<unsigned long long>(end - offset), files.describe(last).c_str(),
              static_cast<unsigned long long>(offset));
  auto again = kv::recover_wal(files, kv::wal_recovery_mode::check);
  if (!again) {
    std::printf("result: corrupt\n");
    return fail(again.error().to_string());
  }
  std::printf("records: %zu\nresult: ok\n", again->records.size());
  return exit_success;
}

// ---- dispatch --------------------------------------------------------------------

int run_cluster(const options& opts) {
  cluster_invocation inv;
  inv.endpoints = opts.endpoints;
  inv.limits = opts.limits;
  inv.format = opts.format == output_format::json ? "json" : opts.format == output_format::table ? "table" : "simple";
  inv.words = opts.command;
  inv.cluster = opts.cluster;
  inv.peer_urls = opts.peer_urls;
  inv.learner = opts.learner;
  return run_cluster_command(inv);
}

int run(const options& opts) {
  if (opts.help) {
    print_usage(stdout);
    return exit_success;
  }
  if (opts.version) {
    std::printf("keelctl version: %s\n", KEELCTL_VERSION);
    return exit_success;
  }
  const auto& words = opts.command;
  if (words.empty()) {
    print_usage(stdout);
    return exit_success;
  }
  // The cluster verbs' flags belong to their verbs only, as with etcdctl.
  bool endpoint_status = words[0] == "endpoint" && words.size() > 1 && words[1] == "status";
  bool member_add = words[0] == "member" && words.size() > 1 && words[1] == "add";
  if (opts.cluster && !endpoint_status) return usage_failure("unknown flag: --cluster");
  if (opts.peer_urls && !member_add) return usage_failure("unknown flag: --peer-urls");
  if (opts.learner && !member_add) return usage_failure("unknown flag: --learner");
  if (is_cluster_command(words)) return run_cluster(opts);
  if (words[0] == "version") {
    if (words.size() > 1) return usage_failure("unexpected argument \"" + words[1] + "\" for \"version\"");
    return handle_version(opts);
  }
  if (words[0] == "endpoint") {
    if (words.size() < 2) return usage_failure("\"endpoint\" needs a subcommand: health or status");
    if (words[1] != "health") return usage_failure("unknown command \"" + words[1] + "\" for \"keelctl endpoint\"");
    if (words.size() > 2) return usage_failure("unexpected argument \"" + words[2] + "\" for \"endpoint health\"");
    return handle_endpoint_health(opts);
  }
  if (words[0] == "wal") {
    if (words.size() >= 2 && words[1] == "truncate") {
      if (words.size() != 4) return usage_failure("\"wal truncate\" needs a directory and FILE:OFFSET");
      return handle_wal_truncate(words[2], words[3]);
    }
    if (words.size() < 2 || words[1] != "check")
      return usage_failure("\"wal\" needs a subcommand: check DIR, or truncate DIR FILE:OFFSET");
    if (words.size() != 3) return usage_failure("\"wal check\" needs exactly one directory");
    return handle_wal_check(words[2]);
  }
  return usage_failure("unknown command \"" + words[0] + "\" for \"keelctl\"");
}

}  // namespace
}  // namespace keel::ctl

int main(int argc, char** argv) {
  if (auto code = keel::ctl::run_v2_command(argc, argv)) return *code;  // v2_commands.h
  if (auto code = keel::ctl::run_kv_command(argc, argv)) return *code;  // kv_commands.h (v3 verbs)
  auto parsed = keel::ctl::parse_arguments(argc, argv);
  if (auto* error = std::get_if<keel::ctl::usage_error>(&parsed)) {
    return keel::ctl::usage_failure(error->message);
  }
  return keel::ctl::run(std::get<keel::ctl::options>(parsed));
}
