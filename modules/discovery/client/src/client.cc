// client.cc — etcd 3.4's v2discovery over blocking sockets (see client.h).
//
// The HTTP side is as small as the protocol needs: one connection per request with
// "Connection: close", the answer read to EOF (or its Content-Length / last chunk). The
// v2 side is etcd's client/keys.go: 200/201 with an empty body is "no event yet, ask
// again" (ErrEmptyBody), other statuses carry etcd's error JSON, a 5xx or a transport
// failure is a ClusterError (retried where etcd retries it).
#include "keel/discovery/client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>
#include <variant>

#include "authority.h"

namespace keel::discovery {
namespace {

using namespace std::chrono;

// ---- errors (etcd's v2discovery texts) ----------------------------------------------------

status size_not_found() { return {errc::not_found, "discovery: size key not found"}; }
status bad_size_key() { return {errc::invalid_argument, "discovery: size key is bad"}; }
status bad_endpoint() { return {errc::invalid_argument, "discovery: bad discovery endpoint"}; }
status duplicate_id() { return {errc::invalid_argument, "discovery: found duplicate id"}; }
status duplicate_name() { return {errc::invalid_argument, "discovery: found duplicate name"}; }
status invalid_url() { return {errc::invalid_argument, "discovery: invalid URL"}; }
status full_cluster() { return {errc::already_exists, "discovery: cluster is full"}; }
status too_many_retries() { return {errc::unavailable, "discovery: too many retries"}; }

// ---- HTTP ---------------------------------------------------------------------------------

struct endpoint {
  std::string host;  // for getaddrinfo (brackets removed)
  std::string port;
  std::string authority;  // the Host header
  // --discovery-proxy: connect here instead and send the request in absolute form
  // (http://authority/path), as Go's http.Transport does through an HTTP proxy.
  std::string proxy_host;
  std::string proxy_port;
};

struct http_answer {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
  std::string_view header(std::string_view name) const {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return {};
  }
};

// A transport failure or a 5xx: etcd's ClusterError, the retryable kind.
struct transport_error {
  std::string detail;
};

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class socket_guard {
 public:
  explicit socket_guard(int fd) : _fd(fd) {}
  ~socket_guard() {
    if (_fd >= 0) ::close(_fd);
  }
  socket_guard(const socket_guard&) = delete;
  socket_guard& operator=(const socket_guard&) = delete;
  int fd() const { return _fd; }

 private:
  int _fd;
};

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Waits for `events` on fd until `deadline`; false on timeout or error (`why` says which).
bool wait_ready(int fd, short events, steady_clock::time_point deadline, std::string& why) {
  for (;;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0) {
      why = "i/o timeout";
      return false;
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) {
      why = errno_text("poll");
      return false;
    }
  }
}

// Connects to the endpoint (any of its addresses), non-blocking so the deadline holds.
std::optional<int> dial(const endpoint& ep, steady_clock::time_point deadline, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &found);
  if (rc != 0) {
    why = "dial tcp " + ep.authority + ": lookup " + ep.host + ": " + ::gai_strerror(rc);
    return std::nullopt;
  }
  why.clear();
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
      std::string wait_why;
      if (wait_ready(fd, POLLOUT, deadline, wait_why)) {
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error == 0) {
          ::freeaddrinfo(found);
          return fd;
        }
        why = "dial tcp " + ep.authority + ": connect: " + std::strerror(error);
      } else {
        why = "dial tcp " + ep.authority + ": " + wait_why;
      }
    } else {
      why = "dial tcp " + ep.authority + ": connect: " + std::strerror(errno);
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (why.empty()) why = "dial tcp " + ep.authority + ": no usable address";
  return std::nullopt;
}

// Removes the chunked transfer coding; false if the chunks are malformed or cut short.
bool dechunk(std::string_view in, std::string& out) {
  out.clear();
  for (;;) {
    std::size_t line_end = in.find("\r\n");
    if (line_end == std::string_view::npos) return false;
    std::string_view size_text = in.substr(0, line_end);
    size_text = size_text.substr(0, size_text.find(';'));
    std::size_t size = 0;
    if (size_text.empty()) return false;
    for (char c : size_text) {
      int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (v < 0 || size > (std::size_t(1) << 40)) return false;
      size = size * 16 + static_cast<std::size_t>(v);
    }
    in.remove_prefix(line_end + 2);
    if (size == 0) return true;
    if (in.size() < size + 2) return false;
    out.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

// One request, answered or a transport_error. The whole answer is read (to EOF: the
// request says Connection: close).
std::variant<http_answer, transport_error> http_do(const endpoint& ep, std::string_view method, const std::string& target,
                                                   std::string_view form_body, milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  std::string why;
  bool proxied = !ep.proxy_host.empty();
  endpoint to = proxied ? endpoint{ep.proxy_host, ep.proxy_port, ep.proxy_host + ":" + ep.proxy_port, {}, {}} : ep;
  auto fd = dial(to, deadline, why);
  if (!fd) return transport_error{proxied ? "proxy " + why : why};
  socket_guard guard(*fd);
  std::string request_target = proxied ? "http://" + ep.authority + target : target;
  std::string request = std::string(method) + " " + request_target + " HTTP/1.1\r\nHost: " + ep.authority +
                        "\r\nUser-Agent: keel-discovery\r\nConnection: close\r\n";
  if (method == "PUT" || method == "POST") {
    request += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
               std::to_string(form_body.size()) + "\r\n";
  }
  request += "\r\n";
  request.append(form_body);
  std::size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(guard.fd(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_ready(guard.fd(), POLLOUT, deadline, why)) return transport_error{"write " + ep.authority + ": " + why};
      continue;
    }
    return transport_error{errno_text(("write " + ep.authority).c_str())};
  }
  std::string raw;
  char chunk[16384];
  for (;;) {
    ssize_t n = ::recv(guard.fd(), chunk, sizeof chunk, 0);
    if (n > 0) {
      raw.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (errno == EAGAIN || errno == EINTR) {
      if (!wait_ready(guard.fd(), POLLIN, deadline, why)) return transport_error{"read " + ep.authority + ": " + why};
      continue;
    }
    return transport_error{errno_text(("read " + ep.authority).c_str())};
  }
  std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || !raw.starts_with("HTTP/1.")) {
    return transport_error{"read " + ep.authority + ": malformed HTTP response"};
  }
  http_answer answer;
  std::string_view head(raw.data(), head_end);
  std::size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12) return transport_error{"read " + ep.authority + ": malformed status line"};
  answer.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  head = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  while (!head.empty()) {
    std::size_t end = head.find("\r\n");
    std::string_view line = head.substr(0, end);
    head = end == std::string_view::npos ? std::string_view{} : head.substr(end + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    answer.headers.emplace_back(lowercase(line.substr(0, colon)), std::string(value));
  }
  std::string_view body(raw.data() + head_end + 4, raw.size() - head_end - 4);
  if (lowercase(answer.header("transfer-encoding")).find("chunked") != std::string::npos) {
    if (!dechunk(body, answer.body)) return transport_error{"read " + ep.authority + ": unexpected EOF"};
  } else if (auto length = answer.header("content-length"); !length.empty()) {
    std::size_t want = std::strtoull(std::string(length).c_str(), nullptr, 10);
    if (body.size() < want) return transport_error{"read " + ep.authority + ": unexpected EOF"};
    answer.body = std::string(body.substr(0, want));
  } else {
    answer.body = std::string(body);
  }
  if (answer.status / 100 == 5) {
    return transport_error{"client: etcd member " + ep.authority + " returned HTTP " + std::to_string(answer.status)};
  }
  return answer;
}

// ---- v2 keys ------------------------------------------------------------------------------

struct node {
  std::string key;
  std::string value;
  std::uint64_t created_index = 0;
  std::uint64_t modified_index = 0;
};

struct keys_response {
  node self;
  std::vector<node> nodes;  // the listed children
  std::uint64_t index = 0;  // X-Etcd-Index
};

// What a keys request came to: an answer, "no event yet" (a wait's 200 with an empty
// body), an etcd error / bad answer (a status), or a failure to reach the service.
struct outcome {
  enum class kind { answer, empty, failed, unreachable } what = kind::failed;
  keys_response response;
  int etcd_code = 0;
  status failure;
};

std::uint64_t number_of(const rapidjson::Value& object, const char* name) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsUint64()) return 0;
  return it->value.GetUint64();
}

std::string string_of(const rapidjson::Value& object, const char* name) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

node node_of(const rapidjson::Value& object) {
  node n;
  n.key = string_of(object, "key");
  n.value = string_of(object, "value");
  n.created_index = number_of(object, "createdIndex");
  n.modified_index = number_of(object, "modifiedIndex");
  return n;
}

outcome keys_request(const endpoint& ep, std::string_view method, const std::string& target, std::string_view body,
                     milliseconds timeout) {
  outcome out;
  auto done = http_do(ep, method, target, body, timeout);
  if (auto* failed = std::get_if<transport_error>(&done)) {
    out.what = outcome::kind::unreachable;
    out.failure = status(errc::unavailable, failed->detail);
    return out;
  }
  const http_answer& answer = std::get<http_answer>(done);
  rapidjson::Document json;
  if (answer.status == 200 || answer.status == 201) {
    if (answer.body.empty()) {
      out.what = outcome::kind::empty;
      return out;
    }
    json.Parse(answer.body.c_str(), answer.body.size());
    if (json.HasParseError() || !json.IsObject()) {
      out.failure = bad_endpoint();
      return out;
    }
    auto found = json.FindMember("node");
    if (found != json.MemberEnd() && found->value.IsObject()) {
      out.response.self = node_of(found->value);
      auto children = found->value.FindMember("nodes");
      if (children != found->value.MemberEnd() && children->value.IsArray())
        for (const auto& child : children->value.GetArray())
          if (child.IsObject()) out.response.nodes.push_back(node_of(child));
    }
    out.response.index = std::strtoull(std::string(answer.header("x-etcd-index")).c_str(), nullptr, 10);
    out.what = outcome::kind::answer;
    return out;
  }
  json.Parse(answer.body.c_str(), answer.body.size());
  if (json.HasParseError() || !json.IsObject()) {
    out.failure = bad_endpoint();
    return out;
  }
  // etcd's client.Error text: "<code>: <message> (<cause>) [<index>]".
  out.etcd_code = static_cast<int>(number_of(json, "errorCode"));
  std::string text = std::to_string(out.etcd_code) + ": " + string_of(json, "message") + " (" +
                     string_of(json, "cause") + ") [" + std::to_string(number_of(json, "index")) + "]";
  out.failure = status(out.etcd_code == 100 ? errc::not_found : errc::invalid_argument, text);
  return out;
}

// "a/b/c" → "c" (Go's path.Base for the keys here).
std::string_view base_of(std::string_view key) {
  while (key.size() > 1 && key.back() == '/') key.remove_suffix(1);
  std::size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

// Go's url.QueryEscape.
std::string query_escape(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// Go's strconv.Atoi.
std::optional<long long> atoi_strict(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text.empty() || text.size() > 18) return std::nullopt;
  long long v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return negative ? -v : v;
}

// Go's types.NewURLs for one URL: http/https/unix/unixs, host:port, no path.
bool valid_member_url(std::string_view url) {
  std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return false;
  std::string_view scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs") return false;
  std::string_view rest = url.substr(scheme_end + 3);
  std::size_t path = rest.find_first_of("/?#");
  if (path != std::string_view::npos && rest.substr(path) != "/" && !rest.substr(path).empty()) return false;
  std::string_view host = rest.substr(0, path);
  std::size_t colon = host.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == host.size()) return false;
  if (host.find(']') != std::string_view::npos && host.rfind(']') > colon) return false;
  return true;
}

// ---- the protocol -------------------------------------------------------------------------

struct cluster_state {
  std::vector<node> nodes;
  long long size = 0;
  std::uint64_t index = 0;
};

class discoverer {
 public:
  discoverer(const discovery_request& request, endpoint ep, std::string cluster)
      : _request(request), _ep(std::move(ep)), _cluster(std::move(cluster)) {}

  result<std::string> join() {
    std::string config = member_config(_request.name, _request.peer_urls);
    cluster_state first;
    if (status s = check_cluster(first); !s) return s;
    if (status s = create_self(config); !s) return s;
    cluster_state now;
    if (status s = check_cluster(now); !s) return s;
    std::vector<node> all;
    if (status s = wait_nodes(now, all); !s) return s;
    return nodes_to_cluster(all, now.size);
  }

  // etcd's getCluster (a proxy's view): the token's members once `size` have
  // registered, without registering; a full cluster is an answer here, not an error.
  result<std::string> cluster() {
    cluster_state state;
    status checked = check_cluster(state);
    if (!checked && checked.code() == errc::already_exists) return nodes_to_cluster(state.nodes, state.size);
    if (!checked) return checked;
    std::vector<node> all;
    if (status s = wait_nodes(state, all); !s) return s;
    return nodes_to_cluster(all, state.size);
  }

 private:
  std::string self_key() const { return _cluster + "/" + _request.member_id; }

  // etcd's logAndBackoffForRetry; false when retries_max is reached.
  bool back_off() {
    if (_retries >= _request.retry.retries_max) return false;
    ++_retries;
    std::this_thread::sleep_for(backoff_for(_request.retry, _retries));
    return true;
  }

  status check_cluster(cluster_state& out) {
    for (;;) {
      outcome size = keys_request(_ep, "GET", _cluster + "/_config/size?quorum=false&recursive=false&sorted=false", {},
                                  _request.request_timeout);
      if (size.what == outcome::kind::unreachable || size.what == outcome::kind::empty) {
        if (size.what == outcome::kind::empty) return bad_endpoint();
        if (!back_off()) return too_many_retries();
        continue;
      }
      if (size.what == outcome::kind::failed) return size.etcd_code == 100 ? size_not_found() : size.failure;
      auto parsed = atoi_strict(size.response.self.value);
      if (!parsed) return bad_size_key();
      outcome list = keys_request(_ep, "GET", _cluster + "?quorum=false&recursive=false&sorted=false", {},
                                  _request.request_timeout);
      if (list.what == outcome::kind::unreachable) {
        if (!back_off()) return too_many_retries();
        continue;
      }
      if (list.what == outcome::kind::empty) return bad_endpoint();
      if (list.what == outcome::kind::failed) return list.failure;
      out.size = *parsed;
      out.index = list.response.index;
      out.nodes.clear();
      for (node& n : list.response.nodes)
        if (base_of(n.key) != "_config") out.nodes.push_back(std::move(n));
      std::stable_sort(out.nodes.begin(), out.nodes.end(),
                       [](const node& a, const node& b) { return a.created_index < b.created_index; });
      // Self among the first `size`, or the cluster is full (etcd's loop, exactly).
      for (std::size_t i = 0; i < out.nodes.size(); ++i) {
        if (base_of(out.nodes[i].key) == _request.member_id) break;
        if (static_cast<long long>(i) >= out.size - 1) {
          out.nodes.resize(static_cast<std::size_t>(std::max<long long>(out.size, 0)));
          return full_cluster();
        }
      }
      return status::ok();
    }
  }

  status create_self(const std::string& config) {
    outcome created = keys_request(_ep, "PUT", self_key() + "?prevExist=false", "value=" + query_escape(config),
                                   _request.request_timeout);
    if (created.what == outcome::kind::unreachable) return created.failure;
    if (created.what == outcome::kind::empty) return bad_endpoint();
    if (created.what == outcome::kind::failed) return created.etcd_code == 105 ? duplicate_id() : created.failure;
    // Ensure self appears on the server we connected to: wait on our own key from its
    // createdIndex (answered at once from history).
    std::uint64_t wait_index = created.response.self.created_index;
    for (;;) {
      outcome seen = keys_request(_ep, "GET", self_key() + "?recursive=false&wait=true&waitIndex=" + std::to_string(wait_index),
                                  {}, _request.wait_timeout);
      if (seen.what == outcome::kind::empty) continue;
      if (seen.what == outcome::kind::answer) return status::ok();
      return seen.failure;
    }
  }

  status wait_nodes(cluster_state state, std::vector<node>& all) {
    for (;;) {
      if (static_cast<long long>(state.nodes.size()) > state.size)
        state.nodes.resize(static_cast<std::size_t>(std::max<long long>(state.size, 0)));
      all = state.nodes;
      std::uint64_t wait_index = state.index + 1;
      bool retry = false;
      while (static_cast<long long>(all.size()) < state.size) {
        outcome event = keys_request(_ep, "GET", _cluster + "?recursive=true&wait=true&waitIndex=" + std::to_string(wait_index),
                                     {}, _request.wait_timeout);
        if (event.what == outcome::kind::empty) continue;
        if (event.what == outcome::kind::unreachable) {
          retry = true;
          break;
        }
        if (event.what == outcome::kind::failed) return event.failure;
        wait_index = event.response.self.modified_index + 1;
        all.push_back(std::move(event.response.self));
      }
      if (!retry) return status::ok();
      // etcd's waitNodesRetry: back off, check the cluster again, wait again.
      if (!back_off()) return too_many_retries();
      if (status s = check_cluster(state); !s) return s;
    }
  }

  static result<std::string> nodes_to_cluster(const std::vector<node>& nodes, long long size) {
    std::string joined;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (i != 0) joined += ',';
      joined += nodes[i].value;
    }
    // types.NewURLsMap: "name=url" pairs separated by ','; names counted once.
    std::vector<std::string> names;
    std::string_view rest = joined;
    while (!rest.empty()) {
      std::size_t comma = rest.find(',');
      std::string_view pair = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (pair.empty()) continue;
      std::size_t equals = pair.find('=');
      std::string_view name = equals == std::string_view::npos ? pair : pair.substr(0, equals);
      std::string_view url = equals == std::string_view::npos ? std::string_view{} : pair.substr(equals + 1);
      if (!valid_member_url(url)) return invalid_url();
      if (std::find(names.begin(), names.end(), name) == names.end()) names.emplace_back(name);
    }
    if (static_cast<long long>(names.size()) != size) return duplicate_name();
    return joined;
  }

  const discovery_request& _request;
  endpoint _ep;
  std::string _cluster;  // the URL's path, cleaned (path.Join("/", path))
  std::uint32_t _retries = 0;
};

// etcd's newProxyFunc: "" is no proxy; "host:port" means http://host:port; only http
// proxies. Fills ep's proxy fields.
status set_proxy(endpoint& ep, std::string_view proxy) {
  if (proxy.empty()) return status::ok();
  std::string url(proxy);
  if (url.find("://") == std::string::npos) url = "http://" + url;
  std::string invalid = "discovery: invalid proxy address \"" + std::string(proxy) + "\"";
  if (!url.starts_with("http://")) return status(errc::unsupported, invalid + ": only http:// proxies are supported");
  std::string_view authority = std::string_view(url).substr(7);
  authority = authority.substr(0, authority.find('/'));
  std::size_t colon = authority.rfind(':');
  std::string host(authority.substr(0, colon));
  std::string port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  if (host.starts_with("[") && host.ends_with("]")) host = host.substr(1, host.size() - 2);
  if (host.empty() || port.empty() || !std::all_of(port.begin(), port.end(), ::isdigit))
    return status(errc::invalid_argument, invalid + ": bad host or port");
  ep.proxy_host = host;
  ep.proxy_port = port;
  return status::ok();
}

// Go's path.Join("/", p) for the token path: one leading '/', no empty or trailing segments.
std::string clean_path(std::string_view path) {
  std::string out;
  while (!path.empty()) {
    std::size_t slash = path.find('/');
    std::string_view segment = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      std::size_t last = out.rfind('/');
      out.resize(last == std::string::npos ? 0 : last);
      continue;
    }
    out += "/";
    out += segment;
  }
  return out.empty() ? "/" : out;
}

// http://host[:port]/path → endpoint and path.
result<std::pair<endpoint, std::string>> parse_url(std::string_view url) {
  if (url.starts_with("https://"))
    return status(errc::unsupported, "discovery: https discovery URLs are not supported by keel's discovery client (" +
                                         std::string(url) + "); use an http:// URL");
  if (!url.starts_with("http://")) return status(errc::invalid_argument, "discovery: invalid discovery URL \"" + std::string(url) + "\" (expected http://host[:port]/<token>)");
  std::string_view rest = url.substr(7);
  std::size_t path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  path = path.substr(0, path.find_first_of("?#"));
  if (authority.empty() || authority.find('@') != std::string_view::npos)
    return status(errc::invalid_argument, "discovery: invalid discovery URL \"" + std::string(url) + "\": no host");
  auto split = split_authority(authority);
  if (!split) return status(errc::invalid_argument, "discovery: invalid discovery URL \"" + std::string(url) + "\"");
  endpoint ep;
  ep.authority = std::string(authority);
  ep.host = std::move(split->host);
  ep.port = split->port.value_or("80");
  if (ep.host.empty() || ep.port.empty() || !std::all_of(ep.port.begin(), ep.port.end(), ::isdigit))
    return status(errc::invalid_argument, "discovery: invalid discovery URL \"" + std::string(url) + "\": bad host or port");
  std::string cluster = clean_path(path);
  if (cluster == "/") return status(errc::invalid_argument, "discovery: invalid discovery URL \"" + std::string(url) + "\": no token in the path");
  return std::pair{std::move(ep), std::move(cluster)};
}

}  // namespace

std::string member_config(std::string_view name, std::span<const std::string> peer_urls) {
  std::vector<std::string> pairs;
  for (const std::string& url : peer_urls) pairs.push_back(std::string(name) + "=" + url);
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const std::string& p : pairs) {
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

milliseconds backoff_for(const retry_policy& policy, std::uint32_t retries) noexcept {
  unsigned exponent = std::min<std::uint32_t>(retries, std::min(policy.exponent_max, 30u));
  return policy.base * (std::int64_t{1} << exponent);
}

result<std::string> discover_initial_cluster(const discovery_request& request) {
  KEEL_ASSERT(!request.name.empty() && !request.peer_urls.empty() && !request.member_id.empty());
  auto parsed = parse_url(request.url);
  if (!parsed) return parsed.error();
  if (status s = set_proxy(parsed.value().first, request.proxy); !s) return s;
  discoverer d(request, std::move(parsed.value().first), std::move(parsed.value().second));
  return d.join();
}

std::optional<members_body> parse_members(std::string_view body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsArray()) return std::nullopt;
  members_body out;
  out.entries = doc.Size();
  for (const auto& m : doc.GetArray()) {
    if (!m.IsObject()) {
      out.all_have_ids = false;
      continue;
    }
    remote_member member;
    if (m.HasMember("id") && m["id"].IsUint64()) member.id = m["id"].GetUint64();
    else out.all_have_ids = false;
    member.name = string_of(m, "name");
    for (const char* field : {"peerURLs", "clientURLs"}) {
      if (!m.HasMember(field) || !m[field].IsArray()) continue;
      for (const auto& u : m[field].GetArray())
        if (u.IsString()) (field[0] == 'p' ? member.peer_urls : member.client_urls).emplace_back(u.GetString());
    }
    member.learner = m.HasMember("isLearner") && m["isLearner"].IsBool() && m["isLearner"].GetBool();
    out.members.push_back(std::move(member));
  }
  return out;
}

result<remote_cluster> get_cluster_from_peers(std::span<const std::string> peer_urls, milliseconds timeout) {
  std::string last = "no peer URL given";
  for (const std::string& url : peer_urls) {
    auto parsed = parse_url(url + "/members");
    if (!parsed) {
      last = url + ": " + parsed.error().message();
      continue;
    }
    auto answered = http_do(parsed.value().first, "GET", "/members", {}, timeout);
    if (auto* failed = std::get_if<transport_error>(&answered)) {
      last = "GET " + url + "/members: " + failed->detail;
      continue;
    }
    const http_answer& answer = std::get<http_answer>(answered);
    if (answer.status != 200) {
      last = "GET " + url + "/members: HTTP " + std::to_string(answer.status);
      continue;
    }
    auto listed = parse_members(answer.body);
    if (!listed)
      return status(errc::invalid_argument, "GET " + url + "/members: not a JSON array of members: " + answer.body.substr(0, 200));
    remote_cluster out;
    std::string id_text(answer.header("x-etcd-cluster-id"));
    char* end = nullptr;
    out.cluster_id = std::strtoull(id_text.c_str(), &end, 16);
    if (id_text.empty() || *end != '\0' || out.cluster_id == 0) {
      last = "GET " + url + "/members: no X-Etcd-Cluster-ID header";
      continue;
    }
    // A joining member needs every member's id: an answer with an entry that is not a
    // member with a numeric id is refused (the proxy's reading, which needs only URLs, is not).
    if (!listed->all_have_ids)
      return status(errc::invalid_argument, "GET " + url + "/members: a member without a numeric id: " + answer.body.substr(0, 200));
    out.members = std::move(listed->members);
    if (out.members.empty()) return status(errc::unavailable, "failed to get raft cluster member(s) from the given URLs");
    return out;
  }
  return status(errc::unavailable, "could not retrieve cluster information from the given URLs (" + last + ")");
}

result<std::string> discover_cluster(const discovery_request& request) {
  discovery_request as_proxy = request;
  as_proxy.member_id = "0";  // etcd's GetCluster: id 0, never among the registered
  auto parsed = parse_url(request.url);
  if (!parsed) return parsed.error();
  if (status s = set_proxy(parsed.value().first, request.proxy); !s) return s;
  discoverer d(as_proxy, std::move(parsed.value().first), std::move(parsed.value().second));
  return d.cluster();
}

}  // namespace keel::discovery
