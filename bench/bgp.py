"""How fast `routing: bgp` is: route installation after deploy, and convergence after faults.

On the two-rack leaf-spine example (topologies/leafspine.clab.yml), each repetition:

1. deploys it and measures, from Docker's own start times, how long after the last
   container (and the last node container) started every speaker's kernel held a
   BIRD-installed route to every prefix it does not hold itself (deploy returns then);
2. pulls a leaf-spine cable, then plugs it back, and kills a leaf's BIRD: each time, how
   long until every live speaker's kernel holds exactly what BIRD converges to (what
   `verify` waits for), then destroys the lab.

With --image it first rebuilds podlab/bird from scratch (cold: no layer cache) and times it.
With --dual the example runs dual-stack (an IPv6 prefix added to pod-cidr and
underlay-cidr): every wait then covers the IPv6 routes and sessions too.
Prints one table; --json writes the figures too. The target: routes within 5 s of the last
container start.

    bench/bgp.py                 # 3 repetitions
    bench/bgp.py --repeat 5 --image --json bench/bgp.json
    bench/bgp.py --dual          # the same, both families
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python bench/bgp.py` without an install
    sys.path.insert(0, str(ROOT))

TOPOLOGY = ROOT / "topologies" / "leafspine.clab.yml"
TARGET_S = 5.0
CABLE = "leaf1:eth2"  # leaf1 <-> spine1
KILLED = "leaf1"
DUAL_SETS = {"pod-cidr": ["10.244.0.0/16", "fd00:10:244::/56"],
             "underlay-cidr": ["172.20.0.0/16", "fd00:172:20::/48"]}


def started_at(container: str) -> float:
    """Docker's StartedAt of a container, as epoch seconds."""
    from harness.host import runtime

    text = runtime.inspect(container)["State"]["StartedAt"]  # RFC 3339, nanoseconds
    head, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + float(f"0.{frac[:6] or 0}")


def cold_image_build() -> float:
    from harness.host import images, runtime

    started = time.monotonic()
    images.ensure_images(runtime.client(), ["bird"], force=True, nocache=True)
    return time.monotonic() - started


def one_run(dual: bool = False) -> dict[str, float]:
    from harness import Lab
    from harness.lab import unique_name
    from harness.model.variants import load_variant

    t0 = time.time()
    lab = Lab.deploy(load_variant(TOPOLOGY, DUAL_SETS if dual else {},
                                  name=unique_name("bench-bgp")))
    done = time.time()  # deploy returns once every BIRD route is installed
    try:
        plan = lab.plan
        nodes = [n.container for n in plan.nodes]
        every = plan.containers
        last = max(started_at(c) for c in every)
        last_node = max(started_at(c) for c in nodes)
        out = {"deploy_s": done - t0, "routes_after_last_container_s": done - last,
               "routes_after_last_node_s": done - last_node}
        unsettled = []

        def settle(what: str) -> float:
            done = lab.converged()
            if not done.settled:  # a time that did not end in convergence is no figure
                unsettled.append(f"{what}: {done.note}")
            return done.seconds

        lab.fault("link-down", CABLE)
        out["link_down_converged_s"] = settle("link-down")
        lab.fault("link-up", CABLE)
        out["link_up_converged_s"] = settle("link-up")
        # through podlab, so verify re-plans for it (a BIRD dead behind podlab's back is
        # a failure, not a fault to converge around)
        lab.fault("daemon-kill", KILLED)
        out["daemon_kill_converged_s"] = settle("daemon-kill")
        if unsettled:
            raise SystemExit("benchmark failed: routes did not converge: "
                             + "; ".join(unsettled))
        return out
    finally:
        lab.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--image", action="store_true",
                        help="first rebuild podlab/bird cold and time it")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--dual", action="store_true",
                        help="run the example dual-stack (IPv4 and IPv6 sessions and routes)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    figures: dict[str, Any] = {}
    if args.image:
        figures["cold_image_build_s"] = cold_image_build()
    runs = [one_run(args.dual) for _ in range(args.repeat)]
    stack = ", dual-stack" if args.dual else ""
    table = Table(title=f"routing: bgp on {TOPOLOGY.name}{stack}, {args.repeat} runs "
                        f"(median, max)", title_justify="left")
    for col in ("measure", "median s", "max s"):
        table.add_column(col)
    if "cold_image_build_s" in figures:
        table.add_row("podlab/bird cold build", f"{figures['cold_image_build_s']:.2f}", "")
    for key in runs[0]:
        values = [r[key] for r in runs]
        figures[key] = {"median": statistics.median(values), "max": max(values),
                        "runs": values}
        table.add_row(key.replace("_", " "), f"{statistics.median(values):.2f}",
                      f"{max(values):.2f}")
    console = Console()
    console.print(table)
    worst = figures["routes_after_last_container_s"]["max"]
    verdict = "met" if worst <= TARGET_S else "MISSED"
    console.print(f"target: all routes within {TARGET_S:g} s of the last container start: "
                  f"{verdict} (worst {worst:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
