#!/usr/bin/env python3
"""Network-partition test: 3 members behind peer proxies, a concurrent put/get workload.

  python3 tests/cluster/partition_test.py --binary etcd
  python3 tests/cluster/partition_test.py --binary build/bin/keeld

Every member advertises a proxy in front of its peer port (peerproxy.py); the proxies
attribute each connection to the member that dialled it and block links between
members.  Clients talk to the members' client URLs directly, never through a proxy.

One cluster, one continuous workload:
  a. the leader is partitioned from the majority (every connection between it and the
     two others, in both directions, blackholed) for --partition-seconds (and at least
     0.5 s past the first probe ack): the majority must agree on a new leader and
     acknowledge a put (the test's own probe puts to key part/probe, sent to the
     majority side) while the partition holds; heal; the old leader must rejoin
     (all three name the same leader) and, with the workload paused, serve the same
     values and revision as everyone (serializable reads).
  b. a follower is partitioned away (connections dropped/refused, same duration rule):
     probe puts to the majority are acknowledged while it holds; heal;
     it catches up.
  c. --random-seconds of random faults (isolate a member, one-sided isolation of a
     member's inbound connections, or one blocked direction between two members, each
     blackhole or drop; or 20-300 ms of delay per chunk between two members) with heals
     in between.
Then: final linearizable reads, lincheck on the whole history (must be linearizable)
and no acknowledged put lost.

Exit 0 pass, 1 fail, 77 skip (binary not found).
Ports: base..base+8 (client base+2i, proxy base+2i+1, real peer port base+6+i).
"""

import argparse
import json
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as cl  # noqa: E402

T0 = time.monotonic()


def log(msg):
    sys.stdout.write("[%7.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


class Failure(Exception):
    pass


EVENTS = []


def event(msg):
    """A fault action: logged, and kept with its monotonic_ns (the history's clock)."""
    EVENTS.append({"t_ns": time.monotonic_ns(), "event": msg})
    log(msg)


def require(cond, msg):
    if not cond:
        raise Failure(msg)


def first_ack_put(w, t_ns, members):
    """(return_ns, member) of the earliest acknowledged put invoked at or after t_ns on
    one of `members`, or None."""
    best = None
    for e in w.history():
        if (e["op"] == "put" and e["call_ns"] >= t_ns and e.get("output") == "ok"
                and e["member"] in members and (best is None or e["return_ns"] < best[0])):
            best = (e["return_ns"], e["member"])
    return best


def wait_ack_put(w, t_ns, members, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = first_ack_put(w, t_ns, members)
        if r is not None:
            return r
        time.sleep(0.05)
    return None


PROBE_KEY = "part/probe"


class Prober:
    """Puts of unique values to PROBE_KEY, sent by the test itself to chosen members
    (the majority side of a partition), recorded like workload ops so lincheck checks
    that key too. Makes "writes continue on the majority side" independent of where
    the workload's clients happen to send."""

    def __init__(self):
        self.hist = []
        self.seq = 0

    def until_ack(self, c, members, deadline_ns, timeout=0.5):
        """Put to members round-robin until one acknowledges (returns (return_ns, idx))
        or deadline_ns passes (returns None)."""
        k = 0
        while time.monotonic_ns() < deadline_ns:
            i = members[k % len(members)]
            k += 1
            self.seq += 1
            val = "probe-%d" % self.seq
            e = {"client": "probe", "op": "put", "key": PROBE_KEY, "input": val,
                 "output": None, "member": i, "call_ns": time.monotonic_ns()}
            try:
                cl.kv_put(c.url(i), PROBE_KEY, val, timeout)
                e["return_ns"] = time.monotonic_ns()
                e["output"] = "ok"
            except (cl.NotSent, cl.Unknown, cl.HttpError) as err:
                t = time.monotonic_ns()
                e["error"] = str(err)[:200]
                if cl.put_failure_is_definite(err):
                    e["return_ns"] = t
                    e["failed"] = True
                else:
                    e["return_ns"] = None
                    e["gave_up_ns"] = t
            self.hist.append(e)
            if e.get("output") == "ok":
                return e["return_ns"], i
            time.sleep(0.02)
        return None


def leader_of(c, i, timeout=0.5):
    s = c.status(i, timeout)
    if s is None:
        return None
    return str(int(s.get("leader") or 0))


def wait_all_agree(c, timeout):
    """Every member names the same leader, which names itself. Returns (idx, seconds)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        names = [leader_of(c, i) for i in range(c.size)]
        if None not in names and len(set(names)) == 1 and names[0] != "0":
            for m in c.members:
                if m.member_id == names[0]:
                    return m.idx, time.monotonic() - t0
        time.sleep(0.05)
    raise Failure("members do not agree on a leader %.0fs after the heal (they name %r)"
                  % (timeout, [leader_of(c, i) for i in range(c.size)]))


def catch_up(c, w, report, key, what):
    w.pause()
    try:
        conv = c.wait_converged(w.keys, timeout=15, members=list(range(c.size)))
    except RuntimeError as e:
        raise Failure("%s: %s" % (what, e))
    report[key] = round(conv, 3)
    log("  quiesced: all three serve identical values+revision (%.2fs)" % conv)
    w.resume()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cl.add_run_arguments(ap, 29420, "bound (s) from the partition to a new leader / acked put")
    ap.add_argument("--partition-seconds", type=float, default=3.0)
    ap.add_argument("--random-seconds", type=float, default=8.0)
    a = ap.parse_args()

    binary = cl.server_binary(a.binary)
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    cl.install_signal_handlers()
    workdir = cl.work_dir(a.workdir, "partition-")
    log("binary %s, workdir %s, seed %d" % (binary, workdir, seed))
    c = None
    w = None
    prober = None
    report = {}
    ok = False
    try:
        c = cl.Cluster(binary, 3, a.base_port, workdir, a.extra_args.split(), log=log,
                       peer_proxy=True)
        px = c.proxies
        prober = Prober()
        L = c.wait_leader()[0]
        log("cluster up behind peer proxies, leader m%d" % L)
        w = cl.Workload(c, clients=a.clients, keys=a.keys, timeout=a.timeout, seed=seed)
        log("workload: %d clients, %d keys, timeout %.1fs" % (a.clients, a.keys, a.timeout))
        w.start()
        time.sleep(2.0)
        require(w.first_ack_put_after(0) is not None, "no put acknowledged in warm-up")

        # -- a. leader partitioned from the majority -------------------------------------
        L = c.wait_leader()[0]
        others = [i for i in range(3) if i != L]
        t_part = time.monotonic_ns()
        px.isolate(L, "blackhole")
        event("scenario a: leader m%d partitioned from m%d,m%d (blackhole, both directions) for %.1fs"
              % (L, others[0], others[1], a.partition_seconds))
        NL, t_elect = c.wait_leader(exclude=L, timeout=a.max_failover)
        require(NL in others, "new leader m%d is not on the majority side" % NL)
        report["a_partition_to_new_leader_s"] = round(t_elect, 3)
        log("  new leader m%d agreed by the majority %.3fs after the partition" % (NL, t_elect))
        ack = prober.until_ack(c, [NL] + [i for i in others if i != NL],
                               t_part + int(a.max_failover * 1e9))
        require(ack is not None, "no probe put acknowledged on the majority side within %.0fs "
                "of the partition" % a.max_failover)
        # The partition lasts --partition-seconds, and at least 0.5 s past that ack.
        t_end_part = max(t_part + int(a.partition_seconds * 1e9), time.monotonic_ns() + int(0.5e9))
        report["a_partition_to_first_ack_put_s"] = round((ack[0] - t_part) / 1e9, 3)
        log("  probe put acknowledged by m%d %.3fs after the partition" % (ack[1], (ack[0] - t_part) / 1e9))
        wack = first_ack_put(w, t_part, others)
        report["a_workload_puts_acked_in_majority"] = sum(
            1 for e in w.history() if e["op"] == "put" and e["call_ns"] >= t_part
            and e.get("output") == "ok" and e["member"] in others)
        if wack:
            log("  first workload put invoked after the partition acknowledged by m%d %.3fs after it"
                % (wack[1], (wack[0] - t_part) / 1e9))
        stepped_down = None
        while time.monotonic_ns() < t_end_part:
            if stepped_down is None:
                lid = leader_of(c, L, 0.3)
                if lid is not None and lid != c.members[L].member_id:
                    stepped_down = (time.monotonic_ns() - t_part) / 1e9
            time.sleep(0.05)
        report["a_old_leader_stepped_down_s"] = (round(stepped_down, 3) if stepped_down is not None
                                                 else "not within the partition")
        log("  isolated old leader m%d stopped naming itself leader: %s"
            % (L, report["a_old_leader_stepped_down_s"]))
        late = [e for e in w.history() if e["op"] == "put" and e["member"] == L
                and e["call_ns"] >= t_part + int(0.2e9) and e.get("output") == "ok"]
        report["a_puts_acked_by_isolated_old_leader"] = len(late)
        px.heal()
        event("  heal")
        AL, t_agree = wait_all_agree(c, a.max_failover)
        report["a_heal_to_all_agree_s"] = round(t_agree, 3)
        log("  healed; all three name m%d leader after %.3fs%s" % (
            AL, t_agree, " (the old leader took over again)" if AL == L else ""))
        catch_up(c, w, report, "a_catch_up_s", "old leader m%d did not catch up" % L)

        # -- b. a follower partitioned away --------------------------------------------
        L = c.wait_leader()[0]
        F = rng.choice([i for i in range(3) if i != L])
        t_part = time.monotonic_ns()
        px.isolate(F, "drop")
        event("scenario b: follower m%d partitioned away (drop/refuse, both directions) for %.1fs"
              % (F, a.partition_seconds))
        majority = [L] + [i for i in range(3) if i not in (F, L)]
        ack = prober.until_ack(c, majority, t_part + int(a.max_failover * 1e9))
        require(ack is not None, "no probe put acknowledged with follower m%d partitioned" % F)
        t_end_part = max(t_part + int(a.partition_seconds * 1e9), time.monotonic_ns() + int(0.5e9))
        report["b_partition_to_first_ack_put_s"] = round((ack[0] - t_part) / 1e9, 3)
        log("  puts continue (probe put acknowledged by m%d %.3fs after the partition)"
            % (ack[1], (ack[0] - t_part) / 1e9))
        time.sleep(max(0.0, (t_end_part - time.monotonic_ns()) / 1e9))
        leaders = c.leader()
        report["b_workload_puts_acked_in_majority"] = sum(
            1 for e in w.history() if e["op"] == "put" and e["call_ns"] >= t_part
            and e.get("output") == "ok" and e["member"] in majority)
        px.heal()
        event("  healed (leader before heal: m%s)" % leaders)
        AL, t_agree = wait_all_agree(c, a.max_failover)
        report["b_heal_to_all_agree_s"] = round(t_agree, 3)
        log("  all three name m%d leader after %.3fs" % (AL, t_agree))
        catch_up(c, w, report, "b_catch_up_s", "follower m%d did not catch up" % F)

        # -- c. random partitions --------------------------------------------------------
        event("scenario c: random partitions for %.1fs" % a.random_seconds)
        t_end = time.monotonic() + a.random_seconds
        rounds = 0
        while time.monotonic() < t_end:
            kind = rng.choice(["isolate", "isolate", "inbound", "link", "delay"])
            mode = rng.choice(["drop", "blackhole"])
            i = rng.randrange(3)
            if kind == "isolate":
                px.isolate(i, mode)
                what = "isolate m%d" % i
            elif kind == "inbound":
                px.isolate_inbound(i, mode)
                what = "block every connection dialled to m%d" % i
            elif kind == "link":
                j = rng.choice([x for x in range(3) if x != i])
                px.block(i, j, mode)
                what = "block connections dialled by m%d to m%d" % (i, j)
            else:
                j = rng.choice([x for x in range(3) if x != i])
                d = rng.uniform(0.02, 0.3)
                px.delay(i, j, d)
                px.delay(j, i, d)
                what = "delay every chunk between m%d and m%d by %.0f ms" % (i, j, d * 1000)
                mode = "slow"
            dur = rng.uniform(0.5, 2.0)
            event("  %s (%s) for %.1fs" % (what, mode, dur))
            time.sleep(dur)
            px.heal()
            EVENTS.append({"t_ns": time.monotonic_ns(), "event": "  heal"})
            rounds += 1
            time.sleep(rng.uniform(0.3, 1.0))
        report["c_rounds"] = rounds
        AL, t_agree = wait_all_agree(c, a.max_failover)
        log("  healed; all three name m%d leader after %.3fs" % (AL, t_agree))
        t_after = time.monotonic_ns()
        ack = wait_ack_put(w, t_after, [0, 1, 2], a.max_failover)
        require(ack is not None, "no put acknowledged after the random partitions healed")
        time.sleep(1.0)

        # -- final ---------------------------------------------------------------------
        w.stop()
        conv = c.wait_converged(w.keys, timeout=15, members=[0, 1, 2])
        log("workload stopped; members converged (%.2fs)" % conv)
        L = c.wait_leader()[0]
        hist = sorted(w.history() + prober.hist, key=lambda e: e["call_ns"])
        report.update(w.stats())
        report["probe_puts"] = len(prober.hist)
        report["proxy_connections"] = px.stats["accepted"]
        report["proxy_unidentified"] = px.stats["unidentified"]
        res, lost = cl.check_history(c, L, w.keys + [PROBE_KEY], hist, workdir, report, log, a.check_timeout)
        require(res.status != "not linearizable", "linearizability violation on key %r"
                % res.bad_key)
        require(res.ok, "linearizability check inconclusive: " + res.explanation)
        require(not lost, "%d acknowledged writes lost" % len(lost))
        ok = True
    except Failure as e:
        log("FAIL: %s" % e)
    except Exception:
        log("ERROR:\n" + traceback.format_exc())
    finally:
        try:
            with open(os.path.join(workdir, "events.json"), "w") as f:
                json.dump(EVENTS, f, indent=0)
        except Exception:
            pass
        if w is not None:
            w.stop()
            if not ok and "ops" not in report:
                try:
                    with open(os.path.join(workdir, "history.json"), "w") as f:
                        json.dump(sorted(w.history() + (prober.hist if prober else []),
                                         key=lambda e: e["call_ns"]), f)
                except Exception:
                    pass
        if not ok and c is not None:
            c.dump_logs(n=25, out=sys.stdout)
        if c is not None:
            c.stop_all()

    return cl.finish_run(binary, report, (
        "ops", "ok", "unknown", "failed", "put_ok", "put_unknown", "put_failed",
        "get_ok", "get_failed", "unknown_puts_later_observed",
        "probe_puts", "a_partition_to_new_leader_s", "a_partition_to_first_ack_put_s",
        "a_workload_puts_acked_in_majority", "b_workload_puts_acked_in_majority",
        "a_old_leader_stepped_down_s", "a_puts_acked_by_isolated_old_leader",
        "a_heal_to_all_agree_s", "a_catch_up_s",
        "b_partition_to_first_ack_put_s", "b_heal_to_all_agree_s", "b_catch_up_s",
        "c_rounds", "proxy_connections", "proxy_unidentified",
        "lincheck", "lincheck_s", "lost_acked_writes"),
        36, ok, a.keep, workdir)


if __name__ == "__main__":
    sys.exit(main())
