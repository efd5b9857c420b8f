#!/usr/bin/env python3
"""Linearizability checker for a per-key register/KV model (stdlib only).

Algorithm: Wing & Gong as refined by Lowe ("just-in-time linearization") and
used by Porcupine / Knossos' WGL search.  Each key is checked independently
(P-compositionality: a KV history is linearizable iff every per-key
sub-history is), which keeps the search small.

History entries are dicts:

    {"client": any, "op": "put" | "get" | "cas", "key": str,
     "input": ...,            # put: value; get: None; cas: (expected, new)
     "output": ...,           # put: "ok" (or True); get: value or None;
                              # cas: True / False
     "call_ns": int, "return_ns": int | None}

``return_ns`` None means the outcome is unknown (timeout, connection dropped
after the request was sent).  Such an op has return time +infinity:

* put / cas with unknown outcome may be linearized anywhere after its call, or
  never (linearizing it after everything else is observationally the same as
  "never", since nothing observes the state afterwards);
* get with unknown outcome observed nothing and is dropped.

An entry with ``"failed": True`` is a definite failure (the server did not
apply it) and is dropped as well.

Values are compared with ``==``; None means "key absent".  The initial state
of every key is absent (None) unless ``initial`` is given.

Search (per key): events (call/return) are sorted by time, calls before
returns at equal timestamps (closed intervals: touching ops are treated as
concurrent, which is the conservative choice).  They are kept in a doubly
linked list.  Walking the list, at a call we try to linearize that op now: if
the model accepts it and (linearized-bitset, state) has not been seen before
(the memo), we push it on a stack, remove its call and return from the list
and restart from the head.  If we reach a return event whose op was not
linearized, the current prefix cannot be extended: pop the last linearized op,
put it back and try the next candidate.  Empty stack at a return = violation.

Limits: exponential in the worst case (many concurrent or unknown-outcome
ops on one key); hence the per-key timeout, which makes that key (and the
whole result) "unknown" rather than hanging.  Unknown-outcome puts whose value
is never read (and the key has no cas) are pruned before the search: they can
always be linearized "never" without changing any observation.
"""

import collections
import time

__all__ = ["check", "check_key", "lost_writes", "Result", "KeyResult"]

INF = float("inf")


class Result:
    """Outcome of check().

    ok           True iff every key was proven linearizable.
    status       "linearizable" | "not linearizable" | "unknown" (some key
                 timed out and no key was found violating).
    bad_key      first key found to violate linearizability (or None).
    explanation  human-readable text for the violation / timeout.
    unknown_keys keys whose search timed out.
    per_key      {key: KeyResult}
    """

    def __init__(self, status, bad_key=None, explanation="", unknown_keys=(),
                 per_key=None):
        self.status = status
        self.ok = status == "linearizable"
        self.bad_key = bad_key
        self.explanation = explanation
        self.unknown_keys = list(unknown_keys)
        self.per_key = per_key or {}

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return "Result(ok=%r, status=%r, bad_key=%r, explanation=%r)" % (
            self.ok, self.status, self.bad_key, self.explanation)


class KeyResult:
    def __init__(self, status, explanation="", ops=0, steps=0, seconds=0.0):
        self.status = status   # "ok" | "violation" | "unknown"
        self.explanation = explanation
        self.ops = ops
        self.steps = steps
        self.seconds = seconds

    def __repr__(self):
        return "KeyResult(%s, ops=%d, steps=%d, %.3fs)" % (
            self.status, self.ops, self.steps, self.seconds)


# ---------------------------------------------------------------------------
# model

def _is_ok(output):
    return output is True or output == "ok" or output == "OK"


def _step(state, op, inp, out, unknown):
    """Sequential spec of one key. Returns (accepted, new_state)."""
    if op == "put":
        return True, inp
    if op == "get":
        return state == out, state
    if op == "cas":
        expected, new = inp
        if unknown:           # may have succeeded or failed
            return True, (new if state == expected else state)
        if out:
            return (state == expected), new
        return (state != expected), state
    raise ValueError("unknown op %r" % (op,))


def _fmt(e):
    ret = e.get("return_ns")
    r = "?" if ret is None else str(ret)
    if e["op"] == "get":
        s = "get() -> %r" % (e.get("output"),)
    elif e["op"] == "put":
        s = "put(%r)%s" % (e.get("input"), "" if ret is not None else " -> unknown")
    else:
        s = "cas(%r, %r) -> %s" % (e["input"][0], e["input"][1],
                                   "unknown" if ret is None else e.get("output"))
    return "client %s: %s [%s, %s]" % (e.get("client"), s, e.get("call_ns"), r)


# ---------------------------------------------------------------------------
# per-key search

class _Node:
    __slots__ = ("is_call", "id", "match", "prev", "next", "time")

    def __init__(self, is_call, id_, t):
        self.is_call = is_call
        self.id = id_
        self.time = t
        self.match = None
        self.prev = None
        self.next = None


def _prepare(entries):
    """Drop unknown gets, definite failures, and unobserved unknown puts."""
    kept = []
    for e in entries:
        if e.get("failed"):
            continue
        if e["op"] == "get" and e.get("return_ns") is None:
            continue
        if e["op"] == "put" and e.get("return_ns") is not None and not _is_ok(e.get("output", "ok")):
            # a put that returned something other than ok is a definite failure
            continue
        kept.append(e)
    has_cas = any(e["op"] == "cas" for e in kept)
    if not has_cas:
        observed = [e.get("output") for e in kept if e["op"] == "get"]
        pruned = []
        for e in kept:
            if e["op"] == "put" and e.get("return_ns") is None:
                v = e.get("input")
                if not any(v == o for o in observed):
                    continue
            pruned.append(e)
        kept = pruned
    return kept


def check_key(entries, timeout=10.0, initial=None):
    """Check one key's sub-history. Returns KeyResult."""
    t0 = time.monotonic()
    ops = _prepare(entries)
    n = len(ops)
    if n == 0:
        return KeyResult("ok", ops=0)
    events = []
    for i, e in enumerate(ops):
        ret = e.get("return_ns")
        events.append((e["call_ns"], 0, i))
        events.append((INF if ret is None else ret, 1, i))
    events.sort()   # by time; calls (0) before returns (1) at equal time
    head = _Node(False, -1, -INF)
    prev = head
    calls = [None] * n
    for t, kind, i in events:
        node = _Node(kind == 0, i, t)
        if kind == 0:
            calls[i] = node
        else:
            calls[i].match = node
            node.match = calls[i]
        prev.next = node
        node.prev = prev
        prev = node

    def lift(c):
        c.prev.next = c.next
        if c.next is not None:
            c.next.prev = c.prev
        r = c.match
        r.prev.next = r.next
        if r.next is not None:
            r.next.prev = r.prev

    def unlift(c):
        r = c.match
        r.prev.next = r
        if r.next is not None:
            r.next.prev = r
        c.prev.next = c
        if c.next is not None:
            c.next.prev = c

    unknown = [o.get("return_ns") is None for o in ops]
    state = initial
    linearized = 0
    cache = set()
    stack = []                      # (call node, state before)
    best_len = -1
    best_prefix = []
    best_block = None
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if (steps & 0x3FF) == 0 and time.monotonic() - t0 > timeout:
            return KeyResult("unknown", "search timed out after %.1fs (%d ops, %d steps)"
                             % (timeout, n, steps), n, steps, time.monotonic() - t0)
        if entry.is_call:
            o = ops[entry.id]
            acc, new_state = _step(state, o["op"], o.get("input"), o.get("output"),
                                   unknown[entry.id])
            if acc:
                nl = linearized | (1 << entry.id)
                k = (nl, new_state)
                if k not in cache:
                    cache.add(k)
                    stack.append((entry, state))
                    state = new_state
                    linearized = nl
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # a return whose op is not yet linearized: backtrack
            if len(stack) > best_len:
                best_len = len(stack)
                best_prefix = [ops[c.id] for c, _ in stack]
                best_block = (ops[entry.id], state)
            if not stack:
                return KeyResult("violation", _explain(best_prefix, best_block, ops),
                                 n, steps, time.monotonic() - t0)
            c, state = stack.pop()
            linearized &= ~(1 << c.id)
            unlift(c)
            entry = c.next
    return KeyResult("ok", ops=n, steps=steps, seconds=time.monotonic() - t0)


def _explain(prefix, block, ops):
    lines = []
    blk, st = block if block else (None, None)
    lines.append("longest linearizable prefix has %d of %d ops%s" % (
        len(prefix), len(ops), "" if len(prefix) <= 12 else " (last 12 shown)"))
    for e in prefix[-12:]:
        lines.append("    " + _fmt(e))
    lines.append("  state after that prefix: %r" % (st,))
    if blk is not None:
        lines.append("  cannot linearize before this op returns: " + _fmt(blk))
        # show the ops that were pending (called, not in prefix) at that point
        ids = set(id(e) for e in prefix)
        rt = blk.get("return_ns")
        pend = [e for e in ops if id(e) not in ids and e["call_ns"] <= (INF if rt is None else rt)]
        if pend:
            lines.append("  candidates at that point (none fits):")
            for e in pend[:12]:
                lines.append("    " + _fmt(e))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# public API

def _by_key(history):
    d = collections.OrderedDict()
    for e in history:
        d.setdefault(e["key"], []).append(e)
    return d


def check(history, timeout_per_key=10.0, initial=None):
    """Check a whole KV history, key by key.

    initial: optional {key: value} of pre-existing state (default: all absent).
    """
    per_key = {}
    unknown_keys = []
    for key, entries in _by_key(history).items():
        init = (initial or {}).get(key)
        r = check_key(entries, timeout_per_key, init)
        per_key[key] = r
        if r.status == "violation":
            return Result("not linearizable", key,
                          "key %r is not linearizable:\n%s" % (key, r.explanation),
                          unknown_keys, per_key)
        if r.status == "unknown":
            unknown_keys.append(key)
    if unknown_keys:
        return Result("unknown", None, "search timed out on keys %r" % (unknown_keys,),
                      unknown_keys, per_key)
    return Result("linearizable", None, "", (), per_key)


def lost_writes(history, final_reads):
    """Acknowledged puts whose value can never be observed any more.

    final_reads: {key: value or None}, one linearizable read per key made after
    every operation in `history` has returned or been abandoned and the
    cluster has quiesced (so unknown-outcome puts have applied or never will).

    Definition.  Let F be the final read of key k.  An acknowledged put P
    (return_ns not None, not failed) on k is *lost* iff no put that could
    legally be the last write to k explains F, relative to P:

      * F is None (key absent; this model has no deletes), or
      * F was never written by any put/cas on k (a phantom value), or
      * every put W that wrote F (acknowledged or unknown-outcome) returned
        before P was invoked (W.return_ns < P.call_ns), i.e. W precedes P in
        real time, so P must be ordered after W and F must not be visible.

    Unknown-outcome writes have return time +infinity and so can always be
    ordered after P: a final value written by one never convicts P.  Keys
    without a final read are skipped.  (Equivalent to appending the final
    reads as gets to the history and checking linearizability, restricted to
    the last write; cheaper and with a direct message.)

    Returns a list of dicts {key, put, final, reason}.
    """
    lost = []
    for key, entries in _by_key(history).items():
        if key not in final_reads:
            continue
        final = final_reads[key]
        writers = []
        for e in entries:
            if e.get("failed"):
                continue
            if e["op"] == "put" and (e.get("return_ns") is None or _is_ok(e.get("output", "ok"))):
                if e.get("input") == final:
                    writers.append(e)
            elif e["op"] == "cas" and (e.get("return_ns") is None or e.get("output") is True):
                if e["input"][1] == final:
                    writers.append(e)
        for p in entries:
            if p["op"] != "put" or p.get("return_ns") is None or p.get("failed"):
                continue
            if not _is_ok(p.get("output", "ok")):
                continue
            if final is None:
                reason = "final read found the key absent"
            elif not writers:
                reason = "final value %r was never written" % (final,)
            elif all(w.get("return_ns") is not None and w["return_ns"] < p["call_ns"]
                     for w in writers):
                reason = ("final value %r was written by an op that completed "
                          "before this put was invoked" % (final,))
            else:
                continue
            lost.append({"key": key, "put": p, "final": final, "reason": reason})
    return lost


if __name__ == "__main__":
    import json
    import sys
    hist = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    res = check(hist)
    print(res.status)
    if res.explanation:
        print(res.explanation)
    sys.exit(0 if res.ok else 1)
