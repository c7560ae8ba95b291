"""The lab as a graph of L3 devices and the L2 segments between them. Pure.

A switch (with every switch linked to it) is one segment; a link between two non-switch
nodes is a point-to-point segment. Devices are the non-switch nodes. Paths are shortest
in device hops (breadth-first, ties broken by file order), and only k8s-nodes and routers
forward, so a `linux` host is never a transit hop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from harness.kinds import kind

Endpoint = tuple[str, str]  # (node, interface)


@dataclass
class Segment:
    index: int
    kind: str  # "switch" | "p2p" | "pods"
    name: str
    switches: list[str] = field(default_factory=list)
    members: list[tuple[str, str, int]] = field(default_factory=list)  # (node, iface, link)
    switch_ports: list[tuple[str, str, int]] = field(default_factory=list)

    def devices(self) -> list[str]:
        seen: list[str] = []
        for node, _, _ in self.members:
            if node not in seen:
                seen.append(node)
        return seen


@dataclass(frozen=True)
class Hop:
    """One step of a path: `device` sends into `segment` toward the next device."""

    device: str
    segment: int


class LabGraph:
    def __init__(self, kinds: dict[str, str], segments: list[Segment],
                 down_links: frozenset[int] = frozenset(),
                 no_transit: frozenset[str] = frozenset()):
        self.kinds = kinds
        self.segments = segments
        self.down_links = down_links  # links whose cable is pulled: they carry nothing
        self.no_transit = no_transit  # devices nothing is routed through (still endpoints)
        self.attached: dict[str, list[int]] = {n: [] for n, k in kinds.items()
                                               if not kind(k).is_switch}
        for seg in segments:
            for device, _, link in seg.members:
                if link in down_links:  # its cable into the segment is pulled
                    continue
                if seg.index not in self.attached[device]:
                    self.attached[device].append(seg.index)

    def without(self, down_links: frozenset[int] = frozenset(),
                no_transit: frozenset[str] = frozenset()) -> LabGraph:
        """The same lab with `down_links` (indices into the file's links) carrying nothing
        and no path through `no_transit`. A device loses a segment when its own link into
        it is down; a down link between two switches is not modelled (the segment stays
        whole). Segments keep their indices."""
        return LabGraph(self.kinds, self.segments, self.down_links | down_links,
                        self.no_transit | no_transit)

    @classmethod
    def from_links(cls, kinds: dict[str, str],
                   links: list[tuple[Endpoint, Endpoint]]) -> LabGraph:
        """Group links into segments: switches joined by links merge into one segment."""
        parent: dict[str, str] = {n: n for n, k in kinds.items() if kind(k).is_switch}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for (a, _), (b, _) in links:
            if a in parent and b in parent:
                parent[find(b)] = find(a)
        segments: list[Segment] = []
        by_root: dict[str, Segment] = {}
        for i, ((a, ia), (b, ib)) in enumerate(links):
            switch_end = a if a in parent else b if b in parent else None
            if switch_end is None:
                seg = Segment(len(segments), "p2p", f"{a}:{ia}--{b}:{ib}")
                seg.members += [(a, ia, i), (b, ib, i)]
                segments.append(seg)
                continue
            root = find(switch_end)
            if root not in by_root:
                by_root[root] = Segment(len(segments), "switch", root)
                segments.append(by_root[root])
            seg = by_root[root]
            for node, iface in ((a, ia), (b, ib)):
                if node in parent:
                    seg.switch_ports.append((node, iface, i))
                    if node not in seg.switches:
                        seg.switches.append(node)
                else:
                    seg.members.append((node, iface, i))
        return cls(kinds, segments)

    def segment_of_switch(self, switch: str) -> Segment | None:
        for seg in self.segments:
            if switch in seg.switches:
                return seg
        return None

    def forwards(self, device: str) -> bool:
        return kind(self.kinds[device]).forwards and device not in self.no_transit

    def _bfs(self, src: str) -> dict[str, tuple[str, int] | None]:
        """parent[device] = (previous device, segment between them); parent[src] = None."""
        parent: dict[str, tuple[str, int] | None] = {src: None}
        queue = deque([src])
        while queue:
            u = queue.popleft()
            if u != src and not self.forwards(u):
                continue
            for s in self.attached[u]:
                for v in self.segments[s].devices():
                    if v not in parent:
                        parent[v] = (u, s)
                        queue.append(v)
        return parent

    def reachable_hosts(self, src: str) -> set[str]:
        return set(self._bfs(src))

    def path_to_segment(self, src: str, segment: int) -> list[Hop] | None:
        """Hops from `src` into `segment`; [] when src is attached to it, None if unreachable.

        The last hop's device is attached to the segment and (unless it is src) forwards.
        """
        if segment in self.attached[src]:
            return []
        parent = self._bfs(src)
        exits = [d for d in parent if d != src and self.forwards(d)
                 and segment in self.attached[d]]
        if not exits:
            return None
        hops = [Hop(exits[0], segment)]
        node = exits[0]
        while (step := parent[node]) is not None:
            prev, seg = step
            hops.insert(0, Hop(prev, seg))
            node = prev
        return hops

    def first_segments(self, src: str, segment: int) -> list[int]:
        """The segments `src` sends into first along every shortest path into `segment`
        (several where paths tie, in file order); [] when src is attached to it or cannot
        reach it."""
        if segment in self.attached[src]:
            return []
        best: dict[int, int] = {}
        for s in self.attached[src]:
            for v in self.segments[s].devices():
                if v == src or not self.forwards(v):
                    continue
                rest = self.path_to_segment(v, segment)
                if rest is not None and all(h.device != src for h in rest):
                    best[s] = min(best.get(s, len(rest) + 1), len(rest) + 1)
        shortest = min(best.values(), default=None)
        return [s for s, n in best.items() if n == shortest]
