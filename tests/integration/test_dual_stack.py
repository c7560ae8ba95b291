"""Both families on real namespaces: the dual-stack example passes every check in IPv4 and
in IPv6, an IPv6-only lab passes in IPv6 alone, a NAT injected with ip6tables fails
exactly the IPv6 results it rewrites (their IPv4 twins pass), and faults leave no stale or
failed neighbour entries in either family.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Lab
from harness.host import wiring
from harness.host.netns import run_program
from harness.lab import unique_name
from harness.plan import Plan
from harness.prove.result import Report
from harness.prove.verify import CHECKS, PROTOS

# every check but path, whose own answer to each kind of fault is proven in test_path.py
NOT_PATH = [c for c in CHECKS if c != "path"]

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "topologies" / "dual.clab.yml"
V6ONLY = ROOT / "topologies" / "v6only.clab.yml"

Row = tuple[str, str, str, str, str]  # check, family, src, dst, proto
# the checks of a lab without Services
MODEL = {"pod-identity", "intra-pod", "pod-to-pod", "node-to-pod", "pod-to-node",
         "pod-to-external", "mtu", "path"}


@pytest.fixture(scope="module")
def dual(docker_available: None) -> Iterator[Lab]:
    """web, api on node1 and db on node2 share a switch with world and r1; cache sits on
    node3 behind r1. Every test undoes what it injects."""
    with Lab.deploy(DUAL, name=unique_name("dual")) as lab:
        yield lab


def failed(report: Report) -> set[Row]:
    return {(r.check, r.family, r.src, r.dst, r.proto) for r in report.results if not r.ok}


def details(report: Report) -> list[str]:
    return [f"{r.check} {r.family} {r.src}->{r.dst} {r.proto}: {r.detail}"
            for r in report.results if not r.ok]


def v6(plan: Plan, name: str) -> str:
    """The IPv6 address of a pod or node."""
    if name in {p.name for p in plan.pods}:
        return str(plan.pod(name).ip_of("ipv6"))
    return str(plan.node(name).address_of("ipv6"))


def test_the_dual_stack_example_passes_every_check_in_both_families(dual: Lab) -> None:
    report = dual.verify()
    assert report.ok, details(report)
    counts = Counter((r.check, r.family) for r in report.results)
    assert {check for check, _ in counts} == MODEL
    for check in MODEL:
        assert counts[(check, "ipv4")] == counts[(check, "ipv6")] > 0, check
    assert report.negative_control == "observed"  # masquerade seen in both families
    r = next(r for r in report.results if (r.check, r.family, r.src, r.dst, r.proto) ==
             ("pod-to-pod", "ipv6", "web", "cache", "icmp"))
    assert r.observed["src"] == v6(dual.plan, "web") and r.observed["dst"] == v6(dual.plan,
                                                                                "cache")
    assert r.observed["ttl"] == 64 - 3  # the hop limit, one per forwarding device
    ext = next(r for r in report.results if (r.check, r.family, r.src, r.proto) ==
               ("pod-to-external", "ipv6", "web", "udp"))
    assert ext.observed["src"] == v6(dual.plan, "node1")  # ip6tables MASQUERADE


def test_ipv6_is_on_without_dad_or_router_advertisements_in_every_namespace(
        dual: Lab) -> None:
    pids = dual.pids()
    plan = dual.plan
    spaces = [(n.name, n.forwards) for n in plan.nodes if "ipv6" in n.families]
    spaces += [(p.name, False) for p in plan.pods]
    for name, forwards in spaces:
        pid = pids[name]
        assert wiring.sysctl(pid, "net.ipv6.conf.all.forwarding") == ("1" if forwards
                                                                       else "0"), name
        assert wiring.sysctl(pid, "net.ipv6.conf.all.disable_ipv6") == "0", name
        assert wiring.sysctl(pid, "net.ipv6.conf.all.accept_ra") == "0", name
        for link in wiring.links(pid):  # every address usable the moment it was added
            if link["name"] == "lo":
                continue  # loopback never runs DAD (the kernel keeps its -1 there)
            assert wiring.sysctl(pid, f"net.ipv6.conf.{link['name']}.accept_dad") == "0", \
                (name, link["name"])


# (id, where, ip6tables arguments, the rows it must fail) with {name} an IPv6 address
INJECTED = [
    ("snat-on-the-senders-node", "node1",
     ["-t", "nat", "-I", "POSTROUTING", "-s", "{web}", "-d", "{cache}", "-j", "SNAT",
      "--to-source", "{node1}"],
     {("pod-to-pod", "ipv6", "web", "cache", p) for p in PROTOS}
     | {("pod-identity", "ipv6", "web", "web", "-")}),
    ("snat-inside-the-receiving-node", "node2",
     ["-t", "nat", "-A", "INPUT", "-s", "{web}", "-j", "SNAT", "--to-source", "{node1}"],
     {("pod-to-node", "ipv6", "web", "node2", p) for p in PROTOS}
     | {("pod-identity", "ipv6", "web", "web", "-")}),
    ("port-only-snat", "node1",
     ["-t", "nat", "-I", "POSTROUTING", "-s", "{web}", "-d", "{db}", "-p", "udp", "-j", "SNAT",
      "--to-source", "[{web}]:20000-20100"],
     {("pod-to-pod", "ipv6", "web", "db", "udp")}),
    ("dnat-on-the-router", "r1",
     ["-t", "nat", "-A", "PREROUTING", "-d", "{cache}", "-p", "udp", "-j", "DNAT",
      "--to-destination", "{world}"],
     {("pod-to-pod", "ipv6", p, "cache", "udp") for p in ("web", "api", "db")}
     | {("node-to-pod", "ipv6", n, "cache", "udp") for n in ("node1", "node2")}),
]


@pytest.mark.parametrize(("where", "rule", "rows"), [c[1:] for c in INJECTED],
                         ids=[c[0] for c in INJECTED])
def test_an_ip6tables_nat_fails_exactly_its_ipv6_results(dual: Lab, where: str,
                                                          rule: list[str],
                                                          rows: set[Row]) -> None:
    plan = dual.plan
    names = {n: v6(plan, n) for n in ("web", "db", "cache", "node1", "world")}
    argv = [a.format(**names) for a in rule]
    pid = dual.pids()[where]
    run_program(pid, ["ip6tables", *argv])
    try:
        report = dual.verify(checks=NOT_PATH)
    finally:
        delete = list(argv)
        delete[delete.index("-I" if "-I" in delete else "-A")] = "-D"
        run_program(pid, ["ip6tables", *delete])
    assert failed(report) == rows, details(report)
    # the same pairs in IPv4 passed: one family's NAT is that family's failure alone
    for check, _, src, dst, proto in rows:
        twin = [r for r in report.results if (r.check, r.family, r.src, r.dst, r.proto) ==
                (check, "ipv4", src, dst, proto)]
        assert twin and all(r.ok for r in twin), (check, src, dst, proto)
    for r in report.results:
        if not r.ok and r.check != "pod-identity":
            assert "rewritten" in r.detail, r.detail


def test_the_ipv6_only_example_passes_in_ipv6_alone(docker_available: None) -> None:
    with Lab.deploy(V6ONLY, name=unique_name("v6")) as lab:
        report = lab.verify()
        assert report.ok, details(report)
        assert {r.family for r in report.results} == {"ipv6"}
        assert {r.check for r in report.results} == MODEL
        pids = lab.pids()
        pods = {ip for p in lab.plan.pods for ip in p.ips}
        flows = [f for n in lab.plan.k8s_nodes for f in wiring.conntrack(pids[n.name])
                 if f.orig[0] in pods and f.orig[1] in pods]
        assert flows and not [f for f in flows if f.nat]  # conntrack agrees: no NAT


def _no_bad_neighbours(lab: Lab, node: str) -> None:
    """Every other namespace's entries for `node`'s addresses are resolved (not FAILED or
    INCOMPLETE) and point at the MAC its interface has now."""
    pids = lab.pids()
    mine = lab.plan.node(node)
    macs = {link["name"]: link["mac"] for link in wiring.links(pids[node])}
    want = {a.split("/")[0]: macs[i.name] for i in mine.interfaces for a in i.addresses}
    for other in lab.plan.nodes:
        if other.name == node or other.kind == "switch":
            continue
        for address, state, mac, _ in wiring.neighbours(pids[other.name]):
            if address in want:
                assert state not in ("FAILED", "INCOMPLETE"), (other.name, address, state)
                assert mac == want[address], (other.name, address, mac, want[address])


def test_node_restart_leaves_no_stale_neighbour_entry_in_either_family(dual: Lab) -> None:
    assert dual.verify(checks=["pod-to-pod", "node-to-pod"]).ok  # every cache is warm
    dual.fault("node-stop", "node2")
    try:
        partial = dual.verify(checks=["pod-to-pod"])
        assert {r.family for r in partial.results if not r.ok} == {"ipv4", "ipv6"}
    finally:
        dual.fault("node-start", "node2")
    _no_bad_neighbours(dual, "node2")  # node2's veths and MACs are new
    report = dual.verify()  # right away, without waiting for any cache to expire
    assert report.ok, details(report)
    _no_bad_neighbours(dual, "node2")


def test_a_link_pulled_and_plugged_back_works_at_once_in_both_families(dual: Lab) -> None:
    dual.fault("link-down", "node3:eth1")
    try:
        report = dual.verify(checks=["pod-to-pod"])
        down = failed(report)
        assert down and {f for _, f, _, _, _ in down} == {"ipv4", "ipv6"}
        assert all("cache" in (src, dst) for _, _, src, dst, _ in down)
        # each pair fails in both families or in neither
        pairs = {(c, s, d, p) for c, _, s, d, p in down}
        assert down == {(c, f, s, d, p) for c, s, d, p in pairs for f in ("ipv4", "ipv6")}
    finally:
        dual.fault("link-up", "node3:eth1")
    pids = dual.pids()
    for name in ("node3", "r1"):
        bad = [n for n in wiring.neighbours(pids[name]) if n[1] in ("FAILED", "INCOMPLETE")]
        assert bad == [], (name, bad)
    report = dual.verify()
    assert report.ok, details(report)


def test_the_mtu_check_in_both_families(docker_available: None) -> None:
    """mtu.clab.yml made dual-stack: 1400 bytes cross between the nodes' pods in each
    family, and 1401 get fragmentation-needed (IPv4) or packet-too-big (IPv6) from the
    router in front of the 1400-byte link."""
    text = (ROOT / "topologies" / "mtu.clab.yml").read_text()
    for key, v4, v6 in (("pod-cidr", "10.244.0.0/16", "fd00:10:244::/56"),
                        ("underlay-cidr", "172.28.0.0/16", "fd00:172:28::/48")):
        text = text.replace(f"  {key}: {v4}\n", f"  {key}: [{v4}, {v6}]\n")
    from harness.model.topology import parse_topology

    topo = parse_topology(text.replace("name: mtu", f"name: {unique_name('mtu6')}", 1))
    with Lab.deploy(topo) as lab:
        report = lab.verify(checks=["mtu"])
    assert report.ok, details(report)
    assert Counter(r.family for r in report.results) == {"ipv4": 2, "ipv6": 2}
    assert all("packet-too-big (MTU 1400)" in r.detail for r in report.results
               if r.family == "ipv6")


def test_ip_masq_agent_without_ipv6_cidrs_masquerades_every_ipv6_flow(
        docker_available: None, tmp_path: Path) -> None:
    """The agent's classic dual-stack mistake: nonMasqueradeCIDRs lists the IPv4 ranges
    only, so with --enable-ipv6 it masquerades every non-local IPv6 destination, the other
    pods and nodes included. IPv4 passes whole; in IPv6 every pod-to-pod, node-to-pod and
    pod-to-node (to another node) result fails, and each pod's identity; pod-to-external
    is masqueraded as planned, so the negative control is observed."""
    name = unique_name("masq6")
    path = tmp_path / f"{name}.clab.yml"
    path.write_text(DUAL.read_text().replace("name: dual", f"name: {name}", 1).replace(
        "  masquerade: true\n", "  masquerade: {nonMasqueradeCIDRs: [10.0.0.0/8, "
        "172.16.0.0/12]}\n"))
    with Lab.deploy(path) as lab:
        report = lab.verify(checks=NOT_PATH)
        plan = lab.plan
        pods, nodes = [p.name for p in plan.pods], [n.name for n in plan.k8s_nodes]
        six = {("pod-to-pod", "ipv6", a, b, proto) for a in pods for b in pods if a != b
               for proto in PROTOS}
        six |= {("node-to-pod", "ipv6", n, p, proto) for n in nodes for p in pods
                for proto in PROTOS}
        six |= {("pod-to-node", "ipv6", p, n, proto) for p in pods for n in nodes
                if n != plan.pod(p).node for proto in PROTOS}
        six |= {("pod-identity", "ipv6", p, p, "-") for p in pods}
        assert failed(report) == six, details(report)
        assert report.negative_control == "observed"
        rewritten = next(r for r in report.results if r.check == "pod-to-pod"
                         and r.family == "ipv6" and (r.src, r.dst) == ("web", "db"))
        assert "source rewritten" in rewritten.detail, rewritten.detail
