"""The datapath's description of a lab (pure), its registry, and its apply half with the
kernel stubbed out."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from podlab_unit_helpers import EXAMPLES, MINIMAL, PODLAB_EXAMPLES, broken

from harness import datapath, datapaths
from harness.datapath import Daemon, Datapath, LabNet, describe, select
from harness.datapath import base as dp_base
from harness.errors import DeployError, InputError
from harness.host import firewall, wiring
from harness.kinds import kind
from harness.model import schema as topology
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan

EXAMPLE_IDS = [p.name.removesuffix(".clab.yml") for p in EXAMPLES]
PODLAB_IDS = [p.name.removesuffix(".clab.yml") for p in PODLAB_EXAMPLES]


@pytest.fixture(params=PODLAB_EXAMPLES, ids=PODLAB_IDS)
def plan(request: pytest.FixtureRequest) -> Plan:
    """An example whose pods podlab wires itself (cni: podlab); harness.datapath.cni's
    tests cover the others."""
    return make_plan(load_topology(request.param))


def test_description_is_deterministic_and_deeply_immutable(plan: Plan) -> None:
    net = describe(plan)
    assert net == describe(plan)
    hash(net)  # every field down to the leaves is a tuple or a str: nothing to mutate
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.nodes[0].routes = ()  # type: ignore[misc]
    assert [n.name for n in net.nodes] == [n.name for n in plan.nodes]
    assert [p.name for p in net.pods] == [p.name for p in plan.pods]
    assert net.datapath == f"routing: {plan.routing}, cni: {plan.cni}"


def test_node_settings(plan: Plan) -> None:
    net = describe(plan)
    for node in plan.nodes:
        sysctls = net.node(node.name).container.sysctl_map()
        if node.run is not None:  # the user's node: its own settings, as containerlab's
            assert net.node(node.name).container.sysctls == node.run.sysctls
            continue
        # said either way: a namespace may inherit the host's ip_forward=1
        assert sysctls["net.ipv4.ip_forward"] == ("1" if kind(node.kind).forwards else "0")
        assert sysctls["net.ipv4.conf.all.rp_filter"] == "0"
        assert net.node(node.name).container.caps == ("NET_ADMIN", "NET_RAW")
        if "ipv6" in node.families:  # on, usable at once, routed only by the datapath
            assert sysctls["net.ipv6.conf.all.forwarding"] == sysctls["net.ipv4.ip_forward"]
            for scope in ("all", "default"):
                for key in ("disable_ipv6", "accept_dad", "accept_ra"):
                    assert sysctls[f"net.ipv6.conf.{scope}.{key}"] == "0"
        else:  # an IPv4-only lab's namespaces are set exactly as before
            assert not any(k.startswith("net.ipv6.") for k in sysctls)


def test_switch_is_one_bridge_over_its_ports(plan: Plan) -> None:
    net = describe(plan)
    for node in plan.nodes:
        if not kind(node.kind).is_switch:
            continue
        n = net.node(node.name)
        assert n.bridges == ("br0",)
        assert n.ports == tuple((i.name, "br0") for i in node.interfaces)
        assert not (n.addresses or n.routes or n.nat or n.up)


def test_routed_nodes_get_addresses_and_the_plans_routes(plan: Plan) -> None:
    plan = dataclasses.replace(plan, routing="static")  # (routing: bgp: see test_bgp)
    net = describe(plan)
    for node in plan.nodes:
        if kind(node.kind).is_switch:
            continue
        n = net.node(node.name)
        if node.run is not None:  # the user's node: links up, addresses and routes its own
            assert not (n.addresses or n.routes or n.nat or n.daemons)
            continue
        ifaces = tuple((i.name, a) for i in node.interfaces for a in i.addresses)
        used = {f for s in plan.services for f in s.ip_families}  # tested in test_services_*
        services = tuple((plan.service_cidr_of(f), "", ifaces[0][0]) for f in plan.families
                         if f in used) if kind(node.kind).hosts_pods else ()
        assert n.routes == (*((r.dst, r.via) for r in node.routes), *services)
        assert not n.daemons and not n.ready_routes
        if kind(node.kind).hosts_pods:
            # the bridge holds the pods' gateway; pods' ports come with the pods
            assert n.bridges == ("cbr0",)
            assert n.addresses == (*(("cbr0", g) for g in node.gateways), *ifaces)
            assert n.ports == ()
        else:
            assert n.bridges == () and n.addresses == ifaces
            assert n.up == tuple(i.name for i in node.interfaces if not i.addresses)


def test_masquerade_is_data(plan: Plan) -> None:
    net = describe(plan)
    for node in plan.nodes:
        rules = net.node(node.name).nat
        if kind(node.kind).hosts_pods and plan.masquerade:
            # one rule per family (iptables, ip6tables), the same semantics in each
            assert [r.source for r in rules] == list(node.pod_cidrs)
            for rule, family in zip(rules, plan.families, strict=True):
                assert rule.exempt == node.masquerade_exempt_of(family)
                assert plan.pod_cidr_of(family) in rule.exempt
                assert rule.chain == firewall.CHAIN
            assert sum((r.exempt for r in rules), ()) == node.masquerade_exempt
        else:
            assert rules == ()


def test_no_masquerade_when_the_cluster_says_so() -> None:
    plan = make_plan(parse_topology(broken("  node-mask: 24\n",
                                           "  node-mask: 24\n  masquerade: false\n")))
    assert all(not n.nat for n in describe(plan).nodes)


def test_pods(plan: Plan) -> None:
    net = describe(plan)
    for pod in plan.pods:
        p = net.pod(pod.name)
        assert p.node == pod.node
        assert p in net.pods_of(pod.node)
        if pod.host_network:  # its node's namespace: tested in test_services_datapath
            assert p.veth is None and p.host_network
            continue
        ipv6 = {"net.ipv6.conf.all.forwarding": "0", "net.ipv6.icmp.ratelimit": "0", **{
            f"net.ipv6.conf.{s}.{k}": "0" for s in ("all", "default")
            for k in ("disable_ipv6", "accept_dad", "accept_ra")}} if "ipv6" in pod.families \
            else {}
        # every ICMP error answered, unlimited: the path check asks every hop
        icmp = {"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_msgs_per_sec": "1000000",
                "net.ipv4.icmp_msgs_burst": "1000000"}
        assert p.infra.sysctl_map() == {"net.ipv4.ping_group_range": "0 2147483647",
                                        "net.ipv4.ip_forward": "0", **icmp, **ipv6}
        assert p.infra.caps == ()  # podlab configures the namespace from the host side
        assert p.containers.caps == ("NET_RAW",) and p.containers.sysctls == ()
        assert p.veth == (pod.node_iface, "eth0")
        assert p.node_port == (pod.node_iface, "cbr0")
        assert p.addresses == tuple(("eth0", c) for c in pod.cidrs)
        assert p.routes == tuple(("default", g) for g in pod.gateways)
        assert p in net.pods_of(pod.node)


# --------------------------------------------------------------------------- registry


def test_the_file_format_and_the_registry_agree() -> None:
    assert get_args(topology.Routing) == tuple(datapaths.ROUTING)
    assert (*get_args(topology.CniName), datapaths.CONFLIST) == tuple(datapaths.CNI)
    assert datapaths.DEFAULT_ROUTING in datapaths.implemented(datapaths.ROUTING)
    assert datapaths.DEFAULT_CNI in datapaths.implemented(datapaths.CNI)


def test_default_selection_is_todays_wiring(plan: Plan) -> None:
    assert make_plan(parse_topology(MINIMAL)).routing == "static"
    if (plan.routing, plan.cni) == ("static", "podlab"):
        assert type(select(plan)) is Datapath


def test_an_unimplemented_choice_is_refused() -> None:
    plan = make_plan(load_topology(EXAMPLES[0]))
    todo = [c for c in (*datapaths.ROUTING.values(), *datapaths.CNI.values()) if c.impl is None]
    for choice in todo:
        with pytest.raises(InputError, match=f"{choice.value} is not implemented yet"):
            select(dataclasses.replace(plan, **{choice.key: choice.value}))
    with pytest.raises(InputError, match="'ospf' is not a datapath"):
        select(dataclasses.replace(plan, routing="ospf"))


class FakeRouting(Datapath):
    """What a routing datapath overrides: no pod routes by hand, a daemon, readiness."""

    def routes(self, plan: Plan, node: Any) -> tuple[tuple[str, ...], ...]:
        pod_cidrs = {n.pod_cidr for n in plan.k8s_nodes}
        return tuple(r for r in super().routes(plan, node) if r[0] not in pod_cidrs)

    def ready_routes(self, plan: Plan, node: Any) -> tuple[str, ...]:
        if not kind(node.kind).pod_routes:
            return ()
        return tuple(n.pod_cidr for n in plan.k8s_nodes if n.name != node.name)


class FakeCni(Datapath):
    def pod_net(self, plan: Plan, pod: Any) -> Any:
        return dataclasses.replace(super().pod_net(plan, pod), veth=None, node_port=None)


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(datapaths.ROUTING, "bgp", datapaths.Choice(
        "routing", "bgp", f"{__name__}:FakeRouting", "fake"))
    monkeypatch.setitem(datapaths.CNI, "ptp", datapaths.Choice(
        "cni", "ptp", f"{__name__}:FakeCni", "fake"))
    datapath._combined.cache_clear()
    yield
    datapath._combined.cache_clear()


@pytest.mark.usefixtures("fake_registry")
def test_registered_datapaths_are_selected_validated_and_combined() -> None:
    text = broken("  node-mask: 24\n", "  node-mask: 24\n  routing: bgp\n  cni: ptp\n")
    plan = make_plan(parse_topology(text))  # validation asks the registry: accepted
    dp = select(plan)
    assert isinstance(dp, FakeRouting) and isinstance(dp, FakeCni)
    net = dp.describe(plan)
    assert net.datapath == "routing: bgp, cni: ptp"
    node1 = net.node("node1")
    assert node1.ready_routes == (plan.node("node2").pod_cidr,)
    assert all(r[0] != plan.node("node2").pod_cidr for r in node1.routes)
    assert all(p.veth is None for p in net.pods)
    alone = make_plan(parse_topology(broken("  node-mask: 24\n",
                                            "  node-mask: 24\n  routing: bgp\n")))
    assert type(select(alone)) is FakeRouting


# --------------------------------------------------------------------------- apply


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, Any]]:
    calls: list[tuple[str, int, Any]] = []
    monkeypatch.setattr(wiring, "configure", lambda pid, cfg: calls.append(("cfg", pid, cfg)))
    monkeypatch.setattr(firewall, "masquerade", lambda pid, src, exempt, chain, where="", **how:
                        calls.append(("masq", pid, (src, tuple(exempt), chain))))
    return calls


def test_apply_node_configures_then_masquerades(kernel: list[Any]) -> None:
    plan = make_plan(parse_topology(MINIMAL))
    net = describe(plan)
    node = net.node("node1")
    select(plan).apply_node(7, node, net.pods_of("node1"))
    (_, pid, cfg), (what, _, masq) = kernel
    assert pid == 7 and cfg.bridges == ("cbr0",)
    assert cfg.addresses == node.addresses and cfg.routes == node.routes
    assert cfg.ports == (("pv-web", "cbr0"),)  # a wired pod's port joins with the node
    assert what == "masq" and masq == (plan.node("node1").pod_cidr,
                                       plan.node("node1").masquerade_exempt, "PODLAB-MASQ")


def test_pod_added_configures_the_pod_then_its_port(kernel: list[Any]) -> None:
    plan = make_plan(parse_topology(MINIMAL))
    pod = describe(plan).pod("web")
    select(plan).pod_added(1, 2, pod)
    (_, pid_pod, pod_cfg), (_, pid_node, node_cfg) = kernel
    assert (pid_pod, pod_cfg.addresses, pod_cfg.routes) == (2, pod.addresses, pod.routes)
    assert (pid_node, node_cfg.ports) == (1, (("pv-web", "cbr0"),))


def test_daemons_that_nobody_starts_are_an_error(kernel: list[Any]) -> None:
    plan = make_plan(parse_topology(MINIMAL))
    node = dataclasses.replace(describe(plan).node("node1"),
                               daemons=(Daemon("bird", ("bird", "-f")),))
    with pytest.raises(NotImplementedError, match="does not start them"):
        Datapath().apply_node(1, node)
    assert not kernel


def _net_waiting_for(*cidrs: str) -> LabNet:
    plan = make_plan(parse_topology(MINIMAL))
    net = describe(plan)
    node1 = dataclasses.replace(net.node("node1"), ready_routes=cidrs)
    return dataclasses.replace(net, nodes=(node1, *net.nodes[1:]))


def test_after_deploy_waits_for_ready_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked again until the route is there, then returns: no more asking, no error."""
    tables = [[], [("10.244.1.0/24", "172.30.0.2", "eth1")]]
    asked: list[int] = []

    def routes(pid: int) -> list[tuple[str, str | None, str]]:
        asked.append(pid)
        return tables[min(len(asked), len(tables)) - 1]

    slept: list[float] = []
    monkeypatch.setattr(wiring, "routes", routes)
    monkeypatch.setattr(dp_base.time, "sleep", slept.append)
    Datapath().after_deploy(_net_waiting_for("10.244.1.0/24"), {"node1": 1}, timeout=5)
    assert asked == [1, 1]  # node1's table: once without the route, once with it
    assert len(slept) == 1  # one wait in between, none after


def test_after_deploy_names_the_missing_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "routes", lambda pid: [("172.30.0.0/24", None, "eth1")])
    with pytest.raises(DeployError, match=r"node1: 10\.244\.1\.0/24, 10\.244\.2\.0/24"):
        Datapath().after_deploy(_net_waiting_for("10.244.2.0/24", "10.244.1.0/24"),
                                {"node1": 1}, timeout=0)


def test_static_datapath_waits_for_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "routes", lambda pid: pytest.fail("no route to wait for"))
    plan = make_plan(parse_topology(MINIMAL))
    Datapath().after_deploy(describe(plan), {}, timeout=0)
