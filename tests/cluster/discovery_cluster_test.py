#!/usr/bin/env python3
"""Issue 5's new-user walk-through, by discovery token, against keeld.

1. A keeld with the discovery module (`--modules=kv,discovery`) serves discovery;
   `GET /new?size=3` gives a token URL.
2. Three members start with only `--discovery <url>` (no --initial-cluster), at once.
3. /v3/cluster/member/list on every member shows three named members with client URLs.
4. kill -9 the leader: a new leader is elected and writes continue.
5. Restart the dead member (same command line: its data dir makes it rejoin and ignore
   the token): it catches up (serializable reads equal the others').
6. A fourth member with the same token and --discovery-fallback exit is refused:
   "cluster is full", non-zero exit. (With the default, proxy, it becomes a proxy:
   proxy_test.py.)

Usage: discovery_cluster_test.py --binary build/bin/keeld [--base-port 29470]
Ports: base..base+5 for the members, base+8/base+9 for the discovery host.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as harness  # noqa: E402


class DiscoveryCluster(harness.Cluster):
    """Members bootstrapped from a discovery URL instead of --initial-cluster."""

    def __init__(self, binary, url, **kw):
        self.discovery_url = url
        super().__init__(binary, start=False, **kw)

    def args(self, i):
        m = self.members[i]
        return [self.binary, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--discovery", self.discovery_url] + self.extra_args


def member_list(url):
    req = urllib.request.Request(url + "/v3/cluster/member/list", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=2) as r:
        return json.loads(r.read())["members"]


def scenario(o, work, check, started):
    host_port = o.base_port + 8
    host_log = open(os.path.join(work, "discovery-host.log"), "wb")
    host = started(subprocess.Popen([o.binary, "--name", "disc", "--data-dir", os.path.join(work, "disc"),
                                     "--listen-client-urls", "http://127.0.0.1:%d" % host_port,
                                     "--advertise-client-urls", "http://127.0.0.1:%d" % host_port,
                                     "--listen-peer-urls", "http://127.0.0.1:%d" % (host_port + 1),
                                     "--modules=kv,discovery", "--shards", "1"],
                                    stdout=host_log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 10
    url = None
    while url is None:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/new?size=3" % host_port, timeout=1) as r:
                url = r.read().decode().strip()
        except OSError:
            if time.monotonic() > deadline or host.poll() is not None:
                raise RuntimeError("the discovery host did not start")
            time.sleep(0.1)
    check("GET /new?size=3 -> " + url, url.startswith("http://127.0.0.1:%d/discovery/" % host_port))

    c = started(DiscoveryCluster(o.binary, url, size=3, base_port=o.base_port, workdir=os.path.join(work, "members")))
    c.start(ready_timeout=30)
    check("three members started from one discovery URL formed a cluster", True)

    deadline = time.monotonic() + 5
    while True:
        lists = [member_list(c.url(i)) for i in range(3)]
        named = all(len(ms) == 3 and all(m.get("name") and m.get("clientURLs") for m in ms) for ms in lists)
        if named or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check("member list on every member: 3 named members with client URLs", named)
    names = sorted(m["name"] for m in lists[0])
    check("member names %r" % names, names == ["m0", "m1", "m2"])

    leader = c.leader()
    harness.kv_put(c.url(leader), "walk/a", "1", 2.0)
    c.kill9(leader)
    t0 = time.monotonic()
    new_leader, _ = c.wait_leader(exclude=leader, timeout=15)
    wrote = None
    while time.monotonic() - t0 < 15:
        try:
            harness.kv_put(c.url(new_leader), "walk/b", "2", 1.0)
            wrote = time.monotonic() - t0
            break
        except (harness.NotSent, harness.Unknown, harness.HttpError):
            time.sleep(0.05)
    check("kill -9 leader m%d: new leader m%d, first write %.2fs after the kill"
          % (leader, new_leader, wrote or -1),
          wrote is not None)
    survivor = next(i for i in range(3) if i not in (leader, new_leader))
    check("a follower reads the new write", harness.kv_get(c.url(survivor), "walk/b", 2.0)[0] == "2")

    c.restart(leader)
    took = c.wait_converged(["walk/a", "walk/b"], timeout=15)
    check("restarted m%d caught up in %.2fs" % (leader, took), True)
    with open(c.members[leader].log_path) as f:
        check("the restarted member ignored the token", "discovery token ignored" in f.read())

    extra = subprocess.run([o.binary, "--name", "m3", "--data-dir", os.path.join(work, "m3"),
                            "--listen-client-urls", "http://127.0.0.1:%d" % (o.base_port + 6),
                            "--listen-peer-urls", "http://127.0.0.1:%d" % (o.base_port + 7),
                            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % (o.base_port + 7),
                            "--discovery", url, "--discovery-fallback", "exit"],
                           capture_output=True, text=True, timeout=30)
    check("a fourth member is refused: %s" % (extra.stderr.strip().splitlines() or [""])[-1],
          extra.returncode != 0 and "cluster is full" in extra.stderr)


def main():
    return harness.run_scenario("keel-discovery-cluster-", 29470, scenario)


if __name__ == "__main__":
    sys.exit(main())
