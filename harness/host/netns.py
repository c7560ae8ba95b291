"""Run code inside a container's network namespace without moving the main process.

``setns(2)`` with CLONE_NEWNET changes the namespace of the calling *thread* only, so each
call runs in a short-lived thread that enters ``/proc/<pid>/ns/net`` and then dies: the
main thread (and every other thread) never leaves the host namespace, even on error.
Sockets keep the namespace they were created in, so a socket made in such a thread can be
used from anywhere afterwards, and a program started from such a thread (fork copies the
calling thread's namespaces) runs in that namespace: `run_program` is podlab's one way of
running a host binary (iptables, nft) inside a lab namespace, no nsenter needed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from harness.errors import WiringError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
PROGRAM_TIMEOUT_S = 20.0
# where host tools live; podlab's own PATH (a venv, sudo's secure_path) may lack the sbins
TOOL_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"

_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    # Python 3.12 has os.setns; 3.11 needs libc through ctypes.
    if hasattr(os, "setns"):
        os.setns(fd, nstype)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def open_netns(pid: int) -> int:
    """An O_RDONLY fd on the namespace of ``pid`` (caller closes it)."""
    try:
        return os.open(netns_path(pid), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise WiringError(f"netns of pid {pid}: process not found (container stopped?)") from exc
    except PermissionError as exc:
        raise WiringError(
            f"netns of pid {pid}: permission denied (podlab must run as root)"
        ) from exc


def netns_inode(pid: int) -> int:
    """Inode of the namespace: equal inodes mean the same namespace (e.g. pod containers)."""
    try:
        return os.stat(netns_path(pid)).st_ino
    except FileNotFoundError as exc:
        raise WiringError(f"netns of pid {pid}: process not found (container stopped?)") from exc


def run_in_netns(pid: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` in the network namespace of ``pid``; return its result.

    Exceptions raised by ``fn`` are re-raised in the caller unchanged.
    """
    fd = open_netns(pid)
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            _setns(fd, CLONE_NEWNET)
        except OSError as exc:
            box["error"] = WiringError(f"setns into netns of pid {pid} failed: {exc}")
            return
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    try:
        thread = threading.Thread(target=worker, name=f"netns-{pid}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]
    return box["result"]


def socket_in_netns(
    pid: int,
    family: int = socket.AF_INET,
    type: int = socket.SOCK_STREAM,  # named like socket.socket()'s parameter
    proto: int = 0,
) -> socket.socket:
    """A socket that lives in the namespace of ``pid``, usable from any thread."""
    return run_in_netns(pid, socket.socket, family, type, proto)


def same_netns(pid_a: int, pid_b: int) -> bool:
    """True when both processes share one network namespace."""
    return netns_inode(pid_a) == netns_inode(pid_b)


def run_program(pid: int, argv: Sequence[str], stdin: str | None = None,
                timeout: float = PROGRAM_TIMEOUT_S) -> str:
    """Run the host binary ``argv[0]`` (an argv list, no shell) inside the network namespace
    of ``pid``; return its stdout.

    Raises WiringError when the program is missing, times out or exits non-zero; the
    message ends with the last lines it wrote on stderr (else stdout), usage hints left out.
    """
    if not argv:
        raise WiringError("run_program: empty argv")
    path = shutil.which(argv[0], path=TOOL_PATH) or shutil.which(argv[0])
    if not path:
        raise WiringError(f"{argv[0]} not found on the host (searched {TOOL_PATH}); install "
                          "it, e.g. `apt-get install -y iptables` (or run `make setup`)")
    where = f"{argv[0]} in netns of pid {pid}"
    try:
        done = run_in_netns(pid, subprocess.run, [path, *argv[1:]], input=stdin,
                            capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WiringError(f"{where} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise WiringError(f"{where} could not start: {exc}") from exc
    if done.returncode != 0:
        raise WiringError(f"{where} failed (exit {done.returncode}): "
                          f"{_reason(done.stderr or done.stdout)}")
    return str(done.stdout)


def _reason(output: str) -> str:
    """What a failed program said, without its usage hints: iptables-restore ends with
    "Try `iptables-restore -h' ...", the line that says what is wrong comes before it."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.lower().startswith(("try ", "usage:"))]
    return " / ".join((useful or lines)[-3:]) or "no output"
