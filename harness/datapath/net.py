"""The description of a lab's network: what each namespace looks like. Pure data.

A datapath computes one `LabNet` from the plan (harness.datapath.Datapath.describe);
deploy, fault recovery and the containerlab export all read it, so they cannot disagree.
Every field is immutable (tuples of pairs, no dicts), and nothing here does I/O.

Order of application inside one namespace (what harness.host.wiring.configure does, and
the order export writes its commands in): bridges, ports, addresses, links up, routes,
then NAT (masquerade, then the rulesets: kube-proxy's and portmap's), then daemons.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from harness.datapath.iptables import Ruleset

Pair = tuple[str, str]
Route = tuple[str, ...]  # (dst, via) or (dst, via, dev); dst a CIDR or "default"


@dataclass(frozen=True)
class Settings:
    """What a container is created with: per-namespace sysctls and capabilities."""

    sysctls: tuple[Pair, ...] = ()
    caps: tuple[str, ...] = ()

    def sysctl_map(self) -> dict[str, str]:
        return dict(self.sysctls)


@dataclass(frozen=True)
class Masquerade:
    """A masquerade: traffic from `source` (None: from anywhere) to anything but `exempt`
    is SNATed to the egress address (iptables chain `chain`, jumped to from nat
    POSTROUTING). `not_local`, `random_fully` and `agent` spell ip-masq-agent's own
    rules: only non-local destinations jump, MASQUERADE --random-fully, its comments
    (`to_ports`: its --to-ports flag, which podlab's agent runs without). `family` (4 or
    6) says which table a rule without a source goes to."""

    source: str | None
    exempt: tuple[str, ...]
    chain: str
    not_local: bool = False
    to_ports: str | None = None
    random_fully: bool = False
    family: int | None = None
    agent: bool = False

    @property
    def how(self) -> dict[str, bool | str | int | None]:
        return {"not_local": self.not_local, "to_ports": self.to_ports,
                "random_fully": self.random_fully, "family": self.family,
                "agent": self.agent}


@dataclass(frozen=True)
class Daemon:
    """A program a datapath keeps running in a node's namespace (a BGP speaker, say).

    `files` are (path, content) it needs written first. Today's datapath has none; one
    that has them starts them in its `apply_node`.
    """

    name: str
    argv: tuple[str, ...]
    files: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class NodeNet:
    """One node's namespace."""

    name: str
    kind: str
    container: Settings
    bridges: tuple[str, ...] = ()
    ports: tuple[Pair, ...] = ()  # (iface, bridge): the node's own; pods' are PodNet.node_port
    addresses: tuple[Pair, ...] = ()  # (iface, a.b.c.d/len)
    up: tuple[str, ...] = ()  # links nothing above brings up (a router's unaddressed port)
    routes: tuple[Route, ...] = ()
    nat: tuple[Masquerade, ...] = ()
    # what other programs write in its iptables: kube-proxy's Services, portmap's hostPorts
    rulesets: tuple[Ruleset, ...] = ()
    daemons: tuple[Daemon, ...] = ()
    # deploy returns once the kernel has a route to each of these (routes a daemon learns)
    ready_routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodNet:
    """One pod's namespace (its infra container's) and its attachment to its node."""

    name: str
    node: str
    infra: Settings  # the pause container, which owns the pod's namespace
    containers: Settings  # the pod's own containers, which join that namespace
    veth: Pair | None  # (node end, pod end) deploy creates; None: pod_added makes its own
    node_port: Pair | None  # (node end, bridge) the node end joins when the pod is added
    addresses: tuple[Pair, ...] = ()
    routes: tuple[Route, ...] = ()
    # in its node's namespace: no veth, no address, no CNI call (Kubernetes calls none)
    host_network: bool = False
    # its node port may reflect frames (kubelet's hairpin-veth): it reaches itself through
    # a Service
    hairpin: bool = False


@dataclass(frozen=True)
class Convergence:
    """What a datapath says before verify: the plan to expect now (routes a daemon moved
    after a fault follow the paths that are left), how long the routes took to settle,
    whether they did within the bound, and a sentence for the report."""

    plan: Any  # harness.plan.Plan (not imported: this module stays pure data)
    seconds: float = 0.0
    settled: bool = True
    note: str = ""


@dataclass(frozen=True)
class LabNet:
    """Every namespace of a lab, in plan order."""

    datapath: str  # e.g. "routing: static, cni: podlab"
    nodes: tuple[NodeNet, ...]
    pods: tuple[PodNet, ...]

    def node(self, name: str) -> NodeNet:
        return self._nodes[name]

    def pod(self, name: str) -> PodNet:
        return self._pods[name]

    def pods_of(self, node: str) -> tuple[PodNet, ...]:
        return self._pods_of.get(node, ())

    @cached_property
    def _nodes(self) -> dict[str, NodeNet]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def _pods(self) -> dict[str, PodNet]:
        return {p.name: p for p in self.pods}

    @cached_property
    def _pods_of(self) -> dict[str, tuple[PodNet, ...]]:
        out: dict[str, list[PodNet]] = {}
        for pod in self.pods:
            out.setdefault(pod.node, []).append(pod)
        return {n: tuple(ps) for n, ps in out.items()}
