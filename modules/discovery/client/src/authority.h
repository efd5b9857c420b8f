// authority.h — the host and port in a URL's authority, for the discovery client's two
// readers of URLs: the discovery URL (client.cc, which defaults the port to 80) and the
// advertised peer URLs that SRV targets are matched against (srv.cc, which needs a port).
// Private to keel_discovery_client.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace keel::discovery {

struct host_port {
  std::string host;                 // brackets removed; may be empty
  std::optional<std::string> port;  // what follows the ':'; nullopt when there is no ':'
};

// "host", "host:port", "[v6]" or "[v6]:port" (the part of a URL between "//" and the
// path) → host and port. The port is after the last ':', or for a bracketed host after
// "]:"; anything else after ']' means no port. Neither part is checked further (the
// callers' rules differ). Nullopt for a '[' without its ']'.
std::optional<host_port> split_authority(std::string_view authority);

}  // namespace keel::discovery
