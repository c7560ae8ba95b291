"""Address families, and subnets for the segments addressed automatically. Pure.

Validation and the plan both call `allocate`, so a file that validates is a file the plan
can address. Each family is addressed on its own, from its own underlay prefix.

With `segment-mask` set (IPv4 only), every segment gets a block of that size, in segment
order. Unset, each segment gets the family's readable default (a /24 in IPv4, a /64 in
IPv6) while the underlay has room for one per segment; otherwise each gets the smallest
prefix that holds its ports (a /30 or /126 for a point-to-point link), largest first so
blocks stay aligned and the underlay is packed: a /24 underlay holds dozens of links.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

Family = Literal["ipv4", "ipv6"]
IPV4: Family = "ipv4"
IPV6: Family = "ipv6"
FAMILIES: tuple[Family, ...] = (IPV4, IPV6)
TITLE = {IPV4: "IPv4", IPV6: "IPv6"}
BITS = {IPV4: 32, IPV6: 128}

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MASK = 24  # IPv4
MAX_MASK = 30  # a /30 holds the two ends of a point-to-point link
DEFAULT_MASKS = {IPV4: DEFAULT_MASK, IPV6: 64}
MAX_MASKS = {IPV4: MAX_MASK, IPV6: 126}


class NoRoom(ValueError):
    """The underlay cannot hold the segments; the message says how many fit."""


def family_of(value: object) -> Family:
    """The family of an address, interface or network, given as text or as an object."""
    version = getattr(value, "version", None)
    if version is not None:
        return IPV6 if version == 6 else IPV4
    return IPV6 if ":" in str(value) else IPV4


def of_family(values: Sequence[str], family: Family) -> str | None:
    """The first of `values` (addresses or CIDRs) in `family`, or None."""
    return next((v for v in values if family_of(v) == family), None)


def room(prefix: int, family: Family = IPV4) -> int:
    """Host addresses a /prefix block holds: IPv4 loses its network and broadcast
    addresses, IPv6 its subnet-router anycast address (a /127 keeps both, RFC 6164)."""
    if family == IPV6:
        return 2 if prefix == 127 else 2 ** (128 - prefix) - 1
    return 2 ** (32 - prefix) - 2


def smallest_prefix(members: int, family: Family = IPV4) -> int:
    """The longest prefix whose block has room for `members` host addresses."""
    prefix = MAX_MASKS[family]
    while prefix > 0 and room(prefix, family) < members:
        prefix -= 1
    return prefix


def _fits(block: Net, taken: Sequence[Net]) -> bool:
    return not any(block.overlaps(t) for t in taken)  # type: ignore[arg-type]


def _blocks(under: Net, prefix: int, taken: list[Net], count: int) -> list[Net] | None:
    """The first `count` free /prefix blocks of `under`, in address order, or None."""
    out: list[Net] = []
    if prefix < under.prefixlen:
        return None if count else out
    for block in under.subnets(new_prefix=prefix):
        if len(out) == count:
            break
        if _fits(block, taken):
            out.append(block)
    return out if len(out) == count else None


def allocate(underlay: str, taken: Sequence[Net], members: Sequence[int],
             mask: int | None = None) -> list[Net]:
    """One subnet per segment (`members[i]` ports each) of the underlay's family, none
    overlapping `taken` (networks of the other family are ignored).

    Raises NoRoom with a sentence when they do not fit.
    """
    under = ipaddress.ip_network(underlay)
    family = family_of(under)
    used = [t for t in taken if t.version == under.version]
    if mask is not None:
        got = _blocks(under, mask, used, len(members))
        if got is None:
            # only reached when they do not fit, so the count below is a small one
            free = sum(1 for b in under.subnets(new_prefix=mask) if _fits(b, used)) \
                if mask >= under.prefixlen else 0
            raise NoRoom(f"{under} has {free} free /{mask} blocks but {len(members)} "
                         "segments need one")
        return got
    default = DEFAULT_MASKS[family]
    if all(m <= room(default, family) for m in members):
        got = _blocks(under, default, used, len(members))
        if got is not None:
            return got
    out: dict[int, Net] = {}
    # largest blocks first: each lands aligned without leaving holes the smaller need
    order = sorted(range(len(members)), key=lambda i: (smallest_prefix(members[i], family), i))
    for i in order:
        prefix = smallest_prefix(members[i], family)
        block = _blocks(under, prefix, used, 1)
        if block is None:
            raise NoRoom(f"{under} cannot hold {len(members)} segment(s) even with each one "
                         f"as small as its ports allow (ran out at a /{prefix} for "
                         f"{members[i]} ports); give a larger underlay-cidr")
        out[i] = block[0]
        used.append(block[0])
    return [out[i] for i in range(len(members))]
