"""runtime.pids_of asks Docker only about containers whose process it has not seen alive."""

from __future__ import annotations

import os

import pytest

from harness.host import runtime
from harness.host.runtime import ContainerInfo


def _info(cid: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(cid, f"name-{cid}", "img", state, {})


def test_a_remembered_process_that_still_runs_is_not_inspected_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def inspect(c: ContainerInfo) -> int:
        asked.append(c.id)
        return 4242

    monkeypatch.setattr(runtime, "pid_of", inspect)
    monkeypatch.setattr(runtime, "_seen", {})
    runtime._remember("alive", os.getpid())  # this very process: it runs
    runtime._remember("recycled", os.getpid())
    runtime._seen["recycled"] = (os.getpid(), runtime._seen["recycled"][1] + 1)  # a new one
    found = runtime.pids_of([_info("alive"), _info("recycled"), _info("new"),
                             _info("stopped", "exited")])
    assert found == {"name-alive": os.getpid(), "name-recycled": 4242, "name-new": 4242}
    assert sorted(asked) == ["new", "recycled"]


def test_a_process_that_is_gone_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_seen", {})
    runtime._remember("gone", 2**22 + 12345)  # above pid_max's usual ceiling: no process
    assert "gone" not in runtime._seen
    assert runtime._still_running("gone") == 0
    assert runtime._start_time(os.getpid()) is not None
