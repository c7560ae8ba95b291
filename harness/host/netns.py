"""Run code inside a container's network namespace without moving the main process.

``setns(2)`` with CLONE_NEWNET changes the namespace of the calling *thread* only, so each
call runs in a short-lived thread that enters ``/proc/<pid>/ns/net`` and then dies: the
main thread (and every other thread) never leaves the host namespace, even on error.
Sockets keep the namespace they were created in, so a socket made in such a thread can be
used from anywhere afterwards.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from harness.errors import WiringError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000

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
