"""Which pairs verify probes and what each probe's packets must look like: from the plan,
computed once per run, once per address family the two ends share (the plan's
expectations carry the family). Pure: the kernel's own answers (the source address a node
sends from) come in as a plain mapping; what must arrive comes from the plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.plan import Expectation, Plan, PodPlan

CHECKS = ("pod-identity", "intra-pod", "pod-to-pod", "node-to-pod", "pod-to-node",
          "pod-to-external", "mtu", "path", "pod-to-service", "node-to-service",
          "external-to-nodeport", "external-to-hostport")
PROBE_CHECKS = ("pod-to-pod", "node-to-pod", "pod-to-node", "pod-to-external")
SERVICE_CHECKS = ("pod-to-service", "node-to-service", "external-to-nodeport",
                  "external-to-hostport")
PROTOS = ("udp", "tcp", "icmp")


@dataclass(frozen=True)
class Target:
    """A probe to send and what its packets must look like, request and reply."""

    check: str
    exp: Expectation
    sender: str  # namespace names: pod name or node name
    receiver: str
    src_ip: str  # the source the sender uses ("": a node with no route to dst)
    expect_src: str  # the source the receiver must see
    expect_reply: bool

    @property
    def family(self) -> str:
        return self.exp.family

    @property
    def protos(self) -> tuple[str, ...]:
        if not self.expect_reply:
            return ("udp", "icmp")  # a TCP handshake needs a way back
        return PROTOS


@dataclass(frozen=True)
class Endpoint:
    """A namespace probes start or end in: a node or a pod, with the container that holds
    its namespace and the addresses that are its own (frames for them are arrivals)."""

    name: str
    container: str
    addresses: tuple[str, ...]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys("ipv6" if ":" in a else "ipv4" for a in self.addresses))


def targets(plan: Plan, checks: Iterable[str],
            node_sources: Mapping[str, Mapping[str, str]] | None = None,
            pods: Sequence[PodPlan] | None = None) -> list[Target]:
    """What to send for the probe checks among `checks`, between the nodes and `pods`
    (default: every pod, in plan order). `node_sources[node][ip]` is the source address
    the node's kernel picks toward an address, of either family (node-to-pod, and anything
    a hostNetwork pod, which is its node's namespace, sends). Each pair is probed once per
    address family its ends share."""
    wanted = set(checks)
    sources = node_sources or {}
    out: list[Target] = []
    pods = plan.pods if pods is None else pods
    shared = plan.shared_families

    def src_of(pod: PodPlan, dst_ip: str, family: str) -> str:
        if pod.host_network:  # its node's kernel picks ("": no route)
            return sources.get(pod.node, {}).get(dst_ip, "")
        return pod.ip_of(family) or ""  # type: ignore[arg-type]

    def planned(node: str, dst: str, family: str, src: str) -> str:
        """What must arrive from `node`'s namespace toward `dst` (a pod or node): the
        plan's source, the one the kernel picked when the plan allows several."""
        allowed = plan.node_sources(node, dst, family)  # type: ignore[arg-type]
        return src if src in allowed else (allowed[0] if allowed else src)

    def seen_src(pod: PodPlan, dst: str, family: str, src: str) -> str:
        return planned(pod.node, dst, family, src) if pod.host_network else src

    if "pod-to-pod" in wanted:
        for a, b in itertools.permutations(pods, 2):
            for f in shared(a.name, b.name):
                e = plan.pod_to_pod(a.name, b.name, f)
                src = src_of(a, e.dst_ip, f)
                out.append(Target("pod-to-pod", e, a.name, b.name, src,
                                  seen_src(a, b.name, f, src), True))
    for node in plan.k8s_nodes:
        for pod in pods:
            for f in shared(node.name, pod.name):
                if "node-to-pod" in wanted:
                    e = plan.node_to_pod(node.name, pod.name, f)
                    # what the node sends from ("": it has no route) is its kernel's; what
                    # must arrive is the plan's (a wrong route src must fail)
                    src = sources.get(node.name, {}).get(e.dst_ip, "")
                    out.append(Target("node-to-pod", e, node.name, pod.name, src,
                                      planned(node.name, pod.name, f, src), True))
                if "pod-to-node" in wanted:
                    e = plan.pod_to_node(pod.name, node.name, f)
                    src = src_of(pod, e.dst_ip, f)
                    out.append(Target("pod-to-node", e, pod.name, node.name, src,
                                      seen_src(pod, node.name, f, src), True))
    if "pod-to-external" in wanted:
        for host in plan.externals:
            for pod in pods:
                for f in shared(pod.name, host.name):
                    e = plan.pod_to_external(pod.name, host.name, f)
                    src = src_of(pod, e.dst_ip, f)
                    arrives = e.snat_to or seen_src(pod, host.name, f, src)
                    # unmasqueraded, the outside host has no route back: arrival is the
                    # proof (a hostNetwork pod sends from its node's address, answerable)
                    out.append(Target("pod-to-external", e, pod.name, host.name, src,
                                      arrives, e.snat_to is not None or pod.host_network))
    return out


def endpoints(plan: Plan) -> dict[str, Endpoint]:
    """Every namespace of the lab by node or pod name."""
    out = {}
    for n in plan.nodes:  # every family's: interfaces, then cbr0
        out[n.name] = Endpoint(n.name, n.container, n.own_addresses)
    for p in plan.pods:
        # a hostNetwork pod's namespace is its node's: every address of it is its own
        out[p.name] = Endpoint(p.name, p.infra, out[p.node].addresses if p.host_network
                               else p.ips)
    return out
