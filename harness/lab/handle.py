"""`Lab`: the public handle on one lab. The CLI, the pytest plugin, the benchmark and the
tests all drive labs through it.

    from harness import Lab

    with Lab.deploy("topologies/minimal.clab.yml") as lab:   # destroyed on exit
        report = lab.verify(checks=["pod-to-pod"])
        assert report.ok, [r.detail for r in report.results if not r.ok]

    lab = Lab.attach("minimal")          # a lab that runs already, by name or file
    lab.exec(["ip", "route"], node="node1")
    lab.fault("link-down", "node1:eth1")
    lab.destroy()

Building a `Lab` has no side effect; `Lab.deploy` starts containers, and a deploy that
fails removes what it made before it raises (testcontainers' rule).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from harness import labels
from harness.errors import CommandFailed, InputError, LabNotFoundError, TopologyChanged
from harness.lab import deploy as _deploy
from harness.lab import faults, running, svcfaults
from harness.model.schema import NAME_MAX
from harness.model.topology import Topology, load_topology
from harness.plan import Plan, make_plan

if TYPE_CHECKING:
    from harness.datapath.net import Convergence
    from harness.host.capture import Sniffer
    from harness.host.runtime import ContainerInfo
    from harness.host.scapyd import ScapySession
    from harness.prove.result import Report

Source = str | Path | Topology | Plan

FAULTS = ("link-down", "link-up", "node-stop", "node-start", "daemon-kill", "daemon-start",
          "netem", "netem-clear", "svc-dnat-elsewhere", "svc-no-masq", "svc-local-as-cluster",
          "svc-restore")


class ExecResult(NamedTuple):
    """What `Lab.exec` returns; unpacks as `(code, output)`."""

    code: int
    output: str


def plan_of(source: Source, name: str | None = None) -> Plan:
    """The plan of a topology file, a loaded Topology or a Plan, renamed to `name` when
    given (a lab of the same file under another name: tests run side by side)."""
    if isinstance(source, Plan):
        if name is None or name == source.lab:
            return source
        source = load_topology(source.topo_path)
    topo = source if isinstance(source, Topology) else load_topology(source)
    if name is not None and name != topo.spec.name:
        topo = Topology(topo.spec.model_copy(update={"name": name}), topo.path)
    return make_plan(topo)


def _same_topology(handle: Lab, rows: Sequence[ContainerInfo], file: Path) -> None:
    """Refuse a plan made from a topology file edited since the lab's deploy: it would
    expect another lab than the one that runs (a lab deployed from a Plan object, or by a
    podlab that did not record the digest, is taken as it is)."""
    recorded = next((r.labels[labels.TOPO_DIGEST] for r in rows
                     if r.labels.get(labels.TOPO_DIGEST)), None)
    now = next((n.labels.get(labels.TOPO_DIGEST) for n in handle.plan.nodes), None)
    if recorded and now and recorded != now:
        raise TopologyChanged(
            f"{file} has changed since lab {handle.name!r} was deployed from it, so its plan "
            f"no longer describes what runs; restore the file, or redeploy: podlab destroy "
            f"--name {handle.name} && podlab deploy -t {file}")


def unique_name(topo_name: str) -> str:
    """`<name>-<6 hex>`, within the name length limit: never collides with another lab."""
    return f"{topo_name[:NAME_MAX - 7].rstrip('-')}-{uuid.uuid4().hex[:6]}"


class Lab:
    """One lab: its plan, and what can be done to it while it runs."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, topology={self.plan.topo_path!r})"

    @property
    def name(self) -> str:
        return self.plan.lab

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def deploy(cls, source: Source, *, name: str | None = None, progress: Any = None,
               runtime: str = _deploy.PODLAB) -> Lab:
        """Bring up the lab of a topology file (or Topology, or Plan) and return it.

        `name` overrides the file's lab name (`unique_name()` makes a fresh one).
        `progress` is a rich Progress or a `(phase, done, total)` callback. `runtime`:
        who makes the nodes and links, "podlab" or "containerlab". Raises
        LabExistsError when it runs already, DeployError after rolling back a failure.
        """
        lab = cls(plan_of(source, name))
        _deploy.deploy(lab.plan, progress=progress, runtime_name=runtime)
        return lab

    @classmethod
    def attach(cls, lab: str | Path, *, name: str | None = None) -> Lab:
        """The running lab of a topology file, or of a lab name (its topology file is
        found through the containers' labels). Raises LabNotFoundError if none runs."""
        if isinstance(lab, Path) or str(lab).endswith((".yml", ".yaml")):
            handle = cls(plan_of(Path(lab), name))
            _same_topology(handle, running.require_lab(handle.name, any_one=True), Path(lab))
            return handle
        rows = running.require_lab(str(lab))
        topo = next((r.labels[labels.TOPO] for r in rows if r.labels.get(labels.TOPO)), "")
        if not topo or not Path(topo).is_file():
            raise LabNotFoundError(
                f"lab {lab!r} runs, but its topology file {topo or '(unrecorded)'} is gone; "
                f"attach with the file (-t FILE) or destroy it: podlab destroy --name {lab}")
        handle = cls(plan_of(Path(topo), str(lab)))
        _same_topology(handle, rows, Path(topo))
        return handle

    def destroy(self) -> list[str]:
        """Remove every container of the lab; returns their names (none: already gone)."""
        return running.destroy(self.name)

    @staticmethod
    def destroy_all() -> list[str]:
        """Remove every container of every podlab lab on this host (Docker labels)."""
        return running.destroy(None, all_labs=True)

    @staticmethod
    def inspect_all() -> list[dict[str, Any]]:
        """The inspect JSON of every lab that runs on this host."""
        result = running.inspect(None, all_labs=True)
        assert isinstance(result, list)
        return result

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()

    # ------------------------------------------------------------------ what runs

    def inspect(self) -> dict[str, Any]:
        """The design's inspect JSON of this lab, from labels and live addresses."""
        result = running.inspect(self.name)
        assert isinstance(result, dict)
        return result

    def container_pids(self) -> dict[str, int]:
        """`{container name: host pid}` of every running container of the lab."""
        return running.pids(self.name)

    def pids(self) -> dict[str, int]:
        """`{node or pod name: host pid holding its network namespace}`, running ones."""
        return self._namespace_pids(self.container_pids())

    def _namespace_pids(self, by_container: dict[str, int]) -> dict[str, int]:
        found = {n.name: by_container.get(n.container) for n in self.plan.nodes}
        found |= {p.name: by_container.get(p.infra) for p in self.plan.pods}
        return {name: pid for name, pid in found.items() if pid}

    def exec(self, argv: Sequence[str], *, node: str | None = None, pod: str | None = None,
             container: str | None = None, check: bool = False) -> ExecResult:
        """Run `argv` in a node, or in a pod's container (its first one by default).

        With `check=True` a non-zero exit raises CommandFailed, carrying the output."""
        code, raw = running.exec_in(self.name, node=node, pod=pod, container=container,
                                    argv=list(argv))
        result = ExecResult(code, raw.decode(errors="replace"))
        if check and code != 0:
            where = f"node {node}" if node else f"pod {pod}"
            raise CommandFailed(where, list(argv), code, result.output)
        return result

    # ------------------------------------------------------------------ proof

    def verify(self, checks: Iterable[str] | None = None, *, keep_frames: bool = False,
               timeout: float = 2.0, progress: Any = None,
               converge_timeout: float | None = None, quick: bool = False) -> Report:
        """Run the model's checks (all by default) against the running lab, expecting the
        paths its routing settled on (see `converged`; its note joins the report's);
        `quick`: a spanning sample (every check, every node pair, one protocol), a smoke
        test.

        Raises InputError for an unknown check, NothingToVerify (an InputError) when the
        selection yields no result in this lab, LabNotFoundError when nothing of it runs."""
        from harness.prove import verify as prove

        wanted = tuple(checks) if checks is not None else prove.CHECKS
        unknown = [c for c in wanted if c not in prove.CHECKS]
        if unknown:
            raise InputError(f"unknown check(s) {', '.join(unknown)}; one of "
                             f"{', '.join(prove.CHECKS)}")
        by_container = self.container_pids()  # one inspect per container: asked once
        settled = self._converged(converge_timeout, self._namespace_pids(by_container))
        report = prove.verify(settled.plan, by_container, wanted,
                              keep_frames=keep_frames, progress=progress, timeout=timeout,
                              quick=quick)
        if settled.note:
            report.notes.append(settled.note)
        return report

    def observed_plan(self) -> Plan:
        """The plan as the running lab has it, which verify expects: with a CNI datapath,
        the addresses its plugins gave the pods (the plan alone says "assigned by CNI")."""
        from harness import datapath

        return datapath.select(self.plan).observed(self.plan)

    def converged(self, timeout: float | None = None) -> Convergence:
        """The plan to verify against now (the observed one): the datapath waits (up to
        `timeout` s, its own bound by default) until routes a daemon moves after a fault
        have settled, and reroutes the plan's expectations over the paths that are left
        (routing: bgp); static routes do not move."""
        return self._converged(timeout, self.pids())

    def _converged(self, timeout: float | None, pids: dict[str, int]) -> Convergence:
        from harness import datapath
        from harness.host import faultlog

        plan = self.observed_plan()
        dp = datapath.select(plan)
        injected = faultlog.recorded(self.name)  # re-planned for these alone
        return (dp.converged(plan, pids, injected=injected) if timeout is None
                else dp.converged(plan, pids, timeout, injected=injected))

    def capture(self, *, node: str | None = None, pod: str | None = None,
                iface: str | None = None, bpf: str | None = None, count: int | None = None,
                timeout: float | None = 5.0, path: str | Path | None = None) -> Sniffer:
        """A Sniffer in a node's or pod's namespace, not yet started. As a context manager
        its socket is open before the body makes traffic; the exit waits for `count`
        packets or `timeout` seconds::

            with lab.capture(pod="b", bpf="icmp", count=2) as cap:
                lab.exec(["ping", "-c1", "10.244.1.2"], pod="a")
            assert len(cap.packets) == 2
        """
        from harness.host.capture import Sniffer
        from harness.lab import attach

        target = attach.resolve(self.plan, node=node, pod=pod)
        return Sniffer(target.pid, iface, bpf=bpf, count=count, timeout=timeout, path=path)

    def scapy(self, pod: str | None = None, *, node: str | None = None,
              container: str | None = None) -> ScapySession:
        """A scapy session inside a pod's (or node's) network namespace: a child process
        that entered it before importing scapy, so `sr1`, `sr`, `send`, `sendp`, `sniff`,
        `traceroute` and `route` (its `conf.route`) are that namespace's; packets cross
        as scapy objects. `container` names one of the pod's containers (they share the
        namespace). A context manager; the child ends on exit::

            with lab.scapy("a") as s:
                answer = s.sr1(IP(dst=lab.ip("b")) / ICMP(), timeout=2)
        """
        from harness.host.scapyd import ScapySession
        from harness.lab import attach

        target = attach.resolve(self.plan, node=node, pod=pod)
        pid = target.pid
        if container is not None:
            if pod is None:
                raise InputError("container= names a container of a pod: give pod= too")
            p = self.plan.pod(pod)
            names = {c.name: c.container for c in p.containers}
            if container not in names:
                raise InputError(f"pod {pod} has no container {container!r} "
                                 f"(containers: {', '.join(names)})")
            pids = self.container_pids()
            if names[container] not in pids:
                raise LabNotFoundError(f"container {container} of pod {pod} is not running")
            pid = pids[names[container]]
        return ScapySession(pid, target.label)

    def ip(self, name: str, family: int = 4) -> str:
        """The address of pod or node `name` in `family` (4 or 6): a pod's own (a CNI
        plugin's, once it gave it), a node's first interface's."""
        if family not in (4, 6):
            raise InputError(f"family {family}: 4 or 6")
        fam = "ipv6" if family == 6 else "ipv4"
        plan = self.plan if self.plan.pod_ips_known else self.observed_plan()
        pods = {p.name for p in plan.pods}
        if name in pods:
            found = plan.pod(name).ip_of(fam)  # type: ignore[arg-type]
        elif name in {n.name for n in plan.nodes}:
            found = plan.node(name).address_of(fam)  # type: ignore[arg-type]
        else:
            raise InputError(f"no pod or node {name!r} in lab {self.name}")
        if found is None:
            raise InputError(f"{name} has no IPv{family} address")
        return found

    # ------------------------------------------------------------------ faults

    def fault(self, what: str, target: str, **params: float | str | None) -> Any:
        """Break something at run time: `link-down`/`link-up`/`netem`/`netem-clear` take
        an endpoint `A:IF`, `node-stop`/`node-start`/`daemon-kill`/`daemon-start` a node
        name. `netem` takes `delay_ms`, `jitter_ms`, `loss_pct`, `rate_kbit`. The Service
        faults (harness.lab.svcfaults): `svc-dnat-elsewhere` a Service port `NAME[:PORT]`
        with `node` and `at`, `svc-no-masq` a node, `svc-local-as-cluster` a Service,
        `svc-restore` nothing (""). Returns what the fault reports (node-start: the veths
        re-created; netem: how the impairment was applied; daemon-kill: the daemon's pid;
        it takes `family`, ipv4 or ipv6, to kill that family's daemon only, or `daemon`,
        a user's FRR daemon such as "bgpd", which daemon-start also takes)."""
        actions = {"link-down": faults.link_down, "link-up": faults.link_up,
                   "node-stop": faults.node_stop, "node-start": faults.node_start,
                   "daemon-kill": faults.daemon_kill, "daemon-start": faults.daemon_start,
                   "netem": faults.netem, "netem-clear": faults.netem_clear,
                   "svc-dnat-elsewhere": svcfaults.dnat_elsewhere,
                   "svc-no-masq": svcfaults.no_masq,
                   "svc-local-as-cluster": svcfaults.local_as_cluster,
                   "svc-restore": svcfaults.restore}
        if what not in actions:
            raise InputError(f"unknown fault {what!r}; one of {', '.join(FAULTS)}")
        if params and what not in ("netem", "svc-dnat-elsewhere", "daemon-kill",
                                   "daemon-start"):
            raise InputError(f"fault {what} takes no parameters")
        return actions[what](self.plan, target, **params)
