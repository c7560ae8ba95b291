"""`--runtime containerlab` without Docker: the topology containerlab is given holds the
very containers and links podlab's own runtime makes, with nothing that opens a way out;
the program is found, version-checked and its failures reported; destroy goes through it;
the matrix has the runtime axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from podlab_unit_helpers import EXAMPLES
from test_export import _validate, clab_validator  # noqa: F401 (a fixture)

from harness import datapath
from harness.cli.matrix import Combo, Runner, combinations, runtimes
from harness.errors import DeployError, InputError
from harness.host import containerlab, runtime
from harness.host.runtime import ContainerInfo, ContainerSpec
from harness.lab import deploy, running
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]
FLAT3 = ROOT / "topologies" / "flat3.clab.yml"


def _plan(path: Path) -> Plan:
    return make_plan(load_topology(path))


def _topology(plan: Plan) -> dict[str, Any]:
    desc = datapath.select(plan).describe(plan)
    specs = [deploy.node_spec(n, desc.node(n.name), i, "d1") for i, n in enumerate(plan.nodes)]
    return containerlab.topology(plan.lab, specs, plan.links,
                                 {n.container: n.name for n in plan.nodes}), specs


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.split(".")[0])
def test_containerlab_gets_the_containers_and_links_podlab_would_make(path: Path) -> None:
    plan = _plan(path)
    topo, specs = _topology(plan)
    nodes = topo["topology"]["nodes"]
    assert list(nodes) == [n.name for n in plan.nodes]
    for n, spec in zip(plan.nodes, specs, strict=True):
        got = nodes[n.name]
        # containerlab names the container <prefix>-<lab>-<node>: podlab's own name
        assert f"{topo['prefix']}-{topo['name']}-{n.name}" == n.container == spec.name
        assert got["image"] == containerlab.tagged(spec.image)
        assert got["labels"] == dict(spec.labels)  # how podlab finds the lab afterwards
        assert got["cap-add"] == list(spec.cap_add)
        assert got.get("sysctls", {}) == dict(spec.sysctls)
        assert got["hostname"] == n.name
    links = topo["topology"]["links"]
    assert [lk["endpoints"] for lk in links] == \
        [[f"{v.a[0]}:{v.a[1]}", f"{v.b[0]}:{v.b[1]}"] for v in plan.links]
    # containerlab's veth default is 9500; podlab's is the kernel's
    assert [lk["mtu"] for lk in links] == [v.mtu or 1500 for v in plan.links]
    assert not plan.pods or not set(nodes) & {p.name for p in plan.pods}  # pods stay podlab's


def test_no_node_gets_a_way_out_or_privileges_or_a_pull() -> None:
    topo, _ = _topology(_plan(FLAT3))
    # without skip-when-unused containerlab creates a management network that NATs out
    assert topo["mgmt"] == {"skip-when-unused": True, "external-access": False}
    for name, n in topo["topology"]["nodes"].items():
        assert n["network-mode"] == "none", name
        assert n["privileged"] is False, name  # containerlab's linux default is privileged
        assert n["image-pull-policy"] == "never", name
        assert not {"ports", "binds", "exec", "mgmt-ipv4", "mgmt-ipv6"} & set(n), name


def test_a_container_on_another_network_is_refused() -> None:
    spec = ContainerSpec(name="x", image="podlab/node", labels={}, network_mode="container:y")
    with pytest.raises(ValueError, match="network_mode none"):
        containerlab.node(spec)


@pytest.mark.parametrize("path", [FLAT3, ROOT / "topologies" / "dual.clab.yml",
                                  ROOT / "topologies" / "mtu.clab.yml"],
                         ids=lambda p: p.name.split(".")[0])
def test_containerlab_schema_accepts_the_runtime_topology(path: Path,
                                                          clab_validator: Any) -> None:  # noqa: F811
    _validate(clab_validator, _topology(_plan(path))[0])


def test_the_version_is_read_and_one_without_skip_when_unused_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n  version: 0.79.0\n   commit: v0.79.0\n"
    assert containerlab.parse_version(text) == (0, 79, 0)
    with pytest.raises(containerlab.ContainerlabMissing, match="no version"):
        containerlab.parse_version("nothing")
    monkeypatch.setattr(containerlab, "version", lambda exe=None: (0, 75, 0))
    with pytest.raises(containerlab.ContainerlabMissing, match=r"0\.76\.0 or later"):
        containerlab.require("/x/containerlab")
    monkeypatch.setattr(containerlab, "version", lambda exe=None: (0, 76, 0))
    assert containerlab.require("/x/containerlab") == "/x/containerlab"


def test_the_users_containerlab_wins_and_none_says_how_to_get_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(containerlab.BINARY_ENV, "/opt/clab/containerlab")
    assert containerlab.binary() == "/opt/clab/containerlab"
    monkeypatch.delenv(containerlab.BINARY_ENV)
    monkeypatch.setattr(containerlab.shutil, "which", lambda name: None)
    with pytest.raises(containerlab.ContainerlabMissing, match="make setup") as err:
        containerlab.binary()
    assert err.value.exit_code == 3


def test_a_failed_containerlab_deploy_says_what_containerlab_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "containerlab"
    exe.write_text("#!/bin/sh\n[ \"$1\" = version ] && { echo ' version: 0.79.0'; exit 0; }\n"
                   "printf '\\033[31m ERROR \\033[0m\\n\\342\\224\\202 node \"x\" deploy: "
                   "no such image \\342\\224\\202\\n' >&2; exit 1\n")
    exe.chmod(0o755)
    topo = tmp_path / "lab" / "lab.clab.yml"
    topo.parent.mkdir()
    topo.write_text("name: lab\n")
    with pytest.raises(DeployError, match=r'exited 1: ERROR node "x" deploy: no such image$'):
        containerlab.deploy(topo, str(exe))


def test_an_unknown_runtime_is_bad_input() -> None:
    with pytest.raises(InputError, match="podlab, containerlab"):
        deploy.deploy(_plan(FLAT3), runtime_name="kind")


def _row(name: str, lab: str, role: str) -> ContainerInfo:
    return ContainerInfo(id=name, name=name, image="i", state="running",
                         labels={"io.podlab.lab": lab, "io.podlab.role": role})


def test_destroy_goes_through_containerlab_then_removes_the_pods(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(containerlab.STATE_ENV, str(tmp_path))
    containerlab.write({"name": "lab1", "topology": {}})
    docker = {"node1": _row("node1", "lab1", "node"), "web": _row("web", "lab1", "pod-infra")}
    calls: list[str] = []

    def clab_destroy(lab: str, exe: str | None = None) -> None:
        calls.append(f"containerlab destroy {lab}")
        docker.pop("node1")  # containerlab removes the nodes it made
        containerlab.shutil.rmtree(containerlab.topo_file(lab).parent)

    def remove_many(rows: list[ContainerInfo]) -> list[str]:
        calls.append("docker rm " + ",".join(r.name for r in rows))
        return [docker.pop(r.name).name for r in rows]

    monkeypatch.setattr(containerlab, "destroy", clab_destroy)
    monkeypatch.setattr(runtime, "containers_of", lambda lab=None, **_: list(docker.values()))
    monkeypatch.setattr(runtime, "remove_many", remove_many)
    assert running.destroy("lab1") == ["node1", "web"]
    assert calls == ["containerlab destroy lab1", "docker rm web"]
    assert not containerlab.has_state("lab1")
    assert running.destroy("lab1") == []  # a second destroy is a no-op


def test_a_lab_podlab_made_never_calls_containerlab(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(containerlab.STATE_ENV, str(tmp_path))
    rows = [_row("node1", "lab2", "node")]
    monkeypatch.setattr(containerlab, "destroy", lambda *a, **k: pytest.fail("called"))
    monkeypatch.setattr(runtime, "containers_of", lambda lab=None, **_: rows)
    monkeypatch.setattr(runtime, "remove_many", lambda rs: [r.name for r in rs])
    assert running.destroy("lab2") == ["node1"]


def test_the_matrix_runs_every_combination_under_each_runtime(tmp_path: Path) -> None:
    combos = combinations([FLAT3], ["masquerade=true,false"], runtimes("podlab,containerlab"))
    assert [(c.sets[0][1], c.runtime) for c in combos] == [
        ("true", "podlab"), ("true", "containerlab"),
        ("false", "podlab"), ("false", "containerlab")]
    clab = combos[1]
    assert clab.variant == "masquerade=true,runtime=containerlab"
    assert clab.slug == "flat3--masquerade=true,runtime=containerlab"
    assert clab.to_dict()["variant"] == {"masquerade": "true", "runtime": "containerlab"}
    clab.name, clab.junit = "flat3-abc", tmp_path / "x.xml"
    argv = Runner(tmp_path, 1, 60).argv(clab)
    assert argv[argv.index("--runtime") + 1] == "containerlab"
    plain = Combo(FLAT3, [])
    plain.name, plain.junit = "flat3-abd", tmp_path / "y.xml"
    assert "--runtime" not in Runner(tmp_path, 1, 60).argv(plain)  # not an axis: as before
    with pytest.raises(InputError, match="each of podlab, containerlab"):
        runtimes("podlab,kind")


def test_without_containerlab_its_combinations_are_errors_that_say_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli import matrix
    from harness.lab import deploy as lab_deploy

    combos = combinations([FLAT3], [], runtimes("podlab,containerlab"))
    for c in combos:
        matrix.prepare(c)
    built: list[str] = []
    monkeypatch.setattr(runtime, "require_root", lambda: None)
    monkeypatch.setattr(runtime, "client", lambda: None)
    monkeypatch.setattr(lab_deploy, "ensure_images", lambda plan: built.append(plan.lab))

    def missing(exe: str | None = None) -> str:
        raise containerlab.ContainerlabMissing("--runtime containerlab needs containerlab")

    monkeypatch.setattr(containerlab, "require", missing)
    matrix.ensure_ready(combos)
    assert [(c.runtime, c.status) for c in combos] == [("podlab", "pending"),
                                                       ("containerlab", "error")]
    assert combos[1].reason == "--runtime containerlab needs containerlab"
    assert built == [combos[0].name]
