// options.cc — see options.h.
#include "options.h"

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>

namespace keel::bench {

namespace {

const char* const commands[] = {"put", "range", "txn-put", "watch", "watch-latency",
                                "lease-keepalive", "mixed"};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, separator)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

bool to_u64(const std::string& text, std::uint64_t& out) {
  if (text.empty() || text[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoull(text.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

bool to_double(const std::string& text, double& out) {
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return !text.empty() && *end == '\0' && out >= 0;
}

// "10s", "500ms", "2m", "1.5" (seconds).
bool to_seconds(const std::string& text, double& out) {
  std::string number = text;
  double scale = 1;
  auto ends_with = [&](const char* suffix) {
    std::string s(suffix);
    return number.size() > s.size() && number.compare(number.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with("ms")) { number.resize(number.size() - 2); scale = 1e-3; }
  else if (ends_with("s")) { number.pop_back(); }
  else if (ends_with("m")) { number.pop_back(); scale = 60; }
  else if (ends_with("h")) { number.pop_back(); scale = 3600; }
  if (!to_double(number, out)) return false;
  out *= scale;
  return out > 0;
}

}  // namespace

std::string usage_text() {
  return "usage: keel-bench COMMAND [ARGS] [FLAGS]\n"
         "commands: put | range KEY [END] | txn-put | watch | watch-latency | lease-keepalive | mixed\n"
         "flags: --endpoints URLS --target keel|v2|v3json --clients N --conns N --total N --duration 10s\n"
         "       --rate N --key-size N --val-size N --key-space-size N --sequential-keys --prefix P\n"
         "       --consistency l|s --txn-ops N --streams N --watchers-per-stream N --put-rate N\n"
         "       --read-ratio F --timeout 10s --shards N --cpus LIST --json FILE --progress\n"
         "see perf/bench/README.md\n";
}

result<options> parse_options(int argc, char** argv) {
  options o;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) o.command_line += ' ';
    o.command_line += argv[i];
  }
  auto bad = [](std::string message) { return status(errc::invalid_argument, std::move(message)); };
  using setter = std::function<bool(const std::string&)>;
  auto unsigned_flag = [](unsigned& field, std::uint64_t minimum) {
    return setter([&field, minimum](const std::string& v) {
      std::uint64_t n;
      if (!to_u64(v, n) || n < minimum || n > 1000000) return false;
      field = static_cast<unsigned>(n);
      return true;
    });
  };
  auto size_flag = [](std::size_t& field) {
    return setter([&field](const std::string& v) {
      std::uint64_t n;
      if (!to_u64(v, n) || n > (1u << 20)) return false;
      field = n;
      return true;
    });
  };
  auto double_flag = [](double& field) {
    return setter([&field](const std::string& v) { return to_double(v, field); });
  };
  std::map<std::string, setter> with_value = {
      {"--endpoints", [&](const std::string& v) { o.endpoints = split(v, ','); return !o.endpoints.empty(); }},
      {"--clients", unsigned_flag(o.clients, 1)},
      {"--conns", unsigned_flag(o.conns, 1)},
      {"--total", [&](const std::string& v) { return to_u64(v, o.total) && o.total > 0; }},
      {"--duration", [&](const std::string& v) { return to_seconds(v, o.duration_seconds); }},
      {"--timeout", [&](const std::string& v) { return to_seconds(v, o.timeout_seconds); }},
      {"--rate", double_flag(o.rate)},
      {"--key-size", size_flag(o.key_size)},
      {"--val-size", size_flag(o.val_size)},
      {"--key-space-size", [&](const std::string& v) { return to_u64(v, o.key_space_size) && o.key_space_size > 0; }},
      {"--consistency", [&](const std::string& v) {
         if (v != "l" && v != "s") return false;
         o.linearizable = v == "l";
         return true;
       }},
      {"--target", [&](const std::string& v) {
         if (v == "keel") o.target = target_kind::keel;
         else if (v == "v2") o.target = target_kind::v2;
         else if (v == "v3json") o.target = target_kind::v3json;
         else return false;
         return true;
       }},
      {"--json", [&](const std::string& v) { o.json_file = v; return !v.empty(); }},
      {"--cpus", [&](const std::string& v) {
         o.cpus.clear();
         for (const std::string& part : split(v, ',')) {
           std::uint64_t first, last;
           std::size_t dash = part.find('-');
           if (dash == std::string::npos) {
             if (!to_u64(part, first) || first > 4095) return false;
             o.cpus.push_back(static_cast<int>(first));
           } else {
             if (!to_u64(part.substr(0, dash), first) || !to_u64(part.substr(dash + 1), last) ||
                 first > last || last > 4095) return false;
             for (std::uint64_t c = first; c <= last; ++c) o.cpus.push_back(static_cast<int>(c));
           }
         }
         return !o.cpus.empty();
       }},
      {"--shards", unsigned_flag(o.shards, 1)},
      {"--streams", unsigned_flag(o.streams, 1)},
      {"--watchers-per-stream", unsigned_flag(o.watchers_per_stream, 1)},
      {"--put-rate", double_flag(o.put_rate)},
      {"--read-ratio", [&](const std::string& v) { return to_double(v, o.read_ratio) && o.read_ratio <= 1; }},
      {"--txn-ops", unsigned_flag(o.txn_ops, 1)},
      {"--prefix", [&](const std::string& v) { o.prefix = v; return true; }},
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return status(errc::cancelled, usage_text());
    if (arg.rfind("--", 0) == 0) {
      std::string name = arg, value;
      bool has_value = false;
      if (std::size_t eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        has_value = true;
      }
      if (name == "--sequential-keys") { o.sequential_keys = true; continue; }
      if (name == "--progress") { o.progress = true; continue; }
      auto flag = with_value.find(name);
      if (flag == with_value.end()) return bad("unknown flag " + name + " (see --help)");
      if (!has_value) {
        if (i + 1 >= argc) return bad(name + " needs a value");
        value = argv[++i];
      }
      if (!flag->second(value)) return bad("bad value for " + name + ": '" + value + "'");
      continue;
    }
    if (o.command.empty()) {
      bool known = false;
      for (const char* c : commands) known = known || arg == c;
      if (!known) return bad("unknown command '" + arg + "' (see --help)");
      o.command = arg;
    } else {
      o.arguments.push_back(arg);
    }
  }
  if (o.command.empty()) return bad("no command given (see --help)");
  if (o.command == "range" && (o.arguments.empty() || o.arguments.size() > 2)) {
    return bad("range needs KEY [END]");
  }
  if (o.command != "range" && !o.arguments.empty()) return bad("unexpected argument '" + o.arguments[0] + "'");
  if (o.command == "lease-keepalive" && o.target == target_kind::v2) {
    return bad("lease-keepalive is not supported by --target v2 (the v2 API has no leases; use TTL keys)");
  }
  if (o.command == "range" && o.target == target_kind::v2 && o.arguments.size() == 2) {
    return bad("range with END is not supported by --target v2 (the v2 API reads one key or a directory)");
  }
  if ((o.command == "watch" || o.command == "watch-latency") && o.shards != 1) {
    return bad(o.command + " runs on one generator shard; drop --shards");
  }
  if (o.conns > o.clients && o.command != "watch" && o.command != "watch-latency") o.conns = o.clients;
  if (o.shards > o.conns && o.command != "watch" && o.command != "watch-latency") {
    return bad("--shards must not exceed --conns (each shard drives its own connections)");
  }
  return o;
}

}  // namespace keel::bench
