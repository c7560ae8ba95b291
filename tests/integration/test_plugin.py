"""The pytest plugin (harness.pytest_plugin) on a real lab, and the tools built on it:
`podlab capture` and `podlab scapy` as a user runs them.

The module's lab comes from the `podlab_lab` fixture (marker below): deployed once,
destroyed after the last test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from harness.host import runtime
from harness.lab import running

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "topologies" / "minimal.clab.yml"
HOST_NETNS = os.stat("/proc/self/ns/net").st_ino

pytestmark = [pytest.mark.docker, pytest.mark.podlab_topology(MINIMAL)]
pytest_plugins = ("pytester",)


def pod_ip(podlab_lab, name: str) -> str:
    return next(p.ip for p in podlab_lab.plan.pods if p.name == name)


def topo_file(podlab_lab, tmp_path: Path) -> Path:
    """A copy of minimal named like the fixture's lab, so the CLI (-t FILE) finds it."""
    data = yaml.safe_load(MINIMAL.read_text())
    data["name"] = podlab_lab.name
    path = tmp_path / f"{podlab_lab.name}.clab.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def podlab(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], text=True,
                          capture_output=True, cwd=ROOT, timeout=60, **kw)


def test_lab_is_deployed_with_a_unique_name(podlab_lab) -> None:
    assert podlab_lab.name.startswith("minimal-") and podlab_lab.name != "minimal"
    assert set(podlab_lab.pids()) == {"node1", "node2", "a", "b"}
    assert runtime.containers_of(podlab_lab.name)


def test_verify_passes(podlab_lab) -> None:
    report = podlab_lab.verify()
    assert report.ok, [r.detail for r in report.results if not r.ok]
    assert {r.check for r in report.results} >= {"pod-identity", "pod-to-pod"}


def test_exec_in_pod_and_node(podlab_lab) -> None:
    code, out = podlab_lab.exec(["ping", "-c1", "-W2", pod_ip(podlab_lab, "b")], pod="a")
    assert code == 0, out
    res = podlab_lab.exec(["hostname"], node="node1", check=True)
    assert res.output.strip() == "node1"


def test_capture_sees_ping(podlab_lab, tmp_path: Path) -> None:
    pcap = tmp_path / "b.pcap"
    with podlab_lab.capture(pod="b", bpf="icmp", count=2, timeout=10, path=pcap) as cap:
        podlab_lab.exec(["ping", "-c1", "-W2", pod_ip(podlab_lab, "b")], pod="a", check=True)
    from scapy.all import ICMP, rdpcap

    kinds = sorted(p[ICMP].type for p in cap.packets)
    assert kinds == [0, 8]  # echo-reply, echo-request, unchanged pod addresses
    assert len(rdpcap(str(pcap))) == 2


def test_cli_capture_writes_pcap(podlab_lab, tmp_path: Path) -> None:
    topo, pcap = topo_file(podlab_lab, tmp_path), tmp_path / "cli.pcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "capture", "-t", str(topo), "--pod", "b",
         "-w", str(pcap), "--count", "4", "--filter", "icmp", "--timeout", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            # keep pinging until the capture (started in parallel) has its 4 packets
            podlab_lab.exec(["ping", "-c1", "-W1", pod_ip(podlab_lab, "b")], pod="a")
            time.sleep(0.2)
        _out, err = proc.communicate(timeout=25)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "4 packets written" in err
    from scapy.all import ICMP, IP, rdpcap

    packets = rdpcap(str(pcap))
    assert len(packets) == 4 and all(ICMP in p for p in packets)
    assert {p[IP].src for p in packets} == {pod_ip(podlab_lab, "a"), pod_ip(podlab_lab, "b")}


def test_cli_scapy_session_is_inside_the_pod(podlab_lab, tmp_path: Path) -> None:
    topo = topo_file(podlab_lab, tmp_path)
    script = ("print('ADDR', get_if_addr(conf.iface))\n"
              "print('IFACES', sorted(str(i) for i in conf.ifaces))\n")
    res = podlab("scapy", "-t", str(topo), "--pod", "a", input=script)
    assert res.returncode == 0, res.stderr
    assert f"ADDR {pod_ip(podlab_lab, 'a')}" in res.stdout
    assert "IFACES ['eth0', 'lo']" in res.stdout
    node = podlab("scapy", "-t", str(topo), "--node", "node2",
                  input="print('IFACE', conf.iface, get_if_addr(conf.iface))\n")
    assert node.returncode == 0, node.stderr
    node2 = next(n for n in podlab_lab.plan.nodes if n.name == "node2")
    eth1 = next(i for i in node2.interfaces if i.name == "eth1")
    assert f"IFACE eth1 {eth1.address.split('/')[0]}" in node.stdout
    # only the child entered the pod: this process is still where it started
    assert os.stat("/proc/self/ns/net").st_ino == HOST_NETNS
    assert os.stat(f"/proc/{podlab_lab.pids()['a']}/ns/net").st_ino != HOST_NETNS


def test_podlab_keep_keeps_a_failed_lab(pytester: pytest.Pytester,
                                        podlab_images: list[str]) -> None:
    name = f"kp{uuid.uuid4().hex[:6]}-min"
    pytester.makepyfile(f"""
        import pytest
        pytestmark = pytest.mark.podlab_topology({str(MINIMAL)!r}, name={name!r})

        def test_fails(podlab_lab):
            assert podlab_lab.name == {name!r}
            assert False, "on purpose"
    """)
    try:
        result = pytester.runpytest_subprocess("--podlab-keep", "-p", "no:cacheprovider")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"*podlab destroy --name {name}*"])
        assert runtime.containers_of(name), "--podlab-keep removed the failed lab"
        # without --podlab-keep the same failure removes the lab
        running.destroy(name)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(failed=1)
        assert not runtime.containers_of(name)
    finally:
        running.destroy(name)
