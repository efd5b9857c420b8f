#!/usr/bin/env bash
# compare_test.sh [KEEL_BENCH] — perf/compare end to end, etcd against etcd (--self-check).
# Runs
#   perf/compare --self-check --rounds 2 -- put --duration 1s --clients 4 --conns 2 --sequential-keys
# into a temporary --out dir and checks: exit 0; the JSON holds 4 runs (A B A B) with their
# exact commands; every ratio is computed and the throughput and p50 ratios are near 1
# (0.33..3: two identical etcds on a shared 2-core machine); the plot exists and is not
# empty; no etcd that compare started is left. Then that --members 3 runs a 3-member keel
# cluster beside a 3-member etcd cluster (one round), and that a bad flag exits 2. Prints "N passed, M failed"; exits 1 if any failed. Skips without etcd.
set -u
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench=${1:-$repo/build/bin/keel-bench}
etcd_bin=${ETCD:-/usr/bin/etcd}
if [[ ! -x $etcd_bin ]]; then echo "skip: no $etcd_bin"; echo "0 passed, 0 failed"; exit 0; fi

work=$(mktemp -d /tmp/compare_test.XXXXXX)
trap 'rm -rf "$work"' EXIT
# perf/compare makes its temporary dirs under TMPDIR: this run's own, so another
# perf/compare on the machine at the same time cannot disturb the checks below.
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR"

passed=0
failed=0
check() {  # check NAME CONDITION-OUTPUT ("ok" passes, anything else is the failure reason)
  if [[ $2 == ok ]]; then echo "PASS $1"; passed=$((passed + 1)); else echo "FAIL $1: $2"; failed=$((failed + 1)); fi
}
# etcd processes whose data dir is one of compare's temp dirs.
ours() { pgrep -af "$etcd_bin" | grep -c -- "--data-dir $TMPDIR/compare-" ; }

before=$(ours)
"$repo/perf/compare" --self-check --rounds 2 --out "$work/out" --etcd "$etcd_bin" --keel-bench "$bench" \
  -- put --duration 1s --clients 4 --conns 2 --sequential-keys >"$work/compare.txt" 2>&1
code=$?
cat "$work/compare.txt"
check "self-check exits 0" "$([[ $code == 0 ]] && echo ok || echo "exit $code")"

json=$(ls "$work"/out/*.json 2>/dev/null | head -1)
check "one JSON written" "$([[ -n $json ]] && echo ok || echo "none in $work/out")"
if [[ -n $json ]]; then
  verdict=$(python3 - "$json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
problems = []
runs = d.get("runs", [])
if len(runs) != 4: problems.append(f"{len(runs)} runs, want 4")
if [r["side"] for r in runs] != ["etcd-a", "etcd", "etcd-a", "etcd"]: problems.append("runs not alternating A B A B")
for r in runs:
    if "keel-bench" not in r.get("command_line", "") or "--json" not in r["command"]: problems.append("run without its command")
    if r["result"].get("succeeded", 0) <= 0: problems.append(f"run {r['round']} {r['side']} succeeded nothing")
    if r["result"].get("failed", 1) != 0: problems.append(f"run {r['round']} {r['side']} had errors")
ratios = d.get("ratios", {})
for k in ("throughput", "p50", "p90", "p99", "p999", "errors"):
    if ratios.get(k) is None: problems.append(f"ratio {k} missing")
for k in ("throughput", "p50"):
    v = ratios.get(k)
    if v is not None and not (1 / 3 <= v <= 3): problems.append(f"ratio {k} = {v:.3f}, not near 1")
if not d.get("machine", {}).get("cpus_online"): problems.append("no machine info")
if "--self-check" not in d.get("command_line", ""): problems.append("no compare command line")
print("ok" if not problems else "; ".join(problems))
EOF
)
  check "JSON: 4 runs with commands, ratios near 1, machine info" "$verdict"
  plot=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("plot", ""))' "$json")
  check "plot file exists and is not empty" "$([[ -n $plot && -s $plot ]] && echo ok || echo "plot '$plot'")"
fi
grep -q "^  ratio" "$work/compare.txt"
check "ratios printed" "$([[ $? == 0 ]] && echo ok || echo 'no ratio row in the output')"
sleep 0.5
after=$(ours)
check "no etcd left behind" "$([[ $after -le $before ]] && echo ok || echo "$after etcd processes with compare data dirs")"
left=$(ls -d "$TMPDIR"/compare-etcd* "$TMPDIR"/compare-runs.* 2>/dev/null | wc -l)
check "temporary dirs removed" "$([[ $left == 0 ]] && echo ok || echo "$left left in $TMPDIR")"

"$repo/perf/compare" --members 3 --rounds 1 --out "$work/m3" --keel-bench "$bench" -- put --duration 1s --clients 4 --conns 2 \
  >"$work/m3.txt" 2>&1
code=$?
check "--members 3 (keel cluster beside etcd cluster) exits 0" "$([[ $code == 0 ]] && echo ok || { echo "exit $code"; tail -20 "$work/m3.txt"; })"
check "--members 3 started 3-member clusters" "$(grep -q 'keel (3 members) healthy' "$work/m3.txt" && grep -q 'etcd (3 members) healthy' "$work/m3.txt" && echo ok || cat "$work/m3.txt")"

"$repo/perf/compare" --no-such-flag -- put >"$work/bad.txt" 2>&1
code=$?
check "bad flag exits 2" "$([[ $code == 2 ]] && echo ok || echo "exit $code")"
"$repo/perf/compare" -- put --endpoints http://x:1 >"$work/bad2.txt" 2>&1
code=$?
check "--endpoints after -- is refused" "$([[ $code == 2 ]] && echo ok || echo "exit $code")"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
