"""How much a dual-stack verify costs against the same lab single-stack.

For each lab, two copies are deployed side by side: the lab as given in IPv4 alone and the
same lab dual-stack (every pod, node and link also in IPv6: pod-cidr and underlay-cidr
get an IPv6 prefix each, explicit link addresses an IPv6 twin). Their verifies (every
check, every pair, every protocol, once per family) then alternate, so both see the same
load on the host; the figures are medians over the repetitions, and the ratio is
dual / single. The target: dual-stack within TARGET_RATIO of single-stack. A verify with
any failed result fails the benchmark (exit 1, the failures printed).

    bench/dualstack.py                          # the dual example and a generated 4x24
    bench/dualstack.py --labs topologies/dual.clab.yml --repeat 7
    bench/dualstack.py --labs 3x12,6x48 --repeat 3 --json bench/dualstack.json

A lab is a topology file or NODESxPODS (bench/gen.py's shape: one switch, an outside
host, pods with a sidecar).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python bench/dualstack.py` without an install
    sys.path.insert(0, str(ROOT))

from bench.gen import topology  # noqa: E402

DEFAULT_LABS = ("topologies/dual.clab.yml", "4x24")
TARGET_RATIO = 2.2
V6_POD, V6_UNDERLAY = "fd00:10:244::/56", "fd00:172:30::/48"


def load(lab: str) -> tuple[str, dict[str, Any]]:
    """(label, topology dict) of a file or a NODESxPODS size."""
    if "x" in lab and not lab.endswith(".yml"):
        nodes, pods = (int(n) for n in lab.split("x"))
        return lab, topology("gen", nodes, pods)
    return Path(lab).name.removesuffix(".clab.yml"), yaml.safe_load((ROOT / lab).read_text())


def families(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(IPv4-only, dual-stack) copies of a topology, whichever it was written as."""
    four, dual = copy.deepcopy(spec), copy.deepcopy(spec)
    cluster = spec.get("cluster", {})

    def first_v4(value: Any, default: str) -> str:
        values = value if isinstance(value, list) else [value or default]
        return next(v for v in values if ":" not in v)

    pod = first_v4(cluster.get("pod-cidr"), "10.244.0.0/16")
    under = first_v4(cluster.get("underlay-cidr"), "172.30.0.0/16")
    four.setdefault("cluster", {}).update({"pod-cidr": pod, "underlay-cidr": under})
    dual.setdefault("cluster", {}).update({"pod-cidr": [pod, V6_POD],
                                           "underlay-cidr": [under, V6_UNDERLAY]})
    for n, link in enumerate(dual["topology"].get("links", [])):
        four["topology"]["links"][n].pop("ipv6", None)
        if link.get("ipv4") and not link.get("ipv6"):  # an explicit IPv4 subnet: a twin
            link["ipv6"] = [f"fd00:ff:{n:x}::{j + 1}/64" if a else None
                            for j, a in enumerate(link["ipv4"])]
    return four, dual


def run(lab: str, repeat: int) -> dict[str, Any]:
    from harness import Lab
    from harness.lab import unique_name
    from harness.model.topology import parse_topology

    label, spec = load(lab)
    four, dual = families(spec)
    times: dict[str, list[float]] = {"ipv4": [], "dual": []}
    results: dict[str, int] = {}
    failures: dict[str, int] = {"ipv4": 0, "dual": 0}
    failed: list[str] = []
    labs = {}
    try:
        for key, body in (("ipv4", four), ("dual", dual)):
            body = {**body, "name": unique_name(f"bds{key}")}
            labs[key] = Lab.deploy(parse_topology(yaml.safe_dump(body, sort_keys=False)))
        for _ in range(repeat):
            for key, handle in labs.items():  # alternating: the same load for both
                start = time.monotonic()
                report = handle.verify()
                times[key].append(time.monotonic() - start)
                results[key] = len(report.results)
                failures[key] += sum(not r.ok for r in report.results)
                failed += [f"{key}: {r.check} {r.family} {r.proto} {r.src} -> {r.dst}: "
                           f"{r.detail}" for r in report.results if not r.ok][:10]
                time.sleep(0.5)
    finally:
        for handle in labs.values():
            handle.destroy()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"lab": label, "repeat": repeat, "results": results, "failures": failures,
            "failed": failed,
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "all_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "ratio": round(med["dual"] / med["ipv4"], 2)}


def exit_code(rows: list[dict[str, Any]]) -> int:
    """1 if any verify had a failed result (no figure stands on a failing run) or a ratio
    missed its target, else 0."""
    failing = any(sum(r["failures"].values()) for r in rows)
    return 1 if failing or any(r["ratio"] > TARGET_RATIO for r in rows) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labs", default=",".join(DEFAULT_LABS),
                        help="comma-separated topology files or NODESxPODS sizes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = [run(lab, args.repeat) for lab in args.labs.split(",") if lab]
    print(f"{'lab':<10} {'results v4/dual':>16} {'verify v4 s':>12} {'verify dual s':>14} "
          f"{'ratio':>6}  failures v4/dual   (target: ratio <= {TARGET_RATIO})")
    for row in rows:
        print(f"{row['lab']:<10} {row['results']['ipv4']:>7}/{row['results']['dual']:<8} "
              f"{row['median_s']['ipv4']:>12.2f} {row['median_s']['dual']:>14.2f} "
              f"{row['ratio']:>6.2f}  {row['failures']['ipv4']}/{row['failures']['dual']}")
    for row in rows:
        for line in row["failed"]:
            print(f"FAILED {row['lab']} {line}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
