"""The import graph of `harness`: layered, one way, no cycle.

    errors labels kinds datapaths  <  model  <  plan  <  host  <  datapath  <  prove  <  lab
                         <  render  <  cli, pytest_plugin  <  harness (the public face)

A module may import its own layer and the layers below, never one above; lazy imports
inside functions count too (they are how cycles hide).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
LAYERS = [("errors", "labels", "kinds", "datapaths"), ("model",), ("plan",), ("host",),
          ("datapath",), ("prove",), ("lab",), ("render",), ("cli", "pytest_plugin"), ("",)]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    return next(i for i, names in enumerate(LAYERS) if top in names)


def harness_imports(path: Path) -> set[str]:
    """Every `harness...` module this file imports, at any depth of its code."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "harness":
            for alias in node.names:  # `from harness.host import wiring` imports a module
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return out


GRAPH = {module_name(p): harness_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports {upward}"


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH.get(module, ())):
            if dep == module or dep not in GRAPH:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep] if dep in stack else [module, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*stack, dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_every_module_belongs_to_a_layer() -> None:
    """A new top-level package must be placed in LAYERS, or no import rule covers it."""
    known = {name for names in LAYERS for name in names}
    strays = sorted(m for m in GRAPH if (m.split(".")[1] if "." in m else "") not in known)
    assert not strays, f"modules of no layer (add their package to LAYERS): {strays}"
    assert {m.split(".")[1] for m in GRAPH if "." in m} <= known
