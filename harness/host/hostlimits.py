"""Host limits that every namespace shares, raised when a lab needs more.

The kernel's ARP table is one table for all network namespaces: `gc_thresh3` (1024 by
default) caps the neighbour entries of every pod and node together. A lab of 200 pods
needs several thousand; past the cap the kernel refuses new entries ("neighbor table
overflow") and pods on one bridge stop reaching each other. Kubernetes operators raise
the same sysctls on large nodes.
"""

from __future__ import annotations

from pathlib import Path

from harness.plan import Plan

NEIGH = Path("/proc/sys/net/ipv4/neigh/default")


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


def ensure_neighbour_capacity(plan: Plan, root: Path = NEIGH) -> str | None:
    """Raise gc_thresh2/3 when the lab could overflow them; say what was changed."""
    needed = neighbour_entries(plan) + 256  # room for the host and other labs
    thresh3 = int((root / "gc_thresh3").read_text())
    if needed <= thresh3 // 2:
        return None
    new3 = max(thresh3, 2 * needed)
    (root / "gc_thresh2").write_text(str(needed))
    (root / "gc_thresh3").write_text(str(new3))
    return (f"raised the host's shared ARP table limit net.ipv4.neigh.default.gc_thresh3 "
            f"from {thresh3} to {new3} (this lab may hold {needed - 256} neighbour entries)")
