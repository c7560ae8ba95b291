"""Building the plan of a topology: every name, address, route and expected TTL drop of a
lab. Pure, no I/O.

Same topology in, same plan out. Deploy executes it, verify checks the wire against it.

Addressing, once per family of the cluster (those of `pod-cidr`; the first is primary):
- k8s-nodes, in file order, take consecutive /node-mask (IPv6: /node-mask-v6) blocks of
  the pod CIDR; the first host of a block is the node's `cbr0` gateway, pods (in file
  order) take the next ones (with a CNI datapath the plugin's IPAM picks them: the plan
  only knows the block, and says "assigned by CNI" until with_pod_addresses() gives it
  what the plugins reported);
- segments (a switch fabric, or a point-to-point link) take blocks of the underlay CIDR
  (harness.model.addressing), skipping any written explicitly with `ipv4:`/`ipv6:`;
  members are numbered in link order.
Every node, pod and segment has one address per family; the single-valued fields
(`address`, `ip`, `gateway`, `pod_cidr`, `subnet`) hold the primary family's, and the
plural ones (`addresses`, `cidrs`, `gateways`, `pod_cidrs`, `subnets`) every family's, in
the cluster's order. An IPv4-only file plans exactly as before.
Routing: static, shortest paths over the segment graph (harness.model.graph), the same
paths in every family. k8s-nodes and routers learn every segment and every other node's
pod CIDR; `linux` hosts learn only the underlay, so they cannot reach pods unless pods are
masqueraded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness import datapaths, labels
from harness.kinds import kind
from harness.model.addressing import IPV4, IPV6, Family, Net, allocate, family_of
from harness.model.containers import user_nodes
from harness.model.fabric import FABRIC, graph_kinds, peers_of
from harness.model.graph import LabGraph, Segment
from harness.model.schema import DEFAULT_NODE_IMAGE, MasqAgentConfig
from harness.model.topology import Topology
from harness.model.validation import parse_endpoint
from harness.plan.model import (
    HOST_PREFIX,
    POD_BRIDGE,
    SWITCH_BRIDGE,
    ContainerPlan,
    Interface,
    LinkPlan,
    NodePlan,
    PeerPlan,
    Plan,
    PodPlan,
    Route,
    SegmentPlan,
    bare_ip,
    cidr_held,
)
from harness.plan.services import (
    plan_host_ports,
    plan_services,
)
from harness.plan.usernodes import mgmt_plan, user_run


def _node_image(topo: Topology, name: str, routing: str) -> str:
    """The file's image for a node; where it names none, a routing datapath's daemon may
    need its own (routing: bgp runs BIRD, which podlab/bird carries; routing: fabric on
    the k8s-nodes that peer with the user's routers)."""
    image = topo.image_of(name)
    wanted = datapaths.ROUTING[routing].node_image if routing in datapaths.ROUTING else None
    if routing == FABRIC and not peers_of(topo.spec, name):
        wanted = None
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


@dataclass
class _Family:
    """One family's addressing while the plan is made."""

    family: Family
    pod_net: Net
    node_cidr: dict[str, Net]  # k8s-node -> its block of the pod CIDR
    seg_subnet: dict[int, Net] = field(default_factory=dict)  # segment index -> subnet
    addr: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, iface) -> a/len

    def subnet_of(self, seg: Segment) -> str:
        if seg.kind == "pods":
            return str(self.node_cidr[seg.name.split(":", 1)[1]])
        # "": a segment of the user's nodes only, which the file gives no address
        return str(self.seg_subnet[seg.index]) if seg.index in self.seg_subnet else ""

    def gateway(self, node: str) -> str:
        return str(next(self.node_cidr[node].hosts()))


def _address_family(fam: _Family, graph: LabGraph, link_ends: list[Any], topo: Topology,
                    underlay: str, segment_mask: int | None,
                    users: frozenset[str] = frozenset()) -> None:
    """Fill `fam`'s segment subnets and underlay addresses: explicit ones kept, the rest
    carved from the underlay and numbered in member order. The user's nodes take no
    address but the one the file writes (their own config sets it)."""
    spec = topo.spec
    addr = fam.addr
    for i, link in enumerate(spec.topology.links):
        given = link.addresses(fam.family)
        if given:
            for (node, iface), text in zip(link_ends[i], given, strict=True):
                if text:  # written as the kernel writes it back (IPv6: compressed)
                    addr[(node, iface)] = str(ipaddress.ip_interface(text))
    for seg in graph.segments:
        if seg.kind == "pods":
            continue
        given_ifaces = [ipaddress.ip_interface(addr[(n, i)]) for n, i, _ in seg.members
                        if (n, i) in addr]
        if given_ifaces:
            fam.seg_subnet[seg.index] = given_ifaces[0].network
    auto = [s for s in graph.segments if s.kind != "pods" and s.index not in fam.seg_subnet
            and any(n not in users for n, _, _ in s.members)]
    subnets = allocate(underlay, [*fam.seg_subnet.values(), fam.pod_net],
                       [len(s.members) for s in auto], segment_mask)
    fam.seg_subnet.update((s.index, net) for s, net in zip(auto, subnets, strict=True))
    for seg in graph.segments:
        if seg.kind == "pods" or seg.index not in fam.seg_subnet:
            continue  # only the user's nodes on it, none of them addressed in the file
        subnet = fam.seg_subnet[seg.index]
        used = {ipaddress.ip_address(bare_ip(addr[(n, i)])) for n, i, _ in seg.members
                if (n, i) in addr}
        hosts = (h for h in subnet.hosts() if h not in used)
        for n, i, _ in seg.members:
            if (n, i) not in addr and n not in users:
                host = next(hosts, None)
                if host is None:
                    raise ValueError(f"segment {seg.name} ({subnet}) has too few addresses")
                addr[(n, i)] = f"{host}/{subnet.prefixlen}"


def _routes(fam: _Family, graph: LabGraph, name: str) -> list[Route]:
    """A node's static routes in one family: to every segment it is not on (k8s-nodes and
    routers also to every other node's pod CIDR), via the next device on the path."""
    nk = kind(graph.kinds[name])

    def address_on(device: str, seg_index: int) -> str:
        if graph.segments[seg_index].kind == "pods":
            return fam.gateway(device)
        for n, i, _ in graph.segments[seg_index].members:
            if n == device:
                return bare_ip(fam.addr[(n, i)])
        raise KeyError((device, seg_index))

    routes: list[Route] = []
    for seg in graph.segments:
        if not nk.pod_routes and seg.kind == "pods":
            continue  # outside the cluster: no routes to pods
        if not fam.subnet_of(seg):
            continue  # the user's nodes' own segment: no subnet podlab knows
        hops = graph.path_to_segment(name, seg.index)
        if not hops:
            continue  # attached, or unreachable (validation reports that)
        # hops[0] is this node sending into the first segment toward hops[1]
        routes.append(Route(fam.subnet_of(seg), address_on(hops[1].device, hops[0].segment)))
    return routes


DEFAULT_ROUTE = {IPV4: "0.0.0.0/0", IPV6: "::/0"}


def _fabric_routes(fam: _Family, graph: LabGraph, name: str, users: set[str],
                   link_ends: list[Any]) -> list[Route]:
    """routing: fabric. A k8s-node: a default route to the far end of its first link
    toward a user's node (file order); the user's routers route the rest. The user's
    nodes: none (their own config). podlab's routers and outside hosts: the underlay, no
    pod CIDR."""
    if name in users:
        return []
    if kind(graph.kinds[name]).hosts_pods:
        for (a, ia), (b, ib) in link_ends:
            for (near, _), far in (((a, ia), (b, ib)), ((b, ib), (a, ia))):
                if near == name and far[0] in users and far in fam.addr:
                    return [Route(DEFAULT_ROUTE[fam.family], bare_ip(fam.addr[far]))]
        return []
    return [r for r in _routes(fam, graph, name)
            if not any(r.dst == str(c) for c in fam.node_cidr.values())]


def topology_digest(topo: Topology) -> str:
    """What a topology says, hashed (its model as JSON: comments and layout do not count),
    16 hex digits: a lab carries its file's as a label, so attach sees an edited file."""
    return hashlib.sha256(topo.spec.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def make_plan(topo: Topology) -> Plan:
    spec = topo.spec
    digest = topology_digest(topo)
    cluster = spec.cluster
    lab = spec.name
    kinds = {n: topo.kind_of(n) for n in spec.topology.nodes}
    link_ends = [(parse_endpoint(lk.endpoints[0]), parse_endpoint(lk.endpoints[1]))
                 for lk in spec.topology.links]
    # routing: fabric: the user's nodes route (their own config), on the graph as routers
    graph = LabGraph.from_links(graph_kinds(spec, kinds), link_ends)  # type: ignore[arg-type]
    fabric_users = user_nodes(spec, kinds) if cluster.routing == FABRIC else set()
    k8s = [n for n, k in kinds.items() if kind(k).hosts_pods]

    # pod CIDRs per k8s-node and family; each node's becomes a one-device "pods" segment
    fams: list[_Family] = []
    underlays = {family_of(u): u for u in cluster.underlay_cidrs}
    for text in cluster.pod_cidrs:
        pod_net = ipaddress.ip_network(text)
        family = family_of(pod_net)
        blocks = pod_net.subnets(new_prefix=cluster.node_mask_of(family))
        fams.append(_Family(family, pod_net, {name: next(blocks) for name in k8s}))
    for name in k8s:
        seg = Segment(len(graph.segments), "pods", f"pods:{name}")
        seg.members.append((name, POD_BRIDGE, -1))
        graph.segments.append(seg)
        graph.attached[name].append(seg.index)
    users = frozenset(n for n in kinds if topo.user_owned(n))
    for fam in fams:
        _address_family(fam, graph, link_ends, topo, underlays[fam.family],
                        cluster.segment_mask if fam.family == IPV4 else None, users)
    primary = fams[0]

    seg_names = {s.index: s.name for s in graph.segments}
    segment_of_link: dict[int, str] = {}
    for seg in graph.segments:
        for _, _, li in [*seg.members, *seg.switch_ports]:
            segment_of_link[li] = seg.name

    def addresses(end: tuple[str, str]) -> tuple[str, ...]:
        return tuple(a for fam in fams if (a := fam.addr.get(end)))

    # ip-masq-agent's exemptions: the pod CIDR and every k8s-node address, per family
    exempt: list[str] = []
    for fam in fams:
        own = sorted({ipaddress.ip_address(bare_ip(a)) for (n, _), a in fam.addr.items()
                      if kind(kinds[n]).hosts_pods})
        exempt += [str(fam.pod_net), *(f"{a}/{HOST_PREFIX[fam.family]}" for a in own)]

    nodes: list[NodePlan] = []
    for name, kind_name in kinds.items():
        nk = kind(kind_name)
        interfaces = []
        for li, ((a, ia), (b, ib)) in enumerate(link_ends):  # type: ignore[misc]
            for (n, i), (pn, pi) in (((a, ia), (b, ib)), ((b, ib), (a, ia))):
                if n == name:
                    interfaces.append(Interface(i, segment_of_link[li], primary.addr.get((n, i)),
                                                f"{pn}:{pi}", addresses((n, i))))
        routes = ([] if nk.is_switch or name in users else
                  [r for fam in fams for r in _fabric_routes(fam, graph, name, fabric_users,
                                                             link_ends)]
                  if cluster.routing == FABRIC else
                  [r for fam in fams for r in _routes(fam, graph, name)])
        node_labels = {**topo.labels_of(name), labels.LAB: lab, labels.ROLE: labels.ROLE_NODE,
                       labels.NODE: name, labels.KIND: kind_name,
                       labels.TOPO: str(topo.path or ""), labels.TOPO_DIGEST: digest}
        hosts_pods = name in primary.node_cidr
        gateways = tuple(f"{fam.gateway(name)}/{fam.node_cidr[name].prefixlen}"
                         for fam in fams) if hosts_pods else ()
        nodes.append(NodePlan(
            name=name, kind=kind_name, container=f"podlab-{lab}-{name}",
            image=_node_image(topo, name, cluster.routing), labels=node_labels,
            interfaces=tuple(interfaces),
            routes=tuple(routes),
            pod_cidr=str(primary.node_cidr[name]) if hosts_pods else None,
            gateway=gateways[0] if gateways else None,
            bridge=POD_BRIDGE if nk.hosts_pods else (
                name.partition("|")[0] if _netns_of(topo, name) else SWITCH_BRIDGE)
            if nk.is_switch else None,
            masquerade_exempt=tuple(exempt) if nk.hosts_pods and cluster.masquerade is True
            else (),
            pod_cidrs=tuple(str(fam.node_cidr[name]) for fam in fams) if hosts_pods else (),
            gateways=gateways,
            run=user_run(topo, name) if name in users else None,
            netns_of=_netns_of(topo, name),
        ))

    pods: list[PodPlan] = []
    # pods take the hosts after the gateway, lazily: an IPv6 /64 is not a list
    next_host: dict[tuple[Family, str], Iterator[Any]] = {
        (fam.family, n): itertools.islice(c.hosts(), 1, None)
        for fam in fams for n, c in fam.node_cidr.items()}
    nodes_by_name = {n.name: n for n in nodes}
    for pod_name, pod in spec.pods.items():
        if pod.host_network:  # the node's own addresses, as Kubernetes reports them
            node_plan = nodes_by_name[pod.node]
            cidrs = tuple(cidr_held(node_plan, a) for f in (fam.family for fam in fams)
                          if (a := node_plan.address_of(f)))
            gateways: tuple[str, ...] = ()
            node_iface = ""
        else:
            cidrs = tuple(f"{next(next_host[(fam.family, pod.node)])}/"
                          f"{fam.node_cidr[pod.node].prefixlen}" for fam in fams)
            gateways = tuple(fam.gateway(pod.node) for fam in fams)
            node_iface = pod_iface_name(pod_name)
        pod_labels = {**pod.labels, labels.LAB: lab, labels.POD: pod_name,
                      labels.NODE: pod.node, labels.TOPO: str(topo.path or ""),
                      labels.TOPO_DIGEST: digest}
        pods.append(PodPlan(
            name=pod_name, node=pod.node, ip=bare_ip(cidrs[0]) if cidrs else "",
            prefixlen=int(cidrs[0].split("/")[1]) if cidrs else 32,
            gateway=gateways[0] if gateways else "", infra=f"podlab-{lab}-{pod_name}",
            node_iface=node_iface, host_network=pod.host_network,
            containers=tuple(ContainerPlan(
                name=c.name, container=f"podlab-{lab}-{pod_name}-{c.name}", image=c.image,
                command=tuple(c.command) if c.command is not None else None,
                args=tuple(c.args) if c.args is not None else None,
                env={e.name: e.value for e in c.env}) for c in pod.containers),
            labels=pod_labels, cidrs=cidrs, gateways=gateways,
        ))

    links = tuple(
        LinkPlan(a=a, b=b, segment=segment_of_link[i], a_address=primary.addr.get(a),
                 b_address=primary.addr.get(b), mtu=spec.topology.links[i].mtu,
                 netem=spec.topology.links[i].netem, a_addresses=addresses(a),
                 b_addresses=addresses(b), macs=spec.topology.links[i].mac or (None, None))
        for i, (a, b) in enumerate(link_ends))  # type: ignore[misc]
    segments = tuple(
        SegmentPlan(s.name, s.kind, primary.subnet_of(s),
                    tuple((n, i, primary.addr.get((n, i))) for n, i, _ in s.members)
                    if s.kind != "pods" else (),
                    subnets=tuple(sub for fam in fams if (sub := fam.subnet_of(s))),
                    member_addresses=tuple(addresses((n, i)) for n, i, _ in s.members)
                    if s.kind != "pods" else ())
        for s in graph.segments)
    pod_ips = {p.name: p.ips for p in pods}  # every family's: Services are per family
    agent = cluster.masquerade if isinstance(cluster.masquerade, MasqAgentConfig) else None
    service_primary = cluster.service_cidrs[0] if cluster.service_cidrs else "10.96.0.0/16"
    return Plan(lab=lab, topo_path=str(topo.path or ""),
                masquerade=cluster.masquerade is not False,
                pod_cidr=str(primary.pod_net), nodes=tuple(nodes), pods=tuple(pods),
                links=links, segments=segments, _graph=graph, _segment_names=seg_names,
                routing=cluster.routing, cni=datapaths.cni_value(cluster.cni),
                bgp_mode=cluster.bgp.mode, bgp_as=cluster.bgp.as_number,
                bgp_reflectors=tuple(cluster.bgp.reflectors),
                cni_conflist=getattr(cluster.cni, "conflist", None),
                cni_bin_dir=getattr(cluster.cni, "bin_dir", None),
                pod_ips_known=datapaths.cni_value(cluster.cni) == datapaths.DEFAULT_CNI,
                pods_bridged=cluster.cni != "ptp",
                masq_agent_exempt=(tuple(c for c in agent.exempt
                                         if family_of(c) in {f.family for f in fams})
                                   if agent else None),
                service_cidr=str(ipaddress.ip_network(service_primary)),
                services=plan_services(spec, pod_ips),
                host_ports=plan_host_ports(spec, pod_ips),
                pod_cidrs=tuple(str(fam.pod_net) for fam in fams),
                service_cidrs=cluster.service_cidrs, mgmt=mgmt_plan(topo),
                dummies=tuple((d.node, d.interface, d.mtu) for d in spec.topology.dummies),
                bgp_peers=tuple(PeerPlan(n, p.peer_ip, p.as_number, p.local_as)
                                for n in k8s for p in peers_of(spec, n))
                if cluster.routing == FABRIC else ())


def _netns_of(topo: Topology, name: str) -> str | None:
    """containerlab's bridge with network-mode container:<node>: it lives in that node's
    namespace, as a Linux bridge, with no container of its own."""
    node = topo.spec.topology.nodes[name]
    mode = node.network_mode or ""
    if topo.kind_of(name) == "switch" and mode.startswith("container:"):
        return mode.removeprefix("container:")
    return None
