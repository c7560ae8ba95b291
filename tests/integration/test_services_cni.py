"""Services on real CNI plugins (`cni: bridge`, `cni: ptp`): the endpoints are the
addresses the plugins gave the pods, on every node's kube-proxy rules, and they follow a
pod that gets another address when its node restarts (DEL, then ADD), as Kubernetes'
endpoints follow the pod's reported IP.

One lab per CNI: topologies/services.clab.yml with `cni:` set, under a unique name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.datapath import cni as cni_dp
from harness.datapath import cni_conf, describe, select
from harness.datapath.iptables import count_saved, declared_chains
from harness.host import firewall
from harness.lab import unique_name
from harness.model.variants import load_variant
from harness.plan import Plan
from harness.plan.servicepaths import SERVICE_CHECKS, paths
from harness.prove.result import Report

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "topologies" / "services.clab.yml"


# the built-ins, and a chain with portmap (topologies/cni-chain.conflist), which then
# programs the hostPorts itself from the portMappings capability argument
CNIS = {"bridge": "bridge", "ptp": "ptp", "chain": {"conflist": "cni-chain.conflist"}}


@pytest.fixture(scope="module", params=sorted(CNIS))
def lab(request: pytest.FixtureRequest, docker_available: None) -> Iterator[Lab]:
    if cni_dp.plugins.find_plugin("portmap", (cni_conf.DISTRO_BIN_DIR,)) is None:
        pytest.fail("containernetworking-plugins is not installed (make setup installs it)")
    topo = load_variant(SERVICES, {"cni": CNIS[request.param]}, name=unique_name("svccni"))
    with Lab.deploy(topo) as running:
        yield running


def _chain_maps_ports(lab: Lab) -> bool:
    dp = select(lab.plan)
    return isinstance(dp, cni_dp.CniDatapath) and dp.maps_ports(lab.plan)


def assert_ok(report: Report) -> None:
    assert report.ok, [(r.check, r.src, r.dst, r.proto, r.detail) for r in report.results
                       if not r.ok]


def _node_pids(lab: Lab) -> dict[str, int]:
    pids = lab.pids()
    return {n.name: pids[n.name] for n in lab.plan.k8s_nodes}


def _dnats(saved: str, prefix: str = "KUBE-SEP-") -> set[str]:
    words = (line.split() for line in saved.splitlines() if line.startswith(f"-A {prefix}"))
    return {w[w.index("--to-destination") + 1] for w in words if "--to-destination" in w}


def _endpoints(plan: Plan) -> set[str]:
    return {e.address for s in plan.services for p in s.ports for e in p.endpoints}


def assert_rules_are_the_observed_plans(lab: Lab) -> Plan:
    """Every k8s-node's live kube-proxy and portmap rules are those of the plan with the
    plugins' addresses: each KUBE-SEP DNATs to a pod's real address, no chain is left
    from an address a pod no longer has; hostPorts go to the pod's real address too
    (written by podlab's portmap rules, or by the chain's portmap plugin)."""
    seen = lab.observed_plan()
    recorded = cni_dp.pod_addresses(lab.name)
    assert {p.name: p.cidr for p in seen.pods if not p.host_network} == {
        pod: cidrs[0] for pod, cidrs in recorded.items()}
    net = describe(seen)
    for node, pid in _node_pids(lab).items():
        saved = firewall.saved(pid)
        assert _dnats(saved) == _endpoints(seen), node
        planned = {"kube-proxy": 0, "portmap": 0}
        for rs in net.node(node).rulesets:
            planned[rs.owner] = len(rs)
            assert rs.stale(saved) == (), node
            assert set(rs.chains) <= set(declared_chains(saved)), node
        hostports = {f"{seen.pod(h.pod).ip}:{h.container_port}" for h in seen.host_ports
                     if h.node == node}
        assert _dnats(saved, "CNI-DN-") == hostports, node
        if _chain_maps_ports(lab):  # the plugin's rules, not podlab's
            assert planned["portmap"] == 0
            assert (count_saved(saved)["portmap"] > 0) == bool(hostports), node
            assert ('name: \\"lab-net\\"' in saved) == bool(hostports), node
            planned["portmap"] = count_saved(saved)["portmap"]
        assert count_saved(saved) == planned, node
    return seen


def test_every_check_passes_with_the_plugins_addresses(lab: Lab) -> None:
    assert not lab.plan.pod_ips_known
    seen = assert_rules_are_the_observed_plans(lab)
    report = lab.verify()
    assert_ok(report)
    services = [r for r in report.results if r.check in SERVICE_CHECKS]
    assert {r.check for r in services} == set(SERVICE_CHECKS)
    assert len(services) == len(paths(seen))
    # hostPort DNAT goes to echo's real address; a ClusterIP's endpoint saw a pod's own
    echo = seen.pod("echo")
    hostport = [r for r in services if r.check == "external-to-hostport" and r.ok
                and r.observed.get("endpoint")]
    assert hostport and {r.observed["endpoint"]["dst"] for r in hostport} == {
        f"{echo.ip}:7000"}


def test_endpoints_follow_pods_that_get_new_addresses(lab: Lab) -> None:
    before = lab.observed_plan()
    lab.fault("node-stop", "node1")
    lab.fault("node-start", "node1")
    after = assert_rules_are_the_observed_plans(lab)
    moved = {p.name for p in after.pods if p.node == "node1"
             and p.ip != before.pod(p.name).ip}
    assert moved == {"web-1", "echo"}  # host-local hands out the next free addresses
    assert not _endpoints(after) & {f"{before.pod(p).ip}:{port}" for p in moved
                                    for port in (8080, 5353, 7000)}
    assert_ok(lab.verify(checks=[*SERVICE_CHECKS, "pod-to-pod"]))


def test_service_faults_and_restore_use_the_live_addresses(lab: Lab) -> None:
    try:
        lab.fault("svc-no-masq", "node3")
        report = lab.verify(checks=["external-to-nodeport"])
        broken = {(r.src, r.dst, r.proto) for r in report.results if not r.ok}
        assert broken and all(dst.endswith("@node3") for _, dst, _ in broken)
    finally:
        lab.fault("svc-restore", "")
    assert_rules_are_the_observed_plans(lab)
    assert_ok(lab.verify(checks=list(SERVICE_CHECKS)))
