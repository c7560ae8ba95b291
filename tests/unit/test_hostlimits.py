"""The shared ARP table: how many entries a lab may need, and raising the host's cap."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.host.hostlimits import ensure_neighbour_capacity, neighbour_entries
from harness.model.topology import load_topology, parse_topology
from harness.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]


def generated(nodes: int, pods: int):
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from gen import topology

    return make_plan(parse_topology(yaml.safe_dump(topology("big", nodes, pods))))


def test_neighbour_entries_count_every_pair_on_each_segment() -> None:
    plan = make_plan(load_topology(ROOT / "topologies" / "flat3.clab.yml"))
    # tor: 4 members -> 12; pod bridges: node1+2 pods -> 6, node2+1 -> 2, node3+1 -> 2
    assert neighbour_entries(plan) == 12 + 6 + 2 + 2


def fake_proc(tmp_path: Path, thresh3: int) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "gc_thresh2").write_text("512\n")
    (tmp_path / "gc_thresh3").write_text(f"{thresh3}\n")
    return tmp_path


def test_a_small_lab_leaves_the_host_limit_alone(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, 1024)
    assert ensure_neighbour_capacity(generated(3, 6), root) is None
    assert (root / "gc_thresh3").read_text().strip() == "1024"


def test_a_200_pod_lab_raises_the_shared_limit_and_says_so(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, 1024)
    plan = generated(10, 200)
    message = ensure_neighbour_capacity(plan, root)
    needed = neighbour_entries(plan)
    assert needed > 4000
    assert message is not None and "gc_thresh3 from 1024" in message
    assert int((root / "gc_thresh3").read_text()) >= 2 * needed
    assert int((root / "gc_thresh2").read_text()) >= needed


def test_a_dual_stack_lab_raises_the_ipv6_table_too(tmp_path: Path) -> None:
    from podlab_unit_helpers import DUAL

    four, six = fake_proc(tmp_path / "4", 1024), fake_proc(tmp_path / "6", 1024)
    pods = "".join(f"  p{i}:\n    node: node{1 + i % 2}\n    containers: [{{name: app}}]\n"
                   for i in range(120))
    plan = make_plan(parse_topology(DUAL + pods))
    message = ensure_neighbour_capacity(plan, four, six)
    assert message is not None
    assert "net.ipv4.neigh.default.gc_thresh3 from 1024" in message
    assert "net.ipv6.neigh.default.gc_thresh3 from 1024" in message
    assert int((six / "gc_thresh3").read_text()) > int((four / "gc_thresh3").read_text())
