"""Services in the plan: ClusterIPs, node ports, endpoints, hostPorts. Pure, no I/O.

What the API server and the EndpointSlice controller would decide in a real cluster:
- a ClusterIP for each Service without one: the next free address of `service-cidr` in
  file order, the first (the `kubernetes` Service's in a real cluster) left free;
- a node port for each NodePort port without one: the lowest free from 30000 up;
- endpoints: the pods whose labels match the selector, each with the targetPort resolved
  (a name looks up the pod's container port of that name; a pod without it is left out,
  as Kubernetes does), at the pod's IP, which for a hostNetwork pod is its node's address.
  Sorted as kube-proxy sorts them (by "ip:port" text), which fixes the rule order.

With a CNI datapath a pod's IP is the plugin's, known only after its ADD, as in Kubernetes
(the EndpointSlice lists the IP the pod's status reports, and kube-proxy re-syncs when it
changes): `readdressed` re-plans endpoints and hostPorts with the addresses observed, and
`known_only` keeps what kube-proxy and portmap can program before them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.model.services import NAMESPACE, NODE_PORT_RANGE, named_port, selects

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
        return f"{self.ip}:{self.port}"


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


@dataclass(frozen=True)
class ServicePlan:
    name: str
    type: str  # ClusterIP | NodePort
    cluster_ip: str
    external_traffic_policy: str  # Cluster | Local (Cluster for a ClusterIP Service)
    selector: tuple[tuple[str, str], ...]
    ports: tuple[ServicePortPlan, ...]
    namespace: str = NAMESPACE

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


def plan_services(spec: TopologyFile, pod_ips: dict[str, str]) -> tuple[ServicePlan, ...]:
    """Every Service of the file, with its ClusterIP, node ports and endpoints."""
    cluster_ips = _allocate_cluster_ips(spec)
    node_ports = _allocate_node_ports(spec)
    out = []
    for name, svc in spec.services.items():
        chosen = [(p, pod) for p, pod in spec.pods.items() if selects(svc.selector, pod.labels)]
        ports = []
        for i, port in enumerate(svc.ports):
            target = port.target_port if port.target_port is not None else port.port
            endpoints = []
            for pod_name, pod in chosen:
                number = target if isinstance(target, int) else named_port(
                    pod, target, port.protocol)
                if number is not None:
                    endpoints.append(Endpoint(pod_name, pod.node, pod_ips[pod_name], number,
                                              pod.host_network))
            endpoints.sort(key=lambda e: e.address)  # kube-proxy's order
            ports.append(ServicePortPlan(port.name or "", port.protocol, port.port, target,
                                         node_ports.get((name, i)), tuple(endpoints)))
        policy = svc.external_traffic_policy or "Cluster"
        out.append(ServicePlan(name, svc.type, cluster_ips[name], policy,
                               tuple(svc.selector.items()), tuple(ports)))
    return tuple(out)


def plan_host_ports(spec: TopologyFile, pod_ips: dict[str, str]) -> tuple[HostPortPlan, ...]:
    """hostPorts of pods on the pod network (a hostNetwork pod's ports are the node's own)."""
    out = []
    for pod_name, pod in spec.pods.items():
        if pod.host_network:
            continue
        for container in pod.containers:
            for port in container.ports:
                if port.host_port is not None:
                    out.append(HostPortPlan(pod_name, container.name, pod.node,
                                            pod_ips[pod_name], port.protocol, port.host_port,
                                            port.container_port))
    return tuple(out)


def readdressed(services: Sequence[ServicePlan], host_ports: Sequence[HostPortPlan],
                ips: Mapping[str, str]
                ) -> tuple[tuple[ServicePlan, ...], tuple[HostPortPlan, ...]]:
    """Services and hostPorts with the pods of `ips` (`{pod: IPv4 address}`) at those
    addresses: each endpoint and hostPort DNAT follows its pod, and each port's endpoints
    are sorted again as kube-proxy sorts them (the rule order, and the KUBE-SEP names,
    follow the addresses). Pods not in `ips` keep theirs."""
    def endpoint(e: Endpoint) -> Endpoint:
        return replace(e, ip=ips.get(e.pod, e.ip))

    return (_with_endpoints(services, lambda eps: tuple(endpoint(e) for e in eps)),
            tuple(replace(h, pod_ip=ips.get(h.pod, h.pod_ip)) for h in host_ports))


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
        replace(p, endpoints=tuple(sorted(change(p.endpoints), key=lambda e: e.address)))
        for p in svc.ports)) for svc in services)


def _allocate_cluster_ips(spec: TopologyFile) -> dict[str, str]:
    # Services are IPv4: their ClusterIPs come from the IPv4 service CIDR
    net = ipaddress.IPv4Network(next(c for c in spec.cluster.service_cidrs if ":" not in c))
    given = {s.cluster_ip for s in spec.services.values() if s.cluster_ip}
    hosts = (str(h) for h in net.hosts())
    next(hosts, None)  # the first is the `kubernetes` Service's in a real cluster
    out: dict[str, str] = {}
    for name, svc in spec.services.items():
        if svc.cluster_ip:
            out[name] = svc.cluster_ip
            continue
        ip = next(h for h in hosts if h not in given)  # validation checked there is room
        out[name] = ip
    return out


def _allocate_node_ports(spec: TopologyFile) -> dict[tuple[str, int], int]:
    """(service, port index) -> node port, for every port of every NodePort Service."""
    given = {p.node_port for s in spec.services.values() for p in s.ports if p.node_port}
    free = (n for n in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if n not in given)
    out: dict[tuple[str, int], int] = {}
    for name, svc in spec.services.items():
        if svc.type != "NodePort":
            continue
        for i, port in enumerate(svc.ports):
            out[(name, i)] = port.node_port if port.node_port is not None else next(free)
    return out


def services_dict(services: Sequence[ServicePlan], host_ports: Sequence[HostPortPlan],
                  shown: Callable[[str], str | None] = lambda ip: ip) -> dict[str, Any]:
    """The Services part of `plan -o json`; `shown`: how a pod's address is shown (a
    CNI's, unknown before its ADD, as "assigned by CNI")."""
    return {
        "services": [
            {"name": s.name, "namespace": s.namespace, "type": s.type,
             "cluster_ip": s.cluster_ip, "external_traffic_policy": s.external_traffic_policy,
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
             "pod_ip": shown(h.pod_ip),
             "protocol": h.protocol, "host_port": h.host_port,
             "container_port": h.container_port}
            for h in host_ports],
    }
