"""The faults podlab injected into a running lab, recorded so that verify re-plans for
them and for nothing else: a cable pulled (`link-down`, by the end named), a routing
daemon killed (`daemon-kill`), a node stopped (`node-stop`). Undoing one (link-up,
daemon-start, node-start) clears it; deploy and destroy forget the lab's record. A fault
podlab did not inject (a daemon that died by itself) is then a failure that names it.

One small JSON file per lab on the host, as the CNI state is kept: every `podlab fault`
runs in a process of its own, and verify in another.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = "/var/lib/podlab/faults"
STATE_ENV = "PODLAB_FAULT_STATE"  # another root (tests)
KINDS = {"link-down": "links", "daemon-kill": "daemons", "node-stop": "stopped"}


@dataclass(frozen=True)
class Faults:
    """What podlab injected and has not undone: link ends (`A:IF`), nodes whose daemon it
    killed, nodes it stopped."""

    links: frozenset[str] = frozenset()
    daemons: frozenset[str] = frozenset()
    stopped: frozenset[str] = frozenset()


def _path(lab: str) -> Path:
    return Path(os.environ.get(STATE_ENV) or STATE_ROOT) / f"{lab}.json"


@contextmanager
def _locked(lab: str) -> Iterator[dict[str, list[str]]]:
    """The lab's record, read and written back under a lock (two faults at once)."""
    path = _path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def record(lab: str, kind: str, target: str) -> None:
    """Podlab injected fault `kind` (link-down, daemon-kill, node-stop) at `target`."""
    with _locked(lab) as data:
        data[KINDS[kind]] = sorted({*data.get(KINDS[kind], []), target})


def clear(lab: str, kind: str, target: str) -> None:
    """Fault `kind` at `target` was undone (by its recovery: link-up, daemon-start,
    node-start)."""
    with _locked(lab) as data:
        data[KINDS[kind]] = [t for t in data.get(KINDS[kind], []) if t != target]


def recorded(lab: str) -> Faults:
    path = _path(lab)
    data = json.loads(path.read_text()) if path.exists() else {}
    return Faults(*(frozenset(data.get(field, ())) for field in KINDS.values()))


def forget(lab: str) -> None:
    """The lab is gone (or new): none of its faults stands."""
    for suffix in (".json", ".lock", ".tmp"):
        _path(lab).with_suffix(suffix).unlink(missing_ok=True)


def forget_all() -> None:
    """Every lab is gone (destroy --all)."""
    root = Path(os.environ.get(STATE_ENV) or STATE_ROOT)
    if root.is_dir():
        for path in root.glob("*.json"):
            forget(path.stem)


NO_FAULTS = Faults()  # a default: nothing injected
