"""Deploy's share for the user's nodes: a `linux` node that brings its own image, binds,
exec or command starts as containerlab starts it (its command, entrypoint, env and
env-files, binds, user, sysctls, capabilities, network-mode, resources, startup-delay),
its `exec` lines run in order once its links are up (a failing line fails the deploy,
with its output), and the management network the file asks for is a Docker network with
no way out.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping
from pathlib import Path

from harness import labels as L
from harness.datapath import NodeNet
from harness.errors import DeployError
from harness.host import runtime
from harness.host.runtime import ContainerSpec, Started
from harness.plan import NodePlan, Plan

EXEC_OUTPUT_MAX = 2000  # characters of a failing exec's output in the error
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)i?b?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5,
          "e": 1000**6}


def waits_of(node: NodePlan) -> tuple[str, ...]:
    """The nodes that must have started before this one."""
    waits = node.run.waits if node.run else ()
    return (*waits, node.netns_of) if node.netns_of else waits


def start_after(delay: int, spec: ContainerSpec) -> Started:
    """containerlab's startup-delay: the worker sleeps before creating the container."""
    if delay:
        time.sleep(delay)
    return runtime.start(spec)


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped), as containerlab reads them."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DeployError(f"env-file {path}: {exc.strerror or exc}") from exc
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def memory_bytes(text: str | None) -> int | None:
    """`1G`, `512MB`, `1.5Gb`: bytes, as humanize.ParseBytes reads them (SI units)."""
    if not text:
        return None
    m = _SIZE.fullmatch(text)
    if not m:
        raise DeployError(f"memory {text!r} is not a size")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def container_spec(plan: Plan, node: NodePlan, net: NodeNet,
                   labels: Mapping[str, str]) -> ContainerSpec:
    run = node.run
    assert run is not None
    env: dict[str, str] = {}
    for path in run.env_files:
        env.update(read_env_file(path))
    env.update(run.env)  # env wins over env-files
    for key, value in node.labels.items():  # containerlab's CLAB_LABEL_<KEY>
        if not key.startswith(L.PREFIX):
            env[f"CLAB_LABEL_{re.sub(r'[^A-Za-z0-9]', '_', key).upper()}"] = value
    env["CLAB_INTFS"] = str(len(node.interfaces))
    mode = run.network_mode
    shared = mode.removeprefix("container:") if mode and mode.startswith("container:") else None
    mgmt = None
    if plan.mgmt is not None and mode is None:
        mgmt = (plan.mgmt.network, run.mgmt_ipv4, run.mgmt_ipv6)
    return ContainerSpec(
        name=node.container, image=node.image, labels=labels,
        network_mode=f"container:{plan.node(shared).container}" if shared else "none",
        hostname=None if shared else node.name,
        command=run.entrypoint, args=run.cmd, env=env,
        # a shared namespace's sysctls are its owner's (Docker refuses them here)
        sysctls={} if shared else net.container.sysctl_map(),
        cap_add=net.container.caps, binds=run.binds, user=run.user,
        mem_limit=str(memory_bytes(run.memory)) if run.memory else None,
        nano_cpus=int(run.cpu * 1e9) if run.cpu else None, mgmt=mgmt)


def run_exec(node: NodePlan) -> None:
    """The node's exec lines in order, as root (containerlab's docker exec); the first
    that fails stops the deploy with its exit code and output."""
    assert node.run is not None
    for line in node.run.exec:
        code, output = runtime.exec(node.container, shlex.split(line), user="0")
        if code != 0:
            text = output.decode(errors="replace").strip()
            if len(text) > EXEC_OUTPUT_MAX:
                text = "..." + text[-EXEC_OUTPUT_MAX:]
            raise DeployError(f"exec on node {node.name}: {line!r} exited {code}"
                              + (f": {text}" if text else " with no output"))


def create_mgmt(plan: Plan, deploy_id: str) -> None:
    mgmt = plan.mgmt
    assert mgmt is not None
    subnets = [(s, r, g) for s, r, g in ((mgmt.ipv4_subnet, mgmt.ipv4_range, mgmt.ipv4_gw),
                                         (mgmt.ipv6_subnet, mgmt.ipv6_range, mgmt.ipv6_gw))
               if s]
    runtime.create_internal_network(mgmt.network, {L.LAB: plan.lab, L.DEPLOY: deploy_id},
                                    bridge=mgmt.bridge, subnets=subnets, mtu=mgmt.mtu)


def remove_mgmt(plan: Plan) -> None:
    """After a failed deploy: the lab's management network, if this deploy made it."""
    try:
        runtime.remove_networks(runtime.networks_of(plan.lab))
    except Exception:  # the original error matters more; `podlab destroy` finishes the job
        pass
