"""`podlab graph`: Mermaid and DOT drawings show every node, pod (inside its node), link
interface and address, and are deterministic."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from podlab_unit_helpers import EXAMPLES, missing
from typer.testing import CliRunner

from harness.cli import app
from harness.model.topology import load_topology
from harness.plan import Plan, PodPlan, make_plan
from harness.render.draw import mermaid_id, mermaid_text, to_dot, to_mermaid

IDS = [p.name for p in EXAMPLES]


def _plan(path: Path) -> Plan:
    return make_plan(load_topology(path))


def _blocks(text: str, open_re: str, close_re: str) -> dict[str, str]:
    """name -> body of each (non-nested) block opened by open_re (group 1 = name)."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if current is None and (m := re.match(open_re, line)):
            current, out[m.group(1)] = m.group(1), ""
        elif current is not None and re.match(close_re, line):
            current = None
        elif current is not None:
            out[current] += line + "\n"
    return out


def _veths(plan: Plan) -> list[PodPlan]:
    """Pods with a veth to their node (a hostNetwork pod is its node's namespace)."""
    return [p for p in plan.pods if not p.host_network]


def _shown(pod: PodPlan) -> str:
    """What a pod's box must show: its address and its veth, or that it is host network."""
    return f"hostNetwork {pod.ip}" if pod.host_network else pod.cidr


def _ends(plan: Plan) -> list[str]:
    """`iface address` (or the bare iface of a switch port) of every link end."""
    ends = []
    for lk in plan.links:
        for (_, iface), addr in ((lk.a, lk.a_address), (lk.b, lk.b_address)):
            ends.append(f"{iface} {addr}" if addr else iface)
    return ends


@pytest.mark.parametrize("topo", EXAMPLES, ids=IDS)
def test_mermaid_shows_everything(topo: Path) -> None:
    plan = _plan(topo)
    text = to_mermaid(plan)
    assert text.startswith("flowchart LR\n")
    subgraphs = _blocks(text, r"\s*subgraph (\S+) ", r"\s*end$")
    for node in plan.nodes:
        nid = mermaid_id("n", node.name)
        assert re.search(rf"^\s*(subgraph )?{nid}\b.*\b{node.name}\b.*{node.kind}", text, re.M)
        if node.kind == "k8s-node":
            assert node.pod_cidr in text
            assert nid in subgraphs
    for pod in plan.pods:  # drawn inside its node's subgraph, with IP and containers
        body = subgraphs[mermaid_id("n", pod.node)]
        assert f"{mermaid_id('p', pod.name)}[" in body
        assert _shown(pod) in body and (pod.host_network or pod.node_iface in body)
        for c in pod.containers:
            assert c.name in body
    for end in _ends(plan):
        assert end in text
    assert text.count("subgraph ") == len(plan.k8s_nodes)
    edges = re.findall(r"^\s*\S+ ---\|\"[^\"]*\"\| \S+$", text, re.M)
    assert len(edges) == len(plan.links) + len(_veths(plan))


@pytest.mark.parametrize("topo", EXAMPLES, ids=IDS)
def test_mermaid_is_github_safe(topo: Path) -> None:
    text = to_mermaid(_plan(topo))
    for line in text.splitlines()[1:]:
        if line.strip() == "end":
            continue
        # labels are quoted and hold no raw quote, '<' other than <br/>, or '|'
        for label in re.findall(r'"([^"]*)"', line):
            assert "<" not in label.replace("<br/>", "")
            assert ">" not in label.replace("<br/>", "") and "|" not in label
        # ids: prefixed, [A-Za-z0-9_] only
        for ident in re.findall(r"(?:^\s*(?:subgraph )?|\| )([A-Za-z0-9_-]+)(?=[\[({ ]|$)",
                                line):
            assert re.fullmatch(r"[nbps]_[A-Za-z0-9_]+", ident), (ident, line)


def test_mermaid_escaping_and_ids() -> None:
    assert mermaid_id("n", "end") == "n_end"
    assert mermaid_id("n", "rack-1") == "n_rack_1"
    assert mermaid_text('a "b" <c> #d', "e|f") == \
        '"a #quot;b#quot; #lt;c#gt; #35;d<br/>e#124;f"'


@pytest.mark.parametrize("topo", EXAMPLES, ids=IDS)
def test_dot_shows_everything(topo: Path) -> None:
    plan = _plan(topo)
    text = to_dot(plan)
    assert text.startswith(f'graph "{plan.lab}" {{')
    clusters = _blocks(text, r'\s*subgraph "cluster_([^"]+)" \{', r"\s*\}$")
    assert set(clusters) == {n.name for n in plan.k8s_nodes}
    for node in plan.nodes:
        assert f'"{node.name}" [label=' in text
        if node.kind == "k8s-node":
            assert node.pod_cidr in clusters[node.name]
    for pod in plan.pods:
        body = clusters[pod.node]
        assert f'"pod:{pod.name}" [label=' in body
        assert _shown(pod) in body and (pod.host_network or pod.node_iface in body)
        for c in pod.containers:
            assert c.name in body
    for end in _ends(plan):
        assert end in text
    dashed = sum(1 for line in text.splitlines() if "style=dashed" in line)  # Services
    assert text.count(" -- ") - dashed == len(plan.links) + len(_veths(plan))


_DOT_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(--)|([{}\[\]=;,])|([A-Za-z0-9_.]+))')


def parse_dot(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    """The DOT grammar podlab writes (graph, subgraph, node/edge/graph defaults, node and
    edge statements, attribute lists), parsed to the end: (nodes declared, edges). A
    token out of place fails with its position."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _DOT_TOKEN.match(text, pos)
        assert m and m.end() > pos, f"no DOT token at {pos}: {text[pos:pos + 40]!r}"
        tokens.append(m.group(m.lastindex or 0))
        pos = m.end()
    nodes: set[str] = set()
    edges: list[tuple[str, str]] = []
    i = 0

    def peek(ahead: int = 0) -> str:
        assert i + ahead < len(tokens), "DOT ends early (a brace or bracket unclosed)"
        return tokens[i + ahead]

    def take(want: str | None = None) -> str:
        nonlocal i
        assert i < len(tokens), f"DOT ends early, expected {want}"
        tok = tokens[i]
        assert want is None or tok == want, f"token {i}: {tok!r}, expected {want!r}"
        i += 1
        return tok

    def ident() -> str:
        tok = take()
        assert tok not in "{}[]=;," and tok != "--", f"token {i - 1}: {tok!r} is no ID"
        return tok

    def attrs() -> None:
        take("[")
        while peek() != "]":
            ident()
            take("=")
            ident()
            if peek() in (",", ";"):
                take()
        take("]")

    def stmts() -> None:
        take("{")
        while peek() != "}":
            if peek() == "subgraph":
                take()
                ident()
                stmts()
            elif peek() in ("node", "edge", "graph") and peek(1) == "[":
                take()
                attrs()
            elif peek(1) == "=":
                ident()
                take("=")
                ident()
            else:
                a = ident()
                if peek() == "--":
                    take()
                    edges.append((a, ident()))
                else:
                    nodes.add(a)
                if peek() == "[":
                    attrs()
            if peek() == ";":
                take()
        take("}")

    take("graph")
    ident()
    stmts()
    assert i == len(tokens), f"tokens after the graph: {tokens[i:i + 5]}"
    return nodes, edges


@pytest.mark.parametrize("topo", EXAMPLES, ids=IDS)
def test_dot_parses(topo: Path, tmp_path: Path) -> None:
    """Parsed to the end by DOT's grammar, every edge between declared nodes; and, where
    Graphviz is installed (make setup installs it), rendered by dot itself."""
    text = to_dot(_plan(topo))
    nodes, edges = parse_dot(text)
    assert edges and all(a in nodes and b in nodes for a, b in edges), \
        [e for e in edges if not set(e) <= nodes]
    dot = shutil.which("dot")
    if dot is None:
        missing("Graphviz's dot is not installed (make setup installs graphviz)")
    assert dot is not None
    done = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout


def test_the_dot_parser_refuses_what_dot_would() -> None:
    """The parser is a check, not a formality: a missing brace, a stray token and an edge
    whose end is unquoted garbage fail it."""
    good = 'graph "g" {\n  "a" [label="a"];\n  "b";\n  "a" -- "b" [label="x"];\n}\n'
    assert parse_dot(good) == ({'"a"', '"b"'}, [('"a"', '"b"')])
    for bad in (good[:-2], good.replace(";\n  \"b\"", "; = \"b\""),
                good.replace('"a" -- "b"', '"a" -- ]')):
        with pytest.raises(AssertionError):
            parse_dot(bad)


@pytest.mark.parametrize("topo", EXAMPLES, ids=IDS)
def test_deterministic(topo: Path) -> None:
    assert to_mermaid(_plan(topo)) == to_mermaid(_plan(topo))
    assert to_dot(_plan(topo)) == to_dot(_plan(topo))


def test_cli_graph(tmp_path: Path) -> None:
    runner = CliRunner()
    topo = EXAMPLES[0]
    res = runner.invoke(app, ["graph", "-t", str(topo)])
    assert res.exit_code == 0, res.output
    assert res.stdout == to_mermaid(_plan(topo))
    out = tmp_path / "g.dot"
    res = runner.invoke(app, ["graph", "-t", str(topo), "-o", "dot", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == to_dot(_plan(topo))
    res = runner.invoke(app, ["graph", "-t", str(tmp_path / "missing.clab.yml")])
    assert res.exit_code == 2
