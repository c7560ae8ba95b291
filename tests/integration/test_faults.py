"""Faults at run time (harness.lab.faults, `podlab fault`): verify must fail EXACTLY the results
a fault affects, say where each lost packet was last seen, and pass again once it is undone.

One flat3 lab per module (unique name); every test undoes its fault in `finally`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.errors import InputError
from harness.host import wiring
from harness.lab import faults
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.prove import verify

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"
PODLAB = [sys.executable, "-m", "harness.cli"]
# the checks `crossing` predicts (the mtu check's own pairs are proven in test_mtu, the
# path check's answer to faults in test_path)
PROBED = [c for c in verify.CHECKS if c not in ("mtu", "path")]


@pytest.fixture(scope="module")
def flat3(docker_available: None, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Plan, Path]]:
    """A deployed copy of flat3 under a unique name, and its topology file."""
    name = f"itf{uuid.uuid4().hex[:6]}"
    path = tmp_path_factory.mktemp("faults") / f"{name}.clab.yml"
    path.write_text(FLAT3.read_text().replace("name: flat3", f"name: {name}", 1))
    plan = make_plan(load_topology(path))
    with Lab.deploy(plan):
        yield plan, path



def crossing(plan: Plan, node: str, iface: str) -> set[tuple[str, str, str]]:
    """(check, src, dst) of every planned path that crosses `node`:`iface`: a hop between
    `node` and a member of that interface's segment."""
    segment = next(i.segment for i in plan.node(node).interfaces if i.name == iface)
    members = {m for s in plan.segments if s.name == segment for m, _, _ in s.members}
    out = set()
    for check, exp in plan.expectations():
        hops = list(zip(exp.path, exp.path[1:], strict=False))
        if any(node in (a, b) and ({a, b} - {node}) <= members for a, b in hops):
            out.add((check, exp.src, exp.dst))
    return out


def failed(report: verify.Report) -> set[tuple[str, str, str]]:
    return {(r.check, r.src, r.dst) for r in report.results if not r.ok}


def assert_exactly(report: verify.Report, expected: set[tuple[str, str, str]]) -> None:
    got = failed(report)
    assert got == expected, (f"unexpected failures {sorted(got - expected)}; "
                             f"expected but passed {sorted(expected - got)}")
    for r in report.results:
        if not r.ok:  # every lost probe says where it went missing
            if r.detail.startswith("no route to "):
                continue  # a node on the path has no route (maybe the sender: nothing sent)
            assert "lost" in r.detail, r.detail
            assert any(w in r.detail for w in ("last seen", "never seen leaving")), r.detail
    # a fault breaks every protocol of an affected pair, not some of them
    for key in expected:
        assert all(not r.ok for r in report.results if (r.check, r.src, r.dst) == key), key


def fault(path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODLAB, "fault", "-t", str(path), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_link_down_fails_exactly_the_paths_across_it(flat3) -> None:
    plan, path = flat3
    expected = crossing(plan, "node3", "eth1")
    assert expected and ("pod-to-pod", "web", "cache") in expected
    assert ("node-to-pod", "node3", "cache") not in expected  # local: never crosses
    done = fault(path, "link-down", "node3:eth1")
    assert done.returncode == 0, done.stderr
    try:
        report = Lab(plan).verify(checks=PROBED)
        assert_exactly(report, expected)
        lost = next(r for r in report.results if not r.ok and r.proto == "udp"
                and (r.src, r.dst) == ("cache", "web"))
        assert "last seen arriving at node3" in lost.detail, lost.detail
    finally:
        done = fault(path, "link-up", "node3:eth1")
    assert done.returncode == 0, done.stderr
    report = Lab(plan).verify()
    assert report.ok, failed(report)


def test_node_stop_and_start_rewires_the_node(flat3) -> None:
    plan, path = flat3
    node2 = plan.node("node2").container
    done = fault(path, "node-stop", "node2")
    assert done.returncode == 0, done.stderr
    try:
        assert node2 not in Lab(plan).container_pids()
        pid = Lab(plan).container_pids()[plan.pod("db").infra]
        assert "eth0" not in wiring.addresses(pid)  # the pod's veth died with the node
    finally:
        done = fault(path, "node-start", "node2")
    assert done.returncode == 0, done.stderr
    assert "node2:eth1" in done.stderr and "node2:pv-db" in done.stderr
    report = Lab(plan).verify()
    assert report.ok, [(r.check, r.src, r.dst, r.detail) for r in report.results if not r.ok]


def test_full_loss_fails_the_paths_and_clearing_restores_them(flat3) -> None:
    plan, path = flat3
    expected = crossing(plan, "node3", "eth1")
    done = fault(path, "netem", "node3:eth1", "--loss", "100")
    assert done.returncode == 0, done.stderr
    try:
        assert_exactly(Lab(plan).verify(checks=PROBED), expected)
    finally:
        done = fault(path, "netem-clear", "node3:eth1")
    assert done.returncode == 0, done.stderr
    report = Lab(plan).verify()
    assert report.ok, failed(report)


def test_delay_is_a_netem_qdisc_or_one_clear_line_exit_3(flat3) -> None:
    plan, path = flat3
    done = fault(path, "netem", "node3:eth1", "--delay", "20", "--jitter", "5")
    if done.returncode == 0:  # a kernel with sch_netem: the delay is real
        pid = Lab(plan).container_pids()[plan.node("node3").container]
        try:
            assert wiring.qdisc(pid, "eth1") == "netem"
        finally:
            fault(path, "netem-clear", "node3:eth1")
        return
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sch_netem" in lines[0] and "Traceback" not in done.stderr
    # nothing was changed by the refused call
    assert Lab(plan).verify(["pod-to-pod"]).ok


def test_rate_is_a_tbf(flat3) -> None:
    plan, path = flat3
    done = fault(path, "netem", "node3:eth1", "--rate", "10000")
    assert done.returncode == 0, done.stderr
    try:
        pid = Lab(plan).container_pids()[plan.node("node3").container]
        assert wiring.qdisc(pid, "eth1") in ("tbf", "netem")
    finally:
        fault(path, "netem-clear", "node3:eth1")
    assert wiring.qdisc(pid, "eth1") not in ("tbf", "netem")


@pytest.mark.parametrize("argv", [
    ["link-down", "node3:eth9"], ["link-down", "nocolon"], ["node-stop", "nosuch"],
    ["netem", "node3:eth1", "--loss", "101"], ["netem", "node3:eth1"],
    ["netem", "node3:eth1", "--jitter", "5"]])
def test_bad_fault_input_is_exit_2(flat3, argv: list[str]) -> None:
    done = fault(flat3[1], *argv)
    assert done.returncode == 2, (argv, done.stderr)
    assert "Traceback" not in done.stderr


def test_endpoint_resolution(flat3) -> None:
    plan = flat3[0]
    here, there, link = faults.veth(plan, "tor:eth3")
    assert (here.name, there.name, there.iface) == ("tor", "node3", "eth1") and link
    here, there, link = faults.veth(plan, "web:eth0")
    assert there.iface == "pv-web" and link is None
    with pytest.raises(InputError):
        faults.veth(plan, "node1:eth7")


def test_fault_on_a_lab_that_is_not_deployed_is_exit_2(docker_available: None,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "ghost.clab.yml"
    path.write_text(FLAT3.read_text().replace("name: flat3", f"name: ghost{os.getpid()}", 1))
    done = fault(path, "link-down", "node3:eth1")
    assert done.returncode == 2, done.stderr
