// keel/discovery/srv.h — etcd 3.4's DNS bootstrap (--discovery-srv, embed.Config
// GetDNSClusterNames and pkg/srv GetCluster): the members of a new cluster from the SRV
// records of a domain, for keeld's main thread before the reactor starts.
//
// For --discovery-srv example.com (and --discovery-srv-name foo):
//   _etcd-server-ssl[-foo]._tcp.example.com  members that speak TLS to peers: keel does
//                                            not, so any record here is an error;
//   _etcd-server[-foo]._tcp.example.com      members over plain http.
// Each record (target, port) becomes http://<target>:<port> (the target without its
// trailing dot). The one whose address (target and port resolved) is one of this member's
// --initial-advertise-peer-urls (resolved) is named --name; the others are named "0",
// "1", ... in the order the records are taken (priority, then weight, then target), as
// etcd names them until they publish their names. Member ids are computed from these
// URLs and --initial-cluster-token, as with --initial-cluster.
//
// The lookups use the system resolver (res_nquery, /etc/resolv.conf) and getaddrinfo;
// blocking, no shared state.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel::discovery {

// One SRV record.
struct srv_record {
  unsigned priority = 0;
  unsigned weight = 0;
  unsigned port = 0;
  std::string target;  // without the trailing dot
};

// The SRV records of `name` (e.g. "_etcd-server._tcp.example.com"), sorted by priority,
// weight (heavier first) and target. errc::not_found when the name has none (NXDOMAIN
// or no SRV answer), errc::unavailable for a resolver failure (with its text).
result<std::vector<srv_record>> lookup_srv(const std::string& name);

// The --initial-cluster string for --discovery-srv `domain`. Errors (etcd's texts):
//   errc::not_found          "srv: too many errors querying DNS SRV records (...)" when
//                            neither name has records;
//   errc::unsupported        records under _etcd-server-ssl (TLS peers);
//   errc::invalid_argument   "cannot find local etcd member "<name>" in SRV records" when
//                            no record resolves to an advertised peer URL of this member
//                            (unless `self_optional`, for a proxy), or an advertised URL
//                            that does not resolve.
result<std::string> srv_initial_cluster(std::string_view domain, std::string_view service_name, std::string_view name,
                                        std::span<const std::string> advertise_peer_urls, bool self_optional = false);

}  // namespace keel::discovery
