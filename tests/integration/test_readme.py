"""The examples of README.md and docs/pytest-plugin.md run as written, from a directory
outside the repository, as a user would run them: the example's code in a file of its
own, next to a copy of the topology it names (renamed, so it never meets another lab)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.lab import running

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.docker


def python_blocks(doc: Path, heading: str) -> list[str]:
    """The ```python blocks of the section `heading` of a Markdown file."""
    text = doc.read_text()
    section = text[text.index(heading):]
    nxt = re.search(r"^## ", section[len(heading):], re.M)
    section = section[:len(heading) + nxt.start()] if nxt else section
    return re.findall(r"```python\n(.*?)```", section, re.S)


def user_dir(tmp_path: Path) -> tuple[Path, str]:
    """A directory outside the repository holding topologies/minimal.clab.yml."""
    assert ROOT not in tmp_path.parents
    name = f"rd{uuid.uuid4().hex[:6]}"
    (tmp_path / "topologies").mkdir()
    text = (ROOT / "topologies" / "minimal.clab.yml").read_text()
    (tmp_path / "topologies" / "minimal.clab.yml").write_text(
        text.replace("name: minimal", f"name: {name}", 1))
    return tmp_path, name


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_readme_python_api_example_runs_as_written(tmp_path: Path,
                                                   docker_available: None) -> None:
    [block] = python_blocks(ROOT / "README.md", "## From Python")
    where, name = user_dir(tmp_path)
    (where / "example.py").write_text(block)
    try:
        done = run([sys.executable, "example.py"], where)
        assert done.returncode == 0, done.stderr
        assert " via " in done.stdout, done.stdout  # node1's route to node2's pods
    finally:
        running.destroy(name)
    assert not running.destroy(name), "the with-block destroyed the lab"


@pytest.mark.parametrize(("doc", "heading", "test_path"), [
    ("README.md", "## The pytest plugin", "test_example.py"),
    ("README.md", "## scapy inside a pod, from pytest", "test_scapy_example.py"),
    ("docs/pytest-plugin.md", "## Example", "tests/integration/test_cross_node.py"),
])
def test_pytest_plugin_examples_run_as_written(doc: str, heading: str, test_path: str,
                                               tmp_path: Path, docker_available: None
                                               ) -> None:
    [block] = python_blocks(ROOT / doc, heading)
    where, name = user_dir(tmp_path)
    path = where / test_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block)
    try:
        done = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                    str(path.relative_to(where))], where)
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"\b[1-9]\d* passed\b", done.stdout), done.stdout
    finally:
        left = [lab["lab"] for lab in running.inspect(None, all_labs=True)
                if lab["lab"].startswith(name)]
        for lab in left:
            running.destroy(lab)
    assert not left, f"the plugin left {left} behind"
