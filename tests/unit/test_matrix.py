"""podlab matrix without Docker: topology variants, combinations, and how each outcome is
judged and reported."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.cli.matrix import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    Combo,
    Runner,
    combinations,
    judge,
    junit_placeholder,
    matrix_exit_code,
    prepare,
    write_summary,
)
from harness.errors import InputError
from harness.model.variants import label, load_variant, parse_axis, parse_set, split_values

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "topologies" / "minimal.clab.yml"
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"


def test_set_values_are_read_as_yaml_and_axes_split_outside_brackets() -> None:
    assert parse_set("masquerade=false") == ("masquerade", False)
    assert parse_set("cluster.node-mask=25") == ("node-mask", 25)
    assert parse_axis("routing=static,bgp") == ("routing", ["static", "bgp"])
    assert split_values("a,[b,c],{d: 1, e: 2}") == ["a", "[b,c]", "{d: 1, e: 2}"]
    assert label([("masquerade", False), ("pod-cidr", ["a", "b"])]) == \
        "masquerade=false,pod-cidr=[a, b]"
    for bad in ("routing", "=bgp", "routing="):
        with pytest.raises(InputError, match="KEY=VALUE"):
            parse_set(bad)


def test_a_variant_overrides_cluster_keys_and_the_name_only() -> None:
    plain = load_variant(FLAT3)
    assert plain.spec.cluster.masquerade is True and plain.name == "flat3"
    variant = load_variant(FLAT3, [("masquerade", False), ("node-mask", 25)], "flat3-x")
    assert (variant.name, variant.spec.cluster.masquerade, variant.spec.cluster.node_mask) \
        == ("flat3-x", False, 25)
    assert variant.path == plain.path  # relative paths in the file still resolve there
    assert variant.spec.pods == plain.spec.pods


def test_combinations_are_the_product_of_the_axes_for_each_topology() -> None:
    combos = combinations([MINIMAL, FLAT3], ["masquerade=true,false", "node-mask=24,25,26"])
    assert len(combos) == 2 * 2 * 3
    assert combos[0].sets == [("masquerade", "true"), ("node-mask", "24")]
    assert combos[0].slug == "minimal--masquerade=true,node-mask=24"
    assert [c.variant for c in combinations([MINIMAL], [])] == ["(as written)"]
    with pytest.raises(InputError, match="twice"):
        combinations([MINIMAL], ["masquerade=true", "masquerade=false"])


def test_a_variant_the_topology_cannot_take_is_skipped_with_the_reason() -> None:
    ok, bad, unknown = combinations([MINIMAL], ["node-mask=24,31,x"])
    for c in (ok, bad, unknown):
        prepare(c)
    assert ok.status == "pending" and ok.plan.lab == ok.name != "minimal"
    assert ok.name.startswith("minimal-")
    assert bad.status == SKIPPED and "cluster.node-mask" in bad.reason
    assert unknown.status == SKIPPED
    routing = combinations([MINIMAL], ["no-such-key=1"])[0]
    prepare(routing)
    assert routing.status == SKIPPED and "no-such-key" in routing.reason


def test_a_topology_wrong_as_written_is_an_error_not_a_skip(tmp_path: Path) -> None:
    broken = tmp_path / "broken.clab.yml"
    broken.write_text("name: Not_Valid\ntopology: {nodes: {}}\n")
    combo = combinations([broken], ["masquerade=true"])[0]
    prepare(combo)
    assert combo.status == ERROR and combo.reason


def _junit(path: Path, tests: int, failures: int) -> Path:
    path.write_text(f'<testsuites tests="{tests}" failures="{failures}"></testsuites>')
    return path


@pytest.mark.parametrize("code,tests,failures,sets,status", [
    (0, 34, 0, [], PASSED),
    (1, 34, 3, [], FAILED),
    # only validation before deploy (prepare) skips: a run that exits 2 met an error at
    # run time (a lab not found, a conflist's plugin missing at deploy), whatever the
    # variant
    (2, None, None, [("cni", "ptp")], ERROR),
    (2, None, None, [], ERROR),
    (3, None, None, [("cni", "ptp")], ERROR),     # the host could not do it
    (1, None, None, [], ERROR),                   # exit 1 without a report: a crash
])
def test_each_outcome_of_a_run_is_judged(tmp_path: Path, code: int, tests: int | None,
                                         failures: int | None, sets: list[tuple[str, str]],
                                         status: str) -> None:
    combo = Combo(MINIMAL, sets, name="minimal-abc123", code=code)
    combo.junit = tmp_path / "c.xml"
    combo.log = tmp_path / "c.log"
    combo.log.write_text("progress...\nerror: something precise went wrong\n")
    if tests is not None:
        _junit(combo.junit, tests, failures or 0)
    judge(combo)
    assert combo.status == status
    if status == FAILED:
        assert (combo.passed, combo.total) == (31, 34) and "3 of 34" in combo.reason
    if status in (SKIPPED, ERROR):
        assert combo.reason == "something precise went wrong"
        root = ElementTree.parse(combo.junit).getroot()  # every combination has its file
        assert root.find(".//skipped" if status == SKIPPED else ".//error") is not None


def test_an_error_at_run_time_fails_the_matrix(tmp_path: Path) -> None:
    """One combination passed, one exited 2 at run time: the matrix is not ok, says
    `error` in its summary and JUnit file, and exits non-zero."""
    ran = Combo(MINIMAL, [], name="m-1", status=PASSED, passed=34, total=34)
    broke = Combo(MINIMAL, [("cni", "ptp")], name="m-2", code=2)
    broke.junit, broke.log = tmp_path / "b.xml", tmp_path / "b.log"
    broke.log.write_text("error: lab 'm-2' is not deployed\n")
    judge(broke)
    assert broke.status == ERROR
    data = json.loads(write_summary([ran, broke], tmp_path, 3.0).read_text())
    assert data["ok"] is False
    assert [c["status"] for c in data["combinations"]] == [PASSED, ERROR]
    root = ElementTree.parse(broke.junit).getroot()
    assert root.get("errors") == "1" and root.find(".//error") is not None
    assert matrix_exit_code([ran, broke]) == 1
    assert matrix_exit_code([ran]) == 0


def test_the_child_is_podlab_run_under_the_combinations_own_name(tmp_path: Path) -> None:
    combo = Combo(FLAT3, [("masquerade", "false")], name="flat3-123abc")
    combo.junit = tmp_path / "x.xml"
    argv = Runner(tmp_path, 2, 60).argv(combo)
    assert argv[1:4] == ["-m", "harness.cli", "run"]
    i = argv.index("--name")
    assert argv[i + 1] == "flat3-123abc"
    assert argv[argv.index("--set") + 1] == "masquerade=false"
    assert argv[argv.index("-o") + 1] == "junit"


def test_summary_json_and_placeholders(tmp_path: Path) -> None:
    a = Combo(MINIMAL, [], name="m-1", status=PASSED, passed=34, total=34)
    b = Combo(MINIMAL, [("cni", "x")], status=SKIPPED, reason="cluster.cni: unknown key")
    data = json.loads(write_summary([a, b], tmp_path, 12.0).read_text())
    assert data["ok"] is True
    assert [c["status"] for c in data["combinations"]] == [PASSED, SKIPPED]
    root = ElementTree.fromstring(junit_placeholder(b))
    assert root.get("skipped") == "1"
    assert root.find(".//skipped").get("message") == "cluster.cni: unknown key"


def test_a_matrix_where_nothing_ran_does_not_pass(tmp_path: Path) -> None:
    """Every combination skipped: nothing needs Docker; files and summary still appear,
    but nothing was proven, so it is no pass (exit 2, as verify selecting nothing)."""
    result = CliRunner().invoke(app, ["matrix", "-t", str(MINIMAL), "--set",
                                      "node-mask=31,32", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "skipped" in result.output and "no combination ran" in result.output
    assert sorted(p.name for p in tmp_path.glob("*.xml")) == [
        "minimal--node-mask=31.xml", "minimal--node-mask=32.xml"]
    assert json.loads((tmp_path / "matrix.json").read_text())["ok"] is False
