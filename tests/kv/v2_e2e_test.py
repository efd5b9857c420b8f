#!/usr/bin/env python3
"""etcd's v2 keys API on keeld, side by side with a real etcd 3.4 (--enable-v2).

Every step sends the same request to both servers and compares what comes back: the
status code, errorCode / message / cause, action, the node's shape (which keys are
present, dir flags, values, ttl presence, the nodes lists) and the headers. Indexes are
compared relative to each server's X-Etcd-Index when the comparison started (etcd's
first user write is index 4, keel's revision 2; both then take one index per write).
Then the real `ETCDCTL_API=2 etcdctl` and keelctl's v2 verbs run against both, and their
output is compared the same way. Last, what only keel can show: a v2 key read through
the v3 gateway and back, a compacted waitIndex (401), concurrent compare-and-swaps.

Usage: v2_e2e_test.py <keeld> <etcd> [etcdctl] [keelctl]
"""
import base64
import http.client
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
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
ETCD = sys.argv[2] if len(sys.argv) > 2 else (shutil.which("etcd") or "/usr/bin/etcd")
ETCDCTL = sys.argv[3] if len(sys.argv) > 3 else (shutil.which("etcdctl") or "/usr/bin/etcdctl")
KEELCTL = sys.argv[4] if len(sys.argv) > 4 else os.path.join(os.path.dirname(KEELD), "keelctl")

check = keeltest.Checks()


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Reply:
    def __init__(self, status, headers, text):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.text = text
        try:
            self.json = json.loads(text) if text.strip() else None
        except ValueError:
            self.json = None

    def index(self):
        return int(self.headers.get("x-etcd-index", "0"))

    def __repr__(self):
        return "%d %s" % (self.status, self.text.strip())


class Server:
    """One HTTP server (keeld or etcd) on 127.0.0.1:port."""

    def __init__(self, name, port, proc, log):
        self.name = name
        self.port = port
        self.proc = proc
        self.log = log
        self.url = "http://127.0.0.1:%d" % port
        self.base = 0  # X-Etcd-Index when the current comparison section started

    def request(self, method, path, query=None, form=None, body=None, headers=None, timeout=10):
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        hdrs = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            return Reply(response.status, response.getheaders(), text)
        finally:
            conn.close()

    def wait_ready(self, path):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d" % (self.name, self.proc.returncode))
            try:
                if self.request("GET", path, timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s did not become ready" % self.name)

    def rebase(self):
        self.base = self.request("GET", "/v2/keys/").index()

    def stop(self):
        keeltest.stop(self.proc)
        if self.log:  # etcd's; keeltest.start_keeld closed keeld's
            self.log.close()


def start_keeld(tmp):
    started = keeltest.start_keeld(KEELD, tmp, ["--modules", "kv", "--kv.dir", os.path.join(tmp, "kv"),
                                                "--shards", "2", "--data-dir", os.path.join(tmp, "core")],
                                   timeout=20)
    server = Server("keel", started.port, started.proc, None)
    server.tmp = tmp
    return server


def start_etcd(tmp):
    port, peer = keeltest.free_port(), keeltest.free_port()
    log = open(os.path.join(tmp, "etcd.log"), "w")
    client_url, peer_url = "http://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % peer
    proc = subprocess.Popen(
        [ETCD, "--enable-v2", "--name", "default", "--data-dir", os.path.join(tmp, "etcd"),
         "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", "default=" + peer_url],
        stdout=log, stderr=subprocess.STDOUT)
    server = Server("etcd", port, proc, log)
    server.wait_ready("/v2/keys/")
    return server


# ---- normalising answers so that two servers can be compared ---------------------------

INDEX_FIELDS = ("modifiedIndex", "createdIndex")


def norm_node(node, base, ignore, where, sort_nodes=True):
    out = {}
    for key, value in node.items():
        path = where + "." + key
        if path in ignore or key in ignore:
            out[key] = "<ignored>"
        elif key in INDEX_FIELDS:
            out[key] = value - base
        elif key == "expiration":
            out[key] = "<time>"
        elif key == "ttl":
            out[key] = "<ttl>"
        elif key == "key":  # in-order names are indexes too
            out[key] = re.sub(r"/(\d{20})(?=/|$)", lambda m: "/#%d" % (int(m.group(1)) - base), value)
        elif key == "nodes":
            children = [norm_node(n, base, ignore, path, sort_nodes) for n in value]
            out[key] = sorted(children, key=lambda n: n.get("key", "")) if sort_nodes else children
        else:
            out[key] = value
    return out


def norm_cause(cause, base):
    # "[a != b] [12 != 7]": both numbers of an index comparison are indexes.
    return re.sub(r"\[(\d+) != (\d+)\]", lambda m: "[%d != %d]" % (int(m.group(1)) - base, int(m.group(2)) - base),
                  cause)


def norm_body(reply, base, ignore=()):
    body = reply.json
    if not isinstance(body, dict):
        return reply.text
    out = {}
    for key, value in body.items():
        if key in ("node", "prevNode") and isinstance(value, dict):
            out[key] = norm_node(value, base, ignore, key)
        elif key == "index" and "errorCode" in body:
            out[key] = value - base if value else 0
        elif key == "cause":
            out[key] = norm_cause(value, base)
        else:
            out[key] = value
    return out


def norm_headers(reply, base):
    h = reply.headers
    out = {"content-type": h.get("content-type", "").split(";")[0]}
    for name in ("x-etcd-cluster-id", "x-raft-index", "x-raft-term"):
        out[name] = name in h
    if "x-etcd-index" in h:
        out["x-etcd-index"] = int(h["x-etcd-index"]) - base if int(h["x-etcd-index"]) else 0
    return out


def same(name, replies, ignore=(), headers=True):
    """Compares the two servers' replies; returns True when equal."""
    e, k = replies["etcd"], replies["keel"]
    got = {s: (r.status, norm_body(r, SERVERS[s].base, ignore)) for s, r in replies.items()}
    ok = got["etcd"] == got["keel"]
    detail = "etcd %s\n     keel %s" % (got["etcd"], got["keel"])
    if ok and headers:
        he, hk = norm_headers(e, SERVERS["etcd"].base), norm_headers(k, SERVERS["keel"].base)
        ok = he == hk
        detail = "headers etcd %s\n     keel %s" % (he, hk)
    check(name, ok, detail)
    return ok


SERVERS = {}


def both(name, method, path, query=None, form=None, ignore=(), headers=True, compare=True):
    """Sends the request to both servers (query / form may be functions of the server)."""
    replies = {}
    for s, server in SERVERS.items():
        q = query(server) if callable(query) else query
        f = form(server) if callable(form) else form
        replies[s] = server.request(method, path, q, f)
    if compare:
        same(name, replies, ignore, headers)
    return replies


def both_raw(name, method, path, body=None, headers=None, compare=True):
    """Sends the same raw request (body and headers as given) to both servers."""
    replies = {s: server.request(method, path, body=body, headers=headers) for s, server in SERVERS.items()}
    if compare:
        same(name, replies)
    return replies


def both_parallel(requests, delay_then=None, settle=0.3):
    """Starts requests (name, server, method, path, query) in threads, then after `settle`
    seconds runs delay_then(); returns {name: Reply}."""
    results = {}

    def run(name, server, method, path, query, timeout):
        try:
            results[name] = server.request(method, path, query, timeout=timeout)
        except Exception as error:  # noqa: BLE001 — reported by the comparison
            results[name] = Reply(0, [], str(error))

    threads = [threading.Thread(target=run, args=r) for r in requests]
    for t in threads:
        t.start()
    time.sleep(settle)
    if delay_then:
        delay_then()
    for t in threads:
        t.join()
    return results


# ---- the HTTP sections ----------------------------------------------------------------------


def section_basics():
    for s in SERVERS.values():
        s.rebase()
    # The README example, with curl itself.
    outputs = {}
    for s, server in SERVERS.items():
        done = subprocess.run(["curl", "-sL", "-w", "\n%{http_code}", server.url + "/v2/keys/message", "-XPUT",
                               "-d", "value=Hello world"], capture_output=True, text=True, timeout=10)
        text, _, code = done.stdout.rpartition("\n")
        outputs[s] = Reply(int(code), [], text)
    same("curl -L PUT /v2/keys/message -d value=\"Hello world\"", outputs, headers=False)
    check("curl answer is etcd's example shape",
          outputs["keel"].json == {"action": "set", "node": {"key": "/message", "value": "Hello world",
                                                             "modifiedIndex": SERVERS["keel"].base + 1,
                                                             "createdIndex": SERVERS["keel"].base + 1}},
          outputs["keel"])
    both("GET /message", "GET", "/v2/keys/message")
    both("HEAD /message", "HEAD", "/v2/keys/message")
    both("HEAD missing key is 404", "HEAD", "/v2/keys/nokey")
    both("GET missing key: 100 Key not found", "GET", "/v2/keys/nokey")
    both("prevExist=false on an existing key: 105", "PUT", "/v2/keys/message", form={"value": "v2", "prevExist": "false"})
    both("CAS both wrong: 101 '[pv != v] [pi != mi]'", "PUT", "/v2/keys/message",
         query=lambda s: {"prevValue": "bad", "prevIndex": s.base + 100}, form={"value": "v3"})
    both("CAS wrong value: 101 '[bad != Hello world]'", "PUT", "/v2/keys/message", query={"prevValue": "bad"},
         form={"value": "v3"})
    both("CAS wrong index: 101 '[pi != mi]'", "PUT", "/v2/keys/message", query=lambda s: {"prevIndex": s.base + 50},
         form={"value": "v3"})
    both("CAS on prevValue succeeds: compareAndSwap", "PUT", "/v2/keys/message", query={"prevValue": "Hello world"},
         form={"value": "v3"})
    both("CAS on prevIndex succeeds", "PUT", "/v2/keys/message", query=lambda s: {"prevIndex": s.base + 2},
         form={"value": "v4"})
    both("prevExist=true: update keeps createdIndex", "PUT", "/v2/keys/message", query={"prevExist": "true"},
         form={"value": "v5"})
    # etcd's set replaces the node (a new createdIndex); keel keeps the MVCC create_revision.
    both("plain set of an existing key: set with prevNode, 200", "PUT", "/v2/keys/message", form={"value": "v6"},
         ignore=("node.createdIndex",))
    both("prevExist=true on a missing key: 100", "PUT", "/v2/keys/missing", query={"prevExist": "true"},
         form={"value": "x"})
    both("update (prevExist=true) + prevValue is a CAS", "PUT", "/v2/keys/message",
         query={"prevExist": "true", "prevValue": "nope"}, form={"value": "x"})


def section_dirs():
    both("set /dir1/a/b creates the parents", "PUT", "/v2/keys/dir1/a/b", form={"value": "v"})
    both("GET /dir1 lists one level", "GET", "/v2/keys/dir1")
    both("GET /dir1?recursive=true&sorted=true nests", "GET", "/v2/keys/dir1", query={"recursive": "true", "sorted": "true"})
    both("set on a directory: 102", "PUT", "/v2/keys/dir1", form={"value": "v"})
    both("delete a directory without dir: 102", "DELETE", "/v2/keys/dir1")
    both("delete a non-empty directory: 108", "DELETE", "/v2/keys/dir1", query={"dir": "true"})
    both("a file as a parent: 104 with the file as cause", "PUT", "/v2/keys/dir1/a/b/c", form={"value": "v"})
    both("a file as a parent (read): 104", "GET", "/v2/keys/message/x")
    both("PUT / : 107 Root is read only", "PUT", "/v2/keys/", form={"value": "v"})
    both("DELETE / : 107", "DELETE", "/v2/keys")
    both("missing parent: 100 names the first missing component", "GET", "/v2/keys/nonexist/deeper/x")
    both("mkdir (PUT dir=true): set, dir, 201", "PUT", "/v2/keys/d", query={"dir": "true"})
    both("mkdir again: 102", "PUT", "/v2/keys/d", query={"dir": "true"})
    both("mkdir with prevExist=false on a dir: 105", "PUT", "/v2/keys/d", form={"dir": "true", "prevExist": "false"})
    both("GET an empty directory", "GET", "/v2/keys/d")
    both("updatedir (dir=true, prevExist=true, no value)", "PUT", "/v2/keys/d", query={"dir": "true", "prevExist": "true"})
    both("update a dir with a value: 102", "PUT", "/v2/keys/d", query={"prevExist": "true"}, form={"value": "z"})
    both("CAS on a dir: 102", "PUT", "/v2/keys/d", query={"prevValue": "z"}, form={"value": "z"})
    both("rmdir (DELETE dir=true)", "DELETE", "/v2/keys/d", query={"dir": "true"})
    both("set dir=true over a file replaces it", "PUT", "/v2/keys/wasfile", form={"value": "f"})
    both("  ... (the dir)", "PUT", "/v2/keys/wasfile", query={"dir": "true"})
    both("dir stays after its last child goes", "PUT", "/v2/keys/keep/child", form={"value": "c"})
    both("  ... delete the child", "DELETE", "/v2/keys/keep/child")
    both("  ... GET the empty dir", "GET", "/v2/keys/keep")
    both("rm --dir on a file deletes it", "DELETE", "/v2/keys/wasfile", query={"dir": "true", "recursive": "true"})
    both("percent-escapes in the path are decoded", "PUT", "/v2/keys/x%20y/z%2Fw", form={"value": "1"})
    both("  ... and listed", "GET", "/v2/keys/x%20y", query={"recursive": "true"})
    both("'//' and '.' in the path are cleaned", "GET", "/v2/keys//x%20y/./z/../z//w")
    for method in ("GET", "PUT", "PATCH", "PROPFIND"):  # Go's mux redirects every method, CORS headers on
        replies = both("301 for " + method, method, "/v2/keys/a//b?x=1", compare=False)
        shapes = {s: (r.status, r.headers.get("location"), r.text, "access-control-allow-origin" in r.headers,
                      "x-etcd-cluster-id" in r.headers) for s, r in replies.items()}
        check("%s of an unclean path: etcd's 301, Location, body, CORS headers, on both" % method,
              shapes["etcd"] == shapes["keel"] and shapes["keel"][0] == 301, shapes)
    both("HTML characters are escaped as Go does", "PUT", "/v2/keys/esc", form={"value": "<a&b>\"\\\t\u2028é"})
    both("form decoding: '+' is a space, escapes, bytes that are not UTF-8", "PUT", "/v2/keys/esc2",
         form={"value": b"a b+c%\xff\xfe<x>&" + "\u00e9\u2029 end".encode()})
    both("'+' in a path stays a '+'", "PUT", "/v2/keys/p+q%21", form={"value": "plus"})


def section_in_order_and_hidden():
    both("POST in-order key: create, 201, 20-digit name", "POST", "/v2/keys/queue", form={"value": "one"})
    both("POST again", "POST", "/v2/keys/queue", form={"value": "two"})
    both("POST without value: empty value", "POST", "/v2/keys/queue")
    both("POST dir=true: in-order directory", "POST", "/v2/keys/queue", query={"dir": "true"})
    both("GET /queue?sorted=true in order", "GET", "/v2/keys/queue", query={"sorted": "true"})
    both("POST under a file: 104", "POST", "/v2/keys/message", form={"value": "x"})
    both("hidden key set", "PUT", "/v2/keys/hid/_secret", form={"value": "s"})
    both("visible sibling", "PUT", "/v2/keys/hid/visible", form={"value": "v"})
    both("hidden key not listed", "GET", "/v2/keys/hid", query={"sorted": "true"})
    both("hidden key read directly", "GET", "/v2/keys/hid/_secret")
    both("hidden dir not listed recursively", "PUT", "/v2/keys/hid/_d/x", form={"value": "x"})
    both("  ... listing", "GET", "/v2/keys/hid", query={"recursive": "true"})
    both("root listing, recursive, sorted", "GET", "/v2/keys/", query={"recursive": "true", "sorted": "true"},
         ignore=("node.nodes.createdIndex",))  # /message and /prec were set over (see basics)


def section_delete():
    both("recursive delete of a directory", "DELETE", "/v2/keys/dir1", query={"recursive": "true"})
    both("  ... is gone", "GET", "/v2/keys/dir1")
    both("CAD setup", "PUT", "/v2/keys/cad", form={"value": "one"})
    both("CAD wrong value: 101", "DELETE", "/v2/keys/cad", query={"prevValue": "two"})
    both("CAD wrong index: 101", "DELETE", "/v2/keys/cad", query=lambda s: {"prevIndex": s.base + 999})
    both("a DELETE body is not read (Go parses forms of PUT/POST only): a plain delete", "DELETE",
         "/v2/keys/cad?dir=false", form={"prevValue": "two"})
    both("CAD right value: compareAndDelete", "PUT", "/v2/keys/cad", form={"value": "one"},
         ignore=("node.createdIndex",))
    both("  ... delete", "DELETE", "/v2/keys/cad", query={"prevValue": "one"},
         ignore=("node.createdIndex", "prevNode.createdIndex"))
    both("CAD on a dir: 102", "DELETE", "/v2/keys/hid", query={"prevValue": "1"})
    both("CAD on /: 102 without a cause", "DELETE", "/v2/keys/", query={"prevValue": "1"})
    both("delete of /: 107", "DELETE", "/v2/keys/", query={"dir": "true"})
    both("delete missing: 100", "DELETE", "/v2/keys/cad")


def section_parameters():
    both("noValueOnSuccess: {\"action\":\"set\"}", "PUT", "/v2/keys/nv", query={"noValueOnSuccess": "true"},
         form={"value": "1"})
    both("ttl=abc: 202", "PUT", "/v2/keys/p", form={"value": "1", "ttl": "abc"})
    both("ttl=-5: 202", "PUT", "/v2/keys/p", form={"value": "1", "ttl": "-5"})
    both("prevIndex=abc: 203", "PUT", "/v2/keys/p", query={"prevIndex": "abc"}, form={"value": "1"})
    both("waitIndex=abc: 203", "GET", "/v2/keys/p", query={"wait": "true", "waitIndex": "abc"})
    both("wait=maybe: 209", "GET", "/v2/keys/p", query={"wait": "maybe"})
    both("recursive=x: 209", "GET", "/v2/keys/p", query={"recursive": "x"})
    both("wait on PUT: 209", "PUT", "/v2/keys/p", query={"wait": "true"}, form={"value": "1"})
    both("prevValue empty: 201", "PUT", "/v2/keys/p", query={"prevValue": ""}, form={"value": "1"})
    both("prevExist=yes: 209", "PUT", "/v2/keys/p", query={"prevExist": "yes"}, form={"value": "1"})
    both("refresh with a value: 211", "PUT", "/v2/keys/p", form={"value": "1", "ttl": "5", "refresh": "true"})
    both("refresh without ttl: 212", "PUT", "/v2/keys/p", form={"refresh": "true"})
    both("refresh of a missing key: 100", "PUT", "/v2/keys/p", form={"refresh": "true", "ttl": "5"})
    both("noValueOnSuccess=x: 209", "PUT", "/v2/keys/p", query={"noValueOnSuccess": "x"}, form={"value": "1"})
    both("Go booleans: T / 0", "PUT", "/v2/keys/p", query={"dir": "0"}, form={"value": "1", "prevExist": "F"})
    both("the body's value wins over the query's", "PUT", "/v2/keys/prec?value=query", form={"value": "body"})
    both("a value in the query alone", "PUT", "/v2/keys/prec?value=query", ignore=("node.createdIndex",))
    replies = both("OPTIONS", "OPTIONS", "/v2/keys/p", compare=False)
    check("OPTIONS (CORS preflight): 200, empty, on both",
          all(r.status == 200 and r.text == "" and "access-control-allow-origin" in r.headers for r in replies.values()),
          replies)
    for method in ("PATCH", "TRACE", "PROPFIND"):
        replies = both(method + ": 405", method, "/v2/keys/p", compare=False)
        shapes = {s: (r.status, r.text, r.headers.get("content-type"), r.headers.get("allow"),
                      "x-etcd-cluster-id" in r.headers) for s, r in replies.items()}
        check(method + ": etcd's plain-text 405, its Allow, no cluster id, on both",
              shapes["etcd"] == shapes["keel"] and shapes["keel"][0] == 405, shapes)
    # Go's server refuses a bad %-escape in the path before etcd's handler runs.
    for method in ("GET", "PUT", "OPTIONS", "PATCH"):
        replies = both("bad escape in the path", method, "/v2/keys/a%zz", compare=False)
        shapes = {s: (r.status, r.text, r.headers.get("content-type"), r.headers.get("connection"))
                  for s, r in replies.items()}
        check("a bad %%-escape in the path (%s): Go's plain-text 400, connection closed, on both" % method,
              shapes["etcd"] == shapes["keel"] and shapes["keel"][0] == 400, shapes)
    # Go's ParseForm reads the Content-Type with mime.ParseMediaType; its errors are 210.
    content_types = ("application/x-www-form-urlencoded; charset", "application/x-www-form-urlencoded, text/plain",
                     "application/x-www-form-urlencoded; a=1; a=1", "text/plain; x", "a/b/c",
                     "Application/X-WWW-Form-Urlencoded ; charset=utf-8", "application/x-www-form-urlencoded;")
    for number, content_type in enumerate(content_types):
        both_raw("Content-Type %r" % content_type, "PUT", "/v2/keys/ct%d" % number, body="value=v1",
                 headers={"Content-Type": content_type})
    # A refresh that creates (prevExist=false, or POST) is etcd's plain create.
    both("refresh with prevExist=false on a missing key: create", "PUT", "/v2/keys/rc",
         query={"prevExist": "false"}, form={"refresh": "true", "ttl": "300"})
    both("refresh POST: an in-order create", "POST", "/v2/keys/rq", form={"refresh": "true", "ttl": "300"})
    both("refresh dir=true prevExist=false: a directory", "PUT", "/v2/keys/rd",
         query={"refresh": "true", "prevExist": "false"}, form={"ttl": "300", "dir": "true"})
    # etcd takes any uint64 TTL; past the year 2262 the key shows as permanent.
    both("ttl above 9e9: accepted, shown permanent", "PUT", "/v2/keys/bigttl", form={"value": "v", "ttl": "9000000001"})
    both("ttl above 9e9 does not hide the refresh error (211)", "PUT", "/v2/keys/bigttl",
         form={"value": "v", "ttl": "9000000001", "refresh": "true"})


EXPIRY_ORDER_KEYS = ("k4", "k1", "k5", "k2", "k3")  # not in key order: written in this order
EXPIRY_ORDER_FROM = {}


def section_ttl():
    # Keys for the expiry order check in section_live_watches (they expire meanwhile).
    for s, server in SERVERS.items():
        for key in EXPIRY_ORDER_KEYS:
            written = server.request("PUT", "/v2/keys/expo/" + key, form={"value": "1", "ttl": "2"})
        EXPIRY_ORDER_FROM[s] = written.index()  # the expiries come after the last write
    # v2 TTLs have no minimum (etcd's v2 store): ttl=1 lives a second and shows ttl 1;
    # ttl=0 is due at once and shows an expiration but no ttl. keel gave both the v3
    # lease minimum, 2 s, until 2026-12-01.
    written_at = time.monotonic()
    replies = both("ttl=1: expiration and ttl", "PUT", "/v2/keys/short1", form={"value": "x", "ttl": "1"})
    check("  ... ttl is 1 on both", all(r.json and r.json["node"].get("ttl") == 1 for r in replies.values()),
          {s: r.text for s, r in replies.items()})
    both("ttl=0: an expiration and no ttl", "PUT", "/v2/keys/short0", form={"value": "x", "ttl": "0"})
    gone = {}  # (server, key) -> seconds after the writes when a GET first found it gone
    while len(gone) < 4 and time.monotonic() - written_at < 5:
        for s, server in SERVERS.items():
            for key in ("short0", "short1"):
                if (s, key) not in gone and server.request("GET", "/v2/keys/" + key).status == 404:
                    gone[(s, key)] = time.monotonic() - written_at
        time.sleep(0.05)
    # keel checks expiry every 250 ms, etcd every 500 ms.
    for s in SERVERS:
        t0, t1 = gone.get((s, "short0")), gone.get((s, "short1"))
        check("%s: ttl=0 gone within 1.2 s (%s), ttl=1 after 0.6-2.5 s (%s)" % (s, t0, t1),
              t0 is not None and t0 <= 1.2 and t1 is not None and 0.6 <= t1 <= 2.5, gone)
    both("set with ttl: expiration and ttl", "PUT", "/v2/keys/ttl1", form={"value": "x", "ttl": "100"})
    replies = both("GET a key with a TTL", "GET", "/v2/keys/ttl1")
    ttls = {s: r.json["node"].get("ttl") for s, r in replies.items()}
    check("ttl counts down from 100 (99 or 100) on both", all(t in (99, 100) for t in ttls.values()), ttls)
    check("expiration is RFC3339 with nanoseconds in UTC",
          re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", replies["keel"].json["node"]["expiration"] or ""),
          replies["keel"].json)
    both("refresh (set): same value, new ttl", "PUT", "/v2/keys/ttl1", form={"ttl": "50", "refresh": "true"},
         ignore=("node.createdIndex",))
    both("refresh with prevExist=true: update", "PUT", "/v2/keys/ttl1", query={"prevExist": "true"},
         form={"ttl": "60", "refresh": "true"}, ignore=("node.createdIndex", "prevNode.createdIndex"))
    both("update with ttl= removes the TTL", "PUT", "/v2/keys/ttl1", query={"prevExist": "true"},
         form={"value": "z", "ttl": ""}, ignore=("node.createdIndex", "prevNode.createdIndex"))
    # An expiry past 2262 does not fit Unix nanoseconds: etcd shows such a key as permanent
    # (keel printed a date in 1695).
    both("ttl=8000000000: shown without expiration or ttl", "PUT", "/v2/keys/far", form={"value": "x", "ttl": "8000000000"})
    both("... and so read back", "GET", "/v2/keys/far")
    both("  ... no ttl any more", "GET", "/v2/keys/ttl1", ignore=("node.createdIndex",))
    both("dir with ttl", "PUT", "/v2/keys/tdir", query={"dir": "true", "ttl": "100"})
    both("a key in it shows no TTL of its own", "PUT", "/v2/keys/tdir/x", form={"value": "1"})
    both("  ... listing", "GET", "/v2/keys/tdir", query={"recursive": "true"})
    both("updatedir with a new ttl", "PUT", "/v2/keys/tdir", query={"dir": "true", "prevExist": "true"},
         form={"ttl": "200"})
    # keel moves the directory's keys to its new lease: a new mod_revision (README).
    both("  ... key still without TTL", "GET", "/v2/keys/tdir/x", ignore=("node.modifiedIndex",))


def section_history_watches():
    for s in SERVERS.values():
        s.rebase()
    both("setup: w/a", "PUT", "/v2/keys/w/a", form={"value": "1"})
    both("setup: w/a again", "PUT", "/v2/keys/w/a", form={"value": "2"}, ignore=("node.createdIndex",))
    both("setup: w/b", "PUT", "/v2/keys/w/b", form={"value": "3"})
    both("setup: rm -r w", "DELETE", "/v2/keys/w", query={"recursive": "true"})
    # History comparisons: X-Etcd-Index of a watch is the current index on both.
    both("waitIndex from the past: the first event at or after it", "GET", "/v2/keys/w/a",
         query=lambda s: {"wait": "true", "waitIndex": s.base + 1})
    both("waitIndex on the second write (prevNode)", "GET", "/v2/keys/w/a",
         query=lambda s: {"wait": "true", "waitIndex": s.base + 2}, ignore=("node.createdIndex",))
    both("recursive waitIndex: w/b", "GET", "/v2/keys/w",
         query=lambda s: {"wait": "true", "recursive": "true", "waitIndex": s.base + 3})
    both("a deleted parent dir ends a watch on a child", "GET", "/v2/keys/w/a",
         query=lambda s: {"wait": "true", "waitIndex": s.base + 3})
    both("recursive watch sees the dir delete", "GET", "/v2/keys/w",
         query=lambda s: {"wait": "true", "recursive": "true", "waitIndex": s.base + 4})
    # set dir=true over a file: one "set" of the directory, the file as prevNode.
    both("setup: a file with a TTL", "PUT", "/v2/keys/dof", form={"value": "1", "ttl": "300"})
    both("set dir=true over it", "PUT", "/v2/keys/dof", query={"dir": "true"})
    both("  ... a watch on it from history sees one set", "GET", "/v2/keys/dof",
         query=lambda s: {"wait": "true", "waitIndex": s.base + 6})
    both("  ... so does a recursive one on /", "GET", "/v2/keys/",
         query=lambda s: {"wait": "true", "recursive": "true", "waitIndex": s.base + 6})


def section_live_watches():
    for s in SERVERS.values():
        s.rebase()
    # TTL expiry reported to waiting watchers as "expire".
    both("ttl key for expiry", "PUT", "/v2/keys/exp", form={"value": "e", "ttl": "2"})
    both("ttl dir for expiry", "PUT", "/v2/keys/expd", query={"dir": "true", "ttl": "3"})
    both("  ... a child of it", "PUT", "/v2/keys/expd/child", form={"value": "c"})
    requests = []
    for s, server in SERVERS.items():
        requests += [
            ("key/" + s, server, "GET", "/v2/keys/exp", {"wait": "true", "waitIndex": server.base + 4}, 15),
            ("dir/" + s, server, "GET", "/v2/keys/expd", {"wait": "true", "waitIndex": server.base + 4}, 15),
            ("child/" + s, server, "GET", "/v2/keys/expd/child", {"wait": "true", "waitIndex": server.base + 4}, 15),
            ("live/" + s, server, "GET", "/v2/keys/exp", {"wait": "true"}, 15),
        ]
    results = both_parallel(requests)
    for what in ("key", "dir", "child", "live"):
        got = {s: results[what + "/" + s] for s in SERVERS}
        same("expiry reaches a waiting watcher (%s) as 'expire'" % what, got, headers=False)
        check("  ... action is expire (%s)" % what,
              all(r.json and r.json.get("action") == "expire" for r in got.values()), got)
    both("expired key is gone", "GET", "/v2/keys/exp")
    both("expired dir is gone with its child", "GET", "/v2/keys/expd/child")
    # Read from history, an expire's prevNode shows no ttl (etcd computed it as it expired).
    both("an expire read from history: prevNode without ttl", "GET", "/v2/keys/exp",
         query=lambda s: {"wait": "true", "waitIndex": s.base + 4})
    # Keys that fall due together expire in the order they were written (etcd's heap).
    order = {}
    for s, server in SERVERS.items():
        keys, index = [], EXPIRY_ORDER_FROM[s]
        for _ in range(len(EXPIRY_ORDER_KEYS)):
            r = server.request("GET", "/v2/keys/expo", {"wait": "true", "recursive": "true", "waitIndex": index + 1},
                               timeout=5)
            event = r.json or {}
            keys.append((event.get("action"), (event.get("node") or {}).get("key")))
            index = (event.get("node") or {}).get("modifiedIndex", index + 1)
        order[s] = keys
    check("keys that fall due together expire in the order they were written, on both",
          order["etcd"] == order["keel"] == [("expire", "/expo/" + k) for k in EXPIRY_ORDER_KEYS], order)
    counts = {s: server.request("GET", "/v2/stats/store").json.get("expireCount") for s, server in SERVERS.items()}
    check("/v2/stats/store expireCount: one per expired node (a directory once), on both",
          counts["etcd"] == counts["keel"] and counts["keel"] >= len(EXPIRY_ORDER_KEYS) + 2, counts)

    # A live watch on a missing child of a directory that is then deleted: etcd tells only
    # watchers of nodes it deleted, so this one waits on and sees the next create.
    for s in SERVERS.values():
        s.rebase()
    both("setup: dir lwd", "PUT", "/v2/keys/lwd", query={"dir": "true"})
    both("setup: lwd2/other", "PUT", "/v2/keys/lwd2/other", form={"value": "1"})

    def delete_then_create():
        both("delete dir lwd", "DELETE", "/v2/keys/lwd", query={"dir": "true"})
        both("recursive delete lwd2", "DELETE", "/v2/keys/lwd2", query={"recursive": "true"})
        both("create lwd/nope", "PUT", "/v2/keys/lwd/nope", form={"value": "n"})
        both("create lwd2/nope", "PUT", "/v2/keys/lwd2/nope", form={"value": "n"})

    requests = []
    for s, server in SERVERS.items():
        requests += [("lwd/" + s, server, "GET", "/v2/keys/lwd/nope", {"wait": "true"}, 10),
                     ("lwd2/" + s, server, "GET", "/v2/keys/lwd2/nope", {"wait": "true"}, 10),
                     ("lwd2x/" + s, server, "GET", "/v2/keys/lwd2/other", {"wait": "true"}, 10)]
    results = both_parallel(requests, delete_then_create)
    for what in ("lwd", "lwd2", "lwd2x"):
        same("live watch under a deleted directory (%s)" % what, {s: results[what + "/" + s] for s in SERVERS},
             headers=False)

    for s in SERVERS.values():
        s.rebase()
    # A live watch, a live recursive watch, hidden keys under a recursive watch.
    def writes():
        both("live: write under /lw", "PUT", "/v2/keys/lw/_hidden", form={"value": "h"}, compare=False)
        both("live: write under /lw", "PUT", "/v2/keys/lw/k", form={"value": "v"})

    requests = []
    for s, server in SERVERS.items():
        requests += [("rec/" + s, server, "GET", "/v2/keys/lw", {"wait": "true", "recursive": "true"}, 10),
                     ("key/" + s, server, "GET", "/v2/keys/lw/k", {"wait": "true"}, 10)]
    results = both_parallel(requests, writes)
    same("live recursive watch skips hidden keys and reports the set", {s: results["rec/" + s] for s in SERVERS})
    same("live key watch reports the set", {s: results["key/" + s] for s in SERVERS})

    # stream=true: several events on one response.
    for s in SERVERS.values():
        s.rebase()
    streams = {}

    def stream_reader(s, server):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/v2/keys/str?wait=true&recursive=true&stream=true")
        response = conn.getresponse()
        lines = []
        while len(lines) < 3:
            line = response.readline()
            if not line:
                break
            if line.strip():
                lines.append(line.decode())
        streams[s] = (response.status, lines)
        conn.close()

    threads = [threading.Thread(target=stream_reader, args=(s, server)) for s, server in SERVERS.items()]
    for t in threads:
        t.start()
    time.sleep(0.3)
    both("stream: first write", "PUT", "/v2/keys/str/a", form={"value": "1"})
    both("stream: second write", "PUT", "/v2/keys/str/b", form={"value": "2"})
    both("stream: a delete", "DELETE", "/v2/keys/str/a")
    for t in threads:
        t.join()
    norm = {s: (st, [norm_body(Reply(200, [], line), SERVERS[s].base) for line in lines])
            for s, (st, lines) in streams.items()}
    check("stream=true delivers every event on one response", norm["etcd"] == norm["keel"] and len(norm["keel"][1]) == 3,
          norm)

    # A refresh is not shown to watchers (etcd); the next real write is.
    for s in SERVERS.values():
        s.rebase()
    both("refresh setup", "PUT", "/v2/keys/rf", form={"value": "r", "ttl": "100"})

    def refresh_then_write():
        both("refresh (hidden from watchers)", "PUT", "/v2/keys/rf", form={"ttl": "90", "refresh": "true"},
             ignore=("node.createdIndex",))
        both("real write", "PUT", "/v2/keys/rf", form={"value": "after"},
             ignore=("node.createdIndex", "prevNode.createdIndex"))

    requests = [("rf/" + s, server, "GET", "/v2/keys/rf", {"wait": "true"}, 10) for s, server in SERVERS.items()]
    results = both_parallel(requests, refresh_then_write)
    same("a watcher skips the refresh and reports the next write", {s: results["rf/" + s] for s in SERVERS},
         ignore=("node.createdIndex", "prevNode.createdIndex"), headers=False)
    both("real write", "GET", "/v2/keys/rf", ignore=("node.createdIndex",))


def section_follow():
    """A client that follows a key with waitIndex = modifiedIndex + 1 (what every v2 watcher
    does) sees every write, while the writes race its waits."""
    writes = 400
    for s, server in SERVERS.items():
        r = server.request("PUT", "/v2/keys/follow/k", form={"value": "0"})
        next_index = r.json["node"]["modifiedIndex"] + 1

        def writer(server=server):
            for i in range(1, writes + 1):
                server.request("PUT", "/v2/keys/follow/k", form={"value": str(i)})

        thread = threading.Thread(target=writer)
        thread.start()
        seen = []
        while not seen or seen[-1] < writes:
            r = server.request("GET", "/v2/keys/follow/k", query={"wait": "true", "waitIndex": next_index})
            if r.status != 200 or not r.json:
                break
            seen.append(int(r.json["node"]["value"]))
            next_index = r.json["node"]["modifiedIndex"] + 1
        thread.join()
        check("%s: following a key with waitIndex sees all %d racing writes" % (s, writes),
              seen == list(range(1, writes + 1)), "missed %d" % (writes - len(seen)))


def section_members_stats():
    replies = both("GET /v2/members", "GET", "/v2/members", compare=False)
    shapes = {s: [sorted(m) for m in r.json["members"]] for s, r in replies.items()}
    check("/v2/members: same member fields", shapes["etcd"] == shapes["keel"], shapes)
    check("/v2/members: clientURLs is where the client reached us",
          replies["keel"].json["members"][0]["clientURLs"] == [SERVERS["keel"].url], replies["keel"])
    check("/v2/members: X-Etcd-Cluster-Id on both",
          all("x-etcd-cluster-id" in r.headers for r in replies.values()), replies)
    replies = both("GET /v2/machines", "GET", "/v2/machines", compare=False)
    check("/v2/machines: the client URL in plain text",
          all(r.text == SERVERS[s].url and r.headers["content-type"].startswith("text/plain") for s, r in replies.items()),
          replies)
    for path in ("/v2/stats/self", "/v2/stats/leader", "/v2/stats/store", "/v2/members/leader"):
        replies = both("GET " + path, "GET", path, compare=False)
        keys = {s: sorted(r.json) if isinstance(r.json, dict) else r.text for s, r in replies.items()}
        check(path + ": same fields", keys["etcd"] == keys["keel"], keys)
    replies = both("stats/self leaderInfo", "GET", "/v2/stats/self", compare=False)
    check("stats/self: leaderInfo fields and StateLeader",
          all(sorted(r.json["leaderInfo"]) == ["leader", "startTime", "uptime"] and r.json["state"] == "StateLeader"
              for r in replies.values()), replies)
    # etcd's access controller: CORS headers on every answer of the client port, and a 200
    # for a preflight anywhere (keel had them on /v2/keys and /v2/members only).
    cors = ("access-control-allow-headers", "access-control-allow-methods", "access-control-allow-origin")
    for method, path in (("GET", "/version"), ("GET", "/health"), ("GET", "/v2/stats/store"), ("GET", "/v2/machines"),
                         ("POST", "/v3/kv/range"), ("OPTIONS", "/v3/kv/range"), ("OPTIONS", "/version"),
                         ("GET", "/no/such/path")):
        replies = {s: server.request(method, path, body="{}" if method == "POST" else None)
                   for s, server in SERVERS.items()}
        shapes = {s: (r.status, [r.headers.get(h) for h in cors]) for s, r in replies.items()}
        check("%s %s: etcd's status and CORS headers, on both" % (method, path),
              shapes["etcd"] == shapes["keel"] and all(shapes["keel"][1]), shapes)


# ---- etcdctl and keelctl ---------------------------------------------------------------------

# One command per entry: arguments with {P} (the key prefix of the run) and {B+n} (an index
# relative to the run's base). "sort" marks output whose line order etcd leaves random.
CLI_SEQUENCE = [
    ["set", "{P}/foo", "bar"],
    ["get", "{P}/foo"],
    ["-o", "extended", "get", "{P}/foo"],
    ["-o", "json", "get", "{P}/foo"],
    ["mk", "{P}/foo", "x"],
    ["mk", "{P}/new", "v"],
    ["mk", "--in-order", "{P}/queue", "first"],
    ["-o", "json", "mk", "--in-order", "{P}/queue", "second"],
    ["mkdir", "{P}/dir"],
    ["mkdir", "{P}/dir"],
    ["setdir", "{P}/sdir"],
    ["-o", "extended", "setdir", "{P}/sdir2"],
    ["set", "{P}/dir/a", "1"],
    ["set", "{P}/dir/sub/b", "2"],
    ["set", "{P}/dir/_hidden", "h"],
    ["ls", "{P}", "sort"],
    ["ls", "--recursive", "{P}", "sort"],
    ["ls", "--recursive", "-p", "{P}", "sort"],
    ["ls", "--sort", "-p", "{P}"],
    ["-o", "json", "ls", "--sort", "{P}/dir"],
    ["-o", "extended", "ls", "--sort", "{P}/dir"],
    ["ls", "{P}/foo"],
    ["update", "{P}/foo", "baz"],
    ["update", "{P}/nokey", "x"],
    ["-o", "extended", "update", "{P}/foo", "qux"],
    ["get", "{P}/dir"],
    ["get", "{P}/nokey"],
    ["-o", "json", "get", "{P}/nokey"],
    ["rm", "{P}/foo"],
    ["rm", "{P}/dir"],
    ["rmdir", "{P}/dir"],
    ["-o", "json", "rm", "--recursive", "{P}/dir"],
    ["-o", "json", "rm", "{P}/new", "--with-value", "v"],
    ["set", "{P}/cas", "one"],
    ["rm", "{P}/cas", "--with-value", "two"],
    ["rm", "{P}/cas", "--with-index", "{B+100}"],
    ["set", "{P}/cas", "three", "--swap-with-value", "one"],
    ["set", "{P}/cas", "four", "--swap-with-value", "one"],
    ["rmdir", "{P}/sdir"],
    ["-o", "extended", "rmdir", "{P}/sdir2"],
    ["rm", "--dir", "{P}/cas"],
    ["updatedir", "{P}/udir", "--ttl", "100"],
    ["mkdir", "{P}/udir"],
    ["updatedir", "{P}/udir", "--ttl", "100"],
    ["-o", "extended", "ls", "{P}/udir"],
    ["set", "{P}/ttl", "v", "--ttl", "100"],
    ["-o", "extended", "get", "{P}/ttl"],
    ["-o", "json", "get", "{P}/ttl"],
    ["set", "{P}/esc", "<a & b> \"q\" \u00e9"],
    ["-o", "json", "get", "{P}/esc"],
    ["-o", "xml", "get", "{P}/esc"],
    ["watch", "--after-index", "{B+1}", "{P}/foo"],
    ["watch", "--after-index", "{B+1}", "--recursive", "{P}"],
    ["-o", "extended", "watch", "--after-index", "{B+2}", "{P}/foo"],
    ["-o", "json", "watch", "--after-index", "{B+1}", "{P}/foo"],
    ["get"],
    ["set", "{P}/novalue"],
    ["rm"],
    ["exec-watch", "{P}/x"],
]


def norm_cli_text(text, base, prefix):
    text = text.replace(prefix, "{P}")

    def index(m):
        n = int(m.group(2))
        return m.group(1) + str(n - base if n else 0)

    text = re.sub(r"((?:Created-Index|Modified-Index|Index): )(\d+)", index, text)
    text = re.sub(r'("(?:createdIndex|modifiedIndex)":)(\d+)', index, text)
    text = re.sub(r"(\[)(\d+)(?=\]$)", index, text, flags=re.M)
    text = re.sub(r"(\[\w* != )(\d+)(?=\])", index, text)
    text = re.sub(r"(\[)(\d+)(?= != )", index, text)
    text = re.sub(r"/(\d{20})", lambda m: "/#%d" % (int(m.group(1)) - base), text)
    text = re.sub(r'"expiration":"[^"]*"', '"expiration":"<t>"', text)
    text = re.sub(r'"ttl":\d+', '"ttl":"<ttl>"', text)
    text = re.sub(r"TTL: [1-9]\d*", "TTL: <ttl>", text)
    return text


def run_cli_sequence(tool, server, prefix, env):
    server.rebase()
    base = server.base
    out = []
    for entry in CLI_SEQUENCE:
        sort_lines = entry[-1] == "sort"
        args = entry[:-1] if sort_lines else entry
        args = [re.sub(r"\{B\+(\d+)\}", lambda m: str(base + int(m.group(1))), a.replace("{P}", prefix))
                for a in args]
        done = subprocess.run(tool + ["--endpoints", server.url] + args, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env=env, timeout=20)
        stdout = norm_cli_text(done.stdout, base, prefix)
        stderr = norm_cli_text(done.stderr, base, prefix)
        if sort_lines:
            stdout = "\n".join(sorted(stdout.splitlines()))
        out.append((" ".join(entry), done.returncode, stdout, stderr))
    return out


def compare_cli(label, got, want):
    bad = [(g[0], g[1:], w[1:]) for g, w in zip(got, want) if g[1:] != w[1:]]
    check("%s: %d commands give etcdctl's output and exit codes" % (label, len(want)), not bad,
          "\n".join("%s\n       got  %r\n       want %r" % b for b in bad[:6]))


def exec_watch_phase(env):
    """exec-watch and watch --forever, each tool against each server, on the same writes."""
    runs = []
    script = 'echo "$ETCD_WATCH_ACTION $ETCD_WATCH_KEY [$ETCD_WATCH_VALUE] $ETCD_WATCH_MODIFIED_INDEX"'
    for tool_name, tool in (("etcdctl", [ETCDCTL]), ("keelctl", [KEELCTL, "v2"])):
        for s, server in SERVERS.items():
            prefix = "/ew-%s" % tool_name
            server.rebase()
            for kind, args in (("exec-watch", ["exec-watch", "--recursive", prefix, "--", "sh", "-c", script]),
                               ("watch", ["watch", "--forever", "--recursive", prefix])):
                proc = subprocess.Popen(tool + ["--endpoints", server.url] + args, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
                runs.append((tool_name, s, kind, prefix, server, proc))
    time.sleep(1.5)
    for tool_name in ("etcdctl", "keelctl"):
        prefix = "/ew-%s" % tool_name
        for s, server in SERVERS.items():
            server.request("PUT", "/v2/keys%s/a" % prefix, form={"value": "1"})
            server.request("PUT", "/v2/keys%s/d" % prefix, query={"dir": "true"})
    time.sleep(0.4)
    for tool_name in ("etcdctl", "keelctl"):
        prefix = "/ew-%s" % tool_name
        for s, server in SERVERS.items():
            server.request("PUT", "/v2/keys%s/a" % prefix, form={"value": "2"})
    time.sleep(0.4)
    for tool_name in ("etcdctl", "keelctl"):
        prefix = "/ew-%s" % tool_name
        for s, server in SERVERS.items():
            server.request("DELETE", "/v2/keys%s/a" % prefix)
    time.sleep(0.8)
    results = {}
    for tool_name, s, kind, prefix, server, proc in runs:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
        # The writes of the four runs interleave on a server: ETCD_WATCH_MODIFIED_INDEX is
        # only checked to increase.
        indexes = [int(line.rsplit(" ", 1)[1]) for line in stdout.splitlines() if kind == "exec-watch"]
        check("%s %s against %s: ETCD_WATCH_MODIFIED_INDEX increases" % (tool_name, kind, s),
              indexes == sorted(set(indexes)), stdout)
        stdout = re.sub(r" \d+$", " <index>", stdout, flags=re.M) if kind == "exec-watch" else stdout
        results[(tool_name, s, kind)] = (proc.returncode, norm_cli_text(stdout, server.base, prefix),
                                         norm_cli_text(stderr, server.base, prefix))
    want_exec = results[("etcdctl", "etcd", "exec-watch")]
    want_watch = results[("etcdctl", "etcd", "watch")]
    check("etcdctl exec-watch on etcd saw 3 key events (sanity)", want_exec[1].count("\n") == 3, want_exec)
    for key, got in sorted(results.items()):
        want = want_exec if key[2] == "exec-watch" else want_watch
        check("%s %s against %s: same output and exit code as etcdctl on etcd" % (key[0], key[2], key[1]),
              got == want, "got %r\n       want %r" % (got, want))


def section_cli():
    env = dict(os.environ, ETCDCTL_API="2")
    want = run_cli_sequence([ETCDCTL], SERVERS["etcd"], "/ctl-etcdctl", env)
    got = run_cli_sequence([ETCDCTL], SERVERS["keel"], "/ctl-etcdctl", env)
    compare_cli("ETCDCTL_API=2 etcdctl against keel", got, want)
    for s, server in SERVERS.items():
        got = run_cli_sequence([KEELCTL], server, "/ctl-keelctl", env)
        compare_cli("ETCDCTL_API=2 keelctl against %s" % s, [(g[0].replace("keelctl", "etcdctl"),) + g[1:] for g in got],
                    want)
    plain_env = {k: v for k, v in os.environ.items() if k != "ETCDCTL_API"}
    got = run_cli_sequence([KEELCTL, "v2"], SERVERS["keel"], "/ctl-keelctl-v2", plain_env)
    compare_cli("keelctl v2 <verb> (no ETCDCTL_API) against keel", got, want)
    for tool in ([ETCDCTL], [KEELCTL, "v2"]):
        done = subprocess.run(tool + ["--endpoints", "http://127.0.0.1:1", "get", "/x"], capture_output=True,
                              text=True, env=env, timeout=20)
        if tool[0] == ETCDCTL:
            unreachable = (done.returncode, done.stdout, done.stderr)
        else:
            check("keelctl: an unreachable endpoint prints etcdctl's cluster error, exit 2",
                  (done.returncode, done.stdout, done.stderr) == unreachable,
                  "got %r\n       want %r" % ((done.returncode, done.stdout, done.stderr), unreachable))
    exec_watch_phase(env)


# ---- keel only ------------------------------------------------------------------------------


def section_keel_only():
    keel = SERVERS["keel"]

    def v3(path, body):
        r = keel.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        return r.status, r.json

    # etcd's v2 API takes any size; keel keeps --max-request-bytes (1.5 MiB) on a v2 body.
    r = keel.request("PUT", "/v2/keys/huge", form={"value": "h" * 1600000})
    check("a v2 body over --max-request-bytes: 413 naming the limit",
          r.status == 413 and "exceeds the limit of 1572864 bytes" in r.text, (r.status, r.text[:200]))
    r = keel.request("PUT", "/v2/keys/large", form={"value": "l" * 1400000})
    check("... one under it is stored", r.status == 201, (r.status, r.text[:200]))
    keel.request("PUT", "/v2/keys/interop/fromv2", form={"value": "v2 value"})
    status, answer = v3("/v3/kv/range", {"key": b64("/interop/fromv2")})
    kvs = answer.get("kvs", []) if answer else []
    check("v2-written key read through POST /v3/kv/range (base64 key)",
          status == 200 and len(kvs) == 1 and base64.b64decode(kvs[0]["value"]).decode() == "v2 value", answer)
    status, answer = v3("/v3/kv/range", {"key": b64("/interop/"), "range_end": b64("/interop0"), "keys_only": True})
    keys = sorted(base64.b64decode(kv["key"]).decode() for kv in answer.get("kvs", []))
    check("v2 directory marker is the key '/interop/' (v3 sees it)", keys == ["/interop/", "/interop/fromv2"], keys)
    status, answer = v3("/v3/kv/put", {"key": b64("/interop/fromv3"), "value": b64("v3 value")})
    r = keel.request("GET", "/v2/keys/interop/fromv3")
    check("v3-written key read through v2",
          r.status == 200 and r.json["node"]["value"] == "v3 value" and r.json["node"]["modifiedIndex"] == int(answer["header"]["revision"]),
          r)
    v3("/v3/kv/put", {"key": b64("/implicit/a/b"), "value": b64("deep")})
    r = keel.request("GET", "/v2/keys/implicit", query={"recursive": "true"})
    check("v3 keys make implicit directories (no marker, no indexes)",
          r.status == 200 and r.json["node"] == {"key": "/implicit", "dir": True, "nodes": [
              {"key": "/implicit/a", "dir": True, "nodes": [{"key": "/implicit/a/b", "value": "deep",
                                                             "modifiedIndex": r.index(), "createdIndex": r.index()}]}]},
          r)
    v3("/v3/kv/put", {"key": b64("not-v2"), "value": b64("x")})
    r = keel.request("GET", "/v2/keys/", query={"recursive": "true"})
    check("keys not starting with '/' are not in the v2 tree",
          r.status == 200 and "not-v2" not in r.text, r)

    # A v3 write is reported to a v2 watcher (create for a new key, set for an existing one).
    def v3_write():
        v3("/v3/kv/put", {"key": b64("/interop/fromv3"), "value": b64("changed")})

    results = both_parallel([("w", keel, "GET", "/v2/keys/interop/fromv3", {"wait": "true"}, 10)], v3_write)
    r = results["w"]
    check("a v3 put is seen by a v2 watcher as set with prevNode",
          r.status == 200 and r.json["action"] == "set" and r.json["node"]["value"] == "changed"
          and r.json["prevNode"]["value"] == "v3 value", r)

    # Concurrent compare-and-swaps on one key: exactly one wins (read-check-write is atomic).
    r = keel.request("PUT", "/v2/keys/race", form={"value": "0"})
    index = r.json["node"]["modifiedIndex"]
    wins = []

    def cas(i):
        answer = keel.request("PUT", "/v2/keys/race", query={"prevIndex": index}, form={"value": str(i)})
        wins.append(answer.status)

    threads = [threading.Thread(target=cas, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check("16 concurrent CAS on one prevIndex: one 200, fifteen 412",
          sorted(wins) == [200] + [412] * 15, sorted(wins))

    # A restart keeps the v2 tree (it is the MVCC store, in the WAL); a lease restarts from
    # its granted TTL (as etcd's v3 leases); the WAL entry of a v2 write carries its action
    # (entry kind 7), so an old event replayed from the WAL keeps etcd's action ("set", not
    # the "create" MVCC alone would suggest for a new key).
    r = keel.request("PUT", "/v2/keys/restart/k", form={"value": "before"})
    written = r.index()
    keel.request("PUT", "/v2/keys/restart/t", form={"value": "t", "ttl": "100"})
    keel.stop()
    keel = start_keeld(keel.tmp)
    SERVERS["keel"] = keel
    r = keel.request("GET", "/v2/keys/restart", query={"recursive": "true", "sorted": "true"})
    nodes = r.json["node"].get("nodes", []) if r.json else []
    check("after a restart the v2 tree is there, with the TTL re-armed",
          r.status == 200 and [n["key"] for n in nodes] == ["/restart/k", "/restart/t"]
          and nodes[0]["value"] == "before" and nodes[1].get("ttl") in (99, 100), r)
    r = keel.request("GET", "/v2/keys/restart/k", query={"wait": "true", "waitIndex": written})
    check("after a restart history is answered, with etcd's action (set)",
          r.status == 200 and r.json["action"] == "set" and r.json["node"]["modifiedIndex"] == written, r)

    # A compacted waitIndex is etcd's 401 with its cause; a recent one still works.
    r = keel.request("GET", "/v2/keys/")
    current = r.index()
    status, answer = v3("/v3/kv/compaction", {"revision": str(current)})
    check("compaction through v3", status == 200, answer)
    r = keel.request("GET", "/v2/keys/message", query={"wait": "true", "waitIndex": 2})
    check("waitIndex below the compaction: 401 errorCode 401 with etcd's cause",
          r.status == 400 and r.json and r.json.get("errorCode") == 401
          and r.json.get("message") == "The event in requested index is outdated and cleared"
          and r.json.get("cause") == "the requested history has been cleared [%d/2]" % (current + 1)
          and r.json.get("index") == current, r)
    keel.request("PUT", "/v2/keys/after", form={"value": "a"})
    r = keel.request("GET", "/v2/keys/after", query={"wait": "true", "waitIndex": current + 1})
    check("waitIndex after the compaction is answered from history",
          r.status == 200 and r.json["action"] == "set" and r.json["node"]["value"] == "a", r)

    # A watcher whose client went away is released.
    sock = socket.create_connection(("127.0.0.1", keel.port))
    sock.sendall(b"GET /v2/keys/gone?wait=true HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    before = keel.request("GET", "/v2/stats/store").json["watchers"]
    sock.close()
    deadline = time.time() + 5
    after = before
    while time.time() < deadline and after >= before:
        time.sleep(0.2)
        after = keel.request("GET", "/v2/stats/store").json["watchers"]
    check("a closed client's watcher is released", before >= 1 and after == before - 1, (before, after))


def main():
    for binary in (ETCD, ETCDCTL):
        if not os.access(binary, os.X_OK):
            keeltest.skip("%s is not installed (apt-get install etcd-server etcd-client)" % binary)
    tmp = tempfile.mkdtemp(prefix="keel-v2-e2e-")
    servers = []
    try:
        etcd = start_etcd(tmp)
        servers.append(etcd)
        keel = start_keeld(tmp)
        servers.append(keel)
        SERVERS["etcd"] = etcd
        SERVERS["keel"] = keel
        section_basics()
        section_dirs()
        section_in_order_and_hidden()
        section_delete()
        section_parameters()
        section_ttl()
        section_history_watches()
        section_live_watches()
        section_follow()
        section_members_stats()
        section_cli()
        section_keel_only()
        servers[1] = SERVERS["keel"]  # restarted
    finally:
        for server in servers:
            server.stop()
        if check.failed == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("logs kept in " + tmp)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
