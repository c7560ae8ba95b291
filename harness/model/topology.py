"""The topology file: load, parse and validate it, and hold the result.

The format is containerlab's (`name`, `topology: {defaults, kinds, nodes, links}` with the
brief link form) plus podlab's `cluster:` and `pods:` (harness.model.schema). Structure
is checked by pydantic (harness.model.structure); meaning (names, interfaces, CIDRs,
reachability) afterwards (harness.model.validation), so a file gets every problem
reported at once, each with its YAML path and line.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    ValidationError,
)

from harness.errors import TopologyError
from harness.model.schema import DEFAULT_NODE_IMAGE, TopologyFile
from harness.model.structure import locate, structure_problems
from harness.model.validation import cni_path_problems, semantic_problems
from harness.model.yamlsrc import bounded, load_yaml, read_text


class Topology:
    """A validated topology: the parsed file plus where it came from. Immutable."""

    __slots__ = ("file", "path", "spec")

    def __init__(self, spec: TopologyFile, path: Path | None):
        self.spec = spec
        self.path = path.resolve() if path else None
        self.file = str(path) if path else "<topology>"

    @property
    def name(self) -> str:
        return self.spec.name

    def kind_of(self, node: str) -> str:
        spec = self.spec.topology
        kind = spec.nodes[node].kind or spec.defaults.kind
        assert kind is not None  # validation guarantees it
        return kind

    def image_of(self, node: str) -> str:
        spec = self.spec.topology
        kind = self.kind_of(node)
        kind_spec = spec.kinds.get(kind)  # type: ignore[call-overload]
        return (spec.nodes[node].image or (kind_spec.image if kind_spec else None)
                or spec.defaults.image or DEFAULT_NODE_IMAGE)

    def labels_of(self, node: str) -> dict[str, str]:
        spec = self.spec.topology
        kind_spec = spec.kinds.get(self.kind_of(node))  # type: ignore[call-overload]
        return {**spec.defaults.labels, **(kind_spec.labels if kind_spec else {}),
                **spec.nodes[node].labels}


def load_topology(path: str | Path) -> Topology:
    """Read, parse and validate a file. Raises TopologyError listing every problem."""
    path = Path(path)
    text = read_text(path)
    return parse_topology(text, path)


def parse_topology(text: str, path: Path | None = None) -> Topology:
    file = str(path) if path else None
    data, lines = load_yaml(text, file)
    try:
        spec = TopologyFile.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(file, bounded(structure_problems(exc, lines))) from None
    problems = [*semantic_problems(spec), *cni_path_problems(spec, path)]
    if problems:
        raise TopologyError(file, bounded([locate(p, lines) for p in problems]))
    return Topology(spec, path)
