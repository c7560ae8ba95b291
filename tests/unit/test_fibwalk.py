"""The FIB walk, pure: hand-written tables for every outcome, in both families."""

from __future__ import annotations

from harness.plan.fibwalk import (
    Fabric,
    Fib,
    FibRoute,
    Nexthop,
    asymmetry,
    walk,
)


def r(dst: str, *hops: tuple[str | None, str], type: str = "unicast") -> FibRoute:
    return FibRoute(dst, tuple(Nexthop(g, d) for g, d in hops), type)


def line(n2_routes: tuple[FibRoute, ...] | None = None, r2_down: frozenset[str] = frozenset(),
         ) -> Fabric:
    """n1 - r1 - r2 - n2: n1 and n2 hold pod CIDRs on cbr0, r1 and r2 route them.

    n1 eth1 10.0.1.1/30 -- r1 eth1 10.0.1.2; r1 eth2 10.0.2.1/30 -- r2 eth1 10.0.2.2;
    r2 eth2 10.0.3.1/30 -- n2 eth1 10.0.3.2. Pods: 10.244.0.2 on n1, 10.244.1.2 on n2."""
    fibs = {
        "n1": Fib("n1", (r("10.0.1.0/30", (None, "eth1")), r("10.244.0.0/24", (None, "cbr0")),
                         r("0.0.0.0/0", ("10.0.1.2", "eth1"))),
                  (("eth1", "10.0.1.1/30"), ("cbr0", "10.244.0.1/24"))),
        "r1": Fib("r1", (r("10.0.1.0/30", (None, "eth1")), r("10.0.2.0/30", (None, "eth2")),
                         r("10.0.3.0/30", ("10.0.2.2", "eth2")),
                         r("10.244.0.0/24", ("10.0.1.1", "eth1")),
                         r("10.244.1.0/24", ("10.0.2.2", "eth2"))),
                  (("eth1", "10.0.1.2/30"), ("eth2", "10.0.2.1/30"))),
        "r2": Fib("r2", (r("10.0.2.0/30", (None, "eth1")), r("10.0.3.0/30", (None, "eth2")),
                         r("10.0.1.0/30", ("10.0.2.1", "eth1")),
                         r("10.244.0.0/24", ("10.0.2.1", "eth1")),
                         r("10.244.1.0/24", ("10.0.3.2", "eth2"))),
                  (("eth1", "10.0.2.2/30"), ("eth2", "10.0.3.1/30")), down=r2_down),
        "n2": Fib("n2", n2_routes or (r("10.0.3.0/30", (None, "eth1")),
                                      r("10.244.1.0/24", (None, "cbr0")),
                                      r("0.0.0.0/0", ("10.0.3.1", "eth1"))),
                  (("eth1", "10.0.3.2/30"), ("cbr0", "10.244.1.1/24"))),
    }
    links = (frozenset({("n1", "eth1"), ("r1", "eth1")}),
             frozenset({("r1", "eth2"), ("r2", "eth1")}),
             frozenset({("r2", "eth2"), ("n2", "eth1")}))
    leaves = {"10.244.0.2": ("a", "n1"), "10.244.1.2": ("b", "n2")}
    return Fabric(fibs, links, leaves)


def test_walk_follows_the_longest_prefix_to_the_pod_behind_the_far_node() -> None:
    w = walk(line(), "n1", "10.244.1.2")
    assert w.ok, w
    assert w.nodes == ("n1", "r1", "r2", "n2", "b")
    assert [h.device for h in w.paths[0]] == ["eth1", "eth2", "eth2", "cbr0", None]
    assert w.paths[0][-1].leaf


def test_walk_ends_at_the_namespace_holding_the_address() -> None:
    w = walk(line(), "n1", "10.244.1.1")  # n2's cbr0: held by n2 itself
    assert w.nodes == ("n1", "r1", "r2", "n2")


def test_a_more_specific_route_wins_over_the_default() -> None:
    fabric = line()
    n1 = fabric.fibs["n1"]
    # a /32 for b's address toward nowhere useful: LPM must pick it over the default
    fibs = {**fabric.fibs, "n1": Fib("n1", (*n1.routes, r("10.244.1.2/32", type="blackhole")),
                                     n1.addresses)}
    w = walk(Fabric(fibs, fabric.links, fabric.leaves), "n1", "10.244.1.2")
    assert not w.ok
    assert w.stop is not None and w.stop.kind == "blackhole" and w.stop.node == "n1"
    assert "blackhole 10.244.1.2/32" in w.stop.reason


def test_no_route_is_a_blackhole_naming_the_router_where_the_walk_stopped() -> None:
    fabric = line()
    r2 = fabric.fibs["r2"]
    fibs = {**fabric.fibs, "r2": Fib("r2", tuple(x for x in r2.routes
                                                 if x.dst != "10.244.1.0/24"), r2.addresses)}
    w = walk(Fabric(fibs, fabric.links, fabric.leaves), "n1", "10.244.1.2")
    assert w.stop is not None
    assert (w.stop.kind, w.stop.node) == ("blackhole", "r2")
    assert w.stop.reason == "r2 has no route to 10.244.1.2"
    assert [h.node for h in w.stop.hops] == ["n1", "r1"]
    assert str(w.stop).endswith("(after n1 > r1)")


def test_a_route_out_of_a_down_device_is_a_blackhole_there() -> None:
    w = walk(line(r2_down=frozenset({"eth2"})), "n1", "10.244.1.2")
    assert w.stop is not None and (w.stop.kind, w.stop.node) == ("blackhole", "r2")
    assert "which is down" in w.stop.reason


def test_a_gateway_nobody_holds_on_that_link_is_a_blackhole() -> None:
    fabric = line()
    r1 = fabric.fibs["r1"]
    routes = tuple(r("10.244.1.0/24", ("10.0.2.9", "eth2")) if x.dst == "10.244.1.0/24" else x
                   for x in r1.routes)
    w = walk(Fabric({**fabric.fibs, "r1": Fib("r1", routes, r1.addresses)}, fabric.links,
                    fabric.leaves), "n1", "10.244.1.2")
    assert w.stop is not None and w.stop.node == "r1"
    assert "nothing holds 10.0.2.9 on the link of eth2" in w.stop.reason


def test_a_gateway_reached_over_the_wrong_device_is_not_a_neighbour() -> None:
    fabric = line()
    r1 = fabric.fibs["r1"]  # r2's address, but out of eth1, toward n1
    routes = tuple(r("10.244.1.0/24", ("10.0.2.2", "eth1")) if x.dst == "10.244.1.0/24" else x
                   for x in r1.routes)
    w = walk(Fabric({**fabric.fibs, "r1": Fib("r1", routes, r1.addresses)}, fabric.links,
                    fabric.leaves), "n1", "10.244.1.2")
    assert w.stop is not None and w.stop.node == "r1" and w.stop.kind == "blackhole"


def test_a_namespace_that_does_not_forward_stops_transit() -> None:
    fabric = line()
    r1 = fabric.fibs["r1"]
    fibs = {**fabric.fibs, "r1": Fib("r1", r1.routes, r1.addresses, forwards=("ipv6",))}
    w = walk(Fabric(fibs, fabric.links, fabric.leaves), "n1", "10.244.1.2")
    assert w.stop is not None and w.stop.node == "r1"
    assert "does not forward IPv4" in w.stop.reason
    # its own traffic still leaves: only transit needs forwarding
    assert walk(Fabric(fibs, fabric.links, fabric.leaves), "r1", "10.244.1.2").ok


def test_two_routers_pointing_at_each_other_are_a_loop() -> None:
    fabric = line()
    r2 = fabric.fibs["r2"]  # r2 sends n2's pods back to r1, which sends them to r2
    routes = tuple(r("10.244.1.0/24", ("10.0.2.1", "eth1")) if x.dst == "10.244.1.0/24" else x
                   for x in r2.routes)
    w = walk(Fabric({**fabric.fibs, "r2": Fib("r2", routes, r2.addresses)}, fabric.links,
                    fabric.leaves), "n1", "10.244.1.2")
    assert w.stop is not None
    assert (w.stop.kind, w.stop.node) == ("loop", "r1")
    assert "r1 > r2 > r1" in w.stop.reason
    assert not w.paths


def test_a_reply_taking_another_way_back_is_an_asymmetric_return() -> None:
    # a square: n1 - r1 - n2 and n1 - r2 - n2; requests go by r1, replies by r2
    def fib(name: str, addrs: dict[str, str], routes: tuple[FibRoute, ...]) -> Fib:
        connected = tuple(r(a.rsplit(".", 1)[0] + ".0/24", (None, d)) for d, a in addrs.items())
        return Fib(name, connected + routes, tuple((d, a) for d, a in addrs.items()))

    fibs = {
        "n1": fib("n1", {"eth1": "10.1.0.1/24", "eth2": "10.2.0.1/24", "cbr0": "10.244.0.1/24"},
                  (r("10.244.1.0/24", ("10.1.0.2", "eth1")),)),
        "r1": fib("r1", {"eth1": "10.1.0.2/24", "eth2": "10.3.0.1/24"},
                  (r("10.244.1.0/24", ("10.3.0.2", "eth2")),
                   r("10.244.0.0/24", ("10.1.0.1", "eth1")))),
        "r2": fib("r2", {"eth1": "10.2.0.2/24", "eth2": "10.4.0.1/24"},
                  (r("10.244.0.0/24", ("10.2.0.1", "eth1")),
                   r("10.244.1.0/24", ("10.4.0.2", "eth2")))),
        "n2": fib("n2", {"eth1": "10.3.0.2/24", "eth2": "10.4.0.2/24", "cbr0": "10.244.1.1/24"},
                  (r("10.244.0.0/24", ("10.4.0.1", "eth2")),)),
    }
    links = (frozenset({("n1", "eth1"), ("r1", "eth1")}),
             frozenset({("n1", "eth2"), ("r2", "eth1")}),
             frozenset({("r1", "eth2"), ("n2", "eth1")}),
             frozenset({("r2", "eth2"), ("n2", "eth2")}))
    fabric = Fabric(fibs, links, {"10.244.0.2": ("a", "n1"), "10.244.1.2": ("b", "n2")})
    there, back = walk(fabric, "n1", "10.244.1.2"), walk(fabric, "n2", "10.244.0.2")
    assert there.nodes == ("n1", "r1", "n2", "b") and back.nodes == ("n2", "r2", "n1", "a")
    assert asymmetry(there, back) == ("asymmetric return: the request goes n1 > r1 > n2, "
                                      "the reply comes back n2 > r2 > n1")
    # the line retraces its way
    assert asymmetry(walk(line(), "n1", "10.244.1.2"), walk(line(), "n2", "10.244.0.2")) is None


def diamond(unequal: bool = False) -> Fabric:
    """n1 with ECMP to n2 over r1 and r2 (or over r1, and over r2 then r3)."""
    fibs = {
        "n1": Fib("n1", (r("10.1.0.0/24", (None, "eth1")), r("10.2.0.0/24", (None, "eth2")),
                         r("10.244.1.0/24", ("10.2.0.2", "eth2"), ("10.1.0.2", "eth1"))),
                  (("eth1", "10.1.0.1/24"), ("eth2", "10.2.0.1/24"))),
        "r1": Fib("r1", (r("10.244.1.0/24", ("10.3.0.2", "eth2")),
                         r("10.1.0.0/24", (None, "eth1")), r("10.3.0.0/24", (None, "eth2"))),
                  (("eth1", "10.1.0.2/24"), ("eth2", "10.3.0.1/24"))),
        "r2": Fib("r2", (r("10.244.1.0/24", ("10.5.0.2" if unequal else "10.4.0.2", "eth2")),
                         r("10.2.0.0/24", (None, "eth1")), r("10.4.0.0/24", (None, "eth2")),
                         r("10.5.0.0/24", (None, "eth2"))),
                  (("eth1", "10.2.0.2/24"), ("eth2", "10.4.0.1/24"))),
        "n2": Fib("n2", (r("10.244.1.0/24", (None, "cbr0")),),
                  (("eth1", "10.3.0.2/24"), ("eth2", "10.4.0.2/24"),
                   ("cbr0", "10.244.1.1/24"))),
    }
    links = [frozenset({("n1", "eth1"), ("r1", "eth1")}),
             frozenset({("n1", "eth2"), ("r2", "eth1")}),
             frozenset({("r1", "eth2"), ("n2", "eth1")})]
    if unequal:  # r2 reaches n2 through r3
        fibs["r3"] = Fib("r3", (r("10.244.1.0/24", ("10.4.0.2", "eth2")),),
                         (("eth1", "10.5.0.2/24"), ("eth2", "10.6.0.1/24")))
        fibs["n2"] = Fib("n2", fibs["n2"].routes, (("eth1", "10.3.0.2/24"),
                                                    ("eth2", "10.4.0.2/24"),
                                                    ("cbr0", "10.244.1.1/24")))
        links += [frozenset({("r2", "eth2"), ("r3", "eth1")}),
                  frozenset({("r3", "eth2"), ("n2", "eth2")})]
    else:
        links.append(frozenset({("r2", "eth2"), ("n2", "eth2")}))
    return Fabric(fibs, tuple(links), {"10.244.1.2": ("b", "n2")})


def test_ecmp_walks_every_next_hop_and_keeps_every_path() -> None:
    w = walk(diamond(), "n1", "10.244.1.2")
    assert w.ok, w
    assert [tuple(h.node for h in p) for p in w.paths] == [
        ("n1", "r1", "n2", "b"), ("n1", "r2", "n2", "b")]  # lowest gateway first


def test_ecmp_branches_of_different_lengths_leave_no_ttl_to_expect() -> None:
    w = walk(diamond(unequal=True), "n1", "10.244.1.2")
    assert w.stop is not None and w.stop.kind == "unequal-ecmp"
    assert "n1 > r1 > n2 > b (2 forwarding)" in w.stop.reason
    assert "n1 > r2 > r3 > n2 > b (3 forwarding)" in w.stop.reason


def test_ecmp_with_one_dead_branch_is_a_blackhole_for_the_flows_hashed_there() -> None:
    fabric = diamond()
    r2 = fabric.fibs["r2"]
    fibs = {**fabric.fibs, "r2": Fib("r2", tuple(x for x in r2.routes
                                                 if x.dst != "10.244.1.0/24"), r2.addresses)}
    w = walk(Fabric(fibs, fabric.links, fabric.leaves), "n1", "10.244.1.2")
    assert w.stop is not None and (w.stop.kind, w.stop.node) == ("blackhole", "r2")
    assert [tuple(h.node for h in p) for p in w.paths] == [("n1", "r1", "n2", "b")]


def test_ipv6_walks_alike_and_families_do_not_mix() -> None:
    fibs = {
        "n1": Fib("n1", (r("fd00:1::/64", (None, "eth1")), r("::/0", ("fd00:1::2", "eth1")),
                         r("0.0.0.0/0", ("10.0.1.2", "eth1"))),
                  (("eth1", "fd00:1::1/64"), ("eth1", "10.0.1.1/30"))),
        "r1": Fib("r1", (r("fd00:1::/64", (None, "eth1")), r("fd00:2::/64", (None, "eth2")),
                         r("fd00:244:1::/64", ("fd00:2::2", "eth2"))),
                  (("eth1", "fd00:1::2/64"), ("eth2", "fd00:2::1/64"), ("eth1", "10.0.1.2/30"))),
        "n2": Fib("n2", (r("fd00:244:1::/64", (None, "cbr0")),),
                  (("eth1", "fd00:2::2/64"), ("cbr0", "fd00:244:1::1/64"))),
    }
    links = (frozenset({("n1", "eth1"), ("r1", "eth1")}),
             frozenset({("r1", "eth2"), ("n2", "eth1")}))
    fabric = Fabric(fibs, links, {"fd00:244:1::2": ("b", "n2")})
    w = walk(fabric, "n1", "fd00:244:1:0::2")
    assert w.ok and w.nodes == ("n1", "r1", "n2", "b") and w.dst_ip == "fd00:244:1::2"
    assert w.family == "ipv6"
    # r1 has no IPv4 route at all: its IPv6 routes do not carry IPv4
    v4 = walk(fabric, "n1", "10.244.1.2")
    assert v4.stop is not None and v4.stop.reason == "r1 has no route to 10.244.1.2"
