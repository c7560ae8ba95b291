"""The part of Go's text/template that containerd's CNI `conf_template` files use. Pure.

containerd renders its conf_template with `{{.PodCIDR}}`, `{{.PodCIDRRanges}}` and
`{{.Routes}}`; real templates iterate with `{{range $i, $r := .PodCIDRRanges}}`, separate
with `{{if $i}}, {{end}}`, and trim with `{{-`/`-}}`. This renders exactly that language:

    text, {{/* comment */}}, {{- ... -}} trimming
    {{.}} {{.Field}} {{$}} {{$var}} {{$var.Field}}
    {{range PIPE}} {{range $v := PIPE}} {{range $i, $v := PIPE}} ... {{else}} ... {{end}}
    {{if PIPE}} ... {{else}} ... {{end}}

and refuses anything else with the line of the action, rather than render it wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_VAR = r"\$[A-Za-z_][A-Za-z0-9_]*|\$"
_OPERAND = re.compile(rf"^(?:(?P<var>{_VAR})(?P<vfields>(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                      r"|(?P<dot>\.)(?P<dfields>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]"
                      r"[A-Za-z0-9_]*)*)?)$")
_RANGE_DECL = re.compile(rf"^(?:(?P<a>{_VAR})\s*(?:,\s*(?P<b>{_VAR})\s*)?:=\s*)?(?P<pipe>.+)$")


class TemplateError(ValueError):
    def __init__(self, message: str, line: int):
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


@dataclass
class _Node:
    kind: str  # text, value, range, if
    line: int
    text: str = ""
    pipe: str = ""
    vars: tuple[str, ...] = ()
    body: list[_Node] = field(default_factory=list)
    other: list[_Node] = field(default_factory=list)  # {{else}} branch


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """("text", s, line) and ("action", s, line), with the trim markers applied."""
    out: list[tuple[str, str, int]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        if chunk:
            out.append(("text", chunk, text.count("\n", 0, pos) + 1))
        out.append(("action", m.group(2).strip(), text.count("\n", 0, m.start()) + 1))
        trim_next, pos = bool(m.group(3)), m.end()
    rest = text[pos:]
    if trim_next:
        rest = rest.lstrip()
    if "{{" in rest:
        raise TemplateError("unclosed action '{{'", text.count("\n", 0, pos) + 1)
    if rest:
        out.append(("text", rest, text.count("\n", 0, pos) + 1))
    return out


def parse(text: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    for kind, body, line in _tokens(text):
        where = stack[-1][1]
        if kind == "text":
            where.append(_Node("text", line, text=body))
            continue
        word, _, rest = body.partition(" ")
        rest = rest.strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError("unclosed comment", line)
        elif word == "range":
            m = _RANGE_DECL.match(rest)
            if not m:
                raise TemplateError("range needs a value to range over", line)
            names = tuple(v for v in (m.group("a"), m.group("b")) if v)
            node = _Node("range", line, pipe=m.group("pipe").strip(), vars=names)
            where.append(node)
            stack.append((node, node.body))
        elif word == "if":
            if not rest:
                raise TemplateError("if needs a condition", line)
            node = _Node("if", line, pipe=rest)
            where.append(node)
            stack.append((node, node.body))
        elif body == "else":
            owner = stack[-1][0]
            if owner is None or where is owner.other:
                raise TemplateError("unexpected {{else}}", line)
            stack[-1] = (owner, owner.other)
        elif body == "end":
            if len(stack) == 1:
                raise TemplateError("unexpected {{end}}", line)
            stack.pop()
        elif _OPERAND.match(body):
            where.append(_Node("value", line, pipe=body))
        else:
            raise TemplateError(f"unsupported action {{{{{body}}}}} (podlab renders "
                                "fields, variables, range and if)", line)
    if len(stack) > 1:
        owner = stack[-1][0]
        raise TemplateError(f"{{{{{owner.kind}}}}} has no {{{{end}}}}", owner.line if owner
                            else 0)
    return root


def _field(value: Any, name: str, line: int) -> Any:
    if isinstance(value, Mapping) and name in value:
        return value[name]
    raise TemplateError(f"can't evaluate field {name}", line)


def _eval(pipe: str, dot: Any, scope: Mapping[str, Any], line: int) -> Any:
    m = _OPERAND.match(pipe)
    if not m:
        raise TemplateError(f"unsupported expression {pipe!r}", line)
    if m.group("var"):
        name = m.group("var")
        if name not in scope:
            raise TemplateError(f"undefined variable {name}", line)
        value, fields = scope[name], m.group("vfields") or ""
    else:
        value, fields = dot, "." + (m.group("dfields") or "")
    for name in filter(None, fields.split(".")):
        value = _field(value, name, line)
    return value


def _truth(value: Any) -> bool:
    return bool(value)  # Go: false, 0, nil and empty strings/slices/maps are false


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_show(v) for v in value) + "]"
    return str(value)


def _render(nodes: Sequence[_Node], dot: Any, scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "value":
            out.append(_show(_eval(node.pipe, dot, scope, node.line)))
        elif node.kind == "if":
            branch = node.body if _truth(_eval(node.pipe, dot, scope, node.line)) else node.other
            _render(branch, dot, scope, out)
        else:  # range
            items = _eval(node.pipe, dot, scope, node.line)
            if isinstance(items, Mapping):
                pairs = sorted(items.items())
            elif isinstance(items, list | tuple):
                pairs = list(enumerate(items))
            else:
                raise TemplateError(f"range can't iterate over {_show(items)}", node.line)
            if not pairs:
                _render(node.other, dot, scope, out)
            for key, item in pairs:
                inner = dict(scope)
                if len(node.vars) == 1:
                    inner[node.vars[0]] = item
                elif len(node.vars) == 2:
                    inner[node.vars[0]], inner[node.vars[1]] = key, item
                _render(node.body, item, inner, out)


def render(text: str, data: Mapping[str, Any]) -> str:
    """`text` rendered with `data` as dot; TemplateError (with its line) otherwise."""
    out: list[str] = []
    _render(parse(text), data, {"$": data}, out)
    return "".join(out)
