#!/usr/bin/env python3
"""Unit tests for lincheck.py (stdlib unittest; runs in well under 10 s)."""

import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lincheck  # noqa: E402


def put(c, v, t0, t1, key="k"):
    return {"client": c, "op": "put", "key": key, "input": v, "output": "ok",
            "call_ns": t0, "return_ns": t1}


def get(c, v, t0, t1, key="k"):
    return {"client": c, "op": "get", "key": key, "input": None, "output": v,
            "call_ns": t0, "return_ns": t1}


def cas(c, exp, new, ok, t0, t1, key="k"):
    return {"client": c, "op": "cas", "key": key, "input": (exp, new), "output": ok,
            "call_ns": t0, "return_ns": t1}


class HandWritten(unittest.TestCase):
    def ok(self, h):
        r = lincheck.check(h)
        self.assertTrue(r.ok, r.explanation)

    def bad(self, h, key="k"):
        r = lincheck.check(h)
        self.assertFalse(r.ok)
        self.assertEqual(r.status, "not linearizable")
        self.assertEqual(r.bad_key, key)
        self.assertTrue(r.explanation)
        return r

    def test_empty(self):
        self.ok([])

    def test_sequential(self):
        self.ok([get(0, None, 0, 1), put(0, "a", 2, 3), get(1, "a", 4, 5),
                 put(1, "b", 6, 7), get(0, "b", 8, 9)])

    def test_stale_read_after_completed_write(self):
        self.bad([put(0, "a", 0, 1), put(0, "b", 2, 3), get(1, "a", 4, 5)])

    def test_read_absent_after_completed_write(self):
        self.bad([put(0, "a", 0, 1), get(1, None, 2, 3)])

    def test_read_of_never_written_value(self):
        self.bad([put(0, "a", 0, 10), get(1, "zzz", 1, 2)])

    def test_opposite_orders(self):
        # two concurrent writes; two later readers see them in opposite orders
        self.bad([put(0, "a", 0, 10), put(1, "b", 0, 10),
                  get(2, "a", 11, 12), get(3, "b", 13, 14), get(2, "a", 15, 16)])

    def test_opposite_orders_concurrent_reads(self):
        # reader 2 sees a then b, reader 3 sees b then a, all overlapping writes
        self.bad([put(0, "a", 0, 100), put(1, "b", 0, 100),
                  get(2, "a", 1, 2), get(2, "b", 3, 4),
                  get(3, "b", 5, 6), get(3, "a", 7, 8)])

    def test_concurrent_overlapping_linearizable(self):
        self.ok([put(0, "a", 0, 10), put(1, "b", 1, 11), get(2, "b", 2, 3),
                 get(3, "a", 4, 12), get(2, "a", 13, 14)])

    def test_read_concurrent_with_write_sees_either(self):
        self.ok([put(0, "a", 0, 1), put(1, "b", 2, 10), get(2, "a", 3, 4),
                 get(3, "b", 5, 6), get(2, "b", 11, 12)])

    def test_read_concurrent_with_write_cannot_go_back(self):
        self.bad([put(0, "a", 0, 1), put(1, "b", 2, 10), get(2, "b", 3, 4),
                  get(3, "a", 5, 6)])

    def test_touching_intervals_are_concurrent(self):
        # get returns exactly when put is called: closed intervals overlap
        self.ok([get(0, "a", 0, 5), put(1, "a", 5, 6)])

    def test_unknown_put_takes_effect_late(self):
        # put "x" timed out at the client, but became visible long after
        h = [put(0, "a", 0, 1),
             {"client": 1, "op": "put", "key": "k", "input": "x", "output": None,
              "call_ns": 2, "return_ns": None},
             get(2, "a", 3, 4), put(0, "b", 5, 6), get(2, "b", 7, 8),
             get(2, "x", 100, 101), get(3, "x", 102, 103)]
        self.ok(h)

    def test_unknown_put_never_applies(self):
        h = [{"client": 1, "op": "put", "key": "k", "input": "x", "output": None,
              "call_ns": 0, "return_ns": None},
             get(2, None, 3, 4), put(0, "b", 5, 6), get(2, "b", 7, 8)]
        self.ok(h)

    def test_unknown_put_cannot_apply_before_call(self):
        h = [get(2, "x", 0, 1),
             {"client": 1, "op": "put", "key": "k", "input": "x", "output": None,
              "call_ns": 5, "return_ns": None}]
        self.bad(h)

    def test_unknown_put_once_seen_cannot_unapply(self):
        h = [put(0, "a", 0, 1),
             {"client": 1, "op": "put", "key": "k", "input": "x", "output": None,
              "call_ns": 2, "return_ns": None},
             get(2, "x", 3, 4), get(3, "a", 5, 6)]
        self.bad(h)

    def test_unknown_get_dropped(self):
        self.ok([put(0, "a", 0, 1),
                 {"client": 1, "op": "get", "key": "k", "input": None, "output": "garbage",
                  "call_ns": 2, "return_ns": None}])

    def test_failed_put_dropped(self):
        h = [put(0, "a", 0, 1),
             {"client": 1, "op": "put", "key": "k", "input": "x", "output": None,
              "call_ns": 2, "return_ns": 3, "failed": True},
             get(2, "a", 4, 5)]
        self.ok(h)
        h.append(get(2, "x", 6, 7))
        self.bad(h)

    def test_keys_independent(self):
        h = [put(0, "a", 0, 1, key="k1"), put(1, "a", 0, 1, key="k2"),
             get(0, "a", 2, 3, key="k1"), get(1, None, 2, 3, key="k3")]
        self.ok(h)
        h.append(get(0, None, 4, 5, key="k2"))
        self.bad(h, key="k2")

    def test_cas(self):
        self.ok([put(0, "a", 0, 1), cas(1, "a", "b", True, 2, 3),
                 cas(2, "a", "c", False, 4, 5), get(0, "b", 6, 7)])
        self.bad([put(0, "a", 0, 1), cas(1, "a", "b", True, 2, 3),
                  cas(2, "a", "c", True, 4, 5)])
        self.bad([put(0, "a", 0, 1), cas(1, "a", "b", False, 2, 3)])
        # concurrent cas: exactly one of two may win
        self.ok([put(0, "a", 0, 1), cas(1, "a", "b", True, 2, 10),
                 cas(2, "a", "c", False, 2, 10), get(0, "b", 11, 12)])
        self.bad([put(0, "a", 0, 1), cas(1, "a", "b", True, 2, 10),
                  cas(2, "a", "c", True, 2, 10)])

    def test_unknown_cas(self):
        u = cas(1, "a", "b", None, 2, None)
        self.ok([put(0, "a", 0, 1), u, get(0, "a", 3, 4), get(0, "b", 5, 6)])
        self.ok([put(0, "a", 0, 1), u, get(0, "a", 3, 4)])
        self.bad([put(0, "a", 0, 1), u, get(0, "b", 3, 4), get(0, "a", 5, 6)])

    def test_timeout_reports_unknown(self):
        # many concurrent unknown writes of values that are all observed, plus
        # an impossible read at the end: exponential search
        h = []
        for i in range(40):
            h.append({"client": i, "op": "put", "key": "k", "input": "v%d" % i,
                      "output": None, "call_ns": 0, "return_ns": None})
            h.append(get(100 + i, "v%d" % i, 10 ** 6 + i, 10 ** 9))
        h.append(get(999, "nope", 10 ** 10, 10 ** 10 + 1))
        t0 = time.monotonic()
        r = lincheck.check(h, timeout_per_key=0.3)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertFalse(r.ok)
        self.assertIn(r.status, ("unknown", "not linearizable"))


class LostWrites(unittest.TestCase):
    def test_no_loss(self):
        h = [put(0, "a", 0, 1), put(1, "b", 2, 3)]
        self.assertEqual(lincheck.lost_writes(h, {"k": "b"}), [])

    def test_concurrent_either_final(self):
        h = [put(0, "a", 0, 10), put(1, "b", 1, 11)]
        self.assertEqual(lincheck.lost_writes(h, {"k": "a"}), [])
        self.assertEqual(lincheck.lost_writes(h, {"k": "b"}), [])

    def test_lost(self):
        h = [put(0, "a", 0, 1), put(1, "b", 2, 3)]
        lost = lincheck.lost_writes(h, {"k": "a"})
        self.assertEqual([x["put"]["input"] for x in lost], ["b"])
        self.assertEqual(len(lincheck.lost_writes(h, {"k": None})), 2)
        self.assertEqual(len(lincheck.lost_writes(h, {"k": "zz"})), 2)

    def test_unknown_final_writer_ok(self):
        h = [put(0, "a", 0, 1),
             {"client": 1, "op": "put", "key": "k", "input": "x", "output": None,
              "call_ns": 0, "return_ns": None},
             put(1, "b", 2, 3)]
        self.assertEqual(lincheck.lost_writes(h, {"k": "x"}), [])


def simulate(rng, nclients, nkeys, nops, unknown_p=0.0):
    """Random history from a sequential execution with overlapping intervals.

    Each op takes effect at a unique instant; its call time is chosen some
    random amount before that instant and its return some random amount
    after, so intervals overlap heavily but always contain the instant.
    Clients issue one op at a time (call after their previous return).
    """
    state = {}
    free_at = [0] * nclients
    hist = []
    t = 0
    seq = 0
    for _ in range(nops):
        t += rng.randint(1, 10)
        c = rng.randrange(nclients)
        if free_at[c] >= t:
            continue
        key = "k%d" % rng.randrange(nkeys)
        call = rng.randint(free_at[c], t - 1) if free_at[c] < t - 1 else t - 1
        ret = t + rng.randint(0, 40)
        r = rng.random()
        if r < 0.45:
            seq += 1
            v = "c%d-%d" % (c, seq)
            state[key] = v
            e = {"client": c, "op": "put", "key": key, "input": v, "output": "ok",
                 "call_ns": call, "return_ns": ret}
            if rng.random() < unknown_p:
                e["return_ns"] = None
                e["output"] = None
                free_at[c] = ret  # client moves on after its timeout
                hist.append(e)
                continue
        elif r < 0.55:
            seq += 1
            exp = state.get(key) if rng.random() < 0.6 else "nope"
            new = "c%d-%d" % (c, seq)
            okv = state.get(key) == exp
            if okv:
                state[key] = new
            e = {"client": c, "op": "cas", "key": key, "input": (exp, new),
                 "output": okv, "call_ns": call, "return_ns": ret}
        else:
            e = {"client": c, "op": "get", "key": key, "input": None,
                 "output": state.get(key), "call_ns": call, "return_ns": ret}
        free_at[c] = ret
        hist.append(e)
    return hist


class Randomized(unittest.TestCase):
    def test_random_histories(self):
        rng = random.Random(1234)
        t0 = time.monotonic()
        detected = 0
        trials = 0
        for it in range(120):
            h = simulate(rng, nclients=rng.randint(2, 6), nkeys=rng.randint(1, 3),
                         nops=rng.randint(20, 120), unknown_p=0.1 if it % 2 else 0.0)
            r = lincheck.check(h, timeout_per_key=5)
            self.assertTrue(r.ok, "iteration %d: %s" % (it, r.explanation))
            # corrupt one read: make it return a value never written
            gets = [e for e in h if e["op"] == "get"]
            if not gets:
                continue
            bad = dict(rng.choice(gets))
            bad["output"] = "never-written"
            h2 = [bad if (e["op"] == "get" and e["call_ns"] == bad["call_ns"]
                          and e["client"] == bad["client"]) else e for e in h]
            r2 = lincheck.check(h2, timeout_per_key=5)
            self.assertFalse(r2.ok, "iteration %d: corruption not detected" % it)
            self.assertEqual(r2.status, "not linearizable")
            # subtler corruption: a read returns a value that was overwritten
            # by a write that completed before the read was invoked
            trials += 1
            if self._stale_corruption(rng, h):
                detected += 1
        self.assertGreater(trials, 50)
        self.assertEqual(detected, trials)
        self.assertLess(time.monotonic() - t0, 8)

    def _stale_corruption(self, rng, h):
        """Pick a get and make it return the value of a put that was
        definitely superseded (put P1 then put P2 both completed strictly
        before the get was called, P1 returned before P2 was called); if no
        such triple exists, count it as detected (nothing to corrupt)."""
        gets = [e for e in h if e["op"] == "get"]
        rng.shuffle(gets)
        puts = [e for e in h if e["op"] == "put" and e["return_ns"] is not None]
        for g in gets:
            cands = []
            for p1 in puts:
                if p1["key"] != g["key"] or p1["return_ns"] >= g["call_ns"]:
                    continue
                for p2 in puts:
                    if (p2["key"] == g["key"] and p2["call_ns"] > p1["return_ns"]
                            and p2["return_ns"] < g["call_ns"] and p2["input"] != p1["input"]):
                        cands.append(p1)
                        break
            if cands:
                p1 = rng.choice(cands)
                bad = dict(g)
                bad["output"] = p1["input"]
                h2 = [bad if e is g else e for e in h]
                return not lincheck.check(h2, timeout_per_key=5).ok
        return True


if __name__ == "__main__":
    unittest.main()
