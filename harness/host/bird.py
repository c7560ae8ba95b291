"""BIRD inside a lab node: its files, starting it, and its control socket.

podlab reaches a node's BIRD without `docker exec`: the node's root filesystem is
``/proc/<pid>/root`` on the host (podlab runs as root), so the configuration is written
there and the control socket (``birdc``'s) is connected to there, from the host, in a
millisecond. Only starting the daemon goes through the container (``runtime.exec``), so
that it runs in the node's namespaces and cgroup and dies with the container.

The control protocol is BIRD's own: the daemon greets with ``0001 BIRD x.y ready.``; each
reply line starts with a 4-digit code and ``-`` (more follows) or `` `` (last line), or
with a space (a continuation of the previous code). Codes 8000 and up are errors.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from harness.errors import RoutingError
from harness.host import runtime

CONF_PATH = "/etc/bird/bird.conf"
CTL_PATH = "/run/bird/bird.ctl"
PID_PATH = "/run/bird/bird.pid"
LOG_PATH = "/run/bird/bird.log"
# The daemon forks into the background once its configuration parsed; a bad one exits 1
# with the reason on stderr, which start() reports.
ARGV: tuple[str, ...] = ("bird", "-c", CONF_PATH, "-s", CTL_PATH, "-P", PID_PATH)
RTPROT_BIRD = 12  # the kernel's protocol number of the routes BIRD installs (`proto bird`)
CTL_TIMEOUT_S = 2.0


def _host_path(pid: int, path: str) -> str:
    return f"/proc/{pid}/root{path}"


def write_config(pid: int, text: str) -> None:
    """Write bird.conf into the node's filesystem (whole, via a rename)."""
    target = _host_path(pid, CONF_PATH)
    tmp = f"{target}.podlab"
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise RoutingError(f"cannot write {CONF_PATH} in the node of pid {pid}: {exc}; "
                           "is its image podlab/bird?") from exc


def start(container: str) -> None:
    """Start BIRD in a running node container; RoutingError with BIRD's words if it fails."""
    code, out = runtime.exec(container, list(ARGV))
    if code != 0:
        text = out.decode(errors="replace").strip() or f"exit code {code}"
        raise RoutingError(f"bird did not start in {container}: {text}")


def kill(container: str, signal: str = "KILL") -> None:
    """Kill the node's BIRD (a crashed daemon: KILL leaves its kernel routes behind)."""
    code, out = runtime.exec(container, ["sh", "-c", f"kill -{signal} $(cat {PID_PATH})"])
    if code != 0:
        raise RoutingError(f"no bird to kill in {container}: "
                           f"{out.decode(errors='replace').strip()}")


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


def command(pid: int, line: str, timeout: float = CTL_TIMEOUT_S) -> list[Reply]:
    """One command to the node's BIRD; RoutingError when it does not answer or refuses."""
    path = _host_path(pid, CTL_PATH)
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
        raise RoutingError(f"no bird answers in the node of pid {pid}: {exc}") from exc
    replies = parse_replies(raw)
    errors = [r for r in replies if r.code >= 8000]
    if errors:
        raise RoutingError(f"bird refused {line!r}: {errors[0].text}")
    return replies


def alive(pid: int) -> bool:
    """Does a BIRD answer on the node's control socket?"""
    try:
        command(pid, "show status", timeout=1.0)
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


def protocols(pid: int) -> list[Protocol]:
    return parse_protocols(command(pid, "show protocols"))


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


def bgp_routes(pid: int) -> list[LearnedRoute]:
    """Every route BIRD learned over BGP, best or not, with its AS path."""
    return parse_routes(command(pid, "show route all where source = RTS_BGP"))
