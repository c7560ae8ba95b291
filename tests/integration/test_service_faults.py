"""The Service checks on the services example: everything passes, and each injected
Service fault fails exactly the results the plan says it touches, with a diagnosis that
names the hop where the rewrite happened and the one where it should have.

One lab per module (unique name); every test restores the rules in `finally`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.lab import unique_name
from harness.plan.servicepaths import SERVICE_CHECKS, ServicePath, paths
from harness.prove.result import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "topologies" / "services.clab.yml"
Key = tuple[str, str, str, str]


@pytest.fixture(scope="module")
def lab(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(SERVICES, name=unique_name("svc")) as running:
        yield running


def failed(report: Report) -> set[Key]:
    return {(r.check, r.src, r.dst, r.proto) for r in report.results if not r.ok}


def planned(lab: Lab, which: Callable[[ServicePath], bool]) -> set[Key]:
    return {(p.check, p.client, p.target, p.proto) for p in paths(lab.plan) if which(p)}


def assert_ok(report: Report) -> None:
    assert report.ok, [(r.check, r.src, r.dst, r.proto, r.detail) for r in report.results
                       if not r.ok]


def detail(report: Report, key: Key) -> str:
    return next(r.detail for r in report.results if (r.check, r.src, r.dst, r.proto) == key)


def test_the_example_verifies(lab: Lab) -> None:
    report = lab.verify()
    assert_ok(report)
    checks = {r.check for r in report.results}
    assert set(SERVICE_CHECKS) <= checks
    services = [r for r in report.results if r.check in SERVICE_CHECKS]
    assert len(services) == len(paths(lab.plan))
    assert {r.proto for r in services} == {"tcp", "udp"}
    # hostNetwork pods take part in the pod checks, with their node's address
    agent = [r for r in report.results if "agent" in (r.src, r.dst) and r.check == "pod-to-pod"]
    assert len(agent) == 2 * (len(lab.plan.pods) - 1) * 3
    identity = next(r for r in report.results if r.check == "pod-identity" and r.src == "agent")
    assert "shares node2's network namespace" in identity.detail


def test_dnat_on_the_wrong_node(lab: Lab) -> None:
    lab.fault("svc-dnat-elsewhere", "web:http", node="node3", at="node1")
    try:
        report = lab.verify(SERVICE_CHECKS)
    finally:
        lab.fault("svc-restore", "")
    want = planned(lab, lambda p: p.target == "web:http" and p.entry == "node3"
                   and p.check in ("pod-to-service", "node-to-service"))
    got = failed(report)
    assert want and got == want, {k: detail(report, k) for k in got ^ want if k in got}
    text = detail(report, ("pod-to-service", "client", "web:http", "tcp"))
    assert "at node1, not at node3" in text, text
    assert_ok(lab.verify(SERVICE_CHECKS))


def test_missing_mark_masq(lab: Lab) -> None:
    lab.fault("svc-no-masq", "node3")
    try:
        report = lab.verify(SERVICE_CHECKS)
    finally:
        lab.fault("svc-restore", "")
    want = planned(lab, lambda p: bool(p.outcomes) and all(o.snat_at == "node3"
                                                           for o in p.outcomes))
    assert {k[0] for k in want} == {"node-to-service", "external-to-nodeport"}
    assert failed(report) == want
    # UDP shows it at the endpoint's socket; a TCP handshake fails (its SYN-ACK goes back
    # around node3, unNATed) before any data could show it
    text = detail(report, ("external-to-nodeport", "world", "web-nodeport:udp@node3", "udp"))
    assert "not masqueraded" in text and "SNAT by node3" in text, text
    assert_ok(lab.verify(SERVICE_CHECKS))


def test_local_behaving_like_cluster(lab: Lab) -> None:
    lab.fault("svc-local-as-cluster", "echo-local")
    try:
        report = lab.verify(SERVICE_CHECKS)
    finally:
        lab.fault("svc-restore", "")
    want = planned(lab, lambda p: p.check == "external-to-nodeport"
                   and p.target.startswith("echo-local:"))
    assert len(want) == 2 * len(lab.plan.k8s_nodes)
    assert failed(report) == want
    text = detail(report, ("external-to-nodeport", "world", "echo-local:tcp@node2", "tcp"))
    assert "node2 forwarded it to echo" in text, text
    text = detail(report, ("external-to-nodeport", "world", "echo-local:udp@node1", "udp"))
    assert "source rewritten" in text and "at node1" in text, text
    assert_ok(lab.verify(SERVICE_CHECKS))


def test_a_stopped_entry_node_fails_the_rows_that_expect_no_answer(lab: Lab) -> None:
    """Silence is a pass only when the request was seen arriving: with the node addressed
    stopped, nothing arrives, and the rows that expect no answer from it fail too."""
    silent = planned(lab, lambda p: not p.outcomes and p.entry == "node2")
    assert silent  # echo-local's NodePort and the hostPorts addressed to node2
    lab.fault("node-stop", "node2")
    try:
        report = lab.verify(["external-to-nodeport", "external-to-hostport"])
    finally:
        lab.fault("node-start", "node2")
    assert silent <= failed(report)
    for key in silent:
        assert "node2 not running" in detail(report, key), detail(report, key)
    assert_ok(lab.verify(["external-to-nodeport", "external-to-hostport"]))
