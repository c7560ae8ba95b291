"""kube-proxy's iptables mode, as data: the rules it writes on one node for the plan's
Services. Pure.

The chains, names and rules follow kube-proxy's iptables proxier (pkg/proxy/iptables) with
its defaults: masquerade bit 14 (mark 0x4000), local traffic detected by the cluster CIDR
(the pod CIDR), NodePorts on 127.0.0.1 in IPv4 (`--iptables-localhost-nodeports=true`: the
node gets `net.ipv4.conf.all.route_localnet=1`, the last KUBE-SERVICES rule has no
`! -d 127.0.0.0/8`, and filter KUBE-FIREWALL drops what else reaches 127.0.0.0/8 from
outside, jumped to from INPUT and OUTPUT), MASQUERADE with --random-fully, no session
affinity.

    PREROUTING, OUTPUT -> KUBE-SERVICES
      -d clusterIP --dport port                 -> KUBE-SVC-<hash>  (one per Service port)
      (last) --dst-type LOCAL                    -> KUBE-NODEPORTS
    KUBE-NODEPORTS  --dport nodePort             -> KUBE-EXT-<hash>
    KUBE-EXT-<hash> Cluster: KUBE-MARK-MASQ, then KUBE-SVC-<hash>
                    Local:   pod sources -> KUBE-SVC; the node's own -> MARK-MASQ, KUBE-SVC;
                             the rest -> KUBE-SVL-<hash> (this node's endpoints only), and
                             with none here, filter KUBE-EXTERNAL-SERVICES drops it
    KUBE-SVC-<hash> ! -s clusterCIDR -> KUBE-MARK-MASQ; then one rule per endpoint,
                    `-m statistic --mode random --probability 1/n` (n endpoints left)
    KUBE-SEP-<hash> -s itself -> KUBE-MARK-MASQ (hairpin); DNAT --to-destination ip:port
    POSTROUTING -> KUBE-POSTROUTING: marked 0x4000 -> MASQUERADE

Chain names hash the ServicePortName text (`default/web:http`) and the lower-case protocol
(with the endpoint `ip:port` for KUBE-SEP) with SHA-256, base32, 16 characters: the same
names a real kube-proxy gives the same Service.

Both families: kube-proxy runs one proxier per family, each writing the same rules into
its own family's tables (iptables, ip6tables) from the Service's ClusterIP and
EndpointSlice of that family. The names hash the same strings, so a dual-stack Service
port has the same KUBE-SVC/KUBE-EXT/KUBE-SVL names in both; a KUBE-SEP differs, its
endpoint text being `[ip]:port` in IPv6 (net.JoinHostPort), which is also its DNAT
target. The local-traffic detector is the family's pod CIDR, and IPv6 never has
localhost node ports (`! -d ::1/128`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from harness.datapath.conntrack import UdpTarget
from harness.datapath.iptables import Rule, Ruleset
from harness.model.addressing import IPV4, IPV6, Family
from harness.plan.services import Endpoint, ServicePlan, ServicePortPlan

OWNER = "kube-proxy"
MASQ_MARK = "0x4000"  # 1 << --iptables-masquerade-bit (14)
SERVICES = "KUBE-SERVICES"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL = "KUBE-FIREWALL"  # kubelet's chain, which kube-proxy ensures too
ROUTE_LOCALNET = ("net.ipv4.conf.all.route_localnet", "1")  # for localhost node ports
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def svc_chain(port_name: str, protocol: str) -> str:
    """KUBE-SVC-: every endpoint (the Cluster policy)."""
    return "KUBE-SVC-" + _hash(port_name + protocol.lower())


def svl_chain(port_name: str, protocol: str) -> str:
    """KUBE-SVL-: this node's endpoints (the Local policy)."""
    return "KUBE-SVL-" + _hash(port_name + protocol.lower())


def ext_chain(port_name: str, protocol: str) -> str:
    """KUBE-EXT-: where node-port traffic goes first."""
    return "KUBE-EXT-" + _hash(port_name + protocol.lower())


def sep_chain(port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-: one endpoint's DNAT."""
    return "KUBE-SEP-" + _hash(port_name + protocol.lower() + endpoint)


def probability(n: int) -> str:
    """kube-proxy's text for 1/n."""
    return f"{1.0 / n:0.10f}"


def _jumps() -> tuple[Rule, ...]:
    """kube-proxy's iptablesJumpChains, in the order it ensures them (each to the top)."""
    new = ("-m", "conntrack", "--ctstate", "NEW")

    def jump(table: str, src: str, dst: str, comment: str, extra: tuple[str, ...] = ()
             ) -> Rule:
        return Rule(table, src, (*extra, "-m", "comment", "--comment", comment, "-j", dst))

    portals = "kubernetes service portals"
    external = "kubernetes externally-visible service portals"
    firewall = "kubernetes load balancer firewall"
    return (
        jump("filter", "INPUT", EXTERNAL_SERVICES, external, new),
        jump("filter", "FORWARD", EXTERNAL_SERVICES, external, new),
        jump("filter", "INPUT", NODEPORTS, "kubernetes health check service ports"),
        jump("filter", "FORWARD", SERVICES, portals, new),
        jump("filter", "OUTPUT", SERVICES, portals, new),
        jump("filter", "FORWARD", FORWARD, "kubernetes forwarding rules"),
        jump("filter", "INPUT", PROXY_FIREWALL, firewall, new),
        jump("filter", "OUTPUT", PROXY_FIREWALL, firewall, new),
        jump("filter", "FORWARD", PROXY_FIREWALL, firewall, new),
        jump("nat", "OUTPUT", SERVICES, portals),
        jump("nat", "PREROUTING", SERVICES, portals),
        jump("nat", "POSTROUTING", POSTROUTING, "kubernetes postrouting rules"),
        # iptablesKubeletJumpChains, ensured after the above: no comment
        Rule("filter", "INPUT", ("-j", KUBELET_FIREWALL)),
        Rule("filter", "OUTPUT", ("-j", KUBELET_FIREWALL)),
    )


class _Writer:
    def __init__(self) -> None:
        self.chains: list[tuple[str, str]] = [
            *(("filter", c) for c in (SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS,
                                      PROXY_FIREWALL)),
            *(("nat", c) for c in (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ))]
        self.rules: list[Rule] = []

    def chain(self, name: str) -> None:
        self.chains.append(("nat", name))

    def nat(self, chain: str, *args: str) -> None:
        self.rules.append(Rule("nat", chain, args))

    def filter(self, chain: str, *args: str) -> None:
        self.rules.append(Rule("filter", chain, args))


LOCALHOST = {IPV4: "127.0.0.0/8", IPV6: "::1/128"}


def node_rules(node: str, services: Sequence[ServicePlan], cluster_cidr: str,
               family: Family = IPV4) -> Ruleset:
    """Everything kube-proxy's proxier of `family` writes on `node`, in the order it
    writes it: the Services of that family, each as that family sees it (its ClusterIP
    and endpoints of the family); `cluster_cidr`: the family's pod CIDR."""
    services = [s.of_family(family) for s in services if family in s.ip_families]
    w = _Writer()
    w.nat(POSTROUTING, "-m", "mark", "!", "--mark", f"{MASQ_MARK}/{MASQ_MARK}", "-j", "RETURN")
    # clear the mark, so a packet that goes through the stack again is not masqueraded twice
    w.nat(POSTROUTING, "-j", "MARK", "--xor-mark", MASQ_MARK)
    w.nat(POSTROUTING, "-m", "comment", "--comment", "kubernetes service traffic requiring SNAT",
          "-j", "MASQUERADE", "--random-fully")
    w.nat(MARK_MASQ, "-j", "MARK", "--or-mark", MASQ_MARK)
    # the chain exists in both families (EnsureChain for the jumps); the rule that closes
    # route_localnet's hole only where localhost node ports are (IPv4)
    w.chains.append(("filter", KUBELET_FIREWALL))
    if family == IPV4:
        w.filter(KUBELET_FIREWALL, "-m", "comment", "--comment",
                 "block incoming localnet connections", "-d", "127.0.0.0/8",
                 "!", "-s", "127.0.0.0/8", "-m", "conntrack",
                 "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
    for svc in services:
        for port in svc.ports:
            _service_port(w, node, svc, port, cluster_cidr)
    # localhost node ports: IPv4 has them (the default), IPv6 never
    not_localhost = ("!", "-d", LOCALHOST[IPV6]) if family == IPV6 else ()
    w.nat(SERVICES, "-m", "comment", "--comment",
          "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
          "-m", "addrtype", "--dst-type", "LOCAL", *not_localhost, "-j", NODEPORTS)
    w.filter(FORWARD, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
    w.filter(FORWARD, "-m", "comment", "--comment", "kubernetes forwarding rules",
             "-m", "mark", "--mark", f"{MASQ_MARK}/{MASQ_MARK}", "-j", "ACCEPT")
    w.filter(FORWARD, "-m", "comment", "--comment", "kubernetes forwarding conntrack rule",
             "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    filter_rules = [r for r in w.rules if r.table == "filter"]
    nat_rules = [r for r in w.rules if r.table == "nat"]
    return Ruleset(OWNER, node, tuple(w.chains), _jumps(), (*filter_rules, *nat_rules),
                   prunes=SERVICE_CHAIN_PREFIXES, family=6 if family == IPV6 else 4,
                   udp=udp_targets(node, services))


def udp_targets(node: str, services: Sequence[ServicePlan]) -> tuple[UdpTarget, ...]:
    """What kube-proxy's conntrack cleanup watches on `node` (each Service as its family
    sees it): every UDP ClusterIP and port with the endpoints behind it, and every UDP
    node port with those it sends external traffic to (Local: this node's)."""
    out = []
    for svc in services:
        for port in svc.ports:
            if port.protocol.upper() != "UDP":
                continue
            everyone = frozenset(e.ip for e in port.endpoints)
            out.append(UdpTarget(svc.cluster_ip, port.port, everyone))
            if svc.type == "NodePort" and port.node_port is not None:
                external = (frozenset(e.ip for e in port.local_endpoints(node))
                            if svc.local_policy else everyone)
                out.append(UdpTarget("", port.node_port, external))
    return tuple(out)


def _service_port(w: _Writer, node: str, svc: ServicePlan, port: ServicePortPlan,
                  cidr: str) -> None:
    name = svc.port_name(port)
    proto = port.protocol.lower()
    match = ("-m", proto, "-p", proto)
    cluster = svc_chain(name, proto)
    local = svl_chain(name, proto)
    external = ext_chain(name, proto)
    everyone = port.endpoints
    here = port.local_endpoints(node) if svc.local_policy else ()
    has_endpoints = bool(everyone)
    external_ok = bool(here) if svc.local_policy else has_endpoints
    node_port = port.node_port if svc.type == "NodePort" else None
    no_endpoints = f"{name} has no endpoints"
    no_local = f"{name} has no local endpoints"

    if has_endpoints:  # capture the clusterIP
        w.nat(SERVICES, "-m", "comment", "--comment", f"{name} cluster IP", *match,
              "-d", svc.cluster_ip, "--dport", str(port.port), "-j", cluster)
    else:
        w.filter(SERVICES, "-m", "comment", "--comment", no_endpoints, *match,
                 "-d", svc.cluster_ip, "--dport", str(port.port), "-j", "REJECT")
    if node_port is not None:  # capture the node port
        if has_endpoints:
            w.nat(NODEPORTS, "-m", "comment", "--comment", name, *match,
                  "--dport", str(node_port), "-j", external)
        if not external_ok:
            w.filter(EXTERNAL_SERVICES, "-m", "comment", "--comment",
                     no_local if has_endpoints else no_endpoints,
                     "-m", "addrtype", "--dst-type", "LOCAL", *match,
                     "--dport", str(node_port), "-j", "DROP" if has_endpoints else "REJECT")
    if not has_endpoints:
        return
    # traffic to the clusterIP from outside the pod network (a node, say) is masqueraded
    w.nat(cluster, "-m", "comment", "--comment", f"{name} cluster IP", *match,
          "-d", svc.cluster_ip, "--dport", str(port.port), "!", "-s", cidr, "-j", MARK_MASQ)
    if node_port is not None:
        w.chain(external)
        if not svc.local_policy:
            w.nat(external, "-m", "comment", "--comment",
                  f"masquerade traffic for {name} external destinations", "-j", MARK_MASQ)
        else:
            w.nat(external, "-m", "comment", "--comment",
                  f"pod traffic for {name} external destinations", "-s", cidr, "-j", cluster)
            w.nat(external, "-m", "comment", "--comment",
                  f"masquerade LOCAL traffic for {name} external destinations",
                  "-m", "addrtype", "--src-type", "LOCAL", "-j", MARK_MASQ)
            w.nat(external, "-m", "comment", "--comment",
                  f"route LOCAL traffic for {name} external destinations",
                  "-m", "addrtype", "--src-type", "LOCAL", "-j", cluster)
        if external_ok:
            w.nat(external, "-j", local if svc.local_policy else cluster)
    w.chain(cluster)
    _balance(w, cluster, name, proto, everyone)
    if here:
        w.chain(local)
        _balance(w, local, name, proto, here)
    for ep in everyone:  # every endpoint is reachable through KUBE-SVC
        sep = sep_chain(name, proto, ep.address)
        w.chain(sep)
        w.nat(sep, "-m", "comment", "--comment", name, "-s", ep.ip, "-j", MARK_MASQ)
        w.nat(sep, "-m", "comment", "--comment", name, *match,
              "-j", "DNAT", "--to-destination", ep.address)


def _balance(w: _Writer, chain: str, name: str, proto: str,
             endpoints: Sequence[Endpoint]) -> None:
    """One rule per endpoint; the i-th matches with probability 1/(n-i), the last always,
    so each endpoint gets 1/n of new connections."""
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        stat = (("-m", "statistic", "--mode", "random", "--probability", probability(n - i))
                if i < n - 1 else ())
        w.nat(chain, "-m", "comment", "--comment", f"{name} -> {ep.address}", *stat,
              "-j", sep_chain(name, proto, ep.address))


def is_service_chain(chain: str) -> bool:
    return chain.startswith(SERVICE_CHAIN_PREFIXES)
