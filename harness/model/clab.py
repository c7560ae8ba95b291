"""containerlab's format brought to one shape, between the YAML reader and the schema. Pure.

containerlab lets a node inherit from `topology.defaults`, `kinds.<kind>` and
`groups.<group>`, and writes links in a brief and an extended form. This step merges
every node exactly as containerlab does (harness.model.clabkeys has the merge code of each
key), turns every link into the brief form with its ends' addresses and MACs, and sorts
every key into honoured (kept), ignored (dropped, listed in one warning) and refused
(dropped, a problem saying why). The schema and every later layer then see one shape:
nodes with their own keys only, links with two "node:interface" ends.

Problems keep the path the file wrote them at; a value a node inherits is located at the
line it came from (`lines` gets that line under the node's path).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from harness.errors import Problem
from harness.labels import EXPORTED_FROM, PREFIX
from harness.model import clabkeys as K
from harness.model.yamlsrc import PathKey, render_path

NODES = ("topology", "nodes")
REFUSED_IMAGE = "podlab/refused"  # stands in for a refused node; never deployed


@dataclass
class Normalised:
    data: dict[str, Any]
    lines: dict[PathKey, int]
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # YAML paths accepted without effect
    link_index: list[int] = field(default_factory=list)  # kept link -> index in the file

    def original_path(self, path: str) -> str:
        """A path of the normalised data as the file wrote it (link indices shift when a
        refused link is dropped)."""
        def back(m: re.Match[str]) -> str:
            k = int(m.group(1))
            return f"topology.links[{self.link_index[k] if k < len(self.link_index) else k}]"
        return re.sub(r"^topology\.links\[(\d+)\]", back, path)

    @property
    def warning(self) -> str | None:
        """One sentence listing every key accepted without effect, or None."""
        if not self.ignored:
            return None
        return ("accepted without effect in podlab (containerlab keys podlab does not "
                "need): " + ", ".join(self.ignored))


def _set(value: Any) -> bool:
    """containerlab's "set": non-empty, non-zero, non-nil."""
    return value not in (None, "", 0, [], {})


def _hint(key: str, valid: list[str] | tuple[str, ...]) -> str:
    close = [c for c in difflib.get_close_matches(key, list(valid), n=2, cutoff=0.6)
             if c != key]
    return f"; did you mean {close[0]!r}?" if close else ""


NODE_VOCAB = sorted({*K.HONOURED, K.GROUP, *K.IGNORED, *K.REFUSED})


class _Normaliser:
    def __init__(self, data: dict[str, Any], lines: dict[PathKey, int]):
        self.data = data
        self.out = Normalised(dict(data), dict(lines))
        self.dummies: list[dict[str, Any]] = []

    def problem(self, path: PathKey, message: str) -> None:
        self.out.problems.append(Problem(render_path(path), message,
                                         self.out.lines.get(path)))

    def run(self) -> Normalised:
        out = self.out.data
        for key, why in K.TOP_IGNORED.items():
            if key in out:
                del out[key]
                self.out.ignored.append(f"{key} ({why})")
        if "mgmt" in out:
            out["mgmt"] = self.mgmt(out["mgmt"])
        topo = out.get("topology")
        if isinstance(topo, dict):
            out["topology"] = self.topology(topo)
        return self.out

    # ------------------------------------------------------------------ mgmt

    def mgmt(self, mgmt: Any) -> Any:
        if not isinstance(mgmt, dict):
            return mgmt  # the schema says what it must be
        kept: dict[str, Any] = {}
        for key, value in mgmt.items():
            path = ("mgmt", key)
            if key in K.MGMT_IGNORED:
                self.out.ignored.append(f"mgmt.{key} ({K.MGMT_IGNORED[key]})")
            elif key == "network" and value in K.MGMT_REFUSED_NETWORKS:
                self.problem(path, f"network {value!r}: {K.MGMT_REFUSED_NETWORKS[value]}")
            else:
                kept[key] = value  # unknown keys: the schema's hint
        return kept

    # ------------------------------------------------------------------ nodes

    def topology(self, topo: dict[str, Any]) -> dict[str, Any]:
        defaults = self.level(("topology", "defaults"), topo.get("defaults"))
        kinds = self.levels(("topology", "kinds"), topo.get("kinds"))
        groups = self.levels(("topology", "groups"), topo.get("groups"))
        body = {k: v for k, v in topo.items() if k not in ("defaults", "kinds", "groups")}
        nodes = topo.get("nodes")
        if isinstance(nodes, dict):
            merged: dict[str, Any] = {}
            for name, node in nodes.items():
                path = (*NODES, str(name))
                if node is not None and not isinstance(node, dict):
                    merged[name] = node  # the schema says it must be a mapping
                    continue
                own = self.level(path, node or {})
                result = self.merge(path, own, defaults, kinds, groups)
                # a refused node stays as a bare container of the user's, so that nothing
                # else is reported for its absence (its refusal says why)
                merged[name] = {"kind": "linux", "image": REFUSED_IMAGE} if result is None \
                    else result
            body["nodes"] = merged
        links = topo.get("links")
        if isinstance(links, list):
            body["links"] = self.links(links)
            if self.dummies:
                body["dummies"] = self.dummies
        return body

    def levels(self, path: PathKey, value: Any) -> dict[str, tuple[PathKey, dict[str, Any]]]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping of names to node settings")
            return {}
        if path[-1] == "kinds":
            for k in value:
                if str(k) not in K.CONTAINERLAB_KINDS and str(k) not in K.PODLAB_KINDS:
                    self.problem((*path, str(k)), f"unknown kind {str(k)!r}; podlab's kinds "
                                 f"are {', '.join(K.PODLAB_KINDS)} and containerlab's bridge"
                                 + _hint(str(k), [*K.PODLAB_KINDS, *K.KIND_ALIASES]))
        return {str(k): ((*path, str(k)), self.level((*path, str(k)), v))
                for k, v in value.items()}

    def level(self, path: PathKey, body: Any) -> dict[str, Any]:
        """The keys of one level (defaults, a kind, a group, a node) podlab honours; the
        others reported (refused, unknown) or noted (ignored)."""
        if body is None:
            return {}
        if not isinstance(body, dict):
            self.problem(path, "must be a mapping of node settings")
            return {}
        kept: dict[str, Any] = {}
        for key, value in body.items():
            kpath = (*path, key)
            if key in K.HONOURED or key == K.GROUP:
                if key == "labels" and isinstance(value, dict):
                    for label in value:
                        # podlab's export marks its nodes so; the rest is podlab's own
                        if str(label).startswith(f"{PREFIX}.") and label != EXPORTED_FROM:
                            self.problem((*kpath, str(label)), f"label keys under "
                                         f"'{PREFIX}.' are reserved for podlab")
                if key == "network-mode" and value == "host":
                    self.problem(kpath, K.NETWORK_MODE_HOST)
                    continue
                if key == "kind" and isinstance(value, str):
                    value = value.lower()
                    if (why := K.kind_refusal(value)) is not None and path[1] != "kinds":
                        self.problem(kpath, why)
                        kept["refused-kind"] = True
                        continue
                kept[key] = value
            elif key in K.IGNORED:
                self.out.ignored.append(f"{render_path(kpath)} ({K.IGNORED[key]})")
            elif key in K.REFUSED:
                self.problem(kpath, K.REFUSED[key])
            else:
                self.problem(kpath, f"unknown key {key!r}{_hint(key, NODE_VOCAB)}")
        return kept

    def merge(self, path: PathKey, node: dict[str, Any], defaults: dict[str, Any],
              kinds: dict[str, tuple[PathKey, dict[str, Any]]],
              groups: dict[str, tuple[PathKey, dict[str, Any]]]) -> dict[str, Any] | None:
        """A node with every key it inherits, as containerlab's getters compute it; None
        when its kind is refused (the problem is reported)."""
        dpath = ("topology", "defaults")
        group_names = [g for g in (node.get(K.GROUP), defaults.get(K.GROUP)) if _set(g)]
        for g in group_names[:1]:
            if str(g) not in groups:
                where = (*path, K.GROUP) if node.get(K.GROUP) else (*dpath, K.GROUP)
                self.problem(where, f"unknown group {g!r}" + _hint(str(g), list(groups)))
        kind_src = [(path, node), *(groups[str(g)] for g in group_names if str(g) in groups),
                    (dpath, defaults)]
        if any(level.get("refused-kind") for _, level in kind_src):
            return None
        kind = next((lv["kind"] for _, lv in kind_src if _set(lv.get("kind"))), None)
        if isinstance(kind, str) and (why := K.kind_refusal(kind)) is not None:
            where = next(p for p, lv in kind_src if lv.get("kind") == kind)
            self.problem((*where, "kind"), why)
            return None
        group = next((g for g in (node.get(K.GROUP),
                                  kinds.get(str(kind), ((), {}))[1].get(K.GROUP),
                                  defaults.get(K.GROUP)) if _set(g)), None)
        chain: list[tuple[PathKey, dict[str, Any]]] = [(path, node)]  # most specific first
        if group is not None and str(group) in groups:
            chain.append(groups[str(group)])
        if isinstance(kind, str) and kind in kinds:
            chain.append(kinds[kind])
        chain.append((dpath, defaults))
        out: dict[str, Any] = {}
        for key, code in K.HONOURED.items():
            value = self.merged(path, key, code, chain)
            if value is not None:
                out[key] = value
        if out.get("kind") == "bridge":
            # containerlab ignores a bridge's image and exec (it is no container there);
            # podlab's switch runs its own image and is configured by podlab
            for key in [k for k in out if k not in K.BRIDGE_KEYS]:
                del out[key]
                self.out.ignored.append(f"{render_path((*path, key))} (a bridge is podlab's "
                                        "L2 switch, configured by podlab)")
        if isinstance(out.get("kind"), str):
            out["kind"] = K.KIND_ALIASES.get(out["kind"], out["kind"])
        return out

    def merged(self, node_path: PathKey, key: str, code: str,
               chain: list[tuple[PathKey, dict[str, Any]]]) -> Any:
        lines = self.out.lines
        if code == K.NODE_ONLY:
            return chain[0][1].get(key)
        if code == K.FIRST:
            for src, level in chain:
                if key in level and _set(level[key]):
                    self.alias(node_path, src, key)
                    return level[key]
            return None
        general_first = list(reversed(chain))  # defaults, kind, group, node
        if code == K.MAP:
            merged: dict[str, Any] = {}
            for src, level in general_first:
                value = level.get(key)
                if value is None:
                    continue
                if not isinstance(value, dict):
                    self.problem((*src, key), "must be a mapping")
                    continue
                for k, v in value.items():
                    merged[str(k)] = _text(v)
                    if (*src, key, str(k)) in lines:
                        lines.setdefault((*node_path, key, str(k)), lines[(*src, key, str(k))])
                self.alias(node_path, src, key)
            return merged or None
        if code == K.STAGES:
            return self.stages(node_path, general_first)
        items: list[tuple[Any, int | None]] = []  # (value, line)
        for src, level in general_first:
            value = level.get(key)
            if value is None:
                continue
            if not isinstance(value, list):
                self.problem((*src, key), "must be a list")
                continue
            items += [(v, lines.get((*src, key, j))) for j, v in enumerate(value)]
            self.alias(node_path, src, key)
        if code == K.BINDS:  # per container path, the most specific level wins
            by_dest: dict[str, tuple[Any, int | None]] = {}
            for value, line in items:
                dest = value.split(":")[1] if isinstance(value, str) and ":" in value else value
                by_dest[str(dest)] = (value, line)
            items = sorted(by_dest.values(), key=lambda vl: str(vl[0]))
        seen: list[Any] = []
        for value, line in items:
            if value in seen:
                continue
            if line is not None:
                lines[(*node_path, key, len(seen))] = line
            seen.append(value)
        return seen or None

    def stages(self, node_path: PathKey, levels: list[tuple[PathKey, dict[str, Any]]]) -> Any:
        """wait-for appended without duplicates, stage execs appended (types/stages.go)."""
        out: dict[str, dict[str, list[Any]]] = {}
        for src, level in levels:
            value = level.get("stages")
            if value is None:
                continue
            if not isinstance(value, dict):
                self.problem((*src, "stages"), "must be a mapping of stage names")
                continue
            self.alias(node_path, src, "stages")
            for stage, body in value.items():
                if not isinstance(body, dict):
                    out[stage] = body  # the schema says what it must be
                    continue
                into = out.setdefault(stage, {})
                for k, v in body.items():
                    if isinstance(v, list) and isinstance(into.get(k, []), list):
                        have = into.setdefault(k, [])
                        have += [x for x in v if k != "wait-for" or x not in have]
                    else:
                        into[k] = v
        return out or None

    def alias(self, node_path: PathKey, src: PathKey, key: str) -> None:
        """Where a node inherits `key`, its line is the line that wrote it."""
        if src != node_path and (*src, key) in self.out.lines:
            self.out.lines.setdefault((*node_path, key), self.out.lines[(*src, key)])

    # ------------------------------------------------------------------ links

    def links(self, links: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i, link in enumerate(links):
            path: PathKey = ("topology", "links", i)
            if not isinstance(link, dict):
                out.append(link)
                self.out.link_index.append(i)
                continue
            kind = link.get("type")
            if kind is None:
                brief = self.brief(path, link)
            elif kind == "veth":
                brief = self.extended(path, link)
            elif kind == "dummy":
                self.dummy(path, link)
                continue
            elif kind in K.LINK_REFUSED:
                self.problem((*path, "type"), K.LINK_REFUSED[kind])
                continue
            else:
                self.problem((*path, "type"), f"unknown link type {kind!r}; podlab links are "
                             "veth pairs (the brief form, or type: veth)")
                continue
            if brief is None:
                continue
            # the kept link's new index must find the file's lines
            new = ("topology", "links", len(out))
            self.remap_lines(path, new)
            out.append(brief)
            self.out.link_index.append(i)
        return out

    def dummy(self, path: PathKey, link: dict[str, Any]) -> None:
        """containerlab's `type: dummy`: a dummy interface inside one node."""
        end = link.get("endpoint")
        for key in link:
            if key in K.LINK_IGNORED:
                self.out.ignored.append(f"{render_path((*path, key))} ({K.LINK_IGNORED[key]})")
            elif key not in ("type", "endpoint", "mtu"):
                self.problem((*path, key), f"unknown key {key!r} of a dummy link"
                             + _hint(key, ["endpoint", "mtu", "vars", "labels"]))
        if not isinstance(end, dict) or not isinstance(end.get("node"), str) \
                or not isinstance(end.get("interface"), str):
            self.problem((*path, "endpoint"), "a dummy link has one endpoint "
                         "{node: NAME, interface: NAME}")
            return
        new = ("topology", "dummies", len(self.dummies))
        lines = self.out.lines
        for key in ("node", "interface"):
            if (*path, "endpoint", key) in lines:
                lines[(*new, key)] = lines[(*path, "endpoint", key)]
        lines[new] = lines.get(path, 0)
        self.dummies.append({"node": end["node"], "interface": end["interface"],
                             **({"mtu": link["mtu"]} if "mtu" in link else {})})

    def remap_lines(self, old: PathKey, new: PathKey) -> None:
        if old == new:
            return
        lines = self.out.lines
        for key in [k for k in lines if k[:len(old)] == old]:
            lines[(*new, *key[len(old):])] = lines[key]

    def brief(self, path: PathKey, link: dict[str, Any]) -> dict[str, Any] | None:
        ends = link.get("endpoints")
        if isinstance(ends, list):
            special = False
            for j, end in enumerate(ends):
                node = end.partition(":")[0] if isinstance(end, str) else None
                if node in K.SPECIAL_ENDPOINTS:
                    self.problem((*path, "endpoints", j), K.LINK_REFUSED[node])
                    special = True
            if special:
                return None
        out = dict(link)
        for key, why in K.LINK_IGNORED.items():
            if key in out:
                del out[key]
                self.out.ignored.append(f"{render_path((*path, key))} ({why})")
        return out

    def extended(self, path: PathKey, link: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, value in link.items():
            if key == "type":
                continue
            if key in K.LINK_IGNORED:
                self.out.ignored.append(f"{render_path((*path, key))} ({K.LINK_IGNORED[key]})")
            elif key in ("mtu", "netem"):
                out[key] = value
            elif key == "endpoints":
                continue
            else:
                self.problem((*path, key), f"unknown key {key!r} of a veth link"
                             + _hint(key, ["endpoints", "mtu", "vars", "labels"]))
        ends = link.get("endpoints")
        if not isinstance(ends, list) or len(ends) != 2:
            self.problem((*path, "endpoints"), "a veth link has two endpoints, each "
                         "{node: NAME, interface: NAME}")
            return None
        names: list[str] = []
        per: dict[str, list[Any]] = {"ipv4": [], "ipv6": [], "mac": []}
        lines = self.out.lines
        for j, end in enumerate(ends):
            epath = (*path, "endpoints", j)
            if not isinstance(end, dict):
                self.problem(epath, "must be a mapping {node: NAME, interface: NAME}")
                return None
            for key in end:
                if key == "vars":
                    self.out.ignored.append(f"{render_path((*epath, key))} "
                                            f"({K.LINK_IGNORED['vars']})")
                elif key not in K.ENDPOINT_KEYS:
                    self.problem((*epath, key), f"unknown key {key!r} of an endpoint"
                                 + _hint(key, K.ENDPOINT_KEYS))
            node, iface = end.get("node"), end.get("interface")
            if not isinstance(node, str) or not isinstance(iface, str):
                self.problem(epath, "an endpoint needs `node` and `interface`, both strings")
                return None
            names.append(f"{node}:{iface}")
            for key in per:
                per[key].append(_text(end[key]) if end.get(key) is not None else None)
                if (*epath, key) in lines:
                    lines[(*path, key, j)] = lines[(*epath, key)]
        out["endpoints"] = names
        for key, values in per.items():
            if any(v is not None for v in values):
                out[key] = values
        return out


def _text(value: Any) -> Any:
    """A scalar as containerlab's Go structs read it into a string (1 -> "1")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def normalise(data: dict[str, Any], lines: dict[PathKey, int]) -> Normalised:
    """containerlab's file as podlab's one shape (see the module's docstring)."""
    return _Normaliser(data, lines).run()


# ---------------------------------------------------------------------- text, before YAML

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[=-])([^}]*))?\}")


def expand_env(text: str, env: dict[str, str] | None = None) -> str:
    """containerlab's `${VAR}` expansion of the file: `${VAR:=default}` and `${VAR:-default}`
    give the default when VAR is unset or empty; an unset `${VAR}` is kept as written."""
    environ = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3)
        value = environ.get(name)
        if op and not value:
            return default or ""
        return value if value is not None else m.group(0)

    return _ENV.sub(sub, text)


class _NoValue(dict[str, Any]):
    """Go's template data when no --vars are given: every field is there and empty."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return None


def render_template(text: str) -> str:
    """A file containerlab renders as a Go template (it has `{{ }}` actions), rendered with
    no variables, as `containerlab deploy` without --vars does."""
    if "{{" not in text:
        return text
    from harness.model.gotemplate import render

    return render(text, _NoValue())
