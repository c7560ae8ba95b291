"""Pods wired by real CNI plugins (Debian's containernetworking-plugins), called as a runtime
calls them: the three example labs verify, the pods' addresses are the plugins', a chain
that masquerades is caught exactly, a failing plugin fails the deploy and rolls it back,
a node restart is a DEL then an ADD, and destroy leaves no lease, veth or iptables rule.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import Lab
from harness import labels as L
from harness.cli import app
from harness.datapath import cni as cni_dp
from harness.datapath import cni_conf
from harness.errors import CniPluginError
from harness.host import runtime, wiring
from harness.lab import plan_of, running
from harness.prove.verify import CHECKS

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("cni-bridge", "cni-ptp", "cni-chain")
DOCKER_VETH = re.compile(r"veth[0-9a-f]{7}$")  # other tenants' Docker bridge networks


@pytest.fixture(scope="session")
def plugins_installed(docker_available: None) -> None:
    if cni_dp.plugins.find_plugin("bridge", (cni_conf.DISTRO_BIN_DIR,)) is None:
        pytest.fail("containernetworking-plugins is not installed (make setup installs it)")


def copy_example(stem: str, dest: Path, edit: dict[str, str] | None = None) -> Path:
    """The example under a unique lab name in `dest`, its conflist next to it (edited)."""
    name = f"ct{uuid.uuid4().hex[:5]}-{stem}"
    text = (ROOT / "topologies" / f"{stem}.clab.yml").read_text()
    path = dest / f"{name}.clab.yml"
    path.write_text(text.replace(f"name: {stem}", f"name: {name}", 1))
    conflist = ROOT / "topologies" / f"{stem}.conflist"
    if conflist.exists():
        body = conflist.read_text()
        for old, new in (edit or {}).items():
            assert old in body
            body = body.replace(old, new)
        (dest / conflist.name).write_text(body)
    return path


def host_state() -> tuple[frozenset[str], tuple[str, ...]]:
    devs = frozenset(n for n in os.listdir("/sys/class/net") if not DOCKER_VETH.match(n))
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    rules = tuple(sorted(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines()
                         if line and not line.startswith("#")))
    return devs, rules


@pytest.fixture(scope="module", params=EXAMPLES)
def lab(request: pytest.FixtureRequest, plugins_installed: None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    path = copy_example(request.param, tmp_path_factory.mktemp(request.param))
    with Lab.deploy(path) as deployed:
        yield deployed


def test_example_verifies_every_check(lab: Lab) -> None:
    report = lab.verify()
    assert report.ok, [(r.check, r.src, r.dst, r.proto, r.detail) for r in report.results
                       if not r.ok]
    assert {r.check for r in report.results} >= {"pod-identity", "intra-pod", "pod-to-pod",
                                                 "node-to-pod", "pod-to-node",
                                                 "pod-to-external"}


def test_the_pods_addresses_are_the_plugins(lab: Lab) -> None:
    plan = lab.observed_plan()
    assert plan.pod_ips_known and not lab.plan.pod_ips_known
    recorded = cni_dp.pod_addresses(lab.name)
    assert set(recorded) == {p.name for p in plan.pods}
    pids = lab.pids()
    rows = runtime.containers_of(lab.name)
    inspected = {p["name"]: p["ip"] for p in lab.inspect()["pods"]}
    for pod in plan.pods:
        (cidr,) = recorded[pod.name]
        assert pod.cidr == cidr
        assert ipaddress_in(cidr, plan.node(pod.node).pod_cidr)
        assert wiring.addresses(pids[pod.name])["eth0"] == [cidr]  # what the result said
        assert inspected[pod.name] == pod.ip
        for row in rows:
            if row.labels.get(L.POD) != pod.name:
                continue
            if row.role == L.ROLE_INFRA:  # created before the ADD: no address to carry
                assert L.IP not in row.labels
            else:
                assert (row.labels[L.IP], row.labels[L.CIDR]) == (pod.ip, cidr)


def ipaddress_in(cidr: str, network: str | None) -> bool:
    import ipaddress

    return network is not None and ipaddress.ip_interface(cidr) in ipaddress.ip_network(network)


def test_the_plugins_run_in_the_nodes_namespace(lab: Lab) -> None:
    plan = lab.plan
    pids = lab.pids()
    for node in plan.k8s_nodes:
        links = {str(x["name"]) for x in wiring.links(pids[node.name])}
        host_ends = {n for n in links if n.startswith("veth")}
        assert len(host_ends) == sum(p.node == node.name for p in plan.pods)
        if plan.cni == "bridge":
            assert "cbr0" in links
        if plan.cni == "ptp":  # kindnet's /32 per pod, no bridge
            routes = {dst for dst, _, dev in wiring.routes(pids[node.name])
                      if dev and dev.startswith("veth")}
            assert routes == {f"{p.ip}/32" for p in lab.observed_plan().pods
                              if p.node == node.name}
            assert "cbr0" not in links


# --------------------------------------------------------------------------- teardown


def test_destroy_deletes_every_pod_and_leaves_nothing(plugins_installed: None,
                                                     tmp_path: Path) -> None:
    before = host_state()
    path = copy_example("cni-chain", tmp_path)
    lab = Lab.deploy(path)
    try:
        state = cni_conf.state_dir(lab.name)
        leases = list(state.glob("*/ipam/lab-net/10.*"))
        assert len(leases) == len(lab.plan.pods)
        pids = lab.pids()
        node1 = pids["node1"]
        def per_pod_devices() -> list[str]:  # the pods' host ends, bandwidth's ifb devices
            return [n for n in (str(x["name"]) for x in wiring.links(node1))
                    if n.startswith(("veth", "bwp"))]

        pods_on_node1 = sum(p.node == "node1" for p in lab.plan.pods)
        assert len(per_pod_devices()) == 2 * pods_on_node1
        # destroy's first half: a DEL per pod, in the nodes' namespaces
        assert running.release_network_state(lab.name) == []
        assert not state.exists()  # leases and results
        assert per_pod_devices() == []
    finally:
        lab.destroy()
    assert runtime.containers_of(lab.name) == []
    assert not cni_conf.state_dir(lab.name).exists()
    after = host_state()
    assert after[0] <= before[0], after[0] - before[0]  # no new host netdev
    assert not [r for r in set(after[1]) - set(before[1]) if "CNI" in r]


def test_destroy_after_the_containers_vanished(plugins_installed: None,
                                               tmp_path: Path) -> None:
    """A crash: the containers are gone (docker rm -f), the leases are not; destroy by
    name removes them."""
    lab = Lab.deploy(copy_example("cni-bridge", tmp_path))
    try:
        runtime.remove_many(runtime.containers_of(lab.name))
        assert cni_dp.has_state(lab.name)
    finally:
        lab.destroy()
    assert not cni_dp.has_state(lab.name)


# --------------------------------------------------------------------------- faults


def test_node_restart_is_del_then_add(plugins_installed: None, tmp_path: Path) -> None:
    lab = Lab.deploy(copy_example("cni-bridge", tmp_path))
    try:
        before = cni_dp.pod_addresses(lab.name)
        lab.fault("node-stop", "node1")
        made = lab.fault("node-start", "node1")
        on_node1 = sorted(p.name for p in lab.plan.pods if p.node == "node1")
        assert sorted(m.split(":")[0] for m in made if m.endswith(":eth0")) == on_node1
        after = cni_dp.pod_addresses(lab.name)
        assert set(after) == set(before)
        # DEL released the old leases: one lease per pod, none left over
        leases = list(cni_conf.ipam_dir(lab.name, "node1").glob("podlab-bridge/10.*"))
        assert sorted(p.name for p in leases) == sorted(
            after[p][0].split("/")[0] for p in on_node1)
        report = lab.verify()
        assert report.ok, [(r.check, r.src, r.dst, r.detail) for r in report.results
                           if not r.ok]
    finally:
        lab.destroy()


# --------------------------------------------------------------------------- failures


def test_a_chain_that_masquerades_fails_exactly_the_cross_node_results(
        plugins_installed: None, tmp_path: Path) -> None:
    """bridge with ipMasq: true (the classic misconfiguration): the cross-node pod-to-pod
    and pod-to-node results fail as "source rewritten ... at <the sender's node>", and the
    pod-identity of each pod whose peers saw its node's address instead; nothing else."""
    path = copy_example("cni-chain", tmp_path, {'"ipMasq": false': '"ipMasq": true'})
    with Lab.deploy(path) as lab:
        # every check but path, whose own answer to a NAT is proven in test_path.py
        others = [a for c in CHECKS if c != "path" for a in ("--check", c)]
        res = CliRunner().invoke(app, ["verify", "-t", str(path), "-o", "json", *others])
        assert res.exit_code == 1, res.output
        results = [json.loads(line) for line in res.stdout.splitlines()
                   if line.startswith('{"check"')] or json.loads(res.stdout)["results"]
        plan = lab.observed_plan()
        node_of = {p.name: p.node for p in plan.pods}
        expected = set()
        for r in results:
            cross = (r["check"] == "pod-to-pod" and node_of[r["src"]] != node_of[r["dst"]]) \
                or (r["check"] == "pod-to-node" and node_of[r["src"]] != r["dst"])
            if cross:
                expected.add((r["check"], r["src"], r["dst"], r["proto"]))
        # every pod has a peer on another node, which saw it as its node's address
        expected |= {("pod-identity", p.name, p.name, "-") for p in plan.pods}
        failed = {(r["check"], r["src"], r["dst"], r["proto"]) for r in results if not r["ok"]}
        assert failed == expected
        for r in results:
            if r["ok"]:
                continue
            node = plan.node(node_of[r["src"]])
            if r["check"] == "pod-identity":
                assert f"peers saw it as {node.address} (" in r["detail"], r
            else:
                assert re.search(rf"source rewritten {re.escape(plan.pod(r['src']).ip)} -> "
                                 rf"{re.escape(node.address or '')} at {node.name}\b",
                                 r["detail"]), r


def test_a_failing_plugin_fails_the_deploy_and_rolls_back(plugins_installed: None,
                                                          tmp_path: Path) -> None:
    # every node's range is one /30: node1's second pod finds no free address
    ranges = ('"ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}'
              '[{"subnet": "{{$range}}"}]{{end}}]')
    path = copy_example("cni-chain", tmp_path, {ranges: '"ranges": [[{"subnet": '
                                                        '"10.244.0.0/30"}]]'})
    name = plan_of(path).lab
    with pytest.raises(CniPluginError) as info:
        Lab.deploy(path)
    err = info.value
    assert (err.plugin, err.command) == ("bridge", "ADD")
    assert "no IP addresses available" in err.msg
    assert err.msg in str(err) and "rolled back" in str(err)
    assert err.exit_code == 3
    assert runtime.containers_of(name) == []
    assert not cni_dp.has_state(name)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_killed_deploy_leaves_no_lease(plugins_installed: None, tmp_path: Path,
                                         sig: signal.Signals) -> None:
    """Killed while pods are being added: SIGINT rolls back (DELs, state removed), and
    after SIGKILL `podlab destroy --name` does; the host is as it was."""
    before = host_state()
    path = copy_example("cni-bridge", tmp_path)
    name = plan_of(path).lab
    cli = [sys.executable, "-m", "harness.cli"]
    proc = subprocess.Popen([*cli, "deploy", "-t", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline \
                and not cni_dp.attachments(name):  # the first pod is added
            time.sleep(0.01)
        assert proc.poll() is None, "deploy finished before a pod was added"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        if sig == signal.SIGKILL:
            assert cni_dp.has_state(name)  # nobody ran the DELs
            time.sleep(1.0)  # the daemon finishes a create the dead client had in flight
            done = subprocess.run([*cli, "destroy", "--name", name], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
        else:
            assert proc.returncode == 130, stderr.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run([*cli, "destroy", "--name", name], cwd=ROOT, capture_output=True,
                       timeout=120, check=False)
    assert runtime.containers_of(name) == []
    assert not cni_dp.has_state(name)
    after = host_state()
    assert after[0] <= before[0] and not set(after[1]) - set(before[1])
