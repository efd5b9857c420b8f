#!/usr/bin/env python3
"""Multi-process cluster harness for etcd-compatible servers (etcd 3.4, keeld).

Stdlib only.  Members are started with etcd's static-bootstrap flags on
127.0.0.1 and spoken to ONLY through the v3 JSON gateway (POST /v3/kv/range,
/v3/kv/put, /v3/maintenance/status), so the same harness drives etcd and keeld.

    c = Cluster("etcd", size=3, base_port=29400, workdir="/tmp/x")
    w = Workload(c, clients=6, keys=6); w.start()
    c.kill9(c.leader()); ...; w.stop(); lincheck.check(w.history())

Ports: member i uses client port base_port + 2*i and peer port base_port+2*i+1.
With peer_proxy=True (see peerproxy.py) base_port+2*i+1 is the port of member i's
peer proxy, which it advertises, and it listens for peers on base_port+2*size+i.

Processes are ours: they are stopped by stop_all() (also at exit, on SIGINT /
SIGTERM via install_signal_handlers(), and when the harness dies: members are
started through `setpriv --pdeathsig KILL` when available -- the parent-death
signal is tied to the spawning *thread*, so start/restart members from the
main thread).

CLI:  python3 cluster.py --binary etcd [--size 3] [--base-port 29400]
      starts a cluster, prints endpoints and the leader, waits for Ctrl-C.
"""

import argparse
import atexit
import base64
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

__all__ = ["Cluster", "Workload", "Member", "HttpError", "NotSent", "Unknown",
           "kv_put", "kv_get", "status", "install_signal_handlers",
           "add_scenario_arguments", "add_run_arguments", "server_binary", "work_dir", "run_scenario",
           "finish_run"]


# ---------------------------------------------------------------------------
# JSON gateway client

class NotSent(Exception):
    """The request never reached the server (connect failed): definitely not applied."""


class Unknown(Exception):
    """The request may have reached the server; outcome unknown (timeout, reset...)."""


class HttpError(Exception):
    """The server answered with a non-200 status."""

    def __init__(self, status, body):
        self.status = status
        self.body = body
        try:
            j = json.loads(body)
        except Exception:
            j = {}
        self.code = j.get("code") if isinstance(j, dict) else None
        self.message = (j.get("error") or j.get("message")) if isinstance(j, dict) else None
        Exception.__init__(self, "HTTP %s: %s" % (status, body[:200]))


def _hostport(url):
    u = url.split("://", 1)[-1].rstrip("/")
    host, port = u.rsplit(":", 1)
    return host, int(port)


def post(url, path, body, timeout):
    """POST JSON; returns parsed JSON. Raises NotSent / Unknown / HttpError."""
    host, port = _hostport(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise NotSent(str(e))
        data = json.dumps(body).encode()
        try:
            conn.request("POST", path, body=data,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise Unknown("%s: %s" % (type(e).__name__, e))
        text = raw.decode("utf-8", "replace")
        if resp.status != 200:
            raise HttpError(resp.status, text)
        try:
            return json.loads(text)
        except ValueError:
            raise Unknown("unparsable 200 body: %r" % text[:200])
    finally:
        conn.close()


def b64e(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def b64d(s):
    return base64.b64decode(s).decode("utf-8", "replace")


def kv_put(url, key, value, timeout):
    return post(url, "/v3/kv/put", {"key": b64e(key), "value": b64e(value)}, timeout)


def kv_get(url, key, timeout, serializable=False):
    """Returns (value or None, header revision as int)."""
    body = {"key": b64e(key)}
    if serializable:
        body["serializable"] = True
    r = post(url, "/v3/kv/range", body, timeout)
    kvs = r.get("kvs") or []
    rev = int((r.get("header") or {}).get("revision", 0))
    return (b64d(kvs[0].get("value", "")) if kvs else None), rev


def status(url, timeout):
    return post(url, "/v3/maintenance/status", {}, timeout)


# gRPC codes for which etcd guarantees the request was NOT applied: validation
# errors before proposal (InvalidArgument: empty key, request too large...),
# and ResourceExhausted ("too many requests" is checked before proposing;
# "database space exceeded" rejects the write at apply time).  Everything else
# -- notably Unavailable (14): "request timed out", "leader changed",
# "timed out due to previous leader failure", "stopped" -- is returned after
# the entry may already have been proposed and so may commit later.
DEFINITE_FAILURE_CODES = {3, 8}


def put_failure_is_definite(err):
    return isinstance(err, NotSent) or (
        isinstance(err, HttpError) and err.code in DEFINITE_FAILURE_CODES)


# ---------------------------------------------------------------------------
# cluster

_LIVE_CLUSTERS = []


def _stop_live():
    for c in list(_LIVE_CLUSTERS):
        try:
            c.stop_all()
        except Exception:
            pass


atexit.register(_stop_live)


def install_signal_handlers():
    """SIGINT/SIGTERM -> stop every cluster, then exit 130/143 (main thread only)."""
    def h(signum, frame):
        _stop_live()
        sys.stderr.write("\ncluster: got signal %d, members stopped\n" % signum)
        os._exit(128 + signum)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, h)
        signal.signal(signal.SIGTERM, h)


# ---------------------------------------------------------------------------
# the scripts' command lines and work dirs

def add_scenario_arguments(ap, base_port):
    """The options of a keeld scenario script (membership, snapshot transfer, ...):
    --binary (required), --base-port (default base_port), --workdir."""
    ap.add_argument("--binary", required=True)
    ap.add_argument("--base-port", type=int, default=base_port)
    ap.add_argument("--workdir")


def add_run_arguments(ap, base_port, failover_help):
    """The options of a fault run under a workload (fault_test.py, partition_test.py):
    the server (--binary, default etcd, and --extra-args), --base-port, --workdir, --keep,
    the workload (--clients, --keys, --timeout, --seed), --max-failover (its help is
    failover_help) and the checker's --check-timeout."""
    ap.add_argument("--binary", default="etcd")
    ap.add_argument("--extra-args", default="",
                    help="extra server flags as one string, e.g. '--heartbeat-interval 50'")
    ap.add_argument("--base-port", type=int, default=base_port)
    ap.add_argument("--workdir", help="parent dir for the run's work dir (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir even on success")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=1.0, help="per-request client timeout (s)")
    ap.add_argument("--max-failover", type=float, default=10.0, help=failover_help)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--check-timeout", type=float, default=20.0, help="lincheck timeout per key")


def server_binary(name):
    """The absolute path of the server binary `name` (a command on PATH or a path). When
    there is none the test is skipped: "SKIP: server binary 'NAME' not found", exit 77."""
    if not (shutil.which(name) or os.path.exists(name)):
        keeltest.skip("server binary %r not found" % name)
    return shutil.which(name) or os.path.abspath(name)


def work_dir(parent, prefix):
    """A new directory for one run, named prefix..., under `parent` (created first if it
    does not exist) or, when parent is None, under $TMPDIR."""
    if parent:
        os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def run_scenario(prefix, base_port, body, add_arguments=None):
    """The main() of a scenario script; returns its exit status (check.summary()).

    Parses add_scenario_arguments(ap, base_port) and whatever add_arguments(ap) adds,
    resolves --binary with server_binary() (a missing server skips the test), makes a work
    dir named prefix... under --workdir, and calls body(o, work, check, started). The body
    passes every Cluster and every other process it starts (a Popen: a discovery host, a
    joining member) through started(x), which returns x. An exception from the body is a
    failed check, and the logs of the last cluster started are printed. Whatever happened,
    everything started is then stopped, the last started first: a cluster by stop_all(), a
    process by SIGTERM (SIGKILL after 10 s)."""
    ap = argparse.ArgumentParser()
    add_scenario_arguments(ap, base_port)
    if add_arguments:
        add_arguments(ap)
    o = ap.parse_args()
    o.binary = server_binary(o.binary)
    work = work_dir(o.workdir, prefix)
    check = keeltest.Checks()
    running = []

    def started(x):
        running.append(x)
        return x

    try:
        body(o, work, check, started)
    except Exception as e:  # noqa: BLE001
        check.fail(repr(e))
        clusters = [x for x in running if isinstance(x, Cluster)]
        if clusters:
            clusters[-1].dump_logs()
    finally:
        for x in reversed(running):
            if isinstance(x, Cluster):
                x.stop_all()
            else:
                _end_process(x)
    return check.summary()


def _end_process(p, grace=10.0):
    """SIGTERM to p (a Popen) if it still runs, SIGKILL after grace seconds; reaps it."""
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def finish_run(binary, report, keys, width, ok, keep, workdir):
    """The end of a fault run: prints "==== report (BINARY) ====", then each of `keys`
    present in `report` with its value (names padded to `width`), then "result: PASS" or
    "result: FAIL"; removes workdir when the run passed and keep is false, else prints
    where it is kept. Returns the exit status: 0 passed, 1 failed."""
    print("\n==== report (%s) ====" % os.path.basename(binary))
    for k in keys:
        if k in report:
            print("  %-*s %s" % (width, k, report[k]))
    print("  result: %s" % ("PASS" if ok else "FAIL"))
    if ok and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("  workdir kept: %s" % workdir)
    return 0 if ok else 1


class Member:
    def __init__(self, idx, name, client_url, peer_url, data_dir, log_path):
        self.idx = idx
        self.name = name
        self.client_url = client_url
        self.peer_url = peer_url
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.state = "down"        # "running" | "stopped" (SIGSTOP) | "killed" | "down"
        self.member_id = None      # decimal string from /v3/maintenance/status
        self.cmd = None
        self.listen_peer_url = peer_url  # differs from peer_url behind a peer proxy

    @property
    def pid(self):
        return self.proc.pid if self.proc else None


class Cluster:
    def __init__(self, binary, size=3, base_port=29400, workdir=None, extra_args=(),
                 heartbeat_ms=None, election_ms=None, ready_timeout=30.0, start=True,
                 log=None, peer_proxy=False):
        self.binary = binary
        self.size = size
        self.base_port = base_port
        nports = 3 * size if peer_proxy else 2 * size
        if not (29400 <= base_port and base_port + nports - 1 <= 29519):
            raise ValueError("ports must stay within 29400-29519")
        self.own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir or tempfile.mkdtemp(prefix="keel-cluster-"))
        os.makedirs(self.workdir, exist_ok=True)
        self.extra_args = list(extra_args)
        if heartbeat_ms is not None:
            self.extra_args += ["--heartbeat-interval", str(heartbeat_ms)]
        if election_ms is not None:
            self.extra_args += ["--election-timeout", str(election_ms)]
        self.token = "keel-%d-%d-%d" % (os.getpid(), int(time.time() * 1000), random.randrange(1 << 30))
        self.log = log or (lambda s: sys.stderr.write(s + "\n"))
        self.lock = threading.Lock()
        self.members = []
        for i in range(size):
            name = "m%d" % i
            self.members.append(Member(
                i, name,
                "http://127.0.0.1:%d" % (base_port + 2 * i),
                "http://127.0.0.1:%d" % (base_port + 2 * i + 1),
                os.path.join(self.workdir, name + ".data"),
                os.path.join(self.workdir, name + ".log")))
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        self._setpriv = shutil.which("setpriv")
        self.proxies = None
        _LIVE_CLUSTERS.append(self)
        if peer_proxy:
            import peerproxy
            for m in self.members:
                m.listen_peer_url = "http://127.0.0.1:%d" % (base_port + 2 * size + m.idx)
            try:
                self.proxies = peerproxy.PeerProxies(
                    [_hostport(m.peer_url)[1] for m in self.members],
                    [_hostport(m.listen_peer_url)[1] for m in self.members],
                    lambda i: self.members[i].pid if self.members[i].state in ("running", "stopped") else None,
                    log=self.log)
            except BaseException:
                self.stop_all()
                raise
        if start:
            try:
                self.start(ready_timeout)
            except BaseException:
                self.stop_all()
                raise

    # -- processes ---------------------------------------------------------

    def args(self, i):
        m = self.members[i]
        return [self.binary,
                "--name", m.name,
                "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url,
                "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.listen_peer_url,
                "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token] + self.extra_args

    def _spawn(self, i):
        m = self.members[i]
        cmd = self.args(i)
        m.cmd = cmd
        if self._setpriv:
            cmd = [self._setpriv, "--pdeathsig", "KILL", "--"] + cmd
        with open(m.log_path, "ab") as logf:
            logf.write(("\n==== %s start: %s\n" % (time.strftime("%H:%M:%S"), " ".join(m.cmd))).encode())
            logf.flush()
            m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        m.state = "running"

    def start(self, ready_timeout=30.0):
        for i in range(self.size):
            self._spawn(i)
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout=30.0):
        """Every member answers status and a majority agrees on a leader."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.members:
                if m.proc and m.proc.poll() is not None and m.state == "running":
                    self.dump_logs()
                    raise RuntimeError("member %s exited with %s during startup"
                                       % (m.name, m.proc.returncode))
            sts = [self.status(i, 1.0) for i in range(self.size)]
            if all(s is not None for s in sts) and self.leader() is not None:
                return
            if time.monotonic() > deadline:
                self.dump_logs()
                raise RuntimeError("cluster not ready after %.0fs (status: %r)" % (timeout, sts))
            time.sleep(0.2)

    def kill9(self, i):
        m = self.members[i]
        if m.proc and m.proc.poll() is None:
            os.kill(m.proc.pid, signal.SIGKILL)
            m.proc.wait()
        m.state = "killed"

    def restart(self, i, wait=True, timeout=30.0):
        """Restart a killed/exited member with the same command line (data dir reused)."""
        m = self.members[i]
        if m.proc and m.proc.poll() is None:
            raise RuntimeError("member %s is still running" % m.name)
        self._spawn(i)
        if wait:
            deadline = time.monotonic() + timeout
            while self.status(i, 1.0) is None:
                if m.proc.poll() is not None:
                    self.dump_logs([i])
                    raise RuntimeError("member %s exited with %s after restart"
                                       % (m.name, m.proc.returncode))
                if time.monotonic() > deadline:
                    self.dump_logs([i])
                    raise RuntimeError("member %s not answering after restart" % m.name)
                time.sleep(0.1)

    def stop(self, i):
        m = self.members[i]
        os.kill(m.proc.pid, signal.SIGSTOP)
        m.state = "stopped"

    def cont(self, i):
        m = self.members[i]
        os.kill(m.proc.pid, signal.SIGCONT)
        m.state = "running"

    def stop_all(self, grace=5.0):
        for m in self.members:
            p = m.proc
            if p and p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                    p.send_signal(signal.SIGCONT)
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        for m in self.members:
            p = m.proc
            if p and p.poll() is None:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            m.state = "down"
        if getattr(self, "proxies", None) is not None:
            self.proxies.close()
            self.proxies = None
        if self in _LIVE_CLUSTERS:
            _LIVE_CLUSTERS.remove(self)

    def cleanup(self):
        """stop_all() and remove the work directory."""
        self.stop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- queries -------------------------------------------------------------

    def url(self, i):
        return self.members[i].client_url

    def alive(self):
        """Members not killed (running or SIGSTOPped): where a client may send."""
        return [m.idx for m in self.members if m.state in ("running", "stopped")]

    def responsive(self):
        return [m.idx for m in self.members if m.state == "running"]

    def status(self, i, timeout=1.0):
        try:
            s = status(self.url(i), timeout)
        except (NotSent, Unknown, HttpError):
            return None
        mid = str(int(s["header"]["member_id"]))
        self.members[i].member_id = mid
        return s

    def leader(self, timeout=1.0):
        """Index of the member a majority of responsive members names as leader
        (and which names itself), else None."""
        votes = {}
        for i in self.responsive():
            s = self.status(i, timeout)
            if s is None:
                continue
            lid = str(int(s.get("leader") or 0))
            if lid != "0":
                votes[lid] = votes.get(lid, 0) + 1
        for lid, n in votes.items():
            if n > self.size // 2:
                for m in self.members:
                    if m.member_id == lid and m.state == "running":
                        s = self.status(m.idx, timeout)
                        if s and str(int(s.get("leader") or 0)) == lid:
                            return m.idx
        return None

    def wait_leader(self, exclude=None, timeout=15.0):
        """Poll until a leader (not `exclude`) is agreed. Returns (idx, seconds)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            idx = self.leader(timeout=0.5)
            if idx is not None and idx != exclude:
                return idx, time.monotonic() - t0
            time.sleep(0.05)
        raise RuntimeError("no leader%s after %.0fs" % (
            "" if exclude is None else " other than m%d" % exclude, timeout))

    def wait_converged(self, keys, timeout=15.0, members=None):
        """Poll until every member's *serializable* reads of `keys` return the
        same values and the same header revision as the leader's, twice in a
        row. Returns seconds taken; raises on timeout."""
        members = self.responsive() if members is None else members
        t0 = time.monotonic()
        prev = None
        last = None
        while time.monotonic() - t0 < timeout:
            try:
                snap = {}
                for i in members:
                    snap[i] = tuple(kv_get(self.url(i), k, 1.0, serializable=True) for k in keys)
                last = snap
                vals = set(snap.values())
                if len(vals) == 1 and snap == prev:
                    return time.monotonic() - t0
                prev = snap
            except (NotSent, Unknown, HttpError):
                prev = None
            time.sleep(0.2)
        raise RuntimeError("members did not converge within %.0fs: %r" % (timeout, last))

    # -- logs ------------------------------------------------------------------

    def log_tail(self, i, n=40):
        try:
            with open(self.members[i].log_path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError as e:
            return "(no log: %s)" % e

    def dump_logs(self, which=None, n=40, out=None):
        out = out or sys.stderr
        for i in (range(self.size) if which is None else which):
            m = self.members[i]
            out.write("----- %s (pid %s, %s) log tail: %s -----\n%s\n" % (
                m.name, m.pid, m.state, m.log_path, self.log_tail(i, n)))
        out.flush()


# ---------------------------------------------------------------------------
# workload

def check_history(c, leader, keys, hist, workdir, report, log, check_timeout):
    """The end of a fault run: reads every key once more on `leader` (a final read after
    everything), saves `hist` to workdir/history.json, checks the history plus those reads
    for linearizability and for acknowledged writes lost, logs what it found and fills
    `report`. Returns (lincheck.Result, lost writes)."""
    import lincheck  # beside this file
    final = {}
    t_f = time.monotonic_ns()
    for k in keys:
        final[k] = kv_get(c.url(leader), k, 5.0)[0]
    t_f2 = time.monotonic_ns()
    with open(os.path.join(workdir, "history.json"), "w") as f:
        json.dump(hist, f)
    checked = hist + [{"client": "final", "op": "get", "key": k, "input": None,
                       "output": v, "call_ns": t_f, "return_ns": t_f2}
                      for k, v in final.items()]
    t0 = time.monotonic()
    res = lincheck.check(checked, timeout_per_key=check_timeout)
    report["lincheck"] = res.status
    report["lincheck_s"] = round(time.monotonic() - t0, 2)
    lost = lincheck.lost_writes(hist, final)
    seen = set(e["output"] for e in hist if e["op"] == "get" and e.get("return_ns"))
    seen |= set(final.values())
    report["unknown_puts_later_observed"] = sum(
        1 for e in hist if e["op"] == "put" and e.get("return_ns") is None
        and not e.get("failed") and e["input"] in seen)
    report["lost_acked_writes"] = len(lost)
    log("lincheck: %s in %.2fs (%s)" % (res.status, report["lincheck_s"],
        ", ".join("%s:%d ops" % (k, r.ops) for k, r in res.per_key.items())))
    if not res.ok:
        log(res.explanation)
    for x in lost[:10]:
        log("LOST: key %s put %r (%s)" % (x["key"], x["put"]["input"], x["reason"]))
    return res, lost


class Workload:
    """Client threads doing random put/get on random live members.

    Every op is recorded as a lincheck history entry plus diagnostics:
      put ok                      -> output "ok", return_ns set
      put definite failure        -> failed=True (connect refused, or an HTTP
                                     error whose gRPC code is in
                                     DEFINITE_FAILURE_CODES)
      put timeout / reset / other HTTP error -> return_ns None (unknown)
      get ok                      -> output value (None = absent)
      get any error               -> return_ns None (dropped by the checker)
    Values are unique: "c<client>-<seq>".
    """

    def __init__(self, cluster, clients=6, keys=6, timeout=1.0, put_ratio=0.5,
                 seed=None, key_prefix="lin/"):
        self.cluster = cluster
        self.nclients = clients
        self.keys = ["%sk%d" % (key_prefix, i) for i in range(keys)]
        self.timeout = timeout
        self.put_ratio = put_ratio
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self._hist = [[] for _ in range(clients)]
        self._threads = []
        self._stop = threading.Event()
        self._run = threading.Event()
        self._run.set()
        self._cv = threading.Condition()
        self._busy = 0

    def start(self):
        for c in range(self.nclients):
            t = threading.Thread(target=self._loop, args=(c,), daemon=True,
                                 name="client-%d" % c)
            t.start()
            self._threads.append(t)

    def stop(self):
        self._stop.set()
        self._run.set()
        for t in self._threads:
            t.join()

    def pause(self):
        """Stop issuing ops and wait for in-flight ones to finish."""
        self._run.clear()
        with self._cv:
            while self._busy:
                self._cv.wait()

    def resume(self):
        self._run.set()

    def _loop(self, c):
        rng = random.Random(self.seed * 1000 + c)
        seq = 0
        hist = self._hist[c]
        while not self._stop.is_set():
            if not self._run.is_set():
                self._run.wait()
                continue
            with self._cv:
                if not self._run.is_set():
                    continue
                self._busy += 1
            try:
                alive = self.cluster.alive()
                if not alive:
                    time.sleep(0.05)
                    continue
                i = rng.choice(alive)
                url = self.cluster.url(i)
                key = rng.choice(self.keys)
                if rng.random() < self.put_ratio:
                    seq += 1
                    val = "c%d-%d" % (c, seq)
                    e = {"client": c, "op": "put", "key": key, "input": val,
                         "output": None, "member": i}
                    e["call_ns"] = time.monotonic_ns()
                    try:
                        kv_put(url, key, val, self.timeout)
                        e["return_ns"] = time.monotonic_ns()
                        e["output"] = "ok"
                    except (NotSent, Unknown, HttpError) as err:
                        t = time.monotonic_ns()
                        e["error"] = str(err)[:200]
                        if put_failure_is_definite(err):
                            e["return_ns"] = t
                            e["failed"] = True
                        else:
                            e["return_ns"] = None
                            e["gave_up_ns"] = t
                else:
                    e = {"client": c, "op": "get", "key": key, "input": None,
                         "output": None, "member": i}
                    e["call_ns"] = time.monotonic_ns()
                    try:
                        v, _rev = kv_get(url, key, self.timeout)
                        e["return_ns"] = time.monotonic_ns()
                        e["output"] = v
                    except (NotSent, Unknown, HttpError) as err:
                        e["return_ns"] = None
                        e["gave_up_ns"] = time.monotonic_ns()
                        e["error"] = str(err)[:200]
                        if isinstance(err, NotSent):
                            e["failed"] = True
                hist.append(e)
                if "error" in e:
                    time.sleep(0.02)   # don't spin on a dead endpoint
            finally:
                with self._cv:
                    self._busy -= 1
                    self._cv.notify_all()

    def history(self):
        h = [e for hist in self._hist for e in list(hist)]
        h.sort(key=lambda e: e["call_ns"])
        return h

    def first_ack_put_after(self, t_ns):
        """Earliest return_ns of an acknowledged put invoked at or after t_ns."""
        best = None
        for hist in self._hist:
            for e in list(hist):
                if (e["op"] == "put" and e["call_ns"] >= t_ns and e.get("output") == "ok"
                        and (best is None or e["return_ns"] < best)):
                    best = e["return_ns"]
        return best

    def wait_ack_put_after(self, t_ns, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.first_ack_put_after(t_ns)
            if r is not None:
                return r
            time.sleep(0.02)
        return None

    def stats(self):
        s = {"ops": 0, "ok": 0, "unknown": 0, "failed": 0,
             "put_ok": 0, "put_unknown": 0, "put_failed": 0,
             "get_ok": 0, "get_failed": 0}
        for e in self.history():
            s["ops"] += 1
            if e["op"] == "put":
                if e.get("failed"):
                    s["failed"] += 1
                    s["put_failed"] += 1
                elif e.get("return_ns") is None:
                    s["unknown"] += 1
                    s["put_unknown"] += 1
                else:
                    s["ok"] += 1
                    s["put_ok"] += 1
            else:
                if e.get("return_ns") is None:
                    s["failed"] += 1
                    s["get_failed"] += 1
                else:
                    s["ok"] += 1
                    s["get_ok"] += 1
        return s


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="start a local cluster and keep it up")
    ap.add_argument("--binary", default="etcd")
    ap.add_argument("--size", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=29400)
    ap.add_argument("--workdir")
    ap.add_argument("--extra-args", default="", help="extra server flags, one string")
    ap.add_argument("--peer-proxy", action="store_true",
                    help="put a peerproxy.PeerProxies in front of the peer ports")
    a = ap.parse_args()
    install_signal_handlers()
    c = Cluster(a.binary, a.size, a.base_port, a.workdir, a.extra_args.split(),
                peer_proxy=a.peer_proxy)
    for m in c.members:
        print("%s pid %d client %s peer %s log %s" % (m.name, m.pid, m.client_url,
                                                     m.peer_url, m.log_path))
    print("leader: m%s" % c.leader())
    print("Ctrl-C to stop")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        c.stop_all()


if __name__ == "__main__":
    main()
