"""`routing: bgp`: every k8s-node and router runs BIRD and learns the routes podlab would
otherwise install (harness.datapath.bgpconf has the configuration and the model of what
BIRD converges to), in every family of the lab: IPv4 and IPv6 routes are BIRD's alike,
each family over its own sessions, and every wait below covers both.

    describe   speakers get no static route at all, a `bird` Daemon with its bird.conf,
               and ready_routes: every prefix they do not hold themselves (the other pod
               CIDRs and the segments beyond their own); `linux` hosts keep the plan's
               static routes, switches stay L2
    apply_node the base wiring (bridges, addresses, NAT), then bird.conf into the node's
               filesystem and BIRD started in its namespaces (a daemon that died is started
               again when a fault recovery re-applies the node; one that runs re-reads its
               configuration)
    after_deploy  deploy returns once every speaker's kernel holds a BIRD-installed route
               (`proto bird`) to each of its ready_routes, else RoutingError after a bound
               naming the missing routes and the sessions that are not up (deploy rolls
               back)
    converged  before verify: observe which links are down and which daemons are dead,
               wait (bounded) until every live speaker's kernel holds exactly what BIRD
               converges to, and hand verify the plan rerouted over the paths that are left
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping

from harness.datapath import bgpconf
from harness.datapath.base import Datapath
from harness.datapath.net import Convergence, Daemon, LabNet, NodeNet, PodNet, Route
from harness.errors import RoutingError
from harness.host import bird, wiring
from harness.host.faultlog import NO_FAULTS, Faults
from harness.plan import NodePlan, Plan

DEPLOY_TIMEOUT_S = 30.0  # deploy: every route installed within this, or it fails
CONVERGE_TIMEOUT_S = 30.0  # verify: routes settled after a fault within this
POLL_S = 0.05


class BgpDatapath(Datapath):
    routing = "bgp"

    def __init__(self) -> None:
        super().__init__()  # combined with a CNI datapath by inheritance (datapath.select)
        self._plan: Plan | None = None
        self._speakers: dict[str, bgpconf.Speaker] = {}
        self._routes = bgpconf.Routes()

    def _model(self, plan: Plan) -> None:
        """Speakers and converged routes, computed once per plan described."""
        if plan is not self._plan:
            self._plan = plan
            self._speakers = {s.node: s for s in bgpconf.speakers(plan)}
            self._routes = bgpconf.expected_routes(plan)

    # ------------------------------------------------------------------ description (pure)

    def node_net(self, plan: Plan, node: NodePlan) -> NodeNet:
        net = super().node_net(plan, node)
        if not bgpconf.is_speaker(node, plan):
            return net
        self._model(plan)
        sp = self._speakers[node.name]
        daemons = []
        for family in bgpconf.daemon_families(sp):  # bird and bird6, as Calico runs them
            name = bgpconf.DAEMON_OF[family]
            conf = bgpconf.bird_conf(sp, plan.lab, family=family)
            daemons.append(Daemon(name, bird.argv(name), files=((bird.conf_path(name), conf),)))
        return dataclasses.replace(net, daemons=tuple(daemons))

    def routes(self, plan: Plan, node: NodePlan) -> tuple[Route, ...]:
        """per-link: speakers learn every route from BIRD. node-mesh, route-reflectors:
        speakers learn the pod CIDRs from BIRD and reach the underlay by the plan's
        static routes (a host's own, in a real cluster), and routers that do not speak
        BGP route by the plan's static routes, pod CIDRs included (without Calico's
        IPIP/VXLAN, which podlab does not emulate, a fabric between the nodes must know
        them). Outside hosts keep the plan's."""
        if not bgpconf.is_speaker(node, plan):
            return super().routes(plan, node)
        return bgpconf.underlay_routes(plan, node) if plan.bgp_mode != bgpconf.PER_LINK \
            else ()

    def ready_routes(self, plan: Plan, node: NodePlan) -> tuple[str, ...]:
        if not bgpconf.is_speaker(node, plan):
            return ()
        self._model(plan)
        return tuple(sorted(self._routes.by_node.get(node.name, {})))

    # ------------------------------------------------------------------ apply (kernel)

    def apply_node(self, pid: int, node: NodeNet, pods: Iterable[PodNet] = ()) -> None:
        super().apply_node(pid, dataclasses.replace(node, daemons=()), pods)
        for daemon in node.daemons:
            for path, text in daemon.files:
                bird.write_file(pid, path, text)
            if bird.alive(pid, daemon.name):
                bird.command(pid, "configure", daemon=daemon.name)  # the same: no change
            else:
                bird.start(pid, daemon.argv)

    def after_deploy(self, net: LabNet, pids: Mapping[str, int],
                     timeout: float | None = None) -> None:
        """Wait until every speaker's kernel holds exactly the routes BIRD converges to:
        each ready route, via the neighbours of the shortest AS paths. A prefix is often
        first learned the long way round, while the direct session is still coming up;
        a deploy that returned then would hand its user a lab that is still moving."""
        timeout = DEPLOY_TIMEOUT_S if timeout is None else timeout
        ready = {n.name: set(n.ready_routes) for n in net.nodes if n.daemons}
        want = self._routes  # this plan's (ready_routes computed it while describing)
        exact = {n: set(r) for n, r in want.by_node.items()} == {
            n: r for n, r in ready.items() if r}
        deadline = time.monotonic() + timeout
        while True:
            installed = {name: bird_routes(pids[name]) for name in ready}
            missing: dict[str, set[str]] = {}
            wrong = (want.missing(installed) + want.unexpected(installed) if exact else
                     [(n, p) for n, r in ready.items() for p in r - set(installed[n])])
            for name, prefix in wrong:
                missing.setdefault(name, set()).add(prefix)
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        if missing:
            raise RoutingError(
                f"BGP did not converge within {timeout:g}s; routes absent or via a longer "
                f"path than planned: "
                + "; ".join(f"{n}: {', '.join(sorted(m))}{_sessions_down(pids[n])}"
                            for n, m in sorted(missing.items())))

    def converged(self, plan: Plan, pids: Mapping[str, int],
                  timeout: float | None = None, injected: Faults = NO_FAULTS) -> Convergence:
        """The plan verify must expect now: rerouted around the links that are down and
        the speakers whose BIRD is dead (or whose node is stopped), once every live
        speaker's kernel holds exactly the routes BIRD converges to (bounded wait).

        Only faults podlab `injected` (and recorded) are routed around: a daemon that
        died by itself, or a cable nobody pulled through podlab, raises RoutingError
        naming it (the plan cannot say what the lab should do then)."""
        timeout = CONVERGE_TIMEOUT_S if timeout is None else timeout
        self._model(plan)
        down = down_links(plan, pids)
        dead = dead_daemons(self._speakers, pids)
        if wrong_state := unexplained(plan, down, dead, injected):
            raise RoutingError(
                f"lab {plan.lab}: {'; '.join(wrong_state)}, and podlab did not do it (podlab "
                "fault records what it injects); verify expects no fault it did not "
                "inject: restart the daemon (podlab fault daemon-start NODE), plug the "
                "link back (podlab fault link-up A:IF), or deploy again")
        want = bgpconf.expected_routes(plan, down, dead) if (down or dead) else self._routes
        started = time.monotonic()
        while True:
            installed = {n: bird_routes(pids[n]) for n in want.by_node}
            wrong = want.missing(installed) + want.unexpected(installed)
            if not wrong or time.monotonic() - started >= timeout:
                break
            time.sleep(POLL_S)
        took = time.monotonic() - started
        faults = [f"link {_link_name(plan, i)} down" for i in sorted(down)]
        faults += [f"{bgpconf.DAEMON_OF[f]} of {n} not running" for n, f in sorted(dead)]
        what = f" ({'; '.join(faults)})" if faults else ""
        if wrong:
            shown = ", ".join(f"{p} on {n}" for n, p in wrong[:8])
            note = (f"BGP routes not converged after {timeout:g}s{what}: {len(wrong)} "
                    f"routes differ from the plan ({shown})")
        else:
            note = f"BGP routes converged in {took:.2f}s{what}"
        # a speaker with no daemon left forwards nothing it learned (one family's death
        # leaves the other's paths through it: the tables predicted per family say so)
        gone = frozenset(n for n, sp in self._speakers.items()
                         if all((n, f) in dead for f in bgpconf.daemon_families(sp)))
        rerouted = plan.rerouted(down, gone) if (down or dead) else plan
        return Convergence(rerouted, took, not wrong, note)


def dead_daemons(speakers: Mapping[str, bgpconf.Speaker], pids: Mapping[str, int]
                 ) -> frozenset[tuple[str, str]]:
    """(node, family) of every speaker daemon that does not answer (or whose node is
    stopped)."""
    return frozenset((name, family) for name, sp in speakers.items()
                     for family in bgpconf.daemon_families(sp)
                     if name not in pids
                     or not bird.alive(pids[name], bgpconf.DAEMON_OF[family]))


def unexplained(plan: Plan, down: frozenset[int],
                dead: frozenset[str] | frozenset[tuple[str, str]] | bgpconf.Dead,
                injected: Faults) -> list[str]:
    """The faults seen (links `down`, daemons `dead`: node names, or (node, family) for
    one family's) that podlab did not inject: a cable is explained when podlab pulled it
    (at either end) or stopped a node it ends on, a daemon when podlab killed it (all the
    node's, or that family's: `NODE/ipv4`) or stopped its node. A node whose every daemon
    is dead is named as `BIRD of NODE`, one family's as `bird6 of NODE`."""
    out = []
    for i in sorted(down):
        link = plan.links[i]
        ends = (link.a, link.b)
        if not any(f"{n}:{ifc}" in injected.links or n in injected.stopped
                   for n, ifc in ends):
            out.append(f"link {_link_name(plan, i)} is down")
    pairs = bgpconf.dead_pairs(plan, dead)
    whole = {n for n, _ in pairs if all((n, f) in pairs for f in plan.families
                                        if _runs(plan, n, f))}
    for n in sorted({n for n, _ in pairs}):
        if n in injected.daemons or n in injected.stopped:
            continue
        if n in whole and not any(f"{n}/{f}" in injected.daemons for f in plan.families):
            out.append(f"BIRD of {n} is not running")
            continue
        out += [f"{bgpconf.DAEMON_OF[f]} of {n} is not running" for f in plan.families
                if (n, f) in pairs and f"{n}/{f}" not in injected.daemons]
    return out


def _runs(plan: Plan, node: str, family: str) -> bool:
    """Whether `node` runs a daemon of `family` (a speaker of a lab routing it)."""
    return any(sp.node == node and family in bgpconf.daemon_families(sp)
               for sp in bgpconf.speakers(plan))


def bird_routes(pid: int) -> dict[str, str | None]:
    """The kernel's routes BIRD installed in a namespace: prefix -> gateway."""
    return wiring.routes_of_protocol(pid, bird.RTPROT_BIRD)


def _sessions_down(pid: int) -> str:
    down = []
    for daemon in (bird.DAEMON, bird.DAEMON6):
        if not bird.configured(pid, daemon):
            continue
        try:
            down += [p for p in bird.protocols(pid, daemon)
                     if p.proto == "BGP" and p.info != "Established"]
        except RoutingError as exc:
            return f" ({exc})"
    if not down:
        return ""
    return " (sessions not established: " + ", ".join(
        f"{p.name} {p.info or p.state}" for p in down) + ")"


def _link_name(plan: Plan, index: int) -> str:
    link = plan.links[index]
    return f"{link.a[0]}:{link.a[1]}--{link.b[0]}:{link.b[1]}"


def down_links(plan: Plan, pids: Mapping[str, int]) -> frozenset[int]:
    """Links with an end that is administratively down or gone (its node stopped)."""
    state: dict[str, dict[str, bool]] = {}
    for node in plan.nodes:
        if node.name in pids:
            state[node.name] = {str(row["name"]): bool(row["up"])
                                for row in wiring.links(pids[node.name])}
    return frozenset(i for i, link in enumerate(plan.links)
                     if not all(state.get(n, {}).get(ifc, False) for n, ifc in (link.a, link.b)))
