"""Why a probe was lost, when the answer is in a routing table: "no route to <cidr> on
<node>". Pure, given each node's main table; verify reads the tables once (after the
probes) and prefixes the diagnosis of every lost probe whose path has a node without a
route toward the destination, or toward the source for the reply.

A route is missing on a node of the planned path (the sender's node first, the
destination's node last, which holds the destination as connected) when no prefix of its
table, the default route included, covers the address. What is named is the lab's prefix
of that address: a node's pod CIDR or a segment's subnet, as the plan has them. Either
family: a table's "default" covers both unless written per family (0.0.0.0/0, ::/0).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from harness.plan import Plan

Table = Sequence[str]  # the destinations of a main table: CIDRs and "default"


def covers(table: Table, ip: str) -> bool:
    addr = ipaddress.ip_address(ip)  # in a network of the other family: never
    return any(dst == "default" or addr in ipaddress.ip_network(dst, strict=False)
               for dst in table)


def lab_prefix(plan: Plan, ip: str) -> str:
    """The plan's prefix an address is in (pod CIDR or segment subnet, of its family),
    else the host prefix (/32, /128)."""
    addr = ipaddress.ip_address(ip)
    for seg in plan.segments:
        for subnet in seg.subnets:
            if addr in ipaddress.ip_network(subnet):
                return subnet
    return f"{ip}/{addr.max_prefixlen}"


def missing_route(path: Sequence[str], ip: str, tables: Mapping[str, Table]
                  ) -> str | None:
    """The first node of `path` (but the last) whose table does not cover `ip`; nodes
    without a table (not a node, not running) are skipped."""
    for node in path[:-1]:
        table = tables.get(node)
        if table is not None and not covers(table, ip):
            return node
    return None


def diagnose(plan: Plan, path: Sequence[str], dst_ip: str, src_ip: str | None,
             tables: Mapping[str, Table]) -> str | None:
    """"no route to <cidr> on <node>" for the request (along `path`), else for the reply
    (back along it to `src_ip`); None when every node on the way has a route."""
    node = missing_route(path, dst_ip, tables)
    if node is not None:
        return f"no route to {lab_prefix(plan, dst_ip)} on {node}"
    if src_ip:
        node = missing_route(tuple(reversed(path)), src_ip, tables)
        if node is not None:
            return f"no route to {lab_prefix(plan, src_ip)} on {node} (for the reply)"
    return None
