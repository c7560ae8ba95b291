"""Export a plan as a containerlab topology: the same lab, deployed by `containerlab deploy`.

Every podlab node, pod infra container and pod container becomes a `kind: linux` node;
pod containers join their infra node's namespace (`network-mode: container:<infra>`), as
podlab's own deploy does. containerlab wires the veths (topology links, and one link per
pod from the node's `pv-*` port to the pod's eth0); the addresses, bridges, sysctls,
routes and masquerade rules podlab sets from the host side become `exec:` commands that
run inside each container (busybox `ip` syntax: the podlab images are busybox). All of it,
capabilities and sysctls too, is written from the datapath's description
(harness.datapath), the one deploy applies, so the two cannot drift apart.

Nodes use `network-mode: none`: no containerlab management network, so the lab has only
the paths its plan predicts (and a pod's eth0 is free for the pod link). Names drop the
`podlab-<lab>-` prefix of podlab's container names; topology validation already keeps
those unique, so the short names are unique too. Pure: no I/O.

Both families: every address is an `exec` command (containerlab sets a link's `ipv4`/
`ipv6` only for a few vendor kinds, never for `linux`), and every link's MTU is pinned
(podlab's veths keep the kernel's 1500 unless the file says otherwise; containerlab's
default is 9500). Every command is one the exported image has: busybox's applets, and what
podlab's images carry besides (iptables, ip6tables, iproute2's `bridge` for hairpin
mode); a comment at the top names the podlab images to build before `containerlab deploy`.

Not exported: link `netem` impairments (busybox `tc` has no netem qdisc). A hostNetwork
pod's infra container joins its node's namespace (`network-mode: container:<node>`) and
has no link of its own.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from harness.datapath import Daemon, LabNet, Masquerade, NodeNet, PodNet, Settings, describe
from harness.datapath.iptables import Ruleset
from harness.datapath.net import Route
from harness.datapaths import DEFAULT_CNI
from harness.errors import InputError
from harness.host import firewall
from harness.labels import EXPORTED_FROM
from harness.model.addressing import IPV6, family_of
from harness.plan import ContainerPlan, Plan

KIND = "linux"
PAUSE_IMAGE = "podlab/pause"  # same image as harness.lab.deploy.PAUSE_IMAGE
# The infra container configures the pod's namespace with its own exec commands here
# (podlab's deploy does that from the host side), so it needs NET_ADMIN on top.
INFRA_EXEC_CAPS = ("NET_ADMIN",)
LINK_MTU = 1500  # a veth's MTU in the kernel, podlab's when the file gives none


def to_containerlab(plan: Plan) -> dict[str, Any]:
    """The containerlab topology (a plain dict, ready for yaml.safe_dump)."""
    if plan.cni != DEFAULT_CNI:
        raise InputError(f"export: the pods of lab {plan.lab!r} are wired by CNI plugins "
                         f"(cni: {plan.cni}), which containerlab does not call; export it "
                         f"with cni: {DEFAULT_CNI}")
    net = describe(plan)
    labels = {EXPORTED_FROM: Path(plan.topo_path).name or plan.lab}
    nodes: dict[str, Any] = {}
    for node in plan.nodes:
        nodes[short_name(plan, node.container)] = _node(net.node(node.name), net, node.image,
                                                        labels)
    for pod in plan.pods:
        infra = short_name(plan, pod.infra)
        pod_net = net.pod(pod.name)
        nodes[infra] = _infra(pod_net, labels, short_name(plan, plan.node(pod.node).container))
        for c in pod.containers:
            nodes[short_name(plan, c.container)] = _pod_container(c, pod_net.containers,
                                                                  infra, labels)
    return {"name": plan.lab, "topology": {"nodes": nodes, "links": _links(plan, net)}}


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


def _node(node: NodeNet, net: LabNet, image: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": KIND,
        "image": tagged(image),
        "network-mode": "none",
        "labels": dict(labels),
        "cap-add": list(node.container.caps),
        # set at creation too, in case /proc/sys is read-only for the exec commands
        "sysctls": node.container.sysctl_map(),
        "exec": node_commands(node, net),
    }


def node_commands(node: NodeNet, net: LabNet) -> list[str]:
    """Commands that configure a node's namespace as deploy does, in wiring.configure's
    order, where each command's prerequisites exist (routes after addresses)."""
    cmds = [f"sysctl -w {k}={v}" for k, v in node.container.sysctls]
    for bridge in node.bridges:
        cmds += [f"ip link add {bridge} type bridge", f"ip link set {bridge} up"]
    pods = [p for p in net.pods_of(node.name) if p.node_port]
    for port, bridge in (*node.ports, *(p.node_port for p in pods)):  # type: ignore[misc]
        cmds += [f"ip link set {port} master {bridge}", f"ip link set {port} up"]
    # kubelet's hairpin-veth, with iproute2's `bridge` (busybox's ip and brctl have no
    # hairpin option; podlab's images carry it)
    cmds += [f"bridge link set dev {p.node_port[0]} hairpin on"  # type: ignore[index]
             for p in pods if p.hairpin]
    return cmds + _addresses_and_routes(node.addresses, node.up, node.routes,
                                        already_up=node.bridges) + [
        cmd for rule in node.nat for cmd in masquerade_commands(rule)] + [
        cmd for rs in node.rulesets for cmd in ruleset_commands(rs)] + [
        cmd for daemon in node.daemons for cmd in daemon_commands(daemon)]


def daemon_commands(daemon: Daemon) -> list[str]:
    """Write the daemon's files (through the image's sh: exec commands are not run by a
    shell), then start it (BIRD forks into the background once configured)."""
    cmds = [shlex.join(["sh", "-c", f'printf %s "$1" > {path}', "sh", text])
            for path, text in daemon.files]
    return [*cmds, shlex.join(daemon.argv)]


def _addresses_and_routes(addresses: tuple[tuple[str, str], ...], up: tuple[str, ...],
                          routes: tuple[Route, ...], already_up: tuple[str, ...] = ()
                          ) -> list[str]:
    cmds = []
    for iface, address in addresses:
        cmds.append(f"ip addr add {address} dev {iface}")
        if iface not in already_up:
            cmds.append(f"ip link set {iface} up")
    cmds += [f"ip link set {iface} up" for iface in up]
    return cmds + [route_command(r) for r in routes]


def route_command(route: Route) -> str:
    dst, via, *dev = route
    # busybox tells the family from an address; "default" alone needs -6 said
    six = dst == "default" and bool(via) and family_of(via) == IPV6
    return " ".join(["ip -6 route add" if six else "ip route add", dst,
                     *(["via", via] if via else []), *(["dev", dev[0]] if dev else [])])


def masquerade_commands(rule: Masquerade) -> list[str]:
    """The masquerade as iptables (IPv6: ip6tables) commands: the very rules
    harness.host.firewall installs with iptables-restore (exempt destinations RETURN, the
    rest is MASQUERADEd, POSTROUTING jumps to the chain)."""
    tool = "ip6tables" if firewall.rule_family(rule.source, rule.family) == 6 else "iptables"
    lines = firewall.masquerade_lines(rule.source, rule.exempt, rule.chain, **rule.how)
    return [f"{tool} -t nat -N {rule.chain}", *(f"{tool} -t nat {line}" for line in lines)]


def ruleset_commands(rs: Ruleset) -> list[str]:
    """A ruleset as iptables commands, in iptables-restore's order: chains, jumps (each
    inserted at the top, as kube-proxy does), appended jumps, rules."""
    def cmd(table: str, *args: str) -> str:
        return shlex.join([rs.tool, "-t", table, *args])

    out = [cmd(t, "-N", c) for t, c in rs.chains]
    out += [cmd(r.table, "-I", r.chain, *r.args) for r in rs.jumps]
    out += [cmd(r.table, "-A", r.chain, *r.args) for r in (*rs.appends, *rs.rules)]
    return out


# --------------------------------------------------------------------------- pods


def _infra(pod: PodNet, labels: dict[str, str], node: str) -> dict[str, Any]:
    if pod.host_network:
        return {"kind": KIND, "image": tagged(PAUSE_IMAGE),
                "network-mode": f"container:{node}", "labels": dict(labels),
                "cap-add": list(pod.infra.caps)}
    return {
        "kind": KIND,
        "image": tagged(PAUSE_IMAGE),
        "network-mode": "none",
        "labels": dict(labels),
        "cap-add": list(dict.fromkeys((*pod.infra.caps, *INFRA_EXEC_CAPS))),
        "sysctls": pod.infra.sysctl_map(),
        "exec": pod_commands(pod),
    }


def pod_commands(pod: PodNet) -> list[str]:
    return _addresses_and_routes(pod.addresses, (), pod.routes)


def _pod_container(c: ContainerPlan, settings: Settings, infra: str, labels: dict[str, str]
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": KIND,
        "image": tagged(c.image),
        "network-mode": f"container:{infra}",
        "labels": dict(labels),
        "cap-add": list(settings.caps),
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


def _links(plan: Plan, net: LabNet) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    for link in plan.links:
        # no `ipv4:`/`ipv6:` here: the exec commands set every address, once
        links.append({"endpoints": [f"{link.a[0]}:{link.a[1]}", f"{link.b[0]}:{link.b[1]}"],
                      "mtu": link.mtu or LINK_MTU})
    for pod in plan.pods:
        veth = net.pod(pod.name).veth
        if veth:  # a CNI datapath whose plugin makes the link has none
            links.append({"endpoints": [f"{pod.node}:{veth[0]}",
                                        f"{short_name(plan, pod.infra)}:{veth[1]}"],
                          "mtu": LINK_MTU})
    return links


def images_to_build(plan: Plan) -> list[str]:
    """The podlab images the export names: built locally, never pulled."""
    data = to_containerlab(plan)
    return sorted({n["image"] for n in data["topology"]["nodes"].values()
                   if n["image"].startswith("podlab/")})


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
    header = (f"# exported by podlab from {Path(plan.topo_path).name or plan.lab}\n"
              f"# build these images first, on every machine that runs a node of the lab "
              f"(`podlab images build`): {', '.join(images_to_build(plan)) or 'none'}\n")
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
