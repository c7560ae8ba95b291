"""Write README's "Which source address does my pod see?" table from a real run.

Deploys topologies/services.clab.yml under a fresh name, verifies it (Service checks a
few times, until each kind of path has shown up: endpoints are chosen at random, as
kube-proxy chooses them), and replaces the README text between the two markers with one
row per path: what the receiving socket saw as the source, and who rewrote what. Every
cell comes from a passed result of that run; a path that did not show up is left out.

    sudo .venv/bin/python scripts/source_addresses.py [--readme README.md] [--stdout]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.lab import Lab, unique_name  # noqa: E402
from harness.plan import Plan  # noqa: E402
from harness.prove.result import Result  # noqa: E402

START = "<!-- source-addresses:start (scripts/source_addresses.py writes this) -->"
END = "<!-- source-addresses:end -->"
SERVICE_CHECKS = ("pod-to-service", "node-to-service", "external-to-nodeport",
                  "external-to-hostport")
ROUNDS = 6


def kind_of(plan: Plan, r: Result) -> str | None:
    """The row a passed result illustrates, or None."""
    pods = {p.name: p for p in plan.pods}
    if r.check == "pod-to-pod":
        a, b = pods[r.src], pods[r.dst]
        where = "same node" if a.node == b.node else "another node"
        if a.host_network:
            return f"hostNetwork pod -> pod, {where}"
        return f"pod -> {'hostNetwork ' if b.host_network else ''}pod, {where}"
    if r.check == "pod-to-external":
        return None if pods[r.src].host_network else "pod -> outside host (masquerade on)"
    if r.check == "pod-to-service" and not pods[r.src].host_network:
        ep = r.observed.get("endpoint", {}).get("pod")
        if ep is None:
            return None
        if ep == r.src:
            return "pod -> ClusterIP, the endpoint is the pod itself"
        what = "a hostNetwork pod" if pods[ep].host_network else "a pod"
        node = "on the same node" if pods[ep].node == pods[r.src].node else "on another node"
        return f"pod -> ClusterIP, endpoint {what} {node}"
    if r.check == "node-to-service":
        ep = r.observed.get("endpoint", {}).get("pod")
        if ep is None:
            return None
        local = "on the node" if pods[ep].node == r.src else "on another node"
        return f"node (or hostNetwork pod) -> ClusterIP, endpoint {local}"
    if r.check == "external-to-nodeport":
        svc = next(s for s in plan.services if r.dst.startswith(f"{s.name}:"))
        ep = r.observed.get("endpoint", {}).get("pod")
        node = r.dst.rsplit("@", 1)[1]
        if ep is None:
            return f"outside -> NodePort {svc.external_traffic_policy}, no endpoint on that node"
        local = "on that node" if pods[ep].node == node else "on another node"
        return f"outside -> NodePort {svc.external_traffic_policy}, endpoint {local}"
    if r.check == "external-to-hostport":
        ok = "endpoint" in r.observed
        return "outside -> hostPort, " + ("the pod's node" if ok else "another node")
    return None


def row(r: Result) -> tuple[str, str, str]:
    """(example, what the receiver's socket saw, NAT) of a passed result."""
    if r.check in SERVICE_CHECKS:
        got = r.observed.get("endpoint")
        example = f"{r.src} -> {r.expected['dst']} ({r.dst})"
        if got is None:
            return example, "nothing: the node does not answer", "-"
        exp = next(e for e in r.expected["endpoints"] if e["pod"] == got["pod"])
        nat = f"DNAT by {exp['dnat_at']} to {got['pod']} {got['dst']}"
        if exp["snat_at"]:
            nat += f"; SNAT by {exp['snat_at']}"
        return example, got["src"], nat
    seen = r.observed.get("socket", {}).get("src") or r.observed.get("src", "")
    example = f"{r.src} -> {r.dst} ({r.expected.get('dst')})"
    nat = (f"SNAT by {r.expected['path'][0]}" if seen != r.expected.get("src") or
           r.check == "pod-to-external" else "none")
    return example, seen, nat


def collect(lab: Lab) -> dict[str, Result]:
    found: dict[str, Result] = {}

    def take(results: list[Result]) -> None:
        for r in results:
            kind = kind_of(lab.plan, r) if r.ok and r.proto in ("tcp", "udp", "-") else None
            if kind and kind not in found and r.proto == "udp":
                found[kind] = r

    report = lab.verify()
    bad = [r for r in report.results if not r.ok]
    if bad:
        raise SystemExit(f"the example does not verify: {bad[0].check} {bad[0].src} -> "
                         f"{bad[0].dst}: {bad[0].detail}")
    take(report.results)
    for _ in range(ROUNDS):  # endpoints are random: probe again for the rows not seen yet
        take(lab.verify(SERVICE_CHECKS).results)
    return found


ORDER = [
    "pod -> pod, same node", "pod -> pod, another node",
    "pod -> hostNetwork pod, same node", "pod -> hostNetwork pod, another node",
    "hostNetwork pod -> pod, same node", "hostNetwork pod -> pod, another node",
    "pod -> ClusterIP, endpoint a pod on another node",
    "pod -> ClusterIP, endpoint a pod on the same node",
    "pod -> ClusterIP, endpoint a hostNetwork pod on another node",
    "pod -> ClusterIP, endpoint a hostNetwork pod on the same node",
    "pod -> ClusterIP, the endpoint is the pod itself",
    "node (or hostNetwork pod) -> ClusterIP, endpoint on another node",
    "node (or hostNetwork pod) -> ClusterIP, endpoint on the node",
    "outside -> NodePort Cluster, endpoint on another node",
    "outside -> NodePort Cluster, endpoint on that node",
    "outside -> NodePort Local, endpoint on that node",
    "outside -> NodePort Local, no endpoint on that node",
    "outside -> hostPort, the pod's node", "outside -> hostPort, another node",
    "pod -> outside host (masquerade on)",
]


def table(found: dict[str, Result]) -> str:
    lines = ["| path | example (UDP) | source the receiving socket saw | rewritten by |",
             "|---|---|---|---|"]
    for kind in [k for k in ORDER if k in found] + sorted(set(found) - set(ORDER)):
        example, src, nat = row(found[kind])
        lines.append(f"| {kind} | `{example}` | `{src}` | {nat} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--stdout", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)
    with Lab.deploy(ROOT / "topologies" / "services.clab.yml",
                    name=unique_name("srcaddr")) as lab:
        text = table(collect(lab))
    if args.stdout:
        print(text, end="")
        return 0
    readme = args.readme.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"{args.readme}: the markers are missing ({START} ... {END})")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{text}{END}{tail}")
    print(f"{args.readme}: table written ({text.count(chr(10)) - 2} paths)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
