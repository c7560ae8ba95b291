"""routing: fabric on a real lab whose routers are the user's: three `linux` nodes that
bring their own image and configure themselves by `exec` (busybox `ip`, static routes, as
containerlab's frr01 configures its PCs), in a triangle, with a k8s-node on two of them.
Deploy waits for the walk of their tables; verify expects the walked paths and says so;
an asymmetric return is expected with its own TTL and reported; a route taken away fails
exactly the pairs that needed it, naming the router and the missing route; a deploy
whose fabric never carries a pod CIDR fails naming the pair and where the walk stopped.

Each lab has a unique name and is destroyed on exit; each test undoes its change.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Lab
from harness.datapath import fabric as fabric_dp
from harness.errors import RoutingError
from harness.host import wiring
from harness.lab import unique_name
from harness.model.topology import parse_topology
from harness.plan import Plan, make_plan
from harness.prove.verify import Report

pytestmark = pytest.mark.docker

ROUTER = """\
    {name}:
      kind: linux
      image: podlab/node
      exec:
{execs}"""

TRIANGLE = {
    "r1": ["ip addr add 192.168.1.1/24 dev eth1", "ip addr add 192.168.2.1/24 dev eth2",
           "ip addr add 192.168.11.1/24 dev eth3",
           "ip route add 10.244.0.0/24 via 192.168.11.2",
           "ip route add 10.244.1.0/24 via 192.168.1.2",
           "ip route add 192.168.12.0/24 via 192.168.1.2",
           "ip route add 192.168.3.0/24 via 192.168.1.2"],
    "r2": ["ip addr add 192.168.1.2/24 dev eth1", "ip addr add 192.168.3.1/24 dev eth2",
           "ip addr add 192.168.12.1/24 dev eth3",
           "ip route add 10.244.1.0/24 via 192.168.12.2",
           "ip route add 10.244.0.0/24 via 192.168.1.1",
           "ip route add 192.168.11.0/24 via 192.168.1.1",
           "ip route add 192.168.2.0/24 via 192.168.1.1"],
    "r3": ["ip addr add 192.168.2.2/24 dev eth1", "ip addr add 192.168.3.2/24 dev eth2",
           "ip route add 10.244.0.0/24 via 192.168.2.1",
           "ip route add 10.244.1.0/24 via 192.168.3.1",
           "ip route add 192.168.11.0/24 via 192.168.2.1",
           "ip route add 192.168.12.0/24 via 192.168.3.1"],
}

LAB = """\
name: {name}
cluster:
  routing: fabric
  pod-cidr: 10.244.0.0/16
topology:
  nodes:
{routers}
    node1: {{kind: k8s-node}}
    node2: {{kind: k8s-node}}
  links:
    - endpoints: ["r1:eth1", "r2:eth1"]
      ipv4: [192.168.1.1/24, 192.168.1.2/24]
    - endpoints: ["r1:eth2", "r3:eth1"]
      ipv4: [192.168.2.1/24, 192.168.2.2/24]
    - endpoints: ["r2:eth2", "r3:eth2"]
      ipv4: [192.168.3.1/24, 192.168.3.2/24]
    - endpoints: ["node1:eth1", "r1:eth3"]
      ipv4: [192.168.11.2/24, 192.168.11.1/24]
    - endpoints: ["node2:eth1", "r2:eth3"]
      ipv4: [192.168.12.2/24, 192.168.12.1/24]
pods:
  web: {{node: node1, containers: [{{name: app}}, {{name: sidecar}}]}}
  db: {{node: node2, containers: [{{name: app}}, {{name: sidecar}}]}}
"""


def fabric_plan(routers: dict[str, list[str]] = TRIANGLE) -> Plan:
    text = LAB.format(name=unique_name("fabric"), routers="\n".join(
        ROUTER.format(name=n, execs="\n".join(f"        - {c}" for c in cmds))
        for n, cmds in routers.items()))
    return make_plan(parse_topology(text))


@pytest.fixture(scope="module")
def lab(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(fabric_plan()) as deployed:
        yield deployed


PAIRS = ("pod-to-pod", "node-to-pod", "pod-to-node")


def across(report: Report) -> list:
    """The probe results between the two racks (not within one node)."""
    side = {"web": "node1", "db": "node2", "node1": "node1", "node2": "node2"}
    return [r for r in report.results if r.check in PAIRS and side[r.src] != side[r.dst]]


def test_the_lab_verifies_over_the_users_routes_expected_from_the_walk(lab: Lab) -> None:
    report = lab.verify()
    assert report.ok, [r.detail for r in report.results if not r.ok]
    crossing = across(report)
    assert crossing and all(r.expectation == "fabric" for r in crossing)
    pod = next(r for r in crossing if (r.check, r.src, r.dst) == ("pod-to-pod", "web", "db"))
    assert pod.expected["hops"] == 4 and pod.expected["path"] == ["node1", "r1", "r2", "node2"]
    assert "the number of routers the fabric's tables route it through" in pod.detail
    assert {r.expectation for r in report.results if r.check in ("pod-identity", "intra-pod")
            } == {"plan"}
    assert any("the fabric's tables were still" in n for n in report.notes)
    assert all("expectation" in r.to_dict() for r in report.results)


def test_an_asymmetric_return_is_expected_with_its_own_ttl_and_reported(lab: Lab) -> None:
    r2 = lab.pids()["r2"]
    wiring.delete_route(r2, "10.244.0.0/24")  # replies to node1's pods go round by r3
    wiring.configure(r2, wiring.NetConfig(routes=(("10.244.0.0/24", "192.168.3.2"),)))
    try:
        report = lab.verify(["pod-to-pod"])
        assert report.ok, [r.detail for r in report.results if not r.ok]
        there = next(r for r in report.results if (r.src, r.dst) == ("web", "db"))
        assert there.expected["hops"] == 4 and there.expected["reply_hops"] == 5
        assert there.observed["reply"]["ttl"] == 64 - 5
        assert "asymmetric return: the request goes node1 > r1 > r2 > node2, the reply " \
               "comes back node2 > r2 > r3 > r1 > node1" in there.detail
    finally:
        wiring.delete_route(r2, "10.244.0.0/24")
        wiring.configure(r2, wiring.NetConfig(routes=(("10.244.0.0/24", "192.168.1.1"),)))


def test_a_route_taken_away_fails_exactly_the_pairs_that_needed_it(lab: Lab) -> None:
    r2 = lab.pids()["r2"]
    wiring.delete_route(r2, "10.244.0.0/24")
    try:
        report = lab.verify(["pod-to-pod", "node-to-pod", "pod-to-node"])
    finally:
        wiring.configure(r2, wiring.NetConfig(routes=(("10.244.0.0/24", "192.168.1.1"),)))
    failed = {(r.check, r.src, r.dst) for r in report.results if not r.ok}
    # every pair whose request or reply must reach node1's pods from r2 (node1's own
    # address, 192.168.11.2, is still routed: node1 and db still reach each other)
    assert failed == {("pod-to-pod", "web", "db"), ("pod-to-pod", "db", "web"),
                      ("node-to-pod", "node2", "web"), ("pod-to-node", "web", "node2")}
    lost = next(r for r in report.results if (r.check, r.src, r.dst) ==
                ("pod-to-pod", "db", "web"))
    assert "blackhole at r2: r2 has no route to 10.244.0" in lost.detail
    assert "node1's pod CIDR 10.244.0.0/24" in lost.detail
    assert lab.verify(["pod-to-pod"]).ok


def test_a_deploy_whose_fabric_never_carries_a_pod_cidr_names_the_pair_and_the_router(
        docker_available: None, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {**TRIANGLE, "r2": [c for c in TRIANGLE["r2"] if "10.244.0.0" not in c]}
    monkeypatch.setattr(fabric_dp, "DEPLOY_TIMEOUT_S", 3.0)
    plan = fabric_plan(broken)
    with pytest.raises(RoutingError) as err:
        Lab.deploy(plan)
    assert ("node2 to node1's pod CIDR 10.244.0.0/24 (IPv4): blackhole at r2: r2 has no "
            "route to 10.244.0.1 (after node2)") in str(err.value)
    assert "node1 to node2" not in str(err.value)
