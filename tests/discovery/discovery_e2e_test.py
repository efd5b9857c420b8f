#!/usr/bin/env python3
"""End-to-end test of the discovery module through keeld (--modules kv,discovery).

1. The service: GET /new (size default 3, bad size 400), etcd v2 semantics under
   /discovery/<token> as etcd 3.4's discovery client uses them (create with
   prevExist=false, 105 on a duplicate id, listing, waits answered by a later
   registration and from history, the empty 200 after the wait timeout, DELETE, PUT of
   _config/size), and the registry surviving a restart (it lives in kv).
2. Real etcd 3.4 members started with --discovery http://127.0.0.1:<keel>/discovery/<token>
   bootstrap from keel's service: one member (size 1), then three at once (size 3).
3. keel_discovery_client (discovery_client_tool): three clients in threads against keel's
   service get the same --initial-cluster; a fourth finds the cluster full; the same three
   against a real etcd 3.4 --enable-v2 at /v2/keys/_etcd/registry/<token>.

Usage: discovery_e2e_test.py <keeld> <discovery_client_tool> <etcd>
Ports: 29300-29349 only. Exits 77 (skipped) when etcd is missing and cannot be installed.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
TOOL = sys.argv[2] if len(sys.argv) > 2 else "build/tests/discovery/discovery_client_tool"
ETCD = sys.argv[3] if len(sys.argv) > 3 else "/usr/bin/etcd"
WAIT_TIMEOUT_MS = 2000
_next_port = [29300]
check = keeltest.Checks()


def port_in_range():
    """The next free loopback port of 29300-29349."""
    while _next_port[0] < 29350:
        port = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port left in 29300-29349")


def http(method, url, body=None, headers=None, timeout=10):
    """(status, headers, body text) for one request; HTTP errors are answers too."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def form(**values):
    return urllib.parse.urlencode(values), {"Content-Type": "application/x-www-form-urlencoded"}


class Keeld:
    def __init__(self, root, port=None):
        self.root = root
        self.port = port or port_in_range()
        self.start()

    # The module's config section: "discovery" is also etcd's core --discovery key, so
    # keeld names the section "discovery-service" (modules/discovery/README.md "Config").
    def start(self):
        self.launch(["--discovery-service.wait-timeout-ms", str(WAIT_TIMEOUT_MS)])

    def launch(self, extra):
        self.log = open(os.path.join(self.root, "keeld-%d.log" % self.port), "a")
        module_path = ["--module-path", os.environ["KEEL_MODULE_PATH"]] if os.environ.get("KEEL_MODULE_PATH") else []
        self.proc = subprocess.Popen(
            [KEELD, "--modules", "kv,discovery", "--kv.dir", os.path.join(self.root, "kv"), "--shards", "2",
             "--listen-client-urls", "http://127.0.0.1:%d" % self.port,
             "--data-dir", os.path.join(self.root, "core.keel")] + module_path + extra,
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError("keeld exited with %d (see %s)" % (self.proc.returncode, self.log.name))
            try:
                status, _, _ = http("GET", self.url("/health"), timeout=2)
                if status == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise RuntimeError("keeld did not become ready")

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)
        self.log.close()


def new_token(keel, size):
    status, _, body = http("GET", keel.url("/new?size=%d" % size))
    assert status == 200, (status, body)
    return body[body.index("/discovery/"):]  # the path: /discovery/<token>


# ---- 1. the service ---------------------------------------------------------------------------

def service_checks(keel, root):
    status, headers, body = http("GET", keel.url("/new"))
    check("GET /new answers 200 text/plain", status == 200 and headers.get("Content-Type", "").startswith("text/plain"),
          (status, body))
    check("GET /new answers http://<Host>/discovery/<32 hex>",
          re.fullmatch(r"http://127\.0\.0\.1:%d/discovery/[0-9a-f]{32}" % keel.port, body) is not None, body)
    path = body[body.index("/discovery/"):]
    status, headers, body = http("GET", keel.url(path + "/_config/size"))
    answer = json.loads(body) if status == 200 else {}
    check("default size is 3", answer.get("node", {}).get("value") == "3", body)
    check("GET answers etcd's get with key and indexes",
          answer.get("action") == "get" and answer["node"].get("key") == path + "/_config/size"
          and answer["node"].get("createdIndex", 0) > 0 and answer["node"].get("modifiedIndex", 0) > 0, body)
    check("X-Etcd-Index on a get", int(headers.get("X-Etcd-Index", "0")) >= answer.get("node", {}).get("modifiedIndex", 1),
          dict(headers))

    for bad in ("abc", "0", "-1", "3.5"):
        status, headers, body = http("GET", keel.url("/new?size=" + bad))
        ok = status == 400
        try:
            ok = ok and "message" in json.loads(body)
        except ValueError:
            ok = False
        check("GET /new?size=%s is 400 with a JSON error" % bad, ok, (status, body))

    path = new_token(keel, 3)
    status, _, body = http("GET", keel.url(path + "/_config/size?quorum=false&recursive=false&sorted=false"))
    check("GET /new?size=3 stores size 3", status == 200 and json.loads(body)["node"]["value"] == "3", body)

    # The token before anyone registered: a directory without visible children.
    status, headers, body = http("GET", keel.url(path + "?quorum=false&recursive=false&sorted=false"))
    listed = json.loads(body) if status == 200 else {}
    check("an empty token lists as a directory", status == 200 and listed["node"].get("dir") is True
          and "nodes" not in listed["node"] and listed["node"]["key"] == path, body)
    index = int(headers["X-Etcd-Index"])

    # A wait started before a registration is answered by it.
    waited = {}

    def wait():
        waited["answer"] = http("GET", keel.url("%s?recursive=true&wait=true&waitIndex=%d" % (path, index + 1)), timeout=30)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    ids = ["8e9e05c52164694d", "91bc3c398fb3c146", "fd422379fda50e48"]
    answers = []
    for i, member in enumerate(ids):
        body, headers = form(value="infra%d=http://127.0.0.1:%d" % (i, 2380 + i))
        answers.append(http("PUT", keel.url("%s/%s?prevExist=false" % (path, member)), body, headers))
    waiter.join(timeout=30)
    status, headers, body = waited.get("answer", (0, {}, ""))
    event = json.loads(body) if status == 200 and body else {}
    check("a wait started before the registration is answered by it",
          event.get("action") == "create" and event.get("node", {}).get("key") == path + "/" + ids[0]
          and event["node"].get("value") == "infra0=http://127.0.0.1:2380", (status, body))
    check("the wait's X-Etcd-Index is the index at registration", headers.get("X-Etcd-Index") == str(index),
          dict(headers) if headers else None)

    for i, (status, headers, body) in enumerate(answers):
        node = json.loads(body).get("node", {}) if body else {}
        check("member %d created with prevExist=false: 201 create" % i,
              status == 201 and json.loads(body)["action"] == "create" and node.get("key") == path + "/" + ids[i]
              and node.get("createdIndex") == node.get("modifiedIndex") == int(headers["X-Etcd-Index"]), (status, body))
    created = [json.loads(b)["node"]["createdIndex"] for _, _, b in answers]

    body, headers = form(value="infra9=http://127.0.0.1:2399")
    status, headers, body = http("PUT", keel.url("%s/%s?prevExist=false" % (path, ids[1])), body, headers)
    error = json.loads(body) if body else {}
    check("a duplicate id is 412 errorCode 105 with etcd's error JSON",
          status == 412 and error.get("errorCode") == 105 and error.get("message") == "Key already exists"
          and error.get("cause") == path + "/" + ids[1] and error.get("index") == int(headers.get("X-Etcd-Index", -1)),
          (status, body))

    for query in ("?quorum=false&recursive=false&sorted=false", "?recursive=true"):
        status, headers, body = http("GET", keel.url(path + query))
        node = json.loads(body)["node"] if status == 200 else {}
        nodes = node.get("nodes", [])
        check("list %s: the three members, keys under the asked path, _config hidden" % query,
              node.get("dir") is True and node.get("key") == path
              and sorted(n["key"] for n in nodes) == sorted(path + "/" + i for i in ids)
              and sorted(n["createdIndex"] for n in nodes) == sorted(created)
              and all(n["value"].startswith("infra") for n in nodes), body)

    # What the discovery client's createSelf does: wait on its own key from its createdIndex.
    status, _, body = http("GET", keel.url("%s/%s?recursive=false&wait=true&waitIndex=%d" % (path, ids[2], created[2])))
    check("a wait from a past index is answered from history",
          status == 200 and json.loads(body)["node"]["key"] == path + "/" + ids[2], (status, body))

    # Nothing happens: the wait ends with 200 and an empty body after the wait timeout.
    started = time.time()
    status, headers, body = http("GET", keel.url("%s?recursive=true&wait=true" % path), timeout=90)
    took = time.time() - started
    check("an idle wait ends with 200 and an empty body after the timeout",
          status == 200 and body == "" and WAIT_TIMEOUT_MS / 1000 - 0.2 <= took < WAIT_TIMEOUT_MS / 1000 + 3,
          (status, body, took))

    status, _, body = http("GET", keel.url(path + "/0123456789abcdef"))
    error = json.loads(body) if body else {}
    check("a missing member is 404 errorCode 100", status == 404 and error.get("errorCode") == 100
          and error.get("cause") == path + "/0123456789abcdef", (status, body))
    status, _, body = http("GET", keel.url("/discovery/" + "0" * 32))
    check("an unknown token is 404 errorCode 100", status == 404 and json.loads(body).get("errorCode") == 100, body)
    status, _, body = http("GET", keel.url(path + "?wait=true&waitIndex=x"))
    check("a bad waitIndex is 400 errorCode 203", status == 400 and json.loads(body).get("errorCode") == 203, body)

    status, _, body = http("DELETE", keel.url("%s/%s" % (path, ids[2])))
    answer = json.loads(body) if body else {}
    check("DELETE of a member: delete with prevNode", status == 200 and answer.get("action") == "delete"
          and answer.get("prevNode", {}).get("value") == "infra2=http://127.0.0.1:2382", (status, body))
    status, _, body = http("GET", keel.url("%s/%s" % (path, ids[2])))
    check("the deleted member is gone", status == 404, (status, body))

    body, headers = form(value="5")
    status, _, body = http("PUT", keel.url(path + "/_config/size"), body, headers)
    answer = json.loads(body) if body else {}
    check("PUT _config/size: set with prevNode", status == 200 and answer.get("action") == "set"
          and answer["node"]["value"] == "5" and answer.get("prevNode", {}).get("value") == "3", (status, body))
    status, _, body = http("PUT", keel.url(path), *form(value="x"))
    check("PUT on the token itself is 403 errorCode 102", status == 403 and json.loads(body)["errorCode"] == 102, body)

    # The registry is in kv: it survives a restart.
    keel.stop()
    keel.start()
    status, _, body = http("GET", keel.url(path))
    nodes = json.loads(body)["node"].get("nodes", []) if status == 200 else []
    check("the registry survives a restart", sorted(n["key"] for n in nodes) == sorted(path + "/" + i for i in ids[:2]),
          body)
    status, _, body = http("GET", keel.url(path + "/_config/size"))
    check("the size survives a restart", status == 200 and json.loads(body)["node"]["value"] == "5", body)


# ---- 2. real etcd bootstraps from keel ----------------------------------------------------------

class Etcd:
    def __init__(self, root, name, discovery=None, enable_v2=False):
        self.name = name
        self.client = port_in_range()
        self.peer = port_in_range()
        self.dir = os.path.join(root, "etcd-" + name)
        self.log = open(self.dir + ".log", "w")
        args = [ETCD, "--name", name, "--data-dir", self.dir,
                "--listen-client-urls", "http://127.0.0.1:%d" % self.client,
                "--advertise-client-urls", "http://127.0.0.1:%d" % self.client,
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer,
                "--discovery-fallback", "exit"]
        if discovery:
            args += ["--discovery", discovery]
        else:
            args += ["--initial-cluster", "%s=http://127.0.0.1:%d" % (name, self.peer)]
        if enable_v2:
            args += ["--enable-v2"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def healthy(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _, body = http("GET", "http://127.0.0.1:%d/health" % self.client, timeout=2)
                if status == 200 and json.loads(body).get("health") == "true":
                    return True
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.2)
        return False

    def members(self):
        out = subprocess.run(["etcdctl", "--endpoints", "http://127.0.0.1:%d" % self.client, "member", "list"],
                             env=dict(os.environ, ETCDCTL_API="3"), capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()

    def stop(self):
        keeltest.stop(self.proc)
        self.log.close()

    def log_text(self):
        with open(self.log.name) as f:
            return f.read()[-2000:]


def etcd_checks(keel, root):
    # One member.
    path = new_token(keel, 1)
    etcd = Etcd(root, "solo", discovery=keel.url(path))
    try:
        ok = etcd.healthy(60)
        check("etcd 3.4 (size 1) bootstraps from keel's discovery service and is healthy", ok,
              None if ok else etcd.log_text())
        status, _, body = http("GET", keel.url(path))
        nodes = json.loads(body)["node"].get("nodes", []) if status == 200 else []
        check("keel's registry holds etcd's member value",
              [n["value"] for n in nodes] == ["solo=http://127.0.0.1:%d" % etcd.peer], body)
    finally:
        etcd.stop()

    # Three members started at once.
    path = new_token(keel, 3)
    cluster = [Etcd(root, "e%d" % i, discovery=keel.url(path)) for i in range(3)]
    try:
        states = [e.healthy(90) for e in cluster]
        check("three etcd 3.4 members (size 3, started at once) bootstrap from keel and are healthy", all(states),
              None if all(states) else [e.log_text() for e, s in zip(cluster, states) if not s])
        if all(states):
            members = cluster[0].members()
            check("the etcd cluster has the three members", len(members) == 3 and
                  all(any(("e%d" % i) in line for line in members) for i in range(3)), members)
    finally:
        for e in cluster:
            e.stop()


# ---- 3. keel_discovery_client --------------------------------------------------------------------

def run_tool(url, members, first=1):
    out = subprocess.run([TOOL, url, str(members), str(first)], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    return out.returncode, lines


def client_checks(keel, root):
    path = new_token(keel, 3)
    rc, lines = run_tool(keel.url(path), 3)
    clusters = {l.split(" ", 3)[3] for l in lines if " ok " in l}
    check("three keel_discovery_client threads against keel get the same --initial-cluster",
          rc == 0 and len(lines) == 3 and len(clusters) == 1, lines)
    if clusters:
        value = clusters.pop()
        pairs = value.split(",")
        check("the --initial-cluster holds each member's two sorted URLs",
              len(pairs) == 6 and sorted(set(p.split("=")[0] for p in pairs)) == ["m1", "m2", "m3"]
              and all(pairs[i] < pairs[i + 1] for i in range(0, 6, 2)), value)
    rc, lines = run_tool(keel.url(path), 1, 4)
    check("a fourth member finds the cluster full (errc::already_exists)",
          rc != 0 and len(lines) == 1 and "error already exists discovery: cluster is full" in lines[0], lines)
    rc, lines = run_tool(keel.url("/discovery/" + "f" * 32), 1)
    check("a token without _config/size: size key not found",
          rc != 0 and len(lines) == 1 and "discovery: size key not found" in lines[0], lines)

    etcd = Etcd(root, "registry", enable_v2=True)
    try:
        if not etcd.healthy(60):
            check("etcd --enable-v2 for the self-hosted registry started", False, etcd.log_text())
            return
        token = "6c007a14875d53d9bf0ef5a6fc0257c8"
        base = "http://127.0.0.1:%d/v2/keys/_etcd/registry/%s" % (etcd.client, token)
        status, _, body = http("PUT", base + "/_config/size", *form(value="3"))
        check("etcd: PUT _config/size", status == 201, (status, body))
        rc, lines = run_tool(base, 3)
        clusters = {l.split(" ", 3)[3] for l in lines if " ok " in l}
        check("three keel_discovery_client threads against etcd 3.4's /v2/keys registry agree",
              rc == 0 and len(lines) == 3 and len(clusters) == 1, lines)
        rc, lines = run_tool(base, 1, 4)
        check("etcd registry: a fourth member finds the cluster full",
              rc != 0 and "error already exists discovery: cluster is full" in "".join(lines), lines)
    finally:
        etcd.stop()


def have_etcd():
    if os.path.exists(ETCD) and shutil.which("etcdctl"):
        return True
    try:
        subprocess.run(["apt-get", "install", "-y", "etcd-server", "etcd-client"], capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return os.path.exists(ETCD) and shutil.which("etcdctl") is not None


def stop_while_waiting_checks(keel, root):
    """A member waiting for its discovery peers stops on SIGTERM (it used to ignore it:
    the signals are blocked until the shards run, and discovery runs before)."""
    token = keel.url(new_token(keel, 3))
    peer = "http://127.0.0.1:%d" % port_in_range()
    log_path = os.path.join(root, "waiting-member.log")
    with open(log_path, "w") as log:
        member = subprocess.Popen([KEELD, "--name", "waiter", "--data-dir", os.path.join(root, "waiter.keel"),
                                   "--listen-client-urls", "http://127.0.0.1:%d" % port_in_range(),
                                   "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                   "--discovery", token], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    registered = False
    while time.time() < deadline and not registered and member.poll() is None:
        status, _, body = http("GET", token)
        registered = status == 200 and len(json.loads(body)["node"].get("nodes", [])) == 1
        time.sleep(0.1)
    t0 = time.time()
    member.send_signal(signal.SIGTERM)
    rc = keeltest.exit_code_within(member, 5)
    took = time.time() - t0
    said = bool(keeltest.log_lines(log_path, "while starting, exiting"))
    check("a member waiting for discovery peers exits on SIGTERM (rc %r after %.1fs)" % (rc, took),
          registered and rc is not None and took < 3 and said)


def main():
    root = tempfile.mkdtemp(prefix="keel-discovery-e2e-")
    keel = Keeld(root)
    etcd_ok = have_etcd()
    try:
        service_checks(keel, root)
        stop_while_waiting_checks(keel, root)
        if etcd_ok:
            etcd_checks(keel, root)
        client_checks(keel, root) if etcd_ok else None
        if not etcd_ok:
            rc, lines = run_tool(keel.url(new_token(keel, 3)), 3)
            check("three keel_discovery_client threads against keel agree", rc == 0, lines)
    finally:
        keel.stop()
    check.summary()
    if check.failed == 0:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("logs kept in " + root)
    if check.failed:
        return 1
    return 0 if etcd_ok else keeltest.SKIP


if __name__ == "__main__":
    sys.exit(main())
