"""containerlab's own topology files (tests/unit/data/containerlab, copied from
srl-labs/containerlab at 39ff2b7) validate in podlab with containerlab's meaning, or are
refused only for a reason podlab gives on purpose; and the merge, link forms, one-pass
validation and hints that make that so."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import TopologyError
from harness.model.topology import Topology, load_topology, parse_topology

DATA = Path(__file__).parent / "data" / "containerlab"
FILES = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.clab.y*ml"))

# the reasons of the brief's point 1, as podlab words them
REASONS = (
    "would join the lab to the host's own network",  # host:, mgmt-net:, macvlan:, ports...
    "needs a VXLAN device toward another machine",  # vxlan, vxlan-stitch
    "podlab did not start and does not own",  # ext-container, an outside namespace
    "kind `host` stands for the host itself",
    "runs a kind cluster podlab does not own",  # k8s-kind
    "vendor network OS image",
    "NATs to the outside",  # the management network `bridge`
    "an exec on the host runs a command on this machine itself",
)
VALID = {
    "lab-examples/frr01/frr01.clab.yml", "tests/01-smoke/01-linux-single-node.clab.yml",
    "tests/01-smoke/07-linux-single-node.clab.yml", "tests/01-smoke/09-external-ca.clab.yml",
    "tests/01-smoke/10-internal-ca.clab.yml", "tests/01-smoke/12-tools-veth.clab.yaml",
    "tests/01-smoke/24-bridge-in-ns.clab.yaml", "tests/01-smoke/30-bridge-reconcile.clab.yml",
    "tests/01-smoke/netmodes.clab.yml", "tests/01-smoke/node-filter.clab.yml",
    "tests/01-smoke/single-topo-folder/lab1.clab.yml",
    "tests/01-smoke/stages-race.clab.yml",
    "tests/06-ext-container/02-shared-namespace-ext.clab.yaml",
}


def test_every_linux_and_bridge_file_of_containerlab_is_here() -> None:
    assert len(FILES) == 26
    assert set(FILES) >= VALID


@pytest.mark.parametrize("name", FILES)
def test_file_validates_or_is_refused_only_for_a_reason_of_podlab(name: str) -> None:
    try:
        load_topology(DATA / name)
    except TopologyError as exc:
        assert name not in VALID, str(exc)
        for problem in exc.problems:
            assert any(r in problem.message for r in REASONS), problem.render(name)
            assert problem.line is not None, problem.render(name)
        return
    assert name in VALID


def parse(text: str) -> Topology:
    return parse_topology(text)


def problems_of(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text)
    return [f"{p.line}: {p.path}: {p.message}" for p in info.value.problems]


GROUPS = """\
name: merge
topology:
  defaults:
    kind: linux
    image: alpine:3
    env: {A: defaults, B: defaults}
    exec: [echo defaults]
    binds: [/etc/hostname:/x, /etc/hosts:/shared]
    cap-add: [NET_ADMIN]
  kinds:
    linux:
      image: alpine:kind
      env: {B: kind, C: kind}
      exec: [echo kind, echo defaults]
  groups:
    g:
      cmd: sleep 1
      env: {C: group}
      exec: [echo group]
      binds: [/etc/os-release:/shared]
  nodes:
    n1:
      group: g
      env: {D: node}
      exec: [echo node]
    n2:
      image: alpine:node
"""


def test_node_inherits_defaults_kind_group_in_containerlabs_order() -> None:
    topo = parse(GROUPS)
    n1, n2 = topo.spec.topology.nodes["n1"], topo.spec.topology.nodes["n2"]
    assert n1.kind == "linux" and n1.image == "alpine:kind" and n1.cmd == "sleep 1"
    assert n2.image == "alpine:node" and n2.cmd is None
    assert n1.env == {"A": "defaults", "B": "kind", "C": "group", "D": "node"}
    # concatenated defaults + kind + group + node, exact duplicates dropped
    assert n1.exec == ["echo defaults", "echo kind", "echo group", "echo node"]
    assert n2.exec == ["echo defaults", "echo kind"]
    # binds: per container path, the most specific level wins
    assert sorted(n1.binds) == ["/etc/hostname:/x", "/etc/os-release:/shared"]
    assert n1.cap_add == ["NET_ADMIN"]
    assert topo.user_owned("n1") and topo.user_owned("n2")


def test_inherited_value_is_located_at_the_line_that_wrote_it() -> None:
    text = GROUPS.replace("    image: alpine:3\n", "    image: 'not an image!'\n").replace(
        "      image: alpine:kind\n", "").replace("      image: alpine:node\n", "")
    found = problems_of(text)
    assert found == ["5: topology.nodes.n1.image: 'not an image!' is not a Docker image "
                     "reference like 'podlab/app' or 'registry:5000/team/app:1.2'",
                     "5: topology.nodes.n2.image: 'not an image!' is not a Docker image "
                     "reference like 'podlab/app' or 'registry:5000/team/app:1.2'"]


EXTENDED = """\
name: ext
topology:
  nodes:
    a: {kind: linux, image: alpine}
    b: {kind: linux, image: alpine}
  links:
    - type: veth
      mtu: 1500
      vars: {x: 1}
      endpoints:
        - {node: a, interface: e1, mac: "02:00:00:00:00:01", ipv4: 192.168.0.1/24}
        - {node: b, interface: e1, mac: "02:00:00:00:00:02", ipv4: 192.168.0.2/24}
    - endpoints: ["a:e2", "b:e2"]
"""


def test_extended_link_becomes_the_brief_form_with_macs_and_addresses() -> None:
    topo = parse(EXTENDED)
    first, second = topo.spec.topology.links
    assert first.endpoints == ("a:e1", "b:e1") and first.mtu == 1500
    assert first.mac == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert first.ipv4 == ("192.168.0.1/24", "192.168.0.2/24")
    assert second.endpoints == ("a:e2", "b:e2")
    assert topo.warnings and "topology.links[0].vars" in topo.warnings[0]


def test_ignored_keys_are_listed_in_one_warning_never_silently() -> None:
    topo = parse("name: w\ntopology:\n  nodes:\n    n:\n      kind: linux\n      image: alpine\n"
                 "      healthcheck: {interval: 1}\n      restart-policy: always\n")
    assert len(topo.warnings) == 1
    assert "topology.nodes.n.healthcheck" in topo.warnings[0]
    assert "topology.nodes.n.restart-policy" in topo.warnings[0]


def test_refused_link_keeps_the_files_link_indices_in_later_problems() -> None:
    found = problems_of("name: r\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine}\n"
                        "    b: {kind: linux, image: alpine}\n  links:\n"
                        '    - endpoints: ["a:e1", "host:h1"]\n'
                        '    - endpoints: ["a:e2", "nosuch:e1"]\n')
    assert found[0].startswith("7: topology.links[0].endpoints[1]: a `host` link")
    assert found[1].startswith("8: topology.links[1].endpoints[1]: unknown node 'nosuch'")


def test_every_problem_is_reported_in_one_pass() -> None:
    """A wrong key, a wrong type, a refused key and a wrong meaning at once."""
    found = problems_of("""\
name: one
topology:
  nodes:
    a: {kind: linux, image: alpine, ports: ["80:80"], colour: red}
    b: {kind: linux, image: alpine, startup-delay: soon}
    c: {kind: router}
    d: {kind: router}
  links:
    - endpoints: ["a:e1", "nosuch:e1"]
""")
    text = "\n".join(found)
    assert "topology.nodes.a.ports: published ports would join" in text
    assert "topology.nodes.a.colour: unknown key 'colour'" in text
    assert "topology.nodes.b.startup-delay: must be an integer" in text
    assert "topology.links[0].endpoints[1]: unknown node 'nosuch'" in text
    assert len(found) == 4, text


@pytest.mark.parametrize(("where", "key", "hint"), [
    ("node", "bind", "binds"), ("node", "exe", "exec"), ("node", "vni", None),
    ("link", "mtuu", "mtu"), ("cluster", "pod_cidr", "pod-cidr"), ("cluster", "colour", None),
])
def test_hint_names_only_a_key_valid_at_that_path_and_never_the_key_itself(
        where: str, key: str, hint: str | None) -> None:
    body = {"node": f"    n: {{kind: linux, image: alpine, {key}: x}}\n",
            "link": "    n: {kind: linux, image: alpine}\n    m: {kind: linux, image: alpine}\n"
                    f'  links:\n    - {{endpoints: ["n:e1", "m:e1"], {key}: 1500}}\n',
            "cluster": "    n: {kind: linux}\n"}[where]
    text = f"name: h\ntopology:\n  nodes:\n{body}"
    if where == "cluster":
        text = f"name: h\ncluster: {{{key}: 10.0.0.0/16}}\ntopology:\n  nodes:\n{body}"
    found = problems_of(text)
    mine = [f for f in found if f"unknown key {key!r}" in f]
    assert len(mine) == 1, found
    if hint is None:
        assert "did you mean" not in mine[0]
    else:
        assert mine[0].endswith(f"did you mean {hint!r}?")


def test_kind_cluster_config_says_what_it_is_and_points_to_the_import() -> None:
    found = problems_of("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
                        "- role: control-plane\n")
    assert len(found) == 1
    assert "is a kind Cluster config" in found[0] and "podlab import kind" in found[0]


def test_user_node_is_exempt_from_the_path_rules_a_podlab_node_keeps() -> None:
    text = ("name: p\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n"
            "    r: {kind: linux%s}\n  links:\n"
            '    - endpoints: ["a:e1", "r:e1"]\n    - endpoints: ["r:e2", "b:e1"]\n')
    # three hosts in a row: the middle one does not forward, unless it is the user's
    assert any("has no path" in f for f in problems_of(text % ""))
    topo = parse(text % ", image: quay.io/frrouting/frr:10.5.1")
    assert topo.user_owned("r") and not topo.user_owned("a")


def test_bridge_is_podlabs_switch_and_may_live_in_a_nodes_namespace() -> None:
    topo = load_topology(DATA / "tests/01-smoke/24-bridge-in-ns.clab.yaml")
    bridge = topo.spec.topology.nodes["br01|bp1"]
    assert bridge.kind == "switch" and bridge.network_mode == "container:bp1"


def test_docker_names_are_node_names_and_a_bare_bind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    ok = tmp_path / "ok.clab.yml"
    ok.write_text("name: n\ntopology:\n  nodes:\n    PC_1.a: {kind: linux, image: alpine, "
                  "binds: ['f.txt:/f:ro']}\n")
    assert load_topology(ok).spec.topology.nodes["PC_1.a"].binds == ["f.txt:/f:ro"]
    bad = tmp_path / "bad.clab.yml"
    bad.write_text("name: n\ntopology:\n  nodes:\n    n: {kind: linux, image: alpine, "
                   "binds: ['f.txt', 'nosuch:/x']}\n")
    with pytest.raises(TopologyError) as info:
        load_topology(bad)
    text = str(info.value)
    assert "binds[0]: 'f.txt' is not SRC:DST" in text
    assert "binds[1]: no such file or directory: nosuch (relative to the topology file)" in text


def test_bridge_drops_an_inherited_image_and_exec_with_a_warning() -> None:
    topo = parse("name: b\ntopology:\n  defaults: {image: alpine:3, exec: [echo hi]}\n"
                 "  nodes:\n    br: {kind: bridge}\n    a: {kind: linux}\n  links:\n"
                 '    - endpoints: ["a:e1", "br:p1"]\n')
    br = topo.spec.topology.nodes["br"]
    assert br.kind == "switch" and br.image is None and br.exec == []
    assert "topology.nodes.br.image" in topo.warnings[0]
    assert topo.spec.topology.nodes["a"].image == "alpine:3"
