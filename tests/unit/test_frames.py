"""The frames of a failed result: one scapy summary line each in the result (table and
JSON), scapy's full dissection in the HTML report; a passed result carries none."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from harness.prove import frames
from harness.prove.probe import Seen
from harness.prove.result import Report, Result
from harness.render.html import render_html


def seen(ns: str, outgoing: bool, ts: float, frame: bytes) -> Seen:
    return Seen(ns, "eth0", outgoing, ts, False, "udp", "10.0.0.1", "10.0.1.2", 1, 2, 64,
                frame)


def test_a_failed_result_lists_its_frames_in_order_and_the_html_dissects_them() -> None:
    probe = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.1.2", ttl=1) / UDP(sport=1, dport=2))
    answer = bytes(Ether() / IP(src="10.0.0.254", dst="10.0.0.1") / ICMP(type=11) /
                   IP(probe[14:]))
    failed = Result("path", "a", "b", "udp", False, {}, {}, "hop 2 silent", [7])
    passed = Result("path", "b", "a", "udp", True, {}, {}, "fine", [8])
    sightings = {7: [seen("n1", True, 2.0, answer), seen("a", True, 1.0, probe)],
                 8: [seen("b", True, 1.0, probe)]}
    frames.attach([failed, passed], sightings)
    lines = failed.observed["frames"]
    assert lines[0].startswith("a eth0 > Ether / IP / UDP 10.0.0.1:1 > 10.0.1.2:2")
    assert lines[1].startswith("n1 eth0 > Ether / IP / ICMP 10.0.0.254 > 10.0.0.1 "
                               "time-exceeded")
    assert "frames" not in passed.observed
    page = render_html(Report("lab", [failed, passed], 0.1, sightings))
    assert "frames (2), dissected" in page
    assert "###[ IP ]###" in page and "ttl       = 1" in page
