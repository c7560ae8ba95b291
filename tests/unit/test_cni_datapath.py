"""The CNI datapaths' description (pure), their plan ("assigned by CNI" until observed),
the CLI on a CNI lab, and pod_added/pod_removed with fake plugins (no namespace entered)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from podlab_unit_helpers import MINIMAL, broken
from typer.testing import CliRunner

from harness import datapath
from harness.cli import app
from harness.datapath import cni as cni_dp
from harness.datapath import cni_conf
from harness.host import cni as plugins
from harness.host import netns
from harness.model.topology import load_topology, parse_topology
from harness.plan import ASSIGNED_BY_CNI, Plan, make_plan

CLUSTER = "  node-mask: 24\n"
THREE = broken("  db:\n    node: node2\n", "  api:\n    node: node1\n    containers:\n"
               "      - {name: app}\n  db:\n    node: node2\n")  # two pods on node1


def plan_with(cni: str, text: str = THREE) -> Plan:
    return make_plan(parse_topology(broken(CLUSTER, f"{CLUSTER}  cni: {cni}\n", text)))


# A plugin: VERSION answers; ADD gives the address in its config's "ip" (or the next of
# the range, counted in $STATE/n) and records it; DEL drops it. Enough for the datapath.
FAKE = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ["CNI_COMMAND"]
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}}))
    sys.exit(0)
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), cmd, os.environ["CNI_CONTAINERID"],
                          os.environ["CNI_IFNAME"]]) + "\\n")
if cmd == "ADD" and os.environ["CNI_IFNAME"] == "eth0":
    subnet = conf["ipam"]["ranges"][0][0]["subnet"]
    counter = os.path.join(conf["ipam"]["dataDir"], "n")
    os.makedirs(conf["ipam"]["dataDir"], exist_ok=True)
    n = int(open(counter).read()) + 1 if os.path.exists(counter) else 2
    open(counter, "w").write(str(n))
    address = subnet.rsplit(".", 1)[0] + f".{{n}}/24"
    print(json.dumps({{"cniVersion": conf["cniVersion"], "interfaces": [
        {{"name": "eth0", "sandbox": os.environ["CNI_NETNS"]}}],
        "ips": [{{"address": address, "interface": 0}}]}}))
elif cmd == "ADD":
    print(json.dumps({{"cniVersion": conf["cniVersion"]}}))
"""

CONFLIST = {"cniVersion": "1.0.0", "name": "mine", "plugins": [
    {"type": "fake", "ipam": {"type": "host-local",
                              "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}}]}


@pytest.fixture
def chain_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A topology in tmp_path with a conflist whose plugin (and loopback) are fakes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("fake", "loopback", "host-local"):
        p = bin_dir / name
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "net.conflist").write_text(json.dumps(CONFLIST))
    (tmp_path / "lab.clab.yml").write_text(
        broken(CLUSTER, CLUSTER + "  cni: {conflist: net.conflist, bin-dir: bin}\n", THREE))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv(cni_conf.STATE_ENV, str(tmp_path / "state"))
    monkeypatch.setattr(cni_conf, "DISTRO_BIN_DIR", str(bin_dir))  # loopback's home
    monkeypatch.setattr(netns, "_setns", lambda fd, nstype: None)  # "the node" is us
    return tmp_path


# --------------------------------------------------------------------------- description


@pytest.mark.parametrize(("cni", "cls"), [("bridge", cni_dp.BridgeCni), ("ptp", cni_dp.PtpCni)])
def test_builtin_selection_and_description(cni: str, cls: type) -> None:
    plan = plan_with(cni)
    dp = datapath.select(plan)
    assert type(dp) is cls and dp.assigns_addresses
    net = dp.describe(plan)
    assert net.datapath == f"routing: static, cni: {cni}"
    hash(net)  # still immutable to the leaves: the chain is JSON text
    for node in plan.k8s_nodes:
        n = net.node(node.name)
        assert n.bridges == () and all(a[0] != "cbr0" for a in n.addresses)  # the plugin's
        assert n.nat and n.nat[0].source == node.pod_cidr  # podlab's masquerade stays
    for pod in plan.pods:
        p = net.pod(pod.name)
        assert isinstance(p, cni_dp.CniPodNet)
        assert (p.veth, p.node_port, p.addresses, p.routes) == (None, None, (), ())
        assert p.bin_dirs == (cni_conf.DISTRO_BIN_DIR,) and p.lab == plan.lab
        conf = json.loads(p.conflist)
        (plugin,) = conf["plugins"]
        assert plugin["type"] == cni
        assert plugin["ipam"]["ranges"] == [[{"subnet": plan.node(pod.node).pod_cidr}]]
        assert plugin["ipam"]["dataDir"] == str(cni_conf.ipam_dir(plan.lab, pod.node))


def test_ptp_pods_of_a_node_are_one_routed_hop_apart() -> None:
    bridged, p2p = plan_with("bridge"), plan_with("ptp")
    assert bridged.pod_to_pod("web", "api").hops == 0
    assert p2p.pod_to_pod("web", "api").hops == 1
    assert p2p.pod_to_pod("web", "db").hops == bridged.pod_to_pod("web", "db").hops


def test_the_plan_says_assigned_by_cni_until_it_is_observed() -> None:
    plan = plan_with("bridge")
    doc = plan.to_dict()
    assert {p["ip"] for p in doc["pods"]} == {ASSIGNED_BY_CNI}
    assert {p["cidr"] for p in doc["pods"]} == {ASSIGNED_BY_CNI}
    pod_pairs = [e for e in doc["paths"] if e["check"] == "pod-to-pod"]
    assert {e["src_ip"] for e in pod_pairs} == {e["dst_ip"] for e in pod_pairs} == {
        ASSIGNED_BY_CNI}
    seen = plan.with_pod_addresses({"web": "10.244.0.9/24", "db": "10.244.1.7/24"})
    assert seen.pod("web").ip == "10.244.0.9" and seen.pod("db").cidr == "10.244.1.7/24"
    assert seen.pod_to_pod("web", "db").dst_ip == "10.244.1.7"
    assert seen.to_dict()["pods"][0]["ip"] == "10.244.0.9"
    assert make_plan(parse_topology(MINIMAL)).to_dict()["pods"][0]["ip"] == "10.244.0.2"


def test_cli_plan_of_a_cni_lab(tmp_path: Path) -> None:
    topo = tmp_path / "lab.clab.yml"
    topo.write_text(broken(CLUSTER, f"{CLUSTER}  cni: bridge\n"))
    res = CliRunner().invoke(app, ["plan", "-t", str(topo)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert ASSIGNED_BY_CNI in res.output
    res = CliRunner().invoke(app, ["validate", "-t", str(topo)])
    assert res.exit_code == 0 and "valid" in res.output


# --------------------------------------------------------------------------- user chain


def test_conflist_is_rendered_per_node(chain_dir: Path) -> None:
    plan = make_plan(load_topology(chain_dir / "lab.clab.yml"))
    assert (plan.cni, plan.cni_conflist, plan.cni_bin_dir) == ("conflist", "net.conflist", "bin")
    net = datapath.describe(plan)
    for pod in plan.pods:
        p = net.pod(pod.name)
        conf = json.loads(p.conflist)
        assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": plan.node(pod.node).pod_cidr}]]
        assert p.bin_dirs[0] == str(chain_dir / "bin")  # then the distribution's
    assert not datapath.select(plan).bridged(plan)  # a "fake" plugin: routed, not bridged


def test_cli_validate_names_the_conflist_and_field(chain_dir: Path) -> None:
    bad = {**CONFLIST, "plugins": [{"type": "fake"}, {"type": "flannel"}]}
    (chain_dir / "net.conflist").write_text(json.dumps(bad))
    res = CliRunner().invoke(app, ["validate", "-t", str(chain_dir / "lab.clab.yml")])
    assert res.exit_code == 2
    assert str(chain_dir / "net.conflist") in res.output
    assert "plugins[1].type: no executable 'flannel'" in res.output


def test_pod_added_records_and_a_second_add_deletes_first(chain_dir: Path) -> None:
    plan = make_plan(load_topology(chain_dir / "lab.clab.yml"))
    dp = datapath.select(plan)
    net = dp.describe(plan)
    me = os.getpid()
    got = dp.pod_added(me, me, net.pod("web"), "c-web")
    assert got == ("10.244.0.2/24",)
    assert dp.pod_added(me, me, net.pod("api"), "c-api") == ("10.244.0.3/24",)
    assert dp.observed(plan).pod("web").ip == "10.244.0.2"
    assert dp.observed(plan).pod("api").ip == "10.244.0.3"
    (chain_dir / "log").unlink()
    # a runtime restarting the sandbox: DEL of what was there, then ADD
    assert dp.pod_added(me, me, net.pod("web"), "c-web") == ("10.244.0.4/24",)
    calls = [json.loads(line) for line in (chain_dir / "log").read_text().splitlines()]
    assert [(c[0], c[1], c[3]) for c in calls] == [
        ("fake", "DEL", "eth0"), ("loopback", "DEL", "lo"),
        ("loopback", "ADD", "lo"), ("fake", "ADD", "eth0")]
    assert dp.observed(plan).pod("web").ip == "10.244.0.4"
    dp.pod_removed(me, me, net.pod("web"))
    assert set(cni_dp.pod_addresses(plan.lab)) == {"api"}


def test_prepare_clears_a_crashed_labs_state(chain_dir: Path) -> None:
    plan = make_plan(load_topology(chain_dir / "lab.clab.yml"))
    stale = cni_conf.ipam_dir(plan.lab, "node1") / "mine" / "10.244.0.2"
    stale.parent.mkdir(parents=True)
    stale.write_text("a container of a lab that crashed")
    datapath.select(plan).prepare(plan)
    assert not cni_conf.state_dir(plan.lab).exists()


def test_prepare_needs_the_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cni_conf, "DISTRO_BIN_DIR", str(tmp_path))
    monkeypatch.setenv(cni_conf.STATE_ENV, str(tmp_path / "state"))
    plan = plan_with("bridge")
    from harness.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem, match="containernetworking-plugins"):
        datapath.select(plan).prepare(plan)


def test_saved_results_are_what_observed_reads(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv(cni_conf.STATE_ENV, str(tmp_path))
    plan = plan_with("bridge")
    chain = plugins.Chain("podlab-bridge", "1.0.0", ({"type": "bridge"},), ("/x",))
    box = plugins.Sandbox("c1", "/proc/1/ns/net")
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
              "ips": [{"address": "10.244.1.42/24", "interface": 0}]}
    plugins.save_result(cni_conf.results_dir(plan.lab, "node2"), chain, box, result,
                        {"pod": "db", "node": "node2"})
    seen = datapath.select(plan).observed(plan)
    assert seen.pod("db").ip == "10.244.1.42" and seen.pod_ips_known
    assert seen.pod("web").ip == plan.pod("web").ip  # nothing recorded: the plan's guess
