"""Expectations come from the plan, never from the live lab: the source a node's probe
must arrive with toward a pod is the plan's address of that node toward the pod, not
what the node's kernel answers (a wrong route `src` must fail, not set the standard)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.prove.probe import TTL, Heard, Probe, Seen
from harness.prove.targets import Target, targets
from harness.prove.verdict import evaluate

ROOT = Path(__file__).resolve().parents[2]
WRONG = {"ipv4": "192.0.2.99", "ipv6": "2001:db8::99"}


def plan(stem: str) -> Plan:
    return make_plan(load_topology(ROOT / "topologies" / f"{stem}.clab.yml"))


def node_to_pod(p: Plan, node: str, pod: str, family: str = "ipv4") -> Target:
    """The node-to-pod target when the node's kernel answers a wrong source."""
    ips = p.pod(pod).ips
    wrong = {node: {ip: WRONG["ipv6" if ":" in ip else "ipv4"] for ip in ips}}
    (t,) = [t for t in targets(p, ["node-to-pod"], wrong)
            if (t.sender, t.receiver, t.family) == (node, pod, family)]
    return t


def test_node_to_pod_expects_the_plans_address_of_the_node_toward_the_pod() -> None:
    flat3 = plan("flat3")
    remote = node_to_pod(flat3, "node1", "db")
    assert remote.src_ip == WRONG["ipv4"]  # what the node sends from, as its kernel says
    assert remote.expect_src == flat3.node("node1").address  # what must arrive
    local = node_to_pod(flat3, "node1", "web")  # over its own bridge: cbr0's address
    assert local.expect_src == flat3.node("node1").gateway.split("/")[0]


def test_node_to_pod_across_routers_expects_the_address_on_the_way_out() -> None:
    routed = plan("routed")
    t = node_to_pod(routed, "node3", "client")  # node3 -> r3 -> spine -> r1 -> node1
    assert t.expect_src == routed.node("node3").address_on(
        routed.segment_hops("node3", "pods:node1")[0][1])
    assert t.expect_src != WRONG["ipv4"]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_node_to_pod_in_each_family_of_a_dual_stack_lab(family: str) -> None:
    dual = plan("dual")
    node = dual.k8s_nodes[0].name
    far = next(p for p in dual.pods if p.node != node and not p.host_network)
    t = node_to_pod(dual, node, far.name, family)
    assert t.expect_src == dual.node(node).address_of(family)  # type: ignore[arg-type]


def test_a_wrong_route_source_fails_node_to_pod() -> None:
    """The node's kernel sent from the wrong address and the pod saw it so: a failure."""
    flat3 = plan("flat3")
    t = node_to_pod(flat3, "node1", "db")
    probe = Probe(1, "udp", "node1", "db", t.src_ip, t.exp.dst_ip, True, sport=4000,
                  dport=5000)
    hops = TTL - t.exp.hops
    req = Seen("db", "eth0", False, 1.0, False, "udp", t.src_ip, t.exp.dst_ip, 4000, 5000,
               hops)
    rep = Seen("node1", "eth1", False, 2.0, True, "udp", t.exp.dst_ip, t.src_ip, 5000, 4000,
               hops)
    heard = [Heard("db", False, "udp", t.src_ip, t.exp.dst_ip, 4000, 5000, hops),
             Heard("node1", True, "udp", t.exp.dst_ip, t.src_ip, 5000, 4000, hops)]
    result = evaluate(t, probe, [req, rep], heard)
    assert not result.ok
    assert f"source rewritten {t.expect_src} -> {WRONG['ipv4']}" in result.detail


def test_with_bgp_either_of_two_equal_ways_out_is_the_plans() -> None:
    """A ring: node4 reaches b (on node2) over node3 or over node1, two AS hops each;
    BIRD picks one by its own rules, so the plan allows the address toward either, and
    nothing else. With static routes the plan installs one of them: that one only."""
    ring = plan("ring")
    assert ring.routing == "bgp"
    node4 = ring.node("node4")
    both = {node4.address_on(i.segment) for i in node4.interfaces}
    assert set(ring.node_sources("node4", "b")) == both and len(both) == 2
    for kernel in both:
        t = node_to_pod(ring, "node4", "b")
        assert t.expect_src in both
        (picked,) = [t for t in targets(ring, ["node-to-pod"], {"node4": {
            ring.pod("b").ip: kernel}}) if (t.sender, t.receiver) == ("node4", "b")]
        assert picked.expect_src == kernel
    static = dataclasses.replace(ring, routing="static")
    (one,) = static.node_sources("node4", "b")
    assert one == node4.address_on(static.segment_hops("node4", "pods:node2")[0][1])


def test_a_host_network_sender_expects_its_nodes_planned_source() -> None:
    """A hostNetwork pod is its node's namespace: whatever it sends must leave from the
    plan's address of its node toward the destination, not the kernel's answer."""
    svc = plan("services")
    agent = svc.pod("agent")  # hostNetwork on node2
    node2 = svc.node("node2")
    ips = [ip for p in svc.pods for ip in p.ips] + [
        a for n in svc.nodes for a in n.own_addresses]
    wrong = {"node2": {ip: WRONG["ipv4"] for ip in ips}}
    got = {(t.check, t.receiver): t for t in targets(
        svc, ["pod-to-pod", "pod-to-node", "pod-to-external"], wrong) if t.sender == "agent"}
    assert got and all(t.src_ip == WRONG["ipv4"] for t in got.values())
    assert got[("pod-to-pod", "client")].expect_src == node2.address  # over the switch
    assert got[("pod-to-pod", "web-2")].expect_src == node2.gateway.split("/")[0]  # cbr0
    assert got[("pod-to-node", "node1")].expect_src == node2.address
    assert got[("pod-to-node", "node2")].expect_src == agent.ip  # its own address
    assert got[("pod-to-external", "world")].expect_src == node2.address
