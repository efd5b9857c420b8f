// keel/discovery/client.h — the bootstrap side of etcd 3.4's discovery protocol
// (etcdserver/api/v2discovery), for keeld's main thread before the reactor starts.
//
// discover_initial_cluster() registers this member under a discovery URL and waits until
// the token's size of members have registered, then returns etcd's --initial-cluster
// string for them. It works against keel's own discovery module
// (http://host:2379/discovery/<token>), discovery.etcd.io-style services over http, and a
// self-hosted etcd with v2 enabled (http://host:2379/v2/keys/_etcd/registry/<token>). The
// steps are etcd's joinCluster, one for one:
//   1. checkCluster: GET <token>/_config/size (an integer), GET <token>; the members sorted
//      by createdIndex; this member not among the first `size` → the cluster is full.
//   2. createSelf: PUT <token>/<member id>?prevExist=false, value = member_config(); then
//      wait on its own key (waitIndex = its createdIndex) to see it registered.
//   3. checkCluster again, then waitNodes: a recursive wait on <token> from X-Etcd-Index+1,
//      one new member per event, until `size` members.
//   4. the members' values joined with ',' (each "name=url[,name=url2]") — every name
//      once, exactly `size` names.
//
// Blocking, plain POSIX sockets, one connection per HTTP request (Connection: close). No
// threads, no global state: several calls may run at once in different threads.
//
// Retries (etcd's logAndBackoffForRetry): a failure to reach the service (connect or read
// error, or an HTTP 5xx) while checking the cluster or waiting for members is retried after
// base * 2^min(retries, exponent_max), retries counted from 1 over the whole call and never
// reset, at most retries_max times. Other failures are not retried; in particular a failed
// createSelf is final even if it was a connection error (as etcd).
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel::discovery {

struct retry_policy {
  // etcd: 1 s, 8 (waits 2 s, 4 s, ... 256 s, then 256 s), unlimited (MaxUint32).
  std::chrono::milliseconds base{1000};
  unsigned exponent_max = 8;
  std::uint32_t retries_max = std::numeric_limits<std::uint32_t>::max();
};

struct discovery_request {
  // http://host[:port]/path — the path is the token (keel: /discovery/<token>). https is
  // refused (errc::unsupported): this client speaks plain HTTP only.
  std::string url;
  std::string name;                    // this member's name (--name)
  std::vector<std::string> peer_urls;  // its advertised peer URLs
  std::string member_id;               // its member id in lowercase hex (the key it registers)
  // --discovery-proxy: an HTTP proxy ("http://host:port" or "host:port") every request
  // goes through, in absolute form; "" for none. https proxies are errc::unsupported.
  std::string proxy;
  retry_policy retry;
  // Each non-waiting request (etcd's client.DefaultRequestTimeout: 5 s).
  std::chrono::milliseconds request_timeout{5000};
  // A waiting request is abandoned (and counted as a failure to reach the service, so
  // retried) after this long without an answer. Services answer an idle wait within a
  // minute (discovery.etcd.io and keel), so this only guards against a dead peer.
  std::chrono::milliseconds wait_timeout{std::chrono::minutes(5)};
};

// Returns the --initial-cluster string ("n1=http://a:2380,n2=http://b:2380,...", in the
// order the members registered). Errors (messages as etcd's, prefixed "discovery: "):
//   errc::unsupported       an https URL;
//   errc::invalid_argument  a URL that does not parse; "size key is bad" (not an integer);
//                           "bad discovery endpoint" (an answer that is not etcd's JSON);
//                           "found duplicate id" (this member id is registered already);
//                           "found duplicate name"; "invalid URL" (in a member's value);
//   errc::not_found         "size key not found" (no <token>/_config/size);
//   errc::already_exists    "cluster is full": `size` other members registered first (the
//                           caller applies --discovery-fallback);
//   errc::unavailable       "too many retries" (retries_max reached), or createSelf could
//                           not reach the service;
//   another etcd v2 error   errc::not_found for code 100, errc::invalid_argument otherwise,
//                           with etcd's client text "<code>: <message> (<cause>) [<index>]".
// REQUIRES: request.name non-empty, request.peer_urls non-empty, request.member_id non-empty.
result<std::string> discover_initial_cluster(const discovery_request& request);

// etcd's GetCluster, for a proxy: the --initial-cluster string of the token's first
// `size` members, waiting for them to register if fewer have; registers nothing. Only
// request.url, retry, request_timeout and wait_timeout are used. Errors as above, except
// that a full cluster is the answer.
result<std::string> discover_cluster(const discovery_request& request);

// A cluster as its members' peer ports describe it (etcd's GET /members).
struct remote_member {
  std::uint64_t id = 0;
  std::string name;  // empty until the member published it
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool learner = false;
};
struct remote_cluster {
  std::uint64_t cluster_id = 0;  // the X-Etcd-Cluster-ID header
  std::vector<remote_member> members;
};

// The body of a GET /members answer, a JSON array of etcd's member objects, read
// leniently: every object in it is a member (id 0 where it has no numeric "id"), anything
// else in the array is skipped. get_cluster_from_peers and the kv module's v2 proxy (which
// reads /members on the reactor, so cannot call the blocking get_cluster_from_peers)
// both read the body with it and apply their own rules.
struct members_body {
  std::vector<remote_member> members;  // in the array's order
  std::size_t entries = 0;             // the array's length, members or not
  bool all_have_ids = true;            // every entry is an object with a numeric "id"
};
// Nullopt when `body` is not a JSON array.
std::optional<members_body> parse_members(std::string_view body);

// etcd's GetClusterFromRemotePeers: GET <url>/members on each peer URL in turn, the first
// that answers 200 with a non-empty member array and a cluster id wins. Errors:
// errc::unavailable "could not retrieve cluster information from the given URLs" (with
// the last failure), errc::invalid_argument for an answer that is not etcd's JSON.
result<remote_cluster> get_cluster_from_peers(std::span<const std::string> peer_urls, std::chrono::milliseconds timeout);

// etcd's URLsMap.String() for one member: the "name=url" pairs, sorted, joined with ','.
std::string member_config(std::string_view name, std::span<const std::string> peer_urls);

// The wait before retry number `retries` (1, 2, ...): base * 2^min(retries, exponent_max).
std::chrono::milliseconds backoff_for(const retry_policy& policy, std::uint32_t retries) noexcept;

}  // namespace keel::discovery
