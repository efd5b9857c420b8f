// authority.cc — a URL's host and port (authority.h).
#include "authority.h"

namespace keel::discovery {

std::optional<host_port> split_authority(std::string_view authority) {
  host_port out;
  if (authority.starts_with("[")) {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (after.starts_with(":")) out.port = std::string(after.substr(1));
    return out;
  }
  std::size_t colon = authority.rfind(':');
  out.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) out.port = std::string(authority.substr(colon + 1));
  return out;
}

}  // namespace keel::discovery
