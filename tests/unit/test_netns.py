"""harness.host.netns mechanics that need no root: setns is stubbed out."""

from __future__ import annotations

import os
import threading

import pytest

from harness.errors import WiringError
from harness.host import netns


@pytest.fixture
def no_setns(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(netns, "_setns", lambda fd, nstype: calls.append(nstype))
    return calls


def test_result_comes_back_from_a_worker_thread(no_setns: list[int]) -> None:
    main = threading.get_ident()
    result = netns.run_in_netns(os.getpid(), lambda x, y=0: (x + y, threading.get_ident()), 2, y=3)
    assert result[0] == 5 and result[1] != main
    assert no_setns == [netns.CLONE_NEWNET]


def test_exceptions_are_reraised_in_the_caller(no_setns: list[int]) -> None:
    with pytest.raises(KeyError, match="boom"):
        netns.run_in_netns(os.getpid(), lambda: {}["boom"])


def test_missing_process_is_a_wiring_error() -> None:
    with pytest.raises(WiringError, match="pid 999999999"):
        netns.run_in_netns(999999999, lambda: None)
    with pytest.raises(WiringError):
        netns.netns_inode(999999999)


def test_setns_failure_is_a_wiring_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, nstype: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(netns, "_setns", refuse)
    with pytest.raises(WiringError, match="setns"):
        netns.run_in_netns(os.getpid(), lambda: None)


def test_inode_of_own_namespace() -> None:
    assert netns.netns_inode(os.getpid()) == os.stat("/proc/self/ns/net").st_ino
    assert netns.same_netns(os.getpid(), os.getpid())


def test_run_program_returns_stdout_and_feeds_stdin(no_setns: list[int]) -> None:
    assert netns.run_program(os.getpid(), ["cat"], stdin="rules\n") == "rules\n"
    assert no_setns == [netns.CLONE_NEWNET]  # started from the thread inside the netns


def test_run_program_failure_ends_with_the_programs_last_stderr_lines(no_setns: list[int]
                                                                      ) -> None:
    with pytest.raises(WiringError,
                       match=r"sh in netns of pid \d+ failed \(exit 3\): first / last$"):
        netns.run_program(os.getpid(), ["sh", "-c", "echo first >&2; echo last >&2; exit 3"])


def test_run_program_failure_says_what_is_wrong_not_the_usage_hint(no_setns: list[int]
                                                                   ) -> None:
    script = ("echo 'iptables-restore: line 3 failed' >&2; "
              "echo \"Try \\`iptables-restore -h' for more information.\" >&2; exit 1")
    with pytest.raises(WiringError, match=r"\): iptables-restore: line 3 failed$"):
        netns.run_program(os.getpid(), ["sh", "-c", script])


def test_run_program_missing_binary_and_timeout(no_setns: list[int]) -> None:
    with pytest.raises(WiringError, match="no-such-tool-podlab not found on the host"):
        netns.run_program(os.getpid(), ["no-such-tool-podlab"])
    with pytest.raises(WiringError, match=r"timed out after 0\.2s"):
        netns.run_program(os.getpid(), ["sleep", "5"], timeout=0.2)
