"""harness.datapath.cni: a pod's ADD/DEL as a runtime makes them, and the lab's state
directory (results, leases) that destroy removes. Fake plugins, no namespace entered."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from harness.datapath import cni as pods
from harness.datapath import cni_conf
from harness.errors import CniPluginError
from harness.host import cni as plugins
from harness.host import netns

# Records {plugin, command, ifname, netns, args} to $FAKE_LOG; "ip" gives that address,
# "fail_add" makes ADD fail; writes a lease file into its ipam dataDir like host-local.
FAKE = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ["CNI_COMMAND"]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), cmd, os.environ["CNI_IFNAME"],
                          os.environ["CNI_NETNS"], os.environ["CNI_ARGS"]]) + "\\n")
if cmd == "ADD" and conf.get("fail_add"):
    print(json.dumps({{"code": 11, "msg": "no luck", "details": "none left"}}))
    sys.exit(1)
lease = conf.get("ipam", {{}}).get("dataDir")
if lease and "ip" in conf:
    os.makedirs(lease, exist_ok=True)
    path = os.path.join(lease, conf["ip"].split("/")[0])
    if cmd == "ADD":
        open(path, "w").write(os.environ["CNI_CONTAINERID"])
    elif cmd == "DEL" and os.path.exists(path):
        os.unlink(path)
if cmd == "ADD":
    print(json.dumps({{"cniVersion": conf["cniVersion"],
        "interfaces": [{{"name": "veth0"}}, {{"name": os.environ["CNI_IFNAME"],
                        "sandbox": os.environ["CNI_NETNS"]}}],
        "ips": [{{"address": conf.get("ip", "127.0.0.1/8"), "interface": 1}}]}}))
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("loopback", "fake"):
        p = bin_dir / name
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv(cni_conf.STATE_ENV, str(tmp_path / "state"))
    monkeypatch.setattr(cni_conf, "DISTRO_BIN_DIR", str(bin_dir))
    # "the node's namespace" is this process's: no setns, no root needed
    monkeypatch.setattr(netns, "_setns", lambda fd, nstype: None)
    return bin_dir


def log(env: Path) -> list[list[str]]:
    path = env.parent / "log"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [json.loads(line) for line in lines]


def chain(env: Path, ip: str, **extra: object) -> plugins.Chain:
    conf = {"cniVersion": "1.0.0", "name": "net", "plugins": [
        {"type": "fake", "ip": ip, **extra,
         "ipam": {"type": "host-local", "dataDir": str(cni_conf.ipam_dir("lab", "node1"))}}]}
    return plugins.Chain.from_conflist(conf, [str(env)])


ME = os.getpid()  # stands in for the pod's infra process


def test_attach_is_loopback_then_the_chain_and_records_the_result(env: Path) -> None:
    att = pods.attach("lab", "node1", chain(env, "10.244.0.7/24"), "web", "c1", ME, None)
    assert att.addresses == ("10.244.0.7/24",)
    calls = log(env)
    assert [(c[0], c[1], c[2]) for c in calls] == [("loopback", "ADD", "lo"),
                                                   ("fake", "ADD", "eth0")]
    assert calls[1][3] == f"/proc/{ME}/ns/net"
    uid = pods.pod_uid("lab", "web")
    assert calls[1][4] == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                           f"K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID={uid}")
    assert att.cache.parent == cni_conf.results_dir("lab", "node1")
    assert pods.pod_addresses("lab") == {"web": ("10.244.0.7/24",)}


def test_a_failed_add_is_deleted_before_it_raises(env: Path) -> None:
    with pytest.raises(CniPluginError, match="no luck"):
        pods.attach("lab", "node1", chain(env, "10.244.0.7/24", fail_add=True), "web", "c1",
                    ME, None)
    assert [(c[0], c[1]) for c in log(env)] == [("loopback", "ADD"), ("fake", "ADD"),
                                                ("fake", "DEL")]
    assert pods.attachments("lab") == []


def test_detach_node_deletes_and_forgets(env: Path) -> None:
    pods.attach("lab", "node1", chain(env, "10.244.0.7/24"), "web", "c1", ME, None)
    pods.attach("lab", "node1", chain(env, "10.244.0.8/24"), "db", "c2", ME, None)
    log(env)
    done = pods.detach_node("lab", "node1", ME, {"c1": ME})  # c2's infra is gone
    assert sorted(a.pod for a in done) == ["db", "web"]
    calls = log(env)
    assert sorted((c[0], c[1], c[3]) for c in calls) == sorted([
        ("fake", "DEL", f"/proc/{ME}/ns/net"), ("loopback", "DEL", f"/proc/{ME}/ns/net"),
        ("fake", "DEL", "")])  # no netns for a pod that is gone; no loopback DEL either
    assert pods.attachments("lab") == []


def test_remove_state_deletes_running_ones_and_removes_the_directory(env: Path) -> None:
    pods.attach("lab", "node1", chain(env, "10.244.0.7/24"), "web", "c1", ME, None)
    pods.attach("lab", "node2", chain(env, "10.244.1.7/24"), "db", "c2", ME, None)
    lease = cni_conf.ipam_dir("lab", "node1") / "10.244.0.7"
    assert lease.exists()
    log(env)
    assert pods.has_state("lab")
    problems = pods.remove_state("lab", {"node1": ME}, {"c1": ME})  # node2 crashed
    assert problems == []
    assert [(c[0], c[1]) for c in log(env)] == [("fake", "DEL"), ("loopback", "DEL")]
    assert not lease.exists() and not pods.has_state("lab")
    assert pods.remove_state("lab", {}, {}) == []  # a second destroy finds nothing


def test_remove_state_reports_a_failing_del_and_still_removes(env: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    pods.attach("lab", "node1", chain(env, "10.244.0.7/24"), "web", "c1", ME, None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise CniPluginError("CNI plugin fake DEL failed: busy", plugin="fake", msg="busy")

    monkeypatch.setattr(plugins, "delete", refuse)
    problems = pods.remove_state("lab", {"node1": ME}, {})
    assert problems == ["web: CNI plugin fake DEL failed: busy"]
    assert not pods.has_state("lab")


def test_uid_is_stable_per_lab_and_pod() -> None:
    assert pods.pod_uid("a", "web") == pods.pod_uid("a", "web") != pods.pod_uid("b", "web")
