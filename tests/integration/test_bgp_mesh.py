"""Calico's BGP on a real lab: `routing: bgp` in its default node-mesh mode
(topologies/mesh.clab.yml: four k8s-nodes behind two routers, dual-stack).

Every pod route of a k8s-node is BIRD's, each node has an iBGP session with every other in
each family (`bird` and `bird6`, one daemon per family as Calico runs them), each
announces its block (a blackhole route BGP exports), and the lab verifies. Killing one
node's IPv4 daemon is predicted as graceful restart makes it: at once nothing moves (its
peers keep its IPv4 routes as stale), and after the restart time (5 s) exactly the IPv4
pairs with an end on that node's pods fail while every IPv6 result still passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.datapath import bgp, bgpconf
from harness.host import bird, wiring
from harness.lab import unique_name
from harness.model.variants import load_variant
from harness.prove import noroute

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "topologies" / "mesh.clab.yml"
PAIRS = ["pod-to-pod", "node-to-pod", "pod-to-node"]


@pytest.fixture(scope="module")
def lab(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(load_variant(MESH, name=unique_name("mesh"))) as running:
        yield running


def test_every_pod_route_is_birds_and_the_underlay_the_plans(lab: Lab) -> None:
    plan, pids = lab.plan, lab.pids()
    want = bgpconf.expected_routes(plan)
    installed = {n: bgp.bird_routes(pids[n]) for n in want.by_node}
    assert want.missing(installed) == [] and want.unexpected(installed) == []
    pods = {c for n in plan.k8s_nodes for c in n.pod_cidrs}
    for node in plan.k8s_nodes:
        theirs = {c for c in pods if c not in node.pod_cidrs}
        assert set(installed[node.name]) == theirs, node.name  # both families
        routed = {dst for dst, via, _ in wiring.routes(pids[node.name]) if via}
        assert routed == theirs | {dst for dst, _ in bgpconf.underlay_routes(plan, node)}
    for router in ("r1", "r2"):  # no BGP there: the plan's static routes
        assert not bird.configured(pids[router]) and bgp.bird_routes(pids[router]) == {}


def test_an_ibgp_session_between_every_pair_of_nodes_in_each_family(lab: Lab) -> None:
    nodes = {n["name"]: n for n in lab.inspect()["nodes"]}
    names = [n.name for n in lab.plan.k8s_nodes]
    for name in names:
        state = nodes[name]["bgp"]
        assert state["daemons"] == {"bird": True, "bird6": True}
        for daemon in ("bird", "bird6"):
            sessions = [s for s in state["sessions"] if s["daemon"] == daemon]
            assert len(sessions) == len(names) - 1, (name, daemon)
            assert all(s["info"] == "Established" and s["name"].startswith("Mesh_")
                       for s in sessions), sessions


def test_each_node_exports_its_block_as_a_blackhole(lab: Lab) -> None:
    pids = lab.pids()
    for node in lab.plan.k8s_nodes:
        for daemon, cidr in zip(("bird", "bird6"), node.pod_cidrs, strict=True):
            text = "\n".join(r.text for r in bird.command(
                pids[node.name], "show route all where source = RTS_STATIC", daemon=daemon))
            assert cidr in text and "blackhole" in text, (node.name, daemon, text)
            # and every other node learned it from this one
            for other in lab.plan.k8s_nodes:
                if other.name != node.name:
                    assert cidr in bgp.bird_routes(pids[other.name]), (other.name, cidr)


def test_the_mesh_lab_verifies(lab: Lab) -> None:
    report = lab.verify()
    assert report.ok, [f"{r.family} {r.detail}" for r in report.results if not r.ok]
    assert any("BGP routes converged" in n for n in report.notes)


def test_a_killed_ipv4_daemon_fails_its_ipv4_pairs_after_graceful_restart_only(
        lab: Lab) -> None:
    plan = lab.plan
    v4, v6 = plan.node("node3").pod_cidrs
    node1 = lab.pids()["node1"]
    lab.fault("daemon-kill", "node3", family="ipv4")
    try:
        killed = time.monotonic()
        assert not bird.alive(lab.pids()["node3"]) and bird.alive(lab.pids()["node3"],
                                                                    "bird6")
        # graceful restart: the peers keep node3's IPv4 block (stale) for its restart time
        assert v4 in bgp.bird_routes(node1)
        while v4 in bgp.bird_routes(node1) and time.monotonic() - killed < 30:
            time.sleep(0.1)
        took = time.monotonic() - killed
        assert v4 not in bgp.bird_routes(node1) and v6 in bgp.bird_routes(node1)
        assert took >= bgpconf.GR_TIME - 1.5, took  # not at once: after the restart time
        report = lab.verify(checks=PAIRS)
        dead = frozenset({("node3", "ipv4")})
        tables = bgpconf.predicted_tables(plan, dead=dead)
        predicted = {(c, e.family, e.src, e.dst) for c, e in plan.expectations()
                     if c in PAIRS and noroute.diagnose(plan, e.path, e.dst_ip, e.src_ip,
                                                        tables)}
        got = {(r.check, r.family, r.src, r.dst) for r in report.results if not r.ok}
        assert predicted and got == predicted
        assert {f for _, f, _, _ in got} == {"ipv4"}
        on_node3 = {p.name for p in plan.pods if p.node == "node3"}
        assert all({src, dst} & on_node3 for _, _, src, dst in got)
        assert any(r.family == "ipv6" and r.ok for r in report.results)
    finally:
        lab.fault("daemon-start", "node3")
    assert lab.verify(checks=PAIRS).ok


def test_route_reflectors_reflect_every_block_and_the_lab_verifies(
        docker_available: None) -> None:
    """The same lab with `mode: route-reflectors`, r1 and node3 reflecting: r1 speaks BGP
    (a session with every node, the nodes its clients), the other nodes peer with the
    reflectors only, and every block still reaches every node."""
    sets = {"bgp": {"mode": "route-reflectors", "reflectors": ["r1", "node3"]}}
    with Lab.deploy(load_variant(MESH, sets, name=unique_name("rr"))) as rr:
        plan, pids = rr.plan, rr.pids()
        want = bgpconf.expected_routes(plan)
        installed = {n: bgp.bird_routes(pids[n]) for n in want.by_node}
        assert want.missing(installed) == [] and want.unexpected(installed) == []
        assert set(installed["r1"]) == {c for n in plan.k8s_nodes for c in n.pod_cidrs}
        nodes = {n["name"]: n for n in rr.inspect()["nodes"]}
        r1 = [s for s in nodes["r1"]["bgp"]["sessions"] if s["daemon"] == "bird"]
        assert len(r1) == 4 and all(s["info"] == "Established" for s in r1)
        node1 = [s for s in nodes["node1"]["bgp"]["sessions"] if s["daemon"] == "bird"]
        assert len(node1) == 2 and all(s["name"].startswith("Node_") for s in node1)
        assert nodes["r2"].get("bgp") is None  # not a reflector: static routes, no BIRD
        report = rr.verify(checks=PAIRS)
        assert report.ok, [f"{r.family} {r.detail}" for r in report.results if not r.ok]
