"""A running lab, found by its Docker labels alone: destroy, inspect, pids, exec.

A lab's whole state is its containers' Docker labels (no state file), so these work from a
lab name alone, after a crash too.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness import datapath
from harness import labels as L
from harness.datapath import cni
from harness.datapath.iptables import count_saved
from harness.errors import LabNotFoundError, PodlabError, RoutingError
from harness.host import bird, containerlab, faultlog, firewall, runtime, wiring
from harness.host.runtime import ContainerInfo
from harness.labels import ROLE_CONTAINER, ROLE_INFRA, ROLE_NODE
from harness.plan import Plan

# --------------------------------------------------------------------------- the plan


def live(plan: Plan) -> Plan:
    """The plan as the running lab has it: with a CNI datapath, the addresses its
    plugins gave the pods (read back from their results), and the Services' endpoints
    at those addresses; else the plan itself."""
    if plan.pod_ips_known:
        return plan
    return datapath.select(plan).observed(plan)


# --------------------------------------------------------------------------- destroy


def destroy(lab: str | None, all_labs: bool = False) -> list[str]:
    """Remove every container of `lab` (of every lab with `all_labs`), in parallel.

    A lab wired by CNI plugins first gets a DEL for every pod its state directory records
    (while the namespaces still exist), and the directory (IPAM leases) goes after. A lab
    whose nodes containerlab made goes through `containerlab destroy --cleanup` (the
    rest, its pods, as always). Returns the names removed, sorted; a second call is a
    no-op returning [].
    """
    if not all_labs and lab is None:
        raise LabNotFoundError("destroy needs a lab name (or --all)")
    found = runtime.containers_of(None if all_labs else lab)
    labs = {r.lab for r in found if r.lab} | ({lab} if lab else set())
    for name in sorted(labs):
        release_network_state(name, [r for r in found if r.lab == name])
        faultlog.forget(name)
    if all_labs:
        for name in cni.labs_with_state():  # their containers are gone already
            release_network_state(name, [])
        faultlog.forget_all()
    removed = sorted(_remove(found, lab, labs, all_labs))
    for name in sorted(labs):  # a management network, once no container is on it
        runtime.remove_networks(runtime.networks_of(name))
    return removed


def _remove(found: list[ContainerInfo], lab: str | None, labs: set[str],
            all_labs: bool) -> list[str]:
    """The containers: those containerlab made through `containerlab destroy`, the rest
    (and whatever it left) through Docker."""
    by_clab = [name for name in sorted(labs | set(containerlab.labs_with_state()
                                                   if all_labs else ()))
               if containerlab.has_state(name)]
    if not by_clab:
        return runtime.remove_many(found)
    failed: PodlabError | None = None
    for name in by_clab:
        try:
            containerlab.destroy(name)
        except containerlab.ContainerlabMissing:
            pass  # containerlab is gone since: Docker removes its nodes below
        except PodlabError as exc:
            failed = failed or exc
    left = runtime.containers_of(None if all_labs else lab)
    ids = {r.id for r in left}
    removed = [r.name for r in found if r.id not in ids] + runtime.remove_many(left)
    if failed is not None:  # everything is removed; say what containerlab said
        raise failed
    return removed


def release_network_state(lab: str, rows: list[ContainerInfo] | None = None) -> list[str]:
    """What a lab keeps outside its containers: a CNI datapath's attachments get their
    DEL (from the node's namespace, where the node still runs) and the lab's state
    directory is removed. Returns the DELs that failed (destroy goes on regardless)."""
    if not cni.has_state(lab):
        return []
    rows = runtime.containers_of(lab) if rows is None else rows
    try:
        pids = runtime.pids_of(rows)
    except PodlabError:
        pids = {}
    nodes = {r.labels.get(L.NODE, ""): pids[r.name] for r in rows
             if r.role == ROLE_NODE and r.name in pids}
    infras = {r.id: pids[r.name] for r in rows if r.role == ROLE_INFRA and r.name in pids}
    return cni.remove_state(lab, nodes, infras)


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
    return _inspect_lab(lab, require_lab(lab))


def require_lab(lab: str, *, any_one: bool = False) -> list[ContainerInfo]:
    """The lab's containers (with `any_one`, one of them: a 600-container listing costs
    the daemon a few tenths of a second); LabNotFoundError when none is there."""
    rows = runtime.containers_of(lab, limit=1 if any_one else -1)
    if not rows:
        raise LabNotFoundError(f"lab {lab!r} is not deployed (podlab inspect --all lists labs)")
    return rows


def _order(row: ContainerInfo) -> tuple[int, str]:
    try:
        return int(row.labels.get(L.ORDER, "0")), row.name
    except ValueError:
        return 0, row.name


def _inspect_lab(lab: str, rows: list[ContainerInfo]) -> dict[str, Any]:
    nodes = sorted((r for r in rows if r.role == ROLE_NODE), key=_order)
    pids = runtime.pids_of(nodes)
    with ThreadPoolExecutor(max_workers=runtime.WORKERS) as pool:
        addrs = list(pool.map(lambda r: _live_addresses(pids.get(r.name)), nodes))
        rules = list(pool.map(lambda r: _live_rules(
            pids.get(r.name), ":" in (r.labels.get(L.POD_CIDRS) or r.labels.get(L.POD_CIDR)
                                      or "")) if r.labels.get(L.POD_CIDR) else None, nodes))
        routing = list(pool.map(lambda r: _routing(pids.get(r.name)), nodes))
    out_nodes = [{"name": r.labels.get(L.NODE, r.name), "kind": r.labels.get(L.KIND, ""),
                  "container": r.name, "state": r.state, "addresses": a,
                  "pod_cidr": r.labels.get(L.POD_CIDR),
                  "pod_cidrs": _listed(r.labels.get(L.POD_CIDRS) or r.labels.get(L.POD_CIDR)),
                  **({"service_rules": n} if n is not None else {}),
                  **({"bgp": bgp} if bgp is not None else {})}
                 for r, a, n, bgp in zip(nodes, addrs, rules, routing, strict=True)]
    pods = []
    assigned = cni.pod_addresses(lab)  # a CNI plugin's latest result, where one wired them
    for r in sorted((r for r in rows if r.role == ROLE_INFRA), key=_order):
        pod = r.labels.get(L.POD, "")
        members = sorted((c for c in rows if c.role == ROLE_CONTAINER
                          and c.labels.get(L.POD) == pod), key=_order)
        # the plan's address is on the infra container; a CNI's, given after the infra
        # started, is in its result and on the pod's containers (started after the ADD)
        given = [a.split("/")[0] for a in assigned.get(pod, ())]
        ip = next((c.labels[L.IP] for c in members if given and c.labels.get(L.IP) in given),
                  None) or next(iter(given), None) or r.labels.get(L.IP) or next(
            (c.labels[L.IP] for c in members if c.labels.get(L.IP)), None)
        ips = given or _listed(r.labels.get(L.IPS))
        if ip and ip in ips:  # the primary family's first, as the labels have it
            ips = [ip, *(a for a in ips if a != ip)]
        pods.append({"name": pod, "node": r.labels.get(L.NODE, ""),
                     "ip": ip.split("/")[0] if ip else None,
                     "ips": ips or ([ip.split("/")[0]] if ip else []),
                     "infra": r.name, "state": r.state,
                     "containers": [{"name": c.labels.get(L.CONTAINER, c.name),
                                     "container": c.name, "state": c.state}
                                    for c in members]})
    return {"lab": lab, "nodes": out_nodes, "pods": pods}


def _listed(value: str | None) -> list[str]:
    """A comma-separated label (one value per family) as a list."""
    return value.split(",") if value else []


def _routing(pid: int | None) -> dict[str, Any] | None:
    """A node's BIRD daemons, when configured there (routing: bgp; `bird` and, with IPv6,
    `bird6`): their sessions and the routes they learned, best first, with their AS
    paths; `running: false` when one died (`daemons` says which)."""
    if not pid:
        return None
    names = [d for d in (bird.DAEMON, bird.DAEMON6) if bird.configured(pid, d)]
    if not names:
        return None
    out: dict[str, Any] = {"running": True, "daemons": {}, "sessions": [], "routes": []}
    for name in names:
        try:
            sessions = [p for p in bird.protocols(pid, name) if p.proto == "BGP"]
            routes = bird.bgp_routes(pid, name)
        except RoutingError as exc:
            out["running"] = False
            out["error"] = str(exc)
            out["daemons"][name] = False
            continue
        out["daemons"][name] = True
        out["sessions"] += [{"name": p.name, "state": p.state, "info": p.info,
                             "since": p.since, "daemon": name} for p in sessions]
        out["routes"] += [{"prefix": r.prefix, "via": r.via, "iface": r.iface,
                           "session": r.protocol, "best": r.best, "as_path": list(r.as_path)}
                          for r in sorted(routes, key=lambda r: (r.prefix, not r.best))]
    return out


def _live_addresses(pid: int | None) -> dict[str, list[str]]:
    """Addresses (IPv4, then IPv6 without link-local ones) by interface, without lo and
    address-less ports ({} if stopped)."""
    if not pid:
        return {}
    try:
        found = wiring.addresses(pid)
    except PodlabError:
        return {}  # the container stopped between list and read
    return {name: cidrs for name, cidrs in sorted(found.items()) if name != "lo" and cidrs}


def _live_rules(pid: int | None, ipv6: bool = False) -> dict[str, int] | None:
    """kube-proxy's and portmap's rules counted in a k8s-node's live iptables (and, on a
    node with IPv6 pods, ip6tables: the sum of both families)."""
    if not pid:
        return None
    try:
        if not ipv6:
            return count_saved(firewall.saved(pid))
        counts = [count_saved(firewall.saved(pid, 4)), count_saved(firewall.saved(pid, 6))]
        return {k: sum(c[k] for c in counts) for k in counts[0]}
    except PodlabError:
        return None  # stopped meanwhile, or no iptables on the host


# --------------------------------------------------------------------------- pids / exec


def pids(lab: str) -> dict[str, int]:
    """`{container name: host pid}` of every running container of the lab."""
    return runtime.pids_of(require_lab(lab))


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
        members = [r for r in members if r.labels.get(L.CONTAINER) == container]
        if not members:
            names = [r.labels.get(L.CONTAINER) for r in rows if r.role == ROLE_CONTAINER]
            raise LabNotFoundError(f"no container {container!r} in pod {pod!r} of lab {lab!r}"
                                   f" (has: {', '.join(n for n in names if n) or 'none'})")
    if members:
        return members[0].name
    infra = [r for r in rows if r.role == ROLE_INFRA]
    if not infra:
        raise LabNotFoundError(f"no pod {pod!r} in lab {lab!r}")
    return infra[0].name  # a pod without containers: its infra holds the netns
