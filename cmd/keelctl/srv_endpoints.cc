// srv_endpoints.cc — etcdctl's --discovery-srv (srv_endpoints.h).
#include "srv_endpoints.h"

#include "keel/discovery/srv.h"

namespace keel::ctl {

result<std::vector<std::string>> endpoints_from_srv(std::string_view domain, std::string_view service_name) {
  std::string suffix = service_name.empty() ? "" : "-" + std::string(service_name);
  std::string plain = "_etcd-client" + suffix + "._tcp." + std::string(domain);
  std::string tls = "_etcd-client-ssl" + suffix + "._tcp." + std::string(domain);
  auto found = discovery::lookup_srv(plain);
  if (!found) {
    if (discovery::lookup_srv(tls))
      return status{errc::unsupported, "--discovery-srv " + std::string(domain) + ": only " + tls +
                                           " has records, and keelctl does not speak TLS"};
    return status{found.error().code(), "srv: no _etcd-client records for " + std::string(domain) + ": " +
                                            found.error().message()};
  }
  std::vector<std::string> endpoints;
  for (const discovery::srv_record& r : found.value()) {
    std::string host = r.target.find(':') != std::string::npos ? "[" + r.target + "]" : r.target;
    endpoints.push_back("http://" + host + ":" + std::to_string(r.port));
  }
  return endpoints;
}

}  // namespace keel::ctl
