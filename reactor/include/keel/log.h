// keel/log.h — one line per event on stderr, in etcd's layout:
//   2026-11-28 18:30:00.123456 I | keeld: listening for clients on 127.0.0.1:2379
// Safe from any thread (one write(2) per line). Below the set level, nothing is built.
#pragma once

#include <string_view>

#include "keel/module.h"

namespace keel {
void set_log_level(log_level level) noexcept;
bool log_enabled(log_level level) noexcept;
void log_line(log_level level, std::string_view component, std::string_view text) noexcept;
}  // namespace keel
