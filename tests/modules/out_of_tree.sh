#!/usr/bin/env bash
# out_of_tree.sh BUILD_DIR — proves a module can be built out of tree against an
# installed keel and served by the installed keeld:
#   1. cmake --install BUILD_DIR into a temporary prefix;
#   2. configure and build contrib/echo-module with find_package(keel) from that prefix;
#   3. run the installed keeld with --modules echo --module-path <echo build> on 2 shards,
#      and check the module's HTTP route, its bus handler across shards, its metrics, and
#      its answer to a native EchoRequest frame on the client port;
#   4. SIGTERM, and keeld exits 0.
# Needs a complete build of BUILD_DIR (ctest runs it after `ninja -C BUILD_DIR`), cmake,
# ninja and python3. Prints each check and "N passed, M failed"; exits 1 on any failure.
set -u
BUILD_DIR=${1:?usage: out_of_tree.sh BUILD_DIR}
BUILD_DIR=$(cd "$BUILD_DIR" 2>/dev/null && pwd) || { echo "FAIL: no build directory $1"; echo "0 passed, 1 failed"; exit 1; }
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

passed=0
failed=0
check() {  # check NAME COMMAND...: runs COMMAND, counts and prints the outcome
  local name=$1
  shift
  if "$@"; then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    failed=$((failed + 1))
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && exit 0 || exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-out-of-tree.XXXXXX")
keeld_pid=
cleanup() {
  if [ -n "$keeld_pid" ] && kill -0 "$keeld_pid" 2>/dev/null; then
    kill -KILL "$keeld_pid" 2>/dev/null
    wait "$keeld_pid" 2>/dev/null
  fi
  if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi
}
trap cleanup EXIT

if [ ! -x "$BUILD_DIR/bin/keeld" ]; then
  echo "FAIL: $BUILD_DIR/bin/keeld is missing; build first (ninja -C $BUILD_DIR)"
  failed=1
  finish
fi

# 1. Install.
install_ok() { cmake --install "$BUILD_DIR" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; return 1; }; }
check "cmake --install into a temporary prefix" install_ok
check "installed prefix has bin/keeld, keel/module.h, echo_generated.h and keelConfig.cmake" \
  test -x "$tmp/prefix/bin/keeld" -a -f "$tmp/prefix/include/keel/module.h" \
  -a -f "$tmp/prefix/include/keel/wire/echo_generated.h" \
  -a -n "$(find "$tmp/prefix" -name keelConfig.cmake -print -quit)"

# 2. Build the example module out of tree, with the compiler keel was built with (a
# module shares C++ types with keeld, so it must use the same compiler and headers).
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
build_echo() {
  cmake -S "$SRC/contrib/echo-module" -B "$tmp/echo" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    ${cxx:+-DCMAKE_CXX_COMPILER="$cxx"} >"$tmp/echo-configure.log" 2>&1 \
    || { cat "$tmp/echo-configure.log"; return 1; }
  cmake --build "$tmp/echo" >"$tmp/echo-build.log" 2>&1 || { cat "$tmp/echo-build.log"; return 1; }
}
check "contrib/echo-module configures and builds against the installed prefix" build_echo
check "the build produced libkeel-echo.so" test -f "$tmp/echo/libkeel-echo.so"
check "the module build used the installed headers, not the source tree" \
  bash -c "! grep -rq -- '$SRC/reactor/include' '$tmp/echo/build.ninja'"
if [ "$failed" -ne 0 ]; then finish; fi

# 3. Run the installed keeld with the module.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tmp/prefix/bin/keeld" --listen-client-urls "http://127.0.0.1:$port" --modules echo \
  --module-path "$tmp/echo" --echo.prefix 'hi: ' --shards 2 >"$tmp/keeld.log" 2>&1 &
keeld_pid=$!

python3 - "$port" "$keeld_pid" "$tmp/python-counts" <<'PY'
import json, os, re, socket, struct, sys, time, urllib.request

port, pid, counts_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = "http://127.0.0.1:%d" % port
passed = failed = 0

def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS: " + name, flush=True)
    else:
        failed += 1
        print("FAIL: " + name + (": " + detail if detail else ""), flush=True)

def get(path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return r.status, r.read().decode()

def alive():
    # keeld is the shell's child, not ours: look at its state (a zombie has exited).
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

ready = False
deadline = time.time() + 15
while time.time() < deadline and alive():
    try:
        ready = get("/health")[0] == 200
        break
    except OSError:
        time.sleep(0.05)
check("keeld with --modules echo serves /health", ready)
if not ready:
    open(counts_file, "w").write("%d %d\n" % (passed, failed))
    sys.exit(0)

def echo_counts():
    _, text = get("/metrics")
    return {int(s): int(v) for s, v in re.findall(r'^keel_echo_requests_total\{shard="(\d+)"\} (\d+)$', text, re.M)}

before = echo_counts()
check("/metrics has keel_echo_requests_total for shard 0 and 1", sorted(before) == [0, 1], repr(before))

status, body = get("/echo/world")
check("GET /echo/world answers 'hi: world'", status == 200 and body == "hi: world\n", repr((status, body)))

status, body = get("/echo-bus/x")
try:
    answer = json.loads(body)
except ValueError:
    answer = {}
check("GET /echo-bus/x answers JSON with text 'hi: x'", status == 200 and answer.get("text") == "hi: x", repr(body))
check("GET /echo-bus/x went to another shard (from_shard != to_shard)",
      "from_shard" in answer and "to_shard" in answer and answer["from_shard"] != answer["to_shard"], repr(body))

# --- native frames (docs/formats/frame.md) ---
def make_crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table
CRC_TABLE = make_crc_table()

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

check("CRC-32C of '123456789' is 0xE3069283", crc32c(b"123456789") == 0xE3069283)

MAGIC, HEADER = 0x4C454BC7, struct.Struct("<IBBHQII")
END_OF_STREAM, ERROR = 0x01, 0x02

def frame(type_, request_id, payload, flags=END_OF_STREAM):
    padding = b"\0" * (-len(payload) % 8)
    head = HEADER.pack(MAGIC, 1, flags, type_, request_id, len(payload), 0)[:20]
    return head + struct.pack("<I", crc32c(head + payload + padding)) + payload + padding

def echo_request(text, repeat=1):
    # table EchoRequest { text:string (slot 0, vtable offset 4); repeat:uint (slot 1, 6) }
    #   0: uoffset to the table (12)
    #   4: vtable: vtable bytes 8, table bytes 12, text at +4, repeat at +8
    #  12: table: soffset to the vtable (12 - 4 = 8), uoffset to the string, repeat
    #  24: string: length, bytes, NUL, padding to 4
    data = text.encode()
    buf = struct.pack("<I", 12) + struct.pack("<HHHH", 8, 12, 4, 8)
    buf += struct.pack("<iII", 8, 24 - 16, repeat)
    buf += struct.pack("<I", len(data)) + data + b"\0"
    return buf + b"\0" * (-len(buf) % 4)

def string_field(buf, slot):
    table = struct.unpack_from("<I", buf, 0)[0]
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_bytes = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * slot + 2 > vt_bytes:
        return None
    field = struct.unpack_from("<H", buf, vtable + 4 + 2 * slot)[0]
    if field == 0:
        return None
    at = table + field
    s = at + struct.unpack_from("<I", buf, at)[0]
    n = struct.unpack_from("<I", buf, s)[0]
    return buf[s + 4:s + 4 + n].decode()

def read_frames(sock, count):
    data, frames = b"", []
    sock.settimeout(5)
    while len(frames) < count:
        while len(data) >= 24:
            magic, version, flags, type_, rid, size, crc = HEADER.unpack_from(data, 0)
            total = 24 + size + (-size % 8)
            if len(data) < total:
                break
            body = data[24:total]
            frames.append(dict(magic=magic, version=version, flags=flags, type=type_, id=rid,
                               payload=body[:size], crc_ok=crc32c(data[:20] + body) == crc))
            data = data[total:]
        if len(frames) >= count:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return frames

try:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Two requests pipelined; answers may come back in any order.
        sock.sendall(frame(20, 0x1122334455667788, echo_request("native")) +
                     frame(20, 7, echo_request("second")))
        got = {f["id"]: f for f in read_frames(sock, 2)}
except OSError as e:
    got = {}
    print("native connection failed: %r" % e)

for rid, text in ((0x1122334455667788, "native"), (7, "second")):
    f = got.get(rid)
    check("native EchoRequest id %#x gets a frame with the same request id" % rid, f is not None, repr(sorted(got)))
    if f is None:
        continue
    check("  its header: magic, version 1, end_of_stream without error, valid CRC-32C",
          f["magic"] == MAGIC and f["version"] == 1 and f["flags"] == END_OF_STREAM and f["crc_ok"], repr(f))
    check("  it is an EchoResponse (type 21)", f["type"] == 21, "type %d" % f["type"])
    answer = string_field(f["payload"], 0) if f["type"] == 21 else None
    check("  its text is 'hi: %s'" % text, answer == "hi: " + text, repr(answer if f["type"] == 21 else f["payload"]))

after = echo_counts()
check("keel_echo_requests_total summed over shards increased by at least 4",
      sum(after.values()) >= sum(before.values()) + 4, "%r -> %r" % (before, after))
check("keeld is still running", alive())
open(counts_file, "w").write("%d %d\n" % (passed, failed))
PY
if read -r py_passed py_failed <"$tmp/python-counts" 2>/dev/null; then
  passed=$((passed + py_passed))
  failed=$((failed + py_failed))
else
  echo "FAIL: the Python checks did not finish"
  failed=$((failed + 1))
fi

# 4. SIGTERM: keeld stops its shards and modules and exits 0.
stopped_ok() {
  kill -0 "$keeld_pid" 2>/dev/null || return 1
  kill -TERM "$keeld_pid"
  for _ in $(seq 1 100); do
    kill -0 "$keeld_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$keeld_pid" 2>/dev/null; then
    echo "keeld did not exit within 10 s of SIGTERM"
    return 1
  fi
  wait "$keeld_pid"
  local rc=$?
  keeld_pid=
  [ "$rc" -eq 0 ] || { echo "keeld exited with status $rc"; return 1; }
}
check "SIGTERM: keeld exits 0" stopped_ok
check "keeld logged the module start and the shutdown" \
  bash -c "grep -q 'started with prefix \"hi: \"' '$tmp/keeld.log' && grep -q 'keeld: stopped' '$tmp/keeld.log'"
if [ "$failed" -ne 0 ]; then
  echo "--- keeld log ($tmp/keeld.log) ---"
  cat "$tmp/keeld.log"
fi
finish
