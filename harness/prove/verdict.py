"""The verdict: the headers a probe's packets had against those the plan expects, and the
diagnosis of what changed where. Pure: it reads records (harness.prove.probe) that the
engine filled, or that a unit test wrote by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.plan import PodPlan
from harness.prove.probe import SYN, TCP_PORT, TTL, UDP_PORT, Probe, Seen
from harness.prove.result import Result
from harness.prove.targets import Target


def identity(pod: PodPlan, eth0: Sequence[str] | None,
             netns_of: Mapping[str, int | None]) -> Result:
    """pod-identity of one pod: `eth0` is what the pod's eth0 holds (None: the infra
    container is not running), `netns_of` maps each container of the pod (and its infra)
    to its network namespace inode (None: not running)."""
    observed: dict[str, Any] = {}
    problems = []
    ns = netns_of.get(pod.infra)
    if eth0 is None or ns is None:
        problems.append(f"infra container {pod.infra} is not running")
    else:
        observed["eth0"] = list(eth0)
        if pod.cidr not in eth0:
            problems.append(f"eth0 holds {list(eth0) or 'no address'}, plan says {pod.cidr}")
        outside = [c.name for c in pod.containers if netns_of.get(c.container) != ns]
        observed["containers_in_netns"] = [c.name for c in pod.containers
                                           if c.name not in outside]
        if outside:
            problems.append(f"container(s) {', '.join(outside)} not in the pod's network "
                            "namespace")
    return Result(
        "pod-identity", pod.name, pod.name, "-", not problems,
        {"ip": pod.cidr, "containers_in_netns": [c.name for c in pod.containers]},
        observed, "; ".join(problems) or f"{pod.name} is {pod.ip} on eth0; all "
        f"{len(pod.containers)} containers share its network namespace")


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
