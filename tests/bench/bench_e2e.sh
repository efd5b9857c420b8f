#!/usr/bin/env bash
# bench_e2e.sh KEEL_BENCH — keel-bench against a real etcd 3.4 on loopback.
# Starts `etcd --enable-v2` on free ports with a temporary data dir (killed and removed on
# exit), then checks that
#   1. a 2 s v3json `put` with sequential unique keys under a prefix reports as many
#      successes as etcd then holds under that prefix;
#   2. a 2 s `range` over that prefix succeeds with 0 errors;
#   3. the same put check with --target v2 (counted with curl + python on the v2 dir).
# Prints "N passed, M failed"; exits 1 if any failed. Skips (exit 0) without etcd.
set -u
bench=${1:?usage: bench_e2e.sh path/to/keel-bench}
etcd_bin=${ETCD:-/usr/bin/etcd}
etcdctl_bin=${ETCDCTL:-/usr/bin/etcdctl}
if [[ ! -x $etcd_bin ]]; then echo "skip: no $etcd_bin"; echo "0 passed, 0 failed"; exit 0; fi

work=$(mktemp -d /tmp/bench_e2e.XXXXXX)
etcd_pid=
cleanup() {
  if [[ -n $etcd_pid ]]; then kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client_port=$(free_port)
peer_port=$(free_port)
while [[ $peer_port == "$client_port" ]]; do peer_port=$(free_port); done
url=http://127.0.0.1:$client_port

"$etcd_bin" --enable-v2 --name e2e --data-dir "$work/data" \
  --listen-client-urls "$url" --advertise-client-urls "$url" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "e2e=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
  curl -fs "$url/health" 2>/dev/null | grep -q true && break
  sleep 0.1
done

passed=0
failed=0
check() {  # check NAME EXPECTED ACTUAL
  if [[ $2 == "$3" && -n $2 ]]; then
    echo "PASS $1 ($2)"; passed=$((passed + 1))
  else
    echo "FAIL $1: expected '$2', got '$3'"; failed=$((failed + 1))
  fi
}
json_field() { python3 -c "import json,sys; d=json.load(open('$1')); print(d$2)"; }

# 1. v3json put.
"$bench" put --endpoints "$url" --target v3json --duration 2s --clients 8 --conns 4 \
  --key-space-size 1000000 --sequential-keys --prefix e2e-v3/ --json "$work/put.json" >"$work/put.txt"
cat "$work/put.txt"
reported=$(json_field "$work/put.json" "['succeeded']")
stored=$(ETCDCTL_API=3 "$etcdctl_bin" --endpoints "$url" get --prefix e2e-v3/ --limit 1 -w json |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
check "v3json put: reported successes == keys under the prefix" "$reported" "$stored"
check "v3json put: no errors" 0 "$(json_field "$work/put.json" "['failed']")"

# 2. range over the prefix.
"$bench" range e2e-v3/ e2e-v30 --endpoints "$url" --target v3json --duration 2s --clients 8 --conns 4 \
  --json "$work/range.json" >"$work/range.txt"
cat "$work/range.txt"
check "range: 0 errors" 0 "$(json_field "$work/range.json" "['failed']")"
ok=$(json_field "$work/range.json" "['succeeded']")
check "range: succeeded" yes "$([[ $ok -gt 0 ]] && echo yes || echo "no ($ok)")"

# 3. v2 put.
"$bench" put --endpoints "$url" --target v2 --duration 2s --clients 8 --conns 4 \
  --key-space-size 1000000 --sequential-keys --prefix e2e-v2/ --json "$work/v2.json" >"$work/v2.txt"
cat "$work/v2.txt"
reported=$(json_field "$work/v2.json" "['succeeded']")
stored=$(curl -fs "$url/v2/keys/e2e-v2?recursive=true" |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin)["node"].get("nodes", [])))')
check "v2 put: reported successes == keys in the directory" "$reported" "$stored"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
