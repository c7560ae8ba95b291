"""The wire format of probes: building, parsing and the kernel filters, without root."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from podlab_unit_helpers import missing

from harness.host import bpf
from harness.prove.probe import (
    icmp6_echo,
    icmp_echo,
    icmp_id,
    new_ids,
    nonce,
    parse,
    parse_icmp6,
    parse_ip,
    read_nonce,
)

ETH = b"\x02" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
UDP_PORT = 47000


def craft(proto: str, src: str, dst: str, probe_id: int, sport: int) -> bytes:
    """A probe packet as the sending kernel puts it on the wire, built by scapy."""
    from scapy.layers.inet import ICMP, IP, UDP

    ip = IP(src=src, dst=dst, ttl=64)
    if proto == "udp":
        return bytes(ip / UDP(sport=sport, dport=UDP_PORT) / nonce(probe_id))
    return bytes(ip / ICMP(type=8, id=probe_id & 0xFFFF, seq=(probe_id >> 16) & 0xFFFF)
                 / nonce(probe_id))


@pytest.mark.parametrize("probe_id", [1, 0xFFFF, 0x1234_5678_9ABC, 2**62 - 1])
def test_icmp_echo_is_the_echo_request_scapy_builds(probe_id: int) -> None:
    assert icmp_echo(probe_id) == craft("icmp", "10.0.0.1", "10.0.0.2", probe_id, 0)[20:]


def test_probe_ids_start_at_a_random_point_in_every_process() -> None:
    """ICMP ids (the low 16 bits) must not repeat a recent run's: conntrack would reuse
    that run's entry and hide a NAT rule added since."""
    code = "from harness.prove.probe import new_ids; print(next(new_ids()))"
    firsts = {int(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                 text=True, check=True).stdout) for _ in range(3)}
    assert len(firsts) == 3
    assert len({icmp_id(i) for i in firsts}) == 3
    a, b = new_ids(), new_ids()
    assert next(a) != next(b) and next(a) < 2**62


def test_read_nonce() -> None:
    assert read_nonce(nonce(0xABC)) == (0xABC, False)
    assert read_nonce(nonce(0xABC, reply=True) + b"trailing") == (0xABC, True)
    assert read_nonce(b"PLBnot-hex-digits!!") is None
    assert read_nonce(b"hello") is None


def test_parse_ip_reads_a_raw_sockets_packet() -> None:
    packet = craft("icmp", "10.244.0.2", "10.244.1.3", 0x1234_5678, 0)
    assert parse_ip(packet) == (0x1234_5678, False, "icmp", "10.244.0.2", "10.244.1.3",
                                0x5678, 0x5678, 64)


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


def test_icmp_socket_filter_keeps_only_probe_echoes() -> None:
    from scapy.layers.inet import ICMP, IP

    request = craft("icmp", "10.244.0.2", "10.244.1.3", 7, 0)
    reply = bytearray(request)
    reply[20] = 0  # echo reply
    plain_ping = bytes(IP(dst="10.244.1.3") / ICMP() / b"abcdefghijklmnopqrstuvwxyz")
    unreachable = bytes(IP(dst="10.244.1.3") / ICMP(type=3, code=3) / request)
    kept = _filtered(bpf.icmp_probe_filter(), [request, bytes(reply), plain_ping, unreachable])
    assert [parse_ip(p)[:2] for p in kept] == [(7, False), (7, True)]  # type: ignore[index]


def _filtered(program: list[bpf.Insn], frames: list[bytes]) -> list[bytes]:
    """Run a classic BPF program in the kernel on a socketpair: no root needed."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        bpf.attach(b, program)
        b.setblocking(False)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        got = []
        for frame in frames:  # a datagram is filtered and queued within send()
            a.send(frame)
            while True:
                try:
                    got.append(b.recv(4096))
                except BlockingIOError:
                    break
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


def test_a_user_expression_compiled_by_libpcap_goes_through_the_same_attach() -> None:
    try:
        program = bpf.compile_expr("icmp")
    except ImportError:
        missing("no libpcap on this host (make setup installs tcpdump)")
    icmp = ETH + craft("icmp", "10.244.0.2", "10.244.1.3", 8, 0)
    udp = ETH + craft("udp", "10.244.0.2", "10.244.1.3", 7, 40000)
    assert _filtered(program, [udp, icmp]) == [icmp]


@pytest.mark.parametrize("share", [0x0001, 0x8000, 0x00FF, 0xA5C3, 0x7FFE])
def test_a_share_keeps_exactly_the_probe_ids_of_its_residues(share: int) -> None:
    from scapy.layers.inet import IP, TCP

    ids = [0x1230 + i for i in range(32)]  # every last hex digit, digits and letters
    frames = []
    for probe_id in ids:
        frames.append(ETH + craft("udp", "10.244.0.2", "10.244.1.3", probe_id, 40000))
        frames.append(ETH + craft("icmp", "10.244.0.2", "10.244.1.3", probe_id, 0))
        frames.append(ETH + bytes(IP(src="10.244.0.2", dst="10.244.1.3")
                                  / TCP(dport=47001, flags="PA") / nonce(probe_id, True)))
    packets = [craft("icmp", "10.244.0.2", "10.244.1.3", probe_id, 0) for probe_id in ids]
    mine = [i for i in ids if share >> bpf.residue(i) & 1]
    assert mine == [i for i in ids if share >> (i % 16) & 1]
    kept = _filtered(bpf.probe_filter(share=share), frames)
    assert sorted(parse(f)[0] for f in kept) == sorted(mine * 3)  # type: ignore[index]
    local = _filtered(bpf.probe_filter(["10.244.1.3"], share=share), frames)
    assert len(local) == len(kept)
    icmp = _filtered(bpf.icmp_probe_filter(share), packets)
    assert [parse_ip(p)[0] for p in icmp] == mine  # type: ignore[index]


def test_a_share_is_a_non_empty_mask_of_the_residues() -> None:
    for bad in (0, 1 << 16, -1):
        with pytest.raises(ValueError, match="mask"):
            bpf.probe_filter(share=bad)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_shares_cover_every_residue_once_and_the_callers_is_the_smallest(n: int) -> None:
    from harness.prove.shard import shares

    masks = shares(n)
    assert len(masks) == n and all(masks)
    assert sum(masks) == (1 << bpf.RESIDUES) - 1
    assert all(a & b == 0 for i, a in enumerate(masks) for b in masks[i + 1:])
    sizes = [bin(m).count("1") for m in masks]
    assert sizes[0] == min(sizes)


# --------------------------------------------------------------------------- IPv6

ETH6 = ETH[:12] + b"\x86\xdd"


def craft6(proto: str, src: str, dst: str, probe_id: int, sport: int, hlim: int = 64,
           reply: bool = False) -> bytes:
    """An IPv6 probe packet as the sending kernel puts it on the wire, built by scapy."""
    from scapy.layers.inet import TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6

    ip = IPv6(src=src, dst=dst, hlim=hlim)
    if proto == "udp":
        return bytes(ip / UDP(sport=sport, dport=UDP_PORT) / nonce(probe_id, reply))
    if proto == "tcp":
        return bytes(ip / TCP(sport=sport, dport=47001, flags="PA") / nonce(probe_id, reply))
    echo = ICMPv6EchoReply if reply else ICMPv6EchoRequest
    return bytes(ip / echo(id=probe_id & 0xFFFF, seq=(probe_id >> 16) & 0xFFFF)
                 / nonce(probe_id))


@pytest.mark.parametrize("probe_id", [1, 0xFFFF, 0x1234_5678_9ABC])
def test_icmp6_echo_is_scapys_but_for_the_checksum_the_kernel_writes(probe_id: int) -> None:
    packet = bytearray(craft6("icmp", "fd00::2", "fd00:1::2", probe_id, 0)[40:])
    packet[2:4] = b"\0\0"
    assert icmp6_echo(probe_id) == bytes(packet)


@pytest.mark.parametrize(("proto", "dport"), [("udp", UDP_PORT), ("tcp", 47001),
                                              ("icmp", 0x5678)])
def test_parse_reads_an_ipv6_probe_with_its_hop_limit(proto: str, dport: int) -> None:
    frame = ETH6 + craft6(proto, "fd00:10:244::2", "fd00:10:244:1::2", 0x1234_5678, 40000,
                          hlim=62)
    probe_id, reply, name, src, dst, sport, got_dport, ttl = parse(frame)  # type: ignore[misc]
    assert (probe_id, reply, name, src, dst, got_dport, ttl) == (
        0x1234_5678, False, proto, "fd00:10:244::2", "fd00:10:244:1::2", dport, 62)
    assert sport == (40000 if proto != "icmp" else 0x5678)
    echo_reply = ETH6 + craft6("icmp", "fd00:10:244:1::2", "fd00:10:244::2", 9, 0, reply=True)
    assert parse(echo_reply)[:2] == (9, True)  # type: ignore[index]


def test_parse_icmp6_reads_what_a_raw_icmpv6_socket_gets() -> None:
    message = craft6("icmp", "fd00::2", "fd00::3", 0x42, 0)[40:]
    assert parse_icmp6(message, "fd00::2", "fd00::3", 63) == (
        0x42, False, "icmp", "fd00::2", "fd00::3", 0x42, 0x42, 63)
    from scapy.layers.inet6 import ICMPv6ND_NS

    assert parse_icmp6(bytes(ICMPv6ND_NS(tgt="fd00::3")) + b"PLB", "fd00::2", "fd00::3",
                       255) is None


def test_kernel_filter_keeps_ipv6_probe_frames_too() -> None:
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6

    frames = [ETH6 + craft6(p, "fd00::2", "fd00:1::3", i, 40000)
              for i, p in ((1, "udp"), (2, "icmp"), (3, "tcp"))]
    noise = ETH6 + bytes(IPv6(dst="fd00:1::3") / UDP() / b"not a probe at all")
    nd = ETH6 + bytes(IPv6(dst="ff02::1:ff00:3") / ICMPv6ND_NS(tgt="fd00:1::3"))
    v4 = ETH + craft("udp", "10.244.0.2", "10.244.1.3", 4, 40000)
    kept = _filtered(bpf.probe_filter(), [*frames, noise, nd, v4])
    assert [parse(f)[0] for f in kept] == [1, 2, 3, 4]  # type: ignore[index]


def test_kernel_filter_with_addresses_of_both_families() -> None:
    mine = ["10.244.1.3", "fd00:1::3", "fd00:1::9"]
    frames = [ETH6 + craft6("udp", "fd00::2", "fd00:1::3", 1, 40000),
              ETH6 + craft6("udp", "fd00::2", "fd00:1::4", 2, 40000),  # one word off
              ETH6 + craft6("icmp", "fd00::2", "fd00:1::9", 3, 0),
              ETH6 + craft6("udp", "fd00::2", "fd01:1::3", 4, 40000),  # first word off
              ETH + craft("udp", "10.244.0.2", "10.244.1.3", 5, 40000),
              ETH + craft("udp", "10.244.0.2", "10.244.1.4", 6, 40000)]
    kept = _filtered(bpf.probe_filter(mine), frames)
    assert [parse(f)[0] for f in kept] == [1, 3, 5]  # type: ignore[index]
    only_four = _filtered(bpf.probe_filter(["10.244.1.3"]), frames)
    assert [parse(f)[0] for f in only_four] == [5]  # type: ignore[index]


def test_kernel_filter_keeps_ipv6_tcp_handshakes_only_when_asked() -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6

    def segment(flags: str) -> bytes:
        return ETH6 + bytes(IPv6(src="fd00::2", dst="fd00:1::3")
                            / TCP(sport=40001, dport=47001, flags=flags))

    syn, synack, ack = segment("S"), segment("SA"), segment("A")
    assert _filtered(bpf.probe_filter(), [syn, synack, ack]) == []
    kept = _filtered(bpf.probe_filter(handshakes=True), [syn, synack, ack])
    assert [parse(f)[1:3] for f in kept] == [(False, "tcp-syn"), (True, "tcp-syn")]  # type: ignore[index]


@pytest.mark.parametrize("share", [0x0001, 0x8000, 0xA5C3])
def test_a_share_keeps_exactly_its_ipv6_probes_too(share: int) -> None:
    ids = [0x1230 + i for i in range(32)]
    frames = [ETH6 + craft6(proto, "fd00::2", "fd00:1::3", probe_id, 40000)
              for probe_id in ids for proto in ("udp", "tcp", "icmp")]
    mine = [i for i in ids if share >> bpf.residue(i) & 1]
    for program in (bpf.probe_filter(share=share),
                    bpf.probe_filter(["fd00:1::3"], share=share)):
        kept = _filtered(program, frames)
        assert sorted(parse(f)[0] for f in kept) == sorted(mine * 3)  # type: ignore[index]
