#!/usr/bin/env python3
"""Snapshots in a keeld cluster, and a member catching up through snapshot transfer.

Three members with --snapshot-count 1000 (etcd's flag). A follower is killed; 5,000 puts follow, so
every member snapshots several times and Raft drops its log up to the snapshot before
the newest. The follower is restarted: the leader's log no longer reaches back to it, so
it gets the snapshot file streamed in pieces (frames 203) and installs it, then the
entries after it. Checks: it converges (same values and revision as the others), its log
says it installed the snapshot, and after a kill -9 and restart of every member in turn
(each recovering from its own newest snapshot plus its WAL) the cluster still serves
every key.

Usage: snapshot_transfer_test.py --binary build/bin/keeld [--base-port 29440]
Ports: base..base+5.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as harness  # noqa: E402


def client_urls(url, seconds=5):
    """The clientURLs of every member in url's /v2/members, once all have some (a member
    publishes its own a moment after it starts) or after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        with urllib.request.urlopen(url + "/v2/members", timeout=5) as r:
            urls = [m.get("clientURLs") for m in json.loads(r.read())["members"]]
        if all(urls) or time.monotonic() > deadline:
            return urls
        time.sleep(0.1)


def v2_put(url, path, value):
    req = urllib.request.Request(url + path, data=("value=" + value).encode(), method="PUT",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def count(url):
    body = {"key": harness.b64e("k/"), "range_end": harness.b64e("k0"), "count_only": True, "serializable": True}
    req = urllib.request.Request(url + "/v3/kv/range", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        doc = json.loads(r.read())
    return int(doc.get("count", 0)), int(doc["header"]["revision"])


def snapshots_taken(url):
    """keel_kv_snapshots_total of the member at `url` (its /metrics), 0 if not listed."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("keel_kv_snapshots_total "):
                return int(float(line.split()[1]))
    return 0


def scenario(o, work, check, started):
    c = started(harness.Cluster(o.binary, size=3, base_port=o.base_port, workdir=os.path.join(work, "members"),
                                extra_args=["--snapshot-count", "1000"]))  # etcd's flag
    leader = c.leader()
    lagging = next(i for i in range(3) if i != leader)
    c.kill9(lagging)

    def put(i):
        for _ in range(100):
            try:
                harness.kv_put(c.url(leader), "k/%07d" % i, "v%d" % i, 5.0)
                return True
            except (harness.NotSent, harness.Unknown, harness.HttpError):
                time.sleep(0.05)
        return False

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as ex:
        done = sum(ex.map(put, range(o.keys)))
    check("%d of %d puts acknowledged with a follower down (%.1fs)" % (done, o.keys, time.monotonic() - t0),
          done == o.keys)
    # Snapshots are written by a child process at nice 19, which may finish well after
    # the puts on a loaded machine (or under ASan). Raft drops its log up to the older
    # of the leader's two newest snapshots, so only after two of them does the log no
    # longer reach back to the follower: wait for that before restarting it.
    t0 = time.monotonic()
    taken = 0
    while time.monotonic() - t0 < 60:
        taken = snapshots_taken(c.url(leader))
        if taken >= 2:
            break
        time.sleep(0.1)
    check("the leader wrote %d snapshots before the follower came back (%.1fs)" % (taken, time.monotonic() - t0),
          taken >= 2)
    if taken < 2:  # what its snapshot process is doing (keeld logs one that runs long)
        c.dump_logs([leader], n=15)
        subprocess.run(["ps", "--forest", "-o", "pid,ppid,etimes,stat,wchan:24,cmd", "-C", "keeld"])

    c.restart(lagging)
    t0 = time.monotonic()
    want = count(c.url(leader))
    got = None
    while time.monotonic() - t0 < 30:
        got = count(c.url(lagging))
        if got == want:
            break
        time.sleep(0.1)
    check("the restarted follower caught up: %r == %r in %.2fs" % (got, want, time.monotonic() - t0), got == want)
    with open(c.members[lagging].log_path) as f:
        log = f.read()
    check("it caught up by installing the leader's snapshot", "installed the leader's snapshot" in log)
    # The members' client URLs were published in entries the snapshot replaced: the
    # member still knows them (it relays v2 writes to the leader's), from the table the
    # leader sends with the snapshot.
    urls = client_urls(c.url(lagging))
    check("after the snapshot it lists every member's client URLs: %s" % urls, all(urls))
    check("... and relays a v2 write to the leader", v2_put(c.url(lagging), "/v2/keys/after-install", "1") == 201)

    # A watcher on a member that falls behind the leader's log (paused) and then installs
    # a snapshot still gets every event, in order: the member has its watchers catch up
    # from the restored store's history.
    leader = c.leader()
    paused = next(i for i in range(3) if i != leader)
    events = []
    wanted = [1 << 30]  # how many events the watcher waits for, set once the writes are done
    ready = threading.Event()

    def watch():
        body = json.dumps({"create_request": {"key": harness.b64e("w/"), "range_end": harness.b64e("w0")}})
        req = urllib.request.Request(c.url(paused) + "/v3/watch", data=body.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=150) as r:  # covers the whole pause
            for line in r:
                doc = json.loads(line)
                ready.set()
                for e in doc.get("result", {}).get("events", []) or []:
                    events.append(int(e["kv"]["mod_revision"]))
                if len(events) >= wanted[0]:
                    return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    check("the watch on the member to be paused is open", ready.wait(5))
    with open(c.members[paused].log_path) as f:
        installed_before = f.read().count("installed the leader's snapshot")
    leader_status = c.status(leader, timeout=5)
    if leader_status is None:
        raise RuntimeError("the leader did not answer /v3/maintenance/status")
    paused_at = int(leader_status["raftIndex"])  # the paused member is at most here
    c.stop(paused)
    # Write until the leader has two snapshots well past the paused member's entry:
    # it compacts Raft's log to the snapshot before the newest, and the entries it
    # sent before the member stopped answering (up to 256 appends in flight, a few
    # thousand entries at 16 writers) wait in the socket for the member to read when
    # it resumes, so the compaction must pass those too (in a cluster a snapshot
    # comes every snapshot-count, 1,000, entries). Past 8,000 writes, a trickle: a
    # snapshot process at nice 19 (slow under ASan) needs idle CPU to finish, and a
    # snapshot skipped while one runs starts at the next commit.
    # The owner logs "snapshot at entry N (... bytes, ...)" when it has reaped the
    # snapshot process, in the same step as it compacts Raft's log.
    beyond = paused_at + 5000

    def snapshots_after_pause():
        with open(c.members[leader].log_path) as f:
            return len([line for line in f if " bytes, " in line and "snapshot at entry " in line
                        and int(line.split("snapshot at entry ")[1].split()[0]) > beyond])
    written = 0
    deadline = time.monotonic() + 45
    while snapshots_after_pause() < 2 and time.monotonic() < deadline:
        batch = 1000 if written < 8000 else 20
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: harness.kv_put(c.url(leader), "w/%05d" % i, "x", 5.0),
                        range(written, written + batch)))
        written += batch
        if batch < 1000:
            time.sleep(0.2)
    check("the leader wrote two snapshots past entry %d, 5,000 after the paused member's (%d; %d writes)"
          % (beyond, snapshots_after_pause(), written), snapshots_after_pause() >= 2)
    wanted[0] = written
    c.cont(paused)
    t.join(45)
    with open(c.members[paused].log_path) as f:
        installed = f.read().count("installed the leader's snapshot") - installed_before
    check("the paused member fell behind the leader's log: it installed a snapshot (%d; %d writes)"
          % (installed, written), installed >= 1)
    check("a watcher on the paused member got all %d of %d events in order after it installed a snapshot"
          % (len(events), written),
          len(events) == written and events == sorted(events) and len(set(events)) == written)

    # A member restarted alone from its own snapshot: the entries in which the others
    # published their client URLs were released long ago (and they publish once per
    # start), so only its member.json can give them; it relays v2 writes with them.
    alone = next(i for i in range(3) if i not in (c.leader(), lagging))
    c.kill9(alone)
    c.restart(alone)
    urls = client_urls(c.url(alone))
    check("restarted alone from its snapshot, a member lists every member's client URLs: %s" % urls, all(urls))
    check("... and relays a v2 write to the leader", v2_put(c.url(alone), "/v2/keys/after-restart", "1") == 201)

    for i in range(3):
        c.kill9(i)
        c.restart(i)
        c.wait_leader(timeout=15)
    took = c.wait_converged(["k/%07d" % 0, "k/%07d" % (o.keys - 1)], timeout=20)
    counts = [count(c.url(i))[0] for i in range(3)]
    check("after kill -9 and restart of every member: counts %r (%.2fs)" % (counts, took), counts == [o.keys] * 3)


def main():
    return harness.run_scenario("keel-snapshot-transfer-", 29440, scenario,
                                add_arguments=lambda ap: ap.add_argument("--keys", type=int, default=5000))


if __name__ == "__main__":
    sys.exit(main())
