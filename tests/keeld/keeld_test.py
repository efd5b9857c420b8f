#!/usr/bin/env python3
"""End-to-end tests for keeld, the keel daemon.

Usage: keeld_test.py PATH_TO_KEELD [unittest args...]

Each test starts its own keeld on a free loopback port, in a fresh temporary working
directory, with an environment cleared of ETCD_*/KEEL_*/NOTIFY_SOCKET/WATCHDOG_* variables,
and kills it in tearDown. Standard library only.
"""

import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

KEELD = None  # set from argv[1] in __main__

START_TIMEOUT = 5.0
HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------
# CRC-32C (Castagnoli), table-driven, reflected polynomial 0x82F63B78.


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------
# Native frames (docs/formats/frame.md)

FRAME_MAGIC = 0x4C454BC7
FRAME_HEADER = struct.Struct("<IBBHQI")  # magic, version, flags, type, request_id, payload_bytes
FLAG_END_OF_STREAM = 1
FLAG_ERROR = 2
TYPE_ERROR = 1
TYPE_HEALTH_REQUEST = 10
TYPE_HEALTH_RESPONSE = 11
TYPE_ECHO_REQUEST = 20

ERRC_INVALID_ARGUMENT = 1
ERRC_NOT_FOUND = 2
ERRC_CORRUPTION = 5
ERRC_UNSUPPORTED = 6

# A FlatBuffers buffer holding one empty table (what flatc --binary writes for `{}`):
# root uoffset 8 -> table at 8; vtable at 4 (size 4, table size 4); table soffset 4.
EMPTY_TABLE = bytes.fromhex("08000000" "04000400" "04000000")


def align8(n):
    return (n + 7) & ~7


def make_frame(ftype, request_id, payload, flags=FLAG_END_OF_STREAM, version=1, crc=None):
    padded = payload + b"\0" * (align8(len(payload)) - len(payload))
    head = FRAME_HEADER.pack(FRAME_MAGIC, version, flags, ftype, request_id, len(payload))
    if crc is None:
        crc = crc32c(head + padded)
    return head + struct.pack("<I", crc) + padded


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(out), n))
        out += chunk
    return bytes(out)


def read_frame(sock):
    """Reads one frame, checks its magic, version and CRC; returns a dict."""
    head = recv_exact(sock, 24)
    magic, version, flags, ftype, request_id, size = FRAME_HEADER.unpack(head[:20])
    (crc,) = struct.unpack("<I", head[20:24])
    if magic != FRAME_MAGIC:
        raise AssertionError("bad magic in response: %r" % head)
    if version != 1:
        raise AssertionError("bad version in response: %d" % version)
    padded = recv_exact(sock, align8(size))
    if crc32c(head[:20] + padded) != crc:
        raise AssertionError("bad CRC in response frame")
    if any(padded[size:]):
        raise AssertionError("non-zero padding in response frame")
    return {"flags": flags, "type": ftype, "id": request_id, "payload": padded[:size]}


class FlatTable:
    """Just enough of the FlatBuffers format to read scalars and strings of a root table."""

    def __init__(self, buf):
        self.buf = buf
        (root,) = struct.unpack_from("<I", buf, 0)
        self.pos = root
        (soff,) = struct.unpack_from("<i", buf, root)
        self.vtable = root - soff
        self.vt_size, self.tbl_size = struct.unpack_from("<HH", buf, self.vtable)

    def _field(self, index):
        entry = 4 + 2 * index
        if entry >= self.vt_size:
            return 0
        (off,) = struct.unpack_from("<H", self.buf, self.vtable + entry)
        return off

    def scalar(self, index, fmt, default=0):
        off = self._field(index)
        if not off:
            return default
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0]

    def string(self, index):
        off = self._field(index)
        if not off:
            return None
        where = self.pos + off
        (rel,) = struct.unpack_from("<I", self.buf, where)
        start = where + rel
        (length,) = struct.unpack_from("<I", self.buf, start)
        return self.buf[start + 4:start + 4 + length].decode("utf-8")


def decode_error(payload):
    t = FlatTable(payload)
    return t.scalar(0, "H"), t.string(1)


def decode_health(payload):
    t = FlatTable(payload)
    return {"healthy": bool(t.scalar(0, "B")), "version": t.string(1), "shards": t.scalar(2, "I")}


def wait_closed(sock, timeout=3.0):
    """True if the peer closes (EOF or reset) within timeout, discarding any bytes."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


# ---------------------------------------------------------------------------------
# HTTP over raw sockets (so pipelining, half requests and malformed input are possible)


class HttpReader:
    """Reads successive HTTP/1.1 responses (Content-Length bodies) from one socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        version, status = parts[0], int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return {"version": version, "status": status, "headers": headers, "body": body}


def http_get(port, path, timeout=5.0):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
        return HttpReader(s).read_response()


def parse_metrics(text):
    """{(name, labels-string): float} from Prometheus text; checks the line syntax."""
    values = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$')
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = line_re.match(line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        values[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return values


def metric_sum(values, name):
    return sum(v for (n, _), v in values.items() if n == name)


def metric_shards(values, name):
    return sorted(re.match(r'\{shard="(\d+)"\}', lab).group(1) for (n, lab) in values if n == name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("ETCD_") or k.startswith("KEEL_") or
                   k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"))}
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------------


class KeeldTestCase(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="keeld_test_")
        self.dir = self._tmp.name
        self.procs = []
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.out_file, p.err_file):
                f.close()
        self._tmp.cleanup()

    # -- helpers --------------------------------------------------------------------

    def run_keeld(self, *args, env=None, timeout=10):
        """Runs keeld to completion (for flags that make it exit)."""
        return subprocess.run([KEELD, *args], cwd=self.dir, env=clean_env(env),
                              capture_output=True, text=True, timeout=timeout)

    def write_file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def print_config(self, *args, env=None):
        r = self.run_keeld(*args, "--print-config", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def connect(self, port, timeout=5.0):
        s = socket.create_connection((HOST, port), timeout=timeout)
        self.socks.append(s)
        return s

    def log_text(self, proc):
        with open(proc.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def start(self, *args, shards=2, env=None, ports=1, wait_ready=True):
        """Starts keeld on `ports` free loopback ports; returns (proc, [ports]).

        Retries with other ports if one was taken between choosing and binding."""
        for attempt in range(5):
            chosen = [free_port() for _ in range(ports)]
            urls = ",".join("http://%s:%d" % (HOST, p) for p in chosen)
            argv = [KEELD, "--listen-client-urls", urls]
            if shards is not None:
                argv += ["--shards", str(shards)]
            argv += list(args)
            n = len(self.procs)
            out_path = os.path.join(self.dir, "keeld.%d.out" % n)
            err_path = os.path.join(self.dir, "keeld.%d.err" % n)
            out_file = open(out_path, "wb")
            err_file = open(err_path, "wb")
            proc = subprocess.Popen(argv, cwd=self.dir, env=clean_env(env),
                                    stdout=out_file, stderr=err_file)
            proc.out_file, proc.err_file, proc.err_path = out_file, err_file, err_path
            self.procs.append(proc)
            if not wait_ready:
                return proc, chosen
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                log = self.log_text(proc)
                if " ready: " in log:
                    return proc, chosen
                if proc.poll() is not None:
                    break
                time.sleep(0.01)
            log = self.log_text(proc)
            if proc.poll() is not None and "cannot listen for clients" in log:
                continue  # lost the port race; try again
            self.fail("keeld did not become ready (rc=%r):\n%s" % (proc.poll(), log))
        self.fail("could not find a free port for keeld")

    def stop(self, proc, sig=signal.SIGTERM, within=1.0):
        """Sends sig, asserts keeld exits 0 within `within` seconds; returns the log."""
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=within + 4)
        except subprocess.TimeoutExpired:
            self.fail("keeld did not exit after %s:\n%s" % (sig, self.log_text(proc)))
        elapsed = time.monotonic() - t0
        log = self.log_text(proc)
        self.assertEqual(rc, 0, log)
        self.assertLess(elapsed, within, "keeld took %.3fs to stop" % elapsed)
        return log

    def assert_serving(self, port):
        r = http_get(port, "/health")
        self.assertEqual(r["status"], 200)
        self.assertEqual(json.loads(r["body"]), {"health": "true"})

    def assert_config_error(self, result, *needles):
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertTrue(result.stderr.startswith("keeld: "), result.stderr)
        for needle in needles:
            self.assertIn(needle, result.stderr)


# ---------------------------------------------------------------------------------
# Command line, environment and config file


class CommandLineTest(KeeldTestCase):

    def test_version_flag_prints_versions_and_exits_0(self):
        r = self.run_keeld("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("keeld Version: 0.1.0", r.stdout)
        self.assertIn("etcd API Version: 3.4.23", r.stdout)

    def test_help_flag_prints_flag_list_and_exits_0(self):
        for flag in ("--help", "-h"):
            r = self.run_keeld(flag)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("Usage: keeld", r.stdout)
            for key in ("--listen-client-urls", "--shards", "--modules", "--module-path",
                        "--log-level", "--print-config", "--config"):
                self.assertIn(key, r.stdout)

    def test_print_config_fills_every_default(self):
        conf = self.print_config()
        self.assertEqual(conf, {
            "name": "default",
            "data-dir": "",
            "listen-client-urls": ["http://127.0.0.1:2379"],
            "advertise-client-urls": ["http://127.0.0.1:2379"],
            "listen-peer-urls": ["http://127.0.0.1:2380"],
            "initial-advertise-peer-urls": ["http://localhost:2380"],
            "initial-cluster": "default=http://localhost:2380",
            "initial-cluster-state": "new",
            "initial-cluster-token": "etcd-cluster",
            "heartbeat-interval": 100,
            "election-timeout": 1000,
            "discovery": "",
            "discovery-proxy": "",
            "discovery-srv": "",
            "discovery-srv-name": "",
            "discovery-fallback": "proxy",
            "proxy": "off",
            "proxy-failure-wait": 5000,
            "proxy-refresh-interval": 30000,
            "proxy-dial-timeout": 1000,
            "proxy-write-timeout": 5000,
            "proxy-read-timeout": 0,
            "snapshot-count": 100000,
            "shards": 0,
            "modules": ["kv"],
            "module-path": [],
            "log-level": "info",
            "max-request-bytes": 1572864,
            "enable-v2": True,
            "native-port-enabled": True,
            "kv": {"dir": "", "snapshot-count": 100000, "wal-segment-bytes": 67108864},
        })

    def test_print_config_output_is_a_config_file_giving_the_same_config(self):
        r = self.run_keeld("--name", "round", "--shards", "3", "--print-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        path = self.write_file("printed.json", r.stdout)
        self.assertEqual(self.print_config("--config", path), json.loads(r.stdout))

    def test_name_precedence_is_flag_then_env_then_file_then_default(self):
        path = self.write_file("keel.json", '{\n  "name": "from-file"\n}\n')
        self.assertEqual(self.print_config()["name"], "default")
        self.assertEqual(self.print_config("--config", path)["name"], "from-file")
        self.assertEqual(self.print_config("--config", path, env={"ETCD_NAME": "from-etcd-env"})["name"],
                         "from-etcd-env")
        both = {"ETCD_NAME": "from-etcd-env", "KEEL_NAME": "from-keel-env"}
        self.assertEqual(self.print_config("--config", path, env=both)["name"], "from-keel-env")
        self.assertEqual(self.print_config("--config", path, "--name", "from-flag", env=both)["name"],
                         "from-flag")
        # The file may also be named by the environment.
        self.assertEqual(self.print_config(env={"KEEL_CONFIG": path})["name"], "from-file")

    def test_flag_forms_single_and_double_dash_with_space_or_equals(self):
        for argv in (["-name", "x"], ["-name=x"], ["--name", "x"], ["--name=x"]):
            self.assertEqual(self.print_config(*argv)["name"], "x", argv)

    def test_last_occurrence_of_a_flag_wins(self):
        self.assertEqual(self.print_config("--name", "a", "-name", "b")["name"], "b")

    def test_list_flag_replaces_the_file_list(self):
        path = self.write_file("keel.json", '{"listen-client-urls": ["http://127.0.0.1:1", "http://127.0.0.1:2"]}')
        conf = self.print_config("--config", path, "--listen-client-urls", " http://127.0.0.1:3 ")
        self.assertEqual(conf["listen-client-urls"], ["http://127.0.0.1:3"])

    def test_unknown_flag_is_an_error(self):
        r = self.run_keeld("--shard", "2")
        self.assert_config_error(r, "unknown flag: --shard", "--shards")

    def test_flag_without_argument_is_an_error(self):
        self.assert_config_error(self.run_keeld("--name"), "flag needs an argument: --name")

    def test_bad_flag_value_names_flag_and_pointer(self):
        self.assert_config_error(self.run_keeld("--log-level", "loud"), "flag --log-level", "/log-level", "loud")
        self.assert_config_error(self.run_keeld("--shards", "65"), "flag --shards", "/shards", "64")

    def test_unknown_etcd_and_keel_env_variables_are_errors(self):
        self.assert_config_error(self.run_keeld("--print-config", env={"ETCD_NO_SUCH_KEY": "1"}),
                                 "ETCD_NO_SUCH_KEY")
        self.assert_config_error(self.run_keeld("--print-config", env={"KEEL_NO_SUCH_KEY": "1"}),
                                 "KEEL_NO_SUCH_KEY")

    def test_etcdctl_and_keel_test_env_variables_are_ignored(self):
        self.print_config(env={"ETCDCTL_API": "3", "KEEL_TEST_WHATEVER": "1", "ETCD_UNSUPPORTED_ARCH": "arm"})

    def test_env_value_is_converted_and_validated(self):
        self.assertEqual(self.print_config(env={"ETCD_SHARDS": "3"})["shards"], 3)
        self.assert_config_error(self.run_keeld("--print-config", env={"ETCD_SHARDS": "65"}),
                                 "env ETCD_SHARDS", "/shards")

    def test_config_file_wrong_type_names_file_line_and_pointer(self):
        path = self.write_file("keel.json", '{\n  "name": "n",\n  "shards": "two"\n}\n')
        r = self.run_keeld("--config", path)
        self.assert_config_error(r, path + ":3", "/shards", "expected integer")

    def test_config_file_unknown_key_names_file_line_and_suggestion(self):
        path = self.write_file("keel.json", '{\n  "shardz": 2\n}\n')
        r = self.run_keeld("--config", path)
        self.assert_config_error(r, path + ":2", "/shardz", "shards")

    def test_config_file_syntax_error_names_file_line(self):
        path = self.write_file("keel.json", '{\n  "name": "n",\n  "shards": 2,\n}\n')
        r = self.run_keeld("--config", path)
        self.assert_config_error(r, path + ":")

    def test_missing_config_file_is_an_error(self):
        r = self.run_keeld("--config", os.path.join(self.dir, "absent.json"))
        self.assert_config_error(r, "absent.json")

    def test_unknown_module_names_library_and_searched_directories(self):
        extra = os.path.join(self.dir, "mods")
        os.mkdir(extra)
        r = self.run_keeld("--modules", "nosuch", "--module-path", extra)
        self.assert_config_error(r, "libkeel-nosuch.so", extra)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


# ---------------------------------------------------------------------------------
# Start-up and shutdown


class LifecycleTest(KeeldTestCase):

    def test_sigterm_exits_0_within_one_second_and_logs(self):
        proc, (port,) = self.start()
        idle = self.connect(port)  # an idle keep-alive connection must not delay the stop
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        HttpReader(idle).read_response()
        half = self.connect(port)
        half.sendall(b"GET /health HTTP/1.1\r\nHo")
        log = self.stop(proc, signal.SIGTERM)
        self.assertIn("received Terminated, shutting down", log)
        self.assertIn("stopped", log)
        self.assertLess(log.index("shutting down"), log.index("stopped"))

    def test_sigint_exits_0_within_one_second_and_logs(self):
        proc, (port,) = self.start()
        self.assert_serving(port)
        log = self.stop(proc, signal.SIGINT)
        self.assertIn("received Interrupt, shutting down", log)
        self.assertIn("stopped", log)

    def test_listens_on_every_comma_separated_url(self):
        proc, ports = self.start(ports=2)
        for port in ports:
            self.assert_serving(port)
        self.stop(proc)

    def test_port_already_in_use_is_one_clear_error(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socks.append(blocker)
        blocker.bind((HOST, 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        r = self.run_keeld("--listen-client-urls", "http://%s:%d" % (HOST, port))
        self.assert_config_error(r, "cannot listen for clients", "(listening: pid %d (" % os.getpid())

    def test_a_second_keeld_on_the_same_client_port_is_refused(self):
        # Every shard listens with SO_REUSEPORT; a second keeld (same user) must still
        # not join the first one's port and take half of its clients.
        proc, (port,) = self.start()
        r = self.run_keeld("--listen-client-urls", "http://%s:%d" % (HOST, port), "--data-dir", "second")
        self.assert_config_error(r, "cannot listen for clients", "Address already in use",
                                 "(listening: pid %d (keeld))" % proc.pid)
        self.assert_serving(port)
        self.stop(proc)

    def test_a_second_member_on_the_same_peer_port_is_refused(self):
        peer = free_port()
        cluster = "a=http://%s:%d,b=http://%s:%d" % (HOST, peer, HOST, free_port())
        member = ["--name", "a", "--listen-peer-urls", "http://%s:%d" % (HOST, peer),
                  "--initial-advertise-peer-urls", "http://%s:%d" % (HOST, peer), "--initial-cluster", cluster]
        proc, (port,) = self.start(*member, "--data-dir", "first")
        r = self.run_keeld("--listen-client-urls", "http://%s:%d" % (HOST, free_port()), "--data-dir", "second",
                           *member)
        self.assert_config_error(r, "cannot listen for peers", "listen-peer-urls http://%s:%d" % (HOST, peer),
                                 "Address already in use", "(listening: pid %d (keeld))" % proc.pid)
        self.stop(proc)

    def test_a_data_dir_that_cannot_be_one_is_named_plainly(self):
        # It was reported as a bad "proxy cluster file" under it.
        afile = self.write_file("afile", "x")
        r = self.run_keeld("--data-dir", afile, "--listen-client-urls", "http://%s:%d" % (HOST, free_port()))
        self.assert_config_error(r, "the data dir %s is not a directory" % afile)
        r = self.run_keeld("--data-dir", os.path.join(afile, "below"), "--listen-client-urls",
                           "http://%s:%d" % (HOST, free_port()))
        self.assert_config_error(r, "the data dir %s: Not a directory" % os.path.join(afile, "below"))
        long_name = os.path.join(self.dir, "n" * 300)
        r = self.run_keeld("--data-dir", long_name, "--listen-client-urls", "http://%s:%d" % (HOST, free_port()))
        self.assert_config_error(r, "the data dir %s: File name too long" % long_name)

    def test_advertised_peer_urls_must_match_this_members_initial_cluster_entry(self):
        # etcd's advertiseMatchesCluster: the others would dial an address nobody answers on.
        listed, advertised = "http://%s:%d" % (HOST, free_port()), "http://%s:%d" % (HOST, free_port())
        r = self.run_keeld("--name", "x1", "--data-dir", "x1", "--listen-client-urls", "http://%s:%d" % (HOST, free_port()),
                           "--listen-peer-urls", advertised, "--initial-advertise-peer-urls", advertised,
                           "--initial-cluster", "x1=%s,y2=http://%s:%d" % (listed, HOST, free_port()))
        self.assert_config_error(r, "--initial-cluster has x1=%s but missing from --initial-advertise-peer-urls=%s"
                                 % (listed, advertised))

    def test_discovery_and_an_initial_cluster_given_together_are_refused(self):
        # etcd's ErrConflictBootstrapFlags; before, keel let --discovery win silently.
        r = self.run_keeld("--discovery", "http://%s:%d/token" % (HOST, free_port()),
                           "--initial-cluster", "a=http://%s:%d" % (HOST, free_port()))
        self.assert_config_error(r, "flag --initial-cluster: /initial-cluster and flag --discovery: /discovery: "
                                 "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", "
                                 "\"discovery\" or \"discovery-srv\"")

    def test_a_single_node_names_itself_by_its_flags_in_v2_members_and_stats(self):
        # One member in --initial-cluster runs without Raft; /v2/members used to call it
        # "default" with a peer URL on port 2380 whatever the flags said.
        peer = "http://%s:%d" % (HOST, free_port())
        proc, (port,) = self.start("--name", "solo", "--initial-advertise-peer-urls", peer,
                                   "--initial-cluster", "solo=" + peer, "--data-dir", "solo")
        members = json.loads(http_get(port, "/v2/members")["body"])["members"]
        self.assertEqual([(m["name"], m["peerURLs"]) for m in members], [("solo", [peer])])
        self.assertEqual(members[0]["clientURLs"], ["http://localhost"])  # where the client reached it
        leader = json.loads(http_get(port, "/v2/members/leader")["body"])
        self.assertEqual((leader["name"], leader["id"]), ("solo", members[0]["id"]))
        me = json.loads(http_get(port, "/v2/stats/self")["body"])
        self.assertEqual((me["name"], me["id"], me["state"], me["leaderInfo"]["leader"]),
                         ("solo", members[0]["id"], "StateLeader", members[0]["id"]))
        self.stop(proc)

    def test_shards_1_serves_and_metrics_show_only_shard_0(self):
        proc, (port,) = self.start(shards=1)
        self.assert_serving(port)
        r = http_get(port, "/metrics")
        self.assertEqual(r["status"], 200)
        values = parse_metrics(r["body"].decode())
        self.assertEqual(metric_shards(values, "keel_reactor_loop_turns_total"), ["0"])
        self.assertNotIn('shard="1"', r["body"].decode())
        self.stop(proc)

    def test_native_port_disabled_serves_frames_as_http(self):
        proc, (port,) = self.start("--native-port-enabled=false")
        s = self.connect(port)
        s.sendall(make_frame(TYPE_HEALTH_REQUEST, 1, EMPTY_TABLE))
        self.assertEqual(HttpReader(s).read_response()["status"], 400)
        self.assert_serving(port)
        self.stop(proc)

    def test_default_shards_is_one_per_core(self):
        proc, (port,) = self.start(shards=None)
        values = parse_metrics(http_get(port, "/metrics")["body"].decode())
        cores = os.cpu_count()
        self.assertEqual(metric_shards(values, "keel_reactor_loop_turns_total"),
                         sorted(str(i) for i in range(cores)))
        self.assertIn("ready: %d shard(s)" % cores, self.log_text(proc))

    def _notify_socket(self):
        path = os.path.join(self.dir, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socks.append(s)
        s.bind(path)
        return s, path

    def _notify_messages(self, sock, until, timeout):
        """Collects datagrams until one contains `until` or timeout passes."""
        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            got.append(sock.recv(4096).decode())
            if until and until in got[-1]:
                break
        return got

    def test_notify_socket_gets_ready_then_stopping(self):
        sock, path = self._notify_socket()
        proc, (port,) = self.start(env={"NOTIFY_SOCKET": path}, wait_ready=False)
        got = self._notify_messages(sock, "READY=1", START_TIMEOUT)
        self.assertTrue(got and "READY=1" in got[-1], got)
        # READY means listening: a request right now is answered.
        self.assert_serving(port)
        proc.send_signal(signal.SIGTERM)
        got = self._notify_messages(sock, "STOPPING=1", 2.0)
        self.assertTrue(got and "STOPPING=1" in got[-1], got)
        self.assertEqual(proc.wait(timeout=5), 0)

    def test_watchdog_pings_every_half_interval(self):
        sock, path = self._notify_socket()
        proc, _ = self.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}, wait_ready=False)
        self._notify_messages(sock, "READY=1", START_TIMEOUT)
        t0 = time.monotonic()
        got = self._notify_messages(sock, None, 0.75)
        pings = [m for m in got if "WATCHDOG=1" in m]
        # every 100 ms: about 7 in 0.75 s; allow slack for a busy machine
        self.assertGreaterEqual(len(pings), 4, got)
        self.assertLessEqual(len(pings), 10, got)
        self.stop(proc)

    def test_no_watchdog_pings_without_watchdog_usec(self):
        sock, path = self._notify_socket()
        proc, _ = self.start(env={"NOTIFY_SOCKET": path}, wait_ready=False)
        self._notify_messages(sock, "READY=1", START_TIMEOUT)
        got = self._notify_messages(sock, None, 0.3)
        self.assertFalse([m for m in got if "WATCHDOG=1" in m], got)
        self.stop(proc)

    def test_io_uring_refused_is_one_clear_line_and_exit_1(self):
        knob = "/proc/sys/kernel/io_uring_disabled"
        try:
            with open(knob) as f:
                old = f.read().strip()
        except OSError:
            self.skipTest("kernel.io_uring_disabled does not exist")
        try:
            try:
                with open(knob, "w") as f:
                    f.write("2")
            except OSError as e:
                self.skipTest("cannot write kernel.io_uring_disabled: %s" % e)
            r = self.run_keeld("--listen-client-urls", "http://%s:%d" % (HOST, free_port()))
        finally:
            try:
                with open(knob, "w") as f:
                    f.write(old)
            except OSError:
                pass
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("keeld: "), r.stderr)
        self.assertIn("io_uring", lines[0])


# ---------------------------------------------------------------------------------
# HTTP


class HttpTest(KeeldTestCase):

    def setUp(self):
        super().setUp()
        self.proc, (self.port,) = self.start("--max-request-bytes", "1024")

    def test_version_returns_etcd_and_keel_versions(self):
        r = http_get(self.port, "/version")
        self.assertEqual(r["status"], 200)
        self.assertEqual(r["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(r["body"]),
                         {"etcdserver": "3.4.23", "etcdcluster": "3.4.0", "keel": "0.1.0"})

    def test_health_returns_true(self):
        r = http_get(self.port, "/health")
        self.assertEqual(r["status"], 200)
        self.assertEqual(json.loads(r["body"]), {"health": "true"})

    def test_metrics_has_per_shard_reactor_counters_and_resident_memory(self):
        r = http_get(self.port, "/metrics")
        self.assertEqual(r["status"], 200)
        self.assertTrue(r["headers"]["content-type"].startswith("text/plain"), r["headers"])
        text = r["body"].decode()
        values = parse_metrics(text)
        for name in ("keel_reactor_loop_turns_total", "keel_reactor_completions_total",
                     "keel_reactor_connections_accepted_total", "keel_reactor_connections_open",
                     "keel_http_requests_total"):
            self.assertEqual(metric_shards(values, name), ["0", "1"], name)
            self.assertIn("# TYPE %s " % name, text)
        self.assertGreater(values[("process_resident_memory_bytes", "")], 1024 * 1024)

    def test_metrics_counters_increase_after_requests(self):
        before = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
        for _ in range(10):
            http_get(self.port, "/version")
        after = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
        for name in ("keel_http_requests_total", "keel_reactor_connections_accepted_total"):
            self.assertGreaterEqual(metric_sum(after, name) - metric_sum(before, name), 11, name)
        for name in ("keel_reactor_received_bytes_total", "keel_reactor_sent_bytes_total",
                     "keel_reactor_completions_total"):
            self.assertGreater(metric_sum(after, name), metric_sum(before, name), name)

    def test_single_node_shows_etcds_server_and_wal_metrics(self):
        # A single node leads itself, as a one-member etcd does; each durable write moves
        # committed and applied together and lands in etcd's WAL fsync histogram. Until
        # the WAL is open (just after the start) it says it has no leader, as etcd before
        # its election.
        deadline = time.monotonic() + 10
        while True:
            before = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
            if before[("etcd_server_has_leader", "")] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.assertEqual(before[("etcd_server_has_leader", "")], 1)
        self.assertEqual(before[("etcd_server_is_leader", "")], 1)
        self.assertEqual(before[("etcd_server_is_learner", "")], 0)
        self.assertEqual(before[("etcd_server_leader_changes_seen_total", "")], 1)
        self.assertEqual(before[("etcd_server_version", '{server_version="3.4.23"}')], 1)
        for i in range(5):
            body = "value=v%d" % i
            with socket.create_connection((HOST, self.port), timeout=5) as sock:
                sock.sendall(("PUT /v2/keys/metrics/k%d HTTP/1.1\r\nHost: localhost\r\n"
                              "Content-Type: application/x-www-form-urlencoded\r\n"
                              "Content-Length: %d\r\n\r\n%s" % (i, len(body), body)).encode())
                self.assertEqual(HttpReader(sock).read_response()["status"], 201)
        after = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
        committed = after[("etcd_server_proposals_committed_total", "")]
        self.assertEqual(committed - before[("etcd_server_proposals_committed_total", "")], 5)
        self.assertEqual(after[("etcd_server_proposals_applied_total", "")], committed)
        self.assertEqual(after[("etcd_server_proposals_pending", "")], 0)
        self.assertEqual(after[("etcd_server_proposals_failed_total", "")], 0)
        syncs = (after[("etcd_disk_wal_fsync_duration_seconds_count", "")] -
                 before[("etcd_disk_wal_fsync_duration_seconds_count", "")])
        self.assertTrue(1 <= syncs <= 5, syncs)  # one client: one sync per write, or fewer
        self.assertEqual(after[("etcd_disk_wal_fsync_duration_seconds_bucket", '{le="+Inf"}')],
                         after[("etcd_disk_wal_fsync_duration_seconds_count", "")])
        self.assertGreater(after[("etcd_disk_wal_write_bytes_total", "")],
                           before[("etcd_disk_wal_write_bytes_total", "")])

    def test_unknown_path_is_404_json(self):
        r = http_get(self.port, "/no/such/path")
        self.assertEqual(r["status"], 404)
        body = json.loads(r["body"])
        self.assertIn("message", body)
        self.assertIn("/no/such/path", body["message"])

    def test_wrong_method_is_405_with_allow(self):
        s = self.connect(self.port)
        s.sendall(b"DELETE /version HTTP/1.1\r\nHost: x\r\n\r\n")
        r = HttpReader(s).read_response()
        self.assertEqual(r["status"], 405)
        self.assertEqual(r["headers"].get("allow"), "GET")
        self.assertIn("message", json.loads(r["body"]))

    def test_malformed_request_is_400_and_connection_closes(self):
        s = self.connect(self.port)
        s.sendall(b"GET /version HTTP/1.1\r\nNo colon here\r\n\r\n")
        reader = HttpReader(s)
        r = reader.read_response()
        self.assertEqual(r["status"], 400)
        self.assertIn("message", json.loads(r["body"]))
        self.assertEqual(reader.buf, b"")
        self.assertTrue(wait_closed(s))
        self.assert_serving(self.port)

    # A body may exceed max-request-bytes (1024 here) by a third and 512 KiB (the v3
    # gateway's base64 and JSON; the store limits the request itself): over that, 413.
    OVER = 1024 + 1024 // 3 + 512 * 1024 + 1

    def test_body_over_max_request_bytes_is_413(self):
        s = self.connect(self.port)
        s.sendall(b"POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % self.OVER)
        r = HttpReader(s).read_response()
        self.assertEqual(r["status"], 413)
        self.assertIn("message", json.loads(r["body"]))
        self.assertTrue(wait_closed(s))

    def test_body_over_max_request_bytes_sent_with_its_body_is_413(self):
        s = self.connect(self.port)
        try:
            s.sendall(b"POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % self.OVER +
                      b"x" * self.OVER)
        except OSError:
            pass  # the server may close before taking the whole body
        self.assertEqual(HttpReader(s).read_response()["status"], 413)
        self.assert_serving(self.port)

    def test_refused_requests_count_as_malformed_in_metrics(self):
        before = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
        for _ in range(3):
            s = self.connect(self.port)
            s.sendall(b"BAD\x01 / HTTP/1.1\r\n\r\n")
            self.assertEqual(HttpReader(s).read_response()["status"], 400)
        after = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
        name = "keel_http_malformed_requests_total"
        self.assertEqual(metric_sum(after, name) - metric_sum(before, name), 3)

    def test_open_connections_gauge_follows_clients(self):
        # Ask over one keep-alive connection, so no closed-but-not-yet-reaped asker counts.
        asker = self.connect(self.port)
        reader = HttpReader(asker)

        def open_now():
            asker.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            values = parse_metrics(reader.read_response()["body"].decode())
            return metric_sum(values, "keel_reactor_connections_open") - 1  # minus the asker
        deadline = time.monotonic() + 2
        while open_now() != 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # let connections of earlier tests' setUp drain
        base = open_now()
        clients = [self.connect(self.port) for _ in range(10)]
        for c in clients:  # make sure each was accepted and served
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            HttpReader(c).read_response()
        self.assertEqual(open_now(), base + 10)
        for c in clients:
            c.close()
        deadline = time.monotonic() + 2
        now = open_now()
        while now != base and time.monotonic() < deadline:
            time.sleep(0.02)
            now = open_now()
        self.assertEqual(now, base)

    def test_chunked_body_over_max_request_bytes_is_413(self):
        s = self.connect(self.port)
        chunk = b"a" * self.OVER
        s.sendall(b"POST /version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                  b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        r = HttpReader(s).read_response()
        self.assertEqual(r["status"], 413)

    def test_body_within_max_request_bytes_is_routed(self):
        s = self.connect(self.port)
        size = self.OVER - 1
        s.sendall(b"POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        r = HttpReader(s).read_response()
        self.assertEqual(r["status"], 405)  # got past the size check to the router

    def test_headers_over_64k_is_431(self):
        s = self.connect(self.port)
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (65 * 1024) + b"\r\n\r\n")
        r = HttpReader(s).read_response()
        self.assertEqual(r["status"], 431)
        self.assertTrue(wait_closed(s))
        self.assert_serving(self.port)

    def test_pipelined_requests_are_answered_in_order(self):
        s = self.connect(self.port)
        paths = ["/version", "/health", "/nope", "/metrics", "/version", "/health"]
        req = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths)
        req += b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        s.sendall(req)
        reader = HttpReader(s)
        got = [reader.read_response() for _ in range(len(paths) + 1)]
        self.assertEqual([r["status"] for r in got], [200, 200, 404, 200, 200, 200, 200])
        self.assertIn(b"etcdserver", got[0]["body"])
        self.assertIn(b"health", got[1]["body"])
        self.assertIn(b"/nope", got[2]["body"])
        self.assertIn(b"keel_reactor_loop_turns_total", got[3]["body"])
        self.assertIn(b"etcdserver", got[4]["body"])
        self.assertIn(b"health", got[5]["body"])
        self.assertEqual(got[6]["headers"].get("connection", "").lower(), "close")
        self.assertTrue(wait_closed(s))

    def test_pipelined_requests_split_across_segments_are_answered(self):
        s = self.connect(self.port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(0, len(req), 7):
            s.sendall(req[i:i + 7])
            time.sleep(0.002)
        reader = HttpReader(s)
        self.assertIn(b"etcdserver", reader.read_response()["body"])
        self.assertIn(b"health", reader.read_response()["body"])

    def test_http_1_0_request_is_answered_and_closed(self):
        s = self.connect(self.port)
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        r = HttpReader(s).read_response()
        self.assertEqual(r["status"], 200)
        self.assertTrue(wait_closed(s))

    def test_500_concurrent_connections_are_all_answered(self):
        socks = []
        for _ in range(500):
            socks.append(self.connect(self.port, timeout=10))
        for s in socks:
            s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        for i, s in enumerate(socks):
            r = HttpReader(s).read_response()
            self.assertEqual(r["status"], 200, i)
            self.assertIn(b"etcdserver", r["body"])
        values = parse_metrics(http_get(self.port, "/metrics")["body"].decode())
        self.assertGreaterEqual(metric_sum(values, "keel_reactor_connections_open"), 500)

    def test_half_request_then_disconnect_does_not_disturb_others(self):
        # A client that stalls mid-request, one that leaves mid-request, and one that
        # leaves mid-frame: the others are served throughout.
        stalled = self.connect(self.port)
        stalled.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nX-Partial: ab")
        keeper = self.connect(self.port)
        keeper.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        kreader = HttpReader(keeper)
        self.assertEqual(kreader.read_response()["status"], 200)
        for _ in range(20):
            leaver = socket.create_connection((HOST, self.port), timeout=5)
            leaver.sendall(b"GET /version HTTP/1.1\r\nHo")
            leaver.close()
            self.assert_serving(self.port)
        leaver = socket.create_connection((HOST, self.port), timeout=5)
        leaver.sendall(make_frame(TYPE_HEALTH_REQUEST, 1, EMPTY_TABLE)[:30])
        leaver.close()
        # RST instead of FIN
        rst = socket.create_connection((HOST, self.port), timeout=5)
        rst.sendall(b"GET /version HTTP/1.1\r\nHo")
        rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rst.close()
        self.assert_serving(self.port)
        keeper.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(kreader.read_response()["status"], 200)
        # The stalled client can still finish its request.
        stalled.sendall(b"c\r\n\r\n")
        r = HttpReader(stalled).read_response()
        self.assertEqual(r["status"], 200)
        self.assertIn(b"etcdserver", r["body"])
        self.assertIsNone(self.proc.poll())


# ---------------------------------------------------------------------------------
# Native protocol


class NativeTest(KeeldTestCase):

    def setUp(self):
        super().setUp()
        self.proc, (self.port,) = self.start()

    def test_crc32c_check_value(self):
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)

    def test_health_request_gets_health_response(self):
        s = self.connect(self.port)
        s.sendall(make_frame(TYPE_HEALTH_REQUEST, 0x1122334455667788, EMPTY_TABLE))
        f = read_frame(s)
        self.assertEqual(f["type"], TYPE_HEALTH_RESPONSE)
        self.assertEqual(f["id"], 0x1122334455667788)
        self.assertEqual(f["flags"], FLAG_END_OF_STREAM)
        self.assertEqual(decode_health(f["payload"]), {"healthy": True, "version": "0.1.0", "shards": 2})

    def test_pipelined_health_requests_each_answered_by_id(self):
        s = self.connect(self.port)
        ids = list(range(1, 51))
        s.sendall(b"".join(make_frame(TYPE_HEALTH_REQUEST, i, EMPTY_TABLE) for i in ids))
        got = [read_frame(s) for _ in ids]
        self.assertEqual(sorted(f["id"] for f in got), ids)
        self.assertTrue(all(f["type"] == TYPE_HEALTH_RESPONSE for f in got))

    def test_frame_sent_byte_by_byte_is_answered(self):
        s = self.connect(self.port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in make_frame(TYPE_HEALTH_REQUEST, 7, EMPTY_TABLE):
            s.sendall(bytes([b]))
            time.sleep(0.001)
        f = read_frame(s)
        self.assertEqual((f["type"], f["id"]), (TYPE_HEALTH_RESPONSE, 7))

    def _assert_error_then_close(self, data, errc, text):
        s = self.connect(self.port)
        s.sendall(data)
        f = read_frame(s)
        self.assertEqual(f["type"], TYPE_ERROR)
        self.assertEqual(f["id"], 0)
        self.assertEqual(f["flags"], FLAG_ERROR | FLAG_END_OF_STREAM)
        code, message = decode_error(f["payload"])
        self.assertEqual(code, errc, message)
        self.assertIn(text, message)
        self.assertTrue(wait_closed(s), "connection stayed open after the error frame")
        self.assert_serving(self.port)
        return message

    def test_bad_crc_gets_one_error_frame_then_close_and_server_keeps_serving(self):
        frame = make_frame(TYPE_HEALTH_REQUEST, 5, EMPTY_TABLE, crc=0xDEADBEEF)
        self._assert_error_then_close(frame, ERRC_CORRUPTION, "CRC-32C")

    def test_valid_frame_then_corrupt_frame_answers_first_then_errors(self):
        good = make_frame(TYPE_HEALTH_REQUEST, 1, EMPTY_TABLE)
        bad = bytearray(make_frame(TYPE_HEALTH_REQUEST, 2, EMPTY_TABLE))
        bad[30] ^= 0xFF
        s = self.connect(self.port)
        s.sendall(good + bytes(bad))
        first = read_frame(s)
        self.assertEqual((first["type"], first["id"]), (TYPE_HEALTH_RESPONSE, 1))
        err = read_frame(s)
        self.assertEqual((err["type"], err["id"]), (TYPE_ERROR, 0))
        self.assertIn("stream offset %d" % len(good), decode_error(err["payload"])[1])
        self.assertTrue(wait_closed(s))

    def test_unsupported_version_gets_error_frame(self):
        frame = make_frame(TYPE_HEALTH_REQUEST, 5, EMPTY_TABLE, version=2)
        self._assert_error_then_close(frame, ERRC_UNSUPPORTED, "version")

    def test_unknown_frame_type_gets_error_frame(self):
        self._assert_error_then_close(make_frame(9999, 5, EMPTY_TABLE), ERRC_INVALID_ARGUMENT, "9999")

    def test_reserved_flag_bits_get_error_frame(self):
        frame = make_frame(TYPE_HEALTH_REQUEST, 5, EMPTY_TABLE, flags=FLAG_END_OF_STREAM | 0x80)
        self._assert_error_then_close(frame, ERRC_INVALID_ARGUMENT, "flags")

    def test_payload_failing_flatbuffers_verifier_gets_error_frame(self):
        frame = make_frame(TYPE_HEALTH_REQUEST, 5, b"\xff\xff\xff\x7f\0\0\0\0")
        self._assert_error_then_close(frame, ERRC_CORRUPTION, "HealthRequest")

    def test_oversized_payload_length_gets_error_frame(self):
        head = FRAME_HEADER.pack(FRAME_MAGIC, 1, FLAG_END_OF_STREAM, TYPE_HEALTH_REQUEST, 5, 64 << 20)
        self._assert_error_then_close(head + b"\0\0\0\0", 8, "limit")

    def test_garbage_after_full_magic_gets_error_frame(self):
        data = struct.pack("<I", FRAME_MAGIC) + b"\x07" + os.urandom(19) + b"\0" * 8
        s = self.connect(self.port)
        s.sendall(data)
        f = read_frame(s)
        self.assertEqual(f["type"], TYPE_ERROR)
        self.assertTrue(wait_closed(s))
        self.assert_serving(self.port)

    def test_garbage_after_magic_byte_in_later_segment_gets_error_frame(self):
        # 0xC7 alone in the first segment: a native connection; the rest is not a frame.
        s = self.connect(self.port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"\xc7")
        time.sleep(0.1)
        s.sendall(b"garbage garbage garbage garbage!")
        f = read_frame(s)
        self.assertEqual((f["type"], f["id"]), (TYPE_ERROR, 0))
        self.assertIn("bad magic", decode_error(f["payload"])[1])
        self.assertTrue(wait_closed(s))
        self.assert_serving(self.port)

    # The protocol is chosen by the first byte alone: "\xc7garbage" arriving in one
    # segment must be treated exactly like the same bytes split after 0xC7.
    def test_garbage_after_magic_byte_gets_error_frame(self):
        # The connection starts with the frame's first byte 0xC7, so (frame.md, native.h)
        # it is a native connection; what follows is not a frame: one error frame, close.
        s = self.connect(self.port)
        s.sendall(b"\xc7" + b"garbage garbage garbage garbage!")
        head = s.recv(4)
        self.assertEqual(head[:1], b"\xc7",
                         "expected an error frame, got %r (served as HTTP?)" % (head + s.recv(4096)))
        self.assertTrue(wait_closed(s))

    def test_request_for_type_no_module_serves_gets_error_response_by_id(self):
        s = self.connect(self.port)
        s.sendall(make_frame(TYPE_ECHO_REQUEST, 42, EMPTY_TABLE))
        f = read_frame(s)
        self.assertEqual(f["id"], 42)
        self.assertEqual(f["flags"], FLAG_ERROR | FLAG_END_OF_STREAM)
        code, message = decode_error(f["payload"])
        self.assertEqual(code, ERRC_NOT_FOUND, message)
        # A per-request error does not close the connection.
        s.sendall(make_frame(TYPE_HEALTH_REQUEST, 43, EMPTY_TABLE))
        self.assertEqual(read_frame(s)["id"], 43)

    def test_native_and_http_clients_served_side_by_side(self):
        n = self.connect(self.port)
        n.sendall(make_frame(TYPE_HEALTH_REQUEST, 1, EMPTY_TABLE))
        self.assert_serving(self.port)
        self.assertEqual(read_frame(n)["id"], 1)
        n.sendall(make_frame(TYPE_HEALTH_REQUEST, 2, EMPTY_TABLE))
        self.assertEqual(read_frame(n)["id"], 2)

    def test_native_connection_open_at_sigterm_does_not_delay_stop(self):
        n = self.connect(self.port)
        n.sendall(make_frame(TYPE_HEALTH_REQUEST, 1, EMPTY_TABLE))
        read_frame(n)
        n.sendall(make_frame(TYPE_HEALTH_REQUEST, 2, EMPTY_TABLE)[:10])  # mid-frame
        self.stop(self.proc)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: keeld_test.py PATH_TO_KEELD [unittest args]")
    KEELD = os.path.abspath(sys.argv.pop(1))
    if not os.access(KEELD, os.X_OK):
        sys.exit("keeld_test.py: %s is not executable" % KEELD)
    unittest.main(verbosity=2)
