#!/usr/bin/env python3
"""Bad input on a keeld member's peer port is verified, refused and logged, and changes
nothing: the leader, the term and the data stay as they were.

Sends, with peer_probe, to the leader's peer port: garbage bytes, a frame with a corrupt
CRC, a heartbeat from another cluster id, an append carrying an entry of a term above the
message's (a forged term), a message addressed to another member, and a frame type the
peer port does not serve. Each connection must be closed (after an error frame where the
stream was not frames), the leader's log must name each refusal, and afterwards every
member reports the same leader and term as before, reads return the data written before,
and writes continue.

Then an entry no keeld can decode (what a newer keeld's entry is to an older one), sent
to a follower as if from the leader and committed by the same message: the follower must
stop taking part, saying which entry and why, rather than skip it and diverge; the other
two members go on taking writes.

Usage: peer_input_test.py --binary build/bin/keeld --probe build/tests/cluster/peer_probe
Ports: base..base+5.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as harness  # noqa: E402

KINDS = ["garbage", "corrupt-crc", "other-cluster", "forged-term", "misaddressed", "unknown-type"]
# What the member's log says for each (keel/raft/wire.h and the frame decoder's messages).
LOGGED = {
    "garbage": "refused a frame",
    "corrupt-crc": "refused a frame",
    "other-cluster": "from cluster",
    "forged-term": "an entry of term",
    "misaddressed": "addressed to",
    "unknown-type": "keel.wire.EchoRequest",  # refused by the frame verifier before dispatch
}


def unknown_entry(c, probe, base_port, leader, follower, cluster_id, leader_id, check):
    """A committed entry the member cannot decode stops it; it is never skipped."""
    other = next(i for i in range(3) if i not in (leader, follower))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # idle: the follower holds every entry
        st = c.status(other)
        if st["raftIndex"] == c.status(leader)["raftIndex"]:
            break
        time.sleep(0.1)
    out = subprocess.run([probe, "127.0.0.1", str(base_port + 2 * other + 1), "unknown-entry", str(cluster_id),
                          str(leader_id), str(st["header"]["member_id"]), str(st["raftTerm"]), str(st["raftIndex"])],
                         capture_output=True, text=True, timeout=10)
    check("unknown-entry: sent (%s)" % (out.stdout.strip() or out.stderr.strip()), out.returncode == 0)
    want = "committed entry %d (term %s) cannot be applied: not a kv request" % (int(st["raftIndex"]) + 1, st["raftTerm"])
    log = ""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "stopped taking part" not in log:
        time.sleep(0.1)
        with open(c.members[other].log_path) as f:
            log = f.read()
    check("unknown-entry: the follower names the entry it cannot apply (%r)" % want, want in log)
    check("unknown-entry: the follower stops", "this member stopped taking part in the cluster: " + want in log)
    try:
        harness.kv_put(c.url(other), "p/c", "3", 3.0)
        refused = False
    except Exception:  # noqa: BLE001 (refused: what is wanted)
        refused = True
    check("unknown-entry: the stopped follower refuses writes", refused)
    harness.kv_put(c.url(leader), "p/d", "4", 5.0)
    check("unknown-entry: the other two go on taking writes", harness.kv_get(c.url(follower), "p/d", 5.0)[0] == "4")


def relay_to_a_silent_leader(c, leader, follower, check):
    """A v2 write on a follower is relayed to the leader over the peer port; a leader that
    goes silent (SIGSTOP: its kernel still holds the connection, nothing answers) must not
    hold the request longer than etcd's request timeout (5 s + 2 elections) and a little.
    The answer is etcd's for a timeout: 500, errorCode 300 (Raft Internal Error)."""
    import urllib.error
    import urllib.request
    c.stop(leader)
    started = time.monotonic()
    try:
        req = urllib.request.Request(c.url(follower) + "/v2/keys/relay", data=b"value=x", method="PUT",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=30) as r:
            got = r.status
    except urllib.error.HTTPError as e:
        got = e.code
        try:
            got = (e.code, json.loads(e.read()).get("errorCode"))
        except ValueError:
            pass
    except Exception as e:  # noqa: BLE001
        got = repr(e)
    took = time.monotonic() - started
    c.cont(leader)
    check("a v2 write relayed to a silent leader is answered 500 / errorCode 300 within 12 s (got %s after %.1f s)"
          % (got, took), got == (500, 300) and took < 12)


def scenario(o, work, check, started):
    c = started(harness.Cluster(o.binary, size=3, base_port=o.base_port, workdir=os.path.join(work, "members")))
    leader, _ = c.wait_leader()
    harness.kv_put(c.url(leader), "p/a", "1", 5.0)
    before = [c.status(i) for i in range(3)]
    cluster_id = before[leader]["header"]["cluster_id"]
    leader_id = before[leader]["header"]["member_id"]
    follower = next(i for i in range(3) if i != leader)
    follower_id = before[follower]["header"]["member_id"]
    term = before[leader]["raftTerm"]
    peer_port = o.base_port + 2 * leader + 1
    for kind in KINDS:
        out = subprocess.run([o.probe, "127.0.0.1", str(peer_port), kind, str(cluster_id), str(follower_id),
                              str(leader_id), str(term)], capture_output=True, text=True, timeout=10)
        said = out.stdout.strip()
        check("%s: the connection was closed (%s)" % (kind, said or out.stderr.strip()),
              out.returncode == 0 and (said == "closed" or said.startswith("error-frame")))
    time.sleep(0.3)
    with open(c.members[leader].log_path) as f:
        log = f.read()
    for kind in KINDS:
        check("%s: the refusal is logged (%r)" % (kind, LOGGED[kind]), LOGGED[kind] in log)
    after = [c.status(i) for i in range(3)]
    check("every member still follows the same leader", all(a["leader"] == before[leader]["leader"] for a in after))
    check("the term is unchanged (%s)" % term, all(a["raftTerm"] == term for a in after))
    check("the data is unchanged", all(harness.kv_get(c.url(i), "p/a", 5.0)[0] == "1" for i in range(3)))
    harness.kv_put(c.url(follower), "p/b", "2", 5.0)
    check("writes continue", harness.kv_get(c.url(leader), "p/b", 5.0)[0] == "2")
    unknown_entry(c, o.probe, o.base_port, leader, follower, cluster_id, leader_id, check)
    relay_to_a_silent_leader(c, leader, follower, check)


def main():
    return harness.run_scenario("keel-peer-input-", 29460, scenario,
                                add_arguments=lambda ap: ap.add_argument("--probe", required=True))


if __name__ == "__main__":
    sys.exit(main())
