"""routing: fabric's BGP peerings, the pure half: the bird.conf of a k8s-node that peers
with routers of the user's fabric, as Calico's BIRD does for a BGPPeer.

The node announces its pod CIDR(s), and only those, as Calico does: a blackhole static
route that only BGP sees (the kernel routes the block to cbr0 already). It installs what
its peers announce, except a default route (podlab's own default toward the first user's
node stays; BIRD would otherwise fight it for the kernel's one slot). One session per
BGPPeer, over the family of its `peerIP`, from the node's address on the shared link;
eBGP when the ASes differ, iBGP when they are equal. Timers as routing: bgp's (3 s hold,
1 s keepalive and retry): a router that negotiates them (FRR does) notices a dead node
within 3 s, and the node a dead router.
"""

from __future__ import annotations

import ipaddress
import re

from harness.datapath.bgpconf import Timers
from harness.host.bird import LOG_PATH
from harness.model.addressing import IPV4, IPV6, Family, family_of
from harness.plan import NodePlan, PeerPlan, Plan

CHANNEL = {IPV4: "ipv4", IPV6: "ipv6"}
STATIC = {IPV4: "pods", IPV6: "pods6"}
KERNEL = {IPV4: "kernel4", IPV6: "kernel6"}
DEFAULT = {IPV4: "0.0.0.0/0", IPV6: "::/0"}
TIMERS = Timers()


def peers(plan: Plan, node: str) -> tuple[PeerPlan, ...]:
    return tuple(p for p in plan.bgp_peers if p.node == node)


def local_address(node: NodePlan, peer_ip: str) -> str | None:
    """The node's address on the link that holds `peer_ip`."""
    ip = ipaddress.ip_address(peer_ip)
    for iface in node.interfaces:
        for address in iface.addresses:
            if ip in ipaddress.ip_interface(address).network:
                return address.split("/")[0]
    return None


def _symbol(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if name[:1].isalpha() else f"n_{name}"


def bird_conf(plan: Plan, node: NodePlan, timers: Timers = TIMERS) -> str:
    """The whole bird.conf of a k8s-node with BGPPeers."""
    mine = peers(plan, node.name)
    families = [f for f in plan.families if node.pod_cidr_of(f)]
    router_id = node.address_of(IPV4) or str(ipaddress.IPv4Address(mine[0].local_as))
    lines = [
        f"# bird.conf of {node.name} (k8s-node) in lab {plan.lab}: written by podlab from",
        "# cluster.bgp-peers (harness/datapath/peerconf.py), as Calico's BIRD peers with",
        "# a BGPPeer: announce the pod CIDR, install what the peers announce.",
        f'log "{LOG_PATH}" {{ info, remote, warning, error, auth, fatal, bug }};',
        f"router id {router_id};",
        "",
        "protocol device { scan time 10; }",
        "",
        "# this node's pod CIDR, announced as Calico does: a blackhole that only BGP sees",
    ]
    for f in families:
        lines += [f"protocol static {STATIC[f]} {{", f"  {CHANNEL[f]};",
                  f"  route {node.pod_cidr_of(f)} blackhole;", "}", ""]
    lines.append("# install what the peers announce, but no default route: podlab's stays")
    for f in families:
        lines += [f"protocol kernel {KERNEL[f]} {{", f"  scan time {timers.kernel_scan};",
                  f"  {CHANNEL[f]} {{ import none; export where source = RTS_BGP "
                  f"&& net != {DEFAULT[f]}; }};", "}", ""]
    names: set[str] = set()
    for peer in mine:
        family: Family = family_of(peer.peer_ip)
        if family not in families:
            continue
        name = _symbol(f"peer_{peer.peer_ip}")
        while name in names:
            name += "_"
        names.add(name)
        local = local_address(node, peer.peer_ip)
        lines += [
            f"protocol bgp {name} {{",
            f'  description "BGPPeer {peer.peer_ip} AS{peer.peer_as}";',
            f"  local {local} as {peer.local_as};" if local else f"  local as {peer.local_as};",
            f"  neighbor {peer.peer_ip} as {peer.peer_as};",
            *timers.session_lines(),
            f"  {CHANNEL[family]} {{",
            f"    import where net != {DEFAULT[family]};",
            f'    export where proto = "{STATIC[family]}";',
            "  };",
            "}",
            "",
        ]
    return "\n".join(lines)
