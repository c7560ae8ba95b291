"""containerlab, the program, as the runtime of a lab's nodes and links (`--runtime
containerlab`): the topology it is given, and its `deploy` and `destroy`.

containerlab creates the node containers and the veths between them; podlab then does
the rest as with its own runtime (addresses, bridges, routes, pods, daemons, Services).
Every node gets exactly the container podlab would start (`ContainerSpec`: image, labels,
hostname, capabilities, sysctls), written in containerlab's keys, with what containerlab
would otherwise do differently said explicitly:

    network-mode: none        no eth0, no management address, no way out
    mgmt.skip-when-unused     no management network either (containerlab >= 0.76.0)
    privileged: false         containerlab runs `linux` nodes privileged by default
    image-pull-policy: never  images are local (podlab never pulls)
    mtu on every link         containerlab's veth default is 9500, podlab's the kernel's

A user's node (a `linux` node with its own image, binds, env, cmd...) goes with its own
settings, as podlab's runtime starts it: binds with absolute sources, env (env-files read),
entrypoint/cmd, user, sysctls, cap-add, memory/cpu, startup-delay, stages' wait-for,
`network-mode: container:<node>`, endpoint MACs (the extended link format), and the
management network podlab created internal (containerlab reuses a network that exists).
Its `exec` lines stay podlab's (harness.lab.deploy.clab_topology says why).

The topology goes to a state directory of the lab (`/var/lib/podlab/containerlab/<lab>`),
where containerlab also keeps its lab directory; destroy finds it by the lab's name, as
the CNI datapath's state is found. `prefix: podlab` makes containerlab name containers
`podlab-<lab>-<node>`, as podlab does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DeployError, EnvironmentProblem
from harness.host.runtime import ContainerSpec
from harness.plan import LinkPlan

BINARY_ENV = "PODLAB_CONTAINERLAB"  # the user's own containerlab; else `containerlab` on PATH
STATE_ROOT = "/var/lib/podlab/containerlab"
STATE_ENV = "PODLAB_CLAB_STATE"  # another root (tests)
KIND = "linux"
PREFIX = "podlab"  # container names podlab-<lab>-<node>, as podlab's own
KERNEL_VETH_MTU = 1500  # what a veth gets when podlab's runtime gives no MTU
MIN_VERSION = (0, 76, 0)  # the first with mgmt.skip-when-unused
DEPLOY_TIMEOUT_S = 900


class ContainerlabMissing(EnvironmentProblem):
    """No containerlab to run (exit 3)."""


# --------------------------------------------------------------------------- the topology


def topology(lab: str, nodes: Sequence[ContainerSpec], links: Sequence[LinkPlan],
             short: dict[str, str], runs: Mapping[str, NodeRun] | None = None,
             mgmt: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """containerlab's topology for these node containers and links (pure). `short` maps
    each container's name to its node name (containerlab's node key); `runs` holds what a
    user's node has beyond its container (startup-delay, nodes it waits for), by node
    name; `mgmt` is the lab's management network (podlab's, created internal before)."""
    runs = runs or {}
    return {
        "name": lab,
        "prefix": PREFIX,
        # an existing network of that name is reused as it is (runtime/docker CreateNet)
        "mgmt": {**(mgmt or {}), "skip-when-unused": True, "external-access": False},
        "topology": {
            "nodes": {short[spec.name]: node(spec, short, runs.get(short[spec.name]))
                      for spec in nodes},
            "links": [link(v) for v in links],
        },
    }


@dataclass(frozen=True)
class NodeRun:
    """What containerlab does for a user's node outside its container."""

    startup_delay: int = 0
    waits: tuple[str, ...] = ()  # node names it starts after (besides container: X)


def node(spec: ContainerSpec, short: Mapping[str, str] | None = None,
         run: NodeRun | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": KIND,
        "image": tagged(spec.image),
        "image-pull-policy": "never",
        **_network(spec, short or {}),
        "privileged": False,
        "labels": dict(spec.labels),
        "cap-add": list(spec.cap_add),
    }
    if spec.sysctls:
        out["sysctls"] = dict(spec.sysctls)
    if spec.hostname:
        out["hostname"] = spec.hostname
    out.update(_user_settings(spec))
    if run is not None and run.startup_delay:
        out["startup-delay"] = run.startup_delay
    if run is not None and run.waits:
        out["stages"] = {"create": {"wait-for": [{"node": w, "stage": "create"}
                                                 for w in run.waits]}}
    return out


def _network(spec: ContainerSpec, short: Mapping[str, str]) -> dict[str, Any]:
    """none; another node's namespace; or the lab's management network (containerlab's
    default: no network-mode), with its addresses. Another node goes by its container's
    name, not its node name: containerlab 0.79 rebuilds the container's name by cutting
    the node's own long name at the first occurrence of its short name (node `b` of lab
    `x` looks for `podla` + the other's name), and takes a name it cannot find as an
    external container it waits for; the order comes from an explicit wait-for
    (harness.lab.deploy.clab_topology)."""
    if spec.mgmt is not None:
        _, v4, v6 = spec.mgmt
        return {**({"mgmt-ipv4": v4} if v4 else {}), **({"mgmt-ipv6": v6} if v6 else {})}
    mode = spec.network_mode
    if mode == "none":
        return {"network-mode": "none"}
    owner = mode.removeprefix("container:")
    if mode.startswith("container:") and owner in short:
        return {"network-mode": mode}
    raise ValueError(f"{spec.name}: a node container has network_mode none or another "
                     f"node's container, not {mode}")


def _user_settings(spec: ContainerSpec) -> dict[str, Any]:
    """A user's node: its command, env, binds, user and resources as podlab starts it.
    containerlab splits `entrypoint`/`cmd` as a shell would (shlex), so they are joined
    back quoted; memory goes in bytes (humanize.ParseBytes reads a plain number)."""
    out: dict[str, Any] = {}
    if spec.command:
        out["entrypoint"] = shlex.join(spec.command)
    if spec.args:
        out["cmd"] = shlex.join(spec.args)
    if spec.env:
        out["env"] = dict(spec.env)
    if spec.binds:
        relative = [b for b in spec.binds if not b.startswith("/")]
        if relative:  # containerlab would resolve them against its own state directory
            raise ValueError(f"{spec.name}: bind sources must be absolute: {relative}")
        out["binds"] = list(spec.binds)
    if spec.user:
        out["user"] = spec.user
    if spec.mem_limit:
        out["memory"] = spec.mem_limit
    if spec.nano_cpus:
        out["cpu"] = spec.nano_cpus / 1e9
    return out


def link(v: LinkPlan) -> dict[str, Any]:
    mtu = v.mtu or KERNEL_VETH_MTU
    if not any(v.macs):
        return {"endpoints": [f"{v.a[0]}:{v.a[1]}", f"{v.b[0]}:{v.b[1]}"], "mtu": mtu}
    # an endpoint's MAC only exists in containerlab's extended link format
    ends = [{"node": n, "interface": i, **({"mac": m} if m else {})}
            for (n, i), m in zip((v.a, v.b), v.macs, strict=True)]
    return {"type": "veth", "mtu": mtu, "endpoints": ends}


def tagged(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return image if "@" in image or ":" in last else f"{image}:latest"


# --------------------------------------------------------------------------- state


def state_root() -> Path:
    return Path(os.environ.get(STATE_ENV) or STATE_ROOT)


def topo_file(lab: str) -> Path:
    return state_root() / lab / f"{lab}.clab.yml"


def has_state(lab: str) -> bool:
    return topo_file(lab).is_file()


def labs_with_state() -> list[str]:
    root = state_root()
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}.clab.yml").is_file()) \
        if root.is_dir() else []


def write(data: dict[str, Any]) -> Path:
    import yaml

    path = topo_file(data["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the program


def binary() -> str:
    """The containerlab to run: $PODLAB_CONTAINERLAB, else `containerlab` on PATH."""
    found = os.environ.get(BINARY_ENV) or shutil.which("containerlab")
    if not found:
        raise ContainerlabMissing(
            "--runtime containerlab needs containerlab: `make setup` builds it where Go is "
            f"installed, or give yours with {BINARY_ENV}=/path/to/containerlab")
    return found


def _env() -> dict[str, str]:
    # no look-up of a newer release: lab hosts may have no way out
    return {**os.environ, "CLAB_VERSION_CHECK": "disable"}


def version(exe: str | None = None) -> tuple[int, ...]:
    """containerlab's version, e.g. (0, 79, 0)."""
    exe = exe or binary()
    try:
        done = subprocess.run([exe, "version"], capture_output=True, text=True, env=_env(),
                              timeout=60, check=False)
    except OSError as exc:
        raise ContainerlabMissing(f"{exe} does not run: {exc}") from exc
    return parse_version(done.stdout)


def parse_version(text: str) -> tuple[int, ...]:
    found = re.search(r"^\s*version:\s*v?(\d+)\.(\d+)\.(\d+)", text, re.M)
    if not found:
        raise ContainerlabMissing(f"containerlab version printed no version: {text[:200]!r}")
    return tuple(int(x) for x in found.groups())


def require(exe: str | None = None) -> str:
    """The binary, checked to know `mgmt.skip-when-unused` (an older one would create a
    management network that NATs out)."""
    exe = exe or binary()
    have = version(exe)
    if have < MIN_VERSION:
        raise ContainerlabMissing(
            f"{exe} is containerlab {'.'.join(map(str, have))}; --runtime containerlab needs "
            f"{'.'.join(map(str, MIN_VERSION))} or later (mgmt.skip-when-unused: without it "
            "containerlab creates a management network with a way out)")
    return exe


def deploy(path: Path, exe: str | None = None) -> None:
    """`containerlab deploy -t PATH` with Docker; DeployError with its last words."""
    exe = require(exe)
    _run([exe, "deploy", "-t", str(path), "--runtime", "docker"], path.parent, "deploy")


def destroy(lab: str, exe: str | None = None) -> None:
    """`containerlab destroy -t FILE --cleanup` of a lab deployed this way, then its
    state directory. Without containerlab (gone since), the caller removes the
    containers itself; the directory goes regardless."""
    path = topo_file(lab)
    try:
        if path.is_file():
            _run([exe or binary(), "destroy", "-t", str(path), "--cleanup"], path.parent,
                 "destroy")
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def _run(argv: list[str], cwd: Path, verb: str) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=_env(),
                              timeout=DEPLOY_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"containerlab {verb} did not end within {DEPLOY_TIMEOUT_S} s") \
            from exc
    if done.returncode:
        raise DeployError(f"containerlab {verb} -t {argv[3]} exited {done.returncode}: "
                          f"{last_words(done.stdout + done.stderr)}")


def last_words(text: str, lines: int = 6) -> str:
    """The last lines of containerlab's output, without its colours and box drawing."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    kept = [ln.strip(" \u2502\u256d\u256e\u2570\u256f\u2500") for ln in plain.splitlines()]
    return " ".join([ln for ln in kept if ln][-lines:]) or "(no output)"
