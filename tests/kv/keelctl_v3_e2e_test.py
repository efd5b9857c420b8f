#!/usr/bin/env python3
"""keelctl's etcdctl v3 verbs against keeld, compared with etcdctl against a real etcd 3.4.

Both systems start empty and get the same command sequence (get, put, del, txn, compact,
lease, watch, and the errors of each); keelctl talks to keeld over the native protocol,
etcdctl (ETCDCTL_API=3) to etcd over gRPC. Standard output, the "Error:" lines of standard
error and the exit codes must match once cluster/member ids, raft terms, lease ids and
remaining TTLs are normalised. Revisions are compared as they are: both stores start at
revision 1 and take the same writes.

Usage: keelctl_v3_e2e_test.py KEELD KEELCTL [ETCD ETCDCTL]
Exits 77 (CTest's skip code) when etcd or etcdctl is missing.
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
KEELCTL = sys.argv[2] if len(sys.argv) > 2 else "build/bin/keelctl"
ETCD = sys.argv[3] if len(sys.argv) > 3 else (shutil.which("etcd") or "/usr/bin/etcd")
ETCDCTL = sys.argv[4] if len(sys.argv) > 4 else (shutil.which("etcdctl") or "/usr/bin/etcdctl")

check = keeltest.Checks(keeltest.on_next_line)


def wait_until(predicate, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class System:
    """One store and the client that talks to it: keeld + keelctl, or etcd + etcdctl."""

    def __init__(self, name, argv, client, endpoint, tmp):
        self.name = name
        self.endpoint = endpoint
        self.client = client
        self.lease = None  # the lease id (hex) the sequence granted
        self.log = open(os.path.join(tmp, name + ".log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.env = dict(os.environ, ETCDCTL_API="3")
        for unwanted in ("ETCDCTL_ENDPOINTS", "ETCDCTL_WRITE_OUT", "ETCDCTL_DIAL_TIMEOUT"):
            self.env.pop(unwanted, None)
        if not wait_until(lambda: self.run(["get", "probe"]).returncode == 0, 15):
            raise RuntimeError(name + " did not come up; see " + self.log.name)

    def argv(self, args):
        args = [a.replace("{LEASE}", self.lease or "0") for a in args]
        return [self.client, "--endpoints", self.endpoint] + args

    def run(self, args, stdin=None):
        return subprocess.run(self.argv(args), input=stdin, capture_output=True, text=True, env=self.env, timeout=20)

    def start(self, args):
        return subprocess.Popen(self.argv(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env)

    def stop(self):
        keeltest.stop(self.proc)


def normalise_json(value, lease_ids):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("cluster_id", "member_id", "raft_term"):
                out[k] = "<%s>" % k
            elif k in ("ID", "id") and isinstance(v, int):  # only lease JSON has these
                out[k] = "<lease>"
            elif k == "lease" and isinstance(v, int) and v in lease_ids:
                out[k] = "<lease>"
            elif k == "ttl" and isinstance(v, int) and v > 0:
                out[k] = "<ttl>"
            else:
                out[k] = normalise_json(v, lease_ids)
        return out
    if isinstance(value, list):
        return [normalise_json(v, lease_ids) for v in value]
    return value


def normalise(system, text):
    lease_ids = set()
    if system.lease:
        lease_ids.add(int(system.lease, 16))
        text = text.replace(system.lease, "<lease>")
    text = re.sub(r"remaining\(\d+s\)", "remaining(<ttl>)", text)
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                line = json.dumps(normalise_json(json.loads(line), lease_ids), sort_keys=True)
            except ValueError:
                pass
        lines.append(line)
    return "\n".join(lines)


def error_lines(text):
    # etcdctl's client logs retries as JSON lines on stderr; only the user-facing lines count.
    return [line for line in text.splitlines() if line.startswith("Error:") or line.startswith("watch was canceled")]


def compare(name, systems, args, stdin=None, flag_error=False):
    """flag_error: a flag that does not parse. etcdctl (cobra) then prints the command's
    whole help on stdout and the error twice; keelctl prints the error once. The exit code
    and the error must match."""
    results = [s.run(args, stdin) for s in systems]
    seen = [(r.returncode, "" if flag_error else normalise(s, r.stdout), error_lines(r.stderr)[:1])
            for s, r in zip(systems, results)]
    detail = "\n".join("  %s: exit %d\n    stdout %r\n    stderr %r" % (s.name, c, o, e)
                       for s, (c, o, e) in zip(systems, seen))
    check(name, seen[0] == seen[1], detail)
    return results


def read_lines(proc, count, seconds):
    """Up to `count` lines of a running process's stdout, waiting at most `seconds`. Reads
    the pipe's fd directly: a buffered readline would hide lines from select()."""
    data = b""
    fd = proc.stdout.fileno()
    deadline = time.time() + seconds
    while data.count(b"\n") < count and time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").split("\n")[:count]


def compare_watch(name, systems, args, actions, wait_for, seconds=8):
    """Starts `watch ARGS` on both, runs `actions` against both, then compares what the
    watchers printed once each has printed `wait_for` lines (or `seconds` passed)."""
    watchers = [s.start(args) for s in systems]
    time.sleep(0.7)  # the watch is registered before the writes
    for s in systems:
        for action in actions:
            s.run(action)
    outputs = []
    for s, w in zip(systems, watchers):
        outputs.append(normalise(s, "\n".join(read_lines(w, wait_for, seconds))))
        w.send_signal(signal.SIGINT)
        try:
            w.wait(timeout=5)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
    detail = "\n".join("  %s: %r" % (s.name, o) for s, o in zip(systems, outputs))
    check(name, outputs[0] == outputs[1] and outputs[0] != "", detail)


def revision_of(system, key):
    r = system.run(["get", key, "-w", "json"])
    return json.loads(r.stdout)["kvs"][0]["mod_revision"]


def main():
    if not (os.path.exists(ETCD) and os.path.exists(ETCDCTL)):
        keeltest.skip("needs etcd and etcdctl 3.4 (apt-get install etcd-server etcd-client)")
    tmp = tempfile.mkdtemp(prefix="keelctl_v3_e2e.")
    systems = []
    try:
        keel_port = keeltest.free_port()
        keel = System("keel", [KEELD, "--modules", "kv", "--kv.dir", os.path.join(tmp, "kv"), "--shards", "2",
                               "--listen-client-urls", "http://127.0.0.1:%d" % keel_port,
                               "--data-dir", os.path.join(tmp, "core")],
                      KEELCTL, "127.0.0.1:%d" % keel_port, tmp)
        systems.append(keel)
        client_port, peer_port = keeltest.free_port(), keeltest.free_port()
        etcd = System("etcd", [ETCD, "--name", "e2e", "--data-dir", os.path.join(tmp, "etcd"),
                               "--listen-client-urls", "http://127.0.0.1:%d" % client_port,
                               "--advertise-client-urls", "http://127.0.0.1:%d" % client_port,
                               "--listen-peer-urls", "http://127.0.0.1:%d" % peer_port,
                               "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer_port,
                               "--initial-cluster", "e2e=http://127.0.0.1:%d" % peer_port],
                      ETCDCTL, "127.0.0.1:%d" % client_port, tmp)
        systems.append(etcd)
        pair = [keel, etcd]

        # ---- put / get / del ----
        compare("put", pair, ["put", "foo", "bar"])
        compare("put --prev-kv", pair, ["put", "foo", "baz", "--prev-kv"])
        compare("put --prev-kv -w json", pair, ["put", "foo", "qux", "--prev-kv", "-w", "json"])
        compare("put value from stdin", pair, ["put", "stdin-key"], stdin="from stdin\n")
        compare("get", pair, ["get", "foo"])
        compare("get -w json", pair, ["get", "foo", "-w", "json"])
        for key, value in (("a1", "1"), ("a2", "2"), ("a3", "3"), ("b1", "x")):
            compare("put " + key, pair, ["put", key, value])
        compare("get --prefix", pair, ["get", "a", "--prefix"])
        compare("get --keys-only", pair, ["get", "a", "--prefix", "--keys-only"])
        compare("get --print-value-only", pair, ["get", "a", "--prefix", "--print-value-only"])
        compare("get --limit -w json", pair, ["get", "a", "--prefix", "--limit", "2", "-w", "json"])
        compare("get --sort-by --order", pair, ["get", "a", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"])
        compare("get --order DESCEND", pair, ["get", "a", "--prefix", "--order", "descend"])
        compare("get KEY RANGE_END", pair, ["get", "a1", "a3"])
        compare("get KEY RANGE_END EXTRA: the extra is ignored", pair, ["get", "a1", "a3", "zz"])
        compare("del KEY RANGE_END EXTRA: refused", pair, ["del", "a1", "a3", "zz"])
        compare("get --from-key", pair, ["get", "a2", "--from-key", "--keys-only"])
        compare("get --rev", pair, ["get", "foo", "--rev", "2"])
        compare("get missing key", pair, ["get", "nokey"])
        compare("get missing key -w json", pair, ["get", "nokey", "-w", "json"])
        compare("get --hex", pair, ["get", "foo", "--hex"])
        compare("del --prev-kv", pair, ["del", "a3", "--prev-kv"])
        compare("del --prefix -w json", pair, ["del", "a", "--prefix", "-w", "json"])
        compare("del missing key", pair, ["del", "nokey"])

        # ---- errors ----
        compare("put empty key", pair, ["put", "", "v"])
        compare("put unknown lease", pair, ["put", "k", "v", "--lease", "1234"])
        compare("put bad lease id", pair, ["put", "k", "v", "--lease", "zz"])
        compare("put without arguments", pair, ["put"])
        compare("put --ignore-value with a value", pair, ["put", "k", "v", "--ignore-value"])
        compare("get without arguments", pair, ["get"])
        compare("get future revision", pair, ["get", "foo", "--rev", "1000000"])
        compare("get --prefix --from-key", pair, ["get", "a", "--prefix", "--from-key"])
        compare("get bad --limit", pair, ["get", "a", "--limit", "abc"], flag_error=True)
        compare("get bad --sort-by", pair, ["get", "a", "--sort-by", "BAD"])
        compare("get unknown flag", pair, ["get", "a", "--no-such-flag"], flag_error=True)
        compare("del without arguments", pair, ["del"])

        # ---- txn ----
        compare("txn success", pair, ["txn"],
                stdin='value("foo") = "qux"\nmod("foo") > "0"\n\nput foo ok\nget foo\ndel b1\n\nput foo failed\n\n')
        compare("txn failure -w json", pair, ["txn", "-w", "json"],
                stdin='value("foo") = "nope"\n\nput foo ok\n\nput foo failed\nget a --prefix\n\n')
        compare("txn quoted arguments", pair, ["txn"],
                stdin='version("foo") != "0"\n\nput "spaced key" "a value"\nget "spaced key"\n\n\n')
        compare("txn malformed compare", pair, ["txn"], stdin='bogus\n\n\n\n')
        compare("txn truncated input", pair, ["txn"], stdin='value("foo") = "x"\n\n')

        # ---- watch ----
        compare_watch("watch --prefix --prev-kv", pair, ["watch", "w", "--prefix", "--prev-kv"],
                      [["put", "w1", "x"], ["put", "w", "y"], ["put", "w", "z"], ["del", "w"], ["del", "w1"]], 21)
        compare_watch("watch -w json", pair, ["watch", "j", "-w", "json"],
                      [["put", "j", "1"], ["put", "j", "2"], ["del", "j"]], 3)
        for s in pair:
            s.history_start = str(revision_of(s, "foo"))
        watchers = []
        for s in pair:
            r = s.start(["watch", "foo", "--rev", s.history_start])
            watchers.append(r)
        outputs = []
        for s, w in zip(pair, watchers):
            lines = read_lines(w, 3, 5)
            w.send_signal(signal.SIGINT)
            w.wait(timeout=5)
            outputs.append(lines)
        check("watch --rev from the past", outputs[0] == outputs[1] and outputs[0][0] == "PUT",
              "  keel %r\n  etcd %r" % tuple(outputs))

        # ---- compact ----
        compare("compact", pair, ["compact", "5"])
        compare("get compacted revision", pair, ["get", "foo", "--rev", "3"])
        compare("compact compacted revision", pair, ["compact", "4"])
        compare("compact bad revision", pair, ["compact", "abc"])
        compare("watch compacted revision", pair, ["watch", "foo", "--rev", "2"])

        # ---- lease ----
        for s in pair:
            r = s.run(["lease", "grant", "100"])
            m = re.match(r"lease ([0-9a-f]{16}) granted with TTL\(100s\)", r.stdout)
            s.lease = m.group(1) if m else None
        check("lease grant", all(s.lease for s in pair), " / ".join(s.run(["lease", "list"]).stdout for s in pair))
        compare("lease grant -w json", pair, ["lease", "grant", "50", "-w", "json"])
        for s in pair:  # forget the second lease again: only {LEASE} is normalised
            listing = s.run(["lease", "list"]).stdout.split()
            for other in listing[3:]:
                if other != s.lease:
                    s.run(["lease", "revoke", other])
        compare("put --lease", pair, ["put", "leased", "v", "--lease", "{LEASE}"])
        compare("lease timetolive --keys", pair, ["lease", "timetolive", "{LEASE}", "--keys"])
        compare("lease timetolive -w json", pair, ["lease", "timetolive", "{LEASE}", "--keys", "-w", "json"])
        compare("lease list", pair, ["lease", "list"])
        compare("lease list -w json", pair, ["lease", "list", "-w", "json"])
        compare("lease keep-alive --once", pair, ["lease", "keep-alive", "--once", "{LEASE}"])
        compare("lease keep-alive --once -w json", pair, ["lease", "keep-alive", "--once", "{LEASE}", "-w", "json"])
        compare("lease revoke", pair, ["lease", "revoke", "{LEASE}"])
        compare("lease revoke deleted the key", pair, ["get", "leased"])
        compare("lease timetolive expired", pair, ["lease", "timetolive", "{LEASE}"])
        compare("lease revoke unknown", pair, ["lease", "revoke", "{LEASE}"])
        compare("lease keep-alive --once unknown", pair, ["lease", "keep-alive", "--once", "{LEASE}"])
        compare("lease grant bad TTL", pair, ["lease", "grant", "abc"])
        compare("lease revoke bad id", pair, ["lease", "revoke", "zz"])
        compare("lease timetolive without id", pair, ["lease", "timetolive"])

        # A lease that expires: the key goes, and a watcher sees the delete.
        for s in pair:
            r = s.run(["lease", "grant", "2"])
            s.lease = re.match(r"lease ([0-9a-f]{16})", r.stdout).group(1)
            s.run(["put", "expiring", "v", "--lease", s.lease])
        compare_watch("watch sees lease expiry", pair, ["watch", "expiring"], [], 3, seconds=10)
        compare("expired key is gone", pair, ["get", "expiring"])
    finally:
        for s in systems:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
