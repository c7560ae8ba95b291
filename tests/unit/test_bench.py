"""The benchmarks say only what they measured: the floor is Docker's and Python's alone,
and a run with any failed result fails the benchmark, its failures printed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOOR = ROOT / "bench" / "floor.py"


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(ROOT))
    import bench.dualstack
    import bench.e2e
    import bench.run

    return bench


def test_the_floor_imports_only_the_docker_sdk_and_the_standard_library() -> None:
    tree = ast.parse(FLOOR.read_text())
    tops = {alias.name.split(".")[0] for node in ast.walk(tree)
            if isinstance(node, ast.Import) for alias in node.names}
    tops |= {node.module.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert tops - {"__future__"} <= set(sys.stdlib_module_names) | {"docker"}, tops
    assert "docker" in tops
    # and so it runs: every module its process imports (python -X importtime)
    done = subprocess.run([sys.executable, "-X", "importtime", str(FLOOR), "--help"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "harness" not in imported and "yaml" not in imported and "pydantic" not in imported
    assert "docker" in imported


def test_e2e_runs_the_floor_script_with_the_images_computed_up_front(bench: Any) -> None:
    argv = bench.e2e.floor_argv(["podlab/node:x", "podlab/pause:y"], 8)
    assert argv[:2] == [sys.executable, str(FLOOR)]
    assert argv[2:] == ["--workers", "8", "podlab/node:x", "podlab/pause:y"]


def test_an_e2e_run_with_a_failed_result_fails_the_benchmark(bench: Any) -> None:
    clean = {"run": {"results": 134, "passed": 134, "failures": []},
             "phases": {"results": 134, "passed": 134, "failures": []}}
    broken = {"run": {"results": 134, "passed": 133,
                      "failures": ["pod-to-pod udp web -> db: request lost"]},
              "phases": {"results": 134, "passed": 134, "failures": []}}
    assert bench.e2e.failures_of([clean, clean]) == []
    lines = bench.e2e.failures_of([clean, broken])
    assert lines and "run 2" in lines[0] and "1 of 134 failed" in lines[0]
    assert any("request lost" in line for line in lines)


def test_a_dual_stack_bench_with_a_failed_result_fails(bench: Any) -> None:
    ok = {"lab": "dual", "ratio": 1.5, "failures": {"ipv4": 0, "dual": 0}, "failed": []}
    bad = {"lab": "4x24", "ratio": 1.5, "failures": {"ipv4": 0, "dual": 2},
           "failed": ["dual: pod-to-pod ipv6 udp a -> b: request lost"]}
    assert bench.dualstack.exit_code([ok]) == 0
    assert bench.dualstack.exit_code([ok, bad]) == 1
    assert bench.dualstack.exit_code([{**ok, "ratio": 3.0}]) == 1


def test_the_ladder_prints_the_failures_of_every_row(bench: Any) -> None:
    rows = [{"size": "2x2", "cni": "podlab", "results": 36, "passed": 36, "failures": []},
            {"size": "4x24", "cni": "bridge", "results": 100, "passed": 98, "failures": [
                {"check": "pod-to-pod", "proto": "udp", "src": "a", "dst": "b",
                 "detail": "request lost", "family": "ipv4", "ok": False}]}]
    lines = bench.run.failure_lines(rows)
    assert lines[0] == "4x24 cni bridge: 2 of 100 results failed"
    assert "pod-to-pod udp a -> b: request lost" in lines[1]
    assert bench.run.failure_lines(rows[:1]) == []


def test_the_floor_labels_its_containers_as_a_labs() -> None:
    """So that `podlab destroy --all` removes what an interrupted floor left."""
    sys.path.insert(0, str(ROOT))
    from bench import floor
    from harness.labels import LAB

    assert floor.LAB_LABEL == LAB
