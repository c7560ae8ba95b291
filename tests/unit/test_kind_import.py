"""`podlab import kind CONFIG`: a kind Cluster config becomes a topology podlab validates,
with kind's nodes, subnets and families; what podlab cannot do alike is refused."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from harness.cli.app import app
from harness.model.kindimport import import_kind
from harness.model.topology import parse_topology

DUAL = {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": "dev",
        "networking": {"ipFamily": "dual"},
        "nodes": [{"role": "control-plane"}, {"role": "worker", "labels": {"tier": "web"}},
                  {"role": "worker"}]}


def test_one_k8s_node_per_entry_named_as_kind_names_them_on_one_switch() -> None:
    topo, notes, problems = import_kind(DUAL)
    assert problems == [] and notes == []
    nodes = topo["topology"]["nodes"]
    assert list(nodes) == ["kind", "dev-control-plane", "dev-worker", "dev-worker2"]
    assert nodes["dev-worker"] == {"kind": "k8s-node", "labels": {"tier": "web"}}
    assert len(topo["topology"]["links"]) == 3
    assert topo["cluster"]["pod-cidr"] == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert topo["cluster"]["service-cidr"] == ["10.96.0.0/16", "fd00:10:96::/112"]
    assert topo["cluster"]["cni"] == "ptp"  # kindnet
    parse_topology(yaml.safe_dump(topo))  # what it writes validates


def test_subnets_and_family_as_the_config_gives_them() -> None:
    config = {**DUAL, "networking": {"ipFamily": "ipv6", "podSubnet": "fd00:1::/56",
                                     "serviceSubnet": "fd00:2::/112"}, "nodes": None}
    topo, _, problems = import_kind(config)
    assert not problems
    assert topo["cluster"]["pod-cidr"] == "fd00:1::/56"
    assert topo["cluster"]["service-cidr"] == "fd00:2::/112"
    assert list(topo["topology"]["nodes"]) == ["kind", "dev-control-plane"]  # kind's default
    parse_topology(yaml.safe_dump(topo))


def test_other_kube_proxy_mode_and_disabled_cni_without_a_choice_are_refused() -> None:
    config = {**DUAL, "networking": {"kubeProxyMode": "ipvs", "disableDefaultCNI": True}}
    _, _, problems = import_kind(config)
    assert [p.path for p in problems] == ["networking.kubeProxyMode",
                                          "networking.disableDefaultCNI"]
    assert "iptables mode" in problems[0].message and "--cni" in problems[1].message
    config["networking"] = {"disableDefaultCNI": True}
    topo, _, problems = import_kind(config, cni="bridge")
    assert not problems and topo["cluster"]["cni"] == "bridge"


def test_cli_writes_a_topology_podlab_validates(tmp_path: Path) -> None:
    config = tmp_path / "kind.yaml"
    config.write_text(yaml.safe_dump({**DUAL, "nodes": [
        {"role": "control-plane", "extraPortMappings": [{"containerPort": 80}]}]}))
    out = tmp_path / "kind.clab.yml"
    res = CliRunner().invoke(app, ["import", "kind", str(config), "--output", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "# left out: nodes[0].extraPortMappings" in text
    assert CliRunner().invoke(app, ["validate", "-t", str(out)]).exit_code == 0
    refused = CliRunner().invoke(app, ["validate", "-t", str(config)])
    assert refused.exit_code == 2 and "podlab import kind" in refused.output
