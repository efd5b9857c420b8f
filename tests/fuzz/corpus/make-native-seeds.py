#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_native into tests/fuzz/corpus/native/.

Usage: python3 tests/fuzz/corpus/make-native-seeds.py   (needs flatc, from flatbuffers-compiler)

fuzz_native's first input byte picks the message type (tests/fuzz/native_fuzz.cc): byte % 25
is 0-23 for the kv frame types 100-123, 24 for a keel.wire.Error; the rest is one payload.
Payloads are built by flatc from wire/schemas/kv.fbs and common.fbs, not by the C++ codec:
a second encoder of the same schema, so the seeds also check that the codec reads what any
FlatBuffers writer produces. One seed per type, plus a few that reach the rarer branches.
"""
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
OUT = os.path.join(HERE, "native")
ERROR_SELECTOR = 24


def flatbuffer(schema, root_type, message):
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "message.json")
        with open(source, "w") as f:
            json.dump(message, f)
        subprocess.run(["flatc", "--binary", "--root-type", "keel.wire." + root_type, "-o", tmp,
                        os.path.join(REPO, "wire", "schemas", schema), source], check=True)
        with open(os.path.join(tmp, "message.bin"), "rb") as f:
            return f.read()


def seed(frame_type, root_type, message):
    return bytes([frame_type - 100]) + flatbuffer("kv.fbs", root_type, message)


def b(text):
    """A [ubyte] field: flatc's JSON takes bytes as a list of numbers."""
    return list(text.encode() if isinstance(text, str) else text)


HEADER = {"cluster_id": 11, "member_id": 22, "revision": 33, "raft_term": 2}


def kv(key, value, revision, lease=0):
    return {"key": b(key), "create_revision": revision, "mod_revision": revision, "version": 1,
            "value": b(value), "lease": lease}


RANGE = {"key": b("a"), "range_end": b("\0"), "limit": 5, "revision": 7, "sort_order": "DESCEND",
         "sort_target": "MOD", "serializable": True, "keys_only": True, "min_create_revision": 3}
PUT = {"key": b("k"), "value": b(b"v\0w"), "lease": 9, "prev_kv": True, "ignore_lease": True}
DELETE = {"key": b("d"), "range_end": b("e"), "prev_kv": True}
TXN = {
    "compare": [
        {"result": "NOT_EQUAL", "target": "VALUE", "key": b("k"), "value": b("x")},
        {"result": "GREATER", "target": "MOD", "key": b("k"), "range_end": b("z"), "mod_revision": 12},
        {"result": "LESS", "target": "LEASE", "key": b("k"), "lease": 85},
    ],
    "success": [{"request_type": "PutRequest", "request": PUT},
                {"request_type": "RangeRequest", "request": RANGE}],
    "failure": [{"request_type": "DeleteRangeRequest", "request": DELETE}],
}
TXN_RESPONSE = {
    "header": HEADER, "succeeded": True,
    "responses": [
        {"response_type": "RangeResponse",
         "response": {"header": {"revision": 33}, "kvs": [kv("a", "1", 5)], "count": 1}},
        {"response_type": "PutResponse",
         "response": {"header": {"revision": 33}, "prev_kv": kv("p", "old", 2)}},
        {"response_type": "DeleteRangeResponse", "response": {"header": {"revision": 33}, "deleted": 2}},
    ],
}
WATCH_RESPONSE = {
    "header": HEADER, "watch_id": 3, "created": False, "compact_revision": 0,
    "events": [
        {"type": "PUT", "kv": kv("w", "new", 8), "prev_kv": kv("w", "old", 7)},
        {"type": "DELETE", "kv": {"key": b("w"), "mod_revision": 9}},
    ],
}

SEEDS = {
    "range-request": seed(100, "RangeRequest", RANGE),
    "range-response": seed(101, "RangeResponse", {"header": HEADER, "kvs": [kv("a", "1", 5), kv("b", "", 6)],
                                                  "more": True, "count": 3}),
    "put-request": seed(102, "PutRequest", PUT),
    "put-response": seed(103, "PutResponse", {"header": HEADER, "prev_kv": kv("k", "old", 4, lease=9)}),
    "delete-range-request": seed(104, "DeleteRangeRequest", DELETE),
    "delete-range-response": seed(105, "DeleteRangeResponse", {"header": HEADER, "deleted": 1,
                                                               "prev_kvs": [kv("d", "gone", 4)]}),
    "txn-request": seed(106, "TxnRequest", TXN),
    "txn-request-nested": seed(106, "TxnRequest", {"success": [{"request_type": "TxnRequest", "request": TXN}]}),
    "txn-response": seed(107, "TxnResponse", TXN_RESPONSE),
    "compaction-request": seed(108, "CompactionRequest", {"revision": 40, "physical": True}),
    "compaction-response": seed(109, "CompactionResponse", {"header": HEADER}),
    "lease-grant-request": seed(110, "LeaseGrantRequest", {"ttl": 60, "id": 7}),
    "lease-grant-response": seed(111, "LeaseGrantResponse", {"header": HEADER, "id": 7, "ttl": 60,
                                                             "error": "lease already exists"}),
    "lease-revoke-request": seed(112, "LeaseRevokeRequest", {"id": 7}),
    "lease-revoke-response": seed(113, "LeaseRevokeResponse", {"header": HEADER}),
    "lease-keepalive-request": seed(114, "LeaseKeepAliveRequest", {"id": 7}),
    "lease-keepalive-response": seed(115, "LeaseKeepAliveResponse", {"header": HEADER, "id": 7, "ttl": 59}),
    "lease-time-to-live-request": seed(116, "LeaseTimeToLiveRequest", {"id": 7, "keys": True}),
    "lease-time-to-live-response": seed(117, "LeaseTimeToLiveResponse", {
        "header": HEADER, "id": 7, "ttl": 9, "granted_ttl": 10, "keys": [{"key": b("k1")}, {"key": b("k2")}]}),
    "lease-leases-request": seed(118, "LeaseLeasesRequest", {}),
    "lease-leases-response": seed(119, "LeaseLeasesResponse", {"header": HEADER,
                                                               "leases": [{"id": 1}, {"id": 2}, {"id": 3}]}),
    "watch-create-request": seed(120, "WatchCreateRequest", {
        "key": b("w"), "range_end": b("x"), "start_revision": 4, "progress_notify": True,
        "filters": ["NOPUT", "NODELETE"], "prev_kv": True, "watch_id": 7}),
    "watch-response": seed(121, "WatchResponse", WATCH_RESPONSE),
    "watch-response-canceled": seed(121, "WatchResponse", {
        "header": HEADER, "watch_id": 4, "canceled": True, "compact_revision": 12,
        "cancel_reason": "mvcc: required revision has been compacted"}),
    "watch-cancel-request": seed(122, "WatchCancelRequest", {"watch_id": 3}),
    "watch-cancel-response": seed(123, "WatchCancelResponse", {"header": HEADER}),
    "error": bytes([ERROR_SELECTOR]) + flatbuffer("common.fbs", "Error", {
        "code": 2, "message": "etcdserver: mvcc: required revision has been compacted", "grpc_code": 11}),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
