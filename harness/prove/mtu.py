"""The `mtu` check: the path MTU between every pair of nodes, and how a path says no.

For every ordered pair of k8s-nodes that host pods, one pod on each: an ICMP echo of
exactly the path MTU, with DF set, must cross and be answered; one byte more must be
refused the way IP says: by the sender's own stack when its own interface is the
smallest (EMSGSIZE), else by an ICMP fragmentation-needed back to the sender from the
router whose next link is the smaller one, carrying that link's MTU. A switch port with
a smaller MTU than the router in front of it drops the packet without a word: that is the
PMTU black hole users meet, and the check fails naming the link.

`targets` is pure (from the plan); `probe` sends from the pods' namespaces with a raw
ICMP socket set to IP_PMTUDISC_PROBE (DF on, the kernel's cached path MTU ignored, so a
previous fragmentation-needed does not make the sender refuse by itself); `judge` is pure.

In IPv6 the same, once more per pair: routers never fragment, so an ICMPv6 echo (a raw
ICMPv6 socket with IPV6_PMTUDISC_PROBE) one byte over the path MTU gets a packet-too-big
from the router in front of the smaller link, carrying that link's MTU.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.kinds import kind
from harness.plan import POD_IFACE, LinkPlan, Plan, PodPlan
from harness.prove.result import Result

CHECK = "mtu"
DEFAULT_MTU = 1500  # a veth's and a bridge's MTU unless the file says `mtu:`
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE = 10, 3
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE = 23, 3
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_FRAG_NEEDED, ICMP_ECHO = 0, 3, 4, 8
ICMP6_PACKET_TOO_BIG, ICMP6_ECHO, ICMP6_ECHO_REPLY = 2, 128, 129
IP_HEADER, ICMP_HEADER = 20, 8
IP6_HEADER = 40
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Limit:
    """Where a path's MTU is set: the first interface on it with the smallest MTU."""

    node: str  # who sends into it: the sender, a router, or the switch (silent)
    link: str  # "a:if--b:if", or "pod:eth0"
    mtu: int
    silent: bool = False  # an L2 hop: it drops an oversized frame and sends no ICMP
    sender: bool = False  # the sender's own interface: its stack refuses (EMSGSIZE)

    def says(self, family: str = "ipv4") -> str:
        if self.sender:
            return f"refused by the sender's own {self.link} (MTU {self.mtu})"
        if self.silent:
            return (f"dropped without ICMP by switch {self.node} on link {self.link} "
                    f"(MTU {self.mtu}): a PMTU black hole")
        return f"{too_big(family)} (MTU {self.mtu}) from {self.node} for link {self.link}"


def too_big(family: str) -> str:
    """How a router says a packet does not fit: ICMP's, or ICMPv6's name for it."""
    return "packet-too-big" if family == "ipv6" else "fragmentation-needed"


@dataclass(frozen=True)
class Target:
    src: str  # pod
    dst: str  # pod
    src_ip: str
    dst_ip: str
    path_mtu: int
    limit: Limit
    routers: dict[str, str]  # address -> node, to name who sent an ICMP error
    family: str = "ipv4"


def _link_name(link: LinkPlan) -> str:
    return f"{link.a[0]}:{link.a[1]}--{link.b[0]}:{link.b[1]}"


def _mtu(link: LinkPlan) -> int:
    return link.mtu or DEFAULT_MTU


def path_limits(plan: Plan, src: PodPlan, dst: PodPlan) -> list[Limit]:
    """Every interface a packet from pod src to pod dst crosses, in order, with its MTU."""
    link_of = {}
    for link in plan.links:
        link_of[link.a] = link
        link_of[link.b] = link
    out = [Limit(src.name, f"{src.name}:{POD_IFACE}", DEFAULT_MTU, sender=True)]
    hops = plan.segment_hops(src.node, f"pods:{dst.node}")
    for i, (device, segment) in enumerate(hops):
        seg = next(s for s in plan.segments if s.name == segment)
        if seg.kind == "pods":  # into the pod's bridge, then its veth: pods' own MTU
            out.append(Limit(device, f"{dst.node}:{plan.node(dst.node).bridge}--"
                                     f"{dst.name}:{POD_IFACE}", DEFAULT_MTU))
            continue
        mine = next(link_of[(n, ifc)] for n, ifc, _ in seg.members if n == device)
        out.append(Limit(device, _link_name(mine), _mtu(mine)))
        nxt = hops[i + 1][0] if i + 1 < len(hops) else dst.node
        if seg.kind == "switch":  # the switch forwards onto the next device's port
            theirs = next(link_of[(n, ifc)] for n, ifc, _ in seg.members if n == nxt)
            switch = next(e[0] for e in (theirs.a, theirs.b)
                          if kind(plan.node(e[0]).kind).is_switch)
            out.append(Limit(switch, _link_name(theirs), _mtu(theirs), silent=True))
    return out


def targets(plan: Plan) -> list[Target]:
    """One target per ordered pair of k8s-nodes with pods (the first pod on each) and
    address family the two pods share."""
    first: dict[str, PodPlan] = {}
    for pod in plan.pods:
        first.setdefault(pod.node, pod)
    routers = {a: n.name for n in plan.nodes for a in n.own_addresses}
    out = []
    for a in first.values():
        for b in first.values():
            if a.node == b.node:
                continue
            limits = path_limits(plan, a, b)
            mtu = min(x.mtu for x in limits)
            limit = next(x for x in limits if x.mtu == mtu)
            for family in plan.shared_families(a.name, b.name):
                out.append(Target(a.name, b.name, str(a.ip_of(family)),  # type: ignore[arg-type]
                                  str(b.ip_of(family)), mtu, limit, routers,  # type: ignore[arg-type]
                                  family))
    return out


# --------------------------------------------------------------------------- probing


@dataclass
class Outcome:
    """What happened to one probe of `size` bytes."""

    size: int
    answered: bool = False  # an echo reply came back
    refused: bool = False  # the sender's stack said EMSGSIZE
    icmp_from: str | None = None  # who sent fragmentation-needed
    icmp_mtu: int | None = None
    error: str | None = None  # could not be sent (no route, namespace gone)


@dataclass
class Observation:
    target: Target
    fits: Outcome
    over: Outcome


def echo6(ident: int, seq: int, size: int) -> bytes:
    """An ICMPv6 echo request whose IPv6 packet is `size` bytes (checksum: the kernel's)."""
    payload = b"podlab-mtu".ljust(size - IP6_HEADER - ICMP_HEADER, b".")
    return struct.pack("!BBHHH", ICMP6_ECHO, 0, 0, ident, seq) + payload


def classify6(message: bytes, src: str) -> tuple[str, int, int, str, int | None] | None:
    """`classify` for what a raw ICMPv6 socket reads (the message without its IPv6 header;
    `src` from the read's address): echo replies, and packet-too-big errors about our
    echoes ("frag", with the MTU they carry)."""
    if len(message) < ICMP_HEADER:
        return None
    if message[0] == ICMP6_ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", message, 4)
        return "reply", ident, seq, src, None
    inner = message[8:]  # the offending packet: its IPv6 header, then our echo
    if message[0] == ICMP6_PACKET_TOO_BIG and len(inner) >= IP6_HEADER + ICMP_HEADER and \
            inner[6] == 58 and inner[IP6_HEADER] == ICMP6_ECHO:
        mtu = struct.unpack_from("!I", message, 4)[0]
        ident, seq = struct.unpack_from("!HH", inner, IP6_HEADER + 4)
        return "frag", ident, seq, src, mtu
    return None


def echo(ident: int, seq: int, size: int) -> bytes:
    """An ICMP echo request whose IP packet is `size` bytes."""
    payload = b"podlab-mtu".ljust(size - IP_HEADER - ICMP_HEADER, b".")
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    csum = _checksum(head + payload)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, csum, ident, seq) + payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def classify(packet: bytes) -> tuple[str, int, int, str, int | None] | None:
    """A received IP packet -> (kind, ident, seq, source, mtu) for echo replies
    ("reply") and fragmentation-needed errors about our echoes ("frag"); else None."""
    if len(packet) < IP_HEADER + ICMP_HEADER:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src = socket.inet_ntoa(packet[12:16])
    icmp = packet[ihl:]
    if icmp[0] == ICMP_ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", icmp, 4)
        return "reply", ident, seq, src, None
    if icmp[0] == ICMP_UNREACH and icmp[1] == ICMP_FRAG_NEEDED and len(icmp) >= 36:
        mtu = struct.unpack_from("!H", icmp, 6)[0]
        inner = icmp[8:]
        inner_ihl = (inner[0] & 0x0F) * 4
        if len(inner) < inner_ihl + 8 or inner[9] != 1 or inner[inner_ihl] != ICMP_ECHO:
            return None
        ident, seq = struct.unpack_from("!HH", inner, inner_ihl + 4)
        return "frag", ident, seq, src, mtu
    return None


def probe(plan: Plan, pids: dict[str, int], tgts: Iterable[Target],
          timeout: float = TIMEOUT_S) -> list[Observation]:
    """Send each target's two echoes from its source pod's namespace and wait (bounded)
    for their answers. `pids`: container name -> pid."""
    from harness.host.netns import socket_in_netns

    tgts = list(tgts)
    socks: dict[tuple[str, str], socket.socket] = {}  # (pod, family)
    ident = os.getpid() & 0xFFFF
    outcomes: dict[int, Outcome] = {}
    observations = []
    try:
        for t in tgts:
            infra = plan.pod(t.src).infra
            if (t.src, t.family) not in socks and infra in pids:
                if t.family == "ipv6":
                    sock = socket_in_netns(pids[infra], socket.AF_INET6, socket.SOCK_RAW,
                                           socket.IPPROTO_ICMPV6)
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER,
                                    IPV6_PMTUDISC_PROBE)
                else:
                    sock = socket_in_netns(pids[infra], socket.AF_INET, socket.SOCK_RAW,
                                           socket.IPPROTO_ICMP)
                    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
                sock.setblocking(False)
                socks[(t.src, t.family)] = sock
        for t in tgts:
            pair = []
            for size in (t.path_mtu, t.path_mtu + 1):
                seq = len(outcomes) + 1
                out = outcomes[seq] = Outcome(size)
                sock = socks.get((t.src, t.family))
                if sock is None:
                    out.error = f"{t.src} is not running"
                else:
                    packet = (echo6 if t.family == "ipv6" else echo)(ident, seq, size)
                    try:
                        sock.sendto(packet, (t.dst_ip, 0))
                    except OSError as exc:
                        if exc.errno == errno.EMSGSIZE:
                            out.refused = True
                        else:
                            out.error = f"{t.src} could not send: {os.strerror(exc.errno or 0)}"
                pair.append(out)
            observations.append(Observation(t, pair[0], pair[1]))
        _collect(list(socks.values()), ident, outcomes, timeout)
    finally:
        for sock in socks.values():
            sock.close()
    return observations


def _collect(socks: list[socket.socket], ident: int, outcomes: dict[int, Outcome],
             timeout: float) -> None:
    def settled(o: Outcome) -> bool:
        return o.answered or o.refused or o.icmp_from is not None or o.error is not None

    deadline = time.monotonic() + timeout
    while not all(settled(o) for o in outcomes.values()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select(socks, [], [], left)
        for sock in ready:
            while True:
                try:
                    packet, peer = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                got = (classify6(packet, peer[0].split("%")[0])
                       if sock.family == socket.AF_INET6 else classify(packet))
                if got is None or got[1] != ident or got[2] not in outcomes:
                    continue
                what, _, seq, src, mtu = got
                if what == "reply":
                    outcomes[seq].answered = True
                else:
                    outcomes[seq].icmp_from, outcomes[seq].icmp_mtu = src, mtu


# --------------------------------------------------------------------------- verdict


def judge(obs: Observation) -> Result:
    """Pure: did the path carry its MTU, and refuse one byte more as IP says?"""
    t, fits, over = obs.target, obs.fits, obs.over
    big = too_big(t.family)
    df = " with DF" if t.family == "ipv4" else ""  # IPv6: routers never fragment
    expected = {"path_mtu": t.path_mtu, "limit": t.limit.link,
                "over": t.limit.says(t.family)}
    who = t.routers.get(over.icmp_from or "", over.icmp_from)
    observed: dict[str, Any] = {"fits": fits.answered, "over_refused": over.refused,
                                "icmp_from": who, "icmp_mtu": over.icmp_mtu}

    def verdict(ok: bool, detail: str) -> Result:
        return Result(CHECK, t.src, t.dst, "icmp", ok, expected, observed, detail,
                      family=t.family)

    where = f"{t.src} -> {t.dst}"
    if not fits.answered:
        fits_from = t.routers.get(fits.icmp_from or "", fits.icmp_from)
        why = fits.error or ("refused by the sender" if fits.refused else (
            f"{big} (MTU {fits.icmp_mtu}) from {fits_from}" if fits.icmp_from
            else "no answer"))
        return verdict(False, f"{t.path_mtu} bytes{df} did not cross {where}: {why}; the "
                       f"plan's path MTU is {t.path_mtu} (link {t.limit.link})")
    fine = f"{t.path_mtu} bytes{df} crossed {where}"
    lim = t.limit
    if lim.silent:
        if over.icmp_from is None and not over.refused and not over.answered:
            return verdict(False, f"{fine}, but {t.path_mtu + 1} bytes vanished without ICMP: "
                           f"PMTU black hole at link {lim.link} (MTU {lim.mtu}, switched by "
                           f"{lim.node}, which cannot send {big})")
    elif lim.sender:
        if over.refused:
            return verdict(True, f"{fine}; {t.path_mtu + 1} bytes refused by {t.src}'s own "
                           f"{POD_IFACE} (MTU {lim.mtu})")
    elif who == lim.node and over.icmp_mtu == lim.mtu:
        return verdict(True, f"{fine}; {t.path_mtu + 1} bytes got {big} "
                       f"(MTU {lim.mtu}) from {lim.node}: link {lim.link} sets the path MTU")
    got = ("an echo reply" if over.answered else "refused by the sender" if over.refused
           else f"{big} (MTU {over.icmp_mtu}) from {who}" if over.icmp_from
           else "nothing")
    return verdict(False, f"{fine}, but {t.path_mtu + 1} bytes got {got}; expected "
                   f"{lim.says(t.family)}")


def check(plan: Plan, pids: dict[str, int], timeout: float = TIMEOUT_S) -> list[Result]:
    """The mtu check over a running lab (`pids`: container name -> pid)."""
    return [judge(o) for o in probe(plan, pids, targets(plan), timeout)]
