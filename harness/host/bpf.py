"""Packet sockets and their filters: the one place podlab defines how frames are selected.

Every AF_PACKET socket podlab opens (the probe sniffers of verify, the intra-pod `lo`
sniffer, `podlab capture`) takes its constants from here and gets its filter through
`attach`, in one of two ways:

- the **probe filter** (`probe_filter`) is a fixed classic-BPF program assembled here, a
  few dozen instructions: it accepts IPv4 and IPv6 frames whose payload starts with a
  probe nonce ("PL..."), optionally only those arriving for the namespace's own
  addresses, and TCP handshakes. It is written out, not compiled, because verify must
  not depend on libpcap (the unit tests run it in the kernel without root or libpcap),
  and because a lab of hundreds of pods carries millions of frames that Python must
  never see;
- **user expressions** (`podlab capture --filter`, `Lab.capture(bpf=...)`) are compiled
  by libpcap through scapy into the same instruction tuples (`compile_expr`); without
  libpcap, `python_filter` runs a subset of pcap-filter(7) in Python on each packet.

Snap lengths differ on purpose: probe sniffers read `PROBE_SNAPLEN` bytes (headers and
nonce are all a verdict needs, and a 200-pod verify keeps hundreds of thousands of frames
for pcaps), while `podlab capture` keeps whole frames (`SNAPLEN`).
"""

from __future__ import annotations

import ctypes
import ipaddress
import re
import socket
import struct
from collections.abc import Callable
from typing import Any

from harness.errors import InputError

# linux/if_ether.h, linux/if_packet.h, asm-generic/socket.h
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_HOST, PACKET_OTHERHOST, PACKET_OUTGOING = 0, 3, 4
SO_ATTACH_FILTER = 26
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33  # root may exceed rmem_max: a busy node must not drop sightings
DLT_EN10MB = 1  # every lab interface (veth, bridge, lo) is Ethernet-framed
SNAPLEN = 65535  # podlab capture: whole frames
PROBE_SNAPLEN = 256  # verify: headers and nonce; pcap frames of probes are cut here too

SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the frame's direction
MAGIC = 0x504C  # "PL": both request (PLB) and reply (PLR) nonces

# opcodes (linux/filter.h)
LDB_ABS, LDH_ABS, LDW_ABS = 0x30, 0x28, 0x20
LDXB_MSH = 0xB1  # X = 4 * (byte & 0xf): the IPv4 header length
LDH_IND, LDB_IND = 0x48, 0x50
JEQ, JGE, JA = 0x15, 0x35, 0x05
RSH, LSH, LSH_X, AND, ADD, ADD_X, TAX = 0x74, 0x64, 0x6C, 0x54, 0x04, 0x0C, 0x07
LD_IMM = 0x00
RET = 0x06

Insn = tuple[int, int, int, int]  # code, jump-if-true, jump-if-false, k
Target = int | str  # a relative jump (0: next) or a label
PacketFilter = Callable[[Any], bool]


def packet_socket() -> socket.socket:
    """An AF_PACKET socket for every protocol (bind it to one interface if needed)."""
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))


def ignore_outgoing(sock: socket.socket) -> None:
    """Deliver no frame this host sends to `sock` (PACKET_IGNORE_OUTGOING, Linux 4.20):
    the kernel then skips the copy it makes of each outgoing frame for every packet
    socket. Older kernels go on copying, and the filter drops them as before."""
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass


def attach(sock: socket.socket, program: list[Insn]) -> None:
    """Attach a classic BPF program (assembled or compiled here) to `sock`."""
    insns = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# --------------------------------------------------------------------------- the probe filter


def assemble(lines: list[tuple[int, Target, Target, int] | str]) -> list[Insn]:
    """Resolve label jumps; a plain string in `lines` defines a label."""
    labels: dict[str, int] = {}
    insns: list[tuple[int, Target, Target, int]] = []
    for line in lines:
        if isinstance(line, str):
            labels[line] = len(insns)
        else:
            insns.append(line)

    def rel(target: Target, i: int) -> int:
        return target if isinstance(target, int) else labels[target] - i - 1

    out = []
    for i, (code, jt, jf, k) in enumerate(insns):
        if code == JA:
            out.append((code, 0, 0, rel(jt, i)))
        else:
            out.append((code, rel(jt, i), rel(jf, i), k))
    return out


def probe_filter(local: list[str] | None = None, handshakes: bool = False,
                 share: int | None = None) -> list[Insn]:
    """Accept probe frames, IPv4 and IPv6; with `local`, only arriving ones addressed to
    those IPs (of either family); with `handshakes`, TCP SYN and SYN-ACK segments too
    (they carry no nonce); with `share`, a mask of residues modulo 16, only probes whose
    id has one of them (`residue`): one process's share of a verify's probes. IPv6 probes
    carry no extension header: the transport header follows the fixed 40-byte one."""
    four = [a for a in local or () if ipaddress.ip_address(a).version == 4]
    six = [a for a in local or () if ipaddress.ip_address(a).version == 6]

    def nonce(magic: tuple[int, Target, Target, int], last: tuple[int, Target, Target, int]
              ) -> list[tuple[int, Target, Target, int] | str]:
        """`magic` loads the payload's first half-word, `last` the nonce's last digit."""
        return [magic, (JEQ, 0, "drop", MAGIC),
                *([last, (JA, "share", 0, 0)] if share is not None else [(JA, "accept", 0, 0)])]

    prog: list[tuple[int, Target, Target, int] | str] = []
    if local:
        prog += [(LDB_ABS, 0, 0, SKF_AD_PKTTYPE), (JEQ, "drop", 0, PACKET_OUTGOING)]
    prog += [(LDH_ABS, 0, 0, 12), (JEQ, "ip4", 0, ETH_P_IP), (JEQ, "ip6", "drop", ETH_P_IPV6),
             "ip4"]
    if local:
        prog.append((LDW_ABS, 0, 0, 30))  # the destination address
        prog += [(JEQ, "payload", 0, struct.unpack("!I", socket.inet_aton(a))[0])
                 for a in four]
        prog.append((JA, "drop", 0, 0))
    prog += [
        "payload",
        (LDB_ABS, 0, 0, 23), (JEQ, 0, "udp_icmp", 6),
        (LDXB_MSH, 0, 0, 14),
    ]
    if handshakes:  # flags SYN without ACK, or SYN+ACK
        prog += [(LDB_IND, 0, 0, 27), (AND, 0, 0, 0x12), (JEQ, "accept", 0, 0x02),
                 (JEQ, "accept", 0, 0x12)]
    prog += [
        # TCP: the payload starts after the IP header and the TCP header (data offset)
        (LDB_IND, 0, 0, 26), (RSH, 0, 0, 4), (LSH, 0, 0, 2), (ADD_X, 0, 0, 0), (TAX, 0, 0, 0),
        *nonce((LDH_IND, 0, 0, 14), (LDB_IND, 0, 0, 14 + NONCE_LAST)),
        "udp_icmp",
        (LDXB_MSH, 0, 0, 14),  # 14 + 8-byte UDP or ICMP header
        *nonce((LDH_IND, 0, 0, 22), (LDB_IND, 0, 0, 22 + NONCE_LAST)),
        "ip6",
    ]
    if local:  # the destination, 4 words from offset 38, against each local address
        for n, addr in enumerate(six):
            words = struct.unpack("!4I", socket.inet_pton(socket.AF_INET6, addr))
            for w, word in enumerate(words):
                prog += [(LDW_ABS, 0, 0, 38 + 4 * w), (JEQ, 0, f"next6_{n}", word)]
            prog += [(JA, "payload6", 0, 0), f"next6_{n}"]
        prog.append((JA, "drop", 0, 0))
    prog += [
        "payload6",
        (LDB_ABS, 0, 0, 20),  # the next header
        (JEQ, "tcp6", 0, 6), (JEQ, "udp_icmp6", 0, 17), (JEQ, "udp_icmp6", "drop", 58),
        "tcp6",
    ]
    if handshakes:
        prog += [(LDB_ABS, 0, 0, 67), (AND, 0, 0, 0x12), (JEQ, "accept", 0, 0x02),
                 (JEQ, "accept", 0, 0x12)]
    prog += [
        (LDB_ABS, 0, 0, 66), (RSH, 0, 0, 4), (LSH, 0, 0, 2), (TAX, 0, 0, 0),  # data offset
        *nonce((LDH_IND, 0, 0, 54), (LDB_IND, 0, 0, 54 + NONCE_LAST)),
        "udp_icmp6",  # 14 + 40 + an 8-byte UDP or ICMPv6 header
        *nonce((LDH_ABS, 0, 0, 62), (LDB_ABS, 0, 0, 62 + NONCE_LAST)),
        *(["share", *_share_test(share)] if share is not None else []),
        "accept",
        (RET, 0, 0, PROBE_SNAPLEN),
        "drop",
        (RET, 0, 0, 0),
    ]
    return assemble(prog)


def icmp_probe_filter(share: int | None = None) -> list[Insn]:
    """For a raw ICMP socket (its reads start at the IP header): only echo requests and
    replies that carry a probe nonce (of a `share`, as in `probe_filter`)."""
    return assemble([
        (LDXB_MSH, 0, 0, 0),  # X = the IP header length
        (LDB_IND, 0, 0, 0),  # the ICMP type
        (JEQ, "echo", 0, 0), (JEQ, "echo", 0, 8), (JA, "drop", 0, 0),
        "echo",
        (LDH_IND, 0, 0, 8), (JEQ, 0, "drop", MAGIC),
        *([(LDB_IND, 0, 0, 8 + NONCE_LAST), *_share_test(share)] if share is not None
          else []),
        "accept",
        (RET, 0, 0, PROBE_SNAPLEN),
        "drop",
        (RET, 0, 0, 0),
    ])


def icmp_answer_filter(local: list[str] | None = None, emitted_ttl: int = 64
                       ) -> list[Insn]:
    """Accept the answers a traced path gets: ICMP time-exceeded, destination unreachable
    and echo reply (ICMPv6: time-exceeded, destination unreachable, echo reply); IPv6
    without extension headers, as the lab sends it. With `local` (the namespace's own
    addresses, either family), only those it writes (leaving with `emitted_ttl`, the
    initial TTL / hop limit) and those addressed to it: an answer merely forwarded
    through a router never reaches Python."""
    four = [a for a in local or () if ipaddress.ip_address(a).version == 4]
    six = [a for a in local or () if ipaddress.ip_address(a).version == 6]
    prog: list[tuple[int, Target, Target, int] | str] = [
        (LDH_ABS, 0, 0, 12), (JEQ, "ip4", 0, ETH_P_IP), (JEQ, "ip6", "drop", ETH_P_IPV6),
        "ip4",
        (LDB_ABS, 0, 0, 23), (JEQ, 0, "drop", 1),
    ]
    if local is not None:
        prog += [(LDB_ABS, 0, 0, SKF_AD_PKTTYPE), (JEQ, 0, "in4", PACKET_OUTGOING),
                 (LDB_ABS, 0, 0, 22), (JEQ, "type4", "drop", emitted_ttl),
                 "in4", (LDW_ABS, 0, 0, 30)]
        prog += [(JEQ, "type4", 0, struct.unpack("!I", socket.inet_aton(a))[0])
                 for a in four]
        prog.append((JA, "drop", 0, 0))
    prog += [
        "type4",
        (LDXB_MSH, 0, 0, 14), (LDB_IND, 0, 0, 14),
        (JEQ, "accept", 0, 11), (JEQ, "accept", 0, 3), (JEQ, "accept", "drop", 0),
        "ip6",
        (LDB_ABS, 0, 0, 20), (JEQ, 0, "drop", 58),
    ]
    if local is not None:
        prog += [(LDB_ABS, 0, 0, SKF_AD_PKTTYPE), (JEQ, 0, "in6", PACKET_OUTGOING),
                 (LDB_ABS, 0, 0, 21), (JEQ, "type6", "drop", emitted_ttl), "in6"]
        for n, addr in enumerate(six):
            words = struct.unpack("!4I", socket.inet_pton(socket.AF_INET6, addr))
            for w, word in enumerate(words):
                prog += [(LDW_ABS, 0, 0, 38 + 4 * w), (JEQ, 0, f"next6_{n}", word)]
            prog += [(JA, "type6", 0, 0), f"next6_{n}"]
        prog.append((JA, "drop", 0, 0))
    prog += [
        "type6",
        (LDB_ABS, 0, 0, 54),
        (JEQ, "accept", 0, 3), (JEQ, "accept", 0, 1), (JEQ, "accept", "drop", 129),
        "accept",
        (RET, 0, 0, PROBE_SNAPLEN),
        "drop",
        (RET, 0, 0, 0),
    ]
    return assemble(prog)


# The nonce is "PLB"/"PLR" and the probe id in 16 lower-case hex digits (harness.prove.probe);
# the last digit, at this offset, carries the id's low bits.
NONCE_LAST = 18


RESIDUES = 16  # shares are sets of residues of the probe id modulo this: its last hex digit


def residue(probe_id: int) -> int:
    """The residue of a probe id that decides which share it belongs to."""
    return probe_id % RESIDUES


def _share_test(share: int) -> list[tuple[int, Target, Target, int]]:
    """With the nonce's last hex digit in A: accept when bit (its value) of `share` is
    set. '0'-'9' are 0x30-0x39 and 'a'-'f' 0x61-0x66, so the value modulo 16 is the
    character's for a digit and the character's + 9 for a letter."""
    if not 0 < share < 1 << RESIDUES:
        raise ValueError(f"share {share:#x}: a non-empty mask of the {RESIDUES} residues")
    return [(JGE, 0, 1, 0x61), (ADD, 0, 0, 9), (AND, 0, 0, RESIDUES - 1), (TAX, 0, 0, 0),
            (LD_IMM, 0, 0, 1), (LSH_X, 0, 0, 0), (AND, 0, 0, share), (JEQ, "drop", "accept", 0)]


ICMP6_FILTER = 1  # linux/icmpv6.h: a raw ICMPv6 socket's filter of message types
ICMP6_ECHO_TYPES = (128, 129)


def icmp6_echo_filter() -> bytes:
    """ICMP6_FILTER for a raw ICMPv6 socket: pass echo requests and replies, block every
    other type (neighbour discovery, MLD, errors). A set bit blocks its type. The nonce is
    checked as each echo is read: the kernel hands a raw ICMPv6 socket the message without
    its IPv6 header, so the probe filter's offsets do not apply to it."""
    words = [0xFFFFFFFF] * 8
    for t in ICMP6_ECHO_TYPES:
        words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


# --------------------------------------------------------------------------- user expressions


def compile_expr(expr: str) -> list[Insn]:
    """`expr` (pcap-filter(7)) compiled by libpcap for Ethernet frames.

    ImportError without libpcap (use `python_filter` then), InputError for an expression
    libpcap rejects.
    """
    from scapy.arch.common import compile_filter, free_filter
    from scapy.error import Scapy_Exception

    try:
        bp = compile_filter(expr, linktype=DLT_EN10MB)
    except (Scapy_Exception, OSError) as exc:
        raise InputError(f"bad --filter {expr!r}: {exc}") from None
    try:
        return [(i.code, i.jt, i.jf, i.k) for i in bp.bf_insns[:bp.bf_len]]
    finally:
        free_filter(bp)


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
