"""Faults of the Service datapath: kube-proxy's rules as a broken proxy would leave them.

- svc-dnat-elsewhere SERVICE[:PORT] NODE AT: NODE loses its rule for that Service port
  and routes the ClusterIP to AT, which DNATs it to an endpoint: the endpoint DNAT happens
  on the wrong node (kube-proxy DNATs on the client's node);
- svc-no-masq NODE: NODE's KUBE-MARK-MASQ chain is empty, so nothing it should SNAT is;
- svc-local-as-cluster SERVICE: every node programs the Service as if its
  externalTrafficPolicy were Cluster (node ports forward anywhere, and SNAT);
- svc-restore: every k8s-node gets kube-proxy's and portmap's rules back as planned (and
  the extra route and DNAT of svc-dnat-elsewhere are removed).

Each rewrites rules with the same generator deploy used (harness.datapath.kubeproxy), on
a plan changed in exactly the faulty way, so a fault differs from the truth by that alone.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

from harness.datapath import describe, kubeproxy
from harness.datapath.iptables import Ruleset
from harness.errors import InputError
from harness.host import firewall, netns, wiring
from harness.lab import running
from harness.model.addressing import IPV6, family_of
from harness.plan import Plan
from harness.plan.model import HOST_PREFIX
from harness.plan.services import ServicePlan, ServicePortPlan

COMMENT = "podlab fault: DNAT on the wrong node"


def _pid(plan: Plan, node: str) -> int:
    if node not in {n.name for n in plan.k8s_nodes}:
        raise InputError(f"no k8s-node {node!r} in lab {plan.lab!r} "
                         f"({', '.join(n.name for n in plan.k8s_nodes)})")
    pids = running.pids(plan.lab)
    container = plan.node(node).container
    if container not in pids:
        raise InputError(f"node {node} is not running")
    return pids[container]


def _service_port(plan: Plan, text: str) -> tuple[ServicePlan, ServicePortPlan]:
    name, _, port = text.partition(":")
    for svc in plan.services:
        if svc.name == name:
            for p in svc.ports:
                if not port or p.name == port:
                    return svc, p
    known = ", ".join(f"{s.name}:{p.name}" if p.name else s.name
                      for s in plan.services for p in s.ports)
    raise InputError(f"no Service port {text!r} in lab {plan.lab!r} ({known or 'none'})")


def _refill(pid: int, rules: Ruleset, node: str) -> None:
    six = {"family": 6} if rules.family == 6 else {}
    firewall.restore(pid, rules.restore_text(), rules.restore_text(jumps=False),
                     rules.chains[0], where=f"{rules.owner} on {node}", **six)


def dnat_elsewhere(plan: Plan, target: str, node: str = "", at: str = "") -> str:
    plan = running.live(plan)  # a CNI's pods at the addresses it gave them
    svc, port = _service_port(plan, target)
    if not node or not at or node == at:
        raise InputError("svc-dnat-elsewhere needs two different k8s-nodes: NODE (loses the "
                         "rule) and AT (DNATs instead)")
    if not port.endpoints:
        raise InputError(f"{target} has no endpoint")
    here, there = _pid(plan, node), _pid(plan, at)
    without = tuple(replace(s, ports=tuple(p for p in s.ports if p is not port))
                    if s is svc else s for s in plan.services)
    # in the cluster's primary family if the Service has it, else in the Service's own
    family = next((f for f in plan.families if f in svc.ip_families), svc.ip_families[0])
    six, host = family == IPV6, HOST_PREFIX[family]
    _refill(here, kubeproxy.node_rules(node, without, plan.pod_cidr_of(family) or
                                       plan.pod_cidr, family), node)
    cluster_ip = svc.cluster_ip_of(family)
    endpoint = svc.of_family(family).ports[svc.ports.index(port)].endpoints[0]
    via = str(plan.node(at).address_of(family))  # NODE and AT share a segment
    wiring.configure(here, wiring.NetConfig(routes=((f"{cluster_ip}/{host}", via),)))
    proto = port.protocol.lower()
    # only what NODE sends on (its pods', its own): AT's own clients keep their path
    for source in (plan.node(node).pod_cidr_of(family),
                   f"{plan.node(node).address_of(family)}/{host}"):
        netns.run_program(there, [
            "ip6tables" if six else "iptables", "-t", "nat", "-I", "PREROUTING", "-m",
            "comment", "--comment", COMMENT, "-s", str(source), "-p", proto,
            "-d", str(cluster_ip), "--dport", str(port.port),
            "-j", "DNAT", "--to-destination", endpoint.address])
    return f"{target}: {node} no longer DNATs it, {at} DNATs it to {endpoint.address}"


def no_masq(plan: Plan, node: str) -> str:
    plan = running.live(plan)  # a CNI's pods at the addresses it gave them
    pid = _pid(plan, node)
    for family in plan.families:  # kube-proxy's chain in each family's tables
        tool = "ip6tables" if family == IPV6 else "iptables"
        netns.run_program(pid, [tool, "-t", "nat", "-F", kubeproxy.MARK_MASQ])
    return f"{node}: {kubeproxy.MARK_MASQ} emptied"


def local_as_cluster(plan: Plan, service: str) -> str:
    plan = running.live(plan)  # a CNI's pods at the addresses it gave them
    svc = next((s for s in plan.services if s.name == service), None)
    if svc is None or not svc.local_policy:
        local = ", ".join(s.name for s in plan.services if s.local_policy) or "none"
        raise InputError(f"{service!r} is not a Service with externalTrafficPolicy Local "
                         f"in lab {plan.lab!r} ({local})")
    wrong = tuple(replace(s, external_traffic_policy="Cluster") if s is svc else s
                  for s in plan.services)
    for node in plan.k8s_nodes:
        for family in plan.families:
            _refill(_pid(plan, node.name), kubeproxy.node_rules(
                node.name, wrong, plan.pod_cidr_of(family) or plan.pod_cidr, family),
                node.name)
    return f"{service}: programmed as externalTrafficPolicy Cluster on every node"


def restore(plan: Plan, _: str = "") -> str:
    plan = running.live(plan)  # a CNI's pods at the addresses it gave them
    net = describe(plan)
    for node in plan.k8s_nodes:
        pid = _pid(plan, node.name)
        for family in plan.families:
            six = {"family": 6} if family == IPV6 else {}
            for line in firewall.saved(pid, **six).splitlines():  # svc-dnat-elsewhere's DNAT
                if COMMENT in line and line.startswith("-A PREROUTING"):
                    args = line.split()[2:]
                    netns.run_program(pid, ["ip6tables" if six else "iptables", "-t", "nat",
                                            "-D", "PREROUTING", *_unquote(args)])
        hosts = {f"{ip}/{HOST_PREFIX[family_of(ip)]}" for s in plan.services
                 for ip in s.cluster_ips}
        for dst, _gw, _dev in wiring.routes(pid):
            if dst in hosts:
                wiring.delete_route(pid, dst)
        for rules in net.node(node.name).rulesets:
            _refill(pid, rules, node.name)
    return "Service rules restored on every k8s-node"


def _unquote(args: list[str]) -> list[str]:
    """iptables-save's words back to argv (its comment is one quoted word)."""
    return shlex.split(" ".join(args))
