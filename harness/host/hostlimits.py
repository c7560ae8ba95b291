"""Host limits that every namespace shares, raised when a lab needs more.

The kernel's ARP table is one table for all network namespaces: `gc_thresh3` (1024 by
default) caps the neighbour entries of every pod and node together. A lab of 200 pods
needs several thousand; past the cap the kernel refuses new entries ("neighbor table
overflow") and pods on one bridge stop reaching each other. Kubernetes operators raise
the same sysctls on large nodes. IPv6 neighbour discovery has its own table, as shared,
with the same limits under net.ipv6.neigh: a dual-stack lab needs both raised.
"""

from __future__ import annotations

from pathlib import Path

from harness.plan import Plan

NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
NEIGH6 = Path("/proc/sys/net/ipv6/neigh/default")
MCAST_PER_LINK = 4  # IPv6 keeps NOARP entries of the multicast groups each link talks to


def neighbour_entries(plan: Plan) -> int:
    """Upper bound of ARP entries the lab can hold: on each L2 segment of k members,
    each may learn the other k-1 (a node's pod bridge counts the node and its pods)."""
    total = 0
    for seg in plan.segments:
        k = len(seg.members) if seg.kind != "pods" else 0
        total += k * (k - 1)
    for node in plan.k8s_nodes:
        k = 1 + sum(p.node == node.name for p in plan.pods)
        total += k * (k - 1)
    return total


def ipv6_neighbour_entries(plan: Plan) -> int:
    """The same for IPv6 (0 without IPv6), with each link's multicast entries."""
    if "ipv6" not in plan.families:
        return 0
    links = sum(len(n.interfaces) for n in plan.nodes) + 2 * len(plan.pods)
    return neighbour_entries(plan) + MCAST_PER_LINK * links


def ensure_neighbour_capacity(plan: Plan, root: Path = NEIGH,
                              root6: Path = NEIGH6) -> str | None:
    """Raise gc_thresh2/3 (of each family the lab has) when the lab could overflow them;
    say what was changed."""
    said = [msg for entries, where, key in (
        (neighbour_entries(plan) if "ipv4" in plan.families else 0, root, "ipv4"),
        (ipv6_neighbour_entries(plan), root6, "ipv6"))
        if entries and (msg := _raise(entries, where, key))]
    return "; ".join(said) or None


def _raise(entries: int, root: Path, key: str) -> str | None:
    needed = entries + 256  # room for the host and other labs
    thresh3 = int((root / "gc_thresh3").read_text())
    if needed <= thresh3 // 2:
        return None
    new3 = max(thresh3, 2 * needed)
    (root / "gc_thresh2").write_text(str(needed))
    (root / "gc_thresh3").write_text(str(new3))
    table = "IPv6 neighbour" if key == "ipv6" else "ARP"
    return (f"raised the host's shared {table} table limit net.{key}.neigh.default.gc_thresh3 "
            f"from {thresh3} to {new3} (this lab may hold {entries} neighbour entries)")
