"""The topology file: load, parse and validate it, and hold the result.

The format is containerlab's (`name`, `topology: {defaults, kinds, nodes, links}` with the
brief link form) plus podlab's `cluster:` and `pods:` (harness.model.schema). Structure
is checked by pydantic (harness.model.structure); meaning (names, interfaces, CIDRs,
reachability) afterwards (harness.model.validation), so a file gets every problem
reported at once, each with its YAML path and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from harness.errors import Problem, TopologyError
from harness.model.clab import expand_env, normalise, render_template
from harness.model.containers import file_problems
from harness.model.schema import DEFAULT_NODE_IMAGE, USER_KEYS, TopologyFile
from harness.model.structure import locate, structure_problems
from harness.model.validation import cni_path_problems, semantic_problems
from harness.model.yamlsrc import PathKey, bounded, load_yaml, read_text

KIND_API = "kind.x-k8s.io/"
REPAIRS = 8  # rounds of dropping a wrong value to see what else is wrong


class Topology:
    """A validated topology: the parsed file plus where it came from. Immutable."""

    __slots__ = ("file", "path", "spec", "warnings")

    def __init__(self, spec: TopologyFile, path: Path | None,
                 warnings: tuple[str, ...] = ()):
        self.spec = spec
        self.path = path.resolve() if path else None
        self.file = str(path) if path else "<topology>"
        self.warnings = warnings  # keys accepted without effect, said once

    def user_owned(self, node: str) -> bool:
        """A `linux` node that brings its own image, binds, exec or command: podlab starts
        it as containerlab would and leaves its addresses and routes to it."""
        return owned_by_user(self.spec, node)

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


def owned_by_user(spec: TopologyFile, node: str) -> bool:
    body = spec.topology
    n = body.nodes[node]
    if (n.kind or body.defaults.kind) != "linux":
        return False
    return any(getattr(n, key) for key in USER_KEYS)


def parse_topology(text: str, path: Path | None = None) -> Topology:
    """Every problem of the file at once: containerlab's keys refused, the structure, and
    what the values mean, each with its YAML path and line."""
    file = str(path) if path else None
    try:
        text = render_template(expand_env(text))
    except ValueError as exc:  # gotemplate.TemplateError: a Go template podlab cannot render
        raise TopologyError(file, [Problem("", f"Go template: {exc}")]) from None
    data, lines = load_yaml(text, file)
    if str(data.get("apiVersion", "")).startswith(KIND_API) or data.get("kind") == "Cluster":
        raise TopologyError(file, [Problem("", f"this is a kind Cluster config "
                                           f"({data.get('apiVersion', 'kind: Cluster')}), not "
                                           "a topology; write a topology from it with "
                                           f"`podlab import kind {file or 'CONFIG'}`", 1)])
    norm = normalise(data, lines)
    lines = norm.lines
    problems = list(norm.problems)
    spec, structural, dropped = _validate_repairing(norm.data, lines)
    problems += [_original(norm, p) for p in structural]
    if spec is not None:
        meaning = [*semantic_problems(spec), *cni_path_problems(spec, path),
                   *file_problems(spec, path)]
        problems += [_original(norm, locate(p, lines)) for p in meaning
                     if not _after_drop(p.path, dropped)]
    if problems:
        raise TopologyError(file, bounded(_unique(problems)))
    assert spec is not None
    warning = norm.warning
    return Topology(spec, path, (warning,) if warning else ())


def _original(norm: Any, problem: Problem) -> Problem:
    path = norm.original_path(problem.path)
    return problem if path == problem.path else Problem(path, problem.message, problem.line)


def _unique(problems: list[Problem]) -> list[Problem]:
    out: list[Problem] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out


def _after_drop(path: str, dropped: list[str]) -> bool:
    """A meaning problem that may stem from a value dropped for its structural problem:
    about the mapping that held it (its node, link, Service, port)."""
    for d in dropped:
        owner = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", d)
        if path == owner or path.startswith((owner + ".", owner + "[")) or (
                owner.startswith(path + ".") and path.count(".") > 0):
            return True
    return False


def _validate_repairing(data: dict[str, Any], lines: dict[PathKey, int]
                        ) -> tuple[TopologyFile | None, list[Problem], list[str]]:
    """pydantic's problems, and the spec without the values they were about, so that what
    the rest of the file means is checked in the same pass. None when a required value is
    wrong or missing (nothing can stand in for it)."""
    from harness.model.yamlsrc import render_path

    problems: list[Problem] = []
    dropped: list[str] = []
    for _ in range(REPAIRS):
        try:
            return TopologyFile.model_validate(data), problems, dropped
        except ValidationError as exc:
            if dropped and any(e["type"] == "missing" for e in exc.errors()):
                return None, problems, dropped  # a required value was the wrong one
            problems += [p for p in structure_problems(exc, lines) if p not in problems]
            if any(e["type"] == "missing" for e in exc.errors()):
                return None, problems, dropped
            data = _copy(data)
            for err in exc.errors():
                loc = _dict_loc(data, err["loc"])
                if loc is None:
                    return None, problems, dropped
                parent = data
                for part in loc[:-1]:
                    parent = parent[part]
                parent.pop(loc[-1], None)
                dropped.append(render_path(loc))
    return None, problems, dropped


def _dict_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The deepest prefix of `loc` that names a key of a mapping, below the top level's
    required keys; None when there is none (the value cannot be dropped)."""
    best = None
    here = data
    walked: list[Any] = []
    for part in loc:
        if isinstance(here, dict) and part in here:
            walked.append(part)
            if len(walked) > 1 or part not in ("name", "topology"):
                best = tuple(walked)
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and part < len(here):
            walked.append(part)
            here = here[part]
        elif isinstance(part, str) and part.endswith("[key]"):
            break
        else:
            continue  # a union member's tag
    if best is not None and best[-2:-1] in (("links",), ("containers",)):
        return None  # a list entry's own required keys
    return best


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
