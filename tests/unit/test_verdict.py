"""The verdict on synthetic sightings: what verify concludes from what its sniffers saw.

Each test writes by hand the sightings a lab would produce (namespace, direction, headers)
for one probe, as the engine records them, and checks the verdict and its diagnosis.
web (10.244.0.2) lives on node1 (172.30.0.1), db (10.244.1.2) on node2 (172.30.0.2); the
plan's path is node1 > node2, two routers, so the TTL drops by 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.model.topology import load_topology
from harness.plan import Expectation, PodPlan, make_plan
from harness.prove import verdict
from harness.prove.probe import TTL, Heard, Probe, Seen
from harness.prove.targets import Target, endpoints, targets

ROOT = Path(__file__).resolve().parents[2]
WEB, DB, NODE1, NODE2, NODE3, WORLD = ("10.244.0.2", "10.244.1.2", "172.30.0.1",
                                       "172.30.0.2", "172.30.0.3", "172.30.0.4")
SPORT, UDP_PORT = 40000, 41000  # the sender's port, the receiver's listener port
EXP = Expectation("web", "db", WEB, DB, 2, ("node1", "node2"))
TARGET = Target("pod-to-pod", EXP, "web", "db", WEB, WEB, True)


def probe(proto: str = "udp", **kw: Any) -> Probe:
    return Probe(7, proto, "web", "db", WEB, DB,
                 **({"sent_at": 1.0, "sport": SPORT, "dport": UDP_PORT} | kw))


def seen(ns: str, ttl: int, *, out: bool = False, reply: bool = False, src: str = WEB,
         dst: str = DB, sport: int = SPORT, dport: int = UDP_PORT, ts: float = 0.0,
         ifname: str = "eth1") -> Seen:
    if reply:  # the caller gives the request's view; a reply swaps both ends
        src, dst, sport, dport = dst, src, dport, sport
    return Seen(ns, ifname, out, ts or (TTL - ttl) + (0.5 if not out else 0), reply, "udp",
                src, dst, sport, dport, ttl)


def path(reply: bool = False, **kw: Any) -> list[Seen]:
    """Every sighting of an undisturbed request (or reply) along web > node1 > node2 > db."""
    if not reply:
        return [seen("web", 64, out=True, ifname="eth0", **kw),
                seen("node1", 64, ifname="pv-web", **kw), seen("node1", 63, out=True, **kw),
                seen("node2", 63, **kw), seen("node2", 62, out=True, ifname="pv-db", **kw),
                seen("db", 62, ifname="eth0", **kw)]
    return [seen("db", 64, out=True, reply=True, ifname="eth0", **kw),
            seen("node2", 64, reply=True, ifname="pv-db", **kw),
            seen("node2", 63, out=True, reply=True, **kw), seen("node1", 63, reply=True, **kw),
            seen("node1", 62, out=True, reply=True, ifname="pv-web", **kw),
            seen("web", 62, reply=True, ifname="eth0", **kw)]


def heard(ns: str = "db", ttl: int | None = 62, *, reply: bool = False, src: str = WEB,
          dst: str = DB, sport: int = SPORT, dport: int = UDP_PORT,
          proto: str = "udp") -> Heard:
    """What a socket got; the request's view, swapped for a reply."""
    if reply:
        src, dst, sport, dport = dst, src, dport, sport
    return Heard(ns, reply, proto, src, dst, sport, dport, ttl)


CLEAN = [heard(), heard("web", reply=True)]


def test_unchanged_request_and_reply_pass() -> None:
    r = verdict.evaluate(TARGET, probe(), path() + path(reply=True), CLEAN)
    assert r.ok, r.detail
    request = {"src": WEB, "dst": DB, "ttl": 62, "sport": SPORT, "dport": UDP_PORT}
    reply = {"src": DB, "dst": WEB, "ttl": 62, "sport": UDP_PORT, "dport": SPORT}
    assert r.observed == {**request, "socket": request, "reply": {**reply, "socket": reply}}
    assert r.expected == {**request, "hops": 2, "path": ["node1", "node2"], "reply": reply}
    assert ("arrived unchanged on the wire and at db's socket, TTL -2, the planned number "
            "of routers (hops not observed); reply unchanged") in r.detail


def test_a_pass_names_no_path_it_did_not_see() -> None:
    """The sniffers sit where probes end: the TTL says how many routers, not which. A
    detail names the hops only when they were observed."""
    r = verdict.evaluate(TARGET, probe(), path() + path(reply=True), CLEAN)
    assert r.ok and "node1 > node2" not in r.detail and "hops not observed" in r.detail
    assert verdict.hops_phrase("ipv4", 0) == ("TTL unchanged, no router planned on the way "
                                              "(hops not observed)")
    assert verdict.hops_phrase("ipv6", 3) == ("hop limit -3, the planned number of routers "
                                              "(hops not observed)")
    assert verdict.hops_phrase("ipv4", 2, ("node1", "r1")) == "TTL -2 over node1 > r1"


def test_a_rewrite_inside_the_receiver_shows_only_at_its_socket() -> None:
    """INPUT SNAT inside db: the sniffer saw the frame before netfilter, the socket after."""
    r = verdict.evaluate(TARGET, probe(), path() + path(reply=True),
                         [heard(src=NODE1), CLEAN[1]])
    assert not r.ok
    assert r.observed["src"] == WEB and r.observed["socket"]["src"] == NODE1
    assert r.detail == (f"request source rewritten {WEB} -> {NODE1} inside db after arrival "
                        "(PREROUTING/INPUT)")


def test_a_port_rewrite_inside_the_sender_on_the_reply() -> None:
    r = verdict.evaluate(TARGET, probe(), path() + path(reply=True),
                         [CLEAN[0], heard("web", reply=True, dport=9)])
    assert r.detail == (f"reply source port rewritten {UDP_PORT} -> 9 inside web after "
                        "arrival (PREROUTING/INPUT)")


def test_a_request_that_no_socket_got_fails() -> None:
    r = verdict.evaluate(TARGET, probe(), path() + path(reply=True), [CLEAN[1]])
    assert r.detail == ("request reached db on the wire but no socket in db received it "
                        "(dropped or diverted inside db after arrival: PREROUTING/INPUT)")


def test_tcp_sockets_report_no_ttl_and_are_judged_without_it() -> None:
    r = verdict.evaluate(TARGET, probe("tcp"), _as("tcp", path() + path(reply=True)),
                         [heard(ttl=None, proto="tcp"), heard("web", None, reply=True,
                                                              proto="tcp")])
    assert r.ok, r.detail
    assert "ttl" not in r.observed["socket"]


def _as(proto: str, sightings: list[Seen]) -> list[Seen]:
    for s in sightings:
        s.proto = proto
    return sightings


def test_snat_names_the_node_that_rewrote_the_source() -> None:
    req = path()[:3]
    req[2] = seen("node1", 63, out=True, src=NODE1)
    req += [seen("node2", 63, src=NODE1), seen("db", 62, src=NODE1, ifname="eth0")]
    r = verdict.evaluate(TARGET, probe(), req + path(reply=True),
                         [heard(src=NODE1), CLEAN[1]])
    assert not r.ok and r.observed["src"] == NODE1
    assert r.detail == (f"request source rewritten {WEB} -> {NODE1} at node1 (leaving on "
                        "eth1) on the way from web to db")


def test_dnat_that_steers_the_request_away_is_lost_with_the_rewrite_named() -> None:
    other = "10.244.2.2"
    req = [*path()[:3], seen("node2", 63), seen("node2", 62, out=True, dst=other)]
    r = verdict.evaluate(TARGET, probe(), req)
    assert not r.ok
    assert r.detail == (f"request destination rewritten {DB} -> {other} at node2 (leaving on "
                        "eth1): it never reached db (last seen in node2)")


def test_port_rewrite_is_a_failure_even_with_both_addresses_intact() -> None:
    req = [*path()[:4], seen("node2", 62, out=True, sport=20001, ifname="pv-db"),
           seen("db", 62, sport=20001, ifname="eth0")]
    r = verdict.evaluate(TARGET, probe(), req + path(reply=True),
                         [heard(sport=20001), CLEAN[1]])
    assert not r.ok and r.observed["sport"] == 20001
    assert r.detail == (f"request source port rewritten {SPORT} -> 20001 at node2 (leaving "
                        "on pv-db) on the way from web to db")


def test_destination_port_rewrite_is_seen_at_arrival_when_not_traced() -> None:
    r = verdict.evaluate(TARGET, probe(), [seen("db", 62, dport=8080, ifname="eth0"),
                                           path(reply=True)[-1]],
                         [heard(dport=8080), CLEAN[1]])
    assert not r.ok
    assert r.detail == (f"request destination port rewritten {UDP_PORT} -> 8080 between the "
                        "sender and db on the way from web to db")


def test_ttl_detour_shows_the_route_taken() -> None:
    req = [*path()[:3], seen("node3", 63), seen("node3", 62, out=True), seen("node2", 62),
           seen("node2", 61, out=True, ifname="pv-db"), seen("db", 61, ifname="eth0")]
    r = verdict.evaluate(TARGET, probe(), req + path(reply=True), [heard(ttl=61), CLEAN[1]])
    assert not r.ok and r.observed["ttl"] == 61
    assert r.detail == ("request TTL dropped by 3, plan expects 2 (node1 > node2); seen at "
                        "web > node1 > node3 > node2 > db")


def test_loss_says_where_the_request_was_last_seen() -> None:
    r = verdict.evaluate(TARGET, probe(), path()[:3])
    assert not r.ok and r.observed == {}
    assert r.detail == "request from web to db lost: last seen leaving node1 on eth1 (TTL 63)"


def test_a_request_never_seen_at_all_is_lost_at_the_sender() -> None:
    r = verdict.evaluate(TARGET, probe(), [])
    assert r.detail == "request lost: never seen leaving web"


def test_a_lost_reply_after_a_clean_request() -> None:
    r = verdict.evaluate(TARGET, probe(), path() + path(reply=True)[:2], CLEAN[:1])
    assert not r.ok and "reply" not in r.observed
    assert r.detail == ("reply from db to web lost: last seen arriving at node2 on pv-db "
                        "(TTL 64)")


def test_reply_only_rewrite_fails_the_reply_and_keeps_the_request_clean() -> None:
    rep = [*path(reply=True)[:2], seen("node2", 63, out=True, reply=True, dst=NODE2),
           seen("node1", 63, reply=True, dst=NODE2),
           seen("node1", 62, out=True, reply=True, dst=NODE2, ifname="pv-web"),
           seen("web", 62, reply=True, dst=NODE2, ifname="eth0")]
    r = verdict.evaluate(TARGET, probe(), path() + rep, [CLEAN[0], heard("web", reply=True,
                                                                          dst=NODE2)])
    assert not r.ok
    assert r.observed["src"] == WEB and r.observed["reply"]["src"] == NODE2
    assert r.detail == (f"reply source rewritten {DB} -> {NODE2} at node2 (leaving on eth1) "
                        "on the way from db to web")


EXTERNAL = Expectation("web", "world", WEB, WORLD, 1, ("node1", "world"), snat_to=NODE1)
EXTERNAL_TARGET = Target("pod-to-external", EXTERNAL, "web", "world", WEB, NODE1, True)


def test_expected_masquerade_passes_and_names_the_node() -> None:
    p = Probe(8, "icmp", "web", "world", WEB, WORLD, sent_at=1.0, sport=5, dport=5)
    arrive = Seen("world", "eth1", False, 1.0, False, "icmp", NODE1, WORLD, 9, 9, 63)
    back = Seen("web", "eth0", False, 2.0, True, "icmp", WORLD, WEB, 5, 5, 63)
    got = Heard("world", False, "icmp", NODE1, WORLD, 9, 9, 63)  # masquerade may change ids
    got_back = Heard("web", True, "icmp", WORLD, WEB, 5, 5, 63)
    r = verdict.evaluate(EXTERNAL_TARGET, p, [arrive, back], [got, got_back])
    assert r.ok, r.detail
    assert r.detail.startswith(f"masqueraded as expected: {WEB} -> {NODE1} (node1's "
                               "address), seen so by world's socket; TTL -1, the planned "
                               "number of routers (hops not observed)")


def test_missing_masquerade_is_the_negative_control_failing() -> None:
    p = Probe(8, "udp", "web", "world", WEB, WORLD, sent_at=1.0, sport=SPORT, dport=UDP_PORT)
    arrive = Seen("world", "eth1", False, 1.0, False, "udp", WEB, WORLD, SPORT, UDP_PORT, 63)
    r = verdict.evaluate(EXTERNAL_TARGET, p, [arrive], [heard("world", 63, dst=WORLD)])
    assert not r.ok
    assert r.detail.startswith(f"not masqueraded: web reached world with its own address "
                               f"{WEB}, expected {NODE1} (NAT by node1)")


def test_a_probe_that_could_not_be_sent_reports_only_why() -> None:
    r = verdict.evaluate(TARGET, probe(error="db is not running", sent_at=0.0), [])
    assert not r.ok and r.detail == "db is not running"


# --- pod-identity -------------------------------------------------------------------------

def _pod() -> PodPlan:
    plan = make_plan(load_topology(ROOT / "topologies" / "flat3.clab.yml"))
    return plan.pod("web")


def test_identity_passes_when_eth0_holds_the_address_and_containers_share_the_netns() -> None:
    pod = _pod()
    ns = {pod.infra: 1, **{c.container: 1 for c in pod.containers}}
    r = verdict.identity(pod, [pod.cidr], ns)
    assert r.ok, r.detail


def test_identity_fails_on_a_wrong_address_and_a_stray_container() -> None:
    pod = _pod()
    stray = pod.containers[1]
    ns = {pod.infra: 1, pod.containers[0].container: 1, stray.container: 2}
    r = verdict.identity(pod, ["10.9.9.9/24"], ns)
    assert not r.ok
    assert f"container(s) {stray.name} not in the pod's network namespace" in r.detail
    assert f"plan says exactly {pod.cidr}" in r.detail


def test_identity_needs_eth0_to_hold_only_the_pod_address() -> None:
    pod = _pod()
    ns = {pod.infra: 1, **{c.container: 1 for c in pod.containers}}
    r = verdict.identity(pod, [pod.cidr, "10.244.0.99/24"], ns)
    assert not r.ok and "plan says exactly" in r.detail


def test_identity_compares_eth0_with_the_source_the_peers_saw() -> None:
    pod = _pod()
    ns = {pod.infra: 1, **{c.container: 1 for c in pod.containers}}
    assert verdict.identity(pod, [pod.cidr], ns, {pod.ip: "db, pod-to-pod udp"}).ok
    r = verdict.identity(pod, [pod.cidr], ns, {pod.ip: "db, pod-to-pod udp",
                                                NODE1: "node2, pod-to-node tcp"})
    assert not r.ok and r.observed["peers_saw"] == sorted([pod.ip, NODE1])
    assert r.detail == f"peers saw it as {NODE1} (node2, pod-to-node tcp)"


def test_identity_of_a_stopped_pod() -> None:
    pod = _pod()
    r = verdict.identity(pod, None, {})
    assert r.detail == f"infra container {pod.infra} is not running"


# --- targets ------------------------------------------------------------------------------

def test_targets_cover_every_pair_once_and_expect_the_masquerade() -> None:
    plan = make_plan(load_topology(ROOT / "topologies" / "flat3.clab.yml"))
    sources = {n.name: {p.ip: n.address for p in plan.pods} for n in plan.k8s_nodes}
    tgts = targets(plan, ["pod-to-pod", "node-to-pod", "pod-to-node", "pod-to-external"],
                   sources)
    pods, nodes = len(plan.pods), len(plan.k8s_nodes)
    by_check: dict[str, int] = {}
    for t in tgts:
        by_check[t.check] = by_check.get(t.check, 0) + 1
    assert by_check == {"pod-to-pod": pods * (pods - 1), "node-to-pod": nodes * pods,
                        "pod-to-node": nodes * pods, "pod-to-external": pods}
    ext = [t for t in tgts if t.check == "pod-to-external"]
    assert all(t.expect_src == plan.node(plan.pod(t.sender).node).address for t in ext)
    assert all(t.protos == ("udp", "tcp", "icmp") for t in tgts)
    assert endpoints(plan)["web"].addresses == (plan.pod("web").ip,)
    assert targets(plan, ["pod-identity"]) == []


def test_reply_port_and_icmp_id_are_judged_like_the_request() -> None:
    rep = _as("udp", path(reply=True))
    rep[-1].sport = 4242
    r = verdict.evaluate(TARGET, probe(), path() + rep, CLEAN)
    assert r.detail.startswith(f"reply source port rewritten {UDP_PORT} -> 4242 between node1 "
                               "and web")
    icmp = probe("icmp", sport=5, dport=5)
    req = _as("icmp", path(sport=5, dport=5))
    rep = _as("icmp", path(reply=True, sport=5, dport=5))
    rep[-1].sport = rep[-1].dport = 7
    r = verdict.evaluate(TARGET, icmp, req + rep,
                         [heard(sport=5, dport=5, proto="icmp"),
                          heard("web", reply=True, sport=7, dport=7, proto="icmp")])
    assert r.expected["icmp_id"] == r.expected["reply"]["icmp_id"] == 5
    assert r.detail == ("reply ICMP id rewritten 5 -> 7 between node1 and web on the way from "
                        "db to web")


# --- both families ------------------------------------------------------------------------

def _dual() -> Any:
    from podlab_unit_helpers import DUAL

    from harness.model.topology import parse_topology

    return make_plan(parse_topology(DUAL))


W6, D6 = "fd00:10:244::2", "fd00:10:244:1::2"


def test_targets_run_once_per_family_the_ends_share() -> None:
    plan = _dual()
    sources = {n.name: {ip: n.address_of("ipv6" if ":" in ip else "ipv4")
                        for p in plan.pods for ip in p.ips} for n in plan.k8s_nodes}
    tgts = targets(plan, ["pod-to-pod", "node-to-pod", "pod-to-node", "pod-to-external"],
                   sources)
    v4 = [t for t in tgts if t.family == "ipv4"]
    v6 = [t for t in tgts if t.family == "ipv6"]
    assert len(v4) == len(v6) and len(tgts) == 2 * len(v4)
    assert all(":" in t.src_ip and ":" in t.exp.dst_ip and ":" in t.expect_src for t in v6)
    assert all(":" not in t.src_ip + t.exp.dst_ip for t in v4)
    ext6 = next(t for t in v6 if t.check == "pod-to-external" and t.sender == "web")
    assert ext6.expect_src == "fd00:172:30::1"  # node1's IPv6 egress: masqueraded by ip6tables
    n2p6 = next(t for t in v6 if t.check == "node-to-pod" and t.sender == "node1")
    assert n2p6.src_ip == "fd00:172:30::1"
    assert endpoints(plan)["web"].addresses == ("10.244.0.2", W6)
    assert endpoints(plan)["web"].families == ("ipv4", "ipv6")
    assert endpoints(plan)["sw"].families == ()


def test_an_ipv6_result_carries_its_family_and_speaks_of_the_hop_limit() -> None:
    exp = Expectation("web", "db", W6, D6, 2, ("node1", "node2"), family="ipv6")
    target = Target("pod-to-pod", exp, "web", "db", W6, W6, True)
    p = Probe(7, "udp", "web", "db", W6, D6, sent_at=1.0, sport=SPORT, dport=UDP_PORT)
    clean = path(src=W6, dst=D6) + path(reply=True, src=W6, dst=D6)
    hear = [heard(src=W6, dst=D6), heard("web", reply=True, src=W6, dst=D6)]
    r = verdict.evaluate(target, p, clean, hear)
    assert r.ok and r.family == "ipv6" and r.to_dict()["family"] == "ipv6"
    assert "hop limit -2, the planned number" in r.detail and "TTL" not in r.detail
    detour = [s for s in clean if not s.reply]
    for s in detour[-2:]:
        s.ttl -= 1
    r = verdict.evaluate(target, p, detour + clean[len(detour):],
                         [heard(src=W6, dst=D6, ttl=61), hear[1]])
    assert not r.ok and "request hop limit dropped by 3, plan expects 2" in r.detail
    lost = verdict.evaluate(target, p, detour[:3], [])
    assert "(hop limit 63)" in lost.detail


def test_identity_is_judged_per_family_one_global_address_of_each() -> None:
    pod = _dual().pod("web")
    ns = {pod.infra: 1, **{c.container: 1 for c in pod.containers}}
    eth0 = ["10.244.0.2/24", "fd00:10:244::2/64"]
    four, six = (verdict.identity(pod, eth0, ns, None, f) for f in ("ipv4", "ipv6"))
    assert four.ok and six.ok, (four.detail, six.detail)
    assert (four.family, six.family) == ("ipv4", "ipv6")
    assert six.detail.startswith("web is fd00:10:244::2, the only IPv6 address on eth0")
    assert six.expected["eth0"] == ["fd00:10:244::2/64"]
    # a second IPv6 address fails the IPv6 result alone
    two = [*eth0, "fd00:10:244::99/64"]
    assert verdict.identity(pod, two, ns, None, "ipv4").ok
    r = verdict.identity(pod, two, ns, None, "ipv6")
    assert not r.ok and "plan says exactly fd00:10:244::2/64" in r.detail
    # no IPv6 address at all
    r = verdict.identity(pod, eth0[:1], ns, None, "ipv6")
    assert not r.ok and "eth0 holds no IPv6 address" in r.detail
    # peers saw another IPv6 source
    r = verdict.identity(pod, eth0, ns, {"fd00:172:30::1": "db, pod-to-pod udp"}, "ipv6")
    assert not r.ok and r.detail == "peers saw it as fd00:172:30::1 (db, pod-to-pod udp)"


def test_an_ipv4_pod_with_a_stray_ipv6_address_fails_its_identity() -> None:
    pod = _pod()  # flat3: IPv4 only
    ns = {pod.infra: 1, **{c.container: 1 for c in pod.containers}}
    r = verdict.identity(pod, [pod.cidr, "fd00::5/64"], ns)
    assert not r.ok and "fd00::5/64" in r.detail and r.family == "ipv4"
    assert verdict.identity(pod, [pod.cidr], ns).detail.startswith(
        f"web is {pod.ip}, the only address on eth0")


# --------------------------------------------------------------------------- the fabric


def fabric_target(**kw: Any) -> Target:
    exp = Expectation("web", "db", WEB, DB, 2, ("node1", "node2"), source="fabric", **kw)
    return Target("pod-to-pod", exp, "web", "db", WEB, WEB, True)


def test_a_walked_expectation_says_so_and_the_reply_keeps_its_own_ttl() -> None:
    """The reply's walk took one more router: its TTL must drop by 3, not 2."""
    back = [s if s.ns != "web" else seen("web", 61, reply=True, ifname="eth0")
            for s in path(reply=True)]
    target = fabric_target(reply_hops=3, note="asymmetric return: ...")
    r = verdict.evaluate(target, probe(), path() + back, [heard(), heard("web", 61,
                                                                          reply=True)])
    assert r.ok, r.detail
    assert r.expectation == "fabric" and r.to_dict()["expectation"] == "fabric"
    assert r.expected["reply_hops"] == 3 and r.expected["reply"]["ttl"] == 61
    assert "the number of routers the fabric's tables route it through" in r.detail
    assert "TTL -3 on its own way back" in r.detail and "asymmetric return" in r.detail
    # the same reply against a symmetric expectation is a TTL off by one
    wrong = verdict.evaluate(fabric_target(), probe(), path() + back,
                             [heard(), heard("web", 61, reply=True)])
    assert not wrong.ok and "fabric's tables expect 2" in wrong.detail


def test_a_walk_that_stopped_leads_the_failure_it_foretold() -> None:
    stop = "the request: blackhole at r2: r2 has no route to 10.244.1.2 (after node1)"
    lost = [s for s in path() if s.ns in ("web", "node1")]
    r = verdict.evaluate(fabric_target(stop=stop), probe(), lost, [])
    assert not r.ok
    assert r.detail.startswith(f"in the fabric's tables, {stop}; request from web to db lost")
    assert r.expected["stop"] == stop
    # an expectation from the plan is said to be the plan's
    assert verdict.evaluate(TARGET, probe(), path() + path(reply=True),
                            CLEAN).expectation == "plan"
