"""podlab beside containerlab, on one host in one run.

For each lab (flat3, the 4x24 lab, the 200-pod lab of bench/run.py), alternating which
goes first in each repetition:

  nodes and links   the lab without its pods, made and removed by
                      containerlab:  `containerlab deploy -t` + `containerlab destroy
                                     --cleanup` of the topology `--runtime containerlab`
                                     gives it (harness.host.containerlab)
                      podlab:        podlab's own deploy + destroy of the same plan (its
                                     deploy also configures addresses and routes, which
                                     containerlab's does not: podlab is charged for more)
  the whole lab     pods included, deploy + destroy
                      podlab:        `--runtime podlab`
                      containerlab:  `--runtime containerlab` (containerlab, then podlab's
                                     pods, daemons, Services)
                    the containerlab runtime is compared with containerlab alone plus
                    podlab's own pod step (podlab's whole lab minus its nodes and links)

Goals (issue 25): podlab no slower than containerlab for the same nodes and links (ratio
podlab/containerlab <= 1), the containerlab runtime within 1.2x of containerlab alone plus
podlab's pod step. Medians over the repetitions; bench/clab.json.

    bench/clab.py                            # flat3, 4x24, 10x200; 3 repetitions
    bench/clab.py --labs flat3,4x24 --repeat 5
    bench/clab.py --full-labs flat3          # the whole-lab runs only for these
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python bench/clab.py` without an install
    sys.path.insert(0, str(ROOT))

LABS = ("flat3", "4x24", "10x200")
NODES_TARGET = 1.0  # podlab / containerlab, same nodes and links
RUNTIME_TARGET = 1.2  # containerlab runtime / (containerlab alone + podlab's pod step)
SETTLE_S = 2.0  # between measurements, not inside them


def plan_of(lab: str, name: str, pods: bool = True) -> Any:
    """The plan of `lab` under `name`: flat3's file, or bench/gen.py's NODESxPODS lab;
    without pods (and Services) when `pods` is false."""
    import yaml

    from bench.gen import topology
    from harness.model.topology import Topology, load_topology, parse_topology
    from harness.plan import make_plan

    if lab == "flat3":
        topo = load_topology(ROOT / "topologies" / "flat3.clab.yml")
        update: dict[str, Any] = {"name": name}
        if not pods:
            update |= {"pods": {}, "services": {}}
        return make_plan(Topology(topo.spec.model_copy(update=update), topo.path))
    nodes, count = (int(x) for x in lab.split("x"))
    return make_plan(parse_topology(yaml.safe_dump(topology(name, nodes, count if pods else 0),
                                                   sort_keys=False)))


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def containerlab_alone(plan: Any) -> dict[str, float]:
    """containerlab deploy + destroy of the plan's nodes and links, nothing of podlab's
    after it (the same topology `--runtime containerlab` hands it)."""
    from harness import datapath
    from harness.host import containerlab
    from harness.lab.deploy import node_spec

    desc = datapath.select(plan).describe(plan)
    specs = [node_spec(n, desc.node(n.name), i, "bench") for i, n in enumerate(plan.nodes)]
    path = containerlab.write(containerlab.topology(
        plan.lab, specs, plan.links, {n.container: n.name for n in plan.nodes}))
    exe = containerlab.require()
    try:
        up = timed(lambda: containerlab.deploy(path, exe))
    except BaseException:
        containerlab.destroy(plan.lab, exe)
        raise
    down = timed(lambda: containerlab.destroy(plan.lab, exe))
    return {"deploy_s": up, "destroy_s": down}


def podlab_lab(plan: Any, runtime: str) -> dict[str, float]:
    """podlab's deploy + destroy of the plan, with `runtime` making nodes and links."""
    from harness.lab import Lab, running

    lab = Lab(plan)
    try:
        up = timed(lambda: Lab.deploy(plan, runtime=runtime))
    except BaseException:
        running.destroy(plan.lab)
        raise
    down = timed(lab.destroy)
    return {"deploy_s": up, "destroy_s": down}


def one_round(lab: str, rep: int, full: bool) -> dict[str, Any]:
    """One repetition of a lab: every measurement, the first alternating with `rep`."""
    def name() -> str:
        return f"bclab-{uuid.uuid4().hex[:6]}"

    steps: list[tuple[str, Callable[[], dict[str, float]]]] = [
        ("nodes_containerlab", lambda: containerlab_alone(plan_of(lab, name(), pods=False))),
        ("nodes_podlab", lambda: podlab_lab(plan_of(lab, name(), pods=False), "podlab")),
    ]
    if full:
        steps += [("full_podlab", lambda: podlab_lab(plan_of(lab, name()), "podlab")),
                  ("full_containerlab", lambda: podlab_lab(plan_of(lab, name()),
                                                           "containerlab"))]
    if rep % 2:
        steps = steps[::-1]
    out: dict[str, Any] = {}
    for key, fn in steps:
        time.sleep(SETTLE_S)
        out[key] = fn()
    return out


def _median(runs: list[dict[str, Any]], key: str, phase: str) -> float | None:
    values = [r[key][phase] for r in runs if key in r]
    return statistics.median(values) if values else None


def summarize(lab: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    plan = plan_of(lab, "x")
    row: dict[str, Any] = {"lab": lab, "nodes": len(plan.nodes), "links": len(plan.links),
                           "pods": len(plan.pods), "repeat": len(runs)}
    for key in ("nodes_containerlab", "nodes_podlab", "full_podlab", "full_containerlab"):
        for phase in ("deploy_s", "destroy_s"):
            row[f"{key}_{phase}"] = _median(runs, key, phase)

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    for phase in ("deploy_s", "destroy_s"):
        row[f"nodes_ratio_{phase}"] = ratio(row[f"nodes_podlab_{phase}"],
                                            row[f"nodes_containerlab_{phase}"])
        pod_step = None if row[f"full_podlab_{phase}"] is None else \
            row[f"full_podlab_{phase}"] - row[f"nodes_podlab_{phase}"]
        alone = None if pod_step is None else row[f"nodes_containerlab_{phase}"] + pod_step
        row[f"runtime_ratio_{phase}"] = ratio(row[f"full_containerlab_{phase}"], alone)
    total = {k: (row[f"{k}_deploy_s"] or 0) + (row[f"{k}_destroy_s"] or 0)
             if row[f"{k}_deploy_s"] is not None else None
             for k in ("nodes_containerlab", "nodes_podlab", "full_podlab",
                       "full_containerlab")}
    row["nodes_ratio"] = ratio(total["nodes_podlab"], total["nodes_containerlab"])
    if total["full_podlab"] is not None:
        alone = total["nodes_containerlab"] + total["full_podlab"] - total["nodes_podlab"]
        row["runtime_ratio"] = ratio(total["full_containerlab"], alone)
    else:
        row["runtime_ratio"] = None
    return row


def table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title=f"podlab beside containerlab (medians, seconds; goals: nodes and links "
                    f"podlab/containerlab <= {NODES_TARGET}, containerlab runtime <= "
                    f"{RUNTIME_TARGET} x (containerlab + podlab's pod step))")
    for col in ("lab", "nodes", "links", "pods", "clab up", "clab down", "podlab up",
                "podlab down", "ratio", "full podlab", "full clab-rt", "ratio", "n"):
        t.add_column(col, justify="left" if col == "lab" else "right")

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def judged(v: float | None, target: float) -> str:
        return f(v) if v is None else (f"[green]{v:.2f}[/]" if v <= target else f"[red]{v:.2f}[/]")

    def both(r: dict[str, Any], key: str) -> float | None:
        up, down = r[f"{key}_deploy_s"], r[f"{key}_destroy_s"]
        return None if up is None else up + (down or 0)

    for r in rows:
        t.add_row(r["lab"], str(r["nodes"]), str(r["links"]), str(r["pods"]),
                  f(r["nodes_containerlab_deploy_s"]), f(r["nodes_containerlab_destroy_s"]),
                  f(r["nodes_podlab_deploy_s"]), f(r["nodes_podlab_destroy_s"]),
                  judged(r["nodes_ratio"], NODES_TARGET), f(both(r, "full_podlab")),
                  f(both(r, "full_containerlab")), judged(r["runtime_ratio"], RUNTIME_TARGET),
                  str(r["repeat"]))
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", default=",".join(LABS),
                        help=f"comma-separated: flat3 or NODESxPODS (default {','.join(LABS)})")
    parser.add_argument("--full-labs", default=None,
                        help="the labs whose whole-lab runs (pods too) are measured "
                             "(default: every lab)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "clab.json")
    args = parser.parse_args(argv)

    from rich.console import Console

    from harness.host import containerlab, runtime

    console = Console(stderr=True)
    runtime.require_root()
    exe = containerlab.require()
    labs = [x for x in args.labs.split(",") if x]
    full = set(labs if args.full_labs is None else args.full_labs.split(","))
    runs: dict[str, list[dict[str, Any]]] = {lab: [] for lab in labs}
    for rep in range(max(1, args.repeat)):  # interleaved: host noise spreads over every lab
        for lab in labs:
            console.print(f"[dim]run {rep + 1}/{args.repeat}: {lab}[/]")
            runs[lab].append(one_round(lab, rep, lab in full))
    rows = [summarize(lab, runs[lab]) for lab in labs]
    Console(width=None if sys.stdout.isatty() else 160).print(table(rows))
    version = subprocess.run([exe, "version"], capture_output=True, text=True, check=False,
                             env={**os.environ, "CLAB_VERSION_CHECK": "disable"}).stdout
    doc = {"host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg()},
           "containerlab": ".".join(map(str, containerlab.parse_version(version))),
           "targets": {"nodes": NODES_TARGET, "runtime": RUNTIME_TARGET},
           "labs": rows, "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"[dim]wrote {args.json}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
