"""The `path` check's engine: scapy-crafted probes with rising TTL from each sender's
namespace, and every namespace's sniffer recording who answered and what it quoted.

What is crafted, and what is not: the sender's own kernel picks the source (the address
its route lookup returns toward the destination, asked in the sender's namespace just
before: harness.host.wiring.route_sources), and the packet leaves through that
namespace's own routing table and interface. scapy writes only what a traceroute must
choose: the TTL (IPv6: hop limit), the ports, the IP id (IPv6: flow label) that tells the
TTL and the try of each answer, and a nonce payload naming the probe.

Each answer is seen twice: leaving the namespace that wrote it (outgoing, with its
initial TTL 64: the emitter, and the header it quoted before anything on the way back
could touch it; Linux NAT rewrites the quote inside an ICMP error back for the sender)
and arriving in the sender's namespace (it came back). A probe of one TTL that nothing
answers is sent again (harness.prove.path.TRIES in all), then reported silent.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.host import bpf, wiring
from harness.host.netns import run_in_netns, socket_in_netns
from harness.kinds import kind
from harness.plan import Expectation, Plan
from harness.prove import path
from harness.prove.engine import close_all
from harness.prove.path import Answer, PathTarget, Quote
from harness.prove.probe import Seen, checksum, new_ids, nonce, read_nonce
from harness.prove.result import Result
from harness.prove.targets import endpoints

DPORT = 33434  # traceroute's first port: no listener expected there
EMITTED_TTL = 64  # an ICMP error leaves its writer with the default TTL / hop limit
KINDS4 = {11: "time-exceeded", 3: "unreachable", 0: "echo-reply"}
KINDS6 = {3: "time-exceeded", 1: "unreachable", 129: "echo-reply"}
_IDS = new_ids()


@dataclass(frozen=True)
class Parsed:
    """One answer frame: who wrote it (outer source, its TTL), what it is, and the probe
    it answers (nonce id, TTL and try from the quoted IP id / flow label)."""

    from_ip: str
    ttl: int
    kind: str
    quote: Quote | None  # None: an echo reply (it quotes nothing)
    probe: int
    tag: int
    to_ip: str = ""
    proto: str = "udp"  # the probe's: udp, or icmp (the echo that replaces a filtered one)
    ident: int = 0  # UDP: the quoted source port; ICMP: the echo id


def tag_of(ttl: int, attempt: int) -> int:
    """The IP id (IPv6: flow label) of the probe of `ttl` in try `attempt` (never 0: the
    kernel would fill in an id of its own)."""
    return (attempt << 8) | ttl


def _inner(inner: bytes, l4: int) -> tuple[str, int, int, int, tuple[int, bool]] | None:
    """The probe quoted at `l4` of an ICMP error's inner packet: (proto, sport, dport,
    tag, nonce); UDP's tag is read by the caller (IP id or flow label), ICMP's is its
    sequence number."""
    proto = inner[9] if l4 != 40 else inner[6]
    if proto == 17:
        sport, dport = struct.unpack_from("!HH", inner, l4)
        got = read_nonce(inner[l4 + 8:l4 + 8 + 19])
        return ("udp", sport, dport, -1, got) if got else None
    if proto in (1, 58) and inner[l4] in (8, 128):
        ident, seq = struct.unpack_from("!HH", inner, l4 + 4)
        got = read_nonce(inner[l4 + 8:l4 + 8 + 19])
        return ("icmp", ident, ident, seq, got) if got else None
    return None


def parse_answer(frame: bytes) -> Parsed | None:
    """An Ethernet frame holding an answer to a path probe (an ICMP error quoting it, or
    the echo reply to an ICMP one), else None. Pure."""
    if len(frame) < 14:
        return None
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00":
        ip = frame[14:]
        if len(ip) < 20 or ip[9] != 1:
            return None
        ihl = (ip[0] & 0x0F) * 4
        icmp = ip[ihl:]
        kind = KINDS4.get(icmp[0]) if icmp else None
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        if kind == "echo-reply" and len(icmp) >= 8 + 19:
            ident, seq = struct.unpack_from("!HH", icmp, 4)
            got = read_nonce(icmp[8:8 + 19])
            return Parsed(src, ip[8], kind, None, got[0], seq, dst, "icmp", ident) \
                if got else None
        if kind is None or kind == "echo-reply" or len(icmp) < 8 + 20:
            return None
        inner = icmp[8:]
        iihl = (inner[0] & 0x0F) * 4
        if len(inner) < iihl + 8 + 19 or (q := _inner(inner, iihl)) is None:
            return None
        proto, sport, dport, tag, got = q
        quote = Quote(socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20]),
                      sport, dport)
        if tag < 0:
            tag = struct.unpack_from("!H", inner, 4)[0]
        return Parsed(src, ip[8], kind, quote, got[0], tag, dst, proto, sport)
    if ethertype == b"\x86\xdd":
        ip = frame[14:]
        if len(ip) < 40 + 8 + 19 or ip[6] != 58:
            return None
        kind = KINDS6.get(ip[40])
        six = socket.AF_INET6
        src, dst = socket.inet_ntop(six, ip[8:24]), socket.inet_ntop(six, ip[24:40])
        if kind == "echo-reply":
            ident, seq = struct.unpack_from("!HH", ip, 44)
            got = read_nonce(ip[48:48 + 19])
            return Parsed(src, ip[7], kind, None, got[0], seq, dst, "icmp", ident) \
                if got else None
        inner = ip[48:]
        if kind is None or len(inner) < 40 + 8 + 19 or (q := _inner(inner, 40)) is None:
            return None
        proto, sport, dport, tag, got = q
        quote = Quote(socket.inet_ntop(six, inner[8:24]), socket.inet_ntop(six, inner[24:40]),
                      sport, dport)
        if tag < 0:
            tag = struct.unpack_from("!I", inner, 0)[0] & 0xFFFFF
        return Parsed(src, ip[7], kind, quote, got[0], tag, dst, proto, sport)
    return None


def preload() -> None:
    """Import the scapy layers the probes are crafted with in the background (a few
    tenths of a second of a process's life): verify starts this before its other checks,
    whose waits on the lab it then overlaps."""
    def load() -> None:
        import scapy.layers.inet
        import scapy.layers.inet6  # noqa: F401

    threading.Thread(target=load, name="preload-scapy", daemon=True).start()


def template(src_ip: str, family: str, proto: str = "udp") -> bytes:
    """A sender's probe, crafted by scapy once per source, family and protocol: IP (TTL
    1) / UDP, or an ICMP echo request / a nonce; `craft` copies it per target."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.packet import Raw

    six = family == "ipv6"
    head = (IPv6(src=src_ip, dst="::1", hlim=1) if six
            else IP(src=src_ip, dst="127.0.0.1", ttl=1, id=1))
    l4 = (UDP(sport=1, dport=DPORT) if proto == "udp"
          else ICMPv6EchoRequest(id=1, seq=0) if six else ICMP(type=8, id=1, seq=0))
    return bytes(head / l4 / Raw(nonce(0)))


_TEMPLATES: dict[tuple[str, str, str], bytes] = {}


def _l4_checksum(out: bytearray, six: bool, src: bytes, dst: bytes, proto: int) -> None:
    """The UDP or ICMP checksum of `out` (IPv4 ICMP: no pseudo-header)."""
    l4 = 40 if six else 20
    at = l4 + (6 if proto == 17 else 2)
    struct.pack_into("!H", out, at, 0)
    length = len(out) - l4
    pseudo = b"" if proto == 1 else src + dst + (
        struct.pack("!IxxxB", length, proto) if six else struct.pack("!xBH", proto, length))
    value = checksum(pseudo + bytes(out[l4:]))
    struct.pack_into("!H", out, at, (value or 0xFFFF) if proto == 17 else value)


def _addressed(t: PathTarget, proto: str) -> tuple[bytearray, bool, bytes, bytes]:
    """A copy of the sender's scapy template for `proto` (`template`, built once) with
    this target's destination; also whether it is IPv6, and both addresses packed."""
    key = (t.src_ip, t.family, proto)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = template(*key)
    out = bytearray(_TEMPLATES[key])
    six = t.family == "ipv6"
    fam = socket.AF_INET6 if six else socket.AF_INET
    addr = socket.inet_pton(fam, t.dst_ip)
    out[24 if six else 16:40 if six else 20] = addr
    return out, six, socket.inet_pton(fam, t.src_ip), addr


def _sealed(out: bytearray, six: bool) -> bytes:
    if not six:  # the header's own checksum (the kernel writes it again as it sends)
        struct.pack_into("!H", out, 10, 0)
        struct.pack_into("!H", out, 10, checksum(bytes(out[:20])))
    return bytes(out)


def craft_echo(t: PathTarget, probe: int, ident: int) -> bytes:
    """The ICMP echo that replaces a target's UDP probe where UDP is not answered: the
    sender's scapy template with this target's destination, echo id and nonce."""
    out, six, src, addr = _addressed(t, "icmp")
    l4 = 40 if six else 20
    struct.pack_into("!H", out, l4 + 4, ident)
    out[l4 + 8:] = nonce(probe)
    _l4_checksum(out, six, src, addr, 58 if six else 1)
    return _sealed(out, six)


def craft(t: PathTarget, probe: int, sport: int) -> bytes:
    """The probe of one target: its sender's scapy template (`template`) with this
    target's destination, source port and nonce, and the UDP checksum over them (the
    pseudo-header's source: the kernel's choice, `t.src_ip`). Building a packet in scapy
    costs milliseconds on a loaded host; a lab of 200 pods traces thousands of pairs."""
    out, six, src, addr = _addressed(t, "udp")
    l4 = 40 if six else 20
    struct.pack_into("!HH", out, l4 + 4, len(out) - l4, 0)
    struct.pack_into("!H", out, l4, sport)
    out[l4 + 8:] = nonce(probe)
    _l4_checksum(out, six, src, addr, 17)
    return _sealed(out, six)


def stamp(packet: bytes, six: bool, ttl: int, tag: int) -> bytes:
    """`packet` with this send's TTL and tag: in the IP id (IPv6: the flow label) and, in
    an ICMP echo, its sequence number too (its checksum follows). IPv4: the kernel
    rewrites the header checksum of every raw packet it sends; neither field is in UDP's
    checksum."""
    out = bytearray(packet)
    if six:
        out[7] = ttl
        first = struct.unpack_from("!I", out, 0)[0] & 0xFFF00000
        struct.pack_into("!I", out, 0, first | tag)
    else:
        out[8] = ttl
        struct.pack_into("!H", out, 4, tag)
    proto = out[6] if six else out[9]
    if proto in (1, 58):
        l4 = 40 if six else 20
        struct.pack_into("!H", out, l4 + 6, tag)
        _l4_checksum(out, six, bytes(out[8:24]) if six else bytes(out[12:16]),
                     bytes(out[24:40]) if six else bytes(out[16:20]), proto)
    return bytes(out)


@dataclass
class _Trace:
    target: PathTarget
    probe: int
    sport: int
    packet: bytes = b""
    echo: bytes = b""  # its ICMP echo twin, crafted where UDP goes unanswered
    error: str | None = None
    answers: dict[int, Answer] = field(default_factory=dict)
    # TTL -> its emitter seen: True when it also wrote its own address as the source
    # (a copy of a frame that merely passes, e.g. mirrored to an ifb device, is not)
    emitted: dict[int, bool] = field(default_factory=dict)
    # what was sent (ttl, attempt, echo, time) and each answer's frames (namespace, iface,
    # outgoing, time, parsed, frame): kept raw, made Seen records only for failures
    sent: list[tuple[int, int, bool, float]] = field(default_factory=list)
    frames: list[tuple[str, str, bool, float, Parsed, bytes]] = field(default_factory=list)
    highest: int = 0  # the highest TTL asked

    def sightings(self) -> list[Seen]:
        """What was sent for this trace and every frame of its answers, as sightings."""
        t = self.target
        six = t.family == "ipv6"
        out = [Seen(t.sender, "-", True, ts, False, "icmp" if echo else "udp", t.src_ip,
                    t.dst_ip, self.sport, self.sport if echo else DPORT, k,
                    _ether(stamp(self.echo if echo else self.packet, six, k,
                                 tag_of(k, attempt)), t.family))
               for k, attempt, echo, ts in self.sent]
        out += [Seen(ns, ifname, outgoing, ts, True, "icmp", got.from_ip, got.to_ip,
                     got.ident, got.ident, got.ttl, frame)
                for ns, ifname, outgoing, ts, got, frame in self.frames]
        return out

    def wanted(self) -> list[int]:
        """The TTLs still unanswered, or whose answer has not come back to the sender."""
        need = []
        for k in range(1, self.highest + 1):
            a = self.answers.get(k)
            if a is None or not a.received:
                need.append(k)
        return need

    def off_plan(self) -> bool:
        t = self.target
        last = self.answers.get(len(t.hops))
        return t.answer_back and last is not None and last.device not in (None, t.dst)


def check(plan: Plan, pids: Mapping[str, int], checks: Iterable[str] | None = None,
          timeout: float = 2.0, quick: bool = False, keep_frames: bool = False
          ) -> tuple[list[Result], dict[int, list[Seen]]]:
    """Trace every pair of the plan (`pids`: container name -> pid); one Result each, and
    by probe id what was sent for it and every frame of its answers: for the failures
    (their frames, the report), and with `keep_frames` for every trace (pcaps)."""
    eps = endpoints(plan)
    pairs = path.pairs(plan, *(() if checks is None else (checks,)))
    if quick:  # one pair per (check, family, source node, destination node)
        node_of = {p.name: p.node for p in plan.pods} | {n.name: n.name for n in plan.nodes}
        firsts: dict[tuple[str, str, str, str], tuple[str, object, str]] = {}
        for check_, e, sender in pairs:
            firsts.setdefault((check_, e.family, node_of[e.src], node_of[e.dst]),
                              (check_, e, sender))
        pairs = list(firsts.values())  # type: ignore[arg-type]
    wanted: dict[str, list[str]] = {}
    for _, e, sender in pairs:
        wanted.setdefault(sender, []).append(e.dst_ip)
    sources = {}
    for sender, dsts in wanted.items():
        pid = pids.get(eps[sender].container)
        if pid:
            sources[sender] = wiring.route_sources(pid, list(dict.fromkeys(dsts)))
    who = path.owners(plan)
    walked = _walks(plan, pids, pairs, who) if plan.routing != "static" else {}
    traces = []
    base = 1024 + int.from_bytes(os.urandom(2), "big") % 30000
    for i, (check_, e, sender) in enumerate(pairs):
        src = sources.get(sender, {}).get(e.dst_ip, "")
        t = path.target(plan, check_, e, sender, src, walked.get(i))
        tr = _Trace(t, next(_IDS), base + i % 30000)
        if eps[sender].container not in pids:
            tr.error = f"{sender} is not running"
        elif not src:
            tr.error = f"{sender} has no route to {e.dst_ip}"
        else:
            tr.packet = craft(t, tr.probe, tr.sport)
        traces.append(tr)
    _run(plan, pids, traces, timeout)
    results = []
    for tr in traces:
        r = path.judge(tr.target, tr.answers, "udp", tr.sport, DPORT, tr.error, path.TRIES,
                       who)
        r.probe_ids = [tr.probe]
        results.append(r)
    return results, {tr.probe: tr.sightings() for tr, r in zip(traces, results, strict=True)
                     if keep_frames or not r.ok}


def _walks(plan: Plan, pids: Mapping[str, int], pairs: list[tuple[str, Expectation, str]],
           who: Mapping[str, str]) -> dict[int, tuple[str, ...]]:
    """Where a routing daemon owns the routes, each pair's forwarders as the forwarding
    tables have them now (read just before probing): the daemon picks among paths of
    equal length, which the plan cannot know."""
    dsts = list(dict.fromkeys(e.dst_ip for _, e, _ in pairs))
    gateways = {n.name: wiring.next_hops(pids[n.container], dsts) for n in plan.nodes
                if n.container in pids and not kind(n.kind).is_switch}
    out = {}
    for i, (_, e, sender) in enumerate(pairs):
        start = e.path[0]
        got = path.walk(start, e.dst_ip, e.dst, gateways, who)
        if got is not None:
            out[i] = got if sender == start else (start, *got)
    return out


def _run(plan: Plan, pids: Mapping[str, int], traces: list[_Trace], timeout: float) -> None:
    live = [tr for tr in traces if tr.error is None]
    if not live:
        return
    eps = endpoints(plan)
    own = {name: frozenset(ep.addresses) for name, ep in eps.items()}
    by_probe = {tr.probe: tr for tr in live}
    sniffers: dict[socket.socket, str] = {}
    senders: dict[tuple[str, str], socket.socket] = {}
    host_net = {p.name for p in plan.pods if p.host_network}
    switches = {n.name for n in plan.nodes if kind(n.kind).is_switch}  # no address
    try:
        for ep in eps.values():
            pid = pids.get(ep.container)
            if pid is None or ep.name in host_net or ep.name in switches:
                continue
            sniffers[run_in_netns(pid, _sniffer, list(ep.addresses))] = ep.name
        for tr in live:
            key = (tr.target.sender, tr.target.family)
            if key not in senders:
                fam = socket.AF_INET6 if tr.target.family == "ipv6" else socket.AF_INET
                senders[key] = socket_in_netns(pids[eps[tr.target.sender].container], fam,
                                               socket.SOCK_RAW, socket.IPPROTO_RAW)
        # UDP first; where a TTL stays unanswered, an ICMP echo (UDP may be filtered)
        for attempt in range(2 * path.TRIES):
            sent = 0
            echo = attempt >= path.TRIES
            for tr in live:
                t = tr.target
                if tr.error is not None:
                    continue
                if attempt == 0:
                    tr.highest = len(t.hops)
                elif tr.off_plan() or any(a.device == t.dst and k < len(t.hops)
                                          for k, a in tr.answers.items()):
                    tr.highest = len(t.hops) + path.MORE  # name the hops past the plan
                ttls = range(1, tr.highest + 1) if attempt == 0 else tr.wanted()
                if echo and ttls and not tr.echo:
                    tr.echo = craft_echo(t, tr.probe, tr.sport)
                for k in ttls:
                    if not _send(senders[(t.sender, t.family)], tr, k, attempt, echo):
                        break
                    sent += 1
            if not sent:
                break
            _collect(sniffers, by_probe, live, timeout, own)
    finally:
        close_all([*sniffers, *senders.values()])


def _send(sock: socket.socket, tr: _Trace, ttl: int, attempt: int, echo: bool) -> bool:
    """Send `tr`'s probe (its ICMP echo, with `echo`) with this TTL; False (and the
    trace's error set) when the sender's kernel refused it."""
    t = tr.target
    packet = stamp(tr.echo if echo else tr.packet, t.family == "ipv6", ttl,
                   tag_of(ttl, attempt))
    try:
        sock.sendto(packet, (t.dst_ip, 0))
    except OSError as exc:
        tr.error = f"{t.sender} could not send: {exc.strerror}"
        return False
    tr.sent.append((ttl, attempt, echo, time.time()))
    return True


def _ether(packet: bytes, family: str) -> bytes:
    """A crafted packet as a frame (no link addresses: as handed to the kernel)."""
    return b"\0" * 12 + (b"\x86\xdd" if family == "ipv6" else b"\x08\x00") + packet


def _sniffer(local: list[str]) -> socket.socket:
    sock = bpf.packet_socket()
    bpf.attach(sock, bpf.icmp_answer_filter(local, EMITTED_TTL))
    sock.setsockopt(socket.SOL_SOCKET, bpf.SO_RCVBUFFORCE, 8 << 20)
    sock.setblocking(False)
    return sock


def _collect(sniffers: Mapping[socket.socket, str], by_probe: Mapping[int, _Trace],
             live: list[_Trace], timeout: float, own: Mapping[str, frozenset[str]]) -> None:
    deadline = time.monotonic() + timeout
    socks = list(sniffers)
    waiting = {tr.probe: len(tr.wanted()) for tr in live if tr.error is None}
    waiting = {p: n for p, n in waiting.items() if n}
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(socks, [], [], min(left, 0.05))
        touched: set[int] = set()
        for sock in ready:
            touched |= _read(sock, sniffers[sock], by_probe, own)
        for probe in touched & waiting.keys():  # only the traces that got something
            if not by_probe[probe].wanted():
                del waiting[probe]
    for sock in socks:  # emissions read after the answers they go with
        _read(sock, sniffers[sock], by_probe, own)


def _read(sock: socket.socket, ns: str, by_probe: Mapping[int, _Trace],
          own: Mapping[str, frozenset[str]]) -> set[int]:
    """Read what `sock` (the sniffer of namespace `ns`) holds; the probes it answered."""
    touched = set()
    while True:
        try:
            frame, addr = sock.recvfrom(bpf.PROBE_SNAPLEN)
        except (BlockingIOError, InterruptedError):
            return touched
        got = parse_answer(frame)
        tr = by_probe.get(got.probe) if got else None
        if got is None or tr is None:
            continue
        touched.add(got.probe)
        k = got.tag & 0xFF
        outgoing = addr[2] == bpf.PACKET_OUTGOING
        emitted = outgoing and got.ttl == EMITTED_TTL
        arrived = not outgoing and ns == tr.target.sender
        if not (emitted or arrived):
            continue  # passing through
        a = tr.answers.get(k)
        if a is None:
            a = tr.answers[k] = Answer(k, got.from_ip, got.kind, quote=got.quote,
                                       proto=got.proto)
        mine = got.from_ip in own.get(ns, ())
        if emitted and (k not in tr.emitted or (mine and not tr.emitted[k])):
            tr.emitted[k] = mine
            a.device, a.quote, a.from_ip, a.kind = ns, got.quote, got.from_ip, got.kind
            a.proto = got.proto
        if arrived and not a.received:
            a.received = True
        tr.frames.append((ns, addr[0], outgoing, time.time(), got, frame))
