"""Orchestration: deploy a plan, inspect a running lab, exec in it, destroy it.

A lab's whole state is its containers' Docker labels (no state file), so `destroy` and
`inspect` work from a lab name alone, after a crash too. Deploy runs in phases, each
phase parallel over its objects:

    containers  node containers and pod infra (pause) containers, network_mode=none
    links       veth pairs node<->node and node<->pod, both ends in container netns
    configure   bridges, addresses, routes, sysctls, masquerade, per namespace
    pods        the pods' containers, joined to their infra container's netns

Kubernetes also starts a pod's containers only after the CNI has configured the pod's
network, hence pods last. A failure (or Ctrl-C) anywhere removes every container this
deploy created (label `io.podlab.deploy`) before the error propagates, so no veth, no
iptables rule and no container survives a failed deploy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from harness import images, nat, runtime, shaping, wiring
from harness.errors import DeployError, LabExistsError, LabNotFoundError, PodlabError
from harness.plan import LABEL, POD_IFACE, LinkPlan, NodePlan, Plan, PodPlan
from harness.runtime import ContainerInfo, ContainerSpec, Started
from harness.topology import parse_ms

T = TypeVar("T")
R = TypeVar("R")

PAUSE_IMAGE = "podlab/pause"
ROLE_NODE, ROLE_INFRA, ROLE_CONTAINER = "node", "pod-infra", "pod-container"
# Labels podlab reads back (everything inspect/exec need without a topology file)
L_LAB, L_ROLE, L_NODE, L_POD = f"{LABEL}.lab", f"{LABEL}.role", f"{LABEL}.node", f"{LABEL}.pod"
L_KIND, L_CIDR, L_IP = f"{LABEL}.kind", f"{LABEL}.pod-cidr", f"{LABEL}.ip"
L_CONTAINER, L_ORDER, L_DEPLOY = f"{LABEL}.container", f"{LABEL}.order", f"{LABEL}.deploy"

# Pod sysctl Kubernetes counts as safe: unprivileged ping without NET_RAW, too.
POD_SYSCTLS = {"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_forward": "0"}
# Pod containers: NET_RAW for ping/raw sockets; no NET_ADMIN, as in a default pod.
POD_CAPS: tuple[str, ...] = ("NET_RAW",)

ProgressFn = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- progress


class _Reporter:
    """Phase progress to a `(phase, done, total)` callback or a rich Progress (or nowhere)."""

    def __init__(self, progress: Any = None):
        self._progress = progress
        self._task: Any = None
        self._phase = ""
        self._done = self._total = 0

    def start(self, phase: str, total: int) -> None:
        self._phase, self._done, self._total = phase, 0, total
        if hasattr(self._progress, "add_task"):  # rich.progress.Progress
            self._task = self._progress.add_task(phase, total=total or 1)
            if not total:
                self._progress.update(self._task, completed=1)
        elif callable(self._progress):
            self._progress(phase, 0, total)

    def advance(self) -> None:
        self._done += 1
        if self._task is not None:
            self._progress.advance(self._task)
        elif callable(self._progress):
            self._progress(self._phase, self._done, self._total)

    def note(self, message: str) -> None:
        """A one-off message (image builds) as a zero-length phase."""
        self.start(message, 0)


def _parallel(step: str, items: Sequence[T], fn: Callable[[T], R],
              name: Callable[[T], str], rep: _Reporter) -> list[R]:
    """`fn` over `items` on a thread pool, results in item order.

    The first failure cancels what has not started, waits for what has (so nothing is
    created after the rollback looked), and becomes a DeployError naming step and object.
    """
    rep.start(step, len(items))
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=runtime.WORKERS, thread_name_prefix=f"deploy-{step}")
    futures = [pool.submit(fn, item) for item in items]
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None and not isinstance(exc, Exception):
                    raise exc  # KeyboardInterrupt/SystemExit stay what they are
                if exc is not None:
                    item = items[futures.index(fut)]
                    raise _deploy_error(step, name(item), exc) from exc
                rep.advance()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [f.result() for f in futures]


def _deploy_error(step: str, obj: str, exc: BaseException) -> DeployError:
    message = f"deploy failed at step '{step}' on {obj}: {exc}"
    # Keep the more precise class (WiringError) where there is one.
    cls = type(exc) if isinstance(exc, DeployError) else DeployError
    return cls(message)


# --------------------------------------------------------------------------- deploy


def deploy(plan: Plan, *, progress: Any = None) -> None:
    """Bring the lab of `plan` up; on any failure leave nothing behind.

    Raises LabExistsError (exit 2) if any container of this lab exists, DeployError (or
    WiringError) naming the failed step and object after rolling back, ImageError when an
    image is neither local nor buildable, DockerUnavailable/NotRootError for the host.
    KeyboardInterrupt is re-raised after the rollback.
    """
    runtime.require_root()
    cli = runtime.client()
    rep = _Reporter(progress)
    existing = runtime.containers_of(plan.lab)
    if existing:
        raise LabExistsError(
            f"lab {plan.lab!r} is already deployed ({len(existing)} containers); "
            f"destroy it first: podlab destroy --name {plan.lab}")
    _ensure_images(cli, plan, rep)
    deploy_id = uuid.uuid4().hex[:12]
    try:
        _deploy(plan, deploy_id, rep)
    except BaseException as exc:
        removed = _rollback(deploy_id)
        if isinstance(exc, PodlabError | KeyboardInterrupt):
            if isinstance(exc, PodlabError) and removed:
                exc.args = (f"{exc} (rolled back: removed {removed} containers)",)
            raise
        raise DeployError(f"deploy of lab {plan.lab!r} failed: {exc!r} (rolled back)") from exc


def _ensure_images(cli: Any, plan: Plan, rep: _Reporter) -> None:
    """Build podlab's own images when stale; any other image must already be local."""
    wanted = {PAUSE_IMAGE, *(n.image for n in plan.nodes),
              *(c.image for p in plan.pods for c in p.containers)}
    own = sorted({name for image in wanted if (name := _podlab_image(image))})
    if own:
        images.ensure_images(cli, own, progress=rep.note)
    runtime.require_images(wanted)


def _podlab_image(image: str) -> str | None:
    repo, _, tag = image.partition(":")
    name = repo.removeprefix(f"{images.REPOSITORY}/")
    if repo.startswith(f"{images.REPOSITORY}/") and name in images.IMAGE_NAMES \
            and tag in ("", "latest"):
        return name
    return None


def _deploy(plan: Plan, deploy_id: str, rep: _Reporter) -> None:
    specs = [_node_spec(n, i, deploy_id) for i, n in enumerate(plan.nodes)]
    specs += [_infra_spec(p, i, deploy_id) for i, p in enumerate(plan.pods)]
    started = _parallel("containers", specs, runtime.start, lambda s: f"container {s.name}",
                        rep)
    by_name: dict[str, Started] = {s.name: s for s in started}
    pid = {n.name: by_name[n.container].pid for n in plan.nodes}
    infra = {p.name: by_name[p.infra] for p in plan.pods}

    veths: list[LinkPlan | PodPlan] = [*plan.links, *plan.pods]
    _parallel("links", veths, lambda v: _create_veth(v, pid, infra), _veth_name, rep)

    configs: list[NodePlan | PodPlan] = [*plan.nodes, *plan.pods]
    _parallel("configure", configs, lambda o: _configure(o, plan, pid, infra),
              lambda o: f"{'node' if isinstance(o, NodePlan) else 'pod'} {o.name}", rep)

    apps = [_container_spec(p, i, infra[p.name].id, deploy_id)
            for p in plan.pods for i in range(len(p.containers))]
    _parallel("pods", apps, runtime.start, lambda s: f"container {s.name}", rep)


def _rollback(deploy_id: str) -> int:
    """Remove every container of this deploy attempt; return how many."""
    try:
        return len(runtime.remove_many(runtime.containers_of(None, deploy=deploy_id)))
    except PodlabError:
        return 0  # the original error matters more; `podlab destroy` can finish the job


def _base_labels(labels: dict[str, str], role: str, order: int, deploy_id: str
                 ) -> dict[str, str]:
    return {**labels, L_ROLE: role, L_ORDER: str(order), L_DEPLOY: deploy_id}


def _node_spec(node: NodePlan, order: int, deploy_id: str) -> ContainerSpec:
    labels = _base_labels(node.labels, ROLE_NODE, order, deploy_id)
    if node.pod_cidr:
        labels[L_CIDR] = node.pod_cidr
    # rp_filter off: with masquerade and multi-path fabrics a reply may come back on
    # another interface than the strict reverse path, which is legitimate in the lab.
    sysctls = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"}
    # said either way: a new namespace may inherit the host's ip_forward=1, and a `linux`
    # host or a switch that routed would break the plan's paths
    sysctls["net.ipv4.ip_forward"] = "1" if node.forwards else "0"
    return ContainerSpec(name=node.container, image=node.image, labels=labels,
                         hostname=node.name, sysctls=sysctls)


def _infra_spec(pod: PodPlan, order: int, deploy_id: str) -> ContainerSpec:
    labels = _base_labels(pod.labels, ROLE_INFRA, order, deploy_id)
    labels[L_IP] = pod.ip
    labels[f"{LABEL}.cidr"] = pod.cidr
    return ContainerSpec(name=pod.infra, image=PAUSE_IMAGE, labels=labels, hostname=pod.name,
                         sysctls=POD_SYSCTLS, cap_add=())


def _container_spec(pod: PodPlan, index: int, infra_id: str, deploy_id: str) -> ContainerSpec:
    c = pod.containers[index]
    labels = _base_labels(pod.labels, ROLE_CONTAINER, index, deploy_id)
    labels[L_CONTAINER] = c.name
    labels[L_IP] = pod.ip
    return ContainerSpec(name=c.container, image=c.image, labels=labels,
                         network_mode=f"container:{infra_id}", command=c.command,
                         args=c.args, env=c.env, cap_add=POD_CAPS)


def _veth_name(v: LinkPlan | PodPlan) -> str:
    if isinstance(v, PodPlan):
        return f"pod link {v.node}:{v.node_iface} <-> {v.name}:{POD_IFACE}"
    return f"link {v.a[0]}:{v.a[1]} <-> {v.b[0]}:{v.b[1]}"


def _create_veth(v: LinkPlan | PodPlan, pid: dict[str, int], infra: dict[str, Started]
                 ) -> None:
    if isinstance(v, PodPlan):
        wiring.create_veth(pid[v.node], v.node_iface, infra[v.name].pid, POD_IFACE)
        return
    (a, ia), (b, ib) = v.a, v.b
    wiring.create_veth(pid[a], ia, pid[b], ib, mtu=v.mtu)
    if v.netem:
        for node, iface in ((a, ia), (b, ib)):  # both directions are impaired
            # netem, or its fallback where the kernel has no sch_netem (harness.shaping)
            shaping.shape(pid[node], iface, **_netem_args(v))


def _netem_args(v: LinkPlan) -> dict[str, float | None]:
    n = v.netem
    assert n is not None
    return {"delay_ms": parse_ms(n.delay) if n.delay is not None else None,
            "jitter_ms": parse_ms(n.jitter) if n.jitter is not None else None,
            "loss_pct": float(n.loss) if n.loss is not None else None,
            "rate_mbit": n.rate / 1000 if n.rate else None}  # the file says kbit/s


def _configure(obj: NodePlan | PodPlan, plan: Plan, pid: dict[str, int],
               infra: dict[str, Started]) -> None:
    if isinstance(obj, PodPlan):
        wiring.configure(infra[obj.name].pid, wiring.NetConfig(
            addresses=((POD_IFACE, obj.cidr),), routes=(("default", obj.gateway),)))
        return
    wiring.configure(pid[obj.name], node_config(obj, plan))
    if obj.masquerade_exempt:
        nat.apply(pid[obj.name], obj)


def node_config(node: NodePlan, plan: Plan) -> wiring.NetConfig:
    """What a node's namespace needs: its bridge and ports, addresses, routes."""
    addresses = tuple((i.name, i.address) for i in node.interfaces if i.address)
    routes = tuple((r.dst, r.via) for r in node.routes)
    if node.kind == "switch":
        ports = tuple((i.name, node.bridge or "br0") for i in node.interfaces)
        return wiring.NetConfig(bridges=(node.bridge or "br0",), ports=ports)
    if node.kind == "k8s-node" and node.bridge and node.gateway:
        ports = tuple((p.node_iface, node.bridge) for p in plan.pods if p.node == node.name)
        return wiring.NetConfig(bridges=(node.bridge,), ports=ports,
                                addresses=((node.bridge, node.gateway), *addresses),
                                routes=routes)
    return wiring.NetConfig(addresses=addresses, routes=routes,
                            up=tuple(i.name for i in node.interfaces if not i.address))


# --------------------------------------------------------------------------- destroy


def destroy(lab: str | None, all_labs: bool = False) -> list[str]:
    """Remove every container of `lab` (of every lab with `all_labs`), in parallel.

    Returns the names removed, sorted; a second call is a no-op returning [].
    """
    if not all_labs and lab is None:
        raise LabNotFoundError("destroy needs a lab name (or --all)")
    found = runtime.containers_of(None if all_labs else lab)
    return sorted(runtime.remove_many(found))


# --------------------------------------------------------------------------- inspect


def inspect(lab: str | None, all_labs: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
    """The design's JSON shape for one lab (a dict) or every lab (a list), from labels and
    live addresses; raises LabNotFoundError for a named lab that is not deployed."""
    if all_labs:
        rows = runtime.containers_of(None)
        names = sorted({r.lab for r in rows})
        return [_inspect_lab(name, [r for r in rows if r.lab == name]) for name in names]
    if lab is None:
        raise LabNotFoundError("inspect needs a lab name (or --all)")
    return _inspect_lab(lab, _require_lab(lab))


def _require_lab(lab: str) -> list[ContainerInfo]:
    rows = runtime.containers_of(lab)
    if not rows:
        raise LabNotFoundError(f"lab {lab!r} is not deployed (podlab inspect --all lists labs)")
    return rows


def _order(row: ContainerInfo) -> tuple[int, str]:
    try:
        return int(row.labels.get(L_ORDER, "0")), row.name
    except ValueError:
        return 0, row.name


def _inspect_lab(lab: str, rows: list[ContainerInfo]) -> dict[str, Any]:
    nodes = sorted((r for r in rows if r.role == ROLE_NODE), key=_order)
    pids = runtime.pids_of(nodes)
    with ThreadPoolExecutor(max_workers=runtime.WORKERS) as pool:
        addrs = list(pool.map(lambda r: _live_addresses(pids.get(r.name)), nodes))
    out_nodes = [{"name": r.labels.get(L_NODE, r.name), "kind": r.labels.get(L_KIND, ""),
                  "container": r.name, "state": r.state, "addresses": a,
                  "pod_cidr": r.labels.get(L_CIDR)} for r, a in zip(nodes, addrs, strict=True)]
    pods = []
    for r in sorted((r for r in rows if r.role == ROLE_INFRA), key=_order):
        pod = r.labels.get(L_POD, "")
        members = sorted((c for c in rows if c.role == ROLE_CONTAINER
                          and c.labels.get(L_POD) == pod), key=_order)
        pods.append({"name": pod, "node": r.labels.get(L_NODE, ""), "ip": r.labels.get(L_IP),
                     "infra": r.name, "state": r.state,
                     "containers": [{"name": c.labels.get(L_CONTAINER, c.name),
                                     "container": c.name, "state": c.state}
                                    for c in members]})
    return {"lab": lab, "nodes": out_nodes, "pods": pods}


def _live_addresses(pid: int | None) -> dict[str, list[str]]:
    """IPv4 addresses by interface, without lo and address-less ports ({} if stopped)."""
    if not pid:
        return {}
    try:
        found = wiring.addresses(pid)
    except PodlabError:
        return {}  # the container stopped between list and read
    return {name: cidrs for name, cidrs in sorted(found.items()) if name != "lo" and cidrs}


# --------------------------------------------------------------------------- pids / exec


def pids(lab: str) -> dict[str, int]:
    """`{container name: host pid}` of every running container of the lab."""
    return runtime.pids_of(_require_lab(lab))


def exec_in(lab: str, node: str | None = None, pod: str | None = None,
            container: str | None = None, argv: Sequence[str] = ()) -> tuple[int, bytes]:
    """Run `argv` in a node, or in a pod's container (its first one by default)."""
    if (node is None) == (pod is None) or not argv:
        raise LabNotFoundError("exec needs exactly one of node/pod, and a command")
    target = _exec_target(lab, node, pod, container)
    return runtime.exec(target, argv)


def _exec_target(lab: str, node: str | None, pod: str | None, container: str | None) -> str:
    if node is not None:
        rows = runtime.containers_of(lab, role=ROLE_NODE, node=node)
        if not rows:
            raise LabNotFoundError(f"no node {node!r} in lab {lab!r}")
        return rows[0].name
    rows = runtime.containers_of(lab, pod=str(pod))
    members = sorted((r for r in rows if r.role == ROLE_CONTAINER), key=_order)
    if container is not None:
        members = [r for r in members if r.labels.get(L_CONTAINER) == container]
        if not members:
            names = [r.labels.get(L_CONTAINER) for r in rows if r.role == ROLE_CONTAINER]
            raise LabNotFoundError(f"no container {container!r} in pod {pod!r} of lab {lab!r}"
                                   f" (has: {', '.join(n for n in names if n) or 'none'})")
    if members:
        return members[0].name
    infra = [r for r in rows if r.role == ROLE_INFRA]
    if not infra:
        raise LabNotFoundError(f"no pod {pod!r} in lab {lab!r}")
    return infra[0].name  # a pod without containers: its infra holds the netns
