// log.cc — stderr lines in etcd's capnslog layout.
#include "keel/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <string>

namespace keel {
namespace {
std::atomic<int> g_level{static_cast<int>(log_level::info)};
}

void set_log_level(log_level level) noexcept { g_level.store(static_cast<int>(level)); }
bool log_enabled(log_level level) noexcept { return static_cast<int>(level) >= g_level.load(); }

void log_line(log_level level, std::string_view component, std::string_view text) noexcept {
  if (!log_enabled(level)) return;
  static constexpr char letters[] = {'D', 'I', 'W', 'E'};
  timeval now{};
  gettimeofday(&now, nullptr);
  tm local{};
  localtime_r(&now.tv_sec, &local);
  char stamp[48];
  std::size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &local);
  snprintf(stamp + n, sizeof(stamp) - n, ".%06ld", static_cast<long>(now.tv_usec));
  std::string line;
  line.reserve(64 + text.size());
  line.append(stamp).append(" ").push_back(letters[static_cast<int>(level)]);
  line.append(" | ").append(component).append(": ").append(text).push_back('\n');
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}
}  // namespace keel
