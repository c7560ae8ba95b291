"""Environment trouble ends with exit 3 and ONE line that says what to do, no traceback:
no Docker daemon, not root, an image that cannot be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from harness.pytest_plugin import unavailable

ROOT = Path(__file__).resolve().parents[2]
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"


def podlab(*argv: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "harness.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def assert_one_line_exit_3(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 3, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def named_copy(tmp_path: Path) -> Path:
    path = tmp_path / "env.clab.yml"
    path.write_text(FLAT3.read_text().replace("name: flat3", f"name: ite{uuid.uuid4().hex[:6]}"))
    return path


@pytest.mark.parametrize("cmd", [["deploy"], ["verify"], ["inspect"], ["destroy"]])
def test_no_docker_daemon(tmp_path: Path, cmd: list[str]) -> None:
    done = podlab(*cmd, "-t", str(named_copy(tmp_path)),
                  env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert_one_line_exit_3(done, "/nonexistent.sock")


def test_images_build_without_daemon() -> None:
    done = podlab("images", "build", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert_one_line_exit_3(done, "Docker")


def test_not_root_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness import cli
    from harness.host import runtime

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(runtime, "client", lambda: pytest.fail("Docker contacted"))
    result = CliRunner().invoke(cli.app, ["deploy", "-t", str(named_copy(tmp_path))])
    assert result.exit_code == 3, result.output
    assert "root" in result.output and "sudo" in result.output


def test_not_root_as_nobody(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        unavailable("running a command as nobody needs root and setpriv (util-linux)")
    shared = Path(tempfile.mkdtemp(prefix="podlab-nobody-", dir="/tmp"))
    try:
        shared.chmod(0o755)  # pytest's own tmp dirs are 0700: nobody could not read the file
        path = named_copy(shared)
        path.chmod(0o644)
        done = podlab("deploy", "-t", str(path), prefix=(
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
            env={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"})
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    if "Permission denied" in done.stderr and "python" in done.stderr.lower():
        # an interpreter under a private home (pyenv in /root): nothing is proven here
        unavailable(f"nobody cannot run this interpreter: {done.stderr.strip()[:200]}")
    assert_one_line_exit_3(done, "root")


def test_image_that_cannot_be_built(docker_available: None, tmp_path: Path) -> None:
    from harness.host import runtime

    images = tmp_path / "images"
    shutil.copytree(ROOT / "images", images)
    # a syntax error: the build fails before anything could be tagged podlab/node
    (images / "node" / "Dockerfile").write_text("FROM scratch\nTHIS IS NOT AN INSTRUCTION\n")
    path = named_copy(tmp_path)
    lab = path.read_text().split("name: ", 1)[1].split()[0]
    before = {c.id for c in runtime.containers_of(None)}
    done = podlab("deploy", "-t", str(path), env={"PODLAB_IMAGES_DIR": str(images)})
    assert_one_line_exit_3(done, "podlab/node")
    assert runtime.containers_of(lab) == []
    assert {c.id for c in runtime.containers_of(lab)} <= before
