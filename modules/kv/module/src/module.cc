// kv — the key-value module: etcd's v3 JSON gateway, etcd's v2 keys API and the native kv
// frames on one durable MVCC store. See ../README.md; the engine is core.h.
//
// Threads: start() (main thread) recovers the WAL and replays it into the store. From
// then on the engine's state belongs to the owner shard (shard 0); the surfaces parse and
// format on the connection's shard.
#include <rapidjson/document.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>
#include <string>

#include "core.h"
#include "proxy.h"
#include "keel/cluster.h"
#include "keel/discovery/client.h"
#include "keel/discovery/srv.h"
#include "keel/module.h"
#include "keel/reactor/http.h"
#include "keel/reactor/shard.h"

namespace {

namespace kvm = keel::kv_module;

std::string string_of(const rapidjson::Value& doc, const char* key, const char* fallback = "") {
  return doc.HasMember(key) && doc[key].IsString() ? doc[key].GetString() : fallback;
}

std::vector<std::string> strings_of(const rapidjson::Value& doc, const char* key) {
  std::vector<std::string> out;
  if (doc.HasMember(key) && doc[key].IsArray())
    for (const auto& v : doc[key].GetArray())
      if (v.IsString()) out.push_back(v.GetString());
  return out;
}

// etcd's static-cluster flags (core keys) -> the cluster options. The member ids are
// etcd's, computed from the peer URLs and the token.
bool same_urls(std::vector<std::string> a, std::vector<std::string> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

// The peer URLs of every member of --initial-cluster but this one: where to ask the
// cluster for its members.
std::vector<std::string> other_peer_urls(const kvm::cluster_options& out) {
  std::vector<std::string> others;
  for (const kvm::cluster_member& m : out.members)
    if (m.name != out.name) others.insert(others.end(), m.peer_urls.begin(), m.peer_urls.end());
  return others;
}

// A member that published its client URLs has started before: starting it again with an
// empty data dir would bootstrap a second, empty log under its old id and serve empty
// reads (etcd refuses too: "member ... has already been bootstrapped").
keel::status refuse_if_started_before(const keel::discovery::remote_member& m, const std::string& dir) {
  if (m.client_urls.empty()) return keel::status::ok();
  // Not errc::already_exists: that one means a full discovery token (--discovery-fallback).
  return {keel::errc::invalid_argument,
          "member " + keel::format_member_id(m.id) + " has already been bootstrapped: the cluster lists it with client "
          "URLs, but " + dir + " holds no member.json (a wiped or wrong data dir). Restore its data dir, or remove the "
          "member (keelctl member remove " + keel::format_member_id(m.id) + "), add it again and start it with "
          "--initial-cluster-state existing"};
}

// --initial-cluster-state existing, first start: the ids come from the cluster itself,
// as etcd's (GetClusterFromRemotePeers on the other members' peer URLs, then
// ValidateClusterAndAssignIDs): every member of --initial-cluster must be a member of the
// cluster, with the same peer URLs, and none missing. A member added with `member add`
// has an id of the time it was added, which only the cluster knows.
keel::status learn_existing_cluster(kvm::cluster_options& out, const std::string& dir) {
  std::vector<std::string> others = other_peer_urls(out);
  std::sort(others.begin(), others.end());
  if (others.empty())
    return {keel::errc::invalid_argument, "--initial-cluster-state existing: --initial-cluster names no member but " +
                                              out.name + " to ask for the cluster's members"};
  auto existing = keel::discovery::get_cluster_from_peers(others, std::chrono::seconds(5));
  if (!existing) return {existing.error().code(), "cannot fetch cluster info from peer urls: " + existing.error().message()};
  auto describe = [](const keel::discovery::remote_member& m) {
    std::string urls;
    for (const std::string& u : m.peer_urls) urls += (urls.empty() ? "" : " ") + u;
    return keel::format_member_id(m.id) + " [" + urls + "]";
  };
  if (existing.value().members.size() != out.members.size())
    return {keel::errc::invalid_argument,
            "error validating peerURLs: member count is unequal (the cluster has " +
                std::to_string(existing.value().members.size()) + ", --initial-cluster names " +
                std::to_string(out.members.size()) + "; add this member with `keelctl member add` first)"};
  for (const keel::discovery::remote_member& em : existing.value().members) {
    auto local = std::find_if(out.members.begin(), out.members.end(),
                              [&](const kvm::cluster_member& lm) { return same_urls(lm.peer_urls, em.peer_urls); });
    if (local == out.members.end())
      return {keel::errc::invalid_argument,
              "error validating peerURLs: PeerURLs: no match found for existing member " + describe(em)};
    local->id = em.id;
    if (local->name == out.name)
      if (keel::status fresh = refuse_if_started_before(em, dir); !fresh) return fresh;
  }
  out.cluster_id = existing.value().cluster_id;
  return keel::status::ok();
}

// A new member's first start (--initial-cluster-state new): if the other members already
// run and list this one as started, refuse (etcd's isMemberBootstrapped). Peers that do
// not answer within a second are a cluster still forming: the start goes on.
keel::status check_not_bootstrapped(const kvm::cluster_options& out, const std::string& dir) {
  auto self = std::find_if(out.members.begin(), out.members.end(),
                           [&](const kvm::cluster_member& m) { return m.name == out.name; });
  std::vector<std::string> others = other_peer_urls(out);
  if (self == out.members.end() || others.empty()) return keel::status::ok();
  auto existing = keel::discovery::get_cluster_from_peers(others, std::chrono::seconds(1));
  if (!existing) return keel::status::ok();
  for (const keel::discovery::remote_member& m : existing.value().members)
    if (m.id == self->id) return refuse_if_started_before(m, dir);
  return keel::status::ok();
}

// `dir` is the kv store's directory (kv.dir, else --data-dir, else ./<name>.keel), where
// member.json says a member was initialized. A --discovery token whose cluster is full is
// errc::already_exists, for the caller to apply --discovery-fallback.
keel::status read_cluster_options(std::string_view core_json, const std::string& dir, kvm::cluster_options& out) {
  rapidjson::Document core;
  std::string text(core_json);
  core.Parse(text.c_str());
  if (core.HasParseError() || !core.IsObject()) return {keel::errc::invalid_argument, "the core config is not an object"};
  out.name = string_of(core, "name", "default");
  out.token = string_of(core, "initial-cluster-token", "etcd-cluster");
  out.join_existing = string_of(core, "initial-cluster-state", "new") == "existing";
  out.listen_peer_urls = strings_of(core, "listen-peer-urls");
  out.advertise_peer_urls = strings_of(core, "initial-advertise-peer-urls");
  out.advertise_client_urls = strings_of(core, "advertise-client-urls");
  if (core.HasMember("heartbeat-interval") && core["heartbeat-interval"].IsUint())
    out.heartbeat_ms = core["heartbeat-interval"].GetUint();
  if (core.HasMember("election-timeout") && core["election-timeout"].IsUint())
    out.election_ms = core["election-timeout"].GetUint();
  std::string initial_cluster = string_of(core, "initial-cluster");
  std::string discovery = string_of(core, "discovery");
  std::string srv_domain = string_of(core, "discovery-srv");
  if (!srv_domain.empty() && discovery.empty() && ::access((dir + "/member.json").c_str(), F_OK) != 0) {
    // etcd's DNS bootstrap: the members are the SRV records' targets.
    auto found = keel::discovery::srv_initial_cluster(srv_domain, string_of(core, "discovery-srv-name"), out.name,
                                                      out.advertise_peer_urls);
    if (!found) return {found.error().code(), "--discovery-srv " + srv_domain + ": " + found.error().message()};
    initial_cluster = found.value();
    std::fprintf(stderr, "kv: DNS SRV records of %s gave --initial-cluster %s\n", srv_domain.c_str(), initial_cluster.c_str());
  }
  if (!discovery.empty()) {
    // etcd: with --discovery the bootstrap cluster comes from the token, and the member
    // ids are computed with the discovery URL as the cluster token.
    if (::access((dir + "/member.json").c_str(), F_OK) == 0) {
      std::fprintf(stderr, "kv: discovery token ignored since a cluster has already been initialized\n");
    } else {
      out.token = discovery;
      keel::discovery::discovery_request request;
      request.url = discovery;
      request.name = out.name;
      request.peer_urls = out.advertise_peer_urls;
      request.proxy = string_of(core, "discovery-proxy");
      request.member_id = keel::format_member_id(keel::compute_member_id(out.advertise_peer_urls, discovery));
      auto found = keel::discovery::discover_initial_cluster(request);
      if (!found) return {found.error().code(), "--discovery " + discovery + ": " + found.error().message()};
      initial_cluster = found.value();
      std::fprintf(stderr, "kv: discovery %s gave --initial-cluster %s\n", discovery.c_str(), initial_cluster.c_str());
    }
  }
  auto members = keel::parse_initial_cluster(initial_cluster);
  if (!members) return members.error();
  std::vector<std::uint64_t> ids;
  for (const keel::cluster_member_spec& m : members.value()) {
    kvm::cluster_member member;
    member.name = m.name;
    member.peer_urls = m.peer_urls;
    member.id = keel::compute_member_id(m.peer_urls, out.token);
    ids.push_back(member.id);
    out.members.push_back(std::move(member));
  }
  out.cluster_id = keel::compute_cluster_id(ids);
  if (::access((dir + "/member.json").c_str(), F_OK) == 0) return keel::status::ok();
  if (out.join_existing) return learn_existing_cluster(out, dir);
  return check_not_bootstrapped(out, dir);
}

bool proxy_mode = false;

// Starts keeld as etcd's v2 proxy (proxy.h) with the cluster reached through `peer_urls`.
keel::status start_proxy(keel::module_context* context, const rapidjson::Document& core, const std::string& dir,
                         std::vector<std::string> peer_urls) {
  kvm::proxy::options o;
  o.peer_urls = std::move(peer_urls);
  o.cluster_file = dir + "/proxy/cluster";
  o.readonly = string_of(core, "proxy", "off") == "readonly";
  if (core.HasMember("proxy-failure-wait") && core["proxy-failure-wait"].IsUint())
    o.failure_wait = std::chrono::milliseconds(core["proxy-failure-wait"].GetUint());
  if (core.HasMember("proxy-refresh-interval") && core["proxy-refresh-interval"].IsUint())
    o.refresh_interval = std::chrono::milliseconds(core["proxy-refresh-interval"].GetUint());
  if (core.HasMember("proxy-dial-timeout") && core["proxy-dial-timeout"].IsUint())
    o.dial_timeout = std::chrono::milliseconds(core["proxy-dial-timeout"].GetUint());
  if (core.HasMember("proxy-read-timeout") && core["proxy-read-timeout"].IsUint())
    o.read_timeout = std::chrono::milliseconds(core["proxy-read-timeout"].GetUint());
  proxy_mode = true;
  return kvm::proxy::start(context, std::move(o));
}

// The peer URLs of a proxy without a cluster file: etcd's GetCluster on --discovery, else
// --initial-cluster's URLs.
keel::result<std::vector<std::string>> proxy_peer_urls(const rapidjson::Document& core) {
  std::string initial_cluster = string_of(core, "initial-cluster");
  std::string discovery = string_of(core, "discovery");
  std::string srv_domain = string_of(core, "discovery-srv");
  if (!srv_domain.empty() && discovery.empty()) {
    // etcd: a proxy need not be among the records.
    auto found = keel::discovery::srv_initial_cluster(srv_domain, string_of(core, "discovery-srv-name"),
                                                      string_of(core, "name", "default"),
                                                      strings_of(core, "initial-advertise-peer-urls"), true);
    if (!found) return keel::status{found.error().code(), "--discovery-srv " + srv_domain + ": " + found.error().message()};
    initial_cluster = found.value();
  }
  if (!discovery.empty()) {
    keel::discovery::discovery_request request;
    request.url = discovery;
    request.proxy = string_of(core, "discovery-proxy");
    auto found = keel::discovery::discover_cluster(request);
    if (!found) return keel::status{found.error().code(), "--discovery " + discovery + ": " + found.error().message()};
    initial_cluster = found.value();
  }
  auto members = keel::parse_initial_cluster(initial_cluster);
  if (!members) return members.error();
  std::vector<std::string> urls;
  for (const keel::cluster_member_spec& m : members.value()) urls.insert(urls.end(), m.peer_urls.begin(), m.peer_urls.end());
  std::sort(urls.begin(), urls.end());
  return urls;
}

// etcd's startEtcdOrProxyV2: a data dir with a member starts the member; one with
// proxy/cluster starts the proxy; else --proxy decides, and a member whose --discovery
// cluster is full falls back to the proxy when --discovery-fallback is proxy. Sets
// `started_proxy` when keeld is now a proxy.
keel::status maybe_start_proxy(keel::module_context* context, const std::string& dir, bool& started_proxy) {
  started_proxy = false;
  // A data dir that cannot be one is said first, plainly (it was reported as a bad
  // "proxy cluster file" below it).
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return {keel::errc::invalid_argument, "the data dir " + dir + " is not a directory"};
  if (::stat(dir.c_str(), &st) != 0 && errno != ENOENT)  // a file on the way, a name too long, ...
    return {keel::errc::invalid_argument, "the data dir " + dir + ": " + std::strerror(errno)};
  rapidjson::Document core;
  std::string text(context->core_config_json());
  core.Parse(text.c_str());
  if (core.HasParseError() || !core.IsObject()) return {keel::errc::invalid_argument, "the core config is not an object"};
  // A member's data dir: member.json (a cluster member) or a WAL (a single node, which
  // writes no member.json). etcd looks for its member/ directory the same way.
  if (::access((dir + "/member.json").c_str(), F_OK) == 0 || ::access((dir + "/wal").c_str(), F_OK) == 0)
    return keel::status::ok();
  auto kept = kvm::proxy::read_cluster_file(dir + "/proxy/cluster");
  if (!kept) return kept.error();
  if (kept.value()) {
    if (!string_of(core, "discovery").empty())
      context->log(keel::log_level::warn, "discovery token ignored since the proxy has already been initialized; "
                                          "valid cluster file found at " + dir + "/proxy/cluster");
    started_proxy = true;
    return start_proxy(context, core, dir, std::move(*kept.value()));
  }
  if (string_of(core, "proxy", "off") == "off") return keel::status::ok();
  auto peers = proxy_peer_urls(core);
  if (!peers) return peers.error();
  started_proxy = true;
  return start_proxy(context, core, dir, std::move(peers.value()));
}

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  rapidjson::Document config;
  std::string text(context->config_json());
  config.Parse(text.c_str());
  if (config.HasParseError() || !config.IsObject() || !config.HasMember("dir") || !config["dir"].IsString()) {
    std::snprintf(error, error_bytes, "config section is not {\"dir\": string, ...}: %s", text.c_str());
    return 1;
  }
  kvm::core_options options;
  // The core keys (name, data-dir, snapshot-count, max-request-bytes, ...), parsed once.
  rapidjson::Document core;
  std::string core_text(context->core_config_json());
  core.Parse(core_text.c_str());
  bool have_core = !core.HasParseError() && core.IsObject();
  {
    // kv.dir wins; else etcd's --data-dir; else ./<name>.keel (as --data-dir's default).
    std::string data_dir = have_core ? string_of(core, "data-dir") : "";
    std::string name = have_core ? string_of(core, "name", "default") : "default";
    options.dir = config["dir"].GetString();
    if (options.dir.empty()) options.dir = data_dir.empty() ? "./" + name + ".keel" : data_dir;
  }
  bool started_proxy = false;
  if (keel::status s = maybe_start_proxy(context, options.dir, started_proxy); !s || started_proxy) {
    if (!s) std::snprintf(error, error_bytes, "%s", s.to_string().c_str());
    return s ? 0 : 1;
  }
  if (keel::status read = read_cluster_options(core_text, options.dir, options.cluster); !read) {
    if (read.code() == keel::errc::already_exists && string_of(core, "discovery-fallback", "proxy") == "proxy") {
      context->log(keel::log_level::info, "discovery cluster full, falling back to proxy");
      auto peers = proxy_peer_urls(core);
      keel::status started = peers ? start_proxy(context, core, options.dir, std::move(peers.value())) : peers.error();
      if (!started) std::snprintf(error, error_bytes, "%s", started.to_string().c_str());
      return started ? 0 : 1;
    }
    std::snprintf(error, error_bytes, "%s", read.to_string().c_str());
    return 1;
  }
  if (config.HasMember("snapshot-count") && config["snapshot-count"].IsUint64())
    options.snapshot_count = config["snapshot-count"].GetUint64();
  // etcd's --snapshot-count (a core key) applies unless kv.snapshot-count was changed.
  if (options.snapshot_count == 100000 && have_core && core.HasMember("snapshot-count") &&
      core["snapshot-count"].IsUint64())
    options.snapshot_count = core["snapshot-count"].GetUint64();
  if (config.HasMember("wal-segment-bytes") && config["wal-segment-bytes"].IsUint64())
    options.wal_segment_bytes = config["wal-segment-bytes"].GetUint64();
  if (have_core && core.HasMember("max-request-bytes") && core["max-request-bytes"].IsUint64())
    options.request_bytes_max = core["max-request-bytes"].GetUint64();
  keel::status started = kvm::core_start(context, options);
  if (!started) {
    std::snprintf(error, error_bytes, "%s", started.to_string().c_str());
    return 1;
  }
  context->on_shard_start([](keel::shard& shard) { kvm::core_on_shard_start(shard); });
  context->on_shard_stop([](keel::shard& shard) { kvm::core_on_shard_stop(shard); });
  kvm::register_v3_routes(context->router());
  kvm::register_v2_routes(context->router());
  // Replaces the core's /health (registered first; the router keeps the last): healthy
  // means the store can serve, as etcd's.
  context->router().add_async("GET", "/health", [](const keel::http_request&, keel::http_response& response) -> keel::task<void> {
    keel::task<bool> asking = kvm::healthy_now();
    bool healthy = co_await std::move(asking);
    response.send(healthy ? 200 : 503, "application/json", healthy ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}");
  });
  kvm::register_native_handlers(context->bus());
  context->add_metrics([](std::string& out) { kvm::core_metrics(out); });
  return 0;
}

void stop(keel::module_context*) {
  if (proxy_mode) kvm::proxy::stop();
  else kvm::core_stop();
}

constexpr const char* schema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "dir": {"type": "string", "default": "", "description": "Directory of the kv store (WAL in <dir>/wal, snapshots in <dir>/snap); \"\" means --data-dir, or ./<name>.keel without one."},
    "snapshot-count": {"type": "integer", "default": 100000, "minimum": 1, "description": "Committed entries between snapshots (etcd's --snapshot-count); on a single node, while the store's history is larger than twice this, half of it, at most 4 times this; the WAL before the snapshot preceding the newest is released."},
    "wal-segment-bytes": {"type": "integer", "default": 67108864, "minimum": 16777216, "maximum": 67108864, "description": "Size of each preallocated WAL segment (16 MiB to 64 MiB); smaller suits small disks and tests."}
  }
})";

const keel_module_descriptor descriptor = {
    KEEL_MODULE_ABI_VERSION, "kv", "0.3.0", schema, nullptr, start, stop,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}
