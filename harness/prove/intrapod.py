"""The intra-pod check: two containers of one pod talk over localhost, 127.0.0.1 (and ::1
in a pod that has IPv6: once per family, like every check).

A real listener (`nc -l`) runs in the pod's first container and a real sender in its
second (in the first again for a single-container pod); the exchange must reach the
listener and be seen on the pod's `lo`, where a sniffer was opened before either started.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.host import bpf, runtime
from harness.host.netns import run_in_netns
from harness.plan import ContainerPlan, Plan, PodPlan
from harness.prove.probe import nonce
from harness.prove.result import Result

# listener ports: a random free one below the kernel's ephemeral range (32768-60999), so
# that two verifies of one lab, or a client's own port, do not collide with it
PORTS = range(20000, 32768)
WAIT = 5.0  # seconds: bound on every step
TCP_LISTEN = "0A"
LOCALHOST = {"ipv4": "127.0.0.1", "ipv6": "::1"}


def _tcp_ports(pid: int) -> dict[int, set[str]]:
    """{local port: TCP states} in the namespace of `pid` (/proc/net/tcp, tcp6)."""
    out: dict[int, set[str]] = {}
    for table in ("tcp", "tcp6"):  # busybox nc listens on :: when IPv6 is built in
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                out.setdefault(int(fields[1].rsplit(":", 1)[1], 16), set()).add(fields[3])
    return out


def _listening(pid: int, port: int) -> bool:
    return TCP_LISTEN in _tcp_ports(pid).get(port, set())


def _free_port(pid: int) -> int:
    used = _tcp_ports(pid)
    while True:
        port = random.choice(PORTS)
        if port not in used:
            return port


def _sniff_lo(pid: int) -> socket.socket:
    def make() -> socket.socket:
        sock = bpf.packet_socket()
        sock.bind(("lo", 0))
        sock.settimeout(0.05)
        return sock

    return run_in_netns(pid, make)


@dataclass(frozen=True)
class Leg:
    """One family's exchange: a message to a listener port on that family's localhost."""

    family: str
    port: int
    token: str

    @property
    def host(self) -> str:
        return LOCALHOST[self.family]

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def check_pod(pod: PodPlan, pids: dict[str, int], probe_id: int) -> list[Result]:
    """intra-pod in every family of the pod, one Result each. The families share one
    listener and one sender `exec` (a listener per family's port): the check costs no more
    container execs dual-stack than single-stack."""
    listener = pod.containers[0]
    families = pod.families
    if pod.infra not in pids:
        return [Result("intra-pod", pod.name, pod.name, "tcp", False, {}, {},
                       f"the pod's infra container {pod.infra} is not running", family=f)
                for f in families]
    infra_pid = pids[pod.infra]
    sender = pod.containers[1] if len(pod.containers) > 1 else pod.containers[0]
    for _ in range(3):  # another verify may take the same port first: pick again
        ports = _free_ports(infra_pid, len(families))
        legs = [Leg(f, port, nonce(probe_id + (i << 40)).decode())
                for i, (f, port) in enumerate(zip(families, ports, strict=True))]
        problems, received, on_lo = _exchange(listener, sender, infra_pid, legs)
        if "Address already in use" not in received:
            break
    out = []
    for leg in legs:
        mine = list(problems.get(leg.token, []))
        if not mine and leg.token not in received:
            mine.append(f"listener in {listener.name} did not receive the message "
                        f"(got {received.strip()[:80]!r})")
        if leg.token not in on_lo:
            mine.append("the exchange was not seen on the pod's lo")
        expected = {"listener": listener.name, "sender": sender.name, "dst": leg.where,
                    "message": leg.token}
        observed = {"received": leg.token in received, "seen_on_lo": leg.token in on_lo}
        detail = "; ".join(mine) or (
            f"{sender.name} -> {listener.name} over {leg.where}, seen on lo")
        out.append(Result("intra-pod", f"{pod.name}/{sender.name}",
                          f"{pod.name}/{listener.name}", "tcp", not mine, expected, observed,
                          detail, family=leg.family))
    return out


def _free_ports(pid: int, count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port(pid)
        if port not in ports:
            ports.append(port)
    return ports


def _exchange(listener: ContainerPlan, sender: ContainerPlan, infra_pid: int,
              legs: list[Leg]) -> tuple[dict[str, list[str]], str, set[str]]:
    """Listen in one container (a listener per leg), send from the other: (problems by
    leg token, what the listeners printed, the tokens seen on lo)."""
    problems: dict[str, list[str]] = {}
    heard: dict[str, bytes] = {}
    sniff = _sniff_lo(infra_pid)
    try:
        # `-e`: the connection becomes the reader's stdin; a plain `nc -l` with no stdin
        # of its own may hang up before the message arrives. Each under its own timeout.
        listen_sh = " & ".join(
            f"timeout {int(WAIT)} nc -l -p {leg.port} -e sh -c 'read line; echo \"$line\" >&2'"
            for leg in legs) + " & wait"

        def listen() -> None:
            heard["out"] = runtime.exec(listener.container, ["sh", "-c", listen_sh])[1]

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT

        def all_up() -> bool:
            return all(_listening(infra_pid, leg.port) for leg in legs)

        while not all_up() and time.monotonic() < deadline:
            if not thread.is_alive():
                break  # the listeners ended at once: their output says why
            time.sleep(0.01)
        if not all_up():
            thread.join(WAIT + 1)
            for leg in legs:
                problems[leg.token] = [f"no listener came up in {listener.name} within "
                                       f"{WAIT:.0f} s"]
        else:
            # one line per leg; a failed one names itself
            send_sh = "; ".join(f"echo {leg.token} | nc -w 2 {leg.host} {leg.port} || "
                                f"echo FAILED-{leg.token} $?" for leg in legs)
            code, out = runtime.exec(sender.container, ["sh", "-c", send_sh])
            said = out.decode(errors="replace")
            for leg in legs:
                if code != 0 or f"FAILED-{leg.token}" in said:
                    problems[leg.token] = [f"sender in {sender.name} failed: "
                                           f"{said.strip()[:200]}"]
        thread.join(WAIT + 1)
        on_lo = _seen_on_lo(sniff, legs)
    finally:
        sniff.close()
    return problems, heard.get("out", b"").decode(errors="replace"), on_lo


def _seen_on_lo(sniff: socket.socket, legs: list[Leg]) -> set[str]:
    """The tokens of `legs` seen on lo, each from its family's localhost to itself."""
    want = {}
    for leg in legs:
        six = leg.family == "ipv6"
        packed = socket.inet_pton(socket.AF_INET6 if six else socket.AF_INET, leg.host)
        want[leg.token.encode()] = (b"\x86\xdd" if six else b"\x08\x00", packed,
                                    (slice(22, 38), slice(38, 54)) if six
                                    else (slice(26, 30), slice(30, 34)))
    seen: set[str] = set()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and len(seen) < len(want):
        try:
            frame = sniff.recv(bpf.SNAPLEN)
        except (TimeoutError, BlockingIOError):
            continue
        for token, (ethertype, packed, (src, dst)) in want.items():
            if token in frame and frame[12:14] == ethertype and \
                    frame[src] == frame[dst] == packed:
                seen.add(token.decode())
    return seen


def check_all(plan: Plan, pids: dict[str, int],
              pods: Sequence[PodPlan] | None = None) -> list[Result]:
    """intra-pod for each pod of `pods` (default: every pod of the plan)."""
    pods = plan.pods if pods is None else pods
    base = int.from_bytes(os.urandom(4), "big") << 16
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(check_pod, pod, pids, base + i)
                   for i, pod in enumerate(pods)]
        results = []
        for pod, fut in zip(pods, futures, strict=True):
            try:
                results += fut.result()
            except Exception as exc:  # a broken pod must not hide the others' results
                results += [Result("intra-pod", pod.name, pod.name, "tcp", False, {}, {},
                                   f"check failed: {exc}", family=f) for f in pod.families]
        return results
