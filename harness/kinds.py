"""The node kinds, as one registry: what each kind does, so no module compares kind names.

A kind says whether it forwards IP, hosts pods, learns routes to the pod CIDRs, is an L2
switch, sits outside the cluster, and how `graph` draws it. Adding a kind is adding one
entry here (and its `Literal` in the file schema, which pydantic needs spelled out).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeKind:
    name: str
    forwards: bool  # ip_forward=1: a router on the plan's paths
    hosts_pods: bool  # gets a pod CIDR, a pod bridge, and the pods of the file
    pod_routes: bool  # learns routes to the pod CIDRs (outside hosts do not)
    is_switch: bool  # one L2 bridge; no address, no routes
    external: bool  # outside the cluster: the target of pod-to-external
    mermaid: tuple[str, str]  # mermaid shape brackets
    dot: str  # graphviz shape
    description: str


K8S_NODE = NodeKind("k8s-node", forwards=True, hosts_pods=True, pod_routes=True,
                    is_switch=False, external=False, mermaid=("[", "]"), dot="box",
                    description="pod bridge cbr0, forwards, routes to every pod CIDR")
ROUTER = NodeKind("router", forwards=True, hosts_pods=False, pod_routes=True,
                  is_switch=False, external=False, mermaid=("([", "])"), dot="ellipse",
                  description="forwards, routes to every pod CIDR and segment")
SWITCH = NodeKind("switch", forwards=False, hosts_pods=False, pod_routes=False,
                  is_switch=True, external=False, mermaid=("{{", "}}"), dot="hexagon",
                  description="one L2 bridge in its own container")
LINUX = NodeKind("linux", forwards=False, hosts_pods=False, pod_routes=False,
                 is_switch=False, external=True, mermaid=("[", "]"), dot="box",
                 description="outside host: routes to the underlay, none to pods")

KINDS: dict[str, NodeKind] = {k.name: k for k in (K8S_NODE, ROUTER, SWITCH, LINUX)}
NAMES: tuple[str, ...] = tuple(KINDS)


def kind(name: str) -> NodeKind:
    """The kind called `name`; KeyError for a name validation would have refused."""
    return KINDS[name]
