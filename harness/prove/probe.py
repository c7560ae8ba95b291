"""What a probe is: its wire format and the records of what was sent, seen and heard.

Pure (no sockets): the engine fills these records, the verdict reads them, and the unit
tests build them by hand. Every probe carries a nonce at the start of its payload ("PLB"
+ 16 hex digits of its id on the request, "PLR" on the reply), matched by the kernel
filters (harness.host.bpf) and by `parse`.

Two views of each packet are recorded:
- `Seen`: a sniffer's sighting of the frame on an interface (AF_PACKET), before the
  receiving namespace's netfilter (PREROUTING/INPUT) runs, or after the sending one's;
- `Heard`: what the socket that got it was told (the peer address and port the receiver's
  listener saw, the local address it arrived for, the TTL), after netfilter. A NAT inside
  the receiving namespace shows only here.

Probe identity is fresh in every run and every process: the ids start at a random point
(`new_ids`), so ICMP ids and nonces never repeat a recent run's, and a conntrack entry
left by an earlier run cannot hide a NAT rule added since. UDP and TCP listeners bind
ephemeral ports, and the senders' ports are picked by their kernels.

Both families: an IPv6 probe is the same UDP datagram, TCP connection or echo (ICMPv6
type 128/129), and its hop limit is recorded where IPv4's TTL is (`ttl`): both start at
`TTL` and drop by one per router.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

TTL = 64
REQUEST, REPLY = b"PLB", b"PLR"
NONCE_LEN = 19
SYN = "tcp-syn"  # sightings of a TCP probe's handshake: they show where it went, not arrival
ICMP_ECHO_REPLY, ICMP_ECHO = 0, 8
ICMP6_ECHO, ICMP6_ECHO_REPLY = 128, 129
ETH_IP, ETH_IP6 = b"\x08\x00", b"\x86\xdd"
IP6_HEADER = 40


def new_ids() -> Iterator[int]:
    """Probe ids from a random start (62 bits: the nonce holds 16 hex digits)."""
    return itertools.count(int.from_bytes(os.urandom(8), "big") >> 2)


def nonce(probe_id: int, reply: bool = False) -> bytes:
    return (REPLY if reply else REQUEST) + b"%016x" % probe_id


def read_nonce(data: bytes) -> tuple[int, bool] | None:
    """(probe id, is_reply) of a payload that starts with a nonce, else None."""
    magic = data[:3]
    if magic not in (REQUEST, REPLY):
        return None
    try:
        return int(data[3:NONCE_LEN], 16), magic == REPLY
    except ValueError:
        return None


def icmp_id(probe_id: int) -> int:
    return probe_id & 0xFFFF


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_echo(probe_id: int) -> bytes:
    """The ICMP echo request of a probe (its IP header is the sending kernel's)."""
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, icmp_id(probe_id), (probe_id >> 16) & 0xFFFF)
    body = nonce(probe_id)
    return head[:2] + struct.pack("!H", checksum(head + body)) + head[4:] + body


def icmp6_echo(probe_id: int) -> bytes:
    """The ICMPv6 echo request of a probe. Its checksum covers the IPv6 pseudo-header, so
    the sending kernel writes it (a raw ICMPv6 socket always does): zero here."""
    return struct.pack("!BBHHH", ICMP6_ECHO, 0, 0, icmp_id(probe_id),
                       (probe_id >> 16) & 0xFFFF) + nonce(probe_id)


@dataclass(slots=True)
class Seen:
    """One sighting of a probe's frame on an interface of one namespace (the wire)."""

    ns: str
    ifname: str
    outgoing: bool
    ts: float
    reply: bool
    proto: str
    src: str
    dst: str
    sport: int  # ICMP: the echo id, in both port fields
    dport: int
    ttl: int
    frame: bytes | None = None

    @property
    def icmp_id(self) -> int:
        return self.sport


@dataclass(slots=True)
class Heard:
    """What the socket that received a probe's packet saw, after its namespace's netfilter:
    the request at the receiver's listener, the reply at the sender's socket."""

    ns: str
    reply: bool
    proto: str
    src: str  # the peer's address as the socket got it
    dst: str  # the local address it arrived for
    sport: int  # the peer's port (ICMP: the echo id)
    dport: int  # the local port (ICMP: the echo id)
    ttl: int | None  # None for TCP: a stream socket does not report it

    @property
    def icmp_id(self) -> int:
        return self.sport


_ADDRESSES: dict[bytes, str] = {}


def address(raw: bytes) -> str:
    """The text of a packed IPv4 (4 bytes) or IPv6 (16) address, one string object per
    address: a lab has few addresses and a verify hundreds of thousands of records of them
    (memory, and results pickled between processes share them)."""
    text = _ADDRESSES.get(raw)
    if text is None:
        if len(_ADDRESSES) >= 1 << 16:
            _ADDRESSES.clear()
        family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
        text = _ADDRESSES[raw] = socket.inet_ntop(family, raw)
    return text


def parse(frame: bytes) -> tuple[int, bool, str, str, str, int, int, int] | None:
    """(probe id, is_reply, proto, src, dst, sport, dport, ttl) of a probe frame, else None.

    A TCP SYN or SYN-ACK comes back with id 0 and proto SYN.

    Plain struct unpacking: this runs for every frame the lab carries.
    """
    if len(frame) < 34:
        return None
    if frame[12:14] == ETH_IP:
        return parse_ip(frame, 14)
    if frame[12:14] == ETH_IP6:
        return parse_ip6(frame, 14)
    return None


def parse_ip(packet: bytes, at: int = 0) -> tuple[int, bool, str, str, str, int, int, int] | None:
    """`parse` for an IPv4 packet that starts at offset `at` (0: a raw IP socket's read)."""
    if len(packet) < at + 20:
        return None
    ihl = (packet[at] & 0x0F) * 4
    ttl, proto = packet[at + 8], packet[at + 9]
    raw = packet[at + 12:at + 16]
    src = _ADDRESSES.get(raw) or address(raw)
    raw = packet[at + 16:at + 20]
    dst = _ADDRESSES.get(raw) or address(raw)
    return _transport(packet, at + ihl, proto, src, dst, ttl)


def parse_ip6(packet: bytes, at: int = 0) -> tuple[int, bool, str, str, str, int, int,
                                                    int] | None:
    """`parse` for an IPv6 packet at offset `at`. Probes carry no extension header, so the
    transport header follows the fixed one; the hop limit is returned as the TTL."""
    if len(packet) < at + IP6_HEADER + 8:
        return None
    proto, hops = packet[at + 6], packet[at + 7]
    raw = packet[at + 8:at + 24]
    src = _ADDRESSES.get(raw) or address(raw)
    raw = packet[at + 24:at + 40]
    dst = _ADDRESSES.get(raw) or address(raw)
    return _transport(packet, at + IP6_HEADER, proto, src, dst, hops)


def parse_icmp6(data: bytes, src: str, dst: str, hops: int
                ) -> tuple[int, bool, str, str, str, int, int, int] | None:
    """`parse` for what a raw ICMPv6 socket reads: the ICMPv6 message alone (the kernel
    keeps the IPv6 header; its addresses and hop limit come as the read's ancillary data)."""
    return _transport(data, 0, 58, src, dst, hops)


def _transport(packet: bytes, l4: int, proto: int, src: str, dst: str, ttl: int
               ) -> tuple[int, bool, str, str, str, int, int, int] | None:
    if len(packet) < l4 + 8:
        return None
    if proto == 17:
        sport, dport = struct.unpack_from("!HH", packet, l4)
        data = l4 + 8
        name = "udp"
    elif proto == 6:
        if len(packet) < l4 + 20:
            return None
        sport, dport = struct.unpack_from("!HH", packet, l4)
        data = l4 + (packet[l4 + 12] >> 4) * 4
        name = "tcp"
    elif proto in (1, 58):
        if packet[l4] not in ((ICMP_ECHO_REPLY, ICMP_ECHO) if proto == 1
                              else (ICMP6_ECHO, ICMP6_ECHO_REPLY)):
            return None
        sport = dport = struct.unpack_from("!H", packet, l4 + 4)[0]
        data = l4 + 8
        name = "icmp"
    else:
        return None
    found = read_nonce(packet[data:data + NONCE_LEN])
    if found is None:
        if proto == 6 and len(packet) >= l4 + 14 and packet[l4 + 13] & 0x12 in (0x02, 0x12):
            # a handshake carries no nonce: id 0, matched by its ports (Engine._on_frame)
            return 0, packet[l4 + 13] & 0x10 != 0, SYN, src, dst, sport, dport, ttl
        return None
    probe_id, reply = found
    reply = reply or (proto == 1 and packet[l4] == ICMP_ECHO_REPLY) or (
        proto == 58 and packet[l4] == ICMP6_ECHO_REPLY)
    return probe_id, reply, name, src, dst, sport, dport, ttl


@dataclass(slots=True)
class Probe:
    """One probe in flight: what was sent, and the first sightings that complete it."""

    id: int
    proto: str
    sender: str  # namespace name
    receiver: str
    src: str  # the source the sender's kernel must pick
    dst: str
    expect_reply: bool = True
    sent_at: float = 0.0
    sport: int = 0  # UDP and TCP: the sender's port, picked by its kernel; ICMP: the id
    dport: int = 0  # UDP and TCP: the receiver's listener port; ICMP: the id
    request: Seen | None = None  # first arrival at the receiver (wire)
    reply_seen: Seen | None = None  # first arrival of the reply back at the sender (wire)
    heard: Heard | None = None  # the request, as the receiver's socket got it
    heard_reply: Heard | None = None  # the reply, as the sender's socket got it
    error: str | None = None
    # TCP: the request reached a host that did not take the connection (the handshake
    # timed out, or was reset): for a row that expects no answer, its silence
    refused: bool = False
    # a Service probe: sent to this port (not the receiver's own listener), and may end in
    # any of `alternatives` (the endpoints) instead of `receiver`
    to_port: int = 0
    alternatives: tuple[str, ...] = ()

    def ends_in(self, ns: str) -> bool:
        return ns == self.receiver or ns in self.alternatives

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        if self.request is None or self.heard is None:
            return False
        return not self.expect_reply or (self.reply_seen is not None
                                         and self.heard_reply is not None)
