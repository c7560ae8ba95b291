"""The plan in both families: IPv4-only files plan exactly as before, a dual-stack file
plans its IPv4 half as the IPv4-only file does and an IPv6 half beside it, and an
IPv6-only file plans in IPv6 alone."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import pytest
from podlab_unit_helpers import DUAL, EXAMPLES, MINIMAL, V6ONLY, broken

from harness.model.addressing import IPV4, IPV6, family_of
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan
from harness.render.draw import to_dot, to_mermaid
from harness.render.report import plan_tables

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_EXAMPLES = [p for p in EXAMPLES
                   if (GOLDEN / p.name.replace(".clab.yml", ".plan.json")).is_file()]


def plan_of(text: str) -> Plan:
    return make_plan(parse_topology(text))


def same_fields(new: Any, old: Any, where: str = "plan") -> None:
    """Every field of `old` is in `new` with the same value (new keys may be added)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for key, value in old.items():
            assert key in new, f"{where}.{key} is gone"
            same_fields(new[key], value, f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: length changed"
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            same_fields(a, b, f"{where}[{i}]")
    else:
        assert new == old, f"{where}: {new!r}, was {old!r}"


@pytest.mark.parametrize("topo", GOLDEN_EXAMPLES, ids=[p.name for p in GOLDEN_EXAMPLES])
def test_ipv4_only_examples_plan_exactly_as_before(topo: Path) -> None:
    """tests/unit/golden holds each example's plan as podlab made it before dual-stack."""
    golden = json.loads((GOLDEN / topo.name.replace(".clab.yml", ".plan.json")).read_text())
    new = make_plan(load_topology(topo)).to_dict()
    new["topology"] = topo.name  # the golden file holds the name, not this checkout's path
    same_fields(new, golden)
    assert new["families"] == ["ipv4"]
    assert all(p["family"] == "ipv4" for p in new["paths"])


def test_golden_plans_cover_the_ipv4_examples() -> None:
    assert {p.name for p in GOLDEN_EXAMPLES} >= {"minimal.clab.yml", "flat3.clab.yml",
                                                 "routed.clab.yml", "compact.clab.yml"}


def ipv4_view(plan: Plan) -> dict[str, Any]:
    """The plan's IPv4 half, in the single-valued fields' shape."""
    return {
        "nodes": [(n.name, n.address_of(IPV4), n.pod_cidr_of(IPV4), n.gateway_of(IPV4),
                   [(i.name, i.address_of(IPV4)) for i in n.interfaces],
                   n.routes_of(IPV4), n.masquerade_exempt_of(IPV4)) for n in plan.nodes],
        "pods": [(p.name, p.ip_of(IPV4), p.cidr_of(IPV4), p.gateway_of(IPV4)) for p in plan.pods],
        "paths": [(c, e.src, e.dst, e.src_ip, e.dst_ip, e.hops, e.path, e.snat_to)
                  for c, e in plan.expectations() if e.family == IPV4],
    }


def test_a_dual_stack_plan_keeps_the_ipv4_plan_of_the_same_lab() -> None:
    v4, dual = plan_of(MINIMAL), plan_of(DUAL)
    assert ipv4_view(dual) == ipv4_view(v4)
    # the primary family is IPv4, so the single-valued fields are the IPv4-only plan's
    for old, new in zip(v4.nodes, dual.nodes, strict=True):
        assert (new.address, new.pod_cidr, new.gateway) == (old.address, old.pod_cidr,
                                                            old.gateway)
    assert [(p.ip, p.cidr, p.gateway) for p in dual.pods] == [
        (p.ip, p.cidr, p.gateway) for p in v4.pods]


def test_every_node_and_pod_has_one_address_per_family() -> None:
    plan = plan_of(DUAL)
    assert plan.families == (IPV4, IPV6) and plan.dual_stack
    assert plan.pod_cidrs == ("10.244.0.0/16", "fd00:10:244::/56")
    for node in plan.nodes:
        if node.kind == "switch":
            assert node.families == ()
            continue
        assert node.families == (IPV4, IPV6), node.name
        for iface in node.interfaces:
            assert [family_of(a) for a in iface.addresses] == [IPV4, IPV6]
    for pod in plan.pods:
        assert pod.families == (IPV4, IPV6)
        node = plan.node(pod.node)
        v6 = ipaddress.IPv6Network(node.pod_cidr_of(IPV6))
        assert v6.prefixlen == 64 and v6.subnet_of(ipaddress.IPv6Network("fd00:10:244::/56"))
        assert ipaddress.IPv6Address(pod.ip_of(IPV6)) in v6
        assert pod.gateway_of(IPV6) == str(v6.network_address + 1)
        assert node.gateway_of(IPV6) == f"{v6.network_address + 1}/64"
    assert plan.pod("web").cidr_of(IPV6) == "fd00:10:244::2/64"
    assert plan.pod("db").cidr_of(IPV6) == "fd00:10:244:1::2/64"
    v6_addresses = [a for n in plan.nodes for a in n.own_addresses if family_of(a) == IPV6]
    v6_addresses += [p.ip_of(IPV6) for p in plan.pods]
    assert len(v6_addresses) == len(set(v6_addresses))


def test_ipv6_segments_get_a_slash_64_each_numbered_like_ipv4() -> None:
    plan = plan_of(DUAL)
    seg = next(s for s in plan.segments if s.kind == "switch")
    assert seg.subnets == ("172.30.0.0/24", "fd00:172:30::/64")
    assert [a for a in seg.member_addresses] == [
        ("172.30.0.1/24", "fd00:172:30::1/64"), ("172.30.0.2/24", "fd00:172:30::2/64"),
        ("172.30.0.3/24", "fd00:172:30::3/64")]


@pytest.mark.parametrize("text", [DUAL, V6ONLY], ids=["dual", "v6only"])
def test_routes_in_each_family_reach_every_other_pod_cidr_via_that_family(text: str) -> None:
    plan = plan_of(text)
    for family in plan.families:
        for node in plan.k8s_nodes:
            dsts = {r.dst for r in node.routes_of(family)}
            assert {o.pod_cidr_of(family) for o in plan.k8s_nodes if o is not node} <= dsts
            attached = [ipaddress.ip_interface(a).network for i in node.interfaces
                        for a in i.addresses if family_of(a) == family]
            for route in node.routes_of(family):
                assert family_of(route.via) == family
                assert any(ipaddress.ip_address(route.via) in net for net in attached)
        for host in plan.externals:
            pods = ipaddress.ip_network(plan.pod_cidr_of(family))
            assert not any(ipaddress.ip_network(r.dst).overlaps(pods)
                           for r in host.routes_of(family))


def test_expectations_run_once_per_family_on_the_same_paths() -> None:
    v4, dual = plan_of(MINIMAL), plan_of(DUAL)
    assert len(dual.expectations()) == 2 * len(v4.expectations())
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    for check, e in dual.expectations():
        by_key.setdefault((check, e.src, e.dst), {})[e.family] = e
    for (check, src, dst), pair in by_key.items():
        four, six = pair[IPV4], pair[IPV6]
        assert (four.hops, four.path) == (six.hops, six.path), (check, src, dst)
        assert family_of(six.dst_ip) == IPV6
        assert six.src_ip is None or family_of(six.src_ip) == IPV6
    e = dual.pod_to_external("web", "ext", IPV6)
    assert e.snat_to == dual.node("node1").address_on("sw", IPV6) == "fd00:172:30::1"
    assert e.src_ip == "fd00:10:244::2" and e.dst_ip == "fd00:172:30::3"
    assert dual.pod_to_pod("web", "db", IPV6).dst_ip == "fd00:10:244:1::2"
    assert dual.pod_to_node("web", "node2", IPV6).dst_ip == "fd00:172:30::2"
    assert dual.shared_families("web", "ext") == (IPV4, IPV6)


def test_masquerade_exempts_each_familys_pod_cidr_and_node_addresses() -> None:
    node = plan_of(DUAL).node("node1")
    assert node.masquerade_exempt_of(IPV4) == ("10.244.0.0/16", "172.30.0.1/32",
                                                "172.30.0.2/32")
    assert node.masquerade_exempt_of(IPV6) == ("fd00:10:244::/56", "fd00:172:30::1/128",
                                                "fd00:172:30::2/128")
    no_masq = broken("  node-mask: 24\n", "  node-mask: 24\n  masquerade: false\n", DUAL)
    assert all(n.masquerade_exempt == () for n in plan_of(no_masq).nodes)
    assert plan_of(no_masq).pod_to_external("web", "ext", IPV6).snat_to is None


def test_an_ipv6_only_plan_has_no_ipv4_anywhere() -> None:
    plan = plan_of(V6ONLY)
    assert plan.families == (IPV6,) and not plan.dual_stack
    assert plan.pod_cidr == "fd00:10:244::/56"
    web = plan.pod("web")
    assert (web.ip, web.prefixlen, web.gateway) == ("fd00:10:244::2", 64, "fd00:10:244::1")
    assert plan.node("node1").address == "fd00:172:30::1"
    text = json.dumps(plan.to_dict())
    assert "10.244." not in text and "172.30." not in text
    assert {e.family for _, e in plan.expectations()} == {IPV6}
    assert all(r.family == IPV6 for n in plan.nodes for r in n.routes)


def test_ipv6_first_makes_ipv6_the_primary_family() -> None:
    plan = plan_of(DUAL.replace("[10.244.0.0/16, fd00:10:244::/56]",
                                "[fd00:10:244::/56, 10.244.0.0/16]"))
    assert plan.families == (IPV6, IPV4)
    assert plan.pod("web").ip == "fd00:10:244::2"
    assert plan.pod("web").cidrs == ("fd00:10:244::2/64", "10.244.0.2/24")
    assert plan.node("node1").address == "fd00:172:30::1"
    assert [e.family for _, e in plan.expectations()][:2] == [IPV6, IPV4]


def test_explicit_ipv6_link_addresses_are_kept_and_auto_subnets_avoid_them() -> None:
    text = broken('    - endpoints: ["ext:eth1", "sw:eth3"]\n',
                  '    - endpoints: ["ext:eth1", "sw:eth3"]\n'
                  '    - endpoints: ["node1:eth2", "node2:eth2"]\n'
                  '      ipv6: ["fd00:172:30::1/126", "fd00:172:30::2/126"]\n', DUAL)
    plan = plan_of(text)
    p2p = next(s for s in plan.segments if s.kind == "p2p")
    assert p2p.subnets == ("172.30.1.0/24", "fd00:172:30::/126")
    switch = next(s for s in plan.segments if s.kind == "switch")
    assert switch.subnets[1] == "fd00:172:30:1::/64"
    link = next(lk for lk in plan.links if lk.segment == p2p.name)
    assert link.a_addresses == ("172.30.1.1/24", "fd00:172:30::1/126")


def test_a_small_ipv6_underlay_packs_the_segments() -> None:
    plan = plan_of(broken("fd00:172:30::/48", "fd00:172:30::/120", DUAL))
    assert next(s for s in plan.segments if s.kind == "switch").subnets[1] == \
        "fd00:172:30::/126"


def test_many_ipv6_pods_plan_without_listing_a_slash_64() -> None:
    pods = "".join(f"  p{i}:\n    node: node{1 + i % 2}\n    containers: [{{name: app}}]\n"
                   for i in range(300))
    start = time.perf_counter()
    plan = plan_of(V6ONLY + pods)
    assert time.perf_counter() - start < 5  # a listed /64 would never finish
    assert len({p.ip for p in plan.pods}) == 302


def test_plan_json_carries_both_families() -> None:
    data = plan_of(DUAL).to_dict()
    assert data["families"] == ["ipv4", "ipv6"]
    assert data["pod_cidrs"] == ["10.244.0.0/16", "fd00:10:244::/56"]
    web = next(p for p in data["pods"] if p["name"] == "web")
    assert web["ip"] == "10.244.0.2" and web["ips"] == ["10.244.0.2", "fd00:10:244::2"]
    node1 = next(n for n in data["nodes"] if n["name"] == "node1")
    assert node1["addresses"] == ["172.30.0.1", "fd00:172:30::1"]
    assert node1["gateways"] == ["10.244.0.1/24", "fd00:10:244::1/64"]
    assert node1["interfaces"][0]["addresses"] == ["172.30.0.1/24", "fd00:172:30::1/64"]
    assert {p["family"] for p in data["paths"]} == {"ipv4", "ipv6"}
    json.dumps(data)


def _table_text(plan: Plan) -> str:
    from rich.console import Console

    console = Console(width=250, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for table in plan_tables(plan):
        console.print(table)
    return console.export_text()


def test_plan_table_shows_both_families_and_a_family_column() -> None:
    text = _table_text(plan_of(DUAL))
    for needle in ("fd00:172:30::1/64", "fd00:10:244::2/64", "fd00:10:244::1",
                   "fd00:10:244:1::/64 via fd00:172:30::2", "family", "hop-limit"):
        assert needle in text
    v4 = _table_text(plan_of(MINIMAL))
    assert "family" not in v4 and "fd00" not in v4


def test_graph_labels_show_both_families() -> None:
    plan = plan_of(DUAL)
    for text in (to_mermaid(plan), to_dot(plan)):
        assert "node1:eth1 172.30.0.1/24 fd00:172:30::1/64" in text
        assert "cbr0 10.244.0.1/24 fd00:10:244::1/64" in text
        assert "eth0 10.244.0.2/24 fd00:10:244::2/64" in text
        assert "pods 10.244.0.0/24, fd00:10:244::/64" in text


def test_explicit_ipv6_addresses_are_written_as_the_kernel_writes_them() -> None:
    """verify compares the plan with what sniffers decode (RFC 5952 text), so the plan
    holds an address written out at length in its compressed form."""
    text = broken('    - endpoints: ["ext:eth1", "sw:eth3"]\n',
                  '    - endpoints: ["ext:eth1", "sw:eth3"]\n'
                  '    - endpoints: ["node1:eth2", "node2:eth2"]\n'
                  '      ipv6: ["FD00:00ff:0:0::1/64", "fd00:ff:0000::2/64"]\n', DUAL)
    link = next(lk for lk in plan_of(text).links if lk.a == ("node1", "eth2"))
    assert link.a_addresses[1] == "fd00:ff::1/64" and link.b_addresses[1] == "fd00:ff::2/64"
