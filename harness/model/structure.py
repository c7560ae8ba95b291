"""Structural problems: pydantic's validation errors said as a topology's problems, each
with its YAML path and line, in the file's own words (what was expected there, and what
the file had).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from harness import datapaths
from harness.errors import Problem
from harness.kinds import NAMES
from harness.model.schema import (
    CNI_CHAIN_TAG,
    CNI_NAME_TAG,
    MASQ_AGENT_TAG,
    MASQ_FLAG_TAG,
    TopologyFile,
)
from harness.model.yamlsrc import PathKey, render_path


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds: itself, or inside Optional, unions,
    Annotated, dict values, list and tuple items."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    args = get_args(annotation)
    if get_origin(annotation) is dict:
        args = args[1:]
    for arg in args:
        out += _models_in(arg)
    return out


def valid_keys(loc: PathKey) -> list[str]:
    """The keys the format takes at `loc` (the mapping an unknown key sits in), from the
    models themselves: a hint names only a key valid right there."""
    models: list[type[BaseModel]] = [TopologyFile]
    keyed = False  # the last field was a mapping of names: this part is such a name
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        fields = [f for m in models for n, f in m.model_fields.items() if part in (f.alias, n)]
        models = [m for f in fields for m in _models_in(f.annotation)]
        keyed = any(get_origin(f.annotation) is dict for f in fields)
    return sorted({field.alias or name for m in models
                   for name, field in m.model_fields.items()})


def _hint(key: str, loc: PathKey) -> str:
    close = [c for c in difflib.get_close_matches(key, valid_keys(loc), n=2, cutoff=0.6)
             if c != key]
    return f"; did you mean {close[0]!r}?" if close else ""


_EXPECTED = {  # pydantic error type -> what the file should have had there
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list", "string_type": "a string",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def show(value: Any, limit: int = 60) -> str:
    """repr() of a user's value, cut short so that hostile input keeps messages readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'" if text[0] in "'\"" \
        else text[: limit - 3] + "..."


def structure_problems(exc: ValidationError, lines: dict[PathKey, int]) -> list[Problem]:
    raw: list[tuple[PathKey, str, dict[str, Any]]] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        if loc[:2] == ("cluster", "cni") and loc[2:3] in ((CNI_NAME_TAG,), (CNI_CHAIN_TAG,)):
            loc = loc[:2] + loc[3:]
        if loc[:2] == ("cluster", "masquerade") and loc[2:3] in ((MASQ_FLAG_TAG,),
                                                                 (MASQ_AGENT_TAG,)):
            loc = loc[:2] + loc[3:]
        key_error = bool(loc) and loc[-1] == "[key]"
        loc = tuple(p for p in loc if p != "[key]")
        kind = "key_" + err["type"] if key_error else err["type"]
        raw.append((loc, kind, err))
    # a union of a string and a list (`pod-cidr`): when the list's entries are wrong, the
    # string branch's "must be a string (got a list)" only adds noise
    deeper = {loc[:n] for loc, _, _ in raw for n in range(len(loc))}
    raw = [r for r in raw if not (r[1] in _EXPECTED and isinstance(r[2].get("input"), list)
                                  and r[0] in deeper)]
    suggested: set[PathKey] = set()  # (parent..., key) that an unknown key was close to
    for loc, kind, _ in raw:
        if kind == "extra_forbidden":
            close = [c for c in difflib.get_close_matches(str(loc[-1]), valid_keys(loc[:-1]),
                                                          n=2, cutoff=0.6) if c != loc[-1]]
            if close:
                suggested.add((*loc[:-1], close[0]))
    expected: dict[PathKey, list[str]] = {}
    got: dict[PathKey, Any] = {}
    messages: list[tuple[PathKey, str]] = []
    for loc, kind, err in raw:
        value = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            msg = f"unknown key {show(key)}{_hint(key, loc[:-1])}"
        elif kind == "missing":
            if loc in suggested:
                continue  # the unknown key next to it says "did you mean" this one
            if loc and isinstance(loc[-1], int):
                msg = "missing; write two entries, one per endpoint"
            else:
                msg = f"required key {loc[-1]!r} is missing"
        elif kind == "too_long":
            msg = "too many entries; write two, one per endpoint"
        elif kind in ("literal_error", "key_literal_error") and loc and (
                loc[-1] == "kind" or loc[-2:-1] == ("kinds",)):
            msg = f"unknown kind {show(value)}; one of {', '.join(NAMES)}"
        elif kind == "literal_error" and loc == ("cluster", "routing"):
            msg = f"unknown routing {show(value)}; one of {', '.join(datapaths.ROUTING)}"
        elif kind == "literal_error" and loc == ("cluster", "cni"):
            names = [c for c in datapaths.CNI if c != datapaths.CONFLIST]
            msg = (f"unknown cni {show(value)}; one of {', '.join(names)}, or a mapping "
                   "{conflist: FILE, bin-dir: DIR}")
        elif kind in _EXPECTED:
            if loc not in expected:
                expected[loc] = []
                got[loc] = value
                messages.append((loc, ""))  # filled in below, in first-seen order
            if _EXPECTED[kind] not in expected[loc]:
                expected[loc].append(_EXPECTED[kind])
            continue
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(value, dict | list):
                msg = f"{msg} (got {show(value)})"
        messages.append((loc, msg))
    problems: list[Problem] = []
    for loc, msg in messages:
        if not msg:
            value = got[loc]
            shown = (f"got a {_yaml_type(value)}" if isinstance(value, dict | list)
                     else f"got {show(value)}")
            msg = f"must be {' or '.join(expected[loc])} ({shown})"
        problem = locate(Problem(render_path(loc), msg), lines, loc)
        if problem not in problems:
            problems.append(problem)
    return problems


def _yaml_type(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list"


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the union member's type name ("str", "int") into locations
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "tuple[str, str]",
                                               "list[EnvVar]", "list[str]"} or part.startswith(
                                                   ("function-", "constrained-")))


def locate(problem: Problem, lines: dict[PathKey, int], loc: PathKey | None = None) -> Problem:
    if problem.line is not None:
        return problem
    key = loc if loc is not None else _parse_path(problem.path)
    while key and key not in lines:
        key = key[:-1]
    return Problem(problem.path, problem.message, lines.get(key))


def _parse_path(path: str) -> PathKey:
    parts: list[str | int] = []
    for token in re.findall(r"\[(\d+)\]|([^.\[\]]+)", path):
        index, name = token
        parts.append(int(index) if index else name)
    return tuple(parts)
