"""pytest plugin `podlab` (entry point `pytest11`): real labs as fixtures.

Layered like pyroute2's test fixtures, each layer documented and cleaning up in `finally`:

    podlab_environment  session  root and a Docker daemon, or skip (fail under CI=true)
    podlab_images       session  podlab's images built once per session (only what changed)
    podlab_lab          module   one deployed lab per test module (per param), destroyed
                                 after the module's last test

Pick the topology per module with a marker (module level: a module-scoped fixture sees
only module and class markers)::

    pytestmark = pytest.mark.podlab_topology("topologies/minimal.clab.yml", name="my-lab")

or per parameter with indirect parametrization (a path, or a dict with `topology`, `name`)::

    @pytest.mark.parametrize("podlab_lab", ["topologies/flat3.clab.yml"], indirect=True)

else `--podlab-topology PATH`. Relative paths are tried against the test file's directory,
then pytest's rootdir. Without `name=`, the lab is called `<topology name>-<6 hex>`, so
runs never collide with other labs on the host.

`--podlab-keep`: when a test that used the lab failed, keep the lab for debugging and
print how to destroy it (`podlab destroy --name NAME`).

Docker or root missing: the tests skip, or fail when the environment has CI=true (a CI
runner that lost its daemon must not turn green by skipping everything).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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
        handle = getattr(item, "funcargs", {}).get("podlab_lab")
        if isinstance(handle, PodlabLab):
            handle.failed.append(item.nodeid)
    return report


# --------------------------------------------------------------------------- the handle


class ExecResult(NamedTuple):
    """What `PodlabLab.exec` returns; unpacks as `(code, output)`."""

    code: int
    output: str


@dataclass
class PodlabLab:
    """A deployed lab: its plan, and ways to act on it. Built by the `podlab_lab` fixture."""

    plan: Any  # harness.plan.Plan
    failed: list[str] = field(default_factory=list)  # node ids of failed tests that used it

    @property
    def name(self) -> str:
        return self.plan.lab

    @property
    def pids(self) -> dict[str, int]:
        """`{node or pod name: host pid holding its network namespace}` (running ones)."""
        from harness import lab

        by_container = lab.pids(self.plan.lab)
        found = {n.name: by_container.get(n.container) for n in self.plan.nodes}
        found |= {p.name: by_container.get(p.infra) for p in self.plan.pods}
        return {name: pid for name, pid in found.items() if pid}

    def exec(self, argv: Iterable[str] | None = None, *, node: str | None = None,
             pod: str | None = None, container: str | None = None,
             check: bool = False) -> ExecResult:
        """Run `argv` in a node, or in a pod's container (its first one by default).

        With `check=True` a non-zero exit fails the test with the command's output.
        """
        from harness import lab

        args = list(argv or ())
        code, raw = lab.exec_in(self.plan.lab, node=node, pod=pod, container=container,
                                argv=args)
        result = ExecResult(code, raw.decode(errors="replace"))
        if check and code != 0:
            where = f"node {node}" if node else f"pod {pod}"
            pytest.fail(f"{' '.join(args)} in {where} exited {code}:\n{result.output}",
                        pytrace=False)
        return result

    def verify(self, checks: Iterable[str] | None = None, keep_frames: bool = False,
               timeout: float = 2.0) -> Any:
        """Run the model's checks (all by default); returns the harness.prove.verify.Report."""
        from harness.prove import verify as verify_mod

        return verify_mod.verify(self.plan, tuple(checks or verify_mod.CHECKS),
                                 keep_frames=keep_frames, timeout=timeout)

    def capture(self, *, node: str | None = None, pod: str | None = None,
                iface: str | None = None, bpf: str | None = None, count: int | None = None,
                timeout: float | None = 5.0, path: str | Path | None = None) -> Any:
        """A `harness.host.capture.Sniffer` in a node's or pod's namespace, not yet started.

        Use it as a context manager: the socket is open before the body makes traffic,
        and the exit waits for `count` packets or `timeout` seconds::

            with podlab_lab.capture(pod="b", bpf="icmp", count=2) as cap:
                podlab_lab.exec(pod="a", argv=["ping", "-c1", "10.244.1.2"])
            assert len(cap.packets) == 2
        """
        from harness.host.capture import Sniffer
        from harness.lab import attach

        target = attach.resolve(self.plan, node=node, pod=pod)
        return Sniffer(target.pid, iface, bpf=bpf, count=count, timeout=timeout, path=path)


# --------------------------------------------------------------------------- fixtures


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
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
        _unavailable(str(exc))


def require_images(client: Any) -> list[str]:
    """Build podlab/node, podlab/pause and podlab/app (only what changed); the names built."""
    from harness.errors import PodlabError
    from harness.host import images

    try:
        return list(images.ensure_images(client) or [])
    except PodlabError as exc:
        _unavailable(f"podlab images: {exc}")
        raise  # unreachable: _unavailable raises


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


def lab_plan(want: LabRequest) -> Any:
    """The plan of `want.topology`, renamed to `want.name` or `<name>-<6 hex>`."""
    from harness.model.topology import NAME_MAX, Topology, load_topology
    from harness.plan import make_plan

    topo = load_topology(want.topology)
    name = want.name
    if name is None:
        suffix = uuid.uuid4().hex[:6]
        name = f"{topo.spec.name[:NAME_MAX - 7].rstrip('-')}-{suffix}"
    renamed = Topology(topo.spec.model_copy(update={"name": name}), topo.path)
    return make_plan(renamed)


@pytest.fixture(scope="module")
def podlab_lab(request: pytest.FixtureRequest, podlab_images: list[str]
               ) -> Iterator[PodlabLab]:
    """Deploy the module's topology, yield a PodlabLab, always destroy it afterwards.

    Kept (not destroyed) only with --podlab-keep when a test that used it failed.
    """
    from harness import lab

    plan = lab_plan(_lab_request(request))
    handle = PodlabLab(plan)
    keep = bool(request.config.getoption("--podlab-keep", False))
    lab.deploy(plan)  # rolls itself back when it fails; a lab it did not make stays
    try:
        yield handle
    finally:
        if keep and handle.failed:
            request.config.stash.setdefault(_KEPT, []).append(plan.lab)
        else:
            lab.destroy(plan.lab)
