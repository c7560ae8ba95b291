"""Stale UDP conntrack entries, as kube-proxy and portmap clear them. Pure.

A UDP "connection" has no end: once conntrack has DNATed a flow to an endpoint, every later
datagram of that 5-tuple follows the entry, even after the endpoint went away or moved. So
kube-proxy, after a sync that removed endpoints, deletes the UDP entries toward a
Service (its ClusterIP and port, its node port) whose reply comes from an endpoint that is
no longer there (conntrack.CleanStaleEntries: ClearEntriesForNAT / ClearEntriesForPortNAT),
and those to a ClusterIP that had no endpoint (never DNATed: their reply would come from
the ClusterIP itself); portmap does the same for a UDP hostPort at each ADD
(deletePortmapStaleConnections).

Here each owner lists what it tracks as `UdpTarget`s (on its Ruleset): a destination
(`dst`, or "" for a node port: any of the node's addresses), a port, and the endpoints
current now. An entry is stale when it matches a target and its reply source is not among
them; for a port without `dst`, only entries this node NATed count (a flow merely
forwarded through to another node's port of that number is not the node's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class UdpTarget:
    dst: str  # "" : any local address (a node port, a hostPort)
    dport: int
    endpoints: frozenset[str]  # the reply sources that are current


class FlowLike(Protocol):
    proto: str
    orig: tuple[str, str, int, int]
    reply: tuple[str, str, int, int]
    nat: bool


def stale(flows: Iterable[FlowLike], targets: Sequence[UdpTarget]) -> list[FlowLike]:
    """The UDP entries of `flows` that point at an endpoint no longer in `targets`."""
    out = []
    for f in flows:
        if f.proto.lower() != "udp":  # ctnetlink names it UDP
            continue
        _, dst, _, dport = f.orig
        source = f.reply[0]
        for t in targets:
            if t.dport != dport or (t.dst and t.dst != dst) or (not t.dst and not f.nat):
                continue
            if source not in t.endpoints:
                out.append(f)
            break
    return out
