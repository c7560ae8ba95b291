"""Verify re-plans only for the faults podlab injected and recorded (link-down,
daemon-kill, node-stop): anything else the lab shows (a BIRD that died by itself, a
cable nobody pulled through podlab) is a failure that names it, never routed around."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.datapath import bgp
from harness.host import faultlog
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def leafspine() -> Plan:
    return make_plan(load_topology(ROOT / "topologies" / "leafspine.clab.yml"))


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(faultlog.STATE_ENV, str(tmp_path))
    return tmp_path


def link(plan: Plan, a: str) -> int:
    """The index of the link with end `a` (NODE:IF)."""
    name, iface = a.split(":")
    return next(i for i, k in enumerate(plan.links) if (name, iface) in (k.a, k.b))


def test_the_record_keeps_what_was_injected_until_it_is_undone() -> None:
    assert faultlog.recorded("lab1") == faultlog.Faults()
    faultlog.record("lab1", "link-down", "leaf1:eth2")
    faultlog.record("lab1", "daemon-kill", "leaf2")
    faultlog.record("lab1", "node-stop", "node3")
    faultlog.record("lab2", "daemon-kill", "spine1")  # another lab's are its own
    got = faultlog.recorded("lab1")
    assert got == faultlog.Faults(frozenset({"leaf1:eth2"}), frozenset({"leaf2"}),
                                  frozenset({"node3"}))
    faultlog.clear("lab1", "link-down", "leaf1:eth2")
    faultlog.clear("lab1", "daemon-kill", "leaf2")
    faultlog.clear("lab1", "node-stop", "node3")
    assert faultlog.recorded("lab1") == faultlog.Faults()
    faultlog.forget("lab2")
    assert faultlog.recorded("lab2") == faultlog.Faults()


def test_only_recorded_faults_are_rerouted_around(leafspine: Plan) -> None:
    cable = link(leafspine, "leaf1:eth2")  # leaf1 <-> spine1
    nothing = faultlog.Faults()
    assert bgp.unexplained(leafspine, frozenset(), frozenset(), nothing) == []
    # what podlab did not inject is named
    assert bgp.unexplained(leafspine, frozenset({cable}), frozenset({"leaf2"}), nothing) == [
        "link leaf1:eth2--spine1:eth1 is down", "BIRD of leaf2 is not running"]
    # pulled by podlab, from either end
    for end in ("leaf1:eth2", "spine1:eth1"):
        pulled = faultlog.Faults(links=frozenset({end}))
        assert bgp.unexplained(leafspine, frozenset({cable}), frozenset(), pulled) == []
    killed = faultlog.Faults(daemons=frozenset({"leaf2"}))
    assert bgp.unexplained(leafspine, frozenset(), frozenset({"leaf2"}), killed) == []
    # a node podlab stopped takes its daemon and its cables down with it
    stopped = faultlog.Faults(stopped=frozenset({"spine1"}))
    cables = frozenset(i for i, k in enumerate(leafspine.links) if "spine1" in (k.a[0], k.b[0]))
    assert bgp.unexplained(leafspine, cables, frozenset({"spine1"}), stopped) == []
    # a daemon that died by itself, next to one podlab killed
    assert bgp.unexplained(leafspine, frozenset(), frozenset({"leaf1", "leaf2"}), killed) == [
        "BIRD of leaf1 is not running"]
