"""The plan is pure and right: addresses, names, labels, routes and expected hop counts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from podlab_unit_helpers import EXAMPLES, MINIMAL, broken

from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan, pod_iface_name

EXAMPLE_IDS = [p.name.removesuffix(".clab.yml") for p in EXAMPLES]


@pytest.fixture(params=EXAMPLES, ids=EXAMPLE_IDS)
def plan(request: pytest.FixtureRequest) -> Plan:
    return make_plan(load_topology(request.param))


def example(name: str) -> Plan:
    return make_plan(load_topology(next(p for p in EXAMPLES if p.name.startswith(name + "."))))


def net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def attached_subnets(plan: Plan, node: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every family's subnets the node is on (a dual-stack example has both)."""
    n = plan.node(node)
    nets = [net(a) for i in n.interfaces for a in i.addresses]
    nets += [net(c) for c in n.pod_cidrs]
    return nets


def test_examples_exist() -> None:
    assert {"minimal", "flat3", "routed"} <= set(EXAMPLE_IDS)


def fabric_defaults_only(plan: Plan) -> bool:
    """routing: fabric: the user's routers carry everything; a k8s-node has one default
    route per family, to its first user's router."""
    if plan.routing != "fabric":
        return False
    for node in plan.k8s_nodes:
        assert {r.dst for r in node.routes} == {"0.0.0.0/0", "::/0"} & {
            "0.0.0.0/0" if f == "ipv4" else "::/0" for f in plan.families}, node.name
    return True


def test_every_k8s_node_routes_to_every_other_pod_cidr(plan: Plan) -> None:
    if fabric_defaults_only(plan):
        return
    for node in plan.k8s_nodes:
        routes = {r.dst for r in node.routes}
        for other in plan.k8s_nodes:
            if other.name != node.name:
                assert set(other.pod_cidrs) <= routes, (node.name, other.name)
        assert not set(node.pod_cidrs) & routes


def test_every_k8s_node_routes_to_every_segment_it_is_not_on(plan: Plan) -> None:
    if fabric_defaults_only(plan):
        return
    for node in plan.k8s_nodes:
        routes = {r.dst for r in node.routes}
        own = {str(n) for n in attached_subnets(plan, node.name)}
        for seg in plan.segments:
            if seg.kind != "pods":
                for subnet in seg.subnets:
                    assert (subnet in routes) != (subnet in own), (node.name, seg.name)


def test_linux_nodes_have_no_route_to_any_pod_cidr(plan: Plan) -> None:
    for pod_cidr in plan.pod_cidrs:
        pod_net = net(pod_cidr)
        for host in plan.externals:
            assert not any(net(r.dst).overlaps(pod_net) for r in host.routes), host.name


def test_route_next_hops_are_on_an_attached_segment(plan: Plan) -> None:
    for node in plan.nodes:
        subnets = attached_subnets(plan, node.name)
        for route in node.routes:
            via = ipaddress.ip_address(route.via)
            assert any(via in s for s in subnets), (node.name, route)
            assert route.via not in node.own_addresses, "a route via the node itself"


def test_pod_ips_are_unique_and_inside_their_node_cidr(plan: Plan) -> None:
    ips = [ip for p in plan.pods for ip in p.ips]
    assert len(ips) == len(set(ips))
    for pod in plan.pods:
        node = plan.node(pod.node)
        if pod.host_network:  # its node's own address
            assert pod.ip == node.address
            continue
        assert pod.families == plan.families
        for family in pod.families:
            cidr = net(node.pod_cidr_of(family))  # type: ignore[arg-type]
            ip = ipaddress.ip_address(pod.ip_of(family))
            assert ip in cidr
            assert net(pod.cidr_of(family)).prefixlen == cidr.prefixlen  # type: ignore[arg-type]
            assert str(ip) != pod.gateway_of(family)
            assert ip not in (cidr.network_address, cidr.broadcast_address)
        assert pod.prefixlen == net(node.pod_cidr).prefixlen  # type: ignore[arg-type]


def test_node_cidrs_are_disjoint_blocks_of_the_pod_cidr(plan: Plan) -> None:
    for family in plan.families:
        cidrs = [net(n.pod_cidr_of(family)) for n in plan.k8s_nodes]  # type: ignore[arg-type]
        whole = net(plan.pod_cidr_of(family))  # type: ignore[arg-type]
        assert all(c.subnet_of(whole) for c in cidrs)  # type: ignore[arg-type]
        assert not any(a.overlaps(b) for i, a in enumerate(cidrs)  # type: ignore[arg-type]
                       for b in cidrs[i + 1:])


def test_gateways_are_the_first_host_of_the_node_cidr(plan: Plan) -> None:
    for node in plan.k8s_nodes:
        for family in plan.families:
            cidr = net(node.pod_cidr_of(family))  # type: ignore[arg-type]
            first = next(cidr.hosts())
            assert node.gateway_of(family) == f"{first}/{cidr.prefixlen}"
            for pod in plan.pods:
                if pod.node == node.name:
                    assert pod.gateway_of(family) == (None if pod.host_network
                                                      else str(first))


def test_underlay_addresses_are_unique(plan: Plan) -> None:
    addresses = [a.split("/")[0] for n in plan.nodes for i in n.interfaces for a in i.addresses]
    assert len(addresses) == len(set(addresses))


def test_container_names_follow_the_scheme(plan: Plan) -> None:
    for node in plan.nodes:
        assert node.container == f"podlab-{plan.lab}-{node.name}"
    for pod in plan.pods:
        assert pod.infra == f"podlab-{plan.lab}-{pod.name}"
        for c in pod.containers:
            assert c.container == f"podlab-{plan.lab}-{pod.name}-{c.name}"
    assert len(plan.containers) == len(set(plan.containers))


def test_labels_carry_lab_role_node_pod_and_topo(plan: Plan) -> None:
    for node in plan.nodes:
        assert node.labels["io.podlab.lab"] == plan.lab
        assert node.labels["io.podlab.role"] == "node"
        assert node.labels["io.podlab.node"] == node.name
        assert node.labels["io.podlab.topo"] == plan.topo_path
        assert Path(plan.topo_path).is_absolute()
    for pod in plan.pods:
        assert pod.labels["io.podlab.lab"] == plan.lab
        assert pod.labels["io.podlab.pod"] == pod.name
        assert pod.labels["io.podlab.node"] == pod.node
        assert pod.labels["io.podlab.topo"] == plan.topo_path


def test_pod_labels_leave_the_role_to_each_container(plan: Plan) -> None:
    """A pod is several containers (infra, app, sidecars): deploy labels each one's role."""
    for pod in plan.pods:
        assert "io.podlab.role" not in pod.labels
        assert pod.labels["io.podlab.pod"] == pod.name


def test_pod_veth_names_fit_ifnamsiz_and_are_unique_per_node(plan: Plan) -> None:
    for node in plan.k8s_nodes:
        names = [p.node_iface for p in plan.pods if p.node == node.name]
        assert all(len(n) <= 15 for n in names)
        assert len(names) == len(set(names))
        taken = {i.name for i in node.interfaces}
        assert not taken & set(names)


def test_long_pod_names_get_short_unique_veth_names() -> None:
    names = [f"frontend-service-replica-{i}" for i in range(30)] + [
        "a" * 40, "a" * 39 + "b", "abcdefghijkl", "abcdefghijklm"]
    ifaces = [pod_iface_name(n) for n in names]
    assert all(len(i) <= 15 for i in ifaces)
    assert len(set(ifaces)) == len(ifaces)
    assert pod_iface_name("web") == "pv-web"


def test_long_pod_names_in_a_lab_get_unique_veths() -> None:
    pods = "".join(f"  frontend-replica-{i:02d}:\n    node: node1\n"
                   "    containers: [{name: app}]\n" for i in range(20))
    p = make_plan(parse_topology(MINIMAL + pods))
    names = [pod.node_iface for pod in p.pods if pod.node == "node1"]
    assert len(names) == 21 and len(set(names)) == 21 and max(map(len, names)) <= 15


def test_flat3_hops() -> None:
    p = example("flat3")
    # same node: both pods hang off cbr0 in one subnet, so the node bridges (TTL unchanged)
    assert p.pod_to_pod("web", "api").hops == 0
    assert p.pod_to_pod("web", "api").path == ("node1",)
    assert p.pod_to_pod("web", "db").hops == 2
    assert p.pod_to_pod("web", "db").path == ("node1", "node2")
    assert p.node_to_pod("node1", "web").hops == 0
    assert p.node_to_pod("node1", "db").hops == 1
    assert p.pod_to_node("web", "node1").hops == 0


def test_routed_client_to_server_crosses_five_devices() -> None:
    p = example("routed")
    e = p.pod_to_pod("client", "server")
    assert e.hops == 5
    assert e.path == ("node1", "r1", "spine", "r3", "node3")
    back = p.pod_to_pod("server", "client")
    assert back.path == ("node3", "r3", "spine", "r1", "node1")


def test_pod_to_external_is_masqueraded_to_the_node_egress_address() -> None:
    p = example("flat3")
    e = p.pod_to_external("web", "world")
    assert e.snat_to == p.node("node1").address_on("tor") == "172.30.0.1"
    assert e.src_ip == p.pod("web").ip


def test_routed_pod_to_external_snat_is_the_egress_toward_it() -> None:
    p = example("routed")
    e = p.pod_to_external("server", "ext")
    assert e.snat_to == p.node("node3").address
    assert e.path[0] == "node3" and e.path[-1] == "ext"


def test_pod_to_external_without_masquerade_expects_no_snat(tmp_path: Path) -> None:
    src = next(p for p in EXAMPLES if p.name.startswith("flat3."))
    path = tmp_path / "flat3.clab.yml"
    path.write_text(src.read_text().replace("masquerade: true", "masquerade: false"))
    p = make_plan(load_topology(path))
    assert p.pod_to_external("web", "world").snat_to is None
    assert all(n.masquerade_exempt == () for n in p.nodes)


def test_masquerade_exempts_pod_cidr_and_k8s_node_addresses() -> None:
    p = example("flat3")
    exempt = set(p.node("node1").masquerade_exempt)
    assert p.pod_cidr in exempt
    for node in p.k8s_nodes:
        assert f"{node.address}/32" in exempt
    assert f"{p.node('world').address}/32" not in exempt


def test_plan_is_deterministic(plan: Plan) -> None:
    again = make_plan(load_topology(plan.topo_path))
    assert plan.to_dict() == again.to_dict()


def test_every_expectation_hop_count_is_path_based(plan: Plan) -> None:
    pods = {p.name: p for p in plan.pods}

    def in_a_node(end: str) -> bool:
        """The end is a node's own namespace (a node, an outside host, a hostNetwork
        pod): it sends or receives, it does not forward."""
        return end not in pods or pods[end].host_network

    for check, e in plan.expectations():
        assert e.hops >= 0
        if check == "pod-to-pod" and len(e.path) == 1 and not (
                pods[e.src].host_network or pods[e.dst].host_network):
            # bridged on one node; on point-to-point links (cni: ptp) the node routes
            assert e.hops == (0 if plan.pods_bridged else 1)
        elif len(e.path) == 1:
            assert e.hops == 0  # delivered inside one node
        else:
            # every device on the path forwards, but a node-namespace end
            assert e.hops == len(e.path) - in_a_node(e.src) - in_a_node(e.dst)


def test_large_topology_plans_every_pod_pair() -> None:
    nodes = "".join(f"    n{i}: {{kind: k8s-node}}\n" for i in range(10))
    links = "".join(f'    - endpoints: ["n{i}:eth1", "sw:eth{i + 1}"]\n' for i in range(10))
    pods = "".join(f"  p{i}:\n    node: n{i % 10}\n    containers: [{{name: app}}]\n"
                   for i in range(200))
    text = (f"name: big\ntopology:\n  nodes:\n{nodes}    sw: {{kind: switch}}\n"
            f"  links:\n{links}pods:\n{pods}")
    p = make_plan(parse_topology(text))
    pairs = [e for check, e in p.expectations() if check == "pod-to-pod"]
    assert len(pairs) == 200 * 199
    assert {e.hops for e in pairs} == {0, 2}
    assert len({pod.ip for pod in p.pods}) == 200


def test_explicit_link_addresses_are_kept_and_auto_subnets_avoid_them() -> None:
    text = broken('    - endpoints: ["ext:eth1", "sw:eth3"]\n',
                  '    - endpoints: ["ext:eth1", "sw:eth3"]\n'
                  '    - endpoints: ["node1:eth2", "node2:eth2"]\n'
                  '      ipv4: ["172.30.0.1/30", "172.30.0.2/30"]\n')
    p = make_plan(parse_topology(text))
    seg = next(s for s in p.segments if s.kind == "p2p")
    assert seg.subnet == "172.30.0.0/30"
    switch = next(s for s in p.segments if s.kind == "switch")
    assert not net(switch.subnet).overlaps(net(seg.subnet))
