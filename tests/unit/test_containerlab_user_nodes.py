"""`--runtime containerlab` with the user's nodes: the topology containerlab is given
starts each of them as podlab's own runtime does (binds absolute, env, entrypoint/cmd,
user, sysctls, capabilities, resources, another node's namespace, endpoint MACs, the
management network podlab made), its exec lines stay podlab's, and what containerlab
cannot make is refused before anything starts, saying why. Pure: nothing runs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from test_export import _validate, clab_validator  # noqa: F401 (a fixture)

from harness.datapath import describe
from harness.errors import InputError
from harness.lab import deploy, user
from harness.model.topology import load_topology, parse_topology
from harness.plan import Plan, make_plan

FRR01 = Path(__file__).parent / "data/containerlab/lab-examples/frr01/frr01.clab.yml"

USER = """\
name: u
mgmt: {network: labnet, ipv4-subnet: 172.20.30.0/24}
topology:
  nodes:
    a:
      kind: linux
      image: alpine:3
      cmd: ash -c "sleep 9999; echo 'done it'"
      entrypoint: /bin/sh -c
      env: {A: "1"}
      user: nobody
      binds: [conf/a.txt:/etc/a.txt:ro]
      sysctls: {net.ipv4.ip_forward: 0}
      cap-add: [SYS_PTRACE]
      memory: 1G
      cpu: 1.5
      exec: ["ip link show e1"]
      mgmt-ipv4: 172.20.30.9
    b: {kind: linux, image: alpine:3, network-mode: "container:a"}
    c:
      kind: linux
      image: alpine:3
      network-mode: none
      startup-delay: 3
      stages: {create: {wait-for: [{node: a}]}}
  links:
    - type: veth
      endpoints:
        - {node: a, interface: e1, mac: "02:00:00:00:00:01"}
        - {node: c, interface: e1}
"""


def _topology(plan: Plan) -> dict[str, Any]:
    return deploy.clab_topology(plan, describe(plan), "d1")


def _user_plan(tmp_path: Path) -> Plan:
    path = tmp_path / "u.clab.yml"
    path.write_text(USER)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.txt").write_text("a\n")
    return make_plan(load_topology(path))


def test_a_user_node_goes_to_containerlab_with_its_own_settings(tmp_path: Path) -> None:
    plan = _user_plan(tmp_path)
    a = _topology(plan)["topology"]["nodes"]["a"]
    spec = user.container_spec(plan, plan.node("a"), describe(plan).node("a"), {})
    # containerlab splits them as a shell would: the same argv as podlab's own start
    assert shlex.split(a["entrypoint"]) == ["/bin/sh", "-c"]
    assert shlex.split(a["cmd"]) == ["ash", "-c", "sleep 9999; echo 'done it'"]
    assert a["env"]["A"] == "1" and a["env"] == dict(spec.env)  # env-files, CLAB_INTFS too
    assert a["user"] == "nobody"
    assert a["binds"] == [f"{tmp_path.resolve()}/conf/a.txt:/etc/a.txt:ro"]  # absolute
    assert a["sysctls"]["net.ipv4.ip_forward"] == "0"
    assert a["sysctls"] == dict(spec.sysctls)
    assert "SYS_PTRACE" in a["cap-add"] and a["cap-add"] == list(spec.cap_add)
    assert a["memory"] == str(10**9) and a["cpu"] == 1.5
    assert a["privileged"] is False and a["image-pull-policy"] == "never"
    assert a["hostname"] == "a"


def test_exec_stays_podlabs_as_containerlab_carries_on_after_a_failing_line(
        tmp_path: Path) -> None:
    plan = _user_plan(tmp_path)
    nodes = _topology(plan)["topology"]["nodes"]
    assert not any("exec" in n for n in nodes.values())
    run = plan.node("a").run
    assert run is not None and run.exec == ("ip link show e1",)  # the pipeline runs it


def test_the_management_network_is_podlabs_internal_one_with_the_nodes_addresses(
        tmp_path: Path) -> None:
    topo = _topology(_user_plan(tmp_path))
    # the network podlab created internal: containerlab reuses one that exists
    assert topo["mgmt"] == {"network": "labnet", "ipv4-subnet": "172.20.30.0/24",
                            "skip-when-unused": True, "external-access": False}
    a = topo["topology"]["nodes"]["a"]
    assert "network-mode" not in a and a["mgmt-ipv4"] == "172.20.30.9"
    assert topo["topology"]["nodes"]["c"]["network-mode"] == "none"


def test_another_nodes_namespace_is_named_by_its_container_and_waited_for(
        tmp_path: Path) -> None:
    b = _topology(_user_plan(tmp_path))["topology"]["nodes"]["b"]
    # by the container's name: containerlab 0.79 makes `podla` + `a` of node b's `a`
    assert b["network-mode"] == "container:podlab-u-a"
    assert "hostname" not in b and "sysctls" not in b  # Docker refuses both there
    assert b["stages"] == {"create": {"wait-for": [{"node": "a", "stage": "create"}]}}


def test_startup_delay_and_wait_for_are_containerlabs_own(tmp_path: Path) -> None:
    c = _topology(_user_plan(tmp_path))["topology"]["nodes"]["c"]
    assert c["startup-delay"] == 3
    assert c["stages"] == {"create": {"wait-for": [{"node": "a", "stage": "create"}]}}


def test_an_endpoints_mac_goes_in_the_extended_link_format(tmp_path: Path) -> None:
    (link,) = _topology(_user_plan(tmp_path))["topology"]["links"]
    assert link == {"type": "veth", "mtu": 1500, "endpoints": [
        {"node": "a", "interface": "e1", "mac": "02:00:00:00:00:01"},
        {"node": "c", "interface": "e1"}]}


def test_frr01_routers_get_their_binds_and_the_pcs_no_exec() -> None:
    nodes = _topology(make_plan(load_topology(FRR01)))["topology"]["nodes"]
    here = FRR01.parent.resolve()
    assert nodes["router1"]["binds"] == [f"{here}/router1/daemons:/etc/frr/daemons",
                                         f"{here}/router1/frr.conf:/etc/frr/frr.conf"]
    assert all(n["network-mode"] == "none" for n in nodes.values())
    assert not any("exec" in n for n in nodes.values())


def test_a_bridge_in_another_nodes_namespace_is_refused_saying_why() -> None:
    plan = make_plan(parse_topology("""\
name: br
topology:
  nodes:
    a: {kind: linux, image: alpine:3}
    sw: {kind: bridge, network-mode: "container:a"}
    c: {kind: linux, image: alpine:3}
  links:
    - endpoints: ["sw:p1", "c:e1"]
"""))
    if not any(n.netns_of for n in plan.nodes):
        pytest.fail("the plan has no bridge inside a node's namespace: the test proves nothing")
    with pytest.raises(InputError, match="containerlab cannot link"):
        deploy.clab_topology(plan, describe(plan), "d1")


def test_containerlab_schema_accepts_the_user_nodes_topology(
        tmp_path: Path, clab_validator: Any) -> None:  # noqa: F811
    topo = _topology(_user_plan(tmp_path))
    # mgmt-ipv4's schema pattern is Go's (\\p{L}), which Python's re cannot check
    assert topo["topology"]["nodes"]["a"].pop("mgmt-ipv4") == "172.20.30.9"
    _validate(clab_validator, topo)
    _validate(clab_validator, _topology(make_plan(load_topology(FRR01))))


def test_deploy_refuses_it_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.host import containerlab, runtime

    plan = make_plan(parse_topology("""\
name: br2
topology:
  nodes:
    a: {kind: linux, image: alpine:3}
    sw: {kind: bridge, network-mode: "container:a"}
    c: {kind: linux, image: alpine:3}
  links:
    - endpoints: ["sw:p1", "c:e1"]
"""))
    called: list[str] = []
    monkeypatch.setattr(runtime, "require_root", lambda: None)
    monkeypatch.setattr(containerlab, "require", lambda *a: called.append("require"))
    monkeypatch.setattr(runtime, "containers_of", lambda *a, **k: called.append("docker"))
    with pytest.raises(InputError, match="containerlab cannot link"):
        deploy.deploy(plan, runtime_name="containerlab")
    assert called == []  # neither containerlab nor Docker was asked anything
