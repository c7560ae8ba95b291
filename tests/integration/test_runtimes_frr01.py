"""containerlab's lab-examples/frr01 (three FRR routers in OSPF, three hosts configured by
their exec lines; images mapped to podlab's) under both runtimes, side by side: once OSPF
has converged, every node has the same interfaces, addresses and routes (`ip -j addr`,
`ip -j route` of IPv4 and IPv6, read by the host's `ip` in each node's namespace), with
only what differs between two deploys of one lab normalised away."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from test_containerlab_labs import FRR01, IMAGES, OSPF_TIMEOUT_S, full_neighbours, unique
from test_runtimes import containerlab_available  # noqa: F401 (a fixture)

from harness.host import runtime
from harness.lab import Lab
from harness.lab.handle import plan_of
from harness.plan.imagemap import with_images

pytestmark = pytest.mark.docker

NODES = ("router1", "router2", "router3", "PC1", "PC2", "PC3")
ROUTERS = NODES[:3]
# every subnet of frr01's links (router1..3/frr.conf): each router routes to all of them
LAB_SUBNETS = {f"192.168.{n}.0/24" for n in (1, 2, 3, 11, 12, 13)}
# per interface, what two deploys of one lab may give differently: kernel indexes (and the
# peer's, and its namespace id), the veths' MACs (random in podlab, containerlab derives
# its own) and so the IPv6 link-local address and the broadcast MAC beside them
LINK_NOISE = {"ifindex", "link_index", "link_netnsid", "address", "broadcast",
              "altnames", "parentbus", "parentdev"}
ADDR_NOISE = {"valid_life_time", "preferred_life_time"}
# containerlab makes its veths with txqlen 0 (netlink.Veth without NewLinkAttrs), the
# kernel gives podlab's 1000: only a queueing qdisc sizes itself from it, and a veth with
# qdisc noqueue (asserted where dropped) has none
NOQUEUE_NOISE = {"txqlen"}
# FRR installs its routes through nexthop groups whose ids count up in zebra's own order
ROUTE_NOISE = {"nhid"}


def links(raw: str) -> dict[str, dict[str, Any]]:
    """`ip -j addr` by interface name, without the noise above; an IPv6 link-local
    address (made from the MAC) is kept as its scope and prefix length only."""
    out: dict[str, dict[str, Any]] = {}
    for link in json.loads(raw):
        kept = {k: v for k, v in link.items() if k not in LINK_NOISE and k != "addr_info"}
        if link.get("link_type") == "ether":
            assert link.get("qdisc") == "noqueue", link  # what makes txqlen moot
            kept = {k: v for k, v in kept.items() if k not in NOQUEUE_NOISE}
        kept["flags"] = sorted(link.get("flags", []))
        addrs = []
        for a in link.get("addr_info", []):
            a = {k: v for k, v in a.items() if k not in ADDR_NOISE}
            if a.get("family") == "inet6" and a.get("scope") == "link":
                a["local"] = "fe80::(from the MAC)"
            addrs.append(a)
        kept["addr_info"] = sorted(addrs, key=json.dumps)
        out[link["ifname"]] = kept
    return out


def routes(raw: str) -> list[dict[str, Any]]:
    """`ip -j route`, sorted, nexthops of a multipath route sorted too (ECMP order is
    the order zebra learnt them in)."""
    out = []
    for route in json.loads(raw):
        kept = {k: v for k, v in route.items() if k not in ROUTE_NOISE}
        if "nexthops" in kept:
            kept["nexthops"] = sorted(kept["nexthops"], key=json.dumps)
        out.append(kept)
    return sorted(out, key=json.dumps)


def ip_json(pid: int, *args: str) -> str:
    """The host's iproute2 in a node's namespace (podlab/frr's `ip` is BusyBox's, with
    no -j): the same program reads both labs."""
    done = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", *args],
                          capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, f"ip -j {' '.join(args)}: {done.stderr}"
    return done.stdout


def state(lab: Lab) -> dict[str, Any]:
    """Each node's interfaces and addresses, IPv4 and IPv6 routes."""
    pids = lab.pids()
    return {n: {"addr": links(ip_json(pids[n], "addr")),
                "route4": routes(ip_json(pids[n], "-4", "route")),
                "route6": routes(ip_json(pids[n], "-6", "route"))} for n in NODES}


def converged(lab: Lab, seen: dict[str, Any]) -> list[str]:
    """What is still missing for OSPF to have converged (empty: converged): two Full
    adjacencies per router and a route to every subnet of the lab on every router."""
    missing = []
    for r in ROUTERS:
        if len(full_neighbours(lab, r)) != 2:
            missing.append(f"{r}: {len(full_neighbours(lab, r))} Full adjacencies of 2")
        have = {x["dst"] for x in seen[r]["route4"]}
        if LAB_SUBNETS - have:
            missing.append(f"{r}: no route to {sorted(LAB_SUBNETS - have)}")
    return missing


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs, interface by interface (routes as whole tables)."""
    out = []
    for node in NODES:
        ifaces = sorted(set(a[node]["addr"]) | set(b[node]["addr"]))
        for iface in ifaces:
            x, y = a[node]["addr"].get(iface), b[node]["addr"].get(iface)
            if x != y:
                out.append(f"{node} {iface}:\n  podlab:       {x}\n  containerlab: {y}")
        for key in ("route4", "route6"):
            if a[node][key] != b[node][key]:
                out.append(f"{node} {key}:\n  podlab:       {a[node][key]}\n"
                           f"  containerlab: {b[node][key]}")
    return out


def test_frr01_has_the_same_interfaces_addresses_and_routes_under_both_runtimes(
        containerlab_available: str) -> None:  # noqa: F811
    labs: dict[str, Lab] = {}
    try:
        for name in ("podlab", "containerlab"):
            plan = with_images(plan_of(FRR01, unique(f"frr01{name[0]}")), IMAGES)
            labs[name] = Lab.deploy(plan, runtime=name)
        deadline = time.monotonic() + OSPF_TIMEOUT_S
        while True:  # OSPF's wait timer, then SPF: bounded
            seen = {name: state(lab) for name, lab in labs.items()}
            missing = {name: converged(lab, seen[name]) for name, lab in labs.items()}
            diff = differences(seen["podlab"], seen["containerlab"])
            if (not any(missing.values()) and not diff) or time.monotonic() > deadline:
                break
            time.sleep(2)  # an ECMP route gains its second nexthop a moment later
        assert not any(missing.values()), missing
        assert not diff, "\n".join(diff)
        # what was compared is there: every node's link up with its address, PCs' routes
        pc1 = seen["podlab"]["PC1"]
        assert {"family": "inet", "local": "192.168.11.2", "prefixlen": 24} .items() <= \
            next(a for a in pc1["addr"]["eth1"]["addr_info"] if a["family"] == "inet").items()
        assert {"dst": "192.168.0.0/16", "gateway": "192.168.11.1"}.items() <= \
            next(r for r in pc1["route4"] if r["dst"] == "192.168.0.0/16").items()
        assert all(set(seen["podlab"][n]["addr"]) >= {"lo", "eth1"} for n in NODES)
    finally:
        for lab in labs.values():
            lab.destroy()
    assert all(runtime.containers_of(lab.name) == [] for lab in labs.values())
