"""The truth table: who reaches whom, and how, at a glance (after cyclonus).

One matrix per check, protocol (and address family, when results carry one): sources
down, destinations across, one mark per result. `classify` is the whole judgement and is
pure; the rest is layout. A lab too wide for the terminal is summarised per node pair.

    .  as expected          N  NATed unexpectedly     n  not NATed where NAT was expected
    X  lost                 T  TTL off                P  port changed
    D  detour: a hop answered from another device than the plan's (path)
    !  failed otherwise (e.g. a pod's address or namespace is wrong)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.text import Text

OK, NAT, NO_NAT, LOST, TTL, PORT, OTHER = ".", "N", "n", "X", "T", "P", "!"
DETOUR = "D"
MARKS: dict[str, str] = {
    OK: "as expected", NAT: "NATed unexpectedly", NO_NAT: "not NATed where NAT was expected",
    LOST: "lost", TTL: "TTL off", PORT: "port changed", DETOUR: "detour",
    OTHER: "failed otherwise"}
# worst first: a summary cell shows the worst
SEVERITY = (LOST, NO_NAT, NAT, DETOUR, PORT, TTL, OTHER)
STYLE = {OK: "green", NAT: "bold magenta", NO_NAT: "bold magenta", LOST: "bold red",
         TTL: "bold yellow", PORT: "bold yellow", DETOUR: "bold cyan", OTHER: "bold red"}
# a check's own failure class (Result.failure) -> its mark
FAILURES = {"detour": DETOUR, "rewrite": NAT, "silent": LOST, "lost": LOST, "unsent": LOST}

_ADDRESS_KEYS = ("src", "dst")
_PORT_KEYS = ("sport", "dport", "icmp_id")
_TTL_KEYS = ("ttl", "hlim", "hop_limit")
# checks whose src and dst are one pod: a strip of pods, not a matrix
_SELF_CHECKS = ("pod-identity", "intra-pod")
MAX_ROWS = 40  # taller matrices are summarised per node pair
FRAMES_SHOWN = 12  # a failure's frames under it (-o json has them all)


# --------------------------------------------------------------------------- the judgement


def classify(result: Any) -> str:
    """The mark of one Result, from its expected and observed headers (request, reply and
    what the receiving socket got, each compared with what the plan wants) and, where
    those are silent, from its diagnosis."""
    if result.ok:
        return OK
    failure = getattr(result, "failure", None)
    if failure:
        return FAILURES.get(failure, OTHER)
    exp: Mapping[str, Any] = result.expected or {}
    obs: Mapping[str, Any] = result.observed or {}
    detail = (result.detail or "").lower()
    if not any(k in exp for k in _TTL_KEYS):  # not a packet check: identity, intra-pod
        peers = exp.get("peers_saw")
        if (peers is not None and obs.get("peers_saw") not in (None, peers)) \
                or "peers saw it as" in detail:
            return NAT  # the pod's peers saw another address as its source
        if obs.get("received") is False or obs.get("fits") is False \
                or "not running" in detail:
            return LOST  # intra-pod's message, or mtu's path-MTU packet, did not arrive
        return OTHER
    if not any(k in obs for k in (*_ADDRESS_KEYS, *_TTL_KEYS)):
        return LOST  # the request never arrived (or never left)
    nat_missing = "not masqueraded" in detail or "not nated" in detail
    marks = _leg(exp, obs, nat_missing)
    for key, leg in exp.items():  # the other legs: the reply, ...
        if isinstance(leg, Mapping):
            seen = obs.get(key)
            marks |= _leg(leg, seen, False) if isinstance(seen, Mapping) else {LOST}
    if not marks:
        marks = {_from_detail(detail)}
    return min(marks, key=SEVERITY.index)


def _leg(exp: Mapping[str, Any], obs: Mapping[str, Any], nat_missing: bool) -> set[str]:
    """Marks of one leg: its headers on the wire, and what the receiving socket got
    (`socket`, judged against the same wanted headers), when reported."""
    marks = _headers(exp, obs, nat_missing)
    sock = obs.get("socket")
    if isinstance(sock, Mapping) and not isinstance(exp.get("socket"), Mapping):
        marks |= _headers(exp, sock, nat_missing)
    return marks


def _headers(exp: Mapping[str, Any], obs: Mapping[str, Any], nat_missing: bool) -> set[str]:
    def differs(key: str) -> bool:
        return key in exp and key in obs and exp[key] != obs[key]

    marks = set()
    if any(differs(k) for k in _ADDRESS_KEYS):
        marks.add(NO_NAT if nat_missing and differs("src") else NAT)
    if any(differs(k) for k in _PORT_KEYS):
        marks.add(PORT)
    if any(differs(k) for k in _TTL_KEYS):
        marks.add(TTL)
    return marks


def _from_detail(detail: str) -> str:
    if any(w in detail for w in ("lost", "never", "no route", "not running", "no socket")):
        return LOST
    if "not masqueraded" in detail or "not nated" in detail:
        return NO_NAT
    if "port rewritten" in detail or "icmp id rewritten" in detail:
        return PORT
    if "rewritten" in detail:
        return NAT
    if "ttl" in detail or "hop limit" in detail:
        return TTL
    return OTHER


# --------------------------------------------------------------------------- matrices


@dataclass
class Cell:
    """The results of one (source, destination): one, or many in a node-pair summary."""

    marks: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # positions in the report's results

    @property
    def failed(self) -> int:
        return sum(m != OK for m in self.marks)

    @property
    def worst(self) -> str:
        bad = [m for m in self.marks if m != OK]
        return min(bad, key=SEVERITY.index) if bad else OK

    def text(self, summary: bool) -> str:
        worst = self.worst
        return worst if not summary or worst == OK else f"{worst}{self.failed}"


@dataclass
class Matrix:
    check: str
    proto: str
    family: str | None
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], Cell]
    strip: bool = False  # one row: a check of each pod on its own
    summary: bool = False  # rows and columns are nodes, cells count results

    @property
    def title(self) -> str:
        return " ".join(x for x in (self.family, self.proto) if x and x != "-") or "pods"

    @property
    def total(self) -> int:
        return sum(len(c.marks) for c in self.cells.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.cells.values())


def _end(name: str) -> str:
    return name.split("/", 1)[0]  # intra-pod: "web/sidecar" is pod web


def matrices(results: Sequence[Any], marks: Sequence[str] | None = None,
             order: Sequence[str] = ()) -> list[Matrix]:
    """One Matrix per (check, family, protocol), in the order the results come. `order`
    (node and pod names, plan order) orders rows and columns; names it lacks follow in
    order of first appearance."""
    marks = marks if marks is not None else [classify(r) for r in results]
    rank = {name: i for i, name in enumerate(order)}
    groups: dict[tuple[str, str | None, str], list[int]] = {}
    named = families_named(results)
    for i, r in enumerate(results):
        groups.setdefault((r.check, getattr(r, "family", None) if named else None, r.proto),
                          []).append(i)
    out = []
    for (check, family, proto), idx in groups.items():
        seen: dict[str, int] = {}
        for i in idx:
            for name in (_end(results[i].src), _end(results[i].dst)):
                seen.setdefault(name, len(seen))
        strip = check in _SELF_CHECKS or all(
            _end(results[i].src) == _end(results[i].dst) for i in idx)

        def key(name: str, seen: dict[str, int] = seen) -> tuple[int, int]:
            return (rank.get(name, len(rank)), seen[name])

        cells: dict[tuple[str, str], Cell] = {}
        for i in idx:
            src, dst = _end(results[i].src), _end(results[i].dst)
            cell = cells.setdefault(("", dst) if strip else (src, dst), Cell())
            cell.marks.append(marks[i])
            cell.index.append(i)
        srcs = {s for s, _ in cells}
        dsts = {d for _, d in cells}
        out.append(Matrix(check, proto, family, sorted(srcs, key=key) if not strip else [""],
                          sorted(dsts, key=key), cells, strip=strip))
    return out


def summarise(matrix: Matrix, node_of: Mapping[str, str],
              order: Sequence[str] = ()) -> Matrix:
    """The matrix per node pair: a pod stands for its node; a cell holds every result
    between the two nodes' pods (and the nodes themselves)."""
    rank = {name: i for i, name in enumerate(order)}

    def group(name: str) -> str:
        return node_of.get(name, name) if name else ""

    cells: dict[tuple[str, str], Cell] = {}
    for (src, dst), cell in matrix.cells.items():
        into = cells.setdefault((group(src), group(dst)), Cell())
        into.marks += cell.marks
        into.index += cell.index
    seen = {name: i for i, name in enumerate(dict.fromkeys(
        g for pair in cells for g in pair))}

    def key(name: str) -> tuple[int, int]:
        return (rank.get(name, len(rank)), seen[name])

    return Matrix(matrix.check, matrix.proto, matrix.family,
                  sorted({s for s, _ in cells}, key=key), sorted({d for _, d in cells}, key=key),
                  cells, strip=matrix.strip, summary=True)


# --------------------------------------------------------------------------- terminal


def _block(m: Matrix, layout: str) -> list[Text]:
    """The lines of one matrix. layout: `wide` (names across), `tall` (names written
    downwards, one column per character), `summary` (node pairs)."""
    summary = layout == "summary"
    texts = {k: c.text(summary) for k, c in m.cells.items()}
    if layout == "tall":
        colw = 1
    else:
        colw = max([len(c) for c in m.cols] + [len(t) for t in texts.values()] + [1])
    roww = max([len(r) for r in m.rows] + [0])
    lines = [Text(m.title, style="bold")]
    if layout == "tall":
        height = max(len(c) for c in m.cols)
        for i in range(height):
            lines.append(Text(" " * roww + " " + " ".join(c[i] if i < len(c) else " "
                                                          for c in m.cols), style="dim"))
    else:
        lines.append(Text(" " * roww + " " + " ".join(c.center(colw) for c in m.cols),
                          style="dim"))
    for row in m.rows:
        line = Text(row.ljust(roww) + " ", style="dim")
        for j, col in enumerate(m.cols):
            mark = texts.get((row, col))
            cell = (mark or "").center(colw) if colw > 1 else (mark or " ")
            line.append(cell, style=STYLE.get(mark[:1], "") if mark else "")
            if j < len(m.cols) - 1:
                line.append(" ")
        lines.append(line)
    return lines


def _width(lines: list[Text]) -> int:
    return max(line.cell_len for line in lines)


def _beside(blocks: list[list[Text]], width: int, gap: int = 4) -> list[Text]:
    """Blocks side by side while they fit in `width`, then the next row of blocks."""
    out: list[Text] = []
    row: list[list[Text]] = []

    def flush() -> None:
        if not row:
            return
        widths = [_width(b) for b in row]
        for i in range(max(len(b) for b in row)):
            line = Text()
            for j, b in enumerate(row):
                part = b[i] if i < len(b) else Text()
                line.append_text(part)
                if j < len(row) - 1:
                    line.append(" " * (widths[j] - part.cell_len + gap))
            out.append(line)
        out.append(Text())
        row.clear()

    for b in blocks:
        used = sum(_width(x) + gap for x in row)
        if row and used + _width(b) > width:
            flush()
        row.append(b)
    flush()
    return out


def layout_of(ms: Sequence[Matrix], width: int, node_of: Mapping[str, str] | None,
              max_rows: int = MAX_ROWS) -> str:
    """The most detailed layout in which every matrix of one check fits `width` and
    `max_rows` (a matrix of hundreds of rows is no longer read at a glance)."""
    if node_of and any(len(m.rows) > max_rows for m in ms):
        return "summary"
    for layout in ("wide", "tall"):
        if all(_width(_block(m, layout)) <= width for m in ms):
            return layout
    return "summary" if node_of else "tall"


def truth_view(report: Any, *, width: int = 100, node_of: Mapping[str, str] | None = None,
               order: Sequence[str] = (), max_failures: int = 50) -> RenderableType:
    """verify's default terminal view: a summary line, the matrices of each check, the
    legend, then the failures with their diagnosis."""
    results = report.results
    marks = [classify(r) for r in results]
    ms = matrices(results, marks, order)
    parts: list[RenderableType] = []
    passed = marks.count(OK)
    verdict = "[green]ok[/]" if passed == len(results) else "[bold red]FAILED[/]"
    drawn = f" [bold yellow]({escape(sample_of(report))}, not the proof)[/]" \
        if sample_of(report) else ""
    parts.append(Text.from_markup(
        f"lab {escape(report.lab)}: {verdict}{drawn} — {passed}/{len(results)} results as "
        f"expected in {report.duration_s:.2f} s"))
    for line in notes_of(report):
        parts.append(Text(line, style="dim"))
    parts.append(Text())
    by_check: dict[str, list[Matrix]] = {}
    for m in ms:
        by_check.setdefault(m.check, []).append(m)
    summarised = False
    for check, group in by_check.items():
        layout = layout_of(group, width, node_of)
        shown = [summarise(m, node_of or {}, order) for m in group] \
            if layout == "summary" else group
        summarised |= layout == "summary"
        total, failed = sum(m.total for m in group), sum(m.failed for m in group)
        head = Text(check, style="bold underline")
        head.append(f"  {total} results", style="")
        head.append(f", {failed} failed" if failed else ", all as expected",
                    style="bold red" if failed else "green")
        if layout == "summary":
            head.append("  (summarised per node pair)", style="dim")
        parts.append(head)
        parts.extend(_beside([_block(m, layout) for m in shown], width))
    parts.append(legend(summarised))
    failures = [(m, r) for m, r in zip(marks, results, strict=True) if m != OK]
    named = families_named(results)
    if failures:
        parts.append(Text())
        parts.append(Text(f"failures ({len(failures)})", style="bold red underline"))
        for mark, r in failures[:max_failures]:
            line = Text(f"{mark} ", style=STYLE[mark])
            line.append(f"{r.check} {_proto(r, named)} {r.src} -> {r.dst}: ", style="bold")
            line.append(r.detail)
            parts.append(line)
            for frame in (r.observed or {}).get("frames", ())[:FRAMES_SHOWN]:
                parts.append(Text(f"    {frame}", style="dim"))
        if len(failures) > max_failures:
            parts.append(Text(f"... and {len(failures) - max_failures} more: "
                              "-o table --all-results, or -o json", style="dim"))
    return Group(*parts)


def sample_of(report: Any) -> str:
    """"sample: n of m targets" for a `verify --quick` report, else "" (a full run)."""
    return getattr(report, "sample_text", "")


def notes_of(report: Any) -> list[str]:
    """The report's own remarks, when it has them: whether the NAT control ran, and why
    a selected check had nothing to check."""
    out = []
    control = getattr(report, "negative_control", None)
    if control and control != "not applicable":
        out.append(f"negative control (NAT towards outside hosts is seen): {control}")
    out += [str(n) for n in getattr(report, "notes", None) or ()]
    return out


def families_named(results: Sequence[Any]) -> bool:
    """Are results told apart by family? Where any is IPv6 (a dual-stack or IPv6-only
    lab); an IPv4-only lab's view stays as it was."""
    return any(getattr(r, "family", "ipv4") not in (None, "ipv4") for r in results)


def _proto(r: Any, named: bool = True) -> str:
    family = getattr(r, "family", None) if named else None
    return f"{family} {r.proto}" if family else r.proto


def legend(summarised: bool = False) -> Text:
    text = Text()
    for mark, meaning in MARKS.items():
        text.append(mark, style=STYLE[mark])
        text.append(f" {meaning}  ", style="dim")
    if summarised:
        text.append("(summary cell: the worst mark and its count)", style="dim")
    return text


def names_of(plan: Any) -> tuple[dict[str, str], list[str]]:
    """From a plan: each pod's and node's node (for the node-pair summary) and the plan's
    order of names (for rows and columns)."""
    node_of = {n.name: n.name for n in plan.nodes} | {p.name: p.node for p in plan.pods}
    order = [n.name for n in plan.nodes] + [p.name for p in plan.pods]
    return node_of, order


def counts(marks: Iterable[str]) -> dict[str, int]:
    """How many results took each mark, in legend order."""
    tally = dict.fromkeys(MARKS, 0)
    for m in marks:
        tally[m] += 1
    return tally
