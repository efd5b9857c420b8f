#!/usr/bin/env bash
# tests/cli/keelctl_test.sh — keelctl against a real etcd 3.4.
#
# Usage: keelctl_test.sh PATH/TO/keelctl
#
# Starts a throwaway single-node etcd on free loopback ports, then checks that keelctl's
# `endpoint health` and `version` behave and print like etcdctl's. Prints each check,
# ends with "N passed, M failed", and exits 1 if anything failed. Exits 77 (CTest
# SKIP_RETURN_CODE) when etcd or python3 is not installed.
set -u

keelctl=${1:?usage: keelctl_test.sh PATH/TO/keelctl}
keelctl=$(realpath "$keelctl")
etcd_bin=${ETCD_BIN:-$(command -v etcd || true)}
etcdctl_bin=${ETCDCTL_BIN:-$(command -v etcdctl || true)}

if [[ -z $etcd_bin ]] || ! command -v python3 >/dev/null; then
  echo "SKIP: needs etcd and python3 on PATH (apt-get install etcd-server etcd-client python3)"
  exit 77
fi

# The variables a user may have set must not leak into what we compare.
unset ETCDCTL_ENDPOINTS ETCDCTL_DIAL_TIMEOUT ETCDCTL_COMMAND_TIMEOUT ETCDCTL_WRITE_OUT

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keelctl_test.XXXXXX")
etcd_pid=
cleanup() {
  if [[ -n $etcd_pid ]]; then
    kill "$etcd_pid" 2>/dev/null
    wait "$etcd_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports, chosen by the kernel, so parallel runs do not collide.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
client_port=$(free_port)
peer_port=$(free_port)
while [[ $peer_port == "$client_port" ]]; do peer_port=$(free_port); done
endpoint=http://127.0.0.1:$client_port
dead=http://127.0.0.1:1

echo "starting etcd ($("$etcd_bin" --version | head -1)) on $endpoint"
"$etcd_bin" --name keelctl-test --data-dir "$tmp/etcd" \
  --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "keelctl-test=http://127.0.0.1:$peer_port" \
  --enable-v2 >"$tmp/etcd.log" 2>&1 &
etcd_pid=$!

# Wait (up to 15 s) until etcd's own /health says true; keelctl is not trusted for this.
ready=0
for _ in $(seq 150); do
  if python3 - "$endpoint/health" 2>/dev/null <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
    sys.exit(0 if json.loads(r.read()).get("health") == "true" else 1)
EOF
  then ready=1; break; fi
  if ! kill -0 "$etcd_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [[ $ready != 1 ]]; then
  echo "FAIL: etcd did not become healthy; its log:"
  cat "$tmp/etcd.log"
  echo "0 passed, 1 failed"
  exit 1
fi

passed=0
failed=0
pass() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL - $1"
  shift
  for detail in "$@"; do echo "       $detail"; done
  failed=$((failed + 1))
}

# run ARGS...: runs keelctl, leaving $out, $err and $rc.
run() {
  out=$("$keelctl" "$@" 2>"$tmp/stderr")
  rc=$?
  err=$(cat "$tmp/stderr")
}

# ---- endpoint health against a live etcd -------------------------------------------

run --endpoints "$endpoint" endpoint health
healthy_re="^${endpoint//./\\.} is healthy: successfully committed proposal: took = [0-9.]+(ns|µs|ms|s)\$"
if [[ $rc == 0 && $out =~ $healthy_re && -z $err ]]; then
  pass "endpoint health on a live etcd exits 0 and prints '$out'"
else
  fail "endpoint health on a live etcd" "rc=$rc" "stdout=$out" "stderr=$err"
fi

run endpoint health "--endpoints=$endpoint" --dial-timeout=1s --command-timeout=3s
if [[ $rc == 0 && $out == *"is healthy"* ]]; then
  pass "--flag=value form, flags after the command words, Go durations"
else
  fail "--flag=value form after the command" "rc=$rc" "stdout=$out" "stderr=$err"
fi

out=$(ETCDCTL_ENDPOINTS=$endpoint "$keelctl" endpoint health 2>&1); rc=$?
if [[ $rc == 0 && $out == "$endpoint is healthy"* ]]; then
  pass "ETCDCTL_ENDPOINTS is used when --endpoints is absent"
else
  fail "ETCDCTL_ENDPOINTS fallback" "rc=$rc" "output=$out"
fi

run --endpoints "$endpoint" -w json endpoint health
if [[ $rc == 0 ]] && python3 -c '
import json, sys
v = json.loads(sys.argv[1])
assert isinstance(v, list) and len(v) == 1, v
e = v[0]
assert e["endpoint"] == sys.argv[2] and e["health"] is True and isinstance(e["took"], str), e
assert "error" not in e, e
' "$out" "$endpoint"; then
  pass "-w json parses: $out"
else
  fail "-w json on a live etcd" "rc=$rc" "stdout=$out" "stderr=$err"
fi

run --endpoints "$endpoint" --write-out table endpoint health
header_re='\| +ENDPOINT +\| HEALTH \| +TOOK +\| ERROR \|'
if [[ $rc == 0 && $out =~ $header_re && $out == *"|   true |"* ]]; then
  pass "-w table has ENDPOINT | HEALTH | TOOK | ERROR and a true row"
else
  fail "-w table" "rc=$rc" "stdout=$out" "stderr=$err"
fi

# ---- a dead endpoint --------------------------------------------------------------

run --endpoints "$dead" endpoint health
dead_line="$dead is unhealthy: failed to commit proposal: dial tcp 127.0.0.1:1: connect: connection refused"
if [[ $rc == 1 && -z $out && $err == "$dead_line"$'\n'"Error: unhealthy cluster" ]]; then
  pass "dead endpoint exits 1 with 'connection refused' and 'Error: unhealthy cluster' on stderr"
else
  fail "dead endpoint" "rc=$rc" "stdout=$out" "stderr=$err"
fi

run --endpoints "$endpoint,$dead" -w json endpoint health
if [[ $rc == 1 ]] && python3 -c '
import json, sys
live, dead = json.loads(sys.argv[1])
assert live["health"] is True and "error" not in live, live
assert dead["health"] is False and "connection refused" in dead["error"], dead
' "$out"; then
  pass "live + dead endpoints: exit 1, json reports each (error only on the dead one)"
else
  fail "live + dead endpoints in json" "rc=$rc" "stdout=$out" "stderr=$err"
fi

# ---- usage errors -----------------------------------------------------------------

run --endpoints "$endpoint" bogus
if [[ $rc != 0 && $err == *'unknown command "bogus"'* && $err == *"--help"* ]]; then
  pass "unknown subcommand exits $rc with a usage hint"
else
  fail "unknown subcommand" "rc=$rc" "stderr=$err"
fi

run --bogus endpoint health
if [[ $rc != 0 && $err == *"unknown flag: --bogus"* ]]; then
  pass "unknown flag exits $rc"
else
  fail "unknown flag" "rc=$rc" "stderr=$err"
fi

run --dial-timeout=5 endpoint health
if [[ $rc != 0 && $err == *"--dial-timeout"* ]]; then
  pass "a duration without a unit is rejected, as Go's flag package does"
else
  fail "bad duration" "rc=$rc" "stderr=$err"
fi

run --version
if [[ $rc == 0 && $out =~ ^keelctl\ version:\ [0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  pass "--version prints '$out'"
else
  fail "--version" "rc=$rc" "stdout=$out"
fi

# ---- version -----------------------------------------------------------------------

server_version=$("$etcd_bin" --version | sed -n 's/^etcd Version: //p')
run --endpoints "$dead,$endpoint" version
if [[ $rc == 0 && $out == "etcdserver: $server_version"$'\n'"etcdcluster: "* ]]; then
  pass "version skips the dead endpoint and prints etcdserver: $server_version / etcdcluster"
else
  fail "version" "rc=$rc" "stdout=$out" "stderr=$err"
fi

# ---- the same output as etcdctl ---------------------------------------------------

if [[ -n $etcdctl_bin ]]; then
  # etcdctl 3.4 prints even the healthy line on stderr; keelctl prints it on stdout
  # (only the unhealthy lines go to stderr), so compare the text, not the stream.
  reference=$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" endpoint health 2>&1 | grep ' is healthy: ')
  run --endpoints "$endpoint" endpoint health
  if [[ -n $reference && ${reference%%took =*} == "${out%%took =*}" ]]; then
    pass "same text as etcdctl up to 'took =': '${out%%took =*}took ='"
  else
    fail "etcdctl comparison" "etcdctl: $reference" "keelctl: $out"
  fi

  reference=$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" -w json endpoint health 2>/dev/null)
  run --endpoints "$endpoint" -w json endpoint health
  if python3 -c '
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert [sorted(e) for e in a] == [sorted(e) for e in b], (a, b)
assert [(e["endpoint"], e["health"]) for e in a] == [(e["endpoint"], e["health"]) for e in b], (a, b)
' "$reference" "$out"; then
    pass "-w json has the same keys and values as etcdctl's (took aside)"
  else
    fail "etcdctl json comparison" "etcdctl: $reference" "keelctl: $out"
  fi

  header() { sed -n 2p; }
  ref_header=$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$endpoint" -w table endpoint health 2>/dev/null | header)
  our_header=$("$keelctl" --endpoints "$endpoint" -w table endpoint health | header)
  if [[ $(tr -s ' ' <<<"$ref_header") == $(tr -s ' ' <<<"$our_header") ]]; then
    pass "-w table header matches etcdctl's: $our_header"
  else
    fail "etcdctl table header" "etcdctl: $ref_header" "keelctl: $our_header"
  fi
else
  echo "skip - etcdctl not installed: no side-by-side comparison"
fi

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
