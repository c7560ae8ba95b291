"""The frames of a failed result, dissected by scapy: what a reader checks the diagnosis
against. Each failed result that has frames (its probes' sightings: traced failures, and
the path check's probes and answers) gets `observed["frames"]`, one line per frame in the
order seen: where (namespace, interface, in or out) and scapy's one-line summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.prove.probe import Seen
from harness.prove.result import Result

MAX_FRAMES = 40  # per result: a lost probe traced through a 200-pod lab stays readable
# failures whose frames scapy summarises; later ones get the sniffer's own fields, so a
# lab where thousands fail is not dissected for minutes
DISSECTED = 1000


def line(seen: Seen, dissect: bool = True) -> str:
    """`ns iface >|< summary (TTL n)` of one sighting (> leaving, < arriving; iface `-`:
    a crafted packet as handed to the sender's kernel): scapy's summary, or without
    `dissect` the fields the sniffer read."""
    from scapy.layers.l2 import Ether

    way = ">" if seen.outgoing else "<"
    what = Ether(seen.frame).summary() if seen.frame is not None and dissect else (
        f"{seen.proto} {seen.src}:{seen.sport} > {seen.dst}:{seen.dport}")
    return f"{seen.ns} {seen.ifname} {way} {what} ({'hop limit' if ':' in seen.src else 'TTL'} " \
           f"{seen.ttl})"


def of(result: Result, sightings: Mapping[int, Sequence[Seen]]) -> list[Seen]:
    return sorted((s for pid in result.probe_ids for s in sightings.get(pid, ())),
                  key=lambda s: s.ts)


def attach(results: Sequence[Result], sightings: Mapping[int, Sequence[Seen]]) -> None:
    """Give every failed result with sightings its frames' summaries."""
    done = 0
    for r in results:
        if r.ok or not r.probe_ids:
            continue
        seen = of(r, sightings)
        if seen:
            done += 1
            shown = [line(s, done <= DISSECTED) for s in seen[:MAX_FRAMES]]
            if len(seen) > MAX_FRAMES:
                shown.append(f"... {len(seen) - MAX_FRAMES} more (--pcap DIR keeps them all)")
            r.observed["frames"] = shown


def detail(seen: Seen) -> str:
    """scapy's show2() of one frame, as text (the HTML report's full dissection)."""
    from scapy.layers.l2 import Ether

    if seen.frame is None:
        return line(seen)
    return str(Ether(seen.frame).show2(dump=True))
