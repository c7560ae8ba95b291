"""verify --quick: a spanning sample of what a full verify probes (pure selection)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from xml.etree import ElementTree

from rich.console import Console

from harness.model.topology import load_topology
from harness.plan import make_plan
from harness.prove.result import Report, Result
from harness.prove.sample import (
    node_of,
    one_pod_per_node,
    population,
    protos,
    representatives,
    spanning,
)
from harness.prove.targets import PROBE_CHECKS, targets
from harness.render.html import render_html
from harness.render.report import junit_xml, verify_table
from harness.render.truth import truth_view

ROOT = Path(__file__).resolve().parents[2]


def test_every_check_crosses_every_node_pair_once() -> None:
    plan = make_plan(load_topology(ROOT / "topologies" / "flat3.clab.yml"))
    full = targets(plan, PROBE_CHECKS, {})
    quick = spanning(plan, full)
    pairs = {(t.check, node_of(plan, t.sender), node_of(plan, t.receiver)) for t in quick}
    assert pairs == {(t.check, node_of(plan, t.sender), node_of(plan, t.receiver))
                     for t in full}  # nothing the full run crosses is left out
    assert len(pairs) == len(quick)  # and each only once
    by_check = {c: sum(t.check == c for t in quick) for c in PROBE_CHECKS}
    # web and api share node1: node1 -> node1 is a pod pair too (the bridge path)
    assert by_check == {"pod-to-pod": 7, "node-to-pod": 9, "pod-to-node": 9,
                        "pod-to-external": 3}
    assert sum(len(t.protos) for t in full) > 4 * len(quick)  # probes: one protocol each
    assert [p.name for p in one_pod_per_node(plan)] == ["web", "db", "cache"]


def test_one_protocol_that_every_target_can_use() -> None:
    assert protos(("udp", "tcp", "icmp")) == ("udp",)
    assert protos(("udp", "icmp")) == ("udp",)
    assert protos(("icmp",)) == ("icmp",)


def test_service_paths_keep_each_check_client_node_and_service_port() -> None:
    from harness.plan import servicepaths
    from harness.prove.sample import spanning_paths
    from harness.prove.targets import SERVICE_CHECKS

    plan = make_plan(load_topology(ROOT / "topologies" / "services.clab.yml"))
    full = servicepaths.paths(plan, SERVICE_CHECKS)
    quick = spanning_paths(plan, full)
    keys = [(p.check, node_of(plan, p.client), p.target) for p in quick]
    assert len(set(keys)) == len(keys)
    assert set(keys) == {(p.check, node_of(plan, p.client), p.target) for p in full}
    assert {p.check for p in quick} == {p.check for p in full}


def test_a_dual_stack_sample_crosses_every_node_pair_in_each_family() -> None:
    plan = make_plan(load_topology(ROOT / "topologies" / "dual.clab.yml"))
    full = targets(plan, PROBE_CHECKS, {})
    quick = spanning(plan, full)
    for family in ("ipv4", "ipv6"):
        mine = [t for t in quick if t.family == family]
        assert {(t.check, node_of(plan, t.sender), node_of(plan, t.receiver)) for t in mine} \
            == {(t.check, node_of(plan, t.sender), node_of(plan, t.receiver)) for t in full
                if t.family == family}
    assert len(quick) == 2 * sum(t.family == "ipv4" for t in quick)


def test_targets_of_the_representatives_give_the_same_sample_as_every_pair() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    import yaml

    from bench.gen import topology
    from harness.model.topology import parse_topology
    from harness.prove.sample import representatives

    big = make_plan(parse_topology(yaml.safe_dump(topology("big", 5, 23))))
    for plan in (big, *(make_plan(load_topology(ROOT / "topologies" / f"{name}.clab.yml"))
                        for name in ("flat3", "dual", "services", "routed"))):
        full = spanning(plan, targets(plan, PROBE_CHECKS, {}))
        few = spanning(plan, targets(plan, PROBE_CHECKS, {}, representatives(plan)))
        assert [(t.check, t.sender, t.receiver, t.family) for t in few] == \
            [(t.check, t.sender, t.receiver, t.family) for t in full]
    assert len(representatives(big)) == 10


def test_the_population_is_what_a_full_run_targets() -> None:
    """A sample says what it is drawn from: the count of (check, src, dst, family) a full
    verify probes, counted without computing every target of a large lab."""
    for stem in ("flat3", "dual", "services", "routed"):
        plan = make_plan(load_topology(ROOT / "topologies" / f"{stem}.clab.yml"))
        assert population(plan, PROBE_CHECKS) == len(targets(plan, PROBE_CHECKS, {})), stem
        assert population(plan, ["node-to-pod"]) == len(targets(plan, ["node-to-pod"], {}))


def sample_report(sample: dict[str, int] | None) -> Report:
    ok = Result("pod-to-pod", "a", "b", "udp", True, {}, {}, "fine")
    return Report("lab1", [ok], 0.5, sample=sample)


def test_a_sample_says_it_is_one_everywhere() -> None:
    """JSON `summary.sample`, the headline of both terminal views, the HTML banner and a
    JUnit property; a full run says nothing of the kind."""
    quick, full = sample_report({"targets": 4, "of": 40}), sample_report(None)
    assert quick.to_dict()["summary"]["sample"] == {"targets": 4, "of": 40}
    assert full.to_dict()["summary"]["sample"] is None
    assert quick.ok and full.ok  # exit codes stay as they are

    def text(renderable: object) -> str:
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(renderable)
        return console.export_text()

    for view in (verify_table, truth_view):
        assert "sample: 4 of 40 targets" in text(view(quick)), view
        assert "sample" not in text(view(full)), view
    assert '<p class="sample"><b>sample: 4 of 40 targets' in render_html(quick)
    assert '<p class="sample">' not in render_html(full)
    root = ElementTree.fromstring(junit_xml(quick))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props == {"sample": "4 of 40 targets, one protocol each"}
    assert not list(ElementTree.fromstring(junit_xml(full)).iter("property"))


def test_a_pod_on_the_pod_network_stands_for_its_node_before_a_host_network_one() -> None:
    """hostNetwork pods listed first must not be all a sample probes: they are never
    masqueraded, so the negative control would not run."""
    plan = make_plan(load_topology(ROOT / "topologies" / "services.clab.yml"))
    hosted = [p for p in plan.pods if p.host_network]
    assert hosted
    first = dataclasses.replace(plan, pods=(*hosted, *(p for p in plan.pods
                                                       if not p.host_network)))
    assert not any(p.host_network for p in one_pod_per_node(first))
    quick = spanning(first, targets(first, ["pod-to-external"], {},
                                    representatives(first)))
    assert quick and all(t.exp.snat_to for t in quick)
