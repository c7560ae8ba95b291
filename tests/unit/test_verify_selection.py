"""verify's contract before any packet: nothing proven never passes, the negative control
is accounted for, and the CLI never ends an unforeseen failure with exit 1."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from harness.errors import InputError, NothingToVerify
from harness.model.topology import load_topology
from harness.plan import make_plan
from harness.prove import verify
from harness.prove.result import Report

ROOT = Path(__file__).resolve().parents[2]
cli = importlib.import_module("harness.cli.app")


def plan(stem: str):  # -> Plan
    return make_plan(load_topology(ROOT / "topologies" / f"{stem}.clab.yml"))


def test_a_selection_that_yields_nothing_is_an_input_error() -> None:
    minimal = plan("minimal")
    assert not minimal.externals
    with pytest.raises(NothingToVerify, match="no outside host") as caught:
        verify.verify(minimal, {"some-container": 1}, ["pod-to-external"])
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 2
    with pytest.raises(NothingToVerify, match="no check selected"):
        verify.verify(minimal, {"some-container": 1}, [])


def test_the_negative_control_is_absent_without_an_outside_host() -> None:
    minimal = dataclasses.replace(plan("minimal"), masquerade=True)
    control, note = verify._negative_control(minimal, list(verify.CHECKS), [])
    assert control == "absent" and note and "no outside host" in note
    flat3 = plan("flat3")
    assert verify._negative_control(flat3, ["pod-to-pod"], [])[0] == "not run"
    assert verify._negative_control(flat3, ["pod-to-external"], [])[0] == "observed"


def test_the_summary_carries_the_negative_control_and_notes() -> None:
    report = Report("lab", [], 0.1, negative_control="absent", notes=["why"])
    summary = report.to_dict()["summary"]
    assert summary["negative_control"] == "absent" and summary["notes"] == ["why"]


def test_an_unexpected_error_exits_3_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> None:
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unexpected RuntimeError: something nobody foresaw" in err
