"""Orchestration: deploy a plan, inspect a running lab, exec in it, destroy it.

A lab's whole state is its containers' Docker labels (no state file), so `destroy` and
`inspect` work from a lab name alone, after a crash too. Deploy has four steps (five
with a CNI datapath), run as a pipeline (`_Pipeline`: each object starts as soon as what
it needs exists, not when the whole previous step is done):

    containers  node containers and pod infra (pause) containers, network_mode=none
    links       veth pairs node<->node and node<->pod, both ends in container netns
    configure   bridges, addresses, routes, masquerade, per namespace
    pods        the pods' containers, joined to their infra container's netns
    services    (a CNI's pods only) kube-proxy's and portmap's rules synced on every
                k8s-node with the addresses the plugins gave the pods (after every ADD)

What each container and namespace gets (sysctls, capabilities, bridges, addresses,
routes, NAT) is the datapath's description (harness.datapath), computed once from the
plan; this module only schedules its application.

Kubernetes also starts a pod's containers only after the CNI has configured the pod's
network, hence a pod's containers start once that pod is wired (its veth, address, route
and bridge port; its node configured). A failure (or Ctrl-C) anywhere removes every container this
deploy created (label `io.podlab.deploy`) before the error propagates, so no veth, no
iptables rule and no container survives a failed deploy.

Who makes the nodes and their links is the runtime's choice (`RUNTIMES`): podlab's own
(Docker's API and netlink, node by node, as above) or containerlab (`containerlab
deploy` of those very containers and links, harness.host.containerlab, as one job of the
containers step; every node then goes on as if podlab had started it and wired its
links). Everything after (configure, pods, services) is the same for both.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from harness import datapath
from harness import labels as L
from harness.datapath import LabNet, NodeNet, PodNet, Settings
from harness.errors import DeployError, InputError, LabExistsError, PodlabError
from harness.host import containerlab, faultlog, hostlimits, images, runtime, shaping, wiring
from harness.host.runtime import ContainerSpec, Started
from harness.lab import running, user
from harness.lab.progress import Reporter
from harness.labels import ROLE_CONTAINER, ROLE_INFRA, ROLE_NODE
from harness.model.addressing import family_of
from harness.model.validation import parse_ms
from harness.plan import POD_IFACE, LinkPlan, NodePlan, Plan, PodPlan

PAUSE_IMAGE = "podlab/pause"
PODLAB, CONTAINERLAB = "podlab", "containerlab"
RUNTIMES = (PODLAB, CONTAINERLAB)  # who makes the nodes and their links


def _deploy_error(step: str, obj: str, exc: BaseException) -> DeployError:
    message = f"deploy failed at step '{step}' on {obj}: {exc}"
    # Keep the more precise class (WiringError) where there is one, and what it carries
    # (a CNI plugin's msg and details).
    cls = type(exc) if isinstance(exc, DeployError) else DeployError
    err = cls(message)
    if cls is type(exc):
        err.__dict__.update(exc.__dict__)
    return err


# --------------------------------------------------------------------------- deploy


def deploy(plan: Plan, *, progress: Any = None, runtime_name: str = PODLAB) -> None:
    """Bring the lab of `plan` up; on any failure leave nothing behind. `runtime_name`
    (one of RUNTIMES) makes the nodes and their links.

    Raises LabExistsError (exit 2) if any container of this lab exists, DeployError (or
    WiringError) naming the failed step and object after rolling back, ImageError when an
    image is neither local nor buildable, DockerUnavailable/NotRootError for the host.
    KeyboardInterrupt is re-raised after the rollback.
    """
    if runtime_name not in RUNTIMES:
        raise InputError(f"runtime {runtime_name!r}: one of {', '.join(RUNTIMES)}")
    runtime.require_root()
    if runtime_name == CONTAINERLAB:
        refuse_for_containerlab(plan)
        containerlab.require()  # before anything starts
    rep = Reporter(progress)
    existing = runtime.containers_of(plan.lab)
    if existing:
        raise LabExistsError(
            f"lab {plan.lab!r} is already deployed ({len(existing)} containers); "
            f"destroy it first: podlab destroy --name {plan.lab}")
    if containerlab.has_state(plan.lab):  # a crashed containerlab deploy's, lab gone
        containerlab.destroy(plan.lab)
    dp = datapath.select(plan)
    dp.prepare(plan)  # what the host must have for this datapath (a CNI's plugins)
    ensure_images(plan, rep)
    if (raised := hostlimits.ensure_neighbour_capacity(plan)) is not None:
        rep.note(raised)
    deploy_id = uuid.uuid4().hex[:12]
    faultlog.forget(plan.lab)  # a new lab of an old name: none of the old one's faults
    try:
        if plan.mgmt is not None:
            user.create_mgmt(plan, deploy_id)
        _deploy(plan, deploy_id, rep, runtime_name)
    except BaseException as exc:
        running.release_network_state(plan.lab)  # a CNI's DELs, while the namespaces live
        if containerlab.has_state(plan.lab):
            _quietly(lambda: containerlab.destroy(plan.lab))  # its lab directory too
        removed = _rollback(deploy_id)
        user.remove_mgmt(plan)
        if isinstance(exc, PodlabError | KeyboardInterrupt):
            if isinstance(exc, PodlabError) and removed:
                exc.args = (f"{exc} (rolled back: removed {removed} containers)",)
            raise
        raise DeployError(f"deploy of lab {plan.lab!r} failed: {exc!r} (rolled back)") from exc


def container_images(plan: Plan) -> list[str]:
    """The image of every container deploy starts, in its order: nodes, infra, pods'."""
    return [*(n.image for n in plan.nodes if n.netns_of is None),
            *(PAUSE_IMAGE for _ in plan.pods),
            *(c.image for p in plan.pods for c in p.containers)]


def ensure_images(plan: Plan, rep: Reporter | None = None) -> None:
    """Build podlab's own images when stale; any other image must already be local."""
    wanted = set(container_images(plan))
    own = sorted({name for image in wanted if (name := _podlab_image(image))})
    if own:
        images.ensure_images(runtime.client(), own, progress=(rep or Reporter()).note)
    # another image is pulled where a registry answers (podlab's own are built, never
    # pulled); what is still missing then is named with how to build or map it
    for image in runtime.missing_images(i for i in wanted if not i.startswith("podlab/")):
        (rep or Reporter()).note(f"pulling {image}")
        runtime.pull(image)
    runtime.require_images(wanted)


def _podlab_image(image: str) -> str | None:
    repo, _, tag = image.partition(":")
    name = repo.removeprefix(f"{images.REPOSITORY}/")
    if repo.startswith(f"{images.REPOSITORY}/") and name in images.IMAGE_NAMES \
            and tag in ("", "latest"):
        return name
    return None


def _deploy(plan: Plan, deploy_id: str, rep: Reporter, runtime_name: str = PODLAB) -> None:
    pipeline = _Pipeline(plan, deploy_id, rep, runtime_name)
    pipeline.run()
    pipeline.sync_services()
    pipeline.dp.after_deploy(pipeline.desc, pipeline.pid)  # e.g. routes a daemon learns


class _Pipeline:
    """Deploy as a dependency graph, not as strict phases: every object starts as soon as
    what it needs is there, so the Docker daemon never idles behind a phase barrier.

        node started ............... its node<->node links, once both ends are up
        node's links wired ......... node configure (bridge, addresses, routes, masquerade)
        infra started, node conf'd . the pod's veth, then its address and route, then its
                                     port on the node's bridge (the pod's own "CNI ADD")
        pod wired .................. the pod's containers (as Kubernetes: after the CNI)

    Docker calls run on one pool (runtime.WORKERS, nodes first, then infra, then pod
    containers as their pods get wired); netlink work runs on another, so wiring overlaps
    container starts. Scheduling happens in the calling thread only: after the first
    failure (or Ctrl-C) nothing new is submitted, queued work is cancelled and running
    work is waited for, so the rollback sees every container this deploy created. Errors
    name the step ('containers', 'links', 'configure', 'pods') and the object.
    """

    NET_WORKERS = 4

    def __init__(self, plan: Plan, deploy_id: str, rep: Reporter,
                 runtime_name: str = PODLAB):
        self.plan, self.deploy_id, self.rep = plan, deploy_id, rep
        self.by_containerlab = runtime_name == CONTAINERLAB  # it makes nodes and links
        self.dp = datapath.select(plan)
        self.desc = self.dp.describe(plan)  # what every namespace gets, computed once
        self.pid: dict[str, int] = {}  # node name -> host pid
        self.infra: dict[str, Started] = {}  # pod name -> its infra container
        self.configured: set[str] = set()  # nodes whose own configuration is applied
        self.links_of: dict[str, list[LinkPlan]] = {n.name: [] for n in plan.nodes}
        for link in plan.links:
            for end in {link.a[0], link.b[0]}:
                self.links_of[end].append(link)
        self.links_left = {n: len(ls) for n, ls in self.links_of.items()}
        self.pods_of: dict[str, list[PodPlan]] = {n.name: [] for n in plan.nodes}
        for pod in plan.pods:
            self.pods_of[pod.node].append(pod)
        self.futures: dict[Future[Any], tuple[str, str, Callable[[Any], None]]] = {}
        self.waiting: dict[str, tuple[str, ...]] = {}  # node -> nodes it waits to start for
        self.links_done: set[str] = set()  # nodes whose links are wired and configured
        self.exec_started: set[str] = set()
        # pod -> (a.b.c.d/len, ...): every family's, as its CNI ADD gave them
        self.assigned: dict[str, tuple[str, ...]] = {}

    def run(self) -> None:
        plan = self.plan
        apps = sum(len(p.containers) for p in plan.pods)
        nodes = 1 if self.by_containerlab else len(plan.nodes)  # one containerlab deploy
        self.rep.begin({"containers": nodes + len(plan.pods),
                        "links": len(plan.links) + sum(1 for p in self.desc.pods if p.veth),
                        "configure": len(plan.nodes) + len(plan.pods), "pods": apps})
        self.docker = ThreadPoolExecutor(runtime.WORKERS, thread_name_prefix="deploy-docker")
        self.net = ThreadPoolExecutor(self.NET_WORKERS, thread_name_prefix="deploy-net")
        try:
            if self.by_containerlab:
                self._submit(self.docker, "containers",
                             f"containerlab deploy of {len(plan.nodes)} nodes and "
                             f"{len(plan.links)} links", self._containerlab_deploy,
                             self._containerlab_deployed)
            for node in () if self.by_containerlab else plan.nodes:
                self._start_when_ready(node)
            for i, pod in enumerate(plan.pods):
                if not pod.host_network:  # those join their node's namespace once it runs
                    self._start_infra(pod, i)
            while self.futures:
                done, _ = wait(self.futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    step, obj, then = self.futures.pop(fut)
                    exc = fut.exception()
                    if exc is not None and not isinstance(exc, Exception):
                        raise exc  # KeyboardInterrupt/SystemExit stay what they are
                    if exc is not None:
                        raise _deploy_error(step, obj, exc) from exc
                    self.rep.advance(step)
                    then(fut.result())
        finally:
            for pool in (self.docker, self.net):
                pool.shutdown(wait=False, cancel_futures=True)
            for pool in (self.docker, self.net):
                pool.shutdown(wait=True)

    def _start_when_ready(self, node: NodePlan) -> None:
        """A node starts once every node it waits for (stages wait-for, a namespace it
        shares, a bridge's host) has started; a bridge inside a node's namespace starts
        with that node, as no container of its own."""
        waits = user.waits_of(node)
        if any(w not in self.pid for w in waits):
            self.waiting[node.name] = waits
            return
        if node.netns_of is not None:
            self._node_started(node, Started("", node.container, self.pid[node.netns_of]))
            return
        order = self.plan.nodes.index(node)
        spec = node_spec(node, self.desc.node(node.name), order, self.deploy_id, self.plan)
        delay = node.run.startup_delay if node.run else 0
        self._submit(self.docker, "containers", f"container {spec.name}",
                     lambda s=spec: user.start_after(delay, s),
                     lambda st, n=node: self._node_started(n, st))

    def _start_infra(self, pod: PodPlan, order: int) -> None:
        node = self.plan.node(pod.node)
        spec = infra_spec(pod, self.desc.pod(pod.name), order, self.deploy_id, node.container,
                          planned=not self.dp.assigns_addresses)
        self._submit(self.docker, "containers", f"container {spec.name}",
                     lambda s=spec: runtime.start(s),
                     lambda st, p=pod: self._infra_started(p, st))

    def _submit(self, pool: ThreadPoolExecutor, step: str, obj: str, fn: Callable[[], Any],
                then: Callable[[Any], None] = lambda _: None) -> None:
        self.futures[pool.submit(fn)] = (step, obj, then)

    def _containerlab_deploy(self) -> dict[str, Started]:
        """containerlab makes the very node containers and links podlab would; their
        pids then come from Docker, as after podlab's own starts."""
        plan = self.plan
        containerlab.deploy(containerlab.write(clab_topology(plan, self.desc, self.deploy_id)))
        rows = runtime.containers_of(plan.lab, role=ROLE_NODE, deploy=self.deploy_id)
        pids = runtime.pids_of(rows)
        started = {r.labels.get(L.NODE, ""): Started(r.id, r.name, pids[r.name])
                   for r in rows if r.name in pids}
        missing = [n.name for n in plan.nodes if n.name not in started]
        if missing:
            raise DeployError(f"containerlab deploy left node(s) {', '.join(missing)} "
                              f"not running")
        return started

    def _containerlab_deployed(self, started: dict[str, Started]) -> None:
        for node in self.plan.nodes:
            self._node_started(node, started[node.name])

    # ------------------------------------------------------------------ events

    def _node_started(self, node: NodePlan, started: Started) -> None:
        self.pid[node.name] = started.pid
        for name, waits in list(self.waiting.items()):
            if all(w in self.pid for w in waits):
                del self.waiting[name]
                self._start_when_ready(self.plan.node(name))
        for i, pod in enumerate(self.plan.pods):
            if pod.host_network and pod.node == node.name:
                self._start_infra(pod, i)
        for link in self.links_of[node.name]:
            if link.a[0] in self.pid and link.b[0] in self.pid:
                make = _shape_link if self.by_containerlab else _create_link  # made already
                self._submit(self.net, "links", _veth_name(link),
                             lambda v=link, f=make: f(v, self.pid),
                             lambda _, v=link: self._link_wired(v))
        if not self.links_of[node.name]:
            self._configure_node(node.name)

    def _link_wired(self, link: LinkPlan) -> None:
        for end in {link.a[0], link.b[0]}:
            self.links_left[end] -= 1
            if not self.links_left[end]:
                self._configure_node(end)

    def _configure_node(self, name: str) -> None:
        # each pod's port joins the node's bridge when that pod is added, not here
        dummies = [(i, m) for n, i, m in self.plan.dummies if n == name]

        def configure() -> None:
            for iface, mtu in dummies:
                wiring.create_dummy(self.pid[name], iface, mtu)
            self.dp.apply_node(self.pid[name], self.desc.node(name))

        self._submit(self.net, "configure", f"node {name}", configure,
                     lambda _: self._node_configured(name))

    def _node_configured(self, name: str) -> None:
        node = self.plan.node(name)
        self.links_done.add(name)
        if node.netns_of is not None and node.netns_of in self.links_done \
                and node.netns_of not in self.configured:
            self._node_configured(node.netns_of)  # its host was waiting for this bridge
        inside = [n.name for n in self.plan.nodes if n.netns_of == name]
        if any(b not in self.links_done for b in inside):
            return  # the exec may use a bridge in this namespace: it comes first
        if name in self.exec_started:
            return
        self.exec_started.add(name)
        if node.run is not None and node.run.exec:  # the user's exec, once its links are up
            self._submit(self.docker, "configure", f"exec on node {name}",
                         lambda: user.run_exec(node), lambda _: self._node_ready(name))
            return
        self._node_ready(name)

    def _node_ready(self, name: str) -> None:
        self.configured.add(name)
        for pod in self.pods_of[name]:
            if pod.name in self.infra:
                self._wire_pod(pod)

    def _infra_started(self, pod: PodPlan, started: Started) -> None:
        self.infra[pod.name] = started
        if pod.node in self.configured:
            self._wire_pod(pod)

    def _wire_pod(self, pod: PodPlan) -> None:
        veth = self.desc.pod(pod.name).veth
        if veth is None:  # the datapath's pod_added makes the pod's link itself
            self._configure_pod(pod)
            return
        self._submit(self.net, "links", _veth_name(pod),
                     lambda: wiring.create_veth(self.pid[pod.node], veth[0],
                                                self.infra[pod.name].pid, veth[1]),
                     lambda _: self._configure_pod(pod))

    def _configure_pod(self, pod: PodPlan) -> None:
        self._submit(self.net, "configure", f"pod {pod.name}", lambda: self._apply_pod(pod),
                     lambda addresses: self._start_apps(pod, addresses))

    def _apply_pod(self, pod: PodPlan) -> tuple[str, ...]:
        # the pod's "CNI ADD": once done, the pod is reachable
        infra = self.infra[pod.name]
        return self.dp.pod_added(self.pid[pod.node], infra.pid, self.desc.pod(pod.name),
                                 infra.id)

    def _start_apps(self, pod: PodPlan, addresses: tuple[str, ...] = ()) -> None:
        infra_id = self.infra[pod.name].id
        settings = self.desc.pod(pod.name).containers
        # a CNI gave the addresses: the containers, started after its ADD, carry them
        cidrs = primary_first(pod, addresses)
        if cidrs:
            self.assigned[pod.name] = cidrs
        for i in range(len(pod.containers)):
            spec = container_spec(pod, settings, i, infra_id, self.deploy_id, cidrs)
            self._submit(self.docker, "pods", f"container {spec.name}",
                         lambda s=spec: runtime.start(s))


    def sync_services(self) -> None:
        """kube-proxy's and portmap's rules once every pod has its address. A node was
        configured before its pods' ADDs, with the endpoints known then (a CNI's pods had
        none yet); with the addresses the plugins gave, every k8s-node gets its Services'
        endpoints and hostPort DNATs, as kube-proxy syncs when EndpointSlices change."""
        plan = self.plan
        if not self.dp.assigns_addresses or not (plan.services or plan.host_ports):
            return
        seen = self.dp.readdressed(plan, self.assigned)  # pure: the plan, re-planned
        for node in seen.k8s_nodes:
            try:
                self.dp.sync_services(self.pid[node.name], node.name,
                                      self.dp.service_rules(seen, node))
            except Exception as exc:
                raise _deploy_error("services", f"node {node.name}", exc) from exc


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except PodlabError:
        pass  # the original error matters more; `podlab destroy` can finish the job


def _rollback(deploy_id: str) -> int:
    """Remove every container of this deploy attempt; return how many."""
    try:
        return len(runtime.remove_many(runtime.containers_of(None, deploy=deploy_id)))
    except PodlabError:
        return 0  # the original error matters more; `podlab destroy` can finish the job


def _base_labels(labels: dict[str, str], role: str, order: int, deploy_id: str
                 ) -> dict[str, str]:
    return {**labels, L.ROLE: role, L.ORDER: str(order), L.DEPLOY: deploy_id}


def node_spec(node: NodePlan, net: NodeNet, order: int, deploy_id: str,
              plan: Plan | None = None) -> ContainerSpec:
    """The container deploy creates for a node (settings from its description)."""
    labels = _base_labels(node.labels, ROLE_NODE, order, deploy_id)
    if node.pod_cidr:
        labels[L.POD_CIDR] = node.pod_cidr
        labels[L.POD_CIDRS] = ",".join(node.pod_cidrs)
    if node.run is not None and plan is not None:
        return user.container_spec(plan, node, net, labels)
    return ContainerSpec(name=node.container, image=node.image, labels=labels,
                         hostname=node.name, sysctls=net.container.sysctl_map(),
                         cap_add=net.container.caps)


def refuse_for_containerlab(plan: Plan) -> None:
    """What containerlab cannot make: InputError saying why, before anything starts."""
    inside = [n.name for n in plan.nodes if n.netns_of is not None]
    if inside:
        raise InputError(f"--runtime containerlab: bridge(s) {', '.join(inside)} live in "
                         "another node's namespace with no container of their own, which "
                         "containerlab cannot link; deploy this lab with podlab's runtime")


def clab_topology(plan: Plan, desc: LabNet, deploy_id: str) -> dict[str, Any]:
    """The topology `containerlab deploy` gets for `plan` (pure): every node's container as
    podlab's own runtime would start it, a user's node with its own settings. Its `exec`
    lines stay podlab's (run at the same point as under podlab's runtime): containerlab
    logs a failing line and carries on, where podlab fails the deploy with its output."""
    refuse_for_containerlab(plan)
    specs = [node_spec(n, desc.node(n.name), i, deploy_id, plan)
             for i, n in enumerate(plan.nodes)]
    runs = {n.name: containerlab.NodeRun(startup_delay=n.run.startup_delay,
                                         waits=n.run.waits)  # container:X's owner too
            for n in plan.nodes if n.run is not None}
    mgmt = plan.mgmt
    net = None if mgmt is None else {
        "network": mgmt.network,
        **({"ipv4-subnet": mgmt.ipv4_subnet} if mgmt.ipv4_subnet else {}),
        **({"ipv6-subnet": mgmt.ipv6_subnet} if mgmt.ipv6_subnet else {})}
    return containerlab.topology(plan.lab, specs, plan.links,
                                 {n.container: n.name for n in plan.nodes}, runs, net)


def infra_spec(pod: PodPlan, net: PodNet, order: int, deploy_id: str,
               node_container: str = "", planned: bool = True) -> ContainerSpec:
    """The infra (pause) container that owns a pod's namespace; a hostNetwork pod's joins
    its node's (`node_container`), and then has no hostname or sysctls of its own. Its
    address labels only when the plan gives the address (a CNI's comes after the
    container exists)."""
    labels = _base_labels(pod.labels, ROLE_INFRA, order, deploy_id)
    if planned:
        labels[L.IP] = pod.ip
        labels[L.IPS] = ",".join(pod.ips)
        labels[L.CIDR] = pod.cidr
    if net.host_network:
        return ContainerSpec(name=pod.infra, image=PAUSE_IMAGE, labels=labels,
                             network_mode=f"container:{node_container}",
                             cap_add=net.infra.caps)
    return ContainerSpec(name=pod.infra, image=PAUSE_IMAGE, labels=labels, hostname=pod.name,
                         sysctls=net.infra.sysctl_map(), cap_add=net.infra.caps)


def container_spec(pod: PodPlan, settings: Settings, index: int, infra_id: str,
                   deploy_id: str, cidrs: Sequence[str] = ()) -> ContainerSpec:
    """Container `index` of a pod, in the namespace of its infra container `infra_id`.
    `cidrs`: the pod's addresses as a CNI plugin gave them, primary family first
    (default: the plan's)."""
    c = pod.containers[index]
    labels = _base_labels(pod.labels, ROLE_CONTAINER, index, deploy_id)
    labels[L.CONTAINER] = c.name
    labels[L.IP] = cidrs[0].split("/")[0] if cidrs else pod.ip
    labels[L.CIDR] = cidrs[0] if cidrs else pod.cidr
    if len(cidrs) > 1:  # dual-stack: every family's, as the infra's label has the plan's
        labels[L.IPS] = ",".join(c.split("/")[0] for c in cidrs)
    return ContainerSpec(name=c.container, image=c.image, labels=labels,
                         network_mode=f"container:{infra_id}", command=c.command,
                         args=c.args, env=c.env, cap_add=settings.caps)


def primary_first(pod: PodPlan, addresses: Sequence[str]) -> tuple[str, ...]:
    """A CNI result's addresses (a.b.c.d/len, ...) in the order of the pod's families (the
    cluster's, primary first), whatever order the chain listed them in; those of a family
    the pod does not have go last."""
    order = {f: i for i, f in enumerate(pod.families)}
    return tuple(sorted(addresses, key=lambda a: order.get(family_of(a), len(order))))


def _veth_name(v: LinkPlan | PodPlan) -> str:
    if isinstance(v, PodPlan):
        return f"pod link {v.node}:{v.node_iface} <-> {v.name}:{POD_IFACE}"
    return f"link {v.a[0]}:{v.a[1]} <-> {v.b[0]}:{v.b[1]}"


def _create_link(v: LinkPlan, pid: dict[str, int]) -> None:
    (a, ia), (b, ib) = v.a, v.b
    macs = {"macs": v.macs} if any(v.macs) else {}  # containerlab's endpoint `mac`
    wiring.create_veth(pid[a], ia, pid[b], ib, mtu=v.mtu, **macs)
    _shape_link(v, pid)


def _shape_link(v: LinkPlan, pid: dict[str, int]) -> None:
    (a, ia), (b, ib) = v.a, v.b
    if v.netem:
        for node, iface in ((a, ia), (b, ib)):  # both directions are impaired
            # netem, or its fallback where the kernel has no sch_netem (harness.host.shaping)
            shaping.shape(pid[node], iface, **netem_args(v))


def netem_args(link: LinkPlan) -> dict[str, float | None]:
    """The topology file's `netem:` of a link as shaping.shape's arguments."""
    n = link.netem
    if n is None:
        return {}
    return {"delay_ms": parse_ms(n.delay) if n.delay is not None else None,
            "jitter_ms": parse_ms(n.jitter) if n.jitter is not None else None,
            "loss_pct": float(n.loss) if n.loss is not None else None,
            "rate_mbit": n.rate / 1000 if n.rate else None}  # the file says kbit/s
