// cmd/keelctl/v2_commands.cc — etcdctl's v2 verbs; see v2_commands.h for the contract.
//
// Everything here mirrors etcd 3.4's etcdctl/ctlv2 and its Go client (client/keys.go):
// the request each verb sends (query and form fields sorted as url.Values.Encode sorts
// them), the member sync before the command, how answers and errors are printed
// (printResponseKey, printLs, handleError) and the exit codes.
#include "v2_commands.h"

#include <netdb.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "http_client.h"
#include "srv_endpoints.h"

extern char** environ;

namespace keel::ctl {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// etcdctl's exit codes (cobrautl / ctlv2 error.go).
constexpr int exit_success = 0;
constexpr int exit_bad_args = 1;
constexpr int exit_bad_connection = 2;
constexpr int exit_server_error = 4;

// ---- the command line ---------------------------------------------------------------------

struct flag_spec {
  const char* name;
  const char* alias;  // "" when none
  bool takes_value;
};

struct verb_spec {
  const char* name;
  std::vector<flag_spec> flags;
};

const std::vector<verb_spec>& verbs() {
  static const std::vector<verb_spec> all = {
      {"set", {{"ttl", "", true}, {"swap-with-value", "", true}, {"swap-with-index", "", true}}},
      {"get", {{"sort", "", false}, {"quorum", "q", false}}},
      {"mk", {{"in-order", "", false}, {"ttl", "", true}}},
      {"mkdir", {{"ttl", "", true}}},
      {"rm",
       {{"dir", "", false},
        {"recursive", "r", false},
        {"with-value", "", true},
        {"with-index", "", true}}},
      {"rmdir", {}},
      {"ls",
       {{"sort", "", false}, {"recursive", "r", false}, {"p", "", false}, {"quorum", "q", false}}},
      {"update", {{"ttl", "", true}}},
      {"updatedir", {{"ttl", "", true}}},
      {"setdir", {{"ttl", "", true}}},
      {"watch", {{"forever", "f", false}, {"after-index", "", true}, {"recursive", "r", false}}},
      {"exec-watch", {{"after-index", "", true}, {"recursive", "r", false}}},
  };
  return all;
}

const verb_spec* find_verb(std::string_view name) {
  for (const verb_spec& v : verbs())
    if (name == v.name) return &v;
  return nullptr;
}

const std::vector<flag_spec>& global_flags() {
  static const std::vector<flag_spec> all = {
      {"endpoints", "", true},
      {"endpoint", "", true},
      {"peers", "C", true},
      {"output", "o", true},
      {"no-sync", "", false},
      {"debug", "", false},
      {"timeout", "", true},
      {"total-timeout", "", true},
      {"help", "h", false},
      // TLS and auth: recognised so that they can be refused clearly.
      {"ca-file", "", true},
      {"cert-file", "", true},
      {"key-file", "", true},
      {"username", "u", true},
      {"discovery-srv", "D", true},
  };
  return all;
}

const flag_spec* find_flag(const std::vector<flag_spec>& specs, std::string_view name) {
  for (const flag_spec& f : specs)
    if (name == f.name || (*f.alias && name == f.alias)) return &f;
  return nullptr;
}

struct invocation {
  std::vector<std::string> endpoints;
  std::string discovery_srv;  // -D / --discovery-srv: endpoints from DNS SRV records
  std::string output = "simple";
  bool no_sync = false;
  bool help = false;
  milliseconds timeout{2000};        // per request (--timeout)
  milliseconds total_timeout{5000};  // the whole command but watches (--total-timeout)
  const verb_spec* verb = nullptr;
  std::map<std::string, std::string> flags;  // the verb's flags by long name
  std::vector<std::string> args;
  bool separator = false;        // "--" was given
  std::size_t separator_at = 0;  // args before it

  bool flag(const char* name) const {
    auto it = flags.find(name);
    return it != flags.end() && it->second == "true";
  }
  std::string text(const char* name) const {
    auto it = flags.find(name);
    return it == flags.end() ? std::string() : it->second;
  }
};

struct usage_error {
  std::string message;
};

// Go's time.ParseDuration for the usual units.
std::optional<milliseconds> parse_duration(std::string_view text) {
  double total_ms = 0;
  if (text == "0") return milliseconds(0);
  while (!text.empty()) {
    std::size_t n = 0;
    while (n < text.size() && (std::isdigit(static_cast<unsigned char>(text[n])) || text[n] == '.'))
      ++n;
    if (n == 0) return std::nullopt;
    double value = std::strtod(std::string(text.substr(0, n)).c_str(), nullptr);
    text.remove_prefix(n);
    std::size_t u = 0;
    while (u < text.size() && std::isalpha(static_cast<unsigned char>(text[u]))) ++u;
    std::string_view unit = text.substr(0, u);
    text.remove_prefix(u);
    if (unit == "ns")
      total_ms += value / 1e6;
    else if (unit == "us")
      total_ms += value / 1e3;
    else if (unit == "ms")
      total_ms += value;
    else if (unit == "s")
      total_ms += value * 1e3;
    else if (unit == "m")
      total_ms += value * 60e3;
    else if (unit == "h")
      total_ms += value * 3600e3;
    else
      return std::nullopt;
  }
  return milliseconds(static_cast<long long>(total_ms + 0.999));
}

std::vector<std::string> split_commas(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    if (comma != 0) out.emplace_back(list.substr(0, comma));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<usage_error> apply_global(invocation& inv, const flag_spec& f,
                                        const std::string& value) {
  std::string_view name = f.name;
  if (name == "endpoints" || name == "endpoint" || name == "peers") {
    inv.endpoints = split_commas(value);
  } else if (name == "output") {
    inv.output = value;
  } else if (name == "no-sync") {
    inv.no_sync = value == "true";
  } else if (name == "help") {
    inv.help = value == "true";
  } else if (name == "timeout" || name == "total-timeout") {
    auto d = parse_duration(value);
    if (!d) return usage_error{"invalid value \"" + value + "\" for flag -" + std::string(name)};
    (name == "timeout" ? inv.timeout : inv.total_timeout) = *d;
  } else if (name == "discovery-srv") {
    inv.discovery_srv = value;
  } else if (name == "debug") {
    // accepted; keelctl prints no cURL lines
  } else {
    return usage_error{"--" + std::string(name) +
                       " is not supported by keelctl (plain http only, no auth)"};
  }
  return std::nullopt;
}

// Flags anywhere (urfave/cli reorders a command's flags before its arguments); "--" ends
// them. A bool flag takes "=false"; a value flag takes "=v" or the next word.
std::variant<invocation, usage_error> parse(const std::vector<std::string>& words) {
  invocation inv;
  bool done_flags = false;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (!done_flags && word == "--") {
      done_flags = true;
      inv.separator = true;
      inv.separator_at = inv.args.size();
      continue;
    }
    if (done_flags || word.size() < 2 || word[0] != '-') {
      if (!inv.verb) {
        inv.verb = find_verb(word);
        if (!inv.verb) return usage_error{"unknown command \"" + word + "\" for \"keelctl v2\""};
      } else {
        inv.args.push_back(word);
      }
      continue;
    }
    std::string body = word.substr(word[1] == '-' ? 2 : 1);
    std::size_t equals = body.find('=');
    std::string name = body.substr(0, equals);
    const flag_spec* f = inv.verb ? find_flag(inv.verb->flags, name) : nullptr;
    bool global = false;
    if (!f) {
      f = find_flag(global_flags(), name);
      global = f != nullptr;
    }
    if (!f) return usage_error{"flag provided but not defined: -" + name};
    std::string value = "true";
    if (equals != std::string::npos) {
      value = body.substr(equals + 1);
    } else if (f->takes_value) {
      if (i + 1 >= words.size()) return usage_error{"flag needs an argument: -" + name};
      value = words[++i];
    }
    if (!f->takes_value && value != "true" && value != "false") {
      if (value == "1" || value == "t" || value == "T" || value == "TRUE" || value == "True")
        value = "true";
      else if (value == "0" || value == "f" || value == "F" || value == "FALSE" || value == "False")
        value = "false";
      else
        return usage_error{"invalid boolean value \"" + value + "\" for -" + name};
    }
    if (global) {
      if (auto bad = apply_global(inv, *f, value)) return *bad;
    } else {
      inv.flags[f->name] = value;
    }
  }
  return inv;
}

// Go's strconv.Atoi as urfave's IntFlag reads it (etcdctl: --ttl, --after-index...).
std::optional<long long> int_flag(const invocation& inv, const char* name, usage_error& error) {
  std::string text = inv.text(name);
  if (text.empty()) return 0;
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(text.c_str(), &end, 0);
  if (*end != '\0' || errno != 0) {
    error.message = "invalid value \"" + text + "\" for flag -" + name + ": parse error";
    return std::nullopt;
  }
  return value;
}

// ---- URLs and forms -----------------------------------------------------------------------------

bool unreserved(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
         c == '~';
}

// url.QueryEscape.
std::string query_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (unreserved(c))
      out.push_back(c);
    else if (c == ' ')
      out.push_back('+');
    else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
      out += hex;
    }
  }
  return out;
}

// url.URL.EscapedPath.
std::string path_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (unreserved(c) || std::string_view("$&+,/:;=@").find(c) != std::string_view::npos) {
      out.push_back(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
      out += hex;
    }
  }
  return out;
}

using params = std::vector<std::pair<std::string, std::string>>;

// url.Values.Encode: sorted by key.
std::string encode(params values) {
  std::stable_sort(values.begin(), values.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out;
  for (const auto& [key, value] : values) {
    if (!out.empty()) out += '&';
    out += query_escape(key) + "=" + query_escape(value);
  }
  return out;
}

// pathutil.CanonicalURLPath("/v2/keys" + "/" + key): cleaned, a trailing slash kept.
std::string keys_path(std::string key) {
  if (key.empty() || key[0] != '/') key = "/" + key;
  std::string raw = "/v2/keys" + key;
  std::vector<std::string> parts;
  std::size_t at = 0;
  while (at <= raw.size()) {
    std::size_t slash = raw.find('/', at);
    std::string part = raw.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  std::string clean;
  for (const std::string& p : parts) clean += "/" + p;
  if (clean.empty()) clean = "/";
  if (raw.back() == '/' && clean != "/") clean += '/';
  return path_escape(clean);
}

// ---- HTTP ---------------------------------------------------------------------------------------

struct http_answer {
  int status = 0;
  std::string etcd_index;  // X-Etcd-Index
  std::string body;
};

std::string errno_text(int error) {
  std::string text = std::strerror(error);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// Waits for `events` on fd until `deadline` (none: forever); false on timeout.
bool wait_fd(int fd, short events, const std::optional<clock::time_point>& deadline) {
  for (;;) {
    int wait_ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<milliseconds>(*deadline - clock::now()).count();
      if (left <= 0) return false;
      wait_ms = static_cast<int>(std::min<long long>(left + 1, 1 << 30));
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, wait_ms);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;
  }
}

std::variant<int, std::string> dial(const endpoint_address& address,
                                    const std::optional<clock::time_point>& deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(address.port);
  if (int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return "dial tcp: lookup " + address.host + ": " + ::gai_strerror(rc);
  std::string error = "dial tcp: no address for " + address.host;
  int fd = -1;
  for (addrinfo* info = found; info && fd < 0; info = info->ai_next) {
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    ::getnameinfo(info->ai_addr, info->ai_addrlen, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV);
    std::string where = info->ai_family == AF_INET6 ? "[" + std::string(host) + "]:" + serv
                                                    : std::string(host) + ":" + serv;
    fd = ::socket(info->ai_family, info->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  info->ai_protocol);
    if (fd < 0) {
      error = "dial tcp " + where + ": socket: " + errno_text(errno);
      continue;
    }
    if (::connect(fd, info->ai_addr, info->ai_addrlen) != 0 && errno != EINPROGRESS) {
      error = "dial tcp " + where + ": connect: " + errno_text(errno);
      ::close(fd);
      fd = -1;
      continue;
    }
    if (!wait_fd(fd, POLLOUT, deadline)) {
      error = "dial tcp " + where + ": i/o timeout";
      ::close(fd);
      fd = -1;
      continue;
    }
    int so_error = 0;
    socklen_t length = sizeof so_error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
    if (so_error != 0) {
      error = "dial tcp " + where + ": connect: " + errno_text(so_error);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return error;
  return fd;
}

std::string header_value(std::string_view bytes, std::string_view name) {
  std::string_view head = bytes.substr(0, bytes.find("\r\n\r\n"));
  std::size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    std::string_view line = head.substr(at, head.find("\r\n", at) - at);
    std::size_t colon = line.find(':');
    if (colon != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < colon && same; ++i)
      same = std::tolower(static_cast<unsigned char>(line[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    if (!same) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    return std::string(value);
  }
  return "";
}

// One request on its own connection. Errors read like Go's net/http client errors.
std::variant<http_answer, std::string> exchange(const std::string& url, const std::string& method,
                                                const std::string& target, const std::string* form,
                                                const std::optional<clock::time_point>& deadline) {
  auto parsed = parse_endpoint(url);
  if (auto* bad = std::get_if<http_error>(&parsed)) return bad->message;
  const auto& address = std::get<endpoint_address>(parsed);
  auto dialed = dial(address, deadline);
  if (auto* bad = std::get_if<std::string>(&dialed)) return *bad;
  int fd = std::get<int>(dialed);
  std::string host =
      address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host;
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: " + host + ":" +
                        std::to_string(address.port) +
                        "\r\nUser-Agent: keelctl\r\nConnection: close\r\n";
  if (form) {
    request += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
               std::to_string(form->size()) + "\r\n\r\n" + *form;
  } else {
    request += "\r\n";
  }
  std::string_view pending = request;
  while (!pending.empty()) {
    if (!wait_fd(fd, POLLOUT, deadline)) {
      ::close(fd);
      return std::string("context deadline exceeded");
    }
    ssize_t n = ::send(fd, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      std::string error = "write: " + errno_text(errno);
      ::close(fd);
      return error;
    }
    pending.remove_prefix(static_cast<std::size_t>(n));
  }
  std::string received;
  char buffer[16384];
  for (;;) {
    if (!wait_fd(fd, POLLIN, deadline)) {
      ::close(fd);
      return std::string("context deadline exceeded");
    }
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      std::string error = "read: " + errno_text(errno);
      ::close(fd);
      return error;
    }
    received.append(buffer, static_cast<std::size_t>(n));
    auto done = parse_response(received, n == 0);
    if (auto* response = std::get_if<http_response>(&done)) {
      ::close(fd);
      return http_answer{response->status_code, header_value(received, "X-Etcd-Index"),
                         std::move(response->body)};
    }
    if (auto* bad = std::get_if<http_error>(&done)) {
      ::close(fd);
      return bad->message;
    }
  }
}

// ---- the v2 client ------------------------------------------------------------------------------

struct failure {
  int exit_code = exit_server_error;
  std::string message;  // after "Error:  "
  std::string detail;   // printed after the message line (a cluster error's per-endpoint lines)
};

int report(const failure& f) {
  std::fprintf(stderr, "Error:  %s\n", f.message.c_str());
  if (!f.detail.empty()) std::fprintf(stderr, "%s\n", f.detail.c_str());
  return f.exit_code;
}

failure cluster_failure(const std::vector<std::string>& errors) {
  failure f;
  f.message = "client: etcd cluster is unavailable or misconfigured";
  for (std::size_t i = 0; i < errors.size(); ++i) {
    f.message += "; error #" + std::to_string(i) + ": " + errors[i] + "\n";
    f.detail += "error #" + std::to_string(i) + ": " + errors[i] + "\n";
  }
  // Each error ends in "\n" and the message is printed with Println: an empty line follows,
  // as in etcdctl's output.
  return f;
}

struct node {
  std::string key;
  bool dir = false;
  std::string value;
  bool has_nodes = false;
  std::vector<node> nodes;
  std::uint64_t created_index = 0;
  std::uint64_t modified_index = 0;
  std::string expiration;  // "" when absent
  long long ttl = 0;
};

struct response {
  std::string action;
  std::optional<node> current;
  std::optional<node> previous;
  std::uint64_t index = 0;
};

node read_node(const rapidjson::Value& v) {
  node n;
  if (!v.IsObject()) return n;
  auto str = [&](const char* name) {
    auto it = v.FindMember(name);
    return it != v.MemberEnd() && it->value.IsString()
               ? std::string(it->value.GetString(), it->value.GetStringLength())
               : std::string();
  };
  auto num = [&](const char* name) -> long long {
    auto it = v.FindMember(name);
    return it != v.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
  };
  n.key = str("key");
  n.value = str("value");
  n.expiration = str("expiration");
  auto dir = v.FindMember("dir");
  n.dir = dir != v.MemberEnd() && dir->value.IsBool() && dir->value.GetBool();
  n.created_index = static_cast<std::uint64_t>(num("createdIndex"));
  n.modified_index = static_cast<std::uint64_t>(num("modifiedIndex"));
  n.ttl = num("ttl");
  auto nodes = v.FindMember("nodes");
  if (nodes != v.MemberEnd() && nodes->value.IsArray()) {
    n.has_nodes = true;
    for (const auto& child : nodes->value.GetArray()) n.nodes.push_back(read_node(child));
  }
  return n;
}

const char* invalid_json =
    "client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint.";

class client {
 public:
  explicit client(const invocation& inv) : _inv(inv), _endpoints(inv.endpoints) {}

  // etcdctl's mustNewClient: Sync (GET /v2/members) unless --no-sync. Returns the
  // failure to report, if any.
  std::optional<failure> sync() {
    if (_inv.no_sync) return std::nullopt;
    auto deadline = clock::now() + _inv.total_timeout;
    std::vector<std::string> errors;
    for (const std::string& url : _endpoints) {
      auto got = exchange(url, "GET", "/v2/members", nullptr, deadline);
      if (auto* bad = std::get_if<std::string>(&got)) {
        errors.push_back(*bad);
        continue;
      }
      auto& answer = std::get<http_answer>(got);
      if (answer.status != 200) return std::nullopt;  // not a connection error: keep the endpoints
      rapidjson::Document doc;
      doc.Parse(answer.body.c_str(), answer.body.size());
      if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("members") ||
          !doc["members"].IsArray())
        return std::nullopt;
      std::vector<std::string> urls;
      for (const auto& m : doc["members"].GetArray())
        if (m.IsObject() && m.HasMember("clientURLs") && m["clientURLs"].IsArray())
          for (const auto& u : m["clientURLs"].GetArray())
            if (u.IsString()) urls.emplace_back(u.GetString());
      if (urls.empty()) {
        std::string list;
        for (const std::string& e : _endpoints) list += (list.empty() ? "" : ",") + e;
        std::fprintf(stderr,
                     "etcd cluster has no published client endpoints.\nTry '--no-sync' if you want "
                     "to access "
                     "non-published client endpoints(%s).\n",
                     list.c_str());
        return failure{exit_server_error, "client: no endpoints available", ""};
      }
      _endpoints = urls;
      return std::nullopt;
    }
    failure f = cluster_failure(errors);
    f.exit_code = exit_bad_connection;
    return f;
  }

  // One keys request to the first endpoint that answers.
  std::variant<response, failure> call(const std::string& method, const std::string& key,
                                       const params& query, const params* form, bool wait) {
    std::string target = keys_path(key);
    std::string q = encode(query);
    if (!q.empty()) target += "?" + q;
    std::string body = form ? encode(*form) : std::string();
    std::optional<clock::time_point> deadline;
    if (!wait) deadline = clock::now() + std::min(_inv.timeout, _inv.total_timeout);
    std::vector<std::string> errors;
    for (const std::string& url : _endpoints) {
      auto got = exchange(url, method, target, form ? &body : nullptr, deadline);
      if (auto* bad = std::get_if<std::string>(&got)) {
        errors.push_back(*bad);
        continue;
      }
      return interpret(std::get<http_answer>(got));
    }
    return cluster_failure(errors);
  }

 private:
  static std::variant<response, failure> interpret(const http_answer& answer) {
    rapidjson::Document doc;
    if (answer.status == 200 || answer.status == 201) {
      if (answer.body.empty())
        return failure{exit_server_error, "client: response body is empty", ""};
      doc.Parse(answer.body.c_str(), answer.body.size());
      if (doc.HasParseError() || !doc.IsObject())
        return failure{exit_server_error, invalid_json, ""};
      response r;
      if (doc.HasMember("action") && doc["action"].IsString()) r.action = doc["action"].GetString();
      if (doc.HasMember("node") && doc["node"].IsObject()) r.current = read_node(doc["node"]);
      if (doc.HasMember("prevNode") && doc["prevNode"].IsObject())
        r.previous = read_node(doc["prevNode"]);
      r.index = std::strtoull(answer.etcd_index.c_str(), nullptr, 10);
      return r;
    }
    doc.Parse(answer.body.c_str(), answer.body.size());
    if (doc.HasParseError() || !doc.IsObject()) return failure{exit_server_error, invalid_json, ""};
    auto field = [&](const char* name) -> std::string {
      if (!doc.HasMember(name)) return "";
      const auto& v = doc[name];
      if (v.IsString()) return v.GetString();
      if (v.IsUint64()) return std::to_string(v.GetUint64());
      if (v.IsInt64()) return std::to_string(v.GetInt64());
      return "";
    };
    // client.Error.Error(): "%v: %v (%v) [%v]"
    return failure{exit_server_error,
                   field("errorCode") + ": " + field("message") + " (" + field("cause") + ") [" +
                       field("index") + "]",
                   ""};
  }

  const invocation& _inv;
  std::vector<std::string> _endpoints;
};

// ---- output
// ---------------------------------------------------------------------------------------

// encoding/json's string encoding (HTML-safe, as Go's Marshal).
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (std::size_t i = 0; i < text.size();) {
    unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      if (b == '\\' || b == '"') {
        out.push_back('\\');
        out.push_back(static_cast<char>(b));
      } else if (b == '\n') {
        out += "\\n";
      } else if (b == '\r') {
        out += "\\r";
      } else if (b == '\t') {
        out += "\\t";
      } else if (b < 0x20 || b == '<' || b == '>' || b == '&') {
        out += "\\u00";
        out.push_back(hex[b >> 4]);
        out.push_back(hex[b & 15]);
      } else {
        out.push_back(static_cast<char>(b));
      }
      ++i;
      continue;
    }
    // A valid UTF-8 sequence passes through (U+2028/9 escaped); anything else is U+FFFD.
    std::size_t length = b >= 0xF0 && b <= 0xF4   ? 4
                         : b >= 0xE0              ? 3
                         : b >= 0xC2 && b <= 0xDF ? 2
                                                  : 0;
    bool valid = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k)
      valid = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    char32_t rune = 0;
    if (valid) {
      rune = length == 2 ? (b & 0x1F) : length == 3 ? (b & 0x0F) : (b & 0x07);
      for (std::size_t k = 1; k < length; ++k)
        rune = (rune << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
      valid = !(length == 3 && (rune < 0x800 || (rune >= 0xD800 && rune <= 0xDFFF))) &&
              !(length == 4 && (rune < 0x10000 || rune > 0x10FFFF));
    }
    if (!valid) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (rune == 0x2028 || rune == 0x2029) {
      out += "\\u202";
      out.push_back(hex[rune & 15]);
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  out.push_back('"');
}

// client.Node as json.Marshal writes it.
void append_node_json(std::string& out, const node& n) {
  out += "{\"key\":";
  append_json_string(out, n.key);
  if (n.dir) out += ",\"dir\":true";
  out += ",\"value\":";
  append_json_string(out, n.value);
  out += ",\"nodes\":";
  if (!n.has_nodes) {
    out += "null";
  } else {
    out += '[';
    for (std::size_t i = 0; i < n.nodes.size(); ++i) {
      if (i) out += ',';
      append_node_json(out, n.nodes[i]);
    }
    out += ']';
  }
  out += ",\"createdIndex\":" + std::to_string(n.created_index) +
         ",\"modifiedIndex\":" + std::to_string(n.modified_index);
  if (!n.expiration.empty()) out += ",\"expiration\":\"" + n.expiration + "\"";
  if (n.ttl != 0) out += ",\"ttl\":" + std::to_string(n.ttl);
  out += '}';
}

std::string response_json(const response& r) {
  std::string out = "{\"action\":";
  append_json_string(out, r.action);
  out += ",\"node\":";
  if (r.current)
    append_node_json(out, *r.current);
  else
    out += "null";
  out += ",\"prevNode\":";
  if (r.previous)
    append_node_json(out, *r.previous);
  else
    out += "null";
  out += '}';
  return out;
}

const node& or_empty(const std::optional<node>& n) {
  static const node empty;
  return n ? *n : empty;
}

// etcdctl's printResponseKey.
void print_response(const response& r, const std::string& format) {
  const node& current = or_empty(r.current);
  if (format == "simple") {
    if (r.action != "delete")
      std::printf("%s\n", current.value.c_str());
    else
      std::printf("PrevNode.Value: %s\n", or_empty(r.previous).value.c_str());
  } else if (format == "extended") {
    std::printf("Key: %s\nCreated-Index: %llu\nModified-Index: %llu\n", current.key.c_str(),
                static_cast<unsigned long long>(current.created_index),
                static_cast<unsigned long long>(current.modified_index));
    if (r.previous) std::printf("PrevNode.Value: %s\n", r.previous->value.c_str());
    std::printf("TTL: %lld\nIndex: %llu\n", current.ttl, static_cast<unsigned long long>(r.index));
    if (r.action != "delete") std::printf("\n%s\n", current.value.c_str());
  } else if (format == "json") {
    std::printf("%s\n", response_json(r).c_str());
  } else {
    std::fprintf(stderr, "Unsupported output format: %s\n", format.c_str());
  }
}

void print_tree(const node& n, bool slash_dirs) {
  std::printf("%s%s\n", n.key.c_str(), n.dir && slash_dirs ? "/" : "");
  for (const node& child : n.nodes) print_tree(child, slash_dirs);
}

// ---- the verbs
// ------------------------------------------------------------------------------------

struct command_context {
  const invocation& inv;
  client& keys;
};

std::optional<int> need_key(const invocation& inv, const char* what = "key required") {
  if (inv.args.empty()) return report(failure{exit_bad_args, what, ""});
  return std::nullopt;
}

// etcdctl's argOrStdin: the argument, or all of standard input.
std::optional<std::string> arg_or_stdin(const invocation& inv, std::size_t i) {
  if (i < inv.args.size()) return inv.args[i];
  std::string all;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) all.append(buffer, n);
  if (all.empty()) return std::nullopt;
  return all;
}

int finish(std::variant<response, failure> got, const std::function<void(const response&)>& print) {
  if (auto* bad = std::get_if<failure>(&got)) return report(*bad);
  print(std::get<response>(got));
  return exit_success;
}

int run_set_like(command_context& c, const std::string& verb) {
  if (auto bad = need_key(c.inv)) return *bad;
  auto value = arg_or_stdin(c.inv, 1);
  if (!value) return report(failure{exit_bad_args, "value required", ""});
  usage_error bad_flag;
  auto ttl = int_flag(c.inv, "ttl", bad_flag);
  if (!ttl) return report(failure{exit_bad_args, bad_flag.message, ""});
  params query, form;
  std::string method = "PUT";
  if (verb == "set") {
    auto swap_index = int_flag(c.inv, "swap-with-index", bad_flag);
    if (!swap_index) return report(failure{exit_bad_args, bad_flag.message, ""});
    if (!c.inv.text("swap-with-value").empty())
      query.emplace_back("prevValue", c.inv.text("swap-with-value"));
    if (*swap_index != 0) query.emplace_back("prevIndex", std::to_string(*swap_index));
  } else if (verb == "mk" && c.inv.flag("in-order")) {
    method = "POST";
  } else {
    query.emplace_back("prevExist", verb == "mk" ? "false" : "true");
  }
  form.emplace_back("value", *value);
  if (*ttl > 0) form.emplace_back("ttl", std::to_string(*ttl));
  return finish(c.keys.call(method, c.inv.args[0], query, &form, false),
                [&](const response& r) { print_response(r, c.inv.output); });
}

int run_get(command_context& c) {
  if (auto bad = need_key(c.inv)) return *bad;
  params query = {{"quorum", c.inv.flag("quorum") ? "true" : "false"},
                  {"recursive", "false"},
                  {"sorted", c.inv.flag("sort") ? "true" : "false"}};
  auto got = c.keys.call("GET", c.inv.args[0], query, nullptr, false);
  if (auto* bad = std::get_if<failure>(&got)) return report(*bad);
  const response& r = std::get<response>(got);
  if (or_empty(r.current).dir) {
    std::fprintf(stderr, "%s: is a directory\n", or_empty(r.current).key.c_str());
    return exit_bad_args;
  }
  print_response(r, c.inv.output);
  return exit_success;
}

int run_dir(command_context& c, const std::string& verb) {
  if (auto bad = need_key(c.inv)) return *bad;
  usage_error bad_flag;
  auto ttl = int_flag(c.inv, "ttl", bad_flag);
  if (!ttl) return report(failure{exit_bad_args, bad_flag.message, ""});
  params query = {{"dir", "true"}};
  if (verb == "mkdir") query.emplace_back("prevExist", "false");
  if (verb == "updatedir") query.emplace_back("prevExist", "true");
  params form;
  if (*ttl > 0) form.emplace_back("ttl", std::to_string(*ttl));
  return finish(c.keys.call("PUT", c.inv.args[0], query, &form, false), [&](const response& r) {
    if (c.inv.output != "simple") print_response(r, c.inv.output);
  });
}

int run_rm(command_context& c, const std::string& verb) {
  if (auto bad = need_key(c.inv)) return *bad;
  params query;
  if (verb == "rmdir") {
    query.emplace_back("dir", "true");
  } else {
    usage_error bad_flag;
    auto with_index = int_flag(c.inv, "with-index", bad_flag);
    if (!with_index) return report(failure{exit_bad_args, bad_flag.message, ""});
    if (!c.inv.text("with-value").empty())
      query.emplace_back("prevValue", c.inv.text("with-value"));
    if (*with_index != 0) query.emplace_back("prevIndex", std::to_string(*with_index));
    if (c.inv.flag("dir")) query.emplace_back("dir", "true");
    if (c.inv.flag("recursive")) query.emplace_back("recursive", "true");
  }
  return finish(c.keys.call("DELETE", c.inv.args[0], query, nullptr, false),
                [&](const response& r) {
                  if (!or_empty(r.current).dir || c.inv.output != "simple")
                    print_response(r, c.inv.output);
                });
}

int run_ls(command_context& c) {
  std::string key = c.inv.args.empty() ? "/" : c.inv.args[0];
  params query = {{"quorum", c.inv.flag("quorum") ? "true" : "false"},
                  {"recursive", c.inv.flag("recursive") ? "true" : "false"},
                  {"sorted", c.inv.flag("sort") ? "true" : "false"}};
  return finish(c.keys.call("GET", key, query, nullptr, false), [&](const response& r) {
    if (c.inv.output != "simple") {
      print_response(r, c.inv.output);
      return;
    }
    const node& n = or_empty(r.current);
    if (!n.dir) std::printf("%s\n", n.key.c_str());
    for (const node& child : n.nodes) print_tree(child, c.inv.flag("p"));
  });
}

// The Go client's httpWatcher: one wait=true request per event, from the event after the
// last one seen; an empty answer (the server ended the wait) is simply asked again.
class watch_loop {
 public:
  watch_loop(client& keys, std::string key, bool recursive, std::uint64_t after_index)
      : _keys(keys),
        _key(std::move(key)),
        _recursive(recursive),
        _wait_index(after_index ? after_index + 1 : 0) {}

  std::variant<response, failure> next() {
    for (;;) {
      params query = {{"recursive", _recursive ? "true" : "false"}, {"wait", "true"}};
      if (_wait_index > 0) query.emplace_back("waitIndex", std::to_string(_wait_index));
      auto got = _keys.call("GET", _key, query, nullptr, true);
      if (auto* bad = std::get_if<failure>(&got)) {
        if (bad->message == "client: response body is empty") continue;
        return got;
      }
      _wait_index = or_empty(std::get<response>(got).current).modified_index + 1;
      return got;
    }
  }

 private:
  client& _keys;
  std::string _key;
  bool _recursive;
  std::uint64_t _wait_index;
};

void exit_on_interrupt(int) { std::_Exit(exit_success); }  // etcdctl: os.Interrupt -> os.Exit(0)

int run_watch(command_context& c) {
  if (auto bad = need_key(c.inv)) return *bad;
  usage_error bad_flag;
  auto after = int_flag(c.inv, "after-index", bad_flag);
  if (!after) return report(failure{exit_bad_args, bad_flag.message, ""});
  ::signal(SIGINT, exit_on_interrupt);
  bool recursive = c.inv.flag("recursive");
  watch_loop loop(c.keys, c.inv.args[0], recursive, static_cast<std::uint64_t>(*after));
  for (;;) {
    auto got = loop.next();
    if (auto* bad = std::get_if<failure>(&got)) return report(*bad);
    const response& r = std::get<response>(got);
    if (or_empty(r.current).dir) continue;
    if (recursive) std::printf("[%s] %s\n", r.action.c_str(), or_empty(r.current).key.c_str());
    print_response(r, c.inv.output);
    std::fflush(stdout);
    if (!c.inv.flag("forever")) return exit_success;
  }
}

int run_exec_watch(command_context& c) {
  const auto& args = c.inv.args;
  if (args.size() < 2)
    return report(failure{exit_bad_args, "key and command to exec required", ""});
  std::string key;
  std::vector<std::string> command;
  if (c.inv.separator && c.inv.separator_at > 0) {  // exec-watch <key> -- <command...>
    key = args[0];
    command.assign(args.begin() + static_cast<std::ptrdiff_t>(c.inv.separator_at), args.end());
  } else {  // etcdctl's fallback: the key comes last
    key = args.back();
    command.assign(args.begin(), args.end() - 1);
  }
  if (command.empty())
    return report(failure{exit_bad_args, "key and command to exec required", ""});
  usage_error bad_flag;
  auto after = int_flag(c.inv, "after-index", bad_flag);
  if (!after) return report(failure{exit_bad_args, bad_flag.message, ""});
  ::signal(SIGINT, exit_on_interrupt);
  ::signal(SIGCHLD, SIG_IGN);  // commands run on their own, as etcdctl's goroutines; no zombies
  watch_loop loop(c.keys, key, c.inv.flag("recursive"), static_cast<std::uint64_t>(*after));
  for (;;) {
    auto got = loop.next();
    if (auto* bad = std::get_if<failure>(&got)) return report(*bad);
    const response& r = std::get<response>(got);
    const node& n = or_empty(r.current);
    if (n.dir) {
      std::fprintf(stderr, "Ignored dir %s change\n", n.key.c_str());
      continue;
    }
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back("ETCD_WATCH_ACTION=" + r.action);
    env.push_back("ETCD_WATCH_MODIFIED_INDEX=" + std::to_string(n.modified_index));
    env.push_back("ETCD_WATCH_KEY=" + n.key);
    env.push_back("ETCD_WATCH_VALUE=" + n.value);
    std::vector<char*> argv_c, env_c;
    for (std::string& a : command) argv_c.push_back(a.data());
    argv_c.push_back(nullptr);
    for (std::string& e : env) env_c.push_back(e.data());
    env_c.push_back(nullptr);
    std::fflush(stdout);
    pid_t child = 0;
    int rc = ::posix_spawnp(&child, argv_c[0], nullptr, nullptr, argv_c.data(), env_c.data());
    if (rc != 0) {
      std::fprintf(stderr, "exec: \"%s\": %s", command[0].c_str(), errno_text(rc).c_str());
      return exit_bad_args;
    }
  }
}

void print_v2_usage() {
  std::fputs(
      "keelctl v2 — etcdctl's v2 commands (also: ETCDCTL_API=2 keelctl <command>)\n"
      "\n"
      "Usage: keelctl [global flags] v2 <command> [flags] [arguments]\n"
      "\n"
      "Commands:\n"
      "  set <key> <value>     [--ttl N] [--swap-with-value V] [--swap-with-index N]\n"
      "  get <key>             [--sort] [--quorum]\n"
      "  mk <key> <value>      [--ttl N] [--in-order]\n"
      "  mkdir <key>           [--ttl N]\n"
      "  setdir <key>          [--ttl N]\n"
      "  updatedir <key>       [--ttl N]\n"
      "  update <key> <value>  [--ttl N]\n"
      "  rm <key>              [--dir] [--recursive] [--with-value V] [--with-index N]\n"
      "  rmdir <key>\n"
      "  ls [key]              [--sort] [--recursive] [-p] [--quorum]\n"
      "  watch <key>           [--forever] [--after-index N] [--recursive]\n"
      "  exec-watch <key> -- <command> [args...]   [--after-index N] [--recursive]\n"
      "\n"
      "Global flags:\n"
      "  --endpoints URLS      (default $ETCDCTL_ENDPOINTS, else "
      "http://127.0.0.1:2379,http://127.0.0.1:4001)\n"
      "  -o, --output FORMAT   simple, extended or json (default simple)\n"
      "  --no-sync             do not ask /v2/members for the client URLs first\n"
      "  --timeout DUR         per request (default 2s); --total-timeout DUR (default 5s)\n"
      "\n"
      "Exit status: 0 ok, 1 bad arguments, 2 no endpoint reachable, 4 the server refused.\n",
      stdout);
}

// Where the command word is: the first word that is not a flag or a flag's value.
std::size_t first_command_word(int argc, char** argv) {
  static const std::vector<std::string_view> value_flags = {"--endpoints",
                                                            "--endpoint",
                                                            "--peers",
                                                            "-C",
                                                            "-o",
                                                            "--output",
                                                            "--timeout",
                                                            "--total-timeout",
                                                            "--dial-timeout",
                                                            "--command-timeout",
                                                            "-w",
                                                            "--write-out",
                                                            "--ca-file",
                                                            "--cert-file",
                                                            "--key-file",
                                                            "--username",
                                                            "-u",
                                                            "--discovery-srv",
                                                            "-D"};
  for (int i = 1; i < argc; ++i) {
    std::string_view word = argv[i];
    if (word == "--") return static_cast<std::size_t>(i + 1);
    if (word.size() < 2 || word[0] != '-') return static_cast<std::size_t>(i);
    if (word.find('=') == std::string_view::npos &&
        std::find(value_flags.begin(), value_flags.end(), word) != value_flags.end())
      ++i;
  }
  return static_cast<std::size_t>(argc);
}

std::string with_scheme(const std::string& url) {
  return url.find("://") == std::string::npos ? "http://" + url : url;
}

}  // namespace

std::optional<int> run_v2_command(int argc, char** argv) {
  std::size_t at = first_command_word(argc, argv);
  if (at >= static_cast<std::size_t>(argc)) return std::nullopt;
  std::string_view word = argv[at];
  const char* api = std::getenv("ETCDCTL_API");
  bool explicit_v2 = word == "v2";
  bool api_v2 = api && std::string_view(api) == "2" && find_verb(word) != nullptr;
  if (!explicit_v2 && !api_v2) return std::nullopt;

  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i)
    if (!(explicit_v2 && static_cast<std::size_t>(i) == at)) words.emplace_back(argv[i]);
  auto parsed = parse(words);
  if (auto* bad = std::get_if<usage_error>(&parsed)) {
    std::fprintf(stderr, "Error:  %s\nRun 'keelctl v2 --help' for usage.\n", bad->message.c_str());
    return exit_bad_args;
  }
  invocation inv = std::move(std::get<invocation>(parsed));
  if (inv.help || !inv.verb) {
    print_v2_usage();
    return exit_success;
  }
  if (!inv.discovery_srv.empty()) {
    // etcdctl 2: --discovery-srv gives the endpoints (its _etcd-client records).
    auto found = endpoints_from_srv(inv.discovery_srv, "");
    if (!found) {
      std::fprintf(stderr, "Error:  %s\n", found.error().message().c_str());
      return exit_bad_args;
    }
    inv.endpoints = std::move(found.value());
  }
  if (inv.endpoints.empty()) {
    for (const char* name : {"ETCDCTL_ENDPOINTS", "ETCDCTL_ENDPOINT", "ETCDCTL_PEERS"}) {
      const char* env = std::getenv(name);
      if (env && *env) {
        inv.endpoints = split_commas(env);
        break;
      }
    }
  }
  if (inv.endpoints.empty()) inv.endpoints = {"http://127.0.0.1:2379", "http://127.0.0.1:4001"};
  for (std::string& e : inv.endpoints) e = with_scheme(e);

  client keys(inv);
  if (auto bad = keys.sync()) return report(*bad);
  command_context c{inv, keys};
  std::string verb = inv.verb->name;
  if (verb == "set" || verb == "mk" || verb == "update") return run_set_like(c, verb);
  if (verb == "get") return run_get(c);
  if (verb == "mkdir" || verb == "setdir" || verb == "updatedir") return run_dir(c, verb);
  if (verb == "rm" || verb == "rmdir") return run_rm(c, verb);
  if (verb == "ls") return run_ls(c);
  if (verb == "watch") return run_watch(c);
  return run_exec_watch(c);
}

}  // namespace keel::ctl
