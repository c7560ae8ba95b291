"""The two fabric examples on real FRR (podlab/frr): frr-ospf (containerlab's frr01 with
k8s-nodes where its PCs were, OSPF) and tor-bgp (two racks, nodes peering with their
ToR over eBGP). Both deploy and verify with every check passing, at the TTLs of the
paths the routers' own OSPF and BGP chose; a SNAT on one router fails exactly the
results that cross it that way (and the identities of the pods it rewrote); a pulled
router link makes verify expect, and find, the longer path; a ToR's bgpd killed fails
exactly the pairs that lose their route, each naming it.

One lab per module, unique names, destroyed on exit; each test undoes its fault.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.host import netns, wiring
from harness.lab import unique_name
from harness.model.variants import load_variant
from harness.prove.result import Result
from harness.prove.verify import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
FRR_OSPF = ROOT / "topologies" / "frr-ospf.clab.yml"
TOR_BGP = ROOT / "topologies" / "tor-bgp.clab.yml"
RTPROT_OSPF, RTPROT_BGP, RTPROT_BIRD = 188, 186, 12
PAIRS = ("pod-to-pod", "node-to-pod", "pod-to-node")


def deployed(path: Path) -> Iterator[Lab]:
    with Lab.deploy(load_variant(path, {}, name=unique_name(path.name.split(".")[0]))) as lab:
        yield lab


@pytest.fixture(scope="module")
def ospf(docker_available: None) -> Iterator[Lab]:
    yield from deployed(FRR_OSPF)


@pytest.fixture(scope="module")
def tor(docker_available: None) -> Iterator[Lab]:
    yield from deployed(TOR_BGP)


def result(report: Report, check: str, src: str, dst: str, proto: str = "udp") -> Result:
    return next(r for r in report.results
                if (r.check, r.src, r.dst, r.proto) == (check, src, dst, proto))


def failed(report: Report) -> set[tuple[str, str, str]]:
    return {(r.check, r.src, r.dst) for r in report.results if not r.ok}


def side_of(lab: Lab, name: str) -> str:
    """The node a pod or node name lives on."""
    return lab.plan.pod(name).node if name in {p.name for p in lab.plan.pods} else name


def wait_for_hops(lab: Lab, src: str, dst: str, hops: int, bound: float = 30.0) -> None:
    """Until the walk of the fabric's tables gives the pod-to-pod pair `hops` (a routing
    protocol bringing a link back takes its adjacency's time)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if lab.converged().plan.pod_to_pod(src, dst).hops == hops:
            return
        time.sleep(0.5)
    raise AssertionError(f"{src} to {dst} never walked {hops} hops within {bound:g}s")


# --------------------------------------------------------------------------- frr-ospf


def test_frr_ospf_verifies_at_the_ttls_of_the_ospf_paths(ospf: Lab) -> None:
    report = ospf.verify()
    assert report.ok, [r.detail for r in report.results if not r.ok]
    assert report.negative_control == "observed"  # pods masqueraded toward pc3
    web_db = result(report, "pod-to-pod", "web", "db")
    assert web_db.expectation == "fabric"
    assert web_db.expected["path"] == ["node1", "router1", "router2", "node2"]
    assert web_db.observed["ttl"] == 64 - 4 and web_db.observed["reply"]["ttl"] == 64 - 4
    # the path is OSPF's: router1 learned node2's pod CIDR (router2's static route,
    # redistributed) from router2, over their direct link
    learned = wiring.routes_of_protocol(ospf.pids()["router1"], RTPROT_OSPF)
    assert learned["10.244.1.0/24"] == "192.168.1.2"
    assert not wiring.routes_of_protocol(ospf.pids()["node1"], RTPROT_OSPF)
    assert {r.expectation for r in report.results if r.check == "pod-identity"} == {"plan"}


def test_a_snat_on_router1_fails_exactly_the_results_crossing_it_that_way(ospf: Lab) -> None:
    router1 = ospf.pids()["router1"]
    rule = ["-t", "nat", "POSTROUTING", "-o", "eth1", "-j", "MASQUERADE"]
    netns.run_program(router1, ["iptables", rule[0], rule[1], "-A", *rule[2:]])
    try:
        report = ospf.verify()
    finally:
        netns.run_program(router1, ["iptables", rule[0], rule[1], "-D", *rule[2:]])
    # router1 sends to router2 by eth1: requests from node1's side to node2's side (the
    # mtu check's verdict is about sizes: a rewritten source does not change it)
    crossing = {(r.check, r.src, r.dst) for r in report.results
                if r.check in PAIRS and side_of(ospf, r.src) == "node1"
                and side_of(ospf, r.dst) == "node2"}
    rewritten = {("pod-identity", p, p) for p in ("web", "cache")}
    assert crossing and failed(report) == crossing | rewritten
    web_db = result(report, "pod-to-pod", "web", "db")
    assert "10.244.0.2 -> 192.168.1.1" in web_db.detail and "router1" in web_db.detail


def test_pulling_the_shortest_link_makes_verify_expect_and_find_the_longer_path(
        ospf: Lab) -> None:
    ospf.fault("link-down", "router1:eth1")
    try:
        report = ospf.verify(PAIRS)
        assert report.ok, [r.detail for r in report.results if not r.ok]
        web_db = result(report, "pod-to-pod", "web", "db")
        assert web_db.expected["path"] == ["node1", "router1", "router3", "router2", "node2"]
        assert web_db.observed["ttl"] == 64 - 5
    finally:
        ospf.fault("link-up", "router1:eth1")
    wait_for_hops(ospf, "web", "db", 4)
    report = ospf.verify(["pod-to-pod"])
    assert report.ok and result(report, "pod-to-pod", "web", "db").observed["ttl"] == 64 - 4


# --------------------------------------------------------------------------- tor-bgp


def test_tor_bgp_verifies_at_the_ttls_of_the_bgp_paths(tor: Lab) -> None:
    report = tor.verify()
    assert report.ok, [r.detail for r in report.results if not r.ok]
    across = result(report, "pod-to-pod", "web", "db")  # rack1 to rack2
    assert across.expected["path"] == ["node1", "tor1", "tor2", "node3"]
    assert across.observed["ttl"] == 64 - 4
    within = result(report, "pod-to-pod", "web", "api")  # one rack
    assert within.expected["path"] == ["node1", "tor1", "node2"]
    assert within.observed["ttl"] == 64 - 3
    pids = tor.pids()
    # node1's BIRD announced its pod CIDR to tor1, and learned node3's through it
    assert wiring.routes_of_protocol(pids["tor1"], RTPROT_BGP)["10.244.0.0/24"] == \
        "192.168.11.2"
    assert wiring.routes_of_protocol(pids["node1"], RTPROT_BIRD)["10.244.2.0/24"] == \
        "192.168.11.1"


def test_killing_a_tors_bgpd_fails_exactly_the_pairs_that_lose_their_route(
        tor: Lab) -> None:
    tor.fault("daemon-kill", "tor1", daemon="bgpd")
    try:
        report = tor.verify(PAIRS)
    finally:
        tor.fault("daemon-start", "tor1", daemon="bgpd")
    rack1 = {"node1", "node2"}
    # tor1 forgets every route it learned: rack1's pod CIDRs, and rack2's everything;
    # pairs within one node, and rack2's among themselves, do not need it
    lost = {(r.check, r.src, r.dst) for r in report.results
            if side_of(tor, r.src) != side_of(tor, r.dst)
            and {side_of(tor, r.src), side_of(tor, r.dst)} & rack1}
    assert lost and failed(report) == lost
    for r in report.results:
        if not r.ok:
            assert "has no route to" in r.detail, r.detail
    web_api = result(report, "pod-to-pod", "web", "api")
    assert "blackhole at tor1: tor1 has no route to 10.244.1.2" in web_api.detail or \
        "blackhole at tor1: tor1 has no route to 10.244.1.1" in web_api.detail
    assert "node2's pod CIDR 10.244.1.0/24" in web_api.detail
    wait_for_hops(tor, "web", "db", 4)
    assert tor.verify(["pod-to-pod"]).ok
