"""Rendering for people and machines: rich tables, progress, JSON, JUnit XML."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.plan import Plan
from harness.render.truth import sample_of


@contextmanager
def progress(console: Console, enabled: bool = True) -> Iterator[Progress]:
    """A progress display on a terminal; silent (but usable) when output is redirected
    or `enabled` is false (machine-readable output)."""
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True,
                    disable=not (enabled and console.is_terminal))
    with prog:
        yield prog


def plan_tables(plan: Plan) -> list[Table]:
    """Nodes, pods and expected paths; every family's addresses (a dual-stack plan adds a
    `family` column to the paths)."""
    nodes = Table(title=f"lab {plan.lab}: nodes", title_justify="left")
    for col in ("node", "kind", "container", "interfaces", "pod CIDR", "routes"):
        nodes.add_column(col)
    for n in plan.nodes:
        ifaces = "\n".join(f"{i.name} {' '.join(i.addresses) or '(port)'} -> {i.peer}"
                           for i in n.interfaces)
        if n.gateways:
            ifaces = f"{n.bridge} {' '.join(n.gateways)}\n{ifaces}".strip()
        routes = "\n".join(f"{r.dst} via {r.via}" for r in n.routes)
        nodes.add_row(n.name, n.kind, n.container, ifaces, "\n".join(n.pod_cidrs), routes)
    pods = Table(title=f"lab {plan.lab}: pods", title_justify="left")
    for col in ("pod", "node", "ip", "gateway", "containers"):
        pods.add_column(col)
    for p in plan.pods:
        pods.add_row(p.name, p.node, "\n".join(plan.shown_ip(c) or "" for c in p.cidrs),
                     "\n".join(p.gateways), ", ".join(c.name for c in p.containers))
    by_family = plan.families != ("ipv4",)
    drop = "TTL/hop-limit drop" if by_family else "TTL drop"
    paths = Table(title=f"lab {plan.lab}: expected paths ({drop} = hops)",
                  title_justify="left")
    for col in ("check", *(("family",) if by_family else ()), "src", "dst", "hops", "path",
                "SNAT to"):
        paths.add_column(col)
    for check, e in plan.expectations():
        paths.add_row(check, *((e.family,) if by_family else ()), e.src, e.dst, str(e.hops),
                      " > ".join(e.path), e.snat_to or "")
    return [nodes, pods, *service_tables(plan), paths]


def service_tables(plan: Plan) -> list[Table]:
    """Each Service port with its ClusterIP, node port and endpoints; each hostPort."""
    tables = []
    if plan.services:
        cidrs = ", ".join(plan.service_cidrs or (plan.service_cidr,))
        title = (f"service CIDRs {cidrs}" if len(plan.service_cidrs) > 1
                 else f"service CIDR {plan.service_cidr}")
        table = Table(title=f"lab {plan.lab}: services ({title})", title_justify="left")
        for col in ("service", "type", "cluster IP", "port", "node port", "policy",
                    "endpoints"):
            table.add_column(col)
        for svc in plan.services:
            for port in svc.ports:
                name = f"{svc.name}:{port.name}" if port.name else svc.name
                target = f" -> {port.target_port}" if port.target_port != port.port else ""
                endpoints = "\n".join(
                    escape(f"{e.pod} {e.address} on {e.node}") + (
                        " (hostNetwork)" if e.host_network else "") for e in port.endpoints)
                table.add_row(name, svc.type, "\n".join(svc.cluster_ips),
                              f"{port.port}/{port.protocol}{target}",
                              str(port.node_port or ""),
                              svc.external_traffic_policy if svc.type == "NodePort" else "",
                              endpoints or "(none)")
        tables.append(table)
    if plan.host_ports:
        table = Table(title=f"lab {plan.lab}: host ports", title_justify="left")
        for col in ("pod", "node", "host port", "to"):
            table.add_column(col)
        for h in plan.host_ports:
            for family in h.families:  # portmap publishes it at each of the pod's addresses
                address, ip = plan.node(h.node).address_of(family), h.ip_of(family)
                if ":" in f"{address}":
                    address, ip = f"[{address}]", f"[{ip}]"
                table.add_row(f"{h.pod}/{h.container}", h.node,
                              escape(f"{address}:{h.host_port}/{h.protocol}"),
                              escape(f"{ip}:{h.container_port}"))
        tables.append(table)
    return tables


def inspect_tables(labs: list[dict[str, Any]]) -> list[Table]:
    tables = []
    for data in labs:
        table = Table(title=f"lab {data['lab']}", title_justify="left")
        for col in ("name", "kind", "container", "state", "addresses", "service rules"):
            table.add_column(col)
        for n in data["nodes"]:
            addrs = ", ".join(a for addrs in n.get("addresses", {}).values() for a in addrs) \
                if isinstance(n.get("addresses"), dict) else ", ".join(n.get("addresses", []))
            rules = n.get("service_rules")
            shown = ", ".join(f"{k} {v}" for k, v in rules.items() if v) if rules else ""
            table.add_row(n["name"], n["kind"], n["container"], n["state"], addrs, shown)
        for p in data["pods"]:
            for c in p["containers"]:
                table.add_row(f"{p['name']}/{c['name']}", f"pod on {p['node']}", c["container"],
                              c["state"], ", ".join(p.get("ips") or [p.get("ip") or ""]),
                              "")
        tables.append(table)
        if any("bgp" in n for n in data["nodes"]):
            tables.append(bgp_table(data))
    return tables


def bgp_table(data: dict[str, Any]) -> Table:
    """Per BGP speaker: its sessions and the routes it chose (AS path, next hop)."""
    table = Table(title=f"lab {data['lab']}: BGP (BIRD)", title_justify="left")
    for col in ("node", "sessions", "routes (best: prefix via next hop, AS path)"):
        table.add_column(col)
    for n in data["nodes"]:
        bgp = n.get("bgp")
        if bgp is None:
            continue
        down = [d for d, up in bgp.get("daemons", {}).items() if not up]
        if not bgp["running"] and not bgp["sessions"]:
            table.add_row(n["name"], f"{', '.join(down) or 'BIRD'} not running",
                          bgp.get("error", ""))
            continue
        sessions = "\n".join([*(f"{d} not running" for d in down),
                               *(f"{s['name']} {s['info'] or s['state']}"
                                 for s in bgp["sessions"])])
        routes = "\n".join(
            f"{r['prefix']} via {r['via']} [AS{' '.join(map(str, r['as_path']))}]"
            for r in bgp["routes"] if r["best"])
        table.add_row(n["name"], sessions, routes)
    return table


def write_json(report: Any, f: Any) -> None:
    """The design's JSON object, one result per line: valid JSON, greppable, and written
    result by result with the C encoder, so a 200-pod lab's 132,400 results take seconds
    and no second copy of the report is held in memory."""
    head = report.to_dict(with_results=False)
    f.write(json.dumps(head)[:-1] + ', "results": [\n')
    for i, result in enumerate(report.results):
        f.write(("  " if i == 0 else ",\n  ") + json.dumps(result.to_dict()))
    f.write("\n]}\n")


def verify_table(report: Any) -> Table:
    """One row per result; failures first would hide the pattern, so plan order is kept."""
    summary = report.to_dict(with_results=False)["summary"]
    drawn = f" ({sample_of(report)}, not the proof)" if sample_of(report) else ""
    table = Table(title=f"lab {report.lab}: {summary['passed']}/{summary['total']} passed"
                  f"{drawn} in {summary['duration_s']:.2f} s; negative control "
                  f"{summary['negative_control']}", title_justify="left",
                  caption="\n".join(escape(n) for n in summary["notes"]) or None,
                  caption_justify="left")
    families = by_family(report)
    for col in ("check", *(("family",) if families else ()), "src", "dst", "proto", "ok",
                "detail"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        mark = "[green]PASS[/]" if r.ok else "[bold red]FAIL[/]"
        table.add_row(r.check, *((r.family,) if families else ()), r.src, r.dst, r.proto, mark,
                      escape(r.detail))
    return table


def by_family(report: Any) -> bool:
    """Does the report name each result's family? Where any result is IPv6 (a dual-stack
    or IPv6-only lab); an IPv4-only lab's table and JUnit names stay as they always were
    (JSON carries `family` in every result either way)."""
    return any(getattr(r, "family", "ipv4") != "ipv4" for r in report.results)


def junit_xml(report: Any) -> str:
    """JUnit XML: one testsuite per check, one testcase per result."""
    from xml.etree import ElementTree as ET

    suites = ET.Element("testsuites", name=f"podlab {report.lab}",
                        tests=str(len(report.results)),
                        failures=str(sum(not r.ok for r in report.results)),
                        time=f"{report.duration_s:.3f}")
    by_check: dict[str, list[Any]] = {}
    for r in report.results:
        by_check.setdefault(r.check, []).append(r)
    families = by_family(report)
    for check, results in by_check.items():
        suite = ET.SubElement(suites, "testsuite", name=check, tests=str(len(results)),
                              failures=str(sum(not r.ok for r in results)))
        if sample_of(report):  # a sample says it is one, to CI too
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="sample",
                          value=sample_of(report).removeprefix("sample: "))
        for r in results:
            how = f"{r.proto} {r.family}" if families else r.proto
            case = ET.SubElement(suite, "testcase", classname=f"podlab.{report.lab}.{check}",
                                 name=f"{r.src} -> {r.dst} [{how}]")
            if not r.ok:
                failure = ET.SubElement(case, "failure", message=r.detail)
                failure.text = json.dumps({"expected": r.expected, "observed": r.observed},
                                          indent=2)
            else:
                ET.SubElement(case, "system-out").text = r.detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_pcaps(report: Any, directory: Path) -> list[Path]:
    """One pcap per check with every frame its probes left anywhere in the lab, in time
    order; Wireshark opens them. Frames are cut at the sniffer's snap length."""
    by_check: dict[str, list[Any]] = {}
    for r in report.results:
        for pid in r.probe_ids:
            by_check.setdefault(r.check, []).extend(report.sightings.get(pid, []))
    return [_pcap(directory / f"{check}.pcap", seen) for check, seen in by_check.items()]


def write_failure_pcaps(report: Any, directory: Path, limit: int = 200) -> dict[int, Path]:
    """A pcap of each failed result's own probes (the first `limit`), named after it:
    `{position in the results: path}`. What one failing cell of the truth table shows."""
    out: dict[int, Path] = {}
    for i, r in enumerate(report.results):
        if r.ok or not r.probe_ids:
            continue
        if len(out) == limit:
            break
        seen = [s for pid in r.probe_ids for s in report.sightings.get(pid, [])]
        if seen:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{r.check}-{r.src}-{r.dst}-{r.proto}")
            out[i] = _pcap(directory / f"{name}.pcap", seen)
    return out


def _pcap(path: Path, seen: list[Any]) -> Path:
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with PcapWriter(str(path), linktype=1, sync=False) as writer:
        for s in sorted(seen, key=lambda s: s.ts):
            if s.frame is None:
                continue
            pkt = Ether(s.frame)
            pkt.time = s.ts
            pkt.comment = f"{s.ns} {s.ifname} {'out' if s.outgoing else 'in'}".encode()
            writer.write(pkt)
    return path
