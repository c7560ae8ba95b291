"""The probe engine: send, echo and sniff packets across every namespace of a lab.

One process holds sockets in every namespace (each made by a short-lived thread that
entered it, see harness.host.netns) and drives them all from one selector loop:

- a packet sniffer (AF_PACKET, all interfaces) per namespace, opened before anything is
  sent, so no probe can race its observer; kernel timestamps order what it sees;
- UDP and TCP echo listeners in every namespace that receives probes;
- senders: UDP and ICMP probes are crafted (harness.prove.probe: fixed TTL, our ports, a
  nonce) and sent through a raw IP socket in the sender's namespace; TCP probes are real
  kernel connections, so the handshake proves stateful paths too.

Every probe carries a unique nonce at the start of its payload and is matched by it. At
most `window` probes are in flight, and every wait is bounded.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harness.host import bpf
from harness.host.netns import run_in_netns
from harness.prove.probe import (
    REPLY,
    REQUEST,
    TCP_PORT,
    TTL,
    UDP_PORT,
    Crafter,
    Probe,
    Seen,
    nonce,
    parse,
)

IP_PKTINFO = 8


@dataclass
class Namespace:
    name: str
    pid: int
    listens: bool = False
    # sniff only arriving probes addressed to these; None: every probe frame, both ways
    local: tuple[str, ...] | None = None


@dataclass
class Engine:
    """Runs probes across namespaces. Use as a context manager: sockets close on exit."""

    namespaces: list[Namespace]
    keep_frames: bool = False
    window: int = 256
    timeout: float = 2.0
    sightings: dict[int, list[Seen]] = field(default_factory=dict)
    _sel: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    _socks: list[socket.socket] = field(default_factory=list)
    _raw: dict[str, socket.socket] = field(default_factory=dict)
    _tcp_pool: dict[str, list[socket.socket]] = field(default_factory=dict)
    _pid: dict[str, int] = field(default_factory=dict)
    udp_sport: dict[str, int] = field(default_factory=dict)  # per sender namespace
    _clients: dict[int, socket.socket] = field(default_factory=dict)
    _craft: Crafter = field(default_factory=Crafter)
    _connecting: set[int] = field(default_factory=set)  # TCP probes without a handshake yet
    unanswered: set[int] = field(default_factory=set)  # TCP probes whose handshake timed out
    _handshakes: dict[tuple[int, str], int] = field(default_factory=dict)  # (sport, dst) -> id
    _inflight: dict[int, Probe] = field(default_factory=dict)

    def __enter__(self) -> Engine:
        try:
            for ns in self.namespaces:
                self._pid[ns.name] = ns.pid
                self._open(ns)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        for pool in self._tcp_pool.values():
            for sock in pool:
                sock.close()
        self._socks.clear()
        self._tcp_pool.clear()
        self._sel.close()

    def _keep(self, sock: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        sock.setblocking(False)
        self._socks.append(sock)
        self._sel.register(sock, selectors.EVENT_READ, handler)

    def _open(self, ns: Namespace) -> None:
        def make() -> list[socket.socket]:
            sniff = bpf.packet_socket()
            sniff.setsockopt(socket.SOL_SOCKET, bpf.SO_TIMESTAMPNS, 1)
            sniff.setsockopt(socket.SOL_SOCKET, bpf.SO_RCVBUFFORCE, 16 << 20)
            bpf.attach(sniff, bpf.probe_filter(list(ns.local)) if ns.local
                       else bpf.probe_filter(handshakes=True))
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            udp_src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # a fresh port each run: a conntrack entry left by an earlier run would let a
            # NAT rule added since then go unseen
            udp_src.bind(("0.0.0.0", 0))
            out = [sniff, raw, udp_src]
            if ns.listens:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                udp.bind(("0.0.0.0", UDP_PORT))
                tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                tcp.bind(("0.0.0.0", TCP_PORT))
                tcp.listen(1024)
                out += [udp, tcp]
            return out

        socks = run_in_netns(ns.pid, make)
        sniff, raw, udp_src = socks[:3]
        self._keep(sniff, lambda s, n=ns.name: self._on_frame(s, n))
        self._raw[ns.name] = raw
        self._socks.append(raw)
        self._keep(udp_src, _drain)
        self.udp_sport[ns.name] = udp_src.getsockname()[1]
        if ns.listens:
            self._keep(socks[3], _udp_echo)
            self._keep(socks[4], self._tcp_accept)

    # --- receive side --------------------------------------------------------------------

    def _on_frame(self, sock: socket.socket, ns: str) -> None:
        for _ in range(64):  # bounded per wake-up so one busy namespace cannot starve others
            try:
                frame, anc, _, addr = sock.recvmsg(bpf.PROBE_SNAPLEN, 64)
            except BlockingIOError:
                return
            parsed = parse(frame)
            if parsed is None:
                continue
            ts = time.time()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == bpf.SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    ts = sec + nsec / 1e9
            if addr[2] == bpf.PACKET_OTHERHOST:
                continue  # flooded by a switch to a bystander: not on the packet's path
            probe_id, reply, proto, src, dst, sport, dport, ttl = parsed
            if not probe_id:  # a handshake: whose SYN is it?
                probe_id = self._handshakes.get((dport, src) if reply else (sport, dst), 0)
                if not probe_id:
                    continue
            seen = Seen(ns, addr[0], addr[2] == bpf.PACKET_OUTGOING, ts, reply, proto, src, dst,
                        sport, dport, ttl, frame if self.keep_frames else None)
            self.sightings.setdefault(probe_id, []).append(seen)
            probe = self._inflight.get(probe_id)
            if probe is None or seen.outgoing:
                continue
            if not reply and ns == probe.receiver and probe.request is None:
                probe.request = seen
            elif reply and ns == probe.sender and probe.reply_seen is None:
                probe.reply_seen = seen

    def _tcp_accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return
            except OSError:
                return
            conn.setblocking(False)
            self._sel.register(conn, selectors.EVENT_READ, self._tcp_serve)

    def _tcp_serve(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(64)
            if data.startswith(REQUEST):
                conn.send(REPLY + data[3:19])
        except OSError:
            pass
        self._sel.unregister(conn)
        conn.close()

    # --- send side -----------------------------------------------------------------------

    def _tcp_socket(self, ns: str) -> socket.socket:
        pool = self._tcp_pool.setdefault(ns, [])
        if not pool:
            def make(n: int = 64) -> list[socket.socket]:
                return [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]

            pool.extend(run_in_netns(self._pid[ns], make))
        return pool.pop()

    def _send(self, probe: Probe) -> None:
        probe.sent_at = time.monotonic()
        if probe.proto == "tcp":
            sock = self._tcp_socket(probe.sender)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
            code = sock.connect_ex((probe.dst, TCP_PORT))
            if code not in (0, errno.EINPROGRESS):
                probe.error = f"connect failed in {probe.sender}: {errno.errorcode.get(code)}"
                sock.close()
                return
            probe.sport = sock.getsockname()[1]
            self._handshakes[(probe.sport, probe.dst)] = probe.id
            self._clients[probe.id] = sock
            self._connecting.add(probe.id)
            self._sel.register(sock, selectors.EVENT_WRITE,
                               lambda s, p=probe: self._tcp_connected(s, p))
            return
        try:
            if probe.proto == "udp":
                probe.sport = self.udp_sport[probe.sender]
            frame = self._craft(probe.proto, probe.src, probe.dst, probe.id, probe.sport)
            self._raw[probe.sender].sendto(frame, (probe.dst, 0))
        except OSError as exc:
            probe.error = f"send failed in {probe.sender}: {exc.strerror}"

    def _tcp_connected(self, sock: socket.socket, probe: Probe) -> None:
        self._sel.unregister(sock)
        self._connecting.discard(probe.id)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            probe.error = f"TCP connect from {probe.sender} failed: {errno.errorcode.get(code)}"
            sock.close()
            return
        try:
            sock.send(nonce(probe.id))
        except OSError as exc:
            probe.error = f"TCP send from {probe.sender} failed: {exc.strerror}"
            sock.close()
            return
        self._sel.register(sock, selectors.EVENT_READ, self._tcp_reply)

    def _tcp_reply(self, sock: socket.socket) -> None:
        try:
            sock.recv(64)
        except OSError:
            pass
        self._sel.unregister(sock)
        sock.close()

    def _forget_client(self, probe: Probe) -> None:
        sock = self._clients.pop(probe.id, None)
        if sock is not None:
            if sock.fileno() != -1 and sock in self._sel.get_map():  # type: ignore[operator]
                self._sel.unregister(sock)
            sock.close()

    # --- the loop ------------------------------------------------------------------------

    def run(self, probes: Iterable[Probe], on_done: Callable[[Probe], None] | None = None,
            settle: float = 0.2) -> None:
        """Send every probe, at most `window` in flight, each waited for `timeout` at most."""
        pending = list(probes)
        pending.reverse()
        while pending or self._inflight:
            while pending and len(self._inflight) < self.window:
                probe = pending.pop()
                if probe.error:  # cannot be sent (an end is down, no route): done already
                    if on_done:
                        on_done(probe)
                    continue
                self._inflight[probe.id] = probe
                self._send(probe)
            self._poll(0.05)
            now = time.monotonic()
            for probe in list(self._inflight.values()):
                if probe.done or now - probe.sent_at > self.timeout:
                    if probe.proto == "tcp" and probe.id in self._connecting:
                        probe.error = (f"TCP handshake from {probe.sender} to {probe.dst} did "
                                       f"not complete within {self.timeout:g} s")
                        self.unanswered.add(probe.id)
                    del self._inflight[probe.id]
                    self._forget_client(probe)
                    if on_done:
                        on_done(probe)
        end = time.monotonic() + settle  # late sightings along the path, for diagnosis
        while time.monotonic() < end:
            self._poll(0.02)
        self._close_clients()

    def _poll(self, timeout: float) -> None:
        for key, _ in self._sel.select(timeout):
            key.data(key.fileobj)

    def _close_clients(self) -> None:
        for key in list(self._sel.get_map().values()):
            if key.fileobj not in self._socks:  # accepted server sides still open
                self._sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]


def _drain(sock: socket.socket) -> None:
    for _ in range(64):
        try:
            sock.recv(64)
        except OSError:
            return


def _udp_echo(sock: socket.socket) -> None:
    """Answer from the address the request was sent to, as a well-behaved UDP server
    does (IP_PKTINFO); a wildcard socket would otherwise pick the route's source."""
    for _ in range(64):
        try:
            data, anc, _, peer = sock.recvmsg(64, 64)
        except BlockingIOError:
            return
        except OSError:
            continue
        if not data.startswith(REQUEST):
            continue
        reply_anc = [(socket.IPPROTO_IP, IP_PKTINFO,
                      struct.pack("=I4s4s", 0, d[8:12], b"\0" * 4))
                     for level, kind, d in anc if level == socket.IPPROTO_IP
                     and kind == IP_PKTINFO]
        try:
            sock.sendmsg([REPLY + data[3:19]], reply_anc, 0, peer)
        except OSError:
            pass  # no route back (an outside host answering an unmasqueraded pod)
