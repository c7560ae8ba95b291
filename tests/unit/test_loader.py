"""Reading and parsing a topology file: every unreadable input is one clear TopologyError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from podlab_unit_helpers import MINIMAL

from harness.errors import InputError, PodlabError, TopologyError
from harness.model.topology import load_topology
from harness.model.yamlsrc import MAX_BYTES


def load_error(path: Path) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    err = info.value
    assert isinstance(err, InputError) and isinstance(err, PodlabError)
    assert err.exit_code == 2
    assert err.problems, "a TopologyError always names at least one problem"
    assert str(path) in str(err)
    return err


def write(tmp_path: Path, data: str | bytes, name: str = "lab.clab.yml") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def test_valid_minimal_file_loads(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, MINIMAL))
    assert topo.name == "lab"
    assert topo.path == (tmp_path / "lab.clab.yml").resolve()


def test_missing_file_says_no_such_file(tmp_path: Path) -> None:
    err = load_error(tmp_path / "absent.clab.yml")
    assert "no such file" in str(err)


def test_directory_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path)
    assert "is a directory" in str(err)


def test_path_with_nul_byte_is_refused(tmp_path: Path) -> None:
    err = load_error(Path(str(tmp_path / "a\x00b.yml")))
    assert "cannot read" in str(err)


@pytest.mark.parametrize("text", ["", "   \n\n", "  \n\t\n  \t", "# only a comment\n", "---\n"],
                         ids=["empty", "blank-lines", "tabs-and-spaces", "comment", "doc-marker"])
def test_empty_or_whitespace_file_says_empty(tmp_path: Path, text: str) -> None:
    err = load_error(write(tmp_path, text))
    assert "the file is empty" in str(err)


@pytest.mark.parametrize(("text", "got"), [
    ("- name: lab\n- topology: {}\n", "list"),
    ("just a string\n", "str"),
    ("42\n", "int"),
    ("true\n", "bool"),
], ids=["list", "string", "integer", "boolean"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    err = load_error(write(tmp_path, text))
    assert err.problems[0].line == 1
    assert "top level must be a mapping" in str(err) and f"not a {got}" in str(err)


@pytest.mark.parametrize(("text", "line"), [
    ("name: lab\ntopology:\n  nodes: [\n  - a: b\n", 4),
    ("name: lab\n  indented: wrong\n", 2),
    ("name: lab\ntopology:\n\tnodes: {}\n", 3),
    ("name: lab\n---\nname: other\n", 2),
    ('name: "unterminated\ntopology: {}\n', 3),
    ("name: lab\ntopology: {nodes: {a: b}\n", 3),
], ids=["bad-flow", "bad-indent", "tab-indent", "two-documents", "unterminated-quote",
        "unclosed-brace"])
def test_invalid_yaml_reports_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    err = load_error(path)
    assert len(err.problems) == 1
    assert err.problems[0].line == line
    assert "not valid YAML" in err.problems[0].message
    assert f"{path}:{line}:" in str(err)
    assert "\n" not in err.problems[0].message  # one line, no PyYAML excerpt


def test_binary_file_is_refused(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, bytes(range(256)) * 4))
    assert "binary data" in str(err)


def test_utf16_file_is_refused_as_binary(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, MINIMAL.encode("utf-16")))
    assert "binary data" in str(err)


def test_non_utf8_file_names_the_byte(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "name: caf\xe9\n".encode("latin-1")))
    assert "not UTF-8" in str(err) and "byte 9" in str(err)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    assert load_topology(write(tmp_path, "\ufeff" + MINIMAL)).name == "lab"


def test_ten_megabyte_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, b"# " + b"x" * (10 * 1024 * 1024) + b"\n")
    err = load_error(path)
    assert "limited to" in str(err) and str(MAX_BYTES) in str(err)


def test_file_just_over_the_limit_is_refused(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, b"#" * MAX_BYTES + b"\n"))
    assert "limited to" in str(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_endless_device_is_read_only_up_to_the_limit() -> None:
    # st_size of /dev/zero is 0: the read itself must be bounded
    err = load_error(Path("/dev/zero"))
    assert "limited to" in str(err) or "binary data" in str(err)


def test_deeply_nested_flow_lists_are_refused(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "name: " + "[" * 1000 + "]" * 1000 + "\n"))
    assert "nested" in str(err)


def test_deeply_nested_block_lists_are_refused_with_a_path(tmp_path: Path) -> None:
    text = "name: lab\ntopology:\n" + "".join("  " * (i + 1) + "-\n" for i in range(100))
    err = load_error(write(tmp_path, text))
    assert "nested deeper than" in str(err)
    assert err.problems[0].line is not None
    assert err.problems[0].path.startswith("topology")


def test_deeply_nested_mappings_are_refused(tmp_path: Path) -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(200))
    err = load_error(write(tmp_path, text))
    assert "nested deeper than" in str(err)


def test_billion_laughs_alias_bomb_is_refused(tmp_path: Path) -> None:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    text += "name: lab\ntopology: {nodes: {n: {kind: k8s-node}}}\n"
    err = load_error(write(tmp_path, text))
    assert "more than" in str(err) and "values" in str(err)
    assert len(str(err)) < 1000


def test_aliases_within_limits_are_expanded(tmp_path: Path) -> None:
    text = MINIMAL.replace("    - {name: app}\n  db:", "    - &c {name: app}\n  db:").replace(
        "      - {name: app}\n", "      - *c\n")
    assert "*c" in text
    assert load_topology(write(tmp_path, text)).spec.pods["db"].containers[0].name == "app"


def test_duplicate_key_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: lab\nname: other\ntopology: {nodes: {n: {kind: k8s-node}}}\n")
    err = load_error(path)
    assert [(p.path, p.line) for p in err.problems] == [("name", 2)]
    assert "written twice" in str(err) and f"{path}:2: name:" in str(err)


def test_duplicate_nested_keys_are_all_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace("    ext: {kind: linux}\n",
                           "    ext: {kind: linux}\n    node1: {kind: router}\n")
    text = text.replace("  db:\n", "  web:\n    node: node1\n    containers: [{name: x}]\n  db:\n")
    err = load_error(write(tmp_path, text))
    assert {p.path for p in err.problems} == {"topology.nodes.node1", "pods.web"}


@pytest.mark.parametrize("text", [
    "name: !!python/object/apply:os.system ['true']\n",
    "name: !custom lab\n",
    "name: !!int abc\n",
    "name: lab\ncluster: {node-mask: " + "9" * 5000 + "}\n",
], ids=["python-object", "unknown-tag", "bad-int-tag", "5000-digit-integer"])
def test_unconstructible_scalars_are_refused_with_a_line(tmp_path: Path, text: str) -> None:
    err = load_error(write(tmp_path, text))
    assert "not valid YAML" in str(err)
    assert err.problems[0].line == text.count("\n")
    assert "\n" not in err.problems[0].message


@pytest.mark.parametrize("text", ["? [a, b]\n: c\n", "~: c\n", "? {a: 1}\n: c\n"],
                         ids=["list-key", "null-key", "mapping-key"])
def test_non_string_keys_are_refused(tmp_path: Path, text: str) -> None:
    err = load_error(write(tmp_path, text))
    assert "keys must be plain strings" in str(err)


def test_control_character_is_refused(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "name: a\x07b\n"))
    assert "not valid YAML" in str(err)
