"""Services on a CNI datapath (pure): a pod's address is the plugin's, known after its ADD,
so endpoints and hostPorts are re-planned with the addresses observed, kube-proxy
programs only what it knows before, and deploy syncs every node's rules after the ADDs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from podlab_unit_helpers import broken

from harness import datapath
from harness.datapath import cni as cni_dp
from harness.datapath import kubeproxy
from harness.datapath import portmap as portmap_dp
from harness.datapath.iptables import Ruleset, declared_chains
from harness.datapath.services import node_rulesets
from harness.host import cni as plugins
from harness.model.topology import load_topology, parse_topology
from harness.plan import ASSIGNED_BY_CNI, Plan, make_plan
from harness.plan.services import known_only, readdressed

TOPO = Path(__file__).parent / "golden" / "services.clab.yml"
BASE = TOPO.read_text()
# what host-local might hand out when the ADDs ran in another order than the file's
FOUND = {"web": "10.244.0.3/24", "solo": "10.244.0.2/24", "web2": "10.244.1.2/24"}


def _plan(cni: str = "podlab") -> Plan:
    text = BASE if cni == "podlab" else broken(
        "  service-cidr: 10.96.0.0/16\n", f"  service-cidr: 10.96.0.0/16\n  cni: {cni}\n",
        BASE)
    return make_plan(parse_topology(text))


def _ports(plan: Plan, service: str) -> list[list[str]]:
    svc = next(s for s in plan.services if s.name == service)
    return [[f"{e.pod}={e.address}" for e in p.endpoints] for p in svc.ports]


def _dnats(rulesets: tuple[Ruleset, ...]) -> set[str]:
    return {r.args[-1] for rs in rulesets for r in rs.rules if "DNAT" in r.args}


def test_readdressed_moves_endpoints_and_hostports_and_sorts_again() -> None:
    plan = _plan()
    ips = {"web": "10.244.1.200", "web2": "10.244.0.7"}  # web now sorts after web2
    services, host_ports = readdressed(plan.services, plan.host_ports, ips)
    moved = {s.name: s for s in services}
    assert [e.address for e in moved["web"].ports[0].endpoints] == [
        "10.244.0.7:8080", "10.244.1.200:8080"]
    assert [e.pod for e in moved["web"].ports[1].endpoints] == ["web2", "web"]
    assert [(h.pod, h.pod_ip) for h in host_ports] == [("web", "10.244.1.200")]
    # what is not in `ips` keeps its address: the hostNetwork pod (its node's)
    assert moved["agent"].ports == next(s for s in plan.services if s.name == "agent").ports
    # the rest of each Service is untouched
    assert [(s.name, s.cluster_ip, s.type, [p.node_port for p in s.ports]) for s in services
            ] == [(s.name, s.cluster_ip, s.type, [p.node_port for p in s.ports])
                  for s in plan.services]
    assert readdressed(plan.services, plan.host_ports, {}) == (plan.services, plan.host_ports)


def test_known_only_drops_the_endpoints_of_unknown_pods() -> None:
    plan = _plan()
    services, host_ports = known_only(plan.services, plan.host_ports, {"web"})
    web = next(s for s in services if s.name == "web")
    assert [[e.pod for e in p.endpoints] for p in web.ports] == [["web2"], ["web2"]]
    assert host_ports == ()


def test_observed_addresses_replan_the_services() -> None:
    plan = _plan("bridge")
    seen = plan.with_pod_addresses(FOUND)
    assert _ports(seen, "web") == [["web=10.244.0.3:8080", "web2=10.244.1.2:8080"],
                                   ["web=10.244.0.3:5353", "web2=10.244.1.2:5353"]]
    assert _ports(seen, "solo-local") == [["solo=10.244.0.2:8080"]]
    assert _ports(seen, "agent") == [[f"agent={plan.node('node2').address}:9100"]]
    assert [(h.pod, h.pod_ip) for h in seen.host_ports] == [("web", "10.244.0.3")]


def test_kube_proxy_programs_only_known_endpoints_before_the_adds() -> None:
    plan = _plan("bridge")
    before = plan.programmable()
    assert _ports(before, "web") == [[], []] and _ports(before, "solo-local") == [[]]
    assert _ports(before, "agent") == _ports(plan, "agent")  # the node's own address
    assert before.host_ports == ()
    rules = node_rulesets(plan, "node1")
    assert [rs.owner for rs in rules] == [kubeproxy.OWNER]  # no hostPort DNAT yet
    assert _dnats(rules) == {f"{plan.node('node2').address}:9100"}
    rejected = [r for r in rules[0].rules if r.args[-1] == "REJECT"]
    assert {r.args[r.args.index("--comment") + 1] for r in rejected} >= {
        "default/web:http has no endpoints", "default/web:dns has no endpoints"}
    # podlab's own wiring knows its addresses: nothing is held back
    assert _plan().programmable() == _plan()


def test_after_the_adds_the_rules_use_the_plugins_addresses() -> None:
    plan = _plan("bridge")
    seen = plan.with_pod_addresses(FOUND)
    assert seen.programmable() is seen
    node1 = node_rulesets(seen, "node1")
    assert _dnats(node1) >= {"10.244.0.3:8080", "10.244.1.2:5353", "10.244.0.2:8080",
                             "10.244.0.3:8443"}  # the last: web's hostPort
    assert "10.244.0.2:5353" not in _dnats(node1)  # the plan's guess for web
    # the same addresses as podlab's own plan: the very rules podlab's wiring gets
    same = plan.with_pod_addresses({p.name: p.cidr for p in plan.pods
                                    if not p.host_network})
    for node in ("node1", "node2"):
        assert node_rulesets(same, node) == node_rulesets(_plan(), node)


def test_plan_json_shows_endpoints_assigned_by_cni_until_observed() -> None:
    doc = _plan("ptp").to_dict(with_paths=False)
    web = next(s for s in doc["services"] if s["name"] == "web")
    assert {e["ip"] for p in web["ports"] for e in p["endpoints"]} == {ASSIGNED_BY_CNI}
    agent = next(s for s in doc["services"] if s["name"] == "agent")
    assert agent["ports"][0]["endpoints"][0]["ip"] != ASSIGNED_BY_CNI
    assert doc["host_ports"][0]["pod_ip"] == ASSIGNED_BY_CNI
    seen = _plan("ptp").with_pod_addresses(FOUND).to_dict(with_paths=False)
    assert seen["host_ports"][0]["pod_ip"] == "10.244.0.3"


def test_stale_endpoint_chains_are_deleted_in_the_same_restore() -> None:
    old = node_rulesets(_plan("bridge").with_pod_addresses(FOUND), "node1")[0]
    new = node_rulesets(_plan("bridge").with_pod_addresses(
        {**FOUND, "web": "10.244.0.9/24"}), "node1")[0]
    saved = old.restore_text()  # iptables-save declares chains the same way
    gone = set(new.stale(saved))
    assert gone == set(old.chains) - set(new.chains)
    assert gone and all(c.startswith("KUBE-SEP-") for _, c in gone)
    text = new.restore_text(drop=sorted(gone))
    nat = text[text.index("*nat"):]
    for _, chain in gone:  # emptied, then removed after the rules that jumped there
        assert f":{chain} - [0:0]" in nat
        assert nat.index(f"-X {chain}") > max(nat.index(r.line()) for r in new.rules
                                              if r.table == "nat")
    assert set(declared_chains(text)) == {*new.chains, *gone}
    assert new.stale(new.restore_text()) == ()
    portmap = node_rulesets(_plan(), "node1")[1]
    assert portmap.prunes == () and portmap.stale(saved) == ()


def test_a_host_network_pod_gets_no_cni_add(tmp_path: Path) -> None:
    plan = _plan("bridge")
    dp = datapath.select(plan)
    agent = dp.describe(plan).pod("agent")
    assert agent.host_network and agent.veth is None
    assert dp.pod_added(1, 1, agent, "id") == ()  # nothing called: no plugin, no namespace
    assert dp.readdressed(plan, FOUND).pod("web").ip == "10.244.0.3"
    assert datapath.select(_plan()).readdressed(_plan(), FOUND) == _plan()


def test_deploy_syncs_every_node_with_the_addresses_the_adds_gave(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.host import firewall, wiring
    from harness.lab import deploy
    from harness.lab.progress import Reporter

    plan = _plan("ptp")
    written: dict[int, list[str]] = {}

    def restore(pid: int, full: str, refill: str, marker: Any, where: str = "") -> None:
        written.setdefault(pid, []).append(full)

    monkeypatch.setattr(firewall, "restore", restore)
    monkeypatch.setattr(firewall, "saved", lambda pid: "")
    monkeypatch.setattr(wiring, "route_dev", lambda pid, ip: None)  # no kernel here
    monkeypatch.setattr(wiring, "conntrack", lambda pid: [])
    pipeline = deploy._Pipeline(plan, "d", Reporter())
    pipeline.pid = {n.name: i for i, n in enumerate(plan.nodes, 100)}
    pipeline.assigned = dict(FOUND)
    pipeline.sync_services()
    k8s = {pipeline.pid[n.name]: n.name for n in plan.k8s_nodes}
    assert set(written) == set(k8s)
    seen = plan.with_pod_addresses(FOUND)
    for pid, texts in written.items():
        assert texts == [rs.restore_text() for rs in node_rulesets(seen, k8s[pid])]
    assert "10.244.0.3:8443" in "".join(written[pipeline.pid["node1"]])
    # podlab's own wiring: its node configure had the right rules already
    written.clear()
    podlab = deploy._Pipeline(_plan(), "d", Reporter())
    podlab.sync_services()
    assert written == {}


VERSION_ONLY = """#!{python}
import json
print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}}))
"""


def _chain_plan(tmp_path: Path, capabilities: dict[str, bool]) -> Plan:
    """The golden lab on a user chain: a routing plugin, then portmap with `capabilities`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("route", "portmap", "host-local"):
        (bin_dir / name).write_text(VERSION_ONLY.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    conflist = {"cniVersion": "1.0.0", "name": "mine", "plugins": [
        {"type": "route", "ipam": {"type": "host-local",
                                   "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}},
        {"type": "portmap", "capabilities": capabilities, "snat": True}]}
    (tmp_path / "net.conflist").write_text(json.dumps(conflist))
    topo = tmp_path / "lab.clab.yml"
    topo.write_text(broken("  service-cidr: 10.96.0.0/16\n",
                           "  service-cidr: 10.96.0.0/16\n"
                           "  cni: {conflist: net.conflist, bin-dir: bin}\n", BASE))
    return make_plan(load_topology(topo))


def test_a_chain_with_portmap_takes_the_hostports(tmp_path: Path) -> None:
    plan = _chain_plan(tmp_path, {"portMappings": True})
    dp = datapath.select(plan)
    assert isinstance(dp, cni_dp.CniDatapath) and dp.maps_ports(plan)
    seen = plan.with_pod_addresses(FOUND)
    net = dp.describe(seen)
    assert [rs.owner for rs in net.node("node1").rulesets] == [kubeproxy.OWNER]
    web = net.pod("web")
    assert isinstance(web, cni_dp.CniPodNet)
    args = web.capability_args()
    assert args == {"portMappings": [{"hostPort": 9443, "containerPort": 8443,
                                      "protocol": "tcp", "hostIP": ""}]}
    assert net.pod("web2").capability_args() == {}
    # as libcni injects it: runtimeConfig for the plugin that declares the capability only
    chain = plugins.Chain.from_conflist(json.loads(web.conflist), web.bin_dirs)
    route, portmap = (plugins.plugin_config(chain, p, None, args) for p in chain.plugins)
    assert "runtimeConfig" not in route
    assert portmap["runtimeConfig"] == args


@pytest.mark.parametrize("cni", ["bridge", "ptp", "chain-without-capability"])
def test_otherwise_podlab_writes_portmaps_rules(cni: str, tmp_path: Path) -> None:
    plan = (_chain_plan(tmp_path, {"bandwidth": True}) if cni.startswith("chain")
            else _plan(cni))
    dp = datapath.select(plan)
    assert not dp.maps_ports(plan)
    rulesets = dp.describe(plan.with_pod_addresses(FOUND)).node("node1").rulesets
    assert [rs.owner for rs in rulesets] == [kubeproxy.OWNER, portmap_dp.OWNER]
    assert "10.244.0.3:8443" in _dnats(rulesets)
