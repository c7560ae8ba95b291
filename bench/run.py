"""Benchmark podlab against the Docker floor at several lab sizes.

For each size (NODES x PODS, pods spread round-robin, each pod = infra + app + sidecar,
plus a switch and an outside host) and each repetition, a fresh child process:

1. measures the floor: creates and starts the same number of containers of the same images
   with the Docker SDK directly (network_mode none, nothing else), in parallel on as many
   threads as podlab uses, then force-removes them in parallel;
2. measures podlab: deploy, verify (every check, every pair, every protocol), destroy.

The child reports its own peak RSS (getrusage, the podlab process only), so a size's
memory figure is not inflated by a bigger size run before it. Medians over the repetitions
go into one rich table and a JSON file.

    bench/run.py                       # the default ladder, 3 repetitions
    bench/run.py --sizes 4x24,10x20 --repeat 5
    bench/run.py --quick               # smoke: two small sizes, once
    bench/run.py --sizes 10x200 --repeat 1 --json bench/big.json
    bench/run.py --sizes 4x24 --cni podlab,bridge   # each datapath, and bridge vs podlab
    bench/run.py --sizes 10x200 --repeat 1 --quick-verify   # verify --quick timed too

A run with any failed result (or a --quick verify with one) fails the benchmark: exit 1,
its failures printed under the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python bench/run.py` without an install
    sys.path.insert(0, str(ROOT))

from bench.floor import floor  # noqa: E402  (after the path is set)

DEFAULT_SIZES = ("2x2", "3x6", "4x12", "10x20", "4x24", "6x48")
DEFAULT_CNI = "podlab"
CNI_TARGET = 1.3  # deploy with a CNI datapath vs cni: podlab, same size
QUICK_SIZES = ("2x2", "3x6")
TARGET_RATIO = 1.25  # deploy/floor-start and destroy/floor-remove, from TARGET_PODS pods up
TARGET_PODS = 20
RATE_TARGET, RATE_PODS = 6000, 200  # verify results a second, for the 200-pod lab
SETTLE_S = 2.0  # between measurements, not inside them


def parse_size(text: str) -> tuple[int, int]:
    try:
        nodes, pods = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected NODESxPODS, e.g. 4x24") \
            from None
    if nodes < 1 or pods < 0:
        raise argparse.ArgumentTypeError(f"size {text!r}: needs >= 1 node and >= 0 pods")
    return nodes, pods


# --------------------------------------------------------------------------- child: one run


def _plan(name: str, nodes: int, pods: int, cni: str = DEFAULT_CNI,
          path: Path | None = None) -> Any:
    """The generated lab's plan; with `path`, written there first (a `podlab verify -t`
    needs the file)."""
    import yaml

    from bench.gen import topology
    from harness.model.topology import load_topology, parse_topology
    from harness.plan import make_plan

    spec = topology(name, nodes, pods, cni=None if cni == DEFAULT_CNI else cni)
    text = yaml.safe_dump(spec, sort_keys=False)
    if path is None:
        return make_plan(parse_topology(text))
    path.write_text(text)
    return make_plan(load_topology(path))


def _images(plan: Any) -> list[str]:
    """One image per container podlab starts, in podlab's order (nodes, infra, apps)."""
    from harness.lab.deploy import container_images

    return container_images(plan)


def _profiled(profile_dir: str | None, label: str, fn: Any) -> Any:
    if not profile_dir:
        return fn()
    from pyinstrument import Profiler

    prof = Profiler(interval=0.001)
    prof.start()
    try:
        return fn()
    finally:
        prof.stop()
        out = Path(profile_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{label}.txt").write_text(prof.output_text(unicode=False, color=False,
                                                            show_all=False))
        (out / f"{label}.html").write_text(prof.output_html())


def _failure_summary(failed: list[Any]) -> dict[str, Any]:
    """Where failures cluster: by check/proto, sender, receiver, kind of detail."""
    import re
    from collections import Counter

    def top(counter: Counter[str]) -> dict[str, int]:
        return dict(counter.most_common(12))

    kinds = Counter(re.sub(r"[\d.]+", "#", r.detail.split(";")[0])[:70] for r in failed)
    return {"count": len(failed),
            "intermittent": sum("intermittent" in r.detail for r in failed),
            "by_check": top(Counter(f"{r.check}/{r.proto}" for r in failed)),
            "by_src": top(Counter(r.src for r in failed)),
            "by_dst": top(Counter(r.dst for r in failed)),
            "by_detail": top(kinds)}


def one_run(nodes: int, pods: int, profile_dir: str | None = None, floor_first: bool = True,
            cni: str = DEFAULT_CNI, quick_verify: bool = False) -> dict[str, Any]:
    """Floor and podlab deploy/verify/destroy for one size (the floor first or last, so
    drift on a shared host hits both sides alike over the repetitions); a JSON-able dict.
    `quick_verify`: also time `verify --quick`, in process and as a `podlab verify`."""
    import tempfile

    from harness import Lab
    from harness.host import runtime
    from harness.lab.deploy import ensure_images

    name = f"bench-{nodes}x{pods}-{uuid.uuid4().hex[:6]}"
    topo = Path(tempfile.mkdtemp(prefix="podlab-bench-")) / f"{name}.clab.yml" \
        if quick_verify else None
    plan = _plan(name, nodes, pods, cni, topo)
    images = _images(plan)
    runtime.client()  # connect (and ping) outside the timed phases, as the floor does
    ensure_images(plan)  # warm the hash check
    out: dict[str, Any] = {"nodes": nodes, "pods": pods, "cni": cni,
                           "containers": len(images), "floor_first": floor_first}
    if floor_first:
        out["floor"] = floor(images, runtime.WORKERS)
        # The kernel frees namespaces asynchronously (under the RTNL lock container starts
        # need too): let the floor's cleanup finish before podlab is timed, and vice versa.
        time.sleep(SETTLE_S)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deployed = False
    try:
        phases: dict[str, list[float]] = {}  # phase -> [first event, last event] offsets

        def progress(phase: str, done: int, total: int) -> None:
            now = time.perf_counter() - t0
            phases.setdefault(phase, [now, now])[1] = now

        t0 = time.perf_counter()
        _profiled(profile_dir, f"deploy-{nodes}x{pods}",
                  lambda: Lab.deploy(plan, progress=progress))
        out["deploy_s"] = time.perf_counter() - t0
        out["deploy_phases"] = {k: [round(a, 3), round(b, 3)] for k, (a, b) in phases.items()}
        deployed = True
        out["running"] = sum(c.state == "running" for c in runtime.containers_of(name))
        t0 = time.perf_counter()
        report = _profiled(profile_dir, f"verify-{nodes}x{pods}", Lab(plan).verify)
        out["verify_s"] = time.perf_counter() - t0
        out["results"] = len(report.results)
        out["passed"] = sum(r.ok for r in report.results)
        failed = [r for r in report.results if not r.ok]
        out["failures"] = [r.to_dict() for r in failed[:20]]
        out["failure_summary"] = _failure_summary(failed)
        if topo is not None:
            out |= _quick(Lab(plan), topo)
    finally:
        t0 = time.perf_counter()
        if deployed:
            removed = _profiled(profile_dir, f"destroy-{nodes}x{pods}", Lab(plan).destroy)
        else:
            removed = Lab(plan).destroy()
        out["destroy_s"] = time.perf_counter() - t0
        out["removed"] = len(removed)
        if topo is not None:  # the file `podlab verify -t` read
            shutil.rmtree(topo.parent, ignore_errors=True)
    out["leftovers"] = len(runtime.containers_of(name))
    usage = resource.getrusage(resource.RUSAGE_SELF)  # before the floor, when it runs last
    if not floor_first:
        time.sleep(SETTLE_S)
        out["floor"] = floor(images, runtime.WORKERS)
    out["peak_rss_mib"] = usage.ru_maxrss / 1024
    out["rss_before_mib"] = rss_before / 1024
    return out


def _quick(lab: Any, topo: Path) -> dict[str, Any]:
    """`verify --quick` on the deployed lab: in process, then as a whole `podlab verify`
    process (its Python start-up and imports included)."""
    t0 = time.perf_counter()
    report = lab.verify(quick=True)
    out: dict[str, Any] = {"quick_verify_s": time.perf_counter() - t0,
                           "quick_results": len(report.results),
                           "quick_passed": sum(r.ok for r in report.results),
                           "quick_sample": report.sample}
    out["failures"] = [r.to_dict() for r in report.results if not r.ok][:20]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "verify", "-t", str(topo),
                           "--quick", "-o", "json"], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)
    out["quick_process_s"] = time.perf_counter() - t0
    try:
        summary = json.loads(done.stdout)["summary"]
        out["quick_process_passed"] = summary["passed"] if done.returncode == 0 else -1
    except (ValueError, KeyError):
        out["quick_process_passed"] = -1  # no report: a failure
    return out


# --------------------------------------------------------------------------- parent


def _child(size: tuple[int, int], profile_dir: str | None, floor_first: bool,
           cni: str = DEFAULT_CNI, quick_verify: bool = False) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--one", f"{size[0]}x{size[1]}",
            "--cni", cni] + (["--quick-verify"] if quick_verify else [])
    if not floor_first:
        argv.append("--floor-last")
    if profile_dir:
        argv += ["--profile", profile_dir]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        return {"nodes": size[0], "pods": size[1], "cni": cni, "error": "\n".join(tail)}
    return json.loads(lines[-1])


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(size: tuple[int, int], runs: list[dict[str, Any]], cni: str = DEFAULT_CNI
              ) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    row: dict[str, Any] = {"size": f"{size[0]}x{size[1]}", "nodes": size[0], "pods": size[1],
                           "cni": cni, "repeat": len(runs),
                           "errors": [r["error"] for r in runs if "error" in r]}
    if not good:
        return row
    for r in good:
        r["floor_start_s"] = r["floor"]["start_s"]
        r["floor_remove_s"] = r["floor"]["remove_s"]
    row["containers"] = good[0]["containers"]
    row["results"] = good[0].get("results")
    row["passed"] = min((r.get("passed", 0) for r in good), default=0)
    for key in ("floor_start_s", "deploy_s", "verify_s", "destroy_s", "floor_remove_s",
                "peak_rss_mib"):
        row[key] = _median(good, key)
    fs, dep = row["floor_start_s"], row["deploy_s"]
    fr, des = row["floor_remove_s"], row["destroy_s"]
    # each run's own ratio (floor and podlab measured back to back), then their median:
    # steadier on a shared host than a ratio of medians taken minutes apart
    row["deploy_ratio"] = statistics.median(r["deploy_s"] / r["floor_start_s"] for r in good)
    row["destroy_ratio"] = statistics.median(r["destroy_s"] / r["floor_remove_s"]
                                             for r in good)
    row["ratio_of_medians"] = {"deploy": dep / fs if dep and fs else None,
                               "destroy": des / fr if des and fr else None}
    row["failures"] = next((r["failures"] for r in good if r.get("failures")), [])
    if any("quick_results" in r for r in good):
        quick = [r for r in good if "quick_results" in r]
        row["quick"] = {"results": quick[0]["quick_results"],
                        "passed": min(r["quick_passed"] for r in quick),
                        "process_passed": min(r["quick_process_passed"] for r in quick),
                        "sample": quick[0]["quick_sample"],
                        "verify_s": [round(r["quick_verify_s"], 2) for r in quick],
                        "process_s": [round(r["quick_process_s"], 2) for r in quick]}
    row["leftovers"] = max(r.get("leftovers", 0) for r in good)
    row["runs"] = runs
    return row


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def compare_cni(rows: list[dict[str, Any]]) -> None:
    """Each CNI datapath's deploy time against `cni: podlab` of the same size: the median
    of per-repetition ratios (the two ran back to back), into the row as vs_podlab."""
    base = {r["size"]: r for r in rows if r.get("cni", DEFAULT_CNI) == DEFAULT_CNI}
    for row in rows:
        ref = base.get(row["size"])
        if row.get("cni", DEFAULT_CNI) == DEFAULT_CNI or not ref or "runs" not in row \
                or "runs" not in ref:
            continue
        pairs = [(r["deploy_s"], b["deploy_s"]) for r, b in zip(row["runs"], ref["runs"],
                                                                  strict=False)
                 if r.get("deploy_s") and b.get("deploy_s")]
        if pairs:
            row["vs_podlab"] = {"deploy": statistics.median(a / b for a, b in pairs),
                                "target": CNI_TARGET}


def table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title=f"podlab vs Docker floor (medians; target ratio <= {TARGET_RATIO} "
                    f"from {TARGET_PODS} pods; a CNI's deploy <= {CNI_TARGET} x podlab's; "
                    f">= {RATE_TARGET:,} results/s at {RATE_PODS} pods)")
    for col in ("size", "cni", "ctrs", "results", "passed", "floor start s", "deploy s",
                "ratio", "vs podlab", "verify s", "results/s", "floor rm s", "destroy s",
                "ratio", "peak RSS MiB", "n"):
        t.add_column(col, justify="left" if col in ("size", "cni") else "right")
    for r in rows:
        cni = r.get("cni", DEFAULT_CNI)
        if "containers" not in r:
            t.add_row(r["size"], cni, *["-"] * 13, str(r["repeat"]), style="red")
            continue

        def ratio(v: float | None, pods: int = r["pods"], target: float = TARGET_RATIO
                  ) -> str:
            text = _fmt(v)
            if v is None or pods < TARGET_PODS:
                return text
            return f"[green]{text}[/]" if v <= target else f"[red]{text}[/]"

        def rate(v: float | None, pods: int = r["pods"]) -> str:
            text = "-" if v is None else f"{v:,.0f}"
            if v is None or pods < RATE_PODS:
                return text
            return f"[green]{text}[/]" if v >= RATE_TARGET else f"[red]{text}[/]"

        versus = (r.get("vs_podlab") or {}).get("deploy")
        ok = r["passed"] == r["results"]
        t.add_row(r["size"], cni, str(r["containers"]), str(r["results"]),
                  f"[{'green' if ok else 'red'}]{r['passed']}[/]",
                  _fmt(r["floor_start_s"]), _fmt(r["deploy_s"]), ratio(r["deploy_ratio"]),
                  ratio(versus, target=CNI_TARGET) if versus is not None else "-",
                  _fmt(r["verify_s"]), rate(r["results"] / r["verify_s"] if r["verify_s"]
                                            else None),
                  _fmt(r["floor_remove_s"]), _fmt(r["destroy_s"]),
                  ratio(r["destroy_ratio"]), _fmt(r["peak_rss_mib"], 0), str(r["repeat"]))
    return t


def failure_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the table's red `passed` stands for: each row with a failed result, and the
    first failures it kept (a figure measured on a failing run is no figure)."""
    out = []
    for r in rows:
        quick = r.get("quick")
        if quick and (quick["passed"] != quick["results"]
                      or quick["process_passed"] != quick["results"]):
            out.append(f"{r['size']} cni {r.get('cni', DEFAULT_CNI)}: verify --quick had "
                       "failed results")
        if r.get("results") is None or r.get("passed") == r.get("results"):
            continue
        out.append(f"{r['size']} cni {r.get('cni', DEFAULT_CNI)}: "
                   f"{r['results'] - r['passed']} of {r['results']} results failed")
        out += [f"  {f['check']} {f['proto']} {f['src']} -> {f['dst']}: {f['detail']}"
                for f in r.get("failures", [])[:10]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",") if x],
                        help=f"comma-separated NODESxPODS (default {','.join(DEFAULT_SIZES)})")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {','.join(QUICK_SIZES)}, once each")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--profile", metavar="DIR",
                        help="pyinstrument profiles of deploy/verify/destroy into DIR (the "
                             "calling process only: a large verify's other probe processes "
                             "are not in it)")
    parser.add_argument("--cni", default=DEFAULT_CNI,
                        help="comma-separated cluster.cni values to run each size with "
                             "(podlab, bridge, ptp); with podlab among them, each other's "
                             f"deploy is compared with podlab's (default {DEFAULT_CNI})")
    parser.add_argument("--quick-verify", action="store_true",
                        help="also time verify --quick on each lab, in process and as a "
                             "podlab verify process")
    parser.add_argument("--one", type=parse_size, help=argparse.SUPPRESS)
    parser.add_argument("--floor-last", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:  # child mode: one run, one JSON line on stdout
        print(json.dumps(one_run(*args.one, profile_dir=args.profile,
                                 floor_first=not args.floor_last, cni=args.cni,
                                 quick_verify=args.quick_verify)), flush=True)
        return 0

    from rich.console import Console

    console = Console(stderr=True)
    sizes = args.sizes or [parse_size(s) for s in (QUICK_SIZES if args.quick
                                                   else DEFAULT_SIZES)]
    repeat = 1 if args.quick and args.sizes is None and args.repeat == 3 else args.repeat
    cnis = [c for c in args.cni.split(",") if c] or [DEFAULT_CNI]
    runs: dict[tuple[tuple[int, int], str], list[dict[str, Any]]] = {
        (s, c): [] for s in sizes for c in cnis}
    for rep in range(max(1, repeat)):  # interleaved: host noise spreads over every size
        for size in sizes:
            for cni in cnis:  # back to back, so their ratio sees the same host
                what = f"{size[0]}x{size[1]}" + (f" cni {cni}" if len(cnis) > 1 else "")
                console.print(f"[dim]run {rep + 1}/{repeat}: {what}[/]")
                result = _child(size, args.profile, floor_first=rep % 2 == 0, cni=cni,
                                quick_verify=args.quick_verify)
                if "error" in result:
                    console.print(f"[red]{what} failed:[/]\n{result['error']}")
                runs[(size, cni)].append(result)
    rows = [summarize(s, runs[(s, c)], c) for s in sizes for c in cnis]
    compare_cni(rows)
    Console(width=None if sys.stdout.isatty() else 160).print(table(rows))  # files: unsquashed
    doc = {"host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "python": platform.python_version()},
           "target_ratio": TARGET_RATIO, "target_from_pods": TARGET_PODS, "sizes": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"[dim]wrote {args.json}[/]")
    for r in rows:
        if r.get("quick"):
            q = r["quick"]
            console.print(f"{r['size']}: verify --quick {q['passed']}/{q['results']} results "
                          f"({q['sample'] and q['sample'].get('targets')} of "
                          f"{q['sample'] and q['sample'].get('of')} targets) in "
                          f"{min(q['verify_s']):.2f}-{max(q['verify_s']):.2f} s in process, "
                          f"{min(q['process_s']):.2f}-{max(q['process_s']):.2f} s as podlab "
                          "verify", highlight=False)
    for line in failure_lines(rows):
        console.print(line, style="red", markup=False, highlight=False)
    bad = any(r.get("errors") or r.get("passed") != r.get("results") or r.get("leftovers")
              for r in rows) or bool(failure_lines(rows))
    if bad:
        console.print("[red]benchmark failed: a figure measured on a failing run is no "
                      "figure[/]")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
