"""A scapy session inside one network namespace, driven from Python (`Lab.scapy`).

    python -m harness.host.scapyd PID

The child process enters /proc/PID/ns/net in its main thread *before* it imports scapy
(as `podlab scapy` does), so scapy's interfaces, `conf.iface` and `conf.route` are the
namespace's own and every packet it sends leaves from there, its source picked by that
namespace's routes. The parent (this module's `ScapySession`) never leaves the host's
namespace: calls and their answers cross the pipe pickled, so packets travel as scapy
objects both ways.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from types import TracebackType
from typing import IO, Any

from harness.errors import WiringError

CALLS = ("sr1", "sr", "srp", "srp1", "send", "sendp", "sniff", "traceroute")


class _Recipe:
    """A packet as it was written (class and the fields set, layer by layer), not as it
    would build here: scapy pickles a packet as its built bytes, which would fill in the
    source address from the *parent's* routes. The child builds it in its namespace."""

    def __init__(self, pkt: Any):
        from scapy.packet import NoPayload

        self.cls = type(pkt)
        self.fields = {k: _outbound(v) for k, v in pkt.fields.items()}
        self.payload = None if isinstance(pkt.payload, NoPayload) else _Recipe(pkt.payload)

    def build(self) -> Any:
        pkt = self.cls(**{k: _inbound(v) for k, v in self.fields.items()})
        return pkt / self.payload.build() if self.payload is not None else pkt


def _outbound(value: Any) -> Any:
    """Packets in call arguments (alone, or in lists and tuples) as recipes."""
    from scapy.packet import Packet

    if isinstance(value, Packet):
        return _Recipe(value)
    if isinstance(value, list | tuple):
        return type(value)(_outbound(v) for v in value)
    return value


def _inbound(value: Any) -> Any:
    if isinstance(value, _Recipe):
        return value.build()
    if isinstance(value, list | tuple):
        return type(value)(_inbound(v) for v in value)
    return value


class Routes:
    """A namespace's `conf.route`, asked there: printed, it is that table; `route(dst)`
    gives (iface, source, gateway) as scapy would pick them in that namespace."""

    def __init__(self, session: ScapySession, text: str):
        self._session = session
        self._text = text

    def route(self, dst: str) -> tuple[str, str, str]:
        return tuple(self._session._call("route_to", dst))  # type: ignore[return-value]

    def __str__(self) -> str:
        return self._text

    __repr__ = __str__


def _write(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(struct.pack("!I", len(data)) + data)
    out.flush()


def _read(inp: IO[bytes]) -> Any:
    head = inp.read(4)
    if len(head) < 4:
        raise EOFError
    (size,) = struct.unpack("!I", head)
    return pickle.loads(inp.read(size))  # our own child (or parent): trusted


class ScapySession:
    """scapy in a lab namespace: `sr1`, `sr`, `srp`, `srp1`, `send`, `sendp`, `sniff`,
    `traceroute` take scapy's own arguments (picklable ones: no callbacks) and return
    scapy's own answers; `route` is that namespace's `conf.route`, `iface` its
    `conf.iface`. A context manager: the child ends on exit."""

    def __init__(self, pid: int, label: str = ""):
        self.label = label or f"pid {pid}"
        self._proc = subprocess.Popen([sys.executable, "-m", "harness.host.scapyd", str(pid)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        try:
            ready = self._call("ready")
        except WiringError:
            self.close()
            raise
        self.iface: str = ready["iface"]

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            _write(self._proc.stdin, (name, _outbound(args),
                                       {k: _outbound(v) for k, v in kwargs.items()}))
            ok, value = _read(self._proc.stdout)
        except (EOFError, BrokenPipeError):
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr \
                else ""
            raise WiringError(f"scapy in {self.label} ended: {err.strip()[-500:]}") from None
        if not ok:
            raise value
        return value

    def __getattr__(self, name: str) -> Any:
        if name in CALLS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(name)

    @property
    def route(self) -> Routes:
        """The namespace's scapy routing table (`conf.route`): print it, or
        `.route(dst)` -> (iface, source, gateway), computed in the namespace."""
        return Routes(self, self._call("route"))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            if f:
                f.close()

    def __enter__(self) -> ScapySession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def serve(pid: int) -> int:
    """The child: enter the namespace, import scapy, answer calls until stdin closes."""
    from harness.host.netns import CLONE_NEWNET, _setns, open_netns

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # scapy's own prints must not corrupt the pipe
    inp = sys.stdin.buffer
    try:
        fd = open_netns(pid)
        try:
            _setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
    except Exception as exc:  # answered to the parent's first call
        _read(inp)
        _write(out, (False, WiringError(f"cannot enter the netns of pid {pid}: {exc}")))
        return 3
    from scapy.config import conf

    conf.logLevel = 40
    import scapy.all as scapy_all

    while True:
        try:
            name, args, kwargs = _read(inp)
        except EOFError:
            return 0
        args, kwargs = _inbound(args), {k: _inbound(v) for k, v in kwargs.items()}
        try:
            if name == "ready":
                value: Any = {"iface": str(conf.iface)}
            elif name == "route":
                value = str(conf.route)
            elif name == "route_to":
                value = tuple(str(x) for x in conf.route.route(*args))
            elif name in CALLS:
                kwargs.setdefault("verbose", 0) if name != "sniff" else None
                value = getattr(scapy_all, name)(*args, **kwargs)
            else:
                raise ValueError(f"no scapy call {name!r} here; one of {', '.join(CALLS)}")
            _write(out, (True, value))
        except Exception as exc:  # the caller gets scapy's own error
            try:
                _write(out, (False, exc))
            except Exception:  # an unpicklable error: its text
                _write(out, (False, RuntimeError(repr(exc))))


if __name__ == "__main__":
    # the module's own copy (not __main__'s), whose classes are those the parent pickles
    from harness.host import scapyd

    sys.exit(scapyd.serve(int(sys.argv[1])))
