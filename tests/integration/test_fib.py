"""The FIB reader on a real lab: the forwarding tables podlab installed on the dual-stack
example (static routes, both families), read over netlink and walked, give the plan's
own paths, pod by pod; a pulled cable turns the walk into a blackhole named where the
packet dies; a route that sends a prefix back where it came from is found as a loop.

One lab, a unique name, destroyed on exit; each test undoes its fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.host import fib, wiring
from harness.lab import unique_name
from harness.model.variants import load_variant
from harness.plan.fibwalk import Fabric, leaves_of, links_of, walk

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "topologies" / "dual.clab.yml"


@pytest.fixture(scope="module")
def lab(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(load_variant(DUAL, {}, name=unique_name("fib"))) as deployed:
        yield deployed


def fabric(lab: Lab) -> Fabric:
    pids = lab.pids()
    nodes = {n.name: pids[n.name] for n in lab.plan.nodes if n.kind != "switch"}
    return fib.read_all(nodes, links_of(lab.plan), leaves_of(lab.plan))


def test_the_tables_podlab_installed_walk_the_plans_paths_in_both_families(lab: Lab) -> None:
    plan, tables = lab.plan, fabric(lab)
    assert set(tables.fibs["node1"].forwards) == {"ipv4", "ipv6"}
    assert not tables.fibs["world"].forwards  # an outside host does not route
    walked = 0
    for a in plan.pods:
        for b in plan.pods:
            for family in plan.shared_families(a.name, b.name):
                if a.name == b.name:
                    continue
                want = plan.pod_to_pod(a.name, b.name, family).path
                w = walk(tables, a.node, b.ip_of(family) or "")
                assert w.ok, w
                assert w.nodes == (*want, b.name), (a.name, b.name, family)
                walked += 1
    assert walked == len(plan.pods) * (len(plan.pods) - 1) * 2


def test_a_pulled_cable_is_a_blackhole_where_the_packet_dies(lab: Lab) -> None:
    plan = lab.plan
    far = next(p for p in plan.pods if p.node == "node3")
    lab.fault("link-down", "r1:eth2")
    try:
        for family in plan.families:
            w = walk(fabric(lab), "node1", far.ip_of(family) or "")
            assert w.stop is not None and w.stop.kind == "blackhole", w
            assert w.stop.node == "r1" and [h.node for h in w.stop.hops] == ["node1"]
    finally:
        lab.fault("link-up", "r1:eth2")
    assert walk(fabric(lab), "node1", far.ip).ok


def test_a_route_back_where_the_packet_came_from_is_a_loop(lab: Lab) -> None:
    plan = lab.plan
    far = next(p for p in plan.pods if p.node == "node3")
    r1 = lab.pids()["r1"]
    node1 = plan.node("node1").address_on(plan.node("r1").interfaces[0].segment)
    cidr = plan.node("node3").pod_cidr or ""
    wiring.delete_route(r1, cidr)
    wiring.configure(r1, wiring.NetConfig(routes=((cidr, node1 or ""),)))
    try:
        w = walk(fabric(lab), "node1", far.ip)
        assert w.stop is not None and (w.stop.kind, w.stop.node) == ("loop", "node1"), w
        assert "node1 > r1 > node1" in w.stop.reason
    finally:
        planned = next(r.via for r in plan.node("r1").routes if r.dst == cidr)
        wiring.delete_route(r1, cidr)
        wiring.configure(r1, wiring.NetConfig(routes=((cidr, planned),)))
    assert walk(fabric(lab), "node1", far.ip).ok
