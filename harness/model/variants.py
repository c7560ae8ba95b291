"""Variants of a topology file: its `cluster:` keys overridden from the command line
(`--set routing=bgp`), under another lab name, so one file runs on several datapaths and
several copies of it run side by side.

    KEY=VALUE        one value (run, deploy): VALUE is read as YAML, so `false`, `24` and
                     `[10.244.0.0/16, fd00:10:244::/56]` mean what they mean in the file
    KEY=V1,V2,...    several values (matrix): commas inside [...] or {...} do not split
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.errors import InputError
from harness.model.topology import Topology, load_topology, parse_topology
from harness.model.yamlsrc import load_yaml, read_text

PREFIX = "cluster."


def _key(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip().removeprefix(PREFIX)
    if not sep or not key or not value.strip():
        raise InputError(f"{option} {text!r}: expected KEY=VALUE, e.g. routing=bgp "
                         "(KEY is a cluster: key of the topology file)")
    return key, value.strip()


def _value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_set(text: str) -> tuple[str, Any]:
    """`routing=bgp` -> ("routing", "bgp"); `masquerade=false` -> ("masquerade", False)."""
    key, value = _key(text, "--set")
    return key, _value(value)


def split_values(text: str) -> list[str]:
    """`a,b,[c,d]` -> ["a", "b", "[c,d]"]: commas split only outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """`routing=static,bgp` -> ("routing", ["static", "bgp"]): one axis of a matrix."""
    key, value = _key(text, "--set")
    return key, [_value(v) for v in split_values(value)]


def load_variant(path: str | Path, sets: Mapping[str, Any] | Sequence[tuple[str, Any]] = (),
                 name: str | None = None) -> Topology:
    """The topology of `path` with `cluster.<key>` overridden by `sets` and, when given,
    another lab name. Validated as the file would be (relative paths in it still resolve
    against the file's directory); without overrides, exactly load_topology(path)."""
    items = list(sets.items()) if isinstance(sets, Mapping) else list(sets)
    if not items and name is None:
        return load_topology(path)
    path = Path(path)
    data, _ = load_yaml(read_text(path), str(path))  # its limits hold for hostile files
    if not isinstance(data, dict):
        return load_topology(path)  # let the loader say what is wrong with it
    if items:
        cluster = data.get("cluster")
        cluster = dict(cluster) if isinstance(cluster, dict) else {}
        cluster.update(items)
        data["cluster"] = cluster
    if name is not None:
        data["name"] = name
    return parse_topology(yaml.safe_dump(data, sort_keys=False), path)


def label(sets: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> str:
    """`routing=bgp,cni=bridge`: how a variant is named in tables and file names."""
    items = list(sets.items()) if isinstance(sets, Mapping) else list(sets)
    return ",".join(f"{k}={_show(v)}" for k, v in items)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return yaml.safe_dump(value, default_flow_style=True).strip()
