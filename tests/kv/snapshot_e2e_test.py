#!/usr/bin/env python3
"""Snapshots end to end through keeld: with --kv.snapshot-count 100, writes of every kind
(puts, deletes, a txn, a compaction, leases with keys) produce snapshot files (at most 5
kept); after kill -9 the restarted store is identical (every key with its revisions, the
history after the compaction, the leases and their keys); a corrupt newest snapshot is
skipped with a warning, renamed .broken, and the older snapshot plus the WAL give the same
store again; with the whole WAL gone (a data dir restored from a snapshot file) keeld
starts from the snapshot alone and says so.

Usage: snapshot_e2e_test.py <path to keeld>
"""
import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
check = keeltest.Checks(keeltest.after_colon(2000))


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Keeld:
    def __init__(self, root, expect_failure=False, env=None):
        self.root = root
        self.port = keeltest.free_port()
        self.log_path = os.path.join(root, "keeld-%d.log" % self.port)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [KEELD, "--kv.dir", os.path.join(root, "kv"), "--kv.snapshot-count", "100", "--shards", "2",
             "--listen-client-urls", "http://127.0.0.1:%d" % self.port, "--data-dir", os.path.join(root, "core")],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))
        if expect_failure:
            self.proc.wait(timeout=10)
            self.log.close()
            return
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("keeld exited with %d:\n%s" % (self.proc.returncode, self.text()))
            try:
                status, _ = self.post("/v3/kv/range", {"key": b64("probe")})
                if status == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise RuntimeError("keeld did not become ready")

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def post(self, path, body):
        request = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                         data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()

    def metric(self, name):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None


def dump(server):
    """Everything a client can see: all keys now, the history after the compaction, leases."""
    status, now = server.post("/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0")})
    _, compacted_probe = server.post("/v3/kv/range", {"key": b64("k/1"), "revision": "1"})
    status_leases, leases = server.post("/v3/lease/leases", {})
    lease_keys = {}
    for lease in leases.get("leases", []):
        _, ttl = server.post("/v3/lease/timetolive", {"ID": lease["ID"], "keys": True})
        lease_keys[lease["ID"]] = (ttl.get("grantedTTL"), sorted(ttl.get("keys", [])))
    history = {}
    for r in range(history_from, rev(now) + 1):
        _, at = server.post("/v3/kv/range", {"key": b64("k/"), "range_end": b64("k0"), "revision": str(r)})
        history[r] = at.get("kvs", [])
    return {"now": now.get("kvs", []), "revision": rev(now), "compacted": compacted_probe.get("code"),
            "leases": lease_keys, "history": history}


def rev(answer):
    return int(answer.get("header", {}).get("revision", "0"))


history_from = 0


def deadlocked_child(root):
    """A snapshot process blocked on a lock held at its fork (as a shard allocating
    under ASan leaves one) is killed, and the next snapshot is written."""
    root = os.path.join(root, "deadlock")
    os.makedirs(root)
    server = Keeld(root, env={"KEEL_TEST_SNAPSHOT_CHILD_DEADLOCK": "1"})
    for i in range(150):
        server.post("/v3/kv/put", {"key": b64("d/%d" % i), "value": b64("v")})
    deadline = time.time() + 15
    while time.time() < deadline and not (server.metric("keel_kv_snapshots_total") or 0) >= 1:
        server.post("/v3/kv/put", {"key": b64("d/more"), "value": b64("v")})
        time.sleep(0.2)
    log = server.text()
    check("a deadlocked snapshot process: keeld names it in the log",
          "waits on a lock held when it was forked" in log, log[-800:])
    check("... kills it (keel_kv_snapshot_processes_killed_total 1)",
          server.metric("keel_kv_snapshot_processes_killed_total") == 1)
    check("... and the next snapshot is written", (server.metric("keel_kv_snapshots_total") or 0) >= 1
          and glob.glob(os.path.join(root, "kv", "snap", "*.snap")), log[-800:])
    check("... while keeld goes on serving", server.proc.poll() is None and
          server.post("/v3/kv/put", {"key": b64("d/after"), "value": b64("v")})[0] == 200)
    server.kill()


def interval_grows(root):
    """With a history larger than twice snapshot-count, snapshots come every half of it, at
    most 4 x snapshot-count apart: 1,600 puts with --kv.snapshot-count 100 take 6 of them
    (at entries ~100, 200, 400, 800, 1200, 1600), where one every 100 entries would take 16. A
    snapshot due while the previous one is still being written comes later, so only
    lower bounds on the gaps are checked."""
    root = os.path.join(root, "interval")
    os.makedirs(root)
    server = Keeld(root)
    for i in range(1600):
        server.post("/v3/kv/put", {"key": b64("i/%d" % (i % 20)), "value": b64("v%d" % i)})
    time.sleep(0.6)  # the owner reaps a finished snapshot on its 250 ms tick
    entries = [int(line.split("snapshot at entry ")[1].split()[0]) for line in server.text().splitlines()
               if "snapshot at entry " in line and " bytes" in line]
    server.kill()
    check("interval: 2 to 6 snapshots for 1,600 entries", 2 <= len(entries) <= 6, entries)
    gaps = [b - a for a, b in zip([0] + entries, entries)]
    # Entry e holds revision e + 1 (the store starts at revision 1) and nothing is
    # compacted, so the history at entry e is at least e versions.
    check("interval: each gap at least max(100, min(400, half the history))",
          all(g >= max(100, min(400, (e - 1) // 2)) for g, e in zip(gaps, entries)), (entries, gaps))


def main():
    global history_from
    root = tempfile.mkdtemp(prefix="keel-snapshot-e2e.")
    try:
        server = Keeld(root)
        for i in range(150):
            server.post("/v3/kv/put", {"key": b64("k/%d" % (i % 40)), "value": b64("v%d" % i)})
        _, answer = server.post("/v3/kv/put", {"key": b64("k/compact-point"), "value": b64("x")})
        status, _ = server.post("/v3/kv/compaction", {"revision": str(rev(answer))})
        check("compaction accepted", status == 200)
        history_from = rev(answer)
        status, _ = server.post("/v3/lease/grant", {"ID": "4242", "TTL": "3600"})
        check("lease granted", status == 200)
        for i in range(5):
            server.post("/v3/kv/put", {"key": b64("leased/%d" % i), "value": b64("l"), "lease": "4242"})
        server.post("/v3/kv/deleterange", {"key": b64("k/1"), "range_end": b64("k/2")})
        server.post("/v3/kv/txn", {"compare": [{"key": b64("k/3"), "target": "VERSION", "result": "GREATER",
                                                "version": "0"}],
                                   "success": [{"request_put": {"key": b64("k/txn"), "value": b64("t")}}]})
        # Concurrent writers: snapshots start while commits are in flight (a snapshot waits
        # for the WAL to hold its entry while the previous one's flags are still set).
        def writer(t):
            for i in range(150):
                server.post("/v3/kv/put", {"key": b64("k/%d" % ((t * 150 + i) % 50)), "value": b64("w%d-%d" % (t, i))})
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check("keeld survived snapshots under concurrent writes", server.proc.poll() is None, server.text()[-800:])
        time.sleep(0.6)  # the owner finishes snapshots on its 250 ms tick
        snaps = sorted(glob.glob(os.path.join(root, "kv", "snap", "*.snap")))
        check("snapshot files written, at most 5 kept", 1 <= len(snaps) <= 5, snaps)
        check("keel_kv_snapshots_total counts them", (server.metric("keel_kv_snapshots_total") or 0) >= 3,
              server.metric("keel_kv_snapshots_total"))
        before = dump(server)
        check("the store has keys, leases and history", len(before["now"]) > 40 and before["leases"] and
              len(before["history"]) > 300, (len(before["now"]), before["leases"], len(before["history"])))

        server.kill()
        server = Keeld(root)
        after = dump(server)
        check("kill -9, restart from snapshot + WAL: the same keys", after["now"] == before["now"])
        check("... the same revision", after["revision"] == before["revision"], (after["revision"], before["revision"]))
        check("... the same history at every revision after the compaction", after["history"] == before["history"])
        check("... the compaction stays (revision 1 is compacted)", after["compacted"] == before["compacted"] == 11,
              (after["compacted"], before["compacted"]))
        check("... the same leases with the same keys", after["leases"] == before["leases"], after["leases"])
        check("the log says a snapshot was loaded", "loaded snapshot" in server.text(), server.text()[-500:])
        # A write after the restart continues the revisions.
        _, answer = server.post("/v3/kv/put", {"key": b64("k/after"), "value": b64("a")})
        check("the next write gets revision + 1", rev(answer) == before["revision"] + 1, answer)
        before = dump(server)
        server.kill()

        # A corrupt newest snapshot: skipped with a warning and renamed .broken.
        snaps = sorted(glob.glob(os.path.join(root, "kv", "snap", "*.snap")))
        newest = snaps[-1]
        with open(newest, "r+b") as f:
            f.seek(os.path.getsize(newest) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
        with open(newest, "rb") as f:
            corrupted = f.read()
        server = Keeld(root)
        after = dump(server)
        check("corrupt newest snapshot: a warning names it", os.path.basename(newest) in server.text(),
              server.text()[-800:])
        # Set aside byte for byte. keeld may then write a good snapshot under the same name:
        # after replaying the WAL from the older snapshot, one is due at the same entry.
        broken = open(newest + ".broken", "rb").read() if os.path.exists(newest + ".broken") else None
        again = open(newest, "rb").read() if os.path.exists(newest) else None
        check("... it is renamed .broken", broken == corrupted and again != corrupted,
              (broken is not None, again is not None and again == corrupted))
        check("... the older snapshot and the WAL give the same store", after == before,
              (after["revision"], before["revision"]))
        server.kill()

        # The whole WAL gone.
        shutil.rmtree(os.path.join(root, "kv", "wal"))
        os.makedirs(os.path.join(root, "kv", "wal"))
        # The newest remaining snapshot has an index; with no WAL at all keel starts from
        # the snapshot alone, and says so: a data dir restored from a snapshot file. (A WAL
        # whose last segments are lost is refused: wal_damage_e2e.)
        server = Keeld(root)
        check("an empty WAL beside a snapshot: a warning says keeld starts from the snapshot alone",
              "holds no WAL: starting from the snapshot at entry" in server.text(), server.text()[-500:])
        _, now = server.post("/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0"), "count_only": True})
        check("an empty WAL beside a snapshot: starts from the snapshot", int(now.get("count", "0")) > 0, now)
        _, answer = server.post("/v3/kv/put", {"key": b64("k/new-log"), "value": b64("n")})
        check("... and writes continue", "header" in answer, answer)
        server.kill()
        server = Keeld(root)
        _, got = server.post("/v3/kv/range", {"key": b64("k/new-log")})
        check("... and survive a restart", got.get("kvs", [{}])[0].get("value") == b64("n"), got)
        server.kill()
        deadlocked_child(root)
        interval_grows(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(check.summary())


if __name__ == "__main__":
    main()
