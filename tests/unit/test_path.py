"""The path check, pure: the hops each traced pair must cross, from the plan, and the
verdict on hand-written answers (a clean trace, a silent hop, a detour, a rewrite located
to its hop, IPv6, an outside host with no route back)."""

from __future__ import annotations

from podlab_unit_helpers import EXAMPLES

from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.prove import path
from harness.prove.path import Answer, PathTarget, Quote
from harness.render.truth import DETOUR, classify

SPORT, DPORT = 40000, 33434


def example(name: str) -> Plan:
    return make_plan(load_topology(next(p for p in EXAMPLES if p.name == f"{name}.clab.yml")))


def traced(plan: Plan) -> dict[tuple[str, str, str], PathTarget]:
    """Every traced pair, the kernel's source taken as the plan's (a node: its first
    address)."""
    out = {}
    for check, e, sender in path.pairs(plan):
        src = e.src_ip or plan.source_toward(sender, e.dst, e.family)
        t = path.target(plan, check, e, sender, src)
        out[(t.src, t.dst, t.family)] = t
    return out


def answers(t: PathTarget, devices: list[str] | None = None,
            quotes: dict[int, Quote] | None = None, plan: Plan | None = None
            ) -> dict[int, Answer]:
    """The answers a trace of `t` gets when `devices` (default: the planned hops) answer
    in turn, each from its first address, quoting the header it should have received,
    unless `quotes` says otherwise."""
    devices = devices or t.planned
    out = {}
    for k, name in enumerate(devices, 1):
        hop = t.hops[k - 1] if k <= len(t.hops) else None
        addr = (path.addresses_of(plan, name, t.family)[0] if plan and (
            hop is None or hop.device != name) else hop.addresses[0])  # type: ignore[union-attr]
        src = hop.src if hop else t.src_ip
        quote = (quotes or {}).get(k, Quote(src, t.dst_ip, SPORT, DPORT))
        kind = "unreachable" if name == t.dst else "time-exceeded"
        out[k] = Answer(k, addr, kind, device=name, quote=quote, received=True)
    return out


def judge(t: PathTarget, got: dict[int, Answer], plan: Plan) -> path.Result:
    return path.judge(t, got, "udp", SPORT, DPORT, who=path.owners(plan))


def test_each_pair_that_crosses_a_device_is_traced_hop_by_hop_through_the_plan() -> None:
    plan = example("tworouter")
    ts = traced(plan)
    assert set(ts) == {("a", "b", "ipv4"), ("b", "a", "ipv4"), ("n1", "b", "ipv4"),
                       ("n2", "a", "ipv4"), ("a", "n2", "ipv4"), ("b", "n1", "ipv4")}
    assert ts["a", "b", "ipv4"].planned == ["n1", "ra", "n2", "b"]
    assert ts["n1", "b", "ipv4"].planned == ["ra", "n2", "b"]  # a node is its own sender
    assert ts["a", "n2", "ipv4"].planned == ["n1", "ra", "n2"]
    ra = ts["a", "b", "ipv4"].hops[1]
    assert set(ra.addresses) == set(plan.node("ra").own_addresses)


def test_every_pod_is_some_sources_destination_on_each_node() -> None:
    plan = example("flat3")
    dsts = {t.dst for t in traced(plan).values() if t.check == "pod-to-pod"}
    assert dsts == {p.name for p in plan.pods}


def test_a_clean_trace_passes_naming_every_hop() -> None:
    plan = example("tworouter")
    t = traced(plan)["a", "b", "ipv4"]
    r = judge(t, answers(t), plan)
    assert r.ok, r.detail
    assert r.observed["hops"] == ["n1", "ra", "n2", "b"]
    assert "n1 > ra > n2 > b answered in order as planned" in r.detail


def test_a_detour_of_equal_length_names_the_router_taken() -> None:
    plan = example("tworouter")
    t = traced(plan)["a", "b", "ipv4"]
    r = judge(t, answers(t, ["n1", "rb", "n2", "b"], plan=plan), plan)
    assert not r.ok and r.failure == "detour"
    assert r.observed["hops"] == ["n1", "rb", "n2", "b"]
    assert r.expected["hops"] == ["n1", "ra", "n2", "b"]
    assert "hop 2 (TTL 2) was rb, not ra" in r.detail
    assert classify(r) == DETOUR
    assert r.to_dict()["failure"] == "detour"


def test_a_silent_hop_is_reported_silent_never_assumed() -> None:
    plan = example("tworouter")
    t = traced(plan)["a", "b", "ipv4"]
    got = answers(t)
    del got[2]
    r = judge(t, got, plan)
    assert not r.ok and r.failure == "silent"
    assert r.observed["hops"] == ["n1", "?", "n2", "b"]
    assert "hop 2 (ra) silent: no answer to TTL 2 in 2 tries" in r.detail


def test_nothing_sent_is_a_failure() -> None:
    plan = example("tworouter")
    t = traced(plan)["a", "b", "ipv4"]
    r = path.judge(t, {}, error="a has no route to 10.244.1.2")
    assert not r.ok and r.failure == "unsent" and "no route" in r.detail


def test_a_rewrite_is_located_between_the_last_hop_that_quoted_it_as_sent_and_the_next(
        ) -> None:
    plan = example("routed")
    t = traced(plan)["client", "server", "ipv4"]
    assert t.planned == ["node1", "r1", "spine", "r3", "node3", "server"]
    spine_out = next(i for i in plan.node("spine").interfaces if i.peer.startswith("r3:"))
    natted = spine_out.address.split("/")[0]  # type: ignore[union-attr]
    rewritten = Quote(natted, t.dst_ip, SPORT, DPORT)
    r = judge(t, answers(t, quotes={4: rewritten, 5: rewritten, 6: rewritten}), plan)
    assert not r.ok and r.failure == "rewrite"
    assert (f"source rewritten {t.src_ip} -> {natted} between spine and r3: spine quoted "
            "it as expected, r3 (hop 4) is the first hop whose quote differs "
            f"({natted} is spine's own address)") in r.detail


def test_masquerade_expected_after_the_pods_node_is_no_rewrite() -> None:
    plan = example("routed")
    t = traced(plan)["client", "ext", "ipv4"]
    assert t.hops[0].src == t.src_ip and t.hops[1].src != t.src_ip  # SNAT by node1
    got = answers(t, quotes={k: Quote(t.hops[k - 1].src, t.dst_ip, 61000, DPORT)
                             for k in range(2, len(t.hops) + 1)})
    assert judge(t, got, plan).ok


def test_ipv6_hops_answer_from_their_ipv6_addresses_with_hop_limits() -> None:
    plan = example("dual")
    ts = traced(plan)
    t = next(t for (s, d, f), t in ts.items() if f == "ipv6" and t.check == "pod-to-pod"
             and len(t.hops) > 2)
    assert all(":" in a for h in t.hops for a in h.addresses)
    got = answers(t)
    del got[1]
    r = judge(t, got, plan)
    assert r.family == "ipv6" and "no answer to hop limit 1" in r.detail
    assert judge(t, answers(t), plan).ok


def test_an_outside_host_with_no_route_back_to_an_unmasqueraded_pod_is_not_asked() -> None:
    text = next(p for p in EXAMPLES if p.name == "routed.clab.yml").read_text()
    from harness.model.topology import parse_topology

    plan = make_plan(parse_topology(text.replace("masquerade: true", "masquerade: false")))
    t = next(t for t in traced(plan).values() if t.check == "pod-to-external")
    assert not t.answer_back and t.planned == ["node1", "r1", "spine"]  # not ext itself
    r = judge(t, answers(t), plan)
    assert r.ok and "ext itself not asked: it has no route back to client" in r.detail
    got = answers(t)
    got[1].received = False
    r = judge(t, got, plan)
    assert not r.ok and r.failure == "lost"


def test_an_answer_frame_names_its_writer_the_probe_and_the_ttl_it_quotes() -> None:
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6TimeExceeded, IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    from harness.prove import pathprobe
    from harness.prove.probe import nonce

    t = PathTarget("pod-to-pod", "a", "b", "a", "ipv4", "10.244.0.2", "10.244.1.2", ())
    sent = pathprobe.stamp(pathprobe.craft(t, 7, SPORT), False, 3, pathprobe.tag_of(3, 1))
    sent_ip = IP(sent)
    assert sent_ip.ttl == 3 and sent_ip.src == "10.244.0.2" and sent_ip[UDP].sport == SPORT
    frame = bytes(Ether() / IP(src="172.30.0.2", dst="10.244.0.2", ttl=64) /
                  ICMP(type=11, code=0) / sent_ip)
    got = pathprobe.parse_answer(frame)
    assert got is not None
    assert (got.from_ip, got.ttl, got.kind, got.probe, got.tag & 0xFF) == (
        "172.30.0.2", 64, "time-exceeded", 7, 3)
    assert got.quote == Quote("10.244.0.2", "10.244.1.2", SPORT, pathprobe.DPORT)

    t6 = PathTarget("pod-to-pod", "a", "b", "a", "ipv6", "fd00::2", "fd00:1::2", ())
    sent6 = IPv6(pathprobe.stamp(pathprobe.craft(t6, 9, SPORT), True, 2,
                                 pathprobe.tag_of(2, 0)))
    assert sent6.hlim == 2 and bytes(sent6[Raw]) == nonce(9)
    frame6 = bytes(Ether() / IPv6(src="fd00:ff::1", dst="fd00::2", hlim=64) /
                   ICMPv6TimeExceeded() / sent6)
    got6 = pathprobe.parse_answer(frame6)
    assert got6 is not None and got6.kind == "time-exceeded" and got6.probe == 9
    assert got6.tag & 0xFF == 2 and got6.quote.src == "fd00::2"


def test_where_a_daemon_routes_the_forwarding_tables_name_the_hops_of_equal_paths() -> None:
    plan = example("ring")  # node1 and node3 are two equal ways from node4 to node2
    e = plan.pod_to_pod("d", "b")
    who = path.owners(plan)
    via = {n.name: {i.peer.split(":")[0]: i.address.split("/")[0]  # type: ignore[union-attr]
                    for i in n.interfaces} for n in plan.nodes}
    gateways = {"node4": {e.dst_ip: via["node1"]["node4"]},  # node4 -> node1's address
                "node1": {e.dst_ip: via["node2"]["node1"]},
                "node2": {e.dst_ip: None}}  # b is on node2's bridge
    walked = path.walk("node4", e.dst_ip, "b", gateways, who)
    assert walked == ("node1", "node2")
    t = path.target(plan, "pod-to-pod", e, "d", str(plan.pod("d").ip), ("node4", *walked))
    assert t.planned == ["node4", "node1", "node2", "b"] and t.expectation == "fabric"
    r = judge(t, answers(t), plan)
    assert r.ok and r.expected["expectation"] == "fabric", r.detail
    assert "as the forwarding tables route it" in r.detail
    # a walk of another length than the plan's is not taken: the plan's hops stay
    longer = path.target(plan, "pod-to-pod", e, "d", str(plan.pod("d").ip),
                         ("node4", "node1", "node1", "node2"))
    assert longer.expectation == "plan" and longer.planned == ["node4", "node3", "node2", "b"]
    assert path.walk("node4", e.dst_ip, "b", {"node4": {}}, who) is None  # no route


def test_each_targets_probe_is_the_packet_scapy_builds_for_it() -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    from harness.prove import pathprobe
    from harness.prove.probe import nonce

    for family, src, dst, head in (
            ("ipv4", "10.244.0.2", "10.244.3.7", IP(src="10.244.0.2", dst="10.244.3.7",
                                                    ttl=1, id=1)),
            ("ipv6", "fd00::2", "fd00:3::7", IPv6(src="fd00::2", dst="fd00:3::7", hlim=1))):
        t = PathTarget("pod-to-pod", "a", "b", "a", family, src, dst, ())
        for probe, sport in ((5, 40000), (123456789, 1025)):
            want = bytes(head / UDP(sport=sport, dport=pathprobe.DPORT) / Raw(nonce(probe)))
            assert pathprobe.craft(t, probe, sport) == want


def test_where_udp_is_filtered_an_icmp_echo_asks_and_its_answers_are_read() -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6TimeExceeded, IPv6
    from scapy.layers.l2 import Ether

    from harness.prove import pathprobe
    from harness.prove.probe import nonce

    for family, src, dst, router in (("ipv4", "10.244.0.2", "10.244.1.2", "172.30.0.2"),
                                     ("ipv6", "fd00::2", "fd00:1::2", "fd00:ff::1")):
        t = PathTarget("pod-to-pod", "a", "b", "a", family, src, dst, ())
        six = family == "ipv6"
        sent = pathprobe.stamp(pathprobe.craft_echo(t, 11, 777), six, 2,
                               pathprobe.tag_of(2, 2))
        pkt = IPv6(sent) if six else IP(sent)
        again = (IPv6 if six else IP)(bytes(pkt.__class__(bytes(pkt))))
        assert bytes(again) == sent  # its checksums are scapy's
        head = (IPv6(src=router, dst=src, hlim=64) / ICMPv6TimeExceeded()) if six else (
            IP(src=router, dst=src, ttl=64) / ICMP(type=11))
        got = pathprobe.parse_answer(bytes(Ether() / head / pkt))
        assert got is not None and got.proto == "icmp" and got.probe == 11
        assert got.tag & 0xFF == 2 and got.quote == Quote(src, dst, 777, 777)
        reply = (IPv6(src=dst, dst=src) / ICMPv6EchoReply(id=777, seq=got.tag) /
                 nonce(11)) if six else (IP(src=dst, dst=src) /
                                         ICMP(type=0, id=777, seq=got.tag) / nonce(11))
        answer = pathprobe.parse_answer(bytes(Ether() / reply))
        assert answer is not None and answer.kind == "echo-reply" and answer.quote is None
        assert answer.tag & 0xFF == 2 and answer.probe == 11


def test_a_destination_that_answers_only_an_icmp_echo_passes_saying_so() -> None:
    plan = example("tworouter")
    t = traced(plan)["a", "b", "ipv4"]
    got = answers(t)
    got[4] = Answer(4, t.hops[3].addresses[0], "echo-reply", device="b", received=True,
                    proto="icmp")
    r = judge(t, got, plan)
    assert r.ok, r.detail
    assert "TTL 4 answered an ICMP echo, not UDP" in r.detail
    got[2].proto = "icmp"
    got[2].quote = Quote(t.src_ip, t.dst_ip, SPORT, SPORT)  # an echo's id in both
    assert judge(t, got, plan).ok


def test_the_answer_filter_keeps_answers_for_the_namespace_and_drops_the_rest() -> None:
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
    from scapy.layers.l2 import Ether
    from test_probes import _filtered

    from harness.host import bpf

    probe = IP(src="10.244.0.2", dst="10.244.1.2") / UDP(dport=33434) / b"PLB"
    te_mine = bytes(Ether() / IP(src="172.30.0.2", dst="10.244.0.2") / ICMP(type=11) / probe)
    te_other = bytes(Ether() / IP(src="172.30.0.2", dst="10.244.0.9") / ICMP(type=11) / probe)
    echo = bytes(Ether() / IP(src="10.244.1.2", dst="10.244.0.2") / ICMP(type=8))
    six = bytes(Ether() / IPv6(src="fd00:1::2", dst="fd00::2") / ICMPv6DestUnreach(code=4) /
                IPv6(src="fd00::2", dst="fd00:1::2") / UDP())
    frames = [te_mine, te_other, echo, six]
    # a socketpair's frames count as arriving (the emitter's side needs a real interface)
    assert _filtered(bpf.icmp_answer_filter(["10.244.0.2", "fd00::2"]), frames) == [
        te_mine, six]
    assert _filtered(bpf.icmp_answer_filter(), frames) == [te_mine, te_other, six]
