"""The user's nodes: planned without addresses or routes, started as containerlab starts
them, their exec run in order after their links are up, a failing line failing the
deploy (rolled back). Docker and netlink are recorded, not called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.datapath import describe
from harness.errors import DeployError
from harness.host import hostlimits, runtime, wiring
from harness.host.runtime import Started
from harness.lab import deploy, user
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan

FRR01 = Path(__file__).parent / "data/containerlab/lab-examples/frr01/frr01.clab.yml"


def test_frr01_plans_its_nodes_as_the_users_with_no_address_or_route() -> None:
    plan = make_plan(load_topology(FRR01))
    assert {n.name for n in plan.nodes if not n.configured} == {
        "router1", "router2", "router3", "PC1", "PC2", "PC3"}
    assert all(not n.routes and not n.own_addresses for n in plan.nodes)
    assert plan.externals == ()  # nothing can be expected of a node podlab does not address
    router = plan.node("router1").run
    assert router is not None and router.binds == (
        f"{FRR01.parent.resolve()}/router1/daemons:/etc/frr/daemons",
        f"{FRR01.parent.resolve()}/router1/frr.conf:/etc/frr/frr.conf")
    pc = plan.node("PC1").run
    assert pc is not None and pc.exec[1] == "ip addr add 192.168.11.2/24 dev eth1"
    assert plan.mgmt is None  # the file asks for no management network


def test_user_container_is_started_as_containerlab_would() -> None:
    plan = make_plan(parse_topology("""\
name: u
topology:
  nodes:
    a:
      kind: linux
      image: alpine:3
      cmd: ash -c "sleep 9999"
      entrypoint: /bin/sh -c
      env: {A: "1"}
      user: nobody
      sysctls: {net.ipv4.ip_forward: 0}
      cap-add: [SYS_PTRACE]
      memory: 1G
      cpu: 1.5
      labels: {team: blue}
    b: {kind: linux, image: alpine:3, network-mode: "container:a"}
"""))
    net = describe(plan)
    spec = user.container_spec(plan, plan.node("a"), net.node("a"), {})
    assert spec.command == ("/bin/sh", "-c") and spec.args == ("ash", "-c", "sleep 9999")
    assert spec.env["A"] == "1" and spec.env["CLAB_LABEL_TEAM"] == "blue"
    assert spec.user == "nobody" and spec.mem_limit == str(10**9)
    assert spec.nano_cpus == 1_500_000_000 and spec.network_mode == "none"
    assert spec.sysctls["net.ipv4.ip_forward"] == "0"  # the user's word over podlab's default
    assert spec.sysctls["net.ipv6.conf.all.disable_ipv6"] == "0"
    assert "SYS_PTRACE" in spec.cap_add and spec.mgmt is None
    shared = user.container_spec(plan, plan.node("b"), net.node("b"), {})
    assert shared.network_mode == "container:podlab-u-a" and not shared.sysctls
    assert shared.hostname is None


MGMT = """\
name: m
mgmt: {network: labnet, ipv4-subnet: 172.20.30.0/24}
topology:
  nodes:
    a: {kind: linux, image: alpine:3, mgmt-ipv4: 172.20.30.9}
    b: {kind: linux, image: alpine:3, mgmt-ipv4: 172.20.31.9}
"""


def test_management_address_outside_the_subnet_is_refused() -> None:
    with pytest.raises(Exception, match="outside the management subnet"):
        parse_topology(MGMT)


def test_management_network_only_when_the_file_asks_and_nodes_join_it() -> None:
    plan = make_plan(parse_topology(MGMT.replace("172.20.31.9", "172.20.30.10")))
    assert plan.mgmt is not None and plan.mgmt.network == "labnet"
    spec = user.container_spec(plan, plan.node("a"), describe(plan).node("a"), {})
    assert spec.mgmt == ("labnet", "172.20.30.9", None)


EXEC = """\
name: x
topology:
  nodes:
    a: {kind: linux, image: alpine:3, exec: ["ip link show e1", "false", "never run"]}
    b: {kind: linux, image: alpine:3, stages: {create: {wait-for: [{node: a}]}}}
  links:
    - endpoints: ["a:e1", "b:e1"]
"""


def _fake(monkeypatch: pytest.MonkeyPatch, plan: Plan, fail: str | None
          ) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    pids: dict[str, int] = {}

    def start(spec: runtime.ContainerSpec) -> Started:
        pids[spec.name] = 1000 + len(pids)
        events.append(("start", spec.name))
        return Started(spec.name, spec.name, pids[spec.name])

    def exec_(container: str, argv: list[str], **kw: Any) -> tuple[int, bytes]:
        events.append(("exec", (container, " ".join(argv), kw.get("user"))))
        return (1, b"no such thing") if " ".join(argv) == fail else (0, b"")

    monkeypatch.setattr(runtime, "require_root", lambda: None)
    monkeypatch.setattr(runtime, "containers_of", lambda *a, **k: [])
    monkeypatch.setattr(runtime, "start", start)
    monkeypatch.setattr(runtime, "exec", exec_)
    monkeypatch.setattr(runtime, "networks_of", lambda lab: [])
    monkeypatch.setattr(deploy, "ensure_images", lambda plan, rep=None: None)
    monkeypatch.setattr(deploy, "_rollback", lambda d: events.append(("rollback", d)) or 2)
    monkeypatch.setattr(hostlimits, "ensure_neighbour_capacity", lambda plan: None)
    monkeypatch.setattr(wiring, "configure", lambda pid, cfg: events.append(("up", cfg.up)))
    monkeypatch.setattr(wiring, "create_veth", lambda *a, **k: events.append(("veth", a)))
    return events


def test_exec_runs_in_order_after_the_links_and_a_failing_line_fails_the_deploy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plan = make_plan(parse_topology(EXEC))
    events = _fake(monkeypatch, plan, fail="false")
    with pytest.raises(DeployError) as info:
        deploy.deploy(plan)
    assert "exec on node a: 'false' exited 1: no such thing" in str(info.value)
    assert "rolled back" in str(info.value)
    kinds = [e[0] for e in events]
    # b waited for a; the veth came before any exec; the line after the failing one never ran
    assert kinds.index("start") < kinds.index("veth") < kinds.index("exec")
    assert [e[1] for e in events if e[0] == "start"] == ["podlab-x-a", "podlab-x-b"]
    assert [e[1][1] for e in events if e[0] == "exec"] == ["ip link show e1", "false"]
    assert all(e[1][2] == "0" for e in events if e[0] == "exec")  # as root
    assert kinds[-1] == "rollback"


def test_exec_that_succeeds_lets_the_deploy_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = make_plan(parse_topology(EXEC))
    events = _fake(monkeypatch, plan, fail=None)
    deploy.deploy(plan)
    assert [e[1][1] for e in events if e[0] == "exec"] == ["ip link show e1", "false",
                                                           "never run"]
    assert "rollback" not in [e[0] for e in events]


def test_image_map_replaces_what_the_file_names_and_refuses_a_from_it_does_not() -> None:
    from harness.plan.imagemap import parse_image_map, with_images

    plan = make_plan(load_topology(FRR01))
    mapping = parse_image_map(["quay.io/frrouting/frr:10.5.1=podlab/frr",
                               "wbitt/network-multitool:3.22.2=podlab/node"])
    mapped = with_images(plan, mapping)
    assert {n.name: n.image for n in mapped.nodes} == {
        "router1": "podlab/frr", "router2": "podlab/frr", "router3": "podlab/frr",
        "PC1": "podlab/node", "PC2": "podlab/node", "PC3": "podlab/node"}
    with pytest.raises(ValueError, match=r"uses no image 'quay\.io/frrouting/frr:9'"):
        with_images(plan, {"quay.io/frrouting/frr:9": "podlab/frr"})
    with pytest.raises(ValueError, match="write FROM=TO"):
        parse_image_map(["podlab/frr"])


def test_missing_image_names_itself_and_how_to_build_or_map_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "missing_images", lambda images: sorted(set(images)))
    monkeypatch.setattr(runtime, "_pull_failures", {"quay.io/frrouting/frr:10.5.1":
                                                    "dial tcp: lookup quay.io: no such host"})
    with pytest.raises(Exception) as info:
        runtime.require_images(["quay.io/frrouting/frr:10.5.1", "podlab/frr"])
    text = str(info.value)
    assert "podlab/frr (podlab's own: `podlab images build`)" in text
    assert "quay.io/frrouting/frr:10.5.1 (no registry gave it: dial tcp: lookup quay.io" in text
    assert "--image quay.io/frrouting/frr:10.5.1=podlab/node" in text


def test_static_management_address_without_a_subnet_takes_containerlabs_default() -> None:
    plan = make_plan(parse_topology("name: d\ntopology:\n  nodes:\n    a: {kind: linux, "
                                    "image: alpine:3, mgmt-ipv4: 172.20.20.99}\n"))
    assert plan.mgmt is not None and plan.mgmt.ipv4_subnet == "172.20.20.0/24"
    assert plan.mgmt.network == "podlab-d-mgmt" and plan.mgmt.ipv6_subnet is None
    with pytest.raises(Exception, match=r"outside the management subnet 172\.20\.20\.0/24"):
        parse_topology("name: d\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine:3, "
                       "mgmt-ipv4: 10.1.1.1}\n")


def test_management_network_is_internal_with_the_files_subnet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, Any] = {}

    class Api:
        def networks(self, **kw: Any) -> list[Any]:
            return []

        def create_network(self, name: str, **kw: Any) -> dict[str, str]:
            made.update(kw, name=name)
            return {"Id": "n1"}

    monkeypatch.setattr(runtime, "_api", lambda: Api())
    plan = make_plan(parse_topology(MGMT.replace("172.20.31.9", "172.20.30.10")))
    user.create_mgmt(plan, "d1")
    assert made["name"] == "labnet" and made["internal"] is True  # no way out
    assert made["labels"]["io.podlab.lab"] == "m"
    assert made["ipam"]["Config"][0]["Subnet"] == "172.20.30.0/24"


def test_binds_keep_their_mode_and_resolve_next_to_the_file() -> None:
    plan = make_plan(load_topology(FRR01))
    spec = user.container_spec(plan, plan.node("router1"), describe(plan).node("router1"), {})
    assert all(b.startswith(str(FRR01.parent.resolve())) for b in spec.binds)
    text = FRR01.read_text().replace("router1/daemons:/etc/frr/daemons",
                                     "router1/daemons:/etc/frr/daemons:ro")
    topo = parse_topology(text, FRR01)
    assert make_plan(topo).node("router1").run.binds[0].endswith(  # type: ignore[union-attr]
        "/router1/daemons:/etc/frr/daemons:ro")
