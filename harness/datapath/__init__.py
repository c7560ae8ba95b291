"""Datapaths: the one seam where labs differ — how a plan becomes each namespace's network.

A datapath is chosen by the file (`cluster.routing`, `cluster.cni`; harness.datapaths lists
every value and the class that implements it) and provides two halves:

    describe(plan) -> LabNet       pure: per node (container sysctls and capabilities,
                                   bridges and ports, addresses, links up, routes, NAT
                                   rules, daemons, routes to wait for) and per pod (infra
                                   and container settings, the veth, its bridge port,
                                   addresses, routes). harness.datapath.net has the types.
    prepare(plan)                  before any container starts: what the host must have
    apply_node(pid, node[, pods])  configure one node's namespace once its links exist
    pod_added(node_pid, pod_pid, pod, infra_id)  the pod's CNI ADD (its veth exists if
                                   pod.veth); returns the addresses a plugin gave it
    pod_removed(node_pid, pod_pid, pod) the pod's CNI DEL
    after_deploy(net, pids)        once everything is applied: wait until ready (default:
                                   each node's ready_routes are in its kernel)
    observed(plan) -> Plan         the plan verify expects of the running lab (a CNI's
                                   assigned addresses in it)

Who reads it: deploy (harness.lab.deploy) creates containers with the settings, veths from
the plan's links and each `pod.veth`, then calls apply_node, pod_added and after_deploy;
fault recovery (harness.lab.faults) calls apply_node and pod_added again after a link or
node comes back; `podlab export` (harness.render.export) writes the same description as
containerlab `exec:` commands, sysctls and capabilities.

The first datapath, harness.datapath.base.Datapath, is today's wiring (`routing: static`,
`cni: podlab`). A new one subclasses it and overrides its part:

- routing (e.g. bgp): `routes` (none for pod CIDRs), `ready_routes` (the pod CIDRs),
  a `Daemon` per node in `node_net`, and `apply_node` that calls super() then starts them;
- CNI (bridge, ptp, a conflist; harness.datapath.cni): `pod_bridge` (none: the plugin
  makes it), `pod_net` (no veth, no address), `pod_added`/`pod_removed` calling the
  plugins, `assigns_addresses`, `prepare` and `observed`.

Then it is named in harness.datapaths, and validation accepts the value. A routing and a
CNI datapath are combined by `select` through inheritance (routing first).
"""

from __future__ import annotations

import importlib
from functools import cache

from harness import datapaths
from harness.datapath.base import Datapath
from harness.datapath.net import Daemon, LabNet, Masquerade, NodeNet, PodNet, Settings
from harness.errors import InputError
from harness.plan import Plan

__all__ = ["Daemon", "Datapath", "LabNet", "Masquerade", "NodeNet", "PodNet", "Settings",
           "describe", "select"]


def _load(choice: datapaths.Choice) -> type[Datapath]:
    if choice.impl is None:  # validation refuses these; a hand-made Plan may not
        raise InputError(f"{choice.key}: {choice.value} is not implemented yet")
    module, _, name = choice.impl.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Datapath)):
        raise TypeError(f"{choice.impl} is not a Datapath")
    return cls


@cache
def _combined(routing: str, cni: str) -> type[Datapath]:
    for key, value, known in (("routing", routing, datapaths.ROUTING),
                              ("cni", cni, datapaths.CNI)):
        if value not in known:
            raise InputError(f"{key}: {value!r} is not a datapath podlab knows "
                             f"(one of {', '.join(known)})")
    classes = [_load(datapaths.ROUTING[routing]), _load(datapaths.CNI[cni])]
    own = list(dict.fromkeys(c for c in classes if c is not Datapath))
    if not own:
        return Datapath
    if len(own) == 1:
        return own[0]
    return type(f"{own[0].__name__}With{own[1].__name__}", tuple(own),
                {"routing": routing, "cni": cni})


def select(plan: Plan) -> Datapath:
    """The datapath of the plan's `routing` and `cni`."""
    return _combined(plan.routing, plan.cni)()


def describe(plan: Plan) -> LabNet:
    """Every namespace's network, as the plan's datapath describes it."""
    return select(plan).describe(plan)
