"""Services in the plan: ClusterIPs, node ports, endpoints, hostPorts and hostNetwork pods;
and how `plan`, `plan --iptables` and `graph` show them."""

from __future__ import annotations

from pathlib import Path

import pytest
from podlab_unit_helpers import broken, problems_of
from typer.testing import CliRunner

from harness.cli import app
from harness.model.topology import parse_topology
from harness.plan import Plan, make_plan
from harness.render.draw import to_dot, to_mermaid

TOPO = Path(__file__).parent / "golden" / "services.clab.yml"
BASE = TOPO.read_text()


def _plan(text: str = BASE) -> Plan:
    return make_plan(parse_topology(text))


def _svc(plan: Plan, name: str):  # -> ServicePlan
    return next(s for s in plan.services if s.name == name)


def test_cluster_ips_are_allocated_in_file_order_after_the_reserved_first() -> None:
    plan = _plan()
    assert [(s.name, s.cluster_ip) for s in plan.services] == [
        ("web", "10.96.0.2"), ("web-np", "10.96.0.3"), ("solo-local", "10.96.0.4"),
        ("agent", "10.96.100.100")]
    # an address given in the file is skipped by the allocation
    plan = _plan(broken("clusterIP: 10.96.100.100", "clusterIP: 10.96.0.3", BASE))
    assert [s.cluster_ip for s in plan.services] == [
        "10.96.0.2", "10.96.0.4", "10.96.0.5", "10.96.0.3"]
    assert plan.service_cidr == "10.96.0.0/16"


def test_the_first_service_address_is_refused_as_the_api_server_holds_it() -> None:
    # the `kubernetes` Service's: "provided IP is already allocated" in a real cluster
    _, problems = problems_of(broken("clusterIP: 10.96.100.100", "clusterIP: 10.96.0.1",
                                     BASE))
    assert [(p.path, p.message) for p in problems] == [(
        "services.agent.clusterIP", "10.96.0.1 is already allocated: the first address of "
        "10.96.0.0/16 is the `kubernetes` Service's")]


def test_node_ports_given_are_kept_and_the_rest_take_the_lowest_free() -> None:
    plan = _plan(broken("nodePort: 30080", "nodePort: 30000", BASE))
    assert _svc(plan, "web-np").ports[0].node_port == 30000
    assert _svc(plan, "solo-local").ports[0].node_port == 30001
    assert all(p.node_port is None for p in _svc(plan, "web").ports)  # ClusterIP


def test_ports_of_one_number_share_one_node_port_as_the_api_server_allocates() -> None:
    # kube-apiserver's initNodePorts: one node port per service port *number*, so 53/TCP
    # and 53/UDP get the same; a number given on a later port of that number is taken
    two = ("    ports:\n      - {name: tcp, port: 53, targetPort: 8080}\n"
           "      - {name: udp, port: 53, targetPort: 8080, protocol: UDP}\n"
           "      - {name: other, port: 54, targetPort: 8080}\n")
    text = broken("    ports: [{port: 80, targetPort: 8080}]\n", two, BASE)
    ports = _svc(_plan(text), "solo-local").ports
    assert [(p.port, p.protocol, p.node_port) for p in ports] == [
        (53, "TCP", 30000), (53, "UDP", 30000), (54, "TCP", 30001)]
    given = text.replace("port: 53, targetPort: 8080, protocol: UDP}",
                         "port: 53, targetPort: 8080, protocol: UDP, nodePort: 30555}")
    ports = _svc(_plan(given), "solo-local").ports
    assert [p.node_port for p in ports] == [30555, 30555, 30000]


def test_endpoints_resolve_named_target_ports_per_pod() -> None:
    plan = _plan()
    http, dns = _svc(plan, "web").ports
    assert [(e.pod, e.address) for e in http.endpoints] == [
        ("web", "10.244.0.2:8080"), ("web2", "10.244.1.2:8080")]
    assert [e.address for e in dns.endpoints] == ["10.244.0.2:5353", "10.244.1.2:5353"]
    assert (http.target_port, dns.target_port, dns.protocol) == ("http", "dns", "UDP")
    # a selected pod without the named port is no endpoint of that port (Kubernetes' rule)
    text = broken("{name: http, containerPort: 8080}, {name: dns",
                  "{name: web, containerPort: 8080}, {name: dns", BASE)
    http = _svc(_plan(text), "web").ports[0]
    assert [e.pod for e in http.endpoints] == ["web"]


def test_endpoints_are_in_kube_proxys_order() -> None:
    # kube-proxy sorts endpoints by their "ip:port" text: 10.244.0.10 before 10.244.0.2
    pods = "".join(f"  p{i}:\n    node: node1\n    labels: {{app: solo}}\n"
                   f"    containers: [{{name: app}}]\n" for i in range(9))
    plan = _plan(broken("pods:\n", "pods:\n" + pods, BASE))
    ips = [e.ip for e in _svc(plan, "solo-local").ports[0].endpoints]
    assert ips == sorted(ips) and ips[0] == "10.244.0.10" and ips[-1] == "10.244.0.9"
    assert len(ips) == 10


def test_host_network_pod_has_its_nodes_address() -> None:
    plan = _plan()
    agent, node2 = plan.pod("agent"), plan.node("node2")
    assert agent.host_network and agent.ip == node2.address == "172.30.0.2"
    assert (agent.gateway, agent.node_iface, agent.prefixlen) == ("", "", 24)
    endpoint = _svc(plan, "agent").ports[0].endpoints[0]
    assert (endpoint.ip, endpoint.port, endpoint.host_network) == ("172.30.0.2", 9100, True)
    # it takes no address of the node's pod CIDR: web2 (before it) is .2, nothing after
    assert plan.pod("web2").ip == "10.244.1.2"
    assert plan.to_dict()["pods"][3]["host_network"] is True


def test_host_ports() -> None:
    plan = _plan()
    [h] = plan.host_ports
    assert (h.pod, h.node, h.pod_ip, h.host_port, h.container_port, h.protocol) == (
        "web", "node1", "10.244.0.2", 9443, 8443, "TCP")


def test_expectations_with_a_host_network_end() -> None:
    plan = _plan()
    # to a hostNetwork pod on another node: to that node's address, node1 forwards
    e = plan.pod_to_pod("web", "agent")
    assert (e.src_ip, e.dst_ip, e.hops, e.path) == ("10.244.0.2", "172.30.0.2", 1,
                                                    ("node1", "node2"))
    # same node: delivered in the node's namespace, nothing forwards
    e = plan.pod_to_pod("web2", "agent")
    assert (e.dst_ip, e.hops, e.path) == ("172.30.0.2", 0, ("node2",))
    # from it: the node's kernel picks the source, node1 forwards into its bridge
    e = plan.pod_to_pod("agent", "web")
    assert (e.src, e.src_ip, e.dst_ip, e.hops) == ("agent", None, "10.244.0.2", 1)
    e = plan.node_to_pod("node1", "agent")  # node to node over one switch: no router
    assert (e.dst_ip, e.hops, e.path) == ("172.30.0.2", 0, ("node1", "node2"))
    e = plan.pod_to_node("agent", "node2")
    assert (e.src, e.dst, e.hops) == ("agent", "node2", 0)
    # its traffic to the outside is the node's own: not masqueraded
    e = plan.pod_to_external("agent", "ext")
    assert e.snat_to is None and e.src_ip is None and e.hops == 0
    assert plan.pod_to_external("web2", "ext").snat_to == "172.30.0.2"


def test_plan_json_lists_services_and_host_ports() -> None:
    data = _plan().to_dict(with_paths=False)
    assert data["service_cidr"] == "10.96.0.0/16"
    web = data["services"][0]
    assert (web["name"], web["type"], web["cluster_ip"]) == ("web", "ClusterIP", "10.96.0.2")
    assert web["ports"][0]["endpoints"][0] == {"pod": "web", "node": "node1",
                                               "ip": "10.244.0.2", "port": 8080,
                                               "host_network": False}
    local = data["services"][2]
    assert (local["external_traffic_policy"], local["ports"][0]["node_port"]) == ("Local",
                                                                                 30000)
    assert data["host_ports"][0]["host_port"] == 9443


def test_plan_command_shows_services() -> None:
    result = CliRunner().invoke(app, ["plan", "-t", str(TOPO)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "services (service CIDR 10.96.0.0/16)" in result.output
    for text in ("web:http", "10.96.0.2", "80/TCP -> http", "30080", "Local",
                 "web 10.244.0.2:8080 on node1", "agent 172.30.0.2:9100 on node2 (hostNetwork)",
                 "host ports", "172.30.0.1:9443/TCP", "10.244.0.2:8443"):
        assert text in result.output, text


def test_plan_iptables_prints_restore_text() -> None:
    result = CliRunner().invoke(app, ["plan", "-t", str(TOPO), "--iptables", "node1"])
    assert result.exit_code == 0, result.output
    assert result.output == (TOPO.parent / "services.node1.rules").read_text()
    result = CliRunner().invoke(app, ["plan", "-t", str(TOPO), "--iptables", "ext"])
    assert result.exit_code == 2
    assert "'ext' is not a k8s-node of lab golden (node1, node2)" in result.output


@pytest.mark.parametrize("draw", [to_mermaid, to_dot], ids=["mermaid", "dot"])
def test_graph_draws_services(draw) -> None:  # type: ignore[no-untyped-def]
    plan = _plan()
    text = draw(plan)
    for svc in plan.services:
        assert f"svc {svc.name} ({svc.type}" in text and svc.cluster_ip in text
    assert "NodePort, Local" in text and "80/TCP -> 8080 nodePort 30080" in text.replace(
        "#gt;", ">")
    assert "hostNetwork 172.30.0.2" in text and "hostPort 9443/TCP -> 8443" in text.replace(
        "#gt;", ">")
    edges = [line for line in text.splitlines() if "-.->" in line or "style=dashed" in line]
    endpoint_pods = {(s.name, e.pod) for s in plan.services for p in s.ports
                     for e in p.endpoints}
    assert len(edges) == len(endpoint_pods) == 6
    # the hostNetwork pod has no veth: no link to its node's bridge
    assert not any("p_agent" in line and "---" in line for line in text.splitlines())
    assert not any('"pod:agent"' in line and " -- " in line and "svc:" not in line
                   for line in text.splitlines())
