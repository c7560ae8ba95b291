"""verify's contract before any packet: nothing proven never passes, the negative control
is accounted for, and the CLI never ends an unforeseen failure with exit 1."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from harness.errors import InputError, NothingToVerify
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.prove import verify
from harness.prove.result import Report, Result

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
    control, note = verify._negative_control(flat3, ["pod-to-pod"], [])
    assert control == "not run" and note and "pod-to-external was not selected" in note


def _external(plan: Plan, pod: str, host: str, ok: bool) -> Result:
    """A pod-to-external result as the verdict writes it: ok only when its socket saw the
    masqueraded source."""
    e = plan.pod_to_external(pod, host)
    seen = e.snat_to if ok else e.src_ip
    return Result("pod-to-external", pod, host, "udp", ok, {"src": e.snat_to or e.src_ip},
                  {"src": seen}, "")


def test_the_negative_control_is_observed_only_when_a_rewrite_was_seen() -> None:
    """Nothing passes by absence: a run whose results hold no masqueraded pod-to-external
    result (none selected, or a sample of hostNetwork pods) has not run the control."""
    flat3 = plan("flat3")
    natted = [p.name for p in flat3.pods if flat3.pod_to_external(p.name, "world").snat_to]
    assert natted
    control, note = verify._negative_control(flat3, ["pod-to-external"], [])
    assert control == "not run" and note and "no masqueraded pod-to-external result" in note
    other = Result("pod-to-pod", natted[0], natted[0], "udp", True, {}, {}, "")
    assert verify._negative_control(flat3, ["pod-to-external"], [other])[0] == "not run"
    seen = [_external(flat3, natted[0], "world", True)]
    assert verify._negative_control(flat3, ["pod-to-external"], seen) == ("observed", None)
    failed = [*seen, _external(flat3, natted[-1], "world", False)]
    assert verify._negative_control(flat3, ["pod-to-external"], failed)[0] == "failed"


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
