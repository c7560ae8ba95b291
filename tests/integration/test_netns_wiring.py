"""harness.host.netns + harness.host.wiring against real containers (needs Docker and root).

Containers are ``podlab/node`` with network_mode="none" and label
``io.podlab.lab=wiring-test``; every one is removed in the fixture's teardown.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import WiringError
from harness.host import netns, wiring
from harness.host.wiring import NetConfig

LAB = "wiring-test"
LABEL = f"io.podlab.lab={LAB}"

pytestmark = pytest.mark.docker


def _remove_lab(client: Any) -> None:
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        container.remove(force=True)


@pytest.fixture(scope="module")
def client(docker_available: None) -> Iterator[Any]:
    from harness.host import runtime

    client = runtime.client()
    _remove_lab(client)  # leftovers of an interrupted earlier run
    yield client
    _remove_lab(client)


@pytest.fixture
def start(client: Any) -> Iterator[Callable[[str], tuple[str, int]]]:
    """``start(role) -> (container name, pid)``; all removed when the test ends."""
    run = uuid.uuid4().hex[:6]

    def _start(role: str) -> tuple[str, int]:
        container = client.containers.run(
            "podlab/node:latest",
            name=f"podlab-{LAB}-{run}-{role}",
            detach=True,
            network_mode="none",
            cap_add=["NET_ADMIN", "NET_RAW"],
            labels={"io.podlab.lab": LAB},
        )
        container.reload()
        return container.name, int(container.attrs["State"]["Pid"])

    try:
        yield _start
    finally:
        _remove_lab(client)


def host_netdevs() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def sh(name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", name, *cmd], capture_output=True, text=True, timeout=30, check=False
    )


def ping(name: str, ip: str) -> bool:
    return sh(name, "ping", "-c", "1", "-W", "2", ip).returncode == 0


def test_veth_pair_addresses_and_routes(start: Callable[[str], tuple[str, int]]) -> None:
    before = host_netdevs()
    a, pa = start("a")
    b, pb = start("b")

    wiring.create_veth(pa, "eth1", pb, "eth1", mtu=1400)
    wiring.configure(pa, NetConfig(addresses=(("eth1", "10.99.0.1/24"),)))
    cfg_b = NetConfig(
        addresses=(("eth1", "10.99.0.2/24"), ("lo", "10.99.9.9/32")),
        routes=(("default", "10.99.0.1"),),
    )
    wiring.configure(pb, cfg_b)
    wiring.configure(pb, cfg_b)  # re-applying is tolerated (EEXIST)

    assert ping(a, "10.99.0.2")
    assert ping(b, "10.99.0.1")
    assert wiring.addresses(pa)["eth1"] == ["10.99.0.1/24"]
    assert sorted(wiring.addresses(pb)["lo"]) == ["10.99.9.9/32", "127.0.0.1/8"]
    assert wiring.route_source(pa, "10.99.0.2") == "10.99.0.1"
    assert wiring.route_source(pb, "192.0.2.1") == "10.99.0.2"  # via the default route
    assert ("default", "10.99.0.1", "eth1") in wiring.routes(pb)
    assert ("10.99.0.0/24", None, "eth1") in wiring.routes(pa)
    links_a = {link["name"]: link for link in wiring.links(pa)}
    assert links_a["eth1"]["kind"] == "veth" and links_a["eth1"]["mtu"] == 1400
    assert all(link["up"] for link in wiring.links(pb))  # the peer end was brought up in B
    # The pair never existed on the host side.
    assert host_netdevs() == before


def test_switch_bridge_router_and_link_down(start: Callable[[str], tuple[str, int]]) -> None:
    """a -- sw(br0) -- r -- c: L2 through a bridge, then one routed hop."""
    a, pa = start("a")
    _, psw = start("sw")
    _, pr = start("r")
    _, pc = start("c")
    wiring.create_veth(pa, "eth1", psw, "eth1")
    wiring.create_veth(pr, "eth1", psw, "eth2")
    wiring.create_veth(pr, "eth2", pc, "eth1")
    wiring.configure(psw, NetConfig(bridges=("br0",), ports=(("eth1", "br0"), ("eth2", "br0"))))
    wiring.configure(
        pa,
        NetConfig(addresses=(("eth1", "10.98.0.1/24"),), routes=(("10.97.0.0/24", "10.98.0.2"),)),
    )
    wiring.configure(
        pr,
        NetConfig(
            addresses=(("eth1", "10.98.0.2/24"), ("eth2", "10.97.0.1/24")),
            sysctls=(("net.ipv4.ip_forward", "1"),),
        ),
    )
    wiring.configure(
        pc, NetConfig(addresses=(("eth1", "10.97.0.2/24"),), routes=(("default", "10.97.0.1"),))
    )

    masters = {link["name"]: link["master"] for link in wiring.links(psw)}
    assert masters["eth1"] == masters["eth2"] == "br0"
    assert wiring.sysctl(pr, "net.ipv4.ip_forward") == "1"
    assert ping(a, "10.97.0.2")
    ttl_line = sh(a, "ping", "-c", "1", "-W", "2", "10.97.0.2").stdout
    assert "ttl=63" in ttl_line  # exactly one router; the bridge does not decrement TTL

    wiring.link_set(pr, "eth2", False)
    assert not ping(a, "10.97.0.2")
    wiring.link_set(pr, "eth2", True)
    assert ping(a, "10.97.0.2")


def test_socket_and_thread_stay_in_their_namespaces(
    start: Callable[[str], tuple[str, int]],
) -> None:
    _a, pa = start("a")
    b, pb = start("b")
    wiring.create_veth(pa, "eth1", pb, "eth1")
    wiring.configure(pa, NetConfig(addresses=(("eth1", "10.96.0.1/24"),)))
    wiring.configure(pb, NetConfig(addresses=(("eth1", "10.96.0.2/24"),)))

    host_ns = os.stat("/proc/self/ns/net").st_ino
    inside = netns.run_in_netns(pa, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
    assert inside == netns.netns_inode(pa) != host_ns
    assert os.stat("/proc/self/ns/net").st_ino == host_ns  # the caller never moved
    assert not netns.same_netns(pa, pb)

    # 10.96.0.1 exists only inside a's namespace: binding proves where the socket lives.
    sock = netns.socket_in_netns(pa, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.bind(("10.96.0.1", 0))
        sock.listen(1)
        sock.settimeout(5)
        port = sock.getsockname()[1]
        # busybox nc (Debian's build) speaks TCP only (no -u), and exits once we close.
        client_proc = subprocess.Popen(
            ["docker", "exec", b, "sh", "-c", f"echo hello | nc -w 2 10.96.0.1 {port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            conn, peer = sock.accept()
            with conn:
                conn.settimeout(5)
                data = conn.recv(100)
        finally:
            client_proc.wait(timeout=10)
    assert data == b"hello\n" and peer[0] == "10.96.0.2"

    with pytest.raises(ZeroDivisionError):
        netns.run_in_netns(pa, lambda: 1 / 0)  # the worker's exception reaches the caller


def test_shaping_and_errors(start: Callable[[str], tuple[str, int]]) -> None:
    _, pa = start("a")
    _, pb = start("b")
    wiring.create_veth(pa, "eth1", pb, "eth1")

    wiring.netem(pa, "eth1", rate_mbit=5)
    assert wiring.qdisc(pa, "eth1") == "tbf"
    try:
        wiring.netem(pa, "eth1", delay_ms=20, jitter_ms=2, rate_mbit=5)
        assert wiring.qdisc(pa, "eth1") == "netem"
    except WiringError as exc:  # kernels built without sch_netem (e.g. the dev VM)
        assert "sch_netem" in str(exc)
    wiring.clear_qdisc(pa, "eth1")
    wiring.clear_qdisc(pa, "eth1")  # nothing left to clear: still fine
    assert wiring.qdisc(pa, "eth1") not in ("tbf", "netem")

    with pytest.raises(WiringError, match=r"pid \d+.*nope"):
        wiring.link_set(pa, "nope", True)
    with pytest.raises(WiringError, match="eth1"):
        wiring.create_veth(pa, "eth1", pb, "eth9")  # eth1 already exists in a
    with pytest.raises(WiringError, match="unreachable"):
        wiring.route_source(pa, "192.0.2.1")


def test_removing_containers_removes_links(client: Any) -> None:
    """After a lab is gone, nothing of it is left on the host."""
    assert not client.containers.list(all=True, filters={"label": LABEL})
    assert not [n for n in host_netdevs() if n.startswith(("veth", "eth1", "br0"))]
    assert Path("/proc/self/ns/net").exists()
