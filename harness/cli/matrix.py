"""`podlab matrix`: every topology across every variant, several labs at once on one host.

    podlab matrix                                   # topologies/*.clab.yml, each as written
    podlab matrix -t a.clab.yml -t b.clab.yml --set routing=static,bgp --set cni=podlab,ptp
    podlab matrix --runtime podlab,containerlab     # each under both runtimes

A combination is one topology with one value of each `--set` axis (`KEY=V1,V2`, each value
overriding the file's `cluster.KEY`), and one runtime of `--runtime` (who makes the nodes
and links: `podlab run --runtime`). Each runs as `podlab run` in a child process under
a lab name of its own (labs are isolated, so they share the host safely), writing one JUnit
file; `--jobs` of them run at once. A combination the topology or datapath cannot do (its
overrides fail validation before anything is deployed) is skipped with the reason; any
error once it runs (whatever its exit code: a lab not found, a plugin missing at deploy)
is an error, which fails the matrix. The summary table goes to stdout, `matrix.json` and
the JUnit files to `--out`; the exit code is 1 if any combination failed or could not
run, 2 if none ran at all (every one skipped: nothing was proven).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree as ET

import typer

from harness.errors import InputError, PodlabError

PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass
class Combo:
    """One topology under one variant, and what became of it."""

    topo: Path
    sets: list[tuple[str, str]]  # (key, value as written on the command line)
    runtime: str | None = None  # `podlab run --runtime`; None: not an axis (podlab's)
    name: str = ""  # the lab's name: unique on this host
    status: str = "pending"
    reason: str = ""
    passed: int = 0
    total: int = 0
    duration_s: float = 0.0
    junit: Path | None = None
    log: Path | None = None
    code: int | None = None
    plan: Any = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        return self.topo.name.removesuffix(".yml").removesuffix(".yaml") \
            .removesuffix(".clab")

    @property
    def axes(self) -> list[tuple[str, str]]:
        """The variant's values: the `--set` ones, then the runtime when it is an axis."""
        return [*self.sets, *([("runtime", self.runtime)] if self.runtime else [])]

    @property
    def variant(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.axes) or "(as written)"

    @property
    def slug(self) -> str:
        """A file name: `flat3` or `flat3--routing=bgp,cni=ptp` (safe characters only)."""
        if not self.axes:
            return self.stem
        text = ",".join(f"{k}={v}" for k, v in self.axes)
        return f"{self.stem}--{re.sub(r'[^A-Za-z0-9._=,-]+', '_', text)}"

    def to_dict(self) -> dict[str, Any]:
        return {"topology": str(self.topo), "variant": dict(self.axes), "lab": self.name,
                "status": self.status, "reason": self.reason, "passed": self.passed,
                "total": self.total, "duration_s": round(self.duration_s, 2),
                "junit": str(self.junit) if self.junit else None,
                "log": str(self.log) if self.log else None}


def combinations(topos: Sequence[Path], axes: Sequence[str],
                 runtimes: Sequence[str] = ()) -> list[Combo]:
    """Every topology times the product of the `--set KEY=V1,V2` axes and `runtimes`
    (none: podlab's, and not an axis)."""
    from harness.model.variants import _key, split_values

    keys: list[str] = []
    values: list[list[str]] = []
    for text in axes:
        key, raw = _key(text, "--set")
        if key in keys:
            raise InputError(f"--set {key} given twice; list its values once: {key}=A,B")
        keys.append(key)
        values.append(split_values(raw))
    product = list(itertools.product(*values)) if keys else [()]
    return [Combo(t, list(zip(keys, vals, strict=True)), runtime=r)
            for t in topos for vals in product for r in (runtimes or [None])]


def runtimes(text: str) -> list[str]:
    """`--runtime podlab,containerlab` as a list, each checked."""
    from harness.lab.deploy import RUNTIMES
    from harness.model.variants import split_values

    values = split_values(text)
    wrong = [v for v in values if v not in RUNTIMES]
    if wrong or not values:
        raise InputError(f"--runtime {text}: each of {', '.join(RUNTIMES)}")
    return values


def prepare(combo: Combo) -> None:
    """Validate the combination and name its lab; a variant the topology or datapath
    cannot take is skipped with the reason, a file that is wrong as written is an error."""
    from harness.lab.handle import unique_name
    from harness.model.topology import load_topology
    from harness.model.variants import load_variant, parse_set
    from harness.plan import make_plan

    try:
        base = load_topology(combo.topo)
    except PodlabError as exc:
        combo.status, combo.reason = ERROR, _first(str(exc))
        return
    combo.name = unique_name(base.name)
    try:
        combo.plan = make_plan(load_variant(
            combo.topo, [parse_set(f"{k}={v}") for k, v in combo.sets], combo.name))
    except InputError as exc:
        combo.status, combo.reason = SKIPPED, _problems(str(exc))
    except ValueError as exc:  # the plan cannot address or route it
        combo.status, combo.reason = SKIPPED, str(exc)


def _first(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 and lines[0].endswith("problem(s)") else \
        (lines[0] if lines else text)


def _problems(text: str) -> str:
    """A TopologyError's problems without the file name the variant was parsed from."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].endswith("problem(s)"):
        lines = [re.sub(r"^\S+?(:\d+)?: ", "", ln) for ln in lines[1:]]
    return "; ".join(lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "")


def ensure_ready(combos: Sequence[Combo]) -> None:
    """Root, Docker, and every image the runnable combinations need, built once here
    rather than raced by parallel children."""
    from harness.host import runtime
    from harness.lab.deploy import ensure_images

    runnable = [c for c in combos if c.status == "pending"]
    if not runnable:
        return
    runtime.require_root()
    runtime.client()
    if any(c.runtime == "containerlab" for c in runnable):
        from harness.host import containerlab

        try:
            containerlab.require()  # once here, not one error per combination
        except containerlab.ContainerlabMissing as exc:  # asked for, not there: an error
            for combo in runnable:
                if combo.runtime == "containerlab":
                    combo.status, combo.reason = ERROR, str(exc)
            runnable = [c for c in runnable if c.status == "pending"]
    for combo in runnable:
        ensure_images(combo.plan)


class Runner:
    """Runs combinations as child `podlab run` processes, `jobs` at a time; forwards an
    interrupt to every child, which rolls its lab back."""

    def __init__(self, out_dir: Path, jobs: int, timeout_s: float,
                 on_done: Callable[[Combo], None] = lambda c: None):
        self.out_dir, self.jobs, self.timeout_s, self.on_done = out_dir, jobs, timeout_s, on_done
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def run(self, combos: Sequence[Combo]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        todo = [c for c in combos if c.status == "pending"]
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            futures = [pool.submit(self._one, c) for c in todo]
            try:
                for f in futures:
                    while not f.done():  # short sleeps: Ctrl-C (or SIGTERM) gets through
                        time.sleep(0.2)
                    f.result()
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            children = list(self._children.values())
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # `podlab run` rolls back on SIGTERM
        for child in children:
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()

    def argv(self, combo: Combo) -> list[str]:
        argv = [sys.executable, "-m", "harness.cli", "run", "-t", str(combo.topo),
                "--name", combo.name, "-o", "junit", "--output", str(combo.junit)]
        for key, value in combo.sets:
            argv += ["--set", f"{key}={value}"]
        if combo.runtime:
            argv += ["--runtime", combo.runtime]
        return argv

    def _one(self, combo: Combo) -> None:
        combo.junit = self.out_dir / f"{combo.slug}.xml"
        combo.log = self.out_dir / f"{combo.slug}.log"
        started = time.monotonic()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the child runs this very checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with combo.log.open("wb") as log:
            with self._lock:
                if self._stopping:
                    combo.status, combo.reason = ERROR, "interrupted before it started"
                    return
                child = subprocess.Popen(self.argv(combo), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)  # Ctrl-C: we forward it
                self._children[child.pid] = child
            try:
                combo.code = child.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGTERM)
                combo.code = child.wait()
                combo.reason = f"timed out after {self.timeout_s:.0f} s"
            finally:
                with self._lock:
                    self._children.pop(child.pid, None)
        combo.duration_s = time.monotonic() - started
        judge(combo)
        self.on_done(combo)


def judge(combo: Combo) -> None:
    """The combination's status from its exit code, JUnit file and log."""
    counts = _junit_counts(combo.junit) if combo.junit else None
    if counts:
        combo.total, failures = counts
        combo.passed = combo.total - failures
    last = _last_error(combo.log)
    if combo.reason.startswith("timed out"):
        combo.status = ERROR
    elif combo.code == 0 and counts:
        combo.status = PASSED
    elif combo.code == 1 and counts:
        combo.status = FAILED
        combo.reason = f"{combo.total - combo.passed} of {combo.total} results failed"
    else:  # only validation before the run (prepare) skips; anything else is an error
        combo.status = ERROR
        combo.reason = last or f"podlab run exited {combo.code}"
    if combo.status in (SKIPPED, ERROR) and combo.junit is not None:
        combo.junit.write_text(junit_placeholder(combo))


def _junit_counts(path: Path) -> tuple[int, int] | None:
    try:
        root = ET.parse(path).getroot()
        return int(root.get("tests", "0")), int(root.get("failures", "0"))
    except (OSError, ET.ParseError, ValueError):
        return None


def _last_error(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln.removeprefix("error:").strip()
    return lines[-1][:300] if lines else ""


def junit_placeholder(combo: Combo) -> str:
    """A JUnit file for a combination that did not run: one skipped (or errored) case, so
    every combination has its file and CI shows why."""
    suites = ET.Element("testsuites", name=f"podlab matrix {combo.slug}", tests="1",
                        failures="0", errors="1" if combo.status == ERROR else "0",
                        skipped="1" if combo.status == SKIPPED else "0")
    suite = ET.SubElement(suites, "testsuite", name=combo.stem, tests="1")
    case = ET.SubElement(suite, "testcase", classname=f"podlab.matrix.{combo.stem}",
                         name=combo.variant)
    ET.SubElement(case, "skipped" if combo.status == SKIPPED else "error",
                  message=combo.reason or combo.status)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def matrix_exit_code(combos: Sequence[Combo]) -> int:
    """1 if any combination failed or could not run, 2 if none ran, else 0."""
    if any(c.status in (FAILED, ERROR) for c in combos):
        return 1
    return 0 if any(c.status == PASSED for c in combos) else 2


def summary_table(combos: Sequence[Combo], wall_s: float) -> Any:
    from rich.markup import escape
    from rich.table import Table

    style = {PASSED: "green", FAILED: "bold red", ERROR: "bold red", SKIPPED: "yellow"}
    tally = {s: sum(c.status == s for c in combos) for s in (PASSED, FAILED, ERROR, SKIPPED)}
    title = (f"matrix: {len(combos)} combinations in {wall_s:.1f} s — "
             + ", ".join(f"{n} {s}" for s, n in tally.items() if n))
    table = Table(title=title, title_justify="left")
    for col in ("topology", "variant", "result", "passed", "time", "lab / reason"):
        table.add_column(col, overflow="fold",
                         justify="right" if col in ("passed", "time") else "left")
    for c in combos:
        table.add_row(c.stem, escape(c.variant), f"[{style.get(c.status, '')}]{c.status}[/]",
                      f"{c.passed}/{c.total}" if c.total else "-",
                      f"{c.duration_s:.1f} s" if c.duration_s else "-",
                      escape(c.reason or c.name))
    return table


def default_topologies() -> list[Path]:
    found = sorted(Path("topologies").glob("*.clab.yml"))
    if not found:
        raise InputError("no topology given and none in ./topologies; give -t FILE "
                         "(repeatable)")
    return found


def write_summary(combos: Sequence[Combo], out_dir: Path, wall_s: float) -> Path:
    path = out_dir / "matrix.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "ok": matrix_exit_code(combos) == 0,
        "wall_s": round(wall_s, 2), "combinations": [c.to_dict() for c in combos]},
        indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- the command

TopoList = Annotated[list[Path] | None, typer.Option(
    "-t", "--topo", help="topology file (repeatable; default: topologies/*.clab.yml)")]
SetList = Annotated[list[str] | None, typer.Option(
    "--set", help="an axis: KEY=V1,V2 overrides the topology's cluster.KEY with each value "
    "in turn (repeatable: the matrix is the product)")]
Jobs = Annotated[int | None, typer.Option("-j", "--jobs", min=1,
                                   help="labs at once (default: the number of CPUs)")]
OutDir = Annotated[Path, typer.Option("--out", help="JUnit files, logs and matrix.json")]
Timeout = Annotated[float, typer.Option("--timeout", min=1,
                                        help="seconds one combination may take")]
RuntimeList = Annotated[str | None, typer.Option(
    "--runtime", help="an axis: who makes the nodes and links, podlab,containerlab (default: "
    "podlab's own, not an axis)")]


def command(topo: TopoList = None, sets: SetList = None, jobs: Jobs = None,
            out_dir: OutDir = Path("out/junit"), timeout: Timeout = 1800,
            runtime: RuntimeList = None) -> None:
    """Run topologies across variants, several labs at once; one JUnit file each.

    Example: podlab matrix --set routing=static,bgp --set cni=podlab,bridge,ptp -j 2
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from harness.cli.console import err, fail, out, sigterm_as_interrupt

    sigterm_as_interrupt()
    started = time.monotonic()
    try:
        combos = combinations(topo or default_topologies(), sets or [],
                              runtimes(runtime) if runtime else ())
        for c in combos:
            prepare(c)
        ensure_ready(combos)
    except PodlabError as exc:
        fail(exc)
    jobs = jobs or os.cpu_count() or 1
    runnable = sum(c.status == "pending" for c in combos)
    err.print(f"matrix: {len(combos)} combinations, {runnable} to run, {jobs} at a time; "
              f"JUnit files in {out_dir}", highlight=False)
    for c in combos:
        if c.status != "pending":
            err.print(f"  {c.status} {c.stem} {c.variant}: {c.reason}", highlight=False,
                      markup=False, soft_wrap=True)
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True,
                    disable=not err.is_terminal)
    task = bars.add_task("matrix", total=runnable)

    def done(c: Combo) -> None:
        bars.advance(task)
        score = f" {c.passed}/{c.total}" if c.total else ""
        bars.console.print(f"  {c.status} {c.stem} {c.variant}{score} in {c.duration_s:.1f} s"
                           + (f": {c.reason}" if c.reason and c.status != PASSED else ""),
                           highlight=False, markup=False, soft_wrap=True)

    runner = Runner(out_dir, jobs, timeout, on_done=done)
    try:
        with bars:
            runner.run(combos)
    except KeyboardInterrupt:
        err.print("interrupted: every running lab was rolled back")
        raise typer.Exit(130) from None
    wall = time.monotonic() - started
    for c in combos:
        if c.status in (SKIPPED, ERROR) and c.junit is None:  # never started: its file too
            c.junit = out_dir / f"{c.slug}.xml"
            out_dir.mkdir(parents=True, exist_ok=True)
            c.junit.write_text(junit_placeholder(c))
    out.print(summary_table(combos, wall))
    err.print(f"wrote {write_summary(combos, out_dir, wall)}", highlight=False)
    if not any(c.status in (PASSED, FAILED) for c in combos):
        err.print("matrix: no combination ran", highlight=False)
    raise typer.Exit(matrix_exit_code(combos))
