"""Every exec line podlab exports, replayed: for every example podlab exports, each node
gets a network namespace of its own, the export's links become veths between them (with
their pinned MTU), and each node's exec lines run there in order, each with the very
program the node's image carries (busybox's applet, or a file the image's `host-files`
copies from this host); every line must succeed. A line whose program the image lacks
fails as it would under containerlab.

Two things are kept off the host: a daemon's config file is written under a temporary
directory instead of its absolute path, and the daemon's start line runs with `-p`
(parse the config and exit), so no routing daemon is left running.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from podlab_unit_helpers import PODLAB_EXAMPLES, missing

from harness.host import images, wiring
from harness.model.topology import load_topology
from harness.plan import make_plan
from harness.render.export import to_containerlab

LINE_TIMEOUT_S = 20.0


def _root_tools() -> tuple[str, str, str]:
    if os.geteuid() != 0:
        missing("replaying exec lines needs root (network namespaces)")
    unshare = shutil.which("unshare", path="/usr/bin:/bin")
    nsenter = shutil.which("nsenter", path="/usr/bin:/bin")
    if not unshare or not nsenter:
        missing("unshare and nsenter (util-linux) are not installed")
    busybox = str(images.find_busybox())
    return unshare, nsenter, busybox  # type: ignore[return-value]


def image_programs(image: str, busybox: str) -> dict[str, list[str]]:
    """What each command name runs in `image`: a busybox applet (the host's static busybox
    is the one the image carries) or a host file the image copies (same path)."""
    name = image.removeprefix("podlab/").split(":")[0]
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    out = {a: [busybox, a] for a in applets}
    listing = images.images_dir() / name / images.HOST_FILES
    if listing.is_file():
        for entry in images.parse_host_files(listing.read_text()):
            if not entry.path.endswith("/"):
                out[entry.path] = [entry.path]
                out[Path(entry.path).name] = [entry.path]  # found on the image's PATH
    return out


class _Lab:
    """One namespace per exported node that has its own (network-mode: none)."""

    def __init__(self, unshare: str) -> None:
        self.unshare = unshare
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def add(self, name: str) -> int:
        proc = subprocess.Popen([self.unshare, "--net", "--", "sleep", "600"])
        self.procs[name] = proc
        # until unshare has made the new namespace, the pid is still in this one: a veth
        # put there would land in the host's
        mine = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == mine:
            assert time.monotonic() < deadline, "unshare --net made no namespace"
            time.sleep(0.005)
        return proc.pid

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def replay_lab() -> Iterator[tuple[_Lab, str, str]]:
    unshare, nsenter, busybox = _root_tools()
    lab = _Lab(unshare)
    try:
        yield lab, nsenter, busybox
    finally:
        lab.close()


def _rewrite(argv: list[str], tmp: Path) -> list[str]:
    """A daemon's file goes under `tmp`; its daemon only parses its config (-p)."""
    if argv[:2] == ["sh", "-c"] and "> /" in argv[2]:
        return [argv[0], argv[1], argv[2].replace("> /", f"> {tmp}/"), *argv[3:]]
    if argv[0].endswith("/bird"):
        conf = argv[argv.index("-c") + 1]
        return [argv[0], "-p", "-c", f"{tmp}{conf}"]
    return argv


@pytest.mark.parametrize("topo", PODLAB_EXAMPLES, ids=[p.name for p in PODLAB_EXAMPLES])
def test_every_exported_exec_line_succeeds_with_the_images_own_programs(
        topo: Path, replay_lab: tuple[_Lab, str, str], tmp_path: Path) -> None:
    lab, nsenter, busybox = replay_lab
    doc: dict[str, Any] = to_containerlab(make_plan(load_topology(topo)))["topology"]
    pid = {name: lab.add(name) for name, node in doc["nodes"].items()
           if node["network-mode"] == "none"}
    for link in doc["links"]:
        (a, ia), (b, ib) = (e.split(":", 1) for e in link["endpoints"])
        wiring.create_veth(pid[a], ia, pid[b], ib, mtu=link["mtu"])
    failures: list[str] = []
    ran = 0
    for name, node in doc["nodes"].items():
        programs = image_programs(node["image"], busybox)
        for dirname in ("etc/bird", "run/bird"):
            (tmp_path / name / dirname).mkdir(parents=True, exist_ok=True)
        for line in node.get("exec", []):
            argv = shlex.split(line)
            if argv[0] not in programs:
                failures.append(f"{name}: {line!r}: {node['image']} has no {argv[0]}")
                continue
            argv = _rewrite(argv, tmp_path / name)
            cmd = [nsenter, f"--net=/proc/{pid[name]}/ns/net", "--",
                   *programs[argv[0]], *argv[1:]]
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=LINE_TIMEOUT_S, check=False)
            ran += 1
            if done.returncode != 0:
                failures.append(f"{name}: {line!r} exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[:300]}")
    assert not failures, "\n".join(failures[:20])
    assert ran == sum(len(n.get("exec", [])) for n in doc["nodes"].values()) > 0
