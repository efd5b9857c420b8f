// cmd/keelctl/cluster_commands.h — etcdctl 3.4's cluster verbs over the v3 JSON gateway.
//
//   keelctl [flags] member list
//   keelctl [flags] member add NAME --peer-urls=URL[,URL] [--learner]
//   keelctl [flags] member remove HEXID
//   keelctl [flags] member promote HEXID
//   keelctl [flags] endpoint status [--cluster]
//   keelctl [flags] move-leader HEXID
//
// Each is one or a few POSTs to the gateway that keeld and etcd 3.4 both serve
// (/v3/cluster/member/{list,add,remove,promote}, /v3/maintenance/status,
// /v3/maintenance/transfer-leadership), so they work against either. Output follows
// etcdctl 3.4's printers (simple, table and json: the gateway's JSON with the 64-bit
// numbers as JSON numbers, fields in etcd's order, zero values left out, as etcdctl's
// encoding/json of the protobuf structs prints them). Errors print "Error: ..." on stderr
// and exit 1 (etcdctl: 128 for bad arguments).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "http_client.h"

namespace keel::ctl {

struct cluster_invocation {
  std::vector<std::string> endpoints;  // as the user wrote them; never empty
  http_request_limits limits;
  std::string format = "simple";       // simple, json or table
  std::vector<std::string> words;      // {"member", "add", "NAME"}, {"move-leader", "ID"}, ...
  bool cluster = false;                // endpoint status --cluster
  std::optional<std::string> peer_urls;  // member add --peer-urls
  bool learner = false;                // member add --learner
};

// True when `words` name one of the verbs above ("member ...", "endpoint status",
// "move-leader").
bool is_cluster_command(const std::vector<std::string>& words);

// Runs it and returns the exit code.
int run_cluster_command(const cluster_invocation& invocation);

// Parses a member id as etcdctl does (strconv.ParseUint(s, 16, 64)); on failure `error`
// holds Go's message, e.g. `strconv.ParseUint: parsing "zz": invalid syntax`.
std::optional<std::uint64_t> parse_hex_id(const std::string& text, std::string& error);

// go-humanize's Bytes (SI units, as etcdctl prints db size): 20480 -> "20 kB".
std::string humanize_bytes(std::uint64_t bytes);

}  // namespace keel::ctl
