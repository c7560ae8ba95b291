"""Deploy, inspect, exec and destroy real labs (harness.lab, runtime, nat).

Every lab gets a unique name, so runs (and other helpers' labs) never collide; every
fixture destroys what it deployed in `finally`.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import Lab
from harness.errors import DeployError, ImageError, LabExistsError
from harness.host import firewall as nat
from harness.host import netns, runtime, wiring
from harness.lab import running
from harness.model.topology import Topology, load_topology, parse_topology
from harness.plan import Plan, make_plan

pytestmark = pytest.mark.docker

TOPOLOGIES = sorted((Path(__file__).resolve().parents[2] / "topologies").glob("*.clab.yml"))


def unique(stem: str) -> str:
    return f"it{uuid.uuid4().hex[:6]}-{stem}"


def plan_of(path: Path, name: str) -> Plan:
    topo = load_topology(path)
    return make_plan(Topology(topo.spec.model_copy(update={"name": name}), topo.path))


def yaml_plan(name: str, containers: str) -> Plan:
    """Two nodes on one wire and a pod each; pod b's containers are `containers`."""
    return make_plan(parse_topology(two_nodes(name, containers)))


def two_nodes(name: str, containers: str = "[{name: app}]") -> str:
    return f"""
name: {name}
topology:
  defaults: {{kind: k8s-node}}
  nodes: {{node1: {{}}, node2: {{}}}}
  links: [{{endpoints: ["node1:eth1", "node2:eth1"]}}]
pods:
  a: {{node: node1, containers: [{{name: app}}]}}
  b: {{node: node2, containers: {containers}}}
"""


def host_netdevs() -> set[str]:
    return set(p.name for p in Path("/sys/class/net").iterdir())


def lab_containers(name: str) -> list[runtime.ContainerInfo]:
    return runtime.containers_of(name)


def ping(name: str, pod: str, ip: str) -> tuple[int, bytes]:
    return running.exec_in(name, pod=pod, argv=["ping", "-c1", "-W2", ip])


@dataclass
class Deployed:
    plan: Plan
    netdevs_before: set[str]


@pytest.fixture(scope="module", params=TOPOLOGIES, ids=[p.name.split(".")[0] for p in TOPOLOGIES])
def deployed(request: pytest.FixtureRequest, docker_available: None) -> Iterator[Deployed]:
    plan = plan_of(request.param, unique(request.param.name.split(".")[0]))
    before = host_netdevs()
    with Lab.deploy(plan) as lab:
        # with a CNI datapath the pods' addresses are the plugins': the plan as observed
        yield Deployed(lab.observed_plan(), before)


# --------------------------------------------------------------------------- a running lab


def test_every_container_runs(deployed: Deployed) -> None:
    rows = {c.name: c.state for c in lab_containers(deployed.plan.lab)}
    assert sorted(rows) == sorted(deployed.plan.containers)
    assert set(rows.values()) == {"running"}


def test_the_pids_podlab_reads_are_the_ones_docker_reports(deployed: Deployed) -> None:
    rows = lab_containers(deployed.plan.lab)
    from_docker = {c.name: runtime.pid_of(c) for c in rows}
    read = {c.name: runtime.shim_pid(c.id) for c in rows}
    # this host's Docker keeps its shims' init.pid where podlab looks: none is inspected
    assert read == from_docker
    assert runtime.pids_of(rows) == from_docker


def test_pod_containers_share_one_netns(deployed: Deployed) -> None:
    pids = Lab(deployed.plan).container_pids()
    for pod in deployed.plan.pods:
        inodes = {netns.netns_inode(pids[c]) for c in
                  (pod.infra, *(c.container for c in pod.containers))}
        assert len(inodes) == 1, f"pod {pod.name}: {len(inodes)} namespaces"
    nodes = {netns.netns_inode(pids[n.container]) for n in deployed.plan.nodes}
    assert len(nodes) == len(deployed.plan.nodes), "every node has its own namespace"


def test_pod_eth0_holds_planned_ip(deployed: Deployed) -> None:
    pids = Lab(deployed.plan).container_pids()
    for pod in deployed.plan.pods:
        if pod.host_network:  # its node's namespace, with the node's address
            node = pids[deployed.plan.node(pod.node).container]
            assert netns.netns_inode(pids[pod.infra]) == netns.netns_inode(node)
            held = [a for addrs in wiring.addresses(node).values() for a in addrs]
            assert set(pod.cidrs) <= set(held)
            continue
        # one address per family, nothing else (bar link-local)
        assert sorted(wiring.addresses(pids[pod.infra])["eth0"]) == sorted(pod.cidrs)


def test_nothing_on_the_host_while_running(deployed: Deployed) -> None:
    assert host_netdevs() - deployed.netdevs_before == set()


def test_pod_pings_pod_on_another_node(deployed: Deployed) -> None:
    plan = deployed.plan
    pairs = [(a, b) for a in plan.pods for b in plan.pods if a.node != b.node]
    assert pairs, "every example topology has pods on two nodes"
    for a, b in pairs:
        for ip in b.ips:  # in every family
            code, out = ping(plan.lab, a.name, ip)
            assert code == 0, f"{a.name} -> {b.name} ({ip}): {out.decode(errors='replace')}"


def answered_pings(plan: Plan) -> list[tuple[str, str, str]]:
    """(pod, outside host, family) wherever the plan expects the host to answer: the pod
    is masqueraded toward it, or speaks as its node (an unmasqueraded pod's address has
    no route back from outside, as in a cluster)."""
    return [(pod.name, host.name, fam) for host in plan.externals for pod in plan.pods
            for fam in plan.shared_families(pod.name, host.name)
            if pod.host_network or plan.pod_to_external(pod.name, host.name, fam).snat_to]


WITH_ANSWERS = [p for p in TOPOLOGIES if answered_pings(make_plan(load_topology(p)))]


@pytest.mark.parametrize("deployed", WITH_ANSWERS, indirect=True,
                         ids=[p.name.split(".")[0] for p in WITH_ANSWERS])
def test_pod_pings_outside_host(deployed: Deployed) -> None:
    plan = deployed.plan
    pings = answered_pings(plan)
    assert pings
    for pod, host, family in pings:
        code, out = ping(plan.lab, pod, str(plan.node(host).address_of(family)))
        assert code == 0, f"{pod} -> {host} ({family}): {out.decode(errors='replace')}"


def test_masquerade_rule_on_every_k8s_node(deployed: Deployed) -> None:
    plan = deployed.plan
    pids = Lab(plan).container_pids()
    for node in plan.k8s_nodes:
        for family in plan.families:  # iptables and ip6tables: the same rule in each
            rules = nat.nat_rules(pids[node.container], 6 if family == "ipv6" else 4)
            if not node.masquerade_exempt:
                assert nat.CHAIN not in rules
                continue
            assert f"-A POSTROUTING -s {node.pod_cidr_of(family)} -j {nat.CHAIN}" in rules
            assert f"-A {nat.CHAIN} -j MASQUERADE" in rules
            for dst in node.masquerade_exempt_of(family):
                assert f"-A {nat.CHAIN} -d {dst} -j RETURN" in rules


def test_inspect_from_labels(deployed: Deployed) -> None:
    plan = deployed.plan
    data = Lab(plan).inspect()
    assert isinstance(data, dict) and data["lab"] == plan.lab
    assert [n["name"] for n in data["nodes"]] == [n.name for n in plan.nodes]
    for got, want in zip(data["nodes"], plan.nodes, strict=True):
        assert got["kind"] == want.kind and got["state"] == "running"
        assert got["pod_cidr"] == want.pod_cidr
        assert got["pod_cidrs"] == list(want.pod_cidrs)
        planned = {i.name: sorted(i.addresses) for i in want.interfaces if i.addresses}
        if plan.cni != "podlab":  # the plugins add the pods' side (a bridge, a /32 each)
            assert {k: sorted(got["addresses"].get(k) or []) for k in planned} == planned
            continue
        if want.gateway:
            planned["cbr0"] = sorted(want.gateways)
        assert {k: sorted(v) for k, v in got["addresses"].items()} == planned
    assert [(p["name"], p["node"], p["ip"], p["ips"]) for p in data["pods"]] == \
        [(p.name, p.node, p.ip, list(p.ips)) for p in plan.pods]
    for got, want in zip(data["pods"], plan.pods, strict=True):
        assert [c["name"] for c in got["containers"]] == [c.name for c in want.containers]
    everything = Lab.inspect_all()
    assert plan.lab in [d["lab"] for d in everything]


def test_second_deploy_refused_first_intact(deployed: Deployed) -> None:
    plan = deployed.plan
    before = {c.name: c.id for c in lab_containers(plan.lab)}
    with pytest.raises(LabExistsError) as err:
        Lab.deploy(plan)
    assert err.value.exit_code == 2
    after = lab_containers(plan.lab)
    assert {c.name: c.id for c in after} == before
    assert {c.state for c in after} == {"running"}


# --------------------------------------------------------------------------- lifecycles


def test_destroy_leaves_nothing(docker_available: None) -> None:
    plan = yaml_plan(unique("destroy"), "[{name: app}, {name: sidecar}]")
    before = host_netdevs()
    try:
        Lab.deploy(plan)
        removed = Lab(plan).destroy()
    finally:
        Lab(plan).destroy()
    assert sorted(removed) == sorted(plan.containers)
    assert lab_containers(plan.lab) == []
    assert host_netdevs() - before == set()
    assert Lab(plan).destroy() == [], "a second destroy is a no-op"


def test_two_labs_coexist(docker_available: None) -> None:
    # Same addresses in both: every address lives in the labs' own namespaces.
    first = yaml_plan(unique("one"), "[{name: app}]")
    second = yaml_plan(unique("two"), "[{name: app}]")
    try:
        Lab.deploy(first)
        Lab.deploy(second)
        for plan in (first, second):
            code, out = ping(plan.lab, "a", plan.pod("b").ip)
            assert code == 0, out.decode(errors="replace")
        Lab(second).destroy()
        assert len(lab_containers(first.lab)) == len(first.containers)
        assert ping(first.lab, "a", first.pod("b").ip)[0] == 0
    finally:
        Lab(first).destroy()
        Lab(second).destroy()


def test_failed_start_rolls_back(docker_available: None) -> None:
    """A pod container that cannot start: the last phase fails, everything goes."""
    plan = yaml_plan(unique("fail"), '[{name: app}, {name: bad, command: ["/does-not-exist"]}]')
    before = host_netdevs()
    try:
        with pytest.raises(DeployError) as err:
            Lab.deploy(plan)
        message = str(err.value)
        assert "'pods'" in message and plan.pod("b").containers[1].container in message
        assert lab_containers(plan.lab) == []
        assert host_netdevs() - before == set()
    finally:
        Lab(plan).destroy()


def test_missing_image_refused_before_anything_starts(docker_available: None) -> None:
    plan = yaml_plan(unique("noimg"), "[{name: app, image: podlab/does-not-exist}]")
    try:
        with pytest.raises(ImageError, match="podlab/does-not-exist"):
            Lab.deploy(plan)
        assert lab_containers(plan.lab) == []
    finally:
        Lab(plan).destroy()
    assert runtime.missing_images(["podlab/does-not-exist"]) == ["podlab/does-not-exist"]


def test_missing_image_half_way_rolls_back_without_pulling(
        docker_available: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the up-front image check: container create itself must fail, not pull."""
    monkeypatch.setattr(runtime, "require_images", lambda images: None)
    plan = yaml_plan(unique("halfway"), "[{name: app, image: podlab/does-not-exist}]")
    try:
        with pytest.raises(DeployError, match="podlab/does-not-exist"):
            Lab.deploy(plan)
        assert lab_containers(plan.lab) == []
    finally:
        Lab(plan).destroy()
    assert runtime.missing_images(["podlab/does-not-exist"]) == ["podlab/does-not-exist"]


def test_interrupt_rolls_back(docker_available: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (a real SIGINT to the main thread) while wiring: the rollback waits for the
    running workers, removes everything, then KeyboardInterrupt propagates."""
    real = wiring.configure

    def interrupted(pid: int, cfg: wiring.NetConfig) -> None:
        if cfg.routes and cfg.routes[0][0] == "default":  # a pod's namespace
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # still busy when the main thread sees the interrupt
        real(pid, cfg)

    monkeypatch.setattr(wiring, "configure", interrupted)
    plan = yaml_plan(unique("intr"), "[{name: app}]")
    try:
        with pytest.raises(KeyboardInterrupt):
            Lab.deploy(plan)
        assert lab_containers(plan.lab) == []
    finally:
        Lab(plan).destroy()


def test_attach_refuses_a_topology_file_edited_after_deploy(
        docker_available: None, tmp_path: Path) -> None:
    from harness.errors import TopologyChanged

    name = unique("edited")
    text = two_nodes(name)  # a comment and a layout change do not count; what it says does
    file = tmp_path / "edited.clab.yml"
    file.write_text(text)
    with Lab.deploy(file):
        file.write_text("# reworded\n" + text.replace("{node1: {}, node2: {}}",
                                                       "\n    node1: {}\n    node2: {}"))
        assert Lab.attach(name).verify(["pod-to-pod"]).ok  # same content: same lab
        file.write_text(text.replace("b: {node: node2", "b: {node: node1"))  # b moved
        for ref in (name, file):
            with pytest.raises(TopologyChanged, match="has changed since lab"):
                Lab.attach(ref)
        file.write_text(text)
        assert Lab.attach(file).name == name
