#!/usr/bin/env python3
"""keeld's watches and leases end to end (keel only; the etcd comparison is
v3_compat_test.py):
  - a slow watcher (never reads while 5,000 puts of 1 KiB go by) gets every revision exactly
    once, in order, with no gap, through the catch-up from history;
  - watchers are freed when their clients close (keel_kv_watchers back to 0);
  - lease expiry deletes the key (a watcher sees the DELETE); keepalive keeps it alive;
  - across a restart (SIGTERM, then kill -9): leases are still listed, their TTL starts
    again from the granted TTL, their keys are deleted when they expire after the restart,
    and a watch from a revision before the restart gets the history;
  - watches served on shard 0 and on shard 1 alike (--shards 2 spreads connections).

Usage: watch_lease_e2e_test.py <path to keeld>
"""
import base64
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
started_processes = []  # every keeld started, stopped at the end whatever happens
check = keeltest.Checks(keeltest.after_colon(2000))


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text):
    return base64.b64decode(text).decode(errors="replace")


def rev(answer):
    return int(answer.get("header", {}).get("revision", "0"))


class Keeld:
    def __init__(self, root):
        self.root = root
        self.proc = None
        self.log = None
        self.port = 0

    def start(self):
        self.port = keeltest.free_port()
        self.log = open(os.path.join(self.root, "keeld-%d.log" % self.port), "w")
        self.proc = subprocess.Popen(
            [KEELD, "--modules", "kv", "--kv.dir", os.path.join(self.root, "kv"), "--shards", "2",
             "--data-dir", os.path.join(self.root, "core"),
             "--listen-client-urls", "http://127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)
        started_processes.append(self.proc)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("keeld exited with %d" % self.proc.returncode)
            try:
                status, _ = self.post("/v3/kv/range", {"key": b64("\0probe")}, timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("keeld did not become ready")

    def post(self, path, body, timeout=10, conn=None):
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            text = response.read()
        finally:
            if own:
                conn.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, [json.loads(line) for line in text.splitlines() if line.strip()]

    def metrics(self, conn=None):
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            if own:
                conn.close()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)
        self.log.close()

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=15)
        self.log.close()


class WatchStream:
    """POST /v3/watch on a raw socket; the chunked answer is read line by line."""

    def __init__(self, server, body, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", server.port))
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.sock.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.raw = b""
        self.text = b""
        self.text_at = 0  # where the unread lines of `text` start
        self.head_done = False
        self.ended = False

    def _fill(self, deadline):
        remaining = deadline - time.time()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], remaining)
        if not ready:
            return False
        data = self.sock.recv(1 << 20)
        if not data:
            self.ended = True
            return False
        self.raw += data
        return True

    def _decode(self):
        """Moves whole chunks from `raw` to `text` (offsets, not copies: megabytes go by)."""
        if not self.head_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_done = True
            self.raw = self.raw[end + 4:]
        at = 0
        pieces = []
        while True:
            end = self.raw.find(b"\r\n", at)
            if end < 0:
                break
            size = int(self.raw[at:end].split(b";")[0], 16)
            if len(self.raw) < end + 2 + size + 2:
                break
            if size == 0:
                self.ended = True
            pieces.append(self.raw[end + 2:end + 2 + size])
            at = end + 2 + size + 2
        if at:
            self.raw = self.raw[at:]
            self.text += b"".join(pieces)

    def line(self, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            newline = self.text.find(b"\n", self.text_at)
            if newline < 0:
                self.text, self.text_at = self.text[self.text_at:], 0
                self._decode()
                newline = self.text.find(b"\n")
            if newline >= 0:
                line, self.text_at = self.text[self.text_at:newline], newline + 1
                if line.strip():
                    return json.loads(line)
                continue
            if self.ended or not self._fill(deadline):
                return None

    def events(self, until, timeout=10.0, by_watch=None):
        """Reads lines until `until(events so far)` is true or `timeout`; returns the events.
        With `by_watch` (a dict), events are also appended to by_watch[watch_id]."""
        out = []
        deadline = time.time() + timeout
        while not until(out):
            line = self.line(max(0.0, deadline - time.time()))
            if line is None:
                break
            result = line.get("result", {})
            out.extend(result.get("events", []))
            if by_watch is not None:
                by_watch.setdefault(result.get("watch_id", "0"), []).extend(result.get("events", []))
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def created(stream, name):
    line = stream.line(5)
    check(name + ": created", isinstance(line, dict) and line.get("result", {}).get("created") is True, line)
    return line


def wait_metric(server, name, predicate, seconds):
    deadline = time.time() + seconds
    value = None
    while time.time() < deadline:
        value = server.metrics().get(name)
        if value is not None and predicate(value):
            return value, True
        time.sleep(0.1)
    return value, False


# ---- the checks -------------------------------------------------------------------------------

def slow_watcher(server):
    """A watch stream that is not read while 5,000 puts of 1 KiB go by, then read to the end.
    Two watchers share the stream (watch 0 plain, watch 1 with prev_kv), and the puts write
    1,000 keys five times, so the stream holds some 20 MB: more than the connection's send
    queue and the socket buffers, so the watchers stall and drop their queues."""
    before = server.metrics().get("keel_kv_watch_catchups_total", 0)
    body = (b'{"create_request":{"key":"%s","range_end":"%s"}}'
            b'{"create_request":{"key":"%s","range_end":"%s","prev_kv":true}}'
            % (b64("slow/").encode(), b64("slow0").encode(), b64("slow/").encode(), b64("slow0").encode()))
    watch = WatchStream(server, body, rcvbuf=4096)
    first, second = watch.line(5), watch.line(5)
    check("slow watcher: two watchers created (ids 0 and 1)",
          isinstance(first, dict) and isinstance(second, dict) and first["result"].get("created") is True
          and second["result"].get("watch_id") == "1", (first, second))
    total, threads_n, keys = 5000, 8, 1000
    value = "v" * 1024
    revisions, errors, lock = [], [], threading.Lock()

    def writer(t):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for i in range(t, total, threads_n):
                key = "slow/%04d" % (i % keys)
                status, answer = server.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, conn=conn)
                with lock:
                    if status == 200:
                        revisions.append(rev(answer))
                    else:
                        errors.append((status, answer))
        except Exception as error:  # noqa: BLE001
            with lock:
                errors.append(repr(error))
        finally:
            conn.close()

    started = time.time()
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    check("slow watcher: 5,000 puts of 1 KiB acknowledged (%.1f s)" % took,
          len(revisions) == total and not errors, (len(revisions), errors[:3]))
    stalled = server.metrics().get("keel_kv_watch_catchups_total", 0)
    by_watch = {}
    watch.events(lambda got: len(got) >= 2 * total, timeout=60, by_watch=by_watch)
    for watch_id, name in (("0", "watch 0"), ("1", "watch 1 (prev_kv)")):
        events = by_watch.get(watch_id, [])
        got = [int(e["kv"]["mod_revision"]) for e in events]
        check("slow watcher, %s: every revision arrives exactly once" % name,
              sorted(got) == sorted(revisions) and len(got) == total,
              (len(got), len(set(got)), sorted(set(revisions) - set(got))[:5], sorted(set(got) - set(revisions))[:5]))
        check("slow watcher, %s: in order" % name, got == sorted(got),
              [(a, b) for a, b in zip(got, got[1:]) if b <= a][:5])
        check("slow watcher, %s: no gap (consecutive revisions)" % name,
              bool(got) and got == list(range(got[0], got[0] + len(got))), (got[:3], got[-3:]))
        check("slow watcher, %s: every event a PUT of the 1 KiB value" % name,
              all("type" not in e and len(base64.b64decode(e["kv"].get("value", ""))) == 1024 for e in events))
    # prev_kv, also for the events read again from history: the key's previous version.
    last = {}
    wrong = []
    for e in by_watch.get("1", []):
        key, mod = e["kv"]["key"], int(e["kv"]["mod_revision"])
        prev = e.get("prev_kv")
        if (prev is None) != (key not in last) or (prev is not None and int(prev["mod_revision"]) != last[key]):
            wrong.append((unb64(key), mod, prev and prev.get("mod_revision"), last.get(key)))
        last[key] = mod
    check("slow watcher, watch 1: each prev_kv is the key's previous version", not wrong and len(last) == keys,
          wrong[:5])
    extra = watch.line(0.5)
    check("slow watcher: nothing after the last event", extra is None, extra)
    watch.close()
    after = server.metrics().get("keel_kv_watch_catchups_total", 0)
    check("slow watcher: keel_kv_watch_catchups_total increased while it did not read (%d -> %d -> %d)"
          % (before, stalled, after), stalled > before, (before, stalled, after))


def watchers_freed(server):
    streams = [WatchStream(server, {"create_request": {"key": b64("freed/%d" % i)}}) for i in range(50)]
    ok = all(isinstance(s.line(5), dict) for s in streams)
    check("50 watch streams created", ok)
    value, ok = wait_metric(server, "keel_kv_watchers", lambda v: v >= 50, 5)
    check("keel_kv_watchers counts the 50 watchers", ok, value)
    for s in streams:
        s.close()
    started = time.time()
    value, ok = wait_metric(server, "keel_kv_watchers", lambda v: v == 0, 5)
    took = time.time() - started
    check("keel_kv_watchers back to 0 within ~2 s of the clients closing (%.1f s)" % took, ok and took <= 2.5,
          (value, took))


def lease_expiry(server):
    watch = WatchStream(server, {"create_request": {"key": b64("exp/"), "range_end": b64("exp0"), "prev_kv": True}})
    created(watch, "lease expiry watcher")
    status, answer = server.post("/v3/lease/grant", {"ID": "5001", "TTL": "2"})
    granted_at = time.time()
    check("grant lease 5001 TTL 2", status == 200 and answer.get("TTL") == "2", answer)
    status, answer = server.post("/v3/kv/put", {"key": b64("exp/key"), "value": b64("v"), "lease": "5001"})
    check("put exp/key with lease 5001", status == 200, answer)
    gone_at = None
    while time.time() - granted_at < 5:
        status, answer = server.post("/v3/kv/range", {"key": b64("exp/key")})
        if "kvs" not in answer:
            gone_at = time.time()
            break
        time.sleep(0.05)
    elapsed = (gone_at or time.time()) - granted_at
    check("a key with a 2 s lease disappears within ~3 s (%.2f s)" % elapsed,
          gone_at is not None and 1.9 <= elapsed <= 3.0, elapsed)
    events = watch.events(lambda got: any(e.get("type") == "DELETE" for e in got), timeout=3)
    deletes = [e for e in events if e.get("type") == "DELETE"]
    check("the watcher sees the PUT then the DELETE of exp/key (with prev_kv)",
          len(events) == 2 and "type" not in events[0] and len(deletes) == 1
          and unb64(deletes[0]["kv"]["key"]) == "exp/key" and deletes[0].get("prev_kv", {}).get("lease") == "5001",
          events)
    status, answer = server.post("/v3/lease/timetolive", {"ID": "5001"})
    check("the expired lease is gone: timetolive TTL -1", answer.get("TTL") == "-1", answer)
    status, answer = server.post("/v3/lease/leases", {})
    check("the expired lease is not listed", "5001" not in [l["ID"] for l in answer.get("leases", [])], answer)

    # Keepalive keeps it alive past its TTL.
    server.post("/v3/lease/grant", {"ID": "5002", "TTL": "2"})
    server.post("/v3/kv/put", {"key": b64("exp/kept"), "value": b64("v"), "lease": "5002"})
    started = time.time()
    renewals = []
    while time.time() - started < 4.5:
        status, line = server.post("/v3/lease/keepalive", {"ID": "5002"})  # one {"result":...} line
        renewals.append(line.get("result", {}).get("TTL") if isinstance(line, dict) else line)
        time.sleep(0.5)
    check("keepalive answers TTL 2 each time", all(r == "2" for r in renewals), renewals)
    status, answer = server.post("/v3/kv/range", {"key": b64("exp/kept")})
    check("keepalive keeps the key past twice its TTL (4.5 s)", "kvs" in answer, answer)
    stopped = time.time()
    while time.time() - stopped < 5 and "kvs" in server.post("/v3/kv/range", {"key": b64("exp/kept")})[1]:
        time.sleep(0.05)
    elapsed = time.time() - stopped
    check("without keepalive it expires ~2 s later (%.2f s)" % elapsed, 1.4 <= elapsed <= 3.0, elapsed)
    events = watch.events(lambda got: any(e.get("type") == "DELETE" for e in got), timeout=3)
    check("the watcher sees exp/kept's PUT and DELETE",
          [(e.get("type", "PUT"), unb64(e["kv"]["key"])) for e in events] == [("PUT", "exp/kept"), ("DELETE", "exp/kept")],
          events)
    watch.close()


def lease_ids(server):
    status, answer = server.post("/v3/lease/leases", {})
    return sorted(l["ID"] for l in answer.get("leases", []))


def wait_gone(server, key, seconds):
    started = time.time()
    while time.time() - started < seconds:
        if "kvs" not in server.post("/v3/kv/range", {"key": b64(key)})[1]:
            return time.time() - started
        time.sleep(0.05)
    return None


def restarts(root):
    server = Keeld(root).start()
    status, answer = server.post("/v3/kv/put", {"key": b64("r/history"), "value": b64("h")})
    history_from = rev(answer)
    server.post("/v3/lease/grant", {"ID": "7001", "TTL": "600"})
    server.post("/v3/kv/put", {"key": b64("r/long"), "value": b64("l"), "lease": "7001"})
    server.post("/v3/lease/grant", {"ID": "7002", "TTL": "4"})
    server.post("/v3/kv/put", {"key": b64("r/short"), "value": b64("s"), "lease": "7002"})
    server.post("/v3/lease/grant", {"ID": "7003", "TTL": "600"})
    status, answer = server.post("/v3/lease/revoke", {"ID": "7003"})
    check("before restart: lease 7003 revoked", status == 200, answer)
    time.sleep(2.2)  # 7002 has < 2 s left
    status, answer = server.post("/v3/lease/timetolive", {"ID": "7002"})
    check("before restart: lease 7002 has at most 2 s left", 0 < int(answer.get("TTL", "0")) <= 2, answer)
    server.stop()

    server = Keeld(root).start()
    restarted = time.time()
    check("after SIGTERM restart: leases 7001 and 7002 listed, not the revoked 7003",
          lease_ids(server) == ["7001", "7002"], lease_ids(server))
    status, answer = server.post("/v3/lease/timetolive", {"ID": "7002", "keys": True})
    check("after SIGTERM restart: 7002's TTL started again from its granted 4 s",
          int(answer.get("TTL", "0")) >= 3 and answer.get("grantedTTL") == "4"
          and [unb64(k) for k in answer.get("keys", [])] == ["r/short"], answer)
    status, answer = server.post("/v3/kv/range", {"key": b64("r/"), "range_end": b64("r0")})
    check("after SIGTERM restart: the leased keys are still there",
          sorted(unb64(kv["key"]) for kv in answer.get("kvs", [])) == ["r/history", "r/long", "r/short"], answer)
    watch = WatchStream(server, {"create_request": {"key": b64("r/"), "range_end": b64("r0"),
                                                    "start_revision": str(history_from)}})
    created(watch, "after SIGTERM restart: watch from a revision before the restart")
    events = watch.events(lambda got: len(got) >= 3, timeout=5)
    check("after SIGTERM restart: the watch gets the history (3 puts from the start revision)",
          [(e.get("type", "PUT"), unb64(e["kv"]["key"])) for e in events] ==
          [("PUT", "r/history"), ("PUT", "r/long"), ("PUT", "r/short")]
          and int(events[0]["kv"]["mod_revision"]) == history_from, events)
    took = wait_gone(server, "r/short", 7)
    since_restart = time.time() - restarted
    check("after SIGTERM restart: r/short is deleted when 7002 expires, ~4 s after the restart (%.1f s)"
          % since_restart, took is not None and 3.0 <= since_restart <= 5.5, (took, since_restart))
    events = watch.events(lambda got: len(got) >= 1, timeout=3)
    check("after SIGTERM restart: the watch sees r/short's DELETE",
          [(e.get("type", "PUT"), unb64(e["kv"]["key"])) for e in events] == [("DELETE", "r/short")], events)
    watch.close()
    check("after the expiry: only 7001 listed", lease_ids(server) == ["7001"], lease_ids(server))

    # kill -9 right after an acknowledged grant and put.
    server.post("/v3/lease/grant", {"ID": "7004", "TTL": "4"})
    status, answer = server.post("/v3/kv/put", {"key": b64("r/k9"), "value": b64("k"), "lease": "7004"})
    k9_revision = rev(answer)
    server.kill()

    server = Keeld(root).start()
    restarted = time.time()
    check("after kill -9: leases 7001 and 7004 listed", lease_ids(server) == ["7001", "7004"], lease_ids(server))
    status, answer = server.post("/v3/lease/timetolive", {"ID": "7004", "keys": True})
    check("after kill -9: 7004 with its key r/k9, TTL from the granted 4 s",
          int(answer.get("TTL", "0")) >= 3 and [unb64(k) for k in answer.get("keys", [])] == ["r/k9"], answer)
    status, answer = server.post("/v3/kv/range", {"key": b64("r/"), "range_end": b64("r0")})
    check("after kill -9: r/history, r/k9, r/long there; r/short stays deleted",
          sorted(unb64(kv["key"]) for kv in answer.get("kvs", [])) == ["r/history", "r/k9", "r/long"], answer)
    watch = WatchStream(server, {"create_request": {"key": b64("r/"), "range_end": b64("r0"),
                                                    "start_revision": str(history_from)}})
    created(watch, "after kill -9: watch from a revision before both restarts")
    events = watch.events(lambda got: len(got) >= 5, timeout=5)
    check("after kill -9: the history, with the expiry DELETE from before",
          [(e.get("type", "PUT"), unb64(e["kv"]["key"])) for e in events] ==
          [("PUT", "r/history"), ("PUT", "r/long"), ("PUT", "r/short"), ("DELETE", "r/short"), ("PUT", "r/k9")]
          and int(events[-1]["kv"]["mod_revision"]) == k9_revision, events)
    took = wait_gone(server, "r/k9", 7)
    since_restart = time.time() - restarted
    check("after kill -9: r/k9 is deleted when 7004 expires after the restart (%.1f s)" % since_restart,
          took is not None and 3.0 <= since_restart <= 5.5, (took, since_restart))
    events = watch.events(lambda got: len(got) >= 1, timeout=3)
    check("after kill -9: the watch sees r/k9's DELETE",
          [(e.get("type", "PUT"), unb64(e["kv"]["key"])) for e in events] == [("DELETE", "r/k9")], events)
    watch.close()
    status, answer = server.post("/v3/kv/range", {"key": b64("r/long")})
    check("after kill -9: r/long (lease 7001, 600 s) still there", "kvs" in answer, answer)
    server.stop()


def both_shards(server):
    """Watch streams until each shard serves at least two; every one gets the events."""
    metrics_conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # stays on one shard

    def open_per_shard():
        m = server.metrics(metrics_conn)
        return [int(m.get('keel_reactor_connections_open{shard="%d"}' % s, 0)) for s in (0, 1)]

    baseline = open_per_shard()  # the metrics connection itself
    streams, shard_of = [], []
    previous = baseline
    for i in range(40):
        s = WatchStream(server, {"create_request": {"key": b64("sh/"), "range_end": b64("sh0"), "prev_kv": True}})
        if not isinstance(s.line(5), dict):
            check("shard watch %d created" % i, False)
            break
        now = open_per_shard()
        grew = [k for k in (0, 1) if now[k] > previous[k]]
        previous = now
        streams.append(s)
        shard_of.append(grew[0] if len(grew) == 1 else None)
        if shard_of.count(0) >= 2 and shard_of.count(1) >= 2:
            break
    check("watch streams on shard 0 and on shard 1 (%d on 0, %d on 1, of %d)"
          % (shard_of.count(0), shard_of.count(1), len(streams)),
          shard_of.count(0) >= 2 and shard_of.count(1) >= 2, shard_of)
    value, ok = wait_metric(server, "keel_kv_watchers", lambda v: v == len(streams), 3)
    check("keel_kv_watchers == %d" % len(streams), ok, value)
    revisions = []
    for op in (("put", "sh/a", "1"), ("put", "sh/a", "2"), ("delete", "sh/a", None)):
        if op[0] == "put":
            status, answer = server.post("/v3/kv/put", {"key": b64(op[1]), "value": b64(op[2])})
        else:
            status, answer = server.post("/v3/kv/deleterange", {"key": b64(op[1])})
        revisions.append(rev(answer))
    for shard in (0, 1):
        results = []
        for s, where in zip(streams, shard_of):
            if where != shard:
                continue
            events = s.events(lambda got: len(got) >= 3, timeout=5)
            results.append([(e.get("type", "PUT"), int(e["kv"]["mod_revision"]),
                             unb64(e.get("prev_kv", {}).get("value", "")) if "prev_kv" in e else None) for e in events])
        expected = [("PUT", revisions[0], None), ("PUT", revisions[1], "1"), ("DELETE", revisions[2], "2")]
        check("every watch on shard %d gets put, put, delete with prev_kv" % shard,
              results and all(r == expected for r in results), (expected, results))
    for s in streams:
        s.close()
    metrics_conn.close()
    value, ok = wait_metric(server, "keel_kv_watchers", lambda v: v == 0, 5)
    check("shard watchers freed", ok, value)


def main():
    root = tempfile.mkdtemp(prefix="watch_lease_e2e_")
    try:
        os.makedirs(os.path.join(root, "one"))
        server = Keeld(os.path.join(root, "one")).start()
        for name, step in (("slow watcher", slow_watcher), ("watchers freed", watchers_freed),
                           ("both shards", both_shards), ("lease expiry", lease_expiry)):
            started = time.time()
            step(server)
            print("     (%s: %.1f s)" % (name, time.time() - started))
        server.stop()
        os.makedirs(os.path.join(root, "two"))
        started = time.time()
        restarts(os.path.join(root, "two"))
        print("     (restarts: %.1f s)" % (time.time() - started))
    except Exception as error:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        check("no exception", False, repr(error))
    finally:
        for proc in started_processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if check.failed:
            keeltest.print_logs(root)
        shutil.rmtree(root, ignore_errors=True)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
