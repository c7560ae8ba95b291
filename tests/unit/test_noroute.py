"""prove.noroute: a lost probe explained by a routing table, pure."""

from __future__ import annotations

from podlab_unit_helpers import EXAMPLES

from harness.model.topology import load_topology
from harness.plan import make_plan
from harness.prove import noroute

PLAN = make_plan(load_topology(next(p for p in EXAMPLES if p.name == "routed.clab.yml")))


def test_covers_by_prefix_or_default() -> None:
    assert noroute.covers(["10.42.2.0/24"], "10.42.2.7")
    assert noroute.covers(["default"], "10.42.2.7")
    assert not noroute.covers(["10.42.1.0/24", "192.168.0.0/24"], "10.42.2.7")


def test_the_first_node_on_the_path_without_a_route_is_named() -> None:
    exp = PLAN.pod_to_pod("client", "server")
    dst = PLAN.pod("server")
    tables = {n.name: [r.dst for r in n.routes] for n in PLAN.nodes}
    assert noroute.diagnose(PLAN, exp.path, exp.dst_ip, exp.src_ip, tables) is None
    spine = exp.path[2]
    tables[spine] = [d for d in tables[spine] if d != PLAN.node(dst.node).pod_cidr]
    assert noroute.diagnose(PLAN, exp.path, exp.dst_ip, exp.src_ip, tables) == (
        f"no route to {PLAN.node(dst.node).pod_cidr} on {spine}")


def test_the_reply_direction_too() -> None:
    exp = PLAN.pod_to_pod("client", "server")
    tables = {n.name: [r.dst for r in n.routes] for n in PLAN.nodes}
    src_cidr = PLAN.node(PLAN.pod("client").node).pod_cidr
    tables["r3"] = [d for d in tables["r3"] if d != src_cidr]
    assert noroute.diagnose(PLAN, exp.path, exp.dst_ip, exp.src_ip, tables) == (
        f"no route to {src_cidr} on r3 (for the reply)")


def test_nodes_without_a_table_and_the_last_node_are_not_judged() -> None:
    exp = PLAN.pod_to_pod("client", "server")
    assert noroute.missing_route(exp.path, exp.dst_ip, {}) is None
    assert noroute.missing_route(exp.path, exp.dst_ip, {exp.path[-1]: []}) is None


def test_lab_prefix() -> None:
    assert noroute.lab_prefix(PLAN, PLAN.pod("server").ip) == PLAN.node("node3").pod_cidr
    assert noroute.lab_prefix(PLAN, "8.8.8.8") == "8.8.8.8/32"


def test_both_families_are_told_apart() -> None:
    from podlab_unit_helpers import DUAL

    from harness.model.topology import parse_topology

    plan = make_plan(parse_topology(DUAL))
    assert noroute.covers(["0.0.0.0/0"], "10.244.1.2")
    assert not noroute.covers(["0.0.0.0/0"], "fd00::1")
    assert noroute.covers(["::/0"], "fd00:10:244:1::2")
    assert not noroute.covers(["::/0"], "10.244.1.2")
    assert noroute.covers(["fd00:10:244:1::/64"], "fd00:10:244:1::2")
    assert not noroute.covers(["10.244.1.0/24"], "fd00:10:244:1::2")
    assert noroute.lab_prefix(plan, "fd00:10:244:1::2") == "fd00:10:244:1::/64"
    assert noroute.lab_prefix(plan, "fd00:172:30::3") == "fd00:172:30::/64"
    assert noroute.lab_prefix(plan, "fd00:99::1") == "fd00:99::1/128"
