"""The mtu check on real labs: the `mtu` example's smaller link is announced by the
router in front of it, and a smaller switch port is a PMTU black hole named by its link."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Lab
from harness.lab import unique_name
from harness.model.topology import parse_topology
from harness.plan import make_plan
from harness.prove import mtu

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def deploy(text: str) -> Lab:
    topo = parse_topology(text, ROOT / "topologies" / "x.clab.yml")
    name = unique_name(topo.spec.name)
    return Lab.deploy(make_plan(parse_topology(
        text.replace(f"name: {topo.spec.name}", f"name: {name}", 1))))


def test_the_smaller_link_is_announced_by_the_router_in_front_of_it(
        docker_available: None) -> None:
    with deploy((ROOT / "topologies" / "mtu.clab.yml").read_text()) as lab:
        results = lab.verify(checks=["mtu"]).results
        assert {(r.src, r.dst) for r in results} == {("a", "b"), ("b", "a")}
        assert all(r.ok for r in results), [r.detail for r in results]
        by = {(r.src, r.dst): r for r in results}
        assert by["a", "b"].observed["icmp_from"] == "r1"
        assert by["b", "a"].observed["icmp_from"] == "node2"
        assert all(r.observed["icmp_mtu"] == 1400 for r in results)


def test_a_smaller_switch_port_is_a_black_hole_named_by_its_link(
        docker_available: None) -> None:
    text = (ROOT / "topologies" / "flat3.clab.yml").read_text().replace(
        '    - endpoints: ["node2:eth1", "tor:eth2"]\n',
        '    - endpoints: ["node2:eth1", "tor:eth2"]\n      mtu: 1400\n')
    with deploy(text) as lab:
        results = lab.verify(checks=["mtu"]).results
        db = lab.plan.pod(next(p.name for p in lab.plan.pods if p.node == "node2"))
        bad = {(r.src, r.dst) for r in results if not r.ok}
        # into node2 through the switch: no router in front of the small port (one pod
        # per node takes part: the first)
        assert bad == {(t.src, t.dst) for t in mtu.targets(lab.plan) if t.dst == db.name}
        assert len(bad) == 2
        for r in results:
            if not r.ok:
                assert "PMTU black hole at link node2:eth1--tor:eth2 (MTU 1400" in r.detail
            elif r.src == db.name:  # out of node2: node2 itself says fragmentation-needed
                assert r.observed["icmp_from"] == "node2"
