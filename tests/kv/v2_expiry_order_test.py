#!/usr/bin/env python3
"""v2 TTL keys written one after another expire one after another, also after a restart.

etcd's v2 store expires nodes from a heap ordered by expiration time. keel revokes the
leases that are due in the order they fall due; leases whose clocks restart together (a
store loaded from a snapshot, a new leader) fall due together and then go in the order
they were granted (modules/kv/module/README.md, "TTL"). Before that rule a store loaded
from a snapshot expired them in the order of their random lease ids.

Scenarios, each with eight keys /order/k1..k8 (ttl 6, each its own lease), written in
that order:
  - snapshot: --kv.snapshot-count 5 and fillers until a snapshot holding every lease is
    written; kill -9; the restarted keeld loads that snapshot (its log says so); the
    eight `expire` events, read with waitIndex from the revision after the fillers, name
    k1..k8 in order.
  - wal: the default snapshot count (no snapshot), kill -9, the WAL replayed: the same.

Usage: v2_expiry_order_test.py <path to keeld>
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
KEYS = ["k%d" % i for i in range(1, 9)]
TTL = 6
check = keeltest.Checks()


def put(server, key, **form):
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(server.url + "/v2/keys" + key, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def next_event(server, index, timeout=30):
    """The first event under /order at index >= `index` (a v2 wait with waitIndex)."""
    url = "%s/v2/keys/order?wait=true&recursive=true&waitIndex=%d" % (server.url, index)
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read())


def snapshots_written(server):
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.search(r"^keel_kv_snapshots_total (\d+)$", text, re.M)
    return int(found.group(1)) if found else 0


def expiry_order(server, start):
    """The keys of the next len(KEYS) events from revision `start`, with their actions."""
    seen, index = [], start
    while len(seen) < len(KEYS):
        event = next_event(server, index)
        seen.append((event["action"], event["node"]["key"].rsplit("/", 1)[-1]))
        index = event["node"]["modifiedIndex"] + 1
    return seen


def scenario(name, args, with_snapshot):
    root = tempfile.mkdtemp(prefix="keel-expiry-order-")
    server = None
    try:
        server = keeltest.start_keeld(KEELD, root, args)
        for key in KEYS:
            put(server, "/order/" + key, value="v", ttl=str(TTL))
        last = 0
        if with_snapshot:
            # Two more snapshots than now: at least one was started after every lease.
            goal = snapshots_written(server) + 2
            deadline = time.time() + 30
            filler = 0
            while snapshots_written(server) < goal and time.time() < deadline:
                filler += 1
                last = put(server, "/filler%d" % filler, value="x")["node"]["modifiedIndex"]
                if filler % 5 == 0:
                    time.sleep(0.1)  # a snapshot is written by a child process
            check(name + ": a snapshot holding every lease was written", snapshots_written(server) >= goal,
                  "snapshots written: %d, wanted %d" % (snapshots_written(server), goal))
        else:
            last = put(server, "/filler", value="x")["node"]["modifiedIndex"]
        server.kill()
        server = keeltest.start_keeld(KEELD, root, args)
        loaded = keeltest.log_lines(server.log_path, "loaded snapshot")
        check(name + ": the restart " + ("loaded a snapshot" if with_snapshot else "replayed the WAL alone"),
              bool(loaded) == with_snapshot, "log lines: %r" % loaded)
        order = expiry_order(server, last + 1)
        check(name + ": the keys expired in the order they were written",
              order == [("expire", key) for key in KEYS], "events: %r" % order)
    except Exception as error:  # noqa: BLE001 - report and go on to the next scenario
        check.fail(name + ": ran", repr(error))
        keeltest.print_logs(root)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    scenario("snapshot", ["--kv.snapshot-count", "5"], with_snapshot=True)
    scenario("wal", [], with_snapshot=False)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
