"""`podlab import kind CONFIG`: a podlab topology from a kind Cluster config
(kind.x-k8s.io/v1alpha4). Pure: a config's data in, a topology's data out.

What kind builds, podlab builds: one k8s-node per `nodes` entry (named as kind names its
containers: <cluster>-control-plane, <cluster>-worker, <cluster>-worker2, ...), all on
one L2 segment as kind's Docker network puts them (a switch here), `podSubnet`,
`serviceSubnet` and `ipFamily` with kind's defaults, and kind's default CNI, kindnet,
whose pods are wired as the reference `ptp` plugin wires them. What podlab cannot do the
same way is refused with the reason: a kube-proxy mode other than iptables, and
`disableDefaultCNI` without a CNI named instead.
"""

from __future__ import annotations

from typing import Any

from harness.errors import Problem

API = "kind.x-k8s.io/v1alpha4"
KIND_CNI = "ptp"  # kindnet: a veth and a /32 route per pod, as the ptp plugin does
DEFAULT_POD = {"ipv4": "10.244.0.0/16", "ipv6": "fd00:10:244::/56"}
DEFAULT_SERVICE = {"ipv4": "10.96.0.0/16", "ipv6": "fd00:10:96::/112"}
FAMILIES = {"ipv4": ("ipv4",), "ipv6": ("ipv6",), "dual": ("ipv4", "ipv6")}
SWITCH = "kind"  # kind's Docker network is called `kind`
IGNORED_NODE_KEYS = ("image", "extraMounts", "kubeadmConfigPatches",
                     "kubeadmConfigPatchesJSON6902")


def _subnets(text: Any, families: tuple[str, ...], defaults: dict[str, str]) -> list[str]:
    if not text:
        return [defaults[f] for f in families]
    return [p.strip() for p in str(text).split(",") if p.strip()]


def import_kind(config: Any, *, cni: str | None = None
                ) -> tuple[dict[str, Any], list[str], list[Problem]]:
    """(topology data, notes on what was left out, problems). Problems refuse the config."""
    problems: list[Problem] = []
    notes: list[str] = []
    if not isinstance(config, dict) or config.get("kind") != "Cluster" or not str(
            config.get("apiVersion", "")).startswith("kind.x-k8s.io/"):
        return {}, notes, [Problem("", f"not a kind Cluster config (kind: Cluster, "
                                       f"apiVersion: {API})")]
    net = config.get("networking") or {}
    if not isinstance(net, dict):
        problems.append(Problem("networking", "must be a mapping"))
        net = {}
    family = str(net.get("ipFamily", "ipv4"))
    if family not in FAMILIES:
        problems.append(Problem("networking.ipFamily", f"{family!r}: kind takes ipv4, ipv6 "
                                "or dual"))
        family = "ipv4"
    mode = net.get("kubeProxyMode", "iptables")
    if mode != "iptables":
        problems.append(Problem("networking.kubeProxyMode", f"{mode!r}: podlab programs "
                                "Services as kube-proxy's iptables mode does, and proves "
                                "those rules; use kubeProxyMode: iptables"))
    if net.get("disableDefaultCNI") and cni is None:
        problems.append(Problem("networking.disableDefaultCNI", "kind then runs no CNI until "
                                "you install one, and podlab must wire the pods with some: "
                                "name it (--cni podlab, bridge or ptp)"))
    families = FAMILIES[family]
    pods = _subnets(net.get("podSubnet"), families, DEFAULT_POD)
    services = _subnets(net.get("serviceSubnet"), families, DEFAULT_SERVICE)
    for key in ("apiServerAddress", "apiServerPort", "dnsSearch"):
        if key in net:
            notes.append(f"networking.{key} (podlab runs no API server or DNS)")
    name = str(config.get("name") or "kind")
    entries = config.get("nodes") or [{"role": "control-plane"}]
    nodes: dict[str, Any] = {SWITCH: {"kind": "switch"}}
    links: list[dict[str, Any]] = []
    count: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(Problem(f"nodes[{i}]", "must be a mapping with a role"))
            continue
        role = entry.get("role", "control-plane")
        if role not in ("control-plane", "worker"):
            problems.append(Problem(f"nodes[{i}].role", f"{role!r}: kind's roles are "
                                    "control-plane and worker"))
            continue
        count[role] = count.get(role, 0) + 1
        node = f"{name}-{role}" + (str(count[role]) if count[role] > 1 else "")
        body: dict[str, Any] = {"kind": "k8s-node"}
        if isinstance(entry.get("labels"), dict) and entry["labels"]:
            body["labels"] = {str(k): str(v) for k, v in entry["labels"].items()}
        nodes[node] = body
        links.append({"endpoints": [f"{node}:eth1", f"{SWITCH}:e{i + 1}"]})
        for key in IGNORED_NODE_KEYS:
            if key in entry:
                notes.append(f"nodes[{i}].{key} (podlab runs its own node image)")
        if entry.get("extraPortMappings"):
            notes.append(f"nodes[{i}].extraPortMappings (podlab publishes nothing on the "
                         "host; use a pod's hostPort inside the lab)")
    for key in ("featureGates", "runtimeConfig", "containerdConfigPatches"):
        if key in config:
            notes.append(f"{key} (no Kubernetes control plane runs in podlab)")
    cluster: dict[str, Any] = {
        "pod-cidr": pods[0] if len(pods) == 1 else pods,
        "service-cidr": services[0] if len(services) == 1 else services,
        "cni": cni or KIND_CNI,
    }
    return ({"name": name, "cluster": cluster, "topology": {"nodes": nodes, "links": links}},
            notes, problems)
