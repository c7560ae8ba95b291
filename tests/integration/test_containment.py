"""Containment on every example topology: nothing privileged, no Docker network, and no
route in any lab namespace that leads out of the lab."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.host import runtime, wiring
from harness.model.topology import Topology, load_topology
from harness.plan import Plan, make_plan

pytestmark = pytest.mark.docker

TOPOLOGIES = sorted((Path(__file__).resolve().parents[2] / "topologies").glob("*.clab.yml"))


@pytest.fixture(params=TOPOLOGIES, ids=lambda p: p.name.split(".")[0])
def deployed(request: pytest.FixtureRequest, docker_available: None) -> Iterator[Plan]:
    topo = load_topology(request.param)
    name = f"itc{uuid.uuid4().hex[:6]}"
    plan = make_plan(Topology(topo.spec.model_copy(update={"name": name}), topo.path))
    with Lab.deploy(plan) as lab:
        yield lab.observed_plan()  # a CNI's pods have the plugins' addresses


def plan_addresses(plan: Plan) -> set[str]:
    """Every address of the plan, in every family."""
    out = {ip for p in plan.pods for ip in p.ips}
    for n in plan.nodes:
        out |= set(n.own_addresses)
    for v in plan.links:  # a user's router's link addresses too (its own config's)
        out |= {a.split("/")[0] for a in (*v.a_addresses, *v.b_addresses)}
    return out


def test_no_container_is_privileged_or_on_a_docker_network(deployed: Plan) -> None:
    rows = runtime.containers_of(deployed.lab)
    assert len(rows) == len(deployed.containers)
    users = {n.container: n for n in deployed.nodes if n.run is not None}
    for row in rows:
        host = runtime.inspect(row.id)["HostConfig"]
        assert host["Privileged"] is False, row.name
        mode = host["NetworkMode"]
        assert mode == "none" or mode.startswith("container:"), (row.name, mode)
        assert not host.get("PortBindings"), row.name
        # containerlab's Docker client writes them CAP_NET_ADMIN: the same capability
        caps = {c.removeprefix("CAP_") for c in host.get("CapAdd") or ()}
        # a user's node (its own image and config, as containerlab runs it) may also have
        # SYS_ADMIN, in place of containerlab's privileged mode, and its file's cap-add
        allowed = {"NET_ADMIN", "NET_RAW"}
        if row.name in users:
            allowed |= set(users[row.name].run.cap_add)  # usernodes.USER_CAPS and its own
        assert caps <= allowed, (row.name, caps)


def test_no_route_leaves_the_lab(deployed: Plan) -> None:
    plan = deployed
    pids = Lab(plan).container_pids()
    inside = plan_addresses(plan)
    held = {a.split("/")[0] for n in plan.nodes if n.container in pids
            for addrs in wiring.addresses(pids[n.container]).values() for a in addrs}
    for node in plan.nodes:
        # routing: fabric's only default route: the one the plan gives a k8s-node, to the
        # far end of its first link toward a user's router, an address a lab node holds
        planned = {r.via for r in node.routes if r.dst in ("0.0.0.0/0", "::/0")}
        for dst, gw, dev in wiring.routes(pids[node.container]):
            if dst == "default":
                assert gw in planned and gw in held, \
                    f"{node.name} has a default route via {gw} {dev}"
                continue
            if gw:
                assert gw in inside, f"{node.name}: route {dst} via {gw} leaves the lab"
    for pod in plan.pods:
        if pod.host_network:
            continue  # its node's namespace: its routes are the node's, checked above
        routes = wiring.routes(pids[pod.infra])
        defaults = [(gw, dev) for dst, gw, dev in routes if dst == "default"]
        # one default route per family, via the node's bridge
        assert sorted(defaults) == sorted((g, "eth0") for g in pod.gateways), (pod.name, routes)
        node = plan.node(pod.node)
        assert [g.split("/")[0] for g in node.gateways] == list(pod.gateways)
        for dst, gw, _ in routes:
            if dst != "default":  # on-link, or via its gateway (CNI ptp's point-to-point)
                net = ipaddress.ip_network(dst)
                assert gw in (None, *pod.gateways) and any(
                    net.subnet_of(ipaddress.ip_network(c))  # type: ignore[arg-type]
                    for c in node.pod_cidrs if ipaddress.ip_network(c).version == net.version
                ), (pod.name, dst)
