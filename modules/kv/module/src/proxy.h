// proxy.h — keeld as etcd 3.4's v2 proxy (etcdmain startProxy, proxy/httpproxy): a
// member-less keeld that serves its client port by forwarding every request to a member
// of a cluster. It runs when --proxy is on or readonly, when --discovery finds the
// token's cluster full and --discovery-fallback is proxy, and whenever the data dir holds
// proxy/cluster. See ../PROXY.md for the behaviour and the choices.
//
// Threads: start() on the main thread; the endpoint table is shared by every shard
// (a mutex: it is read once per request and written every refresh); the refresher runs
// on shard 0; upstream connections are pooled per shard.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "keel/status.h"

namespace keel {
class module_context;
}

namespace keel::kv_module::proxy {

struct options {
  // Where the members' client URLs are read from (GET <peer URL>/members, etcd's
  // GetClusterFromRemotePeers). Updated from the answers and kept in cluster_file.
  std::vector<std::string> peer_urls;
  std::string cluster_file;  // <data dir>/proxy/cluster: {"PeerURLs":[...]}, etcd's file
  bool readonly = false;     // --proxy readonly: anything but GET is 501
  std::chrono::milliseconds failure_wait{5000};       // --proxy-failure-wait
  std::chrono::milliseconds refresh_interval{30000};  // --proxy-refresh-interval
  // --proxy-dial-timeout: a connect to a member given up after this (0: after the
  // kernel's two SYN retries, ~7 s), so a request fails over to the next member.
  std::chrono::milliseconds dial_timeout{1000};
  // --proxy-read-timeout: a member that sends no byte of its answer for this long is given
  // up (its connection shut; the request goes to the next member if nothing was relayed
  // yet). 0: never, the default, as long polls and watches stay silent for minutes.
  std::chrono::milliseconds read_timeout{0};
};

// The peer URLs kept in `path`; nullopt when the file does not exist. An unreadable or
// malformed file is an error naming the file.
result<std::optional<std::vector<std::string>>> read_cluster_file(const std::string& path);
// Writes `path` atomically (temporary file, fsync, rename, directory fsync), creating its
// directory.
status write_cluster_file(const std::string& path, const std::vector<std::string>& peer_urls);

// Registers the proxy's routes (every path, for every method, and GET
// /v2/config/local/proxy) and its shard hooks. The cluster file is written after each
// successful read of the members, not here. REQUIRES: main thread, before the shards
// start; the kv store is not started in this process.
status start(module_context* context, options o);
// Module stop. Nothing to do: each shard's stop hook ends its refresher and releases its
// pooled connections.
void stop();

}  // namespace keel::kv_module::proxy
