"""The mtu check, pure: where each path's MTU is set, what one byte more must get, and
the verdict on synthetic outcomes."""

from __future__ import annotations

import socket
import struct

import pytest
from podlab_unit_helpers import EXAMPLES

from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan
from harness.prove import mtu


def example(name: str) -> Plan:
    return make_plan(load_topology(next(p for p in EXAMPLES if p.name == f"{name}.clab.yml")))


def blackhole() -> Plan:
    text = next(p for p in EXAMPLES if p.name == "flat3.clab.yml").read_text()
    text = text.replace('    - endpoints: ["node2:eth1", "tor:eth2"]\n',
                        '    - endpoints: ["node2:eth1", "tor:eth2"]\n      mtu: 1400\n')
    assert "mtu: 1400" in text
    return make_plan(parse_topology(text))


def by_pair(plan: Plan) -> dict[tuple[str, str], mtu.Target]:
    return {(t.src, t.dst): t for t in mtu.targets(plan)}


def test_one_target_per_ordered_pair_of_nodes_with_pods() -> None:
    plan = example("flat3")
    nodes = {p.node for p in plan.pods}
    assert len(mtu.targets(plan)) == len(nodes) * (len(nodes) - 1)


def test_a_smaller_routed_link_is_announced_by_the_router_in_front_of_it() -> None:
    t = by_pair(example("mtu"))
    assert t["a", "b"].path_mtu == 1400
    assert (t["a", "b"].limit.node, t["a", "b"].limit.link) == ("r1", "r1:eth2--node2:eth1")
    # the other way, node2 (forwarding its pod's packet) is the one in front of it
    assert t["b", "a"].limit.node == "node2" and not t["b", "a"].limit.silent


def test_everything_at_1500_leaves_the_sender_as_the_limit() -> None:
    for t in mtu.targets(example("routed")):
        assert t.path_mtu == mtu.DEFAULT_MTU and t.limit.sender


def test_a_smaller_switch_port_is_a_silent_limit() -> None:
    t = by_pair(blackhole())
    assert t["web", "db"].limit.silent and t["web", "db"].limit.node == "tor"
    assert t["web", "db"].limit.link == "node2:eth1--tor:eth2"
    assert not t["db", "web"].limit.silent  # node2's own interface: it sends the ICMP


def obs(t: mtu.Target, fits: bool = True, **over: object) -> mtu.Observation:
    return mtu.Observation(t, mtu.Outcome(t.path_mtu, answered=fits),
                           mtu.Outcome(t.path_mtu + 1, **over))  # type: ignore[arg-type]


def address_of(plan: Plan, node: str) -> str:
    return next(a for a, n in mtu.targets(plan)[0].routers.items() if n == node)


def test_judge_fragmentation_needed_from_the_right_router_passes() -> None:
    plan = example("mtu")
    t = by_pair(plan)["a", "b"]
    v = mtu.judge(obs(t, icmp_from=address_of(plan, "r1"), icmp_mtu=1400))
    assert v.ok and "fragmentation-needed (MTU 1400) from r1" in v.detail
    wrong = mtu.judge(obs(t, icmp_from=address_of(plan, "node1"), icmp_mtu=1400))
    assert not wrong.ok and "from node1" in wrong.detail
    assert not mtu.judge(obs(t, icmp_from=address_of(plan, "r1"), icmp_mtu=1300)).ok


def test_judge_a_path_that_does_not_carry_its_mtu() -> None:
    t = by_pair(example("mtu"))["a", "b"]
    v = mtu.judge(obs(t, fits=False))
    assert not v.ok and "1400 bytes with DF did not cross a -> b: no answer" in v.detail


def test_judge_a_black_hole_names_the_link() -> None:
    t = by_pair(blackhole())["web", "db"]
    v = mtu.judge(obs(t))
    assert not v.ok
    assert "PMTU black hole at link node2:eth1--tor:eth2 (MTU 1400" in v.detail


def test_judge_the_senders_own_interface() -> None:
    t = mtu.targets(example("minimal"))[0]
    assert mtu.judge(obs(t, refused=True)).ok
    v = mtu.judge(obs(t, answered=True))
    assert not v.ok and "got an echo reply" in v.detail


def test_echo_has_the_size_asked_and_a_valid_checksum() -> None:
    packet = mtu.echo(7, 9, 1400)
    assert len(packet) + mtu.IP_HEADER == 1400
    assert mtu._checksum(packet) == 0


def ip(src: str, dst: str, payload: bytes, proto: int = 1) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def test_classify_replies_and_fragmentation_needed() -> None:
    reply = ip("10.0.1.2", "10.0.0.2", struct.pack("!BBHHH", 0, 0, 0, 7, 9) + b"x" * 8)
    assert mtu.classify(reply) == ("reply", 7, 9, "10.0.1.2", None)
    inner = ip("10.0.0.2", "10.0.1.2", mtu.echo(7, 10, 1401)[:8])
    error = ip("172.28.0.2", "10.0.0.2", struct.pack("!BBHHH", 3, 4, 0, 0, 1400) + inner)
    assert mtu.classify(error) == ("frag", 7, 10, "172.28.0.2", 1400)
    udp_inner = ip("10.0.0.2", "10.0.1.2", b"\0" * 8, proto=17)
    assert mtu.classify(ip("1.1.1.1", "10.0.0.2", struct.pack("!BBHHH", 3, 4, 0, 0, 1400)
                           + udp_inner)) is None


@pytest.mark.parametrize("name", ["minimal", "flat3", "routed", "mtu", "ring"])
def test_every_limit_is_on_the_path(name: str) -> None:
    plan = example(name)
    for t in mtu.targets(plan):
        limits = mtu.path_limits(plan, plan.pod(t.src), plan.pod(t.dst))
        assert t.limit in limits and t.path_mtu == min(x.mtu for x in limits)


def test_judge_a_probe_that_could_not_be_sent() -> None:
    t = by_pair(example("mtu"))["a", "b"]
    o = mtu.Observation(t, mtu.Outcome(1400, error="a could not send: Network is unreachable"),
                        mtu.Outcome(1401))
    v = mtu.judge(o)
    assert not v.ok and "did not cross a -> b: a could not send" in v.detail



# --------------------------------------------------------------------------- IPv6

def dual_mtu() -> Plan:
    text = next(p for p in EXAMPLES if p.name == "mtu.clab.yml").read_text()
    for key, v4, v6 in (("pod-cidr", "10.244.0.0/16", "fd00:10:244::/56"),
                        ("underlay-cidr", "172.28.0.0/16", "fd00:172:28::/48")):
        assert f"  {key}: {v4}\n" in text
        text = text.replace(f"  {key}: {v4}\n", f"  {key}: [{v4}, {v6}]\n")
    return make_plan(parse_topology(text))


def test_each_pair_is_probed_once_per_family_with_the_same_limit() -> None:
    plan = dual_mtu()
    tgts = mtu.targets(plan)
    four = {(t.src, t.dst): t for t in tgts if t.family == "ipv4"}
    six = {(t.src, t.dst): t for t in tgts if t.family == "ipv6"}
    assert four.keys() == six.keys() and len(tgts) == 2 * len(four)
    for pair, t in six.items():
        assert ":" in t.src_ip and ":" in t.dst_ip
        assert (t.path_mtu, t.limit) == (four[pair].path_mtu, four[pair].limit)
    assert six["a", "b"].path_mtu == 1400 and six["a", "b"].limit.node == "r1"
    assert any(":" in a and n == "r1" for a, n in six["a", "b"].routers.items())


def test_echo6_is_the_size_asked_and_classify6_reads_a_packet_too_big() -> None:
    from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6

    echo = mtu.echo6(0x1234, 7, 1401)
    assert len(echo) + mtu.IP6_HEADER == 1401 and echo[0] == 128
    offending = bytes(IPv6(src="fd00::2", dst="fd00:1::2") /
                      ICMPv6EchoRequest(id=0x1234, seq=7) / echo[8:200])
    too_big = bytes(ICMPv6PacketTooBig(mtu=1400) / offending)
    assert mtu.classify6(too_big, "fd00:172:30::3") == ("frag", 0x1234, 7, "fd00:172:30::3",
                                                        1400)
    reply = bytes(ICMPv6EchoRequest(id=0x1234, seq=8))
    reply = bytes([129]) + reply[1:]
    assert mtu.classify6(reply, "fd00:1::2")[:3] == ("reply", 0x1234, 8)  # type: ignore[index]


def test_judge_in_ipv6_speaks_of_packet_too_big() -> None:
    plan = dual_mtu()
    t = next(t for t in mtu.targets(plan) if (t.src, t.dst, t.family) == ("a", "b", "ipv6"))
    r1 = next(a for a, n in t.routers.items() if n == "r1" and ":" in a)
    v = mtu.judge(obs(t, icmp_from=r1, icmp_mtu=1400))
    assert v.ok and v.family == "ipv6" and "packet-too-big (MTU 1400) from r1" in v.detail
    assert "DF" not in v.detail
    assert not mtu.judge(obs(t, icmp_from=r1, icmp_mtu=1280)).ok
