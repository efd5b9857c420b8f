#!/usr/bin/env python3
"""etcd's own /metrics names on every member, as etcd 3.4 shows them.

Dashboards and alerts written for etcd (etcd-mixin's etcdNoLeader on
etcd_server_has_leader, etcdHighNumberOfLeaderChanges, etcdHighNumberOfFailedProposals,
etcdHighFsyncDurations on the WAL fsync histogram) must work against keel unchanged. This
script, run against three keeld members and against three etcd 3.4 members (which checks
the expectations themselves):

1. Scrapes every member: each metric of REQUIRED is there with etcd's TYPE; the WAL fsync
   histogram has etcd's 15 buckets (0.001 s doubling to 8.192 s, then +Inf), cumulative,
   +Inf equal to _count.
2. Every member has a leader; exactly one, the agreed leader, says it leads; nobody is a
   learner; every member has seen at least one leader change; etcd_server_id is the
   member's id as /v2/stats/self gives it; the version label is 3.4.x.
3. After 40 v2 writes through the leader: on every member the committed and applied
   proposals reach at least 40 more and meet, nothing is pending, the WAL fsync
   histogram and the WAL bytes grew (followers sync too), and the database sizes are
   above zero.
4. With both followers stopped (SIGSTOP), a write on the leader fails, and the leader's
   etcd_server_proposals_failed_total grows. With the leader and one follower stopped, a
   v2 write and a v3 put on the other follower fail, and that follower counts both.
5. After kill -9 of the leader, the two others see one more leader change, both have a
   leader, and exactly one of them leads. etcd's peer traffic (etcd_network_*): both count
   bytes sent to and received from each other, neither has an active connection to the
   dead member any more, and the new leader counts failed sends to it.

Usage: metrics_test.py --binary build/bin/keeld [--base-port 29500] [--workdir DIR]
Ports: base..base+5.
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as harness  # noqa: E402

# name -> TYPE, exactly as etcd 3.4.23 prints them.
REQUIRED = {
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_wal_write_bytes_total": "gauge",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_mvcc_db_total_size_in_use_in_bytes": "gauge",
    "etcd_server_has_leader": "gauge",
    "etcd_server_id": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_is_learner": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_failed_total": "counter",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_read_indexes_failed_total": "counter",
    "etcd_server_slow_read_indexes_total": "counter",
    "etcd_server_version": "gauge",
}
BUCKETS = ["0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128",
           "0.256", "0.512", "1.024", "2.048", "4.096", "8.192", "+Inf"]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


class Scrape:
    """One /metrics page: TYPEs and samples (name -> [(labels, value)])."""

    def __init__(self, text):
        self.types = {}
        self.samples = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
                continue
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            if not m:
                raise ValueError("unparsable /metrics line: %r" % line)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            self.samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))

    def value(self, name):
        got = self.samples.get(name)
        if not got:
            raise KeyError(name)
        return got[0][1]

    def labelled(self, name, key, value):
        """The value of the sample of `name` whose label `key` is `value`, or None."""
        for labels, v in self.samples.get(name, []):
            if labels.get(key) == value:
                return v
        return None

    def label(self, name, key):
        got = self.samples.get(name)
        if not got:
            raise KeyError(name)
        return got[0][0].get(key)


def scrape(url):
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        return Scrape(r.read().decode())


def answer_status(req, timeout):
    """The HTTP status of the answer to `req`, or None when none came in time."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def v2_put(url, key, value, timeout):
    data = urllib.parse.urlencode({"value": value}).encode()
    req = urllib.request.Request(url + "/v2/keys" + key, data=data, method="PUT")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    return answer_status(req, timeout)


def v3_put(url, key, value, timeout):
    body = json.dumps({"key": harness.b64e(key), "value": harness.b64e(value)}).encode()
    return answer_status(urllib.request.Request(url + "/v3/kv/put", data=body, method="POST"), timeout)


def self_id(url):
    with urllib.request.urlopen(url + "/v2/stats/self", timeout=5) as r:
        return json.loads(r.read())["id"]


def check_shape(check, s, who):
    for name, kind in REQUIRED.items():
        check("%s: %s is a %s" % (who, name, kind), s.types.get(name) == kind, "TYPE %s" % s.types.get(name))
    hist = "etcd_disk_wal_fsync_duration_seconds"
    buckets = s.samples.get(hist + "_bucket", [])
    check("%s: the fsync histogram has etcd's buckets" % who, [b[0].get("le") for b in buckets] == BUCKETS,
          str([b[0].get("le") for b in buckets]))
    counts = [b[1] for b in buckets]
    check("%s: its buckets are cumulative" % who, counts == sorted(counts), str(counts))
    check("%s: +Inf is _count" % who, bool(counts) and counts[-1] == s.value(hist + "_count"))
    check("%s: _sum is there" % who, hist + "_sum" in s.samples)


def scenario(o, work, check, started):
    extra = ["--enable-v2"] if os.path.basename(o.binary) == "etcd" else []
    c = started(harness.Cluster(o.binary, size=3, base_port=o.base_port, workdir=os.path.join(work, "members"),
                                extra_args=extra))
    leader, _ = c.wait_leader()
    followers = [i for i in range(3) if i != leader]

    # 1, 2: shape and the leader.
    before = [scrape(c.url(i)) for i in range(3)]
    for i, s in enumerate(before):
        who = "m%d" % i
        check_shape(check, s, who)
        check("%s: has a leader" % who, s.value("etcd_server_has_leader") == 1)
        check("%s: leads iff it is the agreed leader" % who,
              s.value("etcd_server_is_leader") == (1 if i == leader else 0))
        check("%s: is no learner" % who, s.value("etcd_server_is_learner") == 0)
        check("%s: has seen a leader change" % who, s.value("etcd_server_leader_changes_seen_total") >= 1)
        check("%s: etcd_server_id is its member id" % who,
              s.label("etcd_server_id", "server_id") == self_id(c.url(i)),
              "%s / %s" % (s.label("etcd_server_id", "server_id"), self_id(c.url(i))))
        check("%s: the version label is 3.4.x" % who,
              (s.label("etcd_server_version", "server_version") or "").startswith("3.4."))

    # 3: writes move the proposals, the WAL histogram and the sizes on every member.
    for k in range(40):
        check("v2 write %d answered 201/200" % k, v2_put(c.url(leader), "/metrics/k%d" % k, "v%d" % k, 10) in (200, 201))
    for i in range(3):
        who = "m%d" % i
        deadline = time.monotonic() + 10
        while True:
            s = scrape(c.url(i))
            committed = s.value("etcd_server_proposals_committed_total")
            applied = s.value("etcd_server_proposals_applied_total")
            settled = (applied == committed and s.value("etcd_server_proposals_pending") == 0 and
                       applied >= before[i].value("etcd_server_proposals_applied_total") + 40)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        check("%s: 40 more proposals committed and applied, none pending" % who, settled,
              "committed %d applied %d (before %d) pending %d" % (
                  committed, applied, before[i].value("etcd_server_proposals_applied_total"),
                  s.value("etcd_server_proposals_pending")))
        grew = s.value("etcd_disk_wal_fsync_duration_seconds_count") > before[i].value(
            "etcd_disk_wal_fsync_duration_seconds_count")
        check("%s: the WAL fsync histogram counted the syncs" % who, grew)
        check("%s: the fsync durations add up to more than zero" % who,
              s.value("etcd_disk_wal_fsync_duration_seconds_sum") > 0)
        check("%s: WAL bytes grew" % who,
              s.value("etcd_disk_wal_write_bytes_total") > before[i].value("etcd_disk_wal_write_bytes_total"))
        check("%s: database sizes are above zero" % who,
              s.value("etcd_mvcc_db_total_size_in_bytes") > 0 and
              s.value("etcd_mvcc_db_total_size_in_use_in_bytes") > 0)
        check_shape(check, s, who + " after writes")

    # 4: a write the leader cannot commit counts as a failed proposal.
    failed_before = scrape(c.url(leader)).value("etcd_server_proposals_failed_total")
    for f in followers:
        c.stop(f)
    answer = v2_put(c.url(leader), "/metrics/lost", "x", 30)
    check("a write on a leader without a quorum fails", answer not in (200, 201), str(answer))
    failed_after = scrape(c.url(leader)).value("etcd_server_proposals_failed_total")
    check("the leader counted the failed proposal", failed_after > failed_before,
          "%d -> %d" % (failed_before, failed_after))
    for f in followers:
        c.cont(f)
    leader, _ = c.wait_leader(timeout=30)

    # 4b: on a follower cut off from the leader and the other follower, its own
    # clients' writes fail and it counts them (v2 relayed, v3 forwarded).
    lonely, other = [i for i in range(3) if i != leader]
    failed_before = scrape(c.url(lonely)).value("etcd_server_proposals_failed_total")
    c.stop(leader)
    c.stop(other)
    answer2 = v2_put(c.url(lonely), "/metrics/lonely2", "x", 30)
    answer3 = v3_put(c.url(lonely), "/metrics/lonely3", "x", 30)
    check("a v2 write on a follower alone fails", answer2 not in (200, 201), str(answer2))
    check("a v3 put on a follower alone fails", answer3 != 200, str(answer3))
    failed_after = scrape(c.url(lonely)).value("etcd_server_proposals_failed_total")
    check("the follower counted both failed proposals", failed_after >= failed_before + 2,
          "%d -> %d" % (failed_before, failed_after))
    c.cont(leader)
    c.cont(other)
    leader, _ = c.wait_leader(timeout=30)

    # 5: kill -9 of the leader: one more leader change on the others.
    others = [i for i in range(3) if i != leader]
    ids = {i: self_id(c.url(i)) for i in range(3)}
    changes = {i: scrape(c.url(i)).value("etcd_server_leader_changes_seen_total") for i in others}
    dead = leader
    c.kill9(leader)
    new_leader, _ = c.wait_leader(exclude=leader, timeout=30)
    deadline = time.monotonic() + 10
    while True:
        after = {i: scrape(c.url(i)) for i in others}
        leading = sum(after[i].value("etcd_server_is_leader") for i in others)
        done = leading == 1 and all(after[i].value("etcd_server_has_leader") == 1 for i in others)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check("after kill -9 of the leader exactly one survivor leads", leading == 1, str(leading))
    for i in others:
        who = "m%d" % i
        check("%s: has a leader again" % who, after[i].value("etcd_server_has_leader") == 1)
        check("%s: saw one more leader change" % who,
              after[i].value("etcd_server_leader_changes_seen_total") > changes[i],
              "%d -> %d" % (changes[i], after[i].value("etcd_server_leader_changes_seen_total")))

    # etcd_network_*: traffic between the survivors, none with the dead member.
    for i in others:
        peer = [j for j in others if j != i][0]
        who = "m%d" % i
        deadline = time.monotonic() + 15
        while True:
            s = scrape(c.url(i))
            to_dead = s.labelled("etcd_network_active_peers", "Remote", ids[dead])
            failures = s.labelled("etcd_network_peer_sent_failures_total", "To", ids[dead]) or 0
            traffic = ((s.labelled("etcd_network_peer_sent_bytes_total", "To", ids[peer]) or 0) > 0 and
                       (s.labelled("etcd_network_peer_received_bytes_total", "From", ids[peer]) or 0) > 0)
            # (keel renders these every Raft tick: they may lag the election a little)
            done = to_dead == 0 and traffic and (i != new_leader or failures > 0)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for name, kind in (("etcd_network_active_peers", "gauge"),
                           ("etcd_network_peer_sent_bytes_total", "counter"),
                           ("etcd_network_peer_received_bytes_total", "counter")):
            check("%s: %s is a %s" % (who, name, kind), s.types.get(name) == kind, str(s.types.get(name)))
        check("%s: sent bytes to its live peer" % who,
              (s.labelled("etcd_network_peer_sent_bytes_total", "To", ids[peer]) or 0) > 0)
        check("%s: received bytes from its live peer" % who,
              (s.labelled("etcd_network_peer_received_bytes_total", "From", ids[peer]) or 0) > 0)
        check("%s: an active connection to its live peer" % who,
              s.labelled("etcd_network_active_peers", "Remote", ids[peer]) == 1)
        check("%s: no active connection to the dead member" % who, to_dead == 0, str(to_dead))
        if i == new_leader:
            check("%s (the new leader): failed sends to the dead member" % who, failures > 0, str(failures))
            check("%s: etcd_network_peer_sent_failures_total is a counter" % who,
                  s.types.get("etcd_network_peer_sent_failures_total") == "counter")


def main():
    return harness.run_scenario("keel-metrics-", 29500, scenario)


if __name__ == "__main__":
    sys.exit(main())
