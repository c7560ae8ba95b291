"""Sniff inside one lab namespace: live one-line summaries or a pcap file (`podlab capture`).

The AF_PACKET socket is made in the target namespace (harness.host.netns.run_in_netns), then
read from podlab's own thread: podlab never leaves the host namespace. Frames are parsed
with scapy; every lab interface (veth, bridge, lo) is Ethernet-framed, so the pcap's link
type is Ethernet even when capturing on all interfaces.

Filters follow harness.host.bpf's story: libpcap compiles the expression and the kernel
drops what does not match; without libpcap a subset of the syntax runs in Python.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, InputError
from harness.host import bpf as packetfilter
from harness.host.bpf import DLT_EN10MB, ETH_P_ALL, PACKET_OUTGOING, SNAPLEN, PacketFilter
from harness.host.netns import run_in_netns

ANY = "any"


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
            prog = packetfilter.compile_expr(bpf)
        except ImportError:
            pyfilter = packetfilter.python_filter(bpf)
            note = ("libpcap not found (install tcpdump, or run `make setup`): "
                    "applying the filter in Python")

    def make() -> socket.socket:
        sock = packetfilter.packet_socket()
        try:
            if iface and iface != ANY:
                try:
                    sock.bind((iface, ETH_P_ALL))
                except OSError as exc:
                    raise InputError(f"no interface {iface!r} there ({exc.strerror})") from None
            if prog is not None:
                packetfilter.attach(sock, prog)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        sock = run_in_netns(pid, make)
    except PermissionError as exc:
        raise EnvironmentProblem(f"capture needs root (CAP_NET_RAW): {exc}") from None
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

