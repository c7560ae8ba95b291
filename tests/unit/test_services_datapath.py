"""Services in the datapath's description and its apply half (kernel stubbed), in the
containerlab export, and in `inspect`'s live count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from podlab_unit_helpers import MINIMAL

from harness.datapath import describe, select
from harness.datapath.iptables import count_saved
from harness.datapath.services import node_rulesets
from harness.host import firewall, wiring
from harness.lab.deploy import infra_spec
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan
from harness.render.export import ruleset_commands, to_containerlab

TOPO = Path(__file__).parent / "golden" / "services.clab.yml"


@pytest.fixture
def plan() -> Plan:
    return make_plan(load_topology(TOPO))


def test_k8s_nodes_get_kube_proxy_and_portmap_and_others_nothing(plan: Plan) -> None:
    net = describe(plan)
    owners = {n.name: [rs.owner for rs in n.rulesets] for n in net.nodes}
    assert owners == {"node1": ["kube-proxy", "portmap"], "node2": ["kube-proxy"],
                      "sw": [], "ext": []}
    assert net.node("node1").rulesets == node_rulesets(plan, "node1")


def test_nodes_route_the_service_cidr_out_of_their_first_interface(plan: Plan) -> None:
    net = describe(plan)
    assert ("10.96.0.0/16", "", "eth1") in net.node("node1").routes
    assert not any(r[0] == "10.96.0.0/16" for r in net.node("ext").routes)
    plain = describe(make_plan(parse_topology(MINIMAL)))
    assert not any(n.rulesets for n in plain.nodes)  # no Services: nothing changes
    assert not any(r[0] == "10.96.0.0/16" for n in plain.nodes for r in n.routes)


def test_host_network_pod_has_no_veth_address_or_sysctl(plan: Plan) -> None:
    net = describe(plan)
    agent = net.pod("agent")
    assert agent.host_network and agent.veth is None and agent.node_port is None
    assert (agent.addresses, agent.routes, agent.infra.sysctls) == ((), (), ())
    spec = infra_spec(plan.pod("agent"), agent, 3, "d", "podlab-golden-node2")
    assert spec.network_mode == "container:podlab-golden-node2"
    assert spec.hostname is None and not spec.sysctls
    assert spec.labels["io.podlab.ip"] == "172.30.0.2"
    web = infra_spec(plan.pod("web"), net.pod("web"), 0, "d", "x")
    assert web.network_mode == "none" and web.hostname == "web"


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(wiring, "configure", lambda pid, cfg: calls.append(("cfg", cfg)))
    monkeypatch.setattr(firewall, "masquerade", lambda *a, **k: calls.append(("masq", a)))
    monkeypatch.setattr(firewall, "restore", lambda pid, full, refill, marker, where="":
                        calls.append(("restore", (full, refill, marker, where))))
    monkeypatch.setattr(wiring, "route_dev", lambda pid, ip: "cbr0")
    monkeypatch.setattr(wiring, "sysctl", lambda pid, key, value=None:
                        calls.append(("sysctl", (key, value))) or "")
    return calls


def test_apply_node_installs_rules_after_masquerade(plan: Plan, kernel: list[Any]) -> None:
    net = describe(plan)
    select(plan).apply_node(5, net.node("node1"))
    # portmap's route_localnet on the device its node routes the pod by, after its rules
    assert [c[0] for c in kernel] == ["cfg", "masq", "restore", "restore", "sysctl"]
    assert kernel[4][1] == ("net.ipv4.conf.cbr0.route_localnet", "1")
    full, refill, marker, where = kernel[2][1]
    assert marker == ("filter", "KUBE-SERVICES") and where == "kube-proxy on node1"
    assert "-I PREROUTING" in full and "-I " not in refill
    assert kernel[3][1][2] == ("nat", "CNI-HOSTPORT-SETMARK")


def test_nodes_with_rules_pass_bridged_traffic_through_iptables(plan: Plan) -> None:
    net = describe(plan)
    for name in ("node1", "node2"):
        assert net.node(name).container.sysctl_map()[
            "net.bridge.bridge-nf-call-iptables"] == "1"
    for name in ("sw", "ext"):
        assert "net.bridge.bridge-nf-call-iptables" not in net.node(name).container.sysctl_map()


def test_pod_added_does_nothing_for_a_host_network_pod(plan: Plan,
                                                       kernel: list[Any]) -> None:
    select(plan).pod_added(1, 2, describe(plan).pod("agent"))
    assert kernel == []


def test_restore_refills_once_the_chains_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], str | None]] = []
    saved = {"text": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"}

    def run(pid: int, argv: list[str], stdin: str | None = None) -> str:
        calls.append((argv, stdin))
        return saved["text"] if argv[0] == "iptables-save" else ""

    monkeypatch.setattr(firewall, "run_program", run)
    firewall.restore(1, "FULL", "REFILL", ("nat", "KUBE-SERVICES"))
    saved["text"] += ":KUBE-SERVICES - [0:0]\n"
    firewall.restore(1, "FULL", "REFILL", ("nat", "KUBE-SERVICES"))
    assert [c for c in calls if c[0][0] == "iptables-restore"] == [
        (["iptables-restore", "--noflush"], "FULL"), (["iptables-restore", "--noflush"],
                                                      "REFILL")]
    assert calls[0][0] == ["iptables-save", "-t", "nat"]


def test_export_writes_rules_and_host_network_pods(plan: Plan) -> None:
    doc = to_containerlab(plan)
    nodes = doc["topology"]["nodes"]
    assert nodes["agent"]["network-mode"] == "container:node2"
    assert "exec" not in nodes["agent"] and "sysctls" not in nodes["agent"]
    assert nodes["agent-app"]["network-mode"] == "container:agent"
    assert not any("agent:" in e for link in doc["topology"]["links"]
                   for e in link["endpoints"])
    node1 = nodes["node1"]["exec"]
    rs = node_rulesets(plan, "node1")
    commands = [c for r in rs for c in ruleset_commands(r)]
    assert node1[-len(commands):] == commands
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=1" in node1  # from the sysctls
    assert len(commands) == sum(len(r) + len(r.chains) for r in rs)
    assert ("iptables -t nat -I PREROUTING -m comment --comment 'kubernetes service portals'"
            " -j KUBE-SERVICES") in commands
    assert commands.index("iptables -t nat -N KUBE-SERVICES") < commands.index(
        "iptables -t nat -I PREROUTING -m comment --comment 'kubernetes service portals'"
        " -j KUBE-SERVICES")


def test_count_saved() -> None:
    text = "\n".join([
        "*nat", ":KUBE-SERVICES - [0:0]",
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A POSTROUTING -s 10.244.0.0/24 -j PODLAB-MASQ",
        "-A PODLAB-MASQ -j MASQUERADE",
        "-A KUBE-SVC-X -j KUBE-SEP-Y", "-A CNI-DN-abc -p tcp -j DNAT --to-destination 1.2.3.4:5",
        "COMMIT"])
    assert count_saved(text) == {"kube-proxy": 2, "portmap": 2}
