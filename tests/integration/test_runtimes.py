"""containerlab as the runtime of the nodes and links (`--runtime containerlab`): every
example proves the same under both runtimes, no lab container containerlab makes has a
way out, and destroy goes through containerlab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_containment import test_no_container_is_privileged_or_on_a_docker_network as unexposed
from test_containment import test_no_route_leaves_the_lab as no_route_out

from harness import Lab
from harness.host import containerlab, runtime
from harness.model.topology import Topology, load_topology
from harness.plan import Plan, make_plan
from harness.prove.result import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "topologies").glob("*.clab.yml"))
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"


@pytest.fixture(scope="session")
def containerlab_available(docker_available: None) -> str:
    """containerlab, recent enough; skipped without it, failed under CI=true (make setup
    builds it where Go is installed)."""
    try:
        return containerlab.require()
    except containerlab.ContainerlabMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: podlab tests must run, not skip)", pytrace=False)
        pytest.skip(str(exc))


def _plan(path: Path, prefix: str) -> Plan:
    topo = load_topology(path)
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    return make_plan(Topology(topo.spec.model_copy(update={"name": name}), topo.path))


def _clab_networks() -> set[str]:
    """The Docker networks containerlab made (it labels them `containerlab`)."""
    return {n["Id"] for n in runtime.client().api.networks(filters={"label": "containerlab"})}


def outcome(report: Report) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """What both runtimes must agree on: per check, family, pair and protocol, the verdict
    and the expected TTL, hop count and path (ports and a CNI's addresses may differ
    between two deploys)."""
    return {(r.check, r.family, r.src, r.dst, r.proto):
            (r.ok, r.expected.get("ttl"), r.expected.get("hops"), r.expected.get("path"))
            for r in report.results}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.split(".")[0])
def test_every_example_proves_the_same_under_both_runtimes(
        path: Path, containerlab_available: str) -> None:
    seen = {}
    for name in ("podlab", "containerlab"):
        plan = _plan(path, "itr")
        networks = _clab_networks()
        with Lab.deploy(plan, runtime=name) as lab:
            # containerlab's management network (a bridge that NATs out) was not made
            assert _clab_networks() == networks
            if name == "containerlab":
                nodes = runtime.containers_of(plan.lab, role="node")
                # containerlab made every node (its own label), podlab none of them
                assert sorted(r.labels.get("containerlab") for r in nodes) == \
                    [plan.lab] * len(plan.nodes)
                assert containerlab.has_state(plan.lab)
                observed = lab.observed_plan()
                unexposed(observed)
                no_route_out(observed)
            report = lab.verify()
        assert report.ok, [r.detail for r in report.results if not r.ok][:5]
        assert not runtime.containers_of(plan.lab)
        assert not containerlab.has_state(plan.lab)  # destroy went through containerlab
        seen[name] = outcome(report)
    assert seen["containerlab"] == seen["podlab"]


def test_podlab_run_with_the_containerlab_runtime_passes_flat3(
        containerlab_available: str, tmp_path: Path) -> None:
    name = f"itr{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--runtime",
                           "containerlab", "-t", str(FLAT3), "--name", name, "-o", "json",
                           "--output", str(tmp_path / "r.json")],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 100
    assert not runtime.containers_of(name)
    assert not containerlab.has_state(name)


def test_a_failed_deploy_leaves_neither_containers_nor_containerlab_state(
        containerlab_available: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import DeployError
    from harness.lab import deploy

    plan = _plan(FLAT3, "itr")

    def broken(*args: Any, **kwargs: Any) -> tuple[str, ...]:
        raise DeployError("injected: a pod's CNI ADD failed")

    monkeypatch.setattr(deploy._Pipeline, "_apply_pod", broken)
    with pytest.raises(DeployError, match="injected"):
        Lab.deploy(plan, runtime="containerlab")
    assert not runtime.containers_of(plan.lab)
    assert not containerlab.has_state(plan.lab)
