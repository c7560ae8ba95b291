"""`podlab run` end to end against the Docker floor, on one topology (flat3 by default).

Each repetition, in fresh child processes (order alternating, so drift on a shared host
hits both sides alike):

  floor     bench/floor.py: start the lab's containers (same images, same count, computed
            once up front) with the Docker SDK in parallel, then force-remove them: what
            any tool must at least pay. It imports the Docker SDK and the standard library
            only, so its process pays nothing of podlab's;
  run       `podlab run -t FILE -o json` as a user runs it: deploy, verify, destroy;
  phases    the same through harness.Lab in one process, timing deploy, verify, destroy.

Two ratios: whole processes (run's wall time over the floor script's, both including
Python's start-up and imports) and in-process (deploy+verify+destroy over start+remove).
A run with any failed result fails the benchmark: it exits 1 and prints the failures.

    bench/e2e.py                               # flat3, 5 repetitions
    bench/e2e.py -t topologies/routed.clab.yml --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 1.2
SETTLE_S = 2.0


def _plan(topo: Path, name: str) -> Any:
    from harness.lab.handle import plan_of

    return plan_of(topo, name)


FLOOR = ROOT / "bench" / "floor.py"


def floor_argv(images: list[str], workers: int) -> list[str]:
    """The floor's process: bench/floor.py alone, given the images to start."""
    return [sys.executable, str(FLOOR), "--workers", str(workers), *images]


def _floor(images: list[str], workers: int) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    done = subprocess.run(floor_argv(images, workers), capture_output=True, text=True,
                          cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"floor: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def _failed(results: list[dict[str, Any]]) -> list[str]:
    return [f"{r['check']} {r['proto']} {r['src']} -> {r['dst']}: {r['detail']}"
            for r in results if not r["ok"]]


def failures_of(runs: list[dict[str, Any]]) -> list[str]:
    """Each repetition whose `podlab run` or in-process verify had a failed result, and
    its first failures: a time measured on a failing run is no figure."""
    out = []
    for i, row in enumerate(runs, 1):
        for what in ("run", "phases"):
            got = row.get(what, {})
            if got.get("passed") != got.get("results"):
                out.append(f"run {i}, {what}: {got['results'] - got['passed']} of "
                           f"{got['results']} failed")
                out += [f"  {line}" for line in got.get("failures", [])[:10]]
    return out


def child_phases(topo: Path) -> dict[str, Any]:
    from harness.lab import Lab

    name = f"e2e-{uuid.uuid4().hex[:6]}"
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    lab = Lab.deploy(_plan(topo, name))
    out["deploy_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        report = lab.verify()
        out["verify_s"] = time.perf_counter() - t0
        out["results"], out["passed"] = len(report.results), sum(r.ok for r in report.results)
        out["failures"] = _failed([r.to_dict() for r in report.results])
    finally:
        t0 = time.perf_counter()
        lab.destroy()
        out["destroy_s"] = time.perf_counter() - t0
    return out


def _child(*args: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{args}: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def _run_cli(topo: Path) -> tuple[float, dict[str, Any]]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "-t", str(topo),
                           "--name", name, "-o", "json"], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"podlab run: {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    summary = data["summary"]
    return wall, {"results": summary["total"], "passed": summary["passed"],
                  "failures": _failed(data["results"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--topo", type=Path, default=ROOT / "topologies/flat3.clab.yml")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "e2e.json")
    parser.add_argument("--child", choices=("phases",), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    topo = args.topo.resolve()
    if args.child == "phases":
        print(json.dumps(child_phases(topo)))
        return 0

    from rich.console import Console
    from rich.table import Table

    from harness.host import runtime
    from harness.lab.deploy import container_images, ensure_images

    plan = _plan(topo, "warm")
    ensure_images(plan)
    images = container_images(plan)  # up front: the floor's process plans nothing
    runtime.client()
    console = Console(stderr=True)
    load_before = os.getloadavg()[0]  # a shared host: say how busy it was
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        row: dict[str, Any] = {}
        steps = [("floor", lambda: _floor(images, runtime.WORKERS)),
                 ("run", lambda: _run_cli(topo)),
                 ("phases", lambda: _child("--child", "phases", "-t", str(topo)))]
        for what, step in (steps if rep % 2 == 0 else steps[::-1]):
            wall, data = step()
            row[what] = {"wall_s": wall, **data}
            time.sleep(SETTLE_S)
        floor, run, phases = row["floor"], row["run"], row["phases"]
        row["ratio_process"] = run["wall_s"] / floor["wall_s"]
        inproc = phases["deploy_s"] + phases["verify_s"] + phases["destroy_s"]
        row["ratio_inprocess"] = inproc / (floor["start_s"] + floor["remove_s"])
        console.print(f"[dim]run {rep + 1}/{args.repeat}: podlab run {run['wall_s']:.2f} s, "
                      f"floor script {floor['wall_s']:.2f} s -> {row['ratio_process']:.2f}x; "
                      f"in-process {inproc:.2f} / {floor['start_s'] + floor['remove_s']:.2f}"
                      f" s -> {row['ratio_inprocess']:.2f}x[/]")
        runs.append(row)

    def med(*path: str) -> float:
        values = []
        for r in runs:
            v: Any = r
            for p in path:
                v = v[p]
            values.append(v)
        return statistics.median(values)

    summary = {
        "topology": str(args.topo), "repeat": args.repeat, "cpus": os.cpu_count(),
        "containers": runs[0]["floor"]["containers"], "results": runs[0]["run"]["results"],
        "podlab_run_wall_s": med("run", "wall_s"), "floor_process_wall_s": med("floor", "wall_s"),
        "ratio_process": med("ratio_process"),
        "floor_start_s": med("floor", "start_s"), "floor_remove_s": med("floor", "remove_s"),
        "deploy_s": med("phases", "deploy_s"), "verify_s": med("phases", "verify_s"),
        "destroy_s": med("phases", "destroy_s"), "ratio_inprocess": med("ratio_inprocess"),
        "target": TARGET, "loadavg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "runs": runs}
    table = Table(title=f"{args.topo.name}: podlab run vs the Docker floor (medians of "
                        f"{args.repeat}; target <= {TARGET}x; load "
                        f"{summary['loadavg_1m'][0]} -> {summary['loadavg_1m'][1]})")
    for col in ("", "podlab", "floor", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("whole process (s)", f"{summary['podlab_run_wall_s']:.2f}",
                  f"{summary['floor_process_wall_s']:.2f}", f"{summary['ratio_process']:.2f}x")
    table.add_row("in process (s)",
                  f"{summary['deploy_s']:.2f} + {summary['verify_s']:.2f} + "
                  f"{summary['destroy_s']:.2f}",
                  f"{summary['floor_start_s']:.2f} + {summary['floor_remove_s']:.2f}",
                  f"{summary['ratio_inprocess']:.2f}x")
    Console().print(table)
    failures = failures_of(runs)
    summary["failed_runs"] = failures
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"[dim]wrote {args.json}[/]")
    if failures:
        console.print("[red]benchmark failed: a run had failed results[/]")
        for line in failures:
            console.print(line, style="red", markup=False, highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
