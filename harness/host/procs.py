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


def kill(pid: int, names: tuple[str, ...], where: str,
         signal: int = signals.SIGKILL) -> list[int]:
    """Kill every process called one of `names` in the container of `pid`; the first name
    must run (InputError naming `where` when it does not). Returns the host pids killed."""
    first = named(pid, names[0])
    if not first:
        raise InputError(f"no process {names[0]!r} runs in {where}")
    killed = []
    for name in names:
        for target in named(pid, name):
            try:
                os.kill(target, signal)
            except ProcessLookupError:
                continue
            killed.append(target)
    return killed
