"""What a node's container keys mean (containerlab's `cmd`, `binds`, `exec`,
`network-mode`, `stages`, `mgmt-ipv4`, ...), checked with the rest of the file.

Only a `linux` node takes them: podlab configures its own kinds itself. A `linux` node that
brings its own image, binds, exec or command is the user's (`user_nodes`).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from harness.errors import Problem
from harness.model.schema import USER_KEYS, NodeSpec, TopologyFile
from harness.model.yamlsrc import resolve_path

# keys podlab's own kinds do not take (it configures those nodes itself)
CONTAINER_KEYS = ("cmd", "entrypoint", "env", "env_files", "binds", "exec", "user",
                  "sysctls", "cap_add", "network_mode", "stages", "mgmt_ipv4", "mgmt_ipv6",
                  "memory", "cpu", "hostname")
SWITCH_KEYS = ("network_mode",)  # a bridge may live in a node's namespace
_MEMORY = re.compile(r"\s*\d+(\.\d+)?\s*([kmgtpe]i?b?|b)?\s*", re.IGNORECASE)
MAGIC_DIRS = ("__clabDir__", "__clabNodeDir__")


def _alias(field: str) -> str:
    info = NodeSpec.model_fields[field]
    return info.alias or field


def user_nodes(spec: TopologyFile, kinds: dict[str, str]) -> set[str]:
    """The `linux` nodes that bring their own image, binds, exec or command."""
    return {n for n, node in spec.topology.nodes.items()
            if kinds.get(n) == "linux" and any(getattr(node, k) for k in USER_KEYS)}


def _words(text: str) -> str | None:
    """Why `text` does not split into shell words as containerlab splits it (shlex)."""
    try:
        shlex.split(text)
    except ValueError as exc:
        return f"does not split into words: {exc}"
    return None


def container_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    nodes = spec.topology.nodes
    linked = {e.partition(":")[0] for lk in spec.topology.links for e in lk.endpoints}
    mgmt_seen: dict[str, str] = {}
    deps: dict[str, set[str]] = {}
    for name, node in nodes.items():
        path = f"topology.nodes.{name}"
        kind = kinds.get(name)
        if kind is None:
            continue
        if kind != "linux":
            allowed = SWITCH_KEYS if kind == "switch" else ()
            for key in CONTAINER_KEYS:
                if getattr(node, key) and key not in allowed:
                    yield Problem(f"{path}.{_alias(key)}", f"podlab configures {kind} nodes "
                                  f"itself; {_alias(key)!r} applies to linux nodes")
        mode = node.network_mode
        if mode is not None and mode != "none":
            target = mode.removeprefix("container:")
            if not mode.startswith("container:") or not target:
                yield Problem(f"{path}.network-mode", f"network-mode {mode!r}: podlab takes "
                              "none or container:<node>")
            elif target not in nodes or target == name:
                yield Problem(f"{path}.network-mode", f"{mode}: {target!r} is no other node "
                              "of this lab but a container podlab did not start and does not "
                              "own; podlab shares namespaces only between its nodes")
            elif kinds.get(target) == "switch":
                yield Problem(f"{path}.network-mode", f"{mode}: {target!r} is a bridge, "
                              "which has no namespace of its own to share")
            else:  # a chain (a pod's container, in its hostNetwork infra) is Docker's too
                deps.setdefault(name, set()).add(target)
                if kind == "linux" and name in linked:
                    yield Problem(f"{path}.network-mode", f"{mode}: this node's interfaces "
                                  f"are {target!r}'s; link {target!r} instead")
        for key, text in (("cmd", node.cmd), ("entrypoint", node.entrypoint)):
            if text and (why := _words(text)):
                yield Problem(f"{path}.{key}", why)
        for i, line in enumerate(node.exec):
            if why := _words(line):
                yield Problem(f"{path}.exec[{i}]", why)
        for i, bind in enumerate(node.binds):
            parts = bind.split(":")
            if len(parts) < 2 or not parts[0] or not parts[1].startswith("/") or len(parts) > 3:
                yield Problem(f"{path}.binds[{i}]", f"{bind!r} is not SRC:DST[:MODE] with an "
                              "absolute DST")
        if node.memory and not _MEMORY.fullmatch(node.memory):
            yield Problem(f"{path}.memory", f"{node.memory!r} is not a size like 512MB or 1G")
        for stage, body in node.stages.items():
            for i, wait in enumerate(body.wait_for):
                if wait.node not in nodes or wait.node == name:
                    yield Problem(f"{path}.stages.{stage}.wait-for[{i}].node",
                                  f"no other node {wait.node!r} in this lab")
                else:
                    deps.setdefault(name, set()).add(wait.node)
            for i, ex in enumerate(body.exec):
                if ex.target == "host":
                    yield Problem(f"{path}.stages.{stage}.exec[{i}].target",
                                  "an exec on the host runs a command on this machine itself, "
                                  "outside the lab; podlab runs commands only in its nodes")
                elif why := _words(ex.command):
                    yield Problem(f"{path}.stages.{stage}.exec[{i}].command", why)
        for key, text in (("mgmt-ipv4", node.mgmt_ipv4), ("mgmt-ipv6", node.mgmt_ipv6)):
            if text is None:
                continue
            want = 4 if key == "mgmt-ipv4" else 6
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                yield Problem(f"{path}.{key}", f"{text!r} is not an IPv{want} address")
                continue
            if ip.version != want:
                yield Problem(f"{path}.{key}", f"{text!r} is not an IPv{want} address")
            elif mode is not None:
                yield Problem(f"{path}.{key}", f"a node with network-mode {mode} is not on "
                              "the management network")
            elif str(ip) in mgmt_seen:
                yield Problem(f"{path}.{key}", f"{ip} is also {mgmt_seen[str(ip)]}'s")
            else:
                mgmt_seen[str(ip)] = name
    used = {tuple(e.split(":", 1)) for lk in spec.topology.links for e in lk.endpoints}
    for i, dummy in enumerate(spec.topology.dummies):
        path = f"topology.dummies[{i}]"
        if dummy.node not in nodes:
            yield Problem(f"{path}.node", f"unknown node {dummy.node!r}")
        elif kinds.get(dummy.node) != "linux":
            yield Problem(f"{path}.node", "a dummy interface goes into a linux node")
        if (dummy.node, dummy.interface) in used:
            yield Problem(f"{path}.interface", f"{dummy.node}:{dummy.interface} is also a "
                          "link's end")
        used.add((dummy.node, dummy.interface))
    yield from _mgmt_problems(spec)
    if cycle := _cycle(deps):
        yield Problem(f"topology.nodes.{cycle[0]}", "these nodes wait for each other "
                      f"(stages wait-for, network-mode container:): {' -> '.join(cycle)}")


# containerlab's management subnets when a file gives neither (core/config.go)
MGMT_DEFAULT = {4: "172.20.20.0/24", 6: "3fff:172:20:20::/64"}


def mgmt_subnets(spec: TopologyFile) -> tuple[str | None, str | None]:
    """The management network's IPv4 and IPv6 subnets: the file's, or containerlab's
    defaults when it gives neither and a node asks for a static address (Docker takes one
    only on a subnet that was given)."""
    mgmt = spec.mgmt
    v4, v6 = (mgmt.ipv4_subnet, mgmt.ipv6_subnet) if mgmt else (None, None)
    if v4 is None and v6 is None:
        nodes = spec.topology.nodes.values()
        v4 = MGMT_DEFAULT[4] if any(n.mgmt_ipv4 for n in nodes) else None
        v6 = MGMT_DEFAULT[6] if any(n.mgmt_ipv6 for n in nodes) else None
    return v4, v6


def _mgmt_problems(spec: TopologyFile) -> Iterator[Problem]:
    nets: dict[int, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    v4, v6 = mgmt_subnets(spec)
    for key, text, want in (("ipv4-subnet", v4, 4), ("ipv6-subnet", v6, 6)):
        if text is None:
            continue
        try:
            net = ipaddress.ip_network(text)
        except ValueError:
            yield Problem(f"mgmt.{key}", f"{text!r} is not an IPv{want} subnet")
            continue
        if net.version != want:
            yield Problem(f"mgmt.{key}", f"{text!r} is not an IPv{want} subnet")
        else:
            nets[want] = net
    for name, node in spec.topology.nodes.items():
        for key, text, want in (("mgmt-ipv4", node.mgmt_ipv4, 4),
                                ("mgmt-ipv6", node.mgmt_ipv6, 6)):
            if text is None or want not in nets:
                continue
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue  # said above
            if ip.version == want and ip not in nets[want]:
                yield Problem(f"topology.nodes.{name}.{key}", f"{ip} is outside the "
                              f"management subnet {nets[want]}")


def _cycle(deps: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(deps.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(deps):
        if n not in state and (found := visit(n)):
            return found
    return None


def bind_source(bind: str, node: str, topo_path: Path | None) -> Path | None:
    """A bind's host path as containerlab resolves it (relative to the topology file's
    directory, `~` expanded, `__clabNodeName__` substituted); None for a lab-directory
    path (podlab keeps no lab directory)."""
    src = bind.split(":")[0].replace("__clabNodeName__", node)
    if any(m in src for m in MAGIC_DIRS):
        return None
    return resolve_path(src, topo_path)


def file_problems(spec: TopologyFile, topo_path: Path | None) -> Iterator[Problem]:
    """Every bind's host path and every env-file exist (containerlab checks them when it
    reads the file, too)."""
    where = "relative to the topology file" if topo_path else "relative to the working directory"
    for name, node in spec.topology.nodes.items():
        path = f"topology.nodes.{name}"
        for i, bind in enumerate(node.binds):
            if ":" not in bind:
                continue  # its form is reported by container_problems
            src = bind_source(bind, name, topo_path)
            if src is None:
                yield Problem(f"{path}.binds[{i}]", f"{bind!r}: podlab keeps no lab "
                              "directory (__clabDir__, __clabNodeDir__); bind a path of "
                              "your own")
            elif not src.exists():
                yield Problem(f"{path}.binds[{i}]", f"no such file or directory: "
                              f"{bind.split(':')[0]} ({where})")
        for i, env_file in enumerate(node.env_files):
            if not resolve_path(env_file, topo_path).is_file():
                yield Problem(f"{path}.env-files[{i}]", f"no such file: {env_file} ({where})")
