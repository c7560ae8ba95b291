"""Containers on the Docker daemon: the only module that imports `docker`.

podlab keeps no state file: every container it starts carries labels
(`io.podlab.lab=<name>`, `io.podlab.role=...`), and every query here finds containers by
those labels with one list call. The low-level API is used on purpose: the high-level
`containers.create/get` inspect each object again, and `containers.run` pulls a missing
image, which podlab must never do (images are built locally, no registry is reachable).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness.errors import (
    DeployError,
    DockerUnavailable,
    ImageError,
    LabNotFoundError,
    NotRootError,
)
from harness.labels import LAB, PREFIX, ROLE

LAB_LABEL, ROLE_LABEL = LAB, ROLE
NET_CAPS: tuple[str, ...] = ("NET_ADMIN", "NET_RAW")
# Parallel Docker API calls: the daemon serialises parts of create/start anyway, and the
# SDK's connection pool holds 10 connections; 8 keeps every worker on its own connection.
WORKERS = 8

_client: Any = None
_client_lock = threading.Lock()


@dataclass(frozen=True)
class ContainerSpec:
    """One container to create. `command`/`args` have Kubernetes semantics."""

    name: str
    image: str
    labels: Mapping[str, str]
    network_mode: str = "none"  # "none" or "container:<id>"; never a Docker network
    hostname: str | None = None
    command: Sequence[str] | None = None  # replaces the image's ENTRYPOINT
    args: Sequence[str] | None = None  # replaces the image's CMD
    env: Mapping[str, str] = field(default_factory=dict)
    sysctls: Mapping[str, str] = field(default_factory=dict)
    cap_add: Sequence[str] = NET_CAPS
    # a user's node, as containerlab starts it
    binds: Sequence[str] = ()  # SRC:DST[:MODE], SRC absolute
    user: str | None = None
    mem_limit: str | None = None
    nano_cpus: int | None = None
    # the lab's management network (internal: no way out) and the node's static addresses
    mgmt: tuple[str, str | None, str | None] | None = None


@dataclass(frozen=True)
class Started:
    id: str
    name: str
    pid: int


@dataclass(frozen=True)
class ContainerInfo:
    """A row of the daemon's container list (no inspect needed)."""

    id: str
    name: str
    image: str
    state: str  # running, exited, created, ...
    labels: dict[str, str]

    @property
    def lab(self) -> str:
        return self.labels.get(LAB_LABEL, "")

    @property
    def role(self) -> str:
        return self.labels.get(ROLE_LABEL, "")


# --------------------------------------------------------------------------- environment


def docker_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def client() -> Any:
    """A pinged `docker.DockerClient`, created once per process (it is thread-safe)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = _connect()
        return _client


def _connect() -> Any:
    import docker  # lazily: `validate`/`plan` and the unit tests never need it

    url = docker_url()
    hint = "run `make setup` or start dockerd"
    try:
        cli = docker.DockerClient(base_url=url, timeout=120, max_pool_size=WORKERS + 2)
        cli.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, PermissionError
        raise DockerUnavailable(f"no Docker daemon answers at {url}: {_reason(exc)}; {hint}") \
            from exc
    return cli


def _reason(exc: BaseException) -> str:
    # requests nests the useful errno text several causes deep
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError("podlab enters network namespaces and needs root: run it with sudo")


def _api() -> Any:
    return client().api


def _explain(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip()


# --------------------------------------------------------------------------- images


def missing_images(images: Iterable[str]) -> list[str]:
    """Which of `images` are not in the local image store (one list call, no pull)."""
    present: set[str] = set()
    for image in _api().images():
        for tag in image.get("RepoTags") or ():
            present.add(tag)
        present.add(image["Id"])
    return sorted({i for i in images if _with_tag(i) not in present and i not in present})


def _with_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in image else f"{image}:latest"


PULL_TIMEOUT_S = 300


def pull(image: str) -> str | None:
    """Pull `image` where a registry answers; None when pulled, else why not (one line)."""
    import docker.errors

    repo, tag = _split_tag(image)
    try:
        _api().pull(repo, tag=tag)
    except docker.errors.APIError as exc:
        why = _explain(exc).splitlines()[0] if _explain(exc) else type(exc).__name__
        _pull_failures[image] = why
        return why
    except Exception as exc:  # requests' timeouts and connection errors
        _pull_failures[image] = _reason(exc)
        return _pull_failures[image]
    _pull_failures.pop(image, None)
    return None


_pull_failures: dict[str, str] = {}


def _split_tag(image: str) -> tuple[str, str]:
    if "@" in image:
        return image, ""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repo, tag


def require_images(images: Iterable[str]) -> None:
    """ImageError naming every image that is not here, with how to build or map it."""
    missing = missing_images(images)
    if not missing:
        return
    parts = []
    for image in missing:
        if image.startswith("podlab/"):
            parts.append(f"{image} (podlab's own: `podlab images build`)")
        else:
            why = _pull_failures.get(image)
            parts.append(f"{image} (no registry gave it{': ' + why if why else ''}; "
                         f"`docker load` or build it, or map it to a local image with "
                         f"`--image {image}=podlab/node`, `=podlab/frr` for FRR)")
    raise ImageError(f"image(s) not found locally: {'; '.join(missing and parts)}")


# --------------------------------------------------------------------------- networks


def create_internal_network(name: str, labels: Mapping[str, str], *, bridge: str | None,
                            subnets: Sequence[tuple[str, str | None, str | None]],
                            mtu: int | None = None) -> str:
    """A Docker bridge network with no way out (`internal`: no NAT, no route off the
    machine), for a lab's management network. `subnets`: (subnet, range, gateway) per
    family. Returns its id; an existing network of that name is an error (it is not the
    lab's)."""
    import docker.errors
    from docker.types import IPAMConfig, IPAMPool

    options: dict[str, str] = {}
    if bridge:
        options["com.docker.network.bridge.name"] = bridge
    if mtu:
        options["com.docker.network.driver.mtu"] = str(mtu)
    pools = [IPAMPool(subnet=s, iprange=r, gateway=g) for s, r, g in subnets]
    try:
        found = _api().networks(names=[name])
        if any(n.get("Name") == name for n in found):
            raise DeployError(f"a Docker network {name!r} exists already; podlab creates the "
                              "management network itself (name another one under mgmt.network)")
        made = _api().create_network(
            name, driver="bridge", internal=True, labels=dict(labels), options=options,
            ipam=IPAMConfig(pool_configs=pools) if pools else None,
            enable_ipv6=any(":" in s for s, _, _ in subnets), check_duplicate=True)
    except docker.errors.APIError as exc:
        raise DeployError(f"create management network {name}: {_explain(exc)}") from exc
    return str(made["Id"])


def networks_of(lab: str) -> list[str]:
    """Ids of the Docker networks podlab made for `lab` (its management network)."""
    return [n["Id"] for n in _api().networks(filters={"label": [f"{LAB_LABEL}={lab}"]})]


def remove_networks(ids: Iterable[str]) -> int:
    import docker.errors

    removed = 0
    for nid in ids:
        try:
            _api().remove_network(nid)
            removed += 1
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            raise DeployError(f"remove network {nid[:12]}: {_explain(exc)}") from exc
    return removed


# --------------------------------------------------------------------------- containers


def start(spec: ContainerSpec) -> Started:
    """Create and start one container; its Pid comes from one inspect after start.

    Never privileged, never published ports, never a Docker network. A half-created
    container is removed before the error propagates.
    """
    import docker.errors

    api = _api()
    extra: dict[str, Any] = {}
    if spec.binds:
        extra["binds"] = list(spec.binds)
    if spec.mem_limit:
        extra["mem_limit"] = spec.mem_limit
    if spec.nano_cpus:
        extra["nano_cpus"] = spec.nano_cpus
    host_config = api.create_host_config(
        network_mode=spec.mgmt[0] if spec.mgmt else spec.network_mode,
        cap_add=list(spec.cap_add),
        sysctls=dict(spec.sysctls) or None,
        privileged=False,
        **extra,
    )
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "labels": dict(spec.labels),
        "host_config": host_config,
        "environment": dict(spec.env) or None,
        "detach": True,
        "use_config_proxy": False,  # no proxy env from ~/.docker: lab traffic stays inside
    }
    # A container sharing another's netns cannot set its own hostname (Docker rejects it).
    if spec.hostname and not spec.network_mode.startswith("container:"):
        kwargs["hostname"] = spec.hostname
    if spec.command is not None:
        # Docker drops the image's CMD when ENTRYPOINT is given, as Kubernetes does.
        kwargs["entrypoint"] = list(spec.command)
    if spec.args is not None:
        kwargs["command"] = list(spec.args)
    if spec.user:
        kwargs["user"] = spec.user
    if spec.mgmt:
        net, v4, v6 = spec.mgmt
        kwargs["networking_config"] = api.create_networking_config(
            {net: api.create_endpoint_config(ipv4_address=v4, ipv6_address=v6)})
    try:
        cid = api.create_container(**kwargs)["Id"]
    except docker.errors.ImageNotFound as exc:
        raise ImageError(f"image {spec.image} not found locally (podlab never pulls)") from exc
    except docker.errors.APIError as exc:
        raise DeployError(f"create container {spec.name}: {_explain(exc)}") from exc
    try:
        api.start(cid)
        state = api.inspect_container(cid)["State"]
        if not state.get("Running") or not state.get("Pid"):
            raise DeployError(f"container {spec.name} exited at once "
                              f"(exit code {state.get('ExitCode')}): {state.get('Error') or ''}")
    except BaseException as exc:
        _remove_quietly(cid)
        if isinstance(exc, docker.errors.APIError):
            raise DeployError(f"start container {spec.name}: {_explain(exc)}") from exc
        raise
    _remember(cid, int(state["Pid"]))
    return Started(cid, spec.name, int(state["Pid"]))


def containers_of(lab: str | None = None, *, limit: int = -1, **labels: str
                  ) -> list[ContainerInfo]:
    """Every container of `lab` (every podlab container when None), running or not; at
    most `limit` of them when it is positive (is anything of the lab there?).

    Extra keyword filters match labels: `containers_of("x", role="node")` reads
    `io.podlab.role=node`; underscores in keys become dashes.
    """
    wanted = [f"{LAB_LABEL}={lab}" if lab is not None else LAB_LABEL]
    wanted += [f"{PREFIX}.{k.replace('_', '-')}={v}" for k, v in labels.items()]
    rows = _api().containers(all=True, filters={"label": wanted}, limit=limit)
    return [_info(row) for row in rows]


def _info(row: dict[str, Any]) -> ContainerInfo:
    names = row.get("Names") or [row["Id"][:12]]
    return ContainerInfo(id=row["Id"], name=names[0].lstrip("/"), image=row.get("Image", ""),
                         state=row.get("State", "unknown"), labels=row.get("Labels") or {})


def pid_of(container: str | ContainerInfo) -> int:
    """Host PID of the container's main process (0 when it is not running, or gone: a
    lab listed a moment ago may be destroyed meanwhile, e.g. by `inspect --all`'s side)."""
    import docker.errors

    ref = container.id if isinstance(container, ContainerInfo) else container
    try:
        found = _api().inspect_container(ref)
    except docker.errors.NotFound:
        return 0
    pid = int(found["State"].get("Pid") or 0)
    _remember(found["Id"], pid)
    return pid


def pids_of(containers: Sequence[ContainerInfo]) -> dict[str, int]:
    """`{name: pid}` of the running ones: the pid this process saw last for a container
    when that process still runs (same pid, same start time), else the one its runtime
    shim recorded (`shim_pid`), else inspected (in parallel). A lab of 200 pods has 600
    containers: inspecting them all costs a second of the daemon's time per command."""
    running = [c for c in containers if c.state == "running"]
    known = {c.id: _still_running(c.id) or shim_pid(c.id) for c in running}
    ask = [c for c in running if not known[c.id]]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        known |= dict(zip((c.id for c in ask), pool.map(pid_of, ask), strict=True))
    return {c.name: known[c.id] for c in running if known[c.id]}


# where containerd's runc shim writes each task's init.pid: Docker's own containerd
# (Docker 20.10 as Debian ships it), then a system containerd (later Docker releases)
SHIM_TASK_DIRS = ("/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby",
                  "/run/containerd/io.containerd.runtime.v2.task/moby")


def shim_pid(cid: str) -> int:
    """The main process of container `cid` as its shim recorded it, read from a file
    instead of asked of the daemon; 0 when there is no such file or the process it names
    is not in the container's cgroup (a stale file, a recycled pid): then Docker is asked."""
    for folder in SHIM_TASK_DIRS:
        try:
            with open(f"{folder}/{cid}/init.pid") as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                return pid if pid and cid in f.read() else 0
        except OSError:
            return 0
    return 0


# container id -> (pid, its start time in clock ticks since boot), as this process saw it
_seen: dict[str, tuple[int, int]] = {}


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # after "pid (comm) ", field 22 of proc(5) is the 20th: comm may hold spaces
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def _remember(cid: str, pid: int) -> None:
    start = _start_time(pid) if pid else None
    if start is None:
        _seen.pop(cid, None)
    else:
        _seen[cid] = (pid, start)


def _still_running(cid: str) -> int:
    """The pid remembered for container `cid` if that very process still runs, else 0
    (a restarted container has a new one; a recycled pid has another start time)."""
    pid, start = _seen.get(cid, (0, 0))
    return pid if pid and _start_time(pid) == start else 0


def remove_many(containers: Iterable[ContainerInfo | str]) -> list[str]:
    """Force-remove containers in parallel; return the names (or ids) actually removed.

    A container already gone is not an error, so a second destroy is a no-op.
    """
    targets = list(containers)
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        done = list(pool.map(_remove_one, targets))
    return [name for name in done if name]


def _remove_one(container: ContainerInfo | str) -> str | None:
    import docker.errors

    ref = container.id if isinstance(container, ContainerInfo) else container
    name = container.name if isinstance(container, ContainerInfo) else container
    try:
        # v=True drops anonymous volumes; our images declare none, but no leftovers either.
        _api().remove_container(ref, force=True, v=True)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # removal already in progress elsewhere
            return None
        raise DeployError(f"remove container {name}: {_explain(exc)}") from exc
    return name


def _remove_quietly(ref: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the caller is already failing
        _api().remove_container(ref, force=True, v=True)


def exec(  # shadows a builtin on purpose: callers write runtime.exec(...)
    container: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    user: str = "",
) -> tuple[int, bytes]:
    """Run `argv` in a running container; return (exit code, stdout+stderr interleaved)."""
    import docker.errors

    api = _api()
    try:
        exec_id = api.exec_create(container, list(argv), stdout=True, stderr=True,
                                  environment=dict(env) if env else None, workdir=workdir,
                                  user=user)["Id"]
        output = api.exec_start(exec_id, stream=False, demux=False) or b""
        code = api.exec_inspect(exec_id).get("ExitCode")
    except docker.errors.NotFound as exc:
        raise LabNotFoundError(f"exec in {container}: no such container") from exc
    except docker.errors.APIError as exc:
        # 409: the container exists but is not running
        raise LabNotFoundError(f"exec in {container}: {_explain(exc)}") from exc
    return (int(code) if code is not None else -1), output


def inspect(container: str) -> dict[str, Any]:
    """The daemon's full inspect document of one container."""
    import docker.errors

    try:
        return dict(_api().inspect_container(container))
    except docker.errors.NotFound as exc:
        raise LabNotFoundError(f"no container {container}") from exc


def stop(container: str, timeout: int = 5) -> None:
    """Stop a container (SIGTERM, SIGKILL after `timeout` s); its netns goes with it."""
    import docker.errors

    try:
        _api().stop(container, timeout=timeout)
    except docker.errors.NotFound as exc:
        raise LabNotFoundError(f"no container {container}") from exc
    except docker.errors.APIError as exc:
        raise DeployError(f"stop container {container}: {_explain(exc)}") from exc


def restart_stopped(container: str) -> int:
    """Start an existing (stopped) container again; return its new host PID."""
    import docker.errors

    api = _api()
    try:
        api.start(container)
        found = api.inspect_container(container)
        state = found["State"]
    except docker.errors.NotFound as exc:
        raise LabNotFoundError(f"no container {container}") from exc
    except docker.errors.APIError as exc:
        raise DeployError(f"start container {container}: {_explain(exc)}") from exc
    if not state.get("Running") or not state.get("Pid"):
        raise DeployError(f"container {container} exited at once "
                          f"(exit code {state.get('ExitCode')})")
    _remember(found["Id"], int(state["Pid"]))
    return int(state["Pid"])
