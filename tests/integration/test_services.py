"""Services on real namespaces: kube-proxy's and portmap's rules are what the plan says,
hostNetwork pods live in their node's namespace, and traffic is rewritten exactly where
Kubernetes rewrites it (seen by real sockets: what the receiving socket is told).

One lab per module: topologies/services.clab.yml under a unique name.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.datapath import describe, select
from harness.datapath.iptables import count_saved
from harness.host import firewall, netns
from harness.lab import faults, unique_name
from harness.plan import Plan

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "topologies" / "services.clab.yml"


@pytest.fixture(scope="module")
def lab(docker_available: None) -> Iterator[Lab]:
    with Lab.deploy(SERVICES, name=unique_name("svc")) as running:
        yield running


def _pid(lab: Lab, name: str) -> int:
    plan = lab.plan
    pids = lab.container_pids()
    if name in {n.name for n in plan.nodes}:
        return pids[plan.node(name).container]
    return pids[plan.pod(name).infra]


def _live(lab: Lab, node: str) -> dict[str, int]:
    return count_saved(firewall.saved(_pid(lab, node)))


def _planned(plan: Plan, node: str) -> dict[str, int]:
    out = {"kube-proxy": 0, "portmap": 0}
    for rs in describe(plan).node(node).rulesets:
        out[rs.owner] = len(rs)
    return out


def test_live_rules_are_the_planned_ones(lab: Lab) -> None:
    plan = lab.plan
    for node in plan.k8s_nodes:
        assert _live(lab, node.name) == _planned(plan, node.name), node.name
        saved = firewall.saved(_pid(lab, node.name))
        for rs in describe(plan).node(node.name).rulesets:
            for _, chain in rs.chains:
                assert f"\n:{chain} " in saved, (node.name, chain)
    assert _planned(plan, "node1")["portmap"] > 0 == _planned(plan, "node2")["portmap"]
    inspected = {n["name"]: n.get("service_rules") for n in lab.inspect()["nodes"]}
    assert inspected["node1"] == _planned(plan, "node1")
    assert inspected["world"] is None


def test_route_localnet_as_kube_proxy_and_portmap_set_it(lab: Lab) -> None:
    from harness.host import wiring

    node1 = lab.plan.node("node1")
    pid = _pid(lab, "node1")
    # kube-proxy's --iptables-localhost-nodeports (its default): on every interface
    assert wiring.sysctl(pid, "net.ipv4.conf.all.route_localnet") == "1"
    # portmap (SNAT on): on the interface its node routes the hostPort pod's address by
    assert wiring.route_dev(pid, lab.plan.pod("echo").ip) == node1.bridge
    assert wiring.sysctl(pid, f"net.ipv4.conf.{node1.bridge}.route_localnet") == "1"
    # node3 has no hostPort pod: its bridge keeps the kernel's default
    assert wiring.sysctl(_pid(lab, "node3"),
                         f"net.ipv4.conf.{lab.plan.node('node3').bridge}.route_localnet") == "0"


def test_reapplying_the_description_doubles_nothing(lab: Lab) -> None:
    plan = lab.plan
    dp = select(plan)
    net = describe(plan)
    before = firewall.saved(_pid(lab, "node1"))
    dp.apply_node(_pid(lab, "node1"), net.node("node1"))
    assert _live(lab, "node1") == _planned(plan, "node1")
    strip = [line for line in before.splitlines() if not line.startswith("#")]
    after = [line for line in firewall.saved(_pid(lab, "node1")).splitlines()
             if not line.startswith("#")]
    assert after == strip


# --------------------------------------------------------------------------- traffic


class Server:
    """A listener in one namespace that reports the peer its own socket saw. Bound to the
    endpoint's address: a UDP reply from a socket bound to 0.0.0.0 leaves from the route's
    source, which on a node (a hostNetwork pod) is the bridge's address for its own pods."""

    def __init__(self, pid: int, ip: str, port: int, proto: str):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.proto = proto
        self.sock = netns.socket_in_netns(pid, socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        if proto == "tcp":
            self.sock.listen(8)
        self.sock.settimeout(0.1)

    def peer(self) -> tuple[str, int] | None:
        try:
            if self.proto == "tcp":
                conn, peer = self.sock.accept()
                conn.close()
                return peer
            data, peer = self.sock.recvfrom(2048)
            self.sock.sendto(data, peer)  # an echo: the client checks who answers
            return peer
        except OSError:
            return None

    def close(self) -> None:
        self.sock.close()


def _exchange(lab: Lab, client: str, dst: str, port: int, proto: str,
              servers: dict[str, Server], timeout: float = 1.0
              ) -> tuple[tuple[str, int], str | None, tuple[str, int] | None,
                         tuple[str, int] | None]:
    """(client's own address, the server that got it, the peer that server saw, who
    answered the client) — Nones where nothing arrived."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = netns.socket_in_netns(_pid(lab, client), socket.AF_INET, kind)
    sock.settimeout(timeout)
    answered: tuple[str, int] | None = None
    try:
        if proto == "tcp":
            try:
                sock.connect((dst, port))
                answered = sock.getpeername()
            except OSError:
                pass
            local = sock.getsockname()
        else:  # connected: the kernel picks the source now, and takes replies from dst only
            sock.connect((dst, port))
            sock.send(b"podlab")
            local = sock.getsockname()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, server in servers.items():
                peer = server.peer()
                if peer is not None:
                    if proto == "udp":
                        try:
                            answered = sock.recvfrom(2048)[1]
                        except OSError:
                            answered = None
                    return local, name, peer, answered
        return local, None, None, answered
    finally:
        sock.close()


@pytest.fixture
def servers(lab: Lab) -> Iterator[dict[tuple[str, int, str], Server]]:
    made: dict[tuple[str, int, str], Server] = {}
    plan = lab.plan
    for svc in plan.services:
        for port in svc.ports:
            for e in port.endpoints:
                key = (e.pod, e.port, port.protocol.lower())
                if key not in made:
                    made[key] = Server(_pid(lab, e.pod), e.ip, e.port, key[2])
    yield made
    for server in made.values():
        server.close()


def _of(servers: dict[tuple[str, int, str], Server], port: int, proto: str
        ) -> dict[str, Server]:
    return {pod: s for (pod, p, pr), s in servers.items() if p == port and pr == proto}


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_pod_to_cluster_ip_keeps_the_pod_source(lab: Lab, servers, proto: str) -> None:
    svc = next(s for s in lab.plan.services if s.name == "web")
    port = next(p for p in svc.ports if p.protocol.lower() == proto)
    endpoints = {e.pod for e in port.endpoints}
    seen = set()
    for _ in range(6):
        local, server, peer, answered = _exchange(
            lab, "client", svc.cluster_ip, port.port, proto,
            _of(servers, port.endpoints[0].port, proto))
        assert server in endpoints and peer == local  # address and port unchanged
        assert answered == (svc.cluster_ip, port.port)  # the reply comes from the VIP
        seen.add(server)
    assert seen, "no endpoint answered"


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("client", ["web-2", "web-1"], ids=["same-node", "across-nodes"])
def test_pod_to_host_network_pod_is_not_natted(lab: Lab, servers, client: str,
                                               proto: str) -> None:
    agent = lab.plan.pod("agent")
    local, server, peer, answered = _exchange(lab, client, agent.ip, 9100, proto,
                                              _of(servers, 9100, proto))
    assert (server, peer) == ("agent", local)
    assert answered == (agent.ip, 9100)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_host_port_keeps_the_client_address(lab: Lab, servers, proto: str) -> None:
    plan = lab.plan
    host = next(h for h in plan.host_ports if h.protocol.lower() == proto)
    node = plan.node(host.node)
    world = plan.node("world").address
    local, server, peer, _ = _exchange(lab, "world", str(node.address), host.host_port,
                                       proto, _of(servers, host.container_port, proto))
    assert server == host.pod and peer == local and local[0] == world
    other = next(n for n in plan.k8s_nodes if n.name != host.node)
    _, server, _, answered = _exchange(lab, "world", str(other.address), host.host_port,
                                       proto, _of(servers, host.container_port, proto),
                                       timeout=0.5)
    assert server is None and answered is None  # published on the pod's node only


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_local_node_port_answers_only_where_the_endpoint_is(lab: Lab, servers,
                                                            proto: str) -> None:
    plan = lab.plan
    svc = next(s for s in plan.services if s.name == "echo-local")
    port = next(p for p in svc.ports if p.protocol.lower() == proto)
    [endpoint] = port.endpoints
    world = plan.node("world").address
    for node in plan.k8s_nodes:
        local, server, peer, _ = _exchange(lab, "world", str(node.address), port.node_port,
                                           proto, _of(servers, endpoint.port, proto),
                                           timeout=0.5 if node.name != endpoint.node else 1)
        if node.name == endpoint.node:
            assert server == endpoint.pod and peer == local and local[0] == world
        else:
            assert server is None, f"{node.name} forwarded a Local node port"


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_cluster_node_port_snats_to_the_node(lab: Lab, servers, proto: str) -> None:
    plan = lab.plan
    svc = next(s for s in plan.services if s.name == "web-nodeport")
    port = next(p for p in svc.ports if p.protocol.lower() == proto)
    node = plan.node("node3")  # no endpoint there: always forwarded to another node
    _, server, peer, _ = _exchange(lab, "world", str(node.address), port.node_port, proto,
                                   _of(servers, port.endpoints[0].port, proto))
    assert server in {e.pod for e in port.endpoints}
    assert peer is not None and peer[0] == node.address


def test_node_restart_brings_host_network_pods_and_rules_back(lab: Lab, servers) -> None:
    plan = lab.plan
    faults.node_stop(plan, "node2")
    try:
        assert plan.pod("agent").infra not in lab.container_pids()  # it crashed with it
    finally:
        faults.node_start(plan, "node2")
    pids = lab.container_pids()
    agent, node2 = pids[plan.pod("agent").infra], pids[plan.node("node2").container]
    assert netns.netns_inode(agent) == netns.netns_inode(node2)
    assert _live(lab, "node2") == _planned(plan, "node2")
    server = Server(agent, plan.pod("agent").ip, 9100, "tcp")
    try:
        local, got, peer, _ = _exchange(lab, "web-1", plan.pod("agent").ip, 9100, "tcp",
                                        {"agent": server})
        assert (got, peer) == ("agent", local)
    finally:
        server.close()


def test_a_sync_that_removes_an_endpoint_clears_its_udp_conntrack_entries(lab: Lab) -> None:
    """kube-proxy's CleanStaleEntries: after web-2 leaves web's endpoints, node3's UDP
    entries toward it are deleted (a datagram would otherwise keep going to it), those
    toward web-1 stay."""
    from dataclasses import replace

    from harness.host import wiring

    plan = lab.plan
    vip = next(s for s in plan.services if s.name == "web").cluster_ip
    web1, web2 = plan.pod("web-1").ip, plan.pod("web-2").ip
    node3 = _pid(lab, "node3")

    def toward_web() -> set[str]:
        return {f.reply[0] for f in wiring.conntrack(node3)
                if f.proto.lower() == "udp" and f.orig[1] == vip and f.orig[3] == 53}

    for _ in range(40):  # kube-proxy picks at random: until both endpoints have a flow
        sock = netns.socket_in_netns(_pid(lab, "client"), socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(b"podlab", (vip, 53))
        sock.close()
        if {web1, web2} <= toward_web():
            break
    assert {web1, web2} <= toward_web()
    gone = replace(plan, services=tuple(
        replace(s, ports=tuple(replace(p, endpoints=tuple(e for e in p.endpoints
                                                          if e.pod != "web-2"))
                               for p in s.ports)) for s in plan.services))
    dp = select(plan)
    node = plan.node("node3")
    try:
        dp.sync_services(node3, "node3", dp.service_rules(gone, node))
        assert web2 not in toward_web() and web1 in toward_web()
    finally:
        dp.sync_services(node3, "node3", dp.service_rules(plan, node))
    assert _live(lab, "node3") == _planned(plan, "node3")
