"""harness.host.wiring checks that fail before touching any namespace."""

from __future__ import annotations

import dataclasses
import os

import pytest

from harness.errors import WiringError
from harness.host import wiring
from harness.host.wiring import NetConfig


def test_netconfig_is_frozen_with_empty_defaults() -> None:
    cfg = NetConfig(addresses=(("eth1", "10.0.0.1/24"),))
    assert cfg.bridges == () and cfg.routes == () and cfg.sysctls == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bridges = ("br0",)  # type: ignore[misc]
    assert hash(cfg) == hash(NetConfig(addresses=(("eth1", "10.0.0.1/24"),)))


@pytest.mark.parametrize("name", ["", "a" * 16, "eth/1", "eth 1"])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(WiringError, match="interface name"):
        wiring.create_veth(os.getpid(), name, os.getpid(), "eth1")


def test_only_net_sysctls() -> None:
    assert wiring._sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    for key in ("kernel.hostname", "net.ipv4/../x", "net..x"):
        with pytest.raises(WiringError):
            wiring._sysctl_path(key)


def test_jitter_without_delay() -> None:
    with pytest.raises(WiringError, match="jitter"):
        wiring.netem(os.getpid(), "eth1", jitter_ms=3)


def test_route_source_rejects_non_ip() -> None:
    with pytest.raises(ValueError):
        wiring.route_source(os.getpid(), "not-an-ip")


def test_pyroute2_is_imported_lazily() -> None:
    import subprocess
    import sys

    code = "import harness.host.wiring, sys; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
