"""The README's small labs: deploy, verify (every check, every pair, every protocol) and
destroy of each example through `harness.Lab`, medians of the repetitions.

    bench/examples.py                                   # minimal, routed, flat3; 3 each
    bench/examples.py --labs flat3 --repeat 5 --json bench/examples.json

A run with any failed result fails the benchmark (exit 1, the failures printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python bench/examples.py` without an install
    sys.path.insert(0, str(ROOT))

DEFAULT_LABS = ("minimal", "routed", "flat3")


def one_run(stem: str) -> dict[str, Any]:
    from harness import Lab
    from harness.lab import unique_name
    from harness.lab.handle import plan_of

    plan = plan_of(ROOT / "topologies" / f"{stem}.clab.yml", unique_name(stem))
    out: dict[str, Any] = {"containers": len(plan.containers)}
    t0 = time.perf_counter()
    lab = Lab.deploy(plan)
    out["deploy_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        report = lab.verify()
        out["verify_s"] = time.perf_counter() - t0
        out["results"] = len(report.results)
        out["failed"] = [f"{r.check} {r.proto} {r.src} -> {r.dst}: {r.detail}"
                         for r in report.results if not r.ok]
    finally:
        t0 = time.perf_counter()
        lab.destroy()
        out["destroy_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", default=",".join(DEFAULT_LABS),
                        help="comma-separated example names (topologies/NAME.clab.yml)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from harness.host import runtime
    from harness.lab.deploy import ensure_images
    from harness.lab.handle import plan_of

    stems = [s for s in args.labs.split(",") if s]
    for stem in stems:  # images ready before the clock runs
        ensure_images(plan_of(ROOT / "topologies" / f"{stem}.clab.yml", stem))
    runtime.client()
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in stems}
    for _ in range(args.repeat):  # interleaved: host noise spreads over every lab
        for stem in stems:
            runs[stem].append(one_run(stem))
    rows = []
    print(f"{'lab':<10} {'containers':>10} {'results':>8} {'deploy s':>9} {'verify s':>9} "
          f"{'destroy s':>10} {'failed':>7}   (medians of {args.repeat})")
    failed = []
    for stem, got in runs.items():
        row = {"lab": stem, "containers": got[0]["containers"], "results": got[0]["results"],
               "failed": sum(len(r["failed"]) for r in got),
               **{k: statistics.median(r[k] for r in got)
                  for k in ("deploy_s", "verify_s", "destroy_s")}}
        rows.append(row)
        print(f"{stem:<10} {row['containers']:>10} {row['results']:>8} "
              f"{row['deploy_s']:>9.2f} {row['verify_s']:>9.2f} {row['destroy_s']:>10.2f} "
              f"{row['failed']:>7}")
        failed += [f"FAILED {stem}: {line}" for r in got for line in r["failed"][:10]]
    for line in failed:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
