"""routing: bgp on real labs: BIRD learns every route, routes move after a cable is pulled
and verify expects the new paths, a killed daemon fails exactly the pairs that lost their
route, and the same cable pulled on a static lab fails exactly the pairs that crossed it.
The same in both families: the dual-stack and IPv6-only examples deploy with BGP and
verify in every family, and faults move (or cut) IPv6 routes exactly as IPv4 ones.

Each lab has a unique name and is destroyed on exit; each test undoes its fault.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.datapath import bgp, bgpconf
from harness.errors import InputError, RoutingError
from harness.host import bird, runtime, wiring
from harness.lab import unique_name
from harness.model.topology import parse_topology
from harness.model.variants import load_variant
from harness.plan import Plan, make_plan
from harness.prove import noroute
from harness.prove.verify import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
RING = ROOT / "topologies" / "ring.clab.yml"
LEAFSPINE = ROOT / "topologies" / "leafspine.clab.yml"
DUAL = ROOT / "topologies" / "dual.clab.yml"
V6ONLY = ROOT / "topologies" / "v6only.clab.yml"
DUAL_SETS = {"pod-cidr": ["10.244.0.0/16", "fd00:10:244::/56"],
             "underlay-cidr": ["172.31.0.0/16", "fd00:172:31::/48"]}
PAIRS = ["pod-to-pod", "node-to-pod", "pod-to-node"]


def plan_of(path: Path, routing: str | None = None) -> Plan:
    """The example under a unique name (and another routing when asked)."""
    text = path.read_text()
    if routing:
        text = text.replace("routing: bgp", f"routing: {routing}")
    topo = parse_topology(text, path)
    name = unique_name(topo.spec.name)
    return make_plan(parse_topology(text.replace(f"name: {topo.spec.name}", f"name: {name}",
                                                 1), path))


def bgp_lab(path: Path, **sets: object) -> Lab:
    """The example with routing: bgp in per-link mode (eBGP on every link: the routers
    speak BGP too; and the other cluster keys given), under a unique name."""
    return Lab.deploy(load_variant(path, {"routing": "bgp", "bgp": {"mode": "per-link"},
                                          **sets},
                                   name=unique_name(path.name.split(".")[0])))


def failed(report: Report) -> set[tuple[str, str, str]]:
    return {(r.check, r.src, r.dst) for r in report.results if not r.ok}


def hops(report: Report, check: str, src: str, dst: str) -> set[int]:
    return {r.expected["hops"] for r in report.results
            if (r.check, r.src, r.dst) == (check, src, dst)}


def crossing(plan: Plan, a: str, b: str) -> set[tuple[str, str, str]]:
    """Pairs whose request or reply path has the hop a-b (either way): they cross that
    link. A pod's reply takes the plan's path back, which may be the other of two equal
    ones (static routes are chosen per destination)."""
    out = set()
    for check, exp in plan.expectations():
        if check not in PAIRS:
            continue
        back = (plan.pod_to_pod(exp.dst, exp.src).path if check == "pod-to-pod"
                else tuple(reversed(exp.path)))
        if any({x, y} == {a, b} for path in (exp.path, back)
               for x, y in itertools.pairwise(path)):
            out.add((check, exp.src, exp.dst))
    return out


@pytest.fixture(scope="module")
def ring(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(plan_of(RING)) as lab:
        yield lab


@pytest.fixture(scope="module")
def leafspine(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(plan_of(LEAFSPINE)) as lab:
        yield lab


# --------------------------------------------------------------------------- deploy


def test_every_route_is_birds_and_none_is_installed_by_hand(leafspine: Lab) -> None:
    pids = leafspine.pids()
    want = bgpconf.expected_routes(leafspine.plan)
    installed = {n: bgp.bird_routes(pids[n]) for n in want.by_node}
    assert want.missing(installed) == [] and want.unexpected(installed) == []
    for node in leafspine.plan.nodes:
        if bgpconf.is_speaker(node):  # every route not connected is `proto bird`
            learned = {dst for dst, via, _ in wiring.routes(pids[node.name]) if via}
            assert learned == set(installed[node.name]), node.name


def test_the_lab_verifies_over_learned_routes(leafspine: Lab) -> None:
    report = leafspine.verify()
    assert report.ok, [r.detail for r in report.results if not r.ok]
    assert any("BGP routes converged" in n for n in report.notes)


def test_inspect_shows_sessions_and_learned_routes(leafspine: Lab) -> None:
    nodes = {n["name"]: n for n in leafspine.inspect()["nodes"]}
    leaf1 = nodes["leaf1"]["bgp"]
    assert leaf1["running"]
    assert {s["name"] for s in leaf1["sessions"]} == {
        s.name for s in bgpconf.speakers(leafspine.plan) if s.node == "leaf1"
        for s in s.sessions}
    assert all(s["info"] == "Established" for s in leaf1["sessions"])
    node3 = leafspine.plan.node("node3").pod_cidr
    best = [r for r in leaf1["routes"] if r["prefix"] == node3 and r["best"]]
    assert len(best) == 1 and len(best[0]["as_path"]) == 3  # spine, leaf2, node3
    assert "bgp" not in nodes["rack1"]  # a switch has no BIRD


def test_a_deploy_whose_routes_never_come_fails_naming_them_and_rolls_back(
        docker_available: None, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_of(RING)
    real = bgpconf.bird_conf

    def mute_node2(sp: bgpconf.Speaker, lab: str, **kw: object) -> str:  # talks to nobody
        return real(dataclasses.replace(sp, sessions=()) if sp.node == "node2" else sp, lab,
                    **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(bgpconf, "bird_conf", mute_node2)
    monkeypatch.setattr(bgp, "DEPLOY_TIMEOUT_S", 4.0)
    with pytest.raises(RoutingError) as err:
        Lab.deploy(plan)
    assert f"node1: {plan.node('node2').pod_cidr}" in str(err.value)
    assert "rolled back" in str(err.value)
    assert runtime.containers_of(plan.lab) == []


# --------------------------------------------------------------------------- convergence


def test_link_down_moves_routes_and_verify_expects_the_new_path(ring: Lab) -> None:
    before = ring.verify(checks=PAIRS)
    assert before.ok and hops(before, "pod-to-pod", "a", "d") == {2}
    ring.fault("link-down", "node4:eth2")  # node4-node1: a and d were neighbours
    try:
        after = ring.verify(checks=PAIRS)
        assert after.ok, [r.detail for r in after.results if not r.ok]
        assert hops(after, "pod-to-pod", "a", "d") == {4}  # over node2 and node3
        (note,) = [n for n in after.notes if "converged" in n]
        assert "node4:eth2--node1:eth2 down" in note
    finally:
        ring.fault("link-up", "node4:eth2")
    back = ring.verify(checks=PAIRS)
    assert back.ok and hops(back, "pod-to-pod", "a", "d") == {2}


def test_a_pulled_leaf_spine_cable_moves_the_racks_to_the_other_spine(leafspine: Lab) -> None:
    leafspine.fault("link-down", "leaf1:eth2")  # leaf1 <-> spine1
    try:
        report = leafspine.verify(checks=PAIRS)
        assert report.ok, [r.detail for r in report.results if not r.ok]
        assert hops(report, "pod-to-pod", "web", "db") == {5}  # node1 leaf1 spine2 leaf2 node3
        pids = leafspine.pids()
        via = bgp.bird_routes(pids["leaf1"])[leafspine.plan.node("node3").pod_cidr]
        assert via == leafspine.plan.node("spine2").address_on(
            leafspine.plan.links[7].segment)  # leaf1:eth3 <-> spine2:eth1
    finally:
        leafspine.fault("link-up", "leaf1:eth2")
    assert leafspine.verify(checks=PAIRS).ok


def test_the_same_fault_on_a_static_lab_fails_exactly_the_pairs_across(
        docker_available: None) -> None:
    with Lab.deploy(plan_of(RING, routing="static")) as lab:
        lab.fault("link-down", "node4:eth2")
        report = lab.verify(checks=PAIRS)
        assert failed(report) == crossing(lab.plan, "node4", "node1")
        assert not report.notes  # static routes do not move: nothing to wait for
        lab.fault("link-up", "node4:eth2")
        assert lab.verify(checks=PAIRS).ok


def test_a_killed_daemon_fails_exactly_the_pairs_that_lost_their_route(
        leafspine: Lab) -> None:
    leafspine.fault("daemon-kill", "leaf1")
    try:
        assert not bird.alive(leafspine.pids()["leaf1"])
        report = leafspine.verify(checks=PAIRS)
        dead = frozenset({"leaf1"})
        rerouted = leafspine.plan.rerouted(no_transit=dead)
        tables = bgpconf.predicted_tables(leafspine.plan, dead=dead)
        predicted = {(c, e.src, e.dst) for c, e in rerouted.expectations()
                     if c in PAIRS and noroute.diagnose(rerouted, e.path, e.dst_ip, e.src_ip,
                                                        tables)}
        assert predicted and failed(report) == predicted
        for r in report.results:
            if not r.ok:
                assert r.detail.startswith("no route to "), r.detail
        rack2 = leafspine.plan.node("node3").pod_cidr
        assert any(r.detail.startswith(f"no route to {rack2} on node1")
                   for r in report.results if (r.src, r.dst) == ("web", "db"))
    finally:
        leafspine.fault("daemon-start", "leaf1")
    assert leafspine.verify(checks=PAIRS).ok



def test_a_daemon_that_died_by_itself_fails_verify_naming_it(leafspine: Lab) -> None:
    """Killed behind podlab's back (no `podlab fault`): not routed around with a note."""
    bird.kill(leafspine.pids()["leaf2"])
    try:
        with pytest.raises(RoutingError, match="BIRD of leaf2 is not running, and podlab "
                                               "did not do it"):
            leafspine.verify(checks=PAIRS)
    finally:
        leafspine.fault("daemon-start", "leaf2")
    assert leafspine.verify(checks=PAIRS).ok


def test_a_daemon_fault_needs_a_daemon(leafspine: Lab) -> None:
    with pytest.raises(InputError, match="runs no daemon"):
        leafspine.fault("daemon-kill", "rack1")


# --------------------------------------------------------------------------- both families


@pytest.fixture(scope="module")
def dual(docker_available: None) -> Iterator[Lab]:
    with bgp_lab(DUAL) as lab:
        yield lab


def by_family(report: Report) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in report.results:
        out[r.family] = out.get(r.family, 0) + 1
    return out


def test_dual_stack_routes_are_birds_in_both_families(dual: Lab) -> None:
    pids = dual.pids()
    want = bgpconf.expected_routes(dual.plan)
    installed = {n: bgp.bird_routes(pids[n]) for n in want.by_node}
    assert want.missing(installed) == [] and want.unexpected(installed) == []
    for node in dual.plan.nodes:
        if bgpconf.is_speaker(node):  # nothing routed but connected is not BIRD's
            learned = {dst for dst, via, _ in wiring.routes(pids[node.name]) if via}
            assert learned == set(installed[node.name]), node.name
            assert any(":" in p for p in installed[node.name]), node.name
    node3 = dual.plan.node("node3").pod_cidr_of("ipv6")
    assert installed["node1"][node3] == dual.plan.node("r1").address_of("ipv6")


def test_dual_stack_bgp_verifies_in_both_families(dual: Lab) -> None:
    report = dual.verify()
    assert report.ok, [f"{r.family} {r.detail}" for r in report.results if not r.ok]
    counts = by_family(report)
    assert counts["ipv4"] == counts["ipv6"] > 0
    assert any("BGP routes converged" in n for n in report.notes)


def test_inspect_shows_ipv6_sessions_and_as_paths(dual: Lab) -> None:
    nodes = {n["name"]: n for n in dual.inspect()["nodes"]}
    r1 = nodes["r1"]["bgp"]
    names = {s["name"] for s in r1["sessions"]}
    assert {"node1_eth1_v6", "node2_eth1_v6", "node3_eth2_v6"} <= names
    assert all(s["info"] == "Established" for s in r1["sessions"])
    node3 = dual.plan.node("node3").pod_cidr_of("ipv6")
    (best,) = [r for r in nodes["node1"]["bgp"]["routes"] if r["prefix"] == node3 and r["best"]]
    assert len(best["as_path"]) == 2 and best["session"] == "r1_eth1_v6"  # r1, node3


def test_a_killed_daemon_fails_exactly_the_predicted_pairs_in_both_families(
        dual: Lab) -> None:
    dual.fault("daemon-kill", "r1")  # node3's only way in, in either family
    try:
        report = dual.verify(checks=PAIRS)
        dead = frozenset({"r1"})
        rerouted = dual.plan.rerouted(no_transit=dead)
        tables = bgpconf.predicted_tables(dual.plan, dead=dead)
        predicted = {(c, e.family, e.src, e.dst) for c, e in rerouted.expectations()
                     if c in PAIRS and noroute.diagnose(rerouted, e.path, e.dst_ip,
                                                        e.src_ip, tables)}
        got = {(r.check, r.family, r.src, r.dst) for r in report.results if not r.ok}
        assert {f for _, f, _, _ in predicted} == {"ipv4", "ipv6"}
        assert got == predicted
        assert all(r.detail.startswith("no route to ") for r in report.results if not r.ok)
        node3 = dual.plan.node("node3").pod_cidr_of("ipv6")
        assert any(r.detail.startswith(f"no route to {node3} on node1")
                   for r in report.results if (r.family, r.src, r.dst) == ("ipv6", "web",
                                                                          "cache"))
    finally:
        dual.fault("daemon-start", "r1")
    assert dual.verify(checks=PAIRS).ok


def test_the_ipv6_only_example_deploys_and_verifies_with_bgp(docker_available: None) -> None:
    with bgp_lab(V6ONLY) as lab:
        pids = lab.pids()
        want = bgpconf.expected_routes(lab.plan)
        installed = {n: bgp.bird_routes(pids[n]) for n in want.by_node}
        assert want.missing(installed) == [] and want.unexpected(installed) == []
        report = lab.verify()
        assert report.ok, [r.detail for r in report.results if not r.ok]
        assert set(by_family(report)) == {"ipv6"}


def test_a_dual_stack_ring_moves_both_families_the_long_way_round(
        docker_available: None) -> None:
    with bgp_lab(RING, **DUAL_SETS) as lab:
        lab.fault("link-down", "node4:eth2")
        report = lab.verify(checks=PAIRS)
        assert report.ok, [f"{r.family} {r.detail}" for r in report.results if not r.ok]
        for family in ("ipv4", "ipv6"):  # node1 > node2 > node3 > node4 in each
            assert {r.expected["hops"] for r in report.results if (
                r.check, r.family, r.src, r.dst) == ("pod-to-pod", family, "a", "d")} == {4}
        pids = lab.pids()
        d6 = lab.plan.node("node4").pod_cidr_of("ipv6")
        assert bgp.bird_routes(pids["node1"])[d6] == lab.plan.node("node2").address_on(
            lab.plan.links[0].segment, "ipv6")
        lab.fault("link-up", "node4:eth2")
        back = lab.verify(checks=PAIRS)
        assert back.ok and {r.expected["hops"] for r in back.results if (
            r.check, r.src, r.dst) == ("pod-to-pod", "a", "d")} == {2}
