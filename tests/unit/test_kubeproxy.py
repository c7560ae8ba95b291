"""kube-proxy's and portmap's rules, as data and as iptables-restore text.

The chain names must be the ones a real kube-proxy gives: the hash reference values are
upstream's own (pkg/proxy/iptables tests). The whole text of the golden lab is compared
with the files under golden/, which were read rule by rule against kube-proxy's proxier.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from harness.datapath import kubeproxy, portmap
from harness.datapath.iptables import Rule, quote
from harness.datapath.services import node_rulesets, restore_text
from harness.errors import TopologyError
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan

GOLDEN = Path(__file__).parent / "golden"
TOPO = GOLDEN / "services.clab.yml"
NODES = ("node1", "node2")


def _plan() -> Plan:
    return make_plan(load_topology(TOPO))


def test_chain_names_are_upstreams() -> None:
    # values from kube-proxy's own tests: "ns1/svc1:p80" tcp, endpoint 10.180.0.1:80
    assert kubeproxy.svc_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert kubeproxy.sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == \
        "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert kubeproxy.ext_chain("ns1/svc1:p80", "tcp") == "KUBE-EXT-XPGD46QRK7WJZT7O"
    assert kubeproxy.svl_chain("ns1/svc1:p80", "tcp") == "KUBE-SVL-XPGD46QRK7WJZT7O"
    for name in ("a", "ns/" + "x" * 60):
        assert len(kubeproxy.svc_chain(name, "udp")) <= 28  # iptables' chain name limit


@pytest.mark.parametrize("node", NODES)
def test_golden_rules(node: str) -> None:
    expected = (GOLDEN / f"services.{node}.rules").read_text()
    assert restore_text(_plan(), node) == expected


def test_probabilities_give_each_endpoint_an_equal_share() -> None:
    assert [kubeproxy.probability(n) for n in (4, 3, 2)] == \
        ["0.2500000000", "0.3333333333", "0.5000000000"]
    share, left = [], 1.0
    for n in (4, 3, 2, 1):
        p = 1.0 / n
        share.append(left * p)
        left -= left * p
    assert share == pytest.approx([0.25] * 4)


def _chain(rules: kubeproxy.Ruleset, chain: str) -> list[str]:
    return [r.line() for r in rules.rules_of(chain)]


def test_cluster_ip_dispatch() -> None:
    plan = _plan()
    web = next(s for s in plan.services if s.name == "web")
    http = web.ports[0]
    name = web.port_name(http)
    assert name == "default/web:http"
    rules = kubeproxy.node_rules("node1", plan.services, plan.pod_cidr)
    svc = kubeproxy.svc_chain(name, "tcp")
    lines = _chain(rules, svc)
    # first: traffic from outside the pod CIDR (a node) is marked for SNAT
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in lines[0]
    # then one rule per endpoint, 1/2 then the rest
    assert "--probability 0.5000000000" in lines[1] and "statistic" not in lines[2]
    assert lines[1].endswith(kubeproxy.sep_chain(name, "tcp", "10.244.0.2:8080"))
    sep = _chain(rules, kubeproxy.sep_chain(name, "tcp", "10.244.1.2:8080"))
    assert sep == ["-A KUBE-SEP-UIQK3OSOSTRHRPBX -m comment --comment default/web:http "
                   "-s 10.244.1.2 -j KUBE-MARK-MASQ",
                   "-A KUBE-SEP-UIQK3OSOSTRHRPBX -m comment --comment default/web:http "
                   "-m tcp -p tcp -j DNAT --to-destination 10.244.1.2:8080"]


def test_local_policy_keeps_node_port_traffic_on_nodes_with_an_endpoint() -> None:
    plan = _plan()
    svc = next(s for s in plan.services if s.name == "solo-local")
    name, port = svc.port_name(svc.ports[0]), svc.ports[0]
    ext, svl = kubeproxy.ext_chain(name, "tcp"), kubeproxy.svl_chain(name, "tcp")
    one = kubeproxy.node_rules("node1", plan.services, plan.pod_cidr)
    two = kubeproxy.node_rules("node2", plan.services, plan.pod_cidr)
    # node1 has the endpoint: the EXT chain ends in KUBE-SVL, which holds it
    assert _chain(one, ext)[-1] == f"-A {ext} -j {svl}"
    assert [r.target for r in one.rules_of(svl)] == [
        kubeproxy.sep_chain(name, "tcp", "10.244.0.3:8080")]
    # no MARK-MASQ for outside clients: only pod and the node's own sources are special
    assert not any("masquerade traffic for" in line for line in _chain(one, ext))
    # node2 has none: no SVL, the EXT chain does not end in a policy chain, and the
    # filter table drops what is left, so node2 does not answer
    assert svl not in two.chains_of("nat")
    assert _chain(two, ext)[-1].endswith("-j KUBE-SVC-KODJMWCFIO5OZFRL")
    assert "--src-type LOCAL" in _chain(two, ext)[-1]
    drops = [r.line() for r in two.rules_of("KUBE-EXTERNAL-SERVICES", "filter")]
    assert drops == [f'-A KUBE-EXTERNAL-SERVICES -m comment --comment "{name} has no local '
                     f'endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport '
                     f"{port.node_port} -j DROP"]
    assert not one.rules_of("KUBE-EXTERNAL-SERVICES", "filter")


def test_cluster_policy_masquerades_node_port_traffic() -> None:
    plan = _plan()
    svc = next(s for s in plan.services if s.name == "web-np")
    name = svc.port_name(svc.ports[0])
    rules = kubeproxy.node_rules("node2", plan.services, plan.pod_cidr)
    ext = kubeproxy.ext_chain(name, "tcp")
    assert [r.target for r in rules.rules_of(ext)] == [
        kubeproxy.MARK_MASQ, kubeproxy.svc_chain(name, "tcp")]
    nodeports = _chain(rules, kubeproxy.NODEPORTS)
    assert any(f"--dport 30080 -j {ext}" in line for line in nodeports)


def test_service_without_endpoints_is_rejected() -> None:
    text = TOPO.read_text().replace("targetPort: dns", "targetPort: nope")
    text = text.replace("{name: dns, containerPort: 5353, protocol: UDP}",
                        "{name: nope, containerPort: 5353, protocol: TCP}", 1)
    # web's dns port now names a TCP port while it is UDP: no endpoint serves it
    with pytest.raises(TopologyError, match="no selected pod"):
        parse_topology(text)
    plan = _plan()
    svc = next(s for s in plan.services if s.name == "web")
    empty = type(svc)(svc.name, svc.type, svc.cluster_ip, svc.external_traffic_policy,
                      svc.selector, (type(svc.ports[0])("x", "UDP", 53, 53, None, ()),))
    rules = kubeproxy.node_rules("node1", (empty,), plan.pod_cidr)
    lines = [r.line() for r in rules.rules_of(kubeproxy.SERVICES, "filter")]
    assert lines == ['-A KUBE-SERVICES -m comment --comment "default/web:x has no endpoints" '
                     "-m udp -p udp -d 10.96.0.2 --dport 53 -j REJECT"]
    assert not any(c.startswith("KUBE-SVC-") for c in rules.chains_of("nat"))


def test_jumps_are_inserted_in_kube_proxy_order() -> None:
    rules = kubeproxy.node_rules("node1", (), "10.244.0.0/16")
    text = rules.restore_text()
    forward = [line for line in text.splitlines() if line.startswith("-I FORWARD")]
    # each -I goes to the top: the last inserted (the firewall) ends first, as on a node
    assert [line.split()[-1] for line in forward] == [
        "KUBE-EXTERNAL-SERVICES", "KUBE-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"]
    assert "-I" not in rules.restore_text(jumps=False)
    assert len(rules) == len(rules.jumps) + len(rules.rules)


def test_no_services_no_rules() -> None:
    plan = make_plan(parse_topology(TOPO.read_text().split("\nservices:")[0].replace(
        "          - {containerPort: 8443, hostPort: 9443}\n", "")))
    assert node_rulesets(plan, "node1") == ()
    assert restore_text(plan, "node1") == ""


def test_portmap_rules() -> None:
    plan = _plan()
    rules = portmap.node_rules("node1", plan.host_ports, {"web": "podlab-golden-web"}, "ipv4",
                               {"web": plan.pod("web").cidr})
    chain = portmap.dn_chain("podlab", "podlab-golden-web")
    assert re.fullmatch(r"CNI-DN-[0-9a-f]{21}", chain)
    assert [r.line() for r in rules.rules_of(chain)] == [
        f"-A {chain} -p tcp --dport 9443 -s 10.244.0.2/24 -j CNI-HOSTPORT-SETMARK",
        f"-A {chain} -p tcp --dport 9443 -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK",
        f"-A {chain} -p tcp --dport 9443 -j DNAT --to-destination 10.244.0.2:8443"]
    entry = rules.rules_of(portmap.TOP_DNAT)
    assert [r.line() for r in entry] == [
        '-A CNI-HOSTPORT-DNAT -m comment --comment "dnat name: \\"podlab\\" id: '
        f'\\"podlab-golden-web\\"" -m multiport -p tcp --destination-ports 9443 -j {chain}']
    assert [r.chain for r in rules.appends] == ["PREROUTING", "OUTPUT"]
    assert [r.target for r in rules.jumps] == [portmap.MASQ]
    assert len(portmap.node_rules("node2", plan.host_ports, {}, "ipv4", {})) == 0


def test_portmap_splits_multiport_at_15() -> None:
    from harness.plan.services import HostPortPlan

    ports = [HostPortPlan("p", "c", "n", "10.244.0.9", "UDP", 20000 + i, 53) for i in range(16)]
    rules = portmap.node_rules("n", ports, {"p": "id"}, "ipv4", {"p": "10.244.0.9/24"})
    entries = rules.rules_of(portmap.TOP_DNAT)
    assert [len(r.args[r.args.index("--destination-ports") + 1].split(",")) for r in entries] \
        == [15, 1]


def test_quoting() -> None:
    assert quote("default/web:http") == "default/web:http"
    assert quote("a b") == '"a b"'
    assert quote('id: "x"') == '"id: \\"x\\""'
    assert quote("") == '""'
    assert Rule("nat", "X", ("-j", "DNAT", "--to-destination", "1.2.3.4:5")).target == "DNAT"


def regenerate() -> None:
    plan = _plan()
    for node in NODES:
        (GOLDEN / f"services.{node}.rules").write_text(restore_text(plan, node))


if __name__ == "__main__" and "--regenerate" in sys.argv:
    regenerate()
