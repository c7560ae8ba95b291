"""How the user's own nodes run: a `linux` node that brings its own image, binds, exec or
command is started as containerlab starts it, and keeps its addresses and routes to
itself. Pure: paths are resolved (relative to the topology file), not read.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from harness.model.containers import bind_source, mgmt_subnets
from harness.model.schema import Mgmt, NodeSpec
from harness.model.topology import Topology
from harness.model.yamlsrc import resolve_path

Pair = tuple[str, str]
# containerlab turns IPv6 on in every linux node (nodes/linux/linux.go Init); a node that
# routes with its own daemons needs forwarding, which a privileged containerlab node sets
# itself and podlab's unprivileged one cannot: on unless the file says otherwise
USER_SYSCTLS: tuple[Pair, ...] = (("net.ipv6.conf.all.disable_ipv6", "0"),
                                  ("net.ipv4.ip_forward", "1"),
                                  ("net.ipv6.conf.all.forwarding", "1"))
USER_CAPS: tuple[str, ...] = ("NET_ADMIN", "NET_RAW", "SYS_ADMIN")
EARLY_STAGES = ("create", "create-links", "configure")  # stage execs before `exec`


@dataclass(frozen=True)
class UserRun:
    """A user's node as containerlab runs it (core/config.go createNodeCfg)."""

    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[Pair, ...]
    env_files: tuple[str, ...]  # absolute paths, read at deploy (env wins over them)
    binds: tuple[str, ...]  # absolute-source SRC:DST[:MODE]
    user: str | None
    sysctls: tuple[Pair, ...]
    cap_add: tuple[str, ...]
    network_mode: str | None  # None (mgmt network when the file has one), none, container:X
    startup_delay: int
    exec: tuple[str, ...]  # in order, after the node's links are up
    waits: tuple[str, ...]  # nodes this one waits for (stages wait-for, container:)
    memory: str | None
    cpu: float | None
    mgmt_ipv4: str | None
    mgmt_ipv6: str | None


@dataclass(frozen=True)
class MgmtPlan:
    """The management network a file asks for: Docker bridge, internal (no way out)."""

    network: str
    bridge: str | None
    ipv4_subnet: str | None
    ipv6_subnet: str | None
    ipv4_range: str | None
    ipv6_range: str | None
    ipv4_gw: str | None
    ipv6_gw: str | None
    mtu: int | None


def user_run(topo: Topology, name: str) -> UserRun:
    node: NodeSpec = topo.spec.topology.nodes[name]
    sysctls = dict(USER_SYSCTLS)
    sysctls.update(node.sysctls)
    sysctls["net.ipv6.conf.all.disable_ipv6"] = "0"  # containerlab forces it, over the user
    early = [e.command for s in EARLY_STAGES if s in node.stages
             for phase in ("on-enter", "on-exit") for e in node.stages[s].exec
             if e.phase == phase]
    late = [e.command for s, body in node.stages.items() if s not in EARLY_STAGES
            for phase in ("on-enter", "on-exit") for e in body.exec if e.phase == phase]
    waits = [w.node for body in node.stages.values() for w in body.wait_for]
    mode = node.network_mode
    if mode and mode.startswith("container:"):
        waits.append(mode.removeprefix("container:"))
    binds = []
    for bind in node.binds:
        src, _, rest = bind.partition(":")
        path = bind_source(bind, name, topo.path)
        binds.append(f"{path or src}:{rest}")
    return UserRun(
        entrypoint=tuple(shlex.split(node.entrypoint)) if node.entrypoint else None,
        cmd=tuple(shlex.split(node.cmd)) if node.cmd else None,
        env=tuple(node.env.items()),
        env_files=tuple(str(resolve_path(f, topo.path)) for f in node.env_files),
        binds=tuple(binds), user=node.user, sysctls=tuple(sysctls.items()),
        cap_add=tuple(dict.fromkeys((*USER_CAPS, *node.cap_add))),
        network_mode=mode, startup_delay=node.startup_delay or 0,
        exec=(*early, *node.exec, *late), waits=tuple(dict.fromkeys(waits)),
        memory=node.memory, cpu=node.cpu, mgmt_ipv4=node.mgmt_ipv4, mgmt_ipv6=node.mgmt_ipv6)


def mgmt_plan(topo: Topology) -> MgmtPlan | None:
    """The management network, only when the file asks for one (`mgmt:`, or a node's
    mgmt-ipv4/6); named after the lab unless the file names it."""
    spec = topo.spec
    asked = spec.mgmt is not None or any(n.mgmt_ipv4 or n.mgmt_ipv6
                                         for n in spec.topology.nodes.values())
    if not asked:
        return None
    m = spec.mgmt or Mgmt()
    v4, v6 = mgmt_subnets(spec)
    return MgmtPlan(network=m.network or f"podlab-{spec.name}-mgmt", bridge=m.bridge,
                    ipv4_subnet=v4, ipv6_subnet=v6,
                    ipv4_range=m.ipv4_range, ipv6_range=m.ipv6_range, ipv4_gw=m.ipv4_gw,
                    ipv6_gw=m.ipv6_gw, mtu=m.mtu)

