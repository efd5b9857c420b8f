// cmd/keelctl/kv_commands.h — keelctl's etcdctl v3 verbs (get, put, del, watch, txn,
// compact, lease) over keeld's native kv protocol (keel/kv/client.h).
//
// They take etcdctl 3.4's arguments and flags and print what etcdctl prints, in the simple
// and json output formats, so scripts written for one work with the other:
//
//   keelctl [global flags] get KEY [RANGE_END] [--prefix|--from-key] [--limit N] [--rev N]
//           [--keys-only] [--print-value-only] [--count-only] [--sort-by T] [--order O]
//   keelctl put KEY [VALUE]      (VALUE from stdin when absent) [--lease HEX] [--prev-kv]
//           [--ignore-value] [--ignore-lease]
//   keelctl del KEY [RANGE_END] [--prefix|--from-key] [--prev-kv]
//   keelctl watch KEY [RANGE_END] [--prefix] [--rev N] [--prev-kv] [--progress-notify]
//   keelctl txn [-i]             (compares, blank line, success ops, blank line, failure
//                                 ops, blank line; from stdin)
//   keelctl compact REV [--physical]
//   keelctl lease grant TTL | revoke ID | keep-alive ID [--once] | timetolive ID [--keys] | list
//
// Global flags: --endpoints (default 127.0.0.1:2379, or $ETCDCTL_ENDPOINTS),
// --dial-timeout, --command-timeout, -w/--write-out simple|json, --hex.
// Errors print "Error: <message>" on stderr with etcdctl's exit codes: 1 for a failed
// request, 128 for bad arguments, 2 for keep-alive/timetolive/list failures, 3 for bad txn
// input, 4 for an unsupported format or option, 5 when a watch is cancelled by the server.
#pragma once

#include <optional>

namespace keel::ctl {

// Runs `keelctl [global flags] VERB ...` when VERB is one of the v3 verbs above and
// returns its exit code; nullopt when the command is something else.
std::optional<int> run_kv_command(int argc, char** argv);

// The verbs' lines for `keelctl --help`.
const char* kv_commands_usage() noexcept;

}  // namespace keel::ctl
