"""`podlab export -o containerlab`: containerlab's own JSON Schema accepts the export of
every example topology, and the export carries the plan (addresses, routes, pods)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from podlab_unit_helpers import CNI_EXAMPLES, missing
from podlab_unit_helpers import PODLAB_EXAMPLES as EXAMPLES
from typer.testing import CliRunner

from harness.cli import app
from harness.datapath import bgp, describe
from harness.datapath import fabric as fabric_dp
from harness.host import bird
from harness.model.addressing import IPV4, IPV6
from harness.model.topology import load_topology
from harness.plan import Plan, make_plan
from harness.plan.usernodes import USER_SYSCTLS
from harness.render.export import route_command, short_name, tagged, to_containerlab, to_yaml

# ../shared/containerlab next to the repository; never copied into the project
DEFAULT_SCHEMA = Path(__file__).resolve().parents[2].parent / "shared/containerlab/clab.schema.json"
PODLAB_IMAGES = {"podlab/node:latest", "podlab/pause:latest", "podlab/app:latest",
                 "podlab/bird:latest", "podlab/frr:latest"}


def _schema_path() -> Path:
    return Path(os.environ.get("PODLAB_CLAB_SCHEMA") or DEFAULT_SCHEMA)


@pytest.fixture(scope="module")
def clab_validator() -> Any:
    """A Draft-7 validator of containerlab's schema that never goes to the network: a
    remote $ref fails the test clearly instead of fetching (or hanging) offline."""
    try:  # a dev dependency (make venv installs it): missing, it fails under CI=true
        import jsonschema
    except ImportError:
        missing("jsonschema is not installed (pip install -e '.[dev]', as make venv does)")
    from referencing import Registry
    from referencing.exceptions import NoSuchResource

    path = _schema_path()
    if not path.is_file():
        reason = (f"containerlab schema not found at {path} "
                  "(set PODLAB_CLAB_SCHEMA to its path)")
        missing(reason)
    schema = json.loads(path.read_text())
    # The metaschema's structure, without its `format: regex` check: containerlab writes
    # ECMA/Go patterns (`\p{L}` in ipv4-addr, ports, ...) that Python's `re` rejects.
    # Those keys are ones the export never writes; _validate fails clearly if one is hit.
    meta = jsonschema.Draft7Validator(jsonschema.Draft7Validator.META_SCHEMA)
    assert not list(meta.iter_errors(schema)), f"{path} is not a draft-07 schema"

    def offline(uri: str) -> Any:
        raise NoSuchResource(ref=uri)

    return jsonschema.Draft7Validator(schema, registry=Registry(retrieve=offline))


def _plan(path: Path) -> Plan:
    return make_plan(load_topology(path))


def _validate(validator: Any, doc: dict[str, Any]) -> None:
    from referencing.exceptions import Unresolvable

    try:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:  # the schema points somewhere we will not fetch
        pytest.fail(f"containerlab schema has a remote $ref, unresolvable offline: {exc}")
    except re.error as exc:  # see clab_validator: a key with a non-Python pattern
        pytest.fail(f"export uses a key whose schema pattern Python cannot check: {exc}")
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


@pytest.mark.parametrize("topo", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_export_is_valid_containerlab(topo: Path, clab_validator: Any) -> None:
    plan = _plan(topo)
    _validate(clab_validator, to_containerlab(plan))
    # the YAML the CLI prints is the same document
    _validate(clab_validator, yaml.safe_load(to_yaml(plan)))


def test_validator_rejects_a_broken_export(clab_validator: Any) -> None:
    """The schema check has teeth: an unknown node key is refused."""
    doc = to_containerlab(_plan(EXAMPLES[0]))
    first = next(iter(doc["topology"]["nodes"].values()))
    first["no-such-key"] = 1
    assert list(clab_validator.iter_errors(doc))


@pytest.mark.parametrize("topo", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_export_nodes_and_links(topo: Path) -> None:
    plan = _plan(topo)
    doc = to_containerlab(plan)
    nodes = doc["topology"]["nodes"]
    assert doc["name"] == plan.lab
    n_containers = sum(len(p.containers) for p in plan.pods)
    assert len(nodes) == len(plan.nodes) + len(plan.pods) + n_containers
    assert all(n["kind"] == "linux" for n in nodes.values())
    assert {n["image"] for n in nodes.values()} <= PODLAB_IMAGES
    for node in plan.nodes:
        assert nodes[node.name]["image"] == tagged(node.image)
    for pod in plan.pods:
        infra = short_name(plan, pod.infra)
        assert nodes[infra]["image"] == "podlab/pause:latest"
        for c in pod.containers:
            assert nodes[short_name(plan, c.container)]["network-mode"] == f"container:{infra}"

    links = [tuple(lk["endpoints"]) for lk in doc["topology"]["links"]]
    veths = [p for p in plan.pods if not p.host_network]  # hostNetwork: the node's netns
    assert len(links) == len(plan.links) + len(veths)
    for lk in plan.links:
        assert (f"{lk.a[0]}:{lk.a[1]}", f"{lk.b[0]}:{lk.b[1]}") in links
    for pod in veths:
        assert (f"{pod.node}:{pod.node_iface}", f"{short_name(plan, pod.infra)}:eth0") in links
    for a, b in links:  # every endpoint names a node of the export
        assert a.split(":")[0] in nodes and b.split(":")[0] in nodes


@pytest.mark.parametrize("topo", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_export_exec_carries_the_plan(topo: Path) -> None:
    plan = _plan(topo)
    doc = to_containerlab(plan)
    nodes = doc["topology"]["nodes"]
    assert not any("ipv4" in lk or "ipv6" in lk for lk in doc["topology"]["links"])
    for node in plan.nodes:
        cmds = nodes[node.name]["exec"]
        if node.run is not None:  # the user's node: its own exec after its links are up
            assert cmds[len(cmds) - len(node.run.exec):] == list(node.run.exec)
            assert not any(c.startswith(("ip addr add", "ip route add")) for c in cmds
                           if c not in node.run.exec)
            continue
        for iface in node.interfaces:
            for address in iface.addresses:  # every family's by exec (linux nodes)
                assert f"ip addr add {address} dev {iface.name}" in cmds
            assert f"ip link set {iface.name} up" in cmds
        for route in describe(plan).node(node.name).routes:  # bgp: none on speakers
            assert route_command(route) in cmds
        if node.forwards:
            assert "sysctl -w net.ipv4.ip_forward=1" in cmds
        if node.kind == "switch":
            assert "ip link add br0 type bridge" in cmds
            for iface in node.interfaces:
                assert f"ip link set {iface.name} master br0" in cmds
        if node.kind == "k8s-node":
            assert "ip link add cbr0 type bridge" in cmds
            for gateway in node.gateways:
                assert f"ip addr add {gateway} dev cbr0" in cmds
            for pod in plan.pods:
                if pod.node == node.name and not pod.host_network:
                    assert f"ip link set {pod.node_iface} master cbr0" in cmds
        for family, tool in ((IPV4, "iptables"), (IPV6, "ip6tables")):
            _check_masquerade(tool, node.masquerade_exempt_of(family),
                              node.pod_cidr_of(family), cmds)
    for pod in plan.pods:
        if pod.host_network:
            assert "exec" not in nodes[short_name(plan, pod.infra)]
            continue
        cmds = nodes[short_name(plan, pod.infra)]["exec"]
        if (v4 := pod.cidr_of(IPV4)) is not None:
            assert f"ip addr add {v4} dev eth0" in cmds
            assert f"ip route add default via {pod.gateway_of(IPV4)}" in cmds
        if (v6 := pod.cidr_of(IPV6)) is not None:
            assert f"ip addr add {v6} dev eth0" in cmds
            assert f"ip -6 route add default via {pod.gateway_of(IPV6)}" in cmds


def _check_masquerade(tool: str, exempt: tuple[str, ...], pod_cidr: str | None,
                      cmds: list[str]) -> None:
    masq = [c for c in cmds if c.startswith(tool + " ") and "PODLAB-MASQ" in c]
    if not exempt:
        assert not masq
        return
    for dst in exempt:
        assert f"{tool} -t nat -A PODLAB-MASQ -d {dst} -j RETURN" in masq
    # RETURNs before the MASQUERADE, the POSTROUTING hook for the node's pod CIDR
    assert masq.index(f"{tool} -t nat -A PODLAB-MASQ -j MASQUERADE") == len(exempt) + 1
    assert f"{tool} -t nat -A POSTROUTING -s {pod_cidr} -j PODLAB-MASQ" in masq


def test_routes_follow_addresses() -> None:
    """A route's gateway must be reachable when it is added: addresses come first."""
    plan = _plan(EXAMPLES[0])
    for node in to_containerlab(plan)["topology"]["nodes"].values():
        cmds = node.get("exec", [])
        routes = [i for i, c in enumerate(cmds) if c.startswith("ip route")]
        addrs = [i for i, c in enumerate(cmds) if c.startswith("ip addr")]
        if routes and addrs:
            assert max(addrs) < min(routes)


def test_pod_container_command_and_env() -> None:
    plan = _plan(next(p for p in EXAMPLES if p.name == "flat3.clab.yml"))
    web_app = to_containerlab(plan)["topology"]["nodes"]["web-app"]
    assert web_app["entrypoint"] == "httpd -f -p 8080"
    assert "cmd" not in web_app


@pytest.mark.parametrize(("image", "expected"), [
    ("podlab/app", "podlab/app:latest"), ("podlab/app:v1", "podlab/app:v1"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("app@sha256:" + "a" * 64, "app@sha256:" + "a" * 64)])
def test_tagged(image: str, expected: str) -> None:
    assert tagged(image) == expected


def test_export_is_deterministic() -> None:
    for topo in EXAMPLES:
        assert to_yaml(_plan(topo)) == to_yaml(_plan(topo))


def test_cli_export(tmp_path: Path) -> None:
    runner = CliRunner()
    topo = EXAMPLES[0]
    res = runner.invoke(app, ["export", "-t", str(topo), "-o", "containerlab"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.stdout) == to_containerlab(_plan(topo))
    assert "endpoints: [" in res.stdout  # the brief flow form
    out = tmp_path / "sub" / "lab.clab.yml"
    res = runner.invoke(app, ["export", "-t", str(topo), "-o", "containerlab",
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(out.read_text()) == to_containerlab(_plan(topo))


@pytest.mark.parametrize("topo", CNI_EXAMPLES, ids=[p.name for p in CNI_EXAMPLES])
def test_cni_labs_are_not_exported(topo: Path) -> None:
    res = CliRunner().invoke(app, ["export", "-t", str(topo), "-o", "containerlab"])
    assert res.exit_code == 2
    assert "wired by CNI plugins" in res.output and "containerlab does not call" in res.output


def test_cli_export_bad_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["export", "-t", str(tmp_path / "nope.yml"),
                                   "-o", "containerlab"])
    assert res.exit_code == 2


def test_ipv6_is_set_by_exec_and_every_link_mtu_is_pinned(clab_validator: Any) -> None:
    from podlab_unit_helpers import DUAL, V6ONLY

    from harness.model.topology import parse_topology

    for text in (DUAL, V6ONLY):
        plan = make_plan(parse_topology(text))
        doc = to_containerlab(plan)
        _validate(clab_validator, doc)
        _validate(clab_validator, yaml.safe_load(to_yaml(plan)))
        links = doc["topology"]["links"]
        # containerlab applies a link's ipv6 only for some vendor kinds, never for linux
        assert not any("ipv6" in lk for lk in links)
        assert all(lk["mtu"] == 1500 for lk in links)  # containerlab's own default: 9500
        assert "ip addr add fd00:10:244::2/64 dev eth0" in doc["topology"]["nodes"]["web"][
            "exec"]
        node1 = doc["topology"]["nodes"]["node1"]
        assert node1["sysctls"]["net.ipv6.conf.all.forwarding"] == "1"
        assert node1["sysctls"]["net.ipv6.conf.all.disable_ipv6"] == "0"
        assert node1["sysctls"]["net.ipv6.conf.default.accept_dad"] == "0"
        assert "ip addr add fd00:10:244::1/64 dev cbr0" in node1["exec"]
        assert "ip addr add fd00:172:30::1/64 dev eth1" in node1["exec"]
        assert doc["topology"]["nodes"]["web"]["sysctls"]["net.ipv6.conf.all.disable_ipv6"] \
            == "0"
        assert doc["topology"]["nodes"]["ext"]["sysctls"]["net.ipv6.conf.all.forwarding"] == "0"
    v6only = to_containerlab(make_plan(parse_topology(V6ONLY)))
    assert not any(c.startswith("iptables ") for n in v6only["topology"]["nodes"].values()
                   for c in n.get("exec", []))


V4_EXAMPLES = [p for p in EXAMPLES if "ipv6" not in p.read_text() and "fd00" not in p.read_text()]


@pytest.mark.parametrize("topo", V4_EXAMPLES, ids=[p.name for p in V4_EXAMPLES])
def test_ipv4_only_exports_have_no_ipv6(topo: Path) -> None:
    plan = _plan(topo)
    assert plan.families == ("ipv4",)
    text = to_yaml(plan)
    # containerlab turns IPv6 on in every node of the user's (harness.plan.usernodes)
    forced = [f"{k}: '{v}'" for k, v in USER_SYSCTLS if k.startswith("net.ipv6.")]
    forced += [f"sysctl -w {k}={v}" for k, v in USER_SYSCTLS if k.startswith("net.ipv6.")]
    if any(n.run is not None for n in plan.nodes):
        for line in forced:
            text = text.replace(line, "")
    assert "ipv6" not in text and "ip6tables" not in text


# --------------------------------------------------------------------------- agreement


class _Namespace:
    """What one namespace ends up with, from deploy's calls or from export's commands."""

    def __init__(self) -> None:
        self.sysctls: dict[str, str] = {}
        self.caps: set[str] = set()
        self.bridges: set[str] = set()
        self.ports: set[tuple[str, str]] = set()
        self.addresses: set[tuple[str, str]] = set()
        self.routes: set[tuple[str, ...]] = set()
        self.masquerade: set[tuple[str, tuple[str, ...], str]] = set()
        self.rules: list[tuple[str, str, tuple[str, ...]]] = []  # kube-proxy's, portmap's
        self.hairpin: set[str] = set()
        self.files: set[tuple[str, str]] = set()  # a daemon's, written before it starts
        self.daemons: set[tuple[str, ...]] = set()

    def __eq__(self, other: object) -> bool:
        # rules: in order within each table (restore text and commands group tables apart)
        def key(ns: object) -> dict[str, Any]:
            return {**vars(ns), "rules": sorted(vars(ns)["rules"], key=lambda r: r[1])}
        return key(self) == key(other)

    def __repr__(self) -> str:
        return repr(vars(self))


def _deployed(plan: Plan, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[dict[str, _Namespace], set[frozenset[str]]]:
    """Run deploy's own pipeline with Docker and the kernel replaced by recorders."""
    from harness.host import firewall, hostlimits, runtime, shaping, wiring
    from harness.host.runtime import Started
    from harness.lab import deploy

    by_pid: dict[int, str] = {}
    spaces: dict[str, _Namespace] = {}
    veths: set[frozenset[str]] = set()
    short = {n.container: n.name for n in plan.nodes}
    short.update({p.infra: short_name(plan, p.infra) for p in plan.pods})

    def start(spec: runtime.ContainerSpec) -> Started:
        pid = 1000 + len(by_pid)
        if spec.network_mode == "none":  # a namespace of its own: a node or a pod's infra
            by_pid[pid] = name = short[spec.name]
            ns = spaces.setdefault(name, _Namespace())
            ns.sysctls, ns.caps = dict(spec.sysctls), set(spec.cap_add)
        else:  # a pod's container: its capabilities live in the infra's namespace
            infra = spec.network_mode.removeprefix("container:")
            spaces[f"{infra}/containers"] = ns = spaces.get(f"{infra}/containers",
                                                            _Namespace())
            ns.caps = set(spec.cap_add)
        return Started(spec.name, spec.name, pid)

    def configure(pid: int, cfg: wiring.NetConfig) -> None:
        ns = spaces[by_pid[pid]]
        ns.bridges |= set(cfg.bridges)
        ns.ports |= set(cfg.ports)
        ns.hairpin |= set(cfg.hairpin)
        ns.addresses |= set(cfg.addresses)
        ns.routes |= set(cfg.routes)

    def masquerade(pid: int, source: str, exempt: Any, chain: str, where: str = "",
                   **how: Any) -> None:
        spaces[by_pid[pid]].masquerade.add((source, tuple(exempt), chain))

    def restore(pid: int, full: str, refill: str, marker: Any, where: str = "",
                family: int = 4) -> None:
        table = ""
        for line in full.splitlines():  # a fresh namespace gets the full text
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                spaces[by_pid[pid]].rules.append(("-N", table, (line[1:].split()[0],)))
            elif line.startswith(("-A ", "-I ")):
                verb, *rest = shlex.split(line)
                spaces[by_pid[pid]].rules.append((verb, table, tuple(rest)))

    def create_veth(pid_a: int, a: str, pid_b: int, b: str, mtu: int | None = None) -> None:
        veths.add(frozenset({f"{by_pid[pid_a]}:{a}", f"{by_pid[pid_b]}:{b}"}))

    monkeypatch.setattr(runtime, "require_root", lambda: None)
    monkeypatch.setattr(runtime, "containers_of", lambda *a, **k: [])
    monkeypatch.setattr(runtime, "start", start)
    monkeypatch.setattr(deploy, "ensure_images", lambda plan, rep=None: None)
    monkeypatch.setattr(hostlimits, "ensure_neighbour_capacity", lambda plan: None)
    monkeypatch.setattr(wiring, "configure", configure)
    monkeypatch.setattr(wiring, "create_veth", create_veth)
    monkeypatch.setattr(shaping, "shape", lambda *a, **k: "netem")
    monkeypatch.setattr(firewall, "masquerade", masquerade)
    monkeypatch.setattr(firewall, "restore", restore)
    # portmap's route_localnet on the pod's route device: no route in this fake (the
    # export leaves it to kube-proxy's net.ipv4.conf.all.route_localnet=1, which the
    # kernel ORs with every device's)
    monkeypatch.setattr(wiring, "route_dev", lambda pid, ip: None)
    # routing: bgp's daemon, recorded instead of started; nothing to wait for then
    monkeypatch.setattr(bird, "write_file", lambda pid, path, text:
                        spaces[by_pid[pid]].files.add((path, text)))
    monkeypatch.setattr(bird, "alive", lambda pid, daemon="bird": False)
    monkeypatch.setattr(bird, "start", lambda pid, argv: spaces[by_pid[pid]].daemons.add(argv))
    monkeypatch.setattr(bgp.BgpDatapath, "after_deploy", lambda *a, **k: None)
    # routing: fabric's wait walks live tables: none here
    monkeypatch.setattr(fabric_dp.FabricDatapath, "after_deploy", lambda *a, **k: None)
    deploy.deploy(plan)
    # pod containers were recorded under their infra's container id (= its name here),
    # a hostNetwork pod's infra under its node's
    for pod in plan.pods:
        spaces[f"{short_name(plan, pod.infra)}/containers"] = spaces.pop(f"{pod.infra}/containers")
        node = plan.node(pod.node).container
        if pod.host_network and f"{node}/containers" in spaces:
            spaces[f"{short_name(plan, node)}/containers"] = spaces.pop(f"{node}/containers")
    return spaces, veths


def _exported(plan: Plan) -> tuple[dict[str, _Namespace], set[frozenset[str]]]:
    """The same, read back from the export's exec commands, sysctls and capabilities."""
    doc = to_containerlab(plan)["topology"]
    spaces: dict[str, _Namespace] = {}
    for name, node in doc["nodes"].items():
        mode = node["network-mode"]
        key = name if mode == "none" else f"{mode.removeprefix('container:')}/containers"
        ns = spaces.setdefault(key, _Namespace())
        ns.caps = set(node.get("cap-add", ()))
        ns.sysctls = dict(node.get("sysctls", {}))
        chains: dict[tuple[str, str], list[str]] = {}  # (iptables or ip6tables, chain)
        jumps: dict[tuple[str, str], str] = {}
        for cmd in node.get("exec", []):
            w = cmd.split()
            if w[:2] == ["ip", "-6"]:  # busybox: `ip -6 route add default via ...`
                w = ["ip", *w[2:]]
            if cmd.startswith("sysctl -w "):
                key_, _, value = w[2].partition("=")
                assert ns.sysctls[key_] == value, (name, cmd)  # set at creation too
            elif w[:3] == ["ip", "link", "add"]:
                ns.bridges.add(w[3])
            elif w[:3] == ["bridge", "link", "set"] and w[5:] == ["hairpin", "on"]:
                ns.hairpin.add(w[4])
            elif w[:3] == ["ip", "link", "set"] and w[4] == "master":
                ns.ports.add((w[3], w[5]))
            elif w[:3] == ["ip", "addr", "add"]:
                ns.addresses.add((w[5], w[3]))
            elif w[:3] == ["ip", "route", "add"]:
                ns.routes.add((w[3], w[5]) if w[4] == "via" else (w[3], "", w[5]))
            elif w[0] in ("iptables", "ip6tables") and "PODLAB-MASQ" not in w:
                _, _, table, verb, *rest = shlex.split(cmd)  # kube-proxy's, portmap's
                ns.rules.append((verb, table, tuple(rest)))
            elif w[0] in ("iptables", "ip6tables") and w[1:4] == ["-t", "nat", "-N"]:
                chains[(w[0], w[4])] = []
            elif w[1:4] == ["-t", "nat", "-A"] and w[4] == "POSTROUTING":
                jumps[(w[0], w[w.index("-j") + 1])] = w[w.index("-s") + 1] if "-s" in w \
                    else None
            elif w[1:4] == ["-t", "nat", "-A"] and w[5] == "-d":
                chains[(w[0], w[4])].append(w[6])
            elif w[:2] == ["sh", "-c"]:  # a daemon's file: sh -c 'printf %s "$1" > PATH' sh TEXT
                argv = shlex.split(cmd)
                ns.files.add((argv[2].rsplit("> ", 1)[1], argv[4]))
            elif w[0] == bird.ARGV[0]:
                ns.daemons.add(tuple(w))
        ns.masquerade = {(jumps[c], tuple(exempt), c[1]) for c, exempt in chains.items()}
    veths = {frozenset(lk["endpoints"]) for lk in doc["links"]}
    return spaces, veths


@pytest.mark.parametrize("topo", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_export_and_deploy_agree(topo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same sysctls, capabilities, bridges, ports, addresses, routes, NAT and veths in
    every namespace: deploy's pipeline (Docker and netlink recorded) against the export."""
    check_agreement(_plan(topo), monkeypatch)


@pytest.mark.parametrize("which", ["DUAL", "V6ONLY"])
def test_export_and_deploy_agree_in_both_families(which: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import podlab_unit_helpers

    from harness.model.topology import parse_topology

    plan = make_plan(parse_topology(getattr(podlab_unit_helpers, which)))
    check_agreement(plan, monkeypatch)
    exported, _ = _exported(plan)
    assert exported["node1"].sysctls["net.ipv6.conf.all.forwarding"] == "1"
    assert ("eth1", "fd00:172:30::1/64") in exported["node1"].addresses
    assert ("default", "fd00:10:244::1") in exported["web"].routes
    assert any(m[0] == "fd00:10:244::/64" for m in exported["node1"].masquerade)


def check_agreement(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    exported, exported_veths = _exported(plan)
    deployed, deployed_veths = _deployed(plan, monkeypatch)
    assert deployed_veths == exported_veths
    assert set(deployed) == set(exported)
    for pod in plan.pods:
        if pod.host_network:
            continue  # no namespace, no commands of its own
        # the export's infra runs its own `ip` commands: NET_ADMIN is its only extra
        infra = short_name(plan, pod.infra)
        assert exported[infra].caps - deployed[infra].caps == {"NET_ADMIN"}
        exported[infra].caps = deployed[infra].caps
        assert deployed[infra].sysctls["net.ipv4.ip_forward"] == "0"  # a pod never routes
    for name, ns in deployed.items():
        assert ns == exported[name], name
    for node in plan.nodes:
        # the user's node forwards unless its file says otherwise (harness.plan.usernodes)
        forwards = dict(node.run.sysctls)["net.ipv4.ip_forward"] == "1" if node.run \
            else node.forwards
        assert deployed[node.name].sysctls["net.ipv4.ip_forward"] == (
            "1" if forwards else "0")


@pytest.mark.parametrize("topo", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_podlab_validates_its_own_export(topo: Path, tmp_path: Path) -> None:
    from harness.model.topology import load_topology

    plan = _plan(topo)
    out = tmp_path / "exported.clab.yml"
    out.write_text(to_yaml(plan))
    again = load_topology(out)
    assert set(again.spec.topology.nodes) == set(to_containerlab(plan)["topology"]["nodes"])
    assert all(again.user_owned(n) for n in again.spec.topology.nodes)  # podlab only starts them


def test_export_names_the_images_to_build_first() -> None:
    plan = _plan(next(p for p in EXAMPLES if p.name == "flat3.clab.yml"))
    head = to_yaml(plan).splitlines()[1]
    assert head.startswith("# build these images first")
    assert "podlab/node:latest" in head and "podlab/pause:latest" in head
