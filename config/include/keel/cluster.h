// keel/cluster.h — static cluster membership as etcd 3.4 defines it: the
// --initial-cluster text and the member and cluster ids derived from it.
//
// A keeld member started with the same --initial-cluster, --initial-advertise-peer-urls
// and --initial-cluster-token as an etcd member gets the same member id and cluster id,
// so tools and scripts that print or compare ids see the same numbers. The algorithms are
// etcd 3.4's (etcdserver/api/membership/member.go NewMember, membership/cluster.go genID,
// pkg/types/urlsmap.go); tests/config/cluster_test.cc pins them to ids a real etcd 3.4
// printed.
//
// Pure functions: no I/O, no clock, no shared state; callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keel/status.h"

namespace keel {

// One member named in --initial-cluster.
struct cluster_member_spec {
  std::string name;                    // non-empty
  std::vector<std::string> peer_urls;  // non-empty, as written, in order of appearance

  bool operator==(const cluster_member_spec&) const = default;
};

// Parses etcd's --initial-cluster form: comma-separated name=peerURL pairs, a name
// appearing once per URL ("a=http://10.0.0.1:2380,a=http://10.0.1.1:2380,b=...").
//
// Returns the members in order of the first appearance of each name, each with its URLs
// in order of appearance. Empty items (",,", a trailing ",") are skipped, as etcd does,
// so "" gives no members — whether that is acceptable is the caller's decision (etcd
// allows it when bootstrapping through discovery).
//
// Each URL must be http://host:port or https://host:port with a port in 0..65535 and
// nothing after it (etcd refuses a path, even "/"); an IPv6 host is written in brackets.
// Errors, all errc::invalid_argument, name the offending pair:
//   initial-cluster: "=http://a:2380": empty member name
//   initial-cluster: "a": missing '=' (want name=peerURL)
//   initial-cluster: "a=ftp://a:2380": URL "ftp://a:2380" is not http(s)://host:port
//   initial-cluster: "b=http://a:2380": duplicate URL "http://a:2380"
result<std::vector<cluster_member_spec>> parse_initial_cluster(std::string_view text);

// A member's id as etcd 3.4 computes it when bootstrapping (NewMember without a time):
// the peer URL strings sorted, concatenated with no separator, the cluster token
// appended, SHA-1 of that, the first 8 bytes read big-endian. The URLs must be spelled
// as etcd would print them (parse_initial_cluster's accepted form already is).
// Never fails; an empty list hashes just the token.
std::uint64_t compute_member_id(std::vector<std::string> peer_urls, std::string_view cluster_token);

// The cluster id as etcd 3.4 computes it (RaftCluster.genID): the member ids sorted
// ascending, each written as 8 bytes big-endian, concatenated, SHA-1, the first 8 bytes
// read big-endian. Never fails.
std::uint64_t compute_cluster_id(std::vector<std::uint64_t> member_ids);

// An id as etcd prints it (types.ID.String(), "%x"): lower-case hex without leading
// zeros; 0 is "0".
std::string format_member_id(std::uint64_t id);

}  // namespace keel
