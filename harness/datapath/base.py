"""`Datapath`: the interface, and today's wiring as its implementation.

`routing: static` (the plan's shortest-path routes, installed by podlab) and
`cni: podlab` (one veth per pod, its node end on the node's bridge cbr0, which holds the
first address of the node's pod CIDR). The description half (`describe` and the methods
it calls) is pure; the apply half talks to the kernel through harness.host.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from harness.datapath import conntrack, kubeproxy, services
from harness.datapath.iptables import Ruleset
from harness.datapath.net import (
    Convergence,
    LabNet,
    Masquerade,
    NodeNet,
    Pair,
    PodNet,
    Route,
    Settings,
)
from harness.errors import DeployError
from harness.host import firewall, wiring
from harness.host.faultlog import NO_FAULTS, Faults
from harness.kinds import kind
from harness.model.addressing import IPV6, family_of
from harness.plan import POD_IFACE, SWITCH_BRIDGE, NodePlan, Plan, PodPlan

NODE_CAPS: tuple[str, ...] = ("NET_ADMIN", "NET_RAW")
# Pod containers: NET_RAW for ping/raw sockets; no NET_ADMIN, as in a default pod. The
# infra container needs none: podlab configures the pod's namespace from the host side.
POD_CAPS: tuple[str, ...] = ("NET_RAW",)
INFRA_CAPS: tuple[str, ...] = ()
# rp_filter off: with masquerade and multi-path fabrics a reply may come back on another
# interface than the strict reverse path, which is legitimate in the lab.
RP_FILTER_OFF: tuple[Pair, ...] = (("net.ipv4.conf.all.rp_filter", "0"),
                                   ("net.ipv4.conf.default.rp_filter", "0"))
# Every device of the lab answers every probe of the `path` check: no per-destination ICMP
# error rate limit (1 s a peer by default, after a burst of 6) and a namespace-wide budget
# far above what a verify sends (1,000 a second, burst 50, by default). Per namespace:
# the host's own limits stay as they are.
ICMP_ANSWERS: tuple[Pair, ...] = (("net.ipv4.icmp_ratelimit", "0"),
                                  ("net.ipv4.icmp_msgs_per_sec", "1000000"),
                                  ("net.ipv4.icmp_msgs_burst", "1000000"))
ICMP6_ANSWERS: tuple[Pair, ...] = (("net.ipv6.icmp.ratelimit", "0"),)
# A pod does not route, and may ping without NET_RAW (a sysctl Kubernetes counts as safe).
POD_SYSCTLS: tuple[Pair, ...] = (("net.ipv4.ping_group_range", "0 2147483647"),
                                 ("net.ipv4.ip_forward", "0"), *ICMP_ANSWERS)
# IPv6, in a namespace that has an IPv6 address: on (Docker turns it off in a container with
# no network), no duplicate address detection (an address is usable the moment it is added,
# not ~1 s later; the plan's addresses are unique by construction), no router
# advertisements (routes are the datapath's alone). For `all` and `default`, so links
# created later inherit them.
IPV6_ON: tuple[Pair, ...] = tuple(
    (f"net.ipv6.conf.{scope}.{key}", value) for scope in ("all", "default")
    for key, value in (("disable_ipv6", "0"), ("accept_dad", "0"), ("accept_ra", "0")))
IPV6_FORWARDING = "net.ipv6.conf.all.forwarding"
READY_TIMEOUT_S = 60.0
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
BRIDGE_NF6 = "net.bridge.bridge-nf-call-ip6tables"


class Datapath:
    """How a plan becomes each namespace's network, and how that is applied.

    Subclasses override the part they change: a routing datapath `routes` (and
    `daemons`, `ready_routes`, `apply_node`, `after_deploy`), a CNI datapath `pod_net`,
    `pod_bridge`, `pod_added` and `pod_removed`. harness.datapath.select combines one of
    each by inheritance, so each override calls super() where it adds to the base.
    """

    routing = "static"
    cni = "podlab"
    # True: the pods' addresses are what pod_added returns (a CNI plugin's IPAM picked
    # them), not the plan's
    assigns_addresses = False

    @property
    def name(self) -> str:
        return f"routing: {self.routing}, cni: {self.cni}"

    # ------------------------------------------------------------------ description (pure)

    def describe(self, plan: Plan) -> LabNet:
        """Every namespace of the plan: nodes, then pods, in plan order."""
        return LabNet(self.name, tuple(self.node_net(plan, n) for n in plan.nodes),
                      tuple(self.pod_net(plan, p) for p in plan.pods))

    def node_net(self, plan: Plan, node: NodePlan) -> NodeNet:
        k = kind(node.kind)
        rulesets = self.service_rules(plan, node)
        # kube-proxy needs bridged pod traffic to pass iptables (br_netfilter): a reply
        # from a pod to a pod of the same bridge must meet its conntrack entry
        bridge_nf = ((BRIDGE_NF, "1"),) if rulesets else ()
        if any(rs.family == 6 for rs in rulesets):  # the same for ip6tables' Services
            bridge_nf += ((BRIDGE_NF6, "1"),)
        if any(rs.owner == kubeproxy.OWNER and rs.family == 4 for rs in rulesets):
            bridge_nf += (kubeproxy.ROUTE_LOCALNET,)  # its localhost node ports
        settings = Settings((*self.node_sysctls(node), *bridge_nf), NODE_CAPS)
        if node.run is not None:  # the user's node: its links up, the rest is its own
            return NodeNet(node.name, node.kind, Settings(node.run.sysctls, node.run.cap_add),
                           up=tuple(i.name for i in node.interfaces))
        if k.is_switch:  # one L2 bridge over every port: no address, no route
            bridge = node.bridge or SWITCH_BRIDGE
            return NodeNet(node.name, node.kind, settings, bridges=(bridge,),
                           ports=tuple((i.name, bridge) for i in node.interfaces))
        bridges, pod_addresses = self.pod_bridge(plan, node)
        return NodeNet(
            node.name, node.kind, settings, bridges=bridges,
            addresses=(*pod_addresses,
                       *((i.name, a) for i in node.interfaces for a in i.addresses)),
            up=tuple(i.name for i in node.interfaces if not i.addresses),
            routes=(*self.routes(plan, node), *self.service_routes(plan, node)),
            nat=self.masquerade(plan, node), rulesets=rulesets,
            daemons=(), ready_routes=self.ready_routes(plan, node))

    def node_sysctls(self, node: NodePlan) -> tuple[Pair, ...]:
        # forwarding said either way: a new namespace may inherit the host's 1, and a
        # `linux` host or a switch that routed would break the plan's paths
        forward = "1" if node.forwards else "0"
        out = (*RP_FILTER_OFF, ("net.ipv4.ip_forward", forward), *ICMP_ANSWERS)
        if IPV6 in node.families:
            out += (*IPV6_ON, (IPV6_FORWARDING, forward), *ICMP6_ANSWERS)
        return out

    def routes(self, plan: Plan, node: NodePlan) -> tuple[Route, ...]:
        """routing: static — the plan's routes (to segments and to other pod CIDRs)."""
        return tuple((r.dst, r.via) for r in node.routes)

    def ready_routes(self, plan: Plan, node: NodePlan) -> tuple[str, ...]:
        """Static routes are installed by apply_node itself: nothing to wait for."""
        return ()

    def masquerade(self, plan: Plan, node: NodePlan) -> tuple[Masquerade, ...]:
        """A k8s-node's masquerade. `masquerade: true`: podlab's rule (its pods' traffic
        to anything but the pod CIDR and the k8s-nodes' addresses), once per family
        (iptables, ip6tables) with the same semantics in each. ip-masq-agent's config:
        the agent's own rules (every non-local destination but its non-masquerade CIDRs,
        from any source, MASQUERADE --random-fully), as its chain has it in each family
        of the cluster (ip6tables as the agent's --enable-ipv6 writes it)."""
        if not kind(node.kind).hosts_pods:
            return ()
        if plan.masq_agent_exempt is not None:
            return tuple(Masquerade(None, tuple(c for c in plan.masq_agent_exempt
                                                if family_of(c) == family),
                                    firewall.AGENT_CHAIN, not_local=True, random_fully=True,
                                    family=6 if family == IPV6 else 4, agent=True)
                         for family in plan.families)
        if not node.masquerade_exempt or not node.pod_cidr:
            return ()
        return tuple(Masquerade(cidr, node.masquerade_exempt_of(family_of(cidr)),
                                firewall.CHAIN) for cidr in node.pod_cidrs)

    def service_rules(self, plan: Plan, node: NodePlan) -> tuple[Ruleset, ...]:
        """kube-proxy (iptables mode) on every k8s-node, portmap where pods have hostPorts;
        the same whatever the routing or CNI, as in a real cluster."""
        if not kind(node.kind).hosts_pods:
            return ()
        return services.node_rulesets(plan, node.name)

    def service_routes(self, plan: Plan, node: NodePlan) -> tuple[Route, ...]:
        """A k8s-node's route to the service CIDR, out of its first interface as a default
        route would be: a packet the node itself sends to a ClusterIP must have a route
        before OUTPUT's DNAT turns it into one to an endpoint (pods send theirs to the
        node, whose PREROUTING DNATs them). One per family the Services use."""
        if not plan.services or not kind(node.kind).hosts_pods:
            return ()
        out: list[Route] = []
        used = {f for s in plan.services for f in s.ip_families}
        for family in (f for f in plan.families if f in used):
            cidr = plan.service_cidr_of(family)
            first = next((i.name for i in node.interfaces if i.address_of(family)),
                         node.bridge)
            if cidr and first:
                out.append((cidr, "", first))
        return tuple(out)

    def pod_bridge(self, plan: Plan, node: NodePlan) -> tuple[tuple[str, ...], tuple[Pair, ...]]:
        """cni: podlab — a k8s-node's bridge and its addresses (the pods' gateway, in
        every family)."""
        if kind(node.kind).hosts_pods and node.bridge and node.gateway:
            return (node.bridge,), tuple((node.bridge, g) for g in node.gateways)
        return (), ()

    def pod_net(self, plan: Plan, pod: PodPlan) -> PodNet:
        """cni: podlab — a veth from the node, the pod's address, a default route via
        the node's bridge."""
        if pod.host_network:
            return host_network_pod(pod)
        bridge = plan.node(pod.node).bridge
        sysctls = POD_SYSCTLS
        if IPV6 in pod.families:
            sysctls += (*IPV6_ON, (IPV6_FORWARDING, "0"), *ICMP6_ANSWERS)
        return PodNet(pod.name, pod.node, infra=Settings(sysctls, INFRA_CAPS),
                      containers=Settings((), POD_CAPS),
                      veth=(pod.node_iface, POD_IFACE),
                      node_port=(pod.node_iface, bridge) if bridge else None,
                      addresses=tuple((POD_IFACE, c) for c in pod.cidrs),
                      routes=tuple(("default", g) for g in pod.gateways),
                      hairpin=bool(plan.services) and bridge is not None)

    # ------------------------------------------------------------------ apply (kernel)

    def prepare(self, plan: Plan) -> None:
        """Before deploy starts any container: check what the host must have (e.g. a
        CNI's plugins; EnvironmentProblem, exit 3) and clear what a crashed earlier lab
        of the same name left outside its containers."""

    def observed(self, plan: Plan) -> Plan:
        """The plan of the running lab as verify must expect it: here the plan itself; a
        CNI datapath puts in the addresses its plugins gave the pods."""
        return plan

    def readdressed(self, plan: Plan, found: Mapping[str, str | Sequence[str]]) -> Plan:
        """Pure: the plan with the addresses pod_added returned (`{pod: (a.b.c.d/len,
        ...)}`, every family's), when the datapath `assigns_addresses`; here the plan's
        own are the pods'."""
        return plan

    def sync_services(self, pid: int, node: str, rulesets: Iterable[Ruleset]) -> None:
        """kube-proxy's (and portmap's) sync on one node: refill their chains with
        `rulesets` and delete the per-endpoint chains an earlier sync made that are gone
        (an endpoint that moved to another address); idempotent."""
        rulesets = tuple(rulesets)
        for rs in rulesets:
            six = _ip6tables(rs)
            drop = rs.stale(firewall.saved(pid, **six)) if rs.prunes else ()
            firewall.restore(pid, rs.restore_text(drop=drop),
                             rs.restore_text(jumps=False, drop=drop), rs.chains[0],
                             where=f"{rs.owner} on {node}", **six)
            route_localnet(pid, rs)
        clear_stale_udp(pid, rulesets)

    def apply_node(self, pid: int, node: NodeNet, pods: Iterable[PodNet] = ()) -> None:
        """Configure the node's namespace (its links exist); idempotent. `pods`: pods
        whose node end exists already and joins the bridge too (fault recovery)."""
        if node.daemons:
            raise NotImplementedError(f"{type(self).__name__} describes daemons for "
                                      f"{node.name} but does not start them")
        ports = tuple(p.node_port for p in pods if p.node_port)
        wiring.configure(pid, wiring.NetConfig(
            bridges=node.bridges, ports=(*node.ports, *ports), addresses=node.addresses,
            routes=node.routes, up=node.up,
            hairpin=tuple(p.node_port[0] for p in pods if p.node_port and p.hairpin)))
        for rule in node.nat:
            firewall.masquerade(pid, rule.source, rule.exempt, rule.chain, where=node.name,
                                **rule.how)
        for rs in node.rulesets:  # endpoints that moved since: sync_services
            firewall.restore(pid, rs.restore_text(), rs.restore_text(jumps=False),
                             rs.chains[0], where=f"{rs.owner} on {node.name}",
                             **_ip6tables(rs))
            route_localnet(pid, rs)

    def pod_added(self, node_pid: int, pod_pid: int, pod: PodNet, container_id: str = ""
                  ) -> tuple[str, ...]:
        """The pod's "CNI ADD": its namespace gets its address and route, then its node
        end joins the bridge (from then on the pod is reachable). The veth exists (deploy
        made `pod.veth`); idempotent. `container_id`: the pod's infra container (a CNI's
        CNI_CONTAINERID). Returns the addresses the pod got when the datapath
        `assigns_addresses` (a.b.c.d/len), else (). A hostNetwork pod has nothing to add."""
        if pod.host_network:
            return ()
        wiring.configure(pod_pid, wiring.NetConfig(addresses=pod.addresses,
                                                   routes=pod.routes))
        if pod.node_port:
            wiring.configure(node_pid, wiring.NetConfig(
                ports=(pod.node_port,), hairpin=(pod.node_port[0],) if pod.hairpin else ()))
        return ()

    def pod_removed(self, node_pid: int | None, pod_pid: int | None, pod: PodNet) -> None:
        """The pod's "CNI DEL". podlab's veth goes with the pod's namespace: nothing to do."""

    def after_deploy(self, net: LabNet, pids: Mapping[str, int],
                     timeout: float = READY_TIMEOUT_S) -> None:
        """Once every namespace is applied: wait until each node's kernel has its
        `ready_routes` (DeployError naming what is missing). `pids`: node name -> pid."""
        wait_routes(net, pids, timeout)

    def converged(self, plan: Plan, pids: Mapping[str, int],
                  timeout: float = READY_TIMEOUT_S, injected: Faults = NO_FAULTS
                  ) -> Convergence:
        """Before verify: the plan to expect now, once routing settled after any fault.
        Static routes do not move (a pulled cable fails the pairs that crossed it), so
        the plan is what it was. `pids`: node name -> pid of the running nodes;
        `injected`: the faults podlab injected (harness.host.faultlog)."""
        return Convergence(plan)


def host_network_pod(pod: PodPlan) -> PodNet:
    """A hostNetwork pod: its containers join its node's namespace; no sysctl (they would
    be the node's), no veth, no address, no route of its own."""
    return PodNet(pod.name, pod.node, infra=Settings((), INFRA_CAPS),
                  containers=Settings((), POD_CAPS), veth=None, node_port=None,
                  host_network=True)


def wait_routes(net: LabNet, pids: Mapping[str, int], timeout: float) -> None:
    """Poll each node's main table until it has a route to each of its ready_routes."""
    missing = {n.name: set(n.ready_routes) for n in net.nodes if n.ready_routes}
    deadline = time.monotonic() + timeout
    while True:
        for name in list(missing):
            missing[name] -= {dst for dst, _, _ in wiring.routes(pids[name])}
            if not missing[name]:
                del missing[name]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if missing:
        what = "; ".join(f"{n}: {', '.join(sorted(d))}" for n, d in sorted(missing.items()))
        raise DeployError(f"routes not installed after {timeout:g}s ({net.datapath}): {what}")


def clear_stale_udp(pid: int, rulesets: Iterable[Ruleset]) -> int:
    """After a sync, kube-proxy's and portmap's conntrack cleanup: delete the UDP entries
    toward an endpoint that is gone (harness.datapath.conntrack); how many went."""
    targets = tuple(t for rs in rulesets for t in rs.udp)
    if not targets:
        return 0
    return wiring.conntrack_delete(pid, conntrack.stale(wiring.conntrack(pid), targets))


def route_localnet(pid: int, rs: Ruleset) -> None:
    """portmap's enableLocalnetRouting: route_localnet=1 on the interface the node routes
    each of `rs.localnet` by (none while the pod has no route yet: as portmap, nothing)."""
    for ip in rs.localnet:
        dev = wiring.route_dev(pid, ip)
        if dev and dev != "lo":
            wiring.sysctl(pid, f"net.ipv4.conf.{dev}.route_localnet", "1")


def _ip6tables(rs: Ruleset) -> dict[str, int]:
    """firewall's keyword for an IPv6 ruleset (ip6tables); none for IPv4, its default."""
    return {"family": 6} if rs.family == 6 else {}
