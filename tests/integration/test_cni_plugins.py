"""harness.host.cni with the distribution's reference plugins, against real containers.

A `podlab/node` container plays the node (the plugins run in its namespace) and pause
containers play pods, as a runtime would call the plugins: no lab, no podlab wiring.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.datapath import cni_conf
from harness.errors import CniPluginError
from harness.host import cni, runtime, wiring
from harness.host.runtime import ContainerSpec, Started

pytestmark = pytest.mark.docker

BIN = (cni_conf.DISTRO_BIN_DIR,)
CIDR = "10.123.0.0/24"


@pytest.fixture
def start(docker_available: None) -> Iterator[Callable[[str, str], Started]]:
    if cni.find_plugin("bridge", BIN) is None:
        pytest.fail("containernetworking-plugins is not installed (make setup installs it)")
    lab = f"cni-plugins-{uuid.uuid4().hex[:6]}"
    made: list[Started] = []

    def _start(role: str, image: str) -> Started:
        st = runtime.start(ContainerSpec(name=f"podlab-{lab}-{role}", image=image,
                                         labels={"io.podlab.lab": lab},
                                         sysctls={"net.ipv4.ip_forward": "1"}
                                         if role == "node" else {}))
        made.append(st)
        return st

    yield _start
    runtime.remove_many([s.id for s in made])


def sandbox(pod: Started) -> cni.Sandbox:
    return cni.Sandbox(pod.id, f"/proc/{pod.pid}/ns/net", "eth0",
                       args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", pod.name)))


def link_names(pid: int) -> set[str]:
    return {str(link["name"]) for link in wiring.links(pid)}


def test_bridge_add_and_del(start: Callable[[str, str], Started], tmp_path: Path) -> None:
    node = start("node", "podlab/node")
    pod = start("pod", "podlab/pause")
    chain = cni.Chain.from_conflist(
        cni_conf.builtin_conflist("bridge", [CIDR], str(tmp_path / "ipam")), BIN)
    loopback = cni.Chain.from_conflist(cni_conf.LOOPBACK, BIN)
    cni.add(loopback, cni.Sandbox(pod.id, f"/proc/{pod.pid}/ns/net", "lo"), host_pid=node.pid)
    result = cni.add(chain, sandbox(pod), host_pid=node.pid)

    (ip,) = cni.result_addresses(result, "eth0", f"/proc/{pod.pid}/ns/net")
    assert ip.gateway == "10.123.0.1"
    assert wiring.addresses(pod.pid)["eth0"] == [ip.address]  # what the result says is real
    # the host side is the node's namespace, not the host's
    node_addrs = wiring.addresses(node.pid)
    assert node_addrs["cbr0"] == ["10.123.0.1/24"]
    host_veth = next(i["name"] for i in result["interfaces"] if i["name"].startswith("veth"))
    assert host_veth in link_names(node.pid)
    assert host_veth not in link_names(os.getpid())
    state = tmp_path / "ipam" / chain.name
    assert (state / ip.address.split("/")[0]).read_text().startswith(pod.id)

    cni.delete(chain, sandbox(pod), result, host_pid=node.pid)
    assert host_veth not in link_names(node.pid)
    assert "eth0" not in link_names(pod.pid)
    assert not (state / ip.address.split("/")[0]).exists()
    cni.delete(chain, sandbox(pod), result, host_pid=node.pid)  # DEL twice is no error


def test_ptp_gives_a_host_route_per_pod(start: Callable[[str, str], Started],
                                        tmp_path: Path) -> None:
    node = start("node", "podlab/node")
    pods = [start(f"pod{i}", "podlab/node") for i in range(2)]  # with ping
    chain = cni.Chain.from_conflist(
        cni_conf.builtin_conflist("ptp", [CIDR], str(tmp_path / "ipam")), BIN)
    ips = []
    for pod in pods:
        result = cni.add(chain, sandbox(pod), host_pid=node.pid)
        (ip,) = cni.result_addresses(result)
        ips.append(ip.address.split("/")[0])
    routes = {dst: dev for dst, _, dev in wiring.routes(node.pid)}
    for ip in ips:
        assert routes.get(f"{ip}/32", "").startswith("veth")  # kindnet's /32 per pod
    code, out = runtime.exec(pods[0].name, ["ping", "-c1", "-W2", ips[1]])
    assert code == 0, out  # routed through the node


def test_a_failing_plugin_reports_its_message(start: Callable[[str, str], Started],
                                              tmp_path: Path) -> None:
    node = start("node", "podlab/node")
    pods = [start(f"pod{i}", "podlab/pause") for i in range(2)]
    conf = cni_conf.builtin_conflist("bridge", ["10.123.0.0/30"], str(tmp_path / "ipam"))
    chain = cni.Chain.from_conflist(conf, BIN)
    cni.add(chain, sandbox(pods[0]), host_pid=node.pid)  # .2: the /30's only free address
    with pytest.raises(CniPluginError) as info:
        cni.add(chain, sandbox(pods[1]), host_pid=node.pid)
    assert info.value.plugin == "bridge" and info.value.command == "ADD"
    assert "no IP addresses available" in info.value.msg
