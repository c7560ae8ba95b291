"""A NodePort Service (externalTrafficPolicy Cluster) in front of a hostNetwork pod, on a
real lab: topologies/services.clab.yml with its `agent` Service made a NodePort.

At the agent's own node the DNATed packet is for the node itself: the kernel delivers it
locally, nat POSTROUTING never runs, and the agent sees the outside client's own address
and port; at the other nodes it is forwarded and masqueraded. verify predicts both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.lab import unique_name
from harness.prove.result import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "topologies" / "services.clab.yml"


@pytest.fixture(scope="module")
def lab(docker_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    text = SERVICES.read_text().replace(
        "  agent:                      # ClusterIP in front of a hostNetwork pod\n",
        "  agent:\n    type: NodePort\n")
    assert "    type: NodePort\n    selector: {app: agent}" in text
    topo = tmp_path_factory.mktemp("hostnet") / "services-hostnet.clab.yml"
    topo.write_text(text)
    with Lab.deploy(topo, name=unique_name("svchn")) as running:
        yield running


def _agent(report: Report) -> list[tuple[str, str, bool, str]]:
    return sorted((r.dst, r.proto, r.ok, r.detail) for r in report.results
                  if r.dst.startswith("agent:"))


def test_node_port_to_a_host_network_pod_passes_at_every_node(lab: Lab) -> None:
    report = lab.verify(["external-to-nodeport"])
    agent = _agent(report)
    # three nodes, two protocols, each observed
    assert len(agent) == 6 and {d.split("@")[1] for d, *_ in agent} == {
        "node1", "node2", "node3"}
    assert report.ok, [(r.src, r.dst, r.proto, r.detail) for r in report.results if not r.ok]
    at2 = [detail for dst, _, _, detail in agent if dst.endswith("@node2")]
    assert all("172.30.0.4" in d for d in at2), at2
