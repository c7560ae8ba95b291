"""verify on real labs: the model holds, and every way of breaking it is caught.

Each break is made by hand in a running lab (an SNAT rule, a DNAT rule, a detour route, a
container outside its pod's namespace, a missing masquerade) and must fail exactly the
results it affects, with a diagnosis naming what changed where; all others must pass.
Every break is undone in `finally`, so the tests share one lab per topology.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from harness import Lab
from harness.host import netns
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.prove.path import pairs as traced_pairs
from harness.prove.verify import CHECKS, PROTOS, Report

# every check but path, whose own answer to each kind of fault is proven in test_path.py
NOT_PATH = [c for c in CHECKS if c != "path"]

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def deployed(stem: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plan]:
    name = f"vt{uuid.uuid4().hex[:5]}-{stem}"
    text = (ROOT / "topologies" / f"{stem}.clab.yml").read_text()
    path = tmp_path_factory.mktemp(stem) / f"{name}.clab.yml"
    path.write_text(text.replace(f"name: {stem}", f"name: {name}", 1))
    plan = make_plan(load_topology(path))
    with Lab.deploy(plan):
        yield plan


@pytest.fixture(scope="module")
def flat3(docker_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plan]:
    yield from deployed("flat3", tmp_path_factory)


@pytest.fixture(scope="module")
def routed(docker_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plan]:
    yield from deployed("routed", tmp_path_factory)


def pid(plan: Plan, node: str) -> int:
    return Lab(plan).container_pids()[plan.node(node).container]


def iptables(plan: Plan, node: str, *args: str) -> None:
    netns.run_program(pid(plan, node), ["iptables", *args])


def failed(report: Report) -> set[tuple[str, str, str, str]]:
    return {(r.check, r.src, r.dst, r.proto) for r in report.results if not r.ok}


def details(report: Report) -> list[str]:
    return [r.detail for r in report.results if not r.ok]


def each_proto(check: str, pairs: list[tuple[str, str]]) -> set[tuple[str, str, str, str]]:
    return {(check, a, b, p) for a, b in pairs for p in PROTOS}


# --- the model holds ---------------------------------------------------------------------

def test_flat3_passes_every_check_with_one_result_per_pair_and_protocol(flat3: Plan) -> None:
    report = Lab(flat3).verify()
    assert failed(report) == set(), details(report)
    counts = {c: sum(r.check == c for r in report.results) for c in CHECKS}
    pods, nodes, outside = len(flat3.pods), len(flat3.k8s_nodes), len(flat3.externals)
    with_pods = {p.node for p in flat3.pods}
    assert counts == {
        "pod-identity": pods,
        "intra-pod": pods,
        "pod-to-pod": pods * (pods - 1) * 3,
        "node-to-pod": nodes * pods * 3,
        "pod-to-node": nodes * pods * 3,
        "pod-to-external": outside * pods * 3,
        # one pair of pods per ordered pair of nodes that host pods
        "mtu": len(with_pods) * (len(with_pods) - 1),
        # no Services in flat3 (topologies/services.clab.yml: test_service_faults)
        "pod-to-service": 0, "node-to-service": 0, "external-to-nodeport": 0,
        "external-to-hostport": 0,
        # per source and destination node, each crossing a forwarding device
        "path": len(traced_pairs(flat3)),
    }
    assert report.notes == []


def test_pod_to_external_observes_the_masquerade_to_the_node_address(flat3: Plan) -> None:
    report = Lab(flat3).verify(checks=["pod-to-external"])
    assert report.ok, details(report)
    for r in report.results:
        node = flat3.node(flat3.pod(r.src).node)
        assert r.observed["src"] == node.address != flat3.pod(r.src).ip


def test_same_node_pods_are_switched_and_cross_node_pods_routed(flat3: Plan) -> None:
    report = Lab(flat3).verify(checks=["pod-to-pod"])
    for r in report.results:
        same = flat3.pod(r.src).node == flat3.pod(r.dst).node
        assert r.observed["ttl"] == (64 if same else 62), r


def test_routed_lab_ttl_drops_once_per_router_on_the_path(routed: Plan) -> None:
    report = Lab(routed).verify()
    assert report.ok, details(report)
    r = next(r for r in report.results
             if (r.check, r.src, r.dst, r.proto) == ("pod-to-pod", "client", "server", "udp"))
    assert r.expected["path"] == ["node1", "r1", "spine", "r3", "node3"]
    assert r.observed["ttl"] == 64 - 5


# --- breaking the model ------------------------------------------------------------------

def test_snat_rule_on_a_node_fails_exactly_the_rewritten_pairs(flat3: Plan) -> None:
    web = flat3.pod("web")
    rule = ["POSTROUTING", "-s", web.ip, "-d", flat3.node("node2").pod_cidr, "-j", "SNAT",
            "--to-source", flat3.node("node1").address]
    iptables(flat3, "node1", "-t", "nat", "-I", *rule)
    try:
        report = Lab(flat3).verify(checks=NOT_PATH)
    finally:
        iptables(flat3, "node1", "-t", "nat", "-D", *rule)
    # web's peers saw node1's address as its source: pod-identity fails too
    assert failed(report) == each_proto("pod-to-pod", [("web", "db")]) | {
        ("pod-identity", "web", "web", "-")}
    for detail in details(report):
        if detail.startswith("peers saw"):
            assert f"peers saw it as {flat3.node('node1').address} (db" in detail
            continue
        assert (f"source rewritten {web.ip} -> {flat3.node('node1').address} at node1"
                in detail), detail
        assert "from web to db" in detail


def test_dnat_rule_on_a_router_fails_exactly_the_redirected_probes(routed: Plan) -> None:
    server, peer = routed.pod("server"), routed.pod("peer")
    # listener ports are ephemeral: every UDP packet to server is steered to peer
    rule = ["PREROUTING", "-d", server.ip, "-p", "udp", "-j", "DNAT",
            "--to-destination", peer.ip]
    iptables(routed, "spine", "-t", "nat", "-A", *rule)
    try:
        report = Lab(routed).verify(checks=NOT_PATH)
    finally:
        iptables(routed, "spine", "-t", "nat", "-D", *rule)
    assert failed(report) == {
        ("pod-to-pod", "client", "server", "udp"), ("pod-to-pod", "peer", "server", "udp"),
        ("node-to-pod", "node1", "server", "udp"), ("node-to-pod", "node2", "server", "udp")}
    for detail in details(report):
        # located to spine: its own egress sighting shows the new destination ("at spine"),
        # or, where that one sighting is ordered after r1's arrival or missed (two
        # namespaces' timestamps; seen in full runs), the rewrite is bracketed between the
        # last place the old destination was seen (spine) and the first with the new
        rewritten = f"destination rewritten {server.ip} -> {peer.ip}"
        assert (f"{rewritten} at spine" in detail
                or f"{rewritten} between spine and " in detail), detail


def test_detour_route_fails_exactly_the_paths_it_lengthens(flat3: Plan) -> None:
    """node1 sends node3's pods via node2: one extra hop on every path that takes it."""
    from pyroute2 import IPRoute

    node3_pods = flat3.node("node3").pod_cidr
    node1 = pid(flat3, "node1")

    def set_gateway(gateway: str) -> None:
        with IPRoute() as ipr:
            ipr.route("replace", dst=node3_pods, gateway=gateway)

    netns.run_in_netns(node1, set_gateway, flat3.node("node2").address)
    try:
        report = Lab(flat3).verify(checks=["pod-to-pod", "node-to-pod", "pod-to-node"])
    finally:
        netns.run_in_netns(node1, set_gateway, flat3.node("node3").address)
    node1_pods = [p.name for p in flat3.pods if p.node == "node1"]
    node3_pods_names = [p.name for p in flat3.pods if p.node == "node3"]
    expected = set()
    for a in node1_pods:
        for b in node3_pods_names:
            expected |= each_proto("pod-to-pod", [(a, b), (b, a)])  # request, or reply leg
            expected |= each_proto("node-to-pod", [("node1", b)])
            expected |= each_proto("pod-to-node", [(b, "node1")])  # the reply detours
    assert failed(report) == expected
    for r in report.results:
        if not r.ok:
            assert "TTL dropped by" in r.detail and "node2" in r.detail, r.detail


def test_a_wrong_route_source_fails_node_to_pod(flat3: Plan) -> None:
    """node1's route to node3's pods says `src` cbr0's address: its probes leave from the
    wrong address, which the plan, not the live route lookup, must catch."""
    from pyroute2 import IPRoute

    node3_pods = flat3.node("node3").pod_cidr
    node1 = pid(flat3, "node1")
    wrong = flat3.node("node1").gateway.split("/")[0]

    def set_source(source: str | None) -> None:
        with IPRoute() as ipr:
            extra = {"prefsrc": source} if source else {}
            ipr.route("replace", dst=node3_pods, gateway=flat3.node("node3").address, **extra)

    netns.run_in_netns(node1, set_source, wrong)
    try:
        report = Lab(flat3).verify(checks=["node-to-pod"])
    finally:
        netns.run_in_netns(node1, set_source, None)
    on_node3 = [p.name for p in flat3.pods if p.node == "node3"]
    assert failed(report) == each_proto("node-to-pod", [("node1", b) for b in on_node3])
    for r in report.results:
        if not r.ok:
            assert f"source rewritten {flat3.node('node1').address} -> {wrong}" in r.detail
    assert Lab(flat3).verify(checks=["node-to-pod"]).ok


def test_container_outside_the_pod_namespace_fails_identity_and_intra_pod(flat3: Plan,
                                                                          ) -> None:
    from harness.host import runtime

    db = flat3.pod("db")
    victim = db.containers[1]
    info = next(c for c in runtime.containers_of(flat3.lab) if c.name == victim.container)
    client = runtime.client()
    original = client.containers.get(info.id)
    labels = dict(original.labels)
    original.remove(force=True)
    impostor = client.containers.run(victim.image, name=victim.container, labels=labels,
                                     network_mode="none", detach=True)
    try:
        report = Lab(flat3).verify(checks=["pod-identity", "intra-pod"])
    finally:
        impostor.remove(force=True)
        client.containers.run(victim.image, name=victim.container, labels=labels,
                              network_mode=f"container:{db.infra}", cap_add=["NET_RAW"],
                              detach=True)
    assert failed(report) == {("pod-identity", "db", "db", "-"),
                              ("intra-pod", f"db/{victim.name}", "db/app", "tcp")}
    identity = next(r for r in report.results if r.check == "pod-identity" and not r.ok)
    assert f"container(s) {victim.name} not in the pod's network namespace" in identity.detail


def test_missing_masquerade_fails_pod_to_external_as_not_masqueraded(flat3: Plan) -> None:
    """The negative control: NAT is expected towards outside hosts; its absence fails."""
    rule = ["POSTROUTING", "-s", flat3.node("node1").pod_cidr, "-j", "PODLAB-MASQ"]
    iptables(flat3, "node1", "-t", "nat", "-D", *rule)
    try:
        report = Lab(flat3).verify(checks=["pod-to-external"])
    finally:
        iptables(flat3, "node1", "-t", "nat", "-A", *rule)
    node1_pods = [p.name for p in flat3.pods if p.node == "node1"]
    assert failed(report) == each_proto("pod-to-external", [(p, "world") for p in node1_pods])
    assert any("not masqueraded" in d for d in details(report)), details(report)


# --- the command line --------------------------------------------------------------------

def podlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=120)


def topo_file(plan: Plan) -> str:
    return plan.topo_path


def test_verify_cli_writes_json_and_junit_and_exits_zero(flat3: Plan, tmp_path: Path) -> None:
    proc = podlab("verify", "-t", topo_file(flat3), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    assert data["summary"]["total"] == len(data["results"]) == data["summary"]["passed"]
    for r in data["results"]:
        assert {"check", "src", "dst", "proto", "ok", "expected", "observed", "detail"} <= set(r)
    junit = tmp_path / "report.xml"
    proc = podlab("verify", "-t", topo_file(flat3), "-o", "junit", "--output", str(junit))
    assert proc.returncode == 0, proc.stderr
    root = ElementTree.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == data["summary"]["total"]
    assert root.get("failures") == "0"


def test_verify_cli_exits_one_and_the_pcap_shows_the_rewritten_packet(flat3: Plan,
                                                                      tmp_path: Path) -> None:
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap

    web, db = flat3.pod("web"), flat3.pod("db")
    node1 = flat3.node("node1").address
    rule = ["POSTROUTING", "-s", web.ip, "-d", db.ip, "-j", "SNAT", "--to-source", node1]
    iptables(flat3, "node1", "-t", "nat", "-I", *rule)
    try:
        proc = podlab("verify", "-t", topo_file(flat3), "--check", "pod-to-pod",
                      "--pcap-dir", str(tmp_path), "-o", "json")
    finally:
        iptables(flat3, "node1", "-t", "nat", "-D", *rule)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    bad = [r for r in data["results"] if not r["ok"]]
    assert {(r["src"], r["dst"]) for r in bad} == {("web", "db")}
    assert all(node1 in r["detail"] for r in bad)
    packets = rdpcap(str(tmp_path / "pod-to-pod.pcap"))
    assert any(IP in p and p[IP].src == node1 and p[IP].dst == db.ip for p in packets)


def test_verify_of_a_lab_that_is_not_deployed_exits_two(tmp_path: Path,
                                                        docker_available: None) -> None:
    path = tmp_path / "ghost.clab.yml"
    path.write_text((ROOT / "topologies" / "minimal.clab.yml").read_text()
                    .replace("name: minimal", f"name: ghost{uuid.uuid4().hex[:5]}"))
    proc = podlab("verify", "-t", str(path))
    assert proc.returncode == 2
    assert "not deployed" in proc.stderr

