"""Faults injected into a running lab: cable pulls, node crashes, impaired links.

An endpoint is written `A:IF` as in the topology file: a node's link (`node3:eth1`), a
node's end of a pod's veth (`node1:pv-web`) or a pod's own end (`web:eth0`).

- link-down/link-up act on both ends of the veth. The kernel drops the routes of a link
  that goes down and does not bring them back, so link-up re-applies the datapath's
  description of both namespaces (idempotent), as deploy applied it, and the neighbours
  on that segment forget the entries (ARP, IPv6 neighbour discovery) that failed while
  it was down.
- node-stop stops the node's container: its network namespace dies with it, and with it
  every veth that had an end there (its links and its pods' veths), and its hostNetwork
  pods, which live in that namespace. node-start starts it again and re-wires it: links to
  its running peers, its own configuration, NAT and Service rules, its pods' veths (a
  pod's infra container keeps its own namespace), the peers' side, then starts its
  hostNetwork pods again in the new namespace.
  With a CNI datapath the pods' links are the plugins': node-start calls DEL then ADD for
  each pod of the node, as a runtime restarting its sandboxes (the pod may get another
  address; verify expects the new one).
- daemon-kill/daemon-start: SIGKILL a node's routing daemons (routing: bgp's BIRD, one
  per family: `family` kills bird or bird6 alone), and start them again by re-applying
  the node.
- link-down, node-stop and daemon-kill are recorded (harness.host.faultlog) until undone
  (a daemon-kill of one family as `NODE/ipv4`): verify re-plans around those, and a
  fault it finds unrecorded is a failure naming it.
- netem/netem-clear shape one end's egress (see harness.host.shaping for kernels without
  sch_netem).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from harness import datapath
from harness.errors import InputError, LabNotFoundError
from harness.host import bird, faultlog, procs, runtime, shaping, wiring
from harness.kinds import kind
from harness.lab import deploy, running
from harness.plan import POD_IFACE, LinkPlan, NodePlan, Plan

STOP_SETTLE_S = 10.0


@dataclass(frozen=True)
class End:
    """One end of a veth: the namespace (node or pod name), its container, the interface."""

    name: str
    container: str
    iface: str
    is_pod: bool = False


def parse_endpoint(text: str) -> tuple[str, str]:
    name, sep, iface = text.partition(":")
    if not sep or not name or not iface:
        raise InputError(f"endpoint {text!r}: write it NAME:IFACE, e.g. node3:eth1")
    return name, iface


def _ends(plan: Plan, net: datapath.LabNet | None = None
          ) -> Iterator[tuple[End, End, LinkPlan | None]]:
    """Every veth of the plan as (end, end, link or None for a pod's veth). A pod whose
    datapath makes its link itself (a CNI plugin, `net` says) has none podlab knows."""
    net = net or datapath.describe(plan)
    for link in plan.links:
        (a, ia), (b, ib) = link.a, link.b
        yield (End(a, plan.node(a).container, ia), End(b, plan.node(b).container, ib), link)
    for pod in plan.pods:
        if pod.host_network:
            continue  # no veth: it is its node's namespace
        veth = net.pod(pod.name).veth
        if veth:
            yield (End(pod.node, plan.node(pod.node).container, veth[0]),
                   End(pod.name, pod.infra, veth[1], is_pod=True), None)


def veth(plan: Plan, endpoint: str) -> tuple[End, End, LinkPlan | None]:
    """The veth `endpoint` names: (that end, the other end, its link)."""
    name, iface = parse_endpoint(endpoint)
    ends = list(_ends(plan))
    for a, b, link in ends:
        if (a.name, a.iface) == (name, iface):
            return a, b, link
        if (b.name, b.iface) == (name, iface):
            return b, a, link
    known = ", ".join(f"{a.name}:{a.iface}" for a, _, link in ends if link)
    pods = ("a pod's veth is NODE:pv-POD or POD:eth0" if plan.cni == "podlab" else
            f"pods are wired by the CNI plugins (cni: {plan.cni}): podlab pulls no cable of "
            "theirs; node-stop/node-start re-add them")
    raise InputError(f"no link end {endpoint} in lab {plan.lab!r} (links: {known}; {pods})")


def _pids(plan: Plan) -> dict[str, int]:
    return running.pids(plan.lab)


def _pid(pids: dict[str, int], end: End) -> int:
    return _pid_of(pids, end.name, end.container)


def _pid_of(pids: dict[str, int], name: str, container: str) -> int:
    pid = pids.get(container)
    if not pid:
        raise LabNotFoundError(f"{name} ({container}) is not running; "
                               f"start it first: podlab fault node-start {name}")
    return pid


# --------------------------------------------------------------------------- links


def link_down(plan: Plan, endpoint: str) -> None:
    """Pull the cable: both ends of the veth go down."""
    here, there, _ = veth(plan, endpoint)
    pids = _pids(plan)
    faultlog.record(plan.lab, "link-down", f"{here.name}:{here.iface}")
    for end in (here, there):
        wiring.link_set(_pid(pids, end), end.iface, False)


def link_up(plan: Plan, endpoint: str) -> None:
    """Plug it back: both ends up, then both namespaces get their routes back."""
    here, there, link = veth(plan, endpoint)
    pids = _pids(plan)
    for end in (here, there):
        wiring.link_set(_pid(pids, end), end.iface, True)
    described = _described(plan)
    for end in (here, there):
        reconfigure(plan, end.name, pids, described)
    _forget_segment(plan, here, there, link, pids)
    for end in (here, there):  # pulled at either end
        faultlog.clear(plan.lab, "link-down", f"{end.name}:{end.iface}")


def reconfigure(plan: Plan, name: str, pids: dict[str, int],
                described: tuple[datapath.Datapath, datapath.LabNet] | None = None) -> None:
    """Re-apply the datapath's description of a node or pod namespace (idempotent), with
    the same calls deploy made. `pids`: container name -> pid of the running ones.

    A k8s-node's bridge gets back the ports of the pods whose veth exists (a pod whose
    infra is stopped has none). `described`: the plan's datapath and description, when
    the caller has them already.
    """
    dp, net = described or _described(plan)
    if name in {p.name for p in plan.pods}:
        pod = plan.pod(name)
        node = plan.node(pod.node)
        # a CNI's ADD names the infra container (CNI_CONTAINERID)
        infra_id = str(runtime.inspect(pod.infra)["Id"]) if dp.assigns_addresses else ""
        dp.pod_added(_pid_of(pids, node.name, node.container),
                     _pid_of(pids, pod.name, pod.infra), net.pod(name), infra_id)
        return
    node = plan.node(name)
    pid = _pid_of(pids, name, node.container)
    present = _names(pid)
    wired = [p for p in net.pods_of(name) if p.node_port and p.node_port[0] in present]
    dp.apply_node(pid, net.node(name), wired)


def _described(plan: Plan) -> tuple[datapath.Datapath, datapath.LabNet]:
    """The datapath and its description of the running lab (a CNI's pods at the
    addresses they have, so kube-proxy's rules are re-applied with those)."""
    dp = datapath.select(plan)
    return dp, dp.describe(running.live(plan))


def _sync_services(plan: Plan, pids: dict[str, int]) -> None:
    """kube-proxy's sync on every running k8s-node, after pods got new addresses (a CNI's
    ADD again): the endpoints follow them, on every node, as EndpointSlices do."""
    dp = datapath.select(plan)
    seen = dp.observed(plan)
    if not (seen.services or seen.host_ports):
        return
    for node in seen.k8s_nodes:
        if node.container in pids:
            dp.sync_services(pids[node.container], node.name, dp.service_rules(seen, node))


# --------------------------------------------------------------------------- nodes


def node_stop(plan: Plan, name: str) -> None:
    """Stop the node's container (a crash of the machine: its netns and veths vanish)."""
    node = plan.node(name) if name in {n.name for n in plan.nodes} else None
    if node is None:
        raise InputError(f"no node {name!r} in lab {plan.lab!r}")
    if node.container not in _pids(plan):
        raise LabNotFoundError(f"node {name} is not running")
    pids = _pids(plan)
    ends = [(pids[o.container], o.iface) for o in _peers(plan, name) if o.container in pids]
    faultlog.record(plan.lab, "node-stop", name)
    for container in _host_network_containers(plan, name):  # the crash takes them too
        if container in pids:
            runtime.stop(container, timeout=5)
    runtime.stop(node.container, timeout=5)
    # The kernel tears the namespace down asynchronously: wait until the peers' ends of its
    # veths are gone, so that what follows sees the crash complete.
    deadline = time.monotonic() + STOP_SETTLE_S
    while time.monotonic() < deadline and any(i in _names(p) for p, i in ends):
        time.sleep(0.1)


def _host_network_containers(plan: Plan, node: str) -> list[str]:
    """The containers of the node's hostNetwork pods, apps first, infra last."""
    out: list[str] = []
    for pod in plan.pods:
        if pod.host_network and pod.node == node:
            out += [*(c.container for c in pod.containers), pod.infra]
    return out


def _names(pid: int) -> set[str]:
    return {str(link["name"]) for link in wiring.links(pid)}


def _peers(plan: Plan, name: str) -> list[End]:
    """The other ends of every veth with an end in node `name`."""
    out = []
    for a, b, _ in _ends(plan):
        if a.name == name and not a.is_pod:
            out.append(b)
        elif b.name == name and not b.is_pod:
            out.append(a)
    return out


def node_start(plan: Plan, name: str) -> list[str]:
    """Start a stopped node and wire it back; return the veths re-created (`a:if`)."""
    if name not in {n.name for n in plan.nodes}:
        raise InputError(f"no node {name!r} in lab {plan.lab!r}")
    node = plan.node(name)
    pids = _pids(plan)
    pid = pids.get(node.container) or runtime.restart_stopped(node.container)
    pids[node.container] = pid
    present = {link["name"] for link in wiring.links(pid)}
    made: list[str] = []
    peers: list[End] = []
    described = _described(plan)
    for a, b, link in _ends(plan, described[1]):
        if a.name == name and not a.is_pod:
            mine, other = a, b
        elif b.name == name and not b.is_pod:
            mine, other = b, a
        else:
            continue
        other_pid = pids.get(other.container)
        if not other_pid or mine.iface in present:
            continue  # the peer is down (its own start wires this link), or it exists
        if other.iface in _names(other_pid):
            # the old namespace is torn down asynchronously: this end is a leftover
            wiring.delete_link(other_pid, other.iface)
        wiring.create_veth(pid, mine.iface, other_pid, other.iface,
                           mtu=link.mtu if link else None)
        if link is not None and link.netem:
            for end, end_pid in ((mine, pid), (other, other_pid)):
                shaping.shape(end_pid, end.iface, **deploy.netem_args(link))
        made.append(f"{mine.name}:{mine.iface}")
        peers.append(other)
    reconfigure(plan, name, pids, described)
    for other in peers:
        reconfigure(plan, other.name, pids, described)
    dp, net = described
    if dp.assigns_addresses:
        # the runtime comes back with the node: each pod's network is torn down (DEL of
        # what the dead namespace had) and set up again (ADD), as for a sandbox restart
        for pod in net.pods_of(name):
            if plan.pod(pod.name).infra in pids:
                reconfigure(plan, pod.name, pids, described)
                made.append(f"{pod.name}:{POD_IFACE}")
        _sync_services(plan, pids)
    _forget_macs(plan, name, pids)
    # infra first: it joins the node's new namespace, and the apps join the infra's
    for container in reversed(_host_network_containers(plan, name)):
        if container not in pids:
            runtime.restart_stopped(container)
    faultlog.clear(plan.lab, "node-stop", name)
    faultlog.clear(plan.lab, "daemon-kill", name)  # node-start starts its daemon too
    return made


def _forget_macs(plan: Plan, name: str, pids: dict[str, int]) -> None:
    """The re-created veths have new MACs: drop the other nodes' neighbour entries (ARP
    and IPv6 neighbour discovery) of the node's addresses, or they keep sending to the
    dead MAC until the entries go stale."""
    node = plan.node(name)
    addrs = [_ip(a) for i in node.interfaces for a in i.addresses]
    if not addrs:
        return
    for other in plan.nodes:
        pid = pids.get(other.container)
        if other.name != name and not kind(other.kind).is_switch and pid:
            wiring.forget_neighbours(pid, addrs)


def _forget_segment(plan: Plan, here: End, there: End, link: LinkPlan | None,
                    pids: dict[str, int]) -> None:
    """After link-up: every namespace on the link's segment forgets its entries of the
    others' addresses there (entries that failed or went incomplete while the link was
    down resolve afresh on the next packet, instead of after their timers)."""
    if link is None:  # a pod's veth: the pod and its node's bridge
        pod = plan.pod(here.name if here.is_pod else there.name)
        node = plan.node(pod.node)
        members = [(node.container, [_ip(g) for g in node.gateways]),
                   (pod.infra, list(pod.ips))]
    else:
        seg = next(s for s in plan.segments if s.name == link.segment)
        members = [(plan.node(n).container, [_ip(a) for a in addrs])
                   for (n, _, _), addrs in zip(seg.members, seg.member_addresses, strict=True)]
    for container, _ in members:
        others = [a for c, addrs in members if c != container for a in addrs]
        if container in pids and others:
            wiring.forget_neighbours(pids[container], others)


def _ip(cidr: str) -> str:
    return cidr.split("/")[0]


# --------------------------------------------------------------------------- daemons


# FRR's supervisor restarts a daemon that died: a crash that stays down takes it too
SUPERVISORS = ("watchfrr",)


def daemon_kill(plan: Plan, name: str, family: str | None = None,
                daemon: str | None = None) -> int:
    """Kill a node's routing daemons with SIGKILL, as a crash would: its kernel keeps the
    routes they installed, its neighbours see the sessions drop and withdraw what they
    learned from them (at once, or after graceful restart's time where the sessions
    negotiated it). `family` (ipv4, ipv6): that family's daemon only (bird or bird6, as
    Calico runs them). `daemon`: the process of that name in the node instead, e.g. FRR's
    `bgpd` on a user's router (FRR's watchfrr first, which would restart it). Returns the
    (first) daemon's host pid."""
    node = _node(plan, name)
    if daemon is not None:
        if not daemon or "/" in daemon:
            raise InputError(f"daemon {daemon!r}: give a process name, e.g. bgpd")
        pid = _pid_of(_pids(plan), name, node.container)
        faultlog.record(plan.lab, "daemon-kill", f"{name}/{daemon}")
        return procs.kill(pid, daemon, f"node {name}", first=SUPERVISORS)
    _, net = _described(plan)
    daemons = [d.name for d in net.node(name).daemons]
    if not daemons:
        raise InputError(f"{name} runs no daemon of podlab's ({net.datapath}); name the "
                         "node's own daemon to kill it, e.g. daemon=bgpd")
    if family is not None:
        wanted = {"ipv4": bird.DAEMON, "ipv6": bird.DAEMON6}.get(family)
        if wanted is None:
            raise InputError(f"family {family!r}: ipv4 or ipv6")
        if wanted not in daemons:
            raise InputError(f"{name} runs no {family} daemon (it runs {', '.join(daemons)})")
        daemons = [wanted]
    pid = _pid_of(_pids(plan), name, node.container)
    faultlog.record(plan.lab, "daemon-kill", f"{name}/{family}" if family else name)
    pids = [bird.kill(pid, daemon=d) for d in daemons]
    return pids[0]


# FRR's layout (Debian's frr, podlab/frr): a daemon starts with the options its daemons
# file gives it, then vtysh hands it its part of the integrated frr.conf, as at boot
# (a line the daemons refuse is reported by vtysh, and they keep the rest, as at boot)
FRR_START = ('. /etc/frr/daemons 2>/dev/null; eval opts=\\$${0}_options; '
             '/usr/lib/frr/$0 -d $frr_global_options $opts || exit 1; vtysh -b >&2 || true')


def daemon_start(plan: Plan, name: str, daemon: str | None = None) -> None:
    """Re-apply the node as fault recovery does, which starts its daemon again; with
    `daemon`, start that FRR daemon of a user's router again, with its options from
    /etc/frr/daemons and its configuration from /etc/frr/frr.conf."""
    node = _node(plan, name)
    if daemon is not None:
        if not daemon.isalnum():
            raise InputError(f"daemon {daemon!r}: give an FRR daemon's name, e.g. bgpd")
        code, out = running.exec_in(plan.lab, node=name, argv=("sh", "-c", FRR_START, daemon))
        pid = _pid_of(_pids(plan), name, node.container)
        if code != 0 or not procs.named(pid, daemon):
            raise InputError(f"starting {daemon} on {name} failed (exit {code}): "
                             f"{out.decode(errors='replace').strip()[-300:]}")
        faultlog.clear(plan.lab, "daemon-kill", f"{name}/{daemon}")
        return
    described = _described(plan)
    if not described[1].node(name).daemons:
        raise InputError(f"{name} runs no daemon ({described[1].datapath})")
    pids = _pids(plan)
    _pid_of(pids, name, node.container)
    reconfigure(plan, name, pids, described)
    for target in (name, f"{name}/ipv4", f"{name}/ipv6"):  # every daemon runs again
        faultlog.clear(plan.lab, "daemon-kill", target)


def _node(plan: Plan, name: str) -> NodePlan:
    if name not in {n.name for n in plan.nodes}:
        raise InputError(f"no node {name!r} in lab {plan.lab!r}")
    return plan.node(name)


# --------------------------------------------------------------------------- impairment


def netem(plan: Plan, endpoint: str, delay_ms: float | None = None,
          jitter_ms: float | None = None, loss_pct: float | None = None,
          rate_kbit: float | None = None) -> str:
    """Impair the egress of one end; return how (see shaping.shape)."""
    rate_mbit = rate_kbit / 1000 if rate_kbit is not None else None
    shaping.check_args(delay_ms, jitter_ms, loss_pct, rate_mbit)
    if not (delay_ms or jitter_ms or loss_pct or rate_mbit):
        raise InputError("netem needs at least one of --delay, --jitter, --loss, --rate "
                         "(netem-clear removes an impairment)")
    here, _, _ = veth(plan, endpoint)
    return shaping.shape(_pid(_pids(plan), here), here.iface, delay_ms, jitter_ms, loss_pct,
                         rate_mbit)


def netem_clear(plan: Plan, endpoint: str) -> None:
    here, _, _ = veth(plan, endpoint)
    shaping.clear(_pid(_pids(plan), here), here.iface)
