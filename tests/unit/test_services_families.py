"""Services in both families, without Docker: Kubernetes' dual-stack Service fields
validated with their YAML paths, ClusterIPs and endpoints per family, kube-proxy's and
portmap's ip6tables rules as data, and the Service paths verify expects per family."""

from __future__ import annotations

from pathlib import Path

import pytest
from podlab_unit_helpers import broken, line_of, problems_of

from harness.datapath import describe, kubeproxy, portmap
from harness.model.topology import parse_topology
from harness.plan import Plan, make_plan
from harness.plan.servicepaths import paths
from harness.plan.services import ServicePlan, readdressed

ROOT = Path(__file__).resolve().parents[2]
DUAL = (ROOT / "topologies" / "services-dual.clab.yml").read_text()
WEB = "  web:                        # both families, IPv6 first: its clusterIP is the IPv6 one\n"
AGENT = "  agent:                      # SingleStack by default: the primary family (IPv4) only\n"
V4_ONLY = ("  pod-cidr: [10.244.0.0/16, fd00:10:244::/56]\n"
           "  underlay-cidr: [172.30.0.0/16, fd00:172:30::/48]\n"
           "  service-cidr: [10.96.0.0/16, fd00:10:96::/112]\n",
           "  pod-cidr: 10.244.0.0/16\n  underlay-cidr: 172.30.0.0/16\n"
           "  service-cidr: 10.96.0.0/16\n")


def _plan(text: str = DUAL) -> Plan:
    return make_plan(parse_topology(text))


def _svc(plan: Plan, name: str) -> ServicePlan:
    return next(s for s in plan.services if s.name == name)


# (id, [(old, new)], expected path, message fragment, needle of the expected line)
CASES = [
    ("require-dual-stack-on-single-stack",
     [V4_ONLY, ("    ipFamilies: [IPv6, IPv4]\n", ""),
      ("  echo-local:", "  echo-local-x:"), ("    ipFamilies: [IPv6]\n", "")],
     "services.web.ipFamilyPolicy", "RequireDualStack needs a dual-stack cluster",
     "ipFamilyPolicy: RequireDualStack"),
    ("family-the-cluster-lacks",
     [V4_ONLY, ("    ipFamilyPolicy: RequireDualStack\n    ipFamilies: [IPv6, IPv4]\n", ""),
      ("    ipFamilies: [IPv6]\n", "    ipFamilies: [IPv6]\n")],
     "services.echo-local.ipFamilies[0]", "IPv6 is not configured on this cluster",
     "ipFamilies: [IPv6]"),
    ("single-stack-with-two-families",
     [("    ipFamilyPolicy: RequireDualStack\n", "    ipFamilyPolicy: SingleStack\n")],
     "services.web.ipFamilies", "a SingleStack Service has one family",
     "ipFamilies: [IPv6, IPv4]"),
    ("families-out-of-order-with-cluster-ips",
     [("    ipFamilies: [IPv6, IPv4]\n",
       "    ipFamilies: [IPv6, IPv4]\n    clusterIPs: [10.96.0.50]\n")],
     "services.web.clusterIPs[0]", "10.96.0.50 is IPv4, but ipFamilies[0] is IPv6",
     "clusterIPs: [10.96.0.50"),
    ("two-cluster-ips-of-one-family",
     [("    ipFamilyPolicy: PreferDualStack\n",
       "    ipFamilyPolicy: PreferDualStack\n    clusterIPs: [10.96.0.50, 10.96.0.51]\n")],
     "services.web-nodeport.clusterIPs[1]", "no more than one IP for each IP family",
     "clusterIPs: [10.96.0.50, 10.96.0.51]"),
    ("cluster-ips-first-is-not-cluster-ip",
     [("    ipFamilyPolicy: PreferDualStack\n",
       "    ipFamilyPolicy: PreferDualStack\n    clusterIP: 10.96.0.50\n"
       "    clusterIPs: [10.96.0.51, fd00:10:96::51]\n")],
     "services.web-nodeport.clusterIPs[0]", "must be equal to clusterIP '10.96.0.50'",
     "clusterIPs: [10.96.0.51"),
    ("ipv6-cluster-ip-outside-its-range",
     [(AGENT + "    selector: {app: agent}\n",
       AGENT + "    selector: {app: agent}\n    clusterIP: fd00:10:97::1\n")],
     "services.agent.clusterIP", "fd00:10:97::1 is outside cluster.service-cidr "
     "fd00:10:96::/112", "clusterIP: fd00:10:97::1"),
    ("ipv6-cluster-ip-twice",
     [(AGENT + "    selector: {app: agent}\n",
       AGENT + "    selector: {app: agent}\n    clusterIP: fd00:10:96::60\n"),
      ("    ipFamilyPolicy: PreferDualStack\n",
       "    ipFamilyPolicy: PreferDualStack\n    clusterIPs: [10.96.0.60, fd00:10:96::60]\n")],
     "services.agent.clusterIP", "fd00:10:96::60 is already the clusterIP of "
     "services.web-nodeport", "clusterIP: fd00:10:96::60"),
    ("family-listed-twice",
     [("    ipFamilies: [IPv6, IPv4]\n", "    ipFamilies: [IPv6, IPv6]\n")],
     "services.web.ipFamilies[1]", "IPv6 is listed twice", "ipFamilies: [IPv6, IPv6]"),
    ("family-unknown",
     [("    ipFamilies: [IPv6, IPv4]\n", "    ipFamilies: [IPv6, IPv5]\n")],
     "services.web.ipFamilies[1]", "'IPv4' or 'IPv6'", "ipFamilies: [IPv6, IPv5]"),
]


@pytest.mark.parametrize(("edits", "path", "fragment", "needle"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_dual_stack_service_rule_reports_one_problem(
        edits: list[tuple[str, str]], path: str, fragment: str, needle: str) -> None:
    text = DUAL
    for old, new in edits:
        text = broken(old, new, text)
    _, problems = problems_of(text, Path("broken.clab.yml"))
    assert [p.path for p in problems] == [path], problems
    assert fragment in problems[0].message, problems[0].message
    assert problems[0].line == line_of(text, needle)


def test_the_example_is_valid_and_ipv4_first_services_may_be_ipv6_only() -> None:
    plan = _plan()
    assert plan.service_cidrs == ("10.96.0.0/16", "fd00:10:96::/112")
    # ipFamilies order makes the IPv6 ClusterIP web's clusterIP; the others follow
    web, nodeport = _svc(plan, "web"), _svc(plan, "web-nodeport")
    assert web.ip_families == ("ipv6", "ipv4") and web.ip_family_policy == "RequireDualStack"
    assert web.cluster_ips == ("fd00:10:96::2", "10.96.0.2") and web.cluster_ip == "fd00:10:96::2"
    assert nodeport.cluster_ips == ("10.96.0.3", "fd00:10:96::3")  # PreferDualStack: both
    assert _svc(plan, "echo-local").cluster_ips == ("fd00:10:96::4",)
    assert _svc(plan, "agent").cluster_ips == ("10.96.0.4",)  # SingleStack: the primary


def test_prefer_dual_stack_on_a_single_stack_cluster_gets_one_family() -> None:
    text = broken(*V4_ONLY, DUAL)
    text = broken("    ipFamilyPolicy: RequireDualStack\n    ipFamilies: [IPv6, IPv4]\n", "",
                  text)
    text = broken("    ipFamilies: [IPv6]\n", "", text)
    plan = _plan(text)
    assert _svc(plan, "web-nodeport").cluster_ips == ("10.96.0.3",)
    assert all(e.family == "ipv4" for s in plan.services for p in s.ports for e in p.endpoints)
    assert all(rs.family == 4 for rs in describe(plan).node("node1").rulesets)


def test_given_cluster_ips_are_kept_and_skipped_by_allocation() -> None:
    text = broken("    ipFamilies: [IPv6, IPv4]\n",
                  "    ipFamilies: [IPv6, IPv4]\n    clusterIPs: [fd00:10:96::3, 10.96.0.2]\n",
                  DUAL)
    plan = _plan(text)
    assert _svc(plan, "web").cluster_ips == ("fd00:10:96::3", "10.96.0.2")
    assert _svc(plan, "web-nodeport").cluster_ips == ("10.96.0.3", "fd00:10:96::2")


def test_endpoints_per_family_and_host_network_at_its_node() -> None:
    plan = _plan()
    http = _svc(plan, "web").ports[0]
    assert [e.address for e in http.endpoints_of("ipv4")] == ["10.244.0.2:8080",
                                                               "10.244.1.2:8080"]
    # kube-proxy's text order: "[fd00:10:244:1::2]" sorts before "[fd00:10:244::2]"
    assert [e.address for e in http.endpoints_of("ipv6")] == ["[fd00:10:244:1::2]:8080",
                                                               "[fd00:10:244::2]:8080"]
    view = _svc(plan, "web").of_family("ipv4")
    assert view.cluster_ip == "10.96.0.2" and len(view.ports[0].endpoints) == 2
    agent = _svc(plan, "agent").ports[0].endpoints
    assert [(e.ip, e.host_network) for e in agent] == [(plan.node("node2").address_of("ipv4"),
                                                        True)]
    hp = plan.host_ports[0]
    assert hp.pod_ips == tuple(plan.pod("echo").ips) and hp.families == ("ipv4", "ipv6")


def test_readdressed_moves_each_family_on_its_own() -> None:
    plan = _plan()
    web = _svc(plan, "web")
    moved, ports = readdressed(plan.services, plan.host_ports,
                               {"web-1": ("10.244.0.99", "fd00:10:244::99"),
                                "echo": "fd00:10:244::77"})
    http = next(s for s in moved if s.name == "web").ports[0]
    assert {e.ip for e in http.endpoints if e.pod == "web-1"} == {"10.244.0.99",
                                                                   "fd00:10:244::99"}
    # sorted again by kube-proxy's text
    assert [e.address for e in http.endpoints_of("ipv4")] == ["10.244.0.99:8080",
                                                               "10.244.1.2:8080"]
    echo = next(h for h in ports if h.pod == "echo")
    assert echo.pod_ips == (plan.pod("echo").ip, "fd00:10:244::77")  # IPv4 kept
    assert web.ports[0].endpoints != http.endpoints


def test_ip6tables_rules_as_data() -> None:
    plan = _plan()
    v4 = kubeproxy.node_rules("node1", plan.services, "10.244.0.0/16", "ipv4")
    v6 = kubeproxy.node_rules("node1", plan.services, "fd00:10:244::/56", "ipv6")
    assert (v4.family, v4.tool, v6.family, v6.tool) == (4, "iptables", 6, "ip6tables")
    name = "default/web:http"
    chain = kubeproxy.svc_chain(name, "tcp")
    # the same KUBE-SVC name in both families (the hash is of the same text) ...
    assert ("nat", chain) in v4.chains and ("nat", chain) in v6.chains
    # ... each with its own family's ClusterIP, pod CIDR and endpoints
    six = [r.args for r in v6.rules_of(chain)]
    assert any("fd00:10:96::2" in a and "fd00:10:244::/56" in a for a in six)
    assert not any("10.96.0.2" in a for a in six)
    sep = kubeproxy.sep_chain(name, "tcp", "[fd00:10:244::2]:8080")
    assert ("nat", sep) in v6.chains and ("nat", sep) not in v4.chains
    assert [r.args[-1] for r in v6.rules_of(sep) if r.target == "DNAT"] == [
        "[fd00:10:244::2]:8080"]
    tail = v6.rules_of(kubeproxy.SERVICES)[-1].args
    assert tail[tail.index("!"):tail.index("!") + 3] == ("!", "-d", "::1/128")
    # the IPv6-only Service only in ip6tables, the SingleStack IPv4 one only in iptables
    assert "echo-local" in v6.restore_text() and "echo-local" not in v4.restore_text()
    assert "default/agent" in v4.restore_text() and "default/agent" not in v6.restore_text()
    rulesets = describe(plan).node("node1").rulesets
    assert [(rs.owner, rs.family) for rs in rulesets] == [
        ("kube-proxy", 4), ("kube-proxy", 6), ("portmap", 4), ("portmap", 6)]


def test_portmap_in_ipv6_has_no_localhost_rule() -> None:
    plan = _plan()
    ids = {p.name: p.infra for p in plan.pods}
    v4 = portmap.node_rules("node1", plan.host_ports, ids, "ipv4",
                            {p.name: p.cidr_of("ipv4") or "" for p in plan.pods})
    v6 = portmap.node_rules("node1", plan.host_ports, ids, "ipv6",
                            {p.name: p.cidr_of("ipv6") or "" for p in plan.pods})
    assert v6.family == 6 and v4.chains == v6.chains  # the same chain names
    echo6 = plan.pod("echo").ip_of("ipv6")
    assert any(r.args[-1] == f"[{echo6}]:7000" for r in v6.rules)
    assert any("127.0.0.1" in r.args for r in v4.rules)
    assert not any("127.0.0.1" in r.args or "::1" in r.args for r in v6.rules)
    assert len(portmap.node_rules("node2", plan.host_ports, ids, "ipv6", {})) == 0


def test_service_paths_per_family() -> None:
    plan = _plan()
    all_paths = paths(plan)
    families = {p.family for p in all_paths}
    assert families == {"ipv4", "ipv6"}
    node = [p for p in all_paths if p.check == "node-to-service" and p.client == "node1"
            and p.target == "web:http" and p.family == "ipv6"]
    assert len(node) == 1 and node[0].dst_ip == "fd00:10:96::2"
    assert node[0].client_ip == plan.node("node1").address_of("ipv6")
    assert all(":" in o.src for o in node[0].outcomes)  # masqueraded to IPv6 addresses
    pod = next(p for p in all_paths if p.check == "pod-to-service" and p.client == "client"
               and p.target == "web:http" and p.family == "ipv6")
    assert pod.client_ip == plan.pod("client").ip_of("ipv6")
    assert {o.src for o in pod.outcomes} == {pod.client_ip}  # the pod source is kept
    local = [p for p in all_paths if p.target.startswith("echo-local:")
             and p.check == "external-to-nodeport"]
    assert {p.family for p in local} == {"ipv6"}
    assert {p.dst_ip for p in local} == {plan.node(n.name).address_of("ipv6")
                                         for n in plan.k8s_nodes}
    assert [bool(p.outcomes) for p in local] == [n.name == "node1" for n in plan.k8s_nodes]
    hostport = [p for p in all_paths if p.check == "external-to-hostport"]
    assert {(p.family, p.proto) for p in hostport} == {
        (f, t) for f in ("ipv4", "ipv6") for t in ("tcp", "udp")} and len(hostport) == 8
    assert not any(p.target.startswith("agent") for p in all_paths if p.family == "ipv6")


def test_an_ipv6_only_cluster_has_services() -> None:
    text = (ROOT / "topologies" / "v6only.clab.yml").read_text()
    first_pod = text.index("pods:\n") + len("pods:\n")
    name = text[first_pod:].split(":", 1)[0].strip()
    text = text.replace(f"  {name}:\n", f"  {name}:\n    labels: {{app: x}}\n", 1)
    text += "services:\n  x:\n    selector: {app: x}\n    ports: [{port: 80}]\n"
    plan = _plan(text)
    svc = _svc(plan, "x")
    assert svc.ip_families == ("ipv6",) and svc.cluster_ip == "fd00:10:96::2"
    node = plan.pod(name).node
    assert [rs.family for rs in describe(plan).node(node).rulesets] == [6]
    assert {p.family for p in paths(plan)} == {"ipv6"}
