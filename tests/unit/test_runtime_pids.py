"""runtime.pids_of asks Docker only about containers whose process it has not seen alive."""

from __future__ import annotations

import os

import pytest

from harness.host import runtime
from harness.host.runtime import ContainerInfo


def _info(cid: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(cid, f"name-{cid}", "img", state, {})


def _inspected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Docker's side faked: every inspect answers 4242; returns the ids asked, as asked."""
    asked: list[str] = []

    def inspect(c: ContainerInfo) -> int:
        asked.append(c.id)
        return 4242

    monkeypatch.setattr(runtime, "pid_of", inspect)
    monkeypatch.setattr(runtime, "_seen", {})
    monkeypatch.setattr(runtime, "shim_pid", lambda cid: 0)
    return asked


def test_a_remembered_process_that_still_runs_is_not_inspected_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _inspected(monkeypatch)
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


def test_a_shim_pid_counts_only_when_its_process_is_in_the_containers_cgroup(
        monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    with open("/proc/self/cgroup") as f:
        mine = f.read().strip().splitlines()[-1].rsplit("/", 1)[-1]  # this process's group
    task = Path(tmp_path) / "moby"
    for cid, pid in (("ours", os.getpid()), ("theirs", os.getpid()), ("junk", "x")):
        (task / cid).mkdir(parents=True)
        (task / cid / "init.pid").write_text(str(pid))
    monkeypatch.setattr(runtime, "SHIM_TASK_DIRS", ("/nonexistent", str(task)))
    assert runtime.shim_pid("theirs-not-in-my-cgroup") == 0  # no file
    assert runtime.shim_pid("theirs") == 0  # a process of another cgroup: not trusted
    assert runtime.shim_pid("junk") == 0
    if mine:  # a process in a named cgroup: the file's pid is trusted when the id is there
        (task / mine).mkdir(exist_ok=True)
        (task / mine / "init.pid").write_text(str(os.getpid()))
        assert runtime.shim_pid(mine) == os.getpid()


def test_pids_of_takes_the_shims_pid_before_asking_docker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _inspected(monkeypatch)
    monkeypatch.setattr(runtime, "shim_pid", lambda cid: 77 if cid == "shimmed" else 0)
    found = runtime.pids_of([_info("shimmed"), _info("other")])
    assert found == {"name-shimmed": 77, "name-other": 4242}
    assert asked == ["other"]
