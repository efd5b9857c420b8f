// srv_endpoints.h — etcdctl's --discovery-srv for keelctl: the client endpoints of a
// cluster from DNS SRV records (etcd's srv.GetClient).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel::ctl {

// http://<target>:<port> for each record of _etcd-client[-<service_name>]._tcp.<domain>.
// Records under _etcd-client-ssl are https, which keelctl does not speak: they are
// skipped when http ones exist, else an errc::unsupported error. Errors name the lookups
// ("srv: no _etcd-client records for <domain>: ...").
result<std::vector<std::string>> endpoints_from_srv(std::string_view domain, std::string_view service_name);

}  // namespace keel::ctl
