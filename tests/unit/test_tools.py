"""Pure parts of `podlab scapy`/`capture` and the CLI's help (no Docker, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import InputError
from harness.host.bpf import python_filter
from harness.lab import attach
from harness.model.topology import load_topology
from harness.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]


def packets():
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether

    return {
        "icmp": Ether() / IP(src="10.244.0.2", dst="10.244.1.2") / ICMP(),
        "tcp": Ether() / IP(src="10.244.0.2", dst="172.30.0.9") / TCP(sport=40000, dport=80),
        "udp": Ether() / IP(src="10.244.1.2", dst="10.244.0.2") / UDP(sport=53, dport=5353),
        "arp": Ether() / ARP(psrc="10.244.0.2", pdst="10.244.0.1"),
    }


@pytest.mark.parametrize(("expr", "matching"), [
    ("icmp", {"icmp"}),
    ("tcp or udp", {"tcp", "udp"}),
    ("not ip", {"arp"}),
    ("host 10.244.0.1", {"arp"}),
    ("src host 10.244.0.2", {"icmp", "tcp", "arp"}),
    ("dst net 10.244.0.0/16 and not arp", {"icmp", "udp"}),
    ("port 53", {"udp"}),
    ("dst port 80 || icmp", {"tcp", "icmp"}),
    ("(udp or tcp) and ! src port 53", {"tcp"}),
])
def test_python_filter(expr: str, matching: set[str]) -> None:
    fn = python_filter(expr)
    assert {name for name, pkt in packets().items() if fn(pkt)} == matching


@pytest.mark.parametrize("expr", ["", "icmp and", "host nowhere", "ether proto 0x800",
                                  "(icmp", "port http"])
def test_python_filter_rejects_what_it_does_not_know(expr: str) -> None:
    with pytest.raises(InputError, match="tcpdump"):
        python_filter(expr)


def test_choose_pod_and_node() -> None:
    plan = make_plan(load_topology(ROOT / "topologies" / "minimal.clab.yml"))
    kind, container, iface, ip = attach.choose(plan, None, "a")
    pod = plan.pods[0]
    assert (kind, container, iface, ip) == ("pod", pod.infra, "eth0", pod.ip)
    kind, container, iface, ip = attach.choose(plan, "node2", None)
    assert (kind, iface, ip) == ("node", "eth1", None)
    with pytest.raises(InputError, match="pods: a, b"):
        attach.choose(plan, None, "nope")
    with pytest.raises(InputError, match="exactly one"):
        attach.choose(plan, "node1", "a")


def _leaves(cmd, path=()):
    """(argv path, click command) of every command that runs something."""
    sub = getattr(cmd, "commands", None)
    if not sub:
        yield path, cmd
        return
    for name, child in sub.items():
        yield from _leaves(child, (*path, name))


def _all_commands():
    import typer.main

    return list(_leaves(typer.main.get_command(app)))


@pytest.mark.parametrize(("argv", "cmd"), [
    pytest.param(a, c, id=" ".join(a)) for a, c in _all_commands()])
def test_every_command_help_has_an_example(argv: tuple[str, ...], cmd) -> None:
    assert "Example:" in (cmd.help or ""), f"podlab {' '.join(argv)} --help has no Example:"
    if len(argv) == 1:  # top level: --help itself works and shows it
        res = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "Example:" in res.output
