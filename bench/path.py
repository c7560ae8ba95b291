"""What the `path` check adds to verify, at one lab size.

One lab (bench/gen.py's shape: NODES k8s-nodes on a switch, an outside host, pods with a
sidecar) is deployed once; then verify without `path`, with every check, and `path`
alone take turns, so all see the same load on the host, and the medians are compared.
path runs after the other checks, so its own time is what it adds; on a loaded host that
is steadier than the difference of two noisy totals (both are printed). The
target: path adds at most TARGET_ADD (50%) to verify's time at 4 nodes x 24 pods.
Every verify must pass: a failure makes the figure meaningless, and the script says so.

    bench/path.py                        # 4x24, 5 repetitions
    bench/path.py --size 4x24 --repeat 7 --json bench/path.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python bench/path.py` without an install
    sys.path.insert(0, str(ROOT))

from bench.run import _plan, parse_size  # noqa: E402

TARGET_ADD = 0.5


def measure(nodes: int, pods: int, repeat: int) -> dict[str, Any]:
    from harness import Lab
    from harness.prove.targets import CHECKS

    plan = _plan(f"bench-path-{uuid.uuid4().hex[:6]}", nodes, pods)
    without = [c for c in CHECKS if c != "path"]
    times: dict[str, list[float]] = {"with": [], "without": [], "path": []}
    counts: dict[str, int] = {}
    failed: list[str] = []
    runs = [("without", without), ("with", list(CHECKS)), ("path", ["path"])]
    with Lab.deploy(plan) as lab:
        t0 = time.perf_counter()
        lab.verify(checks=["path"])  # scapy's import, once per process, timed apart
        first = time.perf_counter() - t0
        for i in range(repeat):
            for label, checks in runs[i % 3:] + runs[:i % 3]:
                t0 = time.perf_counter()
                report = lab.verify(checks=checks)
                times[label].append(time.perf_counter() - t0)
                counts[label] = len(report.results)
                failed += [f"{r.check} {r.src} {r.dst}: {r.detail}"
                           for r in report.results if not r.ok]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"nodes": nodes, "pods": pods, "repeat": repeat, "times": times,
            "first_path_s": first,
            "median_with_s": med["with"], "median_without_s": med["without"],
            "median_path_alone_s": med["path"],
            # path runs after the other checks: its own time is what it adds
            "added": med["path"] / med["without"],
            "added_with_vs_without": med["with"] / med["without"] - 1, "results": counts,
            "path_results": counts["with"] - counts["without"], "failures": failed[:20],
            "failed": len(failed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(4, 24))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out = measure(*args.size, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    ok = out["failed"] == 0 and out["added"] <= TARGET_ADD
    print(f"{out['nodes']}x{out['pods']}: verify {out['median_without_s']:.2f} s without "
          f"path ({out['results']['without']} results), {out['median_with_s']:.2f} s with "
          f"it; path alone {out['median_path_alone_s']:.2f} s ({out['path_results']} "
          f"results; the first, with scapy's import, {out['first_path_s']:.2f} s): path "
          f"adds {out['added']:.0%} (with/without: {out['added_with_vs_without']:+.0%}; "
          f"target <= {TARGET_ADD:.0%}); failures: {out['failed']}"
          f" -> {'ok' if ok else 'MISSED'}")
    for line in out["failures"]:
        print("  " + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
