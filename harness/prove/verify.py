"""The checks of the Kubernetes networking model, compared header by header with the plan.

Checks: pod-identity, intra-pod, pod-to-pod, node-to-pod, pod-to-node, pod-to-external.
Each yields one Result per (check, src, dst, proto); a failed one says what changed where,
or where its packet was last seen.
"""

from __future__ import annotations

import importlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness.kinds import kind
from harness.plan import Expectation, Plan
from harness.prove import mtu, noroute
from harness.prove.engine import (
    SYN,
    TCP_PORT,
    TTL,
    UDP_PORT,
    Engine,
    Namespace,
    Probe,
    Seen,
)

CHECKS = ("pod-identity", "intra-pod", "pod-to-pod", "node-to-pod", "pod-to-node",
          "pod-to-external", "mtu")
NOT_PROBED = ("pod-identity", "intra-pod", "mtu")  # checks with their own machinery
PROTOS = ("udp", "tcp", "icmp")
# probe ids: unique within this process, and unlikely to meet another run's in a capture
_IDS = itertools.count(int.from_bytes(os.urandom(3), "big") << 32)


@dataclass
class Result:
    check: str
    src: str
    dst: str
    proto: str
    ok: bool
    expected: dict[str, Any]
    observed: dict[str, Any]
    detail: str
    probe_ids: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "src": self.src, "dst": self.dst, "proto": self.proto,
                "ok": self.ok, "expected": self.expected, "observed": self.observed,
                "detail": self.detail}


@dataclass
class Report:
    lab: str
    results: list[Result]
    duration_s: float
    sightings: dict[int, list[Seen]] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)  # sentences for the reader

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        passed = sum(r.ok for r in self.results)
        out: dict[str, Any] = {
            "ok": self.ok, "lab": self.lab,
            "summary": {"passed": passed, "failed": len(self.results) - passed,
                        "total": len(self.results), "duration_s": round(self.duration_s, 3),
                        "notes": self.notes}}
        if with_results:
            out["results"] = [r.to_dict() for r in self.results]
        return out


@dataclass
class Target:
    """A probe to send and what its packets must look like, request and reply."""

    check: str
    exp: Expectation
    sender: str  # namespace names: pod name or node name
    receiver: str
    src_ip: str  # the source the sender uses
    expect_src: str  # the source the receiver must see
    expect_reply: bool


# --- the checks that need no probes ------------------------------------------------------

def check_identity(plan: Plan, pids: dict[str, int],
                   addresses: Callable[[int], dict[str, list[str]]],
                   inode: Callable[[int], int]) -> list[Result]:
    results = []
    for pod in plan.pods:
        infra = pids.get(pod.infra)
        observed: dict[str, Any] = {}
        problems = []
        if infra is None:
            problems.append(f"infra container {pod.infra} is not running")
        else:
            eth0 = addresses(infra).get("eth0", [])
            observed["eth0"] = eth0
            if pod.cidr not in eth0:
                problems.append(f"eth0 holds {eth0 or 'no address'}, plan says {pod.cidr}")
            ns = inode(infra)
            outside = [c.name for c in pod.containers
                       if c.container not in pids or inode(pids[c.container]) != ns]
            observed["containers_in_netns"] = [c.name for c in pod.containers
                                               if c.name not in outside]
            if outside:
                problems.append(f"container(s) {', '.join(outside)} not in the pod's network "
                                "namespace")
        results.append(Result(
            "pod-identity", pod.name, pod.name, "-", not problems,
            {"ip": pod.cidr, "containers_in_netns": [c.name for c in pod.containers]},
            observed, "; ".join(problems) or f"{pod.name} is {pod.ip} on eth0; all "
            f"{len(pod.containers)} containers share its network namespace"))
    return results


# --- probes -----------------------------------------------------------------------------

def targets(plan: Plan, checks: Iterable[str],
            route_source: Callable[[str, str], str | None]) -> list[Target]:
    """What to send for the probe checks; `route_source(node, dst)` asks the kernel."""
    wanted = set(checks)
    out: list[Target] = []
    pods = plan.pods
    if "pod-to-pod" in wanted:
        for a, b in itertools.permutations(pods, 2):
            e = plan.pod_to_pod(a.name, b.name)
            out.append(Target("pod-to-pod", e, a.name, b.name, a.ip, a.ip, True))
    for node in plan.k8s_nodes:
        for pod in pods:
            if "node-to-pod" in wanted:
                e = plan.node_to_pod(node.name, pod.name)
                src = route_source(node.name, pod.ip) or ""  # "": the node has no route
                out.append(Target("node-to-pod", e, node.name, pod.name, src, src, True))
            if "pod-to-node" in wanted:
                e = plan.pod_to_node(pod.name, node.name)
                out.append(Target("pod-to-node", e, pod.name, node.name, pod.ip, pod.ip, True))
    if "pod-to-external" in wanted:
        for host in plan.externals:
            for pod in pods:
                e = plan.pod_to_external(pod.name, host.name)
                seen_src = e.snat_to or pod.ip
                # unmasqueraded, the outside host has no route back: arrival is the proof
                out.append(Target("pod-to-external", e, pod.name, host.name, pod.ip, seen_src,
                                  plan.masquerade))
    return out


def _protos(target: Target) -> tuple[str, ...]:
    if not target.expect_reply:
        return ("udp", "icmp")  # a TCP handshake needs a way back
    return PROTOS


def evaluate(target: Target, probe: Probe, sightings: list[Seen],
             unanswered: frozenset[int] = frozenset(), traced: bool = False) -> Result:
    exp = target.exp
    hops = exp.hops
    want_req = {"src": target.expect_src, "dst": exp.dst_ip, "ttl": TTL - hops}
    want_rep = {"src": exp.dst_ip, "dst": target.src_ip, "ttl": TTL - hops}
    if probe.proto in ("udp", "tcp"):
        port = UDP_PORT if probe.proto == "udp" else TCP_PORT
        want_req |= {"sport": probe.sport, "dport": port}
    if exp.snat_to:
        want_req.pop("sport", None)  # masquerade may pick another port
    expected: dict[str, Any] = {**want_req, "hops": hops, "path": list(exp.path)}
    if probe.expect_reply:
        expected["reply"] = want_rep
    observed: dict[str, Any] = {}
    problems: list[str] = []
    # matched from every sighting, not only those made while the probe was in flight
    # a handshake segment shows where a TCP probe went, but only its data proves arrival
    arrivals = sorted((s for s in sightings if not s.outgoing and s.proto != SYN),
                      key=lambda s: s.ts)
    req = next((s for s in arrivals if not s.reply and s.ns == target.receiver), None)
    rep = next((s for s in arrivals if s.reply and s.ns == target.sender), None)
    if probe.error:
        problems.append(probe.error)
    if req is None and probe.error and (not probe.sent_at or (
            probe.id in unanswered and not traced)):
        pass  # never sent, or a handshake nobody traced: the error says all we know
    elif req is None:
        problems.append(_lost(target, probe, sightings, reply=False))
    else:
        observed |= _fields(req, want_req)
        problems += _mismatches(target, want_req, req, sightings, "request")
        if probe.expect_reply:
            if rep is None:
                problems.append(_lost(target, probe, sightings, reply=True))
            else:
                observed["reply"] = _fields(rep, want_rep)
                problems += _mismatches(target, want_rep, rep, sightings, "reply")
    ok = not problems
    if ok:
        ttl = f"TTL -{hops}" if hops else "TTL unchanged (no router on the path)"
        detail = (f"{target.expect_src} -> {exp.dst_ip} arrived unchanged, {ttl} as planned "
                  f"({' > '.join(exp.path)})")
        if exp.snat_to:
            detail = (f"masqueraded as expected: {target.src_ip} -> {exp.snat_to} by "
                      f"{exp.path[0]}; TTL -{hops}")
        if probe.expect_reply:
            detail += "; reply unchanged"
    else:
        detail = "; ".join(dict.fromkeys(problems))
    return Result(target.check, exp.src, exp.dst, probe.proto, ok, expected, observed, detail,
                  [probe.id])


def _fields(seen: Seen, want: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(seen, k) for k in want}


def _mismatches(target: Target, want: dict[str, Any], seen: Seen, sightings: list[Seen],
                leg: str) -> list[str]:
    out = []
    exp = target.exp
    a, b = (exp.src, exp.dst) if leg == "request" else (exp.dst, exp.src)
    for key, label in (("src", "source"), ("dst", "destination"), ("sport", "source port"),
                       ("dport", "destination port")):
        if key in want and getattr(seen, key) != want[key]:
            where = _rewriter(sightings, seen.reply, key, getattr(seen, key))
            if key == "src" and exp.snat_to and leg == "request" and seen.src == target.src_ip:
                out.append(f"not masqueraded: {a} reached {b} with its own address "
                           f"{seen.src}, expected {exp.snat_to} (NAT by {exp.path[0]})")
            else:
                out.append(f"{leg} {label} rewritten {want[key]} -> {getattr(seen, key)} "
                           f"{where} on the way from {a} to {b}")
    if seen.ttl != want["ttl"]:
        path = _route_taken(sightings, seen.reply)
        out.append(f"{leg} TTL dropped by {TTL - seen.ttl}, plan expects {exp.hops} "
                   f"({' > '.join(exp.path if leg == 'request' else reversed(exp.path))}); "
                   f"seen at {' > '.join(path)}")
    return out


def _ordered(sightings: list[Seen], reply: bool) -> list[Seen]:
    # along a path the TTL only falls; kernel timestamps order sightings of one TTL
    return sorted((s for s in sightings if s.reply == reply), key=lambda s: (-s.ttl, s.ts))


def _rewriter(sightings: list[Seen], reply: bool, key: str, value: Any) -> str:
    ordered = _ordered(sightings, reply)
    for i, seen in enumerate(ordered):
        if getattr(seen, key) == value:
            if seen.outgoing:
                return f"at {seen.ns} (leaving on {seen.ifname})"
            before = ordered[i - 1].ns if i else "the sender"
            return f"between {before} and {seen.ns}"
    return "somewhere"


def _route_taken(sightings: list[Seen], reply: bool) -> list[str]:
    names: list[str] = []
    for seen in _ordered(sightings, reply):
        if not names or names[-1] != seen.ns:
            names.append(seen.ns)
    return names


def _lost(target: Target, probe: Probe, sightings: list[Seen], reply: bool) -> str:
    leg = "reply" if reply else "request"
    ordered = _ordered(sightings, reply)
    a, b = (target.exp.dst, target.exp.src) if reply else (target.exp.src, target.exp.dst)
    if not ordered:
        return f"{leg} lost: never seen leaving {target.receiver if reply else target.sender}"
    first = ordered[0]
    for key, label in (("dst", "destination"), ("src", "source")):
        changed = next((x for x in ordered if getattr(x, key) != getattr(first, key)), None)
        if changed is not None:
            value = getattr(changed, key)
            return (f"{leg} {label} rewritten {getattr(first, key)} -> {value} "
                    f"{_rewriter(sightings, reply, key, value)}: it never reached {b} "
                    f"(last seen in {ordered[-1].ns})")
    last = ordered[-1]
    way = "leaving" if last.outgoing else "arriving at"
    return (f"{leg} from {a} to {b} lost: last seen {way} {last.ns} on {last.ifname} "
            f"(TTL {last.ttl})")


def run_probes(plan: Plan, pids: dict[str, int], checks: Iterable[str],
               route_source: Callable[[str, str], str | None], keep_frames: bool = False,
               timeout: float = 2.0, window: int = 256,
               progress: Callable[[int, int], None] | None = None,
               ) -> tuple[list[Result], dict[int, list[Seen]]]:
    """Probe every target over every protocol concurrently; one Result each.

    The first pass sniffs only where probes end, which keeps a lab of hundreds of pods
    fast. Whatever fails is probed once more with every namespace traced, so its
    diagnosis can say where a header changed or where the packet was last seen.
    """
    jobs = [(t, proto) for t in targets(plan, checks, route_source) for proto in _protos(t)]
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
            why = noroute.diagnose(plan, t.exp.path, t.exp.dst_ip, t.src_ip, tables)
            if why:  # the routing table says it all; the loss report stays after it
                detail = results[i].detail
                results[i].detail = why if "has no route to" in detail else f"{why}; {detail}"
    return results, sightings


def route_tables(plan: Plan, pids: dict[str, int]) -> dict[str, list[str]]:
    """Each running node's main-table destinations (for noroute.diagnose)."""
    from harness.host import wiring

    return {n.name: [dst for dst, _, _ in wiring.routes(pids[n.container])]
            for n in plan.nodes if n.container in pids and not kind(n.kind).is_switch}


def _spaces(plan: Plan, pids: dict[str, int], tgts: list[Target],
            trace: bool) -> list[Namespace]:
    """Where to sniff. Normally only at the ends of each probe, for frames addressed to
    that namespace; tracing sniffs every namespace, both ways, to show a packet's path."""
    receivers = {t.receiver for t in tgts}
    ends = receivers | {t.sender for t in tgts}
    spaces = []
    for n in plan.nodes:
        if n.container not in pids:
            continue  # stopped: its probes fail before sending
        if trace or n.name in ends:
            own = [i.address.split("/")[0] for i in n.interfaces if i.address]
            own += [n.gateway.split("/")[0]] if n.gateway else []
            spaces.append(Namespace(n.name, pids[n.container], n.name in receivers,
                                    None if trace else tuple(own)))
    for p in plan.pods:
        if p.infra not in pids:
            continue
        if trace or p.name in ends:
            spaces.append(Namespace(p.name, pids[p.infra], p.name in receivers,
                                    None if trace else (p.ip,)))
    return spaces


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
    done = 0

    def tick(_: Probe) -> None:
        nonlocal done
        done += 1
        if progress and (done % 50 == 0 or done == total):
            progress(done, total)

    with Engine(spaces, keep_frames=trace, timeout=timeout, window=window) as engine:
        engine.run((p for _, p in probes), on_done=tick)
        sightings = engine.sightings
        unanswered = frozenset(engine.unanswered)
    results = [evaluate(t, p, sightings.get(p.id, []), unanswered, trace) for t, p in probes]
    return results, sightings


# --- orchestration ----------------------------------------------------------------------

def verify(plan: Plan, pids: dict[str, int], checks: Iterable[str] = CHECKS,
           keep_frames: bool = False,
           progress: Callable[[str, int, int], None] | None = None,
           timeout: float = 2.0) -> Report:
    """Run the checks against the deployed lab of `plan`, whose containers run as `pids`
    (`{container name: host pid}`, from the Lab)."""
    from harness.host import netns, wiring
    from harness.prove import intrapod

    started = time.monotonic()
    # scapy takes seconds to import: let it load while Docker and netlink answer
    threading.Thread(target=importlib.import_module, args=("scapy.layers.inet",),
                     daemon=True).start()
    checks = [c for c in CHECKS if c in set(checks)]
    if not pids:
        from harness.errors import LabNotFoundError

        raise LabNotFoundError(f"lab {plan.lab!r} is not deployed; run podlab deploy -t "
                               f"{plan.topo_path or 'FILE'} first")
    results: list[Result] = []
    if "pod-identity" in checks:
        results += check_identity(plan, pids, wiring.addresses, netns.netns_inode)
    sightings: dict[int, list[Seen]] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        intra = pool.submit(intrapod.check_all, plan, pids) if "intra-pod" in checks else None
        probe_checks = [c for c in checks if c not in NOT_PROBED]
        if probe_checks:
            # the kernel's own choice of source, asked once per node for all its pods
            pod_ips = [p.ip for p in plan.pods]
            sources = {n.name: wiring.route_sources(pids[n.container], pod_ips)
                       for n in plan.k8s_nodes
                       if "node-to-pod" in probe_checks and n.container in pids}

            def source(node: str, dst: str) -> str | None:
                return sources.get(node, {}).get(dst)

            probe_results, sightings = run_probes(
                plan, pids, probe_checks, source, keep_frames=keep_frames, timeout=timeout,
                progress=(lambda d, t: progress("probes", d, t)) if progress else None)
            results += probe_results
        if intra is not None:
            results += intra.result()
    if "mtu" in checks:  # after the probes: its raw ICMP sockets would see theirs
        results += [Result(mtu.CHECK, v.src, v.dst, "icmp", v.ok, v.expected, v.observed,
                           v.detail) for v in mtu.check(plan, pids)]
    order = {c: i for i, c in enumerate(CHECKS)}
    results.sort(key=lambda r: order[r.check])
    # sightings are only wanted for pcaps: a 200-pod lab has hundreds of thousands
    return Report(plan.lab, results, time.monotonic() - started,
                  sightings if keep_frames else {})
