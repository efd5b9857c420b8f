#!/usr/bin/env python3
"""v2 GETs read on the connection's shard (kv README "Reads on any shard").

keeld answers a v2 GET on the shard that holds the client's connection, reading the
owner's store through a store_read, when nothing applied is unpublished; a TTL, a large
directory, or a store being written sends it to the owner as before. This checks, on one
keeld with two shards:

  - every connection (some on the owner shard, some not) gives the same answer, byte for
    byte, for files, small and large directories, errors, TTL keys and TTL directories;
  - the shard-local path was used (keel_kv_reads_here_total grows by the GETs of
    connections not on the owner), and never for what it must leave to the owner (a TTL,
    a directory over 64 keys);
  - under concurrent writes, deletes, TTL writes and compactions, a GET sent after a PUT
    was acknowledged (on another connection) sees it or something newer, each connection
    sees every key's value only grow, and the server stays up.

The v3 gateway's single-key ranges (serializable, and on a single node linearizable) are
read the same way: the same answers on every connection, the fast path counted, and a
prefix range or a past revision left to the owner.

Usage: v2_reads_here_test.py <keeld>
"""
import base64
import http.client
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
CONNECTIONS = 32  # all on the owner shard with probability 2^-31 at most

check = keeltest.Checks()


class Conn:
    """One keep-alive HTTP connection to keeld."""

    def __init__(self, port):
        self.port = port
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, form=None):
        body, headers = None, {}
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.http.request(method, path, body=body, headers=headers)
        reply = self.http.getresponse()
        text = reply.read().decode()
        return reply.status, dict((k.lower(), v) for k, v in reply.getheaders()), text


def start_keeld(tmp):
    """keeld with the kv module on two shards; returns (keeltest.Keeld, port)."""
    server = keeltest.start_keeld(KEELD, tmp, ["--modules", "kv", "--kv.dir", os.path.join(tmp, "kv"),
                                               "--shards", "2", "--data-dir", os.path.join(tmp, "core")],
                                  timeout=20)
    return server, server.port


def reads_here(port):
    _, _, text = Conn(port).request("GET", "/metrics")
    found = re.search(r"^keel_kv_reads_here_total (\d+)$", text, re.M)
    return int(found.group(1)) if found else None


def without_ttl(text):
    """The answer with each "ttl" and "expiration" taken out: a TTL node is always read on
    the owner, and what it shows moves with the moment of the read (seconds left; and when
    the owner's exact expiry and the lease's remaining seconds disagree by more than one,
    as under ASan's slowness, an expiration computed from now). Whether they are shown is
    checked separately."""
    return re.sub(r',"expiration":"[^"]*"', "", re.sub(r',"ttl":\d+', "", text))


def setup(conn):
    conn.request("PUT", "/v2/keys/cfg/a", {"value": "alpha"})
    conn.request("PUT", "/v2/keys/cfg/_hidden", {"value": "h"})
    for i in range(10):
        conn.request("PUT", "/v2/keys/small/k%02d" % i, {"value": str(i)})
    conn.request("PUT", "/v2/keys/small/sub/x", {"value": "x"})
    for i in range(100):
        conn.request("PUT", "/v2/keys/big/k%03d" % i, {"value": str(i)})
    conn.request("PUT", "/v2/keys/ttl", {"value": "t", "ttl": "300"})
    conn.request("PUT", "/v2/keys/ttldir", {"dir": "true", "ttl": "300"})
    conn.request("PUT", "/v2/keys/ttldir/in", {"value": "i"})
    conn.request("PUT", "/v2/keys/small/later", {"value": "l", "ttl": "300"})
    conn.request("DELETE", "/v2/keys/small/later")  # a lease gone, the key gone
    # A directory of 2 live keys among 1,100 deleted ones not yet compacted: a reader
    # would walk them all, so it is left to the owner (walk_max).
    for i in range(1100):
        conn.request("PUT", "/v2/keys/graveyard/k%04d" % i, {"value": "g"})
    conn.http.request("POST", "/v3/kv/deleterange", body=json.dumps({
        "key": base64.b64encode(b"/graveyard/k0").decode(),
        "range_end": base64.b64encode(b"/graveyard/l").decode()}))
    conn.http.getresponse().read()
    conn.request("PUT", "/v2/keys/graveyard/z1", {"value": "1"})
    conn.request("PUT", "/v2/keys/graveyard/z2", {"value": "2"})


# (path, whether a shard other than the owner may answer it)
PATHS = [
    ("/v2/keys/cfg/a", True),
    ("/v2/keys/cfg", True),
    ("/v2/keys/cfg/", True),
    ("/v2/keys/small?recursive=true", True),
    ("/v2/keys/small?recursive=true&sorted=true", True),
    ("/v2/keys/small/sub", True),
    ("/v2/keys/nope", True),
    ("/v2/keys/cfg/a/below", True),
    ("/v2/keys/small/nope/deeper", True),
    ("/v2/keys/big", False),
    ("/v2/keys/big?recursive=true", False),
    ("/v2/keys/?recursive=true", False),
    ("/v2/keys/ttl", False),
    ("/v2/keys/ttldir", False),
    ("/v2/keys/ttldir/in", True),  # shares its directory's lease: shows no TTL of its own
    ("/v2/keys/cfg/a?quorum=true", True),
    ("/v2/keys/graveyard", False),
    ("/v2/keys/" + "long/" * 120 + "x", False),  # over 512 bytes of path
    ("/v2/keys/" + "long/" * 50 + "x", True),
]


def ask_every_connection(port, conns, name, ask, here, compared):
    """Asks `ask(conn)` on every connection: the answers must agree in `compared(answer)`,
    and keel_kv_reads_here_total must grow by the connections not on the owner shard when
    `here` (some, not all), by none when not."""
    before = reads_here(port)
    answers = [ask(c) for c in conns]
    after = reads_here(port)
    differ = [i for i, a in enumerate(answers) if compared(a) != compared(answers[0])]
    check("every connection answers %s alike" % name, not differ,
          differ and "connection %d: %r against connection 0: %r" % (differ[0], answers[differ[0]], answers[0]))
    served = after - before
    if here:
        check("%s: some connections were answered on their own shard" % name,
              0 < served < CONNECTIONS, "%d of %d" % (served, CONNECTIONS))
    else:
        check("%s: left to the owner" % name, served == 0, "%d read here" % served)


def section_same_answers(port):
    conns = [Conn(port) for _ in range(CONNECTIONS)]
    for path, here in PATHS:
        ask_every_connection(port, conns, path, lambda c: c.request("GET", path), here,
                             lambda a: (a[0], without_ttl(a[2]), a[1].get("x-etcd-index")))
    # What the answers say, once.
    status, _, text = conns[0].request("GET", "/v2/keys/big?recursive=true")
    check("the large directory lists all 100 keys", status == 200 and len(json.loads(text)["node"]["nodes"]) == 100,
          text[:200])
    status, _, text = conns[0].request("GET", "/v2/keys/ttl")
    node = json.loads(text)["node"]
    check("a TTL key shows its ttl and expiration", "ttl" in node and "expiration" in node, text)
    status, _, text = conns[0].request("GET", "/v2/keys/small?recursive=true")
    names = [n["key"] for n in json.loads(text)["node"]["nodes"]]
    check("the small directory lists 10 files and a directory, not the deleted key",
          len(names) == 11 and "/small/sub" in names and "/small/later" not in names, names)
    status, _, text = conns[0].request("GET", "/v2/keys/graveyard")
    names = [n["key"] for n in json.loads(text)["node"]["nodes"]]
    check("the directory among deleted keys lists its two live ones", names == ["/graveyard/z1", "/graveyard/z2"],
          text[:300])
    status, _, text = conns[0].request("GET", "/v2/keys/cfg")
    check("a hidden key is not listed", "_hidden" not in text and "/cfg/a" in text, text)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def v3(conn, path, body):
    conn.http.request("POST", path, body=json.dumps(body))
    reply = conn.http.getresponse()
    return reply.status, reply.read().decode()


def section_v3_ranges(port):
    conns = [Conn(port) for _ in range(CONNECTIONS)]
    v3(conns[0], "/v3/kv/put", {"key": b64("v3key"), "value": b64("v3value")})
    revision = json.loads(v3(conns[0], "/v3/kv/put", {"key": b64("v3key"), "value": b64("v3value2")})[1])["header"]["revision"]
    cases = [
        ("one key, linearizable", {"key": b64("v3key")}, True),
        ("one key, serializable", {"key": b64("v3key"), "serializable": True}, True),
        ("a missing key", {"key": b64("v3none")}, True),
        ("one key, keys_only", {"key": b64("v3key"), "keys_only": True}, True),
        ("one key, count_only", {"key": b64("v3key"), "count_only": True}, True),
        ("a prefix", {"key": b64("v3"), "range_end": b64("v4")}, False),
        ("a past revision", {"key": b64("v3key"), "revision": str(int(revision) - 1)}, False),
    ]
    for name, body, here in cases:
        ask_every_connection(port, conns, "v3 range, " + name, lambda c: v3(c, "/v3/kv/range", body), here,
                             lambda a: a)
    status, text = v3(conns[0], "/v3/kv/range", {"key": b64("v3key")})
    kvs = json.loads(text).get("kvs", [])
    check("v3 range shows the newest value", status == 200 and len(kvs) == 1 and kvs[0]["value"] == b64("v3value2"), text)
    status, text = v3(conns[0], "/v3/kv/range", {"key": b64("v3key"), "revision": str(int(revision) - 1)})
    kvs = json.loads(text).get("kvs", [])
    check("v3 range at a past revision shows the value then", status == 200 and kvs and kvs[0]["value"] == b64("v3value"), text)


def section_under_writes(port, seconds=4.0):
    writers, readers = 3, 4
    stop = threading.Event()
    acknowledged = [0] * writers  # the newest value each writer's PUT had acknowledged
    problems = []
    counts = {"puts": 0, "gets": 0}
    lock = threading.Lock()

    def problem(text):
        with lock:
            if len(problems) < 10:
                problems.append(text)

    def writer(w):
        conn, check_conns = Conn(port), [Conn(port) for _ in range(4)]
        value = 0
        while not stop.is_set():
            value += 1
            status, _, text = conn.request("PUT", "/v2/keys/rw/w%d" % w, {"value": str(value)})
            if status not in (200, 201):
                problem("PUT w%d=%d: %d %s" % (w, value, status, text))
                return
            acknowledged[w] = value
            # Read it back on other connections (other shards, some of them).
            c = random.choice(check_conns)
            status, _, text = c.request("GET", "/v2/keys/rw/w%d" % w)
            seen = int(json.loads(text)["node"]["value"]) if status == 200 else -1
            if seen < value:
                problem("GET w%d after the PUT of %d was acknowledged saw %d (%d %s)" % (w, value, seen, status, text))
            with lock:
                counts["puts"] += 1

    def reader(r):
        conn = Conn(port)
        last = [0] * writers
        while not stop.is_set():
            w = random.randrange(writers)
            status, _, text = conn.request("GET", "/v2/keys/rw/w%d" % w)
            if status == 404:
                continue  # not written yet
            try:
                seen = int(json.loads(text)["node"]["value"])
            except (ValueError, KeyError, TypeError):
                problem("reader %d: GET w%d: %d %r" % (r, w, status, text))
                return
            if seen < last[w]:
                problem("reader %d saw w%d go back from %d to %d" % (r, w, last[w], seen))
            last[w] = seen
            with lock:
                counts["gets"] += 1

    def churn():
        # TTL keys, deletes, directory writes and compactions: every kind of store change.
        conn = Conn(port)
        i = 0
        while not stop.is_set():
            i += 1
            conn.request("PUT", "/v2/keys/churn/t%d" % (i % 20), {"value": "v", "ttl": "60"})
            conn.request("DELETE", "/v2/keys/churn/t%d" % ((i + 7) % 20))
            conn.request("PUT", "/v2/keys/churn/d%d/x" % (i % 5), {"value": str(i)})
            conn.request("GET", "/v2/keys/churn?recursive=true")
            if i % 50 == 0:  # compact all but the last few revisions (the v3 gateway)
                revision = int(conn.request("GET", "/v2/keys/cfg/a")[1].get("x-etcd-index", "0"))
                conn.http.request("POST", "/v3/kv/compaction", body=json.dumps({"revision": str(revision - 5)}))
                conn.http.getresponse().read()

    before = reads_here(port)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(readers)]
    threads.append(threading.Thread(target=churn))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    after = reads_here(port)
    check("under writes: no GET after an acknowledged PUT missed it, no value went back", not problems, problems)
    check("under writes: the clients made progress", counts["puts"] > 50 and counts["gets"] > 100, counts)
    check("under writes: keeld still answers", Conn(port).request("GET", "/v2/keys/cfg/a")[0] == 200)
    print("  %d puts, %d gets, %d of them read here" % (counts["puts"], counts["gets"], after - before), flush=True)


def main():
    if not os.path.exists(KEELD):
        keeltest.skip("no keeld at " + KEELD)
    tmp = tempfile.mkdtemp(prefix="keel-v2-here-")
    server = None
    try:
        server, port = start_keeld(tmp)
        check("keel_kv_reads_here_total is in /metrics", reads_here(port) is not None)
        setup(Conn(port))
        section_same_answers(port)
        section_v3_ranges(port)
        section_under_writes(port)
        check("keeld is still running", server.proc.poll() is None)
    except Exception as e:  # noqa: BLE001 - report, then show the log
        check.fail("the test ran to its end", repr(e))
    finally:
        if server:
            server.stop()
        code = check.summary()
        if code:
            keeltest.print_logs(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
