"""routing: fabric, pure: what the file must say, the routes podlab installs (a default
toward the user's router, no pod route anywhere), the BGPPeers and their bird.conf, and
expectations taken from a walk of hand-written tables."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from podlab_unit_helpers import bird_binary

from harness.datapath import fabric as fabric_dp
from harness.datapath import peerconf
from harness.errors import TopologyError
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan
from harness.plan.fibwalk import Fabric, Fib, FibRoute, Nexthop, leaves_of, links_of

FAB = """\
name: fab
cluster:
  routing: fabric
  pod-cidr: 10.244.0.0/16
{extra}
topology:
  nodes:
    node1: {{kind: k8s-node}}
    node2: {{kind: k8s-node}}
    router1: {{kind: linux, image: podlab/frr}}
    router2: {{kind: linux, image: podlab/frr}}
  links:
    - endpoints: ["router1:eth1", "router2:eth1"]
      ipv4: [192.168.1.1/24, 192.168.1.2/24]
    - endpoints: ["node1:eth1", "router1:eth3"]
      ipv4: [192.168.11.2/24, 192.168.11.1/24]
    - endpoints: ["node2:eth1", "router2:eth3"]
      ipv4: [192.168.12.2/24, 192.168.12.1/24]
pods:
  a: {{node: node1, containers: [{{name: app}}]}}
  b: {{node: node2, containers: [{{name: app}}]}}
"""


def plan_of(extra: str = "", text: str = FAB) -> Plan:
    return make_plan(parse_topology(text.format(extra=extra)))


def problems(text: str) -> str:
    with pytest.raises(TopologyError) as err:
        parse_topology(text)
    return str(err.value)


# --------------------------------------------------------------------------- the file


def test_a_k8s_node_with_no_link_to_a_users_node_is_refused() -> None:
    text = FAB.format(extra="").replace('    - endpoints: ["node2:eth1", "router2:eth3"]\n'
                                        '      ipv4: [192.168.12.2/24, 192.168.12.1/24]\n',
                                        '    - endpoints: ["node2:eth1", "node1:eth2"]\n')
    assert "k8s-node node2 has no link to a user's node" in problems(text)


def test_a_link_to_a_users_node_must_give_both_ends_addresses() -> None:
    text = FAB.format(extra="").replace("      ipv4: [192.168.11.2/24, 192.168.11.1/24]\n", "")
    assert "node1 links to the user's node router1: with routing: fabric both ends need " \
           "their IPv4 address" in problems(text)


def test_bgp_peers_need_routing_fabric() -> None:
    text = FAB.format(extra="  bgp-peers: [{node: node1, peerIP: 192.168.11.1, "
                            "asNumber: 65001}]").replace("routing: fabric", "routing: static")
    assert "they need routing: fabric" in problems(text)


def test_a_peer_off_the_nodes_links_or_of_no_k8s_node_is_refused() -> None:
    off = problems(FAB.format(extra="  bgp-peers: [{node: node1, peerIP: 192.168.12.1, "
                                    "asNumber: 65001}]"))
    assert "cluster.bgp-peers[0].peerIP: 192.168.12.1 is on no link of node1" in off
    who = problems(FAB.format(extra="  bgp-peers: [{node: router1, peerIP: 192.168.11.1, "
                                    "asNumber: 65001}]"))
    assert "'router1' is not a k8s-node of this lab" in who
    typo = problems(FAB.format(extra="  bgp-peers: [{node: node1, peerIp: 192.168.11.1, "
                                     "asNumber: 65001}]"))
    assert "peerIp" in typo


# --------------------------------------------------------------------------- the plan


def test_k8s_nodes_route_by_default_to_their_first_users_node_and_nothing_routes_pods() -> None:
    plan = plan_of()
    assert [(r.dst, r.via) for r in plan.node("node1").routes] == [("0.0.0.0/0",
                                                                    "192.168.11.1")]
    assert [(r.dst, r.via) for r in plan.node("node2").routes] == [("0.0.0.0/0",
                                                                    "192.168.12.1")]
    assert plan.node("router1").routes == () and plan.node("router2").routes == ()
    pod_cidrs = {n.pod_cidr for n in plan.k8s_nodes}
    assert not [r for n in plan.nodes for r in n.routes if r.dst in pod_cidrs]
    # predictable, in file order, as with every routing
    assert [n.pod_cidr for n in plan.k8s_nodes] == ["10.244.0.0/24", "10.244.1.0/24"]
    assert plan.routing == "fabric"


def test_the_first_link_in_file_order_picks_the_default_gateway() -> None:
    text = FAB.replace('    - endpoints: ["node2:eth1", "router2:eth3"]',
                       '    - endpoints: ["node1:eth2", "router2:eth4"]\n'
                       '      ipv4: [192.168.21.2/24, 192.168.21.1/24]\n'
                       '    - endpoints: ["node2:eth1", "router2:eth3"]')
    assert plan_of(text=text).node("node1").routes[0].via == "192.168.11.1"
    swapped = text.replace('["node1:eth1", "router1:eth3"]', '["node1:eth9", "router1:eth9"]')
    lines = swapped.splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if "node1:eth9" in ln)
    j = next(i for i, ln in enumerate(lines) if "node1:eth2" in ln)
    lines[i:i + 2], lines[j:j + 2] = lines[j:j + 2], lines[i:i + 2]
    assert plan_of(text="".join(lines)).node("node1").routes[0].via == "192.168.21.1"


def test_bgp_peers_expand_per_node_and_give_the_peering_nodes_bird() -> None:
    plan = plan_of("  bgp-peers:\n"
                   "    - {node: node1, peerIP: 192.168.11.1, asNumber: 65001, "
                   "localASNumber: 65101}")
    assert [(p.node, p.peer_ip, p.peer_as, p.local_as) for p in plan.bgp_peers] == [
        ("node1", "192.168.11.1", 65001, 65101)]
    assert plan.node("node1").image == "podlab/bird"
    assert plan.node("node2").image == "podlab/node"  # no peer: no daemon
    assert plan.node("router1").image == "podlab/frr"


def test_bird_conf_of_a_peering_node_announces_its_pod_cidr_and_parses(tmp_path: Path) -> None:
    plan = plan_of("  bgp-peers:\n    - {node: node1, peerIP: 192.168.11.1, asNumber: 65001}")
    conf = peerconf.bird_conf(plan, plan.node("node1"))
    assert "route 10.244.0.0/24 blackhole;" in conf
    assert "local 192.168.11.2 as 64512;" in conf  # Calico's default AS
    assert "neighbor 192.168.11.1 as 65001;" in conf
    assert 'export where proto = "pods";' in conf
    assert "import where net != 0.0.0.0/0;" in conf
    path = tmp_path / "bird.conf"
    path.write_text(conf.replace("/run/bird/bird.log", str(tmp_path / "bird.log")))
    done = subprocess.run([bird_binary(), "-p", "-c", str(path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- expectations


def r(dst: str, gateway: str | None, device: str) -> FibRoute:
    return FibRoute(dst, (Nexthop(gateway, device),))


def tables(plan: Plan, back_by_way_of_router3: bool = False,
           router2_knows_node2: bool = True) -> Fabric:
    """The fabric's tables as OSPF would leave them on the two routers (and a third,
    router3, for an asymmetric reply)."""
    fibs = {
        "node1": Fib("node1", (r("192.168.11.0/24", None, "eth1"),
                               r("10.244.0.0/24", None, "cbr0"),
                               r("0.0.0.0/0", "192.168.11.1", "eth1")),
                     (("eth1", "192.168.11.2/24"), ("cbr0", "10.244.0.1/24"))),
        "node2": Fib("node2", (r("192.168.12.0/24", None, "eth1"),
                               r("10.244.1.0/24", None, "cbr0"),
                               r("0.0.0.0/0", "192.168.12.1", "eth1")),
                     (("eth1", "192.168.12.2/24"), ("cbr0", "10.244.1.1/24"))),
        "router1": Fib("router1", (r("192.168.1.0/24", None, "eth1"),
                                   r("192.168.11.0/24", None, "eth3"),
                                   r("10.244.0.0/24", "192.168.11.2", "eth3"),
                                   r("192.168.12.0/24", "192.168.1.2", "eth1"),
                                   r("10.244.1.0/24", "192.168.1.2", "eth1")),
                       (("eth1", "192.168.1.1/24"), ("eth3", "192.168.11.1/24"))),
        "router2": Fib("router2", (r("192.168.1.0/24", None, "eth1"),
                                   r("192.168.12.0/24", None, "eth3"),
                                   *((r("10.244.1.0/24", "192.168.12.2", "eth3"),)
                                     if router2_knows_node2 else ()),
                                   r("192.168.11.0/24", "192.168.1.1", "eth1"),
                                   r("10.244.0.0/24", "192.168.1.1", "eth1")
                                   if not back_by_way_of_router3 else
                                   r("10.244.0.0/24", "192.168.1.3", "eth1")),
                       (("eth1", "192.168.1.2/24"), ("eth3", "192.168.12.1/24"))),
    }
    links = links_of(plan)
    if back_by_way_of_router3:  # a third router on the routers' segment
        fibs["router3"] = Fib("router3", (r("192.168.1.0/24", None, "eth1"),
                                          r("10.244.0.0/24", "192.168.1.1", "eth1")),
                              (("eth1", "192.168.1.3/24"),))
        links = tuple(lk | {("router3", "eth1")} if ("router1", "eth1") in lk else lk
                      for lk in links)
    return Fabric(fibs, links, leaves_of(plan))


def test_verify_expects_the_walked_path_and_says_it_came_from_the_fabric() -> None:
    plan = plan_of()
    assert plan.pod_to_pod("a", "b").source == "plan"
    walked = plan.with_walks(fabric_dp.walks(plan, tables(plan)))
    e = walked.pod_to_pod("a", "b")
    assert e.source == "fabric"
    assert e.path == ("node1", "router1", "router2", "node2") and e.hops == 4
    assert e.reply_hops is None and e.stop is None
    assert walked.node_to_pod("node1", "b").hops == 3
    assert walked.pod_to_node("a", "node2").hops == 3
    # each path crossing the fabric is the walk's; within one node, the plan's
    for p in walked.to_dict()["paths"]:
        nodes = {walked.pod(x).node if x in ("a", "b") else x for x in (p["src"], p["dst"])}
        assert p["expectation"] == ("fabric" if len(nodes) == 2 else "plan"), p


def test_an_asymmetric_reply_is_expected_with_its_own_ttl_and_reported() -> None:
    plan = plan_of()
    walked = plan.with_walks(fabric_dp.walks(plan, tables(plan, back_by_way_of_router3=True)))
    e = walked.pod_to_pod("a", "b")
    assert e.hops == 4 and e.reply_hops == 5
    assert "asymmetric return: the request goes node1 > router1 > router2 > node2, the " \
           "reply comes back node2 > router2 > router3 > router1 > node1" in e.note


def test_a_pod_cidr_the_fabric_lost_names_where_the_walk_stopped() -> None:
    plan = plan_of()
    lost = tables(plan, router2_knows_node2=False)
    stuck = fabric_dp.unreachable(plan, lost)
    assert stuck == ["node1 to node2's pod CIDR 10.244.1.0/24 (IPv4): blackhole at router2: "
                     "router2 has no route to 10.244.1.1 (after node1 > router1)"]
    assert fabric_dp.unreachable(plan, tables(plan)) == []
    e = plan.with_walks(fabric_dp.walks(plan, lost)).pod_to_pod("a", "b")
    assert e.stop is not None and "router2 has no route to 10.244.1.1" in e.stop


# --------------------------------------------------------------------------- the examples

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def test_frr_ospf_routers_route_each_pod_cidr_to_the_node_the_plan_gives_it() -> None:
    """The routers' static routes (frr.conf, beside the file) name exactly the pod CIDRs
    the plan gives the k8s-nodes in file order, toward those nodes' link addresses."""
    plan = make_plan(load_topology(TOPOLOGIES / "frr-ospf.clab.yml"))
    routes = set()
    for conf in sorted((TOPOLOGIES / "frr-ospf").glob("router*/frr.conf")):
        routes |= {tuple(line.split()[2:4]) for line in conf.read_text().splitlines()
                   if line.startswith("ip route ")}
    planned = {(n.pod_cidr, n.address) for n in plan.k8s_nodes}
    assert routes == planned == {("10.244.0.0/24", "192.168.11.2"),
                                 ("10.244.1.0/24", "192.168.12.2")}
    assert [(r.dst, r.via) for r in plan.node("node1").routes] == [("0.0.0.0/0",
                                                                    "192.168.11.1")]
    assert all(not plan.node(r).routes for r in ("router1", "router2", "router3"))


def test_tor_bgp_nodes_peer_with_their_racks_router_as_its_frr_conf_expects(
        tmp_path: Path) -> None:
    plan = make_plan(load_topology(TOPOLOGIES / "tor-bgp.clab.yml"))
    neighbours = {}
    for tor in ("tor1", "tor2"):
        conf = (TOPOLOGIES / "tor-bgp" / tor / "frr.conf").read_text()
        asn = int(next(ln.split()[2] for ln in conf.splitlines()
                       if ln.startswith("router bgp ")))
        for line in conf.splitlines():
            words = line.split()
            if words[:1] == ["neighbor"] and words[2] == "remote-as":
                neighbours[words[1]] = (tor, asn, int(words[3]))
    for peer in plan.bgp_peers:
        node = plan.node(peer.node)
        tor, tor_as, node_as = neighbours[node.address or ""]
        assert (peer.peer_as, peer.local_as) == (tor_as, node_as)
        assert peer.peer_ip in {a.split("/")[0] for i in plan.node(tor).interfaces
                                for a in i.addresses}
        conf = peerconf.bird_conf(plan, node)
        path = tmp_path / f"{node.name}.conf"
        path.write_text(conf.replace("/run/bird/bird.log", str(tmp_path / "bird.log")))
        done = subprocess.run([bird_binary(), "-p", "-c", str(path)], capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr
    assert len(plan.bgp_peers) == 4


def test_static_or_bgp_cannot_route_across_the_users_routers() -> None:
    """Two k8s-nodes joined only through the user's nodes need routing: fabric; the
    matrix skips such a file under static and bgp with this reason."""
    for routing in ("static", "bgp"):
        text = FAB.format(extra="").replace("routing: fabric", f"routing: {routing}")
        assert (f"node1 and node2 are joined only through the user's nodes (router1, "
                f"router2), whose routes are their own: routing: {routing} cannot route "
                "across them") in problems(text)
    # a user's node that is only an endpoint (not between k8s-nodes) is fine
    endpoint = FAB.format(extra="").replace("routing: fabric", "routing: static").replace(
        '    - endpoints: ["router1:eth1", "router2:eth1"]\n'
        '      ipv4: [192.168.1.1/24, 192.168.1.2/24]\n',
        '    - endpoints: ["node1:eth2", "node2:eth2"]\n')
    assert parse_topology(endpoint).spec.cluster.routing == "static"


def test_a_masqueraded_pods_reply_from_an_outside_host_is_walked_from_that_host() -> None:
    text = FAB.replace("    router2: {{kind: linux, image: podlab/frr}}\n",
                       "    router2: {{kind: linux, image: podlab/frr}}\n"
                       "    pc: {{kind: linux}}\n").replace(
        "pods:\n", '    - endpoints: ["pc:eth1", "router2:eth4"]\n'
                   "      ipv4: [192.168.13.2/24, 192.168.13.1/24]\npods:\n")
    plan = plan_of(text=text)
    back = ("pc", "node1", plan.node("node1").interfaces[0].segment, "ipv4")
    assert plan.walk_targets()[back] == "192.168.11.2"  # node1's masquerade address
    fabric = tables(plan)
    router1, router2 = fabric.fibs["router1"], fabric.fibs["router2"]
    fibs = {**fabric.fibs,
            "router1": Fib("router1", (*router1.routes,
                                       r("192.168.13.0/24", "192.168.1.2", "eth1")),
                           router1.addresses),
            "pc": Fib("pc", (r("192.168.13.0/24", None, "eth1"),
                             r("0.0.0.0/0", "192.168.13.1", "eth1")),
                      (("eth1", "192.168.13.2/24"),)),
            "router2": Fib("router2", (*router2.routes, r("192.168.13.0/24", None, "eth4")),
                           (*router2.addresses, ("eth4", "192.168.13.1/24")))}
    good = Fabric(fibs, links_of(plan), leaves_of(plan))
    e = plan.with_walks(fabric_dp.walks(plan, good)).pod_to_external("a", "pc")
    assert e.snat_to == "192.168.11.2" and e.hops == 3 and e.stop is None
    assert e.path == ("node1", "router1", "router2", "pc") and e.reply_hops is None
    # router2 forgets node1's link: the request still arrives, the reply cannot
    lost = {**fibs, "router2": Fib("router2", tuple(x for x in fibs["router2"].routes
                                                    if x.dst != "192.168.11.0/24"),
                                   fibs["router2"].addresses)}
    e = plan.with_walks(fabric_dp.walks(plan, Fabric(lost, links_of(plan), leaves_of(plan)))
                        ).pod_to_external("a", "pc")
    assert e.stop == ("the reply: blackhole at router2: router2 has no route to "
                      "192.168.11.2 (after pc)")


def test_deploy_waits_for_every_path_verify_will_expect_not_only_the_pod_cidrs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An outside host's route can come seconds after the pod CIDRs (OSPF's SPF hold-down
    keeps the tables still meanwhile): deploy polls until the walk delivers it too."""
    plan = make_plan(load_topology(TOPOLOGIES / "frr-ospf.clab.yml"))
    dp = fabric_dp.FabricDatapath()
    net = dp.describe(plan)
    left = [["one"], ["one"], []]  # the pc3 path pending twice, then walked through
    asked: list[int] = []
    monkeypatch.setattr(fabric_dp, "read_fabric", lambda p, pids: Fabric({}))
    monkeypatch.setattr(fabric_dp, "unreachable", lambda p, f: [])
    monkeypatch.setattr(fabric_dp, "pending", lambda p, f: asked.append(1) or left.pop(0))
    monkeypatch.setattr(fabric_dp, "settle", lambda p, pids, t: (None, True))
    monkeypatch.setattr(fabric_dp.time, "sleep", lambda s: None)
    dp.after_deploy(net, {}, timeout=5)
    assert len(asked) == 3 and left == []
