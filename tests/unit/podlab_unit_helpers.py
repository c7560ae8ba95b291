"""Shared helpers of the unit tests: a valid minimal file to break, and error assertions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.errors import Problem, TopologyError
from harness.model.topology import Topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]


def missing(reason: str) -> None:
    """A host tool a test needs is not there: skip on a developer's machine, fail in CI
    (CI=true), where `make setup` installs it and a skip would pass off as run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; CI=true requires it")
    pytest.skip(reason)


def bird_binary() -> str:
    """The host's BIRD 2 (to parse generated configs with `bird -p`)."""
    found = shutil.which("bird") or ("/usr/sbin/bird" if Path("/usr/sbin/bird").exists()
                                     else None)
    if found is None:
        missing("bird2 is not installed (make setup installs it)")
    assert found is not None
    return found
EXAMPLES = sorted((ROOT / "topologies").glob("*.clab.yml"))
# the examples whose pods podlab wires itself (the others call CNI plugins)
PODLAB_EXAMPLES = [p for p in EXAMPLES if "\n  cni:" not in p.read_text()]
CNI_EXAMPLES = [p for p in EXAMPLES if p not in PODLAB_EXAMPLES]

# Valid: two k8s-nodes and an outside host on a switch, one pod per node.
MINIMAL = """\
name: lab
cluster:
  pod-cidr: 10.244.0.0/16
  node-mask: 24
  underlay-cidr: 172.30.0.0/16
topology:
  nodes:
    node1: {kind: k8s-node}
    node2: {kind: k8s-node}
    sw: {kind: switch}
    ext: {kind: linux}
  links:
    - endpoints: ["node1:eth1", "sw:eth1"]
    - endpoints: ["node2:eth1", "sw:eth2"]
    - endpoints: ["ext:eth1", "sw:eth3"]
pods:
  web:
    node: node1
    containers:
      - {name: app}
  db:
    node: node2
    containers:
      - {name: app}
"""


# The same lab dual-stack (IPv4 primary), and IPv6-only.
DUAL = MINIMAL.replace("pod-cidr: 10.244.0.0/16", "pod-cidr: [10.244.0.0/16, fd00:10:244::/56]") \
    .replace("underlay-cidr: 172.30.0.0/16", "underlay-cidr: [172.30.0.0/16, fd00:172:30::/48]")
V6ONLY = MINIMAL.replace("pod-cidr: 10.244.0.0/16", "pod-cidr: fd00:10:244::/56") \
    .replace("underlay-cidr: 172.30.0.0/16", "underlay-cidr: fd00:172:30::/48")


def broken(old: str, new: str, base: str = MINIMAL) -> str:
    """`base` with exactly one occurrence of `old` replaced: one deliberate mistake."""
    assert base.count(old) == 1, f"{old!r} occurs {base.count(old)} times"
    return base.replace(old, new)


def problems_of(text: str, file: Path | None = None) -> tuple[TopologyError, list[Problem]]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, file)
    assert info.value.exit_code == 2
    return info.value, info.value.problems


def valid(text: str) -> Topology:
    return parse_topology(text)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line number of the nth line containing `needle` (starting with it: "^...")."""
    hits = [i for i, line in enumerate(text.splitlines(), 1)
            if (line.startswith(needle[1:]) if needle.startswith("^") else needle in line)]
    assert len(hits) >= nth, f"{needle!r} not found {nth} times"
    return hits[nth - 1]
