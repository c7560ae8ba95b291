"""Stale UDP conntrack entries: which ones kube-proxy's and portmap's cleanup deletes after
a sync (harness.datapath.conntrack), from the plan's Services and hostPorts. Pure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.datapath import conntrack, kubeproxy, portmap
from harness.datapath.services import node_rulesets
from harness.host.wiring import Flow
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return make_plan(load_topology(ROOT / "topologies" / "services.clab.yml"))


def udp(src: str, dst: str, dport: int, reply_src: str, nat: bool = True,
        proto: str = "UDP") -> Flow:
    return Flow(proto, (src, dst, 40000, dport), (reply_src, src, dport, 40000), nat)


def _targets(plan: Plan, node: str) -> tuple[conntrack.UdpTarget, ...]:
    return tuple(t for rs in node_rulesets(plan, node) for t in rs.udp)


def test_every_udp_service_port_and_node_port_is_watched(plan: Plan) -> None:
    targets = _targets(plan, "node3")
    web = next(s for s in plan.services if s.name == "web")
    dns = next(p for p in web.ports if p.protocol == "UDP")
    ips = frozenset(e.ip for e in dns.endpoints)
    assert conntrack.UdpTarget(web.cluster_ip, 53, ips) in targets
    # a node port: any local address; Local sends only to this node's endpoints (none)
    assert conntrack.UdpTarget("", 30070, frozenset()) in targets
    assert not any(t.dport == 80 for t in targets)  # TCP is never cleared
    # portmap's UDP hostPort, on the pod's node only
    echo = plan.pod("echo").ip
    assert conntrack.UdpTarget("", 7000, frozenset({echo})) in _targets(plan, "node1")
    assert not any(t.dport == 7000 and not t.dst for t in targets)  # ClusterIP only


def test_an_entry_to_a_gone_endpoint_is_stale_and_live_ones_stay(plan: Plan) -> None:
    web = next(s for s in plan.services if s.name == "web")
    web1, web2 = (plan.pod(p).ip for p in ("web-1", "web-2"))
    flows = [udp("10.244.2.2", web.cluster_ip, 53, web1),
             udp("10.244.2.2", web.cluster_ip, 53, web2),
             udp("10.244.2.2", web.cluster_ip, 53, web.cluster_ip, nat=False),  # no endpoint
             udp("10.244.2.2", web.cluster_ip, 53, web2, proto="TCP"),
             udp("172.30.0.4", "172.30.0.3", 30080, web2),  # node port, DNATed here
             udp("172.30.0.4", "172.30.0.9", 30080, "172.30.0.9", nat=False)]  # forwarded
    # web-2's endpoints gone (its pod moved): the plan without them
    gone = replace(plan, services=tuple(
        replace(s, ports=tuple(replace(p, endpoints=tuple(e for e in p.endpoints
                                                          if e.pod != "web-2"))
                               for p in s.ports)) for s in plan.services))
    stale = conntrack.stale(flows, _targets(gone, "node3"))
    assert stale == [flows[1], flows[2], flows[4]]
    # with every endpoint still there, only the never-DNATed one
    assert conntrack.stale(flows, _targets(plan, "node3")) == [flows[2]]


def test_owners_carry_their_targets(plan: Plan) -> None:
    rs = kubeproxy.node_rules("node1", plan.services, plan.pod_cidr, "ipv4")
    assert rs.udp == kubeproxy.udp_targets("node1", plan.services)
    ids = {p.name: p.infra for p in plan.pods}
    pm = portmap.node_rules("node1", plan.host_ports, ids, "ipv4",
                            {p.name: p.cidr for p in plan.pods})
    assert [(t.dport, t.dst) for t in pm.udp] == [(7000, "")]
