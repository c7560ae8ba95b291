"""bench/clab.py without Docker: the labs it compares and how each ratio is formed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clab() -> Any:
    sys.path.insert(0, str(ROOT))
    from bench import clab

    return clab


def test_the_nodes_and_links_runs_have_the_labs_nodes_and_links_and_no_pod(clab: Any) -> None:
    for lab, nodes, pods in (("flat3", 5, 4), ("4x24", 6, 24), ("10x200", 12, 200)):
        whole, bare = clab.plan_of(lab, "x"), clab.plan_of(lab, "x", pods=False)
        assert (len(whole.nodes), len(whole.pods)) == (nodes, pods)
        assert [n.name for n in bare.nodes] == [n.name for n in whole.nodes]
        assert bare.links == whole.links and not bare.pods


def test_ratios_compare_podlab_with_containerlab_and_the_runtime_with_its_parts(
        clab: Any) -> None:
    def run(nc: float, np: float, fp: float, fc: float) -> dict[str, Any]:
        return {k: {"deploy_s": v, "destroy_s": v / 2} for k, v in (
            ("nodes_containerlab", nc), ("nodes_podlab", np), ("full_podlab", fp),
            ("full_containerlab", fc))}

    row = clab.summarize("flat3", [run(2.0, 1.0, 3.0, 4.0), run(4.0, 1.0, 3.0, 4.0),
                                   run(3.0, 1.5, 3.5, 4.5)])
    assert row["nodes_containerlab_deploy_s"] == 3.0 and row["nodes_podlab_deploy_s"] == 1.0
    assert row["nodes_ratio"] == pytest.approx(1.5 / 4.5)  # deploy + destroy, medians
    # containerlab runtime / (containerlab alone + podlab's pod step (3 - 1))
    assert row["runtime_ratio"] == pytest.approx(6.0 / (4.5 + (4.5 - 1.5)))
    assert row["repeat"] == 3
