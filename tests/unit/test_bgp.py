"""routing: bgp, pure: speakers, bird.conf, and the routes BIRD converges to."""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
from pathlib import Path

import pytest
from podlab_unit_helpers import EXAMPLES, MINIMAL, bird_binary

from harness.datapath import bgpconf as bgp
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan

RING = """\
name: ring
cluster: {pod-cidr: 10.244.0.0/16, underlay-cidr: 172.31.0.0/16}
topology:
  defaults: {kind: k8s-node}
  nodes: {n1: {}, n2: {}, n3: {}, n4: {}}
  links:
    - endpoints: ["n1:eth1", "n2:eth1"]
    - endpoints: ["n2:eth2", "n3:eth1"]
    - endpoints: ["n3:eth2", "n4:eth1"]
    - endpoints: ["n4:eth2", "n1:eth2"]
pods:
  a: {node: n1, containers: [{name: app}]}
  d: {node: n4, containers: [{name: app}]}
"""


def per_link(plan: Plan) -> Plan:
    """These tests are of `cluster.bgp.mode: per-link` (eBGP on every link)."""
    return dataclasses.replace(plan, bgp_mode="per-link")


def example(name: str) -> Plan:
    return per_link(make_plan(load_topology(next(p for p in EXAMPLES
                                                 if p.name == f"{name}.clab.yml"))))


def plan_of(text: str) -> Plan:
    return per_link(make_plan(parse_topology(text)))


def by_node(plan: Plan) -> dict[str, bgp.Speaker]:
    return {s.node: s for s in bgp.speakers(plan)}


# --------------------------------------------------------------------------- speakers


def test_speakers_are_k8s_nodes_and_routers_each_with_its_own_private_as() -> None:
    plan = example("routed")
    sps = bgp.speakers(plan)
    assert [s.node for s in sps] == ["node1", "node2", "node3", "r1", "spine", "r3"]
    assert [s.asn for s in sps] == list(range(64512, 64518))
    assert "ext" not in {s.node for s in sps}  # linux hosts stay static


def test_beyond_the_two_byte_range_the_as_numbers_are_four_byte_private() -> None:
    assert bgp._asn(0, 2000) == 4200000000
    assert bgp._asn(1022, 1023) == 65534


def test_sessions_on_a_switch_segment_are_a_full_mesh_of_its_speakers() -> None:
    sps = by_node(example("flat3"))
    # node1..3 share the tor segment; the outside host `world` is no speaker
    assert {s.peer for s in sps["node1"].sessions} == {"node2", "node3"}
    assert all(s.interface == "eth1" for s in sps["node1"].sessions)
    peer = next(s for s in sps["node1"].sessions if s.peer == "node2")
    assert peer.peer_as == sps["node2"].asn
    assert peer.peer_ip == example("flat3").node("node2").address


def test_sessions_are_symmetric() -> None:
    for name in ("minimal", "flat3", "routed"):
        sps = by_node(example(name))
        pairs = {(n, s.peer, s.local_ip, s.peer_ip) for n, sp in sps.items() for s in sp.sessions}
        assert pairs == {(p, n, r, loc) for n, p, loc, r in pairs}


def test_a_session_per_link_between_the_same_two_routers() -> None:
    text = MINIMAL.replace('    - endpoints: ["ext:eth1", "sw:eth3"]\n',
                           '    - endpoints: ["ext:eth1", "sw:eth3"]\n'
                           '    - endpoints: ["node1:eth2", "node2:eth2"]\n')
    sps = by_node(plan_of(text))
    names = [s.name for s in sps["node1"].sessions]
    assert names == ["node2_eth1", "node2_eth2"]


def test_symbols_are_bird_safe() -> None:
    assert bgp._symbol("leaf-1_eth1") == "leaf_1_eth1"
    assert bgp._symbol("1node_eth1") == "n_1node_eth1"


def test_k8s_nodes_originate_their_pod_cidr_routers_nothing() -> None:
    plan = example("routed")
    sps = by_node(plan)
    assert sps["node1"].originates == (plan.node("node1").pod_cidr,)
    assert sps["spine"].originates == ()


# --------------------------------------------------------------------------- bird.conf


def test_bird_conf_minimal_golden() -> None:
    plan = example("minimal")
    conf = bgp.bird_conf(by_node(plan)["node1"], plan.lab)
    n1, n2 = plan.node("node1"), plan.node("node2")
    addr1, addr2 = n1.address, n2.address
    assert f"router id {addr1};" in conf
    assert (f'protocol bgp node2_eth1 from peer {{\n  description "node2 via eth1";\n'
            f"  neighbor {addr2} as 64513;\n  local {addr1};\n  interface \"eth1\";\n"
            f"  ipv4 {{ export where net ~ PODLAB_NETS && gw != {addr2}; }};\n}}") in conf
    assert f"protocol static pods {{\n  ipv4;\n  route {n1.pod_cidr} blackhole;\n}}" in conf
    assert 'protocol direct underlay {\n  ipv4;\n  interface "eth1";\n}' in conf
    assert "ipv4 { import none; export where source = RTS_BGP; };" in conf


def test_bird_conf_timers_are_fast() -> None:
    plan = example("minimal")
    conf = bgp.bird_conf(by_node(plan)["node1"], plan.lab)
    for line in ("hold time 3;", "keepalive time 1;", "connect delay time 0;",
                 "connect retry time 1;", "error wait time 1, 3;", "check link yes;"):
        assert f"  {line}" in conf


def test_bird_conf_exchanges_only_the_labs_prefixes() -> None:
    plan = example("routed")
    conf = bgp.bird_conf(by_node(plan)["spine"], plan.lab)
    nets = conf.split("define PODLAB_NETS = [", 1)[1].split("];", 1)[0].split(",")
    assert sorted(n.strip() for n in nets) == sorted(
        [*(n.pod_cidr for n in plan.k8s_nodes), *(s.subnet for s in plan.segments
                                                   if s.kind != "pods")])
    assert "ipv4 { import where net ~ PODLAB_NETS; };" in conf
    # nothing is offered back to the peer that is its next hop
    for sess in by_node(plan)["spine"].sessions:
        assert f"export where net ~ PODLAB_NETS && gw != {sess.peer_ip};" in conf
    # a router has no pods to announce
    assert "protocol static" not in conf


def test_bird_conf_flat3_golden_sessions() -> None:
    plan = example("flat3")
    conf = bgp.bird_conf(by_node(plan)["node3"], plan.lab)
    assert conf.count("protocol bgp ") == 2
    assert "protocol bgp node1_eth1 from peer" in conf
    assert "protocol bgp node2_eth1 from peer" in conf


@pytest.mark.parametrize("name", ["minimal", "flat3", "routed"])
def test_bird_accepts_every_generated_conf(name: str, tmp_path: Path) -> None:
    assert_bird_accepts(example(name), tmp_path)


def assert_bird_accepts(plan: Plan, tmp_path: Path) -> None:
    """BIRD's own parser (`bird -p`) accepts every speaker's generated config: each
    daemon's (one per family), and all families in one."""
    bird = bird_binary()
    for sp in bgp.speakers(plan):
        for family in (None, *bgp.daemon_families(sp)):
            path = tmp_path / f"{sp.node}-{family}.conf"
            path.write_text(bgp.bird_conf(sp, plan.lab, family=family))
            done = subprocess.run([bird, "-p", "-c", str(path)], capture_output=True,
                                  text=True, check=False)
            assert done.returncode == 0, f"{sp.node} {family}: {done.stderr}"


# --------------------------------------------------------------------------- convergence


def test_expected_routes_cover_every_prefix_not_attached() -> None:
    plan = example("routed")
    routes = bgp.expected_routes(plan).by_node
    for sp in bgp.speakers(plan):
        node = plan.node(sp.node)
        attached = {s.subnet for s in plan.segments
                    if any(m[0] == sp.node for m in s.members)} | {node.pod_cidr}
        assert set(routes[sp.node]) == set(bgp.lab_prefixes(plan)) - attached


def test_expected_next_hops_agree_with_the_static_plan_without_ties() -> None:
    # routed has one path between any two devices: BGP's choice is the static route's
    plan = example("routed")
    routes = bgp.expected_routes(plan).by_node
    for sp in bgp.speakers(plan):
        static = {r.dst: r.via for r in plan.node(sp.node).routes}
        for prefix, hops in routes[sp.node].items():
            assert hops == {static[prefix]}, (sp.node, prefix)


def test_a_ring_takes_the_long_way_round_when_a_link_is_down() -> None:
    plan = plan_of(RING)
    n1, n4 = plan.node("n1"), plan.node("n4")
    n2_addr = plan.node("n2").address_on(plan.links[0].segment)
    n4_addr = plan.node("n4").address_on(plan.links[3].segment)
    assert bgp.expected_routes(plan).by_node["n1"][n4.pod_cidr] == {n4_addr}
    after = bgp.expected_routes(plan, down_links=frozenset({3})).by_node
    assert after["n1"][n4.pod_cidr] == {n2_addr}
    # the down link's subnet is originated by nobody any more
    assert plan.links[3].segment not in {s.name for s in plan.segments
                                          if s.subnet in after["n2"]}
    assert after["n4"][n1.pod_cidr] == {plan.node("n3").address_on(plan.links[2].segment)}


def test_ties_allow_every_equal_next_hop() -> None:
    plan = plan_of(RING)
    n3 = plan.node("n3")
    hops = bgp.expected_routes(plan).by_node["n1"][n3.pod_cidr]
    assert len(hops) == 2  # over n2 or over n4: two AS hops either way


def test_a_dead_daemon_withdraws_its_prefixes_and_is_no_transit() -> None:
    plan = plan_of(RING)
    n2 = plan.node("n2")
    routes = bgp.expected_routes(plan, dead=frozenset({"n2"})).by_node
    assert "n2" not in routes  # its own kernel keeps whatever it had
    assert n2.pod_cidr not in routes["n1"] and n2.pod_cidr not in routes["n3"]
    # n1 reaches n3 over n4 only
    assert routes["n1"][plan.node("n3").pod_cidr] == {
        plan.node("n4").address_on(plan.links[3].segment)}


def test_missing_names_absent_and_wrong_next_hops() -> None:
    want = bgp.Routes({"n1": {"10.0.1.0/24": frozenset({"1.1.1.2"}),
                              "10.0.2.0/24": frozenset({"1.1.1.2", "1.1.2.2"})}})
    assert want.missing({"n1": {"10.0.1.0/24": "1.1.1.2", "10.0.2.0/24": "1.1.2.2"}}) == []
    assert want.missing({"n1": {"10.0.1.0/24": "9.9.9.9"}}) == [
        ("n1", "10.0.1.0/24"), ("n1", "10.0.2.0/24")]
    assert want.missing({}) == [("n1", "10.0.1.0/24"), ("n1", "10.0.2.0/24")]


# --------------------------------------------------------------------------- rerouted plans


def test_a_rerouted_plan_expects_the_long_way_round() -> None:
    plan = plan_of(RING)
    assert plan.pod_to_pod("a", "d").path == ("n1", "n4")
    after = plan.rerouted(down_links=frozenset({3}))
    assert after.down_links == {3}
    exp = after.pod_to_pod("a", "d")
    assert (exp.path, exp.hops) == (("n1", "n2", "n3", "n4"), 4)
    assert after.node("n1").routes == plan.node("n1").routes  # what is installed stays
    assert plan.pod_to_pod("a", "d").hops == 2  # the intact plan is untouched
    assert after.rerouted().down_links == frozenset()  # rerouted from the intact lab


def test_a_pair_cut_off_keeps_its_intact_path() -> None:
    plan = plan_of(RING).rerouted(down_links=frozenset({3}), no_transit=frozenset({"n2"}))
    assert plan.pod_to_pod("a", "d").path == ("n1", "n4")


def test_no_transit_through_a_dead_speaker() -> None:
    plan = plan_of(RING).rerouted(no_transit=frozenset({"n4"}))
    assert plan.node_to_pod("n1", "d").path == ("n1", "n4")  # still an endpoint
    text = RING.replace("d: {node: n4", "d: {node: n3")
    assert plan_of(text).rerouted(no_transit=frozenset({"n2"})).pod_to_pod(
        "a", "d").path == ("n1", "n4", "n3")


def test_a_member_pulled_from_a_switch_segment() -> None:
    plan = example("flat3")
    link = next(i for i, lk in enumerate(plan.links) if lk.a[0] == "node3" or lk.b[0] == "node3")
    after = plan.rerouted(down_links=frozenset({link}))
    pods_on_3 = [p.name for p in plan.pods if p.node == "node3"]
    others = [p.name for p in plan.pods if p.node != "node3"]
    assert pods_on_3 and others
    # node3 has no other way in: the intact path is kept (and the probe will fail)
    assert after.pod_to_pod(others[0], pods_on_3[0]).path == plan.pod_to_pod(
        others[0], pods_on_3[0]).path
    assert after._graph.attached["node3"] == [s for s in plan._graph.attached["node3"]
                                              if plan.segments[s].kind == "pods"]


# --------------------------------------------------------------------------- the datapath


def bgp_plan(name: str) -> Plan:
    path = next(p for p in EXAMPLES if p.name == f"{name}.clab.yml")
    text = path.read_text()
    if "routing: bgp" not in text:
        text = text.replace("cluster:\n", "cluster:\n  routing: bgp\n", 1)
    return per_link(make_plan(parse_topology(text, path)))


def test_bgp_is_selected_by_the_file() -> None:
    from harness.datapath import select
    from harness.datapath.bgp import BgpDatapath

    assert isinstance(select(example("leafspine")), BgpDatapath)
    assert example("leafspine").routing == "bgp"


def test_speakers_run_bird_from_podlab_bird_and_get_no_route_by_hand() -> None:
    from harness.datapath import describe
    from harness.host import bird

    plan = bgp_plan("routed")
    net = describe(plan)
    want = bgp.expected_routes(plan).by_node
    for node in plan.nodes:
        n = net.node(node.name)
        if bgp.is_speaker(node):
            assert node.image == "podlab/bird"
            assert n.routes == ()
            (daemon,) = n.daemons
            assert daemon.argv == bird.ARGV and daemon.files[0][0] == bird.CONF_PATH
            assert f"router id {node.address};" in daemon.files[0][1]
            assert set(n.ready_routes) == set(want[node.name])
            # every other pod CIDR is among what deploy waits for
            assert {k.pod_cidr for k in plan.k8s_nodes} - {node.pod_cidr} <= set(n.ready_routes)
        elif node.kind == "linux":  # outside hosts keep the plan's static routes
            assert n.routes == tuple((r.dst, r.via) for r in node.routes)
            assert node.image == "podlab/node" and not n.daemons


def test_a_node_image_named_in_the_file_is_kept() -> None:
    text = MINIMAL.replace("cluster:\n", "cluster:\n  routing: bgp\n").replace(
        "    node1: {kind: k8s-node}", "    node1: {kind: k8s-node, image: my/bird}")
    plan = plan_of(text)
    assert plan.node("node1").image == "my/bird" and plan.node("node2").image == "podlab/bird"


# --------------------------------------------------------------------------- both families

RING_DUAL = RING.replace(
    "cluster: {pod-cidr: 10.244.0.0/16, underlay-cidr: 172.31.0.0/16}",
    "cluster: {pod-cidr: [10.244.0.0/16, fd00:10:244::/56],"
    " underlay-cidr: [172.31.0.0/16, fd00:172:31::/48]}")
RING_V6 = RING.replace(
    "cluster: {pod-cidr: 10.244.0.0/16, underlay-cidr: 172.31.0.0/16}",
    "cluster: {pod-cidr: fd00:10:244::/56, underlay-cidr: fd00:172:31::/48}")


def bgp_text(name: str) -> str:
    text = next(p for p in EXAMPLES if p.name == f"{name}.clab.yml").read_text()
    return text.replace("cluster:\n", "cluster:\n  routing: bgp\n  bgp: {mode: per-link}\n", 1)


def twin(plan: Plan, ip: str) -> str:
    """The IPv6 address of the interface (or pod CIDR) that holds IPv4 `ip`."""
    for seg in plan.segments:
        for addrs in seg.member_addresses:
            if addrs and addrs[0].split("/")[0] == ip:
                return addrs[1].split("/")[0]
    raise KeyError(ip)


def test_a_cluster_with_ipv6_validates_with_bgp() -> None:
    from harness.datapath import select
    from harness.datapath.bgp import BgpDatapath

    for name in ("dual", "v6only"):
        plan = make_plan(parse_topology(bgp_text(name)))
        assert plan.routing == "bgp" and isinstance(select(plan), BgpDatapath)


def test_dual_stack_speakers_have_a_session_per_family_over_its_addresses() -> None:
    plan = plan_of(RING_DUAL)
    for sp in bgp.speakers(plan):
        v4, v6 = sp.sessions_of("ipv4"), sp.sessions_of("ipv6")
        assert len(v4) == len(v6) == 2 and len(sp.sessions) == 4
        for a, b in zip(v4, v6, strict=True):  # twins: same peer, link and AS
            assert (a.peer, a.interface, a.link, a.peer_as) == (
                b.peer, b.interface, b.link, b.peer_as)
            assert b.name == f"{a.name}_v6"
            assert b.peer_ip == twin(plan, a.peer_ip) and b.local_ip == twin(plan, a.local_ip)
        # the IPv4 address stays the router id, and both pod CIDRs are announced
        assert sp.router_id == plan.node(sp.node).address_of("ipv4")
        assert sp.originates == plan.node(sp.node).pod_cidrs
        assert sp.families == ("ipv4", "ipv6")


def test_dual_stack_sessions_are_symmetric_per_family() -> None:
    sps = by_node(make_plan(parse_topology(bgp_text("dual"))))
    pairs = {(n, s.peer, s.family, s.local_ip, s.peer_ip)
             for n, sp in sps.items() for s in sp.sessions}
    assert pairs == {(p, n, f, r, loc) for n, p, f, loc, r in pairs}
    assert {f for *_, f, _, _ in pairs} == {"ipv4", "ipv6"}


def test_dual_stack_bird_conf_has_an_ipv6_channel_per_protocol() -> None:
    plan = plan_of(RING_DUAL)
    sp = by_node(plan)["n1"]
    conf = bgp.bird_conf(sp, plan.lab)
    n1 = plan.node("n1")
    v4cidr, v6cidr = n1.pod_cidrs
    nets4 = conf.split("define PODLAB_NETS = [", 1)[1].split("];", 1)[0].split(",")
    nets6 = conf.split("define PODLAB_NETS6 = [", 1)[1].split("];", 1)[0].split(",")
    assert sorted(n.strip() for n in nets4 + nets6) == sorted(bgp.lab_prefixes(plan))
    assert all(":" in n for n in nets6) and not any(":" in n for n in nets4)
    assert "protocol direct underlay {\n  ipv4;\n  ipv6;\n" in conf
    assert f"protocol static pods {{\n  ipv4;\n  route {v4cidr} blackhole;\n}}" in conf
    assert f"protocol static pods6 {{\n  ipv6;\n  route {v6cidr} blackhole;\n}}" in conf
    assert ("protocol kernel kernel6 {\n  scan time 10;\n"
            "  ipv6 { import none; export where source = RTS_BGP; };\n}") in conf
    assert "template bgp peer6 {" in conf
    assert "  ipv6 { import where net ~ PODLAB_NETS6; };" in conf
    s = sp.sessions_of("ipv6")[0]
    assert (f"protocol bgp {s.name} from peer6 {{\n  description \"{s.peer} via {s.interface}\";\n"
            f"  neighbor {s.peer_ip} as {s.peer_as};\n  local {s.local_ip};\n"
            f"  interface \"{s.interface}\";\n"
            f"  ipv6 {{ export where net ~ PODLAB_NETS6 && gw != {s.peer_ip}; }};\n}}") in conf
    assert conf.count(" from peer {") == conf.count(" from peer6 {") == 2


def test_an_ipv4_only_bird_conf_has_no_ipv6_in_it() -> None:
    plan = plan_of(RING)
    for sp in bgp.speakers(plan):
        conf = bgp.bird_conf(sp, plan.lab)
        assert "ipv6" not in conf and "PODLAB_NETS6" not in conf and "_v6" not in conf


def test_ipv6_only_speakers_take_their_as_number_as_router_id() -> None:
    plan = make_plan(parse_topology(bgp_text("v6only")))
    sps = bgp.speakers(plan)
    ids = [sp.router_id for sp in sps]
    assert len(set(ids)) == len(ids)
    for sp in sps:
        assert int(ipaddress.IPv4Address(sp.router_id)) == sp.asn
        conf = bgp.bird_conf(sp, plan.lab)
        assert "ipv4" not in conf and "PODLAB_NETS =" not in conf
        assert "template bgp peer6 {" in conf and "template bgp peer {" not in conf
        assert all(s.family == "ipv6" for s in sp.sessions)
    # the /127 link (RFC 6164) has its all-zeros address as one end
    r1 = next(s for s in by_node(plan)["r1"].sessions if s.peer == "node3")
    assert r1.peer_ip == "fd00:ff::"


@pytest.mark.parametrize("name", ["dual", "v6only"])
def test_bird_accepts_every_generated_conf_with_ipv6(name: str, tmp_path: Path) -> None:
    assert_bird_accepts(make_plan(parse_topology(bgp_text(name))), tmp_path)


def test_ipv6_routes_are_the_twins_of_the_ipv4_ones() -> None:
    plan = make_plan(parse_topology(bgp_text("dual")))
    routes = bgp.expected_routes(plan).by_node
    v6_of = {seg.subnets[0]: seg.subnets[1] for seg in plan.segments}
    for node, table in routes.items():
        v4 = {p: h for p, h in table.items() if ":" not in p}
        v6 = {p: h for p, h in table.items() if ":" in p}
        assert v4 and len(v4) == len(v6), node
        for prefix, hops in v4.items():
            assert v6[v6_of[prefix]] == {twin(plan, h) for h in hops}, (node, prefix)


def test_an_ipv6_only_ring_takes_the_long_way_round_when_a_link_is_down() -> None:
    plan = plan_of(RING_V6)
    n4 = plan.node("n4")
    assert bgp.expected_routes(plan).by_node["n1"][n4.pod_cidr] == {
        n4.address_on(plan.links[3].segment)}
    after = bgp.expected_routes(plan, down_links=frozenset({3})).by_node
    assert after["n1"][n4.pod_cidr] == {plan.node("n2").address_on(plan.links[0].segment)}
    assert ":" in n4.pod_cidr and all(":" in p for t in after.values() for p in t)


def test_a_fault_moves_both_families_alike() -> None:
    plan = plan_of(RING_DUAL)
    for down, dead in ((frozenset({3}), frozenset()), (frozenset(), frozenset({"n2"}))):
        routes = bgp.expected_routes(plan, down, dead).by_node
        v6_of = {seg.subnets[0]: seg.subnets[1] for seg in plan.segments}
        for node, table in routes.items():
            for prefix, hops in table.items():
                if ":" not in prefix:
                    assert table[v6_of[prefix]] == {twin(plan, h) for h in hops}
            assert len(table) % 2 == 0, node
    dead_n2 = bgp.expected_routes(plan, dead=frozenset({"n2"})).by_node
    assert not set(plan.node("n2").pod_cidrs) & set(dead_n2["n1"])


def test_predicted_tables_hold_both_families() -> None:
    plan = plan_of(RING_DUAL)
    tables = bgp.predicted_tables(plan, dead=frozenset({"n2"}))
    n2 = plan.node("n2")
    for cidr in n2.pod_cidrs:  # withdrawn from its neighbours, in both families
        assert cidr not in tables["n1"] and cidr not in tables["n3"]
        assert cidr in tables["n2"]
    everything = set(bgp.lab_prefixes(plan))
    assert set(tables["n1"]) == everything - set(n2.pod_cidrs)
    # n2 was the way to n3's side for nobody alone: n1 keeps n3 over n4 in both families
    assert set(plan.node("n3").pod_cidrs) <= set(tables["n1"])


def test_a_dual_stack_bgp_lab_waits_for_its_ipv6_routes_too() -> None:
    from harness.datapath import describe

    plan = make_plan(parse_topology(bgp_text("dual")))
    net = describe(plan)
    for node in plan.nodes:
        if bgp.is_speaker(node):
            ready = set(net.node(node.name).ready_routes)
            others = {c for k in plan.k8s_nodes if k.name != node.name for c in k.pod_cidrs}
            assert others <= ready and any(":" in p for p in ready), node.name
            assert net.node(node.name).routes == ()


def test_deploy_waits_until_every_route_takes_its_shortest_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A prefix learned the long way round (the direct session still coming up) is not
    converged: deploy's wait goes on until each route is via a planned next hop."""
    from harness.datapath import bgp as bgp_datapath
    from harness.datapath import select
    from harness.errors import RoutingError

    plan = example("leafspine")
    dp = select(plan)
    net = dp.describe(plan)  # as deploy does: the datapath that described it waits
    want = bgp.expected_routes(plan).by_node
    right = {n: {p: sorted(hops)[0] for p, hops in routes.items()} for n, routes in want.items()}
    node, prefix = next((n, p) for n, r in want.items() for p in r)
    detour = {n: dict(r) for n, r in right.items()}
    detour[node][prefix] = "192.0.2.99"  # present, but via nobody the plan names
    polls = [detour, detour, right]
    seen: list[dict[str, dict[str, str]]] = []

    def bird_routes(pid: int) -> dict[str, str]:
        if not seen or len(seen[-1]) == len(want):
            seen.append({})
        name = names[pid]
        seen[-1][name] = polls[min(len(seen) - 1, 2)][name]
        return seen[-1][name]

    names = dict(enumerate(want))
    monkeypatch.setattr(bgp_datapath, "bird_routes", bird_routes)
    monkeypatch.setattr(bgp_datapath, "POLL_S", 0)
    dp.after_deploy(net, {name: pid for pid, name in names.items()}, timeout=5)
    assert len(seen) == 3  # two polls with the detour, then converged
    with pytest.raises(RoutingError, match=f"did not converge.*{node}: .*{prefix}"):
        polls[2] = detour
        seen.clear()
        dp.after_deploy(net, {name: pid for pid, name in names.items()}, timeout=0)


# --------------------------------------------------------------------------- a daemon per family


def test_a_dual_stack_speaker_runs_bird_and_bird6_each_with_one_family() -> None:
    from harness.datapath import describe
    from harness.host import bird

    plan = plan_of(RING_DUAL.replace("underlay-cidr: [", "routing: bgp, underlay-cidr: ["))
    n1 = describe(plan).node("n1")
    assert [d.name for d in n1.daemons] == ["bird", "bird6"]
    (v4_path, v4), (v6_path, v6) = (d.files[0] for d in n1.daemons)
    assert (v4_path, v6_path) == ("/etc/bird/bird.conf", "/etc/bird/bird6.conf")
    assert n1.daemons[1].argv == (bird.BINARY, "-c", "/etc/bird/bird6.conf",
                                  "-s", "/run/bird/bird6.ctl", "-P", "/run/bird/bird6.pid")
    assert "ipv6" not in v4 and "_v6" not in v4
    assert "ipv4" not in v6 and "PODLAB_NETS =" not in v6 and "/run/bird/bird6.log" in v6
    # an IPv4-only lab keeps its one daemon and its bird.conf as they were
    (only,) = describe(plan_of(RING.replace("underlay-cidr:", "routing: bgp, underlay-cidr:"))
                       ).node("n1").daemons
    assert only.name == "bird" and only.argv == bird.ARGV


def test_a_dead_ipv4_daemon_withdraws_only_ipv4_routes() -> None:
    plan = plan_of(RING_DUAL)
    n2 = plan.node("n2")
    v4, v6 = n2.pod_cidrs
    routes = bgp.expected_routes(plan, dead=frozenset({("n2", "ipv4")})).by_node
    assert v4 not in routes["n1"] and v6 in routes["n1"]
    assert all(":" in p for p in routes["n2"])  # its IPv4 kernel is no longer predicted
    tables = bgp.predicted_tables(plan, dead=frozenset({("n2", "ipv4")}))
    assert v4 not in tables["n1"] and v6 in tables["n1"]
    assert set(tables["n2"]) == set(bgp.predicted_tables(plan)["n2"])  # it keeps its own
