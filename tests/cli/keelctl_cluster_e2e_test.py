#!/usr/bin/env python3
"""keelctl's cluster verbs (member list/add/remove/promote, endpoint status, move-leader).

(a) A 3-member keeld cluster on loopback, started with etcd's static-bootstrap flags:
    `member list` shows the three members with their names and client URLs, `endpoint
    status --cluster` shows exactly one leader and one raft term, `move-leader` to a
    follower makes it the leader; the argument and connection errors.
(b) A 3-member etcd 3.4 cluster (skipped, with a message, when etcd or etcdctl is
    missing): keelctl's output against etcd must equal `ETCDCTL_API=3 etcdctl`'s, and the
    shape of keelctl's output against keeld (columns, formats; ids and numbers differ) must
    equal etcdctl's against etcd. Member add (a learner) / promote (refused) / remove run
    against etcd only.

Usage: keelctl_cluster_e2e_test.py KEELD KEELCTL [ETCD ETCDCTL]
Loopback ports 29610-29615 (keeld), 29620-29625 and 29627 (etcd), 29649 (nothing listens).
Ends with "N passed, M failed"; exit 1 when anything failed.
"""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/bin/keeld"
KEELCTL = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/bin/keelctl"
ETCD = sys.argv[3] if len(sys.argv) > 3 else (shutil.which("etcd") or "/usr/bin/etcd")
ETCDCTL = sys.argv[4] if len(sys.argv) > 4 else (shutil.which("etcdctl") or "/usr/bin/etcdctl")
DEAD = "http://127.0.0.1:29649"

check = keeltest.Checks(keeltest.on_next_line)


ENV = dict(os.environ, ETCDCTL_API="3")
for unwanted in ("ETCDCTL_ENDPOINTS", "ETCDCTL_WRITE_OUT", "ETCDCTL_DIAL_TIMEOUT", "ETCDCTL_COMMAND_TIMEOUT"):
    ENV.pop(unwanted, None)


def run(client, endpoints, args):
    r = subprocess.run([client, "--endpoints", ",".join(endpoints)] + args, capture_output=True, text=True,
                       env=ENV, timeout=30)
    # etcdctl's gRPC client logs retries as JSON lines on stderr; only the user's lines count.
    r.errors = [l for l in r.stderr.splitlines() if not l.startswith('{"level"')]
    return r


def show(r):
    return "  exit %d\n  stdout %r\n  stderr %r" % (r.returncode, r.stdout, r.stderr)


def wait_until(predicate, seconds, step=0.1):
    deadline = time.time() + seconds
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(step)


# ---- processes --------------------------------------------------------------------------------

PROCS = []
SETPRIV = shutil.which("setpriv")


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.time() + 5
    for p in PROCS:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
    PROCS.clear()


atexit.register(stop_all)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: sys.exit(130))


def status_of(url):
    try:
        req = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=1) as r:
            return json.loads(r.read())
    except Exception:
        return None


class Cluster:
    """Three members started with etcd's static-bootstrap flags (keeld and etcd take the same)."""

    def __init__(self, binary, prefix, base_port, tmp):
        self.names = ["%s%d" % (prefix, i) for i in range(3)]
        self.clients = ["http://127.0.0.1:%d" % (base_port + 2 * i) for i in range(3)]
        self.peers = ["http://127.0.0.1:%d" % (base_port + 2 * i + 1) for i in range(3)]
        self.logs = [os.path.join(tmp, n + ".log") for n in self.names]
        initial = ",".join("%s=%s" % (n, p) for n, p in zip(self.names, self.peers))
        token = "keelctl-cluster-%d-%d" % (os.getpid(), int(time.time() * 1000))
        self.procs = []
        for i, name in enumerate(self.names):
            cmd = [binary, "--name", name, "--data-dir", os.path.join(tmp, name + ".data"),
                   "--listen-client-urls", self.clients[i], "--advertise-client-urls", self.clients[i],
                   "--listen-peer-urls", self.peers[i], "--initial-advertise-peer-urls", self.peers[i],
                   "--initial-cluster", initial, "--initial-cluster-state", "new",
                   "--initial-cluster-token", token]
            if SETPRIV:
                cmd = [SETPRIV, "--pdeathsig", "KILL", "--"] + cmd
            with open(self.logs[i], "wb") as log:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            PROCS.append(p)
            self.procs.append(p)

    def ready(self, seconds):
        def all_have_leader():
            for p in self.procs:
                if p.poll() is not None:
                    return "exited"
            s = [status_of(u) for u in self.clients]
            return all(x and int(x.get("leader", 0) or 0) != 0 for x in s)
        result = wait_until(all_have_leader, seconds)
        if result is not True:
            for log in self.logs:
                with open(log, errors="replace") as f:
                    print("---- %s (tail)\n%s" % (log, "".join(f.readlines()[-15:])))
        return result is True


# ---- output shapes ----------------------------------------------------------------------------

HEX = r"[0-9a-f]{1,16}"
URL = r"http://127\.0\.0\.1:\d+"
SIZE = r"\d+(?:\.\d)? (?:B|kB|MB|GB)"
MEMBER_LINE = re.compile(r"^(%s), (started|unstarted), (\w*), (%s(?:,%s)*), ((?:%s(?:,%s)*)?), (true|false)$"
                         % (HEX, URL, URL, URL, URL))
STATUS_LINE = re.compile(r"^(\S+), (%s), (3\.4\.\d+), (%s), (true|false), (true|false), (\d+), (\d+), (\d+), (.*)$"
                         % (HEX, SIZE))


def shape(text):
    """An output with its values replaced by their kind: what etcdctl's and keelctl's output
    must share when the clusters differ (ids, names, ports, sizes, terms, indexes, which
    member leads)."""
    text = re.sub(URL, "<url>", text)
    text = re.sub(r"\b3\.4\.\d+\b", "<version>", text)
    text = re.sub(SIZE, "<size>", text)
    text = re.sub(r"\b[ek][0-9]\b|\bm[0-9]\b", "<name>", text)
    text = re.sub(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{6,16}\b|\b[0-9a-f]{16}\b", "<id>", text)
    text = re.sub(r"\b\d+\b", "<n>", text)
    text = re.sub(r"\b(true|false)\b", "<bool>", text)  # which member leads differs too
    text = re.sub(r"(?<=[-+])-+", "", text)  # table widths
    text = re.sub(r"(?<=[ |]) +", "", text)
    return text


def json_shape(value):
    """A JSON document with its scalars replaced by their type."""
    if isinstance(value, dict):
        return {k: json_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_shape(v) for v in value[:1]]
    return type(value).__name__


def members(r):
    return [MEMBER_LINE.match(l) for l in r.stdout.splitlines()]


def statuses(r):
    return [STATUS_LINE.match(l) for l in r.stdout.splitlines()]


# ---- (a) keeld ---------------------------------------------------------------------------------

def keel_half(tmp):
    print("== keeld: 3 members on 127.0.0.1:29610-29615")
    c = Cluster(KEELD, "m", 29610, tmp)
    if not check("keeld cluster up: every member's status names a leader", c.ready(20)):
        return None
    eps = c.clients

    def three_published():
        r = run(KEELCTL, eps, ["member", "list"])
        m = members(r)
        ok = (r.returncode == 0 and len(m) == 3 and all(m) and
              sorted((x.group(3), x.group(5)) for x in m) == sorted(zip(c.names, c.clients)))
        return r if ok else None
    r = wait_until(three_published, 5, 0.2) or run(KEELCTL, eps, ["member", "list"])
    check("member list: 3 members, started, with their names, peer and client URLs",
          r.returncode == 0 and len(members(r)) == 3 and all(members(r)) and
          all(m.group(2) == "started" and m.group(6) == "false" and
              (m.group(3), m.group(4), m.group(5)) in zip(c.names, c.peers, c.clients) for m in members(r)),
          show(r))
    outputs = {"member list": r.stdout}
    ids = {m.group(3): m.group(1) for m in members(r) if m}

    for fmt in ("table", "json"):
        r = run(KEELCTL, eps, ["member", "list", "-w", fmt])
        outputs["member list " + fmt] = r.stdout
        if fmt == "table":
            lines = r.stdout.splitlines()
            check("member list -w table: etcdctl's headers, 3 rows",
                  r.returncode == 0 and len(lines) == 7 and
                  re.match(r"^\|\s+ID\s+\|\s+STATUS\s+\|\s+NAME\s+\|\s+PEER ADDRS\s+\|\s+CLIENT ADDRS\s+\|"
                           r"\s+IS LEARNER\s+\|$", lines[1]) is not None, show(r))
        else:
            try:
                doc = json.loads(r.stdout)
            except ValueError:
                doc = {}
            got = doc.get("members", [])
            check("member list -w json: ids as numbers, 3 members",
                  r.returncode == 0 and len(got) == 3 and all(isinstance(m.get("ID"), int) for m in got) and
                  isinstance(doc.get("header", {}).get("cluster_id"), int) and
                  {"%x" % m["ID"] for m in got} == set(ids.values()), show(r))

    def one_leader():
        r = run(KEELCTL, eps, ["endpoint", "status", "--cluster"])
        s = statuses(r)
        if r.returncode != 0 or len(s) != 3 or not all(s):
            return None
        if [x.group(5) for x in s].count("true") != 1 or len({x.group(7) for x in s}) != 1:
            return None
        return r
    r = wait_until(one_leader, 5, 0.2) or run(KEELCTL, eps, ["endpoint", "status", "--cluster"])
    s = statuses(r)
    check("endpoint status --cluster: the 3 client URLs, one leader, one raft term",
          r.returncode == 0 and len(s) == 3 and all(s) and sorted(x.group(1) for x in s) == sorted(eps) and
          [x.group(5) for x in s].count("true") == 1 and len({x.group(7) for x in s}) == 1 and
          {x.group(2) for x in s} == set(ids.values()), show(r))
    # For the comparison with etcd: etcd's bolt file is never empty (20 kB); keeld's
    # dbSizeInUse counts keys and values and the gateway leaves out a zero, as etcd's would;
    # so one key first. The endpoints spelt as the etcd half spells them.
    try:
        req = urllib.request.Request(eps[0] + "/v3/kv/put", data=b'{"key":"a2V5","value":"dmFsdWU="}',
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()
    except Exception as error:
        check("put a key through the gateway", False, str(error))
    bare = [u[len("http://"):] for u in eps]
    outputs["endpoint status"] = run(KEELCTL, bare, ["endpoint", "status"]).stdout
    for fmt in ("table", "json"):
        outputs["endpoint status " + fmt] = run(KEELCTL, bare, ["endpoint", "status", "-w", fmt]).stdout
    leader = [x.group(2) for x in s if x and x.group(5) == "true"]
    followers = [x.group(2) for x in s if x and x.group(5) == "false"]

    if leader and followers:
        target = followers[0]
        r = run(KEELCTL, eps, ["move-leader", target])
        check("move-leader %s: etcdctl's line" % target,
              r.returncode == 0 and r.stdout == "Leadership transferred from %s to %s\n" % (leader[0], target),
              show(r))

        def target_leads():
            s = statuses(run(KEELCTL, eps, ["endpoint", "status"]))
            return len(s) == 3 and all(s) and all(x.group(5) == (x.group(2) == target and "true" or "false")
                                                  for x in s)
        check("move-leader: %s is the leader, by every member's status" % target, wait_until(target_leads, 5))
        r = run(KEELCTL, eps, ["move-leader", target])
        check("move-leader to the leader itself: nothing to do, etcd's line",
              r.returncode == 0 and r.stdout == "Leadership transferred from %s to %s\n" % (target, target), show(r))

    # Errors: clear, "Error: " on stderr, exit 1.
    for args, want in [
        (["move-leader", "zz"], 'Error: strconv.ParseUint: parsing "zz": invalid syntax'),
        (["move-leader"], "Error: move-leader command needs 1 argument"),
        (["member", "remove", "xyz"],
         'Error: bad member ID arg (strconv.ParseUint: parsing "xyz": invalid syntax), expecting ID in Hex'),
        (["member", "promote"], "Error: member ID is not provided"),
        (["member", "add", "m3"], "Error: member peer urls not provided"),
        (["member", "add"], "Error: member name not provided"),
    ]:
        r = run(KEELCTL, eps, args)
        check("keelctl %s: %s, exit 1" % (" ".join(args), want),
              r.returncode == 1 and r.stdout == "" and r.errors[:1] == [want], show(r))
    r = run(KEELCTL, [DEAD], ["member", "list"])
    check("member list, endpoint unreachable: the dial error, exit 1",
          r.returncode == 1 and r.errors == ["Error: dial tcp 127.0.0.1:29649: connect: connection refused"], show(r))
    r = run(KEELCTL, [DEAD] + eps, ["endpoint", "status"])
    check("endpoint status, one endpoint unreachable: the others printed, its failure on stderr, exit 1",
          r.returncode == 1 and len(statuses(r)) == 3 and all(statuses(r)) and
          r.errors == ["Failed to get the status of endpoint %s (dial tcp 127.0.0.1:29649: connect: connection "
                       "refused)" % DEAD], show(r))
    r = run(KEELCTL, [DEAD], ["endpoint", "status", "--cluster"])
    check("endpoint status --cluster, endpoint unreachable: etcdctl's error, exit 1",
          r.returncode == 1 and r.errors[:1] == ["Error: failed to fetch endpoints from etcd cluster member list: "
                                                 "dial tcp 127.0.0.1:29649: connect: connection refused"], show(r))
    r = run(KEELCTL, [DEAD], ["move-leader", "1"])
    check("move-leader, endpoint unreachable: exit 1", r.returncode == 1 and r.errors[:1] ==
          ["Error: dial tcp 127.0.0.1:29649: connect: connection refused"], show(r))
    stop_all()
    return outputs


# ---- (b) etcd ----------------------------------------------------------------------------------

def etcd_half(tmp, keel):
    print("== etcd %s: 3 members on 127.0.0.1:29620-29625" % ETCD)
    c = Cluster(ETCD, "e", 29620, tmp)
    if not check("etcd cluster up", c.ready(20)):
        return
    eps = c.clients
    bare = [u[len("http://"):] for u in eps]  # etcdctl's usual spelling; both must take it

    def same(args, endpoints=eps, normalise=lambda s: s):
        k = run(KEELCTL, endpoints, args)
        e = run(ETCDCTL, endpoints, args)
        ok = (k.returncode == e.returncode and normalise(k.stdout) == normalise(e.stdout) and
              k.errors[:1] == e.errors[:1])
        return ok, k, e

    def check_same(args, endpoints=eps, normalise=lambda s: s, what=""):
        ok, k, e = same(args, endpoints, normalise)
        if not ok:  # an entry (a member publishing, a lease) may land between the two runs
            ok, k, e = same(args, endpoints, normalise)
        check("etcd: keelctl %s == etcdctl's%s" % (" ".join(args), what), ok,
              "keelctl:\n%s\netcdctl:\n%s" % (show(k), show(e)))
        return k, e

    def without_member_id(text):  # etcdctl's balancer asks any endpoint; keelctl the first
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        doc.get("header", {}).pop("member_id", None)
        return doc

    wait_until(lambda: len(members(run(ETCDCTL, eps, ["member", "list"]))) == 3 and
               "unstarted" not in run(ETCDCTL, eps, ["member", "list"]).stdout, 5, 0.2)
    etcd_out = {}
    for fmt in ("simple", "table", "json"):
        k, e = check_same(["member", "list", "-w", fmt], normalise=without_member_id if fmt == "json" else str)
        etcd_out["member list" + ("" if fmt == "simple" else " " + fmt)] = e.stdout
        k, e = check_same(["endpoint", "status", "-w", fmt], endpoints=bare)
        etcd_out["endpoint status" + ("" if fmt == "simple" else " " + fmt)] = e.stdout
    check_same(["endpoint", "status", "--cluster", "-w", "table"])
    for args in (["move-leader", "zz"], ["move-leader"], ["member", "remove", "zz"], ["member", "remove"],
                 ["member", "add", "x"], ["member", "add", "x", "http://127.0.0.1:1"], ["member", "promote", "12"]):
        _, k, e = same(args)
        check("etcd: keelctl %s: etcdctl's error" % " ".join(args), k.errors[:1] == e.errors[:1] and
              k.stdout == e.stdout and k.returncode == 1 and e.returncode in (1, 128),
              "keelctl:\n%s\netcdctl:\n%s" % (show(k), show(e)))

    if keel:
        for key in sorted(etcd_out):
            if key.endswith("json"):
                try:
                    a, b = json.loads(keel[key]), json.loads(etcd_out[key])
                    if isinstance(a, list):
                        for item in a + b:  # keeld's header carries a revision in status
                            item["Status"]["header"].pop("revision", None)
                    else:  # keeld's member list header carries a revision; etcd's has none
                        a.get("header", {}).pop("revision", None)
                    ok, detail = json_shape(a) == json_shape(b), "keel %s\netcd %s" % (json_shape(a), json_shape(b))
                except ValueError as error:
                    ok, detail = False, str(error)
            else:
                ok = shape(keel[key]) == shape(etcd_out[key])
                detail = "keel:\n%s\netcd:\n%s" % (keel[key], etcd_out[key])
            check("shape of %s: keelctl on keeld == etcdctl on etcd" % key, ok, detail)

    # move-leader on etcd: to a follower, then the status agrees.
    s = statuses(run(KEELCTL, eps, ["endpoint", "status"]))
    leader = [x.group(2) for x in s if x and x.group(5) == "true"]
    followers = [x.group(2) for x in s if x and x.group(5) == "false"]
    if check("etcd: endpoint status shows one leader", len(leader) == 1 and len(followers) == 2):
        r = run(KEELCTL, eps, ["move-leader", followers[0]])
        check("etcd: move-leader", r.returncode == 0 and r.stdout ==
              "Leadership transferred from %s to %s\n" % (leader[0], followers[0]), show(r))
        check("etcd: the follower leads", wait_until(lambda: any(
            x and x.group(2) == followers[0] and x.group(5) == "true"
            for x in statuses(run(KEELCTL, eps, ["endpoint", "status"]))), 5))
        others = [x.group(1) for x in statuses(run(KEELCTL, eps, ["endpoint", "status"]))
                  if x and x.group(5) == "false"]
        _, k, e = same(["move-leader", followers[1]], endpoints=others[:1])
        check("etcd: move-leader without the leader among the endpoints: etcdctl's error",
              len(others) == 2 and k.returncode == 1 and k.errors[:1] == e.errors[:1] and
              k.errors[:1] == ["Error: no leader endpoint given at [%s]" % others[0]],
              "keelctl:\n%s\netcdctl:\n%s" % (show(k), show(e)))

    # member add (a learner), list, promote (refused: it never started), remove.
    peer = "http://127.0.0.1:29627"
    # etcd refuses a member change until its members have been connected for 5 s
    # (--strict-reconfig-check: "etcdserver: unhealthy cluster"); the refusal changes nothing.
    def added():
        r = run(KEELCTL, eps, ["member", "add", "e3", "--peer-urls=" + peer, "--learner"])
        return r if "unhealthy cluster" not in r.stderr else None
    r = wait_until(added, 10, 0.5) or run(KEELCTL, eps, ["member", "add", "e3", "--peer-urls=" + peer, "--learner"])
    lines = r.stdout.splitlines()
    m = re.match(r"^Member ([ 0-9a-f]{16}) added to cluster ([ 0-9a-f]{16})$", lines[0]) if lines else None
    expected_cluster = ",".join(sorted(["%s=%s" % (n, p) for n, p in zip(c.names, c.peers)] + ["e3=" + peer]))
    got_cluster = re.match(r'^ETCD_INITIAL_CLUSTER="(.*)"$', lines[3]) if len(lines) == 6 else None
    check("etcd: member add e3 --learner: etcdctl's lines",
          r.returncode == 0 and m is not None and len(lines) == 6 and lines[1] == "" and
          lines[2] == 'ETCD_NAME="e3"' and got_cluster is not None and
          ",".join(sorted(got_cluster.group(1).split(","))) == expected_cluster and
          lines[4] == 'ETCD_INITIAL_ADVERTISE_PEER_URLS="%s"' % peer and
          lines[5] == 'ETCD_INITIAL_CLUSTER_STATE="existing"', show(r))
    if m:
        new_id = m.group(1).strip()
        k, e = check_same(["member", "list"], what=" (with the learner)")
        check("etcd: the learner is listed unstarted, without a name",
              "%s, unstarted, , %s, , true" % (new_id, peer) in k.stdout.splitlines(), show(k))
        check_same(["member", "list", "-w", "table"], what=" (with the learner)")
        _, k, e = same(["member", "promote", new_id])
        check("etcd: member promote of a learner that never started: etcd's refusal, exit 1",
              k.returncode == 1 and e.returncode == 1 and k.errors[:1] == e.errors[:1] and
              "can only promote a learner member which is in sync with leader" in k.stderr, show(k))
        r = run(KEELCTL, eps, ["member", "remove", new_id])
        check("etcd: member remove: etcdctl's line",
              r.returncode == 0 and r.stdout == "Member %16s removed from cluster %s\n" % (new_id, m.group(2)),
              show(r))
        r = run(KEELCTL, eps, ["member", "remove", new_id])
        check("etcd: member remove again: etcd's error, exit 1",
              r.returncode == 1 and r.errors[:1] == ["Error: etcdserver: member not found"], show(r))
        r = run(KEELCTL, eps, ["member", "list"])
        check("etcd: back to 3 members", len(members(r)) == 3 and all(members(r)), show(r))
    stop_all()


def main():
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="keelctl_cluster_")
    try:
        os.makedirs(os.path.join(tmp, "keel"))
        keel = keel_half(os.path.join(tmp, "keel"))
        stop_all()
        if not (os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)):
            print("SKIP etcd half: needs %s and %s (apt-get install etcd-server etcd-client)" % (ETCD, ETCDCTL))
        else:
            os.makedirs(os.path.join(tmp, "etcd"))
            etcd_half(os.path.join(tmp, "etcd"), keel)
    finally:
        stop_all()
        if check.failed == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("logs kept in " + tmp)
    print("took %.1fs" % (time.time() - started))
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
