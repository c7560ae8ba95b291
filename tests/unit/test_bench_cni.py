"""bench/run.py with several datapaths: each CNI's deploy against cni: podlab's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT))
    from bench import gen, run

    return gen, run


def test_gen_writes_the_cni(bench) -> None:  # type: ignore[no-untyped-def]
    gen, _ = bench
    assert "cni" not in gen.topology("x", 2, 2)["cluster"]
    assert gen.topology("x", 2, 2, cni="bridge")["cluster"]["cni"] == "bridge"


def row(size: str, cni: str, deploys: list[float]) -> dict:
    return {"size": size, "cni": cni, "runs": [{"deploy_s": d} for d in deploys]}


def test_each_cni_is_compared_with_podlab_run_by_run(bench) -> None:  # type: ignore[no-untyped-def]
    _, run = bench
    rows = [row("4x24", "podlab", [10.0, 12.0, 11.0]), row("4x24", "bridge", [11.0, 18.0, 11.0]),
            row("2x2", "bridge", [1.0])]  # no podlab run of that size: nothing to compare
    run.compare_cni(rows)
    assert "vs_podlab" not in rows[0] and "vs_podlab" not in rows[2]
    assert rows[1]["vs_podlab"] == {"deploy": 1.1, "target": run.CNI_TARGET}  # median of
    # 1.1, 1.5, 1.0: per repetition, so a slow spell on the host hits both sides
