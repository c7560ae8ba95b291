"""The verdict: the headers a probe's packets had against those the plan expects, and the
diagnosis of what changed where. Pure: it reads records (harness.prove.probe) that the
engine filled, or that a unit test wrote by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.plan import PodPlan
from harness.prove.probe import TTL, Heard, Probe, Seen
from harness.prove.result import Result
from harness.prove.targets import Target


def _family(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


def identity(pod: PodPlan, eth0: Sequence[str] | None, netns_of: Mapping[str, int | None],
             peers_saw: Mapping[str, str] | None = None, family: str | None = None
             ) -> Result:
    """pod-identity of one pod in one address family (default: its first): `eth0` is what
    the pod's eth0 holds, every family's global addresses (None: the infra container is
    not running), `netns_of` maps each container of the pod (and its infra) to its network
    namespace inode (None: not running), `peers_saw` maps each source address (of this
    family) the pod's peers' sockets saw to one example of who saw it (None: no probe from
    this pod ran). eth0 must hold exactly one address of the family, the planned one, and
    none of a family the plan does not give the pod."""
    fam = family or pod.families[0]
    cidr, ip = pod.cidr_of(fam), pod.ip_of(fam)  # type: ignore[arg-type]
    word = "" if len(pod.families) == 1 else f"{'IPv6' if fam == 'ipv6' else 'IPv4'} "
    observed: dict[str, Any] = {}
    problems = []
    ns = netns_of.get(pod.infra)
    if eth0 is None or ns is None:
        problems.append(f"infra container {pod.infra} is not running")
    else:
        # this family's addresses, and any of a family the pod should not have at all
        mine = [a for a in eth0 if _family(a) == fam or _family(a) not in pod.families]
        observed["eth0"] = mine
        if sorted(set(mine)) != [cidr]:
            problems.append(f"eth0 holds {mine or f'no {word}address'}, plan says exactly "
                            f"{cidr}")
        outside = [c.name for c in pod.containers if netns_of.get(c.container) != ns]
        observed["containers_in_netns"] = [c.name for c in pod.containers
                                           if c.name not in outside]
        if outside:
            problems.append(f"container(s) {', '.join(outside)} not in the pod's network "
                            "namespace")
    if peers_saw is not None:
        observed["peers_saw"] = sorted(peers_saw)
        problems += [f"peers saw it as {addr} ({who})" for addr, who in peers_saw.items()
                     if addr != ip]
    expected: dict[str, Any] = {"eth0": [cidr],
                                "containers_in_netns": [c.name for c in pod.containers]}
    if peers_saw is not None:
        expected["peers_saw"] = [ip]
    peers = " and every peer's socket saw it as its source" if peers_saw else ""
    return Result(
        "pod-identity", pod.name, pod.name, "-", not problems, expected, observed,
        "; ".join(problems) or f"{pod.name} is {ip}, the only {word}address on eth0{peers}; "
        f"all {len(pod.containers)} containers share its network namespace", family=fam)


def host_identity(pod: PodPlan, node_addresses: Sequence[str] | None,
                  netns_of: Mapping[str, int | None], node_netns: int | None,
                  family: str | None = None) -> Result:
    """pod-identity of a hostNetwork pod in one family (default: its first): its
    containers are in its node's namespace (`node_netns`), and its address of that family,
    the node's, is on one of the node's interfaces (`node_addresses`, address/len of
    either family; None: the node is not running)."""
    fam = family or pod.families[0]
    cidr, ip = pod.cidr_of(fam) or pod.cidr, pod.ip_of(fam) or pod.ip  # type: ignore[arg-type]
    problems = []
    observed: dict[str, Any] = {}
    ns = netns_of.get(pod.infra)
    if ns is None or node_netns is None or node_addresses is None:
        problems.append(f"{pod.infra if ns is None else pod.node} is not running")
    else:
        observed["node_addresses"] = sorted(a for a in node_addresses if _family(a) == fam)
        if cidr not in node_addresses:
            problems.append(f"its node {pod.node} does not hold {cidr}")
        inside = [c.name for c in pod.containers if netns_of.get(c.container) == node_netns]
        observed["containers_in_node_netns"] = inside
        if ns != node_netns:
            problems.append(f"its infra container is not in {pod.node}'s network namespace")
        if len(inside) != len(pod.containers):
            outside = [c.name for c in pod.containers if c.name not in inside]
            problems.append(f"container(s) {', '.join(outside)} not in {pod.node}'s network "
                            "namespace")
    expected = {"node_addresses": [cidr],
                "containers_in_node_netns": [c.name for c in pod.containers]}
    return Result("pod-identity", pod.name, pod.name, "-", not problems, expected, observed,
                  "; ".join(problems) or f"{pod.name} is hostNetwork: it shares {pod.node}'s "
                  f"network namespace and address {ip}, as do all its "
                  f"{len(pod.containers)} containers", family=fam)


def wanted(target: Target, probe: Probe) -> tuple[dict[str, Any], dict[str, Any]]:
    """The headers the request and the reply must arrive with: addresses, ports (ICMP: the
    echo id) and TTL, on the wire and at the receiving socket alike."""
    exp = target.exp
    ttl = TTL - exp.hops
    back = TTL - (exp.reply_hops if exp.reply_hops is not None else exp.hops)
    want_req: dict[str, Any] = {"src": target.expect_src, "dst": exp.dst_ip, "ttl": ttl}
    want_rep: dict[str, Any] = {"src": exp.dst_ip, "dst": target.src_ip, "ttl": back}
    if probe.proto == "icmp":
        want_req["icmp_id"] = want_rep["icmp_id"] = probe.sport
    else:
        want_req |= {"sport": probe.sport, "dport": probe.dport}
        want_rep |= {"sport": probe.dport, "dport": probe.sport}
    if exp.snat_to:  # masquerade may pick another port or echo id; the reply gets it back
        want_req.pop("sport", None)
        want_req.pop("icmp_id", None)
    return want_req, want_rep


def evaluate(target: Target, probe: Probe, sightings: list[Seen], heard: Sequence[Heard] = (),
             unanswered: frozenset[int] = frozenset(), traced: bool = False) -> Result:
    """The verdict on one probe: its wire sightings (`sightings`) and what the sockets at
    both ends got (`heard`) against the plan."""
    exp = target.exp
    hops = exp.hops
    want_req, want_rep = wanted(target, probe)
    expected: dict[str, Any] = {**want_req, "hops": hops, "path": list(exp.path)}
    if exp.reply_hops is not None:
        expected["reply_hops"] = exp.reply_hops
    if exp.stop:
        expected["stop"] = exp.stop
    if probe.expect_reply:
        expected["reply"] = want_rep
    observed: dict[str, Any] = {}
    problems: list[str] = []
    # matched from every sighting, not only those made while the probe was in flight
    # a handshake segment shows where a TCP probe went, but only its data proves arrival
    arrivals = sorted((s for s in sightings if not s.outgoing and s.proto == probe.proto),
                      key=lambda s: s.ts)
    req = next((s for s in arrivals if not s.reply and s.ns == target.receiver), None)
    rep = next((s for s in arrivals if s.reply and s.ns == target.sender), None)
    req_heard = next((h for h in heard if not h.reply and h.ns == target.receiver), None)
    rep_heard = next((h for h in heard if h.reply and h.ns == target.sender), None)
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
        problems += _socket(want_req, req, req_heard, target.receiver, "request", observed,
                            probe.error is None)
        if probe.expect_reply:
            if rep is None:
                problems.append(_lost(target, probe, sightings, reply=True))
            else:
                observed["reply"] = _fields(rep, want_rep)
                problems += _mismatches(target, want_rep, rep, sightings, "reply")
                problems += _socket(want_rep, rep, rep_heard, target.sender, "reply",
                                    observed["reply"], probe.error is None)
    ok = not problems
    if ok:
        ttl = hops_phrase(exp.family, hops, source=exp.source)
        detail = (f"{target.expect_src} -> {exp.dst_ip} arrived unchanged on the wire and "
                  f"at {target.receiver}'s socket, {ttl}")
        if exp.snat_to:
            detail = (f"masqueraded as expected: {target.src_ip} -> {exp.snat_to} "
                      f"({exp.path[0]}'s address), seen so by {target.receiver}'s socket; "
                      f"{ttl}")
        if probe.expect_reply:
            detail += "; reply unchanged"
            if exp.reply_hops is not None:
                detail += f", {_ttl(exp.family)} -{exp.reply_hops} on its own way back"
        if exp.note:
            detail += f"; {exp.note}"
    else:
        if exp.stop:  # the tables said where it would die before it was sent
            problems.insert(0, f"in the fabric's tables, {exp.stop}")
        detail = "; ".join(dict.fromkeys(problems))
    return Result(target.check, exp.src, exp.dst, probe.proto, ok, expected, observed, detail,
                  [probe.id], exp.family, exp.source)


def hops_phrase(family: str, hops: int, seen: Sequence[str] | None = None,
                source: str = "plan") -> str:
    """What a passing result may say of its way: the hops by name only where they were
    observed (`seen`, in order); else only that the TTL (hop limit) fell by the planned
    number of routers (`source` "fabric": the number the fabric's tables route it
    through), which equal paths through other routers would match too."""
    word = _ttl(family)
    if seen:
        return f"{word} -{hops} over {' > '.join(seen)}"
    if not hops:
        return f"{word} unchanged, no router planned on the way (hops not observed)"
    if source == "fabric":
        return (f"{word} -{hops}, the number of routers the fabric's tables route it "
                "through (hops not observed)")
    return f"{word} -{hops}, the planned number of routers (hops not observed)"


def _ttl(family: str) -> str:
    """What the IP header's hop counter is called: IPv6's hop limit plays the TTL's part."""
    return "hop limit" if family == "ipv6" else "TTL"


LABELS = (("src", "source"), ("dst", "destination"), ("sport", "source port"),
          ("dport", "destination port"), ("icmp_id", "ICMP id"), ("ttl", "TTL"))


def _socket(want: dict[str, Any], wire: Seen, heard: Heard | None, ns: str, leg: str,
            observed: dict[str, Any], expect_heard: bool) -> list[str]:
    """Compare what the receiving socket got with what arrived on the wire: a difference
    was made inside the namespace, by its own netfilter, after the sniffer saw the frame."""
    if heard is None:
        if not expect_heard:
            return []
        return [f"{leg} reached {ns} on the wire but no socket in {ns} received it (dropped "
                f"or diverted inside {ns} after arrival: PREROUTING/INPUT)"]
    observed["socket"] = {k: getattr(heard, k) for k in want
                          if not (k == "ttl" and heard.ttl is None)}
    out = []
    for key, label in LABELS:
        if key not in want or (key == "ttl" and heard.ttl is None):
            continue
        got, before = getattr(heard, key), getattr(wire, key)
        if got != before:
            if key == "ttl":
                label = _ttl(_family(wire.src))
            out.append(f"{leg} {label} rewritten {before} -> {got} inside {ns} after arrival "
                       "(PREROUTING/INPUT)")
    return out


def _fields(seen: Seen, want: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(seen, k) for k in want}


def _mismatches(target: Target, want: dict[str, Any], seen: Seen, sightings: list[Seen],
                leg: str) -> list[str]:
    out = []
    exp = target.exp
    a, b = (exp.src, exp.dst) if leg == "request" else (exp.dst, exp.src)
    for key, label in LABELS[:-1]:
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
        whose = "plan expects" if exp.source == "plan" else "fabric's tables expect"
        out.append(f"{leg} {_ttl(exp.family)} dropped by {TTL - seen.ttl}, {whose} "
                   f"{TTL - want['ttl']} "
                   f"({' > '.join(exp.path if leg == 'request' else reversed(exp.path))}); "
                   f"seen at {' > '.join(path)}")
    return out


def _ordered(sightings: list[Seen], reply: bool) -> list[Seen]:
    # along a path the TTL only falls; kernel timestamps order sightings of one TTL, except
    # that a packet leaves its origin first (two namespaces' clocks can tie or cross)
    leg = [s for s in sightings if s.reply == reply]
    origin = {s.ns for s in leg if s.outgoing and s.ttl == TTL} - {
        s.ns for s in leg if not s.outgoing}
    return sorted(leg, key=lambda s: (-s.ttl, s.ns not in origin, s.ts))


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
            f"({_ttl(target.exp.family)} {last.ttl})")
