"""The wire format of probes: crafting, parsing and the kernel filter, without root."""

from __future__ import annotations

import socket

import pytest

from harness.host import bpf
from harness.prove.probe import Crafter, craft, nonce, parse

ETH = b"\x02" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"


@pytest.mark.parametrize("proto", ["udp", "icmp"])
@pytest.mark.parametrize("probe_id", [1, 0xFFFF, 0x1234_5678_9ABC, 2**63 - 1])
def test_fast_crafter_builds_the_same_bytes_as_scapy(proto: str, probe_id: int) -> None:
    fast = Crafter()
    fast(proto, "10.244.0.2", "10.244.9.9", 5, 40000)  # warm a template with other values
    assert fast(proto, "10.244.0.2", "10.244.1.3", probe_id, 40000) == craft(
        proto, "10.244.0.2", "10.244.1.3", probe_id, 40000)


@pytest.mark.parametrize("proto,dport", [("udp", 47000), ("icmp", 0x5678)])
def test_parse_reads_back_what_was_crafted(proto: str, dport: int) -> None:
    frame = ETH + craft(proto, "10.244.0.2", "10.244.1.3", 0x1234_5678, 40000)
    probe_id, reply, name, src, dst, sport, got_dport, ttl = parse(frame)  # type: ignore[misc]
    assert (probe_id, reply, name, src, dst, ttl) == (0x1234_5678, False, proto, "10.244.0.2",
                                                      "10.244.1.3", 64)
    assert got_dport == dport and (sport == 40000 if proto == "udp" else True)


def test_parse_ignores_frames_without_a_nonce() -> None:
    from scapy.layers.inet import IP, UDP

    assert parse(ETH + bytes(IP(dst="10.0.0.1") / UDP() / b"hello, world, not a probe")) is None
    assert parse(b"\x00" * 10) is None


def test_nonce_marks_requests_and_replies() -> None:
    assert nonce(255) == b"PLB00000000000000ff"
    assert nonce(255, reply=True).startswith(b"PLR")


def _filtered(program: list[bpf.Insn], frames: list[bytes]) -> list[bytes]:
    """Run a classic BPF program in the kernel on a socketpair: no root needed."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        bpf.attach(b, program)
        b.settimeout(0.2)
        for frame in frames:
            a.send(frame)
        got = []
        while True:
            try:
                got.append(b.recv(4096))
            except TimeoutError:
                return got


def test_kernel_filter_keeps_only_probe_frames() -> None:
    from scapy.layers.inet import IP, TCP, UDP

    udp = ETH + craft("udp", "10.244.0.2", "10.244.1.3", 7, 40000)
    icmp = ETH + craft("icmp", "10.244.0.2", "10.244.1.3", 8, 0)
    tcp = ETH + bytes(IP(src="10.244.0.2", dst="10.244.1.3") / TCP(dport=47001, flags="PA")
                      / nonce(9))
    noise = ETH + bytes(IP(dst="10.244.1.3") / UDP() / b"not a probe at all")
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
    kept = _filtered(bpf.probe_filter(), [udp, icmp, tcp, noise, arp])
    assert [parse(f)[0] for f in kept] == [7, 8, 9]  # type: ignore[index]


def test_kernel_filter_with_addresses_keeps_only_probes_for_them() -> None:
    to_me = ETH + craft("udp", "10.244.0.2", "10.244.1.3", 1, 40000)
    to_other = ETH + craft("udp", "10.244.0.2", "10.244.1.4", 2, 40000)
    kept = _filtered(bpf.probe_filter(["10.244.1.9", "10.244.1.3"]), [to_me, to_other])
    assert [parse(f)[0] for f in kept] == [1]  # type: ignore[index]


def test_kernel_filter_keeps_tcp_handshakes_only_when_asked() -> None:
    from scapy.layers.inet import IP, TCP

    def segment(flags: str) -> bytes:
        return ETH + bytes(IP(src="10.244.0.2", dst="10.244.1.3")
                           / TCP(sport=40001, dport=47001, flags=flags))

    syn, synack, ack = segment("S"), segment("SA"), segment("A")
    assert _filtered(bpf.probe_filter(), [syn, synack, ack]) == []
    kept = _filtered(bpf.probe_filter(handshakes=True), [syn, synack, ack])
    assert [parse(f)[1] for f in kept] == [False, True]  # type: ignore[index]
    assert all(parse(f)[0] == 0 and parse(f)[2] == "tcp-syn" for f in kept)  # type: ignore[index]
