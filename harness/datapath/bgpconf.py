"""`routing: bgp`, the pure half: speakers, their bird.conf, and what BIRD converges to.

`cluster.bgp.mode` says who speaks. node-mesh (the default, Calico's) and
route-reflectors: the k8s-nodes (and the reflectors) in one AS, iBGP over the nodes' own
addresses, as Calico's confd writes it (`_ibgp_speakers`, `_ibgp_conf`, `_ibgp_routes`);
routers that do not speak keep the plan's static routes. per-link, below:

Every node whose kind learns pod routes (k8s-nodes and routers) is a BGP *speaker* with
its own private AS, in file order from 64512 (4200000000 when a lab has more speakers
than the 2-byte private range holds). A speaker peers, over eBGP, with every other
speaker on each of its links and switch segments, at their addresses there. It
originates its pod CIDR the way Calico does (a blackhole static route that only BGP
sees) and the subnets of its up interfaces (BIRD's `direct` protocol), so every node
reaches every pod and every node. Its `kernel` protocol installs what BGP learned, and
only that: connected routes are the kernel's own, and no route is ever installed by
hand. `linux` hosts stay on the plan's static routes; switches are L2.

Both families, as Calico runs them (its bird.cfg and bird6.cfg): one session per family
per neighbour, each over that family's addresses on the shared link, carrying only that
family (an `ipv4` or an `ipv6` channel). Every link and segment of a dual-stack plan has
an address of each family, so the IPv6 sessions are the IPv4 ones' twins, a fault hits
both alike, and each family's next hop is the peer's own address of that family on the
link: no extended next hop (RFC 8950) and no link-local next hop to learn. The price is
two sessions per neighbour, which a lab's timers and sizes do not feel. Each family has
its own daemon, as Calico runs `bird` and `bird6`: `bird` reads bird.conf (IPv4 only),
`bird6` bird6.conf (IPv6 only), so one may die and leave the other family up. Both are
the distribution's BIRD 2 (Calico ships its own BIRD 1.6 fork; its two binaries are
BIRD 2's channels here), each with a `direct`, a `static` and a `kernel` protocol.

Convergence is a matter of seconds, not minutes: BIRD's defaults (hold 240 s, connect
retry 120 s, first connect after 5 s) suit the Internet, not a lab. Sessions here use a
3 s hold time, a 1 s keepalive and retry, and `check link`, so a cable pulled on one end
withdraws that session's routes at once; the far end of a switch segment notices within
the hold time.

`expected_routes` predicts what the daemons converge to (shortest AS paths over the
sessions that are up) for a set of down links and dead daemons: deploy waits for it and
verify knows, after a fault, which paths the packets must take.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from dataclasses import dataclass, field

from harness.host import bird
from harness.kinds import kind
from harness.model.addressing import IPV4, IPV6, Family, family_of, of_family
from harness.plan import NodePlan, Plan

PRIVATE_AS = 64512  # RFC 6996: 64512-65534 (2 bytes), 4200000000-4294967294 (4 bytes)
PRIVATE_AS_LAST = 65534
PRIVATE_AS4 = 4200000000


@dataclass(frozen=True)
class Timers:
    """BGP timers of every session, in seconds (BIRD's names)."""

    hold: int = 3  # the RFC's minimum: a silent peer is dropped after 3 s
    keepalive: int = 1
    connect_delay: int = 0  # first connect attempt right after start (BIRD: 5)
    connect_retry: int = 1  # after a refused connect: the peer's bird is not up yet (120)
    error_wait: tuple[int, int] = (1, 3)  # back-off after a session error (60, 300)
    kernel_scan: int = 10  # periodic kernel table sync; changes are pushed at once anyway

    def session_lines(self) -> list[str]:
        """The timer lines of a BGP session or template, as BIRD spells them."""
        return [f"  hold time {self.hold};",
                f"  startup hold time {self.hold};",
                f"  keepalive time {self.keepalive};",
                f"  connect delay time {self.connect_delay};",
                f"  connect retry time {self.connect_retry};",
                f"  error wait time {self.error_wait[0]}, {self.error_wait[1]};"]


@dataclass(frozen=True)
class Session:
    """One eBGP session, seen from the speaker that has it."""

    name: str  # BIRD protocol name
    peer: str  # the neighbour node
    interface: str  # this speaker's interface toward it
    local_ip: str
    peer_ip: str
    peer_as: int
    link: int  # index of this speaker's link into the segment (plan.links); -1: multihop
    peer_link: int  # the neighbour's
    family: Family = IPV4  # the one family it carries, over that family's addresses
    rr_client: bool = False  # iBGP to a route reflector's client (the reflector's side)

    @property
    def multihop(self) -> bool:
        """Between the nodes' own addresses, over the underlay (iBGP, as Calico)."""
        return self.link < 0


@dataclass(frozen=True)
class Speaker:
    node: str
    kind: str
    asn: int
    router_id: str
    interfaces: tuple[str, ...]  # addressed underlay interfaces: their subnets are announced
    originates: tuple[str, ...]  # pod CIDR(s), announced as blackhole statics (as Calico)
    sessions: tuple[Session, ...]
    lab_nets: tuple[str, ...]  # every prefix of the lab: what may be imported and exported
    families: tuple[Family, ...] = (IPV4,)  # the lab's, in the cluster's order
    mode: str = "per-link"  # cluster.bgp.mode
    pools: tuple[str, ...] = ()  # iBGP modes: the cluster's pod CIDRs, all that is exported

    def nets_of(self, family: Family) -> tuple[str, ...]:
        return tuple(n for n in self.lab_nets if family_of(n) == family)

    def originates_of(self, family: Family) -> tuple[str, ...]:
        return tuple(n for n in self.originates if family_of(n) == family)

    def sessions_of(self, family: Family) -> tuple[Session, ...]:
        return tuple(s for s in self.sessions if s.family == family)

    @property
    def ibgp(self) -> bool:
        return self.mode != PER_LINK


PER_LINK, NODE_MESH, REFLECTORS = "per-link", "node-mesh", "route-reflectors"


def is_speaker(node: NodePlan, plan: Plan | None = None) -> bool:
    """The nodes that run BIRD. per-link: those that learn pod routes (k8s-nodes,
    routers); node-mesh: the k8s-nodes; route-reflectors: the k8s-nodes and the
    reflectors. `linux` hosts and switches never do. Without `plan`: per-link's."""
    if not kind(node.kind).pod_routes:
        return False
    if plan is None or plan.bgp_mode == PER_LINK:
        return True
    return kind(node.kind).hosts_pods or node.name in plan.bgp_reflectors


def lab_prefixes(plan: Plan) -> tuple[str, ...]:
    """Every prefix a lab routes, in every family (IPv4 first): each k8s-node's pod CIDR
    and each segment's subnet."""
    nets = {ipaddress.ip_network(n) for s in plan.segments for n in s.subnets}
    return tuple(str(n) for n in sorted(nets, key=lambda n: (n.version, n)))


def _asn(index: int, count: int) -> int:
    if count <= PRIVATE_AS_LAST - PRIVATE_AS + 1:
        return PRIVATE_AS + index
    return PRIVATE_AS4 + index


def _router_id(node: NodePlan, asn: int) -> str:
    """BGP's identifier is 32 bits: the node's IPv4 address, else (an IPv6-only node) its
    AS number written as one, which no other speaker of the lab has."""
    return node.address_of(IPV4) or str(ipaddress.IPv4Address(asn))


def _symbol(text: str) -> str:
    """A BIRD symbol from node/interface names, which may hold '-' or '.'."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if name[:1].isalpha() else f"n_{name}"


def speakers(plan: Plan) -> tuple[Speaker, ...]:
    """The speakers of a plan, in file order, with their sessions (cluster.bgp.mode)."""
    if plan.bgp_mode != PER_LINK:
        return _ibgp_speakers(plan)
    chosen = [n for n in plan.nodes if is_speaker(n)]
    asn = {n.name: _asn(i, len(chosen)) for i, n in enumerate(chosen)}
    link_of = _link_index(plan)
    nets = lab_prefixes(plan)
    out = []
    for node in chosen:
        sessions: list[Session] = []
        names: set[str] = set()
        for iface in node.interfaces:
            if not iface.address:
                continue
            segment = next(s for s in plan.segments if s.name == iface.segment)
            for (peer, peer_iface, _), peer_addrs in zip(segment.members,
                                                         segment.member_addresses,
                                                         strict=True):
                if peer == node.name or peer not in asn:
                    continue
                for family in plan.families:  # a session per family both ends address
                    local, remote = iface.address_of(family), of_family(peer_addrs, family)
                    if not local or not remote:
                        continue
                    name = _symbol(f"{peer}_{iface.name}" + ("_v6" if family == IPV6 else ""))
                    while name in names:  # two sessions to one peer over one interface
                        name += "_"
                    names.add(name)
                    sessions.append(Session(
                        name=name, peer=peer, interface=iface.name,
                        local_ip=local.split("/")[0], peer_ip=remote.split("/")[0],
                        peer_as=asn[peer], link=link_of[(node.name, iface.name)],
                        peer_link=link_of[(peer, peer_iface)], family=family))
        out.append(Speaker(
            node=node.name, kind=node.kind, asn=asn[node.name],
            router_id=_router_id(node, asn[node.name]),
            interfaces=tuple(i.name for i in node.interfaces if i.address),
            originates=node.pod_cidrs,
            sessions=tuple(sessions), lab_nets=nets, families=plan.families))
    return tuple(out)


def _ibgp_speakers(plan: Plan) -> tuple[Speaker, ...]:
    """node-mesh and route-reflectors, as Calico: every speaker in the cluster's AS, iBGP
    between the nodes' own addresses (multihop, over the underlay), a session per family
    both ends address. node-mesh: every pair of k8s-nodes (Calico's `Mesh_<ip>`);
    route-reflectors: every speaker with every reflector (`Node_<ip>`), a reflector
    treating the others as its clients (reflectors peer with each other as plain iBGP)."""
    chosen = [n for n in plan.nodes if is_speaker(n, plan)]
    reflectors = set(plan.bgp_reflectors)
    nets = lab_prefixes(plan)
    out = []
    for node in chosen:
        sessions: list[Session] = []
        for peer in chosen:
            if peer.name == node.name:
                continue
            if plan.bgp_mode == REFLECTORS and not {node.name, peer.name} & reflectors:
                continue
            for family in plan.families:
                local, remote = node.address_of(family), peer.address_of(family)
                if not local or not remote:
                    continue
                prefix = "Mesh_" if plan.bgp_mode == NODE_MESH else "Node_"
                sessions.append(Session(
                    name=_symbol(prefix + remote), peer=peer.name, interface="",
                    local_ip=local, peer_ip=remote, peer_as=plan.bgp_as, link=-1,
                    peer_link=-1, family=family,
                    rr_client=node.name in reflectors and peer.name not in reflectors))
        out.append(Speaker(
            node=node.name, kind=node.kind, asn=plan.bgp_as,
            router_id=_router_id(node, plan.bgp_as + len(out)),
            interfaces=tuple(i.name for i in node.interfaces if i.address),
            originates=node.pod_cidrs, sessions=tuple(sessions), lab_nets=nets,
            families=plan.families, mode=plan.bgp_mode, pools=plan.pod_cidrs))
    return tuple(out)


def _link_index(plan: Plan) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for i, link in enumerate(plan.links):
        out[link.a] = i
        out[link.b] = i
    return out


# --------------------------------------------------------------------------- bird.conf


# Per family: the channel's name, and the names of its prefix set, static protocol and
# kernel protocol. IPv4's are those of an IPv4-only lab before IPv6 came, so its
# bird.conf is unchanged (the kernel protocol's name, BIRD's default, is `kernel1`).
CHANNEL = {IPV4: "ipv4", IPV6: "ipv6"}
NETS = {IPV4: "PODLAB_NETS", IPV6: "PODLAB_NETS6"}
STATIC = {IPV4: "pods", IPV6: "pods6"}
KERNEL = {IPV4: "", IPV6: " kernel6"}
TEMPLATE = {IPV4: "peer", IPV6: "peer6"}


# the daemon of each family, as Calico names them
DAEMON_OF = {IPV4: bird.DAEMON, IPV6: bird.DAEMON6}


def daemon_families(sp: Speaker) -> tuple[Family, ...]:
    """The families a speaker runs a daemon for: those its lab routes."""
    return tuple(f for f in sp.families if sp.nets_of(f))


def bird_conf(sp: Speaker, lab: str, timers: Timers = Timers(),
              family: Family | None = None) -> str:
    """The configuration of one speaker's daemon of `family` (bird.conf for IPv4,
    bird6.conf for IPv6); None: every family in one (one BIRD 2 could run them all)."""
    fams = [f for f in daemon_families(sp) if family is None or f == family]
    log = bird.log_path(DAEMON_OF[family]) if family else bird.LOG_PATH
    if sp.ibgp:
        return _ibgp_conf(sp, lab, timers, fams, log)
    lines = [
        f"# bird.conf of {sp.node} ({sp.kind}, AS{sp.asn}) in lab {lab}: written by podlab",
        "# from the plan (harness/datapath/bgpconf.py); every session is eBGP to a neighbour"
        + ("," if len(fams) > 1 else "."),
        *(["# one per family, over that family's addresses on the link."]
          if len(fams) > 1 else []),
        f'log "{log}" {{ info, remote, warning, error, auth, fatal, bug }};',
        f"router id {sp.router_id};",
        "",
        "# the lab's prefixes: pod CIDRs and underlay subnets; nothing else is exchanged",
    ]
    for f in fams:
        nets = ",\n  ".join(sp.nets_of(f))
        lines.append(f"define {NETS[f]} = [\n  {nets}\n];")
    lines += ["", "protocol device { scan time 10; }", ""]
    if sp.interfaces:
        ifaces = ", ".join(f'"{i}"' for i in sp.interfaces)
        lines += ["# the subnets of this node's links and segments, while the interface is up",
                  "protocol direct underlay {", *(f"  {CHANNEL[f]};" for f in fams),
                  f"  interface {ifaces};", "}", ""]
    for f in fams:
        if not sp.originates_of(f):
            continue
        if f == fams[0]:
            lines += ["# this node's pod CIDR, announced as Calico does: a blackhole that only",
                      "# BGP sees (the kernel routes it to cbr0 already)"]
        lines += [f"protocol static {STATIC[f]} {{", f"  {CHANNEL[f]};"]
        lines += [f"  route {cidr} blackhole;" for cidr in sp.originates_of(f)]
        lines += ["}", ""]
    lines.append("# install what BGP learned, and only that")
    for f in fams:
        lines += [
            f"protocol kernel{KERNEL[f]} {{",
            f"  scan time {timers.kernel_scan};",
            f"  {CHANNEL[f]} {{ import none; export where source = RTS_BGP; }};",
            "}",
            "",
        ]
    for f in fams:
        lines += [
            f"template bgp {TEMPLATE[f]} {{",
            f"  local as {sp.asn};",
            *timers.session_lines(),
            "  check link yes;  # a down interface drops its sessions at once",
            f"  {CHANNEL[f]} {{ import where net ~ {NETS[f]}; }};",
            "}",
        ]
        if f != fams[-1]:
            lines.append("")
    for s in sp.sessions:
        if s.family not in fams:
            continue
        lines += [
            "",
            f"protocol bgp {s.name} from {TEMPLATE[s.family]} {{",
            f'  description "{s.peer} via {s.interface}";',
            f"  neighbor {s.peer_ip} as {s.peer_as};",
            f"  local {s.local_ip};",
            f'  interface "{s.interface}";',
            # a route whose next hop is the peer itself is not offered back to it (on a
            # shared segment BGP keeps third-party next hops; BIRD would refuse to send
            # it anyway, and log an error for each)
            f"  {CHANNEL[s.family]} {{ export where net ~ {NETS[s.family]} "
            f"&& gw != {s.peer_ip}; }};",
            "}",
        ]
    return "\n".join(lines) + "\n"


POOLS = {IPV4: "PODLAB_POOLS", IPV6: "PODLAB_POOLS6"}
MESH = {IPV4: "mesh", IPV6: "mesh6"}
GR_TIME = 5  # s: graceful restart's hold of a dead peer's routes (Calico's: BIRD's 120)


def _ibgp_conf(sp: Speaker, lab: str, timers: Timers, fams: list[Family], log: str) -> str:
    """node-mesh and route-reflectors, as Calico's confd writes bird.cfg and bird6.cfg
    (in BIRD 2's words): the node's block a blackhole that BGP exports, only the pools
    exported, iBGP multihop sessions with graceful restart and recursive next hops
    resolved over the kernel's (static) underlay routes, learned into BIRD, and the BGP
    routes installed in the kernel, merged into one multipath route where paths tie."""
    what = ("iBGP with every other k8s-node (node-mesh)" if sp.mode == NODE_MESH else
            "iBGP with the route reflectors" if not any(s.rr_client for s in sp.sessions)
            else "iBGP, reflecting routes to its clients")
    lines = [
        f"# {'bird6' if fams == [IPV6] else 'bird'}.conf of {sp.node} ({sp.kind}, "
        f"AS{sp.asn}) in lab {lab}: written by podlab",
        f"# from the plan (harness/datapath/bgpconf.py), as Calico's confd: {what},",
        "# over the nodes' own addresses.",
        f'log "{log}" {{ info, remote, warning, error, auth, fatal, bug }};',
        f"router id {sp.router_id};",
        "",
        "# the cluster's pod CIDRs (Calico's IP pools): all that is exported to a peer",
    ]
    for f in fams:
        pools = ", ".join(f"{p}+" for p in sp.pools if family_of(p) == f)
        lines.append(f"define {POOLS[f]} = [ {pools} ];")
    lines += ["", f"protocol device {{ scan time {timers.kernel_scan}; }}", ""]
    if sp.interfaces:
        ifaces = ", ".join(f'"{i}"' for i in sp.interfaces)
        lines += ["# this node's subnets: they resolve the peers' next hops, never exported",
                  "protocol direct underlay {", *(f"  {CHANNEL[f]};" for f in fams),
                  f"  interface {ifaces};", "}", ""]
    for f in fams:
        if sp.originates_of(f):
            lines += ["# this node's block, as Calico: a blackhole that BGP exports",
                      f"protocol static {STATIC[f]} {{", f"  {CHANNEL[f]};",
                      *(f"  route {cidr} blackhole;" for cidr in sp.originates_of(f)),
                      "}", ""]
    for f in fams:
        lines += [
            "# the kernel's own routes (the underlay) learned, BGP's installed; where BGP",
            "# paths tie, one multipath route",
            f"protocol kernel{KERNEL[f]} {{",
            f"  scan time {timers.kernel_scan};",
            "  learn;",
            "  graceful restart;",
            "  merge paths on;",
            f"  {CHANNEL[f]} {{ import all; export where source = RTS_BGP; }};",
            "}",
            "",
        ]
    for f in fams:
        lines += [
            f"template bgp {MESH[f]} {{",
            f"  local as {sp.asn};",
            "  multihop;",
            *timers.session_lines(),
            "  graceful restart on;",
            f"  graceful restart time {GR_TIME};",
            # the blocks and what BGP learned, never a route of the kernel's inside a
            # block (a ptp pod's /32): Calico's calico_aggr exports the block alone
            f"  {CHANNEL[f]} {{ import all; export where net ~ {POOLS[f]} && "
            "(source = RTS_STATIC || source = RTS_BGP); gateway recursive; };",
            "}",
        ]
        if f != fams[-1]:
            lines.append("")
    for sess in sp.sessions:
        if sess.family not in fams:
            continue
        lines += [
            "",
            f"protocol bgp {sess.name} from {MESH[sess.family]} {{",
            f'  description "{sess.peer}";',
            f"  neighbor {sess.peer_ip} as {sess.peer_as};",
            f"  local {sess.local_ip};",
            *(["  rr client;"] if sess.rr_client else []),
            "}",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- convergence


@dataclass(frozen=True)
class Routes:
    """What each live speaker's kernel holds from BIRD once converged: prefix -> the
    next-hop addresses it may use (several when AS paths tie)."""

    by_node: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)

    def missing(self, installed: dict[str, dict[str, str | None]]) -> list[tuple[str, str]]:
        """`(node, prefix)` the kernels lack, given `installed[node][prefix] = gateway` of
        their `proto bird` routes; a route via another next hop is missing too."""
        out = []
        for node, want in self.by_node.items():
            have = installed.get(node, {})
            for prefix, hops in want.items():
                if have.get(prefix) not in hops:
                    out.append((node, prefix))
        return out

    def unexpected(self, installed: dict[str, dict[str, str | None]]) -> list[tuple[str, str]]:
        """`(node, prefix)` the kernels still hold from BIRD but should not (withdrawn)."""
        return [(node, prefix) for node, want in self.by_node.items()
                for prefix in installed.get(node, {}) if prefix not in want]


Dead = frozenset[str] | frozenset[tuple[str, str]] | frozenset[str | tuple[str, str]]


def dead_pairs(plan: Plan, dead: Dead) -> frozenset[tuple[str, Family]]:
    """`dead` as (node, family) daemons: a node name stands for all its daemons."""
    out: set[tuple[str, Family]] = set()
    for d in dead:
        if isinstance(d, tuple):
            out.add((d[0], d[1]))
        else:
            out.update((d, f) for f in plan.families)
    return frozenset(out)


def expected_routes(plan: Plan, down_links: frozenset[int] = frozenset(),
                    dead: Dead = frozenset()) -> Routes:
    """The routes BIRD converges to with `down_links` (plan.links indices) and the
    daemons of `dead` not running (their own kernels are not predicted), in every family.

    A session is up when both daemons of its family run and both ends' links are up. A
    pod CIDR is originated by its k8s-node's daemon of that family; a segment's subnet by
    every live speaker with an up link into it. Each speaker then takes, per prefix it is
    not attached to, the neighbours with the shortest AS path (breadth-first over the up
    sessions of the prefix's family), at their addresses of that family. `dead`: node
    names (every daemon) or (node, family) pairs (that family's daemon).
    """
    gone = dead_pairs(plan, dead)
    sps = {s.node: s for s in speakers(plan)}
    if plan.bgp_mode != PER_LINK:
        return _ibgp_routes(plan, sps, down_links, gone)
    live = {n: s for n, s in sps.items() if any((n, f) not in gone for f in plan.families)}
    up = {n: [x for x in s.sessions if x.peer in live and x.link not in down_links
              and x.peer_link not in down_links and (n, x.family) not in gone
              and (x.peer, x.family) not in gone] for n, s in live.items()}
    link_of = _link_index(plan)
    origin: dict[str, set[str]] = {}
    attached: dict[str, set[str]] = {n: set() for n in live}
    for n, sp in live.items():
        node = plan.node(n)
        for prefix in sp.originates:
            attached[n].add(prefix)
            if (n, family_of(prefix)) not in gone:
                origin.setdefault(prefix, set()).add(n)
        for iface in node.interfaces:
            if iface.address and link_of[(n, iface.name)] not in down_links:
                for address in iface.addresses:
                    subnet = str(ipaddress.ip_interface(address).network)
                    attached[n].add(subnet)
                    if (n, family_of(subnet)) not in gone:
                        origin.setdefault(subnet, set()).add(n)
    result: dict[str, dict[str, frozenset[str]]] = {n: {} for n in live}
    for prefix, sources in origin.items():
        family = family_of(prefix)
        over = {n: [x for x in sessions if x.family == family] for n, sessions in up.items()}
        dist = {s: 0 for s in sources}
        queue = deque(sources)
        while queue:
            u = queue.popleft()
            for sess in over[u]:
                if sess.peer not in dist:
                    dist[sess.peer] = dist[u] + 1
                    queue.append(sess.peer)
        for n in live:
            if prefix in attached[n] or n not in dist or (n, family) in gone:
                continue
            hops = frozenset(s.peer_ip for s in over[n] if dist.get(s.peer) == dist[n] - 1)
            result[n][prefix] = hops
    return Routes(result)


def _ibgp_routes(plan: Plan, sps: dict[str, Speaker], down_links: frozenset[int],
                 gone: frozenset[tuple[str, Family]]) -> Routes:
    """node-mesh and route-reflectors: a speaker learns another's pod CIDR over an up
    session with it, or through reflectors (a client's route goes to every peer of its
    reflector, another reflector's only to the clients), and installs it via the next
    hop its kernel has toward the originator's address (BGP's next hop is the
    originator's; recursive over the static underlay). A session is up while both
    daemons of its family run and neither node's own interface lost its link."""
    link_of = _link_index(plan)
    cut = {n for n in sps for i in plan.node(n).interfaces
           if i.address and link_of.get((n, i.name)) in down_links}
    reflectors = set(plan.bgp_reflectors)

    def up(a: str, b: str, family: Family) -> bool:
        return ((a, family) not in gone and (b, family) not in gone and not {a, b} & cut
                and any(s.peer == b and s.family == family for s in sps[a].sessions))

    def learns(n: str, m: str, family: Family) -> bool:
        if up(n, m, family):
            return True
        for r in reflectors & set(sps):
            if r in (n, m) or not (up(n, r, family) and up(r, m, family)):
                continue
            if m not in reflectors or n not in reflectors:  # r reflects to or from a client
                return True
        return any(up(m, ra, family) and up(ra, rb, family) and up(rb, n, family)
                   for ra in reflectors & set(sps) for rb in reflectors & set(sps)
                   if ra != rb and m not in reflectors and n not in reflectors)

    result: dict[str, dict[str, frozenset[str]]] = {}
    for n in sps:
        if all((n, f) in gone for f in plan.families):
            continue
        table: dict[str, frozenset[str]] = {}
        for m, sp in sps.items():
            for prefix in sp.originates if m != n else ():
                family = family_of(prefix)
                if (n, family) in gone or not learns(n, m, family):
                    continue
                via = next_hop_toward(plan, n, plan.node(m).address_of(family) or "")
                if via:
                    table[prefix] = frozenset({via})
        result[n] = table
    return Routes(result)


def next_hop_toward(plan: Plan, node: str, address: str) -> str | None:
    """The gateway `node`'s kernel uses for `address`: the address itself on a segment the
    node is on, else the via of its static route to that address's subnet."""
    if not address:
        return None
    ip = ipaddress.ip_address(address)
    me = plan.node(node)
    for iface in me.interfaces:
        for a in iface.addresses:
            if ip in ipaddress.ip_interface(a).network:
                return address
    for r in me.routes:
        if ip in ipaddress.ip_network(r.dst):
            return r.via
    return None


def underlay_routes(plan: Plan, node: NodePlan) -> tuple[tuple[str, str], ...]:
    """An iBGP speaker's static routes: the plan's to the segments only (its pod routes
    are BGP's)."""
    pods = {c for n in plan.k8s_nodes for c in n.pod_cidrs}
    return tuple((r.dst, r.via) for r in node.routes if r.dst not in pods)


def predicted_tables(plan: Plan, down_links: frozenset[int] = frozenset(),
                     dead: Dead = frozenset()) -> dict[str, list[str]]:
    """The destinations each node's main table holds once BIRD converged with
    `down_links` and the daemons of `dead` killed (SIGKILL: a dead daemon's kernel keeps
    the routes it had, here those of the intact lab), in every family. Connected subnets
    of up links and the node's own pod CIDRs, plus BIRD's routes on speakers and the
    plan's static routes on outside hosts. Switches have no table."""
    now = expected_routes(plan, down_links, dead).by_node
    before = expected_routes(plan).by_node if dead else now
    gone = dead_pairs(plan, dead)
    link_of = _link_index(plan)
    out: dict[str, list[str]] = {}
    for node in plan.nodes:
        if kind(node.kind).is_switch:
            continue
        table = [str(ipaddress.ip_interface(a).network) for i in node.interfaces
                 if i.address and link_of[(node.name, i.name)] not in down_links
                 for a in i.addresses]
        table += list(node.pod_cidrs)
        if not is_speaker(node, plan):
            table += [r.dst for r in node.routes]
        else:  # a dead daemon's routes stay in its kernel (those of the intact lab)
            if plan.bgp_mode != PER_LINK:
                table += [dst for dst, _ in underlay_routes(plan, node)]
            table += [p for p in before.get(node.name, {})
                      if (node.name, family_of(p)) in gone]
            table += [p for p in now.get(node.name, {})
                      if (node.name, family_of(p)) not in gone]
        out[node.name] = table
    return out
