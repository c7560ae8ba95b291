"""Walking the forwarding tables (FIB) of a fabric podlab does not own, as the kernel
forwards: from one namespace toward one address, hop by hop, by longest-prefix match.
Pure, no I/O: harness.host.fib reads the tables, this walks them, and a unit test can
write them by hand.

What a walk knows:
- each walked namespace's main table: per destination prefix, its type (`unicast`, or one
  that drops: `blackhole`, `unreachable`, `prohibit`, `throw`) and its next hops, each a
  gateway (None on a connected route: the destination itself is the neighbour) and the
  device it leaves by; the addresses the namespace holds (the packet is delivered there);
  the families it forwards (ip_forward); its devices that are down;
- which devices share a link or a switch segment: a next hop is reached only through the
  device its route names, at a namespace that holds the next hop's address on that link;
- leaves: addresses of namespaces whose tables are not walked (pods), each with the node
  it hangs off; a leaf is reached over that node's connected route, and only there.

A walk ends delivered (the namespace holding the address), or stopped, which it
classifies: a *blackhole* (no route, a route that drops, a next hop nobody holds on that
link, a device that is down, a namespace that does not forward) names the namespace where
the packet died and why; a *loop* (the packet comes back to a namespace it crossed: the
tables only look at the destination, so it would circle until its TTL runs out) names
the circle. `asymmetry` compares a request's walk with its reply's.

ECMP: a route with several next hops sends each flow one way, by a hash the walk cannot
predict; so every next hop is walked. The walk is delivered only when every branch is,
and its TTL is known only when every branch crosses as many forwarding namespaces: a
multipath whose branches differ in length stops as `unequal-ecmp`, since no TTL can be
expected of it. The paths are all kept (`Walk.paths`), the lowest gateway's first.

Not modelled: policy routing (`ip rule`, other tables), the source address's part in a
route choice, netfilter (a DNAT changes the destination: the checks see those), the
route metric's order among routes to one prefix (the reader keeps the preferred one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from harness.model.addressing import FAMILIES, IPV6, TITLE, Family, family_of
from harness.plan.model import Plan

UNICAST = "unicast"
DROPS = ("blackhole", "unreachable", "prohibit", "throw")
MAX_BRANCHES = 64  # ECMP paths followed per walk: a fabric of equal paths multiplies them

End = tuple[str, str]  # (namespace, device)


@dataclass(frozen=True, order=True)
class Nexthop:
    gateway: str | None  # None: a connected route, the destination is on the link
    device: str | None


@dataclass(frozen=True)
class FibRoute:
    dst: str  # a prefix; the default route is 0.0.0.0/0 or ::/0
    nexthops: tuple[Nexthop, ...] = ()
    type: str = UNICAST

    @cached_property
    def net(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.dst, strict=False)

    def __str__(self) -> str:
        via = ", ".join(f"via {h.gateway} dev {h.device}" if h.gateway else f"dev {h.device}"
                        for h in self.nexthops)
        return f"{'' if self.type == UNICAST else self.type + ' '}{self.dst}" + (
            f" {via}" if via else "")


@dataclass(frozen=True)
class Fib:
    """One namespace's forwarding state."""

    name: str
    routes: tuple[FibRoute, ...]
    addresses: tuple[tuple[str, str], ...] = ()  # (device, address/len)
    forwards: tuple[Family, ...] = FAMILIES
    down: frozenset[str] = frozenset()  # devices not up, or without carrier

    def lookup(self, ip: str) -> FibRoute | None:
        """The longest-prefix match for `ip` among the routes of its family."""
        addr = ipaddress.ip_address(ip)
        best: FibRoute | None = None
        for route in self.routes:
            net = route.net
            if net.version == addr.version and addr in net and (
                    best is None or net.prefixlen > best.net.prefixlen):
                best = route
        return best

    @cached_property
    def held(self) -> frozenset[str]:
        return frozenset(str(ipaddress.ip_interface(a).ip) for _, a in self.addresses)

    def holds(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return str(addr) in self.held or addr.is_loopback

    def device_of(self, ip: str) -> str | None:
        return next((d for d, a in self.addresses
                     if str(ipaddress.ip_interface(a).ip) == str(ipaddress.ip_address(ip))),
                    None)


@dataclass(frozen=True)
class Fabric:
    """Every walked namespace's table, the links between their devices, and the leaves."""

    fibs: Mapping[str, Fib]
    links: tuple[frozenset[End], ...] = ()  # the devices each link or segment joins
    leaves: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # ip -> (ns, node)

    @cached_property
    def _peers(self) -> dict[End, frozenset[End]]:
        out: dict[End, set[End]] = {}
        for link in self.links:
            for end in link:
                out.setdefault(end, set()).update(link - {end})
        return {end: frozenset(peers) for end, peers in out.items()}

    def neighbour(self, end: End, ip: str) -> str | None:
        """The namespace holding `ip` on the link of `end` (both devices up), else None."""
        for ns, dev in sorted(self._peers.get(end, ())):
            fib = self.fibs.get(ns)
            if fib and dev not in fib.down and fib.device_of(ip) == dev:
                return ns
        return None


@dataclass(frozen=True)
class Hop:
    node: str
    device: str | None = None  # the device it sends out of; None where the walk ends
    leaf: bool = False  # a namespace whose table is not walked (a pod)


@dataclass(frozen=True)
class Stop:
    """Where and why a walk did not deliver."""

    kind: str  # "blackhole", "loop" or "unequal-ecmp"
    node: str  # where the packet died (a loop: where it came back)
    reason: str
    hops: tuple[Hop, ...] = ()  # the way up to there

    def __str__(self) -> str:
        way = " > ".join(h.node for h in self.hops)
        return f"{self.kind} at {self.node}: {self.reason}" + (f" (after {way})" if way else "")


@dataclass(frozen=True)
class Walk:
    src: str
    dst_ip: str
    paths: tuple[tuple[Hop, ...], ...]  # every way the tables allow, delivered ones
    stop: Stop | None = None

    @property
    def ok(self) -> bool:
        return self.stop is None and bool(self.paths)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The namespaces of the first path, the sender first, the holder last."""
        return tuple(h.node for h in self.paths[0]) if self.paths else ()

    @property
    def family(self) -> Family:
        return family_of(self.dst_ip)

    def __str__(self) -> str:
        if self.stop:
            return str(self.stop)
        shown = " | ".join(" > ".join(h.node for h in p) for p in self.paths)
        return f"{self.src} to {self.dst_ip}: {shown}"


def walk(fabric: Fabric, src: str, dst_ip: str) -> Walk:
    """Every way a packet from namespace `src` to `dst_ip` goes by the tables."""
    family = family_of(dst_ip)
    target = str(ipaddress.ip_address(dst_ip))
    paths: list[tuple[Hop, ...]] = []
    stops: list[Stop] = []

    def blackhole(node: str, trail: tuple[Hop, ...], reason: str) -> None:
        stops.append(Stop("blackhole", node, reason, trail))

    def step(node: str, trail: tuple[Hop, ...]) -> None:
        if len(paths) + len(stops) >= MAX_BRANCHES:
            return
        fib = fabric.fibs[node]
        if fib.holds(target):
            paths.append((*trail, Hop(node)))
            return
        crossed = [h.node for h in trail]
        if node in crossed:
            circle = [*crossed[crossed.index(node):], node]
            stops.append(Stop("loop", node, f"the packet to {target} comes back to {node}: "
                                            f"{' > '.join(circle)}", trail))
            return
        if trail and family not in fib.forwards:
            blackhole(node, trail, f"{node} does not forward {TITLE[family]} "
                                   f"({'IPv6 forwarding' if family == IPV6 else 'ip_forward'}"
                                   " is 0)")
            return
        route = fib.lookup(target)
        if route is None:
            blackhole(node, trail, f"{node} has no route to {target}")
            return
        if route.type != UNICAST:
            blackhole(node, trail, f"{node} drops it: {route}")
            return
        if not route.nexthops:
            blackhole(node, trail, f"{node}'s route {route.dst} has no next hop")
            return
        for nh in sorted(route.nexthops, key=_hop_order):
            here = (*trail, Hop(node, nh.device))
            if nh.device is None or nh.device in fib.down:
                blackhole(node, trail, f"{node}'s route {route} leaves by "
                                       f"{nh.device or 'no device'}, which is down")
                continue
            hop_ip = nh.gateway or target
            leaf = fabric.leaves.get(hop_ip)
            if leaf is not None and leaf[1] == node and nh.gateway is None:
                if hop_ip == target:
                    paths.append((*here, Hop(leaf[0], leaf=True)))
                else:
                    blackhole(leaf[0], here, f"{leaf[0]} does not forward")
                continue
            nxt = fabric.neighbour((node, nh.device), hop_ip)
            if nxt is None:
                blackhole(node, trail, f"{node}'s route {route}: nothing holds {hop_ip} on "
                                       f"the link of {nh.device}")
                continue
            step(nxt, here)

    step(src, ())
    unique = tuple(dict.fromkeys(paths))
    stop = stops[0] if stops else None
    if stop is None and len({_forwarders(p) for p in unique}) > 1:
        shown = "; ".join(f"{' > '.join(h.node for h in p)} ({_forwarders(p)} forwarding)"
                          for p in unique)
        stop = Stop("unequal-ecmp", src, f"the multipath routes to {target} take branches "
                                         f"of different lengths, so no TTL can be expected: "
                                         f"{shown}")
    return Walk(src, target, unique, stop)


def _hop_order(nh: Nexthop) -> tuple[int, int, str]:
    if nh.gateway is None:
        return (0, 0, nh.device or "")
    return (1, int(ipaddress.ip_address(nh.gateway)), nh.device or "")


def _forwarders(path: tuple[Hop, ...]) -> int:
    """Namespaces that forward the packet: every one but the first and the last."""
    return max(len(path) - 2, 0)


def asymmetry(forward: Walk, back: Walk) -> str | None:
    """A sentence when the reply (`back`, walked from the request's destination to its
    source) does not retrace the request's namespaces in reverse; None when it does, or
    when either walk did not deliver. Leaves (pods) are left out of the comparison: a
    request's walk ends at its pod and the reply's starts at that pod's node."""
    if not (forward.ok and back.ok):
        return None
    there = {_tabled(p) for p in forward.paths}
    again = {tuple(reversed(_tabled(p))) for p in back.paths}
    if there == again:
        return None
    fwd = " | ".join(" > ".join(p) for p in sorted(there))
    rev = " | ".join(" > ".join(reversed(p)) for p in sorted(again))
    return f"asymmetric return: the request goes {fwd}, the reply comes back {rev}"


def _tabled(path: tuple[Hop, ...]) -> tuple[str, ...]:
    return tuple(h.node for h in path if not h.leaf)


def links_of(plan: Plan) -> tuple[frozenset[End], ...]:
    """The devices each link or switch segment of the plan joins (podlab wired them)."""
    return tuple(frozenset((n, i) for n, i, _ in s.members)
                 for s in plan.segments if s.kind != "pods")


def leaves_of(plan: Plan) -> dict[str, tuple[str, str]]:
    """Every pod address (not hostNetwork: those are their node's) -> (pod, its node)."""
    return {ip: (p.name, p.node) for p in plan.pods if not p.host_network for ip in p.ips}
