"""`cluster.bgp.mode`: node-mesh (Calico's default), route-reflectors and per-link, pure:
who speaks, who peers with whom, the bird.conf of each daemon, and the routes BIRD
converges to."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from podlab_unit_helpers import bird_binary, problems_of

from harness.datapath import bgpconf, describe
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "topologies" / "mesh.clab.yml"
TEXT = MESH.read_text()


def mesh(extra: str = "") -> Plan:
    return make_plan(parse_topology(TEXT.replace("  routing: bgp\n",
                                                 f"  routing: bgp\n{extra}")))


def test_node_mesh_is_the_default_and_its_as_calicos() -> None:
    plan = make_plan(load_topology(MESH))
    assert (plan.bgp_mode, plan.bgp_as, plan.bgp_reflectors) == ("node-mesh", 64512, ())
    assert plan.to_dict(with_paths=False)["bgp"] == {"mode": "node-mesh", "as": 64512,
                                                     "reflectors": []}
    assert "bgp" not in make_plan(load_topology(ROOT / "topologies" / "flat3.clab.yml")
                                  ).to_dict(with_paths=False)  # static routing: none


def test_node_mesh_speakers_are_the_k8s_nodes_each_peering_with_every_other() -> None:
    plan = mesh("  bgp: {as: 65010}\n")
    sps = {s.node: s for s in bgpconf.speakers(plan)}
    assert sorted(sps) == ["node1", "node2", "node3", "node4"]  # routers do not speak
    for name, sp in sps.items():
        assert sp.asn == 65010 and all(s.peer_as == 65010 for s in sp.sessions)
        for family in ("ipv4", "ipv6"):
            peers = {s.peer for s in sp.sessions_of(family)}
            assert peers == set(sps) - {name}, (name, family)
        for s in sp.sessions:  # multihop, between the nodes' own addresses
            assert s.multihop and s.interface == ""
            assert s.local_ip == plan.node(name).address_of(s.family)
            assert s.peer_ip == plan.node(s.peer).address_of(s.family)
            assert s.name == "Mesh_" + s.peer_ip.replace(".", "_").replace(":", "_")


def test_node_mesh_bird_conf_is_calicos_in_bird2s_words(tmp_path: Path) -> None:
    plan = mesh()
    sp = next(s for s in bgpconf.speakers(plan) if s.node == "node1")
    v4 = bgpconf.bird_conf(sp, plan.lab, family="ipv4")
    v6 = bgpconf.bird_conf(sp, plan.lab, family="ipv6")
    assert "define PODLAB_POOLS = [ 10.244.0.0/16+ ];" in v4 and "ipv6" not in v4
    assert "define PODLAB_POOLS6 = [ fd00:10:244::/56+ ];" in v6 and "ipv4" not in v6
    # the node's block: a blackhole that BGP exports
    assert "protocol static pods {\n  ipv4;\n  route 10.244.0.0/24 blackhole;\n}" in v4
    for text in ("  local as 64512;", "  multihop;", "  graceful restart on;",
                 f"  graceful restart time {bgpconf.GR_TIME};", "  learn;",
                 "  merge paths on;",
                 "  ipv4 { import all; export where net ~ PODLAB_POOLS && (source = RTS_STATIC"
                 " || source = RTS_BGP); gateway recursive; };"):
        assert text in v4, text
    assert v4.count("\nprotocol bgp Mesh_") == 3 == v6.count("\nprotocol bgp Mesh_")
    bird = bird_binary()
    for name, text in (("bird.conf", v4), ("bird6.conf", v6)):
        (tmp_path / name).write_text(text)
        done = subprocess.run([bird, "-p", "-c", str(tmp_path / name)], capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_node_mesh_routes_resolve_over_the_static_underlay() -> None:
    plan = mesh()
    routes = bgpconf.expected_routes(plan).by_node
    assert set(routes) == {"node1", "node2", "node3", "node4"}
    for node in plan.k8s_nodes:
        want = {c for n in plan.k8s_nodes if n.name != node.name for c in n.pod_cidrs}
        assert set(routes[node.name]) == want
        for r in node.routes:  # the same next hop the static plan takes
            if r.dst in want:
                assert routes[node.name][r.dst] == {r.via}, (node.name, r)
    net = describe(plan)
    # a node keeps the plan's underlay routes only, a router all of the plan's
    node1 = net.node("node1")
    assert {dst for dst, *_ in node1.routes} == {
        r.dst for r in plan.node("node1").routes} - {c for n in plan.k8s_nodes
                                                      for c in n.pod_cidrs}
    assert net.node("r1").routes == tuple((r.dst, r.via) for r in plan.node("r1").routes)
    assert net.node("r1").daemons == () and net.node("r1").ready_routes == ()
    assert [d.name for d in node1.daemons] == ["bird", "bird6"]


def test_a_dead_ipv4_daemon_withdraws_its_ipv4_block_only() -> None:
    plan = mesh()
    v4, v6 = plan.node("node3").pod_cidrs
    routes = bgpconf.expected_routes(plan, dead=frozenset({("node3", "ipv4")})).by_node
    for other in ("node1", "node2", "node4"):
        assert v4 not in routes[other] and v6 in routes[other]
    tables = bgpconf.predicted_tables(plan, dead=frozenset({("node3", "ipv4")}))
    assert v4 not in tables["node1"] and v6 in tables["node1"]
    assert v4 in tables["r1"]  # the routers' static routes stay


def test_route_reflectors_peer_every_speaker_with_the_reflectors_only() -> None:
    plan = mesh("  bgp: {mode: route-reflectors, reflectors: [r1, node3]}\n")
    sps = {s.node: s for s in bgpconf.speakers(plan)}
    assert sorted(sps) == ["node1", "node2", "node3", "node4", "r1"]  # r2 does not speak
    assert {s.peer for s in sps["node1"].sessions} == {"r1", "node3"}
    assert {s.peer for s in sps["r1"].sessions} == {"node1", "node2", "node3", "node4"}
    assert {s.peer for s in sps["r1"].sessions if s.rr_client} == {"node1", "node2", "node4"}
    assert all(s.name.startswith("Node_") for sp in sps.values() for s in sp.sessions)
    conf = bgpconf.bird_conf(sps["r1"], plan.lab, family="ipv4")
    assert conf.count("  rr client;") == 3
    routes = bgpconf.expected_routes(plan).by_node
    # node1 learns node4's block through a reflector, via its own next hop toward node4
    assert routes["node1"][plan.node("node4").pod_cidr] == {"172.31.0.3"}
    # with node3's IPv4 daemon dead, r1 still reflects: nothing but node3's block goes
    dead = bgpconf.expected_routes(plan, dead=frozenset({("node3", "ipv4")})).by_node
    assert set(dead["node1"]) == set(routes["node1"]) - {plan.node("node3").pod_cidr}


@pytest.mark.parametrize(("extra", "path", "message"), [
    ("  bgp: {mode: route-reflectors}\n", "cluster.bgp.reflectors", "at least one"),
    ("  bgp: {reflectors: [r1]}\n", "cluster.bgp.reflectors", "apply to mode"),
    ("  bgp: {mode: route-reflectors, reflectors: [sw1]}\n", "cluster.bgp.reflectors[0]",
     "is a switch"),
    ("  bgp: {mode: route-reflectors, reflectors: [nope]}\n", "cluster.bgp.reflectors[0]",
     "no node 'nope'"),
    ("  bgp: {mode: full-mesh}\n", "cluster.bgp.mode", ""),
    ("  bgp: {as: 0}\n", "cluster.bgp.as", ""),
])
def test_bad_bgp_settings_are_refused_with_their_path(extra: str, path: str,
                                                      message: str) -> None:
    _, problems = problems_of(TEXT.replace("  routing: bgp\n", f"  routing: bgp\n{extra}"))
    assert [p.path for p in problems] == [path], problems
    assert message in problems[0].message


def test_a_recorded_kill_of_one_family_explains_that_daemon_only() -> None:
    from harness.datapath import bgp
    from harness.host import faultlog

    plan = mesh()
    killed = faultlog.Faults(daemons=frozenset({"node3/ipv4"}))
    assert bgp.unexplained(plan, frozenset(), frozenset({("node3", "ipv4")}), killed) == []
    assert bgp.unexplained(plan, frozenset(), frozenset({("node3", "ipv4"), ("node3", "ipv6")}),
                           killed) == ["bird6 of node3 is not running"]
    assert bgp.unexplained(plan, frozenset(), frozenset({("node2", "ipv4"), ("node2", "ipv6")}),
                           killed) == ["BIRD of node2 is not running"]
    whole = faultlog.Faults(daemons=frozenset({"node2"}))
    assert bgp.unexplained(plan, frozenset(), frozenset({("node2", "ipv6")}), whole) == []
