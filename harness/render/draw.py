"""Draw a plan: Mermaid (renders on GitHub as-is) and Graphviz DOT. Pure, deterministic.

Each k8s-node is a box (Mermaid subgraph, DOT cluster) holding its cbr0 bridge and its
pods; every other node is a single shape. Topology links are labelled with both ends'
interface and address (`eth1 172.30.0.1/24`), pod links with `pv-* <-> eth0`; a
hostNetwork pod has no link (it is its node's namespace). Each Service is a shape of its
own with its ClusterIP, ports and node ports, and a dashed edge to each endpoint pod. Order
follows the plan (file order), so the same topology always draws the same text.
"""

from __future__ import annotations

import re

from harness.kinds import kind
from harness.plan import POD_BRIDGE, POD_IFACE, LinkPlan, NodePlan, Plan, PodPlan
from harness.plan.services import ServicePlan

# Mermaid node shapes per kind: (open, close)


def _end(name: str, iface: str, addresses: tuple[str, ...]) -> str:
    return " ".join((f"{name}:{iface}", *addresses))


def link_label(link: LinkPlan) -> str:
    """`node1:eth1 172.30.0.1/24 <-> tor:eth1`: both ends, each with its address in every
    family, if any."""
    return (f"{_end(link.a[0], link.a[1], link.a_addresses)} <-> "
            f"{_end(link.b[0], link.b[1], link.b_addresses)}")


def pod_link_label(pod: PodPlan) -> str:
    return f"{pod.node_iface} <-> {POD_IFACE} {' '.join(pod.cidrs)}"


def node_title(node: NodePlan) -> str:
    title = f"{node.name} ({node.kind})"
    return f"{title} pods {', '.join(node.pod_cidrs)}" if node.pod_cidrs else title


def _bridge_label(node: NodePlan) -> str:
    return f"{POD_BRIDGE} {' '.join(node.gateways)}"


def _pod_lines(pod: PodPlan, plan: Plan | None = None) -> list[str]:
    addresses = [f"hostNetwork {ip}" for ip in pod.ips] if pod.host_network else pod.cidrs
    lines = [f"pod {pod.name}", *addresses, ", ".join(c.name for c in pod.containers)]
    for h in (plan.host_ports if plan else ()):
        if h.pod == pod.name:
            lines.append(f"hostPort {h.host_port}/{h.protocol} -> {h.container_port}")
    return lines


def service_lines(svc: ServicePlan) -> list[str]:
    """`svc web (NodePort, Local)`, its ClusterIP, then one line per port."""
    kind_ = svc.type + (f", {svc.external_traffic_policy}" if svc.type == "NodePort" else "")
    lines = [f"svc {svc.name} ({kind_})", *svc.cluster_ips]  # one ClusterIP per family
    for port in svc.ports:
        target = f" -> {port.target_port}" if port.target_port != port.port else ""
        node_port = f" nodePort {port.node_port}" if port.node_port else ""
        lines.append(f"{port.port}/{port.protocol}{target}{node_port}")
    return lines


def _endpoint_edges(svc: ServicePlan) -> list[tuple[str, str]]:
    """(pod, label) once per endpoint pod: the ports it serves, joined."""
    ports: dict[str, list[str]] = {}
    for port in svc.ports:
        for e in port.endpoints:
            ports.setdefault(e.pod, [])
            if str(e.port) not in ports[e.pod]:
                ports[e.pod].append(str(e.port))
    return [(pod, ",".join(p)) for pod, p in ports.items()]


def _pods_of(plan: Plan, node: str) -> list[PodPlan]:
    return [p for p in plan.pods if p.node == node]


# --------------------------------------------------------------------------- Mermaid


def mermaid_id(prefix: str, name: str) -> str:
    """A safe Mermaid id: a kind prefix keeps names like `end`, `graph` or `o1` (which
    Mermaid reads as keywords or edge heads) harmless, and only [A-Za-z0-9_] remain.
    Topology names are [a-z0-9-], so mapping `-` to `_` cannot merge two names."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def mermaid_text(*lines: str) -> str:
    """A quoted Mermaid label: entity-escape what would end or break it, join with <br/>."""
    def esc(s: str) -> str:
        s = s.replace("#", "#35;")  # first: the other escapes introduce '#'
        for ch, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("|", "#124;")):
            s = s.replace(ch, code)
        return s

    return '"' + "<br/>".join(esc(line) for line in lines) + '"'


def to_mermaid(plan: Plan) -> str:
    out = ["flowchart LR"]
    for node in plan.nodes:
        out += _mermaid_node(plan, node)
    for link in plan.links:
        a, b = mermaid_id("n", link.a[0]), mermaid_id("n", link.b[0])
        out.append(f"  {a} ---|{mermaid_text(link_label(link))}| {b}")
    for svc in plan.services:
        sid = mermaid_id("s", svc.name)
        out.append(f"  {sid}[/{mermaid_text(*service_lines(svc))}/]")
        for pod, label in _endpoint_edges(svc):
            out.append(f"  {sid} -.->|{mermaid_text(label)}| {mermaid_id('p', pod)}")
    return "\n".join(out) + "\n"


def _mermaid_node(plan: Plan, node: NodePlan) -> list[str]:
    nid = mermaid_id("n", node.name)
    if not kind(node.kind).hosts_pods:
        open_, close = kind(node.kind).mermaid
        return [f"  {nid}{open_}{mermaid_text(node.name, node.kind)}{close}"]
    # links attach to the subgraph itself; pods attach to the bridge inside it (an edge
    # between a subgraph and its own child breaks Mermaid's layout)
    bridge = mermaid_id("b", node.name)
    lines = [f"  subgraph {nid} [{mermaid_text(node_title(node))}]",
             f"    {bridge}([{mermaid_text(_bridge_label(node))}])"]
    for pod in _pods_of(plan, node.name):
        pid = mermaid_id("p", pod.name)
        lines.append(f"    {pid}[{mermaid_text(*_pod_lines(pod, plan))}]")
        if not pod.host_network:
            lines.append(f"    {bridge} ---|{mermaid_text(pod_link_label(pod))}| {pid}")
    return [*lines, "  end"]


# --------------------------------------------------------------------------- DOT


def dot_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(plan: Plan) -> str:
    out = [f"graph {dot_quote(plan.lab)} {{", "  rankdir=LR;",
           '  node [fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for node in plan.nodes:
        out += _dot_node(plan, node)
    for link in plan.links:
        out.append(f"  {dot_quote(link.a[0])} -- {dot_quote(link.b[0])} "
                   f"[label={dot_quote(link_label(link))}];")
    for svc in plan.services:
        sid = dot_quote(f"svc:{svc.name}")
        label = "\n".join(service_lines(svc))
        out.append(f"  {sid} [label={dot_quote(label)}, shape=cds];")
        for pod, label in _endpoint_edges(svc):
            out.append(f"  {sid} -- {dot_quote('pod:' + pod)} [label={dot_quote(label)}, "
                       "style=dashed];")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_node(plan: Plan, node: NodePlan) -> list[str]:
    shape = kind(node.kind).dot
    if not kind(node.kind).hosts_pods:
        label = dot_quote(f"{node.name}\n{node.kind}")
        return [f"  {dot_quote(node.name)} [label={label}, shape={shape}];"]
    # the node's own vertex (its cbr0) sits in the cluster, so links and pods attach to it
    label = f"{node.name}\n{_bridge_label(node)}"
    lines = [f"  subgraph {dot_quote('cluster_' + node.name)} {{",
             f"    label={dot_quote(node_title(node))};",
             f"    {dot_quote(node.name)} [label={dot_quote(label)}, shape={shape}];"]
    for pod in _pods_of(plan, node.name):
        pid = dot_quote(f"pod:{pod.name}")
        pod_label = dot_quote("\n".join(_pod_lines(pod, plan)))
        lines.append(f"    {pid} [label={pod_label}, shape=component];")
        if not pod.host_network:
            lines.append(f"    {dot_quote(node.name)} -- {pid} "
                         f"[label={dot_quote(pod_link_label(pod))}];")
    return [*lines, "  }"]
