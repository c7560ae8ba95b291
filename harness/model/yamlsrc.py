"""Load YAML into plain data while remembering the line of every path.

PyYAML's composer gives each node a start mark; we build the Python values ourselves so
that `lines[("topology", "nodes", "node1")]` answers where that key was written. Errors
are then reported as `file:line: path: message`, the way editors jump to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import Problem, TopologyError

MAX_BYTES = 1_000_000  # a lab file is a few KiB; anything this big is a mistake or an attack
MAX_DEPTH = 32  # the format nests 5 levels deep; refuse YAML bombs before Python recursion does
MAX_NODES = 200_000  # aliases can expand a small file exponentially ("billion laughs")

MAX_PROBLEMS = 500  # beyond this a report stops helping; the rest follow once these are fixed

PathKey = tuple[str | int, ...]


def bounded(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS problems, the last one saying how many were left out."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    rest = len(problems) - (MAX_PROBLEMS - 1)
    return [*problems[: MAX_PROBLEMS - 1],
            Problem("", f"... and {rest} more problems, not shown; fix the ones above first")]


PART_MAX = 60  # a path part longer than this is cut short, so hostile keys stay readable


def render_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if len(text) > PART_MAX:
                text = text[: PART_MAX - 3] + "..."
            out += f".{text}" if out else text
    return out


class _Builder:
    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}
        self.problems: list[Problem] = []
        self.count = 0

    def build(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.count += 1
        if depth > MAX_DEPTH or self.count > MAX_NODES:
            raise _TooDeep(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_TAGS:
            # !!python/object/apply:..., !!set, !!omap, !custom: plain data only
            raise _BadScalar(f"unsupported tag {node.tag!r}", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node)
                if not isinstance(key, str | int | bool | float) or key is None:
                    self.problems.append(
                        Problem(render_path(path), "mapping keys must be plain strings",
                                key_node.start_mark.line + 1)
                    )
                    continue
                key = str(key)
                child = (*path, key)
                if key in out:
                    self.problems.append(
                        Problem(render_path(child), "key written twice",
                                key_node.start_mark.line + 1)
                    )
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, (*path, i), depth + 1) for i, v in enumerate(node.value)]
        return self._scalar(node)

    @staticmethod
    def _scalar(node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return node  # a complex key; rejected by the caller
        try:
            return _CONSTRUCTOR.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # an unknown tag such as !!python/object
            raise _BadScalar(exc.problem or str(exc), node.start_mark.line + 1) from None
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. an integer of 5000 digits, a bad !!binary, a date like 2024-13-45
            raise _BadScalar(_short(str(exc)), node.start_mark.line + 1) from None


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _BadScalar(Exception):
    def __init__(self, message: str, line: int):
        self.message, self.line = message, line


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem and context in one line, without its multi-line excerpt."""
    parts = [p for p in (exc.context, exc.problem) if p]
    return _short(", ".join(parts) if parts else str(exc))


class _TooDeep(Exception):
    def __init__(self, path: PathKey, line: int):
        self.path, self.line = path, line


_CONSTRUCTOR = yaml.SafeLoader("")


def load_yaml(text: str, file: str | None) -> tuple[Any, dict[PathKey, int]]:
    """Parse `text`; return (data, lines). Raises TopologyError for anything unreadable."""
    if not text.strip():
        root = None
    else:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise TopologyError(file, [Problem("", f"not valid YAML: {_yaml_message(exc)}",
                                               line)]) from None
        except yaml.YAMLError as exc:
            raise TopologyError(file, [Problem("", f"not valid YAML: {_short(str(exc))}")]
                                ) from None
        except RecursionError:
            raise TopologyError(file, [Problem("", f"YAML nested too deeply (the format needs "
                                               f"at most {MAX_DEPTH} levels)")]) from None
    if root is None:
        raise TopologyError(file, [Problem("", "the file is empty; a topology needs at least "
                                           "`name:` and `topology: {nodes: ...}`")])
    builder = _Builder()
    try:
        data = builder.build(root, ())
    except _TooDeep as deep:
        msg = (f"nested deeper than {MAX_DEPTH} levels or more than {MAX_NODES} values "
               "(aliases count every time they are used)")
        raise TopologyError(file, [Problem(render_path(deep.path), msg, deep.line)]) from None
    except _BadScalar as bad:
        raise TopologyError(file, [Problem("", f"not valid YAML: {bad.message}", bad.line)]
                            ) from None
    except RecursionError:
        raise TopologyError(file, [Problem("", "YAML nested too deeply")]) from None
    if builder.problems:
        raise TopologyError(file, bounded(builder.problems))
    if data is None:  # a document with nothing in it ("---")
        raise TopologyError(file, [Problem("", "the file is empty; a topology needs at least "
                                           "`name:` and `topology: {nodes: ...}`")])
    if not isinstance(data, dict):
        raise TopologyError(file, [Problem("", f"the top level must be a mapping (name:, "
                                           f"topology:, ...), not a {type(data).__name__}", 1)])
    return data, builder.lines


def read_text(path: Path) -> str:
    """Read a topology file with every failure turned into a one-line TopologyError."""
    file = str(path)
    too_big = f"topology files are limited to {MAX_BYTES} bytes"
    try:
        if path.is_dir():
            raise TopologyError(file, [Problem("", "is a directory, not a topology file")])
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise TopologyError(file, [Problem("", f"file is {size} bytes; {too_big}")])
        # bounded even where st_size says nothing: a FIFO, /dev/zero, /dev/stdin
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise TopologyError(file, [Problem("", "no such file")]) from None
    except OSError as exc:
        raise TopologyError(file, [Problem("", f"cannot read: {exc.strerror or exc}")]
                            ) from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise TopologyError(file, [Problem("", f"cannot read: {exc}")]) from None
    if len(raw) > MAX_BYTES:
        raise TopologyError(file, [Problem("", f"more than {MAX_BYTES} bytes; {too_big}")])
    if b"\x00" in raw:
        raise TopologyError(file, [Problem("", "binary data, not a YAML text file")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyError(file, [Problem("", f"not UTF-8 text (byte {exc.start})")]) from None


def resolve_path(text: str, topo_path: Path | None) -> Path:
    """A path written in the topology file: relative to the file's directory, as
    containerlab resolves them (to the working directory for a file-less topology)."""
    p = Path(text).expanduser()
    if p.is_absolute():
        return p
    return (topo_path.resolve().parent if topo_path else Path.cwd()) / p
