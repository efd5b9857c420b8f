#!/usr/bin/env python3
"""Fault-injecting TCP proxies in front of every member's peer listener (stdlib only).

Member i listens for peers on its real port R_i but advertises the proxy port P_i, so
every peer connection *to* member i goes through proxy i.  A proxy is protocol-agnostic:
it forwards bytes and never parses them, so the same proxies serve etcd (HTTP streams
and pipelines on the peer port) and keeld (binary frames).

Who dialled?  Every member dials from 127.0.0.1 with a kernel-chosen port, so neither
the source address nor the first bytes identify the dialler generically.  The proxy
asks the kernel instead: at accept() it looks up the dialler's socket (local
127.0.0.1:<source port>, remote 127.0.0.1:P_i) in /proc/net/tcp, takes its inode and
finds the member process holding `socket:[inode]` among its /proc/<pid>/fd entries (the
harness started the members and knows their pids, also after restarts).  So every
connection is attributed to a directed *link* (dialler s -> listener d), and rules are
per link:

  block(s, d, mode)  connections dialled by s to d:
       "drop"       existing ones are shut down, new ones reset at once;
       "blackhole"  existing ones stop being forwarded (both directions; bytes wait in
                    the kernel buffers, as with a partition TCP outlives), new ones are
                    accepted and held; forwarding resumes on unblock;
  partition(groups)  block every link between members of different groups, both ways:
                     a real network partition, whatever the protocol's direction of
                     connections versus messages;
  isolate(i)         partition([{i}, others]): i can neither reach nor be reached;
  isolate_inbound(i) block every connection dialled *to* i, from anyone (also from an
                     unidentified process) -- the one-sided fault: i's own dials still
                     pass.  What that means for messages depends on the protocol (etcd
                     receives a peer's messages on streams it dialled itself; keeld
                     sends its messages on connections it dialled), so the scenarios use
                     the symmetric forms;
  delay(s, d, sec)   add latency to every chunk forwarded on link s -> d;
  heal()             remove every rule.

Linux only (/proc).  A connection whose dialler cannot be identified is counted in
`stats["unidentified"]` and only obeys isolate_inbound rules.
"""

import os
import select
import socket
import struct
import threading
import time

__all__ = ["PeerProxies"]


def _proc_hex(ip, port):
    return "%08X:%04X" % (struct.unpack("=I", socket.inet_aton(ip))[0], port)


def _socket_inode(local, remote):
    """Inode of the IPv4 TCP socket with the given local and remote (ip, port)."""
    want_l, want_r = _proc_hex(*local), _proc_hex(*remote)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                if len(p) > 9 and p[1] == want_l and p[2] == want_r:
                    return p[9]
    except OSError:
        pass
    return None


def _pid_holds(pid, inode):
    target = "socket:[%s]" % inode
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return False
    for n in names:
        try:
            if os.readlink(os.path.join(d, n)) == target:
                return True
        except OSError:
            pass
    return False


class _Conn:
    __slots__ = ("src", "dst", "client", "upstream", "dead", "lock", "open_dirs", "peer")

    def __init__(self, src, dst, client, peer):
        self.src = src
        self.dst = dst
        self.client = client
        self.upstream = None
        self.dead = False
        self.lock = threading.Lock()
        self.open_dirs = 2
        self.peer = peer


class PeerProxies:
    def __init__(self, listen_ports, upstream_ports, pid_of, host="127.0.0.1", log=None):
        """listen_ports[i]: proxy port advertised for member i; upstream_ports[i]: its
        real peer port; pid_of(i): member i's current pid (or None)."""
        self.n = len(listen_ports)
        self.host = host
        self.listen_ports = list(listen_ports)
        self.upstream_ports = list(upstream_ports)
        self.pid_of = pid_of
        self.log = log or (lambda s: None)
        self.cv = threading.Condition()
        self.rules = {}        # (src, dst) -> "drop" | "blackhole"
        self.inbound = {}      # dst -> mode (every dialler, identified or not)
        self.delays = {}       # (src, dst) -> seconds
        self.conns = set()
        self.stats = {"accepted": 0, "identified": 0, "unidentified": 0, "refused": 0,
                      "dropped": 0, "held": 0}
        self.closed = False
        self.listeners = []
        self.threads = []
        for i, port in enumerate(self.listen_ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(128)
            s.settimeout(0.2)
            self.listeners.append(s)
            t = threading.Thread(target=self._accept_loop, args=(i, s), daemon=True,
                                 name="peerproxy-%d" % i)
            t.start()
            self.threads.append(t)

    # -- rules -------------------------------------------------------------------

    def _changed(self):
        """Apply the rules to existing connections (drop) and wake waiting pumps."""
        with self.cv:
            victims = [c for c in self.conns if self._mode(c.src, c.dst) == "drop"]
            self.cv.notify_all()
        for c in victims:
            self.stats["dropped"] += 1
            self._kill(c)

    def block(self, src, dst, mode="drop"):
        assert mode in ("drop", "blackhole")
        with self.cv:
            self.rules[(src, dst)] = mode
        self._changed()

    def unblock(self, src, dst):
        with self.cv:
            self.rules.pop((src, dst), None)
        self._changed()

    def partition(self, groups, mode="drop"):
        """Block every link between members of different groups (both directions).
        Members in no group are left connected to everyone."""
        where = {}
        for g, members in enumerate(groups):
            for m in members:
                where[m] = g
        with self.cv:
            for s in where:
                for d in where:
                    if where[s] != where[d]:
                        self.rules[(s, d)] = mode
        self._changed()

    def isolate(self, i, mode="drop"):
        self.partition([[i], [j for j in range(self.n) if j != i]], mode)

    def isolate_inbound(self, i, mode="drop"):
        with self.cv:
            self.inbound[i] = mode
        self._changed()

    def delay(self, src, dst, seconds):
        with self.cv:
            if seconds:
                self.delays[(src, dst)] = seconds
            else:
                self.delays.pop((src, dst), None)

    def heal(self):
        with self.cv:
            self.rules.clear()
            self.inbound.clear()
            self.delays.clear()
        self._changed()

    def blocked_links(self):
        with self.cv:
            return sorted(self.rules.items()) + [(("*", d), m) for d, m in sorted(self.inbound.items())]

    def _mode(self, src, dst):
        # caller holds self.cv (or accepts a racy read)
        modes = (self.inbound.get(dst), self.rules.get((src, dst)) if src is not None else None)
        if "drop" in modes:
            return "drop"
        if "blackhole" in modes:
            return "blackhole"
        return None

    # -- connections ---------------------------------------------------------------

    def identify(self, peer_addr, dst):
        """Index of the member whose process dialled from peer_addr to proxy dst."""
        for attempt in range(3):
            inode = _socket_inode(peer_addr, (self.host, self.listen_ports[dst]))
            if inode and inode != "0":
                for i in range(self.n):
                    pid = self.pid_of(i)
                    if pid and _pid_holds(pid, inode):
                        return i
            time.sleep(0.002)
        return None

    def _accept_loop(self, dst, lsock):
        while not self.closed:
            try:
                client, addr = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.closed:
                    return
                time.sleep(0.05)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            src = self.identify(addr, dst)
            self.stats["accepted"] += 1
            self.stats["identified" if src is not None else "unidentified"] += 1
            c = _Conn(src, dst, client, addr)
            with self.cv:
                mode = self._mode(src, dst)
                if mode != "drop":
                    self.conns.add(c)
            if mode == "drop":
                self.stats["refused"] += 1
                self._reset(client)
                continue
            threading.Thread(target=self._start, args=(c,), daemon=True,
                             name="peerproxy-conn").start()

    def _wait_pass(self, c):
        """Block while the link is blackholed. Returns False if the conn must die."""
        with self.cv:
            while True:
                if c.dead or self.closed:
                    return False
                mode = self._mode(c.src, c.dst)
                if mode is None:
                    return True
                if mode == "drop":
                    return False
                self.cv.wait(0.2)

    def _start(self, c):
        if self._mode(c.src, c.dst) == "blackhole":
            self.stats["held"] += 1
        if not self._wait_pass(c):
            self._kill(c)
            return
        try:
            up = socket.create_connection((self.host, self.upstream_ports[c.dst]), timeout=2.0)
            up.settimeout(None)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._kill(c)   # the member is down: the dialler sees its connection closed
            return
        with c.lock:
            if c.dead:
                up.close()
                return
            c.upstream = up
        threading.Thread(target=self._pump, args=(c, c.client, up), daemon=True).start()
        self._pump(c, up, c.client)

    def _pump(self, c, a, b):
        try:
            while True:
                if not self._wait_pass(c):
                    break
                r, _, _ = select.select([a], [], [], 0.2)
                if not r:
                    continue
                data = a.recv(65536)
                if not data:
                    try:
                        b.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    break
                d = self.delays.get((c.src, c.dst))
                if d:
                    time.sleep(d)
                if not self._wait_pass(c):
                    break
                b.sendall(data)
        except (OSError, ValueError):
            pass
        with c.lock:
            c.open_dirs -= 1
            last = c.open_dirs <= 0
        if last or c.dead:
            self._kill(c)

    @staticmethod
    def _reset(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass

    def _kill(self, c):
        """Shut a connection down (wakes its pumps); the last one closes the sockets."""
        with c.lock:
            first = not c.dead
            c.dead = True
        with self.cv:
            self.conns.discard(c)
            self.cv.notify_all()
        for s in (c.client, c.upstream):
            if s is None:
                continue
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if first:
            # Closing is left to the pumps' exit or, if none runs, done here after they
            # had time to notice: a late close never races a select() on a reused fd.
            threading.Timer(1.0, self._close_both, args=(c,)).start()

    @staticmethod
    def _close_both(c):
        for s in (c.client, c.upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        with self.cv:
            conns = list(self.conns)
            self.cv.notify_all()
        for c in conns:
            self._kill(c)
        for s in self.listeners:
            try:
                s.close()
            except OSError:
                pass
