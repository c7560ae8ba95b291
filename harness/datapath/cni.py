"""Pods wired by CNI plugins (`cni: bridge`, `cni: ptp`, `cni: {conflist, bin-dir}`): the
datapaths, attach (ADD) and detach (DEL) of one pod as a runtime makes them, and the lab's
CNI state on the host (what destroy removes).

The datapaths change only the pod half of harness.datapath.base.Datapath: a k8s-node gets
no pod bridge and no gateway address from podlab (the plugin makes what it needs when the
first pod is added), a pod gets no veth, address or route from podlab; `pod_added` calls
the chain instead and returns the addresses its result reports. Masquerade stays
podlab's, as `cluster.masquerade` says (a chain that NATs by itself is what verify is
there to catch).

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
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.datapath import cni_conf, portmap
from harness.datapath.base import (
    ICMP6_ANSWERS,
    INFRA_CAPS,
    IPV6_FORWARDING,
    IPV6_ON,
    POD_CAPS,
    POD_SYSCTLS,
    Datapath,
    host_network_pod,
)
from harness.datapath.iptables import Ruleset
from harness.datapath.net import Pair, PodNet, Settings
from harness.errors import CniPluginError, DeployError, PodlabError
from harness.host import cni as plugins
from harness.host.netns import netns_path
from harness.model.addressing import IPV6
from harness.plan import NodePlan, Plan, PodPlan

POD_NAMESPACE = "default"  # the Kubernetes namespace podlab's pods live in (CNI_ARGS)
PORT_MAPPINGS = "portMappings"  # the capability a portmap plugin declares for hostPorts
DEL_WORKERS = 8  # DELs run side by side at destroy


@dataclass(frozen=True)
class Attached:
    """One pod's attachment as recorded: its chain's result and where it came from."""

    pod: str
    node: str
    container_id: str
    result: dict[str, Any]
    addresses: tuple[str, ...]  # a.b.c.d/len (and x::y/len) on eth0, from the result
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


def loopback_chain(bin_dirs: tuple[str, ...] = ()) -> plugins.Chain:
    """containerd's own `cni-loopback` network, from where the pod's chain comes from
    (then the distribution's plugins)."""
    dirs = tuple(dict.fromkeys((*bin_dirs, cni_conf.DISTRO_BIN_DIR)))
    return plugins.Chain.from_conflist(cni_conf.LOOPBACK, dirs)


def attach(lab: str, node: str, chain: plugins.Chain, pod: str, container_id: str,
           pod_pid: int, node_pid: int | None, *,
           capability_args: Mapping[str, Any] | None = None) -> Attached:
    """ADD the pod: loopback, then the chain; record the result.

    A failing chain is DELeted before the error propagates (a runtime tears a sandbox
    down when its network setup fails), so what its first plugins did is undone.
    """
    plugins.add(loopback_chain(chain.bin_dirs), sandbox(lab, pod, container_id, pod_pid, "lo"),
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
    """`{pod: (a.b.c.d/len, x::y/len)}`: every address (one per family) the plugins'
    last results give each pod's eth0."""
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
            plugins.delete(loopback_chain(cached.chain.bin_dirs), lo, None, host_pid=node_pid)
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
    def one(att: Attached) -> str | None:
        try:
            detach(att.cache, node_pids.get(att.node), pod_pids.get(att.container_id))
        except (PodlabError, OSError, ValueError) as exc:
            return f"{att.pod}: {exc}"
        return None

    # in parallel, as a runtime's pods stop: plugins lock what they share (host-local)
    with ThreadPoolExecutor(max_workers=DEL_WORKERS) as pool:
        problems = [p for p in pool.map(one, attachments(lab)) if p]
    shutil.rmtree(cni_conf.state_dir(lab), ignore_errors=True)
    return problems


def has_state(lab: str) -> bool:
    return bool(lab) and cni_conf.state_dir(lab).exists()


def labs_with_state() -> list[str]:
    """Every lab with a CNI state directory on this host."""
    root = cni_conf.state_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


# --------------------------------------------------------------------------- datapaths


@dataclass(frozen=True)
class CniPodNet(PodNet):
    """A pod wired by a CNI chain: what its ADD and DEL need, beside PodNet's settings."""

    lab: str = ""
    conflist: str = ""  # the node's chain, rendered, as JSON text (immutable)
    bin_dirs: tuple[str, ...] = ()
    # the pod's hostPorts as (hostPort, containerPort, protocol): the `portMappings`
    # capability argument, which a chain's portmap plugin gets when it declares it
    port_mappings: tuple[tuple[int, int, str], ...] = ()

    def capability_args(self) -> dict[str, Any]:
        """What a runtime passes for the pod (containerd: portMappings, lower-case
        protocols), given to the plugins that declare the capability."""
        if not self.port_mappings:
            return {}
        return {PORT_MAPPINGS: [{"hostPort": h, "containerPort": c, "protocol": p,
                                 "hostIP": ""} for h, c, p in self.port_mappings]}


class CniDatapath(Datapath):
    """The pod half of a CNI datapath; subclasses say which conflist each node gets."""

    cni = "cni"
    assigns_addresses = True

    def node_conflist(self, plan: Plan, node: NodePlan) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The conflist of one k8s-node and where its plugins are."""
        raise NotImplementedError

    def bridged(self, plan: Plan) -> bool:
        """Whether the chain puts a node's pods on one L2 bridge (else the node routes
        between them, one TTL step)."""
        return True

    # ------------------------------------------------------------------ description

    def describe(self, plan: Plan) -> Any:
        self._confs = {n.name: self._rendered(plan, n) for n in plan.k8s_nodes}
        return super().describe(plan)

    def _rendered(self, plan: Plan, node: NodePlan) -> tuple[str, tuple[str, ...]]:
        conf, dirs = self.node_conflist(plan, node)
        conf = cni_conf.with_data_dir(conf, str(cni_conf.ipam_dir(plan.lab, node.name)))
        return json.dumps(conf, sort_keys=True), dirs

    def pod_bridge(self, plan: Plan, node: NodePlan) -> tuple[tuple[str, ...], tuple[Pair, ...]]:
        return (), ()  # the plugin makes the node's side when it adds the first pod

    def pod_net(self, plan: Plan, pod: PodPlan) -> PodNet:
        if pod.host_network:  # a runtime calls no CNI for a pod in its node's namespace
            return host_network_pod(pod)
        if not hasattr(self, "_confs"):
            self._confs = {n.name: self._rendered(plan, n) for n in plan.k8s_nodes}
        text, dirs = self._confs[pod.node]
        mappings = tuple((h.host_port, h.container_port, h.protocol.lower())
                         for h in plan.host_ports if h.pod == pod.name)
        sysctls = POD_SYSCTLS
        if IPV6 in pod.families:  # as podlab's own pods: on, no DAD, no RA, no forwarding
            sysctls += (*IPV6_ON, (IPV6_FORWARDING, "0"), *ICMP6_ANSWERS)
        return CniPodNet(pod.name, pod.node, infra=Settings(sysctls, INFRA_CAPS),
                         containers=Settings((), POD_CAPS), veth=None, node_port=None,
                         lab=plan.lab, conflist=text, bin_dirs=dirs, port_mappings=mappings)

    def service_rules(self, plan: Plan, node: NodePlan) -> tuple[Ruleset, ...]:
        """kube-proxy's rules; hostPorts are the chain's own when a plugin of it declares
        `portMappings` (a portmap plugin, which then writes their DNAT itself at the pod's
        ADD), else podlab writes portmap's rules for them, as for its own wiring."""
        rules = super().service_rules(plan, node)
        if not self.maps_ports(plan):
            return rules
        return tuple(rs for rs in rules if rs.owner != portmap.OWNER)

    def maps_ports(self, plan: Plan) -> bool:
        """Whether the chain takes the pods' hostPorts (a plugin declares portMappings)."""
        node = next(iter(plan.k8s_nodes), None)
        if node is None:
            return False
        return any((p.get("capabilities") or {}).get(PORT_MAPPINGS)
                   for p in self.node_conflist(plan, node)[0].get("plugins") or ())

    # ------------------------------------------------------------------ apply

    def prepare(self, plan: Plan) -> None:
        for node in plan.k8s_nodes:
            conf, dirs = self.node_conflist(plan, node)
            chain_dirs = (*dirs, cni_conf.DISTRO_BIN_DIR)
            cni_conf.require_plugins(conf, chain_dirs)
            cni_conf.require_plugins(cni_conf.LOOPBACK, chain_dirs)
            break  # one node says it: every node's chain has the same plugins
        # a lab of this name runs no container (deploy checked): whatever state a crashed
        # predecessor left would hand out stale leases
        remove_state(plan.lab, {}, {})

    def observed(self, plan: Plan) -> Plan:
        found = {pod: addrs for pod, addrs in pod_addresses(plan.lab).items() if addrs}
        return self.readdressed(plan, found)

    def readdressed(self, plan: Plan, found: Mapping[str, str | Sequence[str]]) -> Plan:
        """The plan with every family's address the chain's results gave each pod."""
        return plan.with_pod_addresses(found, self.bridged(plan))

    def pod_added(self, node_pid: int, pod_pid: int, pod: PodNet, container_id: str = ""
                  ) -> tuple[str, ...]:
        """ADD the pod (loopback, then the node's chain) from the node's namespace; a pod
        added before (a node restart) is DELeted first, as a runtime restarting a
        sandbox does. Returns the addresses the chain's result gives eth0."""
        if pod.host_network:
            return ()
        if not isinstance(pod, CniPodNet):
            raise TypeError(f"{type(self).__name__} needs the pods it described")
        chain = plugins.Chain.from_conflist(json.loads(pod.conflist), pod.bin_dirs)
        self.pod_removed(node_pid, pod_pid, pod)
        att = attach(pod.lab, pod.node, chain, pod.name, container_id or pod.name, pod_pid,
                     node_pid, capability_args=pod.capability_args())
        if not att.addresses:
            raise DeployError(f"CNI chain {chain.name!r} gave pod {pod.name} no address on "
                              f"eth0 (its result: {json.dumps(att.result)[:300]})")
        return att.addresses

    def pod_removed(self, node_pid: int | None, pod_pid: int | None, pod: PodNet) -> None:
        """DEL what was recorded for the pod (nothing if it never was added)."""
        lab = pod.lab if isinstance(pod, CniPodNet) else ""
        for att in attachments(lab, pod.node) if lab else ():
            if att.pod == pod.name:
                detach(att.cache, node_pid, pod_pid)


class BridgeCni(CniDatapath):
    """`cni: bridge`: the reference bridge plugin (cbr0, gateway, no ipMasq), host-local."""

    cni = "bridge"

    def node_conflist(self, plan: Plan, node: NodePlan) -> tuple[dict[str, Any], tuple[str, ...]]:
        return (cni_conf.builtin_conflist("bridge", _cidrs(node), ""),
                (cni_conf.DISTRO_BIN_DIR,))


class PtpCni(CniDatapath):
    """`cni: ptp`: the reference ptp plugin, a /32 host route per pod (kindnet), host-local."""

    cni = "ptp"

    def node_conflist(self, plan: Plan, node: NodePlan) -> tuple[dict[str, Any], tuple[str, ...]]:
        return cni_conf.builtin_conflist("ptp", _cidrs(node), ""), (cni_conf.DISTRO_BIN_DIR,)

    def bridged(self, plan: Plan) -> bool:
        return False


class ConflistCni(CniDatapath):
    """`cni: {conflist: FILE, bin-dir: DIR}`: the user's chain, rendered per node."""

    cni = "conflist"

    def _user(self, plan: Plan) -> cni_conf.UserConflist:
        cached = getattr(self, "_loaded", None)
        if cached is not None and cached[0] == plan.topo_path:
            return cached[1]
        if not plan.cni_conflist:
            raise DeployError("cni: conflist without a conflist file in the plan")
        sample = next((_cidrs(n) for n in plan.k8s_nodes), [plan.pod_cidr])
        user = cni_conf.load_user(plan.cni_conflist, plan.cni_bin_dir,
                                  plan.topo_path or None, sample)
        self._loaded = (plan.topo_path, user)
        return user

    def node_conflist(self, plan: Plan, node: NodePlan) -> tuple[dict[str, Any], tuple[str, ...]]:
        user = self._user(plan)
        return user.render(_cidrs(node)), user.bin_dirs

    def bridged(self, plan: Plan) -> bool:
        """The first plugin of the chain decides: the reference `bridge` (or one that
        names a bridge) switches; anything else (ptp, kindnet, calico...) routes."""
        node = next(iter(plan.k8s_nodes), None)
        if node is None:
            return True
        first = (self.node_conflist(plan, node)[0].get("plugins") or [{}])[0]
        return first.get("type") == "bridge" or "bridge" in first


def _cidrs(node: NodePlan) -> list[str]:
    """The node's pod CIDRs, one per family in the cluster's order: host-local's range
    sets and the template's `.PodCIDRRanges`, as containerd has them for dual-stack."""
    return list(node.pod_cidrs)
