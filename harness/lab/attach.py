"""Find the network namespace of one node or pod of a deployed lab (for scapy, capture).

A pod's namespace is held by its infra (pause) container; a node's by its own container.
The plan gives the names and the default interface (a pod's eth0, a node's first lab
interface); the Docker labels give the running container and its host pid.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import InputError, LabNotFoundError
from harness.plan import POD_IFACE, Plan


@dataclass(frozen=True)
class NsTarget:
    lab: str
    kind: str  # "node" or "pod"
    name: str
    container: str  # the container that holds the namespace
    pid: int
    iface: str | None  # default interface: a pod's eth0, a node's first lab interface
    ip: str | None  # a pod's IP (None for a node)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} of lab {self.lab}"


def choose(plan: Plan, node: str | None, pod: str | None) -> tuple[str, str, str | None,
                                                                     str | None]:
    """(kind, container, default iface, ip) of the named node or pod; InputError if unknown."""
    if (node is None) == (pod is None):
        raise InputError("give exactly one of --node N / --pod P")
    if node is not None:
        nodes = {n.name: n for n in plan.nodes}
        if node not in nodes:
            raise InputError(f"no node {node!r} in {plan.topo_path or plan.lab} "
                             f"(nodes: {', '.join(nodes) or 'none'})")
        n = nodes[node]
        iface = n.interfaces[0].name if n.interfaces else None
        return "node", n.container, iface, None
    pods = {p.name: p for p in plan.pods}
    if pod not in pods:
        raise InputError(f"no pod {pod!r} in {plan.topo_path or plan.lab} "
                         f"(pods: {', '.join(pods) or 'none'})")
    p = pods[str(pod)]
    return "pod", p.infra, POD_IFACE, p.ip


def resolve(plan: Plan, node: str | None = None, pod: str | None = None) -> NsTarget:
    """The running namespace of `node` or `pod` in the deployed lab of `plan`.

    Raises InputError for a name the plan does not have, LabNotFoundError when the lab
    (or that container) is not running.
    """
    from harness.lab import running

    kind, container, iface, ip = choose(plan, node, pod)
    try:
        pids = running.pids(plan.lab)
    except LabNotFoundError:
        raise LabNotFoundError(f"lab {plan.lab!r} is not deployed; run podlab deploy -t "
                               f"{plan.topo_path or 'FILE'} first") from None
    if container not in pids:
        raise LabNotFoundError(f"container {container} of lab {plan.lab!r} is not running "
                               f"(podlab inspect --name {plan.lab})")
    return NsTarget(plan.lab, kind, str(node if node is not None else pod), container,
                    pids[container], iface, ip)
