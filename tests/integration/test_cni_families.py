"""Real CNI plugins in both families: topologies/dual.clab.yml and v6only.clab.yml with
`cni: bridge` and `cni: ptp` (set as the matrix sets it) verify in every family; each pod
holds exactly the addresses the plugin's result gave it, one per family, and so do its
labels and `inspect`; a node restart is a DEL then an ADD in every family; destroy leaves
no lease of either family behind.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness import labels as L
from harness.datapath import cni as cni_dp
from harness.datapath import cni_conf
from harness.host import runtime, wiring
from harness.lab import unique_name
from harness.lab.deploy import primary_first
from harness.model.addressing import IPV4, IPV6, family_of
from harness.model.variants import load_variant
from harness.prove.result import Report

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
CASES = [("dual", "bridge"), ("dual", "ptp"), ("v6only", "bridge"), ("v6only", "ptp")]
HOST = {IPV4: 32, IPV6: 128}


@pytest.fixture(scope="module")
def plugins_installed(docker_available: None) -> None:
    if cni_dp.plugins.find_plugin("bridge", (cni_conf.DISTRO_BIN_DIR,)) is None:
        pytest.fail("containernetworking-plugins is not installed (make setup installs it)")


def deploy(stem: str, cni: str) -> Lab:
    topo = load_variant(ROOT / "topologies" / f"{stem}.clab.yml", {"cni": cni},
                        name=unique_name(f"c6{stem[:2]}{cni[:2]}"))
    return Lab.deploy(topo)


@pytest.fixture(scope="module", params=CASES, ids=[f"{t}-{c}" for t, c in CASES])
def lab(request: pytest.FixtureRequest, plugins_installed: None) -> Iterator[Lab]:
    with deploy(*request.param) as running:
        yield running


def assert_ok(report: Report) -> None:
    assert report.ok, [(r.check, r.family, r.src, r.dst, r.proto, r.detail)
                       for r in report.results if not r.ok]


def leases(lab: Lab, node: str) -> list[str]:
    """host-local's lease files of the node: one per address handed out, by its IP."""
    d = cni_conf.ipam_dir(lab.name, node)
    return sorted(p.name for p in d.glob("*/*") if _is_ip(p.name)) if d.is_dir() else []


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_every_check_passes_in_every_family(lab: Lab) -> None:
    report = lab.verify()
    assert_ok(report)
    assert {r.family for r in report.results} == set(lab.plan.families)
    for family in lab.plan.families:
        assert {r.check for r in report.results if r.family == family} >= {
            "pod-identity", "pod-to-pod", "node-to-pod", "pod-to-node", "pod-to-external"}


def test_each_pod_has_the_plugins_address_in_every_family(lab: Lab) -> None:
    plan, seen = lab.plan, lab.observed_plan()
    recorded = cni_dp.pod_addresses(lab.name)
    assert set(recorded) == {p.name for p in plan.pods}
    pids = lab.pids()
    inspected = {p["name"]: p for p in lab.inspect()["pods"]}
    rows = runtime.containers_of(lab.name)
    for pod in seen.pods:
        cidrs = recorded[pod.name]
        # one address per family of the cluster, each in its node's CIDR of that family
        assert sorted(family_of(c) for c in cidrs) == sorted(plan.families)
        node = plan.node(pod.node)
        for cidr in cidrs:
            net = node.pod_cidr_of(family_of(cidr))
            assert net and ipaddress.ip_interface(cidr) in ipaddress.ip_network(net)
        assert pod.cidrs == primary_first(pod, cidrs)  # what verify expects
        assert sorted(wiring.addresses(pids[pod.name])["eth0"]) == sorted(cidrs)
        assert inspected[pod.name]["ip"] == pod.ip
        assert inspected[pod.name]["ips"] == list(pod.ips)
        for row in rows:
            if row.labels.get(L.POD) == pod.name and row.role == L.ROLE_CONTAINER:
                assert (row.labels[L.IP], row.labels[L.CIDR]) == (pod.ip, pod.cidr)
                if len(plan.families) > 1:
                    assert row.labels[L.IPS] == ",".join(pod.ips)
    identity = [r for r in lab.verify(checks=["pod-identity"]).results]
    assert len(identity) == len(seen.pods) * len(plan.families)
    for r in identity:
        assert r.ok and seen.pod(r.src).ip_of(r.family) in r.detail, r.detail


def test_the_node_side_in_every_family(lab: Lab) -> None:
    plan, seen = lab.plan, lab.observed_plan()
    pids = lab.pids()
    for node in plan.k8s_nodes:
        routes = wiring.routes(pids[node.name])
        dsts = {dst for dst, _, _ in routes}
        for other in plan.k8s_nodes:  # static routes to the other nodes' pod CIDRs
            if other.name != node.name:
                assert set(other.pod_cidrs) <= dsts
        mine = [p for p in seen.pods if p.node == node.name]
        if plan.cni == "bridge":  # isGateway: cbr0 holds the gateway of every family
            assert sorted(wiring.addresses(pids[node.name])["cbr0"]) == sorted(node.gateways)
        else:  # ptp: a host route per pod and family, out of its own veth, whose host
            # end holds the gateway of every family as a host address (IPv6 makes a
            # route of that one too)
            gateways = {f"{g.split('/')[0]}/{HOST[family_of(g)]}" for g in node.gateways}
            per_pod = {dst for dst, _, dev in routes if dev and dev.startswith("veth")}
            assert per_pod - gateways == {f"{ip}/{HOST[family_of(ip)]}" for p in mine
                                          for ip in p.ips}
            held = wiring.addresses(pids[node.name])
            veths = [v for v in held if v.startswith("veth")]
            assert len(veths) == len(mine)
            assert all(sorted(held[v]) == sorted(gateways) for v in veths), held


@pytest.mark.parametrize(("stem", "cni"), [("dual", "ptp"), ("v6only", "bridge")])
def test_node_restart_is_del_then_add_and_destroy_leaves_no_lease(
        plugins_installed: None, stem: str, cni: str) -> None:
    lab = deploy(stem, cni)
    try:
        families = len(lab.plan.families)
        on_node1 = sorted(p.name for p in lab.plan.pods if p.node == "node1")
        before = cni_dp.pod_addresses(lab.name)
        assert len(leases(lab, "node1")) == families * len(on_node1)
        lab.fault("node-stop", "node1")
        made = lab.fault("node-start", "node1")
        assert sorted(m.split(":")[0] for m in made if m.endswith(":eth0")) == on_node1
        after = cni_dp.pod_addresses(lab.name)
        assert set(after) == set(before)
        # DEL released the old leases in every family: one per pod and family, no more
        assert leases(lab, "node1") == sorted(
            c.split("/")[0] for p in on_node1 for c in after[p])
        assert_ok(lab.verify())
    finally:
        lab.destroy()
    assert runtime.containers_of(lab.name) == []
    assert not cni_conf.state_dir(lab.name).exists()
