#!/usr/bin/env python3
"""DNS SRV bootstrap (--discovery-srv) and --discovery-proxy, against real servers.

Runs in a private mount namespace (unshare -m) where /etc/resolv.conf names a dnsmasq
on 127.0.0.77:53 that this test starts, so the system resolver keeld uses answers the
test's SRV records and nothing outside the test is touched.

1. Three keelds started with --discovery-srv keel.test (records _etcd-server._tcp with
   targets m1..m3.keel.test) form one cluster: each names itself, the others are taken
   from the records, and every member lists the three peer URLs.
2. Three real etcd 3.4 members given the --initial-cluster those records stand for and
   the same --initial-cluster-token have the same member ids and cluster id as keel's
   (etcd 3.4.23's own SRV bootstrap cannot use _etcd-server records: see
   modules/discovery/README.md).
3. Refusals: a keeld whose advertised URL is not among the records ("cannot find local
   etcd member"); a domain without records ("too many errors querying DNS SRV records");
   records under _etcd-server-ssl (TLS peers, which keel does not speak);
   --discovery-srv-name picks _etcd-server-<name>._tcp.
4. keelctl --discovery-srv (etcdctl's flag) finds the members from _etcd-client records,
   for the cluster verbs, the v3 verbs and the v2 verbs.
5. --discovery-proxy: a keeld bootstrapping from a discovery token through tinyproxy
   reaches the service only through it (tinyproxy's log shows the token's requests);
   an ftp:// proxy is refused.
6. A silent DNS server does not stall the client port: a keeld proxy whose member URL
   is a name that only a server that never answers could resolve keeps answering its
   own /metrics at once, on every shard, while its lookups wait (they run off the
   shards, reactor/src/net.cc).

Usage: srv_test.py <keeld> [<etcd>]
Ports: 29670-29699. Needs root (namespaces, port 53), dnsmasq and tinyproxy
(scripts/install-deps); exits 77 (skipped) without them.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/bin/keeld"
ETCD = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/etcd"
DNS_IP = "127.0.0.77"
SILENT_DNS_IP = "127.0.0.78"  # takes queries for silent.test and never answers
TOKEN = "srv-test-token"
KEEL_PEERS = [29671, 29672, 29673]
KEEL_CLIENTS = [29681, 29682, 29683]
procs = []
check = keeltest.Checks()


def enter_namespace():
    """Re-runs this script in a private mount namespace with its own resolv.conf."""
    if os.environ.get("KEEL_TEST_SRV_NS") == "1":
        return
    if os.geteuid() != 0:
        keeltest.skip("needs root (a mount namespace and port 53)")
    for tool in ("unshare", "mount", "/usr/sbin/dnsmasq", "tinyproxy"):
        if not shutil.which(tool):
            keeltest.skip("%s is not installed (scripts/install-deps)" % tool)
    env = dict(os.environ, KEEL_TEST_SRV_NS="1")
    rc = subprocess.call(["unshare", "--mount", "--propagation", "private", sys.executable,
                          os.path.abspath(__file__)] + sys.argv[1:], env=env)
    sys.exit(rc)


def start(args, log_path):
    log = open(log_path, "wb")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    p.log_path = log_path
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        keeltest.stop(p)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def get_json(url, body=None, timeout=2):
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
        return json.loads(r.read())


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # noqa: BLE001 (not up yet)
            pass
        time.sleep(0.1)
    return None


def dnsmasq(work, records):
    """Starts dnsmasq on DNS_IP:53 answering `records` (dnsmasq option values)."""
    args = ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--port=53", "--listen-address=" + DNS_IP,
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
            "--user=root", "--log-facility=-"] + records
    p = start(args, os.path.join(work, "dnsmasq.log"))
    if not wait_for(lambda: subprocess.run(["getent", "hosts", "m1.keel.test"], capture_output=True).returncode == 0, 5):
        raise RuntimeError("dnsmasq did not answer: " + read(p.log_path)[-500:])
    return p


def srv_records():
    out = []
    for i, port in enumerate(KEEL_PEERS, 1):
        out.append("--srv-host=_etcd-server._tcp.keel.test,m%d.keel.test,%d,0,10" % (i, port))
        out.append("--host-record=m%d.keel.test,127.0.0.1" % i)
    # Client records for keelctl --discovery-srv (etcdctl's flag).
    for i, port in enumerate(KEEL_CLIENTS, 1):
        out.append("--srv-host=_etcd-client._tcp.keel.test,m%d.keel.test,%d,0,10" % (i, port))
    # --discovery-srv-name alt: one member, a different service name.
    out.append("--srv-host=_etcd-server-alt._tcp.alt.test,m1.keel.test,%d" % KEEL_PEERS[0])
    # Names that only a server that never answers could resolve (scenario 6).
    out.append("--server=/silent.test/" + SILENT_DNS_IP)
    # TLS peers only.
    out.append("--srv-host=_etcd-server-ssl._tcp.tls.test,m1.keel.test,%d" % KEEL_PEERS[0])
    out.append("--srv-host=_etcd-server._tcp.tls.test,m1.keel.test,%d" % KEEL_PEERS[0])
    return out


def member_args(binary, i, work, extra):
    name = "m%d" % (i + 1)
    return [binary, "--name", name, "--data-dir", os.path.join(work, name),
            "--listen-client-urls", "http://127.0.0.1:%d" % KEEL_CLIENTS[i],
            "--advertise-client-urls", "http://127.0.0.1:%d" % KEEL_CLIENTS[i],
            "--listen-peer-urls", "http://127.0.0.1:%d" % KEEL_PEERS[i],
            "--initial-advertise-peer-urls", "http://%s.keel.test:%d" % (name, KEEL_PEERS[i]),
            "--initial-cluster-token", TOKEN] + extra


def cluster_ids_keel(work):
    members = [start(member_args(KEELD, i, work, ["--discovery-srv", "keel.test"]),
                     os.path.join(work, "keel-m%d.log" % (i + 1))) for i in range(3)]
    listed = wait_for(lambda: get_json("http://127.0.0.1:%d/v3/cluster/member/list" % KEEL_CLIENTS[0], {}), 15)
    healthy = wait_for(lambda: all(get_json("http://127.0.0.1:%d/health" % c)["health"] == "true"
                                   for c in KEEL_CLIENTS), 15)
    check("three keelds from --discovery-srv keel.test are healthy",
          healthy, [read(m.log_path)[-300:] for m in members])
    listed = wait_for(lambda: get_json("http://127.0.0.1:%d/v3/cluster/member/list" % KEEL_CLIENTS[1], {}), 5)
    urls = sorted(u for m in (listed or {}).get("members", []) for u in m.get("peerURLs", []))
    want = sorted("http://m%d.keel.test:%d" % (i + 1, p) for i, p in enumerate(KEEL_PEERS))
    check("member list has the records' targets as peer URLs", urls == want, urls)
    log = read(members[0].log_path)
    check("m1 names itself and takes the others from the records",
          "DNS SRV records of keel.test gave --initial-cluster" in log and "m1=http://m1.keel.test:%d" % KEEL_PEERS[0] in log,
          log[:400])
    named = wait_for(lambda: sorted(m.get("name") for m in get_json(
        "http://127.0.0.1:%d/v3/cluster/member/list" % KEEL_CLIENTS[2], {})["members"]) == ["m1", "m2", "m3"], 10)
    check("each member publishes its own name", named)
    keelctl_checks()
    status = get_json("http://127.0.0.1:%d/v3/maintenance/status" % KEEL_CLIENTS[0], {})
    ids = sorted(int(m["ID"]) for m in listed["members"]) if listed else []
    for m in members:
        keeltest.stop(m)
    return ids, int(status["header"]["cluster_id"])


def keelctl_checks():
    """keelctl takes etcdctl's --discovery-srv: the endpoints are the _etcd-client records."""
    keelctl = os.path.join(os.path.dirname(KEELD), "keelctl")
    def run(args, env=None):
        return subprocess.run([keelctl] + args, capture_output=True, text=True, timeout=20,
                              env=dict(os.environ, **(env or {})))
    out = run(["--discovery-srv", "keel.test", "member", "list"])
    check("keelctl --discovery-srv keel.test member list: 3 members",
          out.returncode == 0 and len(out.stdout.strip().splitlines()) == 3 and "m1.keel.test" in out.stdout,
          (out.returncode, out.stdout, out.stderr))
    out = run(["-d", "keel.test", "put", "srv/k", "through-srv"])
    got = run(["--discovery-srv", "keel.test", "get", "srv/k"])
    check("keelctl -d keel.test put, then get, over the native frames",
          out.returncode == 0 and got.stdout.split() == ["srv/k", "through-srv"], (out.stderr, got.stdout, got.stderr))
    out = run(["--discovery-srv", "keel.test", "set", "/srv/v2", "two"], env={"ETCDCTL_API": "2"})
    got = get_json("http://127.0.0.1:%d/v2/keys/srv/v2" % KEEL_CLIENTS[2])
    check("ETCDCTL_API=2 keelctl --discovery-srv set",
          out.returncode == 0 and got["node"]["value"] == "two", (out.returncode, out.stderr))
    out = run(["--discovery-srv", "none.test", "endpoint", "health"])
    check("keelctl --discovery-srv of a domain without records says so",
          out.returncode != 0 and "no _etcd-client records for none.test" in out.stderr, out.stderr.strip())


def cluster_ids_etcd(work):
    # etcd 3.4.23 cannot bootstrap from _etcd-server records alone: GetDNSClusterNames
    # keeps the http records only when their lookup fails, and fails when the
    # _etcd-server-ssl lookup does (modules/discovery/README.md). So etcd is given the
    # --initial-cluster those records stand for; the ids depend on the URLs and the
    # token only, not on how the members were found.
    initial = ",".join("m%d=http://m%d.keel.test:%d" % (i + 1, i + 1, p) for i, p in enumerate(KEEL_PEERS))
    members = []
    for i in range(3):
        name = "m%d" % (i + 1)
        members.append(start([ETCD, "--name", name, "--data-dir", os.path.join(work, "etcd-" + name),
                              "--listen-client-urls", "http://127.0.0.1:%d" % KEEL_CLIENTS[i],
                              "--advertise-client-urls", "http://127.0.0.1:%d" % KEEL_CLIENTS[i],
                              "--listen-peer-urls", "http://127.0.0.1:%d" % KEEL_PEERS[i],
                              "--initial-advertise-peer-urls", "http://%s.keel.test:%d" % (name, KEEL_PEERS[i]),
                              "--initial-cluster-token", TOKEN, "--initial-cluster", initial],
                             os.path.join(work, "etcd-%s.log" % name)))
    healthy = wait_for(lambda: all(get_json("http://127.0.0.1:%d/health" % c)["health"] == "true"
                                   for c in KEEL_CLIENTS), 20)
    check("three etcd 3.4 members on the records' URLs are healthy",
          healthy, [read(m.log_path)[-300:] for m in members])
    listed = get_json("http://127.0.0.1:%d/v3/cluster/member/list" % KEEL_CLIENTS[0], {}) if healthy else {}
    ids = sorted(int(m["ID"]) for m in listed.get("members", []))
    cluster = int(listed["header"]["cluster_id"]) if listed else 0
    for m in members:
        keeltest.stop(m)
    return ids, cluster


def refusals(work):
    def refused(extra, name, want):
        args = member_args(KEELD, 0, os.path.join(work, "refused-" + name), extra)
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
        check("refused: " + name,
              out.returncode != 0 and want in out.stderr,
              (out.returncode, out.stderr.strip().splitlines()[-1:] if out.stderr else ""))

    # m1's advertised URL with a port that is in no record.
    args = member_args(KEELD, 0, os.path.join(work, "refused-stranger"), ["--discovery-srv", "keel.test"])
    args[args.index("--initial-advertise-peer-urls") + 1] = "http://m1.keel.test:29699"
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    check("refused: an advertised URL in no record",
          out.returncode != 0 and 'cannot find local etcd member "m1" in SRV records' in out.stderr,
          out.stderr.strip().splitlines()[-1:])
    refused(["--discovery-srv", "none.test"], "a domain without records", "too many errors querying DNS SRV records")
    refused(["--discovery-srv", "tls.test"], "_etcd-server-ssl records (TLS peers)", "speak TLS to peers")
    # --discovery-srv-name alt: _etcd-server-alt._tcp.alt.test lists m1 alone, so m1
    # starts as a one-member cluster.
    p = start(member_args(KEELD, 0, os.path.join(work, "alt"), ["--discovery-srv", "alt.test",
                                                                 "--discovery-srv-name", "alt"]),
              os.path.join(work, "alt.log"))
    ok = wait_for(lambda: get_json("http://127.0.0.1:%d/health" % KEEL_CLIENTS[0])["health"] == "true", 10)
    check("--discovery-srv-name alt reads _etcd-server-alt._tcp",
          ok and "m1=http://m1.keel.test:%d" % KEEL_PEERS[0] in read(p.log_path), read(p.log_path)[-300:])
    keeltest.stop(p)


def discovery_proxy(work):
    host = start([KEELD, "--name", "disco", "--data-dir", os.path.join(work, "disco"), "--modules=kv,discovery",
                  "--listen-client-urls", "http://127.0.0.1:29690", "--advertise-client-urls", "http://127.0.0.1:29690",
                  "--listen-peer-urls", "http://127.0.0.1:29691"], os.path.join(work, "disco.log"))
    token_url = wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:29690/new?size=1", timeout=2).read().decode(), 10)
    check("a discovery token from keeld's service", bool(token_url), read(host.log_path)[-300:])
    conf = os.path.join(work, "tinyproxy.conf")
    proxy_log = os.path.join(work, "tinyproxy.log")
    with open(conf, "w") as f:
        f.write("Port 29692\nListen 127.0.0.1\nTimeout 60\nLogFile \"%s\"\nLogLevel Info\nMaxClients 20\n"
                "Allow 127.0.0.1\n" % proxy_log)
    tiny = start(["tinyproxy", "-d", "-c", conf], os.path.join(work, "tinyproxy.out"))
    time.sleep(0.3)
    member = start([KEELD, "--name", "solo", "--data-dir", os.path.join(work, "solo"),
                    "--listen-client-urls", "http://127.0.0.1:29693", "--advertise-client-urls", "http://127.0.0.1:29693",
                    "--listen-peer-urls", "http://127.0.0.1:29694",
                    "--initial-advertise-peer-urls", "http://127.0.0.1:29694",
                    "--discovery", token_url, "--discovery-proxy", "127.0.0.1:29692"], os.path.join(work, "solo.log"))
    ok = wait_for(lambda: get_json("http://127.0.0.1:29693/health")["health"] == "true", 15)
    token_path = token_url[token_url.index("/discovery/"):]
    seen = read(proxy_log) if os.path.exists(proxy_log) else ""
    check("a member bootstraps from the token through --discovery-proxy", ok, read(member.log_path)[-300:])
    check("tinyproxy carried the token's requests", token_path in seen, seen[-400:])
    keeltest.stop(member)
    out = subprocess.run([KEELD, "--name", "bad", "--data-dir", os.path.join(work, "bad"),
                          "--listen-client-urls", "http://127.0.0.1:29695",
                          "--listen-peer-urls", "http://127.0.0.1:29696",
                          "--discovery", token_url, "--discovery-proxy", "ftp://127.0.0.1:29692"],
                         capture_output=True, text=True, timeout=30)
    check("an ftp:// proxy is refused",
          out.returncode != 0 and "invalid proxy address" in out.stderr, out.stderr.strip().splitlines()[-1:])
    keeltest.stop(tiny)
    keeltest.stop(host)


def silent_dns(work):
    """A proxy whose member's name waits on a silent DNS server still answers at once."""
    import socket
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((SILENT_DNS_IP, 53))  # receives the forwarded queries, answers none
    started = time.monotonic()
    probe = subprocess.run(["getent", "hosts", "m.silent.test"], capture_output=True, timeout=30)
    waited = time.monotonic() - started
    check("the system resolver waits on silent.test", probe.returncode != 0 and waited >= 1.0,
          "getent returned %d after %.2f s" % (probe.returncode, waited))
    p = start([KEELD, "--proxy", "on", "--name", "silent", "--data-dir", os.path.join(work, "silent"),
               "--listen-client-urls", "http://127.0.0.1:29697",
               "--initial-cluster", "m=http://m.silent.test:29698"], os.path.join(work, "silent.log"))
    up = wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:29697/metrics", timeout=5).status == 200, 10)
    check("the proxy answers /metrics", up, read(p.log_path)[-300:])
    # Every request on a new connection, so that they land on both shards (SO_REUSEPORT);
    # the proxy retries /members every second while it knows no endpoint, so these 6 s
    # span several lookups, each held ~2 s by the resolver.
    slowest = 0.0
    failures = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            urllib.request.urlopen("http://127.0.0.1:29697/metrics", timeout=5).read()
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.05)
    check("every /metrics answered within 0.5 s while lookups wait", not failures and slowest < 0.5,
          "slowest %.3f s, failures %s" % (slowest, failures[:2]))
    keeltest.stop(p)
    silent.close()


def main():
    enter_namespace()
    work = tempfile.mkdtemp(prefix="keel-srv-")
    try:
        resolv = os.path.join(work, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:1 attempts:2\n" % DNS_IP)
        subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
        dnsmasq(work, srv_records())
        keel_ids, keel_cluster = cluster_ids_keel(work)
        if os.path.exists(ETCD):
            etcd_ids, etcd_cluster = cluster_ids_etcd(work)
            check("member ids equal etcd 3.4's",
                  keel_ids == etcd_ids and len(keel_ids) == 3,
                  "keel %s etcd %s" % ([hex(i) for i in keel_ids], [hex(i) for i in etcd_ids]))
            check("cluster id equals etcd 3.4's",
                  keel_cluster == etcd_cluster, "keel %x etcd %x" % (keel_cluster, etcd_cluster))
        else:
            print("skip etcd comparison: %s is missing" % ETCD)
        refusals(work)
        discovery_proxy(work)
        silent_dns(work)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        check("no exception", False, repr(e))
    finally:
        stop_all()
        if check.failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("logs kept in " + work)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
