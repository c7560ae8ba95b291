"""verify's HTML report: one self-contained file (inline CSS, inline SVG, a few lines of
inline script; nothing fetched), readable offline and attachable to a CI run.

It holds the truth tables (each failing cell links to its diagnosis), the failures with
their diagnosis, expected and observed headers and a link to the check's pcap, the lab
graph (an SVG drawn here, the Mermaid text beside it) and the run's timings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.render.truth import (
    MARKS,
    OK,
    Matrix,
    classify,
    counts,
    matrices,
    names_of,
    notes_of,
    sample_of,
    summarise,
)

FULL_MAX_COLS = 60  # wider matrices are summarised per node pair
MAX_FAILURES = 2000  # listed; the count says how many more
DISSECTED_MAX = 20  # frames dissected per failure (its pcap has them all)
DISSECTED_RESULTS = 200  # failures whose frames are dissected: the page stays light
CLASS = {".": "ok", "N": "nat", "n": "nonat", "X": "lost", "T": "ttl", "P": "port",
         "D": "detour", "!": "other"}

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 2em 3em;color:#111}
h1{margin:.6em 0 .1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{margin:1.2em 0 .3em}h3 small{font-weight:normal;color:#555}
.verdict{padding:.1em .5em;border-radius:4px;color:#fff;font-size:.8em;vertical-align:middle}
.verdict.pass{background:#15803d}.verdict.fail{background:#b91c1c}
.sample{background:#fef3c7;border:1px solid #d97706;border-radius:4px;padding:.4em .6em}
nav a{margin-right:1em}.muted{color:#666}
.row{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
table.truth{border-collapse:collapse;font:12px/1 ui-monospace,monospace}
table.truth caption{font-weight:bold;text-align:left;padding:.3em 0}
table.truth th{font-weight:normal;color:#444;padding:2px 4px;white-space:nowrap}
table.truth thead th.v{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left}
table.truth tbody th{text-align:right}
table.truth td{width:1.6em;height:1.6em;text-align:center;border:1px solid #e5e7eb}
table.truth td a{color:inherit;text-decoration:none;display:block}
.ok{background:#dcfce7;color:#166534}td.none{background:#fff}
.lost,.other{background:#dc2626;color:#fff;font-weight:bold}
.nat,.nonat{background:#c026d3;color:#fff;font-weight:bold}
.ttl,.port{background:#f59e0b;color:#111;font-weight:bold}
.detour{background:#0891b2;color:#fff;font-weight:bold}
.sw{display:inline-block;width:1.5em;text-align:center;border-radius:3px;
font:12px/1.5 ui-monospace,monospace;margin-right:.3em}
.legend .e{margin-right:1.2em}
ol.failures{padding-left:2em}ol.failures li{margin:.35em 0}
ol.failures li:target{background:#fef9c3;outline:2px solid #facc15}
pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:12px}
table.timings td,table.timings th{padding:2px 12px 2px 0;text-align:left}
table.timings td.n{text-align:right;font-variant-numeric:tabular-nums}
svg.graph{max-width:100%;height:auto;border:1px solid #eee;background:#fff}
#filter{margin:.4em 0;padding:.2em .4em;width:20em}
"""

# Filter the failures list as you type; `?filter=TEXT` in the URL pre-fills it.
SCRIPT = """
(function () {
  var box = document.getElementById("filter");
  var items = document.querySelectorAll("ol.failures li");
  function apply() {
    var q = box.value.toLowerCase(), shown = 0;
    items.forEach(function (li) {
      var hit = !q || li.textContent.toLowerCase().indexOf(q) >= 0;
      li.hidden = !hit; if (hit) shown++;
    });
    document.getElementById("shown").textContent =
      q ? shown + " of " + items.length + " shown" : "";
  }
  if (box) {
    var q = new URLSearchParams(location.search).get("filter");
    if (q) box.value = q;
    box.addEventListener("input", apply);
    apply();
  }
})();
"""


def _cell(m: Matrix, key: tuple[str, str], anchors: Mapping[int, str],
          results: Sequence[Any]) -> str:
    cell = m.cells.get(key)
    if cell is None:
        return '<td class="none"></td>'
    worst = cell.worst
    text = escape(cell.text(m.summary))
    if worst == OK:
        return f'<td class="ok">{text}</td>'
    first = next(i for i, mk in zip(cell.index, cell.marks, strict=True) if mk != OK)
    r = results[first]
    title = f"{MARKS[worst]}: {r.detail}"
    if m.summary:
        title = f"{cell.failed} of {len(cell.marks)} failed; first: {title}"
    return (f'<td class="{CLASS[worst]}" title="{escape(title)}">'
            f'<a href="#{anchors[first]}">{text}</a></td>')


def _matrix(m: Matrix, anchors: Mapping[int, str], results: Sequence[Any]) -> str:
    vertical = len(m.cols) > 8 or max(len(c) for c in m.cols) > 6
    head = "".join(f'<th{" class=v" if vertical else ""} scope="col">{escape(c)}</th>'
                   for c in m.cols)
    rows = []
    for row in m.rows:
        cells = "".join(_cell(m, (row, col), anchors, results) for col in m.cols)
        rows.append(f'<tr><th scope="row">{escape(row)}</th>{cells}</tr>')
    kind = "summary" if m.summary else "strip" if m.strip else "pairs"
    return (f'<table class="truth" data-check="{escape(m.check)}" data-proto='
            f'"{escape(m.proto)}" data-kind="{kind}"><caption>{escape(m.title)}</caption>'
            f'<thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _href(target: Path, out_path: Path | None) -> str:
    if out_path is None:
        return target.resolve().as_uri()
    return os.path.relpath(target.resolve(), out_path.resolve().parent)


def render_html(report: Any, plan: Any = None, *, out_path: Path | None = None,
                pcaps: Mapping[str | int, Path] | None = None,
                timings: Mapping[str, float] | None = None) -> str:
    """The report as one HTML document. `plan` adds the graph and node-pair summaries;
    `pcaps` maps a check to its pcap file, and a failed result (by its position in the
    results) to one of its own probes (links are made relative to `out_path`);
    `timings` are the run's phases in seconds (deploy, verify, destroy)."""
    results = report.results
    marks = [classify(r) for r in results]
    node_of, order = names_of(plan) if plan is not None else ({}, [])
    anchors = {i: f"r{i}" for i, m in enumerate(marks) if m != OK}
    tally = counts(marks)
    passed = tally[OK]
    ok = passed == len(results)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>podlab {escape(report.lab)}: {'ok' if ok else 'FAILED'}</title>",
           f"<style>{CSS}</style></head><body>",
           f'<h1>lab {escape(report.lab)} <span class="verdict {"pass" if ok else "fail"}">'
           f'{"ok" if ok else "FAILED"}</span></h1>',
           *([f'<p class="sample"><b>{escape(sample_of(report))}</b>: verify --quick probed '
              'a spanning sample, not every pair; the full verify is the proof</p>']
             if sample_of(report) else []),
           f'<p id="summary"><b>{passed}/{len(results)}</b> results as expected, '
           f'<b>{len(results) - passed}</b> failed; verify took {report.duration_s:.2f} s</p>',
           *(f'<p class="muted note">{escape(n)}</p>' for n in notes_of(report)),
           '<nav><a href="#truth">truth tables</a><a href="#failures">failures</a>'
           '<a href="#graph">lab graph</a><a href="#timings">timings</a></nav>',
           '<h2 id="truth">Truth tables</h2>', _legend(tally)]
    by_check: dict[str, list[Matrix]] = {}
    for m in matrices(results, marks, order):
        by_check.setdefault(m.check, []).append(m)
    for check, group in by_check.items():
        if node_of and any(len(m.cols) > FULL_MAX_COLS for m in group):
            group = [summarise(m, node_of, order) for m in group]
        total = sum(m.total for m in group)
        failed = sum(m.failed for m in group)
        note = " (per node pair)" if group[0].summary else ""
        out.append(f'<h3 id="check-{escape(check)}">{escape(check)} <small>{total} results, '
                   f'{failed} failed{note}</small></h3>')
        out.append('<div class="row">' + "".join(_matrix(m, anchors, results) for m in group)
                   + "</div>")
    out += _failures(results, marks, anchors, pcaps or {}, out_path,
                     getattr(report, "sightings", None) or {})
    out += _graph(plan, results, marks)
    out += _timings(report, by_check, timings or {})
    out.append(f'<p class="muted">podlab, {escape(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>')
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"


def _legend(tally: Mapping[str, int]) -> str:
    parts = [f'<span class="sw {CLASS[m]}">{escape(m)}</span>'
             f'<span class="e">{escape(text)} ({tally[m]})</span>' for m, text in MARKS.items()]
    return f'<p class="legend">{"".join(parts)}</p>'


def _dissected(r: Any, sightings: Mapping[int, Any]) -> str:
    """A failed result's frames, each as scapy's show2() writes it."""
    from harness.prove import frames

    seen = frames.of(r, sightings)
    if not seen:
        return ""
    text = "\n".join(f"--- {frames.line(s)}\n{frames.detail(s)}"
                      for s in seen[:DISSECTED_MAX])
    more = f" (the first {DISSECTED_MAX})" if len(seen) > DISSECTED_MAX else ""
    return (f"<details><summary>frames ({len(seen)}), dissected{more}</summary>"
            f"<pre>{escape(text)}</pre></details>")


def _failures(results: Sequence[Any], marks: Sequence[str], anchors: Mapping[int, str],
              pcaps: Mapping[str | int, Path], out_path: Path | None,
              sightings: Mapping[int, Any]) -> list[str]:
    failed = [i for i, m in enumerate(marks) if m != OK]
    out = [f'<h2 id="failures">Failures ({len(failed)})</h2>']
    if not failed:
        return [*out, "<p>None: every result is as the plan expects.</p>"]
    out.append('<input id="filter" type="search" placeholder="filter: a pod, node, check '
               'or word" aria-label="filter failures"> <span id="shown" class="muted"></span>')
    out.append('<ol class="failures">')
    for i in failed[:MAX_FAILURES]:
        r, mark = results[i], marks[i]
        family = getattr(r, "family", None)
        proto = f"{family} {r.proto}" if family else r.proto
        link = "".join(
            f' <a class="{cls}" href="{escape(_href(pcap, out_path))}">{text}</a>'
            for cls, text, pcap in (("pcap", "pcap", pcaps.get(i)),
                                    ("pcap-check", f"all {r.check} frames", pcaps.get(r.check)))
            if pcap is not None)
        headers = json.dumps({"expected": r.expected, "observed": r.observed}, indent=2)
        dissected = _dissected(r, sightings) if i in failed[:DISSECTED_RESULTS] else ""
        out.append(
            f'<li id="{anchors[i]}" data-mark="{escape(mark)}"><span class="sw '
            f'{CLASS[mark]}">{escape(mark)}</span> '
            f'<b>{escape(r.check)} {escape(proto)} {escape(r.src)} → {escape(r.dst)}</b>: '
            f'<span class="detail">{escape(r.detail)}</span>{link}'
            f'<details><summary>expected / observed</summary><pre>{escape(headers)}</pre>'
            f"</details>{dissected}</li>")
    out.append("</ol>")
    if len(failed) > MAX_FAILURES:
        out.append(f'<p class="muted">… and {len(failed) - MAX_FAILURES} more '
                   "(podlab verify -o json has them all)</p>")
    return out


def _graph(plan: Any, results: Sequence[Any], marks: Sequence[str]) -> list[str]:
    out = ['<h2 id="graph">Lab graph</h2>']
    if plan is None:
        return [*out, '<p class="muted">(no plan given)</p>']
    from harness.render import draw, svg

    node_of, _ = names_of(plan)
    failing = {node_of.get(r.src.split("/")[0], r.src) for r, m in zip(results, marks,
                                                                        strict=True) if m != OK}
    failing |= {node_of.get(r.dst.split("/")[0], r.dst) for r, m in zip(results, marks,
                                                                         strict=True) if m != OK}
    out.append('<p class="muted">Boxes with a red border take part in a failure.</p>')
    out.append(svg.to_svg(plan, failing))
    out.append(f"<details><summary>Mermaid source</summary><pre>"
               f"{escape(draw.to_mermaid(plan))}</pre></details>")
    return out


def _timings(report: Any, by_check: Mapping[str, list[Matrix]],
             timings: Mapping[str, float]) -> list[str]:
    phases = dict(timings)
    phases.setdefault("verify", report.duration_s)
    rows = "".join(f'<tr><th>{escape(k)}</th><td class="n">{v:.2f} s</td></tr>'
                   for k, v in phases.items())
    rate = len(report.results) / report.duration_s if report.duration_s else 0.0
    checks = "".join(
        f'<tr><th>{escape(c)}</th><td class="n">{sum(m.total for m in ms)}</td>'
        f'<td class="n">{sum(m.failed for m in ms)}</td></tr>' for c, ms in by_check.items())
    return ['<h2 id="timings">Timings</h2>',
            f'<table class="timings" id="phases"><tr><th>phase</th><th>time</th></tr>{rows}'
            f'<tr><th>results/s</th><td class="n">{rate:,.0f}</td></tr></table>',
            '<h3>Results per check</h3>',
            f'<table class="timings"><tr><th>check</th><th>results</th><th>failed</th></tr>'
            f'{checks}</table>']
