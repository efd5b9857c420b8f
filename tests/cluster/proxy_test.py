#!/usr/bin/env python3
"""keeld's v2 proxy mode (etcd 3.4's --proxy / --discovery-fallback proxy), end to end.

1. A keeld serving discovery (--modules=kv,discovery); GET /new?size=3 gives a token URL;
   three members started with only --discovery <url> form a cluster.
2. Every member's PEER port answers GET /members (etcd 3.4's peer /members: one object
   per member, numeric id, names, client URLs, X-Etcd-Cluster-ID) and GET /version.
3. A fourth keeld with the same token finds the cluster full and, with the default
   --discovery-fallback proxy, runs as a proxy: /v2/config/local/proxy lists the three
   client URLs; v2 and v3 requests, a v2 wait and stream, a v3 watch stream, a few-KB body go
   through it; /metrics is its own.
4. A fifth keeld with --discovery-fallback exit exits non-zero: "cluster is full".
5. kill -9 of a member: writes through the proxy keep succeeding (the member is skipped).
6. The proxy restarted (same command line, then with --discovery-fallback exit added) is
   a proxy again from <data-dir>/proxy/cluster.
7. --proxy readonly --initial-cluster <members>: GET works, PUT and POST are 501.
8. A proxy whose --initial-cluster has no live member: 503 "zero endpoints"; a proxy
   whose only endpoint (learnt from a fake peer /members) refuses connections: 502
   "unable to get response from 1 endpoint(s)", then 503 while it waits out the failure.
   8c. --proxy-dial-timeout 500: of two endpoints, one a listener whose full accept queue
   drops every SYN (a dead machine), every request still succeeds, the one that tried the
   dead endpoint first within ~0.5 s more, and the dead one is left out afterwards.
   8d. --proxy-read-timeout 500: the same with an endpoint that accepts and never answers.
9. A real etcd 3.4 with the same token falls back to etcd's own proxy, which reads keel's
   peer /members: a v2 PUT through it lands on the keel cluster. Skipped (printed "skip")
   when etcd is missing; the test then exits 77 if nothing failed.
10. A misbehaving member (a fake one in Python: /members on its peer port, raw HTTP on its
   client port) behind a proxy: (a) chunk sizes "-6", "ffffffffffffffec", "0x5" end the
   answer at once, the proxy still serves and stays small and idle; (b) an 8 MiB chunked
   answer and a 6,000,000-byte Content-Length one arrive intact; (d) a member's
   "100 Continue" before its answer is skipped and Expect is not forwarded; (c) pooled
   connections after the member restarts on the same port are not 502s; (e) a peer that
   accepts and never answers, sorted first, does not keep the proxy from the next peer;
   (g) proxy/cluster is written only after a successful read of the members; (f) a single
   node's data dir with --proxy on added starts the member, not a proxy.

Usage: proxy_test.py --binary build/bin/keeld [--etcd /usr/bin/etcd] [--workdir DIR] [--keep]
Ports: 29640-29669 only (loopback). Python 3 standard library only.
"""

import argparse
import atexit
import base64
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

# ---------------------------------------------------------------------------------------
# ports (29640-29669)

HOST_CLIENT, HOST_PEER = 29640, 29641          # the discovery host
MEMBER_CLIENT = [29642, 29644, 29646]          # m0..m2 client ports
MEMBER_PEER = [29643, 29645, 29647]            # m0..m2 peer ports
PROXY_CLIENT, PROXY_PEER = 29648, 29649        # the fourth keeld (discovery fallback proxy)
EXIT_CLIENT, EXIT_PEER = 29650, 29651          # the fifth keeld (--discovery-fallback exit)
RO_CLIENT, RO_PEER = 29652, 29653              # the readonly proxy
ZERO_CLIENT, ZERO_PEER = 29654, 29655          # the proxy without a live member
CLOSED_PORT = 29656                            # nothing listens here
FAKE_PEER = 29657                              # a fake peer /members (scenario 8b)
BAD_CLIENT, BAD_PEER = 29658, 29659            # the proxy whose only endpoint is dead
ETCD_CLIENT, ETCD_PEER = 29660, 29661          # etcd 3.4 falling back to proxy
HUNG_PEER = 29662                              # a fake peer that never answers (scenario 10e)
MIS_PEER = 29663                               # a fake member's peer port: /members (scenario 10)
MIS_CLIENT = 29664                             # ... and its misbehaving client port
MP_CLIENT, MP_PEER = 29665, 29666              # the proxies of scenario 10
SOLO_CLIENT, SOLO_PEER = 29667, 29668          # the single node of scenario 10f
ALL_PORTS = sorted([HOST_CLIENT, HOST_PEER, PROXY_CLIENT, PROXY_PEER, EXIT_CLIENT, EXIT_PEER,
                    RO_CLIENT, RO_PEER, ZERO_CLIENT, ZERO_PEER, CLOSED_PORT, FAKE_PEER,
                    BAD_CLIENT, BAD_PEER, ETCD_CLIENT, ETCD_PEER, HUNG_PEER, MIS_PEER, MIS_CLIENT,
                    MP_CLIENT, MP_PEER, SOLO_CLIENT, SOLO_PEER] + MEMBER_CLIENT + MEMBER_PEER)
assert len(set(ALL_PORTS)) == len(ALL_PORTS)
assert all(29640 <= p <= 29669 for p in ALL_PORTS)


def url_of(port):
    return "http://127.0.0.1:%d" % port


# ---------------------------------------------------------------------------------------
# checks

def after_colon_short(detail):
    """The FAIL line's detail: ": " and the detail, cut to 600 characters (see short)."""
    return ": " + short(detail)


def short(x, n=600):
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


# ---------------------------------------------------------------------------------------
# HTTP

def request(port, method, path, body=None, headers=None, timeout=5.0):
    """(status, headers, body text) of one request to 127.0.0.1:port. Raises OSError /
    http.client.HTTPException when there is no answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data.decode("utf-8", "replace")
    finally:
        conn.close()


def form(**values):
    return urllib.parse.urlencode(values), {"Content-Type": "application/x-www-form-urlencoded"}


def jloads(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def b64e(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def b64d(s):
    return base64.b64decode(s).decode("utf-8", "replace")


def v3(port, path, body, timeout=5.0):
    return request(port, "POST", path, json.dumps(body), {"Content-Type": "application/json"}, timeout)


def v3_get(port, key, timeout=5.0):
    status, _, text = v3(port, "/v3/kv/range", {"key": b64e(key)}, timeout)
    j = jloads(text) or {}
    kvs = j.get("kvs") or []
    return status, (b64d(kvs[0].get("value", "")) if kvs else None), text


def v2_get(port, key, timeout=5.0):
    status, headers, text = request(port, "GET", "/v2/keys/" + key, timeout=timeout)
    j = jloads(text) or {}
    return status, (j.get("node") or {}).get("value"), headers, text


class Exited(Exception):
    """The process a poll waits on has exited: stop polling."""


def poll(fn, timeout, interval=0.1):
    """Calls fn() until it returns something truthy (returned) or timeout passes (then the
    last value, or the last error as a string, is returned). Connection errors and
    unparsable answers count as 'not yet'; Exited and other exceptions propagate."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            r = fn()
            if r:
                return r
            last = r
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as e:
            last = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() > deadline:
            return last
        time.sleep(interval)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------------------------------
# processes

PROCS = []
SETPRIV = shutil.which("setpriv")


class Proc:
    """One server process; stdout+stderr appended to <work>/<name>.log."""

    def __init__(self, name, cmd, work):
        self.name = name
        self.cmd = list(cmd)
        self.log_path = os.path.join(work, name + ".log")
        self.proc = None
        self.log_offset = 0

    def start(self):
        cmd = self.cmd
        if SETPRIV:
            cmd = [SETPRIV, "--pdeathsig", "KILL", "--"] + cmd
        with open(self.log_path, "ab") as f:
            f.write(("==== %s start: %s\n" % (time.strftime("%H:%M:%S"), " ".join(self.cmd))).encode())
            f.flush()
            self.log_offset = f.tell()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if self not in PROCS:
            PROCS.append(self)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self, grace=10.0):
        if self.running():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.send_signal(signal.SIGCONT)
            except OSError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.wait()

    def output(self, since_start=True):
        """What the process wrote (since its last start), without our '====' lines."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset if since_start else 0)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(l for l in text.splitlines() if not l.startswith("==== "))

    def tail(self, n=25):
        lines = self.output(since_start=False).splitlines()
        return "\n".join(lines[-n:])


def stop_everything():
    for p in reversed(PROCS):
        try:
            p.stop(grace=5.0)
        except Exception:  # noqa: BLE001
            pass


atexit.register(stop_everything)


def _on_signal(signum, frame):
    stop_everything()
    sys.stderr.write("proxy_test: signal %d, processes stopped\n" % signum)
    os._exit(128 + signum)


def dump(procs, n=25):
    for p in procs:
        sys.stderr.write("----- %s (%s) log tail: %s -----\n%s\n" % (
            p.name, "running" if p.running() else "exit %s" % (p.proc.returncode if p.proc else "-"),
            p.log_path, p.tail(n)))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------
# fake members (scenario 10)

def members_server(port, client_port, name="fake", seen=None, more_clients=()):
    """A fake peer port: GET /members (etcd's JSON, X-Etcd-Cluster-ID) naming one member whose
    client URL is client_port (and the URLs in more_clients); every path asked is appended to
    `seen` when given. Returns the started ThreadingHTTPServer."""
    class Peer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if seen is not None:
                seen.append(self.path)
            if self.path == "/members":
                body = json.dumps([{"id": 987654321012, "peerURLs": [url_of(port)], "name": name,
                                    "clientURLs": [url_of(client_port)] + list(more_clients)}]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Etcd-Cluster-ID", "bad5eed")
            else:
                body = b"404 page not found\n"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Peer)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def stop_server(srv):
    if srv is not None:
        srv.shutdown()
        srv.server_close()


class RawServer:
    """A listener on 127.0.0.1:port whose connections are handled by handle(conn) in a thread
    each. stop() closes the listener and every accepted connection (a member going away);
    start() again listens on the same port (its restart)."""

    def __init__(self, port):
        self.port = port
        self.lsock = None
        self.thread = None
        self.running = False
        self.conns = set()
        self.accepted = 0
        self.lock = threading.Lock()

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        s.settimeout(0.1)
        self.lsock, self.running = s, True
        self.thread = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self.thread.start()
        return self

    def _accept(self, s):
        while self.running:
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(60)
            with self.lock:
                self.conns.add(conn)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.handle(conn)
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def stop(self):
        self.running = False
        if self.thread:
            self.thread.join(5)
        if self.lsock:
            self.lsock.close()
            self.lsock = None
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass


class HungPeer(RawServer):
    """Accepts connections and never reads or answers."""

    def handle(self, conn):
        while self.running and conn.fileno() >= 0:
            time.sleep(0.2)


def known_bytes(n, seed):
    return random.Random(seed).randbytes(n)


BIG_CHUNKS = [known_bytes(1 << 20, 100 + i) for i in range(8)] + [b"xyz"]
BIG_CHUNKED = b"".join(BIG_CHUNKS)
BIG_LENGTH = known_bytes(6000000, 7)
GOOD_BODY = b'{"good":true}\n'
BAD_CHUNK_SIZES = {"/bad-minus": b"-6", "/bad-huge": b"ffffffffffffffec", "/bad-0x": b"0x5"}


class MisbehavingMember(RawServer):
    """A fake member's client port, HTTP/1.1 with keep-alive:
    GET /good -> 200 JSON (Content-Length); GET /c?slow=1 -> 200 "c" after 0.3 s;
    GET /bad-* -> 200 chunked with a bad chunk-size line (the connection stays open);
    GET /big -> 8 MiB + 3 bytes chunked (1 MiB chunks); GET /len6m -> 6,000,000 bytes with
    Content-Length; PUT /expect -> "100 Continue", then the body is read, then 200 "ok"."""

    def __init__(self, port):
        super().__init__(port)
        self.seen = []  # (method, path, {lowercased header: value}, body)

    def handle(self, conn):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            path = target.split("?", 1)[0]
            if path == "/expect":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            length = int(headers.get("content-length", "0") or 0)
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            with self.lock:
                self.seen.append((method, target, headers, body))
            self.answer(conn, method, path, target)

    @staticmethod
    def answer(conn, method, path, target):
        if path == "/good":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(GOOD_BODY), GOOD_BODY))
        elif path == "/c":
            if "slow=1" in target:
                time.sleep(0.3)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nc")
        elif path in BAD_CHUNK_SIZES:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + BAD_CHUNK_SIZES[path]
                         + b"\r\nhello\r\n0\r\n\r\n")
        elif path == "/trunc":  # closes in the middle of a chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nwor")
            conn.shutdown(socket.SHUT_RDWR)
        elif path == "/big":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for chunk in BIG_CHUNKS:
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        elif path == "/len6m":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                         % len(BIG_LENGTH))
            conn.sendall(BIG_LENGTH)
        elif path == "/expect" and method == "PUT":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def raw_exchange(port, data, timeout=5.0):
    """Sends `data` on a new connection and reads answers until a final (non-1xx) one is
    complete (Content-Length framing), the connection closes or `timeout` passes. Returns
    (status lines, final body or None, all bytes)."""
    got = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        while True:
            parsed = split_answers(got)
            if parsed[1] is not None or time.monotonic() > deadline:
                return parsed + (got,)
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                more = s.recv(65536)
            except socket.timeout:
                return parsed + (got,)
            if not more:
                return parsed + (got,)
            got += more


def split_answers(got):
    statuses, at = [], 0
    while True:
        end = got.find(b"\r\n\r\n", at)
        if end < 0:
            return statuses, None
        head = got[at:end].decode("latin-1").split("\r\n")
        statuses.append(head[0])
        parts = head[0].split(" ")
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        at = end + 4
        if 100 <= code < 200:
            continue
        length = None
        for line in head[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length is None or len(got) - at < length:
            return statuses, None
        return statuses, got[at:at + length]


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# the test

class Test:
    def __init__(self, opts, work):
        self.o = opts
        self.work = work
        self.check = keeltest.Checks(after_colon_short)
        self.host = None
        self.members = []
        self.proxy = None
        self.url = None
        self.peer_urls = [url_of(p) for p in MEMBER_PEER]
        self.client_urls = [url_of(p) for p in MEMBER_CLIENT]
        self.etcd_skipped = False

    # -- helpers ------------------------------------------------------------------------

    def keeld(self, name, extra, data_dir=None):
        return [self.o.binary, "--name", name, "--data-dir", data_dir or os.path.join(self.work, name + ".data")] + extra

    def member_cmd(self, i):
        return self.keeld("m%d" % i, [
            "--listen-client-urls", self.client_urls[i], "--advertise-client-urls", self.client_urls[i],
            "--listen-peer-urls", self.peer_urls[i], "--initial-advertise-peer-urls", self.peer_urls[i],
            "--discovery", self.url])

    def proxy_cmd(self):
        return self.keeld("m3", [
            "--listen-client-urls", url_of(PROXY_CLIENT), "--advertise-client-urls", url_of(PROXY_CLIENT),
            "--listen-peer-urls", url_of(PROXY_PEER), "--initial-advertise-peer-urls", url_of(PROXY_PEER),
            "--discovery", self.url])

    def status(self, i, timeout=1.0):
        try:
            st, _, text = v3(MEMBER_CLIENT[i], "/v3/maintenance/status", {}, timeout)
        except (OSError, http.client.HTTPException):
            return None
        j = jloads(text)
        return j if st == 200 and isinstance(j, dict) else None

    def leader(self, among=(0, 1, 2)):
        """Index of the member that all of `among` name as leader, else None."""
        sts = [self.status(i) for i in among]
        if any(s is None for s in sts):
            return None
        leaders = set(str(s.get("leader", "0")) for s in sts)
        if len(leaders) != 1 or leaders == {"0"}:
            return None
        lid = leaders.pop()
        for i, s in zip(among, sts):
            if str(s["header"]["member_id"]) == lid:
                return i
        return None

    def proxy_endpoints(self, port):
        st, _, text = request(port, "GET", "/v2/config/local/proxy", timeout=2)
        j = jloads(text)
        if st != 200 or not isinstance(j, dict):
            return None
        return j.get("endpoints")

    def wait_endpoints(self, port, proc, want, timeout):
        """Polls /v2/config/local/proxy until it lists `want` (sorted); returns (ok, last, secs)."""
        t0 = time.monotonic()
        last = [None]

        def f():
            if proc is not None and not proc.running():
                raise Exited("the process exited with %s" % proc.proc.returncode)
            eps = self.proxy_endpoints(port)
            last[0] = eps
            return isinstance(eps, list) and sorted(eps) == sorted(want)
        try:
            r = poll(f, timeout)
        except Exited as e:
            return False, "%s (last endpoints %r)" % (e, last[0]), time.monotonic() - t0
        detail = last[0] if not isinstance(r, str) else "%s (last endpoints %r)" % (r, last[0])
        return r is True, detail, time.monotonic() - t0

    # -- 1 --------------------------------------------------------------------------------

    def s1_cluster(self):
        c = self.check
        self.host = Proc("discovery-host", self.keeld("disc", [
            "--listen-client-urls", url_of(HOST_CLIENT), "--advertise-client-urls", url_of(HOST_CLIENT),
            "--listen-peer-urls", url_of(HOST_PEER), "--modules=kv,discovery", "--shards", "1"]),
            self.work).start()

        def new():
            if not self.host.running():
                raise RuntimeError("the discovery host exited")
            st, _, text = request(HOST_CLIENT, "GET", "/new?size=3", timeout=2)
            return text.strip() if st == 200 else None
        url = poll(new, 15)
        ok = isinstance(url, str) and url.startswith(url_of(HOST_CLIENT) + "/discovery/")
        c("1. discovery host: GET /new?size=3 -> token URL %s" % (url,), ok, None if ok else self.host.tail())
        if not ok:
            raise RuntimeError("no discovery token")
        self.url = url

        self.members = [Proc("m%d" % i, self.member_cmd(i), self.work).start() for i in range(3)]
        t0 = time.monotonic()

        def ready():
            for m in self.members:
                if not m.running():
                    raise RuntimeError("member %s exited with %s" % (m.name, m.proc.returncode))
            return self.leader() is not None
        try:
            ok = poll(ready, 40, 0.2) is True
        except RuntimeError as e:
            ok = False
            c("1. three members started with only --discovery form a healthy cluster", False, str(e))
            dump(self.members)
            raise
        c("1. three members started with only --discovery form a healthy cluster (%.1fs)"
          % (time.monotonic() - t0),
          ok, None if ok else "no agreed leader")
        if not ok:
            dump(self.members)
            raise RuntimeError("the cluster did not form")
        # Names and client URLs are published through raft after the start: wait for them.
        names = poll(lambda: all(self._v2_members_complete(i) for i in range(3)), 10)
        c("1. /v2/members on every member lists 3 named members with client URLs",
          names is True, None if names is True else names)

    def _v2_members_complete(self, i):
        st, _, text = request(MEMBER_CLIENT[i], "GET", "/v2/members", timeout=2)
        ms = (jloads(text) or {}).get("members") or []
        return st == 200 and len(ms) == 3 and all(m.get("name") and m.get("clientURLs") for m in ms)

    # -- 2 --------------------------------------------------------------------------------

    def s2_peer_members(self):
        c = self.check
        st, _, text = request(MEMBER_CLIENT[0], "GET", "/v2/members")
        v2ms = (jloads(text) or {}).get("members") or []
        v2_ids = {m.get("name"): int(m["id"], 16) for m in v2ms}
        st, keys_headers, _ = request(MEMBER_CLIENT[0], "GET", "/v2/keys/")
        cluster_id = keys_headers.get("X-Etcd-Cluster-Id")
        c("2. /v2/keys/ on the client port answers X-Etcd-Cluster-Id %s" % cluster_id,
          st == 200 and cluster_id, dict(keys_headers))
        st, _, client_version = request(MEMBER_CLIENT[0], "GET", "/version")
        client_version = jloads(client_version)
        for i in range(3):
            port = MEMBER_PEER[i]
            try:
                st, headers, text = request(port, "GET", "/members")
            except (OSError, http.client.HTTPException) as e:
                c("2. m%d peer GET /members" % i, False, "no answer: %r" % e)
                continue
            ms = jloads(text)
            ok = st == 200 and isinstance(ms, list) and len(ms) == 3 and all(isinstance(m, dict) for m in ms)
            c("2. m%d peer GET /members: 200, JSON array of 3 members" % i, ok, (st, dict(headers), text))
            if not ok:
                continue
            by_name = {m.get("name"): m for m in ms}
            c("2. m%d peer /members: names m0 m1 m2" % i, sorted(by_name) == ["m0", "m1", "m2"], text)
            c("2. m%d peer /members: clientURLs are the members' advertised client URLs" % i,
              all(by_name.get("m%d" % j, {}).get("clientURLs") == [self.client_urls[j]] for j in range(3)), text)
            c("2. m%d peer /members: peerURLs are the members' peer URLs" % i,
              all(by_name.get("m%d" % j, {}).get("peerURLs") == [self.peer_urls[j]] for j in range(3)), text)
            ids_numeric = all(isinstance(m.get("id"), int) and not isinstance(m.get("id"), bool) for m in ms)
            c("2. m%d peer /members: ids are JSON numbers equal to /v2/members' hex ids" % i,
              ids_numeric and {m["name"]: m["id"] for m in ms} == v2_ids, {"peer": text, "v2": v2_ids})
            c("2. m%d peer /members: no member is a learner" % i,
              not any("isLearner" in m and m["isLearner"] is not False for m in ms), text)
            hdr = headers.get("X-Etcd-Cluster-ID")
            same = False
            try:
                same = hdr is not None and cluster_id is not None and int(hdr, 16) == int(cluster_id, 16)
            except ValueError:
                pass
            c("2. m%d peer /members: X-Etcd-Cluster-ID %s = the client port's X-Etcd-Cluster-Id %s"
              % (i, hdr, cluster_id),
              same, dict(headers))
            try:
                st, _, text = request(port, "GET", "/version")
            except (OSError, http.client.HTTPException) as e:
                st, text = None, repr(e)
            j = jloads(text)
            c("2. m%d peer GET /version: JSON with etcdserver, as the client port's /version" % i,
              st == 200 and isinstance(j, dict) and "etcdserver" in j and j == client_version,
              (st, text, client_version))

    # -- 3 --------------------------------------------------------------------------------

    def s3_proxy(self):
        c = self.check
        self.proxy = Proc("proxy-m3", self.proxy_cmd(), self.work).start()
        ok, last, took = self.wait_endpoints(PROXY_CLIENT, self.proxy, self.client_urls, 15)
        c("3. a 4th keeld with the full token (default fallback) serves /v2/config/local/proxy with the "
          "3 client URLs (%.1fs)" % took,
          ok, last)
        if not ok:
            dump([self.proxy])
            raise RuntimeError("the proxy did not come up")
        c("3. the 4th keeld stays up and its log mentions proxy",
          self.proxy.running() and "proxy" in self.proxy.output().lower(), self.proxy.tail(10))

        # v2 through the proxy
        body, hdrs = form(value="x")
        st, headers, text = request(PROXY_CLIENT, "PUT", "/v2/keys/p1", body, hdrs)
        j = jloads(text) or {}
        c("3. v2 PUT /v2/keys/p1 value=x through the proxy -> 201 set",
          st == 201 and j.get("action") == "set" and (j.get("node") or {}).get("value") == "x", (st, text))
        c("3. the answer relays X-Etcd-Index %s"
          % headers.get("X-Etcd-Index"),
          (headers.get("X-Etcd-Index") or "").isdigit(), dict(headers))
        vals = [v2_get(p, "p1?quorum=true")[1] for p in MEMBER_CLIENT]
        c("3. GET /v2/keys/p1 directly on m0 -> x", vals[0] == "x", vals)
        st, val, headers, text = v2_get(PROXY_CLIENT, "p1")
        c("3. v2 GET /v2/keys/p1 through the proxy -> 200 x, with X-Etcd-Cluster-Id",
          st == 200 and val == "x" and headers.get("X-Etcd-Cluster-Id"), (st, text, dict(headers)))
        st, _, text = request(PROXY_CLIENT, "GET", "/v2/keys/does-not-exist")
        c("3. a member's 404 (errorCode 100) is relayed as is",
          st == 404 and (jloads(text) or {}).get("errorCode") == 100, (st, text))
        body, hdrs = form(value="gone")
        request(MEMBER_CLIENT[1], "PUT", "/v2/keys/p-del", body, hdrs)
        st, _, text = request(PROXY_CLIENT, "DELETE", "/v2/keys/p-del")
        c("3. v2 DELETE through the proxy -> 200 delete",
          st == 200 and (jloads(text) or {}).get("action") == "delete", (st, text))

        # v3 through the proxy
        st, _, text = v3(PROXY_CLIENT, "/v3/kv/put", {"key": b64e("v3/a"), "value": b64e("y")})
        c("3. v3 POST /v3/kv/put through the proxy -> 200", st == 200 and "header" in (jloads(text) or {}), (st, text))
        st, val, text = v3_get(PROXY_CLIENT, "v3/a")
        c("3. v3 POST /v3/kv/range through the proxy -> y", st == 200 and val == "y", (st, text))
        st, val, text = v3_get(MEMBER_CLIENT[2], "v3/a")
        c("3. the v3 put is on m2 directly", st == 200 and val == "y", (st, text))

        # a body of a few KB, intact
        rng = random.Random(4242)
        big = "".join(rng.choice(string.ascii_letters + string.digits + "+/=&%?\n") for _ in range(6000))
        st, _, text = v3(PROXY_CLIENT, "/v3/kv/put", {"key": b64e("v3/big"), "value": b64e(big)})
        st2, val, _ = v3_get(MEMBER_CLIENT[0], "v3/big")
        c("3. a put with a %d-byte body through the proxy round-trips intact"
          % len(json.dumps({"key": b64e("v3/big"), "value": b64e(big)})),
          st == 200 and val == big, (st, text, st2, None if val is None else len(val)))
        body, hdrs = form(value=big)
        st, _, text = request(PROXY_CLIENT, "PUT", "/v2/keys/bigv2", body, hdrs)
        st2, val, _, _ = v2_get(PROXY_CLIENT, "bigv2")
        c("3. a v2 form PUT of %d bytes through the proxy, read back through it, intact"
          % len(body),
          st == 201 and val == big, (st, text[:200], st2, None if val is None else len(val)))

        self._s3_v2_wait()
        self._s3_v2_stream()
        self._s3_v3_watch()

        # /metrics: the proxy's own
        st, headers, text = request(PROXY_CLIENT, "GET", "/metrics")
        c("3. GET /metrics on the proxy -> 200 Prometheus text", st == 200 and "# TYPE " in text, (st, text[:300]))

    def _s3_v2_wait(self):
        c = self.check
        st, headers, _ = request(MEMBER_CLIENT[0], "GET", "/v2/keys/")
        index = int(headers.get("X-Etcd-Index", "0"))
        got = {}

        def waiter():
            try:
                got["answer"] = request(PROXY_CLIENT, "GET", "/v2/keys/w?wait=true&waitIndex=%d" % (index + 1),
                                        timeout=20)
            except Exception as e:  # noqa: BLE001
                got["error"] = repr(e)
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        time.sleep(0.7)
        held = t.is_alive()
        c("3. v2 GET /v2/keys/w?wait=true through the proxy is held until a change", held, got)
        body, hdrs = form(value="woken")
        st, _, text = request(MEMBER_CLIENT[1], "PUT", "/v2/keys/w", body, hdrs)
        t.join(15)
        st, _, text = got.get("answer", (None, None, got.get("error")))
        j = jloads(text or "") or {}
        # The action is etcd's ("set") on every member: the v2 write's WAL entry carries it.
        c("3. ... and answered with the PUT of /w made directly on m1, action set",
          st == 200 and j.get("action") == "set" and (j.get("node") or {}).get("key") == "/w"
          and (j.get("node") or {}).get("value") == "woken", (st, text))

    def _s3_v2_stream(self):
        c = self.check
        conn = http.client.HTTPConnection("127.0.0.1", PROXY_CLIENT, timeout=10)
        try:
            conn.request("GET", "/v2/keys/st?wait=true&stream=true")
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                c("3. v2 GET /v2/keys/st?wait=true&stream=true through the proxy: the status line arrives "
                  "while the stream is open",
                  False, "nothing within 10 s: %r" % e)
                return
            c("3. v2 GET /v2/keys/st?wait=true&stream=true through the proxy: 200 at once",
              resp.status == 200, (resp.status, dict(resp.headers)))
            if resp.status != 200:
                return
            values = []
            lines = []
            for v in ("s1", "s2"):
                body, hdrs = form(value=v)
                request(MEMBER_CLIENT[0], "PUT", "/v2/keys/st", body, hdrs)
                deadline = time.monotonic() + 10
                while v not in values and time.monotonic() < deadline:
                    try:
                        line = resp.readline()
                    except OSError as e:
                        lines.append(repr(e))
                        break
                    if not line:
                        lines.append("(end of stream)")
                        break
                    lines.append(line)
                    if line.strip():
                        values.append(((jloads(line) or {}).get("node") or {}).get("value"))
                if v not in values:
                    break
            c("3. ... it relays one event per PUT made directly on m0, as they happen",
              values == ["s1", "s2"], lines)
        finally:
            conn.close()

    def _s3_v3_watch(self):
        c = self.check
        conn = http.client.HTTPConnection("127.0.0.1", PROXY_CLIENT, timeout=10)
        try:
            conn.request("POST", "/v3/watch", body=json.dumps({"create_request": {"key": b64e("wv3")}}),
                         headers={"Content-Type": "application/json"})
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                c("3. v3 POST /v3/watch through the proxy: the answer's status line arrives while "
                  "the stream is open",
                  False, "nothing within 10 s: %r" % e)
                return
            first = None
            try:
                first = resp.readline()
            except OSError as e:
                first = ("error", repr(e))
            j = jloads(first) if isinstance(first, bytes) else None
            created = resp.status == 200 and isinstance(j, dict) and (j.get("result") or {}).get("created") is True
            c("3. v3 POST /v3/watch through the proxy: the 'created' line arrives while the stream is open",
              created, (resp.status, dict(resp.headers), first))
            if not created:
                return
            st, _, text = v3(MEMBER_CLIENT[2], "/v3/kv/put", {"key": b64e("wv3"), "value": b64e("seen")})
            event = None
            lines = []
            deadline = time.monotonic() + 10
            while event is None and time.monotonic() < deadline:
                try:
                    line = resp.readline()
                except OSError as e:
                    lines.append(repr(e))
                    break
                if not line:
                    lines.append("(end of stream)")
                    break
                lines.append(line)
                r = (jloads(line) or {}).get("result") or {}
                for ev in r.get("events") or []:
                    kv = ev.get("kv") or {}
                    if kv.get("key") == b64e("wv3"):
                        event = b64d(kv.get("value", ""))
            c("3. ... and receives the event of a put made directly on m2", event == "seen", lines)
        finally:
            conn.close()

    # -- 4 --------------------------------------------------------------------------------

    def s4_exit(self):
        cmd = self.keeld("m4", [
            "--listen-client-urls", url_of(EXIT_CLIENT), "--advertise-client-urls", url_of(EXIT_CLIENT),
            "--listen-peer-urls", url_of(EXIT_PEER), "--initial-advertise-peer-urls", url_of(EXIT_PEER),
            "--discovery", self.url, "--discovery-fallback", "exit"])
        p = Proc("fallback-exit-m4", cmd, self.work).start()
        t0 = time.monotonic()
        try:
            p.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - t0
        rc = p.proc.poll()
        out = p.output()
        p.stop()
        self.check("4. a 5th keeld with --discovery-fallback exit exits %s in %.1fs: %s"
                   % (rc, took, (out.strip().splitlines() or [""])[-1][-160:]),
                   rc is not None and rc != 0 and took < 12 and "cluster is full" in out, out[-800:])

    # -- 5 --------------------------------------------------------------------------------

    def s5_kill_member(self):
        c = self.check
        leader = self.leader()
        victim = next(i for i in range(3) if i != leader) if leader is not None else 2
        self.members[victim].kill9()
        ok_all = []
        for n in range(12):
            body, hdrs = form(value="v%d" % n)
            try:
                st, _, text = request(PROXY_CLIENT, "PUT", "/v2/keys/k5/%d" % n, body, hdrs, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                st, text = None, repr(e)
            ok_all.append((n, st, text[:160] if st != 201 else ""))
        bad = [x for x in ok_all if x[1] != 201]
        c("5. kill -9 m%d (a follower): 12 v2 PUTs through the proxy all -> 201" % victim, not bad, bad)
        alive = [i for i in range(3) if i != victim]
        st, val, _, text = v2_get(MEMBER_CLIENT[alive[0]], "k5/11")
        c("5. the last PUT is on m%d" % alive[0], val == "v11", (st, text))
        st, val, _, text = v2_get(PROXY_CLIENT, "k5/0")
        c("5. reads through the proxy work with m%d down" % victim, st == 200 and val == "v0", (st, text))

        # bring it back for the next scenarios
        self.members[victim].start()
        back = poll(lambda: self.leader() is not None, 30, 0.2)
        c("5. m%d restarted (same command line) and the cluster is whole again" % victim, back is True, back)
        if back is not True:
            dump([self.members[victim]])

    # -- 6 --------------------------------------------------------------------------------

    def s6_restart_proxy(self):
        c = self.check
        self.proxy.stop()
        cluster_file = os.path.join(self.work, "m3.data", "proxy", "cluster")
        try:
            with open(cluster_file) as f:
                raw = f.read()
        except OSError as e:
            raw = repr(e)
        j = jloads(raw)
        c("6. the stopped proxy's data dir has proxy/cluster with the 3 peer URLs in PeerURLs",
          isinstance(j, dict) and sorted(j.get("PeerURLs") or []) == sorted(self.peer_urls), raw)

        for what, extra in (("the same command line", []),
                            ("--discovery-fallback exit added (so only proxy/cluster can make it a proxy)",
                             ["--discovery-fallback", "exit"])):
            self.proxy.cmd = self.proxy_cmd() + extra
            self.proxy.start()
            ok, last, took = self.wait_endpoints(PROXY_CLIENT, self.proxy, self.client_urls, 15)
            c("6. proxy restarted with %s: a proxy again, 3 endpoints (%.1fs)"
              % (what, took),
              ok and self.proxy.running(), (last, self.proxy.tail(10)))
            if not ok:
                self.proxy.stop()
                continue
            body, hdrs = form(value="again")
            st, _, text = request(PROXY_CLIENT, "PUT", "/v2/keys/p6", body, hdrs, timeout=10)
            st2, val, _, _ = v2_get(MEMBER_CLIENT[0], "p6")
            c("6. ... a v2 PUT through it lands on m0", st in (200, 201) and val == "again", (st, text, st2, val))
            if extra:
                c("6. ... it did not run discovery again (no 'cluster is full' in its log)",
                  "cluster is full" not in self.proxy.output(), self.proxy.tail(10))
            self.proxy.stop()

    # -- 7 --------------------------------------------------------------------------------

    def s7_readonly(self):
        c = self.check
        initial = ",".join("m%d=%s" % (i, self.peer_urls[i]) for i in range(3))
        p = Proc("proxy-readonly", self.keeld("ro", [
            "--proxy", "readonly", "--initial-cluster", initial,
            "--listen-client-urls", url_of(RO_CLIENT), "--listen-peer-urls", url_of(RO_PEER)]), self.work).start()
        try:
            ok, last, took = self.wait_endpoints(RO_CLIENT, p, self.client_urls, 15)
            c("7. --proxy readonly --initial-cluster <3 members>: 3 endpoints (%.1fs)" % took, ok, (last, p.tail(10)))
            if not ok:
                return
            st, val, _, text = v2_get(RO_CLIENT, "p1")
            c("7. readonly proxy: GET /v2/keys/p1 -> 200 x", st == 200 and val == "x", (st, text))
            body, hdrs = form(value="no")
            st, _, text = request(RO_CLIENT, "PUT", "/v2/keys/ro", body, hdrs)
            c("7. readonly proxy: PUT -> 501, empty body", st == 501 and text == "", (st, text))
            st, _, text = v3(RO_CLIENT, "/v3/kv/range", {"key": b64e("v3/a")})
            c("7. readonly proxy: POST (even a v3 range) -> 501, empty body", st == 501 and text == "", (st, text))
            st, _, text = request(RO_CLIENT, "DELETE", "/v2/keys/p1")
            c("7. readonly proxy: DELETE -> 501", st == 501, (st, text))
            st, val, _, text = v2_get(MEMBER_CLIENT[0], "ro")
            st2, val2, _, _ = v2_get(MEMBER_CLIENT[0], "p1")
            c("7. nothing was written through the readonly proxy", st == 404 and val2 == "x", (st, text, val2))
            try:
                with open(os.path.join(self.work, "ro.data", "proxy", "cluster")) as f:
                    raw = f.read()
            except OSError as e:
                raw = repr(e)
            j = jloads(raw)
            c("7. the readonly proxy wrote proxy/cluster with the 3 peer URLs",
              isinstance(j, dict) and sorted(j.get("PeerURLs") or []) == sorted(self.peer_urls), raw)
        finally:
            p.stop()

    # -- 8 --------------------------------------------------------------------------------

    def s8_zero(self):
        c = self.check
        p = Proc("proxy-zero", self.keeld("zero", [
            "--proxy", "on", "--initial-cluster", "x=%s" % url_of(CLOSED_PORT),
            "--listen-client-urls", url_of(ZERO_CLIENT), "--listen-peer-urls", url_of(ZERO_PEER)]),
            self.work).start()
        try:
            want = {"message": "httpproxy: zero endpoints currently available"}
            last = [None]

            def f():
                if not p.running():
                    raise Exited("exited with %s" % p.proc.returncode)
                last[0] = request(ZERO_CLIENT, "GET", "/v2/keys/a", timeout=3)
                return last[0][0] == 503 and jloads(last[0][2]) == want
            try:
                ok = poll(f, 10, 0.2) is True
            except Exited:
                ok = False
            c("8. --proxy on, --initial-cluster x=<closed port>: GET -> 503 %s" % json.dumps(want),
              ok, (last[0][0], dict(last[0][1]), last[0][2]) if last[0] else p.tail(10))
            st, _, text = request(ZERO_CLIENT, "PUT", "/v2/keys/a", *form(value="1"))
            c("8. ... a PUT too -> 503", st == 503 and jloads(text) == want, (st, text))
            st, _, text = request(ZERO_CLIENT, "GET", "/metrics")
            c("8. ... while /metrics is served by the proxy itself (200)",
              st == 200 and "# TYPE " in text, (st, text[:200]))
            eps = self.proxy_endpoints(ZERO_CLIENT)
            c("8. ... and /v2/config/local/proxy lists no endpoint", eps == [], eps)
        finally:
            p.stop()

    def s8b_bad_endpoint(self):
        c = self.check
        seen = []
        srv = members_server(FAKE_PEER, CLOSED_PORT, name="ghost", seen=seen)
        p = Proc("proxy-dead-endpoint", self.keeld("bad", [
            "--proxy", "on", "--initial-cluster", "ghost=%s" % url_of(FAKE_PEER), "--proxy-failure-wait", "60000",
            "--listen-client-urls", url_of(BAD_CLIENT), "--listen-peer-urls", url_of(BAD_PEER)]),
            self.work).start()
        try:
            ok, last, took = self.wait_endpoints(BAD_CLIENT, p, [url_of(CLOSED_PORT)], 10)
            c("8b. a proxy learns client URLs from GET <peer>/members (fake peer): "
              "endpoints %s (%.1fs)" % (last, took),
              ok and "/members" in seen, (seen, p.tail(10)))
            if not ok:
                return
            st, _, text = request(BAD_CLIENT, "GET", "/v2/keys/a")
            want = {"message": "httpproxy: unable to get response from 1 endpoint(s)"}
            c("8b. its only endpoint refuses: GET -> 502 %s" % json.dumps(want),
              st == 502 and jloads(text) == want, (st, text))
            st, _, text = request(BAD_CLIENT, "GET", "/v2/keys/a")
            want = {"message": "httpproxy: zero endpoints currently available"}
            c("8b. ... then, within --proxy-failure-wait, GET -> 503 zero endpoints",
              st == 503 and jloads(text) == want, (st, text))
        finally:
            p.stop()
            stop_server(srv)

    def _failover_past(self, tag, bad, flag, marked, given_up):
        """8c/8d: a proxy started with `flag` 500 in front of a bad endpoint on CLOSED_PORT
        (set up by the caller; `bad` names it) and a live member. Requests are made until
        the log says `marked` (the bad endpoint given up); each must succeed on the live
        member, the one that met the bad endpoint within about the 0.5 s limit."""
        c = self.check
        live = next((i for i in range(3) if self.status(i) is not None), None)
        if live is None:
            c.fail("%s. not run" % tag, "no member answers")
            return
        limit = flag[len("--proxy-"):]  # "dial-timeout", "read-timeout"
        srv = members_server(FAKE_PEER, CLOSED_PORT, name=bad, more_clients=[self.client_urls[live]])
        p = Proc("proxy-" + limit, self.keeld(bad, [
            "--proxy", "on", "--initial-cluster", "%s=%s" % (bad, url_of(FAKE_PEER)), flag, "500",
            "--proxy-failure-wait", "60000", "--proxy-refresh-interval", "200",
            "--listen-client-urls", url_of(BAD_CLIENT), "--listen-peer-urls", url_of(BAD_PEER)]),
            self.work).start()
        try:
            ok, last, _ = self.wait_endpoints(BAD_CLIENT, p, [url_of(CLOSED_PORT), self.client_urls[live]], 10)
            c("%s. a proxy with a %s endpoint and a live one lists both" % (tag, bad), ok, (last, p.tail(10)))
            if not ok:
                return
            times, answers = [], []
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and marked not in p.output():
                t0 = time.monotonic()
                try:
                    st, _, _ = request(BAD_CLIENT, "GET", "/v2/keys/", timeout=5)
                except (OSError, http.client.HTTPException) as e:
                    st = repr(e)
                times.append(time.monotonic() - t0)
                answers.append(st)
                time.sleep(0.1)
            c("%s. %s" % (tag, given_up), marked in p.output(), p.tail(10))
            c("%s. every request succeeds on the live member (%d requests)" % (tag, len(answers)),
              all(a == 200 for a in answers), answers)
            slowest = max(times) if times else 0
            c("%s. the request that met the %s endpoint took %.2f s (%s 0.5 s)" % (tag, bad, slowest, limit.replace("-", " ")),
              0.4 <= slowest < 2.0, ["%.2f" % t for t in times])
        finally:
            p.stop()
            stop_server(srv)

    def s8c_dial_timeout(self):
        # A dead machine: a listener that never accepts, its accept queue full, so the
        # kernel drops every further SYN and only a dial timeout ends a connect to it.
        dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        dead.bind(("127.0.0.1", CLOSED_PORT))
        dead.listen(0)
        fillers = []
        try:
            for _ in range(3):
                f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                fillers.append(f)
                f.setblocking(False)
                f.connect_ex(("127.0.0.1", CLOSED_PORT))
            self._failover_past("8c", "dead", "--proxy-dial-timeout", "%s unavailable for 60000 ms" % url_of(CLOSED_PORT),
                                "a connect to the dead endpoint is given up and the endpoint left out")
        finally:
            for f in fillers:
                f.close()
            dead.close()

    def s8d_read_timeout(self):
        hung = HungPeer(CLOSED_PORT).start()  # accepts, never reads or answers
        try:
            self._failover_past("8d", "mute", "--proxy-read-timeout",
                                "no answer within --proxy-read-timeout (500 ms); marked endpoint %s" % url_of(CLOSED_PORT),
                                "a member that never answers is given up and left out")
        finally:
            hung.stop()

    # -- 9 --------------------------------------------------------------------------------

    def s9_etcd(self):
        c = self.check
        if not os.path.exists(self.o.etcd):
            self.etcd_skipped = True
            print("skip 9. real etcd 3.4 falling back to proxy against keel: %s not found" % self.o.etcd, flush=True)
            return
        p = Proc("etcd-proxy", [self.o.etcd, "--name", "e9", "--data-dir", os.path.join(self.work, "e9.etcd"),
                                "--listen-client-urls", url_of(ETCD_CLIENT),
                                "--advertise-client-urls", url_of(ETCD_CLIENT),
                                "--listen-peer-urls", url_of(ETCD_PEER),
                                "--initial-advertise-peer-urls", url_of(ETCD_PEER),
                                "--discovery", self.url], self.work).start()
        try:
            ok, last, took = self.wait_endpoints(ETCD_CLIENT, p, self.client_urls, 30)
            c("9. etcd 3.4 with the full token falls back to its proxy; it lists keel's 3 client URLs "
              "(read from keel's peer /members) (%.1fs)" % took,
              ok, (last, p.tail(15)))
            if not ok:
                return
            c("9. etcd's log mentions proxy", "proxy" in p.output().lower(), p.tail(10))
            body, hdrs = form(value="from-etcd")
            st, _, text = request(ETCD_CLIENT, "PUT", "/v2/keys/etcdp", body, hdrs, timeout=10)
            c("9. v2 PUT /v2/keys/etcdp through etcd's proxy -> 201 set",
              st == 201 and (jloads(text) or {}).get("action") == "set", (st, text))
            st, val, _, text = v2_get(MEMBER_CLIENT[1], "etcdp?quorum=true")
            c("9. ... and it is on keel member m1", val == "from-etcd", (st, text))
            st, val, text = v3_get(ETCD_CLIENT, "v3/a")
            c("9. a v3 range through etcd's proxy is answered by keel", st == 200 and val == "y", (st, text))
        finally:
            p.stop()

    # -- 10 -------------------------------------------------------------------------------

    def mis_proxy(self, name, extra):
        return Proc(name, self.keeld(name, ["--proxy", "on"] + extra + [
            "--listen-client-urls", url_of(MP_CLIENT), "--listen-peer-urls", url_of(MP_PEER)]), self.work).start()

    def s10_member(self):
        c = self.check
        peer = members_server(MIS_PEER, MIS_CLIENT)
        fake = None
        p = None
        try:
            fake = MisbehavingMember(MIS_CLIENT).start()
            p = self.mis_proxy("mis", ["--initial-cluster", "fake=%s" % url_of(MIS_PEER)])
            ok, last, took = self.wait_endpoints(MP_CLIENT, p, [url_of(MIS_CLIENT)], 10)
            c("10. a proxy of a fake member: endpoints %s, from the fake peer's /members (%.1fs)" % (last, took),
              ok, (last, p.tail(10)))
            if not ok:
                return
            try:
                with open(os.path.join(self.work, "mis.data", "proxy", "cluster")) as f:
                    raw = f.read()
            except OSError as e:
                raw = repr(e)
            c("10. ... after reading the members it wrote proxy/cluster with the fake peer URL",
              (jloads(raw) or {}).get("PeerURLs") == [url_of(MIS_PEER)] if isinstance(jloads(raw), dict) else False,
              raw)
            for part in (self._s10a_bad_chunks, self._s10b_large, self._s10d_continue, self._s10c_restart):
                if not p.running():
                    c("10. %s not run" % part.__name__, False, "the proxy exited: %s" % p.tail(15))
                    continue
                try:
                    part(p, fake)
                except Exception as e:  # noqa: BLE001
                    c("10. %s raised" % part.__name__, False, "%r\n%s" % (e, traceback.format_exc()))
        finally:
            if p:
                p.stop()
            if fake:
                fake.stop()
            stop_server(peer)

    def _s10a_bad_chunks(self, p, fake):
        c = self.check
        for path, size in BAD_CHUNK_SIZES.items():
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", MP_CLIENT, timeout=5)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                st = resp.status
                try:
                    body = resp.read()
                    how = "status %d, %d body bytes, stream ended" % (st, len(body))
                except http.client.IncompleteRead as e:
                    how = "status %d, the connection closed after %d body bytes" % (st, len(e.partial))
                ended = True
            except socket.timeout as e:
                ended, how = False, "no end within 5 s: %r" % e
            except (OSError, http.client.HTTPException) as e:
                ended, how = True, "the connection closed: %r" % e  # ended, if rudely
            finally:
                conn.close()
            took = time.monotonic() - t0
            # It ends, and not as a complete answer: the proxy aborts rather than writing the
            # terminating chunk, so the client cannot mistake it for the whole answer.
            c("10a. chunk-size line %r from the member: GET %s through the proxy ends, truncated, in %.2fs (%s)"
              % (size.decode(), path, took, how),
              ended and took < 5 and "stream ended" not in how, (how, p.tail(8)))
        conn = http.client.HTTPConnection("127.0.0.1", MP_CLIENT, timeout=5)
        try:
            conn.request("GET", "/trunc")
            resp = conn.getresponse()
            try:
                body = resp.read()
                how = "a complete answer of %r" % body
            except http.client.IncompleteRead as e:
                how = "truncated after %r" % e.partial
        except (OSError, http.client.HTTPException) as e:
            how = "truncated: %r" % e
        finally:
            conn.close()
        c("10a. a member that closes mid-chunk: the client sees a truncated answer (%s)"
          % how,
          how.startswith("truncated"), p.tail(8))
        t0 = time.monotonic()
        try:
            st, _, text = request(MP_CLIENT, "GET", "/good", timeout=5)
        except (OSError, http.client.HTTPException) as e:
            st, text = None, repr(e)
        took = time.monotonic() - t0
        c("10a. ... then GET /good through the proxy -> 200 %s (%.2fs)" % (GOOD_BODY.decode().strip(), took),
          st == 200 and text.encode() == GOOD_BODY and took < 2, (st, text, p.tail(8)))
        pid = p.proc.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(1.0)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        busy = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / (t1 - t0)
        c("10a. ... keeld is idle afterwards (CPU %s of a core over 1 s)"
          % (None if busy is None else "%.0f%%" % (busy * 100)),
          busy is not None and busy < 0.3, busy)
        rss = rss_mb(pid)
        c("10a. ... and small: VmRSS %s MB < 200 MB"
          % (None if rss is None else "%.1f" % rss),
          rss is not None and rss < 200, rss)

    def _s10b_large(self, p, fake):
        c = self.check
        for path, want, what in (("/big", BIG_CHUNKED, "an 8 MiB + 3 bytes chunked answer (1 MiB chunks, then 3 bytes)"),
                                 ("/len6m", BIG_LENGTH, "a Content-Length: 6000000 answer (over the 4 MiB buffered limit)")):
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", MP_CLIENT, timeout=20)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                st, te, data = resp.status, resp.headers.get("Transfer-Encoding"), resp.read()
            except (OSError, http.client.HTTPException) as e:
                st, te, data = None, None, b""
                err = repr(e)
            else:
                err = None
            finally:
                conn.close()
            took = time.monotonic() - t0
            first_diff = None
            if data != want:
                first_diff = next((i for i in range(0, min(len(data), len(want)), 4096)
                                   if data[i:i + 4096] != want[i:i + 4096]), min(len(data), len(want)))
            c("10b. %s: GET %s through the proxy -> 200 and exactly its %d bytes "
              "(Transfer-Encoding %s, %.2fs)" % (what, path, len(want), te, took),
              st == 200 and data == want,
              {"status": st, "got bytes": len(data), "want bytes": len(want), "error": err,
               "first difference at": first_diff, "log": p.tail(8)})

    def _s10d_continue(self, p, fake):
        c = self.check
        before = len(fake.seen)
        for hdrs, what in (({"Expect": "100-continue"}, "with Expect: 100-continue"), ({}, "without Expect")):
            try:
                st, _, text = request(MP_CLIENT, "PUT", "/expect", b"hello",
                                      dict(hdrs, **{"Content-Type": "text/plain"}), timeout=5)
            except (OSError, http.client.HTTPException) as e:
                st, text = None, repr(e)
            c("10d. the member answers \"100 Continue\" then 200 ok: a PUT through "
              "the proxy %s -> 200 ok" % what,
              st == 200 and text == "ok", (st, text, p.tail(8)))
        try:
            statuses, body, raw = raw_exchange(MP_CLIENT, b"PUT /expect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                               b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        except OSError as e:
            statuses, body, raw = [], None, repr(e).encode()
        interim_ok = all(s.split(" ", 1)[-1] == "100 Continue" for s in statuses[:-1])
        c("10d. ... on the wire (raw socket, Expect: 100-continue): status lines %s, body %r" % (statuses, body),
          body == b"ok" and statuses and statuses[-1].split(" ")[1:2] == ["200"] and interim_ok
          and b"Unknown" not in raw, raw[:400])
        seen = [s for s in fake.seen[before:] if s[1] == "/expect"]
        forwarded = [s[2].get("expect") for s in seen if "expect" in s[2]]
        c("10d. ... the member got the 3 PUTs with their body and no Expect header (Expect sent on: %d)"
          % len(forwarded),
          len(seen) == 3 and not forwarded and all(s[3] == b"hello" for s in seen),
          [(s[0], s[1], s[2], s[3]) for s in seen])

    def _s10c_restart(self, p, fake):
        c = self.check
        results = [None] * 20

        def get(i):
            try:
                results[i] = request(MP_CLIENT, "GET", "/c?slow=1&i=%d" % i, timeout=10)[::2]
            except (OSError, http.client.HTTPException) as e:
                results[i] = (None, repr(e))
        threads = [threading.Thread(target=get, args=(i,), daemon=True) for i in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(15)
        bad = [(i, r) for i, r in enumerate(results) if r != (200, "c")]
        conns_before = fake.accepted
        c("10c. 20 concurrent GETs through the proxy to a keep-alive member -> 200 (the member "
          "accepted %d connections in all)" % conns_before,
          not bad, bad)
        with fake.lock:
            pooled = len(fake.conns)  # the proxy's idle connections, kept alive
        c("10c. ... the proxy keeps %d connections to the member open (pooled)" % pooled, pooled >= 2, pooled)
        fake.stop()  # the member goes away: its listener and every connection of the proxy's pool closed
        time.sleep(0.2)
        fake.start()  # ... and comes back on the same port
        got = []
        for n in range(6):
            try:
                st, _, text = request(MP_CLIENT, "GET", "/c?i=after%d" % n, timeout=5)
            except (OSError, http.client.HTTPException) as e:
                st, text = None, repr(e)
            got.append((n, st, text[:120]))
        bad = [g for g in got if g[1] != 200]
        c("10c. the member restarted on the same port (pooled connections closed): 6 sequential GETs "
          "through the proxy -> all 200 (%d new connections)" % (fake.accepted - conns_before),
          not bad, (got, p.tail(10)))

    def s10e_hung_peer(self):
        c = self.check
        hung = HungPeer(HUNG_PEER).start()
        peer = members_server(MIS_PEER, MIS_CLIENT)
        fake = None
        p = None
        try:
            fake = MisbehavingMember(MIS_CLIENT).start()
            assert url_of(HUNG_PEER) < url_of(MIS_PEER)  # the proxy sorts its peer URLs: the hung one is asked first
            p = self.mis_proxy("hung", ["--initial-cluster", "hung=%s,good=%s" % (url_of(HUNG_PEER), url_of(MIS_PEER)),
                                        "--proxy-refresh-interval", "1000"])
            ok, last, took = self.wait_endpoints(MP_CLIENT, p, [url_of(MIS_CLIENT)], 15)
            c("10e. the first peer accepts and never answers (asked %d times): the proxy "
              "learns the endpoints from the second one within 15 s (%.1fs)" % (hung.accepted, took),
              ok and hung.accepted >= 1, (last, p.tail(10)))
            if ok:
                try:
                    st, _, text = request(MP_CLIENT, "GET", "/good", timeout=5)
                except (OSError, http.client.HTTPException) as e:
                    st, text = None, repr(e)
                c("10e. ... and GET /good through it -> 200", st == 200 and text.encode() == GOOD_BODY, (st, text))
        finally:
            if p:
                p.stop()
            if fake:
                fake.stop()
            stop_server(peer)
            hung.stop()

    def s10g_no_cluster_file(self):
        c = self.check
        p = self.mis_proxy("nofile", ["--initial-cluster", "x=%s" % url_of(CLOSED_PORT)])
        try:
            def up():
                if not p.running():
                    raise Exited("exited with %s" % p.proc.returncode)
                return self.proxy_endpoints(MP_CLIENT) == []
            try:
                ok = poll(up, 10) is True
            except Exited as e:
                ok = False
                c("10g. --proxy on --initial-cluster x=<closed port>, fresh data dir: it runs", False,
                  (str(e), p.tail(10)))
                return
            time.sleep(2.0)
            path = os.path.join(self.work, "nofile.data", "proxy", "cluster")
            c("10g. --proxy on --initial-cluster x=<closed port>, fresh data dir: 2 s later no proxy/cluster "
              "(written only after a successful read of the members)",
              ok and p.running() and not os.path.exists(path),
              {"up": ok, "running": p.running(), "exists": os.path.exists(path), "log": p.tail(8)})
        finally:
            p.stop()

    def s10f_single_node(self):
        c = self.check
        d = os.path.join(self.work, "solo.data")
        cmd = self.keeld("solo", ["--listen-client-urls", url_of(SOLO_CLIENT), "--advertise-client-urls",
                                  url_of(SOLO_CLIENT), "--listen-peer-urls", url_of(SOLO_PEER)], d)
        p = Proc("solo", cmd, self.work).start()
        try:
            def put():
                if not p.running():
                    raise Exited("exited with %s" % p.proc.returncode)
                return request(SOLO_CLIENT, "PUT", "/v2/keys/solo10", *form(value="kept"), timeout=2)[0] in (200, 201)
            try:
                ok = poll(put, 15, 0.2) is True
            except Exited as e:
                ok = False
            c("10f. a single node (no --initial-cluster): v2 PUT /v2/keys/solo10 value=kept -> 201", ok, p.tail(10))
            if not ok:
                return
            p.stop()
            c("10f. ... stopped with SIGTERM (exit %s); its "
              "data dir holds %s" % (p.proc.returncode, sorted(os.listdir(d))),
              p.proc.returncode not in (None, -signal.SIGKILL), p.tail(5))
            p.cmd = cmd + ["--proxy", "on", "--initial-cluster", "x=%s" % url_of(CLOSED_PORT)]
            p.start()
            last = [None]

            def get():
                if not p.running():
                    raise Exited("exited with %s" % p.proc.returncode)
                st, val, _, text = v2_get(SOLO_CLIENT, "solo10", timeout=2)
                last[0] = (st, text)
                return st == 200 and val == "kept"
            try:
                ok = poll(get, 15, 0.2) is True
            except Exited as e:
                ok, last[0] = False, str(e)
            c("10f. ... restarted with --proxy on --initial-cluster x=<closed port> added: "
              "it is the member again, GET /v2/keys/solo10 -> 200 kept",
              ok and p.running(), (last[0], p.tail(10)))
            out = p.output()
            c("10f. ... its data dir has no proxy/cluster and it did not run as a proxy",
              not os.path.exists(os.path.join(d, "proxy", "cluster")) and "running as etcd's v2 proxy" not in out,
              {"data dir": sorted(os.listdir(d)), "log": p.tail(10)})
        finally:
            p.stop()

    # -- run --------------------------------------------------------------------------------

    def run(self):
        busy = [p for p in ALL_PORTS if not port_free(p)]
        if busy:
            self.check.fail("0. ports free", "in use: %s" % busy)
            return
        try:
            self.s1_cluster()
            self.s2_peer_members()
        except Exception as e:  # noqa: BLE001
            self.check.fail("1-2. setup", "%r\n%s" % (e, traceback.format_exc()))
            dump([self.host] + self.members if self.host else self.members)
            return
        for step in (self.s3_proxy, self.s4_exit, self.s5_kill_member, self.s6_restart_proxy,
                     self.s7_readonly, self.s8_zero, self.s8b_bad_endpoint, self.s8c_dial_timeout, self.s8d_read_timeout, self.s9_etcd,
                     self.s10_member, self.s10e_hung_peer, self.s10g_no_cluster_file, self.s10f_single_node):
            if step == self.s5_kill_member and (self.proxy is None or not self.proxy.running()):
                self.check.fail("5. not run", "the proxy of scenario 3 is not running")
                continue
            try:
                step()
            except Exception as e:  # noqa: BLE001
                self.check.fail("%s raised" % step.__name__, "%r\n%s" % (e, traceback.format_exc()))
                dump([p for p in PROCS if p is not self.host][-3:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True, help="keeld")
    ap.add_argument("--etcd", default="/usr/bin/etcd", help="etcd 3.4 for scenario 9 (skipped if missing)")
    ap.add_argument("--workdir", help="parent of the temporary work dir")
    ap.add_argument("--keep", action="store_true", help="keep the work dir even on success")
    o = ap.parse_args()
    o.binary = os.path.abspath(o.binary)
    if o.workdir:
        os.makedirs(o.workdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="keel-proxy-", dir=o.workdir)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    t0 = time.monotonic()
    t = Test(o, work)
    try:
        t.run()
    finally:
        stop_everything()
    failed = len(t.check.failures)
    print("%d passed, %d failed, %.1fs" % (t.check.passed, failed, time.monotonic() - t0))
    if failed or o.keep:
        print("work dir kept: " + work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        return 1
    return 77 if t.etcd_skipped else 0


if __name__ == "__main__":
    sys.exit(main())
