"""The truth table: each result's mark from its headers, matrices, and the terminal view."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from harness.plan import Expectation
from harness.prove.probe import Heard, Probe, Seen
from harness.prove.result import Report, Result
from harness.prove.targets import Target
from harness.prove.verdict import evaluate
from harness.render.truth import (
    LOST,
    NAT,
    NO_NAT,
    OK,
    OTHER,
    PORT,
    TTL,
    classify,
    matrices,
    summarise,
    truth_view,
)

WEB, DB, NODE1, WORLD = "10.244.0.2", "10.244.1.2", "172.30.0.1", "172.30.0.9"


def req(**over: Any) -> dict[str, Any]:
    return {"src": WEB, "dst": DB, "ttl": 62, "sport": 40000, "dport": 47000} | over


def rep(**over: Any) -> dict[str, Any]:
    return {"src": DB, "dst": WEB, "ttl": 62} | over


def result(observed: dict[str, Any], detail: str = "", *, ok: bool = False,
           expected: dict[str, Any] | None = None, check: str = "pod-to-pod",
           src: str = "web", dst: str = "db", proto: str = "udp") -> Result:
    exp = expected if expected is not None else {**req(), "hops": 2, "reply": rep()}
    return Result(check, src, dst, proto, ok, exp, observed, detail)


@pytest.mark.parametrize("observed,detail,mark", [
    ({**req(), "reply": rep()}, "arrived unchanged", OK),
    ({}, "request lost: never seen leaving web", LOST),
    (req(), "reply from db to web lost: last seen leaving db on eth0 (TTL 64)", LOST),
    ({**req(src=NODE1), "reply": rep(dst=NODE1)}, "request source rewritten", NAT),
    ({**req(dst="10.244.2.2"), "reply": rep()}, "request destination rewritten", NAT),
    ({**req(ttl=61), "reply": rep()}, "request TTL dropped by 3, plan expects 2", TTL),
    ({**req(), "reply": rep(ttl=61)}, "reply TTL dropped by 3", TTL),
    ({**req(sport=1234), "reply": rep()}, "request source port rewritten", PORT),
    ({**req(src=NODE1, sport=1234), "reply": rep()}, "source and port rewritten", NAT),
    ({**req(ttl=61, sport=1), "reply": rep()}, "both", PORT),
])
def test_each_header_change_takes_its_mark(observed: dict[str, Any], detail: str,
                                           mark: str) -> None:
    assert classify(result(observed, detail, ok=mark == OK)) == mark


def test_a_missing_masquerade_is_n_and_a_wrong_one_is_n_upper() -> None:
    expected = {"src": NODE1, "dst": WORLD, "ttl": 63, "hops": 1}
    missing = result({"src": WEB, "dst": WORLD, "ttl": 63},
                     f"not masqueraded: web reached world with its own address {WEB}",
                     expected=expected, check="pod-to-external", dst="world")
    wrong = result({"src": "172.30.0.7", "dst": WORLD, "ttl": 63},
                   "request source rewritten 172.30.0.1 -> 172.30.0.7 at node1",
                   expected=expected, check="pod-to-external", dst="world")
    assert (classify(missing), classify(wrong)) == (NO_NAT, NAT)


def test_what_the_receiving_socket_got_counts_like_the_wire() -> None:
    """A rewrite inside the receiver (PREROUTING/INPUT) shows only at its socket, which is
    judged against the same wanted headers as the wire."""
    wire = {**req(), "reply": rep()}
    assert classify(result({**wire, "socket": req(src=NODE1)}, "x")) == NAT
    assert classify(result({**wire, "socket": req(dport=9)}, "x")) == PORT
    assert classify(result({**req(), "reply": {**rep(), "socket": rep(ttl=1)}}, "x")) == TTL
    assert classify(result({**wire, "socket": req()},
                           "request reached db on the wire but no socket in db received it "
                           "(dropped or diverted inside db after arrival)")) == LOST
    # ICMP: the echo id plays the port's part
    icmp = {"src": WEB, "dst": DB, "ttl": 62, "icmp_id": 7}
    assert classify(result({**icmp, "icmp_id": 8}, "x", expected=icmp, proto="icmp")) == PORT


def test_identity_seen_otherwise_by_peers_is_nat() -> None:
    exp = {"eth0": ["10.244.1.2/24"], "containers_in_netns": ["app"],
           "peers_saw": ["10.244.1.2"]}
    r = Result("pod-identity", "db", "db", "-", False, exp,
               {**exp, "peers_saw": ["10.244.1.2", "172.30.0.2"]},
               "peers saw it as 172.30.0.2 (web)")
    assert classify(r) == NAT


def test_checks_without_headers_are_lost_or_otherwise_failed() -> None:
    identity = Result("pod-identity", "db", "db", "-", False, {"ip": "10.244.1.2/24"},
                      {"eth0": []}, "eth0 holds no address, plan says 10.244.1.2/24")
    intra = Result("intra-pod", "db/exporter", "db/app", "tcp", False,
                   {"listener": "app", "dst": "127.0.0.1:47002"},
                   {"received": False, "seen_on_lo": False}, "did not receive")
    stopped = Result("pod-identity", "db", "db", "-", False, {"ip": "x"}, {},
                     "infra container podlab-x-db is not running")
    mtu = {"path_mtu": 1500, "limit": "a:eth1", "over": "fragmentation-needed"}
    blocked = Result("mtu", "a", "b", "icmp", False, mtu, {"fits": False},
                     "1500 bytes with DF did not cross a -> b: no answer")
    black_hole = Result("mtu", "a", "b", "icmp", False, mtu,
                        {"fits": True, "over_refused": False, "icmp_from": None},
                        "1501 bytes vanished without ICMP: PMTU black hole")
    assert [classify(r) for r in (identity, intra, stopped, blocked, black_hole)] == \
        [OTHER, LOST, LOST, LOST, OTHER]


def test_silent_headers_fall_back_on_the_diagnosis() -> None:
    """A failure whose observed headers match (it passed when probed again) keeps the
    mark its diagnosis names."""
    same = {**req(), "reply": rep()}
    assert classify(result(same, "request TTL dropped by 3; passed when probed again")) == TTL
    assert classify(result(same, "web has no route to 10.244.1.2")) == LOST
    assert classify(result(same, "something odd")) == OTHER


# --- the verdict's own Results, from synthetic sightings ---------------------------------

def _evaluate(seen: list[Seen], heard: list[Heard] | None = None, *,
              snat_to: str | None = None) -> Result:
    exp = Expectation("web", "db", WEB, DB, 2, ("node1", "node2"), snat_to)
    target = Target("pod-to-pod", exp, "web", "db", WEB, snat_to or WEB, True)
    probe = Probe(7, "udp", "web", "db", WEB, DB, True, sent_at=1.0, sport=40000, dport=47000)
    if heard is None:  # each socket got what arrived on the wire
        heard = [Heard(s.ns, s.reply, s.proto, s.src, s.dst, s.sport, s.dport, s.ttl)
                 for s in seen]
    return evaluate(target, probe, seen, heard)


def _seen(ns: str, src: str, dst: str, ttl: int, reply: bool = False, sport: int = 40000,
          ts: float = 1.0) -> Seen:
    ports = (47000, sport) if reply else (sport, 47000)
    return Seen(ns, "eth0", False, ts, reply, "udp", src, dst, *ports, ttl)


@pytest.mark.parametrize("seen,mark", [
    ([_seen("db", WEB, DB, 62), _seen("web", DB, WEB, 62, reply=True)], OK),
    ([_seen("db", NODE1, DB, 62), _seen("web", DB, WEB, 62, reply=True)], NAT),
    ([_seen("db", WEB, DB, 61), _seen("web", DB, WEB, 62, reply=True)], TTL),
    ([_seen("db", WEB, DB, 62, sport=5), _seen("web", DB, WEB, 62, True, sport=5)], PORT),
    ([_seen("db", WEB, DB, 62)], LOST),
    ([], LOST),
])
def test_the_verdicts_results_classify(seen: list[Seen], mark: str) -> None:
    r = _evaluate(seen)
    assert r.ok == (mark == OK), r.detail
    assert classify(r) == mark, r


def test_the_verdicts_missing_masquerade_is_n() -> None:
    r = _evaluate([_seen("db", WEB, DB, 62), _seen("web", DB, WEB, 62, reply=True)],
                  snat_to=NODE1)
    assert not r.ok and classify(r) == NO_NAT, r.detail


def test_the_verdicts_rewrite_inside_the_receiver_is_seen_at_its_socket() -> None:
    wire = [_seen("db", WEB, DB, 62), _seen("web", DB, WEB, 62, reply=True)]
    back = Heard("web", True, "udp", DB, WEB, 47000, 40000, 62)
    dnat = _evaluate(wire, [Heard("db", False, "udp", WEB, DB, 40000, 8080, 62), back])
    snat = _evaluate(wire, [Heard("db", False, "udp", NODE1, DB, 40000, 47000, 62), back])
    gone = _evaluate(wire, [back])
    assert [classify(r) for r in (dnat, snat, gone)] == [PORT, NAT, LOST], \
        [r.detail for r in (dnat, snat, gone)]


# --- matrices and the view ---------------------------------------------------------------

PODS = {"web": "node1", "api": "node1", "db": "node2", "cache": "node3"}


def lab_results(bad: dict[tuple[str, str, str], Result] | None = None) -> list[Result]:
    """pod-to-pod over three protocols and the identity check, all passing except `bad`."""
    bad = bad or {}
    out = [Result("pod-identity", p, p, "-", True, {"ip": "x"}, {"eth0": ["x"]}, "ok")
           for p in PODS]
    for proto in ("udp", "tcp", "icmp"):
        for a in PODS:
            for b in PODS:
                if a != b:
                    out.append(bad.get((a, b, proto)) or result(
                        {**req(), "reply": rep()}, "fine", ok=True, src=a, dst=b, proto=proto))
    return out


def test_one_matrix_per_check_and_protocol_with_plan_order() -> None:
    ms = matrices(lab_results(), order=["node1", *PODS])
    assert [(m.check, m.proto) for m in ms] == [
        ("pod-identity", "-"), ("pod-to-pod", "udp"), ("pod-to-pod", "tcp"),
        ("pod-to-pod", "icmp")]
    strip, udp = ms[0], ms[1]
    assert strip.strip and strip.rows == [""] and strip.cols == list(PODS)
    assert udp.rows == udp.cols == list(PODS)
    assert udp.total == 12 and udp.failed == 0
    assert ("web", "web") not in udp.cells


def test_families_split_matrices_when_results_carry_one() -> None:
    rs = [result({**req(), "reply": rep()}, "ok", ok=True) for _ in range(2)]
    rs[0].family, rs[1].family = "ipv4", "ipv6"  # type: ignore[attr-defined]
    ms = matrices(rs)
    assert [m.title for m in ms] == ["ipv4 udp", "ipv6 udp"]


def test_summary_per_node_pair_counts_the_worst_mark() -> None:
    bad = {("web", "db", "udp"): result({}, "lost", src="web", dst="db"),
           ("api", "db", "udp"): result({**req(ttl=1), "reply": rep()}, "TTL", src="api",
                                        dst="db")}
    udp = matrices(lab_results(bad))[1]
    s = summarise(udp, PODS, order=["node1", "node2", "node3"])
    assert s.rows == s.cols == ["node1", "node2", "node3"]
    cell = s.cells[("node1", "node2")]
    assert (cell.worst, cell.failed, len(cell.marks), cell.text(True)) == (LOST, 2, 2, "X2")
    assert s.cells[("node1", "node1")].text(True) == OK  # web <-> api: both ways, fine


def render(report: Report, width: int, **kw: Any) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(truth_view(report, width=width, **kw))
    return console.export_text()


def test_the_view_shows_matrices_then_failures_with_their_diagnosis() -> None:
    bad = {("web", "db", "tcp"): result({**req(src=NODE1), "reply": rep()},
                                        "request source rewritten 10.244.0.2 -> 172.30.0.1 "
                                        "at node1 on the way from web to db", proto="tcp")}
    text = render(Report("lab1", lab_results(bad), 1.5), 120, node_of=PODS,
                  order=["node1", *PODS])
    lines = text.splitlines()
    assert "FAILED" in lines[0] and "39/40" in lines[0]
    head = next(i for i, ln in enumerate(lines) if ln.split() == ["udp", "tcp", "icmp"])
    rows = lines[head + 2:head + 6]
    assert [r.split()[0] for r in rows] == list(PODS)
    # web's row across udp, tcp, icmp: the diagonal blank, one N where tcp meets db
    assert rows[0].split() == ["web", ".", ".", ".", "web", ".", "N", ".", "web", ".", ".", "."]
    assert sum(r.count("N") for r in rows) == 1
    assert "N pod-to-pod tcp web -> db: request source rewritten" in text
    assert "udp" in text and "icmp" in text and "as expected" in text


def test_a_lab_too_wide_for_the_terminal_is_summarised_per_node_pair() -> None:
    pods = {f"pod{i:03}": f"node{i % 4}" for i in range(60)}
    rs = [result({**req(), "reply": rep()}, "fine", ok=True, src=a, dst=b)
          for a in pods for b in pods if a != b]
    rs[5] = result({}, "request lost", src=rs[5].src, dst=rs[5].dst)
    narrow = render(Report("big", rs, 3.0), 80, node_of=pods)
    assert "per node pair" in narrow
    assert "X1" in narrow
    assert max(len(line) for line in narrow.splitlines() if "node" in line) <= 80
    # without node names to group by, names are written downwards instead
    assert "per node pair" not in render(Report("big", rs, 3.0), 80)


def test_a_lab_too_tall_for_a_glance_is_summarised_too() -> None:
    pods = {f"p{i}": f"node{i % 3}" for i in range(45)}
    rs = [result({**req(), "reply": rep()}, "fine", ok=True, src=p, dst=n, check="pod-to-node")
          for p in pods for n in ("node0", "node1", "node2")]
    text = render(Report("tall", rs, 1.0), 200, node_of=pods)
    assert "per node pair" in text and len(text.splitlines()) < 20
