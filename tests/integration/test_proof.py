"""The proof's blind spots, closed: each NAT or rewrite a sniffer alone would miss is
injected into a fresh lab, and verify must fail exactly the results it affects.

- a NAT inside the receiving namespace (INPUT SNAT, a transparent TCP proxy) shows only at
  the receiver's socket, which every listener now reports;
- a port-only SNAT, and a stateless rewrite of replies only (nft payload set), fail on
  ports and ICMP ids, which requests and replies alike are judged on;
- an ICMP-only SNAT added between two verifies run seconds apart (two processes) is seen:
  ICMP ids are fresh in every run, so no conntrack entry of the first run hides it;
- after a passing verify, conntrack in every node holds pod-to-pod flows, none NATed;
- two verifies of one lab run at once; a selection that yields nothing exits 2.

The faults are judged with the probes in one process and shared between two (as a large
lab's are, harness.prove.shard): the verdicts must be the same.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import Lab
from harness.errors import NothingToVerify
from harness.host import wiring
from harness.host.netns import run_in_netns, run_program
from harness.lab import unique_name
from harness.prove import shard
from harness.prove.result import Report
from harness.prove.verify import CHECKS, PROTOS

# every check but path, whose own answer to each kind of fault is proven in test_path.py
NOT_PATH = [c for c in CHECKS if c != "path"]

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"

Row = tuple[str, str, str, str]


@pytest.fixture
def flat3(docker_available: None) -> Iterator[Lab]:
    """A fresh flat3 lab: web, api on node1; db on node2; cache on node3; world outside."""
    with Lab.deploy(FLAT3, name=unique_name("proof")) as lab:
        yield lab


@pytest.fixture(params=[1, 2], ids=["one-process", "two-processes"])
def processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[int]:
    """Verify's first pass in one process, or shared between two however few probes."""
    shared: list[int] = []
    real = shard._shared

    def sharing(*args: object, **kwargs: object) -> object:
        shared.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shard, "shards_for", lambda probes: request.param)
    monkeypatch.setattr(shard, "_shared", sharing)
    yield request.param
    assert bool(shared) == (request.param > 1)


def sh(lab: Lab, where: str, *argv: str, stdin: str | None = None) -> str:
    """A host binary (iptables, nft) inside a node's or pod's namespace."""
    return run_program(lab.pids()[where], argv, stdin)


def failed(report: Report) -> set[Row]:
    return {(r.check, r.src, r.dst, r.proto) for r in report.results if not r.ok}


def details(report: Report) -> list[str]:
    return [r.detail for r in report.results if not r.ok]


def identity(*pods: str) -> set[Row]:
    return {("pod-identity", p, p, "-") for p in pods}


def to(lab: Lab, dst: str, protos: tuple[str, ...]) -> set[Row]:
    """Every pod-to-pod and node-to-pod row ending at pod `dst`, for `protos`."""
    rows = {("pod-to-pod", p.name, dst, proto) for p in lab.plan.pods if p.name != dst
            for proto in protos}
    return rows | {("node-to-pod", n.name, dst, proto) for n in lab.plan.k8s_nodes
                   for proto in protos}


def test_snat_inside_the_receiving_node_is_seen_by_its_socket(flat3: Lab, processes: int
                                                               ) -> None:
    web, node1 = flat3.plan.pod("web").ip, flat3.plan.node("node1").address
    assert node1 is not None
    sh(flat3, "node2", "iptables", "-t", "nat", "-A", "INPUT", "-s", web, "-j", "SNAT",
       "--to-source", node1)
    report = flat3.verify(checks=NOT_PATH)
    assert failed(report) == {("pod-to-node", "web", "node2", p) for p in PROTOS} | identity(
        "web"), details(report)
    for r in report.results:
        if r.check == "pod-to-node" and not r.ok:
            assert r.observed["src"] == web and r.observed["socket"]["src"] == node1
            assert r.detail == (f"request source rewritten {web} -> {node1} inside node2 "
                                "after arrival (PREROUTING/INPUT)")


def test_a_port_only_snat_fails_on_the_source_port(flat3: Lab, processes: int) -> None:
    web, db = flat3.plan.pod("web").ip, flat3.plan.pod("db").ip
    for proto in ("udp", "tcp"):
        sh(flat3, "node1", "iptables", "-t", "nat", "-I", "POSTROUTING", "-s", web, "-d", db,
           "-p", proto, "-j", "SNAT", "--to-source", f"{web}:20000-20100")
    report = flat3.verify(checks=NOT_PATH)
    assert failed(report) == {("pod-to-pod", "web", "db", "udp"),
                              ("pod-to-pod", "web", "db", "tcp")}, details(report)
    for detail in details(report):
        assert "request source port rewritten" in detail and "at node1" in detail, detail


def test_a_stateless_rewrite_of_replies_only(flat3: Lab, processes: int) -> None:
    """nft payload statements in db rewrite the source port of its UDP replies and the id
    of its echo replies; requests pass untouched."""
    sh(flat3, "db", "nft", "-f", "-", stdin="""
table ip podlab_fault {
  chain out {
    type filter hook output priority 0; policy accept;
    ct direction reply udp sport set 4242
    icmp type echo-reply icmp id set 7
  }
}
""")
    # (the mtu check's echoes to db are rewritten too: it is not what this test is about)
    report = flat3.verify(checks=[c for c in NOT_PATH if c != "mtu"])
    assert failed(report) == to(flat3, "db", ("udp", "icmp")), details(report)
    for r in report.results:
        if not r.ok and r.proto == "udp":
            assert r.observed["reply"]["sport"] == 4242 and r.observed["src"] == r.expected[
                "src"]
            assert r.detail.startswith("reply source port rewritten") and "at db" in r.detail
        elif not r.ok:
            assert r.detail.startswith("reply ICMP id rewritten") and "-> 7 at db" in r.detail


def podlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=180)


def lab_file(tmp_path: Path, name: str, source: Path = FLAT3) -> Path:
    path = tmp_path / f"{name}.clab.yml"
    path.write_text(source.read_text().replace(f"name: {source.name.split('.')[0]}",
                                               f"name: {name}", 1))
    return path


def test_an_icmp_only_snat_added_between_two_verifies_is_seen(docker_available: None,
                                                              tmp_path: Path) -> None:
    """Two `podlab verify` processes seconds apart: the second's echo ids differ from the
    first's, so the ICMP conntrack entries the first left (30 s) cannot hide the rule."""
    path = lab_file(tmp_path, unique_name("icmpnat"))
    with Lab.deploy(path) as lab:
        first = podlab("verify", "-t", str(path), "--check", "pod-to-pod", "-o", "json")
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr
        started = time.monotonic()
        web, db = lab.plan.pod("web").ip, lab.plan.pod("db").ip
        sh(lab, "node1", "iptables", "-t", "nat", "-I", "POSTROUTING", "-p", "icmp", "-s", web,
           "-d", db, "-j", "SNAT", "--to-source", str(lab.plan.node("node1").address))
        second = podlab("verify", "-t", str(path), "--check", "pod-to-pod", "--check",
                        "pod-identity", "-o", "json")
        assert time.monotonic() - started < 30
    assert second.returncode == 1, second.stderr
    rows = {(r["check"], r["src"], r["dst"], r["proto"])
            for r in json.loads(second.stdout)["results"] if not r["ok"]}
    assert rows == {("pod-to-pod", "web", "db", "icmp")} | identity("web")


class Relay:
    """A transparent TCP proxy, as a sidecar runs one: inside one namespace, it takes the
    connections REDIRECT sends it and opens its own to their original destination."""

    SO_ORIGINAL_DST = 80

    def __init__(self, pid: int, port: int):
        self.pid = pid

        def listen() -> socket.socket:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("0.0.0.0", port))
            server.listen(64)
            return server

        self.server = run_in_netns(pid, listen)
        self.server.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        raw = conn.getsockopt(socket.SOL_IP, self.SO_ORIGINAL_DST, 16)
        port, addr = struct.unpack_from("!H4s", raw, 2)
        upstream = run_in_netns(self.pid, socket.socket)
        try:
            conn.settimeout(2)
            upstream.settimeout(2)
            upstream.connect((socket.inet_ntoa(addr), port))
            upstream.sendall(conn.recv(64))
            conn.sendall(upstream.recv(64))
        except OSError:
            pass
        finally:
            upstream.close()
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


def test_a_transparent_tcp_proxy_in_the_receiving_pod(flat3: Lab, processes: int) -> None:
    """REDIRECT to a relay inside db: the wire into db is clean, the handshake and the
    echo complete, but db's listener is connected to by the relay, not the client."""
    db = flat3.plan.pod("db").ip
    relay = Relay(flat3.pids()["db"], 15001)
    try:
        sh(flat3, "db", "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-d", db,
           "-j", "REDIRECT", "--to-ports", "15001")
        report = flat3.verify(checks=NOT_PATH)
    finally:
        relay.close()
    clients = [p.name for p in flat3.plan.pods if p.name != "db"]
    assert failed(report) == to(flat3, "db", ("tcp",)) | identity(*clients), details(report)
    for r in report.results:
        if r.check in ("pod-to-pod", "node-to-pod") and not r.ok:
            assert r.observed["src"] == r.expected["src"]  # the wire was clean
            assert r.observed["socket"]["src"] == db
            assert f"request source rewritten {r.expected['src']} -> {db} inside db after " \
                   "arrival (PREROUTING/INPUT)" in r.detail


def test_conntrack_shows_no_nat_on_any_pod_to_pod_flow_after_a_passing_verify(
        flat3: Lab) -> None:
    report = flat3.verify(checks=["pod-to-pod"])
    assert report.ok, details(report)
    pods = {p.ip for p in flat3.plan.pods}
    pids = flat3.pids()
    seen: set[tuple[str, str]] = set()
    for node in flat3.plan.nodes:
        if node.container and node.name in pids and node.kind == "k8s-node":
            flows = [f for f in wiring.conntrack(pids[node.name])
                     if f.orig[0] in pods and f.orig[1] in pods]
            natted = [f for f in flows if f.nat]
            assert natted == [], f"{node.name}: {natted[:3]}"
            seen |= {(f.orig[0], f.orig[1]) for f in flows}
    cross = {(a.ip, b.ip) for a in flat3.plan.pods for b in flat3.plan.pods
             if a.node != b.node}
    assert cross <= seen  # every cross-node pair crossed a node's conntrack


def test_two_verifies_of_one_lab_at_once(flat3: Lab) -> None:
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: flat3.verify(), range(2)))
    for report in reports:
        assert report.ok, details(report)
    assert len(reports[0].results) == len(reports[1].results) > 0


def test_two_cli_verifies_at_once_and_an_empty_selection(docker_available: None,
                                                         tmp_path: Path) -> None:
    path = lab_file(tmp_path, unique_name("minimal"), ROOT / "topologies" / "minimal.clab.yml")
    with Lab.deploy(path) as lab:
        procs = [subprocess.Popen([sys.executable, "-m", "harness.cli", "verify", "-t",
                                   str(path), "-o", "json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=180) for p in procs]
        for proc, (out, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0, err
            summary = json.loads(out)["summary"]
            assert summary["negative_control"] == "absent"  # masquerade on, nobody outside
            assert any("negative control absent" in n for n in summary["notes"])
        empty = podlab("verify", "-t", str(path), "--check", "pod-to-external")
        assert empty.returncode == 2
        assert "selects nothing" in empty.stderr and "no outside host" in empty.stderr
        assert len(empty.stderr.strip().splitlines()) == 1
        with pytest.raises(NothingToVerify):
            lab.verify(checks=["pod-to-external"])


def test_ip_masq_agents_config_is_applied_with_its_semantics(docker_available: None,
                                                             tmp_path: Path) -> None:
    """`masquerade: {nonMasqueradeCIDRs: [10.0.0.0/8]}`: the pod CIDR is exempt, the
    172.30/16 underlay is not. So, as the agent would, each node masquerades its pods'
    traffic to the outside host (the control passes) and to the other nodes (the model
    fails: pod-to-node must be NAT-free), but not to itself (a local destination)."""
    name = unique_name("masqagent")
    path = tmp_path / f"{name}.clab.yml"
    path.write_text(FLAT3.read_text().replace("name: flat3", f"name: {name}", 1).replace(
        "  masquerade: true\n", "  masquerade: {nonMasqueradeCIDRs: [10.0.0.0/8]}\n"))
    with Lab.deploy(path) as lab:
        report = lab.verify(checks=NOT_PATH)
    plan = lab.plan
    remote = {("pod-to-node", p.name, n.name, proto) for p in plan.pods
              for n in plan.k8s_nodes if n.name != p.node for proto in PROTOS}
    assert failed(report) == remote | identity(*(p.name for p in plan.pods)), details(report)
    assert report.negative_control == "observed"
    for r in report.results:
        if r.check == "pod-to-node" and not r.ok:
            node = plan.node(plan.pod(r.src).node)
            assert f"source rewritten {plan.pod(r.src).ip} -> {node.address} at " \
                   f"{node.name}" in r.detail, r.detail
