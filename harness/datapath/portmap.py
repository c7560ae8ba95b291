"""hostPort as the CNI `portmap` plugin does it, as data: the rules on a pod's node. Pure.

Kubernetes leaves hostPort to the CNI chain; the reference `portmap` plugin (with its
defaults: SNAT on, mark bit 13) writes, in the node's nat table:

    PREROUTING, OUTPUT (appended): --dst-type LOCAL -> CNI-HOSTPORT-DNAT
    CNI-HOSTPORT-DNAT: -p proto --destination-ports p1,p2 -> CNI-DN-<hash>  (one per pod)
    CNI-DN-<hash>: per hostPort: from the pod's network (`-s` the CNI result's address
                   with its prefix, podIP/len: every pod of that subnet reaching the
                   hostPort is masqueraded, the pod itself included) or 127.0.0.1 ->
                   SETMARK, then DNAT --to-destination podIP:containerPort
    POSTROUTING (at the top) -> CNI-HOSTPORT-MASQ: marked 0x2000 -> MASQUERADE

and `route_localnet=1` on the interface its node routes the pod's IPv4 address by (the
bridge, or a ptp veth), so the 127.0.0.1 rule's packets may leave for the pod. A client
elsewhere reaches the pod with its own address kept. The per-pod chain hashes
the network name and the container ID (SHA-512, hex, cut to 28 characters); podlab's
network is `podlab` and a pod's "container ID" is its infra container's name.

The plugin forwards each of the pod's addresses, with ip6tables for an IPv6 one: the same
chains, no localhost rule (IPv6 has no route_localnet), the DNAT target `[ip]:port`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from harness.datapath.conntrack import UdpTarget
from harness.datapath.iptables import Rule, Ruleset
from harness.model.addressing import IPV6, Family
from harness.plan.services import HostPortPlan

OWNER = "portmap"
NETWORK = "podlab"
TOP_DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
MARK = "0x2000/0x2000"  # 1 << markMasqBit (13)
MULTIPORT_MAX = 15  # iptables' multiport takes at most 15 ports per rule


def dn_chain(network: str, container_id: str) -> str:
    return ("CNI-DN-" + hashlib.sha512((network + container_id).encode()).hexdigest())[:28]


def node_rules(node: str, host_ports: Sequence[HostPortPlan], container_ids: dict[str, str],
               family: Family, cidrs: Mapping[str, str]) -> Ruleset:
    """The rules on `node` for the hostPorts of its pods (`container_ids`: pod -> id) at
    their addresses of `family`; `cidrs`: pod -> its address of `family` with the
    prefix of its CNI result (ip/len), the source portmap marks."""
    mine = [h for h in host_ports if h.node == node and h.ip_of(family)]
    six = family == IPV6
    chains: list[tuple[str, str]] = [("nat", SETMARK), ("nat", MASQ), ("nat", TOP_DNAT)]
    rules = [
        Rule("nat", SETMARK, ("-m", "comment", "--comment", "CNI portfwd masquerade mark",
                              "-j", "MARK", "--set-xmark", MARK)),
        Rule("nat", MASQ, ("-m", "mark", "--mark", MARK, "-j", "MASQUERADE")),
    ]
    for pod in dict.fromkeys(h.pod for h in mine):
        entries = [h for h in mine if h.pod == pod]
        cid = container_ids[pod]
        chain = dn_chain(NETWORK, cid)
        chains.append(("nat", chain))
        comment = f'dnat name: "{NETWORK}" id: "{cid}"'
        for proto in sorted({h.protocol.lower() for h in entries}):
            ports = [str(h.host_port) for h in entries if h.protocol.lower() == proto]
            for i in range(0, len(ports), MULTIPORT_MAX):
                rules.append(Rule("nat", TOP_DNAT, (
                    "-m", "comment", "--comment", comment, "-m", "multiport", "-p", proto,
                    "--destination-ports", ",".join(ports[i:i + MULTIPORT_MAX]), "-j", chain)))
        for h in entries:
            ip = h.ip_of(family)
            base = ("-p", h.protocol.lower(), "--dport", str(h.host_port))
            rules.append(Rule("nat", chain, (*base, "-s", cidrs[pod], "-j", SETMARK)))
            if not six:
                rules.append(Rule("nat", chain, (*base, "-s", "127.0.0.1", "-j", SETMARK)))
            target = f"[{ip}]:{h.container_port}" if six else f"{ip}:{h.container_port}"
            rules.append(Rule("nat", chain, (*base, "-j", "DNAT", "--to-destination", target)))
    entry = ("-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT)
    appends = (Rule("nat", "PREROUTING", entry), Rule("nat", "OUTPUT", entry))
    jumps = (Rule("nat", "POSTROUTING", ("-m", "comment", "--comment",
                                         "CNI portfwd requiring masquerade", "-j", MASQ)),)
    version = 6 if six else 4
    if not mine:
        return Ruleset(OWNER, node, (), (), (), family=version)
    localnet = () if six else tuple(dict.fromkeys(str(h.ip_of(family)) for h in mine))
    udp = tuple(UdpTarget("", h.host_port, frozenset({str(h.ip_of(family))}))
                for h in mine if h.protocol.upper() == "UDP")
    return Ruleset(OWNER, node, tuple(chains), jumps, tuple(rules), appends, family=version,
                   localnet=localnet, udp=udp)
