// service.h — the discovery service's HTTP surface (see ../../README.md "Routes").
#pragma once

#include <chrono>

#include "keel/reactor/http.h"

namespace keel::discovery_module {

struct service_options {
  // How long a wait=true request is held before it is answered 200 with an empty body
  // (discovery.etcd.io holds one minute; the client asks again).
  std::chrono::milliseconds wait_timeout{std::chrono::minutes(1)};
};

// Registers GET /new and GET/PUT/DELETE under /discovery/. REQUIRES: before the shards
// start; set_bus() was called.
void register_routes(http_router& router, const service_options& options);

// The v3 key that holds everything of `token` (README "Key layout").
inline constexpr std::string_view key_root = "/_keel/discovery/";
inline constexpr std::string_view url_root = "/discovery/";

}  // namespace keel::discovery_module
