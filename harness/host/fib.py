"""Reading a namespace's forwarding state for the FIB walk (harness.plan.fibwalk): its
main-table routes of every type that forwards or drops, with every next hop of a
multipath route; its addresses, link-local ones too (an OSPFv3 or BGP route's IPv6 next
hop is often the neighbour's fe80:: address); its devices that are down or without
carrier; and whether it forwards each family. Over pyroute2, through harness.host.wiring.

Of several routes to one prefix the kernel uses the lowest metric's: only that one is
kept. A route whose next hop is a nexthop object (FRR's `nhid`) is dumped with its
gateways too while the kernel's nexthop_compat_mode is 1, its default.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from harness.errors import WiringError
from harness.host import wiring
from harness.model.addressing import IPV4, IPV6
from harness.plan.fibwalk import Fabric, Fib, FibRoute, Nexthop

RT_TABLE_MAIN = 254
ROUTE_TYPES = {1: "unicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw"}
IFF_UP = 0x1
FORWARDING = {IPV4: "net.ipv4.ip_forward", IPV6: "net.ipv6.conf.all.forwarding"}


def read(pid: int, name: str) -> Fib:
    """The forwarding state of the namespace of `pid`, named `name`."""
    routes, addresses, down = wiring.with_iproute(pid, "read the FIB", _dump)
    forwards = tuple(f for f, key in FORWARDING.items() if _sysctl(pid, key) == "1")
    return Fib(name, routes, addresses, forwards, down)


def read_all(pids: Mapping[str, int], links: Any = (),
             leaves: Mapping[str, tuple[str, str]] | None = None) -> Fabric:
    """Every namespace of `pids` (name -> pid) read, with the links and leaves given (see
    fibwalk.links_of and leaves_of)."""
    return Fabric({n: read(pid, n) for n, pid in pids.items()}, tuple(links), leaves or {})


def _sysctl(pid: int, key: str) -> str:
    try:
        return wiring.sysctl(pid, key)
    except WiringError:  # IPv6 compiled out, or the namespace has none: not forwarding
        return "0"


def _dump(ipr: Any) -> tuple[tuple[FibRoute, ...], tuple[tuple[str, str], ...], frozenset[str]]:
    names: dict[int, str] = {}
    down: set[str] = set()
    for m in ipr.get_links():
        name = m.get("ifname") or m.get_attr("IFLA_IFNAME")
        names[m["index"]] = name
        if not m["flags"] & IFF_UP or m.get_attr("IFLA_CARRIER") == 0:
            down.add(name)
    addresses = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for m in ipr.get_addr(family=family):
            addresses.append((names.get(m["index"], str(m["index"])),
                              f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"))
    best: dict[str, tuple[int, FibRoute]] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for m in ipr.get_routes(family=family, table=RT_TABLE_MAIN):
            if (m.get_attr("RTA_TABLE") or m["table"]) != RT_TABLE_MAIN:
                continue
            kind = ROUTE_TYPES.get(m["type"])
            if kind is None:  # local, broadcast, multicast: not forwarding decisions
                continue
            dst = m.get_attr("RTA_DST") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
            prefix = f"{dst}/{m['dst_len']}"
            metric = m.get_attr("RTA_PRIORITY") or 0
            if prefix in best and best[prefix][0] <= metric:
                continue
            best[prefix] = (metric, FibRoute(prefix, _nexthops(m, names), kind))
    return tuple(r for _, r in best.values()), tuple(addresses), frozenset(down)


def _nexthops(m: Any, names: dict[int, str]) -> tuple[Nexthop, ...]:
    multipath = m.get_attr("RTA_MULTIPATH")
    if multipath:
        return tuple(Nexthop(_gateway(nh), names.get(nh["oif"])) for nh in multipath)
    oif = m.get_attr("RTA_OIF")
    if oif is None and m.get_attr("RTA_GATEWAY") is None:
        return ()
    return (Nexthop(_gateway(m), names.get(oif) if oif is not None else None),)


def _gateway(m: Any) -> str | None:
    gateway = m.get_attr("RTA_GATEWAY")
    if gateway is None and (via := m.get_attr("RTA_VIA")):  # IPv4 over an IPv6 next hop
        gateway = via.get("addr") if isinstance(via, dict) else None
    return str(gateway) if gateway else None

