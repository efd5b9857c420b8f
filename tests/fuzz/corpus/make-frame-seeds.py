#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_frame into tests/fuzz/corpus/frame/.

Usage: python3 tests/fuzz/corpus/make-frame-seeds.py   (needs flatc, from flatbuffers-compiler)

fuzz_frame's first input byte picks the mode (tests/fuzz/wire_fuzz.cc): bit 0 clear means
the rest is a raw byte stream, so those seeds are real frames with correct CRC-32C
(docs/formats/frame.md); bit 0 set means the rest is records
[type u16][flags u8][length u16][payload] that the harness wraps in headers itself.
Payloads are built by flatc from wire/schemas/*.fbs.
"""
import os
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
OUT = os.path.join(HERE, "frame")


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def flatbuffer(schema, root_type, json_text):
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "message.json")
        with open(source, "w") as f:
            f.write(json_text)
        subprocess.run(["flatc", "--binary", "--root-type", root_type, "-o", tmp,
                        os.path.join(REPO, "wire", "schemas", schema), source], check=True)
        with open(os.path.join(tmp, "message.bin"), "rb") as f:
            return f.read()


def frame(ftype, request_id, payload, flags=1):
    padded = payload + b"\0" * (-len(payload) % 8)
    head = struct.pack("<IBBHQI", 0x4C454BC7, 1, flags, ftype, request_id, len(payload))
    return head + struct.pack("<I", crc32c(head + padded)) + padded


def record(ftype, payload, flags=1):
    return struct.pack("<HBH", ftype, flags, len(payload)) + payload


health_request = flatbuffer("health.fbs", "keel.wire.HealthRequest", "{}")
health_response = flatbuffer("health.fbs", "keel.wire.HealthResponse",
                             '{"healthy": true, "version": "0.1.0", "shards": 2}')
echo_request = flatbuffer("echo.fbs", "keel.wire.EchoRequest", '{"text": "hello", "repeat": 3}')
echo_response = flatbuffer("echo.fbs", "keel.wire.EchoResponse", '{"text": "hellohellohello"}')
error = flatbuffer("common.fbs", "keel.wire.Error", '{"code": 5, "message": "CRC-32C mismatch"}')

seeds = {
    "raw-health-request": b"\x00" + frame(10, 1, health_request),
    "raw-echo-request": b"\x00" + frame(20, 7, echo_request),
    "raw-pipelined": b"\x02" + frame(10, 1, health_request) + frame(20, 2, echo_request)
                     + frame(21, 2, echo_response) + frame(11, 1, health_response),
    "raw-error": b"\x04" + frame(1, 0, error, flags=3),
    "framed-echo": b"\x01" + record(20, echo_request) + record(21, echo_response, flags=0),
    "framed-health": b"\x03" + record(10, health_request) + record(11, health_response),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(seeds), OUT))
