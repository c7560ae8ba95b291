"""What a plan is: every node, pod, link and segment with its names and addresses (each
family's), the routes, and what each check expects on the wire (`Plan`'s expectations:
addresses, NAT, TTL drops over the shortest paths). Pure, no I/O. harness.plan.build
makes one from a topology.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from harness import datapaths
from harness.kinds import kind
from harness.model.addressing import IPV4, IPV6, Family, family_of, of_family
from harness.model.graph import LabGraph
from harness.model.schema import Netem
from harness.plan.services import (
    HostPortPlan,
    ServicePlan,
    known_only,
    readdressed,
    services_dict,
)
from harness.plan.usernodes import MgmtPlan, UserRun

POD_BRIDGE = "cbr0"
SWITCH_BRIDGE = "br0"
POD_IFACE = "eth0"
HOST_PREFIX = {IPV4: 32, IPV6: 128}
ASSIGNED_BY_CNI = "assigned by CNI"


def bare_ip(cidr: str) -> str:
    """An address without its prefix length: "10.244.0.2/24" -> "10.244.0.2"."""
    return cidr.split("/")[0]


@dataclass(frozen=True)
class Route:
    dst: str  # a.b.c.d/len or x::/len
    via: str  # next-hop address, of dst's family

    @property
    def family(self) -> Family:
        return family_of(self.dst)


@dataclass(frozen=True)
class Interface:
    name: str
    segment: str
    address: str | None  # the primary family's a.b.c.d/len; None for a switch port
    peer: str  # "node:iface"
    addresses: tuple[str, ...] = ()  # every family's address/len, in the cluster's order

    def __post_init__(self) -> None:
        if self.address and not self.addresses:
            object.__setattr__(self, "addresses", (self.address,))

    def address_of(self, family: Family) -> str | None:
        return of_family(self.addresses, family)


@dataclass(frozen=True)
class NodePlan:
    name: str
    kind: str
    container: str
    image: str
    labels: dict[str, str]
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...]  # every family's
    pod_cidr: str | None = None  # the primary family's
    gateway: str | None = None  # cbr0 address, a.b.c.d/len (primary family)
    bridge: str | None = None  # cbr0 on a k8s-node, br0 on a switch
    masquerade_exempt: tuple[str, ...] = ()  # every family's; empty: no SNAT on this node
    pod_cidrs: tuple[str, ...] = ()  # every family's, in the cluster's order
    gateways: tuple[str, ...] = ()  # cbr0's address/len in every family
    run: UserRun | None = None  # the user's node: how it runs; podlab configures no address
    netns_of: str | None = None  # a bridge inside that node's namespace (no container)

    @property
    def configured(self) -> bool:
        """podlab configures this node's addresses and routes (not the user's node)."""
        return self.run is None

    def __post_init__(self) -> None:
        if self.pod_cidr and not self.pod_cidrs:
            object.__setattr__(self, "pod_cidrs", (self.pod_cidr,))
        if self.gateway and not self.gateways:
            object.__setattr__(self, "gateways", (self.gateway,))

    @property
    def forwards(self) -> bool:
        return kind(self.kind).forwards

    @property
    def address(self) -> str | None:
        """The node's own address: that of its first addressed interface."""
        for iface in self.interfaces:
            if iface.address:
                return bare_ip(iface.address)
        return bare_ip(self.gateway) if self.gateway else None

    def address_of(self, family: Family) -> str | None:
        """The node's own address in `family`: its first addressed interface's."""
        for iface in self.interfaces:
            if (found := iface.address_of(family)) is not None:
                return bare_ip(found)
        gateway = self.gateway_of(family)
        return bare_ip(gateway) if gateway else None

    @property
    def own_addresses(self) -> tuple[str, ...]:
        """Every address the node holds (interfaces, then cbr0), without prefix lengths."""
        return tuple(bare_ip(a) for i in self.interfaces for a in i.addresses) + tuple(
            bare_ip(g) for g in self.gateways)

    @cached_property
    def families(self) -> tuple[Family, ...]:
        return tuple(dict.fromkeys(family_of(a) for a in self.own_addresses))

    def address_on(self, segment: str, family: Family | None = None) -> str | None:
        for iface in self.interfaces:
            if iface.segment == segment:
                found = iface.address if family is None else iface.address_of(family)
                if found:
                    return bare_ip(found)
        return None

    def pod_cidr_of(self, family: Family) -> str | None:
        return of_family(self.pod_cidrs, family)

    def gateway_of(self, family: Family) -> str | None:
        return of_family(self.gateways, family)

    def masquerade_exempt_of(self, family: Family) -> tuple[str, ...]:
        return tuple(d for d in self.masquerade_exempt if family_of(d) == family)

    def routes_of(self, family: Family) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.family == family)


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    container: str  # Docker container name
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: dict[str, str]


@dataclass(frozen=True)
class PodPlan:
    name: str
    node: str
    ip: str  # the primary family's
    prefixlen: int
    gateway: str
    infra: str  # Docker container name of the infra (pause) container
    node_iface: str  # the node's end of the pod's veth, enslaved to cbr0
    containers: tuple[ContainerPlan, ...]
    labels: dict[str, str]
    # shares its node's namespace: `ip` is the node's address; no gateway, no veth of its own
    host_network: bool = False
    cidrs: tuple[str, ...] = ()  # ip/len in every family, in the cluster's order
    gateways: tuple[str, ...] = ()  # the gateway (cbr0's address) in every family

    def __post_init__(self) -> None:
        if not self.cidrs and self.ip:
            object.__setattr__(self, "cidrs", (f"{self.ip}/{self.prefixlen}",))
        if not self.gateways and self.gateway:
            object.__setattr__(self, "gateways", (self.gateway,))

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(bare_ip(c) for c in self.cidrs)

    @cached_property  # asked per pair and family: 132,000 times in a 200-pod verify
    def families(self) -> tuple[Family, ...]:
        return tuple(family_of(c) for c in self.cidrs)

    @cached_property
    def _ip_by_family(self) -> dict[Family, str]:
        """The first address of each family in `cidrs`."""
        out: dict[Family, str] = {}
        for cidr in self.cidrs:
            out.setdefault(family_of(cidr), bare_ip(cidr))
        return out

    def ip_of(self, family: Family) -> str | None:
        return self._ip_by_family.get(family)

    def cidr_of(self, family: Family) -> str | None:
        return of_family(self.cidrs, family)

    def gateway_of(self, family: Family) -> str | None:
        return of_family(self.gateways, family)


@dataclass(frozen=True)
class LinkPlan:
    a: tuple[str, str]
    b: tuple[str, str]
    segment: str
    a_address: str | None  # the primary family's
    b_address: str | None
    mtu: int | None
    netem: Netem | None
    a_addresses: tuple[str, ...] = ()  # every family's
    b_addresses: tuple[str, ...] = ()
    macs: tuple[str | None, str | None] = (None, None)

    def __post_init__(self) -> None:
        if self.a_address and not self.a_addresses:
            object.__setattr__(self, "a_addresses", (self.a_address,))
        if self.b_address and not self.b_addresses:
            object.__setattr__(self, "b_addresses", (self.b_address,))


@dataclass(frozen=True)
class SegmentPlan:
    name: str
    kind: str
    subnet: str  # the primary family's
    members: tuple[tuple[str, str, str | None], ...]  # (node, iface, primary address)
    subnets: tuple[str, ...] = ()  # every family's
    member_addresses: tuple[tuple[str, ...], ...] = ()  # per member, every family's

    def __post_init__(self) -> None:
        if not self.subnets and self.subnet:
            object.__setattr__(self, "subnets", (self.subnet,))
        if not self.member_addresses:
            object.__setattr__(self, "member_addresses",
                               tuple((a,) if a else () for _, _, a in self.members))


@dataclass(frozen=True)
class Expectation:
    """What a packet from src to dst must look like on arrival."""

    src: str
    dst: str
    src_ip: str | None  # None: the sender's kernel picks it (a node's route source)
    dst_ip: str
    hops: int  # how much the TTL (IPv6: the hop limit) drops: forwarding devices crossed
    path: tuple[str, ...]  # devices crossed, sender's node first
    snat_to: str | None = None  # masquerade expected: the source seen on arrival
    family: Family = IPV4
    # where the expected path and TTL come from: "plan" (its own routes) or "fabric" (the
    # forwarding tables of routers the plan does not own, walked just before probing)
    source: str = "plan"
    reply_hops: int | None = None  # the reply's TTL drop, where its walk differs
    stop: str | None = None  # the fabric's walk did not deliver: where and why
    note: str = ""  # what else the walk found (an asymmetric return, equal paths)


@dataclass(frozen=True)
class WalkedPath:
    """The way the fabric's forwarding tables send a packet from a node toward a node's
    address (harness.plan.fibwalk walks them; a datapath hands the result to the plan)."""

    path: tuple[str, ...]  # nodes, the sender first, the target last (where it arrived)
    stop: str | None = None  # it did not arrive: a blackhole or a loop, in a sentence
    note: str = ""


@dataclass(frozen=True)
class PeerPlan:
    """One BGP session of a k8s-node with a router of the user's fabric (routing: fabric,
    Calico's BGPPeer): the node's BIRD announces its pod CIDR to `peer_ip`."""

    node: str
    peer_ip: str
    peer_as: int
    local_as: int


WalkKey = tuple[str, str, str, Family]  # (from node, to node, into segment, family)


@dataclass(frozen=True)
class Plan:
    lab: str
    topo_path: str
    masquerade: bool
    pod_cidr: str  # the primary family's
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    links: tuple[LinkPlan, ...]
    segments: tuple[SegmentPlan, ...]
    _graph: LabGraph = field(repr=False, compare=False)
    _segment_names: dict[int, str] = field(repr=False, compare=False)
    routing: str = datapaths.DEFAULT_ROUTING  # the datapath (harness.datapaths names them)
    # routing: bgp's `cluster.bgp`: mode, the cluster's AS, the route reflectors
    bgp_mode: str = "node-mesh"
    bgp_as: int = 64512
    bgp_reflectors: tuple[str, ...] = ()
    cni: str = datapaths.DEFAULT_CNI
    # `cni: {conflist: FILE, bin-dir: DIR}` as the file says (relative to topo_path)
    cni_conflist: str | None = None
    cni_bin_dir: str | None = None
    # False while a CNI plugin, not the plan, gives the pods their addresses: each pod's
    # `ip` is then only its planned guess, until with_pod_addresses() says what it got
    pod_ips_known: bool = True
    # pods of one node share an L2 bridge (podlab, CNI bridge); False: each has its own
    # point-to-point link (CNI ptp) and the node routes between them, one TTL step
    pods_bridged: bool = True
    # `masquerade:` given as ip-masq-agent's config: the destinations it leaves alone (in the
    # agent's chain order); None: `true` or `false` (NodePlan.masquerade_exempt says which)
    masq_agent_exempt: tuple[str, ...] | None = None
    service_cidr: str = "10.96.0.0/16"  # the primary family's (service_cidrs: every one)
    services: tuple[ServicePlan, ...] = ()
    host_ports: tuple[HostPortPlan, ...] = ()
    _intact: LabGraph | None = field(default=None, repr=False, compare=False)  # rerouted
    pod_cidrs: tuple[str, ...] = ()  # every family's, primary first
    service_cidrs: tuple[str, ...] = ()  # every family's
    mgmt: MgmtPlan | None = None  # only when the file asks for a management network
    dummies: tuple[tuple[str, str, int | None], ...] = ()  # (node, interface, mtu)
    bgp_peers: tuple[PeerPlan, ...] = ()  # routing: fabric's BGPPeers, per k8s-node
    # routing: fabric: the paths walked in the fabric's tables (with_walks); None: the
    # plan's own shortest paths
    _walked: Mapping[WalkKey, WalkedPath] | None = field(default=None, repr=False,
                                                         compare=False)

    def __post_init__(self) -> None:
        if not self.pod_cidrs:
            object.__setattr__(self, "pod_cidrs", (self.pod_cidr,))

    def with_walks(self, walked: Mapping[WalkKey, WalkedPath]) -> Plan:
        """The plan whose expectations follow the fabric's tables: each path from `walked`
        where it has one (keyed as `walk_targets` lists them), the plan's own elsewhere;
        every expectation then says it came from the fabric."""
        return dataclasses.replace(self, _walked=dict(walked))

    def walk_targets(self) -> dict[WalkKey, str]:
        """Every (from node, to node, into segment, family) the expectations ask a path
        for, with the address a walk goes to: a k8s-node's pod bridge address for its pods,
        a node's own address otherwise. From every k8s-node; to every k8s-node (its pods
        and itself) and every outside host."""
        out: dict[WalkKey, str] = {}
        for src in self.k8s_nodes:
            for dst in (*self.k8s_nodes, *self.externals):
                for family in self.families:
                    if dst.name != src.name and (ip := self._target_or_none(dst, family)):
                        out[(src.name, dst.name, ip[1], family)] = ip[0]
                    gateway = dst.gateway_of(family)
                    if gateway and dst.name != src.name:
                        out[(src.name, dst.name, f"pods:{dst.name}", family)] = bare_ip(gateway)
        for src in self.externals:  # an outside host's reply to a masqueraded pod's node
            for dst in self.k8s_nodes:
                for family in self.families:
                    if ip := self._target_or_none(dst, family):
                        out[(src.name, dst.name, ip[1], family)] = ip[0]
        return out

    def _target_or_none(self, node: NodePlan, family: Family) -> tuple[str, str] | None:
        try:
            return self._target(node, family)
        except ValueError:
            return None

    @property
    def down_links(self) -> frozenset[int]:
        """Links (indices into `links`) a rerouted plan knows are down."""
        return self._graph.down_links

    def rerouted(self, down_links: frozenset[int] = frozenset(),
                 no_transit: frozenset[str] = frozenset()) -> Plan:
        """The plan as a routing protocol converges after faults: every expectation follows
        the shortest path that remains without `down_links` and without forwarding
        through `no_transit` (nodes whose routing daemon is dead). A pair left with no
        path keeps its intact path: it must fail, and verify says where. The nodes'
        installed routes (`NodePlan.routes`, static) do not change."""
        intact = self._intact or self._graph
        return dataclasses.replace(self, _graph=intact.without(down_links, no_transit),
                                   _intact=intact)

    @property
    def families(self) -> tuple[Family, ...]:
        """The cluster's address families, the primary first."""
        return tuple(family_of(c) for c in self.pod_cidrs)

    @property
    def dual_stack(self) -> bool:
        return len(self.families) > 1

    def pod_cidr_of(self, family: Family) -> str | None:
        return of_family(self.pod_cidrs, family)

    def service_cidr_of(self, family: Family) -> str | None:
        return of_family(self.service_cidrs or (self.service_cidr,), family)

    def node(self, name: str) -> NodePlan:
        return self._nodes_by_name[name]

    def pod(self, name: str) -> PodPlan:
        return self._pods_by_name[name]

    @cached_property
    def _nodes_by_name(self) -> dict[str, NodePlan]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def _pods_by_name(self) -> dict[str, PodPlan]:
        return {p.name: p for p in self.pods}

    @property
    def k8s_nodes(self) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if kind(n.kind).hosts_pods)

    @property
    def externals(self) -> tuple[NodePlan, ...]:
        """Outside hosts podlab configures (a user's node keeps its addresses to itself,
        so nothing can be expected of it)."""
        return tuple(n for n in self.nodes if kind(n.kind).external and n.configured)

    @property
    def containers(self) -> list[str]:
        # a bridge inside a node's namespace has no container of its own
        names = [n.container for n in self.nodes if n.netns_of is None]
        for pod in self.pods:
            names += [pod.infra, *(c.container for c in pod.containers)]
        return names

    def shared_families(self, a: str, b: str) -> tuple[Family, ...]:
        """The families both ends (pod or node names) have, in the cluster's order: each
        check runs once per family."""
        def of(name: str) -> tuple[Family, ...]:
            if name in self._pods_by_name:
                return self.pod(name).families
            return self.node(name).families

        theirs = set(of(b))
        return tuple(f for f in of(a) if f in theirs)

    # --- expectations ------------------------------------------------------------------

    @cached_property
    def _paths(self) -> dict[tuple[str, str, str], tuple[str, ...]]:
        return {}  # filled on demand: a lab of 200 pods asks 40,000 times for 10 nodes' paths

    def _device_path(self, src: str, dst_node: str, dst_segment: str,
                     family: Family | None = None) -> tuple[str, ...]:
        """Devices from src to dst_node, entering dst_node through dst_segment (walked in
        the fabric's tables of `family`, where the plan has those walks)."""
        walked = self._walk(src, dst_node, dst_segment, family)
        if walked is not None and walked.path:
            return walked.path
        key = (src, dst_node, dst_segment)
        if key not in self._paths:
            self._paths[key] = self._find_path(src, dst_node, dst_segment)
        return self._paths[key]

    def _walk(self, src: str, dst_node: str, dst_segment: str,
              family: Family | None) -> WalkedPath | None:
        if self._walked is None or family is None:
            return None
        return self._walked.get((src, dst_node, dst_segment, family))

    def _fabric(self, exp: Expectation, there: tuple[str, str, str],
                back: tuple[str, str, str], offset: int) -> Expectation:
        """`exp` as the fabric's walk has it: its source, where the walk stopped, and
        the reply's TTL drop when the reply's walk (`back`) is not as long (`offset`: the
        ends that do not forward, beyond the sender's node)."""
        if self._walked is None or there[0] == there[1]:  # one node: no fabric crossed
            return exp
        walked = self._walk(*there, exp.family)
        returned = self._walk(*back, exp.family)
        reply = len(returned.path) - offset if returned and not returned.stop else None
        stops = [f"the request: {walked.stop}"] if walked and walked.stop else []
        if returned and returned.stop:
            stops.append(f"the reply: {returned.stop}")
        return replace(exp, source="fabric", stop="; ".join(stops) or None,
                       reply_hops=reply if reply is not None and reply != exp.hops else None,
                       note=walked.note if walked else "")

    def _find_path(self, src: str, dst_node: str, dst_segment: str) -> tuple[str, ...]:
        devices = tuple(d for d, _ in self.segment_hops(src, dst_segment)) or (src,)
        return devices if devices[-1] == dst_node else (*devices, dst_node)

    def segment_hops(self, src: str, dst_segment: str) -> tuple[tuple[str, str], ...]:
        """`(device, segment)` per hop from device `src` into segment `dst_segment`: each
        device sends into that segment toward the next; () when src is attached to it."""
        seg = self._segment_index(dst_segment)
        hops = self._graph.path_to_segment(src, seg)
        if hops is None and self._intact is not None:  # cut off by a fault
            hops = self._intact.path_to_segment(src, seg)
        if hops is None:
            raise ValueError(f"no path from {src} to {dst_segment}")
        return tuple((h.device, self._segment_names[h.segment]) for h in hops)

    def _family(self, family: Family | None) -> Family:
        return family or self.families[0]

    def pod_to_pod(self, a: str, b: str, family: Family | None = None) -> Expectation:
        fam = self._family(family)
        src, dst = self.pod(a), self.pod(b)
        if src.host_network or dst.host_network:  # one end is its node's own namespace
            return self._via_node(a, b, src, dst, fam)
        path = self._device_path(src.node, dst.node, f"pods:{dst.node}", fam)
        # pods of one node share its bridge: switched, not routed, so the TTL holds (on
        # point-to-point links the node routes between them: one step)
        hops = (0 if self.pods_bridged else 1) if src.node == dst.node else len(path)
        return self._fabric(
            Expectation(a, b, _need(src.ip_of(fam), a, fam), _need(dst.ip_of(fam), b, fam),
                        hops, path, family=fam),
            (src.node, dst.node, f"pods:{dst.node}"), (dst.node, src.node, f"pods:{src.node}"),
            0)

    def node_to_pod(self, n: str, p: str, family: Family | None = None) -> Expectation:
        fam = self._family(family)
        pod = self.pod(p)
        if pod.host_network:
            return self._node_to_node(n, pod.node, n, p, fam)
        path = self._device_path(n, pod.node, f"pods:{pod.node}", fam)
        back = self._target_or_none(self.node(n), fam)
        return self._fabric(
            Expectation(n, p, None, _need(pod.ip_of(fam), p, fam), len(path) - 1, path,
                        family=fam),
            (n, pod.node, f"pods:{pod.node}"), (pod.node, n, back[1] if back else ""), 1)

    def node_sources(self, n: str, dst: str, family: Family | None = None
                     ) -> tuple[str, ...]:
        """The addresses node `n` (or a hostNetwork pod of it) may send from toward `dst`,
        a pod or a node (none of the plan's routes carries a `src`): its address on the
        segment it sends into first, cbr0's toward its own pods, the destination itself
        toward its own address. One, the first segment of the plan's path, where the plan
        installs the routes; with routing: bgp, BIRD breaks ties between equally short
        paths by its own rules, so its address on the first segment of any of them. ():
        the plan gives it none."""
        fam = self._family(family)
        node = self.node(n)
        pod = self._pods_by_name.get(dst)
        if pod is None or pod.host_network:  # a node's own address
            dst_ip, segment = self._target(self.node(pod.node if pod else dst), fam)
            if (pod.node if pod else dst) == n:
                return (dst_ip,)
        else:
            segment = f"pods:{pod.node}"
        if segment == f"pods:{n}":
            gateway = node.gateway_of(fam)
            return (bare_ip(gateway),) if gateway else ()
        hops = self.segment_hops(n, segment)
        firsts = [hops[0][1]] if hops else [segment]
        if hops and self.routing == "bgp":
            tied = self._graph.first_segments(n, self._segment_index(segment))
            firsts += [self._segment_names[s] for s in tied]
        found = (node.address_on(s, fam) for s in dict.fromkeys(firsts))
        return tuple(a for a in found if a)

    def pod_to_node(self, p: str, n: str, family: Family | None = None) -> Expectation:
        """To the node's own address; through the pod's node, which forwards it."""
        fam = self._family(family)
        pod, node = self.pod(p), self.node(n)
        if pod.host_network:
            return self._node_to_node(pod.node, n, p, n, fam)
        src_ip = _need(pod.ip_of(fam), p, fam)
        dst_ip, segment = self._target(node, fam)
        if n == pod.node:  # delivered locally: nothing forwards it
            return Expectation(p, n, src_ip, dst_ip, 0, (n,), family=fam)
        path = self._device_path(pod.node, n, segment, fam)
        return self._fabric(Expectation(p, n, src_ip, dst_ip, len(path) - 1, path, family=fam),
                            (pod.node, n, segment), (n, pod.node, f"pods:{pod.node}"), 1)

    def pod_to_external(self, p: str, n: str, family: Family | None = None) -> Expectation:
        fam = self._family(family)
        pod, host = self.pod(p), self.node(n)
        dst_ip, segment = self._target(host, fam)
        path = self._device_path(pod.node, n, segment, fam)
        if pod.host_network:  # the node's own traffic: not from the pod CIDR, not masqueraded
            return Expectation(p, n, None, dst_ip, len(path) - 2, path, family=fam)
        snat = None
        if self.masquerades(pod.node, dst_ip):
            first_seg = self._graph.path_to_segment(pod.node, self._segment_index(segment))
            egress = (self._segment_names[first_seg[0].segment] if first_seg else segment)
            snat = self.node(pod.node).address_on(egress, fam)
        # a masqueraded pod's reply comes back to its node's address, which forwards it
        back = self._target_or_none(self.node(pod.node), fam) if snat else None
        return self._fabric(Expectation(p, n, _need(pod.ip_of(fam), p, fam), dst_ip,
                                        len(path) - 1, path, snat, family=fam),
                            (pod.node, n, segment), (n, pod.node, back[1] if back else ""), 1)

    def _via_node(self, a: str, b: str, src: PodPlan, dst: PodPlan,
                  family: Family) -> Expectation:
        """A pair with a hostNetwork end: a pod to a node's address, a node to a pod, or
        node to node; the NAT-free rules hold all the same. A hostNetwork sender's source
        is its kernel's choice (src_ip None), as for a node."""
        if src.host_network and dst.host_network:
            return self._node_to_node(src.node, dst.node, a, b, family)
        if dst.host_network:
            return replace(self.pod_to_node(a, dst.node, family), dst=b)
        return replace(self.node_to_pod(src.node, b, family), src=a)

    def _node_to_node(self, n: str, m: str, src: str, dst: str,
                      family: Family) -> Expectation:
        dst_ip, segment = self._target(self.node(m), family)
        if n == m:  # one namespace: over its loopback
            return Expectation(src, dst, None, dst_ip, 0, (n,), family=family)
        path = self._device_path(n, m, segment, family)  # both ends on it; neither forwards
        back = self._target_or_none(self.node(n), family)
        return self._fabric(Expectation(src, dst, None, dst_ip, len(path) - 2, path,
                                        family=family),
                            (n, m, segment), (m, n, back[1] if back else ""), 2)

    def masquerades(self, node: str, dst_ip: str) -> bool:
        """Does k8s-node `node` masquerade its pods' traffic to `dst_ip` (of either
        family)? (`true`: unless the destination is exempt; ip-masq-agent's config: unless
        it is in one of the agent's non-masquerade CIDRs or is one of the node's own
        addresses.)"""
        addr = ipaddress.ip_address(dst_ip)
        if self.masq_agent_exempt is not None:
            return dst_ip not in self.node(node).own_addresses and not any(
                addr in ipaddress.ip_network(c) for c in self.masq_agent_exempt)
        exempt = self.node(node).masquerade_exempt
        return bool(exempt) and not any(addr in ipaddress.ip_network(c) for c in exempt)

    def _primary(self, node: NodePlan) -> tuple[str, str]:
        return self._target(node, self.families[0])

    def source_toward(self, node: str, dst: str, family: Family = IPV4) -> str:
        """The address k8s-node `node` sends from toward the namespace of pod or node
        `dst` in `family` (a Service path's family): its route's source, which is also what
        MASQUERADE writes there. Its bridge's address toward its own pods, its own (first)
        address toward itself, else its address on the first segment of the way."""
        if dst in self._pods_by_name and not self.pod(dst).host_network:
            pod = self.pod(dst)
            if pod.node == node:
                return bare_ip(self.node(node).gateway_of(family) or "")
            segment = f"pods:{pod.node}"
        else:
            target = self.node(self.pod(dst).node if dst in self._pods_by_name else dst)
            if target.name == node:
                return self._target(target, family)[0]
            segment = self._target(target, family)[1]
        hops = self._graph.path_to_segment(node, self._segment_index(segment))
        first = self._segment_names[hops[0].segment] if hops else segment
        return (self.node(node).address_on(first, family)
                or self._target(self.node(node), family)[0])

    def with_pod_addresses(self, found: Mapping[str, str | Sequence[str]],
                           pods_bridged: bool | None = None) -> Plan:
        """This plan with the pods' addresses a CNI plugin gave them (`{pod: a.b.c.d/len}`,
        or every family's `{pod: (a.b.c.d/len, x::y/len)}` as a dual-stack result has them:
        each takes its family's place), and whether the chain bridges a node's pods; every
        expectation follows, the Services' endpoints and hostPorts too (the EndpointSlice
        has the pod's reported IP). Pods not in `found`, and families a result left out,
        keep their planned guess."""
        pods = []
        for pod in self.pods:
            given = found.get(pod.name) or ()
            reported = {family_of(i): i for i in (ipaddress.ip_interface(c) for c in (
                (given,) if isinstance(given, str) else given)) if family_of(i) in pod.families}
            if reported:
                cidrs = tuple(str(reported.get(family_of(c), c)) for c in pod.cidrs)
                primary = ipaddress.ip_interface(cidrs[0])
                pod = replace(pod, ip=str(primary.ip), prefixlen=primary.network.prefixlen,
                              cidrs=cidrs)
            pods.append(pod)
        bridged = self.pods_bridged if pods_bridged is None else pods_bridged
        services, host_ports = readdressed(self.services, self.host_ports,
                                           {p.name: p.ips for p in pods})
        return replace(self, pods=tuple(pods), pod_ips_known=True, pods_bridged=bridged,
                       services=services, host_ports=host_ports)

    def programmable(self) -> Plan:
        """The plan as kube-proxy and portmap can program it now: while a CNI plugin has
        not given the pods their addresses, without the endpoints and hostPorts of pods on
        the pod network (hostNetwork pods have their node's); else the plan itself."""
        if self.pod_ips_known:
            return self
        unknown = {p.name for p in self.pods if not p.host_network}
        services, host_ports = known_only(self.services, self.host_ports, unknown)
        return replace(self, services=services, host_ports=host_ports)

    def shown_ip(self, value: str | None) -> str | None:
        """A pod's address (or CIDR) as output shows it: "assigned by CNI" while unknown."""
        if self.pod_ips_known or value is None:
            return value
        return ASSIGNED_BY_CNI if value.split("/")[0] in self._guessed_ips else value

    @cached_property
    def _guessed_ips(self) -> frozenset[str]:
        # a hostNetwork pod's are its node's: no plugin gives them
        return frozenset(ip for p in self.pods if not p.host_network for ip in p.ips)

    def _target(self, node: NodePlan, family: Family) -> tuple[str, str]:
        """The node's own address in `family` and the segment it sits on."""
        for iface in node.interfaces:
            if (found := iface.address_of(family)) is not None:
                return bare_ip(found), iface.segment
        gateway = node.gateway_of(family)
        if gateway:  # a lone k8s-node: its cbr0 address is all it has
            return bare_ip(gateway), f"pods:{node.name}"
        raise ValueError(f"node {node.name} has no {family} address")

    def _segment_index(self, name: str) -> int:
        return next(i for i, n in self._segment_names.items() if n == name)

    # --- output ------------------------------------------------------------------------

    def to_dict(self, with_paths: bool = True) -> dict[str, Any]:
        """The plan as JSON data: the single-valued keys hold the primary family's value
        (as before dual-stack), the plural ones every family's."""
        out: dict[str, Any] = {
            "lab": self.lab,
            "topology": self.topo_path,
            "masquerade": self.masquerade,
            "masquerade_agent_exempt": (list(self.masq_agent_exempt)
                                        if self.masq_agent_exempt is not None else None),
            "pod_cidr": self.pod_cidr,
            "routing": self.routing,
            **({"bgp": {"mode": self.bgp_mode, "as": self.bgp_as,
                        "reflectors": list(self.bgp_reflectors)}}
               if self.routing == "bgp" else {}),
            "cni": self.cni,
            "families": list(self.families),
            "pod_cidrs": list(self.pod_cidrs),
            "service_cidrs": list(self.service_cidrs),
            "segments": [
                {"name": s.name, "kind": s.kind, "subnet": s.subnet, "subnets": list(s.subnets),
                 "members": [{"node": n, "interface": i, "address": a, "addresses": list(aa)}
                             for (n, i, a), aa in zip(s.members, s.member_addresses,
                                                      strict=True)]}
                for s in self.segments],
            "nodes": [
                {"name": n.name, "kind": n.kind, "container": n.container, "image": n.image,
                 "address": n.address, "pod_cidr": n.pod_cidr, "gateway": n.gateway,
                 "addresses": [a for f in self.families if (a := n.address_of(f))],
                 "pod_cidrs": list(n.pod_cidrs), "gateways": list(n.gateways),
                 "bridge": n.bridge,
                 "interfaces": [{"name": i.name, "segment": i.segment, "address": i.address,
                                 "addresses": list(i.addresses), "peer": i.peer}
                                for i in n.interfaces],
                 "routes": [{"dst": r.dst, "via": r.via} for r in n.routes],
                 "masquerade_exempt": list(n.masquerade_exempt),
                 "configured_by": "podlab" if n.configured else "user"}
                for n in self.nodes],
            "pods": [
                {"name": p.name, "node": p.node, "ip": self.shown_ip(p.ip),
                 "cidr": self.shown_ip(p.cidr), "host_network": p.host_network,
                 "gateway": p.gateway, "ips": [self.shown_ip(ip) for ip in p.ips],
                 "cidrs": [self.shown_ip(c) for c in p.cidrs],
                 "gateways": list(p.gateways), "infra": p.infra, "node_iface": p.node_iface,
                 "containers": [{"name": c.name, "container": c.container, "image": c.image}
                                for c in p.containers]}
                for p in self.pods],
            "service_cidr": self.service_cidr,
            **services_dict(self.services, self.host_ports, self.shown_ip),
        }
        if with_paths:
            out["paths"] = [_expectation_dict(kind, e, self.shown_ip)
                            for kind, e in self.expectations()]
        return out

    def expectations(self) -> list[tuple[str, Expectation]]:
        """Every (check, expectation) the plan predicts, in a stable order: per pair of
        ends, one per family they share."""
        out: list[tuple[str, Expectation]] = []
        for a in self.pods:
            for b in self.pods:
                if a.name != b.name:
                    out += [("pod-to-pod", self.pod_to_pod(a.name, b.name, f))
                            for f in self.shared_families(a.name, b.name)]
        for n in self.k8s_nodes:
            for p in self.pods:
                for f in self.shared_families(n.name, p.name):
                    out.append(("node-to-pod", self.node_to_pod(n.name, p.name, f)))
                    out.append(("pod-to-node", self.pod_to_node(p.name, n.name, f)))
        for h in self.externals:
            for p in self.pods:
                out += [("pod-to-external", self.pod_to_external(p.name, h.name, f))
                        for f in self.shared_families(p.name, h.name)]
        return out


def _need(ip: str | None, who: str, family: Family) -> str:
    if ip is None:
        raise ValueError(f"{who} has no {family} address")
    return ip


def _expectation_dict(check: str, e: Expectation,
                      shown: Callable[[str | None], str | None] = lambda ip: ip
                      ) -> dict[str, Any]:
    out = {"check": check, "family": e.family, "src": e.src, "dst": e.dst,
           "src_ip": shown(e.src_ip), "dst_ip": shown(e.dst_ip), "hops": e.hops,
           "path": list(e.path), "snat_to": e.snat_to, "expectation": e.source}
    if e.reply_hops is not None:
        out["reply_hops"] = e.reply_hops
    if e.stop:
        out["stop"] = e.stop
    return out


def cidr_held(node: NodePlan, ip: str) -> str:
    """`ip` with the prefix length of the node's interface (or bridge) that holds it."""
    for address in (*(a for i in node.interfaces for a in i.addresses), *node.gateways):
        if bare_ip(address) == ip:
            return address
    return f"{ip}/{HOST_PREFIX[family_of(ip)]}"
