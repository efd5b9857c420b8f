// cmd/keelctl/v2_commands.h — etcdctl's v2 commands (ETCDCTL_API=2) in keelctl.
//
// The verbs set, get, mk, mkdir, rm, rmdir, ls, update, updatedir, setdir, watch and
// exec-watch speak etcd's v2 keys API over HTTP, exactly as `ETCDCTL_API=2 etcdctl` does
// (the same requests, the same output for -o simple|extended|json, the same error lines
// and exit codes: 0 ok, 1 bad arguments, 2 no endpoint reachable while syncing, 4 any
// other failure), so they work against keeld and against etcd alike.
//
// They are chosen in two ways, so that keelctl's v3 verbs (get/put/del/watch over the
// native protocol) keep their names:
//   keelctl v2 <verb> ...                   always
//   ETCDCTL_API=2 keelctl <verb> ...        as etcdctl does
#pragma once

#include <optional>

namespace keel::ctl {

// Runs the command when argv selects a v2 verb (see above) and returns its exit status;
// nullopt when argv is not a v2 command (main then handles it).
std::optional<int> run_v2_command(int argc, char** argv);

}  // namespace keel::ctl
