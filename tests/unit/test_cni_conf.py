"""harness.datapath.cni_conf and gotemplate: the built-in chains, the user's conflist
(rendered per node, validated with the file and field named), containerd's templates."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from harness.datapath import cni_conf
from harness.errors import EnvironmentProblem, TopologyError
from harness.model import gotemplate

# containerd's documented conf_template, as users copy it
CONTAINERD_TEMPLATE = """{
  "name": "k8s-pod-network",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "ptp",
      "mtu": 1460,
      "ipam": {
        "type": "host-local",
        "subnet": "{{.PodCIDR}}",
        "ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": \
"{{$range}}"}]{{end}}],
        "routes": [{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]
      }
    },
    {{- /* hostPort support */}}
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"""

VERSION_ONLY = """#!{python}
import json, os, sys
json.load(sys.stdin)
assert os.environ["CNI_COMMAND"] == "VERSION"
print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": {versions}}}))
"""


def make_plugin(d: Path, name: str, versions: tuple[str, ...] = ("0.4.0", "1.0.0")) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(VERSION_ONLY.format(python=sys.executable, versions=json.dumps(versions)))
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    d = tmp_path / "cni-bin"
    for name in ("ptp", "host-local", "portmap", "bridge", "bandwidth"):
        make_plugin(d, name)
    make_plugin(d, "old", ("0.1.0", "0.2.0"))
    return d


# --- templates ---------------------------------------------------------------------------

DATA = cni_conf.template_data(["10.244.1.0/24", "fd00:10:244:1::/64"])


def test_template_data_is_containerds() -> None:
    assert DATA == {"PodCIDR": "10.244.1.0/24",
                    "PodCIDRRanges": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                    "Routes": ["0.0.0.0/0", "::/0"]}
    # containerd's getRoutes: at most one default route per family, IPv4 first
    data = cni_conf.template_data(["fd00:1::/64", "10.0.0.0/24", "10.0.1.0/24"])
    assert data["Routes"] == ["0.0.0.0/0", "::/0"]
    assert cni_conf.template_data(["fd00:1::/64"])["Routes"] == ["::/0"]


def test_containerd_template_renders_to_json() -> None:
    conf = json.loads(gotemplate.render(CONTAINERD_TEMPLATE, DATA))
    ipam = conf["plugins"][0]["ipam"]
    assert ipam["subnet"] == "10.244.1.0/24"
    assert ipam["ranges"] == [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert conf["plugins"][1]["type"] == "portmap"


@pytest.mark.parametrize(("text", "out"), [
    ("a {{- /* c */ -}} b", "ab"),
    ("{{range .Routes}}[{{.}}]{{end}}", "[0.0.0.0/0][::/0]"),
    ("{{range $r := .Routes}}{{$r}};{{end}}", "0.0.0.0/0;::/0;"),
    ("{{range .Empty}}x{{else}}none{{end}}", "none"),
    ("{{if .Empty}}y{{else}}n{{end}}{{if .PodCIDR}}Y{{end}}", "nY"),
    ("{{$.PodCIDR}} {{.Routes}}", "10.244.1.0/24 [0.0.0.0/0 ::/0]"),
    ("{{range $i, $r := .PodCIDRRanges}}{{$.PodCIDR}}{{end}}", "10.244.1.0/24" * 2),
    ("no actions at all", "no actions at all"),
])
def test_template_language(text: str, out: str) -> None:
    assert gotemplate.render(text, {**DATA, "Empty": []}) == out


@pytest.mark.parametrize(("text", "message", "line"), [
    ("{\n{{.PodCidr}}", "can't evaluate field PodCidr", 2),
    ("{{range .Routes}}", "{{range}} has no {{end}}", 1),
    ("x\n\n{{end}}", "unexpected {{end}}", 3),
    ("{{$nope}}", "undefined variable $nope", 1),
    ("{{printf \"%s\" .PodCIDR}}", "unsupported action", 1),
    ("{{.PodCIDR", "unclosed action", 1),
    ("{{range .PodCIDR}}{{end}}", "range can't iterate", 1),
    ("{{else}}", "unexpected {{else}}", 1),
])
def test_template_errors_name_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(gotemplate.TemplateError) as info:
        gotemplate.render(text, DATA)
    assert message in info.value.message and info.value.line == line


# --- built-ins ---------------------------------------------------------------------------

def test_builtin_bridge_is_kubenets() -> None:
    conf = cni_conf.builtin_conflist("bridge", ["10.244.0.0/24"], "/state/lab/node1/ipam")
    (plugin,) = conf["plugins"]
    assert conf["cniVersion"] == "1.0.0"
    assert plugin["type"] == "bridge" and plugin["bridge"] == "cbr0"
    assert plugin["isGateway"] is True and plugin["ipMasq"] is False
    assert plugin["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
                              "routes": [{"dst": "0.0.0.0/0"}],
                              "dataDir": "/state/lab/node1/ipam"}
    assert not cni_conf.sets_ip_masq(conf)


def test_builtin_ptp_is_kindnets() -> None:
    conf = cni_conf.builtin_conflist("ptp", ["10.244.2.0/24"], "/d")
    (plugin,) = conf["plugins"]
    assert plugin["type"] == "ptp" and plugin["ipMasq"] is False
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.244.2.0/24"}]]
    with pytest.raises(ValueError):
        cni_conf.builtin_conflist("flannel", ["10.244.2.0/24"], "/d")


def test_builtin_plugins_must_be_installed(plugins: Path, tmp_path: Path) -> None:
    conf = cni_conf.builtin_conflist("bridge", ["10.244.0.0/24"], "/d")
    cni_conf.require_plugins(conf, [str(plugins)])
    with pytest.raises(EnvironmentProblem, match=r"bridge, host-local not found.*make setup"):
        cni_conf.require_plugins(conf, [str(tmp_path / "empty")])


def test_state_dirs_are_per_lab_and_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cni_conf.STATE_ENV, raising=False)
    assert str(cni_conf.ipam_dir("lab", "node1")) == "/var/lib/podlab/cni/lab/node1/ipam"
    monkeypatch.setenv(cni_conf.STATE_ENV, "/tmp/x")
    assert str(cni_conf.state_dir("lab")) == "/tmp/x/lab"
    assert str(cni_conf.results_dir("lab", "n")) == "/tmp/x/lab/n/results"


def test_data_dir_is_set_on_every_host_local() -> None:
    conf = {"plugins": [{"type": "bridge", "ipam": {"type": "host-local", "dataDir": "/mine"}},
                        {"type": "ptp", "ipam": {"type": "static"}}, {"type": "portmap"}]}
    out = cni_conf.with_data_dir(conf, "/state")
    assert out["plugins"][0]["ipam"]["dataDir"] == "/state"
    assert "dataDir" not in out["plugins"][1]["ipam"]
    assert conf["plugins"][0]["ipam"]["dataDir"] == "/mine"  # a copy, the input unchanged


# --- the user's conflist -----------------------------------------------------------------

def write(tmp_path: Path, name: str, body: str | dict) -> Path:
    p = tmp_path / name
    p.write_text(body if isinstance(body, str) else json.dumps(body))
    return p


GOOD = {"cniVersion": "1.0.0", "name": "mine",
        "plugins": [{"type": "bridge", "bridge": "cni0", "ipMasq": True,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}},
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                    {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}


def test_user_conflist_relative_to_the_topology_file(tmp_path: Path, plugins: Path) -> None:
    write(tmp_path, "net.conflist", GOOD)
    topo = tmp_path / "lab.clab.yml"
    user = cni_conf.load_user("net.conflist", "cni-bin", topo, ["10.244.0.0/24"])
    assert user.file == str(tmp_path / "net.conflist")
    assert user.bin_dirs == (str(plugins), cni_conf.DISTRO_BIN_DIR)
    conf = user.render(["10.244.3.0/24"])
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert cni_conf.sets_ip_masq(conf)


def test_a_single_conf_becomes_a_list(tmp_path: Path, plugins: Path) -> None:
    single = {"cniVersion": "0.4.0", "name": "one", "type": "ptp",
              "ipam": {"type": "host-local", "subnet": "{{.PodCIDR}}"}}
    write(tmp_path, "10-one.conf", single)
    user = cni_conf.load_user("10-one.conf", str(plugins), tmp_path / "t.yml", ["10.0.0.0/24"])
    conf = user.render(["10.0.0.0/24"])
    assert conf == {"cniVersion": "0.4.0", "name": "one", "plugins": [
        {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}}]}


def test_bin_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cni_conf, "OPT_BIN_DIR", str(tmp_path / "opt"))
    assert cni_conf.default_bin_dir() == cni_conf.DISTRO_BIN_DIR
    assert cni_conf.search_dirs(None, None) == (cni_conf.DISTRO_BIN_DIR,)
    (tmp_path / "opt").mkdir()
    assert cni_conf.default_bin_dir() == str(tmp_path / "opt")
    assert cni_conf.search_dirs(None, None) == (str(tmp_path / "opt"), cni_conf.DISTRO_BIN_DIR)


def problems(tmp_path: Path, plugins: Path, body: str | dict) -> tuple[str | None, list[str]]:
    write(tmp_path, "net.conflist", body)
    with pytest.raises(TopologyError) as info:
        cni_conf.load_user("net.conflist", str(plugins), tmp_path / "t.yml", ["10.0.0.0/24"])
    return info.value.file, [p.render() for p in info.value.problems]


@pytest.mark.parametrize(("body", "expected"), [
    ("{not json", "<topology>:1: <root>: not valid JSON: Expecting property name"),
    ('{"a": {{.PodCIDR}}}', "delimiter (after rendering the template)"),
    ("{{.PodCidr}}", "<topology>:1: <template>: can't evaluate field PodCidr"),
    ("[]", "<root>: must be a JSON object"),
    ({**GOOD, "name": ""}, "name: missing"),
    ({**GOOD, "cniVersion": "1.2.0"}, 'cniVersion: "1.2.0": podlab calls plugins with spec'),
    ({k: v for k, v in GOOD.items() if k != "cniVersion"}, "cniVersion: missing"),
    ({**GOOD, "plugins": []}, "plugins: missing or empty"),
    ({**GOOD, "plugins": ["bridge"]}, "plugins[0]: must be an object"),
    ({**GOOD, "plugins": [{"ipMasq": True}]}, "plugins[0].type: missing"),
    ({**GOOD, "plugins": [GOOD["plugins"][0], {"type": "flannel"}]},
     "plugins[1].type: no executable 'flannel' in "),
    ({**GOOD, "plugins": [{"type": "bridge", "ipam": {"type": "whereabouts"}}]},
     "plugins[0].ipam.type: no executable 'whereabouts'"),
    ({**GOOD, "plugins": [{"type": "old"}]}, "plugins[0].type: old speaks CNI 0.1.0, 0.2.0, "
     "not cniVersion 1.0.0"),
])
def test_bad_conflists_name_file_and_field(tmp_path: Path, plugins: Path, body: str | dict,
                                           expected: str) -> None:
    file, found = problems(tmp_path, plugins, body)
    assert file == str(tmp_path / "net.conflist")
    assert len(found) == 1 and expected in found[0], found


def test_spec_1_1_0_and_cni_versions_are_accepted_as_libcni_does(
        tmp_path: Path, plugins: Path) -> None:
    for name in ("bridge", "host-local", "portmap", "bandwidth"):
        make_plugin(plugins, name, ("0.4.0", "1.0.0", "1.1.0"))
    for body in ({**GOOD, "cniVersion": "1.1.0"},
                 {**GOOD, "cniVersion": "0.4.0", "cniVersions": ["1.0.0", "1.1.0", "2.0.0"]}):
        write(tmp_path, "net.conflist", body)
        user = cni_conf.load_user("net.conflist", str(plugins), tmp_path / "t.yml",
                                  ["10.0.0.0/24"])
        assert user.render(["10.0.0.0/24"])["plugins"][0]["type"] == "bridge"
    # a plugin that does not speak the version the list settles on is named
    make_plugin(plugins, "bandwidth", ("0.4.0", "1.0.0"))
    _, found = problems(tmp_path, plugins, {**GOOD, "cniVersions": ["1.1.0"]})
    assert found == ["<topology>: plugins[2].type: bandwidth speaks CNI 0.4.0, 1.0.0, not "
                     "cniVersion 1.1.0"]


def test_every_problem_at_once(tmp_path: Path, plugins: Path) -> None:
    _, found = problems(tmp_path, plugins, {"plugins": [{"type": "nope"}, {}]})
    assert [f.split(": ")[1] for f in found] == [
        "name", "cniVersion", "plugins[0].type", "plugins[1].type"]


def test_paths_in_the_topology_are_named_there(tmp_path: Path, plugins: Path) -> None:
    topo = tmp_path / "t.yml"
    with pytest.raises(TopologyError) as info:
        cni_conf.load_user("missing.conflist", str(plugins), topo, ["10.0.0.0/24"])
    assert info.value.file == str(topo)
    assert info.value.problems[0].path == "cluster.cni.conflist"
    assert "No such file or directory" in info.value.problems[0].message
    write(tmp_path, "net.conflist", GOOD)
    with pytest.raises(TopologyError) as info:
        cni_conf.load_user("net.conflist", "no-such-dir", topo, ["10.0.0.0/24"])
    assert info.value.problems[0].path == "cluster.cni.bin-dir"


def test_version_is_asked_once_per_binary(tmp_path: Path, plugins: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real = cni_conf.cni.supported_versions
    monkeypatch.setattr(cni_conf, "_versions", {})
    monkeypatch.setattr(cni_conf.cni, "supported_versions",
                        lambda b: asked.append(b) or real(b))
    write(tmp_path, "net.conflist", GOOD)
    for _ in range(2):
        cni_conf.load_user("net.conflist", str(plugins), tmp_path / "t", ["10.0.0.0/24"])
    assert sorted(Path(a).name for a in asked) == ["bandwidth", "bridge", "host-local",
                                                   "portmap"]
