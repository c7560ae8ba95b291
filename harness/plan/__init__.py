"""The plan: every name, address, route and expected TTL drop of a lab. Pure, no I/O.

Same topology in, same plan out. Deploy executes it, verify checks the wire against it.

Addressing:
- k8s-nodes, in file order, take consecutive /node-mask blocks of the pod CIDR; the first
  host of a block is the node's `cbr0` gateway, pods (in file order) take the next ones
  (with a CNI datapath the plugin's IPAM picks them: the plan only knows the block, and
  says "assigned by CNI" until with_pod_addresses() gives it what the plugins reported);
- segments (a switch fabric, or a point-to-point link) take consecutive /segment-mask
  blocks of the underlay CIDR, skipping any written explicitly with `ipv4:`; members are
  numbered in link order.
Routing: static, shortest paths over the segment graph (harness.model.graph). k8s-nodes and
routers learn every segment and every other node's pod CIDR; `linux` hosts learn only the
underlay, so they cannot reach pods unless pods are masqueraded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from harness import datapaths, labels
from harness.kinds import kind
from harness.model.addressing import allocate
from harness.model.graph import LabGraph, Segment
from harness.model.topology import (
    DEFAULT_NODE_IMAGE,
    MasqAgentConfig,
    Netem,
    Topology,
    parse_endpoint,
)
from harness.plan.services import (
    HostPortPlan,
    ServicePlan,
    plan_host_ports,
    plan_services,
    services_dict,
)

POD_BRIDGE = "cbr0"
SWITCH_BRIDGE = "br0"
POD_IFACE = "eth0"
ASSIGNED_BY_CNI = "assigned by CNI"


@dataclass(frozen=True)
class Route:
    dst: str  # a.b.c.d/len
    via: str  # next-hop address


@dataclass(frozen=True)
class Interface:
    name: str
    segment: str
    address: str | None  # a.b.c.d/len; None for a switch port
    peer: str  # "node:iface"


@dataclass(frozen=True)
class NodePlan:
    name: str
    kind: str
    container: str
    image: str
    labels: dict[str, str]
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...]
    pod_cidr: str | None = None
    gateway: str | None = None  # cbr0 address, a.b.c.d/len
    bridge: str | None = None  # cbr0 on a k8s-node, br0 on a switch
    masquerade_exempt: tuple[str, ...] = ()  # empty: no SNAT on this node

    @property
    def forwards(self) -> bool:
        return kind(self.kind).forwards

    @property
    def address(self) -> str | None:
        """The node's own address: that of its first addressed interface."""
        for iface in self.interfaces:
            if iface.address:
                return iface.address.split("/")[0]
        return self.gateway.split("/")[0] if self.gateway else None

    def address_on(self, segment: str) -> str | None:
        for iface in self.interfaces:
            if iface.segment == segment and iface.address:
                return iface.address.split("/")[0]
        return None


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
    ip: str
    prefixlen: int
    gateway: str
    infra: str  # Docker container name of the infra (pause) container
    node_iface: str  # the node's end of the pod's veth, enslaved to cbr0
    containers: tuple[ContainerPlan, ...]
    labels: dict[str, str]
    # shares its node's namespace: `ip` is the node's address; no gateway, no veth of its own
    host_network: bool = False

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass(frozen=True)
class LinkPlan:
    a: tuple[str, str]
    b: tuple[str, str]
    segment: str
    a_address: str | None
    b_address: str | None
    mtu: int | None
    netem: Netem | None


@dataclass(frozen=True)
class SegmentPlan:
    name: str
    kind: str
    subnet: str
    members: tuple[tuple[str, str, str | None], ...]  # (node, iface, address)


@dataclass(frozen=True)
class Expectation:
    """What a packet from src to dst must look like on arrival."""

    src: str
    dst: str
    src_ip: str | None  # None: the sender's kernel picks it (a node's route source)
    dst_ip: str
    hops: int  # how much the TTL drops: forwarding devices crossed
    path: tuple[str, ...]  # devices crossed, sender's node first
    snat_to: str | None = None  # masquerade expected: the source seen on arrival


@dataclass(frozen=True)
class Plan:
    lab: str
    topo_path: str
    masquerade: bool
    pod_cidr: str
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    links: tuple[LinkPlan, ...]
    segments: tuple[SegmentPlan, ...]
    _graph: LabGraph = field(repr=False, compare=False)
    _segment_names: dict[int, str] = field(repr=False, compare=False)
    routing: str = datapaths.DEFAULT_ROUTING  # the datapath (harness.datapaths names them)
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
    service_cidr: str = "10.96.0.0/16"
    services: tuple[ServicePlan, ...] = ()
    host_ports: tuple[HostPortPlan, ...] = ()
    _intact: LabGraph | None = field(default=None, repr=False, compare=False)  # rerouted

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
        return tuple(n for n in self.nodes if kind(n.kind).external)

    @property
    def containers(self) -> list[str]:
        names = [n.container for n in self.nodes]
        for pod in self.pods:
            names += [pod.infra, *(c.container for c in pod.containers)]
        return names

    # --- expectations ------------------------------------------------------------------

    @cached_property
    def _paths(self) -> dict[tuple[str, str, str], tuple[str, ...]]:
        return {}  # filled on demand: a lab of 200 pods asks 40,000 times for 10 nodes' paths

    def _device_path(self, src: str, dst_node: str, dst_segment: str) -> tuple[str, ...]:
        """Devices from src to dst_node, entering dst_node through dst_segment."""
        key = (src, dst_node, dst_segment)
        if key not in self._paths:
            self._paths[key] = self._find_path(src, dst_node, dst_segment)
        return self._paths[key]

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

    def pod_to_pod(self, a: str, b: str) -> Expectation:
        src, dst = self.pod(a), self.pod(b)
        if src.host_network or dst.host_network:  # one end is its node's own namespace
            return self._via_node(a, b, src, dst)
        path = self._device_path(src.node, dst.node, f"pods:{dst.node}")
        # pods of one node share its bridge: switched, not routed, so the TTL holds (on
        # point-to-point links the node routes between them: one step)
        hops = (0 if self.pods_bridged else 1) if src.node == dst.node else len(path)
        return Expectation(a, b, src.ip, dst.ip, hops, path)

    def node_to_pod(self, n: str, p: str) -> Expectation:
        pod = self.pod(p)
        if pod.host_network:
            return self._node_to_node(n, pod.node, n, p)
        path = self._device_path(n, pod.node, f"pods:{pod.node}")
        return Expectation(n, p, None, pod.ip, len(path) - 1, path)

    def pod_to_node(self, p: str, n: str) -> Expectation:
        """To the node's own address; through the pod's node, which forwards it."""
        pod, node = self.pod(p), self.node(n)
        if pod.host_network:
            return self._node_to_node(pod.node, n, p, n)
        dst_ip, segment = self._primary(node)
        if n == pod.node:  # delivered locally: nothing forwards it
            return Expectation(p, n, pod.ip, dst_ip, 0, (n,))
        path = self._device_path(pod.node, n, segment)
        return Expectation(p, n, pod.ip, dst_ip, len(path) - 1, path)

    def pod_to_external(self, p: str, n: str) -> Expectation:
        pod, host = self.pod(p), self.node(n)
        dst_ip, segment = self._primary(host)
        path = self._device_path(pod.node, n, segment)
        if pod.host_network:  # the node's own traffic: not from the pod CIDR, not masqueraded
            return Expectation(p, n, None, dst_ip, len(path) - 2, path)
        snat = None
        if self.masquerades(pod.node, dst_ip):
            first_seg = self._graph.path_to_segment(pod.node, self._segment_index(segment))
            egress = (self._segment_names[first_seg[0].segment] if first_seg else segment)
            snat = self.node(pod.node).address_on(egress)
        return Expectation(p, n, pod.ip, dst_ip, len(path) - 1, path, snat)

    def _via_node(self, a: str, b: str, src: PodPlan, dst: PodPlan) -> Expectation:
        """A pair with a hostNetwork end: a pod to a node's address, a node to a pod, or
        node to node; the NAT-free rules hold all the same. A hostNetwork sender's source
        is its kernel's choice (src_ip None), as for a node."""
        if src.host_network and dst.host_network:
            return self._node_to_node(src.node, dst.node, a, b)
        if dst.host_network:
            return replace(self.pod_to_node(a, dst.node), dst=b)
        return replace(self.node_to_pod(src.node, b), src=a)

    def _node_to_node(self, n: str, m: str, src: str, dst: str) -> Expectation:
        dst_ip, segment = self._primary(self.node(m))
        if n == m:  # one namespace: over its loopback
            return Expectation(src, dst, None, dst_ip, 0, (n,))
        path = self._device_path(n, m, segment)  # both ends are on it; neither forwards
        return Expectation(src, dst, None, dst_ip, len(path) - 2, path)

    def masquerades(self, node: str, dst_ip: str) -> bool:
        """Does k8s-node `node` masquerade its pods' traffic to `dst_ip`? (`true`: unless
        the destination is exempt; ip-masq-agent's config: unless it is in one of the
        agent's non-masquerade CIDRs or is one of the node's own addresses.)"""
        addr = ipaddress.IPv4Address(dst_ip)
        if self.masq_agent_exempt is not None:
            own = self.node(node)
            local = {i.address.split("/")[0] for i in own.interfaces if i.address}
            if own.gateway:
                local.add(own.gateway.split("/")[0])
            return dst_ip not in local and not any(
                addr in ipaddress.IPv4Network(c) for c in self.masq_agent_exempt)
        exempt = self.node(node).masquerade_exempt
        return bool(exempt) and not any(addr in ipaddress.IPv4Network(c) for c in exempt)

    def _primary(self, node: NodePlan) -> tuple[str, str]:
        for iface in node.interfaces:
            if iface.address:
                return iface.address.split("/")[0], iface.segment
        if node.gateway:  # a lone k8s-node: its cbr0 address is all it has
            return node.gateway.split("/")[0], f"pods:{node.name}"
        raise ValueError(f"node {node.name} has no address")

    def _segment_index(self, name: str) -> int:
        return next(i for i, n in self._segment_names.items() if n == name)

    def source_toward(self, node: str, dst: str) -> str:
        """The address k8s-node `node` sends from toward the namespace of pod or node
        `dst`: its route's source, which is also what MASQUERADE writes there. Its bridge's
        address toward its own pods, its own (first) address toward itself, else its
        address on the first segment of the way."""
        if dst in self._pods_by_name and not self.pod(dst).host_network:
            pod = self.pod(dst)
            if pod.node == node:
                return (self.node(node).gateway or "").split("/")[0]
            segment = f"pods:{pod.node}"
        else:
            target = self.node(self.pod(dst).node if dst in self._pods_by_name else dst)
            if target.name == node:
                return self._primary(target)[0]
            segment = self._primary(target)[1]
        hops = self._graph.path_to_segment(node, self._segment_index(segment))
        first = self._segment_names[hops[0].segment] if hops else segment
        return self.node(node).address_on(first) or self._primary(self.node(node))[0]

    def with_pod_addresses(self, found: Mapping[str, str], pods_bridged: bool | None = None
                           ) -> Plan:
        """This plan with the pods' addresses a CNI plugin gave them (`{pod: a.b.c.d/len}`),
        and whether the chain bridges a node's pods; every expectation follows. Pods not
        in `found` keep their planned guess."""
        pods = []
        for pod in self.pods:
            cidr = found.get(pod.name)
            if cidr:
                iface = ipaddress.ip_interface(cidr)
                pod = replace(pod, ip=str(iface.ip), prefixlen=iface.network.prefixlen)
            pods.append(pod)
        bridged = self.pods_bridged if pods_bridged is None else pods_bridged
        return replace(self, pods=tuple(pods), pod_ips_known=True, pods_bridged=bridged)

    # --- output ------------------------------------------------------------------------

    def to_dict(self, with_paths: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lab": self.lab,
            "topology": self.topo_path,
            "masquerade": self.masquerade,
            "masquerade_agent_exempt": (list(self.masq_agent_exempt)
                                        if self.masq_agent_exempt is not None else None),
            "pod_cidr": self.pod_cidr,
            "routing": self.routing,
            "cni": self.cni,
            "segments": [
                {"name": s.name, "kind": s.kind, "subnet": s.subnet,
                 "members": [{"node": n, "interface": i, "address": a} for n, i, a in s.members]}
                for s in self.segments],
            "nodes": [
                {"name": n.name, "kind": n.kind, "container": n.container, "image": n.image,
                 "address": n.address, "pod_cidr": n.pod_cidr, "gateway": n.gateway,
                 "bridge": n.bridge,
                 "interfaces": [{"name": i.name, "segment": i.segment, "address": i.address,
                                 "peer": i.peer} for i in n.interfaces],
                 "routes": [{"dst": r.dst, "via": r.via} for r in n.routes],
                 "masquerade_exempt": list(n.masquerade_exempt)}
                for n in self.nodes],
            "pods": [
                {"name": p.name, "node": p.node, "ip": self.shown_ip(p.ip),
                 "cidr": self.shown_ip(p.cidr), "host_network": p.host_network,
                 "gateway": p.gateway, "infra": p.infra, "node_iface": p.node_iface,
                 "containers": [{"name": c.name, "container": c.container, "image": c.image}
                                for c in p.containers]}
                for p in self.pods],
            "service_cidr": self.service_cidr,
            **services_dict(self.services, self.host_ports),
        }
        if with_paths:
            out["paths"] = [_expectation_dict(kind, e, self.shown_ip)
                            for kind, e in self.expectations()]
        return out

    def shown_ip(self, value: str | None) -> str | None:
        """A pod's address (or CIDR) as output shows it: "assigned by CNI" while unknown."""
        if self.pod_ips_known or value is None:
            return value
        return ASSIGNED_BY_CNI if value.split("/")[0] in self._guessed_ips else value

    @cached_property
    def _guessed_ips(self) -> frozenset[str]:
        return frozenset(p.ip for p in self.pods)

    def expectations(self) -> list[tuple[str, Expectation]]:
        """Every (check, expectation) the plan predicts, in a stable order."""
        out: list[tuple[str, Expectation]] = []
        for a in self.pods:
            for b in self.pods:
                if a.name != b.name:
                    out.append(("pod-to-pod", self.pod_to_pod(a.name, b.name)))
        for n in self.k8s_nodes:
            for p in self.pods:
                out.append(("node-to-pod", self.node_to_pod(n.name, p.name)))
                out.append(("pod-to-node", self.pod_to_node(p.name, n.name)))
        for h in self.externals:
            for p in self.pods:
                out.append(("pod-to-external", self.pod_to_external(p.name, h.name)))
        return out


def _expectation_dict(check: str, e: Expectation,
                      shown: Callable[[str | None], str | None] = lambda ip: ip
                      ) -> dict[str, Any]:
    return {"check": check, "src": e.src, "dst": e.dst, "src_ip": shown(e.src_ip),
            "dst_ip": shown(e.dst_ip), "hops": e.hops, "path": list(e.path), "snat_to": e.snat_to}


def _node_image(topo: Topology, name: str, routing: str) -> str:
    """The file's image for a node; where it names none, a routing datapath's daemon may
    need its own (routing: bgp runs BIRD, which podlab/bird carries)."""
    image = topo.image_of(name)
    wanted = datapaths.ROUTING[routing].node_image if routing in datapaths.ROUTING else None
    if wanted and image == DEFAULT_NODE_IMAGE and kind(topo.kind_of(name)).pod_routes:
        return wanted
    return image


def pod_iface_name(pod: str) -> str:
    """The node's end of a pod's veth: readable when it fits in 15 characters."""
    name = f"pv-{pod}"
    if len(name) <= 15:
        return name
    digest = hashlib.sha1(pod.encode()).hexdigest()[:4]
    return f"pv-{pod[:7]}-{digest}"


def make_plan(topo: Topology) -> Plan:
    spec = topo.spec
    cluster = spec.cluster
    lab = spec.name
    kinds = {n: topo.kind_of(n) for n in spec.topology.nodes}
    link_ends = [(parse_endpoint(lk.endpoints[0]), parse_endpoint(lk.endpoints[1]))
                 for lk in spec.topology.links]
    graph = LabGraph.from_links(kinds, link_ends)  # type: ignore[arg-type]

    # pod CIDRs per k8s-node; each becomes a one-device "pods" segment for routing
    pod_net = ipaddress.IPv4Network(cluster.pod_cidr)
    blocks = pod_net.subnets(new_prefix=cluster.node_mask)
    node_cidr: dict[str, ipaddress.IPv4Network] = {}
    for name, kind_name in kinds.items():
        if kind(kind_name).hosts_pods:
            node_cidr[name] = next(blocks)
    for name in node_cidr:
        seg = Segment(len(graph.segments), "pods", f"pods:{name}")
        seg.members.append((name, POD_BRIDGE, -1))
        graph.segments.append(seg)
        graph.attached[name].append(seg.index)

    # underlay addresses per segment
    seg_subnet: dict[int, ipaddress.IPv4Network] = {}
    addr: dict[tuple[str, str], str] = {}  # (node, iface) -> a.b.c.d/len
    for i, link in enumerate(spec.topology.links):
        if link.ipv4:
            for (node, iface), text in zip(link_ends[i], link.ipv4, strict=True):  # type: ignore[misc]
                if text:
                    addr[(node, iface)] = text
    for seg in graph.segments:
        if seg.kind == "pods":
            continue
        given = [ipaddress.IPv4Interface(addr[(n, i)]) for n, i, _ in seg.members
                 if (n, i) in addr]
        if given:
            seg_subnet[seg.index] = given[0].network
    auto = [s for s in graph.segments if s.kind != "pods" and s.index not in seg_subnet]
    subnets = allocate(cluster.underlay_cidr, [*seg_subnet.values(), pod_net],
                       [len(s.members) for s in auto], cluster.segment_mask)
    seg_subnet.update((s.index, net) for s, net in zip(auto, subnets, strict=True))
    for seg in graph.segments:
        if seg.kind == "pods":
            continue
        subnet = seg_subnet[seg.index]
        used = {addr[(n, i)].split("/")[0] for n, i, _ in seg.members if (n, i) in addr}
        hosts = (h for h in subnet.hosts() if str(h) not in used)
        for n, i, _ in seg.members:
            if (n, i) not in addr:
                host = next(hosts, None)
                if host is None:
                    raise ValueError(f"segment {seg.name} ({subnet}) has too few addresses")
                addr[(n, i)] = f"{host}/{subnet.prefixlen}"

    seg_names = {s.index: s.name for s in graph.segments}
    segment_of_link: dict[int, str] = {}
    for seg in graph.segments:
        for _, _, li in [*seg.members, *seg.switch_ports]:
            segment_of_link[li] = seg.name

    def subnet_of(seg: Segment) -> str:
        if seg.kind == "pods":
            return str(node_cidr[seg.name.split(":", 1)[1]])
        return str(seg_subnet[seg.index])

    def address_on(device: str, seg_index: int) -> str:
        if graph.segments[seg_index].kind == "pods":
            return str(next(node_cidr[device].hosts()))
        for n, i, _ in graph.segments[seg_index].members:
            if n == device:
                return addr[(n, i)].split("/")[0]
        raise KeyError((device, seg_index))

    k8s_addresses = sorted(
        {addr[(n, i)].split("/")[0] for (n, i) in addr if kind(kinds[n]).hosts_pods},
        key=lambda a: ipaddress.IPv4Address(a))

    nodes: list[NodePlan] = []
    for name, kind_name in kinds.items():
        nk = kind(kind_name)
        interfaces = []
        for li, ((a, ia), (b, ib)) in enumerate(link_ends):  # type: ignore[misc]
            for (n, i), (pn, pi) in (((a, ia), (b, ib)), ((b, ib), (a, ia))):
                if n == name:
                    interfaces.append(Interface(i, segment_of_link[li], addr.get((n, i)),
                                                f"{pn}:{pi}"))
        routes: list[Route] = []
        if not nk.is_switch:
            for seg in graph.segments:
                if not nk.pod_routes and seg.kind == "pods":
                    continue  # outside the cluster: no routes to pods
                hops = graph.path_to_segment(name, seg.index)
                if not hops:
                    continue  # attached, or unreachable (validation reports that)
                # hops[0] is this node sending into the first segment toward hops[1]
                routes.append(Route(subnet_of(seg), address_on(hops[1].device,
                                                               hops[0].segment)))
        node_labels = {**topo.labels_of(name), labels.LAB: lab, labels.ROLE: labels.ROLE_NODE,
                       labels.NODE: name, labels.KIND: kind_name,
                       labels.TOPO: str(topo.path or "")}
        cidr = node_cidr.get(name)
        nodes.append(NodePlan(
            name=name, kind=kind_name, container=f"podlab-{lab}-{name}",
            image=_node_image(topo, name, cluster.routing), labels=node_labels,
            interfaces=tuple(interfaces),
            routes=tuple(routes),
            pod_cidr=str(cidr) if cidr else None,
            gateway=f"{next(cidr.hosts())}/{cidr.prefixlen}" if cidr else None,
            bridge=POD_BRIDGE if nk.hosts_pods else SWITCH_BRIDGE if nk.is_switch else None,
            masquerade_exempt=(str(pod_net), *(f"{a}/32" for a in k8s_addresses))
            if nk.hosts_pods and cluster.masquerade is True else (),
        ))

    pods: list[PodPlan] = []
    next_host = {n: iter(list(c.hosts())[1:]) for n, c in node_cidr.items()}
    nodes_by_name = {n.name: n for n in nodes}
    for pod_name, pod in spec.pods.items():
        cidr = node_cidr[pod.node]
        if pod.host_network:  # the node's own address, as Kubernetes reports it
            node_plan = nodes_by_name[pod.node]
            ip = node_plan.address or ""
            prefixlen, gateway, node_iface = _prefixlen_of(node_plan, ip), "", ""
        else:
            ip = str(next(next_host[pod.node]))
            prefixlen, gateway, node_iface = (cidr.prefixlen, str(next(cidr.hosts())),
                                              pod_iface_name(pod_name))
        pod_labels = {**pod.labels, labels.LAB: lab, labels.POD: pod_name,
                      labels.NODE: pod.node, labels.TOPO: str(topo.path or "")}
        pods.append(PodPlan(
            name=pod_name, node=pod.node, ip=ip, prefixlen=prefixlen,
            gateway=gateway, infra=f"podlab-{lab}-{pod_name}",
            node_iface=node_iface, host_network=pod.host_network,
            containers=tuple(ContainerPlan(
                name=c.name, container=f"podlab-{lab}-{pod_name}-{c.name}", image=c.image,
                command=tuple(c.command) if c.command is not None else None,
                args=tuple(c.args) if c.args is not None else None,
                env={e.name: e.value for e in c.env}) for c in pod.containers),
            labels=pod_labels,
        ))

    links = tuple(
        LinkPlan(a=a, b=b, segment=segment_of_link[i], a_address=addr.get(a),
                 b_address=addr.get(b), mtu=spec.topology.links[i].mtu,
                 netem=spec.topology.links[i].netem)
        for i, (a, b) in enumerate(link_ends))  # type: ignore[misc]
    segments = tuple(
        SegmentPlan(s.name, s.kind, subnet_of(s),
                    tuple((n, i, addr.get((n, i))) for n, i, _ in s.members)
                    if s.kind != "pods" else ())
        for s in graph.segments)
    pod_ips = {p.name: p.ip for p in pods}
    agent = cluster.masquerade if isinstance(cluster.masquerade, MasqAgentConfig) else None
    return Plan(lab=lab, topo_path=str(topo.path or ""), masquerade=cluster.masquerade is not False,
                pod_cidr=str(pod_net), nodes=tuple(nodes), pods=tuple(pods), links=links,
                segments=segments, _graph=graph, _segment_names=seg_names,
                routing=cluster.routing, cni=datapaths.cni_value(cluster.cni),
                cni_conflist=getattr(cluster.cni, "conflist", None),
                cni_bin_dir=getattr(cluster.cni, "bin_dir", None),
                pod_ips_known=datapaths.cni_value(cluster.cni) == datapaths.DEFAULT_CNI,
                pods_bridged=cluster.cni != "ptp",
                masq_agent_exempt=agent.exempt if agent else None,
                service_cidr=str(ipaddress.IPv4Network(cluster.service_cidr)),
                services=plan_services(spec, pod_ips),
                host_ports=plan_host_ports(spec, pod_ips))


def _prefixlen_of(node: NodePlan, ip: str) -> int:
    for iface in node.interfaces:
        if iface.address and iface.address.split("/")[0] == ip:
            return int(iface.address.split("/")[1])
    return int(node.gateway.split("/")[1]) if node.gateway else 32
