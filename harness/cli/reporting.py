"""What `verify` and `run` show: progress while probing, then the report in the format
asked for — the truth table on a terminal (every result with --all-results), JSON, JUnit,
or one self-contained HTML file."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from harness.cli.console import err, fail, out
from harness.errors import InputError

QUIET_FORMATS = ("json", "junit")  # machine output: no bars, even on a terminal


@contextmanager
def progress(fmt: str) -> Iterator[Any]:
    """A rich Progress on a terminal (stderr); silent under JSON/JUnit or without a TTY."""
    from harness.render.report import progress as bars

    with bars(err, enabled=fmt not in QUIET_FORMATS) as prog:
        yield prog


def probe(lab: Any, fmt: str, checks: Sequence[str] | None, pcap_dir: Path | None,
          quick: bool = False) -> tuple[Any, dict[str | int, Path]]:
    """Verify `lab` with a progress bar; write the pcaps when asked: (report, pcaps), the
    pcaps keyed by check name, and for the HTML report by each failed result's position."""
    from harness.render.report import write_failure_pcaps, write_pcaps

    with progress(fmt) as prog:
        task = prog.add_task("verify", total=None)

        def tick(phase: str, done: int, total: int) -> None:
            prog.update(task, description=f"verify: {phase}", completed=done, total=total)

        report = lab.verify(checks or None, progress=tick, keep_frames=pcap_dir is not None,
                            quick=quick)
    pcaps: dict[str | int, Path] = {}
    if pcap_dir is not None:
        pcaps = {p.stem: p for p in write_pcaps(report, pcap_dir)}
        err.print(f"pcap: {len(pcaps)} files in {pcap_dir}", highlight=False)
        if fmt == "html":  # each failing cell gets its own probes' frames
            pcaps |= write_failure_pcaps(report, pcap_dir / "failures")
    return report, pcaps


def preload_verify(pcaps: bool = False) -> None:
    """Import verify's modules (and scapy, which takes most of a second, when pcaps are
    wanted) in the background: `run` calls this before deploy, whose threads mostly wait
    on the Docker daemon."""
    modules = ["harness.prove.verify"] + (["scapy.utils", "scapy.layers.l2"] if pcaps else [])

    def load() -> None:
        for module in modules:
            importlib.import_module(module)

    threading.Thread(target=load, name="preload-verify", daemon=True).start()


def write(path: Path | None, writer: Callable[[TextIO], object]) -> None:
    """Write through `writer(file)` to stdout, or to `path` (its directory made)."""
    if path is None:
        writer(sys.stdout)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            writer(f)
    except OSError as exc:
        fail(InputError(f"cannot write {path}: {exc.strerror or exc}"))
    err.print(f"wrote {path}", highlight=False)


def emit(report: Any, plan: Any, fmt: str, out_file: Path | None, *,
         all_results: bool = False, pcaps: Mapping[str | int, Path] | None = None,
         timings: Mapping[str, float] | None = None) -> None:
    """The report, in `fmt` (table, json, junit, html), to stdout or `out_file`."""
    from harness.render.report import junit_xml, verify_table, write_json

    if fmt == "table":
        if all_results:
            out.print(verify_table(report))
        else:
            from harness.render.truth import names_of, truth_view

            node_of, order = names_of(plan)
            out.print(truth_view(report, width=out.width, node_of=node_of, order=order))
        if out_file:  # the table for people, the JSON for the record
            write(out_file, lambda f: write_json(report, f))
    elif fmt == "json":
        write(out_file, lambda f: write_json(report, f))
    elif fmt == "junit":
        write(out_file, lambda f: f.write(junit_xml(report)))
    elif fmt == "html":
        from harness.render.html import render_html

        page = render_html(report, plan, out_path=out_file, pcaps=pcaps,
                           timings=dict(timings or {}) or {"verify": report.duration_s})
        write(out_file, lambda f: f.write(page))
    else:
        raise InputError(f"unknown format {fmt!r}")


class Stopwatch:
    """Phase timings in seconds, in the order the phases ran."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = time.monotonic() - t0
