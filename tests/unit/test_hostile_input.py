"""Hostile input: whatever the file holds, podlab answers with a TopologyError, never a crash.

Each case is written to a real file and loaded, the way `podlab validate -t FILE` does, and
must end in TopologyError (exit 2) with a bounded, readable message: never another
exception type, never a traceback.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from podlab_unit_helpers import EXAMPLES, MINIMAL, broken

from harness.errors import TopologyError
from harness.model.topology import load_topology, parse_topology
from harness.model.yamlsrc import MAX_PROBLEMS
from harness.plan import make_plan

LINK1 = '    - endpoints: ["node1:eth1", "sw:eth1"]\n'
WEB = "  web:\n    node: node1\n    containers:\n      - {name: app}\n"


def _bomb() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text


HOSTILE: list[tuple[str, str | bytes | None]] = [
    ("missing-file", None),
    ("empty", ""),
    ("only-newlines", "\n\n\n"),
    ("binary", bytes(range(256)) * 64),
    ("nul-in-text", MINIMAL.replace("lab", "la\x00b", 1)),
    ("latin1", "name: caf\xe9\n".encode("latin-1")),
    ("huge-10mb", b"name: lab\n#" + b"x" * (10 * 1024 * 1024)),
    ("huge-single-string", "name: " + "a" * 900_000 + "\n"),
    ("deeply-nested-lists", "name: " + "[" * 1000 + "]" * 1000 + "\n"),
    ("deeply-nested-maps", "a: " + "{b: " * 500 + "1" + "}" * 500 + "\n"),
    ("alias-bomb", _bomb()),
    ("recursive-alias", "a: &a [*a]\n"),
    ("python-object-tag", "name: !!python/object/apply:os.system ['echo pwned']\n"),
    ("top-level-list", "- 1\n- 2\n"),
    ("top-level-scalar", "podlab\n"),
    ("null-everywhere", "name:\ncluster:\ntopology:\npods:\n"),
    ("null-nodes", "name: lab\ntopology:\n  nodes:\n    a:\n    b:\n  links:\n    -\n"),
    ("lists-where-mappings-go", "name: [lab]\ncluster: [1]\ntopology: [nodes]\npods: [web]\n"),
    ("mappings-where-lists-go", broken(LINK1, '    - endpoints: {a: node1, b: sw}\n')),
    ("strings-where-numbers-go", broken("node-mask: 24", "node-mask: twenty-four")),
    ("negative-node-mask", broken("node-mask: 24", "node-mask: -24")),
    ("float-node-mask", broken("node-mask: 24", "node-mask: 24.5")),
    ("infinite-node-mask", broken("node-mask: 24", "node-mask: .inf")),
    ("nan-mtu", broken(LINK1, LINK1 + "      mtu: .nan\n")),
    ("huge-int", broken("node-mask: 24", "node-mask: " + "9" * 4000)),
    ("shell-in-lab-name", broken("name: lab", "name: '$(rm -rf /)'")),
    ("shell-in-node-name", broken("ext: {kind: linux}", "'ext;reboot': {kind: linux}")),
    ("shell-in-interface", broken(LINK1, '    - endpoints: ["node1:eth1;ls", "sw:eth1"]\n')),
    ("shell-in-image", broken(WEB, WEB.replace("{name: app}", "{name: app, image: '`id`'}"))),
    ("unicode-names", broken("name: lab", "name: ラボ")),
    ("emoji-pod", broken("  web:\n", "  🕸:\n")),
    ("rtl-override", broken("name: lab", "name: \"lab\\u202e\"")),
    ("cidr-everything", broken("pod-cidr: 10.244.0.0/16", "pod-cidr: 0.0.0.0/0")),
    ("pod-cidr-slash-32", broken("pod-cidr: 10.244.0.0/16", "pod-cidr: 10.244.0.0/32")),
    ("node-mask-31", broken("node-mask: 24", "node-mask: 31")),
    ("node-mask-32", broken("node-mask: 24", "node-mask: 32")),
    ("segment-mask-31", broken("node-mask: 24", "node-mask: 24\n  segment-mask: 31")),
    ("multicast-underlay", broken("underlay-cidr: 172.30.0.0/16", "underlay-cidr: 224.0.0.0/8")),
    ("cidr-garbage", broken("pod-cidr: 10.244.0.0/16", "pod-cidr: '10.244.0.0/16/8'")),
    ("many-colons", broken(LINK1, '    - endpoints: [":::", "::"]\n')),
    ("endpoint-numbers", broken(LINK1, "    - endpoints: [1, 2]\n")),
    ("huge-link-count", "name: lab\ntopology:\n  nodes: {a: {kind: k8s-node}}\n  links:\n"
     + '    - endpoints: ["a:e", "a:e"]\n' * 3000),
    ("duplicate-keys", MINIMAL + "name: again\n"),
    ("complex-key", "? [name]\n: lab\n"),
    ("bool-everywhere", "name: true\ncluster: {pod-cidr: true, node-mask: true, masquerade: 3}\n"
     "topology: {nodes: {a: {kind: true}}}\n"),
    ("timestamp-name", "name: 2024-01-01\ntopology: {nodes: {a: {kind: k8s-node}}}\n"),
    ("windows-newlines", MINIMAL.replace("name: lab", "name: Lab").replace("\n", "\r\n")),
    ("too-many-pods", broken("node-mask: 24", "node-mask: 29") + "".join(
        f"  x{i}:\n    node: node1\n    containers: [{{name: app}}]\n" for i in range(20))),
    ("netem-absurd", broken(LINK1, LINK1 + "      netem: {delay: 1e999, jitter: [1], "
                                          "loss: -1, rate: 'fast'}\n")),
]


@pytest.mark.parametrize("data", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_input_raises_only_topology_error(tmp_path: Path, data: str | bytes | None
                                                  ) -> None:
    path = tmp_path / "hostile.clab.yml"
    if data is not None:
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    err = info.value
    assert err.exit_code == 2
    assert err.problems
    text = str(err)
    assert "Traceback" not in text
    assert len(err.problems) <= MAX_PROBLEMS
    assert len(text) < 200 * MAX_PROBLEMS
    assert all(len(line) < 400 for line in text.splitlines()), max(text.splitlines(), key=len)


def test_at_least_thirty_hostile_inputs() -> None:
    assert len(HOSTILE) >= 30


def test_hundreds_of_errors_are_all_reported_and_stay_readable() -> None:
    nodes = "".join(f"    Bad~{i}: {{kind: k8s-node}}\n" for i in range(300))
    links = "".join(f'    - endpoints: ["Bad~{i}:eth1", "sw:eth{i}"]\n' for i in range(300))
    text = f"name: lab\ntopology:\n  nodes:\n{nodes}    sw: {{kind: switch}}\n  links:\n{links}"
    with pytest.raises(TopologyError) as info:
        parse_topology(text)
    problems = info.value.problems
    paths = {p.path for p in problems if "may hold letters" in p.message}
    assert paths == {f"topology.nodes.Bad~{i}" for i in range(300)}
    lines = str(info.value).splitlines()
    assert lines[0] == f"<topology>: {len(problems)} problem(s)"
    assert len(lines) == len(problems) + 1
    assert all(len(line) < 300 for line in lines)
    assert all(p.line is not None for p in problems)


def test_hundreds_of_structural_errors_are_all_reported() -> None:
    links = "".join(f'    - {{endpoints: ["a:e{i}", "b:e{i}"], mtu: x{i}}}\n' for i in range(250))
    text = f"name: lab\ntopology:\n  nodes: {{a: {{kind: k8s-node}}, b: {{kind: k8s-node}}}}\n" \
           f"  links:\n{links}"
    with pytest.raises(TopologyError) as info:
        parse_topology(text)
    assert [p.path for p in info.value.problems] == [
        f"topology.links[{i}].mtu" for i in range(250)]
    assert [p.line for p in info.value.problems] == list(range(5, 255))


def test_thousands_of_errors_are_cut_at_a_bound_that_says_so() -> None:
    links = '    - endpoints: ["a:e", "a:e"]\n' * 3000
    with pytest.raises(TopologyError) as info:
        parse_topology(f"name: lab\ntopology:\n  nodes: {{a: {{kind: k8s-node}}}}\n"
                       f"  links:\n{links}")
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS
    assert "more problems, not shown" in problems[-1].message


def test_huge_names_are_cut_short_in_messages() -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(broken("name: lab", "name: " + "A" * 100_000))
    assert len(str(info.value)) < 1000


# --- fuzzing: random, bounded, seeded mutations of the example files -----------------------

TOKENS = ["", "null", "~", "[]", "{}", "-1", "0", "99999", "1.5", "true", "x", "'a:b'", "&a",
          "*a", ": ", "\t", "[", "]", "{", "}", "- ", "#", "'", '"', "\\", "!!binary", "é",
          "0.0.0.0/0", "10.0.0.1/33", "eth0", "k8s-node", "linux", "switch", "router", "\n  ",
          "a;b", "$(x)", "\u202e", "10.244.0.0/16", "node1", "node1:eth1"]


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randint(0, 12))
        if op == 0:
            text = text[:i] + text[j:]  # delete a span
        elif op == 1:
            text = text[:i] + rng.choice(TOKENS) + text[i:]  # insert a token
        elif op == 2:
            text = text[:i] + rng.choice(TOKENS) + text[j:]  # replace a span
        elif op == 3:
            lines = text.splitlines(keepends=True)  # duplicate or drop a line
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k]) if rng.random() < 0.5 else lines.pop(k)
            text = "".join(lines)
        else:
            text = text[:i] + text[i:j][::-1] + text[j:]  # reverse a span
    return text


@pytest.mark.parametrize("source", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_random_mutations_raise_only_topology_error_or_plan(source: Path) -> None:
    rng = random.Random(f"podlab-{source.name}")
    original = source.read_text()
    outcomes = {"valid": 0, "invalid": 0}
    for _ in range(400):
        text = _mutate(original, rng)
        try:
            topo = parse_topology(text, source)
        except TopologyError as err:
            assert err.problems and err.exit_code == 2
            outcomes["invalid"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{type(exc).__name__}: {exc}\n--- input ---\n{text}")
        try:
            make_plan(topo)  # a file that validates must plan
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"valid file failed to plan: {type(exc).__name__}: {exc}\n{text}")
        outcomes["valid"] += 1
    assert outcomes["invalid"] > 0
