"""BIRD inside a lab node: its files, starting it, and its control socket.

podlab reaches a node's BIRD without `docker exec` (a quarter second per call): the
node's root filesystem is ``/proc/<pid>/root`` on the host (podlab runs as root), so the
configuration is written there and the control socket (``birdc``'s) is connected to there,
from the host, in a millisecond. The daemon is started with util-linux's ``nsenter`` in
all the node's namespaces (mount, pid, network, uts, ipc; 30 ms): it runs the image's
bird, sees the node's files, and dies with the node's container like any of its
processes (the kernel kills a pid namespace with its init).

The control protocol is BIRD's own: the daemon greets with ``0001 BIRD x.y ready.``; each
reply line starts with a 4-digit code and ``-`` (more follows) or `` `` (last line), or
with a space (a continuation of the previous code). Codes 8000 and up are errors.
"""

from __future__ import annotations

import os
import re
import shutil
import signal as signals
import socket
import subprocess
from dataclasses import dataclass

from harness.errors import RoutingError
from harness.host import procs

# One daemon per family, as Calico runs them: `bird` (IPv4) and `bird6` (IPv6), each with
# its own configuration, control socket, pid file and log, so one can die alone. Both are
# the distribution's BIRD 2 (`bird`), each given one family's configuration.
DAEMON = "bird"  # the IPv4 one, and the only one of an IPv4-only lab
DAEMON6 = "bird6"
BINARY = "/usr/sbin/bird"


def conf_path(daemon: str = DAEMON) -> str:
    return f"/etc/bird/{daemon}.conf"


def ctl_path(daemon: str = DAEMON) -> str:
    return f"/run/bird/{daemon}.ctl"


def pid_path(daemon: str = DAEMON) -> str:
    return f"/run/bird/{daemon}.pid"


def log_path(daemon: str = DAEMON) -> str:
    return f"/run/bird/{daemon}.log"


def argv(daemon: str = DAEMON) -> tuple[str, ...]:
    """How a daemon is started. It forks into the background once its configuration
    parsed; a bad one exits 1 with the reason on stderr, which start() reports."""
    return (BINARY, "-c", conf_path(daemon), "-s", ctl_path(daemon), "-P", pid_path(daemon))


CONF_PATH = conf_path()
CTL_PATH = ctl_path()
PID_PATH = pid_path()
LOG_PATH = log_path()
ARGV: tuple[str, ...] = argv()
START_TIMEOUT_S = 10.0
RTPROT_BIRD = 12  # the kernel's protocol number of the routes BIRD installs (`proto bird`)
CTL_TIMEOUT_S = 2.0


def _host_path(pid: int, path: str) -> str:
    return f"/proc/{pid}/root{path}"


def write_file(pid: int, path: str, text: str) -> None:
    """Write a file (bird.conf) into the node's filesystem, whole (via a rename)."""
    target = _host_path(pid, path)
    tmp = f"{target}.podlab"
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise RoutingError(f"cannot write {path} in the node of pid {pid}: {exc}; "
                           "does its image carry BIRD (podlab/bird)?") from exc


def nsenter_argv(pid: int, argv: tuple[str, ...] | list[str]) -> list[str]:
    """``argv`` run in every namespace of the process ``pid`` (its container's)."""
    nsenter = shutil.which("nsenter", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not nsenter:
        raise RoutingError("nsenter not found; install util-linux")
    return [nsenter, f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
            "--", *argv]


def start(pid: int, argv: tuple[str, ...] = ARGV) -> None:
    """Start BIRD in the node of ``pid``; RoutingError with BIRD's words if it fails.

    BIRD forks into the background once its configuration parsed, so this returns when
    the daemon runs (or refused its configuration)."""
    try:
        done = subprocess.run(nsenter_argv(pid, argv), capture_output=True, text=True,
                              timeout=START_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RoutingError(f"bird did not start in the node of pid {pid}: {exc}") from exc
    if done.returncode != 0:
        text = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise RoutingError(f"bird did not start in the node of pid {pid}: {text}")


def daemon_pid(pid: int, daemon: str = DAEMON) -> int | None:
    """The host pid of the node's BIRD `daemon` (from its pid file), or None when none
    runs."""
    try:
        with open(_host_path(pid, pid_path(daemon))) as fh:
            inner = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    # the pid file holds the pid inside the node's pid namespace
    return procs.host_pid(pid, inner)


def kill(pid: int, signal: int = signals.SIGKILL, daemon: str = DAEMON) -> int:
    """Kill the BIRD `daemon` of the node of ``pid`` (SIGKILL: a crash, its kernel routes
    stay behind); return the daemon's host pid. RoutingError when none runs."""
    host_pid = daemon_pid(pid, daemon)
    if host_pid is None:
        raise RoutingError(f"no {daemon} runs in the node of pid {pid}")
    os.kill(host_pid, signal)
    return host_pid


# --------------------------------------------------------------------------- control socket


@dataclass(frozen=True)
class Reply:
    code: int
    text: str


def parse_replies(lines: list[str]) -> list[Reply]:
    """Raw control-socket lines -> replies; a continuation line keeps the last code."""
    out: list[Reply] = []
    code = 0
    for line in lines:
        line = line.rstrip("\n")
        if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
            code, text = int(line[:4]), line[5:]
        elif line.startswith(" "):
            text = line[1:]
        else:
            continue
        out.append(Reply(code, text))
    return out


def command(pid: int, line: str, timeout: float = CTL_TIMEOUT_S,
            daemon: str = DAEMON) -> list[Reply]:
    """One command to the node's BIRD `daemon`; RoutingError when it does not answer or
    refuses."""
    path = _host_path(pid, ctl_path(daemon))
    raw: list[str] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            with sock.makefile("rw", encoding="utf-8", errors="replace", newline="\n") as fh:
                fh.readline()  # 0001 BIRD x.y ready.
                fh.write(line + "\n")
                fh.flush()
                while True:
                    got = fh.readline()
                    if not got:
                        break
                    raw.append(got)
                    if len(got) >= 5 and got[:4].isdigit() and got[4] == " ":
                        break
    except OSError as exc:
        raise RoutingError(f"no {daemon} answers in the node of pid {pid}: {exc}") from exc
    replies = parse_replies(raw)
    errors = [r for r in replies if r.code >= 8000]
    if errors:
        raise RoutingError(f"bird refused {line!r}: {errors[0].text}")
    return replies


def configured(pid: int, daemon: str = DAEMON) -> bool:
    """Is BIRD `daemon` set up in the node of ``pid`` (its configuration exists)?"""
    return os.path.exists(_host_path(pid, conf_path(daemon)))


def alive(pid: int, daemon: str = DAEMON) -> bool:
    """Does BIRD `daemon` answer on its control socket in the node?"""
    try:
        command(pid, "show status", timeout=1.0, daemon=daemon)
    except RoutingError:
        return False
    return True


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str  # BGP, Kernel, Direct, Static, Device
    state: str  # up, start, down
    since: str
    info: str  # for BGP: Established, Active, Connect, ...


def parse_protocols(replies: list[Reply]) -> list[Protocol]:
    """`show protocols` -> one Protocol per row (code 1002)."""
    out = []
    for r in replies:
        if r.code != 1002:
            continue
        cols = r.text.split(None, 5)
        if len(cols) >= 5:
            out.append(Protocol(cols[0], cols[1], cols[3], cols[4],
                                cols[5].strip() if len(cols) > 5 else ""))
    return out


def protocols(pid: int, daemon: str = DAEMON) -> list[Protocol]:
    return parse_protocols(command(pid, "show protocols", daemon=daemon))


@dataclass(frozen=True)
class LearnedRoute:
    prefix: str
    via: str | None
    iface: str | None
    protocol: str  # the session it came from
    best: bool  # BIRD's choice, the one in the kernel
    as_path: tuple[int, ...]


_ROUTE = re.compile(r"^(?P<prefix>\S+)?\s+\S+\s+\[(?P<proto>\S+)[^\]]*\]\s*(?P<best>\*)?")
_VIA = re.compile(r"^\s*via\s+(?P<via>\S+)\s+on\s+(?P<iface>\S+)")


def parse_routes(replies: list[Reply]) -> list[LearnedRoute]:
    """`show route all ...` -> routes with their AS paths (codes 1007 route, 1008/1012
    attributes; a route line without a prefix is another route to the previous one)."""
    out: list[dict[str, object]] = []
    prefix = ""
    for r in replies:
        if r.code == 1007:
            m = _ROUTE.match(r.text)
            if m and not r.text.startswith("Table "):
                prefix = m["prefix"] or prefix
                out.append({"prefix": prefix, "via": None, "iface": None,
                            "protocol": m["proto"], "best": bool(m["best"]), "as_path": ()})
                continue
            via = _VIA.match(r.text)
            if via and out:
                out[-1].update(via=via["via"], iface=via["iface"])
        elif r.code in (1008, 1012) and out:
            text = r.text.strip()
            if text.startswith("BGP.as_path:"):
                out[-1]["as_path"] = tuple(int(a) for a in text.split(":", 1)[1].split()
                                           if a.isdigit())
    return [LearnedRoute(**row) for row in out]  # type: ignore[arg-type]


def bgp_routes(pid: int, daemon: str = DAEMON) -> list[LearnedRoute]:
    """Every route BIRD learned over BGP, best or not, with its AS path."""
    return parse_routes(command(pid, "show route all where source = RTS_BGP", daemon=daemon))
