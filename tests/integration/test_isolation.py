"""Two labs from one file under different names run and verify at the same time; destroying
one never touches the other; `io.podlab.` label keys in user files are refused (exit 2)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import Lab
from harness.host import runtime
from harness.model.topology import Topology, load_topology
from harness.plan import Plan, make_plan

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"


def plan_named(name: str) -> Plan:
    topo = load_topology(FLAT3)
    return make_plan(Topology(topo.spec.model_copy(update={"name": name}), topo.path))


def test_two_labs_from_one_file_side_by_side(docker_available: None) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = plan_named(f"iti{tag}-a"), plan_named(f"iti{tag}-b")
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Lab.deploy, (a, b)))
            reports = list(pool.map(lambda p: Lab(p).verify(), (a, b)))
        for report in reports:
            assert report.ok, [(r.check, r.src, r.dst, r.detail) for r in report.results
                               if not r.ok]
        names_b = sorted(c.name for c in runtime.containers_of(b.lab))
        assert len(names_b) == len(b.containers)
        assert not set(names_b) & {c.name for c in runtime.containers_of(a.lab)}
        removed = Lab(a).destroy()
        assert len(removed) == len(a.containers)
        assert not set(removed) & set(names_b)
        assert sorted(c.name for c in runtime.containers_of(b.lab)) == names_b
        assert all(c.state == "running" for c in runtime.containers_of(b.lab))
        assert Lab(b).verify().ok  # still wired: nothing of b was shared with a
    finally:
        Lab(a).destroy()
        Lab(b).destroy()


@pytest.mark.parametrize("where", ["node", "pod"])
def test_reserved_label_keys_are_refused(tmp_path: Path, where: str) -> None:
    text = FLAT3.read_text()
    if where == "node":
        text = text.replace("node1: {kind: k8s-node}",
                            "node1: {kind: k8s-node, labels: {io.podlab.lab: other}}")
    else:
        text = text.replace("  web:\n    node: node1\n",
                            "  web:\n    node: node1\n    labels: {io.podlab.role: node}\n")
    path = tmp_path / "evil.clab.yml"
    path.write_text(text)
    for cmd in ("validate", "deploy"):
        done = subprocess.run([sys.executable, "-m", "harness.cli", cmd, "-t", str(path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 2, (cmd, done.stdout, done.stderr)
        assert "io.podlab" in done.stderr and "Traceback" not in done.stderr
