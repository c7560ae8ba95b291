"""Service paths from the plan, and the pure verdict on synthetic sightings: where a
rewrite happened, what the endpoint's socket saw, who answered."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan
from harness.plan.servicepaths import ServicePath, paths
from harness.plan.services import Endpoint
from harness.prove.probe import Heard, Probe, Seen
from harness.prove.services import judge, rewrite_at

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return make_plan(load_topology(ROOT / "topologies" / "services.clab.yml"))


def _path(plan: Plan, check: str, client: str, target: str, proto: str) -> ServicePath:
    return next(p for p in paths(plan) if (p.check, p.client, p.target, p.proto) ==
                (check, client, target, proto))


def test_pod_to_service_outcomes(plan: Plan) -> None:
    p = _path(plan, "pod-to-service", "client", "web:http", "tcp")
    assert (p.dst_ip, p.dport, p.entry, p.client_ip) == ("10.96.0.2", 80, "node3", "10.244.2.2")
    assert {(o.endpoint, o.src, o.keep_sport, o.dnat_at, o.snat_at) for o in p.outcomes} == {
        ("web-1", "10.244.2.2", True, "node3", None),
        ("web-2", "10.244.2.2", True, "node3", None)}
    # a pod reaching itself is masqueraded to its bridge's address (hairpin)
    p = _path(plan, "pod-to-service", "web-1", "web:http", "tcp")
    hairpin = next(o for o in p.outcomes if o.endpoint == "web-1")
    assert (hairpin.src, hairpin.snat_at, hairpin.keep_sport) == ("10.244.0.1", "node1", False)
    # a hostNetwork pod is its node: masqueraded toward each endpoint
    p = _path(plan, "pod-to-service", "agent", "web:http", "tcp")
    assert p.client_ip == "172.30.0.2"
    assert {o.src for o in p.outcomes} == {"172.30.0.2", "10.244.1.1"}


def test_node_port_outcomes(plan: Plan) -> None:
    p = _path(plan, "external-to-nodeport", "world", "web-nodeport:udp@node3", "udp")
    assert (p.dst_ip, p.dport) == ("172.30.0.3", 30080)
    assert {(o.endpoint, o.src, o.snat_at) for o in p.outcomes} == {
        ("web-1", "172.30.0.3", "node3"), ("web-2", "172.30.0.3", "node3")}
    local = _path(plan, "external-to-nodeport", "world", "echo-local:tcp@node1", "tcp")
    assert [(o.endpoint, o.src, o.keep_sport, o.snat_at) for o in local.outcomes] == [
        ("echo", "172.30.0.4", True, None)]
    silent = _path(plan, "external-to-nodeport", "world", "echo-local:tcp@node2", "tcp")
    assert silent.outcomes == () and [e.pod for e in silent.watch] == ["echo"]
    host = _path(plan, "external-to-hostport", "world", "echo:7000@node1", "udp")
    assert [(o.endpoint, o.port, o.src) for o in host.outcomes] == [("echo", 7000, "172.30.0.4")]
    assert _path(plan, "external-to-hostport", "world", "echo:7000@node2", "udp").outcomes == ()


def test_counts(plan: Plan) -> None:
    by_check: dict[str, int] = {}
    for p in paths(plan):
        by_check[p.check] = by_check.get(p.check, 0) + 1
    ports = sum(len(s.ports) for s in plan.services)  # 8, every one with endpoints
    assert by_check == {"pod-to-service": len(plan.pods) * ports,
                        "node-to-service": len(plan.k8s_nodes) * ports,
                        "external-to-nodeport": 3 * 4, "external-to-hostport": 3 * 2}
    assert paths(plan, ["node-to-service"]) == [p for p in paths(plan)
                                                if p.check == "node-to-service"]


def seen(ns: str, out: bool, ttl: int, dst: str, src: str = "10.244.2.2", ts: float = 0.0,
         reply: bool = False, sport: int = 40000, dport: int = 80) -> Seen:
    return Seen(ns, "eth", out, ts, reply, "tcp", src, dst, sport, dport, ttl)


def test_rewrite_at_runs_along_the_path() -> None:
    vip, ep = "10.96.0.2", "10.244.0.2"
    path = [seen("client", True, 64, vip, ts=1), seen("node3", False, 64, vip, ts=2),
            seen("node3", True, 63, ep, ts=3), seen("web-1", False, 62, ep, ts=4)]
    assert rewrite_at(path, False, "dst", vip) == "node3"
    # a bridge's PREROUTING: the node saw it only rewritten, right after the pod sent it
    bridged = [seen("client", True, 64, vip, ts=2), seen("node3", False, 64, ep, ts=1),
               seen("node3", True, 63, ep, ts=3), seen("web-1", False, 63, ep, ts=3)]
    assert rewrite_at(bridged, False, "dst", vip) == "node3"
    # a node that forwarded it unchanged, then another rewrote it
    wrong = [seen("client", True, 64, vip), seen("node3", False, 64, vip),
             seen("node3", True, 63, vip), seen("node1", False, 63, vip),
             seen("node1", True, 62, ep), seen("web-1", False, 61, ep)]
    assert rewrite_at(wrong, False, "dst", vip) == "node1"
    assert rewrite_at(path[:2], False, "dst", vip) is None


def _probe(path: ServicePath, sport: int = 40000) -> Probe:
    probe = Probe(7, path.proto, path.client, path.outcomes[0].endpoint if path.outcomes
                  else "", path.client_ip, path.dst_ip, bool(path.outcomes),
                  to_port=path.dport, alternatives=tuple(e.pod for e in path.watch))
    probe.sport = sport
    return probe


def test_judge_pass_and_wrong_node(plan: Plan) -> None:
    p = _path(plan, "pod-to-service", "client", "web:http", "tcp")
    vip, ep = p.dst_ip, "10.244.0.2"
    heard = [Heard("web-1", False, "tcp", "10.244.2.2", ep, 40000, 8080, None),
             Heard("client", True, "tcp", vip, "10.244.2.2", 80, 40000, None)]
    good = [seen("client", True, 64, vip), seen("node3", False, 64, vip),
            seen("node3", True, 63, ep), seen("web-1", False, 62, ep)]
    result = judge(p, _probe(p), good, heard)
    assert result.ok, result.detail
    assert "DNATed at node3 (seen on the wire) to web-1" in result.detail
    assert "kept" in result.detail
    # nothing sniffed on the way: the detail does not say where the DNAT happened
    result = judge(p, _probe(p), [], heard)
    assert result.ok and "DNATed to web-1" in result.detail and "node3" not in result.detail
    wrong = [seen("client", True, 64, vip), seen("node3", False, 64, vip),
             seen("node3", True, 63, vip), seen("node1", False, 63, vip),
             seen("node1", True, 62, ep), seen("web-1", False, 61, ep)]
    result = judge(p, _probe(p), wrong, heard)
    assert not result.ok
    assert "destination rewritten 10.96.0.2 -> 10.244.0.2 at node1, not at node3" in \
        result.detail


def test_judge_snat_reply_and_silence(plan: Plan) -> None:
    p = _path(plan, "external-to-nodeport", "world", "web-nodeport:tcp@node3", "tcp")
    ep = "10.244.0.2"
    # nobody masqueraded: the endpoint saw the client's own address
    heard = [Heard("web-1", False, "tcp", "172.30.0.4", ep, 40000, 8080, None),
             Heard("world", True, "tcp", p.dst_ip, "172.30.0.4", p.dport, 40000, None)]
    result = judge(p, _probe(p), [], heard)
    assert not result.ok and "not masqueraded: web-1 saw the client's own 172.30.0.4" in \
        result.detail
    # masqueraded, but the reply did not come back from the node port
    heard = [Heard("web-1", False, "tcp", "172.30.0.3", ep, 51234, 8080, None),
             Heard("world", True, "tcp", ep, "172.30.0.4", 8080, 40000, None)]
    result = judge(p, _probe(p), [], heard)
    assert not result.ok and "reply came from 10.244.0.2:8080" in result.detail
    # a Local node port on a node without an endpoint: an answer fails
    silent = _path(plan, "external-to-nodeport", "world", "echo-local:udp@node2", "udp")
    got = [Heard("echo", False, "udp", "172.30.0.2", "10.244.0.3", 5555, 7000, 62)]
    result = judge(silent, _probe(silent), [], got)
    assert not result.ok and "node2 forwarded it to echo" in result.detail


def _at(path: ServicePath, ns: str, out: bool = False, reply: bool = False,
        proto: str = "") -> Seen:
    """A sighting of a Service probe's request (or reply) in `ns`."""
    src, dst = (path.dst_ip, path.client_ip) if reply else (path.client_ip, path.dst_ip)
    return Seen(ns, "eth1", out, 1.0, reply, proto or path.proto, src, dst, 40000,
                path.dport, 63)


def test_a_row_that_expects_no_answer_passes_only_on_a_sighting_at_the_entry(
        plan: Plan) -> None:
    """Nothing passes by absence: silence counts only when the request was seen arriving
    at the node addressed and no reply left it; never when the probe had an error."""
    silent = _path(plan, "external-to-nodeport", "world", "echo-local:udp@node2", "udp")
    assert silent.entry == "node2" and not silent.outcomes
    arrived = [_at(silent, "world", out=True), _at(silent, "node2")]
    result = judge(silent, _probe(silent), arrived, [])
    assert result.ok, result.detail
    assert "request seen arriving at node2" in result.detail
    # nothing probed, nothing seen: not a pass
    nothing = judge(silent, _probe(silent), [], [])
    assert not nothing.ok and "never seen arriving at node2" in nothing.detail
    # seen leaving the client only (no route to node2): not a pass
    left = judge(silent, _probe(silent), arrived[:1], [])
    assert not left.ok and "never seen arriving at node2" in left.detail
    # the entry node stopped: the probe's error fails the row, whatever was seen
    down = _probe(silent)
    down.error = "node2 not running"
    result = judge(silent, down, arrived, [])
    assert not result.ok and "node2 not running" in result.detail
    # a reply that left the entry node, even if the client never got it
    answered = judge(silent, _probe(silent), [*arrived, _at(silent, "node2", out=True,
                                                            reply=True)], [])
    assert not answered.ok and "a reply left node2" in answered.detail
    # TCP: the handshake that never completes is the silence; its SYN is the sighting
    tcp = _path(plan, "external-to-nodeport", "world", "echo-local:tcp@node2", "tcp")
    probe = _probe(tcp)
    probe.error, probe.refused = "TCP handshake from world did not complete within 2 s", True
    syn = [_at(tcp, "node2", proto="tcp-syn")]
    result = judge(tcp, probe, syn, [])
    assert result.ok, result.detail
    assert not judge(tcp, probe, [], []).ok


def test_judge_unexpected_endpoint_and_lost(plan: Plan) -> None:
    p = _path(plan, "external-to-nodeport", "world", "echo-local:tcp@node1", "tcp")
    # a Local Service with an endpoint elsewhere too: reaching that one is wrong here
    p = replace(p, watch=(*p.watch, Endpoint("web-1", "node1", "10.244.0.2", 8080)))
    other = [Heard("web-1", False, "tcp", "172.30.0.4", "10.244.0.2", 40000, 8080, None)]
    assert "reached web-1, which is not an endpoint it may reach (allowed: echo)" in \
        judge(p, _probe(p), [], other).detail
    lost = judge(p, _probe(p), [seen("world", True, 64, p.dst_ip, src="172.30.0.4",
                                     dport=p.dport)], [])
    assert not lost.ok and "lost: last seen leaving world" in lost.detail


def test_node_port_to_a_host_network_endpoint_on_the_addressed_node_keeps_the_client() -> None:
    # kube-proxy DNATs to the node's own address: the kernel delivers it locally, nat
    # POSTROUTING (KUBE-POSTROUTING's MASQUERADE) never runs, the endpoint sees the client
    text = (ROOT / "topologies" / "services.clab.yml").read_text().replace(
        "  agent:                      # ClusterIP in front of a hostNetwork pod\n",
        "  agent:\n    type: NodePort\n")
    plan = make_plan(parse_topology(text))
    at2 = _path(plan, "external-to-nodeport", "world", "agent:tcp@node2", "tcp")
    assert [(o.endpoint, o.ip, o.src, o.keep_sport, o.dnat_at, o.snat_at)
            for o in at2.outcomes] == [("agent", "172.30.0.2", "172.30.0.4", True, "node2",
                                        None)]
    # at another node it is forwarded: POSTROUTING masquerades to that node's address
    at1 = _path(plan, "external-to-nodeport", "world", "agent:udp@node1", "udp")
    assert [(o.src, o.keep_sport, o.snat_at) for o in at1.outcomes] == [
        ("172.30.0.1", False, "node1")]
