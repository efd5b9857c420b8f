"""keeltest: the pieces every Python end-to-end test of keel shares (standard library only).

A script beside tests/lib (tests/kv, tests/cluster, ...) imports it without installing
anything:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    import keeltest  # noqa: E402

What it guarantees:
  - Checks: check(name, condition, detail="") prints exactly one line per check, flushed at
    once: "ok   NAME" when the condition is true, else "FAIL NAME" followed by the detail
    (left out when it is "" or None), laid out by the function given as `layout`
    (default ": DETAIL"). It counts both (passed, failed; failures lists the failed
    names) and returns the condition unchanged. summary() prints "N passed, M failed"
    and returns the exit status: 1 if anything failed, else 0.
  - skip(why): prints "SKIP: WHY" and exits 77, the code CTest is told means "skipped"
    (SKIP_RETURN_CODE 77 in the CMakeLists).
  - free_port(): a loopback TCP port that was free a moment ago.
  - stop(proc): the child process has exited and is reaped when it returns (SIGTERM, then
    SIGKILL after `timeout` seconds).
  - start_keeld(keeld, root, args): a single-node keeld on a free loopback client port,
    its data under `root`, its output in a log file there; returns a Keeld once
    `GET /health` answers 200 (or raises, with the log's tail, if it exits or does not
    answer within `timeout` seconds).
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests


def after_colon(limit=None):
    """A detail layout: ": DETAIL" on the FAIL line, cut to `limit` characters (None: whole)."""
    return lambda detail: ": " + str(detail)[:limit]


def on_next_line(detail):
    """A detail layout for multi-line text (a diff): the FAIL line ends in ":", the text follows."""
    return ":\n" + str(detail)


def indented_lines(detail):
    """A detail layout: the detail (one value, or a list of lines) below the FAIL line, one
    line each, indented seven spaces."""
    return "".join("\n       " + str(line) for line in (detail if isinstance(detail, list) else [detail]))


class Checks:
    """Counts and prints the checks of one test run (see the module docstring)."""

    def __init__(self, layout=after_colon()):
        self.layout = layout
        self.passed = 0
        self.failures = []

    @property
    def failed(self):
        return len(self.failures)

    def __call__(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print("ok   " + name, flush=True)
        else:
            self.failures.append(name)
            shown = "" if detail is None or detail == "" else self.layout(detail)
            print("FAIL " + name + shown, flush=True)
        return condition

    def fail(self, name, detail=""):
        """Records a failure that is not a condition: an error that ended a scenario."""
        self(name, False, detail)

    def summary(self):
        """Prints "N passed, M failed"; returns the exit status (1 if anything failed)."""
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failures else 0


def skip(why):
    """Ends the test as skipped: prints "SKIP: WHY" and exits 77."""
    print("SKIP: " + why, flush=True)
    sys.exit(SKIP)


def free_port():
    """A loopback TCP port the kernel just handed out (free unless someone takes it first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_code_within(proc, timeout):
    """proc's exit status if it exits within `timeout` seconds; else None, after killing
    and reaping it."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def print_logs(root, tail=3000):
    """Prints the last `tail` characters of every *.log file under `root` (a failed test's
    evidence, before its work dir is removed)."""
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".log"):
                with open(os.path.join(dirpath, name), errors="replace") as f:
                    print("---- " + name + "\n" + f.read()[-tail:])


def log_lines(path, *needles):
    """The lines of the file at `path` that contain every one of `needles`, stripped."""
    with open(path, errors="replace") as f:
        return [line.strip() for line in f if all(n in line for n in needles)]


def stop(proc, timeout=10):
    """Stops a child process and reaps it: SIGTERM, then SIGKILL if it has not exited within
    `timeout` seconds. A process that has already exited is only reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Keeld:
    """A keeld started by start_keeld: `proc`, `port`, `url` (http://127.0.0.1:PORT),
    `log_path`."""

    def __init__(self, proc, port, log_path):
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = "http://127.0.0.1:%d" % port

    def log_tail(self, chars=3000):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def kill(self):
        """kill -9, reaped."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        stop(self.proc)


def start_keeld(keeld, root, args=(), log_name="keeld.log", timeout=15):
    """Starts `keeld` with --data-dir ROOT/data, a free client port and `args` (appended:
    they may repeat a flag to override), its output appended to ROOT/LOG_NAME; waits until
    GET /health answers 200. Raises RuntimeError (with the log's tail) if it exits first or
    `timeout` seconds pass."""
    port = free_port()
    log_path = os.path.join(root, log_name)
    with open(log_path, "a") as log:
        proc = subprocess.Popen([keeld, "--data-dir", os.path.join(root, "data"),
                                 "--listen-client-urls", "http://127.0.0.1:%d" % port,
                                 "--listen-peer-urls", "http://127.0.0.1:%d" % free_port()] + list(args),
                                stdout=log, stderr=subprocess.STDOUT)
    server = Keeld(proc, port, log_path)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("keeld exited with %d:\n%s" % (proc.returncode, server.log_tail()))
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    server.kill()
    raise RuntimeError("keeld did not answer /health within %d s:\n%s" % (timeout, server.log_tail()))
