"""Pods wired by CNI plugins: attach (ADD) and detach (DEL) one pod, as a runtime does, and
the lab's CNI state on the host (what destroy removes).

A pod is attached when its infra container runs and its node is configured: first the
`loopback` network (ifname lo), then the node's chain (ifname eth0), both with the node's
namespace as the host side. The chain's result is cached in the lab's state directory
(`<state root>/<lab>/<node>/results/`, libcni's format), which is what later DELs use
(pod removal, node restart, destroy, after a crash too) and where the pod's address is
read back. host-local keeps its leases next to it (`.../<node>/ipam/`); destroy removes
the whole `<state root>/<lab>` directory after calling DEL for every cached attachment
whose node still runs.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.datapath import cni_conf
from harness.errors import CniPluginError, PodlabError
from harness.host import cni as plugins
from harness.host.netns import netns_path

POD_NAMESPACE = "default"  # the Kubernetes namespace podlab's pods live in (CNI_ARGS)


@dataclass(frozen=True)
class Attached:
    """One pod's attachment as recorded: its chain's result and where it came from."""

    pod: str
    node: str
    container_id: str
    result: dict[str, Any]
    addresses: tuple[str, ...]  # a.b.c.d/len on eth0, from the result
    cache: Path


def pod_uid(lab: str, pod: str) -> str:
    """A stable K8S_POD_UID for the pod (a real one is random per pod object)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"podlab:{lab}/{pod}"))


def sandbox(lab: str, pod: str, container_id: str, pod_pid: int | None,
            ifname: str = "eth0", capability_args: Mapping[str, Any] | None = None
            ) -> plugins.Sandbox:
    """The call's runtime side, with the CNI_ARGS containerd passes for a Kubernetes pod."""
    args = (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", POD_NAMESPACE),
            ("K8S_POD_NAME", pod), ("K8S_POD_INFRA_CONTAINER_ID", container_id),
            ("K8S_POD_UID", pod_uid(lab, pod)))
    return plugins.Sandbox(container_id, netns_path(pod_pid) if pod_pid else "", ifname,
                           args, dict(capability_args or {}))


def loopback_chain() -> plugins.Chain:
    return plugins.Chain.from_conflist(cni_conf.LOOPBACK, (cni_conf.DISTRO_BIN_DIR,))


def attach(lab: str, node: str, chain: plugins.Chain, pod: str, container_id: str,
           pod_pid: int, node_pid: int | None, *,
           capability_args: Mapping[str, Any] | None = None) -> Attached:
    """ADD the pod: loopback, then the chain; record the result.

    A failing chain is DELeted before the error propagates (a runtime tears a sandbox
    down when its network setup fails), so what its first plugins did is undone.
    """
    plugins.add(loopback_chain(), sandbox(lab, pod, container_id, pod_pid, "lo"),
                host_pid=node_pid)
    box = sandbox(lab, pod, container_id, pod_pid, capability_args=capability_args)
    try:
        result = plugins.add(chain, box, host_pid=node_pid)
    except CniPluginError:
        with contextlib.suppress(PodlabError):
            plugins.delete(chain, box, None, host_pid=node_pid)
        raise
    path = plugins.save_result(cni_conf.results_dir(lab, node), chain, box, result,
                               {"pod": pod, "node": node})
    return _attached(pod, node, container_id, result, box.netns, path)


def _attached(pod: str, node: str, container_id: str, result: dict[str, Any], netns: str,
              path: Path) -> Attached:
    found = plugins.result_addresses(result, "eth0", netns or None)
    return Attached(pod, node, container_id, result, tuple(a.address for a in found), path)


def attachments(lab: str, node: str | None = None) -> list[Attached]:
    """What the state directory records for the lab (or one node), in file order."""
    root = cni_conf.state_dir(lab)
    nodes = [node] if node else sorted(p.name for p in root.iterdir() if p.is_dir()) \
        if root.is_dir() else []
    out = []
    for name in nodes:
        for path in plugins.cached_results(cni_conf.results_dir(lab, name)):
            try:
                cached = plugins.load_cached(path)
            except (OSError, ValueError, KeyError):
                continue  # a torn file: its DEL cannot be made anyway
            out.append(_attached(cached.extra.get("pod", ""), cached.extra.get("node", name),
                                 cached.sandbox.container_id, cached.result, "", path))
    return out


def pod_addresses(lab: str) -> dict[str, tuple[str, ...]]:
    """`{pod: (a.b.c.d/len, ...)}` as the plugins' last results say."""
    return {a.pod: a.addresses for a in attachments(lab) if a.pod}


def detach(cache: Path, node_pid: int | None, pod_pid: int | None) -> None:
    """DEL one recorded attachment (the chain, then loopback), then forget it.

    Without its node running there is no host side to run the plugins in: the record is
    dropped (the node's namespace, and all a plugin made there, is gone already).
    """
    cached = plugins.load_cached(cache, netns_path(pod_pid) if pod_pid else "")
    if node_pid:
        plugins.delete(cached.chain, cached.sandbox, cached.result, host_pid=node_pid)
        if pod_pid:
            lo = plugins.Sandbox(cached.sandbox.container_id, cached.sandbox.netns, "lo",
                                 cached.sandbox.args)
            plugins.delete(loopback_chain(), lo, None, host_pid=node_pid)
    cache.unlink(missing_ok=True)


def detach_node(lab: str, node: str, node_pid: int | None,
                pod_pids: Mapping[str, int]) -> list[Attached]:
    """DEL every pod recorded on `node` (`pod_pids`: infra container id -> pid, of those
    still running); return what was detached. The first failure is raised."""
    done = []
    for att in attachments(lab, node):
        detach(att.cache, node_pid, pod_pids.get(att.container_id))
        done.append(att)
    return done


def remove_state(lab: str, node_pids: Mapping[str, int], pod_pids: Mapping[str, int]
                 ) -> list[str]:
    """Destroy's part: DEL every recorded attachment whose node runs (`node_pids`: node
    name -> pid), then remove the lab's state directory (IPAM leases, results). Returns
    the DEL failures as messages: destroy goes on regardless, a second run finds nothing.
    """
    problems = []
    for att in attachments(lab):
        try:
            detach(att.cache, node_pids.get(att.node), pod_pids.get(att.container_id))
        except (PodlabError, OSError, ValueError) as exc:
            problems.append(f"{att.pod}: {exc}")
    shutil.rmtree(cni_conf.state_dir(lab), ignore_errors=True)
    return problems


def has_state(lab: str) -> bool:
    return cni_conf.state_dir(lab).exists()
