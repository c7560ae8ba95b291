"""The processes of a container, seen from the host: to kill a daemon the user's image
runs (FRR's bgpd, ospfd, zebra), which podlab did not start and knows only by name."""

from __future__ import annotations

import os
import signal as signals

from harness.errors import InputError


def in_namespace_of(pid: int) -> list[int]:
    """Host pids of every process in the pid namespace of the container whose process is
    `pid` ([] when it is gone)."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                out.append(int(entry))
        except OSError:
            continue
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None  # gone since


def named(pid: int, name: str) -> list[int]:
    """Host pids of the processes called `name` (their comm) in the pid namespace of the
    container whose process is `pid`."""
    return sorted(p for p in in_namespace_of(pid)
                  if (_read(f"/proc/{p}/comm") or "").strip() == name)


def host_pid(pid: int, inner: int) -> int | None:
    """The host pid of the process whose pid inside the container of `pid` is `inner`."""
    for p in in_namespace_of(pid):
        status = _read(f"/proc/{p}/status") or ""
        nspid = next((line.split()[-1] for line in status.splitlines()
                      if line.startswith("NSpid:")), None)
        if nspid == str(inner):
            return p
    return None


def kill(pid: int, name: str, where: str, first: tuple[str, ...] = (),
         signal: int = signals.SIGKILL) -> int:
    """Kill every process called `name` in the container of `pid`, after those called one
    of `first` (a supervisor that would restart it); InputError naming `where` when no
    `name` runs. Returns the host pid of the first `name` killed."""
    targets = named(pid, name)
    if not targets:
        raise InputError(f"no process {name!r} runs in {where}")
    for other in first:
        for target in named(pid, other):
            _kill(target, signal)
    for target in targets:
        _kill(target, signal)
    return targets[0]


def _kill(target: int, signal: int) -> None:
    try:
        os.kill(target, signal)
    except ProcessLookupError:
        pass  # gone already
