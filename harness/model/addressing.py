"""Subnets for the segments addressed automatically, carved from the underlay. Pure.

Validation and the plan both call `allocate`, so a file that validates is a file the plan
can address.

With `segment-mask` set, every segment gets a block of that size, in segment order. Unset,
each segment gets a /24 (readable addresses, as before) while the underlay has room for
one per segment; otherwise each gets the smallest prefix that holds its ports (a /30 for
a point-to-point link), largest first so blocks stay aligned and the underlay is packed:
a /24 underlay holds dozens of links.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Net = ipaddress.IPv4Network

DEFAULT_MASK = 24
MAX_MASK = 30  # a /30 holds the two ends of a point-to-point link


class NoRoom(ValueError):
    """The underlay cannot hold the segments; the message says how many fit."""


def smallest_prefix(members: int) -> int:
    """The longest prefix whose block has room for `members` host addresses."""
    prefix = MAX_MASK
    while prefix > 0 and 2 ** (32 - prefix) - 2 < members:
        prefix -= 1
    return prefix


def _fits(block: Net, taken: Sequence[Net]) -> bool:
    return not any(block.overlaps(t) for t in taken)


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
    """One subnet per segment (`members[i]` ports each), none overlapping `taken`.

    Raises NoRoom with a sentence when they do not fit.
    """
    under = ipaddress.IPv4Network(underlay)
    used = list(taken)
    if mask is not None:
        got = _blocks(under, mask, used, len(members))
        if got is None:
            # only reached when they do not fit, so the count below is a small one
            free = sum(1 for b in under.subnets(new_prefix=mask) if _fits(b, used)) \
                if mask >= under.prefixlen else 0
            raise NoRoom(f"{under} has {free} free /{mask} blocks but {len(members)} "
                         "segments need one")
        return got
    if all(m <= 2 ** (32 - DEFAULT_MASK) - 2 for m in members):
        got = _blocks(under, DEFAULT_MASK, used, len(members))
        if got is not None:
            return got
    out: dict[int, Net] = {}
    # largest blocks first: each lands aligned without leaving holes the smaller need
    for i in sorted(range(len(members)), key=lambda i: (smallest_prefix(members[i]), i)):
        prefix = smallest_prefix(members[i])
        block = _blocks(under, prefix, used, 1)
        if block is None:
            raise NoRoom(f"{under} cannot hold {len(members)} segment(s) even with each one "
                         f"as small as its ports allow (ran out at a /{prefix} for "
                         f"{members[i]} ports); give a larger underlay-cidr")
        out[i] = block[0]
        used.append(block[0])
    return [out[i] for i in range(len(members))]
