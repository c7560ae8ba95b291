"""What a probe is: its wire format and the records of what was sent and what was seen.

Pure (no sockets): the engine fills these records, the verdict reads them, and the unit
tests build them by hand. Every probe carries a nonce at the start of its payload ("PLB"
+ 16 hex digits of its id on the request, "PLR" on the reply), matched by the kernel
filter (harness.host.bpf.probe_filter) and by `parse`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

UDP_PORT = 47000  # echo listener ports inside the lab's namespaces
TCP_PORT = 47001
TTL = 64
REQUEST, REPLY = b"PLB", b"PLR"
SYN = "tcp-syn"  # sightings of a TCP probe's handshake: they show where it went, not arrival


def nonce(probe_id: int, reply: bool = False) -> bytes:
    return (REPLY if reply else REQUEST) + b"%016x" % probe_id


@dataclass(slots=True)
class Seen:
    """One sighting of a probe's packet in one namespace."""

    ns: str
    ifname: str
    outgoing: bool
    ts: float
    reply: bool
    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    ttl: int
    frame: bytes | None = None


def parse(frame: bytes) -> tuple[int, bool, str, str, str, int, int, int] | None:
    """(probe id, is_reply, proto, src, dst, sport, dport, ttl) of a probe frame, else None.

    A TCP SYN or SYN-ACK comes back with id 0 and proto SYN.

    Plain struct unpacking: this runs for every frame the lab carries.
    """
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    ttl, proto = frame[22], frame[23]
    l4 = 14 + ihl
    if proto == 17:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        data = l4 + 8
        name = "udp"
    elif proto == 6:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        data = l4 + (frame[l4 + 12] >> 4) * 4
        name = "tcp"
    elif proto == 1:
        if frame[l4] not in (0, 8):  # echo reply / request only
            return None
        sport = dport = struct.unpack_from("!H", frame, l4 + 4)[0]
        data = l4 + 8
        name = "icmp"
    else:
        return None
    magic = frame[data:data + 3]
    if magic not in (REQUEST, REPLY):
        if proto == 6 and frame[l4 + 13] & 0x12 in (0x02, 0x12):
            # a handshake carries no nonce: id 0, matched by its ports (Engine._on_frame)
            return (0, frame[l4 + 13] & 0x10 != 0, SYN, socket.inet_ntoa(frame[26:30]),
                    socket.inet_ntoa(frame[30:34]), sport, dport, ttl)
        return None
    try:
        probe_id = int(frame[data + 3:data + 19], 16)
    except ValueError:
        return None
    reply = magic == REPLY or (proto == 1 and frame[l4] == 0)
    src = socket.inet_ntoa(frame[26:30])
    dst = socket.inet_ntoa(frame[30:34])
    return probe_id, reply, name, src, dst, sport, dport, ttl


def craft(proto: str, src: str, dst: str, probe_id: int, sport: int) -> bytes:
    """A UDP or ICMP echo probe, built by scapy: our TTL, ports and nonce."""
    from scapy.layers.inet import ICMP, IP, UDP  # scapy is slow to import: only when probing

    ip = IP(src=src, dst=dst, ttl=TTL, id=probe_id & 0xFFFF)
    if proto == "udp":
        return bytes(ip / UDP(sport=sport, dport=UDP_PORT) / nonce(probe_id))
    return bytes(ip / ICMP(type=8, id=probe_id & 0xFFFF, seq=(probe_id >> 16) & 0xFFFF)
                 / nonce(probe_id))


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Crafter:
    """craft() at the speed a lab of hundreds of pods needs.

    scapy builds one template per (protocol, source, port); each probe then only swaps in
    its destination, ids and nonce and recomputes the checksums: a few microseconds
    instead of a millisecond of scapy per packet. The bytes are identical to craft()'s,
    which the unit tests check.
    """

    def __init__(self) -> None:
        self._templates: dict[tuple[str, str, int], bytes] = {}

    def __call__(self, proto: str, src: str, dst: str, probe_id: int, sport: int) -> bytes:
        key = (proto, src, sport)
        tmpl = self._templates.get(key)
        if tmpl is None:
            tmpl = self._templates[key] = craft(proto, src, "0.0.0.0", 0, sport)
        pkt = bytearray(tmpl)
        pkt[4:6] = struct.pack("!H", probe_id & 0xFFFF)
        pkt[16:20] = socket.inet_aton(dst)
        pkt[10:12] = b"\0\0"
        pkt[10:12] = struct.pack("!H", _checksum(bytes(pkt[:20])))
        pkt[28:] = nonce(probe_id)
        if proto == "udp":
            pkt[26:28] = b"\0\0"
            pseudo = pkt[12:20] + struct.pack("!BBH", 0, 17, len(pkt) - 20)
            csum = _checksum(bytes(pseudo + pkt[20:])) or 0xFFFF  # 0 means "none" in UDP
            pkt[26:28] = struct.pack("!H", csum)
        else:
            pkt[24:28] = struct.pack("!HH", probe_id & 0xFFFF, (probe_id >> 16) & 0xFFFF)
            pkt[22:24] = b"\0\0"
            pkt[22:24] = struct.pack("!H", _checksum(bytes(pkt[20:])))
        return bytes(pkt)


@dataclass
class Probe:
    id: int
    proto: str
    sender: str  # namespace name
    receiver: str
    src: str  # the source address to craft (UDP/ICMP) or to expect (TCP)
    dst: str
    expect_reply: bool = True
    sent_at: float = 0.0
    sport: int = 0  # UDP and TCP: the sender's port, picked by its kernel
    request: Seen | None = None  # first arrival at the receiver
    reply_seen: Seen | None = None  # first arrival of the reply back at the sender
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or (
            self.request is not None and (self.reply_seen is not None or not self.expect_reply))


