"""The HTML report: one self-contained file, checked as written and as a real headless
browser (Debian's chromium, or Chrome on a CI runner) shows it.

The browser test keeps its screenshot under out/artifacts/ (printed), so a CI run can
upload what the report looked like.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.prove.result import Report, Result
from harness.render.html import render_html
from harness.render.svg import columns, to_svg

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "out" / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def routed() -> Plan:
    return make_plan(load_topology(ROOT / "topologies" / "routed.clab.yml"))


def synthetic(plan: Plan) -> Report:
    """Every result the plan predicts, passing, except three breaks: client->server tcp
    source-NATed, node-to-pod udp towards server lost, one pod-to-external not masqueraded."""
    results = [Result("pod-identity", p.name, p.name, "-", True, {"ip": p.cidr},
                      {"eth0": [p.cidr]}, "ok") for p in plan.pods]
    for check, e in plan.expectations():
        for proto in ("udp", "tcp", "icmp"):
            exp = {"src": e.snat_to or e.src_ip or "192.168.0.1", "dst": e.dst_ip,
                   "ttl": 64 - e.hops, "hops": e.hops, "path": list(e.path)}
            obs = {k: exp[k] for k in ("src", "dst", "ttl")}
            ok, detail = True, "arrived unchanged"
            if (check, e.src, e.dst, proto) == ("pod-to-pod", "client", "server", "tcp"):
                obs["src"], ok = "192.168.0.1", False
                detail = "request source rewritten 10.42.0.2 -> 192.168.0.1 at node1"
            elif (check, e.dst, proto) == ("node-to-pod", "server", "udp"):
                obs, ok = {}, False
                detail = f"request from {e.src} to server lost: last seen leaving r3"
            elif (check, e.src, proto) == ("pod-to-external", "peer", "icmp"):
                obs["src"], ok = plan.pod("peer").ip, False
                detail = "not masqueraded: peer reached ext with its own address"
            results.append(Result(check, e.src, e.dst, proto, ok, exp, obs, detail))
    return Report(plan.lab, results, 1.25)


class Doc(HTMLParser):
    """Elements as (tag, attrs, text) plus the text of <script>-free body."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "input", "line", "rect", "br", "img", "link"):
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            i = self._open.pop()
            if self.elements[i][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for i in self._open:
            self.elements[i][2].append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[str, dict[str, str], str]]:
        return [(t, a, "".join(txt)) for t, a, txt in self.elements
                if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]


def test_the_report_is_one_file_with_nothing_to_fetch(tmp_path: Path) -> None:
    plan = routed()
    page = render_html(synthetic(plan), plan, out_path=tmp_path / "r.html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no CDN, no remote
    assert "@import" not in page and "url(" not in page
    doc = Doc(page)
    assert doc.find("svg") and len(doc.find("g")) == len(plan.nodes)
    assert "flowchart LR" in page  # the Mermaid text beside the picture


def test_each_failing_cell_links_to_its_diagnosis_and_pcap(tmp_path: Path) -> None:
    plan = routed()
    out = tmp_path / "report" / "r.html"
    report = synthetic(plan)
    nat = next(i for i, r in enumerate(report.results) if r.check == "pod-to-pod" and not r.ok)
    pcaps: dict[str | int, Path] = {
        "pod-to-pod": tmp_path / "pcap" / "pod-to-pod.pcap",
        nat: tmp_path / "pcap" / "failures" / "pod-to-pod-client-server-tcp.pcap"}
    doc = Doc(render_html(report, plan, out_path=out, pcaps=pcaps,
                          timings={"deploy": 2.5, "verify": 1.25, "destroy": 0.9}))
    bad = [(a, txt) for t, a, txt in doc.elements if t == "td" and a.get("class") in
           ("lost", "nat", "nonat", "ttl", "port", "other")]
    assert sorted(a["class"] for a, _ in bad) == ["lost"] * 3 + ["nat", "nonat"]
    links = [a["href"] for t, a, _ in doc.elements if t == "a" and a.get("href", "")
             .startswith("#r")]
    items = {a["id"]: txt for _, a, txt in doc.find("li") if a.get("id")}
    assert {h[1:] for h in links} >= set(items) and len(items) == 5
    assert any("rewritten 10.42.0.2 -> 192.168.0.1" in txt for txt in items.values())
    # its own probes' frames, and every frame of its check; relative: the folder moves whole
    assert [a["href"] for _, a, _ in doc.find("a", class_="pcap")] == [
        "../pcap/failures/pod-to-pod-client-server-tcp.pcap"]
    assert [a["href"] for _, a, _ in doc.find("a", class_="pcap-check")] == [
        "../pcap/pod-to-pod.pcap"]
    phases = doc.find("table", id="phases")[0][2]
    assert "deploy" in phases and "2.50 s" in phases and "destroy" in phases


def test_the_graph_places_pod_hosts_left_and_the_outside_right() -> None:
    plan = routed()
    cols = columns(plan)
    assert cols[0] == ["node1", "node2", "node3"] and cols[-1] == ["ext"]
    svg = to_svg(plan, failing={"node3"})
    assert svg.count("<g ") == len(plan.nodes) and svg.count("<line ") == len(plan.links)
    assert svg.count('class="node failing"') == 1


# --- in a real browser -------------------------------------------------------------------

def browser() -> str:
    path = os.environ.get("PODLAB_BROWSER") or next(
        (p for b in BROWSERS if (p := shutil.which(b))), None)
    if not path:
        reason = "no headless browser (chromium; scripts/setup-host.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    return path


def headless(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="podlab-chromium-") as profile:
        return subprocess.run(
            [browser(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=90, check=False)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit PNG, unfiltered: no Pillow here."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + size]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += size + 12
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, bpp)]


def test_a_headless_browser_shows_the_tables_the_links_and_the_graph(tmp_path: Path) -> None:
    plan = routed()
    page = tmp_path / "report.html"
    page.write_text(render_html(synthetic(plan), plan, out_path=page,
                                timings={"deploy": 2.5, "verify": 1.25}))
    # the DOM after the page's script ran: ?filter= narrows the failures list
    done = headless(page.as_uri() + "?filter=server", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Doc(done.stdout)
    items = [(a, txt) for _, a, txt in dom.find("li") if a.get("id", "").startswith("r")]
    shown = [txt for a, txt in items if "hidden" not in a]
    assert len(items) == 5 and len(shown) == 4  # the not-masqueraded one names no server
    assert all("server" in txt for txt in shown)
    assert dom.find("span", id="shown")[0][2] == "4 of 5 shown"
    assert len(dom.find("table", class_="truth")) == 13
    # what it looks like: the lost cells in red, the NAT cell in magenta, the graph drawn
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "html-report.png"
    done = headless(page.as_uri(), f"--screenshot={shot}", "--window-size=1280,1800")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    print(f"screenshot: {shot}")
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 1800)
    near = _near(pixels)
    assert near((0xDC, 0x26, 0x26)) > 3 * 200  # three lost cells, ~20x20 px each
    assert near((0xC0, 0x26, 0xD3)) > 2 * 200  # the NAT and not-NAT cells and swatches
    assert near((0xDB, 0xEA, 0xFE)) > 10_000  # the k8s-node boxes of the graph
    assert len(set(pixels)) > 200  # text, tables, graph: not a blank page


def _near(pixels: list[bytes]) -> Any:
    tally = Counter(pixels)

    def count(rgb: tuple[int, int, int]) -> int:  # anti-aliasing shifts a few levels
        return sum(n for p, n in tally.items() if all(abs(p[i] - rgb[i]) <= 6 for i in range(3)))
    return count
