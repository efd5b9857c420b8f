// srv.cc — etcd's DNS SRV bootstrap (keel/discovery/srv.h).
#include "keel/discovery/srv.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "authority.h"

namespace keel::discovery {

namespace {

// "host:port" → every "ip:port" it resolves to (TCP), or an error.
result<std::set<std::string>> resolve_addresses(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) return status{errc::invalid_argument, "cannot resolve " + host + ":" + port + ": " + gai_strerror(rc)};
  std::set<std::string> out;
  for (addrinfo* a = found; a; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    unsigned short p = 0;
    if (a->ai_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(a->ai_addr);
      ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      p = ntohs(in->sin_port);
      out.insert(std::string(text) + ":" + std::to_string(p));
    } else if (a->ai_family == AF_INET6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(a->ai_addr);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      p = ntohs(in6->sin6_port);
      out.insert("[" + std::string(text) + "]:" + std::to_string(p));
    }
  }
  ::freeaddrinfo(found);
  return out;
}

// http://host:port → host (brackets removed) and port; false if it is not one, or names
// no port (an advertised peer URL must say which port it is reached on).
bool split_url(std::string_view url, std::string& host, std::string& port) {
  std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view authority = url.substr(scheme + 3);
  auto split = split_authority(authority.substr(0, authority.find('/')));
  if (!split || !split->port) return false;
  host = std::move(split->host);
  port = std::move(*split->port);
  return !host.empty() && !port.empty();
}

std::string join_host_port(const std::string& host, unsigned port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

result<std::vector<srv_record>> lookup_srv(const std::string& name) {
  struct __res_state state;
  std::memset(&state, 0, sizeof state);
  if (::res_ninit(&state) != 0) return status{errc::unavailable, "lookup " + name + ": the resolver did not initialize"};
  std::vector<unsigned char> answer(65536);
  int size = ::res_nquery(&state, name.c_str(), ns_c_in, ns_t_srv, answer.data(), static_cast<int>(answer.size()));
  int herr = state.res_h_errno;
  if (size < 0) {
    ::res_nclose(&state);
    if (herr == HOST_NOT_FOUND || herr == NO_DATA) return status{errc::not_found, "lookup " + name + ": no such host"};
    return status{errc::unavailable, "lookup " + name + ": " + ::hstrerror(herr)};
  }
  ns_msg message;
  if (::ns_initparse(answer.data(), size, &message) != 0) {
    ::res_nclose(&state);
    return status{errc::unavailable, "lookup " + name + ": a malformed DNS answer"};
  }
  std::vector<srv_record> out;
  int count = ns_msg_count(message, ns_s_an);
  for (int i = 0; i < count; ++i) {
    ns_rr rr;
    if (::ns_parserr(&message, ns_s_an, i, &rr) != 0 || ns_rr_type(rr) != ns_t_srv || ns_rr_rdlen(rr) < 7) continue;
    const unsigned char* data = ns_rr_rdata(rr);
    srv_record r;
    r.priority = ns_get16(data);
    r.weight = ns_get16(data + 2);
    r.port = ns_get16(data + 4);
    char target[NS_MAXDNAME] = {};
    if (::dn_expand(ns_msg_base(message), ns_msg_end(message), data + 6, target, sizeof target) < 0) continue;
    r.target = target;
    while (!r.target.empty() && r.target.back() == '.') r.target.pop_back();
    out.push_back(std::move(r));
  }
  ::res_nclose(&state);
  if (out.empty()) return status{errc::not_found, "lookup " + name + ": no SRV records"};
  std::sort(out.begin(), out.end(), [](const srv_record& a, const srv_record& b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.weight != b.weight) return a.weight > b.weight;
    if (a.target != b.target) return a.target < b.target;
    return a.port < b.port;
  });
  return out;
}

result<std::string> srv_initial_cluster(std::string_view domain, std::string_view service_name, std::string_view name,
                                        std::span<const std::string> advertise_peer_urls, bool self_optional) {
  std::string suffix = service_name.empty() ? "" : "-" + std::string(service_name);
  std::string tls_name = "_etcd-server-ssl" + suffix + "._tcp." + std::string(domain);
  std::string plain_name = "_etcd-server" + suffix + "._tcp." + std::string(domain);
  // This member's advertised peer addresses, resolved (etcd's tcp2ap).
  std::set<std::string> own;
  for (const std::string& url : advertise_peer_urls) {
    std::string host, port;
    if (!split_url(url, host, port)) return status{errc::invalid_argument, "--initial-advertise-peer-urls: bad URL " + url};
    auto resolved = resolve_addresses(host, port);
    if (!resolved) return status{resolved.error().code(), "--initial-advertise-peer-urls: " + resolved.error().message()};
    own.insert(resolved.value().begin(), resolved.value().end());
  }
  auto tls = lookup_srv(tls_name);
  if (tls)
    return status{errc::unsupported, "--discovery-srv " + std::string(domain) + ": " + tls_name + " lists " +
                                         std::to_string(tls.value().size()) +
                                         " member(s) that speak TLS to peers; keel's peer port is plain http"};
  auto plain = lookup_srv(plain_name);
  if (!plain)
    return status{errc::not_found, "srv: too many errors querying DNS SRV records (\"error querying DNS SRV records for " +
                                       tls_name + " " + tls.error().message() + "\", \"error querying DNS SRV records for " +
                                       plain_name + " " + plain.error().message() + "\")"};
  std::string joined;
  std::string last_error;
  unsigned temporary_name = 0;
  bool found_self = false;
  for (const srv_record& r : plain.value()) {
    auto resolved = resolve_addresses(r.target, std::to_string(r.port));
    if (!resolved) {
      last_error = resolved.error().message();
      continue;  // etcd skips a target that does not resolve
    }
    bool self = std::any_of(resolved.value().begin(), resolved.value().end(),
                            [&](const std::string& a) { return own.contains(a); });
    std::string member_name = self ? std::string(name) : std::to_string(temporary_name++);
    found_self = found_self || self;
    if (!joined.empty()) joined += ',';
    joined += member_name + "=http://" + join_host_port(r.target, r.port);
  }
  if (joined.empty()) return status{errc::not_found, "srv: no SRV target of " + plain_name + " resolves: " + last_error};
  if (!found_self && !self_optional)
    return status{errc::invalid_argument, "cannot find local etcd member \"" + std::string(name) + "\" in SRV records (" +
                                              plain_name + " gives " + joined + ")"};
  return joined;
}

}  // namespace keel::discovery
