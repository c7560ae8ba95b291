"""Services in the plan: ClusterIPs, node ports, endpoints, hostPorts. Pure, no I/O.

What the API server and the EndpointSlice controller would decide in a real cluster:
- a ClusterIP for each Service without one: the next free address of `service-cidr` in
  file order, the first (the `kubernetes` Service's in a real cluster) left free;
- a node port for each NodePort port without one: that of the Service's port of the same
  number (53/TCP and 53/UDP share one), else the lowest free from 30000 up;
- endpoints: the pods whose labels match the selector, each with the targetPort resolved
  (a name looks up the pod's container port of that name; a pod without it is left out,
  as Kubernetes does), at the pod's IP, which for a hostNetwork pod is its node's address.
  Sorted as kube-proxy sorts them (by "ip:port" text), which fixes the rule order.

Both families, as Kubernetes' dual-stack Services: a Service has one ClusterIP per family
it has (`ipFamilies`, defaulted by harness.model.services.service_families), allocated
from that family's `service-cidr`; its endpoints are per family too (the EndpointSlice
controller writes one slice per family, each pod's address of that family; a
hostNetwork pod's is its node's), and kube-proxy programs each family on its own
(iptables, ip6tables) from the Service's view of that family (`ServicePlan.of_family`).
A hostPort is published in every family its pod has, as portmap does for each of the
pod's addresses.

With a CNI datapath a pod's IP is the plugin's, known only after its ADD, as in Kubernetes
(the EndpointSlice lists the IP the pod's status reports, and kube-proxy re-syncs when it
changes): `readdressed` re-plans endpoints and hostPorts with the addresses observed, and
`known_only` keeps what kube-proxy and portmap can program before them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.model.addressing import TITLE, Family, family_of, of_family
from harness.model.services import (
    NAMESPACE,
    NODE_PORT_RANGE,
    given_cluster_ips,
    named_port,
    selects,
    service_cidrs,
    service_families,
)

if TYPE_CHECKING:
    from harness.model.schema import TopologyFile


@dataclass(frozen=True)
class Endpoint:
    pod: str
    node: str
    ip: str
    port: int
    host_network: bool = False

    @property
    def address(self) -> str:
        """kube-proxy's endpoint text (net.JoinHostPort): ip:port, IPv6 as [ip]:port."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def family(self) -> Family:
        return family_of(self.ip)


@dataclass(frozen=True)
class ServicePortPlan:
    name: str  # "" when the Service has one unnamed port
    protocol: str  # TCP | UDP
    port: int
    target_port: int | str
    node_port: int | None
    endpoints: tuple[Endpoint, ...]

    def local_endpoints(self, node: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.node == node)

    def endpoints_of(self, family: Family) -> tuple[Endpoint, ...]:
        """One family's endpoints (its EndpointSlice)."""
        return tuple(e for e in self.endpoints if e.family == family)


@dataclass(frozen=True)
class ServicePlan:
    name: str
    type: str  # ClusterIP | NodePort
    cluster_ip: str  # the primary family's (clusterIPs[0])
    external_traffic_policy: str  # Cluster | Local (Cluster for a ClusterIP Service)
    selector: tuple[tuple[str, str], ...]
    ports: tuple[ServicePortPlan, ...]  # endpoints of every family the Service has
    namespace: str = NAMESPACE
    cluster_ips: tuple[str, ...] = ()  # one per family, primary first (default: cluster_ip)
    ip_family_policy: str = "SingleStack"
    # what the API server keeps in ipFamilies: those of cluster_ips
    ip_families: tuple[Family, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if not self.cluster_ips:
            object.__setattr__(self, "cluster_ips", (self.cluster_ip,))
        object.__setattr__(self, "ip_families",
                           tuple(family_of(ip) for ip in self.cluster_ips))

    def cluster_ip_of(self, family: Family) -> str | None:
        return of_family(self.cluster_ips, family)

    def of_family(self, family: Family) -> ServicePlan:
        """The Service as one family's kube-proxy sees it: that family's ClusterIP and
        endpoints only (kube-proxy runs one proxier per family)."""
        ip = self.cluster_ip_of(family)
        if ip is None:
            raise ValueError(f"Service {self.name} has no {family} ClusterIP")
        return replace(self, cluster_ip=ip, cluster_ips=(ip,), ports=tuple(
            replace(p, endpoints=p.endpoints_of(family)) for p in self.ports))

    def port_name(self, port: ServicePortPlan) -> str:
        """kube-proxy's ServicePortName text, `namespace/name[:port]`: its chain hashes and
        rule comments are made of it."""
        suffix = f":{port.name}" if port.name else ""
        return f"{self.namespace}/{self.name}{suffix}"

    @property
    def local_policy(self) -> bool:
        return self.external_traffic_policy == "Local"


@dataclass(frozen=True)
class HostPortPlan:
    """A container port published on the pod's node (CNI portmap: DNAT node:hostPort)."""

    pod: str
    container: str
    node: str
    pod_ip: str
    protocol: str
    host_port: int
    container_port: int
    pod_ips: tuple[str, ...] = ()  # every family's (default: pod_ip), primary first

    def __post_init__(self) -> None:
        if not self.pod_ips:
            object.__setattr__(self, "pod_ips", (self.pod_ip,))

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(family_of(ip) for ip in self.pod_ips)

    def ip_of(self, family: Family) -> str | None:
        return of_family(self.pod_ips, family)


PodIps = Mapping[str, str | Sequence[str]]  # pod -> its address, or every family's


def _ips(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def plan_services(spec: TopologyFile, pod_ips: PodIps) -> tuple[ServicePlan, ...]:
    """Every Service of the file, with its ClusterIPs, node ports and endpoints (each
    pod's address of each family the Service has: `pod_ips` gives every family's)."""
    cluster_ips = _allocate_cluster_ips(spec)
    node_ports = _allocate_node_ports(spec)
    out = []
    for name, svc in spec.services.items():
        families = tuple(family_of(ip) for ip in cluster_ips[name])
        chosen = [(p, pod) for p, pod in spec.pods.items() if selects(svc.selector, pod.labels)]
        ports = []
        for i, port in enumerate(svc.ports):
            target = port.target_port if port.target_port is not None else port.port
            endpoints = []
            for pod_name, pod in chosen:
                number = target if isinstance(target, int) else named_port(
                    pod, target, port.protocol)
                if number is None:
                    continue
                for family in families:  # one EndpointSlice per family
                    ip = of_family(_ips(pod_ips[pod_name]), family)
                    if ip is not None:
                        endpoints.append(Endpoint(pod_name, pod.node, ip, number,
                                                  pod.host_network))
            ports.append(ServicePortPlan(port.name or "", port.protocol, port.port, target,
                                         node_ports.get((name, i)), _sorted(endpoints)))
        policy = svc.external_traffic_policy or "Cluster"
        out.append(ServicePlan(name, svc.type, cluster_ips[name][0], policy,
                               tuple(svc.selector.items()), tuple(ports),
                               cluster_ips=cluster_ips[name],
                               ip_family_policy=svc.ip_family_policy or "SingleStack"))
    return tuple(out)


def _sorted(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """kube-proxy's order within a family (by "ip:port" text), IPv4's slice first."""
    return tuple(sorted(endpoints, key=lambda e: (e.family, e.address)))


def plan_host_ports(spec: TopologyFile, pod_ips: PodIps) -> tuple[HostPortPlan, ...]:
    """hostPorts of pods on the pod network (a hostNetwork pod's ports are the node's own),
    at every family's address of the pod."""
    out = []
    for pod_name, pod in spec.pods.items():
        if pod.host_network:
            continue
        ips = _ips(pod_ips[pod_name])
        for container in pod.containers:
            for port in container.ports:
                if port.host_port is not None:
                    out.append(HostPortPlan(pod_name, container.name, pod.node, ips[0],
                                            port.protocol, port.host_port,
                                            port.container_port, pod_ips=ips))
    return tuple(out)


def readdressed(services: Sequence[ServicePlan], host_ports: Sequence[HostPortPlan],
                ips: PodIps
                ) -> tuple[tuple[ServicePlan, ...], tuple[HostPortPlan, ...]]:
    """Services and hostPorts with the pods of `ips` (`{pod: address}`, or every family's
    `{pod: (a.b.c.d, x::y)}`) at those addresses, family by family: each endpoint and
    hostPort DNAT follows its pod's address of its family, and each port's endpoints are
    sorted again as kube-proxy sorts them (the rule order, and the KUBE-SEP names, follow
    the addresses). Pods not in `ips`, and families it does not give, keep theirs."""
    def new_ip(pod: str, old: str) -> str:
        return of_family(_ips(ips.get(pod) or ()), family_of(old)) or old

    def endpoint(e: Endpoint) -> Endpoint:
        return replace(e, ip=new_ip(e.pod, e.ip))

    def host_port(h: HostPortPlan) -> HostPortPlan:
        moved = tuple(new_ip(h.pod, ip) for ip in h.pod_ips)
        return replace(h, pod_ip=moved[0], pod_ips=moved)

    return (_with_endpoints(services, lambda eps: tuple(endpoint(e) for e in eps)),
            tuple(host_port(h) for h in host_ports))


def known_only(services: Sequence[ServicePlan], host_ports: Sequence[HostPortPlan],
               unknown: Collection[str]
               ) -> tuple[tuple[ServicePlan, ...], tuple[HostPortPlan, ...]]:
    """Services and hostPorts without the pods of `unknown` (those whose address a CNI
    plugin has not given yet): a Service whose endpoints are all unknown has none yet, as
    in a cluster before its pods are ready (kube-proxy REJECTs its ClusterIP)."""
    return (_with_endpoints(services, lambda eps: tuple(e for e in eps
                                                         if e.pod not in unknown)),
            tuple(h for h in host_ports if h.pod not in unknown))


def _with_endpoints(services: Sequence[ServicePlan],
                    change: Callable[[tuple[Endpoint, ...]], tuple[Endpoint, ...]]
                    ) -> tuple[ServicePlan, ...]:
    return tuple(replace(svc, ports=tuple(
        replace(p, endpoints=_sorted(change(p.endpoints))) for p in svc.ports))
        for svc in services)


def _allocate_cluster_ips(spec: TopologyFile) -> dict[str, tuple[str, ...]]:
    """Each Service's ClusterIPs, one per family it has, in its families' order: those
    the file gives, the others the next free of that family's service CIDR."""
    cidrs = {f: ipaddress.ip_network(text) for f, (_, text) in service_cidrs(spec).items()}
    available = tuple(cidrs)
    given = {str(ipaddress.ip_address(ip)) for s in spec.services.values()
             for ip in given_cluster_ips(s)}

    def free(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
        hosts = (str(h) for h in net.hosts())  # lazy: an IPv6 range is not a list
        next(hosts, None)  # the first is the `kubernetes` Service's in a real cluster
        return (h for h in hosts if h not in given)

    pools = {f: free(net) for f, net in cidrs.items()}
    out: dict[str, tuple[str, ...]] = {}
    for name, svc in spec.services.items():
        mine = {family_of(ip): str(ipaddress.ip_address(ip)) for ip in given_cluster_ips(svc)}
        out[name] = tuple(mine[f] if f in mine else next(pools[f])  # validation: room
                          for f in service_families(svc, available))
    return out


def _allocate_node_ports(spec: TopologyFile) -> dict[tuple[str, int], int]:
    """(service, port index) -> node port, for every port of every NodePort Service, as
    kube-apiserver's initNodePorts: one node port per service port number (53/TCP and
    53/UDP share it), the first given for that number if any, else the lowest free."""
    given = {p.node_port for s in spec.services.values() for p in s.ports if p.node_port}
    free = (n for n in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if n not in given)
    out: dict[tuple[str, int], int] = {}
    for name, svc in spec.services.items():
        if svc.type != "NodePort":
            continue
        by_number: dict[int, int] = {}
        for i, port in enumerate(svc.ports):
            if port.node_port is not None:
                by_number.setdefault(port.port, port.node_port)
                out[(name, i)] = port.node_port  # given: kept, even if its number's differs
                continue
            if port.port not in by_number:
                requested = next((p.node_port for p in svc.ports
                                  if p.port == port.port and p.node_port), None)
                by_number[port.port] = requested if requested is not None else next(free)
            out[(name, i)] = by_number[port.port]
    return out


def services_dict(services: Sequence[ServicePlan], host_ports: Sequence[HostPortPlan],
                  shown: Callable[[str], str | None] = lambda ip: ip) -> dict[str, Any]:
    """The Services part of `plan -o json`; `shown`: how a pod's address is shown (a
    CNI's, unknown before its ADD, as "assigned by CNI")."""
    return {
        "services": [
            {"name": s.name, "namespace": s.namespace, "type": s.type,
             "cluster_ip": s.cluster_ip, "cluster_ips": list(s.cluster_ips),
             "ip_families": [TITLE[f] for f in s.ip_families],
             "ip_family_policy": s.ip_family_policy,
             "external_traffic_policy": s.external_traffic_policy,
             "selector": dict(s.selector),
             "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port,
                        "target_port": p.target_port, "node_port": p.node_port,
                        "endpoints": [{"pod": e.pod, "node": e.node, "ip": shown(e.ip),
                                       "port": e.port, "host_network": e.host_network}
                                      for e in p.endpoints]}
                       for p in s.ports]}
            for s in services],
        "host_ports": [
            {"pod": h.pod, "container": h.container, "node": h.node,
             "pod_ip": shown(h.pod_ip), "pod_ips": [shown(ip) for ip in h.pod_ips],
             "protocol": h.protocol, "host_port": h.host_port,
             "container_port": h.container_port}
            for h in host_ports],
    }
