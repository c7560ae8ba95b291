"""The intra-pod check: two containers of one pod talk over localhost, 127.0.0.1 (and ::1
in a pod that has IPv6: once per family, like every check).

A real listener (`nc -l`) runs in the pod's first container and a real sender in its
second (in the first again for a single-container pod); the exchange must reach the
listener and be seen on the pod's `lo`, where a sniffer was opened before either started.
Both run as processes of their containers (harness.host.nsexec: the containers' own `nc`
in their namespaces), without a `docker exec` round trip each.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.host import bpf, nsexec, sockdiag
from harness.host.netns import run_in_netns
from harness.plan import ContainerPlan, Plan, PodPlan
from harness.prove.probe import nonce
from harness.prove.result import Result

# listener ports: a random free one below the kernel's ephemeral range (32768-60999), so
# that two verifies of one lab, or a client's own port, do not collide with it
PORTS = range(20000, 32768)
WAIT = 5.0  # seconds: bound on every step
LOCALHOST = {"ipv4": "127.0.0.1", "ipv6": "::1"}


def _free_port(listening: set[int]) -> int:
    while True:
        port = random.choice(PORTS)
        if port not in listening:
            return port


def _sockets(pid: int) -> tuple[socket.socket, socket.socket]:
    """A sniffer on the pod's lo, and a sock_diag socket that says what listens there
    (polled while the listener comes up: cheap, unlike /proc/net/tcp)."""
    def make() -> tuple[socket.socket, socket.socket]:
        sock = bpf.packet_socket()
        try:
            sock.bind(("lo", 0))
            sock.settimeout(0.05)
            return sock, sockdiag.open_diag()
        except BaseException:
            sock.close()
            raise

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
    down = [c.container for c in (listener, sender) if c.container not in pids]
    if down:
        return [Result("intra-pod", f"{pod.name}/{sender.name}", f"{pod.name}/{listener.name}",
                       "tcp", False, {}, {}, f"container {down[0]} is not running", family=f)
                for f in families]
    for _ in range(3):  # another verify may take the same port first: pick again
        tokens = [(f, nonce(probe_id + (i << 40)).decode()) for i, f in enumerate(families)]
        problems, received, on_lo, legs = _exchange(listener, sender, pids, infra_pid, tokens)
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


def _free_ports(listening: set[int], count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port(listening)
        if port not in ports:
            ports.append(port)
    return ports


def _exchange(listener: ContainerPlan, sender: ContainerPlan, pids: dict[str, int],
              infra_pid: int, tokens: list[tuple[str, str]]
              ) -> tuple[dict[str, list[str]], str, set[str], list[Leg]]:
    """Listen in one container on a free port per (family, token), send from the other:
    (problems by leg token, what the listeners printed, the tokens seen on lo, the legs)."""
    problems: dict[str, list[str]] = {}
    sniff, diag = _sockets(infra_pid)
    try:
        ports = _free_ports(sockdiag.tcp_listening(diag), len(tokens))
        legs = [Leg(f, port, token) for (f, token), port in zip(tokens, ports, strict=True)]
        # `-e`: the connection becomes the reader's stdin; a plain `nc -l` with no stdin
        # of its own may hang up before the message arrives. Each under its own timeout.
        listen_sh = " & ".join(
            f"timeout {int(WAIT)} nc -l -p {leg.port} -e sh -c 'read line; echo \"$line\" >&2'"
            for leg in legs) + " & wait"
        proc = nsexec.spawn(pids[listener.container], ["sh", "-c", listen_sh])
        deadline = time.monotonic() + WAIT

        def all_up() -> bool:
            return set(ports) <= sockdiag.tcp_listening(diag)

        while not all_up() and time.monotonic() < deadline:
            if proc.poll() is not None:
                break  # the listeners ended at once: their output says why
            time.sleep(0.005)
        if not all_up():
            for leg in legs:
                problems[leg.token] = [f"no listener came up in {listener.name} within "
                                       f"{WAIT:.0f} s"]
        else:
            # one line per leg; a failed one names itself
            send_sh = "; ".join(f"echo {leg.token} | nc -w 2 {leg.host} {leg.port} || "
                                f"echo FAILED-{leg.token} $?" for leg in legs)
            code, out = nsexec.run(pids[sender.container], ["sh", "-c", send_sh], WAIT)
            said = out.decode(errors="replace")
            for leg in legs:
                if code != 0 or f"FAILED-{leg.token}" in said:
                    problems[leg.token] = [f"sender in {sender.name} failed ({code}): "
                                           f"{said.strip()[:200]}"]
        received = nsexec.finish(proc, WAIT + 1)[1]
        on_lo = _seen_on_lo(sniff, legs)
    finally:
        sniff.close()
        diag.close()
    return problems, received.decode(errors="replace"), on_lo, legs


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
