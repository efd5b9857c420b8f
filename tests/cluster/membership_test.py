#!/usr/bin/env python3
"""Membership changes on a keeld cluster, as etcd's runtime-reconfiguration guide does them.

1. Three members (static --initial-cluster); a few writes.
2. `member add --learner` (POST /v3/cluster/member/add, asked of a follower, which
   forwards it) for a fourth peer URL; the answer names the new member, unstarted.
3. The fourth member starts with --initial-cluster (all four) and
   --initial-cluster-state existing: it joins, learns the cluster id, catches up from the
   leader's log (its serializable reads equal the leader's) and publishes its name.
4. Promoting it (POST /v3/cluster/member/promote) makes it a voter.
5. Adding the same peer URL again is refused (a duplicate), and removing an unknown id
   is refused (member not found).
6. `member remove` of the fourth: three members remain, writes continue, and the removed
   member says so in its log. Its URL is added again: a new id (etcd's are of the time
   of the add); a fresh keeld on it learns that id from GET /members on a peer port and
   catches up; it is removed again. A keeld never added is refused ("member count is
   unequal").
7. v2: POST /v2/members adds (201), DELETE /v2/members/<id> removes (204).
8. GET /health is 200 on every member, 503 on a member whose two peers are stopped
   (SIGSTOP: no quorum, so no leader or no ReadIndex), 200 again after SIGCONT.

Usage: membership_test.py --binary build/bin/keeld [--base-port 29450]
Ports: base..base+9.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster as harness  # noqa: E402
import keeltest  # noqa: E402


def post(url, path, body, method="POST"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None)


def health(url):
    """The status of GET /health (0 when it does not answer within 5 s)."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return r.status if json.loads(r.read()) == {"health": "true"} else -r.status
    except urllib.error.HTTPError as e:
        return e.code if json.loads(e.read() or b"null") == {"health": "false"} else -e.code
    except OSError:
        return 0


def health_becomes(url, want, seconds):
    """Whether GET /health answers `want` within `seconds`."""
    deadline = time.monotonic() + seconds
    while health(url) != want:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def scenario(o, work, check, started):
    c = started(harness.Cluster(o.binary, size=3, base_port=o.base_port, workdir=os.path.join(work, "members")))
    leader = c.leader()
    for k in ("a", "b", "c"):
        harness.kv_put(c.url(leader), "m/" + k, "v" + k, 2.0)
    follower = next(i for i in range(3) if i != leader)
    peer = "http://127.0.0.1:%d" % (o.base_port + 7)
    client = "http://127.0.0.1:%d" % (o.base_port + 6)
    code, added = post(c.url(follower), "/v3/cluster/member/add", {"peerURLs": [peer], "isLearner": True})
    check("member add --learner on a follower: %d, 4 members" % code,
          code == 200 and added["member"].get("isLearner") and len(added["members"]) == 4)
    new_id = int(added["member"]["ID"]) if code == 200 else 0

    initial = c.initial_cluster + ",m3=" + peer

    def start_joiner(data_dir, log_name):
        """m3 on `peer`, joining with --initial-cluster-state existing; output to log_name."""
        log = open(os.path.join(work, log_name), "wb")
        return started(subprocess.Popen([o.binary, "--name", "m3", "--data-dir", os.path.join(work, data_dir),
                                         "--listen-client-urls", client, "--advertise-client-urls", client,
                                         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                         "--initial-cluster", initial, "--initial-cluster-state", "existing",
                                         "--initial-cluster-token", c.token],
                                        stdout=log, stderr=subprocess.STDOUT))

    def reads_on_joiner(wanted, seconds=15):
        """Whether the joiner's serializable reads give wanted (key -> value) within seconds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if all(harness.kv_get(client, k, 1.0, serializable=True)[0] == v for k, v in wanted.items()):
                    return True
            except (harness.NotSent, harness.Unknown, harness.HttpError):
                pass
            time.sleep(0.1)
        return False

    joiner = start_joiner("m3.data", "m3.log")
    caught = reads_on_joiner({"m/" + k: "v" + k for k in "abc"})
    check("the joiner (--initial-cluster-state existing) caught up from the leader's log", caught)
    # As etcd 3.4's, a learner serves serializable reads and its status, nothing else.
    code, st = post(client, "/v3/maintenance/status", {})
    check("the learner's status says isLearner", code == 200 and st.get("isLearner") is True, st)
    key = {"key": harness.b64e("m/a")}
    code, put = post(client, "/v3/kv/put", dict(key, value=harness.b64e("x")))
    check("a put on the learner: 503 'rpc not supported for learner' (%d)" % code,
          code == 503 and (put or {}).get("error") == "etcdserver: rpc not supported for learner", put)
    code, _ = post(client, "/v3/kv/range", key)
    check("a linearizable range on the learner: 503 (%d)" % code, code == 503)
    code, _ = post(client, "/v3/kv/range", dict(key, serializable=True))
    check("a serializable range on the learner: 200 (%d)" % code, code == 200)
    # etcd 3.4 opens no stream on a learner; its gateway answers with one error chunk
    # (checked against a real etcd learner). Before, keel served both.
    stream_refusal = {"error": {"grpc_code": 14, "http_code": 503, "http_status": "Service Unavailable",
                                "message": "etcdserver: rpc not supported for learner"}}
    code, watched = post(client, "/v3/watch", {"create_request": key})
    check("a watch on the learner: 503 and etcd's stream error (%d)" % code,
          code == 503 and watched == stream_refusal, watched)
    code, kept = post(client, "/v3/lease/keepalive", {"ID": 7})
    check("a lease keep-alive on the learner: 503 and etcd's stream error (%d)" % code,
          code == 503 and kept == stream_refusal, kept)
    keelctl = os.path.join(os.path.dirname(o.binary), "keelctl")
    try:
        native = subprocess.run([keelctl, "--endpoints", client, "watch", "m/a"], capture_output=True,
                                text=True, timeout=10)
        said = (native.returncode, native.stdout + native.stderr)
    except subprocess.TimeoutExpired:
        said = (None, "still watching after 10 s")
    try:
        renewing = subprocess.run([keelctl, "--endpoints", client, "lease", "keep-alive", "7"], capture_output=True,
                                  text=True, timeout=10)
        renewed = (renewing.returncode, renewing.stdout + renewing.stderr)
    except subprocess.TimeoutExpired:
        renewed = (None, "still renewing after 10 s")
    check("keelctl lease keep-alive on the learner (native protocol): fails, 'rpc not supported for learner'",
          renewed[0] not in (0, None) and "etcdserver: rpc not supported for learner" in renewed[1], renewed)
    check("keelctl watch on the learner (native protocol): canceled, exit 5, 'rpc not supported for learner'",
          said[0] == 5 and "watch was canceled (etcdserver: rpc not supported for learner)" in said[1], said)

    code, promoted = post(c.url(leader), "/v3/cluster/member/promote", {"ID": str(new_id)})
    deadline = time.monotonic() + 5
    while code != 200 and time.monotonic() < deadline:  # promotion waits for the learner to be in sync
        time.sleep(0.2)
        code, promoted = post(c.url(leader), "/v3/cluster/member/promote", {"ID": str(new_id)})
    check("promote: a voter now", code == 200 and not any(m.get("isLearner") for m in promoted["members"]))
    # The leader answers the promotion once it applied it; the member itself applies it
    # a heartbeat or so later (its own status is its own state, as etcd's is).
    deadline = time.monotonic() + 5
    while True:
        code, st = post(client, "/v3/maintenance/status", {})
        if (code == 200 and "isLearner" not in st) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check("... and its status no longer says isLearner", code == 200 and "isLearner" not in st, st)
    deadline = time.monotonic() + 5
    named = False
    while time.monotonic() < deadline and not named:
        code, listed = post(c.url(follower), "/v3/cluster/member/list", {})
        named = any(m.get("name") == "m3" and m.get("clientURLs") == [client] for m in listed["members"])
        time.sleep(0.1)
    check("member list shows m3 with its client URL", named)

    # A member list is the answering member's own view (etcd 3.4: not linearizable), so
    # another member shows an update once it applied it: read until it does, up to 5 s.
    def peer_urls_seen(url, want):
        deadline = time.monotonic() + 5
        while True:
            _, listed = post(url, "/v3/cluster/member/list", {})
            urls = [m["peerURLs"] for m in listed["members"] if int(m["ID"]) == new_id]
            if urls == [want] or time.monotonic() > deadline:
                return urls
            time.sleep(0.05)

    extra_url = "http://127.0.0.1:%d" % (o.base_port + 8)
    code, _ = post(c.url(follower), "/v2/members/%x" % new_id, {"peerURLs": [peer, extra_url]}, method="PUT")
    urls = peer_urls_seen(c.url(leader), [peer, extra_url])
    check("v2 PUT /v2/members/<id> (member update) on a follower: %d %r"
          % (code, urls),
          code == 204 and urls == [[peer, extra_url]])
    code, _ = post(c.url(leader), "/v3/cluster/member/update", {"ID": str(new_id), "peerURLs": [peer]})
    urls = peer_urls_seen(c.url(follower), [peer])
    check("v3 member update back to one URL: %d %r" % (code, urls), code == 200 and urls == [[peer]])
    code, missing = post(c.url(leader), "/v3/cluster/member/update", {"ID": "12345", "peerURLs": [extra_url]})
    check("updating an unknown id: member not found", code != 200 and "member not found" in json.dumps(missing))

    code, dup = post(c.url(leader), "/v3/cluster/member/add", {"peerURLs": [peer]})
    check("adding the same peer URL again is refused (%d %s)" % (code, (dup or {}).get("error")), code != 200)
    code, missing = post(c.url(leader), "/v3/cluster/member/remove", {"ID": "12345"})
    check("removing an unknown id: member not found", code != 200 and "member not found" in json.dumps(missing))

    code, removed = post(c.url(follower), "/v3/cluster/member/remove", {"ID": str(new_id)})
    check("member remove: 3 members remain", code == 200 and len(removed["members"]) == 3)
    harness.kv_put(c.url(leader), "m/after", "1", 5.0)
    check("writes continue after the removal", harness.kv_get(c.url(follower), "m/after", 5.0)[0] == "1")
    # It learns it either by applying the removal or, when the leader stopped talking to
    # it first, from the "removed" answer to its next message (after an election timeout).
    deadline = time.monotonic() + 8
    said = False
    while not said and time.monotonic() < deadline:
        with open(os.path.join(work, "m3.log")) as f:
            said = "removed from the cluster" in f.read()
        time.sleep(0.2)
    check("the removed member says so in its log", said)
    # As etcd, it then stops (it served reads that no longer advanced), and its data
    # dir cannot start again.
    rc = keeltest.exit_code_within(joiner, 10)
    check("the removed member's keeld stops by itself (rc %r)" % rc, rc is not None)
    rc = keeltest.exit_code_within(start_joiner("m3.data", "m3-again.log"), 20)
    refused = keeltest.log_lines(os.path.join(work, "m3-again.log"), "was removed from cluster")
    check("its data dir is refused at the next start (rc %r): %s" % (rc, (refused or [""])[-1][:160]),
          rc not in (None, 0) and bool(refused))

    # As etcd, an added member's id comes from the time it was added, and the joiner
    # learns it from the cluster (GET /members on a peer port): so the URL of a removed
    # member can be added again, as a new member with a new id, and a fresh keeld on it
    # joins.
    code, again = post(c.url(leader), "/v3/cluster/member/add", {"peerURLs": [peer]})
    again_id = int(again["member"]["ID"]) if code == 200 else 0
    check("the removed member's URL is added again with a new id (%d: %x, was %x)" % (code, again_id, new_id),
          code == 200 and again_id not in (0, new_id))
    joiner = start_joiner("m3b.data", "m3b.log")
    caught = reads_on_joiner({"m/after": "1"})
    with open(os.path.join(work, "m3b.log")) as f:
        joined = "as member %x (m3)" % again_id in f.read()
    check("a fresh member on that URL learns its id from the cluster and catches up", caught and joined)
    code, removed = post(c.url(leader), "/v3/cluster/member/remove", {"ID": str(again_id)})
    check("and is removed again: 3 members remain", code == 200 and len(removed["members"]) == 3)
    joiner.kill()
    joiner.wait()
    # A member that was never added is refused at start, with etcd's reason.
    stray = "http://127.0.0.1:%d" % (o.base_port + 8)
    out = subprocess.run([o.binary, "--name", "m9", "--data-dir", os.path.join(work, "m9.data"),
                          "--listen-client-urls", "http://127.0.0.1:%d" % (o.base_port + 9),
                          "--listen-peer-urls", stray, "--initial-advertise-peer-urls", stray,
                          "--initial-cluster", c.initial_cluster + ",m9=" + stray,
                          "--initial-cluster-state", "existing"], capture_output=True, text=True, timeout=20)
    check("a member never added is refused: %s" % (out.stderr.strip().splitlines() or [""])[-1],
          out.returncode != 0 and "member count is unequal" in out.stderr)

    code, v2 = post(c.url(leader), "/v2/members", {"peerURLs": ["http://127.0.0.1:%d" % (o.base_port + 9)]})
    check("v2: POST /v2/members -> 201", code == 201 and v2.get("peerURLs"))
    if code == 201:
        code, _ = post(c.url(follower), "/v2/members/" + v2["id"], None, method="DELETE")
        check("v2: DELETE /v2/members/<id> -> 204", code == 204)

    # /health as etcd's: 200 while a leader serves linearizable reads, 503 on a member
    # that lost its quorum, 200 again once the quorum is back.
    check("GET /health: 200 on every member", all(health(c.url(i)) == 200 for i in range(3)))
    others = [i for i in range(3) if i != follower]
    for i in others:
        c.stop(i)
    check("GET /health: 503 on a member whose two peers are stopped", health_becomes(c.url(follower), 503, 10))
    for i in others:
        c.cont(i)
    check("GET /health: 200 again once its peers are back", health_becomes(c.url(follower), 200, 15))

    # A member whose data dir was lost must not bootstrap an empty log under its old id
    # (it served empty reads for good): the start is refused, as etcd refuses it.
    m = c.members[follower]

    def refused_restart(*needles):
        """Restarts the killed follower, which must exit: (its status, the log lines
        that hold every one of needles)."""
        c.restart(follower, wait=False)
        rc = keeltest.exit_code_within(m.proc, 20)
        m.state = "down"
        return rc, keeltest.log_lines(m.log_path, *needles)

    c.kill9(follower)
    os.rename(m.data_dir, m.data_dir + ".lost")
    rc, said = refused_restart("has already been bootstrapped")
    check("a member restarted with an empty data dir is refused (rc %r): %s" % (rc, (said or [""])[-1][:160]),
          rc not in (None, 0) and bool(said))
    out = subprocess.run([o.binary, "--name", m.name, "--data-dir", os.path.join(work, "empty.data"),
                          "--listen-client-urls", m.client_url, "--listen-peer-urls", m.peer_url,
                          "--initial-advertise-peer-urls", m.peer_url, "--initial-cluster", c.initial_cluster,
                          "--initial-cluster-state", "existing"], capture_output=True, text=True, timeout=20)
    check("... and so with --initial-cluster-state existing: %s" % (out.stderr.strip().splitlines() or [""])[-1][:160],
          out.returncode != 0 and "has already been bootstrapped" in out.stderr)
    shutil.rmtree(m.data_dir, ignore_errors=True)
    os.rename(m.data_dir + ".lost", m.data_dir)
    c.restart(follower)
    check("with its data dir back it rejoins", harness.kv_get(c.url(follower), "m/after", 5.0)[0] == "1")

    # Its member.json alone lost: the error names member.json (it used to call the log a
    # single node's and ask for an empty data dir, which would throw the log away). The
    # other members answer here, so the "already bootstrapped" check speaks first; with
    # them down, cluster_start says "member.json is missing".
    member_json = os.path.join(m.data_dir, "member.json")
    c.kill9(follower)
    os.rename(member_json, member_json + ".lost")
    rc, said = refused_restart("failed to start", "member.json")
    check("a member whose member.json is gone is told so (rc %r): %s" % (rc, (said or [""])[-1][:160]),
          rc not in (None, 0) and bool(said))
    os.rename(member_json + ".lost", member_json)
    c.restart(follower)

    # etcd's strict reconfiguration check: with a member down, adding one (4 members, 2
    # up) or removing a running one (1 of 2 up) would lose the quorum for good; both
    # are refused. Removing the member that is down is what the operator needs, and is
    # allowed.
    leader = c.leader()
    down = next(i for i in range(3) if i != leader)
    up = next(i for i in range(3) if i not in (leader, down))
    ids = {}
    for i in range(3):
        _, st = post(c.url(i), "/v3/maintenance/status", {})
        ids[i] = st["header"]["member_id"]
    c.kill9(down)
    time.sleep(5.5)  # etcd's HealthInterval: no message from it for 5 s
    code, added = post(c.url(leader), "/v3/cluster/member/add",
                       {"peerURLs": ["http://127.0.0.1:%d" % (o.base_port + 9)]})
    check("a member down: member add is refused (%d %s)" % (code, (added or {}).get("error")),
          code == 503 and (added or {}).get("error") == "etcdserver: unhealthy cluster")
    code, removed = post(c.url(leader), "/v3/cluster/member/remove", {"ID": ids[up]})
    check("... and so is removing a running member (%d %s)" % (code, (removed or {}).get("error")),
          code == 503 and (removed or {}).get("error") == "etcdserver: unhealthy cluster")
    code, removed = post(c.url(leader), "/v3/cluster/member/remove", {"ID": ids[down]})
    check("... removing the member that is down is allowed (%d)" % code,
          code == 200 and len(removed["members"]) == 2)


def main():
    return harness.run_scenario("keel-membership-", 29450, scenario)


if __name__ == "__main__":
    sys.exit(main())
