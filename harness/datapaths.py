"""The datapath choices of a topology file, as one registry (like harness.kinds).

`cluster.routing` and `cluster.cni` pick how a plan becomes each node's network. Every
value the file format knows is listed here with the class that implements it, named as
"module:Class" and imported only when a lab is described (harness.datapath.select), so
this module stays at the bottom of the import graph and validation can ask it which
values work today. Implementing a value is writing its datapath class and naming it here:
validation then accepts it with no other change.

A routing class and a CNI class are combined by inheritance (harness.datapath.select): a
routing datapath overrides the routing part of harness.datapath.Datapath (routes,
daemons, readiness), a CNI datapath the pod part (pod bridge, per-pod add and delete).
"""

from __future__ import annotations

from dataclasses import dataclass

BASE = "harness.datapath.base:Datapath"  # today's wiring: static routes, podlab's bridge


@dataclass(frozen=True)
class Choice:
    key: str  # the file's key under `cluster:`
    value: str
    impl: str | None  # "module:Class" implementing it; None: not implemented yet
    description: str
    # the image its daemon needs on the nodes that learn pod routes (k8s-nodes, routers),
    # used where the file names none
    node_image: str | None = None


ROUTING: dict[str, Choice] = {c.value: c for c in (
    Choice("routing", "static", BASE, "routes computed by the plan, installed by podlab"),
    Choice("routing", "bgp", "harness.datapath.bgp:BgpDatapath",
           "BIRD on every k8s-node and router, one private AS each, eBGP to every neighbour",
           node_image="podlab/bird"),
    Choice("routing", "fabric", "harness.datapath.fabric:FabricDatapath",
           "the user's routers carry the pod CIDRs; podlab installs no pod route, k8s-nodes "
           "route by default to their first link toward a user's node and may peer with "
           "the user's routers over BGP (cluster.bgp-peers)", node_image="podlab/bird"),
)}

CONFLIST = "conflist"  # what `cni: {conflist: FILE, bin-dir: DIR}` is called here
CNI: dict[str, Choice] = {c.value: c for c in (
    Choice("cni", "podlab", BASE, "podlab's own pod wiring: a veth per pod on bridge cbr0"),
    Choice("cni", "bridge", "harness.datapath.cni:BridgeCni",
           "the reference bridge plugin with host-local IPAM"),
    Choice("cni", "ptp", "harness.datapath.cni:PtpCni",
           "the reference ptp plugin with host-local IPAM"),
    Choice("cni", CONFLIST, "harness.datapath.cni:ConflistCni", "the user's own plugin chain"),
)}

DEFAULT_ROUTING = "static"
DEFAULT_CNI = "podlab"


def cni_value(cni: object) -> str:
    """The registry name of the file's `cni:` (a name, or a conflist mapping)."""
    return cni if isinstance(cni, str) else CONFLIST


def implemented(choices: dict[str, Choice]) -> list[str]:
    return [c.value for c in choices.values() if c.impl]
