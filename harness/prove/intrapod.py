"""The intra-pod check: two containers of one pod talk over 127.0.0.1.

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

from harness.host import bpf, nsexec, sockdiag
from harness.host.netns import run_in_netns
from harness.plan import ContainerPlan, Plan, PodPlan
from harness.prove.probe import nonce
from harness.prove.result import Result

# listener ports: a random free one below the kernel's ephemeral range (32768-60999), so
# that two verifies of one lab, or a client's own port, do not collide with it
PORTS = range(20000, 32768)
WAIT = 5.0  # seconds: bound on every step


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


def check_pod(pod: PodPlan, pids: dict[str, int], probe_id: int) -> Result:
    listener = pod.containers[0]
    if pod.infra not in pids:
        return Result("intra-pod", pod.name, pod.name, "tcp", False, {}, {},
                      f"the pod's infra container {pod.infra} is not running")
    infra_pid = pids[pod.infra]
    sender = pod.containers[1] if len(pod.containers) > 1 else pod.containers[0]
    down = [c.container for c in (listener, sender) if c.container not in pids]
    if down:
        return Result("intra-pod", f"{pod.name}/{sender.name}", f"{pod.name}/{listener.name}",
                      "tcp", False, {}, {}, f"container {down[0]} is not running")
    token = nonce(probe_id).decode()
    for _ in range(3):  # another verify may take the same port first: pick again
        problems, received, on_lo, port = _exchange(listener, sender, pids, infra_pid, token)
        if "Address already in use" not in received:
            break
    if not problems and token not in received:
        problems.append(f"listener in {listener.name} did not receive the message "
                        f"(got {received.strip()[:80]!r})")
    if not on_lo:
        problems.append("the exchange was not seen on the pod's lo")
    expected = {"listener": listener.name, "sender": sender.name, "dst": f"127.0.0.1:{port}",
                "message": token}
    observed = {"received": token in received, "seen_on_lo": on_lo}
    detail = "; ".join(problems) or (
        f"{sender.name} -> {listener.name} over 127.0.0.1:{port}, seen on lo")
    return Result("intra-pod", f"{pod.name}/{sender.name}", f"{pod.name}/{listener.name}", "tcp",
                  not problems, expected, observed, detail)


def _exchange(listener: ContainerPlan, sender: ContainerPlan, pids: dict[str, int],
              infra_pid: int, token: str) -> tuple[list[str], str, bool, int]:
    """Listen in one container on a free port, send from the other: (problems, what the
    listener printed, whether the token was seen on lo, the port)."""
    problems: list[str] = []
    sniff, diag = _sockets(infra_pid)
    try:
        port = _free_port(sockdiag.tcp_listening(diag))
        # `-e`: the connection becomes the reader's stdin; a plain `nc -l` with no stdin
        # of its own may hang up before the message arrives
        proc = nsexec.spawn(pids[listener.container], [
            "timeout", str(int(WAIT)), "nc", "-l", "-p", str(port),
            "-e", "sh", "-c", 'read line; echo "$line" >&2'])
        deadline = time.monotonic() + WAIT
        while port not in sockdiag.tcp_listening(diag) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break  # the listener ended at once: its output says why
            time.sleep(0.005)
        if port not in sockdiag.tcp_listening(diag):
            problems.append(f"no listener came up in {listener.name} within {WAIT:.0f} s")
        else:
            code, out = nsexec.run(pids[sender.container], [
                "sh", "-c", f"echo {token} | nc -w 2 127.0.0.1 {port}"], WAIT)
            if code != 0:
                problems.append(f"sender in {sender.name} failed ({code}): "
                                f"{out.decode(errors='replace').strip()[:200]}")
        received = nsexec.finish(proc, WAIT + 1)[1]
        on_lo = _seen_on_lo(sniff, token.encode())
    finally:
        sniff.close()
        diag.close()
    return problems, received.decode(errors="replace"), on_lo, port


def _seen_on_lo(sniff: socket.socket, token: bytes) -> bool:
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            frame = sniff.recv(bpf.SNAPLEN)
        except (TimeoutError, BlockingIOError):
            continue
        if token in frame and frame[26:30] == frame[30:34] == b"\x7f\x00\x00\x01":
            return True
    return False


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
                results.append(fut.result())
            except Exception as exc:  # a broken pod must not hide the others' results
                results.append(Result("intra-pod", pod.name, pod.name, "tcp", False, {}, {},
                                      f"check failed: {exc}"))
        return results
