"""The Service checks: pod-to-service, node-to-service, external-to-nodeport,
external-to-hostport. Each path (harness.plan.servicepaths) is probed over its own
protocol; the verdict is pure: what the endpoint's socket saw, where on the wire the
destination and the source were rewritten, and who the reply came from, against the
outcomes the plan allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness.plan.servicepaths import Outcome, ServicePath
from harness.prove.probe import Heard, Probe, Seen
from harness.prove.result import Result


def rewrite_at(sightings: Sequence[Seen], reply: bool, key: str, first: object) -> str | None:
    """The namespace where header `key` stopped being `first` along the path, or None (not
    rewritten on the wire). The path is cut into runs of sightings in one namespace; a
    run that saw both values rewrote it (inside one namespace the order of sightings is
    unreliable: a bridged frame is seen on the port and on the bridge with one timestamp,
    DNATed in between by br_netfilter). A run that only saw the new value got it from the
    run before: rewritten there if that one never sent it unchanged (its outgoing frame
    was not sniffed), else on arrival here (a bridge's PREROUTING)."""
    runs: list[tuple[str, set[object], bool]] = []  # (ns, values, sent it unchanged)
    for seen in _path_order(sightings, reply):
        if not runs or runs[-1][0] != seen.ns:
            runs.append((seen.ns, set(), False))
        ns, values, sent = runs[-1]
        value = getattr(seen, key)
        values.add(value)
        runs[-1] = (ns, values, sent or (seen.outgoing and value == first))
    for i, (ns, values, _) in enumerate(runs):
        if first in values and len(values) > 1:
            return ns
        if first not in values:
            if i == 0 or runs[i - 1][2]:
                return ns
            return runs[i - 1][0]
    return None


def _path_order(sightings: Sequence[Seen], reply: bool) -> list[Seen]:
    """Sightings of one leg along the path: the TTL only falls, and at one TTL a frame
    leaves a namespace before it arrives at the next (timestamps of two namespaces tie or
    cross when one bridges or hairpins a frame within microseconds)."""
    return sorted((s for s in sightings if s.reply == reply),
                  key=lambda s: (-s.ttl, not s.outgoing, s.ts))


def _where(ns: str | None, path: ServicePath, planned: str | None) -> str:
    if ns is None:
        return "nowhere on the wire (inside one namespace)"
    return f"at {ns}" + ("" if ns == planned else f", not at {planned or 'any node'}")


def judge(path: ServicePath, probe: Probe, sightings: Sequence[Seen],
          heard: Sequence[Heard], same: Mapping[str, str] | None = None) -> Result:
    """The verdict on one Service probe. `same` names namespaces seen under two names by
    their node's (a hostNetwork pod's sniffer sees its node's frames)."""
    if same:
        sightings = [replace(s, ns=same.get(s.ns, s.ns)) for s in sightings]
    allowed = {o.endpoint: o for o in path.outcomes}
    expected: dict[str, Any] = {
        "dst": f"{path.dst_ip}:{path.dport}", "entry": path.entry,
        "endpoints": [{"pod": o.endpoint, "dst": f"{o.ip}:{o.port}", "src": o.src,
                       "sport": "kept" if o.keep_sport else "rewritten",
                       "dnat_at": o.dnat_at, "snat_at": o.snat_at} for o in path.outcomes]}
    if path.outcomes:
        expected["reply"] = {"src": path.dst_ip, "sport": path.dport}
    got = next((h for h in heard if not h.reply and probe.ends_in(h.ns)), None)
    reply = next((h for h in heard if h.reply and h.ns == probe.sender), None)
    observed: dict[str, Any] = {}
    if got is not None:
        observed["endpoint"] = {"pod": got.ns, "dst": f"{got.dst}:{got.dport}",
                                "src": got.src, "sport": got.sport}
    if reply is not None:
        observed["reply"] = {"src": reply.src, "sport": reply.sport}
    if not path.outcomes:
        return _no_answer(path, probe, got, reply, sightings, expected, observed)
    problems: list[str] = []
    outcome = allowed.get(got.ns) if got else None
    if got is None:
        problems.append(probe.error or "")
        problems.append(_lost(path, probe, sightings))
    elif outcome is None:
        problems.append(f"reached {got.ns}, which is not an endpoint it may reach "
                        f"(allowed: {', '.join(allowed)})")
    else:
        problems += _endpoint(path, probe, outcome, got, sightings)
        if reply is None:
            problems.append(probe.error or f"no reply reached {path.client} (sent by "
                            f"{got.ns})")
        elif (reply.src, reply.sport) != (path.dst_ip, path.dport):
            problems.append(f"reply came from {reply.src}:{reply.sport}, not from "
                            f"{path.dst_ip}:{path.dport}: the {outcome.dnat_at} conntrack "
                            "did not undo its DNAT on the way back")
    problems = [p for p in dict.fromkeys(problems) if p]
    ok = not problems
    if ok:
        assert outcome is not None and got is not None
        snat = (f"masqueraded to {outcome.src} ({outcome.snat_at}'s address)"
                if outcome.snat_at else f"source {outcome.src}:{probe.sport} kept")
        # where the DNAT happened, only as far as the wire showed it
        dnat = rewrite_at(sightings, False, "dst", path.dst_ip)
        where = f" at {dnat} (seen on the wire)" if dnat else ""
        detail = (f"{path.client_ip} -> {path.dst_ip}:{path.dport} DNATed{where} to "
                  f"{got.ns} {outcome.ip}:{outcome.port}; {snat}, as {got.ns}'s socket "
                  f"saw; reply from {path.dst_ip}:{path.dport}")
    else:
        detail = "; ".join(problems)
    return Result(path.check, path.client, path.target, probe.proto, ok, expected, observed,
                  detail, [probe.id], family=path.family)


def _endpoint(path: ServicePath, probe: Probe, o: Outcome, got: Heard,
              sightings: Sequence[Seen]) -> list[str]:
    out = []
    if (got.dst, got.dport) != (o.ip, o.port):
        out.append(f"{got.ns}'s socket got it for {got.dst}:{got.dport}, not {o.ip}:{o.port}")
    dnat = rewrite_at(sightings, False, "dst", path.dst_ip)
    if dnat is not None and dnat != o.dnat_at:
        out.append(f"destination rewritten {path.dst_ip} -> {o.ip} {_where(dnat, path, o.dnat_at)}"
                   f" (kube-proxy DNATs at {o.dnat_at})")
    if got.src != o.src:
        snat = rewrite_at(sightings, False, "src", path.client_ip)
        if o.snat_at and got.src == path.client_ip:
            out.append(f"not masqueraded: {got.ns} saw the client's own {got.src}, expected "
                       f"{o.src} (SNAT by {o.snat_at})")
        else:
            out.append(f"source rewritten {path.client_ip} -> {got.src} "
                       f"{_where(snat, path, o.snat_at)}; {got.ns} should see {o.src}")
    elif o.keep_sport and got.sport != probe.sport:
        where = rewrite_at(sightings, False, "sport", probe.sport)
        out.append(f"source port rewritten {probe.sport} -> {got.sport} "
                   f"{_where(where, path, None)}")
    elif not o.keep_sport and got.sport == probe.sport and got.src == path.client_ip:
        # MASQUERADE --random-fully always picks a new port: an unchanged source address
        # and port mean no SNAT happened at all
        out.append(f"not masqueraded: {got.ns} saw {got.src}:{got.sport} unchanged, expected "
                   f"SNAT by {o.snat_at} (kube-proxy's MASQUERADE --random-fully)")
    return out


def _no_answer(path: ServicePath, probe: Probe, got: Heard | None, reply: Heard | None,
               sightings: Sequence[Seen], expected: dict[str, Any],
               observed: dict[str, Any]) -> Result:
    expected["answer"] = None
    problems = []
    # nothing passes by absence: the request must be seen arriving at the node addressed,
    # and a probe that could not be sent (an end down, a send failure) proves nothing
    if probe.error and not probe.refused:
        problems.append(probe.error)
    arrived = any(s.ns == path.entry and not s.outgoing and not s.reply for s in sightings)
    if not arrived:
        problems.append(f"request never seen arriving at {path.entry}: "
                        + _lost(path, probe, sightings))
    if any(s.ns == path.entry and s.outgoing and s.reply for s in sightings):
        problems.append(f"a reply left {path.entry}")
    if got is not None:
        dnat = rewrite_at(sightings, False, "dst", path.dst_ip)
        problems.append(f"{path.entry} forwarded it to {got.ns} (DNAT "
                        f"{_where(dnat, path, None)}); it should not answer: no endpoint "
                        f"of {path.target} on {path.entry}")
    if reply is not None:
        problems.append(f"{path.client} got a reply from {reply.src}:{reply.sport}")
    ok = not problems
    detail = (f"{path.entry} did not answer {path.dst_ip}:{path.dport}, as planned "
              f"({_why_silent(path)}): request seen arriving at {path.entry}, no reply "
              "left it" if ok else "; ".join(dict.fromkeys(problems)))
    return Result(path.check, path.client, path.target, probe.proto, ok, expected, observed,
                  detail, [probe.id], family=path.family)


def _why_silent(path: ServicePath) -> str:
    if path.check == "external-to-hostport":
        return "the hostPort is published on its pod's node only"
    return "externalTrafficPolicy Local and no endpoint on this node"


def _lost(path: ServicePath, probe: Probe, sightings: Sequence[Seen]) -> str:
    ordered = _path_order(sightings, False)
    if not ordered:
        return f"request lost: never seen leaving {path.client}"
    last = ordered[-1]
    way = "leaving" if last.outgoing else "arriving at"
    dnat = rewrite_at(sightings, False, "dst", path.dst_ip)
    change = f"; DNAT {_where(dnat, path, path.entry)}" if dnat else (
        f"; not seen DNATed (kube-proxy DNATs at {path.entry})")
    return (f"request to {path.dst_ip}:{path.dport} lost: last seen {way} {last.ns} on "
            f"{last.ifname} addressed to {last.dst}:{last.dport}{change}")
