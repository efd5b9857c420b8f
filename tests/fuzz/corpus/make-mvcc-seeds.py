#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_mvcc into tests/fuzz/corpus/mvcc/.

Usage: python3 tests/fuzz/corpus/make-mvcc-seeds.py

Each seed is a whole mvcc_store snapshot encoding, built here from the description in
modules/kv/mvcc/README.md ("Snapshot encoding") by a small model of the store, not by the
C++ encoder: a second implementation of the format from its document. fuzz_mvcc requires
that whatever loads saves back to the same bytes, so these seeds also check the two agree.
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "mvcc")


class Store:
    """Keys, histories and the change log, as the store keeps them (etcd's rules)."""

    def __init__(self):
        self.current = 1
        self.compacted = -1
        self.history = {}  # key -> [(mod, create, version, value, lease, tombstone)]
        self.changes = {}  # revision -> [keys in operation order]

    def live(self, key):
        versions = self.history.get(key)
        if not versions or versions[-1][5]:
            return None
        return versions[-1]

    def write(self, ops):
        """ops: [("put", key, value, lease) | ("delete", key)], at one revision."""
        rev = self.current + 1
        changed = []
        for op in ops:
            if op[0] == "put":
                _, key, value, lease = op
                prev = self.live(key)
                create = prev[1] if prev else rev
                version = prev[2] + 1 if prev else 1
                self.history.setdefault(key, []).append((rev, create, version, value, lease, False))
                changed.append(key)
            elif self.live(op[1]):
                self.history[op[1]].append((rev, 0, 0, b"", 0, True))
                changed.append(op[1])
        if changed:
            self.changes[rev] = changed
            self.current = rev

    def compact(self, rev):
        for key in list(self.history):
            versions = self.history[key]
            at_or_below = [i for i, v in enumerate(versions) if v[0] <= rev]
            if at_or_below:
                kept = at_or_below[-1]
                drop = kept + 1 if versions[kept][5] else kept
                versions = versions[drop:]
            if versions:
                self.history[key] = versions
            else:
                del self.history[key]
        self.changes = {r: k for r, k in self.changes.items() if r > rev}
        self.compacted = rev

    def encode(self):
        keys = sorted(self.history)
        position = {key: i for i, key in enumerate(keys)}
        out = struct.pack("<IHHqqQ", 0x43564D4B, 1, 0, self.current, self.compacted, len(keys))
        for key in keys:
            versions = self.history[key]
            out += struct.pack("<I", len(key)) + key + struct.pack("<I", len(versions))
            for mod, create, version, value, lease, tombstone in versions:
                out += struct.pack("<Bq", 1 if tombstone else 0, mod)
                if not tombstone:
                    out += struct.pack("<qqqI", create, version, lease, len(value)) + value
        out += struct.pack("<Q", len(self.changes))
        for rev in sorted(self.changes):
            changed = self.changes[rev]
            out += struct.pack("<qI", rev, len(changed))
            out += b"".join(struct.pack("<I", position[key]) for key in changed)
        return out


def small():
    # The store of small_snapshot() in tests/kv/mvcc_test.cc.
    s = Store()
    s.write([("put", b"a", b"one", 0)])
    s.write([("put", b"b", b"two", 7)])
    s.write([("put", b"a", b"three", 0)])
    s.write([("delete", b"a")])
    s.write([("put", b"a", b"four", 0)])
    s.compact(3)
    s.write([("put", b"d", b"x", 0), ("put", b"c", b"y", 0)])
    return s


def randomized(seed, steps, keys, compact_every):
    rng = random.Random(seed)
    s = Store()
    for step in range(1, steps + 1):
        ops = []
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            if any(op[1] == key for op in ops):
                continue
            if rng.random() < 0.25:
                ops.append(("delete", key))
            else:
                ops.append(("put", key, bytes(rng.randrange(256) for _ in range(rng.randint(0, 6))),
                            rng.randint(0, 2)))
        s.write(ops)
        if compact_every and step % compact_every == 0:
            s.compact(rng.randint(max(s.compacted, 0) + 1, s.current))
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "fresh": Store(),
        "small": small(),
        "history": randomized(1, 60, [b"a", b"ab", b"b", b"c", b"key/1", b"key/2"], 0),
        "compacted": randomized(2, 80, [b"a", b"b", b"c", b"d"], 25),
        "binary-keys": randomized(3, 40, [b"\x00", b"\x00\x01", b"\x7f", b"\x80", b"\xff", b"\xff\xff"], 0),
    }
    for name, store in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(store.encode())
        print(name, len(store.encode()), "bytes")


if __name__ == "__main__":
    main()
