"""Hostile files through the CLI: every command that takes -t FILE answers a missing, empty,
binary or 10 MB file with exit 2 and one problem report, before it touches Docker.

Docker and root are booby-trapped, so "starts nothing" holds by construction: any attempt
to reach the daemon (or to ask for root) fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import cli
from harness.host import runtime

COMMANDS: list[list[str]] = [
    ["validate"], ["plan"], ["plan", "-o", "json"], ["deploy"], ["verify"], ["run"],
    ["graph"], ["export", "-o", "containerlab"], ["destroy"], ["inspect"],
    ["fault", "link-down", "node1:eth1"],
]


def _missing(tmp: Path) -> Path:
    return tmp / "no-such.clab.yml"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.clab.yml").write_bytes(b"")
    return tmp / "empty.clab.yml"


def _binary(tmp: Path) -> Path:
    (tmp / "binary.clab.yml").write_bytes(bytes(range(256)) * 64 + os.urandom(4096))
    return tmp / "binary.clab.yml"


def _huge(tmp: Path) -> Path:
    path = tmp / "huge.clab.yml"
    path.write_text("name: huge\n# " + "x" * (10 * 1024 * 1024) + "\n")
    return path


def _directory(tmp: Path) -> Path:
    (tmp / "adir.clab.yml").mkdir()
    return tmp / "adir.clab.yml"


FILES = {"missing": _missing, "empty": _empty, "binary": _binary, "10MB": _huge,
         "directory": _directory}


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def trap(*_a: object, **_k: object) -> None:
        raise AssertionError("bad input reached Docker / the root check")

    monkeypatch.setattr(runtime, "client", trap)
    monkeypatch.setattr(runtime, "require_root", trap)


@pytest.mark.parametrize("kind", list(FILES))
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "-".join(c))
def test_hostile_file_is_exit_2_before_docker(tmp_path: Path, cmd: list[str], kind: str
                                              ) -> None:
    path = FILES[kind](tmp_path)
    argv = [cmd[0], "-t", str(path), *cmd[1:]]
    result = CliRunner().invoke(cli.app, argv)
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert not isinstance(result.exception, AssertionError), result.exception
    assert "Traceback" not in result.output
    assert len(result.output) < 4000, "the report must stay short"
