#!/usr/bin/env python3
"""A damaged WAL against a real keeld and `keelctl wal check`, on real files.

1. 50 acknowledged v2 PUTs, kill -9. Four bytes of the WAL overwritten at offset 2000,
   well within the last batch_bytes_max (8 MiB) of the log: `keelctl wal check` and
   keeld both refuse, naming the file and the offset of the damaged record, and keeld
   changes nothing in the file (before the fix, recovery took this for a torn tail and
   dropped 32 acknowledged writes).
2. The same log with its header zeroed over one record: refused the same way.
   `keelctl wal truncate` at that offset (the way on after a refusal that was no damage)
   zeroes from there; keeld then serves the writes before it.
3. The shape a torn write leaves (the last sector of the last record never written):
   `keelctl wal check` says it would truncate it, keeld truncates it with a warning,
   and serves every write before it.
4. A lost last segment: a single node's newest snapshot lies in the WAL's last segment,
   which is deleted. keeld and `keelctl wal check` refuse (before, keeld started from the
   snapshot and dropped every write after it without a word). With the whole WAL gone
   (a data dir restored from a snapshot file) keeld starts from the snapshot, and says so.

Usage: wal_damage_e2e_test.py KEELD KEELCTL
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import keeltest  # noqa: E402

KEELD = sys.argv[1] if len(sys.argv) > 1 else "build/bin/keeld"
KEELCTL = sys.argv[2] if len(sys.argv) > 2 else "build/bin/keelctl"
SEGMENT = "0000000000000000-0000000000000001.wal"
check = keeltest.Checks()
started = []  # every keeld this test starts, stopped at the end whatever happens


def start(data_dir, log_path, *extra):
    client, peer = keeltest.free_port(), keeltest.free_port()
    url = "http://127.0.0.1:%d" % client
    log = open(log_path, "w")
    proc = subprocess.Popen([KEELD, "--data-dir", data_dir, "--listen-client-urls", url,
                             "--advertise-client-urls", url,
                             "--listen-peer-urls", "http://127.0.0.1:%d" % peer] + list(extra),
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    started.append(proc)
    return proc, url


def wait_ready(proc, url):
    deadline = time.time() + 10
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/version", timeout=1):
                return True
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    return False


def v2_put(url, key, value):
    data = urllib.parse.urlencode({"value": value}).encode()
    request = urllib.request.Request(url + "/v2/keys/" + key, data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status


def v2_get(url, key):
    try:
        with urllib.request.urlopen(url + "/v2/keys/" + key, timeout=5) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as error:
        return "HTTP %d" % error.code


def keelctl(*args):
    done = subprocess.run([KEELCTL] + list(args), capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


def wal_check(data_dir):
    return keelctl("wal", "check", data_dir)


def record_offsets(path):
    """The offset of every record of a WAL segment (docs/formats/wal.md), the segment
    header first, and the end of the records."""
    with open(path, "rb") as f:
        data = f.read()
    offsets, at = [], 0
    while at + 16 <= len(data) and data[at:at + 16] != b"\0" * 16:
        offsets.append(at)
        length = int.from_bytes(data[at:at + 4], "little")
        at += 16 + (length + 7) // 8 * 8
    return offsets, at


def damaged_copy(source, target, offset, data):
    shutil.copytree(source, target)
    path = os.path.join(target, "wal", SEGMENT)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    with open(path, "rb") as f:
        return path, f.read()


def refused(root, name, source, offset, data, expect_offset, expect_text):
    """Damages a copy of `source` and checks that keelctl and keeld refuse it."""
    target = os.path.join(root, name)
    path, before = damaged_copy(source, target, offset, data)
    where = "%s:%d: " % (path, expect_offset)
    code, out = wal_check(target)
    check("%s: keelctl wal check exits 1" % name, code == 1, out)
    check("%s: keelctl names the file and offset %d" % (name, expect_offset), where in out, out)
    check("%s: keelctl says %r" % (name, expect_text), expect_text in out, out)
    log_path = os.path.join(root, name + ".log")
    proc, _ = start(target, log_path)
    status = keeltest.exit_code_within(proc, 15)
    lines = keeltest.log_lines(log_path, where)
    check("%s: keeld exits 1" % name, status == 1, status)
    check("%s: keeld names the file and offset, and %r" % (name, expect_text),
          any(expect_text in line for line in lines), open(log_path).read()[-600:])
    with open(path, "rb") as f:
        check("%s: the WAL file is unchanged" % name, f.read() == before)


def lost_last_segment(root):
    data = os.path.join(root, "lost")
    log_path = os.path.join(root, "lost-1.log")
    # 16 MiB segments of ~100 KB entries: about 167 per segment, the snapshot at entry 200.
    flags = ("--snapshot-count", "200", "--kv.wal-segment-bytes", str(16 << 20))
    proc, url = start(data, log_path, *flags)
    check("lost: keeld starts", wait_ready(proc, url))
    statuses = [v2_put(url, "big/%03d" % i, "%03d" % i + "v" * 100000) for i in range(230)]
    check("lost: 230 PUTs of 100 KB acknowledged", statuses == [201] * 230, sorted(set(statuses)))
    snap_dir, wal_dir = os.path.join(data, "snap"), os.path.join(data, "wal")
    deadline = time.time() + 20
    while time.time() < deadline and not glob.glob(os.path.join(snap_dir, "*.snap")):
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    snaps = sorted(n for n in os.listdir(snap_dir) if n.endswith(".snap"))
    segments = sorted(n for n in os.listdir(wal_dir) if n.endswith(".wal"))
    snapshot_index = int(snaps[-1][17:33], 16) if snaps else 0
    last_first = int(segments[-1][17:33], 16) if segments else 0
    check("lost: a snapshot in the last of two or more segments",
          len(segments) >= 2 and snapshot_index >= last_first > 1, (snaps, segments))
    os.unlink(os.path.join(wal_dir, segments[-1]))
    # And the remaining segment ends in a torn write's shape (its last record's last
    # sector zeroed): the refused start must not truncate it (before, keeld zeroed the
    # tail first and refused afterwards).
    remaining = os.path.join(wal_dir, segments[-2])
    _, end = record_offsets(remaining)
    with open(remaining, "r+b") as f:
        f.seek((end - 1) // 512 * 512)
        f.write(b"\0" * 512)
    with open(remaining, "rb") as f:
        before = f.read()
    code, out = wal_check(data)
    check("lost: keelctl wal check exits 1, saying segments after %s are missing" % segments[-2],
          code == 1 and "WAL segments after %s are missing" % segments[-2] in out, out)
    check("lost: ... and where the WAL ends (before its torn last record) and the snapshot is",
          "the WAL ends at entry %d" % (last_first - 2) in out and "at entry %d" % snapshot_index in out, out)
    log_path = os.path.join(root, "lost-2.log")
    proc, url = start(data, log_path, *flags)
    status = keeltest.exit_code_within(proc, 15)
    check("lost: keeld exits 1", status == 1, status)
    check("lost: keeld says segments after %s are missing, and that it would truncate a torn tail" % segments[-2],
          keeltest.log_lines(log_path, "WAL segments after %s are missing" % segments[-2],
                             "would truncate torn tail of") != [],
          open(log_path).read()[-600:])
    with open(remaining, "rb") as f:
        check("lost: the refused start left the WAL unchanged", f.read() == before)

    # No WAL at all: a data dir restored from its snapshot file.
    for name in segments[:-1]:
        os.unlink(os.path.join(wal_dir, name))
    code, out = wal_check(data)
    check("restored: keelctl wal check exits 0: no WAL, the snapshot alone",
          code == 0 and "no WAL: keeld would start from the snapshot alone" in out, out)
    log_path = os.path.join(root, "lost-3.log")
    proc, url = start(data, log_path, *flags)
    check("restored: keeld starts", wait_ready(proc, url))
    check("restored: keeld warns that it starts from the snapshot alone",
          keeltest.log_lines(log_path, "holds no WAL: starting from the snapshot at entry %d alone" % snapshot_index)
          != [], open(log_path).read()[-600:])
    check("restored: a key from before the snapshot is served", '"value":"100v' in v2_get(url, "big/100"))
    keeltest.stop(proc)


def main():
    root = tempfile.mkdtemp(prefix="wal_damage_e2e_")
    source = os.path.join(root, "source")
    try:
        proc, url = start(source, os.path.join(root, "source.log"))
        check("keeld starts", wait_ready(proc, url))
        statuses = [v2_put(url, "k%02d" % i, "value-%02d" % i) for i in range(1, 51)]
        check("50 v2 PUTs acknowledged", statuses == [201] * 50, statuses)
        proc.kill()
        proc.wait()
        code, out = wal_check(source)
        check("the undamaged log checks ok: 50 records, no torn tail",
              code == 0 and "records: 50 " in out and "torn tail: none" in out, out)
        offsets, used = record_offsets(os.path.join(source, "wal", SEGMENT))
        check("the segment header, 50 entries and 49 durable marks, far within one batch (8 MiB) of the end",
              len(offsets) == 100 and 2100 < used < 65536, (len(offsets), used))

        # 1. Four bytes overwritten inside the record that holds offset 2000.
        holder = max(o for o in offsets if o <= 2000)
        refused(root, "overwritten", source, 2000, b"\xde\xad\xbe\xef", holder,
                "and every sector of it was written: a damaged record, not a torn write")
        # 1b. The operator's way on when a refusal was no damage (a power cut without
        # stable pages): keelctl wal truncate, confirmed by the offset recovery named.
        truncated = os.path.join(root, "overwritten")
        path = os.path.join(truncated, "wal", SEGMENT)
        code, out = keelctl("wal", "truncate", truncated, "%s:%d" % (path, holder + 8))
        check("truncate: another offset than the failing one is refused, nothing truncated",
              code == 1 and "nothing truncated" in out, out)
        code, out = keelctl("wal", "truncate", source, "%s:%d" % (os.path.join(source, "wal", SEGMENT), holder))
        check("truncate: a WAL that recovers is refused", code == 1 and "recovers as it is" in out, out)
        code, out = keelctl("wal", "truncate", truncated, "%s:%d" % (path, holder))
        check("truncate: at the failing offset: zeroed, then the WAL checks ok",
              code == 0 and "zeroed" in out and "from offset %d" % holder in out and "result: ok" in out, out)
        proc, url = start(truncated, os.path.join(root, "truncated.log"))
        check("truncate: keeld starts", wait_ready(proc, url))
        check("truncate: the writes before the offset are served", '"value":"value-01"' in v2_get(url, "k01"))
        check("truncate: the writes after it are gone", v2_get(url, "k50") == "HTTP 404")
        keeltest.stop(proc)

        # 2. The header of a record zeroed, one that does not end its sector.
        victim = next(o for o in offsets[25:] if o % 512 < 400)
        refused(root, "zeroed-header", source, victim, b"\0" * 16, victim,
                "an empty record header, with nonzero bytes after it in its sector")

        # 2b. A whole sector zeroed in the middle of the log (a lost write): the shape of a
        # torn write, but the durable marks of the later batches say it was durable (before
        # the marks, every write after it was dropped with a warning).
        failing = max(o for o in offsets if o <= 1024)
        refused(root, "zeroed-sector", source, 1024, b"\0" * 512, failing,
                "says the segment was durable up to offset")

        # 3. A torn write's shape: one more PUT, with a value spanning several sectors,
        # whose last sector never reached the disk.
        torn = os.path.join(root, "torn")
        shutil.copytree(source, torn)
        proc, url = start(torn, os.path.join(root, "torn-1.log"))
        check("torn: keeld starts on the copy", wait_ready(proc, url))
        check("torn: a 3000-byte PUT acknowledged", v2_put(url, "big", "x" * 3000) == 201)
        proc.kill()
        proc.wait()
        path = os.path.join(torn, "wal", SEGMENT)
        offsets, end = record_offsets(path)
        check("torn: one more record (the first batch after a start has no mark), of more than 3000 bytes",
              len(offsets) == 101 and end > used + 3000, (len(offsets), used, end))
        last_sector = (end - 1) // 512 * 512
        with open(path, "r+b") as f:
            f.seek(last_sector)
            f.write(b"\0" * 512)
        code, out = wal_check(torn)
        check("torn: keelctl wal check exits 0 and would truncate the tail at %s:%d" % (SEGMENT, used),
              code == 0 and ("would truncate torn tail of" in out and "%s:%d" % (path, used) in out), out)
        log_path = os.path.join(root, "torn-2.log")
        proc, url = start(torn, log_path)
        check("torn: keeld starts", wait_ready(proc, url))
        check("torn: keeld logs the truncated tail",
              keeltest.log_lines(log_path, "truncated torn tail of", "%s:%d" % (path, used)) != [],
              open(log_path).read()[-600:])
        values = [v2_get(url, "k%02d" % i) for i in (1, 25, 50)]
        check("torn: every write before the tail is served",
              all('"value":"value-%02d"' % i in v for i, v in zip((1, 25, 50), values)), values)
        check("torn: the unfinished PUT is gone", v2_get(url, "big") == "HTTP 404")
        keeltest.stop(proc)
        lost_last_segment(root)
    except Exception as error:  # noqa: BLE001
        check("no exception", False, repr(error))
    finally:
        for proc in started:
            keeltest.stop(proc)
        if check.failed:
            keeltest.print_logs(root, 2000)
        shutil.rmtree(root, ignore_errors=True)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
