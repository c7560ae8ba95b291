"""What each path to a Service must look like: where NAT happens, and which source the
endpoint's socket sees. Pure, from the plan and kube-proxy's semantics (iptables mode):

- pod-to-service: the client pod's node DNATs the ClusterIP to one of the endpoints and
  nothing else rewrites: the endpoint sees the pod's address and port, the reply comes
  back from the ClusterIP and port. A pod that reaches itself (hairpin) is masqueraded to
  its node's bridge address (KUBE-SEP's `-s itself -j KUBE-MARK-MASQ`). A hostNetwork pod
  is its node: see node-to-service.
- node-to-service: the node DNATs in OUTPUT and masquerades (the source is outside the
  cluster CIDR): the endpoint sees the node's address toward it, a new source port.
- external-to-nodeport, from each outside host to each k8s-node: Cluster: that node DNATs
  to any endpoint and masquerades to its own address toward it, except to a hostNetwork
  endpoint on that very node: the DNATed packet is delivered locally, nat POSTROUTING
  (KUBE-POSTROUTING's MASQUERADE) never runs, and the endpoint sees the client.
  Local: only this node's endpoints, the client's address and port kept; a node without
  one does not answer.
- external-to-hostport, from each outside host to each k8s-node: the pod's node DNATs to
  the pod, the client's address and port kept (portmap masquerades only hairpin and
  localhost); the other nodes do not answer.

Each path is planned once per family the Service has and both ends have (`family` in each
path): the Service's ClusterIP and endpoints of that family (`ServicePlan.of_family`), the
nodes' and hosts' addresses of that family, masquerading to that family's source.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.addressing import IPV4, Family
from harness.plan import Plan
from harness.plan.services import Endpoint, ServicePlan, ServicePortPlan

SERVICE_CHECKS = ("pod-to-service", "node-to-service", "external-to-nodeport",
                  "external-to-hostport")


@dataclass(frozen=True)
class Outcome:
    """One way a probe may end: at `endpoint` (a pod name), addressed to ip:port, seen by
    the endpoint's socket as coming from `src` (with the client's port when
    `keep_sport`). `dnat_at` rewrote the destination, `snat_at` the source (None: no one)."""

    endpoint: str
    ip: str
    port: int
    src: str
    keep_sport: bool
    dnat_at: str
    snat_at: str | None


@dataclass(frozen=True)
class ServicePath:
    """A client sends to dst_ip:dport; it must end in one of `outcomes` (none: nobody may
    answer), never at another of `watch`, and the reply must come from dst_ip:dport."""

    check: str
    client: str  # namespace: pod, k8s-node or outside host
    target: str  # what the results call the destination, e.g. "web:http", "web@node2"
    proto: str  # tcp | udp
    client_ip: str  # the source the client's kernel picks
    dst_ip: str
    dport: int
    entry: str  # the node whose rules act first (the client's node, or the one addressed)
    outcomes: tuple[Outcome, ...]
    watch: tuple[Endpoint, ...]  # every endpoint that could wrongly get it
    family: Family = IPV4


def port_label(svc: ServicePlan, port: ServicePortPlan) -> str:
    return f"{svc.name}:{port.name}" if port.name else svc.name


def _client_node(plan: Plan, client: str) -> tuple[str, bool]:
    """(the node whose netfilter the client's packets meet first, is the client that
    node's own namespace)."""
    if client in {p.name for p in plan.pods}:
        pod = plan.pod(client)
        return pod.node, pod.host_network
    return client, True


def to_cluster_ip(plan: Plan, check: str, client: str, svc: ServicePlan,
                  port: ServicePortPlan, family: Family = IPV4) -> ServicePath:
    """`svc` and `port` as `family` sees them (ServicePlan.of_family; an IPv4-only
    Service is its own view)."""
    node, own = _client_node(plan, client)
    pod_ip = "" if own else plan.pod(client).ip_of(family) or ""
    outcomes = []
    for e in port.endpoints:
        if own:  # a node (or a hostNetwork pod): DNAT in OUTPUT, masqueraded
            src = plan.source_toward(node, e.pod, family)
            outcomes.append(Outcome(e.pod, e.ip, e.port, src, False, node, node))
        elif e.pod == client:  # hairpin: back out the port it came in, masqueraded
            outcomes.append(Outcome(e.pod, e.ip, e.port,
                                    plan.source_toward(node, e.pod, family), False, node,
                                    node))
        else:
            outcomes.append(Outcome(e.pod, e.ip, e.port, pod_ip, True, node, None))
    client_ip = plan.source_toward(node, node, family) if own else pod_ip
    return ServicePath(check, client, port_label(svc, port), port.protocol.lower(), client_ip,
                       svc.cluster_ip, port.port, node, tuple(outcomes), port.endpoints,
                       family)


def to_node_port(plan: Plan, host: str, node: str, svc: ServicePlan,
                 port: ServicePortPlan, family: Family = IPV4) -> ServicePath:
    assert port.node_port is not None
    addr = str(plan.node(node).address_of(family))
    client_ip = str(plan.node(host).address_of(family))
    if svc.local_policy:
        outcomes = tuple(Outcome(e.pod, e.ip, e.port, client_ip, True, node, None)
                         for e in port.local_endpoints(node))
    else:
        outcomes = tuple(Outcome(e.pod, e.ip, e.port, client_ip, True, node, None)
                         if e.host_network and e.node == node else
                         Outcome(e.pod, e.ip, e.port,
                                 plan.source_toward(node, e.pod, family), False, node, node)
                         for e in port.endpoints)
    return ServicePath("external-to-nodeport", host, f"{port_label(svc, port)}@{node}",
                       port.protocol.lower(), client_ip, addr, port.node_port, node, outcomes,
                       port.endpoints, family)


def paths(plan: Plan, checks: tuple[str, ...] | list[str] = SERVICE_CHECKS
          ) -> list[ServicePath]:
    """Every service path of the plan for the selected checks, in a stable order: per
    check, per family of the cluster (primary first), as before dual-stack within it."""
    wanted = set(checks)
    out: list[ServicePath] = []

    def has(name: str, family: Family) -> bool:
        if name in {p.name for p in plan.pods}:
            return family in plan.pod(name).families
        return plan.node(name).address_of(family) is not None

    views = {f: [(svc, port) for s in plan.services if f in s.ip_families
                 for svc in (s.of_family(f),) for port in svc.ports if port.endpoints]
             for f in plan.families}
    if "pod-to-service" in wanted:
        out += [to_cluster_ip(plan, "pod-to-service", pod.name, svc, port, f)
                for f in plan.families for pod in plan.pods if has(pod.name, f)
                for svc, port in views[f]]
    if "node-to-service" in wanted:
        out += [to_cluster_ip(plan, "node-to-service", node.name, svc, port, f)
                for f in plan.families for node in plan.k8s_nodes if has(node.name, f)
                for svc, port in views[f]]
    if "external-to-nodeport" in wanted:
        out += [to_node_port(plan, host.name, node.name, svc, port, f)
                for f in plan.families for host in plan.externals if has(host.name, f)
                for node in plan.k8s_nodes if has(node.name, f)
                for svc, port in views[f] if svc.type == "NodePort"]
    if "external-to-hostport" in wanted:
        for f in plan.families:
            for host in plan.externals:
                if not has(host.name, f):
                    continue
                client_ip = str(plan.node(host.name).address_of(f))
                for hp in plan.host_ports:
                    pod = plan.pod(hp.pod)
                    pod_ip = hp.ip_of(f)
                    if pod_ip is None:
                        continue
                    watch = (Endpoint(pod.name, pod.node, pod_ip, hp.container_port),)
                    for node in plan.k8s_nodes:
                        if not has(node.name, f):
                            continue
                        outcomes = (Outcome(pod.name, pod_ip, hp.container_port, client_ip,
                                            True, node.name, None),) \
                            if node.name == hp.node else ()
                        out.append(ServicePath(
                            "external-to-hostport", host.name,
                            f"{hp.pod}:{hp.host_port}@{node.name}", hp.protocol.lower(),
                            client_ip, str(node.address_of(f)), hp.host_port, node.name,
                            outcomes, watch, f))
    return out
