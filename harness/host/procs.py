"""The processes of a container, seen from the host: to kill a daemon the user's image
runs (FRR's bgpd, ospfd, zebra), which podlab did not start and knows only by name."""

from __future__ import annotations

import os
import signal as signals

from harness.errors import InputError


def named(pid: int, name: str) -> list[int]:
    """Host pids of the processes called `name` (their comm) in the pid namespace of the
    container whose process is `pid`."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() == name:
                    out.append(int(entry))
        except OSError:
            continue
    return sorted(out)


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
