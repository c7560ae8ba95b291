"""What people see of a real lab: the truth table, the HTML report with its pcap links,
progress bars on a terminal (and none under machine output), and `podlab matrix` running
labs side by side."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from harness import Lab
from harness.host import runtime

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def podlab(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def on_a_terminal(*args: str, timeout: float = 180) -> tuple[int, str]:
    """Run podlab with stdout and stderr on a pseudo-terminal; (exit code, what it drew)."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm-256color")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=slave,
                            stderr=slave, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise TimeoutError(f"podlab {' '.join(args)} drew nothing for {timeout} s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def minimal(docker_available: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Lab, Path]]:
    """A running copy of minimal under a unique name, with its own file (verify -t FILE)."""
    name = f"views-{uuid.uuid4().hex[:6]}"
    path = tmp_path_factory.mktemp("views") / f"{name}.clab.yml"
    path.write_text((ROOT / "topologies" / "minimal.clab.yml").read_text()
                    .replace("name: minimal", f"name: {name}", 1))
    with Lab.deploy(path) as lab:
        yield lab, path


def snat(lab: Lab, add: bool) -> None:
    """Node1 rewrites pod a's source towards pod b: the pair a -> b fails as NATed."""
    a, b = lab.plan.pod("a"), lab.plan.pod("b")
    node1 = lab.plan.node("node1")
    pid = lab.pids()["node1"]
    subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "iptables", "-t", "nat",
                    "-I" if add else "-D", "POSTROUTING", "-s", a.ip, "-d", b.ip, "-j", "SNAT",
                    "--to-source", node1.address], check=True)


class Links(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def test_a_broken_pair_shows_in_the_truth_table_and_the_html_report(
        minimal: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, path = minimal
    snat(lab, add=True)
    try:
        table = podlab("verify", "-t", str(path), "--check", "pod-to-pod")
        page = tmp_path / "report" / "index.html"
        html = podlab("verify", "-t", str(path), "-o", "html", "--output", str(page),
                      "--pcap-dir", str(tmp_path / "pcap"))
    finally:
        snat(lab, add=False)
    assert table.returncode == 1, table.stderr
    lines = table.stdout.splitlines()
    assert "FAILED" in lines[0]
    # a -> b is NATed over every protocol: its row reads "a  N" in each matrix
    row = next(ln for ln in lines if ln.startswith("a "))
    assert row.split() == ["a", "N", "a", "N", "a", "N"], table.stdout
    assert "N pod-to-pod udp a -> b: request source rewritten" in table.stdout
    assert html.returncode == 1, html.stderr
    tags = Links(page.read_text()).tags
    failing = [a for t, a in tags if t == "td" and a.get("class") == "nat"]
    # a -> b over three protocols, a's identity (its peer saw it as node1's address), and
    # a's path trace to b (node2 quoted node1's address as the source)
    assert len(failing) == 5
    assert sum("peers saw it as" in a.get("title", "") for a in failing) == 1
    assert sum("first hop whose quote differs" in a.get("title", "") for a in failing) == 1
    # each failure links its own probes' pcap, which holds the rewritten packet (the path
    # trace's: the ICMP error quoting it)
    pcaps = [a["href"] for t, a in tags if t == "a" and a.get("class") == "pcap"]
    assert len(pcaps) == 4, pcaps
    from scapy.layers.inet import IP, IPerror
    from scapy.utils import rdpcap

    node1, b = lab.plan.node("node1").address, lab.plan.pod("b").ip
    for href in pcaps:
        packets = rdpcap(str((page.parent / href).resolve()))
        layer = IPerror if "path-" in href else IP
        assert any(layer in p and p[layer].src == node1 and p[layer].dst == b
                   for p in packets), href


def test_progress_bars_on_a_terminal_and_none_for_machines(minimal: tuple[Lab, Path]) -> None:
    """pod-to-node: flows the SNAT test above never touched (conntrack remembers those)."""
    _, path = minimal
    code, drawn = on_a_terminal("verify", "-t", str(path), "--check", "pod-to-node")
    assert code == 0, drawn
    assert "verify: probes" in drawn and "━" in drawn  # the bar, while it ran
    code, drawn = on_a_terminal("verify", "-t", str(path), "--check", "pod-to-node",
                                "-o", "json")
    assert code == 0, drawn
    assert "verify" not in drawn.split("{", 1)[0] and "━" not in drawn
    start = drawn.index("{")
    assert json.loads(drawn[start:].replace("\r\n", "\n"))["ok"] is True
    piped = podlab("verify", "-t", str(path), "--check", "pod-to-node")
    assert "━" not in piped.stdout + piped.stderr  # no terminal, no bar


def test_run_draws_deploy_progress_on_a_terminal() -> None:
    name = f"views-run-{uuid.uuid4().hex[:6]}"
    code, drawn = on_a_terminal("run", "-t", "topologies/minimal.clab.yml", "--name", name,
                                "--check", "pod-identity")
    assert code == 0, drawn
    assert "containers" in drawn and "━" in drawn  # the deploy pipeline's bars
    assert not runtime.containers_of(name)


def test_matrix_runs_variants_side_by_side_and_skips_what_cannot_run(
        docker_available: None, tmp_path: Path) -> None:
    proc = podlab("matrix", "-t", "topologies/minimal.clab.yml", "--set",
                  "masquerade=true,false", "--set", "node-mask=24,31", "-j", "2",
                  "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "matrix.json").read_text())
    status = {(c["variant"]["masquerade"], c["variant"]["node-mask"]): c["status"]
              for c in data["combinations"]}
    assert status == {("true", "24"): "passed", ("false", "24"): "passed",
                      ("true", "31"): "skipped", ("false", "31"): "skipped"}
    ran = [c for c in data["combinations"] if c["status"] == "passed"]
    assert len({c["lab"] for c in ran}) == 2  # each lab under its own name
    for c in data["combinations"]:
        root = ElementTree.parse(c["junit"]).getroot()
        assert int(root.get("tests", "0")) >= 1
    for c in ran:
        assert int(ElementTree.parse(c["junit"]).getroot().get("tests")) == c["total"] > 0
        assert not runtime.containers_of(c["lab"])  # destroyed
    assert "passed" in proc.stdout and "skipped" in proc.stdout


def test_quick_verify_samples_every_check_and_node_pair_over_one_protocol(
        minimal: tuple[Lab, Path]) -> None:
    _, path = minimal
    proc = podlab("verify", "-t", str(path), "--quick", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    probes = [r for r in results if r["check"] in ("pod-to-pod", "node-to-pod", "pod-to-node",
                                                   "pod-to-external")]
    assert {r["proto"] for r in probes} == {"udp"}
    # minimal: pods a on node1, b on node2; every check crosses both ways, once
    assert sorted((r["check"], r["src"], r["dst"]) for r in probes) == sorted([
        ("pod-to-pod", "a", "b"), ("pod-to-pod", "b", "a"),
        *[("node-to-pod", n, p) for n in ("node1", "node2") for p in "ab"],
        *[("pod-to-node", p, n) for n in ("node1", "node2") for p in "ab"]])
    assert {r["check"] for r in results} >= {"pod-identity", "intra-pod"}
    # a sample says it is one: of the 14 targets of the full run (probe pairs and pods),
    # all 14 crossed here, over UDP alone
    assert json.loads(proc.stdout)["summary"]["sample"] == {"targets": 14, "of": 14}
    table = podlab("verify", "-t", str(path), "--quick")
    assert "sample: 14 of 14 targets, one protocol each" in table.stdout
