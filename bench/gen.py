"""Generate lab topologies of a given size: N k8s-nodes on one switch, P pods each with a
sidecar, spread round-robin, plus one outside host."""

from __future__ import annotations

import argparse
import sys

import yaml


def topology(name: str, nodes: int, pods: int, outside: bool = True,
             cni: str | None = None) -> dict:
    node_names = [f"n{i + 1}" for i in range(nodes)]
    spec: dict = {
        "name": name,
        "cluster": {"pod-cidr": "10.244.0.0/16", "node-mask": 24,
                    "underlay-cidr": "172.30.0.0/16", "masquerade": True},
        "topology": {
            "nodes": {**{n: {"kind": "k8s-node"} for n in node_names}, "tor": {"kind": "switch"}},
            "links": [{"endpoints": [f"{n}:eth1", f"tor:p{i + 1}"]}
                      for i, n in enumerate(node_names)],
        },
        "pods": {f"p{i + 1}": {"node": node_names[i % nodes],
                               "containers": [{"name": "app"}, {"name": "sidecar"}]}
                 for i in range(pods)},
    }
    if cni is not None:  # the pods' wiring: podlab's own, or a CNI datapath (bridge, ptp)
        spec["cluster"]["cni"] = cni
    if outside:
        spec["topology"]["nodes"]["world"] = {"kind": "linux"}
        spec["topology"]["links"].append({"endpoints": ["world:eth1", f"tor:p{nodes + 1}"]})
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="gen")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pods", type=int, default=6)
    parser.add_argument("--no-outside", action="store_true")
    parser.add_argument("--cni", help="cluster.cni: podlab (default), bridge or ptp")
    args = parser.parse_args()
    yaml.safe_dump(topology(args.name, args.nodes, args.pods, not args.no_outside, args.cni),
                   sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
