"""Dual-stack Services on real namespaces (topologies/services-dual.clab.yml): kube-proxy's
and portmap's rules in both iptables and ip6tables are what the plan says, every Service
check passes once per family the Service and both ends have, and a fault injected in
ip6tables alone fails exactly its predicted IPv6 results.

One lab per module (unique name); the fault test restores the rules in `finally`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.datapath import describe
from harness.datapath.iptables import count_saved
from harness.host import firewall, netns
from harness.lab import unique_name
from harness.plan.servicepaths import SERVICE_CHECKS, paths
from harness.prove.result import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "topologies" / "services-dual.clab.yml"
Key = tuple[str, str, str, str, str]


@pytest.fixture(scope="module")
def lab(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(DUAL, name=unique_name("svc6")) as running:
        yield running


def _pid(lab: Lab, node: str) -> int:
    return lab.container_pids()[lab.plan.node(node).container]


def failed(report: Report) -> set[Key]:
    return {(r.check, r.family, r.src, r.dst, r.proto) for r in report.results if not r.ok}


def assert_ok(report: Report) -> None:
    assert report.ok, [(r.check, r.family, r.src, r.dst, r.proto, r.detail)
                       for r in report.results if not r.ok]


def test_live_rules_in_both_families_are_the_planned_ones(lab: Lab) -> None:
    plan = lab.plan
    for node in plan.k8s_nodes:
        rulesets = describe(plan).node(node.name).rulesets
        assert {rs.family for rs in rulesets} == {4, 6}, node.name
        for family in (4, 6):
            saved = firewall.saved(_pid(lab, node.name), family)
            planned = {"kube-proxy": 0, "portmap": 0}
            for rs in rulesets:
                if rs.family == family:
                    planned[rs.owner] = len(rs)
                    for _, chain in rs.chains:
                        assert f"\n:{chain} " in saved, (node.name, family, chain)
            assert count_saved(saved) == planned, (node.name, family)
    # the IPv6-only Service is in ip6tables only, with kube-proxy's [ip]:port target
    echo = next(s for s in plan.services if s.name == "echo-local")
    v6 = firewall.saved(_pid(lab, "node1"), 6)
    v4 = firewall.saved(_pid(lab, "node1"), 4)
    assert echo.cluster_ip in v6 and "echo-local" not in v4
    endpoint = echo.ports[0].endpoints[0]
    assert f"--to-destination {endpoint.address}" in v6, v6
    inspected = {n["name"]: n.get("service_rules") for n in lab.inspect()["nodes"]}
    total = {"kube-proxy": 0, "portmap": 0}
    for rs in describe(plan).node("node1").rulesets:
        total[rs.owner] += len(rs)
    assert inspected["node1"] == total


def test_every_service_check_passes_in_both_families(lab: Lab) -> None:
    report = lab.verify()
    assert_ok(report)
    services = [r for r in report.results if r.check in SERVICE_CHECKS]
    planned = paths(lab.plan)
    assert len(services) == len(planned)
    assert {(r.check, r.family) for r in services} == {
        (c, f) for c in SERVICE_CHECKS for f in ("ipv4", "ipv6")}
    # SingleStack agent is IPv4 only; the IPv6-only echo-local is IPv6 only
    targets = {(r.family, r.dst.split(":")[0]) for r in services if r.check == "pod-to-service"}
    assert ("ipv4", "agent") in targets and ("ipv6", "agent") not in targets
    assert ("ipv6", "echo-local") in targets and ("ipv4", "echo-local") not in targets
    # each IPv6 endpoint saw IPv6 addresses (silent paths, where nobody may answer, aside)
    heard = [r for r in services if r.family == "ipv6" and "endpoint" in r.observed]
    assert heard and all(":" in r.observed["endpoint"]["src"] for r in heard)


def test_an_ip6tables_dnat_to_the_wrong_port_fails_exactly_its_ipv6_results(lab: Lab) -> None:
    """node1 DNATs echo-local's IPv6 ClusterIP to the right pod but the wrong port, in
    ip6tables only: exactly the IPv6 paths that enter at node1 toward that ClusterIP fail
    (echo-local has one endpoint, so which fail does not depend on a random pick)."""
    echo = next(s for s in lab.plan.services if s.name == "echo-local")
    endpoint = echo.ports[0].endpoints[0]
    rule = ["-p", "tcp", "-d", echo.cluster_ip, "--dport", str(echo.ports[0].port),
            "-j", "DNAT", "--to-destination", f"[{endpoint.ip}]:{endpoint.port + 1}"]
    netns.run_program(_pid(lab, "node1"), ["ip6tables", "-t", "nat", "-I", "KUBE-SERVICES",
                                           "1", *rule])
    try:
        report = lab.verify(SERVICE_CHECKS)
    finally:
        lab.fault("svc-restore", "")
    assert_failed_exactly_ipv6_entering_at(lab, report, "node1")
    assert_ok(lab.verify(SERVICE_CHECKS))


def assert_failed_exactly_ipv6_entering_at(lab: Lab, report: Report, entry: str) -> None:
    """Exactly echo-local's paths (IPv6 only) that enter at `entry` failed."""
    want = {(p.check, p.family, p.client, p.target, p.proto) for p in paths(lab.plan)
            if p.target == "echo-local:tcp" and p.entry == entry
            and p.check in ("pod-to-service", "node-to-service")}
    assert want and {k[1] for k in want} == {"ipv6"}
    got = failed(report)
    assert got == want, [(r.check, r.family, r.src, r.dst, r.detail) for r in report.results
                         if not r.ok]


def test_dnat_on_the_wrong_node_in_ipv6(lab: Lab) -> None:
    """svc-dnat-elsewhere on the IPv6-only Service: node2 loses its ip6tables rule and
    routes the IPv6 ClusterIP to node1, which DNATs it: exactly the IPv6 paths entering
    at node2 fail, each naming node1 as where the DNAT happened."""
    lab.fault("svc-dnat-elsewhere", "echo-local:tcp", node="node2", at="node1")
    try:
        report = lab.verify(SERVICE_CHECKS)
    finally:
        lab.fault("svc-restore", "")
    assert_failed_exactly_ipv6_entering_at(lab, report, "node2")
    text = next(r.detail for r in report.results
                if (r.check, r.src, r.dst) == ("pod-to-service", "client", "echo-local:tcp"))
    assert "at node1, not at node2" in text, text
    assert_ok(lab.verify(SERVICE_CHECKS))


def test_services_on_cni_bridge_in_both_families(docker_available: None,
                                                  tmp_path: Path) -> None:
    """With a CNI chain the endpoints and hostPorts are re-planned, per family, at the
    addresses the plugins gave (both families of each pod), and every check passes."""
    text = DUAL.read_text().replace("  masquerade: true\n", "  masquerade: true\n  cni: bridge\n")
    path = tmp_path / "services-dual-bridge.clab.yml"
    path.write_text(text)
    with Lab.deploy(path, name=unique_name("svc6cni")) as running:
        plan = running.plan
        assert plan.cni == "bridge"
        report = running.verify(SERVICE_CHECKS)
        assert_ok(report)
        assert {r.family for r in report.results} == {"ipv4", "ipv6"}
        assert len(report.results) == len(paths(plan))
