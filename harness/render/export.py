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

Both families: IPv6 link addresses go in containerlab's own `ipv6` link key (containerlab
sets them when it creates the link, before `exec`; the pod link carries the pod's eth0
address, its bridge-port end ""); IPv4 link addresses stay `exec` commands, as podlab has
always exported them. What containerlab cannot express (cbr0's addresses, routes, NAT)
is `exec` in either family; IPv6 is switched on (Docker turns it off in a container with
no network) and duplicate address detection off, so an address is usable at once.

Not exported: link `netem` impairments (busybox `tc` has no netem qdisc). The masquerade
rules are `iptables` commands, which the busybox-only podlab/node image lacks; with
masquerade, give k8s-nodes an image that has iptables (and ip6tables).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from harness.host.firewall import CHAIN
from harness.kinds import kind
from harness.labels import EXPORTED_FROM
from harness.model.addressing import IPV4, IPV6, family_of
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
# IPv6 in every namespace of a lab that has it: on (Docker turns it off without a network),
# no duplicate address detection (addresses usable at once), no router advertisements.
IPV6_ON = {f"net.ipv6.conf.{scope}.{key}": value for scope in ("all", "default")
           for key, value in (("disable_ipv6", "0"), ("accept_dad", "0"), ("accept_ra", "0"))}
IPV6_FORWARDING = "net.ipv6.conf.all.forwarding"


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


def _v6(plan: Plan) -> bool:
    return IPV6 in plan.families


def _v4(addresses: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for a in addresses if family_of(a) == IPV4)


def node_sysctls(node: NodePlan, plan: Plan) -> dict[str, str]:
    sysctls = dict(RP_FILTER_OFF)
    if node.forwards:
        sysctls["net.ipv4.ip_forward"] = "1"
    if _v6(plan):
        sysctls.update(IPV6_ON)
        if node.forwards:
            sysctls[IPV6_FORWARDING] = "1"
    return sysctls


def _node(node: NodePlan, plan: Plan, labels: dict[str, str]) -> dict[str, Any]:
    sysctls = node_sysctls(node, plan)
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
    if node.forwards and _v6(plan):
        cmds.append(f"sysctl -w {IPV6_FORWARDING}=1")
    if kind(node.kind).is_switch:
        return cmds + _bridge(SWITCH_BRIDGE, (), [i.name for i in node.interfaces])
    for iface in node.interfaces:
        # IPv6 link addresses: containerlab's `ipv6` link key sets them (see _links)
        cmds += [f"ip addr add {a} dev {iface.name}" for a in _v4(iface.addresses)]
        cmds.append(f"ip link set {iface.name} up")
    if kind(node.kind).hosts_pods:
        ports = [p.node_iface for p in plan.pods if p.node == node.name]
        cmds += _bridge(POD_BRIDGE, node.gateways, ports)
    cmds += [f"ip route add {r.dst} via {r.via}" for r in node.routes]
    return cmds + masquerade_commands(node)


def _bridge(name: str, addresses: tuple[str, ...], ports: list[str]) -> list[str]:
    cmds = [f"ip link add {name} type bridge"]
    for address in addresses:
        cmds.append(f"ip addr add {address} dev {name}")
    for port in ports:
        cmds += [f"ip link set {port} master {name}", f"ip link set {port} up"]
    return [*cmds, f"ip link set {name} up"]


def masquerade_commands(node: NodePlan) -> list[str]:
    """The ip-masq-agent rule of harness.host.firewall as iptables commands: pod sources jump to
    PODLAB-MASQ, exempt destinations RETURN, everything else is MASQUERADEd."""
    if not node.masquerade_exempt or not node.pod_cidr:
        return []
    cmds: list[str] = []
    for source in node.pod_cidrs:  # one ruleset per family: iptables, then ip6tables
        family = family_of(source)
        tool = "ip6tables" if family == IPV6 else "iptables"
        cmds.append(f"{tool} -t nat -N {CHAIN}")
        cmds += [f"{tool} -t nat -A {CHAIN} -d {dst} -j RETURN"
                 for dst in node.masquerade_exempt_of(family)]
        cmds.append(f"{tool} -t nat -A {CHAIN} -j MASQUERADE")
        cmds.append(f"{tool} -t nat -A POSTROUTING -s {source} -j {CHAIN}")
    return cmds


# --------------------------------------------------------------------------- pods


def _infra(pod: PodPlan, labels: dict[str, str]) -> dict[str, Any]:
    sysctls = dict(POD_SYSCTLS)
    if IPV6 in pod.families:
        sysctls.update(IPV6_ON)
    return {
        "kind": KIND,
        "image": tagged(PAUSE_IMAGE),
        "network-mode": "none",
        "labels": dict(labels),
        # the infra container configures the pod's namespace, so it needs NET_ADMIN here
        # (podlab's deploy does that from the host side instead)
        "cap-add": list(NODE_CAPS),
        "sysctls": sysctls,
        "exec": pod_commands(pod),
    }


def pod_commands(pod: PodPlan) -> list[str]:
    """eth0's IPv4 address (the pod link's `ipv6` key sets its IPv6 one), up, and a
    default route per family via the node's bridge."""
    cmds = [f"ip addr add {c} dev {POD_IFACE}" for c in _v4(pod.cidrs)]
    cmds.append(f"ip link set {POD_IFACE} up")
    for gateway in pod.gateways:
        six = "-6 " if family_of(gateway) == IPV6 else ""
        cmds.append(f"ip {six}route add default via {gateway}")
    return cmds


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
        # no `ipv4:` here: the exec commands set those addresses, once
        entry: dict[str, Any] = {"endpoints": [f"{link.a[0]}:{link.a[1]}",
                                               f"{link.b[0]}:{link.b[1]}"]}
        ipv6 = [_v6_of(link.a_addresses), _v6_of(link.b_addresses)]
        if any(ipv6):
            entry["ipv6"] = ipv6
        if link.mtu:
            entry["mtu"] = link.mtu
        links.append(entry)
    for pod in plan.pods:
        entry = {"endpoints": [f"{pod.node}:{pod.node_iface}",
                               f"{short_name(plan, pod.infra)}:{POD_IFACE}"]}
        if (cidr := pod.cidr_of(IPV6)) is not None:
            entry["ipv6"] = ["", cidr]  # the node end is a bridge port: no address
        links.append(entry)
    return links


def _v6_of(addresses: tuple[str, ...]) -> str:
    """An end's IPv6 address for containerlab's `ipv6` key; "" for none (a switch port)."""
    return next((a for a in addresses if family_of(a) == IPV6), "")


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
        if "ipv6" in link:
            link["ipv6"] = _Flow(link["ipv6"])
    header = f"# exported by podlab from {Path(plan.topo_path).name or plan.lab}\n"
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
