#!/usr/bin/env python3
"""etcd v2 writes on a cluster follower answer exactly as on the leader.

A follower has the leader run its v2 writes over the peer port (modules/kv/module/src/v2.h,
"relaying writes") and answers its client with the leader's answer once it applied what
the write logged. This script:

1. Runs one sequence of v2 writes (set, create twice, update, compareAndSwap right and
   wrong, prevIndex, POST in-order keys, directories, delete of a non-empty directory,
   recursive delete, compareAndDelete, noValueOnSuccess, TTLs, a refresh, malformed
   parameters) twice: under /onleader through the leader, under /onfollower through a
   follower. Every answer must match: HTTP status, action, errorCode, the node's and
   prevNode's shape (key, value, dir, ttl) and, relative to the X-Etcd-Index before the
   step, its indexes.
2. Checks that a follower's answer is readable on that follower at once (it answers only
   after applying the write) and that its X-Etcd-Index / X-Raft-Index headers are there;
   a 450 KiB value of "<" (six bytes each in the JSON of node and prevNode) written on a
   follower over another such value is answered whole.
3. Runs concurrent compare-and-swap increments of one counter from both followers and the
   leader: every success must be a distinct step, and the final value the number of
   successes (the leader decides each in one step).
4. Cuts the leader off from the others (peer-port proxies, peerproxy.py): a quorum=true
   read there is refused (500, errorCode 300) rather than answered from its own state, as
   etcd's read through Raft is, and so is a compare-and-swap whose refusal (412) would
   have been read from that state; a plain read is answered.
5. Kills the leader (kill -9): writes through a follower go on once a new leader is
   elected, and a member that lost leadership answers through the new one.

Run against etcd 3.4 (--binary etcd, with --enable-v2) it checks the expectations
themselves.

Usage: v2_follower_test.py --binary build/bin/keeld [--base-port 29480] [--workdir DIR]
Ports: base..base+8.
"""

import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as harness  # noqa: E402


def call(url, method, path, form=None, timeout=10.0):
    """One v2 request; (status, headers, parsed JSON or None)."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, headers, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, dict(e.headers), e.read()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode(errors="replace")
    return status, headers, parsed


def index_of(url):
    """The store index now (a quorum read: a follower's own state may lag by a write)."""
    _, headers, _ = call(url, "GET", "/v2/keys/?quorum=true")
    return int(headers.get("X-Etcd-Index", "0"))


def in_order_relative(key, base):
    """An in-order key (POST) is named by its index, %020d: relative to `base`."""
    head, _, last = key.rpartition("/")
    if len(last) == 20 and last.isdigit():
        return "%s/+%d" % (head, int(last) - base)
    return key


def relative_numbers(text, base):
    """Numbers above `base` in an error's cause ("[1 != 23]"): relative to it (the
    index before the sequence, as the indexes named are of earlier steps)."""
    return re.sub(r"\b\d+\b", lambda m: "+%d" % (int(m.group()) - base) if int(m.group()) > base else m.group(), text)


def shape(node, base, prefix):
    """A node as comparable across the two runs: indexes relative to `base`, the
    prefix cut from keys, the expiration dropped (ttl kept)."""
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("modifiedIndex", "createdIndex"):
            out[k] = v - base if v > base else "old"
        elif k == "key":
            out[k] = in_order_relative(v.replace(prefix, "/P", 1), base)
        elif k == "nodes":
            out[k] = sorted((shape(n, base, prefix) for n in v), key=lambda n: n.get("key", ""))
        elif k == "expiration":
            out[k] = "set"
        else:
            out[k] = v
    return out


def answer_shape(status, parsed, base, start, prefix):
    if not isinstance(parsed, dict):
        return (status, parsed)
    if "errorCode" in parsed:
        cause = parsed.get("cause", "")
        cause = relative_numbers(cause.replace(prefix, "/P"), start) if isinstance(cause, str) else cause
        # errors carry the store index then: relative to the step's base
        return (status, "error", parsed["errorCode"], cause, parsed.get("index", 0) - base >= 0)
    return (status, parsed.get("action"), shape(parsed.get("node"), base, prefix),
            shape(parsed.get("prevNode"), base, prefix))


def steps(prefix):
    """The sequence of writes: (method, path, form)."""
    p = "/v2/keys" + prefix
    return [
        ("PUT", p + "/a", {"value": "v1"}),
        ("PUT", p + "/a", {"value": "v2"}),
        ("PUT", p + "/b", {"value": "x", "prevExist": "false"}),
        ("PUT", p + "/b", {"value": "y", "prevExist": "false"}),
        ("PUT", p + "/c", {"value": "z", "prevExist": "true"}),
        ("PUT", p + "/b", {"value": "y", "prevExist": "true"}),
        ("PUT", p + "/a", {"value": "v3", "prevValue": "v2"}),
        ("PUT", p + "/a", {"value": "v4", "prevValue": "nope"}),
        ("PUT", p + "/a", {"value": "v5", "prevIndex": "1"}),
        ("POST", p + "/queue", {"value": "job1"}),
        ("POST", p + "/queue", {"value": "job2"}),
        ("PUT", p + "/dir", {"dir": "true"}),
        ("PUT", p + "/dir/x", {"value": "in"}),
        ("PUT", p + "/dir", {"value": "over-a-dir"}),
        ("DELETE", p + "/dir", {"dir": "true"}),
        ("DELETE", p + "/dir", {"recursive": "true"}),
        ("DELETE", p + "/b", {"prevValue": "wrong"}),
        ("DELETE", p + "/b", {"prevValue": "y"}),
        ("DELETE", p + "/missing", None),
        ("PUT", p + "/quiet", {"value": "q", "noValueOnSuccess": "true"}),
        ("PUT", p + "/ttl", {"value": "t", "ttl": "100"}),
        ("PUT", p + "/ttl", {"ttl": "200", "refresh": "true", "prevExist": "true"}),
        ("PUT", p + "/ttl", {"value": "t", "ttl": "abc"}),
        ("PUT", p + "/a", {"value": "v6", "prevIndex": "xyz"}),
        ("PUT", p + "/tdir", {"dir": "true", "ttl": "100"}),
        ("PUT", p + "/tdir/child", {"value": "c"}),
        ("DELETE", p + "/tdir", {"dir": "true", "recursive": "true"}),
    ]


def run_sequence(url, prefix):
    shapes = []
    start = index_of(url)
    for method, path, form in steps(prefix):
        base = index_of(url)
        if method == "DELETE" and form:  # parameters in the query, as etcdctl sends them
            status, headers, parsed = call(url, method, path + "?" + urllib.parse.urlencode(form))
        else:
            status, headers, parsed = call(url, method, path, form)
        shapes.append(((method, path.replace(prefix, "/P", 1), form),
                       answer_shape(status, parsed, base, start, prefix), "X-Etcd-Index" in headers))
    return shapes


def settle(url, quiet=2.0, limit=15.0):
    """Waits until the store index stays put for `quiet` seconds (etcd writes its cluster
    version into the v2 store a few seconds after it starts, which would shift the indexes
    of one sequence against the other)."""
    deadline = time.monotonic() + limit
    last, since = index_of(url), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.2)
        now = index_of(url)
        if now != last:
            last, since = now, time.monotonic()


def same_answers(c, leader, follower, check):
    settle(c.url(leader))
    on_leader = run_sequence(c.url(leader), "/onleader")
    on_follower = run_sequence(c.url(follower), "/onfollower")
    for (step, a, ha), (_, b, hb) in zip(on_leader, on_follower):
        check("1. %s %s %s: the follower answers as the leader (%s)" % (step[0], step[1], step[2], a[:3]),
              a == b and ha and hb, {"leader": a, "follower": b})


def read_your_write(c, follower, other, check):
    for i in range(20):
        status, headers, parsed = call(c.url(follower), "PUT", "/v2/keys/ryw/k", {"value": str(i)})
        if status != 200 and status != 201:
            check("2. write %d on a follower" % i, False, parsed)
            return
        index = int(headers.get("X-Etcd-Index", "0"))
        st, _, got = call(c.url(follower), "GET", "/v2/keys/ryw/k")
        if not (st == 200 and got["node"]["value"] == str(i) and got["node"]["modifiedIndex"] == index):
            check("2. the follower reads its own write %d at once" % i, False, got)
            return
        if "X-Raft-Index" not in headers or "X-Raft-Term" not in headers:
            check("2. the follower's answer has X-Raft-Index and X-Raft-Term", False, headers)
            return
    check("2. 20 writes on a follower, each read back there at once at its X-Etcd-Index, with Raft headers", True)
    st, _, got = call(c.url(other), "GET", "/v2/keys/ryw/k?quorum=true")
    check("2. a quorum read on another member sees the last write", st == 200 and got["node"]["value"] == "19", got)
    synced = {}
    for i in range(3):
        with urllib.request.urlopen(c.url(i) + "/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("keel_kv_wal_fdatasyncs_total ") or line.startswith("keel_kv_wal_records_total "):
                    synced[(i, line.split()[0])] = float(line.split()[1])
    if os.path.basename(c.binary) != "etcd":
        check("2. every member's /metrics counts its WAL syncs and records (followers' too)",
              len(synced) == 6 and all(v > 0 for v in synced.values()), synced)
    big = "<" * (450 * 1024)
    call(c.url(follower), "PUT", "/v2/keys/big", {"value": big})
    st, _, got = call(c.url(follower), "PUT", "/v2/keys/big", {"value": big + "!"}, timeout=20)
    check("2. a 450 KiB value of '<' over another, on a follower: 200 with node and prevNode whole",
          st == 200 and isinstance(got, dict) and got["node"]["value"] == big + "!" and got["prevNode"]["value"] == big,
          (st, str(got)[:200]))


def concurrent_increments(c, check):
    url0 = c.url(0)
    call(url0, "PUT", "/v2/keys/counter", {"value": "0"})
    wins = []
    errors = []
    lock = threading.Lock()

    def worker(url, n):
        done = 0
        while done < n:
            st, _, got = call(url, "GET", "/v2/keys/counter?quorum=true")
            if st != 200:
                errors.append(("get", st, got))
                return
            value = got["node"]["value"]
            st, _, got = call(url, "PUT", "/v2/keys/counter", {"value": str(int(value) + 1), "prevValue": value})
            if st == 200:
                with lock:
                    wins.append(int(value) + 1)
                done += 1
            elif not (st == 412 and got.get("errorCode") == 101):
                errors.append(("cas", st, got))
                return

    threads = [threading.Thread(target=worker, args=(c.url(i % 3), 25)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    st, _, got = call(url0, "GET", "/v2/keys/counter?quorum=true")
    final = int(got["node"]["value"]) if st == 200 else None
    check("3. 150 compare-and-swap increments from all three members: no errors", not errors, errors[:3])
    check("3. every successful swap is a distinct step and the counter is their number (%s)" % final,
          sorted(wins) == list(range(1, len(wins) + 1)) and final == len(wins) == 150,
          {"wins": len(wins), "final": final})


def quorum_read_cut_off(c, leader, check):
    # The two requests go at once, while the member still takes itself for the leader (check-quorum demotes it
    # after an election timeout); a refusal there was once answered from its own state.
    leader, _ = c.wait_leader()  # leadership may have moved since the run began
    c.proxies.isolate(leader, "drop")
    try:
        threads = []
        results = {}

        def ask(name, method, path, form=None):
            started = time.monotonic()
            results[name] = call(c.url(leader), method, path, form, timeout=30) + (time.monotonic() - started,)

        for args in (("cas", "PUT", "/v2/keys/ryw/k", {"value": "x", "prevValue": "not-it"}),
                     ("quorum", "GET", "/v2/keys/ryw/k?quorum=true")):
            threads.append(threading.Thread(target=ask, args=args))
            threads[-1].start()
        for t in threads:
            t.join(40)
        plain, _, _ = call(c.url(leader), "GET", "/v2/keys/ryw/k")
        st, _, got, took = results.get("quorum", (None, None, None, 0))
        cas, _, cas_got, cas_took = results.get("cas", (None, None, None, 0))
    finally:
        c.proxies.heal()
    code = got.get("errorCode") if isinstance(got, dict) else None
    check("4. a quorum read on a leader cut off from the others is refused: 500 / errorCode 300 "
          "(got %s / %s after %.1f s)" % (st, code, took), st == 500 and code == 300, got)
    check("4. a plain read there is answered from its own state", plain == 200, plain)
    cas_code = cas_got.get("errorCode") if isinstance(cas_got, dict) else None
    cas_cause = cas_got.get("cause", "") if isinstance(cas_got, dict) else ""
    # "request timed out": the leader's own confirmation round timed out. A member that had
    # stepped down first would have relayed the write and said "no leader" instead.
    check("4. a compare-and-swap refused from that state is not answered 412 but 500 / errorCode 300, "
          "'request timed out' (got %s / %s %r after %.1f s)" % (cas, cas_code, cas_cause, cas_took),
          cas == 500 and cas_code == 300 and cas_cause.startswith("etcdserver: request timed out"), cas_got)


def after_leader_loss(c, leader, check):
    c.kill9(leader)
    new_leader, _ = c.wait_leader(exclude=leader)
    follower = next(i for i in range(3) if i not in (leader, new_leader))
    deadline = time.monotonic() + 15
    status = None
    while time.monotonic() < deadline:
        status, _, got = call(c.url(follower), "PUT", "/v2/keys/after", {"value": "v"})
        if status in (200, 201):
            break
        time.sleep(0.2)
    check("5. after kill -9 of the leader, a follower's write goes through the new leader", status in (200, 201),
          status)
    c.restart(leader)
    deadline = time.monotonic() + 15
    swapped = False
    while time.monotonic() < deadline and not swapped:
        status, _, got = call(c.url(leader), "PUT", "/v2/keys/after", {"value": "w", "prevValue": "v"})
        swapped = status == 200
        if status == 412:  # an earlier try may have been done and answered with an error
            st, _, now = call(c.url(leader), "GET", "/v2/keys/after?quorum=true")
            swapped = st == 200 and now["node"]["value"] == "w"
        if not swapped:
            time.sleep(0.2)
    check("5. the restarted former leader, now a follower, relays a compare-and-swap", swapped, status)
    st, _, got = call(c.url(new_leader), "GET", "/v2/keys/after?quorum=true")
    check("5. the cluster holds it (a quorum read)", st == 200 and got["node"]["value"] == "w", got)


def scenario(o, work, check, started):
    extra = ["--enable-v2"] if os.path.basename(o.binary) == "etcd" else []
    c = started(harness.Cluster(o.binary, size=3, base_port=o.base_port, workdir=os.path.join(work, "members"),
                                extra_args=extra, peer_proxy=True))
    leader, _ = c.wait_leader()
    followers = [i for i in range(3) if i != leader]
    same_answers(c, leader, followers[0], check)
    read_your_write(c, followers[0], followers[1], check)
    concurrent_increments(c, check)
    quorum_read_cut_off(c, leader, check)
    leader, _ = c.wait_leader()
    after_leader_loss(c, leader, check)


def main():
    return harness.run_scenario("keel-v2-follower-", 29480, scenario)


if __name__ == "__main__":
    sys.exit(main())
