"""The lab graph as an inline SVG: no JavaScript, no fonts or scripts from the network, so
an HTML report that embeds it is one self-contained file. Pure and deterministic.

Layout: columns by distance (in links) from the k8s-nodes, so pods' hosts stand on the
left and the outside world on the right; within a column, each node sits near the mean
row of its neighbours in the column before (one barycentre sweep). Every box lists its
pods; each link is a line labelled at both ends with the interface and its address.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from html import escape

from harness.kinds import kind
from harness.plan import NodePlan, Plan

BOX_W, LINE_H, PAD, GAP_X, GAP_Y = 190, 15, 8, 230, 40
MAX_PODS = 10  # listed per box; the rest as "+ N more pods"
FILL = {"k8s-node": "#dbeafe", "router": "#ffedd5", "switch": "#e5e7eb", "linux": "#dcfce7"}


def columns(plan: Plan) -> list[list[str]]:
    """Node names per column: BFS distance from every k8s-node at once."""
    names = [n.name for n in plan.nodes]
    adj: dict[str, list[str]] = {n: [] for n in names}
    for link in plan.links:
        a, b = link.a[0], link.b[0]
        adj[a].append(b)
        adj[b].append(a)
    start = [n.name for n in plan.k8s_nodes] or names[:1]
    depth = dict.fromkeys(start, 0)
    queue = deque(start)
    while queue:
        n = queue.popleft()
        for m in adj[n]:
            if m not in depth:
                depth[m] = depth[n] + 1
                queue.append(m)
    cols: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for n in names:
        cols[depth.get(n, 0)].append(n)
    # barycentre: a node follows its neighbours in the column before
    for i in range(1, len(cols)):
        before = {n: j for j, n in enumerate(cols[i - 1])}

        def centre(n: str, before: dict[str, int] = before) -> float:
            rows = [before[m] for m in adj[n] if m in before]
            return sum(rows) / len(rows) if rows else float(len(before))

        cols[i].sort(key=lambda n: (centre(n), names.index(n)))
    return [c for c in cols if c]


def _lines(plan: Plan, node: NodePlan) -> list[str]:
    lines = [f"{node.name} ({node.kind})"]
    if node.pod_cidr:
        lines.append(f"pods {', '.join(node.pod_cidrs)}")  # every family's
    pods = [p for p in plan.pods if p.node == node.name]
    lines += [f"▪ {p.name} {' '.join(p.ips)}" for p in pods[:MAX_PODS]]
    if len(pods) > MAX_PODS:
        lines.append(f"+ {len(pods) - MAX_PODS} more pods")
    return lines


def to_svg(plan: Plan, failing: Collection[str] = ()) -> str:
    """The SVG text of the plan's graph; nodes named in `failing` get a red border."""
    boxes: dict[str, tuple[float, float, float, float]] = {}  # name -> x, y, w, h
    text: dict[str, list[str]] = {}
    height = 0.0
    for i, col in enumerate(columns(plan)):
        y = float(PAD)
        for name in col:
            lines = _lines(plan, plan.node(name))
            h = len(lines) * LINE_H + 2 * PAD
            boxes[name] = (PAD + i * (BOX_W + GAP_X), y, BOX_W, h)
            text[name] = lines
            y += h + GAP_Y
        height = max(height, y)
    width = max((x + w for x, _, w, _ in boxes.values()), default=0) + PAD
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
           f'aria-label="lab {escape(plan.lab)}" font-family="sans-serif" font-size="11">']
    for link in plan.links:
        (a, ia), (b, ib) = link.a, link.b
        ax, ay = _anchor(boxes[a], boxes[b])
        bx, by = _anchor(boxes[b], boxes[a])
        out.append(f'<line class="link" x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" '
                   f'y2="{by:.1f}" stroke="#6b7280" stroke-width="1.5"/>')
        for (x, y), (ox, oy), label in (((ax, ay), (bx, by), _end(ia, link.a_address)),
                                        ((bx, by), (ax, ay), _end(ib, link.b_address))):
            if abs(ox - x) >= abs(oy - y):  # across columns: above the line, from its end
                right = ox > x
                lx, ly = x + (6 if right else -6), y + (oy - y) * 0.1 - 4
                anchor = "start" if right else "end"
            else:  # within a column: beside the line
                lx, ly, anchor = x + 5, y + (12 if oy > y else -4), "start"
            out.append(f'<text class="iface" x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" '
                       f'fill="#374151" font-size="10">{escape(label)}</text>')
    for name, (x, y, w, h) in boxes.items():
        node = plan.node(name)
        bad = name in failing
        stroke = "#dc2626" if bad else "#6b7280"
        rx = 12 if kind(node.kind).is_switch else 4
        out.append(f'<g class="node{" failing" if bad else ""}" data-name="{escape(name)}">'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{w}" height="{h}" rx="{rx}" '
                   f'fill="{FILL.get(node.kind, "#f3f4f6")}" stroke="{stroke}" '
                   f'stroke-width="{2.5 if bad else 1.2}"/>')
        for j, line in enumerate(text[name]):
            weight = ' font-weight="bold"' if j == 0 else ""
            out.append(f'<text x="{x + PAD:.1f}" y="{y + PAD + (j + 0.8) * LINE_H:.1f}"'
                       f'{weight}>{escape(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _end(iface: str, address: str | None) -> str:
    return f"{iface} {address}" if address else iface


def _anchor(box: tuple[float, float, float, float],
            other: tuple[float, float, float, float]) -> tuple[float, float]:
    """Where a line to `other` leaves `box`: a side facing it, at mid-height or mid-width."""
    x, y, w, h = box
    ox, oy, ow, _ = other
    if ox > x + w:
        return x + w, y + min(h / 2, 20)
    if ox + ow < x:
        return x, y + min(h / 2, 20)
    return x + w / 2, (y + h if oy > y else y)
