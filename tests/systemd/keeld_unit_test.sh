#!/usr/bin/env bash
# contrib/keeld.service under a real systemd (a user manager beside the test, through
# ../shared/tools/with-systemd): Type=notify start returns only once keeld is ready, the
# watchdog keeps it alive, stop is clean and quick, and the unit reports success.
# Usage: keeld_unit_test.sh KEELD_BINARY
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
with_systemd=${KEEL_WITH_SYSTEMD:-$repo/../shared/tools/with-systemd}
[[ -x $with_systemd ]] || { echo "skipped: $with_systemd not found"; exit 77; }

if [[ ${1:-} != --inside ]]; then
  keeld=$(readlink -f "${1:?usage: keeld_unit_test.sh KEELD_BINARY}")
  exec "$with_systemd" bash "$0" --inside "$keeld"
fi
keeld=$2
pass=0 fail=0
check() {  # check NAME COMMAND...
  if "${@:2}"; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi
}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
work=$(mktemp -d)
trap 'systemctl --user stop keeld-test.service >/dev/null 2>&1; rm -rf "$work"' EXIT
unit_dir=$XDG_RUNTIME_DIR/systemd/user
# The shipped unit, with only what a user manager cannot do replaced: the binary's path,
# the state directory under the test's own folder, and the port.
sed -e "s#^ExecStart=.*#ExecStart=$keeld --listen-client-urls http://127.0.0.1:$port --shards 2#" \
    -e "s#^StateDirectory=.*##" -e "s#^WorkingDirectory=.*#WorkingDirectory=$work#" \
    -e "s#^WatchdogSec=.*#WatchdogSec=2s#" -e "s#^WantedBy=.*#WantedBy=default.target#" \
    "$repo/contrib/keeld.service" > "$unit_dir/keeld-test.service"
systemctl --user daemon-reload

health() { curl -sf "http://127.0.0.1:$port/health" | grep -q '"health":"true"'; }
check "systemctl start succeeds (Type=notify waits for READY=1)" systemctl --user start keeld-test.service
check "keeld answers /health as soon as start returns" health
check "unit is active" test "$(systemctl --user is-active keeld-test.service)" = active
sleep 5  # longer than WatchdogSec=2s: without WATCHDOG=1 pings systemd would kill it
check "still active after 2.5 watchdog intervals" test "$(systemctl --user is-active keeld-test.service)" = active
check "no restarts happened" test "$(systemctl --user show -p NRestarts --value keeld-test.service)" = 0
start=$(date +%s%N)
check "systemctl stop succeeds" systemctl --user stop keeld-test.service
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "stop took under 1 s (took ${took_ms} ms)" test "$took_ms" -lt 1000
check "exit was clean (Result=success)" test "$(systemctl --user show -p Result --value keeld-test.service)" = success
check "port is free after stop" bash -c "! curl -sf http://127.0.0.1:$port/health"
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
