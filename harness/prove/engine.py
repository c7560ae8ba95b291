"""The probe engine: send, echo and sniff packets across every namespace of a lab.

One process holds sockets in every namespace (each made by a short-lived thread that
entered it, see harness.host.netns) and drives them all from one selector loop:

- a packet sniffer (AF_PACKET, all interfaces) per namespace, opened before anything is
  sent, so no probe can race its observer; kernel timestamps order what it sees. It sees
  the wire: arriving frames before the namespace's netfilter, leaving ones after it;
- the namespace's own kernel sockets, which both send and receive, so that the kernel
  picks every probe's source address and port and every receiver reports what its socket
  got after netfilter (harness.prove.probe.Heard):
  - a UDP socket on an ephemeral port: sends requests, echoes requests back from the
    address they were sent to, and receives the echoes of its own requests;
  - a raw ICMP socket: sends echo requests (the kernel writes the IP header) and sees, as
    a raw socket does after INPUT, the echo requests the kernel answers and the replies;
  - a TCP listener on an ephemeral port where probes end; TCP probes are real kernel
    connections, so the handshake proves stateful paths too.

Ephemeral ports let two verifies of one lab run at once. Every probe carries a unique
nonce at the start of its payload and is matched by it. At most `window` probes are in
flight, and every wait is bounded.

A namespace with IPv6 gets the same sockets again in IPv6 (IPV6_V6ONLY, so each family's
are its own; a raw ICMPv6 socket that passes only echoes), and a probe goes out through
those of its destination's family. The IPv6 hop limit is read and judged where IPv4's TTL
is: from the header on the wire, from IPV6_HOPLIMIT at the socket.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from sys import intern

from harness.host import bpf
from harness.host.netns import run_in_netns
from harness.prove.probe import (
    TTL,
    Heard,
    Probe,
    Seen,
    address,
    icmp6_echo,
    icmp_echo,
    icmp_id,
    nonce,
    parse,
    parse_icmp6,
    parse_ip,
    read_nonce,
)

IP_PKTINFO = 8  # linux/in.h: not in Python's socket module
IP_RECVTTL = 12
SOL_SOCKET, IPPROTO_IP, IP_TTL = socket.SOL_SOCKET, socket.IPPROTO_IP, socket.IP_TTL
SO_TIMESTAMPNS, PACKET_OUTGOING, PACKET_OTHERHOST = (bpf.SO_TIMESTAMPNS, bpf.PACKET_OUTGOING,
                                                     bpf.PACKET_OTHERHOST)
_TIMESPEC = struct.Struct("qq")
_INT = struct.Struct("i")
READ_BURST = 64  # reads per wake-up, so one busy socket cannot starve the others
TCP_BATCH = 256  # client sockets made per trip into a namespace
LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger: on, 0 s
V6 = socket.IPPROTO_IPV6


def family_of(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


@dataclass
class Namespace:
    name: str
    pid: int
    listens: bool = False
    # sniff only arriving probes addressed to these; None: every probe frame, both ways
    local: tuple[str, ...] | None = None
    # listeners on fixed (proto, address, port): a Service's endpoint at its targetPort
    ports: tuple[tuple[str, str, int], ...] = ()
    families: tuple[str, ...] = ("ipv4",)  # the address families it has sockets for


@dataclass
class _Sockets:
    udp: socket.socket  # sends UDP requests and receives their echoes
    icmp: socket.socket
    udp_sport: int  # the port of `udp`
    udp_port: int = 0  # the listeners', where probes end
    tcp_port: int = 0


# what `Engine._make` opens in one namespace: the sniffer, each family's sockets by role,
# and the fixed (Service endpoint) listeners
_Made = tuple[socket.socket, dict[str, dict[str, socket.socket]], list[socket.socket]]


def _sockets_of(made: _Made) -> list[socket.socket]:
    sniff, per, fixed = made
    return [sniff, *(s for socks in per.values() for s in socks.values()), *fixed]


@dataclass
class Engine:
    """Runs probes across namespaces. Use as a context manager: sockets close on exit."""

    namespaces: list[Namespace]
    keep_frames: bool = False
    window: int = 256
    timeout: float = 2.0
    # a mask of residues of probe ids (harness.host.bpf.residue): this engine's probes
    # have those, and its kernel filters keep only those: processes share a verify
    # (harness.prove.shard)
    share: int | None = None
    sightings: dict[int, list[Seen]] = field(default_factory=dict)
    heard: dict[int, list[Heard]] = field(default_factory=dict)
    unanswered: set[int] = field(default_factory=set)  # TCP probes whose handshake timed out
    _loop: _Loop = field(default_factory=lambda: _Loop())
    _socks: list[socket.socket] = field(default_factory=list)
    _ns: dict[tuple[str, str], _Sockets] = field(default_factory=dict)  # (ns, family)
    _tcp_pool: dict[tuple[str, str], list[socket.socket]] = field(default_factory=dict)
    # TCP probes each (namespace, family) has yet to send
    _tcp_left: dict[tuple[str, str], int] = field(default_factory=dict)
    _pid: dict[str, int] = field(default_factory=dict)
    _clients: dict[int, socket.socket] = field(default_factory=dict)
    _connecting: set[int] = field(default_factory=set)  # TCP probes without a handshake yet
    _handshakes: dict[tuple[int, str], int] = field(default_factory=dict)  # (sport, dst) -> id
    _inflight: dict[int, Probe] = field(default_factory=dict)  # in the order sent
    _finished: list[Probe] = field(default_factory=list)  # done since the loop last looked
    _ours: set[int] = field(default_factory=set)  # this run's probe ids
    _unclean: bool = False  # a probe sent timed out or failed

    def __enter__(self) -> Engine:
        # each namespace's sockets are made by a thread that enters it: side by side, as
        # a loaded host takes its time to schedule each new thread
        made: list[_Made] = []
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=min(16, len(self.namespaces) or 1)) as pool:
            for fut in [pool.submit(self._make, ns) for ns in self.namespaces]:
                try:
                    made.append(fut.result())
                except BaseException as exc:
                    error = error or exc
        if error is not None:
            close_all([sock for m in made for sock in _sockets_of(m)])
            raise error
        for ns, m in zip(self.namespaces, made, strict=True):
            self._pid[ns.name] = ns.pid
            self._register(ns, m)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        close_all([*self._socks, *(s for pool in self._tcp_pool.values() for s in pool)])
        self._socks.clear()
        self._tcp_pool.clear()
        self._loop.close()

    def _keep(self, sock: socket.socket, handler: Callable[..., None], *args: object) -> None:
        """Keep `sock` open for the engine's life; `handler(sock, *args)` when readable."""
        sock.setblocking(False)
        self._socks.append(sock)
        self._loop.add(sock, partial(handler, sock, *args))

    def _make(self, ns: Namespace) -> _Made:
        def make() -> _Made:
            out: list[socket.socket] = []
            try:
                sniff = bpf.packet_socket()
                out.append(sniff)
                sniff.setsockopt(socket.SOL_SOCKET, bpf.SO_TIMESTAMPNS, 1)
                sniff.setsockopt(socket.SOL_SOCKET, bpf.SO_RCVBUFFORCE, 16 << 20)
                bpf.attach(sniff, bpf.probe_filter(list(ns.local), share=self.share) if ns.local
                           else bpf.probe_filter(handshakes=True, share=self.share))
                if ns.local:  # arrivals only: spare the kernel a copy of every frame sent
                    bpf.ignore_outgoing(sniff)
                per = {family: _family_sockets(family, ns.listens, out, self.share)
                       for family in ns.families}
                fixed = []
                for proto, addr, port in ns.ports:  # in the endpoint address's family
                    sock = _service_socket(family_of(addr), socket.SOCK_STREAM
                                           if proto == "tcp" else socket.SOCK_DGRAM)
                    out.append(sock)
                    fixed.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        sock.bind((addr, port))
                    except OSError as exc:
                        raise OSError(exc.errno, f"{proto} port {addr}:{port} in {ns.name} is "
                                      f"taken ({exc.strerror}): is another verify of this "
                                      "lab probing its Services?") from exc
                    if proto == "tcp":
                        _defer_accept(sock)
                        sock.listen(1024)
            except BaseException:
                for sock in out:
                    sock.close()
                raise
            return sniff, per, fixed

        return run_in_netns(ns.pid, make)

    def _register(self, ns: Namespace, made: _Made) -> None:
        sniff, per, fixed = made
        for (proto, _, port), sock in zip(ns.ports, fixed, strict=True):
            if proto == "udp":
                self._keep(sock, self._on_udp, ns.name, port)
            else:
                self._keep(sock, self._tcp_accept, ns.name)
        self._keep(sniff, self._on_frame, ns.name)
        for family, socks in per.items():
            udp_out, icmp = socks["udp"], socks["icmp"]
            mine = _Sockets(udp_out, icmp, udp_out.getsockname()[1])
            self._keep(udp_out, self._on_udp, ns.name, mine.udp_sport)
            self._keep(icmp, self._on_icmp6 if family == "ipv6" else self._on_icmp, ns.name)
            if ns.listens:
                udp_in, tcp = socks["udp_in"], socks["tcp"]
                port = udp_in.getsockname()[1]
                self._keep(udp_in, self._on_udp, ns.name, port)
                self._keep(tcp, self._tcp_accept, ns.name)
                mine.udp_port, mine.tcp_port = port, tcp.getsockname()[1]
            self._ns[(ns.name, family)] = mine

    # --- receive side: the wire ----------------------------------------------------------

    def _on_frame(self, sock: socket.socket, ns: str) -> None:
        for _ in range(READ_BURST):
            try:
                frame, anc, _, addr = sock.recvmsg(bpf.PROBE_SNAPLEN, 64)
            except BlockingIOError:
                return
            parsed = parse(frame)
            if parsed is None or addr[2] == PACKET_OTHERHOST:
                continue  # not a probe, or flooded by a switch to a bystander
            probe_id, reply, proto, src, dst, sport, dport, ttl = parsed
            if not probe_id:  # a handshake: whose SYN is it?
                probe_id = self._handshakes.get((dport, src) if reply else (sport, dst), 0)
            if probe_id not in self._ours:
                continue  # another verify's probe (of this lab, at the same time)
            for level, kind, data in anc:
                if level == SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec + nsec / 1e9
                    break
            else:
                ts = time.time()
            outgoing = addr[2] == PACKET_OUTGOING
            seen = Seen(ns, addr[0], outgoing, ts, reply, proto, src, dst, sport, dport, ttl,
                        frame if self.keep_frames else None)
            sightings = self.sightings.get(probe_id)
            if sightings is None:
                self.sightings[probe_id] = [seen]
            else:
                sightings.append(seen)
            probe = self._inflight.get(probe_id)
            if probe is None or outgoing or proto != probe.proto:
                continue
            if not reply:
                if probe.request is None and probe.ends_in(ns):
                    probe.request = seen
                    self._check(probe)
            elif probe.reply_seen is None and ns == probe.sender:
                probe.reply_seen = seen
                self._check(probe)

    # --- receive side: what the sockets got ----------------------------------------------

    def _record(self, probe_id: int, heard: Heard) -> None:
        if probe_id not in self._ours:
            return
        got = self.heard.get(probe_id)
        if got is None:
            self.heard[probe_id] = [heard]
        else:
            got.append(heard)
        probe = self._inflight.get(probe_id)
        if probe is None:
            return
        if not heard.reply:
            if probe.heard is None and probe.ends_in(heard.ns):
                probe.heard = heard
                self._check(probe)
        elif probe.heard_reply is None and heard.ns == probe.sender:
            probe.heard_reply = heard
            self._check(probe)

    def _check(self, probe: Probe) -> None:
        if probe.done:
            self._finished.append(probe)

    def _on_udp(self, sock: socket.socket, ns: str, port: int) -> None:
        """Requests are echoed from the address they were sent to, as a well-behaved UDP
        server does (IP_PKTINFO); replies are echoes of this namespace's requests."""
        for _ in range(READ_BURST):
            try:
                data, anc, _, peer = sock.recvmsg(64, 128)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error queued for an earlier send
            found = read_nonce(data)
            if found is None:
                continue
            probe_id, reply = found
            local, pktinfo, ttl = "", b"", None
            anc_out = []
            for level, kind, d in anc:
                if level == IPPROTO_IP:
                    if kind == IP_PKTINFO:
                        pktinfo = d[8:12]  # ipi_addr: the header's destination
                        local = address(pktinfo)
                        anc_out = [(level, kind, struct.pack("=I4s4s", 0, pktinfo, b"\0" * 4))]
                    elif kind == IP_TTL:
                        ttl = _INT.unpack_from(d)[0]
                elif level == V6:
                    if kind == socket.IPV6_PKTINFO:
                        pktinfo = d[:16]  # in6_pktinfo: the destination, then the ifindex
                        local = address(pktinfo)
                        anc_out = [(level, kind, pktinfo + struct.pack("=I", 0))]
                    elif kind == socket.IPV6_HOPLIMIT:
                        ttl = _INT.unpack_from(d)[0]
            src = intern(peer[0])  # one string per address, as `address` gives
            self._record(probe_id, Heard(ns, reply, "udp", src, local, peer[1], port, ttl))
            if reply:
                continue
            try:
                sock.sendmsg([nonce(probe_id, reply=True)], anc_out, 0, peer)
            except OSError:
                pass  # no route back (an outside host answering an unmasqueraded pod)

    def _on_icmp(self, sock: socket.socket, ns: str) -> None:
        for _ in range(READ_BURST):
            try:
                packet = sock.recv(bpf.PROBE_SNAPLEN)
            except BlockingIOError:
                return
            parsed = parse_ip(packet)
            if parsed is None:
                continue
            probe_id, reply, _, src, dst, ident, _, ttl = parsed
            self._record(probe_id, Heard(ns, reply, "icmp", src, dst, ident, ident, ttl))

    def _on_icmp6(self, sock: socket.socket, ns: str) -> None:
        """A raw ICMPv6 socket reads the message alone: its addresses and hop limit come
        as ancillary data."""
        for _ in range(READ_BURST):
            try:
                data, anc, _, peer = sock.recvmsg(bpf.PROBE_SNAPLEN, 128)
            except BlockingIOError:
                return
            dst, hops = "", -1
            for level, kind, d in anc:
                if level == V6 and kind == socket.IPV6_PKTINFO:
                    dst = socket.inet_ntop(socket.AF_INET6, d[:16])
                elif level == V6 and kind == socket.IPV6_HOPLIMIT:
                    hops = struct.unpack("i", d[:4])[0]
            parsed = parse_icmp6(data, peer[0].split("%")[0], dst, hops)
            if parsed is None:
                continue
            probe_id, reply, _, src, dst, ident, _, ttl = parsed
            self._record(probe_id, Heard(ns, reply, "icmp", src, dst, ident, ident, ttl))

    def _tcp_accept(self, sock: socket.socket, ns: str) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:  # BlockingIOError: none left
                return
            conn.setblocking(False)
            local = conn.getsockname()
            # TCP_DEFER_ACCEPT: the probe's data is usually here already; read it now
            if not self._tcp_serve(conn, ns, peer, local, waiting=False):
                self._loop.add(conn, partial(self._tcp_serve, conn, ns, peer, local))

    def _tcp_serve(self, conn: socket.socket, ns: str, peer: tuple[str, int],
                   local: tuple[str, int], waiting: bool = True) -> bool:
        """Read a probe's request on an accepted connection and echo it; False when no data
        has come yet (and the connection is not `waiting` in the selector already)."""
        try:
            data = conn.recv(64)
            found = read_nonce(data)
            if found is not None and not found[1]:
                self._record(found[0], Heard(ns, False, "tcp", intern(peer[0]),
                                             intern(local[0]), peer[1], local[1], None))
                conn.send(nonce(found[0], reply=True))
        except BlockingIOError:
            if not waiting:
                return False
        except OSError:
            pass
        if waiting:
            self._loop.remove(conn)
        conn.close()
        return True

    # --- send side -----------------------------------------------------------------------

    def _tcp_socket(self, ns: str, family: str) -> socket.socket:
        pool = self._tcp_pool.setdefault((ns, family), [])
        if not pool:
            key = (ns, family)
            n = min(max(self._tcp_left.get(key, 0), 1), TCP_BATCH)
            pool.extend(run_in_netns(self._pid[ns], _tcp_sockets, n, family))
        self._tcp_left[(ns, family)] = self._tcp_left.get((ns, family), 1) - 1
        return pool.pop()

    def _udp_socket(self, ns: str, family: str = "ipv4") -> tuple[socket.socket, int]:
        """A fresh UDP socket of `family` for one Service probe, and its port: two probes
        from one port to two Services with one endpoint would be one conntrack tuple
        after DNAT, which the kernel resolves by rewriting the second's source port."""
        def make() -> socket.socket:
            udp = _service_socket(family, socket.SOCK_DGRAM)
            udp.bind(("::" if family == "ipv6" else "0.0.0.0", 0))
            return udp

        udp = run_in_netns(self._pid[ns], make)
        port = udp.getsockname()[1]
        self._keep(udp, self._on_udp, ns, port)
        return udp, port

    def _send(self, probe: Probe) -> None:
        probe.sent_at = time.monotonic()
        family = family_of(probe.dst)
        sender = self._ns.get((probe.sender, family))
        receiver = self._ns.get((probe.receiver, family))
        if sender is None:
            probe.error = f"{probe.sender} has no {family} address to probe with"
            return
        if probe.proto == "tcp":
            probe.dport = probe.to_port or (receiver.tcp_port if receiver else 0)
            sock = self._tcp_socket(probe.sender, family)
            code = sock.connect_ex((probe.dst, probe.dport))
            if code not in (0, errno.EINPROGRESS):
                probe.error = f"connect failed in {probe.sender}: {errno.errorcode.get(code)}"
                sock.close()
                self._finished.append(probe)
                return
            probe.sport = sock.getsockname()[1]
            self._handshakes[(probe.sport, probe.dst)] = probe.id
            self._clients[probe.id] = sock
            self._connecting.add(probe.id)
            self._loop.add(sock, partial(self._tcp_connected, sock, probe), write=True)
            return
        try:
            if probe.proto == "udp":
                udp, probe.sport = ((sender.udp, sender.udp_sport) if not probe.to_port
                                    else self._udp_socket(probe.sender, family))
                probe.dport = probe.to_port or (receiver.udp_port if receiver else 0)
                udp.sendto(nonce(probe.id), (probe.dst, probe.dport))
            else:
                probe.sport = probe.dport = icmp_id(probe.id)
                echo = icmp6_echo if family == "ipv6" else icmp_echo
                sender.icmp.sendto(echo(probe.id), (probe.dst, 0))
        except OSError as exc:
            probe.error = f"send failed in {probe.sender}: {exc.strerror}"
            self._finished.append(probe)

    def _tcp_connected(self, sock: socket.socket, probe: Probe) -> None:
        self._connecting.discard(probe.id)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            probe.error = f"TCP connect from {probe.sender} failed: {errno.errorcode.get(code)}"
            probe.refused = code == errno.ECONNREFUSED
        else:
            try:
                sock.send(nonce(probe.id))
            except OSError as exc:
                probe.error = f"TCP send from {probe.sender} failed: {exc.strerror}"
        if probe.error:
            self._loop.remove(sock)
            sock.close()
            self._finished.append(probe)
            return
        self._loop.change(sock, partial(self._tcp_reply, sock, probe))

    def _tcp_reply(self, sock: socket.socket, probe: Probe) -> None:
        """The echo came back on the connection: the sender's kernel matched it to this
        socket, so the reply's addresses and ports are the connection's own."""
        try:
            data = sock.recv(64)
            found = read_nonce(data)
            if found == (probe.id, True):
                peer, local = sock.getpeername(), sock.getsockname()
                self._record(probe.id, Heard(probe.sender, True, "tcp", intern(peer[0]),
                                             intern(local[0]), peer[1], local[1], None))
        except OSError:
            pass
        self._loop.remove(sock)
        sock.close()

    def _warm_tcp_pools(self, probes: list[Probe]) -> None:
        """Make each sender's first TCP sockets before the clock runs: entering a
        namespace takes a thread, which a loaded host may make slow."""
        count: dict[tuple[str, str], int] = {}  # (sender, family) -> TCP probes
        for p in probes:
            if p.proto == "tcp" and not p.error:
                key = (p.sender, family_of(p.dst))
                count[key] = count.get(key, 0) + 1
        for (ns, family), n in count.items():
            self._tcp_left[(ns, family)] = self._tcp_left.get((ns, family), 0) + n
            if ns in self._pid and not self._tcp_pool.get((ns, family)):
                self._tcp_pool[(ns, family)] = run_in_netns(self._pid[ns], _tcp_sockets,
                                                            min(n, 16), family)

    def _read_tcp_reply(self, probe: Probe) -> None:
        """A TCP probe about to time out: its echo may sit unread in the client socket."""
        sock = self._clients.get(probe.id)
        if sock is None or probe.heard_reply is not None or probe.id in self._connecting:
            return
        if self._loop.watches(sock):
            self._tcp_reply(sock, probe)

    def _forget_client(self, probe: Probe) -> None:
        sock = self._clients.pop(probe.id, None)
        if sock is not None:
            if self._loop.watches(sock):
                self._loop.remove(sock)
            sock.close()

    # --- the loop ------------------------------------------------------------------------

    def run(self, probes: Iterable[Probe], on_done: Callable[[Probe], None] | None = None,
            settle: float = 0.2) -> None:
        """Send every probe, at most `window` in flight, each waited for `timeout` at most."""
        pending = list(probes)
        self._ours.update(p.id for p in pending)
        self._warm_tcp_pools(pending)
        pending.reverse()
        inflight, finished = self._inflight, self._finished
        while pending or inflight:
            sent = 0
            while pending and len(inflight) < self.window:
                probe = pending.pop()
                if probe.error:  # cannot be sent (an end is down, no route): done already
                    if on_done:
                        on_done(probe)
                    continue
                inflight[probe.id] = probe
                self._send(probe)
                sent += 1
                if sent % 32 == 0:  # keep answering while a window fills: on a loaded host
                    self._poll(0)   # sending 256 probes can take longer than the timeout
            self._poll(0.05)
            while finished:
                probe = finished.pop()
                if probe.id in inflight:
                    self._finish(probe, on_done)
            now = time.monotonic()
            while inflight:  # oldest first: the first one still in time ends the search
                probe = next(iter(inflight.values()))
                if now - probe.sent_at <= self.timeout:
                    break
                self._poll(0)  # what already arrived counts: read it first
                if not probe.done:
                    self._read_tcp_reply(probe)
                self._finish(probe, on_done)
        # late sightings along the path, for a diagnosis or a pcap; when every probe came
        # back whole, its verdict has all it reads
        end = time.monotonic() + (settle if self.keep_frames or self._unclean else 0)
        while time.monotonic() < end:
            self._poll(0.02)
        finished.clear()
        self._close_clients()

    def _finish(self, probe: Probe, on_done: Callable[[Probe], None] | None) -> None:
        if probe.error or not probe.done:
            self._unclean = True
        if probe.proto == "tcp" and probe.id in self._connecting:
            probe.error = (f"TCP handshake from {probe.sender} to {probe.dst} did "
                           f"not complete within {self.timeout:g} s")
            probe.refused = True
            self.unanswered.add(probe.id)
        del self._inflight[probe.id]
        self._forget_client(probe)
        if on_done:
            on_done(probe)

    def _poll(self, timeout: float) -> None:
        for sock, handler in self._loop.ready(timeout):
            if sock.fileno() != -1:  # not closed by an earlier handler of this round
                handler()

    def _close_clients(self) -> None:
        kept = set(self._socks)
        for sock in self._loop.watched():
            if sock not in kept:  # accepted server sides still open
                self._loop.remove(sock)
                sock.close()


class _Loop:
    """epoll with one handler per socket. The selectors module's bookkeeping costs
    microseconds per event, and each probe makes several."""

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._on: dict[int, tuple[socket.socket, Callable[[], None]]] = {}

    def add(self, sock: socket.socket, handler: Callable[[], None], write: bool = False
            ) -> None:
        fd = sock.fileno()
        self._ep.register(fd, select.EPOLLOUT if write else select.EPOLLIN)
        self._on[fd] = (sock, handler)

    def change(self, sock: socket.socket, handler: Callable[[], None]) -> None:
        """Watch `sock` for reading from now on, with `handler`."""
        fd = sock.fileno()
        self._ep.modify(fd, select.EPOLLIN)
        self._on[fd] = (sock, handler)

    def remove(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._on.get(fd, (None,))[0] is sock:
            del self._on[fd]
            self._ep.unregister(fd)

    def watches(self, sock: socket.socket) -> bool:
        fd = sock.fileno()
        return fd != -1 and self._on.get(fd, (None,))[0] is sock

    def watched(self) -> list[socket.socket]:
        return [sock for sock, _ in self._on.values()]

    def ready(self, timeout: float) -> list[tuple[socket.socket, Callable[[], None]]]:
        """The handlers of the sockets that are ready, looked up before any of them runs
        (a handler may close a socket, and a new one may get its number)."""
        on = self._on
        return [on[fd] for fd, _ in self._ep.poll(timeout) if fd in on]

    def close(self) -> None:
        self._on.clear()
        self._ep.close()


def close_all(socks: list[socket.socket]) -> None:
    """Close sockets, packet sockets side by side: the kernel closes each one only after
    an RCU grace period (synchronize_net), milliseconds that one after the other add up
    to seconds over the sniffers of a 200-pod lab, but overlap when closed together."""
    sniffers = [s for s in socks if s.family == socket.AF_PACKET]
    for sock in socks:
        if sock.family != socket.AF_PACKET:
            sock.close()
    if len(sniffers) < 4:
        for sock in sniffers:
            sock.close()
        return
    with ThreadPoolExecutor(max_workers=min(64, len(sniffers))) as pool:
        list(pool.map(socket.socket.close, sniffers))


def _family_sockets(family: str, listens: bool, out: list[socket.socket],
                    share: int | None = None) -> dict[str, socket.socket]:
    """One family's sockets in the calling thread's namespace: "udp" (sends, gets echoes),
    "icmp", and where probes end "udp_in" and "tcp" listeners. Each is appended to `out`
    as soon as it exists, so the caller can close them all on a failure."""
    six = family == "ipv6"
    af = socket.AF_INET6 if six else socket.AF_INET
    socks: dict[str, socket.socket] = {}

    def new(key: str, kind: int, proto: int = 0) -> socket.socket:
        sock = socket.socket(af, kind, proto)
        out.append(sock)
        socks[key] = sock
        if six:
            sock.setsockopt(V6, socket.IPV6_UNICAST_HOPS, TTL)
            if kind != socket.SOCK_RAW:  # each family's sockets are its own
                sock.setsockopt(V6, socket.IPV6_V6ONLY, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        return sock

    # two UDP sockets where probes end, so that a request from a to b and one from b to
    # a are two flows (to conntrack too), never one flow's two directions
    for key in ("udp", "udp_in") if listens else ("udp",):
        udp = new(key, socket.SOCK_DGRAM)
        if six:
            udp.setsockopt(V6, socket.IPV6_RECVPKTINFO, 1)
            udp.setsockopt(V6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            udp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            udp.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        udp.bind(("::" if six else "0.0.0.0", 0))  # ephemeral: a fresh port each run
    icmp = new("icmp", socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if six else socket.IPPROTO_ICMP)
    icmp.setsockopt(socket.SOL_SOCKET, bpf.SO_RCVBUFFORCE, 4 << 20)
    if six:
        icmp.setsockopt(socket.IPPROTO_ICMPV6, bpf.ICMP6_FILTER, bpf.icmp6_echo_filter())
        icmp.setsockopt(V6, socket.IPV6_RECVPKTINFO, 1)
        icmp.setsockopt(V6, socket.IPV6_RECVHOPLIMIT, 1)
    else:
        bpf.attach(icmp, bpf.icmp_probe_filter(share))
    if listens:
        tcp = new("tcp", socket.SOCK_STREAM)
        tcp.bind(("::" if six else "0.0.0.0", 0))
        _defer_accept(tcp)
        tcp.listen(1024)
    return socks


def _service_socket(family: str, kind: int) -> socket.socket:
    """A socket of a Service probe or of an endpoint's fixed port, in `family`: TTL (hop
    limit) set; a UDP one reports the destination and the TTL each datagram had."""
    six = family == "ipv6"
    sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, kind)
    try:
        if six:
            sock.setsockopt(V6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(V6, socket.IPV6_UNICAST_HOPS, TTL)
            if kind == socket.SOCK_DGRAM:
                sock.setsockopt(V6, socket.IPV6_RECVPKTINFO, 1)
                sock.setsockopt(V6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
            if kind == socket.SOCK_DGRAM:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _tcp_sockets(n: int, family: str = "ipv4") -> list[socket.socket]:
    """`n` client sockets, ready to connect: non-blocking, TTL (hop limit) set, and closed
    with a reset once their echo is read (SO_LINGER 0), which spares the path a FIN
    exchange and the kernel a TIME_WAIT socket per probe."""
    six = family == "ipv6"
    out = []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if six:
            sock.setsockopt(V6, socket.IPV6_UNICAST_HOPS, TTL)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        out.append(sock)
    return out


def _defer_accept(listener: socket.socket) -> None:
    """Accept a connection only once its first data is there (or after a second): the
    request is then read at accept, without a round through the selector."""
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
