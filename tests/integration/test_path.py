"""The `path` check on real labs: every hop is asked who it is (rising TTL from the
sender's namespace), so a detour of equal length fails, naming the router it took, and a
NAT on a middle router is located to it by the headers the hops quote back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import Lab
from harness.host import netns
from harness.lab import unique_name
from harness.model.topology import parse_topology
from harness.plan import make_plan
from harness.plan.model import bare_ip

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def deploy(file: str) -> Lab:
    text = (ROOT / "topologies" / file).read_text()
    topo = parse_topology(text, ROOT / "topologies" / file)
    name = unique_name(topo.spec.name)
    return Lab.deploy(make_plan(parse_topology(
        text.replace(f"name: {topo.spec.name}", f"name: {name}", 1), ROOT / "topologies" / file)))


def replace_route(pid: int, dst: str, via: str) -> None:
    """`ip route replace dst via via` in the namespace of `pid`, with pyroute2."""
    def body() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.route("replace", dst=dst, gateway=via)

    netns.run_in_netns(pid, body)


def test_a_detour_of_equal_length_fails_only_path_naming_the_router_taken(
        docker_available: None, tmp_path: Path) -> None:
    file = tmp_path / "tworouter.clab.yml"
    file.write_text((ROOT / "topologies" / "tworouter.clab.yml").read_text().replace(
        "name: tworouter", f"name: {unique_name('tworouter')}", 1))
    with Lab.deploy(file) as lab:
        clean = lab.verify()
        assert clean.ok, [r.detail for r in clean.results if not r.ok]
        paths = [r for r in clean.results if r.check == "path"]
        crossing = {(r.src, r.dst) for r in paths}
        assert {("a", "b"), ("b", "a"), ("n1", "b"), ("a", "n2")} <= crossing
        assert all(r.observed["hops"] == r.expected["hops"] for r in paths)

        plan = lab.plan
        # UDP filtered on its way into n2's pods: the hops still answer UDP, the
        # destination answers an ICMP echo, and the result says so
        drop = ["FORWARD", "-p", "udp", "-o", "cbr0", "-j", "DROP"]
        n2 = lab.pids()["n2"]
        netns.run_program(n2, ["iptables", "-A", *drop])
        try:
            filtered = {(r.src, r.dst): r for r in lab.verify(checks=["path"]).results}
        finally:
            netns.run_program(n2, ["iptables", "-D", *drop])
        assert all(r.ok for r in filtered.values()), [r.detail for r in filtered.values()]
        assert "TTL 4 answered an ICMP echo, not UDP" in filtered["a", "b"].detail
        assert "ICMP echo" not in filtered["b", "a"].detail

        rb = next(i for i in plan.node("rb").interfaces if i.peer == "n1:eth2")
        replace_route(lab.pids()["n1"], str(plan.node("n2").pod_cidr),
                      bare_ip(str(rb.address)))
        run = subprocess.run([sys.executable, "-m", "harness.cli", "verify", "-t", str(file),
                              "-o", "json"], capture_output=True, text=True, cwd=ROOT)
        assert run.returncode == 1, run.stderr
        import json

        failed = [r for r in json.loads(run.stdout)["results"] if not r["ok"]]
        n2_pods = {p.name for p in plan.pods if p.node == "n2"}
        n1_side = {p.name for p in plan.pods if p.node == "n1"} | {"n1"}
        assert failed
        assert {r["check"] for r in failed} == {"path"}
        assert {(r["src"], r["dst"]) for r in failed} == {
            (s, d) for s in n1_side for d in n2_pods}
        for r in failed:
            assert r["failure"] == "detour", r
            assert "ra" in r["expected"]["hops"] and "rb" in r["observed"]["hops"], r
            assert "rb" in r["detail"] and "ra" in r["detail"], r["detail"]


def test_a_snat_on_a_middle_router_is_located_to_it_by_the_quotes(
        docker_available: None) -> None:
    with deploy("routed.clab.yml") as lab:
        plan = lab.plan
        spine = lab.pids()["spine"]
        toward_r3 = next(i.name for i in plan.node("spine").interfaces
                         if i.peer.startswith("r3:"))
        netns.run_program(spine, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o",
                                  toward_r3, "-s", plan.pod_cidr, "-j", "MASQUERADE"])
        report = lab.verify(checks=["path"])
        failed = [r for r in report.results if not r.ok]
        behind = {p.name for p in plan.pods if p.node == "node3"} | {"node3"}
        # pods of node1 and node2 cross spine toward node3 and its pods
        assert {(r.src, r.dst) for r in failed} == {
            (r.src, r.dst) for r in report.results
            if r.dst in behind and r.src in {p.name for p in plan.pods
                                             if p.node in ("node1", "node2")}}
        for r in failed:
            assert r.to_dict()["failure"] == "rewrite", r.detail
            assert "spine" in r.detail and "first hop whose quote differs" in r.detail, \
                r.detail
