#!/usr/bin/env python3
"""Fault-injection test: 3 members under a concurrent put/get workload.

  python3 tests/cluster/fault_test.py --binary etcd
  python3 tests/cluster/fault_test.py --binary build/cmd/keeld/keeld

Scenarios (one cluster, one continuous workload):
  1. kill -9 the leader: a new leader is agreed and a put invoked after the
     kill is acknowledged within --max-failover seconds; restart the old
     leader; after quiescing the workload it serves (serializable) the same
     values and revision as the leader.
  2. kill -9 a follower: puts keep being acknowledged; restart it; it
     catches up.
  3. SIGSTOP the leader for --stop-seconds, SIGCONT: puts are acknowledged
     again afterwards; all members converge.
Then: final linearizable read of every key; lincheck on the whole history
(with the final reads appended) must find no violation, and no acknowledged
put may be lost.

Exit 0 pass, 1 fail, 77 skip (binary not found).
"""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as cl  # noqa: E402


def log(msg):
    sys.stdout.write("[%7.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


T0 = time.monotonic()


class Failure(Exception):
    pass


def require(cond, msg):
    if not cond:
        raise Failure(msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cl.add_run_arguments(ap, 29400, "bound (s) from kill -9 of the leader to the first acked put")
    ap.add_argument("--stop-seconds", type=float, default=3.0)
    a = ap.parse_args()

    binary = cl.server_binary(a.binary)

    cl.install_signal_handlers()
    workdir = cl.work_dir(a.workdir, "fault-")
    log("binary %s, workdir %s" % (binary, workdir))
    c = None
    w = None
    report = {}
    ok = False
    try:
        c = cl.Cluster(binary, 3, a.base_port, workdir, a.extra_args.split(), log=log)
        L = c.leader()
        log("cluster up, leader m%d" % L)
        w = cl.Workload(c, clients=a.clients, keys=a.keys, timeout=a.timeout, seed=a.seed)
        log("workload: %d clients, %d keys, timeout %.1fs, seed %d"
            % (a.clients, a.keys, a.timeout, w.seed))
        w.start()
        time.sleep(2.0)
        require(w.first_ack_put_after(0) is not None, "no put acknowledged in warm-up")

        # -- 1. kill -9 the leader ------------------------------------------------
        L = c.wait_leader()[0]
        t_kill = time.monotonic_ns()
        c.kill9(L)
        log("scenario 1: kill -9 leader m%d" % L)
        NL, t_elect = c.wait_leader(exclude=L, timeout=a.max_failover)
        log("  new leader m%d agreed after %.3fs (by polling status)" % (NL, t_elect))
        ack = w.wait_ack_put_after(t_kill, a.max_failover)
        require(ack is not None, "no put acknowledged within %.1fs of killing the leader"
                % a.max_failover)
        failover = (ack - t_kill) / 1e9
        report["leader_kill_to_first_ack_put_s"] = round(failover, 3)
        report["leader_kill_to_leader_agreed_s"] = round(t_elect, 3)
        log("  first acknowledged put invoked after the kill: %.3fs after the kill" % failover)
        time.sleep(1.0)
        c.restart(L)
        log("  restarted m%d" % L)
        time.sleep(1.0)
        w.pause()
        conv = c.wait_converged(w.keys, timeout=15)
        log("  quiesced: all members serve identical values+revision (%.2fs)" % conv)
        w.resume()

        # -- 2. kill -9 a follower --------------------------------------------------
        L = c.wait_leader()[0]
        F = [i for i in range(3) if i != L][0]
        t_kill = time.monotonic_ns()
        c.kill9(F)
        log("scenario 2: kill -9 follower m%d (leader m%d)" % (F, L))
        time.sleep(2.0)
        ack = w.wait_ack_put_after(t_kill, 5.0)
        require(ack is not None, "no put acknowledged after killing a follower")
        report["follower_kill_to_first_ack_put_s"] = round((ack - t_kill) / 1e9, 3)
        log("  puts continue (first ack %.3fs after the kill)" % ((ack - t_kill) / 1e9))
        c.restart(F)
        log("  restarted m%d" % F)
        time.sleep(1.0)
        w.pause()
        conv = c.wait_converged(w.keys, timeout=15)
        log("  quiesced: all members converged (%.2fs)" % conv)
        w.resume()

        # -- 3. SIGSTOP the leader --------------------------------------------------
        L = c.wait_leader()[0]
        t_stop = time.monotonic_ns()
        c.stop(L)
        log("scenario 3: SIGSTOP leader m%d for %.1fs" % (L, a.stop_seconds))
        time.sleep(a.stop_seconds)
        t_cont = time.monotonic_ns()
        c.cont(L)
        NL, _ = c.wait_leader(timeout=a.max_failover)
        log("  SIGCONT; leader now m%d%s" % (NL, " (unchanged)" if NL == L else ""))
        ack = w.wait_ack_put_after(t_cont, a.max_failover)
        require(ack is not None, "no put acknowledged after SIGCONT")
        report["cont_to_first_ack_put_s"] = round((ack - t_cont) / 1e9, 3)
        ack = w.first_ack_put_after(t_stop)
        report["leader_sigstop_to_first_ack_put_s"] = round((ack - t_stop) / 1e9, 3)
        log("  first put acknowledged %.3fs after SIGSTOP, %.3fs after SIGCONT"
            % ((ack - t_stop) / 1e9, report["cont_to_first_ack_put_s"]))
        time.sleep(2.0)

        # -- final ---------------------------------------------------------------------
        w.stop()
        conv = c.wait_converged(w.keys, timeout=15)
        log("workload stopped; members converged (%.2fs)" % conv)
        L = c.wait_leader()[0]
        hist = w.history()
        st = w.stats()
        report.update(st)
        res, lost = cl.check_history(c, L, w.keys, hist, workdir, report, log, a.check_timeout)
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
        if w is not None:
            w.stop()
        if not ok and c is not None:
            c.dump_logs(n=25, out=sys.stdout)
        if c is not None:
            c.stop_all()

    return cl.finish_run(binary, report, (
        "ops", "ok", "unknown", "failed", "put_ok", "put_unknown", "put_failed",
        "get_ok", "get_failed", "unknown_puts_later_observed", "leader_kill_to_leader_agreed_s",
        "leader_kill_to_first_ack_put_s", "follower_kill_to_first_ack_put_s",
        "leader_sigstop_to_first_ack_put_s", "cont_to_first_ack_put_s", "lincheck", "lincheck_s", "lost_acked_writes"),
        34, ok, a.keep, workdir)


if __name__ == "__main__":
    sys.exit(main())
