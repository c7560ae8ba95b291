"""pytest plugin `podlab` (entry point `pytest11`): real labs as fixtures, a thin layer
over `harness.Lab`.

Layered like pyroute2's test fixtures, each layer documented and cleaning up in `finally`:

    podlab_environment  session   root and a Docker daemon, or skip (fail under CI=true)
    podlab_images       session   podlab's images built once per session (only what changed)
    podlab_labs         module    the module's labs: each deployed at first use, destroyed
                                  after the module's last test
    podlab_lab          function  the `harness.Lab` of this test's topology

Pick the topology with a marker, on a test function, a class or the module::

    @pytest.mark.podlab_topology("topologies/minimal.clab.yml")
    def test_pods_talk(podlab_lab): ...

    pytestmark = pytest.mark.podlab_topology("topologies/minimal.clab.yml", name="my-lab")

or per parameter with indirect parametrization (a path, or a dict with `topology`, `name`)::

    @pytest.mark.parametrize("podlab_lab", ["topologies/flat3.clab.yml"], indirect=True)

else `--podlab-topology PATH`. Tests of one module that ask for the same topology share
one lab. Relative paths are tried against the test file's directory, then pytest's
rootdir, then the working directory. Without `name=`, the lab is called
`<topology name>-<6 hex>`, so runs never collide with other labs on the host.

`--podlab-keep`: when a test that used the lab failed, keep the lab for debugging and
print how to destroy it (`podlab destroy --name NAME`).

Docker or root missing: the tests skip, or fail when the environment has CI=true (a CI
runner that lost its daemon must not turn green by skipping everything).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MARKER = "podlab_topology"
_KEPT = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("podlab", "podlab labs (harness.pytest_plugin)")
    group.addoption("--podlab-keep", action="store_true", default=False,
                    help="keep a lab whose tests failed (for debugging); "
                    "remove it later with podlab destroy --name NAME")
    group.addoption("--podlab-topology", default=None, metavar="PATH",
                    help="topology for podlab_lab when a module names none")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(path, name=None): topology file (and optional lab name) "
        "that the podlab_lab fixture deploys for this module")
    config.stash[_KEPT] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if kept:
        terminalreporter.section("podlab: labs kept (--podlab-keep)")
        for lab in kept:
            terminalreporter.write_line(f"lab {lab!r} kept; remove it with: "
                                        f"podlab destroy --name {lab}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        pool, handle = funcargs.get("podlab_labs"), funcargs.get("podlab_lab")
        if isinstance(pool, LabPool) and handle is not None:
            pool.failed.add(handle.name)
    return report


# --------------------------------------------------------------------------- fixtures


def unavailable(why: str) -> None:
    """Something a test needs is not there: skip it, or fail it under CI=true (a runner
    that lost a tool must not turn green by skipping)."""
    if os.environ.get("CI", "").lower() == "true":  # as CI providers spell it: true, True
        pytest.fail(f"{why} (CI=true: podlab tests must run, not skip)", pytrace=False)
    pytest.skip(why)


def require_host() -> Any:
    """Root and an answering Docker daemon; returns the Docker client.

    Skips the calling test when either is missing; fails it instead when CI=true.
    """
    from harness.errors import PodlabError
    from harness.host import runtime

    try:
        runtime.require_root()
        return runtime.client()
    except PodlabError as exc:
        unavailable(str(exc))


def require_images(client: Any) -> list[str]:
    """Build podlab/node, pause, app and bird (only what changed); the names built."""
    from harness.errors import PodlabError
    from harness.host import images

    try:
        return list(images.ensure_images(client) or [])
    except PodlabError as exc:
        unavailable(f"podlab images: {exc}")
        raise  # unreachable: unavailable raises


@pytest.fixture(scope="session")
def podlab_environment() -> Any:
    """Root and an answering Docker daemon (see require_host); the Docker client."""
    return require_host()


@pytest.fixture(scope="session")
def podlab_images(podlab_environment: Any) -> list[str]:
    """The lab images, built once per session (see require_images)."""
    return require_images(podlab_environment)


@dataclass(frozen=True)
class LabRequest:
    topology: Path
    name: str | None = None


def _find(path: str | Path, request: pytest.FixtureRequest) -> Path:
    path = Path(path)
    if path.is_absolute():
        return path
    bases = [Path(str(request.node.path)).parent if getattr(request.node, "path", None)
             else None, request.config.rootpath, Path.cwd()]
    for base in bases:
        if base is not None and (base / path).exists():
            return base / path
    return request.config.rootpath / path  # load_topology says what is missing


def _lab_request(request: pytest.FixtureRequest) -> LabRequest:
    param = getattr(request, "param", None)
    if param is not None:
        if isinstance(param, dict):
            return LabRequest(_find(param["topology"], request), param.get("name"))
        if isinstance(param, LabRequest):
            return LabRequest(_find(param.topology, request), param.name)
        return LabRequest(_find(param, request))
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        path = marker.args[0] if marker.args else marker.kwargs.get("path")
        if path is None:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} needs a topology path")
        return LabRequest(_find(path, request), marker.kwargs.get("name"))
    default = request.config.getoption("--podlab-topology", None)
    if default:
        return LabRequest(_find(default, request))
    raise pytest.UsageError(
        f"podlab_lab needs a topology: pytestmark = pytest.mark.{MARKER}('FILE'), "
        "parametrize podlab_lab indirectly, or pass --podlab-topology FILE")


class LabPool:
    """The labs of one test module, deployed on first use and destroyed at its end."""

    def __init__(self, keep_failed: bool):
        self.keep_failed = keep_failed
        self.labs: dict[LabRequest, Any] = {}  # request -> harness.Lab
        self.failed: set[str] = set()  # names of labs used by a failed test

    def get(self, want: LabRequest) -> Any:
        from harness.lab import Lab, unique_name
        from harness.model.topology import load_topology

        if want not in self.labs:
            topo = load_topology(want.topology)
            name = want.name or unique_name(topo.spec.name)
            # a failed deploy rolls itself back; a lab it did not make stays
            self.labs[want] = Lab.deploy(topo, name=name)
        return self.labs[want]

    def close(self) -> list[str]:
        """Destroy every lab (but failed ones with --podlab-keep); return the kept."""
        kept = []
        for lab in self.labs.values():
            if self.keep_failed and lab.name in self.failed:
                kept.append(lab.name)
            else:
                lab.destroy()
        return kept


@pytest.fixture(scope="module")
def podlab_labs(request: pytest.FixtureRequest, podlab_images: list[str]) -> Iterator[LabPool]:
    """The module's labs: each topology asked for is deployed once, at first use, and
    destroyed after the module's last test (kept with --podlab-keep if a test failed)."""
    pool = LabPool(bool(request.config.getoption("--podlab-keep", False)))
    try:
        yield pool
    finally:
        request.config.stash.setdefault(_KEPT, []).extend(pool.close())


@pytest.fixture
def podlab_lab(request: pytest.FixtureRequest, podlab_labs: LabPool) -> Any:
    """The deployed `harness.Lab` of this test's topology (marker on the function, class
    or module; indirect parameter; or --podlab-topology), shared by the module's tests
    that ask for the same one."""
    return podlab_labs.get(_lab_request(request))
