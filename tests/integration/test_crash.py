"""Crash safety: a deploy killed at any point leaves the host exactly as it was.

`podlab deploy` runs as a subprocess and gets SIGINT, SIGTERM or SIGKILL before it has
created anything, while it creates containers, while it wires them, and while it starts
the pods' containers (found by watching the lab's container count). SIGINT and SIGTERM
must roll back by themselves; after SIGKILL, `podlab destroy --name LAB` must. "Exactly"
means: no container with the lab's label, no new host netdev, no new host iptables rule,
no new mount that does not belong to a container still alive (other labs run here too).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import PodlabError
from harness.host import runtime

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"
PODLAB = [sys.executable, "-m", "harness.cli"]
# flat3: 5 nodes + 4 pod infra containers, then 8 pod containers
INFRA_DONE = 9  # flat3: 5 nodes and 4 pause containers
DOCKER_VETH = re.compile(r"veth[0-9a-f]{7}$")  # other tenants' Docker bridge networks


@dataclass(frozen=True)
class HostState:
    netdevs: frozenset[str]
    iptables: tuple[str, ...]
    mounts: frozenset[str]


def iptables_rules() -> tuple[str, ...]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    # comments carry timestamps, chain headers packet counters: neither is a rule
    return tuple(sorted(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines()
                        if line and not line.startswith("#")))


def snapshot() -> HostState:
    devs = frozenset(n for n in os.listdir("/sys/class/net") if not DOCKER_VETH.match(n))
    mounts = frozenset(line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                       .splitlines())
    return HostState(devs, iptables_rules(), mounts)


def live_container_roots() -> list[str]:
    """Paths under which Docker mounts things for containers that exist now."""
    api = runtime.client().api
    roots = []
    for row in api.containers(all=True):
        try:
            info = api.inspect_container(row["Id"])
        except Exception:  # removed meanwhile: owns nothing
            continue
        roots += [((info.get("GraphDriver") or {}).get("Data") or {}).get("MergedDir") or "",
                  (info.get("NetworkSettings") or {}).get("SandboxKey") or "",
                  f"/var/lib/docker/containers/{row['Id']}"]
    # /var/run is a symlink to /run: mountinfo shows the resolved path
    return [r.replace("/var/run/", "/run/", 1) for r in roots if r]


def leaked_mounts(before: HostState) -> list[str]:
    """New mounts that no live container owns and that stay (others' labs come and go)."""
    candidates = set(snapshot().mounts - before.mounts)
    for _ in range(3):
        roots = live_container_roots()
        candidates = {m for m in candidates if not any(m.startswith(r) for r in roots)}
        if not candidates:
            return []
        time.sleep(1)
        candidates &= snapshot().mounts  # a container being created or removed right now
    return sorted(candidates)


def assert_restored(before: HostState, lab: str, why: str = "") -> None:
    left = [c.name for c in runtime.containers_of(lab)]
    assert not left, f"containers of {lab} left behind: {left} ({why})"
    after = snapshot()
    assert after.netdevs <= before.netdevs, f"new host netdevs {after.netdevs - before.netdevs}"
    new_rules = set(after.iptables) - set(before.iptables)
    assert not new_rules, f"new host iptables rules {new_rules}"
    leaked = leaked_mounts(before)
    assert not leaked, f"new mounts {leaked}"


def wait_count(lab: str, at_least: int, proc: subprocess.Popen[bytes], limit: float = 60
               ) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            n = len(runtime.containers_of(lab))
        except PodlabError:
            n = 0
        if n >= at_least:
            return n
        time.sleep(0.02)
    return -1


POINTS = {"before": 0, "containers": 2, "wiring": INFRA_DONE, "pods": INFRA_DONE + 2}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("sig", list(SIGNALS))
def test_killed_deploy_leaves_nothing(docker_available: None, tmp_path: Path, sig: str,
                                      point: str) -> None:
    lab = f"itk{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{lab}.clab.yml"
    path.write_text(FLAT3.read_text().replace("name: flat3", f"name: {lab}", 1))
    before = snapshot()
    proc = subprocess.Popen([*PODLAB, "deploy", "-t", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if point == "before":
            time.sleep(0.3)
        else:
            # containers are created in a pipeline, so the count may jump past the point;
            # what matters is that the deploy is still running when the signal lands
            seen = wait_count(lab, POINTS[point], proc)
            if seen < 0:
                pytest.fail(f"deploy finished before the {point} point")
        proc.send_signal(SIGNALS[sig])
        _, stderr = proc.communicate(timeout=120)
        if sig == "SIGKILL":
            assert proc.returncode == -signal.SIGKILL
            # the daemon still finishes a create the dead client had in flight
            time.sleep(1.0)
            done = subprocess.run([*PODLAB, "destroy", "--name", lab], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
        elif point != "before":  # the CLI is up: it rolled back and said so
            assert proc.returncode == 130, stderr.decode()
            assert b"Traceback" not in stderr, stderr.decode()
        assert_restored(before, lab, f"{sig} at {point}: {stderr.decode()[-300:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run([*PODLAB, "destroy", "--name", lab], cwd=ROOT, capture_output=True,
                       timeout=120, check=False)
