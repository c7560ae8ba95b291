"""Export a plan as a containerlab topology: the same lab, deployed by `containerlab deploy`.

Every podlab node, pod infra container and pod container becomes a `kind: linux` node;
pod containers join their infra node's namespace (`network-mode: container:<infra>`), as
podlab's own deploy does. containerlab wires the veths (topology links, and one link per
pod from the node's `pv-*` port to the pod's eth0); the addresses, bridges, sysctls,
routes and masquerade rules podlab sets from the host side become `exec:` commands that
run inside each container (busybox `ip` syntax: the podlab images are busybox).

Nodes use `network-mode: none`: no containerlab management network, so the lab has only
the paths its plan predicts (and a pod's eth0 is free for the pod link). Names drop the
`podlab-<lab>-` prefix of podlab's container names; topology validation already keeps
those unique, so the short names are unique too. Pure: no I/O.

Not exported: link `netem` impairments (busybox `tc` has no netem qdisc). The masquerade
rules are `iptables` commands, which the busybox-only podlab/node image lacks; with
masquerade, give k8s-nodes an image that has iptables.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from harness.host.firewall import CHAIN
from harness.kinds import kind
from harness.labels import EXPORTED_FROM
from harness.plan import (
    POD_BRIDGE,
    POD_IFACE,
    SWITCH_BRIDGE,
    ContainerPlan,
    NodePlan,
    Plan,
    PodPlan,
)

KIND = "linux"
PAUSE_IMAGE = "podlab/pause"  # same image as harness.lab.PAUSE_IMAGE (lab imports docker)
NODE_CAPS = ["NET_ADMIN", "NET_RAW"]
POD_CAPS = ["NET_RAW"]
# Same per-namespace settings as podlab's deploy (harness.lab): rp_filter off because
# replies may legitimately return on another interface in multi-path fabrics.
RP_FILTER_OFF = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}
POD_SYSCTLS = {"net.ipv4.ping_group_range": "0 2147483647"}


def to_containerlab(plan: Plan) -> dict[str, Any]:
    """The containerlab topology (a plain dict, ready for yaml.safe_dump)."""
    labels = {EXPORTED_FROM: Path(plan.topo_path).name or plan.lab}
    nodes: dict[str, Any] = {}
    for node in plan.nodes:
        nodes[short_name(plan, node.container)] = _node(node, plan, labels)
    for pod in plan.pods:
        infra = short_name(plan, pod.infra)
        nodes[infra] = _infra(pod, labels)
        for c in pod.containers:
            nodes[short_name(plan, c.container)] = _pod_container(c, infra, labels)
    return {"name": plan.lab, "topology": {"nodes": nodes, "links": _links(plan)}}


def short_name(plan: Plan, container: str) -> str:
    """containerlab node name of a podlab container: without the `podlab-<lab>-` prefix
    (containerlab adds its own `clab-<lab>-`)."""
    prefix = f"podlab-{plan.lab}-"
    return container[len(prefix):] if container.startswith(prefix) else container


def tagged(image: str) -> str:
    """The image with an explicit tag: podlab builds `:latest` locally, and containerlab
    should look for exactly that."""
    last = image.rsplit("/", 1)[-1]
    return image if "@" in image or ":" in last else f"{image}:latest"


# --------------------------------------------------------------------------- nodes


def _node(node: NodePlan, plan: Plan, labels: dict[str, str]) -> dict[str, Any]:
    sysctls = dict(RP_FILTER_OFF)
    if node.forwards:
        sysctls["net.ipv4.ip_forward"] = "1"
    return {
        "kind": KIND,
        "image": tagged(node.image),
        "network-mode": "none",
        "labels": dict(labels),
        "cap-add": list(NODE_CAPS),
        # set at creation too, in case /proc/sys is read-only for the exec commands
        "sysctls": sysctls,
        "exec": node_commands(node, plan),
    }


def node_commands(node: NodePlan, plan: Plan) -> list[str]:
    """Commands that configure a node's namespace as podlab's deploy does, in an order
    where each command's prerequisites exist (links first, routes after addresses)."""
    cmds = [f"sysctl -w {k}={v}" for k, v in sorted(RP_FILTER_OFF.items())]
    if node.forwards:
        cmds.append("sysctl -w net.ipv4.ip_forward=1")
    if kind(node.kind).is_switch:
        return cmds + _bridge(SWITCH_BRIDGE, None, [i.name for i in node.interfaces])
    for iface in node.interfaces:
        if iface.address:
            cmds.append(f"ip addr add {iface.address} dev {iface.name}")
        cmds.append(f"ip link set {iface.name} up")
    if kind(node.kind).hosts_pods:
        ports = [p.node_iface for p in plan.pods if p.node == node.name]
        cmds += _bridge(POD_BRIDGE, node.gateway, ports)
    cmds += [f"ip route add {r.dst} via {r.via}" for r in node.routes]
    return cmds + masquerade_commands(node)


def _bridge(name: str, address: str | None, ports: list[str]) -> list[str]:
    cmds = [f"ip link add {name} type bridge"]
    if address:
        cmds.append(f"ip addr add {address} dev {name}")
    for port in ports:
        cmds += [f"ip link set {port} master {name}", f"ip link set {port} up"]
    return [*cmds, f"ip link set {name} up"]


def masquerade_commands(node: NodePlan) -> list[str]:
    """The ip-masq-agent rule of harness.host.firewall as iptables commands: pod sources jump to
    PODLAB-MASQ, exempt destinations RETURN, everything else is MASQUERADEd."""
    if not node.masquerade_exempt or not node.pod_cidr:
        return []
    cmds = [f"iptables -t nat -N {CHAIN}"]
    cmds += [f"iptables -t nat -A {CHAIN} -d {dst} -j RETURN" for dst in node.masquerade_exempt]
    cmds.append(f"iptables -t nat -A {CHAIN} -j MASQUERADE")
    cmds.append(f"iptables -t nat -A POSTROUTING -s {node.pod_cidr} -j {CHAIN}")
    return cmds


# --------------------------------------------------------------------------- pods


def _infra(pod: PodPlan, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": KIND,
        "image": tagged(PAUSE_IMAGE),
        "network-mode": "none",
        "labels": dict(labels),
        # the infra container configures the pod's namespace, so it needs NET_ADMIN here
        # (podlab's deploy does that from the host side instead)
        "cap-add": list(NODE_CAPS),
        "sysctls": dict(POD_SYSCTLS),
        "exec": pod_commands(pod),
    }


def pod_commands(pod: PodPlan) -> list[str]:
    return [f"ip addr add {pod.cidr} dev {POD_IFACE}",
            f"ip link set {POD_IFACE} up",
            f"ip route add default via {pod.gateway}"]


def _pod_container(c: ContainerPlan, infra: str, labels: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": KIND,
        "image": tagged(c.image),
        "network-mode": f"container:{infra}",
        "labels": dict(labels),
        "cap-add": list(POD_CAPS),
    }
    # Kubernetes semantics, as podlab's runtime: command replaces ENTRYPOINT, args CMD.
    # containerlab splits these strings shell-style, so join them the same way.
    if c.command:
        out["entrypoint"] = shlex.join(c.command)
    if c.args:
        out["cmd"] = shlex.join(c.args)
    if c.env:
        out["env"] = dict(c.env)
    return out


# --------------------------------------------------------------------------- links


def _links(plan: Plan) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    for link in plan.links:
        # no `ipv4:` here: the exec commands set the addresses, once
        entry: dict[str, Any] = {"endpoints": [f"{link.a[0]}:{link.a[1]}",
                                               f"{link.b[0]}:{link.b[1]}"]}
        if link.mtu:
            entry["mtu"] = link.mtu
        links.append(entry)
    for pod in plan.pods:
        links.append({"endpoints": [f"{pod.node}:{pod.node_iface}",
                                    f"{short_name(plan, pod.infra)}:{POD_IFACE}"]})
    return links


def to_yaml(plan: Plan) -> str:
    """The export as YAML, links in containerlab's brief `endpoints: [a, b]` flow form."""
    import yaml  # only the CLI needs text; to_containerlab stays dependency-free

    class _Dumper(yaml.SafeDumper):
        pass

    class _Flow(list):  # a list yaml writes on one line
        pass

    _Dumper.add_representer(
        _Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    data = to_containerlab(plan)
    for link in data["topology"]["links"]:
        link["endpoints"] = _Flow(link["endpoints"])
    header = f"# exported by podlab from {Path(plan.topo_path).name or plan.lab}\n"
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
