"""Sniff inside one lab namespace: live one-line summaries or a pcap file (`podlab capture`).

The AF_PACKET socket is made in the target namespace (harness.host.netns.run_in_netns), then
read from podlab's own thread: podlab never leaves the host namespace. Frames are parsed
with scapy; every lab interface (veth, bridge, lo) is Ethernet-framed, so the pcap's link
type is Ethernet even when capturing on all interfaces.

BPF filters are compiled by libpcap through scapy (installed with tcpdump by `make setup`)
and attached to the socket, so the kernel drops what does not match. Without libpcap the
filter runs in Python instead, for a subset of the syntax (`icmp`, `tcp`, `udp`, `arp`,
`ip`, `[src|dst] host A`, `[src|dst] port N`, `[src|dst] net CIDR`, `and`, `or`, `not`,
parentheses); anything else asks for libpcap.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, InputError
from harness.host.netns import run_in_netns

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
DLT_EN10MB = 1
SNAPLEN = 65535
ANY = "any"

PacketFilter = Callable[[Any], bool]


# --------------------------------------------------------------------------- BPF


def compile_bpf(expr: str) -> Any:
    """(sock_fprog, bpf_program) for `expr`, compiled by libpcap through scapy for Ethernet
    frames; ImportError without libpcap, InputError for a filter libpcap rejects.
    The caller frees the bpf_program (scapy's free_filter) once the socket has a copy."""
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception
    from scapy.libs.structures import sock_fprog

    try:
        bp = compile_filter(expr, linktype=DLT_EN10MB)
    except (Scapy_Exception, OSError) as exc:
        raise InputError(f"bad --filter {expr!r}: {exc}") from None
    return sock_fprog(bp.bf_len, bp.bf_insns), bp


class _Parser:
    """The Python fallback: a small subset of pcap-filter(7), as a packet predicate."""

    PROTOS = ("ip", "ip6", "arp", "icmp", "tcp", "udp")

    def __init__(self, expr: str):
        self.expr = expr
        self.toks = re.findall(r"\(|\)|&&|\|\||!|[^\s()!]+", expr)
        self.i = 0

    def parse(self) -> PacketFilter:
        if not self.toks:
            raise self._error("empty filter")
        fn = self._or()
        if self.i != len(self.toks):
            raise self._error(f"unexpected {self.toks[self.i]!r}")
        return fn

    def _error(self, why: str) -> InputError:
        return InputError(
            f"--filter {self.expr!r}: {why}. Without libpcap podlab filters in Python and "
            f"knows only: {', '.join(self.PROTOS)}, [src|dst] host A, [src|dst] port N, "
            f"[src|dst] net CIDR, and/or/not, ( ). For full BPF install tcpdump "
            f"(`make setup` does)")

    def _peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self) -> str:
        tok = self._peek()
        if tok is None:
            raise self._error("ends too early")
        self.i += 1
        return tok

    def _or(self) -> PacketFilter:
        parts = [self._and()]
        while self._peek() in ("or", "||"):
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda p: any(f(p) for f in parts))

    def _and(self) -> PacketFilter:
        parts = [self._not()]
        while self._peek() in ("and", "&&"):
            self.i += 1
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda p: all(f(p) for f in parts))

    def _not(self) -> PacketFilter:
        if self._peek() in ("not", "!"):
            self.i += 1
            inner = self._not()
            return lambda p: not inner(p)
        if self._peek() == "(":
            self.i += 1
            inner = self._or()
            if self._take() != ")":
                raise self._error("missing ')'")
            return inner
        return self._primitive()

    def _primitive(self) -> PacketFilter:
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import ARP

        tok = self._take()
        layers = {"ip": IP, "ip6": IPv6, "arp": ARP, "icmp": ICMP, "tcp": TCP, "udp": UDP}
        if tok in layers:
            layer = layers[tok]
            return lambda p: layer in p
        way = "either"
        if tok in ("src", "dst"):
            way, tok = tok, self._take()
        value = self._take()
        if tok == "host" or tok == "net":
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise self._error(f"{tok} needs an address, got {value!r}") from None

            def addrs(p: Any) -> tuple[str | None, str | None]:
                if IP in p:
                    return p[IP].src, p[IP].dst
                if ARP in p:
                    return p[ARP].psrc, p[ARP].pdst
                if IPv6 in p:
                    return p[IPv6].src, p[IPv6].dst
                return None, None

            def in_net(a: str | None) -> bool:
                return a is not None and ipaddress.ip_address(a) in net

            return _directed(way, addrs, in_net)
        if tok == "port":
            if not value.isdigit():
                raise self._error(f"port needs a number, got {value!r}")
            port = int(value)

            def ports(p: Any) -> tuple[int | None, int | None]:
                for layer in (TCP, UDP):
                    if layer in p:
                        return p[layer].sport, p[layer].dport
                return None, None

            return _directed(way, ports, lambda x: x == port)
        raise self._error(f"unknown primitive {tok!r}")


def _directed(way: str, fields: Callable[[Any], tuple[Any, Any]],
              match: Callable[[Any], bool]) -> PacketFilter:
    def fn(p: Any) -> bool:
        src, dst = fields(p)
        if way == "src":
            return match(src)
        if way == "dst":
            return match(dst)
        return match(src) or match(dst)

    return fn


def python_filter(expr: str) -> PacketFilter:
    """The Python fallback filter for `expr`; InputError outside the supported subset."""
    return _Parser(expr).parse()


# --------------------------------------------------------------------------- sniffer


def open_socket(pid: int, iface: str | None, bpf: str | None
                ) -> tuple[socket.socket, PacketFilter | None, str | None]:
    """An AF_PACKET socket in the netns of `pid`, bound to `iface` (all when None/'any').

    Returns (socket, Python filter or None, a note for the user or None). The BPF program
    is attached before the socket is drained, so no unfiltered frame slips through.
    """
    prog = note = None
    pyfilter: PacketFilter | None = None
    if bpf:
        try:
            prog = compile_bpf(bpf)
        except ImportError:
            pyfilter = python_filter(bpf)
            note = ("libpcap not found (install tcpdump, or run `make setup`): "
                    "applying the filter in Python")

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            if iface and iface != ANY:
                try:
                    sock.bind((iface, ETH_P_ALL))
                except OSError as exc:
                    raise InputError(f"no interface {iface!r} there ({exc.strerror})") from None
            if prog is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog[0])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        sock = run_in_netns(pid, make)
    except PermissionError as exc:
        raise EnvironmentProblem(f"capture needs root (CAP_NET_RAW): {exc}") from None
    finally:
        if prog is not None:
            from scapy.arch.common import free_filter

            free_filter(prog[1])
    if prog is not None:
        _drain(sock)  # frames queued between socket() and the filter
    return sock, pyfilter, note


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while True:
            sock.recv(SNAPLEN)
    sock.setblocking(True)


class Sniffer:
    """Capture in one namespace until `count` packets, `timeout` seconds or `stop()`.

    `on_packet(pkt, ifname, outgoing)` is called for each matching packet (scapy Ether,
    `pkt.time` set); with `path`, packets are also written to a pcap (flushed as they come,
    closed on stop, Ctrl-C or error). Use `run()` in the foreground, or as a context
    manager to sniff in a background thread while the body makes traffic:

        with Sniffer(pid, bpf="icmp", count=2, timeout=5) as s:
            ...  # send pings
        s.packets
    """

    def __init__(self, pid: int, iface: str | None = None, *, bpf: str | None = None,
                 count: int | None = None, timeout: float | None = None,
                 path: str | Path | None = None,
                 on_packet: Callable[[Any, str, bool], None] | None = None,
                 keep: bool = True):
        self.pid, self.iface, self.bpf = pid, iface, bpf
        self.count, self.timeout, self.path = count, timeout, path
        self.on_packet = on_packet
        self.keep = keep
        self.packets: list[Any] = []
        self.seen = 0
        self.note: str | None = None
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._pyfilter: PacketFilter | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def open(self) -> Sniffer:
        if self._sock is None:
            if self.path is not None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._sock, self._pyfilter, self.note = open_socket(self.pid, self.iface, self.bpf)
        return self

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Capture in this thread; return how many packets matched."""
        import scapy.layers.inet  # binds IPv4/ICMP/TCP/UDP under Ether
        import scapy.layers.inet6  # noqa: F401
        from scapy.layers.l2 import Ether
        from scapy.utils import PcapWriter

        self.open()
        assert self._sock is not None
        writer = (PcapWriter(str(self.path), linktype=DLT_EN10MB, sync=True)
                  if self.path is not None else None)
        deadline = time.monotonic() + self.timeout if self.timeout else None
        try:
            while not self._stop.is_set():
                if self.count is not None and self.seen >= self.count:
                    break
                wait = 0.2
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                ready, _, _ = select.select([self._sock], [], [], wait)
                if not ready:
                    continue
                data, addr = self._sock.recvfrom(SNAPLEN)
                stamp = time.time()
                pkt = Ether(data)
                pkt.time = stamp
                if self._pyfilter is not None and not self._pyfilter(pkt):
                    continue
                self.seen += 1
                if writer is not None:
                    writer.write(pkt)
                if self.keep:
                    self.packets.append(pkt)
                if self.on_packet is not None:
                    self.on_packet(pkt, addr[0], addr[2] == PACKET_OUTGOING)
        finally:
            if writer is not None:
                writer.close()
            self.close()
        return self.seen

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # background use
    def __enter__(self) -> Sniffer:
        self.open()

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # re-raised by wait()
                self._error = exc

        self._thread = threading.Thread(target=target, name=f"capture-{self.pid}",
                                        daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> list[Any]:
        """Wait for the background capture to end (count/timeout); return the packets."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.stop()
                self._thread.join()
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return self.packets

    def __exit__(self, *exc: object) -> None:
        # Let count/timeout end it; a body that raised stops the capture at once.
        if exc[0] is not None:
            self.stop()
        self.wait()


def summary_line(pkt: Any, ifname: str, outgoing: bool, start: float) -> str:
    """`  0.123 eth0 > Ether / IP / ICMP 10.244.0.2 > 10.244.1.2 echo-request 0`"""
    arrow = ">" if outgoing else "<"
    return f"{float(pkt.time) - start:8.3f} {ifname:<8} {arrow} {pkt.summary()}"

