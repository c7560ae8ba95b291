"""Reports for machines: the JSON object of the design and JUnit XML."""

from __future__ import annotations

import io
import json
from xml.etree import ElementTree

from harness.prove.result import Report, Result
from harness.render.report import junit_xml, write_json


def report(*results: Result) -> Report:
    return Report("lab1", list(results), 1.25)


PASS = Result("pod-to-pod", "web", "db", "udp", True, {"src": "10.244.0.2", "ttl": 62},
              {"src": "10.244.0.2", "ttl": 62}, "arrived unchanged")
FAIL = Result("pod-to-pod", "db", "web", "tcp", False, {"src": "10.244.1.2"},
              {"src": "172.30.0.2"}, "request source rewritten 10.244.1.2 -> 172.30.0.2")


def test_streamed_json_is_the_design_object() -> None:
    for rep in (report(PASS, FAIL), report()):
        out = io.StringIO()
        write_json(rep, out)
        data = json.loads(out.getvalue())
        assert data == rep.to_dict()
        assert set(data) == {"ok", "lab", "summary", "results"}
    data = json.loads(_json(report(PASS, FAIL)))
    assert data["ok"] is False
    assert data["summary"] == {"passed": 1, "failed": 1, "total": 2, "duration_s": 1.25,
                               "negative_control": "not applicable", "notes": [],
                               "sample": None}


def test_streamed_json_puts_one_result_on_each_line() -> None:
    lines = _json(report(PASS, FAIL, PASS)).splitlines()
    assert len(lines) == 1 + 3 + 1
    assert all(json.loads(line.strip().rstrip(","))["check"] == "pod-to-pod"
               for line in lines[1:-1])


def test_junit_has_one_testcase_per_result_and_failures_carry_the_diagnosis() -> None:
    root = ElementTree.fromstring(junit_xml(report(PASS, FAIL)))
    cases = root.findall(".//testcase")
    assert len(cases) == 2
    failure = root.find(".//failure")
    assert failure is not None and "rewritten" in failure.get("message", "")
    assert root.get("failures") == "1"


def _json(rep: Report) -> str:
    out = io.StringIO()
    write_json(rep, out)
    return out.getvalue()


def test_every_result_names_its_family() -> None:
    import dataclasses

    from rich.console import Console

    from harness.render.report import verify_table

    six = dataclasses.replace(PASS, family="ipv6")
    data = json.loads(_json(report(PASS, six)))
    assert [r["family"] for r in data["results"]] == ["ipv4", "ipv6"]
    names = [c.get("name") for c in ElementTree.fromstring(junit_xml(report(PASS, six)))
             .findall(".//testcase")]
    assert names == ["web -> db [udp ipv4]", "web -> db [udp ipv6]"]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(verify_table(report(PASS, six)))
    text = console.export_text()
    assert "family" in text and "ipv6" in text
    # an IPv4-only lab's JUnit names and table stay as they were; JSON has the family
    assert [c.get("name") for c in ElementTree.fromstring(junit_xml(report(PASS)))
            .findall(".//testcase")] == ["web -> db [udp]"]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(verify_table(report(PASS)))
    assert "family" not in console.export_text()
    assert json.loads(_json(report(PASS)))["results"][0]["family"] == "ipv4"


def test_bgp_table_names_a_dead_daemon_and_keeps_the_other_familys_sessions() -> None:
    from rich.console import Console

    from harness.render.report import bgp_table

    data = {"lab": "mesh", "nodes": [
        {"name": "node3", "bgp": {"running": False, "daemons": {"bird": False, "bird6": True},
                                  "error": "no bird answers", "routes": [],
                                  "sessions": [{"name": "Mesh_fd00_172_31__1", "state": "up",
                                                "info": "Established", "daemon": "bird6"}]}},
        {"name": "node4", "bgp": {"running": False, "daemons": {"bird": False},
                                  "error": "no bird answers", "routes": [], "sessions": []}},
        {"name": "r1"}]}
    console = Console(width=200, record=True)
    console.print(bgp_table(data))
    text = console.export_text()
    assert "bird not running" in text and "Mesh_fd00_172_31__1 Established" in text
    assert "node4" in text and "r1" not in text
