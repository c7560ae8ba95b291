"""`routing: fabric`: the user's routers carry the pod CIDRs; podlab installs no pod route.

    describe   k8s-nodes get one default route per family, to the far end of their first
               link toward a user's node (the plan computed it); a k8s-node with BGPPeers
               also gets BIRD and its bird.conf (harness.datapath.peerconf); the user's
               nodes get nothing from podlab
    after_deploy  deploy returns once every k8s-node's pod CIDR is reachable from every
               other k8s-node by walking the forwarding tables of the namespaces on the
               way (harness.plan.fibwalk), in every family, then once every path verify
               will expect walks through and the tables have been still for STABLE_S
               (within the same bound); else RoutingError after the bound, naming each
               unreachable pair of pod CIDRs and where its walk stopped
    converged  before verify: wait (bounded) until the tables have been still for a short
               interval, walk them, and hand verify the plan whose paths and TTLs are the
               walk's (each expectation says it came from the fabric)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping

from harness.datapath import peerconf
from harness.datapath.base import Datapath
from harness.datapath.net import Convergence, Daemon, LabNet, NodeNet, PodNet
from harness.errors import RoutingError, WiringError
from harness.host import bird, fib
from harness.host.faultlog import NO_FAULTS, Faults
from harness.kinds import kind
from harness.model.addressing import TITLE
from harness.plan import NodePlan, Plan, WalkedPath
from harness.plan.fibwalk import Fabric, Walk, asymmetry, leaves_of, links_of, walk
from harness.plan.model import WalkKey

DEPLOY_TIMEOUT_S = 60.0  # deploy: the user's routers carry every pod CIDR within this
CONVERGE_TIMEOUT_S = 30.0  # verify: the tables are still within this
STABLE_S = 2.0  # ... for this long: OSPF adjacencies and BGP sessions settle in bursts
POLL_S = 0.25


class FabricDatapath(Datapath):
    routing = "fabric"

    def __init__(self) -> None:
        super().__init__()  # combined with a CNI datapath by inheritance (datapath.select)
        self._plan: Plan | None = None

    # ------------------------------------------------------------------ description (pure)

    def describe(self, plan: Plan) -> LabNet:
        self._plan = plan
        return super().describe(plan)

    def node_net(self, plan: Plan, node: NodePlan) -> NodeNet:
        net = super().node_net(plan, node)
        if not peerconf.peers(plan, node.name):
            return net
        conf = peerconf.bird_conf(plan, node)
        return dataclasses.replace(net, daemons=(
            Daemon("bird", bird.ARGV, files=((bird.CONF_PATH, conf),)),))

    # ------------------------------------------------------------------ apply (kernel)

    def apply_node(self, pid: int, node: NodeNet, pods: Iterable[PodNet] = ()) -> None:
        super().apply_node(pid, dataclasses.replace(node, daemons=()), pods)
        for daemon in node.daemons:
            for path, text in daemon.files:
                bird.write_file(pid, path, text)
            if bird.alive(pid):
                bird.command(pid, "configure")
            else:
                bird.start(pid, daemon.argv)

    def after_deploy(self, net: LabNet, pids: Mapping[str, int],
                     timeout: float | None = None) -> None:
        """Wait until the walk reaches every k8s-node's pod CIDR from every other one."""
        plan = self._plan
        if plan is None:
            raise RoutingError("routing: fabric: after_deploy before describe")
        timeout = DEPLOY_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            stuck = unreachable(plan, read_fabric(plan, pids))
            if not stuck or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        if stuck:
            raise RoutingError(
                f"the fabric does not carry every pod CIDR after {timeout:g}s (routing: "
                f"fabric: the user's routers must route each k8s-node's pod CIDR): "
                + "; ".join(stuck))
        # the rest of the fabric may still be converging (an outside host's prefix, better
        # paths; OSPF's SPF hold-down can keep tables still for seconds with a route to
        # come): wait, within the same bound, until every path verify will expect is
        # walked through, then hand over a lab whose tables have been still a moment.
        # Not reaching one is verify's to report, with where the walk stopped.
        while time.monotonic() < deadline and pending(plan, read_fabric(plan, pids)):
            time.sleep(POLL_S)
        settle(plan, pids, max(deadline - time.monotonic(), STABLE_S))

    def converged(self, plan: Plan, pids: Mapping[str, int],
                  timeout: float | None = None, injected: Faults = NO_FAULTS
                  ) -> Convergence:
        """The plan verify must expect now: the paths walked in the fabric's tables, once
        those have been still for STABLE_S (bounded by `timeout`). Faults, `injected` by
        podlab or not, need no model here: the tables show what they did."""
        timeout = CONVERGE_TIMEOUT_S if timeout is None else timeout
        started = time.monotonic()
        fabric, settled = settle(plan, pids, timeout)
        took = time.monotonic() - started
        walked = walks(plan, fabric)
        stops = sorted({w.stop for w in walked.values() if w.stop})
        note = (f"the fabric's tables were still after {took:.2f}s" if settled else
                f"the fabric's tables were still changing after {timeout:g}s")
        note += f"; expectations walked in them ({len(walked)} paths"
        note += f", {len(stops)} not delivered: {'; '.join(stops[:4])})" if stops else ")"
        return Convergence(plan.with_walks(walked), took, settled, note)


def read_fabric(plan: Plan, pids: Mapping[str, int]) -> Fabric:
    """Every running node's table (switches have none), the plan's links, its pods."""
    running = {n.name: pids[n.name] for n in plan.nodes
               if n.name in pids and not kind(n.kind).is_switch}
    tables = {}
    for name, pid in running.items():
        try:
            tables[name] = fib.read(pid, name)
        except WiringError:  # stopped while being read: it has no table
            continue
    return Fabric(tables, links_of(plan), leaves_of(plan))


def settle(plan: Plan, pids: Mapping[str, int], timeout: float) -> tuple[Fabric, bool]:
    """The fabric once its tables have not changed for STABLE_S; (last read, False) when
    they still change after `timeout`."""
    deadline = time.monotonic() + timeout
    fabric = read_fabric(plan, pids)
    still_since = time.monotonic()
    while True:
        if time.monotonic() - still_since >= STABLE_S:
            return fabric, True
        if time.monotonic() >= deadline:
            return fabric, False
        time.sleep(POLL_S)
        again = read_fabric(plan, pids)
        if again.fibs != fabric.fibs:
            fabric, still_since = again, time.monotonic()


def walks(plan: Plan, fabric: Fabric) -> dict[WalkKey, WalkedPath]:
    """Every path the plan's expectations ask for (Plan.walk_targets), walked."""
    found: dict[WalkKey, Walk] = {}
    for key, ip in plan.walk_targets().items():
        if key[0] in fabric.fibs:
            found[key] = walk(fabric, key[0], ip)
    out: dict[WalkKey, WalkedPath] = {}
    for key, w in found.items():
        src, dst, segment, family = key
        notes = []
        if w.ok and len(w.paths) > 1:
            notes.append("equal paths, one per flow: " + " | ".join(
                " > ".join(h.node for h in p) for p in w.paths))
        back = found.get((dst, src, f"pods:{src}", family))
        if segment.startswith("pods:") and back is not None and (why := asymmetry(w, back)):
            notes.append(why)
        stop = w.stop
        if stop and segment.startswith("pods:"):  # the route that is missing, by name
            cidr = plan.node(dst).pod_cidr_of(family)
            stop = dataclasses.replace(stop, reason=f"{stop.reason}, in {dst}'s pod CIDR "
                                                    f"{cidr}")
        out[key] = WalkedPath(w.nodes if w.ok else (), str(stop) if stop else None,
                              "; ".join(notes))
    return out


def pending(plan: Plan, fabric: Fabric) -> list[WalkKey]:
    """The paths the plan's expectations ask for (Plan.walk_targets) that the walk does
    not deliver yet."""
    return [key for key, ip in plan.walk_targets().items()
            if key[0] in fabric.fibs and not walk(fabric, key[0], ip).ok]


def unreachable(plan: Plan, fabric: Fabric) -> list[str]:
    """Each pair of k8s-nodes whose pod CIDR the walk does not reach, with where it
    stopped; a node not running counts as not reached."""
    out = []
    for a in plan.k8s_nodes:
        for b in plan.k8s_nodes:
            if a.name == b.name:
                continue
            for family in plan.families:
                cidr, gateway = b.pod_cidr_of(family), b.gateway_of(family)
                if not cidr or not gateway:
                    continue
                if a.name not in fabric.fibs:
                    out.append(f"{a.name} is not running")
                    continue
                w = walk(fabric, a.name, gateway.split("/")[0])
                if not w.ok:
                    out.append(f"{a.name} to {b.name}'s pod CIDR {cidr} ({TITLE[family]}): "
                               f"{w.stop}")
    return list(dict.fromkeys(out))
