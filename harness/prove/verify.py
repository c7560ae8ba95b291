"""verify: run the checks of the Kubernetes networking model against a running lab.

The orchestration only. Its inputs are live: the pids of the lab's containers (from the
Lab) and what the kernel says (addresses, route sources, fetched through harness.host).
It computes the targets once from the plan (harness.prove.targets), has the engine send
and sniff (harness.prove.engine), and hands what was seen to the pure verdict
(harness.prove.verdict). Each check yields one Result per (check, src, dst, proto,
family): every check runs once per address family its two ends share. A failed one says
what changed where, or where its packet was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.errors import LabNotFoundError, NothingToVerify
from harness.host import netns, wiring
from harness.kinds import kind
from harness.plan import Plan, PodPlan, servicepaths
from harness.prove import (
    frames,
    intrapod,
    mtu,
    noroute,
    pathprobe,
    sample,
    services,
    shard,
    verdict,
)
from harness.prove.engine import Engine, Namespace
from harness.prove.path import pairs as traced_pairs
from harness.prove.probe import Probe, Seen, new_ids
from harness.prove.result import Report, Result
from harness.prove.targets import (
    CHECKS,
    PROBE_CHECKS,
    PROTOS,
    SERVICE_CHECKS,
    Target,
    endpoints,
    targets,
)

__all__ = ["CHECKS", "PROTOS", "Report", "Result", "verify"]

# probe ids: from a random start in every process, so no two runs share ICMP ids or nonces
_IDS = new_ids()


def verify(plan: Plan, pids: dict[str, int], checks: Iterable[str] = CHECKS,
           keep_frames: bool = False,
           progress: Callable[[str, int, int], None] | None = None,
           timeout: float = 2.0, quick: bool = False) -> Report:
    """Run the checks against the deployed lab of `plan`, whose containers run as `pids`
    (`{container name: host pid}`, from the Lab). `quick`: a spanning sample instead of
    every pair (harness.prove.sample), a smoke test.

    Raises LabNotFoundError when nothing of the lab runs, NothingToVerify when the
    selected checks yield no result in this lab (nothing proven must not pass).
    """
    started = time.monotonic()
    checks = [c for c in CHECKS if c in set(checks)]
    if not pids:
        raise LabNotFoundError(f"lab {plan.lab!r} is not deployed; run podlab deploy -t "
                               f"{plan.topo_path or 'FILE'} first")
    probe_checks = [c for c in checks if c in PROBE_CHECKS]
    service_checks = [c for c in checks if c in SERVICE_CHECKS]
    tgts = targets(plan, probe_checks, _sources(plan, pids, probe_checks),
                   sample.representatives(plan) if quick else None)
    if quick:
        tgts = sample.spanning(plan, tgts)
    pods = sample.one_pod_per_node(plan) if quick else plan.pods
    spaths = servicepaths.paths(plan, service_checks)
    drawn = None
    if quick:  # a sample says it is one: of how many targets a full run covers
        per_pod = sum(c in checks for c in ("pod-identity", "intra-pod"))
        full = (sample.population(plan, probe_checks) + len(spaths)
                + per_pod * len(plan.pods))
        spaths = sample.spanning_paths(plan, spaths)
        drawn = {"targets": len(tgts) + len(spaths) + per_pod * len(pods), "of": full}
    empty = _empty(plan, checks, tgts, spaths)
    if not checks:
        raise NothingToVerify(f"no check selected; verify runs one or more of "
                              f"{', '.join(CHECKS)}")
    if len(empty) == len(checks):
        raise NothingToVerify(f"--check {','.join(checks)} selects nothing in lab "
                              f"{plan.lab}: " + "; ".join(empty.values()))
    # a lab without Services or hostPorts is not told, at every verify, that it has none
    quiet = SERVICE_CHECKS if not (plan.services or plan.host_ports) else ()
    notes = [f"{check}: nothing to check, {why}" for check, why in empty.items()
             if check not in quiet]
    if "path" in checks:
        pathprobe.preload()  # scapy's import overlaps the other checks
    results: list[Result] = []
    sightings: dict[int, list[Seen]] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        intra = pool.submit(intrapod.check_all, plan, pids, pods) \
            if "intra-pod" in checks else None
        # what each pod holds, asked of the kernel while the probes run
        held = pool.submit(identity_facts, plan, pids, pods) \
            if "pod-identity" in checks else None
        if tgts:
            probe_results, sightings = run_probes(
                plan, pids, tgts, keep_frames=keep_frames, timeout=timeout,
                progress=(lambda d, t: progress("probes", d, t)) if progress else None,
                quick=quick)
            results += probe_results
        if spaths:
            service_results, more = run_service_probes(plan, pids, spaths, keep_frames,
                                                       timeout)
            results += service_results
            sightings.update(more)
        if held is not None:
            results += identities(plan, held.result(), results if tgts else None)
        if intra is not None:
            results += intra.result()
    if "mtu" in checks:  # after the probes: its raw ICMP sockets would see theirs
        results += mtu.check(plan, pids)
    if "path" in checks:  # after mtu: its sniffers keep ICMP errors
        traced, seen = pathprobe.check(plan, pids, timeout=timeout, quick=quick,
                                       keep_frames=keep_frames)
        results += traced
        sightings.update(seen)
    order = {c: i for i, c in enumerate(CHECKS)}
    results.sort(key=lambda r: order[r.check])
    control, why = _negative_control(plan, checks, results)
    if why:
        notes.append(why)
    failed = {pid for r in results if not r.ok for pid in r.probe_ids}
    frames.attach(results, sightings)
    # sightings are wanted for pcaps, and a failure's own for its frames: a 200-pod lab
    # has hundreds of thousands
    return Report(plan.lab, results, time.monotonic() - started,
                  sightings if keep_frames else {p: s for p, s in sightings.items()
                                                 if p in failed}, control, notes, drawn)


def _sources(plan: Plan, pids: dict[str, int], checks: list[str]
             ) -> dict[str, dict[str, str]]:
    """The kernel's own choice of source, asked once per node: toward every pod for
    node-to-pod, and toward every address its hostNetwork pods send to (they are the
    node's namespace)."""
    pod_ips = [ip for p in plan.pods for ip in p.ips]  # every family's
    others = [a for n in (*plan.k8s_nodes, *plan.externals) for f in plan.families
              if (a := n.address_of(f))]
    hosting = {p.node for p in plan.pods if p.host_network}
    out = {}
    for n in plan.k8s_nodes:
        if n.container not in pids:
            continue
        wanted = (pod_ips if "node-to-pod" in checks else []) + (
            [*pod_ips, *others] if n.name in hosting and checks else [])
        if wanted:
            out[n.name] = wiring.route_sources(pids[n.container], list(dict.fromkeys(wanted)))
    return out


def _empty(plan: Plan, checks: list[str], tgts: list[Target],
           spaths: list[servicepaths.ServicePath]) -> dict[str, str]:
    """The selected checks that yield no result in this lab, each with why."""
    has = {t.check for t in tgts} | {p.check for p in spaths}
    out = {}
    for check in checks:
        if check in ("pod-identity", "intra-pod"):
            if not plan.pods:
                out[check] = "the lab has no pod"
        elif check == "mtu":
            if not mtu.targets(plan):
                out[check] = "the lab has fewer than two nodes with pods"
        elif check == "path":
            if not traced_pairs(plan):
                out[check] = "no pair crosses a router or forwarding node"
        elif check in SERVICE_CHECKS and check not in has:
            out[check] = _no_service_path(plan, check)
        elif check not in has:
            if not plan.pods:
                out[check] = "the lab has no pod"
            elif check == "pod-to-pod":
                out[check] = "the lab has fewer than two pods"
            elif check == "pod-to-external":
                out[check] = "the lab has no outside host (kind linux)"
            else:
                out[check] = "the lab has no k8s-node"
    return out


def _no_service_path(plan: Plan, check: str) -> str:
    if check == "external-to-hostport":
        return ("the lab has no outside host (kind linux)" if plan.host_ports
                else "no container has a hostPort")
    if not any(p.endpoints for s in plan.services for p in s.ports):
        return "the lab has no Service with an endpoint (services:)"
    if check == "external-to-nodeport":
        if not any(s.type == "NodePort" for s in plan.services):
            return "the lab has no NodePort Service"
        return "the lab has no outside host (kind linux)"
    return "the lab has no k8s-node" if check == "node-to-service" else "the lab has no pod"


def _negative_control(plan: Plan, checks: list[str],
                      results: list[Result]) -> tuple[str, str | None]:
    """Did the built-in NAT control (masquerade toward outside hosts) run, and pass?"""
    if not plan.masquerade:
        return "not applicable", None
    if not plan.externals or not plan.pods:
        return "absent", ("negative control absent: masquerade is on but the lab has no "
                          "outside host (kind linux) to send pod traffic to, so no result "
                          "shows that verify can see NAT")
    natted = {(p.name, h.name, f) for h in plan.externals for p in plan.pods
              for f in plan.shared_families(p.name, h.name)
              if plan.pod_to_external(p.name, h.name, f).snat_to}  # in any family
    if not natted:
        return "absent", ("negative control absent: the masquerade configured exempts every "
                          "outside host's address (ip-masq-agent's nonMasqueradeCIDRs), so "
                          "no result shows that verify can see NAT")
    if "pod-to-external" not in checks:
        return "not run", ("negative control not run: pod-to-external was not selected, so "
                           "no result shows that verify can see NAT")
    ext = [r for r in results
           if (r.src, r.dst, r.family) in natted and r.check == "pod-to-external"]
    if not ext:  # nothing passes by absence: a sample may hold no masqueraded pod
        return "not run", ("negative control not run: this run holds no masqueraded "
                           "pod-to-external result (the pods it probed toward outside "
                           "hosts are not masqueraded), so no result shows that verify "
                           "can see NAT")
    if not all(r.ok for r in ext):
        return "failed", None
    # an ok result saw its planned source, the masqueraded one, at the outside host
    seen = [r for r in ext if r.observed.get("src") == r.expected.get("src")]
    return ("observed", None) if seen else ("not run", (
        "negative control not run: no masqueraded result recorded the source it arrived "
        "with"))


@dataclass(frozen=True)
class IdentityFacts:
    """What the kernel says about one pod, for pod-identity: its eth0 addresses (a
    hostNetwork pod: every address of its node), each container's network namespace
    inode, and the node's (hostNetwork). None: not running."""

    pod: PodPlan
    addresses: list[str] | None
    inodes: dict[str, int | None]
    node_inode: int | None = None


def identity_facts(plan: Plan, pids: dict[str, int],
                   pods: Sequence[PodPlan] | None = None) -> list[IdentityFacts]:
    """The kernel's side of pod-identity for each pod of `pods` (default all)."""
    out = []
    for pod in plan.pods if pods is None else pods:
        infra = pids.get(pod.infra)
        inodes = {c: netns.netns_inode(pids[c]) if c in pids else None
                  for c in (pod.infra, *(c.container for c in pod.containers))}
        if pod.host_network:
            node = pids.get(plan.node(pod.node).container)
            held = ([a for addrs in wiring.addresses(node).values() for a in addrs]
                    if node else None)
            out.append(IdentityFacts(pod, held, inodes,
                                     netns.netns_inode(node) if node else None))
            continue
        eth0 = wiring.addresses(infra).get("eth0", []) if infra else None
        out.append(IdentityFacts(pod, eth0, inodes))
    return out


def identities(plan: Plan, facts: list[IdentityFacts],
               probed: list[Result] | None) -> list[Result]:
    """pod-identity: each pod's eth0 addresses and its containers' namespaces (`facts`),
    and the source its peers' sockets saw in `probed` (None: no probe ran), judged by the
    verdict; one result per family."""
    saw: dict[tuple[str, str], dict[str, str]] = {}  # (pod, family) -> {source: who saw it}
    for r in probed or ():
        src = r.observed.get("socket", {}).get("src")
        if src and r.check != "node-to-pod" and \
                r.expected.get("src") == plan.pod(r.src).ip_of(r.family):  # type: ignore[arg-type]
            saw.setdefault((r.src, r.family), {}).setdefault(src, f"{r.dst}, {r.check} "
                                                                  f"{r.proto}")
    out = []
    for f in facts:
        for family in f.pod.families:  # one result per family: one global address of each
            if f.pod.host_network:
                out.append(verdict.host_identity(f.pod, f.addresses, f.inodes, f.node_inode,
                                                 family))
                continue
            peers = saw.get((f.pod.name, family), {}) if probed is not None else None
            out.append(verdict.identity(f.pod, f.addresses, f.inodes, peers or None, family))
    return out


def run_probes(plan: Plan, pids: dict[str, int], tgts: list[Target], keep_frames: bool = False,
               timeout: float = 2.0, window: int = 256,
               progress: Callable[[int, int], None] | None = None, quick: bool = False,
               ) -> tuple[list[Result], dict[int, list[Seen]]]:
    """Probe every target over each of its protocols (`quick`: one) concurrently; one
    Result each.

    The first pass sniffs only where probes end, which keeps a lab of hundreds of pods
    fast. Whatever fails is probed once more with every namespace traced, so its
    diagnosis can say where a header changed or where the packet was last seen.
    """
    jobs = [(t, proto) for t in tgts
            for proto in (sample.protos(t.protos) if quick else t.protos)]
    results, sightings = probe_jobs(plan, pids, jobs, keep_frames, timeout, window, progress)
    again = [i for i, r in enumerate(results) if not r.ok]
    if again and not keep_frames:
        traced, more = probe_jobs(plan, pids, [jobs[i] for i in again], True, timeout, window)
        sightings.update(more)
        for i, result in zip(again, traced, strict=True):
            if result.ok:  # keep the failure: it happened; say it did not repeat
                results[i].detail += "; passed when probed again (intermittent)"
                results[i].probe_ids += result.probe_ids
            else:
                results[i] = result
    still = [i for i, r in enumerate(results) if not r.ok]
    if still:
        tables = route_tables(plan, pids)
        for i in still:
            t = jobs[i][0]
            if t.exp.stop:  # the walk of the fabric's tables said it already, and where
                continue
            why = noroute.diagnose(plan, t.exp.path, t.exp.dst_ip, t.src_ip, tables)
            if why:  # the routing table says it all; the loss report stays after it
                detail = results[i].detail
                results[i].detail = why if "has no route to" in detail else f"{why}; {detail}"
    return results, sightings


def route_tables(plan: Plan, pids: dict[str, int]) -> dict[str, list[str]]:
    """Each running node's main-table destinations (for noroute.diagnose); a default route
    written as its family's (0.0.0.0/0 or ::/0), told by its gateway."""
    def dst_of(dst: str, gw: str | None) -> str:
        if dst != "default" or not gw:
            return dst
        return "::/0" if ":" in gw else "0.0.0.0/0"

    return {n.name: [dst_of(dst, gw) for dst, gw, _ in wiring.routes(pids[n.container])]
            for n in plan.nodes if n.container in pids and not kind(n.kind).is_switch}


def _spaces(plan: Plan, pids: dict[str, int], tgts: list[Target],
            trace: bool) -> list[Namespace]:
    """Where to sniff. Normally only at the ends of each probe, for frames addressed to
    that namespace; tracing sniffs every namespace, both ways, to show a packet's path."""
    receivers = {t.receiver for t in tgts}
    ends = receivers | {t.sender for t in tgts}
    spaces = []
    for ep in endpoints(plan).values():
        if ep.container not in pids:
            continue  # stopped: its probes fail before sending
        if trace or ep.name in ends:
            spaces.append(Namespace(ep.name, pids[ep.container], ep.name in receivers,
                                    None if trace else ep.addresses, families=ep.families))
    return spaces


def run_service_probes(plan: Plan, pids: dict[str, int],
                       spaths: list[servicepaths.ServicePath], keep_frames: bool = False,
                       timeout: float = 2.0) -> tuple[list[Result], dict[int, list[Seen]]]:
    """Probe every Service path once over its protocol; failures once more, traced
    everywhere, so that their diagnosis names the hop of each rewrite."""
    results, sightings = _service_jobs(plan, pids, spaths, keep_frames, timeout)
    again = [i for i, r in enumerate(results) if not r.ok]
    if again and not keep_frames:
        traced, more = _service_jobs(plan, pids, [spaths[i] for i in again], True, timeout)
        sightings.update(more)
        for i, result in zip(again, traced, strict=True):
            if result.ok:
                results[i].detail += "; passed when probed again (intermittent)"
                results[i].probe_ids += result.probe_ids
            else:
                results[i] = result
    return results, sightings


def _service_jobs(plan: Plan, pids: dict[str, int], spaths: list[servicepaths.ServicePath],
                  trace: bool, timeout: float) -> tuple[list[Result], dict[int, list[Seen]]]:
    eps = endpoints(plan)
    ports: dict[str, set[tuple[str, str, int]]] = {}
    both_ways: set[str] = set()  # clients and the nodes whose rules act: seen both ways
    for path in spaths:
        both_ways |= {path.client, path.entry}
        for e in path.watch:
            ports.setdefault(e.pod, set()).add((path.proto, e.ip, e.port))
    names = both_ways | set(ports)
    # a pod whose node is stopped lost its veth and address with the node's namespace:
    # no listener can be bound there
    stopped = {p.name: p.node for p in plan.pods
               if p.infra in pids and plan.node(p.node).container not in pids}
    spaces = [Namespace(ep.name, pids[ep.container], False,
                        None if trace or ep.name in both_ways else ep.addresses,
                        tuple(sorted(ports.get(ep.name, ()))), ep.families)
              for ep in eps.values() if ep.container in pids and ep.name not in stopped
              and (trace or ep.name in names)]
    running = {s.name for s in spaces}
    probes = []
    for path in spaths:
        watch = tuple(e.pod for e in path.watch)
        probe = Probe(next(_IDS), path.proto, path.client,
                      path.outcomes[0].endpoint if path.outcomes else "", path.client_ip,
                      path.dst_ip, bool(path.outcomes), to_port=path.dport, alternatives=watch)
        down = [n + (f" (its node {stopped[n]} is stopped)" if n in stopped else "")
                for n in dict.fromkeys((path.client, path.entry, *watch)) if n not in running]
        if down:
            probe.error = f"{', '.join(down)} not running"
        probes.append((path, probe))
    with Engine(spaces, keep_frames=trace, timeout=timeout) as engine:
        engine.run(p for _, p in probes)
        sightings, heard = engine.sightings, engine.heard
    same = {p.name: p.node for p in plan.pods if p.host_network}
    results = [services.judge(path, probe, sightings.get(probe.id, []),
                              heard.get(probe.id, []), same) for path, probe in probes]
    return results, sightings


def probe_jobs(plan: Plan, pids: dict[str, int], jobs: list[tuple[Target, str]],
               trace: bool = False, timeout: float = 2.0, window: int = 256,
               progress: Callable[[int, int], None] | None = None,
               ) -> tuple[list[Result], dict[int, list[Seen]]]:
    """Send one probe per (target, protocol), all concurrently; one Result each."""
    spaces = _spaces(plan, pids, [t for t, _ in jobs], trace)
    probes = [(t, Probe(next(_IDS), proto, t.sender, t.receiver, t.src_ip, t.exp.dst_ip,
                        t.expect_reply)) for t, proto in jobs]
    running = {s.name for s in spaces}
    for t, probe in probes:
        for end in (t.sender, t.receiver):
            if end not in running:
                probe.error = f"{end} is not running"
        if not t.src_ip and probe.error is None:
            probe.error = f"{t.sender} has no route to {t.exp.dst_ip}"
    total = len(probes)

    def tick(done: int) -> None:
        if progress:
            progress(done, total)

    results, sightings = shard.judge(spaces, probes, trace=trace, timeout=timeout,
                                     window=window, shards=shard.shards_for(total),
                                     progress=tick)
    return results, sightings
