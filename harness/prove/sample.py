"""`verify --quick`: a spanning sample of a lab, for a smoke test in about a second.

Pure selection over what a full verify would do: every check still runs, and every pair
of nodes it can involve is still crossed, in one direction each way, but by one probe
(one pod standing for its node, one protocol) instead of every pod pair times three
protocols. A datapath broken between two nodes, or on one node, still shows; a rule that
singles out one pod may not — the full verify is the proof, this is the smoke test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

QUICK_PROTO = "udp"  # every probe check can use it (a TCP handshake needs a way back)


class _Target(Protocol):
    check: str
    sender: str
    receiver: str


def node_of(plan: Any, name: str) -> str:
    """The node a pod runs on; a node (or outside host) stands for itself."""
    try:
        return plan.pod(name).node
    except KeyError:
        return name


def spanning(plan: Any, targets: Iterable[_Target]) -> list[Any]:
    """The first target of each (check, sender's node, receiver's node, address family),
    in plan order: pods on one node and pods on two nodes, each node to each pod's node,
    and so on, in every family the lab has."""
    seen: set[tuple[str, str, str, str | None]] = set()
    out = []
    for t in targets:
        key = (t.check, node_of(plan, t.sender), node_of(plan, t.receiver),
               getattr(t, "family", None))
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def spanning_paths(plan: Any, paths: Iterable[Any]) -> list[Any]:
    """Service paths: the first of each (check, client's node, Service port, family)."""
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for p in paths:
        key = (p.check, node_of(plan, p.client), p.target, getattr(p, "family", "ipv4"))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _pod_network_first(plan: Any) -> list[Any]:
    """The pods in plan order, those on the pod network before hostNetwork ones: a
    hostNetwork pod is its node's namespace (node-to-pod and pod-to-node cross it), and
    only a pod on the pod network is masqueraded (the negative control)."""
    return sorted(plan.pods, key=lambda p: bool(p.host_network))


def representatives(plan: Any) -> Sequence[Any]:
    """The first two pods of every node (pod network first): `spanning` picks its targets
    among theirs alone (the first pod of a node stands for it toward others, the second
    is its same-node peer), so targets need not be computed for every pair of a large
    lab."""
    count: dict[str, int] = {}
    out = []
    for pod in _pod_network_first(plan):
        if count.get(pod.node, 0) < 2:
            count[pod.node] = count.get(pod.node, 0) + 1
            out.append(pod)
    return out


def one_pod_per_node(plan: Any) -> Sequence[Any]:
    """The first pod of every node: whom the per-pod checks (identity, intra-pod) ask."""
    first: dict[str, Any] = {}
    for pod in _pod_network_first(plan):
        first.setdefault(pod.node, pod)
    return list(first.values())


def population(plan: Any, checks: Iterable[str]) -> int:
    """How many targets, (check, src, dst, family), a full verify's probe checks among
    `checks` cover: what a sample is drawn from, counted without building them."""
    wanted, pods, shared = set(checks), plan.pods, plan.shared_families
    total = 0
    if "pod-to-pod" in wanted:
        total += sum(len(shared(a.name, b.name)) for a in pods for b in pods if a is not b)
    per_node = sum(len(shared(n.name, p.name)) for n in plan.k8s_nodes for p in pods)
    total += per_node * (("node-to-pod" in wanted) + ("pod-to-node" in wanted))
    if "pod-to-external" in wanted:
        total += sum(len(shared(p.name, h.name)) for h in plan.externals for p in pods)
    return total


def protos(available: Sequence[str]) -> tuple[str, ...]:
    """One protocol: UDP where the target allows it, else its first."""
    return (QUICK_PROTO,) if QUICK_PROTO in available else tuple(available[:1])
