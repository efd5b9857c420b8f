// v2.cc — etcd's v2 HTTP API: /v2/keys (parameters as etcd's parseKeyRequest reads them,
// the method -> operation mapping, headers, status codes), and the one-member answers of
// /v2/members, /v2/machines and /v2/stats/*. The operations are in v2_store.cc, watches in
// v2_watch.cc, the JSON in v2_json.cc; the mapping is in v2.h and README.md "etcd v2".
#include "v2.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cstring>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <variant>

#include "keel/go_strconv.h"
#include "keel/reactor/http.h"

namespace keel::kv_module {

namespace v2 {

namespace {

constexpr std::string_view keys_prefix = "/v2/keys";

std::int64_t started_ns = 0;  // when the routes were registered (/v2/stats/self)

// ---- parameters ---------------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Go's url.QueryUnescape (plus_is_space) or PathUnescape; nullopt on a bad %-escape, with
// the offending escape in `bad` for Go's message.
std::optional<std::string> unescape(std::string_view text, bool plus_is_space, std::string& bad) {
  std::string out;
  out.reserve(text.size());
  // Runs with nothing to decode go in with one append; memchr finds their ends. The next
  // '%' is kept until passed, so text full of '+' is not searched again and again for it.
  auto find = [&](char c, std::size_t from, std::size_t to) {
    if (from == to) return to;
    const void* at = std::memchr(text.data() + from, c, to - from);
    return at ? static_cast<std::size_t>(static_cast<const char*>(at) - text.data()) : to;
  };
  std::size_t i = 0;
  std::size_t next_percent = find('%', 0, text.size());
  while (i < text.size()) {
    if (next_percent < i) next_percent = find('%', i, text.size());
    std::size_t run = plus_is_space ? find('+', i, next_percent) : next_percent;
    out.append(text.data() + i, run - i);
    i = run;
    if (i == text.size()) break;
    if (text[i] == '+') {  // only stops a run when plus_is_space
      out.push_back(' ');
      ++i;
      continue;
    }
    int high = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
    int low = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
    if (high < 0 || low < 0) {
      bad = std::string(text.substr(i, std::min<std::size_t>(3, text.size() - i)));
      return std::nullopt;
    }
    out.push_back(static_cast<char>(high * 16 + low));
    i += 3;
  }
  return out;
}

struct form {
  // Go's Request.Form: the body's values come first, then the query's; the first wins.
  std::vector<std::pair<std::string, std::string>> values;

  const std::string* first(std::string_view name) const {
    for (const auto& [key, value] : values)
      if (key == name) return &value;
    return nullptr;
  }
  // Go's FormValue: the first value, or "".
  std::string value(std::string_view name) const {
    const std::string* v = first(name);
    return v ? *v : std::string();
  }
};

// Go's url.ParseQuery: an error does not stop the parse, it is reported at the end.
std::optional<std::string> parse_query(std::string_view text, form& out) {
  std::optional<std::string> failure;
  while (!text.empty()) {
    std::size_t amp = text.find('&');
    std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (pair.find(';') != std::string_view::npos) {
      if (!failure) failure = "invalid semicolon separator in query";
      continue;
    }
    if (pair.empty()) continue;
    std::size_t equals = pair.find('=');
    std::string bad;
    auto key = unescape(pair.substr(0, equals), true, bad);
    auto value = key ? unescape(equals == std::string_view::npos ? std::string_view()
                                                                 : pair.substr(equals + 1),
                                true, bad)
                     : std::nullopt;
    if (!key || !value) {
      if (!failure) failure = "invalid URL escape \"" + bad + "\"";
      continue;
    }
    out.values.emplace_back(std::move(*key), std::move(*value));
  }
  return failure;
}

// ---- Go's mime.ParseMediaType, as Request.ParseForm uses it -----------------------------------

// ASCII only: Go's unicode.IsSpace also trims U+0085 and U+00A0 (and strings.ToLower
// maps a few non-ASCII letters to ASCII); a Content-Type using them is refused here.
bool is_go_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

std::string_view trim_left_space(std::string_view v) {
  while (!v.empty() && is_go_space(v.front())) v.remove_prefix(1);
  return v;
}

bool is_tspecial(char c) {
  static constexpr std::string_view tspecials = "()<>@,;:\\\"/[]?=";
  return tspecials.find(c) != std::string_view::npos;
}

// mime's isTokenChar: printable ASCII but space and the tspecials.
bool is_token_char(char c) { return c > 0x20 && c < 0x7f && !is_tspecial(c); }

std::string_view consume_token(std::string_view& v) {
  std::size_t n = 0;
  while (n < v.size() && is_token_char(v[n])) ++n;
  std::string_view token = v.substr(0, n);
  v.remove_prefix(n);
  return token;
}

// mime's consumeValue: a token or a quoted string; false when there is neither.
bool consume_value(std::string_view& v) {
  if (v.empty()) return false;
  if (v.front() != '"') return !consume_token(v).empty();
  for (std::size_t i = 1; i < v.size(); ++i) {
    if (v[i] == '"') {
      v.remove_prefix(i + 1);
      return true;
    }
    if (v[i] == '\\' && i + 1 < v.size() && is_tspecial(v[i + 1])) ++i;  // else a literal '\' (MSIE)
    else if (v[i] == '\r' || v[i] == '\n') return false;
  }
  return false;  // unterminated
}

// mime's consumeMediaParam: "; name=value", the lowercased name into `name`; false if malformed.
bool consume_media_param(std::string_view& v, std::string& name) {
  std::string_view rest = trim_left_space(v);
  if (rest.empty() || rest.front() != ';') return false;
  rest = trim_left_space(rest.substr(1));
  std::string_view token = consume_token(rest);
  if (token.empty()) return false;
  rest = trim_left_space(rest);
  if (rest.empty() || rest.front() != '=') return false;
  rest = trim_left_space(rest.substr(1));
  if (!consume_value(rest)) return false;
  name.assign(token);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  v = rest;
  return true;
}

// mime's checkMediaTypeDisposition: "type" or "type/subtype", tokens only.
const char* media_type_failure(std::string_view rest) {
  if (consume_token(rest).empty()) return "mime: no media type";
  if (rest.empty()) return nullptr;
  if (rest.front() != '/') return "mime: expected slash after first token";
  rest.remove_prefix(1);
  if (consume_token(rest).empty()) return "mime: expected token after slash";
  if (!rest.empty()) return "mime: unexpected content after media subtype";
  return nullptr;
}

// Go's mime.ParseMediaType (Go 1.19, which Debian's etcd 3.4 is built with): the
// lowercased media type, or Go's error text.
std::optional<std::string> parse_media_type(std::string_view header, std::string& type) {
  std::string_view base = header.substr(0, header.find(';'));
  while (!base.empty() && is_go_space(base.front())) base.remove_prefix(1);
  std::string_view trimmed = base;
  while (!trimmed.empty() && is_go_space(trimmed.back())) trimmed.remove_suffix(1);
  type.assign(trimmed);
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (const char* wrong = media_type_failure(type)) {
    type.clear();
    return wrong;
  }
  std::string_view v = header.substr(std::min(header.size(), header.find(';')));
  std::vector<std::string> seen;
  for (;;) {
    v = trim_left_space(v);
    if (v.empty()) break;
    std::string name;
    if (!consume_media_param(v, name)) {
      std::string_view left = v;
      while (!left.empty() && is_go_space(left.back())) left.remove_suffix(1);
      if (left == ";") break;  // a trailing semicolon is not an error
      return "mime: invalid media parameter";
    }
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {  // even with equal values (Go 1.19)
      type.clear();
      return "mime: duplicate parameter name";
    }
    seen.push_back(std::move(name));
  }
  return std::nullopt;
}

// Go's parsePostForm for PUT, POST and PATCH: whether the body is a form, or the error
// ParseForm reports for the Content-Type (etcd answers it as 400 errorCode 210).
std::optional<std::string> read_form_body_type(const http_request& request, bool& form_body) {
  form_body = false;
  if (request.method != "PUT" && request.method != "POST" && request.method != "PATCH")
    return std::nullopt;
  constexpr std::string_view wanted = "application/x-www-form-urlencoded";
  std::string_view header = request.header("Content-Type");
  if (header == wanted) {  // what clients send: no parse needed
    form_body = true;
    return std::nullopt;
  }
  if (header.empty()) return std::nullopt;  // Go: application/octet-stream
  std::string type;
  std::optional<std::string> failure = parse_media_type(header, type);
  form_body = type == wanted;
  return failure;
}

using go::parse_bool;
using go::parse_uint;

error bad_parameter(int code, std::string cause) { return error{code, std::move(cause), 0}; }

// getBool: absent is false; present must parse.
std::optional<error> read_bool(const form& f, const char* name, bool& out) {
  const std::string* v = f.first(name);
  if (!v) return std::nullopt;
  auto parsed = parse_bool(*v);
  if (!parsed)
    return bad_parameter(codes::invalid_field, std::string("invalid value for \"") + name + "\"");
  out = *parsed;
  return std::nullopt;
}

std::optional<error> read_index(const form& f, const char* name, std::uint64_t& out) {
  const std::string* v = f.first(name);
  if (!v) return std::nullopt;
  auto parsed = parse_uint(*v);
  if (!parsed)
    return bad_parameter(codes::index_nan, std::string("invalid value for \"") + name + "\"");
  out = *parsed;
  return std::nullopt;
}

// The checks of etcd's parseKeyRequest after the form is read, in its order.
std::optional<error> read_parameters(const form& f, key_request& r) {
  if (auto e = read_index(f, "prevIndex", r.prev_index)) return e;
  if (auto e = read_index(f, "waitIndex", r.wait_index)) return e;
  for (auto [name, target] : {std::pair{"recursive", &r.recursive}, std::pair{"sorted", &r.sorted},
                              std::pair{"wait", &r.wait}, std::pair{"dir", &r.dir},
                              std::pair{"quorum", &r.quorum}, std::pair{"stream", &r.stream}})
    if (auto e = read_bool(f, name, *target)) return e;
  if (r.wait && r.method != "GET")
    return bad_parameter(codes::invalid_field, "\"wait\" can only be used with GET requests");
  const std::string* prev_value = f.first("prevValue");
  if (prev_value && prev_value->empty())
    return bad_parameter(codes::prev_value_required, "\"prevValue\" cannot be empty");
  if (prev_value) r.prev_value = *prev_value;
  if (auto e = read_bool(f, "noValueOnSuccess", r.no_value_on_success)) return e;
  if (!f.value("ttl").empty()) {
    auto ttl = parse_uint(f.value("ttl"));
    if (!ttl) return bad_parameter(codes::ttl_nan, "invalid value for \"ttl\"");
    // etcd takes any uint64 and multiplies it into an int64 Duration: a TTL from ~7.4e9
    // s to ~9.2e9 s shows there as permanent, larger ones wrap (2^64-1 is "now - 1 s").
    // keel keeps every expiry past the year 2262 permanent (expiry_after in v2_store.cc),
    // so a TTL above the lease maximum, which lies past it, is taken as that maximum.
    r.ttl = std::min(*ttl, static_cast<std::uint64_t>(lease_ttl_max_seconds));
  }
  if (const std::string* v = f.first("prevExist")) {
    auto parsed = parse_bool(*v);
    if (!parsed) return bad_parameter(codes::invalid_field, "invalid value for prevExist");
    r.prev_exist = *parsed;
  }
  if (const std::string* v = f.first("refresh")) {
    auto parsed = parse_bool(*v);
    if (!parsed) return bad_parameter(codes::invalid_field, "invalid value for refresh");
    r.refresh = *parsed;
    if (r.refresh) {
      const std::string* value = f.first("value");
      if (value && !value->empty())
        return bad_parameter(codes::refresh_value, "A value was provided on a refresh");
      if (!r.ttl) return bad_parameter(codes::refresh_ttl_required, "No TTL value set");
    }
  }
  r.value = f.value("value");
  return std::nullopt;
}

std::variant<key_request, error> parse_key_request(const http_request& request) {
  key_request r;
  r.method = request.method;
  form f;
  bool form_body = false;
  std::optional<std::string> bad_form = read_form_body_type(request, form_body);
  if (form_body) {
    auto bad_body = parse_query(request.body, f);
    if (!bad_form) bad_form = std::move(bad_body);
  }
  if (auto bad_query = parse_query(request.query(), f); bad_query && !bad_form)
    bad_form = bad_query;
  if (bad_form) return bad_parameter(codes::invalid_form, *bad_form);
  std::string bad;
  auto path = unescape(request.path().substr(keys_prefix.size()), false, bad);
  // Unreachable from http_keys, which refuses a bad escape as Go's server does first.
  if (!path) return bad_parameter(codes::invalid_form, "invalid URL escape \"" + bad + "\"");
  r.path = normalize_path(*path);
  if (auto e = read_parameters(f, r)) return *e;
  return r;
}

// ---- /v2/keys -------------------------------------------------------------------------------

// Go's ServeMux cleanPath: path.Clean, keeping a trailing slash.
std::string clean_keeping_slash(const std::string& decoded) {
  std::string clean = normalize_path(decoded);
  if (decoded.size() > 1 && decoded.back() == '/' && clean != "/") clean += '/';
  return clean;
}

// url.URL.EscapedPath for a path: everything but unreserved characters and $&+,/:;=@.
std::string escape_path(std::string_view path) {
  static constexpr std::string_view keep = "-_.~$&+,/:;=@";
  std::string out;
  for (char c : path) {
    if (std::isalnum(static_cast<unsigned char>(c)) || keep.find(c) != std::string_view::npos) {
      out.push_back(c);
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", static_cast<unsigned char>(c));
      out += escaped;
    }
  }
  return out;
}

// etcd's mux (Go's ServeMux) answers a path that is not clean ("//", "/./", "/../") with
// a 301 to the clean one before any handler runs. Returns true when it did.
bool redirected_to_clean_path(const http_request& request, http_response& response) {
  std::string bad;
  auto decoded = unescape(request.path(), false, bad);
  if (!decoded) return false;  // refused_bad_escape answers it, before this runs
  std::string clean = clean_keeping_slash(*decoded);
  if (clean == *decoded) return false;
  std::string location = escape_path(clean);
  if (!request.query().empty()) location += "?" + std::string(request.query());
  response.add_header("Location", location);
  if (request.method == "GET" || request.method == "HEAD") {
    std::string body = "<a href=\"";
    for (char c : location) {  // Go's htmlEscape
      if (c == '&')
        body += "&amp;";
      else if (c == '"')
        body += "&#34;";
      else if (c == '\'')
        body += "&#39;";
      else if (c == '<')
        body += "&lt;";
      else if (c == '>')
        body += "&gt;";
      else
        body.push_back(c);
    }
    body += "\">Moved Permanently</a>.\n\n";
    response.send(301, "text/html; charset=utf-8", body);
  } else {
    response.send(301, "", "");
  }
  return true;
}

task<outcome> run(key_request request) {
  if (request.method == "PUT" || request.method == "POST" || request.method == "DELETE") return write(std::move(request));
  return get(std::move(request));  // GET and HEAD
}

// Go's server refuses a request whose path has a bad %-escape before any handler runs
// (url.ParseRequestURI): "400 Bad Request" in plain text, and the connection closes.
bool refused_bad_escape(const http_request& request, http_response& response) {
  std::string bad;
  if (unescape(request.path(), false, bad)) return false;
  response.close_after();
  response.skip_default_headers();  // Go's server answers it, before etcd's CORS wrapper
  response.send(400, "text/plain; charset=utf-8", "400 Bad Request");
  return true;
}

task<void> http_keys(const http_request& request, http_response& response) {
  if (refused_bad_escape(request, response)) co_return;
  if (redirected_to_clean_path(request, response)) co_return;
  add_cluster_headers(response);
  // etcd's v2 API has no size limit; keel keeps --max-request-bytes on the body (the HTTP
  // layer allows more, for the v3 gateway's base64; see log_entry).
  if (request.body.size() > request_bytes_max()) {
    std::string out = "{\"message\":";
    append_go_string(out, "request body of " + std::to_string(request.body.size()) + " bytes exceeds the limit of " +
                              std::to_string(request_bytes_max()) + " bytes");
    response.send(413, "application/json", out + "}\n");
    co_return;
  }
  auto parsed = parse_key_request(request);
  if (auto* bad = std::get_if<error>(&parsed)) {
    send_error(response, *bad);
    co_return;
  }
  key_request r = std::move(std::get<key_request>(parsed));
  bool no_value = r.no_value_on_success;
  if (r.method == "GET" && r.wait) {
    task<void> watching = serve_watch(request, response, std::move(r));
    co_await std::move(watching);
    co_return;
  }
  task<outcome> working = run(std::move(r));
  outcome out = co_await std::move(working);
  if (out.failure) {
    send_error(response, *out.failure);
    co_return;
  }
  add_index_headers(response, out.index);
  response.send(out.result.is_created() ? 201 : 200, "application/json",
                event_json(out.result, no_value));
}

// etcd's allowMethod: 405 in plain text for the methods /v2/keys does not serve, before
// the cluster id header is set.
void http_keys_not_allowed(const http_request& request, http_response& response) {
  if (refused_bad_escape(request, response)) return;
  if (redirected_to_clean_path(request, response)) return;  // Go's mux, for any method
  response.add_header("Allow", "HEAD,GET,PUT,POST,DELETE");
  response.add_header("X-Content-Type-Options", "nosniff");  // Go's http.Error
  response.send(405, "text/plain; charset=utf-8", "Method Not Allowed\n");
}

// etcd's CORS wrapper answers a preflight OPTIONS itself: 200, no body (the CORS headers
// are keeld's client-port defaults, as on every answer). A route of its own, so that the
// any-method 405 of /v2/keys does not take OPTIONS.
void http_options(const http_request& request, http_response& response) {
  if (refused_bad_escape(request, response)) return;
  response.send(200, "", "");
}

// ---- members, machines, stats ---------------------------------------------------------------

std::string hex_id(std::uint64_t id) {
  char text[24];
  std::snprintf(text, sizeof text, "%llx", static_cast<unsigned long long>(id));
  return text;
}

// A single node's client URL is the address the client reached it at (the Host header):
// etcd refuses --listen-client-urls without --advertise-client-urls, keel does not, and
// etcdctl v2 syncs its endpoints from /v2/members, so the default http://localhost:2379
// would send it elsewhere.
std::string client_url(const http_request& request) {
  std::string_view host = request.header("Host");
  return "http://" + std::string(host.empty() ? "127.0.0.1:2379" : host);
}

// The members as /v2/members shows them: a single node with its --name and advertised
// peer URLs, and the client URL above.
std::vector<cluster_member_info> shown_members(const member_view& view, const http_request& request) {
  std::vector<cluster_member_info> members = view.members;
  if (!view.cluster)
    for (cluster_member_info& m : members) m.client_urls = {client_url(request)};
  return members;
}

// A cluster member as etcd's v2 members API shows it.
std::string member_json(const cluster_member_info& m) {
  std::string out = "{\"id\":\"" + hex_id(m.id) + "\",\"name\":";
  append_go_string(out, m.name);
  out += ",\"peerURLs\":[";
  for (std::size_t i = 0; i < m.peer_urls.size(); ++i) {
    if (i) out += ",";
    append_go_string(out, m.peer_urls[i]);
  }
  out += "],\"clientURLs\":[";
  for (std::size_t i = 0; i < m.client_urls.size(); ++i) {
    if (i) out += ",";
    append_go_string(out, m.client_urls[i]);
  }
  out += "]}";
  return out;
}

task<void> http_members(const http_request& request, http_response& response) {
  task<member_view> asking = members_now();
  member_view view = co_await std::move(asking);
  add_cluster_headers(response);
  std::vector<cluster_member_info> members = shown_members(view, request);
  std::string out = "{\"members\":[";
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (i) out += ",";
    out += member_json(members[i]);
  }
  response.send(200, "application/json", out + "]}\n");
}

// etcd v2's members API errors: {"message": "..."} with the status etcd gives.
void send_members_error(http_response& response, int http_status, const std::string& message) {
  std::string out = "{\"message\":";
  append_go_string(out, message);
  response.send(http_status, "application/json", out + "}\n");
}

int members_status_of(const status& failure) {
  switch (failure.code()) {
    case errc::already_exists: return 409;
    case errc::not_found: return 404;
    case errc::invalid_argument: return 400;
    case errc::unsupported: return 501;
    default: return 500;
  }
}

// The member id at the end of /v2/members/<hex id>; answers 404 itself when it is not one.
std::optional<std::uint64_t> member_id_of_path(const http_request& request, http_response& response) {
  std::string_view path = request.path();
  std::string text(path.substr(path.rfind('/') + 1));
  char* end = nullptr;
  errno = 0;
  unsigned long long id = std::strtoull(text.c_str(), &end, 16);
  if (text.empty() || *end != '\0' || errno != 0) {
    send_members_error(response, 404, "No such member: " + text);
    return std::nullopt;
  }
  return id;
}

// The body {"peerURLs": [...]}; answers 400 itself when it is not that.
std::optional<std::vector<std::string>> peer_urls_of_body(const http_request& request, http_response& response) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(request.body.data(), request.body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("peerURLs") || !doc["peerURLs"].IsArray()) {
    send_members_error(response, 400, "invalid peerURLs: want {\"peerURLs\": [\"http://host:port\", ...]}");
    return std::nullopt;
  }
  std::vector<std::string> urls;
  for (const auto& u : doc["peerURLs"].GetArray())
    if (u.IsString()) urls.emplace_back(u.GetString());
  return urls;
}

// POST /v2/members {"peerURLs": [...]}: 201 with the new member (etcd's v2 member add).
task<void> http_members_add(const http_request& request, http_response& response) {
  add_cluster_headers(response);
  auto urls = peer_urls_of_body(request, response);
  if (!urls) co_return;
  task<result<member_change>> adding = member_add(std::move(*urls), false);
  auto added = co_await std::move(adding);
  if (!added) {
    send_members_error(response, members_status_of(added.error()), added.error().message());
    co_return;
  }
  response.send(201, "application/json", member_json(added->member) + "\n");
}

// DELETE /v2/members/<hex id>: 204 (etcd's v2 member remove); PUT with {"peerURLs": [...]}:
// 204 (etcd's v2 member update).
task<void> http_members_change(const http_request& request, http_response& response) {
  add_cluster_headers(response);
  auto id = member_id_of_path(request, response);
  if (!id) co_return;
  std::optional<std::vector<std::string>> urls;
  if (request.method == "PUT" && !(urls = peer_urls_of_body(request, response))) co_return;
  task<result<member_change>> changing = urls ? member_update(*id, std::move(*urls)) : member_remove(*id);
  auto changed = co_await std::move(changing);
  if (!changed) {
    send_members_error(response, members_status_of(changed.error()), changed.error().message());
    co_return;
  }
  response.send(204, "application/json", "");
}

task<void> http_members_leader(const http_request& request, http_response& response) {
  task<member_view> asking = members_now();
  member_view view = co_await std::move(asking);
  add_cluster_headers(response);
  for (const cluster_member_info& m : shown_members(view, request)) {
    if (m.id != view.leader) continue;
    response.send(200, "application/json", member_json(m) + "\n");
    co_return;
  }
  response.send(503, "application/json", "{\"message\":\"During election\"}\n");
}

// Every member's client URLs, as etcd joins them.
task<void> http_machines(const http_request& request, http_response& response) {
  task<member_view> asking = members_now();
  member_view view = co_await std::move(asking);
  std::string out;
  for (const cluster_member_info& m : shown_members(view, request))
    for (const std::string& url : m.client_urls) out += (out.empty() ? "" : ", ") + url;
  response.send(200, "text/plain; charset=utf-8", out);
}

// Go's time.Duration.String().
std::string go_duration(std::int64_t ns) {
  if (ns <= 0) return "0s";
  auto fraction = [](std::uint64_t v, int digits, std::string& out) {
    std::string text;
    bool any = false;
    for (int i = 0; i < digits; ++i) {
      char d = static_cast<char>('0' + v % 10);
      any = any || d != '0';
      if (any) text.insert(text.begin(), d);
      v /= 10;
    }
    if (any) out = "." + text;
    return v;
  };
  auto u = static_cast<std::uint64_t>(ns);
  std::string frac;
  if (u < 1000) return std::to_string(u) + "ns";
  if (u < 1'000'000) {
    std::uint64_t whole = fraction(u, 3, frac);
    return std::to_string(whole) + frac + "µs";
  }
  if (u < 1'000'000'000) {
    std::uint64_t whole = fraction(u, 6, frac);
    return std::to_string(whole) + frac + "ms";
  }
  std::uint64_t seconds = fraction(u, 9, frac);
  std::string out = std::to_string(seconds % 60) + frac + "s";
  if (seconds >= 60) out = std::to_string(seconds / 60 % 60) + "m" + out;
  if (seconds >= 3600) out = std::to_string(seconds / 3600) + "h" + out;
  return out;
}

// This member's name and state, and its leader (etcd's ServerStats; the counters are 0).
task<void> http_stats_self(const http_request&, http_response& response) {
  task<member_view> asking = members_now();
  member_view view = co_await std::move(asking);
  std::uint64_t self = ids().member_id;
  std::string name;
  for (const cluster_member_info& m : view.members)
    if (m.id == self) name = m.name;
  std::string id = hex_id(self);
  std::string start = format_rfc3339_nano(started_ns);
  std::string out = "{\"name\":";
  append_go_string(out, name);
  out += ",\"id\":\"" + id + "\",\"state\":\"" + (view.leader == self ? "StateLeader" : "StateFollower") +
         "\",\"startTime\":\"" + start + "\",\"leaderInfo\":{\"leader\":\"" + hex_id(view.leader) +
         "\",\"uptime\":\"" +
         go_duration(unix_now_ns() - started_ns) + "\",\"startTime\":\"" + start +
         "\"},\"recvAppendRequestCnt\":0,\"sendAppendRequestCnt\":0}";
  response.send(200, "application/json", out);
}

void http_stats_leader(const http_request&, http_response& response) {
  response.send(200, "application/json",
                "{\"leader\":\"" + hex_id(ids().member_id) + "\",\"followers\":{}}");
}

void http_stats_store(const http_request&, http_response& response) {
  store_counters& c = counters();
  std::string out = "{";
  auto field = [&](const char* name, std::int64_t value) {
    if (out.size() > 1) out += ',';
    out += '"';
    out += name;
    out += "\":" + std::to_string(value);
  };
  auto load = [](const auto& counter) {
    return static_cast<std::int64_t>(counter.load(std::memory_order_relaxed));
  };
  field("getsSuccess", load(c.gets_success));
  field("getsFail", load(c.gets_fail));
  field("setsSuccess", load(c.sets_success));
  field("setsFail", load(c.sets_fail));
  field("deleteSuccess", load(c.delete_success));
  field("deleteFail", load(c.delete_fail));
  field("updateSuccess", load(c.update_success));
  field("updateFail", load(c.update_fail));
  field("createSuccess", load(c.create_success));
  field("createFail", load(c.create_fail));
  field("compareAndSwapSuccess", load(c.compare_and_swap_success));
  field("compareAndSwapFail", load(c.compare_and_swap_fail));
  field("compareAndDeleteSuccess", load(c.compare_and_delete_success));
  field("compareAndDeleteFail", load(c.compare_and_delete_fail));
  field("expireCount", load(c.expire_count));
  field("watchers", load(c.watchers));
  out += '}';
  response.send(200, "application/json", out);
}

}  // namespace

// ---- shared helpers (v2.h) ------------------------------------------------------------------

void add_cluster_headers(http_response& response) {
  response.add_header("X-Etcd-Cluster-Id", hex_id(ids().cluster_id));
}

void add_index_headers(http_response& response, std::int64_t index) {
  std::string text = std::to_string(index);
  response.add_header("X-Etcd-Index", text);
  // One node: every committed entry is applied, and the revision is the closest thing to
  // the Raft index a client can compare (README "etcd v2").
  response.add_header("X-Raft-Index", text);
  response.add_header("X-Raft-Term", std::to_string(ids().raft_term));
}

void send_error(http_response& response, const error& e) {
  response.add_header("X-Etcd-Index", std::to_string(e.index));
  response.send(error_http_status(e.code), "application/json", error_json(e));
}

}  // namespace v2

void register_v2_routes(http_router& router) {
  v2::started_ns = v2::unix_now_ns();
  (void)v2::find_note(1);  // allocates the revision notes before any shard runs
  for (std::string path : {std::string(v2::keys_prefix), std::string(v2::keys_prefix) + "/"}) {
    bool prefix = path.back() == '/';
    for (const char* method : {"GET", "HEAD", "PUT", "POST", "DELETE"}) {
      if (prefix)
        router.add_prefix_async(method, path, v2::http_keys);
      else
        router.add_async(method, path, v2::http_keys);
    }
    if (prefix) {
      router.add_prefix(http_router::any_method, path, v2::http_keys_not_allowed);
      router.add_prefix("OPTIONS", path, v2::http_options);
    } else {
      router.add(http_router::any_method, path, v2::http_keys_not_allowed);
      router.add("OPTIONS", path, v2::http_options);
    }
  }
  router.add("OPTIONS", "/v2/members", v2::http_options);
  router.add_async("GET", "/v2/members", v2::http_members);
  router.add_async("GET", "/v2/members/leader", v2::http_members_leader);
  router.add_async("POST", "/v2/members", v2::http_members_add);
  router.add_prefix_async("DELETE", "/v2/members/", v2::http_members_change);
  router.add_prefix_async("PUT", "/v2/members/", v2::http_members_change);
  router.add_async("GET", "/v2/machines", v2::http_machines);
  router.add_async("HEAD", "/v2/machines", v2::http_machines);
  router.add_async("GET", "/v2/stats/self", v2::http_stats_self);
  router.add("GET", "/v2/stats/leader", v2::http_stats_leader);
  router.add("GET", "/v2/stats/store", v2::http_stats_store);
}

}  // namespace keel::kv_module
