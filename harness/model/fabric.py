"""`routing: fabric`, what the file must say: the user's nodes (their routers), each
k8s-node's links to them, and the BGP peerings (Calico's BGPPeer). Pure.

With `routing: fabric` the user's routers carry the pod CIDRs, so the plan cannot invent
the addresses they route to: each k8s-node needs a link to a user's node, and every link
between a k8s-node and a user's node gives both ends' addresses (`ipv4:`, and `ipv6:` in
a cluster with IPv6) — the k8s-node's is podlab's to set, the router's is its default
gateway and what the user's frr.conf holds. A `bgp-peers` entry names a k8s-node (or
none: every k8s-node) and a `peerIP` on a link of that node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from harness.errors import Problem
from harness.model.addressing import FAMILIES, TITLE, family_of
from harness.model.containers import user_nodes
from harness.model.graph import LabGraph
from harness.model.schema import BgpPeer, TopologyFile

FABRIC = "fabric"


def graph_kinds(spec: TopologyFile, kinds: dict[str, str]) -> dict[str, str]:
    """The kinds as the plan's paths see them: with routing: fabric the user's nodes are
    the routers (their own config forwards), so they count as `router` on the graph."""
    if spec.cluster.routing != FABRIC:
        return kinds
    users = user_nodes(spec, kinds)
    return {n: "router" if n in users else k for n, k in kinds.items()}


def peers_of(spec: TopologyFile, node: str) -> tuple[BgpPeer, ...]:
    """The BGPPeers that apply to k8s-node `node`: its own, and those naming no node."""
    return tuple(p for p in spec.cluster.bgp_peers if p.node in (None, node))


def _ends(endpoint: str) -> tuple[str, str]:
    node, _, iface = endpoint.partition(":")
    return node, iface


def fabric_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    cluster = spec.cluster
    if cluster.routing != FABRIC:
        if cluster.bgp_peers:
            yield Problem("cluster.bgp-peers", "bgp-peers are sessions to the user's routers: "
                          "they need routing: fabric (routing: bgp peers podlab's own nodes)")
        yield from _across_users(spec, kinds)
        return
    users = user_nodes(spec, kinds)
    k8s = [n for n, k in kinds.items() if k == "k8s-node"]
    families = tuple(dict.fromkeys(family_of(p) for p in cluster.pod_cidrs
                                   if _parses(p)))
    toward: dict[str, list[int]] = {n: [] for n in k8s}
    for i, link in enumerate(spec.topology.links):
        (a, _), (b, _) = (_ends(e) for e in link.endpoints)
        for near, far in ((a, b), (b, a)):
            if near in toward and far in users:
                toward[near].append(i)
                for family in families:
                    given = link.addresses(family)
                    if not given or not all(given):
                        yield Problem(
                            f"topology.links[{i}]",
                            f"{near} links to the user's node {far}: with routing: fabric "
                            f"both ends need their {TITLE[family]} address ({family}: [..., "
                            f"...]), as {far}'s own config routes to {near} by it")
    for node in k8s:
        if not toward[node]:
            yield Problem(f"topology.nodes.{node}",
                          f"k8s-node {node} has no link to a user's node (a linux node with "
                          "its own image, binds, exec or command): with routing: fabric its "
                          "default route goes to the far end of its first such link")
    yield from _peer_problems(spec, kinds)


def _across_users(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    """routing: static or bgp route only through podlab's nodes: two k8s-nodes joined
    only through the user's nodes (their routers) need routing: fabric."""
    users = user_nodes(spec, kinds)
    if not users or len(kinds) != len(spec.topology.nodes):
        return
    ends = [tuple(_ends(e) for e in lk.endpoints) for lk in spec.topology.links]
    if any(n not in kinds for end in ends for n, _ in end):
        return  # a link to an unknown node: reported elsewhere
    graph = LabGraph.from_links(kinds, ends)  # type: ignore[arg-type]
    k8s = [n for n, k in kinds.items() if k == "k8s-node"]
    for node in k8s[1:]:
        if node not in graph.reachable_hosts(k8s[0]):
            yield Problem("cluster.routing", f"{k8s[0]} and {node} are joined only through "
                          f"the user's nodes ({', '.join(sorted(users))}), whose routes are "
                          f"their own: routing: {spec.cluster.routing} cannot route across "
                          "them; routing: fabric lets them carry the pod CIDRs")
            return


def _parses(prefix: str) -> bool:
    try:
        ipaddress.ip_network(prefix)
    except ValueError:
        return False
    return True


def _peer_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    subnets: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for link in spec.topology.links:
        for family in FAMILIES:
            for (node, _), text in zip((_ends(e) for e in link.endpoints),
                                       link.addresses(family) or (), strict=False):
                if text and _parses(text.split("/")[0]):
                    try:
                        subnets.setdefault(node, []).append(
                            ipaddress.ip_interface(text).network)
                    except ValueError:
                        continue
    k8s = [n for n, k in kinds.items() if k == "k8s-node"]
    for i, peer in enumerate(spec.cluster.bgp_peers):
        path = f"cluster.bgp-peers[{i}]"
        if peer.node is not None and peer.node not in k8s:
            yield Problem(f"{path}.node", f"{peer.node!r} is not a k8s-node of this lab; a "
                          "BGPPeer's node is the k8s-node that peers")
            continue
        try:
            ip = ipaddress.ip_address(peer.peer_ip)
        except ValueError:
            yield Problem(f"{path}.peerIP", f"{peer.peer_ip!r} is not an IP address (a port "
                          "is not supported: podlab's BIRD peers on port 179)")
            continue
        for node in [peer.node] if peer.node else k8s:
            if not any(ip in net for net in subnets.get(node, ())):
                yield Problem(f"{path}.peerIP", f"{ip} is on no link of {node}: podlab's "
                              "nodes peer with a router they share a link with")
