"""Segment subnets carved from the underlay (harness.model.addressing) and what the plan
and validation make of them."""

from __future__ import annotations

import ipaddress

import pytest
from podlab_unit_helpers import ROOT

from harness.model.addressing import NoRoom, allocate, room, smallest_prefix
from harness.model.topology import load_topology
from harness.plan import make_plan

Net = ipaddress.IPv4Network


@pytest.mark.parametrize(("members", "prefix"), [(2, 30), (3, 29), (6, 29), (7, 28),
                                                 (254, 24), (255, 23)])
def test_smallest_prefix_holds_the_ports(members: int, prefix: int) -> None:
    assert smallest_prefix(members) == prefix


def test_a_roomy_underlay_keeps_one_slash_24_per_segment() -> None:
    got = allocate("172.30.0.0/16", [Net("10.244.0.0/16")], [2, 5, 2])
    assert got == [Net("172.30.0.0/24"), Net("172.30.1.0/24"), Net("172.30.2.0/24")]


def test_a_slash_24_underlay_is_divided_among_three_segments() -> None:
    got = allocate("192.168.50.0/24", [], [2, 5, 2])
    assert [n.prefixlen for n in got] == [30, 29, 30]
    assert all(n.subnet_of(Net("192.168.50.0/24")) for n in got)
    assert not any(a.overlaps(b) for i, a in enumerate(got) for b in got[i + 1:])


def test_blocks_written_in_the_file_are_skipped() -> None:
    taken = [Net("192.168.50.0/30")]
    got = allocate("192.168.50.0/24", taken, [2, 2])
    assert Net("192.168.50.0/30") not in got and len(set(got)) == 2


def test_an_explicit_segment_mask_is_obeyed_and_says_when_it_does_not_fit() -> None:
    assert allocate("10.0.0.0/16", [], [2, 2], mask=26) == [Net("10.0.0.0/26"),
                                                            Net("10.0.0.64/26")]
    with pytest.raises(NoRoom, match="has 1 free /24 blocks but 3 segments need one"):
        allocate("192.168.50.0/24", [], [2, 2, 2], mask=24)


def test_too_small_an_underlay_is_refused_with_its_size() -> None:
    with pytest.raises(NoRoom, match=r"192\.168\.50\.0/29 cannot hold 3 segment"):
        allocate("192.168.50.0/29", [], [2, 2, 2])


def test_compact_example_plans_slash_30_links_inside_its_slash_24() -> None:
    plan = make_plan(load_topology(ROOT / "topologies" / "compact.clab.yml"))
    subnets = [Net(s.subnet) for s in plan.segments if s.kind != "pods"]
    assert len(subnets) == 3
    assert all(n.prefixlen == 30 and n.subnet_of(Net("192.168.50.0/24")) for n in subnets)


Net6 = ipaddress.IPv6Network


@pytest.mark.parametrize(("members", "prefix"), [(2, 126), (3, 126), (4, 125), (7, 125),
                                                 (8, 124)])
def test_smallest_ipv6_prefix_holds_the_ports(members: int, prefix: int) -> None:
    assert smallest_prefix(members, "ipv6") == prefix


def test_an_ipv6_underlay_gives_a_slash_64_per_segment() -> None:
    got = allocate("fd00:172:30::/48", [Net6("fd00:10:244::/56")], [2, 5, 2])
    assert got == [Net6("fd00:172:30::/64"), Net6("fd00:172:30:1::/64"),
                   Net6("fd00:172:30:2::/64")]


def test_networks_of_the_other_family_do_not_take_room() -> None:
    assert allocate("fd00:172:30::/48", [Net("172.30.0.0/16")], [2]) == [
        Net6("fd00:172:30::/64")]
    assert allocate("172.30.0.0/16", [Net6("fd00::/16")], [2]) == [Net("172.30.0.0/24")]


def test_a_small_ipv6_underlay_is_packed_and_explicit_blocks_are_skipped() -> None:
    got = allocate("fd00:1::/120", [Net6("fd00:1::/126")], [2, 5, 2])
    assert [n.prefixlen for n in got] == [126, 125, 126]
    assert Net6("fd00:1::/126") not in got
    assert not any(a.overlaps(b) for i, a in enumerate(got) for b in got[i + 1:])
    with pytest.raises(NoRoom, match=r"fd00:1::/126 cannot hold 2 segment"):
        allocate("fd00:1::/126", [], [2, 2])


def test_room_per_family() -> None:
    assert room(24) == 254 and room(30) == 2
    assert room(64, "ipv6") == 2 ** 64 - 1 and room(126, "ipv6") == 3
    assert room(127, "ipv6") == 2  # RFC 6164: a point-to-point /127 uses both addresses
