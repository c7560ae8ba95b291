"""The `path` check, its pure part: which hops each traced pair must cross (from the plan)
and the verdict on the answers its probes got.

A path probe is sent with TTL (IPv6: hop limit) 1, 2, ... from the sender's namespace.
TTL k expires at the k-th forwarding device, which answers with an ICMP time-exceeded
quoting the header it received; the probe of one TTL more reaches the destination, which
answers too (UDP: port unreachable; ICMP echo: echo reply). So each TTL names one hop,
and each quote shows the header as that hop received it: the first hop whose quote
differs from what was sent locates a rewrite to the hop before it.

Targets are per source and destination node (per family), and the destination pod
rotates with the source so every pod is some source's destination: a source pod to one
pod of every other node, a node to one pod of every other node, a pod to every other
node's own address and to every outside host. Pairs that cross no forwarding device
(pods on one bridge, a pod and its own node) have no hop to ask and are not traced.

Pure: the engine (harness.prove.pathprobe) fills `Answer` records; unit tests write
them by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.plan import Expectation, Plan
from harness.prove.result import Result

CHECK = "path"
TRIES = 2  # a silent hop is asked this many times with UDP, then as often with ICMP echo
MORE = 3  # TTLs past the planned destination asked again when the path differs
# failure classes, worst first (JSON `failure`; the truth table marks them)
UNSENT, DETOUR, REWRITE, SILENT, LOST, ADDRESS = (
    "unsent", "detour", "rewrite", "silent", "lost", "address")
CLASSES = (UNSENT, DETOUR, REWRITE, SILENT, LOST, ADDRESS)


@dataclass(frozen=True)
class Hop:
    """One device a probe must cross (or end in), the addresses it may answer from (any
    of its own in the family: the kernel picks the source of its ICMP), and the header it
    must quote: `src` and, unless None (a masquerade may pick another), `sport`."""

    device: str
    addresses: tuple[str, ...]
    src: str
    sport: int | None = 0  # 0: the probe's own port, filled in when sent


@dataclass(frozen=True)
class PathTarget:
    """A pair to trace in one family: who sends, toward which address, and the hops the
    plan predicts, the destination last. `answer_back` False: the destination cannot
    answer (an outside host has no route back to an unmasqueraded pod), and is not one
    of the hops."""

    check: str  # the pair's own check: pod-to-pod, node-to-pod, pod-to-node, pod-to-external
    src: str
    dst: str
    sender: str  # the namespace that sends: a pod or node name
    family: str
    src_ip: str  # the sender's kernel's choice toward dst_ip ("": no route)
    dst_ip: str
    hops: tuple[Hop, ...]
    answer_back: bool = True
    expectation: str = "plan"  # where the hops come from: "plan", or "fabric" (the FIBs)

    @property
    def planned(self) -> list[str]:
        return [h.device for h in self.hops]


@dataclass(frozen=True)
class Quote:
    """The header a hop quoted (or the destination answered about): addresses and ports
    (ICMP echo: the id in both)."""

    src: str
    dst: str
    sport: int
    dport: int


@dataclass
class Answer:
    """What answered the probe of one TTL: `device` the namespace seen emitting it (None:
    only its arrival at the sender was seen), `from_ip` its source address, `kind`
    ("time-exceeded", "unreachable", "echo-reply"), `quote` as the emitter wrote it (else
    as the sender got it; None for an echo reply), `received`: it reached the sender's
    namespace, `proto`: the probe it answers."""

    ttl: int
    from_ip: str
    kind: str
    device: str | None = None
    quote: Quote | None = None
    received: bool = False
    proto: str = "udp"  # the probe answered: udp, or icmp (an echo where UDP was not)


# --------------------------------------------------------------------------- targets


def addresses_of(plan: Plan, name: str, family: str) -> tuple[str, ...]:
    """The bare addresses of a node or pod in `family`."""
    six = family == "ipv6"
    if name in {p.name for p in plan.pods}:
        pod = plan.pod(name)
        own = plan.node(pod.node).own_addresses if pod.host_network else pod.ips
    else:
        own = plan.node(name).own_addresses
    return tuple(a for a in own if (":" in a) == six)


def owners(plan: Plan) -> dict[str, str]:
    """Every address of the lab -> its device (node or pod), to name who answered."""
    out = {a: n.name for n in plan.nodes for a in n.own_addresses}
    out |= {ip: p.name for p in plan.pods if not p.host_network for ip in p.ips}
    return out


def pairs(plan: Plan, checks: Iterable[str] = ("pod-to-pod", "node-to-pod", "pod-to-node",
                                               "pod-to-external")
          ) -> list[tuple[str, Expectation, str]]:
    """(check, expectation, sender) of every pair the path check traces, in each family
    the ends share: see the module's docstring for the choice."""
    wanted = set(checks)
    pods = [p for p in plan.pods if not p.host_network]  # a hostNetwork pod is its node
    on: dict[str, list[str]] = {}
    for p in pods:
        on.setdefault(p.node, []).append(p.name)
    out: list[tuple[str, Expectation, str]] = []

    def add(check: str, e: Expectation, sender: str) -> None:
        if e.hops >= 1:  # a device forwards it: there is a hop to ask
            out.append((check, e, sender))

    for i, a in enumerate(pods):
        for there in on.values():
            b = there[i % len(there)]
            if b == a.name or "pod-to-pod" not in wanted:
                continue
            for f in plan.shared_families(a.name, b):
                add("pod-to-pod", plan.pod_to_pod(a.name, b, f), a.name)
        for n in plan.k8s_nodes:
            if "pod-to-node" in wanted and n.name != a.node:
                for f in plan.shared_families(a.name, n.name):
                    add("pod-to-node", plan.pod_to_node(a.name, n.name, f), a.name)
        for h in plan.externals if "pod-to-external" in wanted else ():
            for f in plan.shared_families(a.name, h.name):
                add("pod-to-external", plan.pod_to_external(a.name, h.name, f), a.name)
    for j, n in enumerate(plan.k8s_nodes):
        for node, there in on.items():
            if node == n.name or "node-to-pod" not in wanted:
                continue
            b = there[j % len(there)]
            for f in plan.shared_families(n.name, b):
                add("node-to-pod", plan.node_to_pod(n.name, b, f), n.name)
    return out


def forwarders(e: Expectation, sender: str) -> tuple[str, ...]:
    """The planned devices that forward a pair's packets: a pod's first is its node; a
    node's is the next device after it."""
    return e.path[:e.hops] if sender not in e.path[:1] else e.path[1:1 + e.hops]


def walk(start: str, dst_ip: str, dst: str, gateways: Mapping[str, Mapping[str, str | None]],
         who: Mapping[str, str], limit: int = 32) -> tuple[str, ...] | None:
    """The devices after `start` that the forwarding tables send `dst_ip` through, up to
    (not including) `dst`: each device's gateway toward it names the next
    (`gateways[device][dst_ip]`, None: on a connected link). None where a table has no
    route, a gateway is no device of the lab, or the walk loops."""
    out: list[str] = []
    here = start
    for _ in range(limit):
        if here == dst:
            return tuple(out[:-1])
        table = gateways.get(here)
        if table is None or dst_ip not in table:
            return None
        gw = table[dst_ip]
        nxt = dst if gw is None else who.get(gw)
        if nxt is None:
            return None
        out.append(nxt)
        here = nxt
    return None


def target(plan: Plan, check: str, e: Expectation, sender: str, src_ip: str,
           walked: Sequence[str] | None = None) -> PathTarget:
    """The hops of one pair: the devices that forward it, in order, then its destination.
    `walked`: the forwarders the forwarding tables send it through, expected instead of
    the plan's when as many (a routing daemon picks among equal paths)."""
    forwarders_ = forwarders(e, sender)
    fabric = walked is not None and len(walked) == len(forwarders_)
    if fabric:
        forwarders_ = tuple(walked)  # type: ignore[arg-type]
    masq = 0 if e.snat_to else None  # the masquerading node is the pod's node: hop 0
    # unmasqueraded, an outside host has no route back to a pod: its kernel cannot send
    # an answer at all, so only the hops before it are asked (pod-to-external proves the
    # datagram arrives)
    back = not (check == "pod-to-external" and not e.snat_to)
    hops = []
    for k, device in enumerate((*forwarders_, e.dst) if back else forwarders_):
        natted = masq is not None and k > masq
        hops.append(Hop(device, addresses_of(plan, device, e.family),
                        (e.snat_to or src_ip) if natted else src_ip, None if natted else 0))
    return PathTarget(check, e.src, e.dst, sender, e.family, src_ip, e.dst_ip, tuple(hops),
                      back, "fabric" if fabric else "plan")


def targets(plan: Plan, sources: Mapping[str, Mapping[str, str]],
            checks: Iterable[str] = ("pod-to-pod", "node-to-pod", "pod-to-node",
                                     "pod-to-external")) -> list[PathTarget]:
    """Every traced pair; `sources[sender][dst_ip]` is the source the sender's kernel
    picks (its own route lookup), absent where it has no route."""
    return [target(plan, check, e, sender, sources.get(sender, {}).get(e.dst_ip, ""))
            for check, e, sender in pairs(plan, checks)]


# --------------------------------------------------------------------------- verdict


def _ttl_word(family: str) -> str:
    return "hop limit" if family == "ipv6" else "TTL"


def judge(t: PathTarget, answers: Mapping[int, Answer], proto: str = "udp", sport: int = 0,
          dport: int = 0, error: str | None = None, tries: int = TRIES,
          who: Mapping[str, str] | None = None) -> Result:
    """The verdict on one traced pair: `answers` by TTL (1 = the first hop), the probe's
    own ports (`sport`, `dport`; ICMP: the echo id in both), `error` when it could not be
    sent, `who` maps addresses to devices (to name an answer seen only at the sender)."""
    who = who or {}
    planned = t.planned
    expected: dict[str, Any] = {"hops": planned, "src": t.src_ip, "dst": t.dst_ip,
                                "expectation": t.expectation}
    observed: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []  # (class, sentence)
    word = _ttl_word(t.family)
    if error:
        return _result(t, proto, expected, observed, [(UNSENT, error)])
    seen: list[str] = []
    answered: list[dict[str, Any]] = []
    last = max([len(t.hops), *answers])
    for k in range(1, last + 1):
        a = answers.get(k)
        if a is None:
            if k <= len(t.hops):
                seen.append("?")
            continue
        name = a.device or who.get(a.from_ip) or a.from_ip
        seen.append(name)
        answer: dict[str, Any] = {"ttl": k, "device": name, "from": a.from_ip,
                                  "kind": a.kind, "received": a.received}
        if a.proto == "icmp":
            answer["probe"] = "icmp echo"
        if a.quote:
            answer["quote"] = vars(a.quote)
        answered.append(answer)
        if name == t.dst:  # the destination answered: nothing further is on the path
            break
    while seen and seen[-1] == "?" and len(seen) > len(planned):
        seen.pop()
    observed["hops"] = seen
    observed["answers"] = answered
    shown = f"{'plan' if t.expectation == 'plan' else 'forwarding tables'}: " \
            f"{' > '.join(planned)}"
    differs = [k for k in range(1, max(len(seen), len(planned)) + 1)
               if k > len(seen) or k > len(planned) or
               (seen[k - 1] != planned[k - 1] and seen[k - 1] != "?")]
    if differs:
        k = differs[0]
        got = seen[k - 1] if k <= len(seen) else "nothing"
        want = planned[k - 1] if k <= len(planned) else "nothing (the destination was hop " \
                                                        f"{len(planned)})"
        problems.append((DETOUR, f"detour: hops answered {' > '.join(seen)}, {shown}; "
                                 f"hop {k} ({word} {k}) was {got}, not {want}"))
    for k, hop in enumerate(t.hops, 1):
        a = answers.get(k)
        if a is None:
            problems.append((SILENT, f"hop {k} ({hop.device}) silent: no answer to {word} "
                                     f"{k} in {tries} tries of UDP and {tries} of ICMP "
                                     "echo"))
            continue
        name = a.device or who.get(a.from_ip) or a.from_ip
        if name == hop.device and a.from_ip not in hop.addresses:
            problems.append((ADDRESS, f"hop {k} answered from {a.from_ip}, not an address "
                                      f"of {hop.device} ({', '.join(hop.addresses)})"))
        if not a.received:
            problems.append((LOST, f"hop {k}'s answer ({name}, {a.kind}) never reached "
                                   f"{t.sender}"))
    rewrite = _first_rewrite(t, answers, sport, dport, who)
    if rewrite:
        problems.append((REWRITE, rewrite))
    return _result(t, proto, expected, observed, problems)


def _want(t: PathTarget, hop: Hop, sport: int, dport: int, proto: str = "udp"
          ) -> dict[str, Any]:
    if proto == "icmp":  # an echo: its id stands in both port fields
        dport = sport
    want: dict[str, Any] = {"src": hop.src, "dst": t.dst_ip, "dport": dport}
    if hop.sport is not None:
        want["sport"] = sport
    return want


LABELS = {"src": "source", "dst": "destination", "sport": "source port",
          "dport": "destination port"}


def _first_rewrite(t: PathTarget, answers: Mapping[int, Answer], sport: int, dport: int,
                   who: Mapping[str, str]) -> str | None:
    """The first hop whose quote differs from the header it should have received, and
    the hop before it (the last that quoted it as it should): the rewrite is between."""
    before = t.sender
    for k, hop in enumerate(t.hops, 1):
        a = answers.get(k)
        if a is None or a.quote is None:
            continue
        name = a.device or who.get(a.from_ip) or a.from_ip
        want = _want(t, hop, sport, dport, a.proto)
        got = vars(a.quote)
        changed = [f"{LABELS[key]} rewritten {value} -> {got[key]}"
                   for key, value in want.items() if got[key] != value]
        if changed:
            owner = who.get(got["src"]) if got["src"] != want["src"] else \
                who.get(got["dst"]) if got["dst"] != want["dst"] else None
            by = f" ({got['src'] if got['src'] != want['src'] else got['dst']} is " \
                 f"{owner}'s own address)" if owner else ""
            return (f"{', '.join(changed)} between {before} and {name}: {before} "
                    f"{'sent it' if before == t.sender else 'quoted it as expected'}, "
                    f"{name} (hop {k}) is the first hop whose quote differs{by}")
        before = name
    return None


def _result(t: PathTarget, proto: str, expected: dict[str, Any], observed: dict[str, Any],
            problems: Sequence[tuple[str, str]]) -> Result:
    if not problems:
        how = "as planned" if t.expectation == "plan" else \
            "as the forwarding tables route it (a path of the plan's length)"
        echoed = [str(a["ttl"]) for a in observed["answers"] if a.get("probe")]
        detail = (f"{' > '.join(observed['hops'])} answered in order {how} "
                  f"({_ttl_word(t.family)} {'1-' if len(t.hops) > 1 else ''}{len(t.hops)}); "
                  "every quote as sent"
                  + (f"; {_ttl_word(t.family)} {', '.join(echoed)} answered an ICMP echo, "
                     "not UDP" if echoed else "")
                  + ("" if t.answer_back else
                     f"; {t.dst} itself not asked: it has no route back to {t.sender}"))
        return Result(CHECK, t.src, t.dst, proto, True, expected, observed, detail,
                      family=t.family, expectation=t.expectation)
    worst = min((c for c, _ in problems), key=CLASSES.index)
    detail = "; ".join(dict.fromkeys(s for _, s in sorted(
        problems, key=lambda p: CLASSES.index(p[0]))))
    return Result(CHECK, t.src, t.dst, proto, False, expected, observed, detail,
                  family=t.family, expectation=t.expectation, failure=worst)
