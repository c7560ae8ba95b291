"""harness.host.cni: a chain is called as libcni calls it. Fake plugins (small Python
scripts) record what they were given; no namespace is entered (host_pid=None)."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from harness.errors import CniPluginError, DeployError
from harness.host import cni

# A plugin that appends {argv0, env CNI_*, stdin} to $LOG and answers as its config says:
# "fail": {code, msg, details} -> error JSON and exit 1; "garbage": raw stdout; else a result
# that adds its "ip" (if any) to prevResult's ips.
FAKE = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"plugin": os.path.basename(sys.argv[0]), "env": env,
                          "conf": conf}}) + "\\n")
if env["CNI_COMMAND"] == "VERSION":
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}}))
    sys.exit(0)
if conf.get("sleep"):
    import time; time.sleep(conf["sleep"])
if "fail" in conf:
    print(json.dumps({{"cniVersion": conf["cniVersion"], **conf["fail"]}}))
    sys.stderr.write("stderr noise\\n")
    sys.exit(1)
if "stderr_only" in conf:
    sys.stderr.write("line one\\n" + conf["stderr_only"] + "\\n")
    sys.exit(2)
if "garbage" in conf:
    sys.stdout.write(conf["garbage"])
    sys.exit(0)
if env["CNI_COMMAND"] != "ADD":
    sys.exit(0)
prev = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "interfaces": [],
                                  "ips": []}}
if "ip" in conf:
    prev["interfaces"].append({{"name": env["CNI_IFNAME"], "sandbox": env["CNI_NETNS"]}})
    prev["ips"].append({{"address": conf["ip"], "gateway": "10.0.0.1",
                         "interface": len(prev["interfaces"]) - 1}})
print(json.dumps(prev))
"""


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("first", "second", "third"):
        p = d / name
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    (d / "not-executable").write_text("#!/bin/sh\n")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    return d


def calls(bin_dir: Path) -> list[dict]:
    log = bin_dir.parent / "log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def chain(bin_dir: Path, *plugins: dict, version: str = "1.0.0") -> cni.Chain:
    return cni.Chain.from_conflist({"cniVersion": version, "name": "net", "plugins": plugins},
                                   [str(bin_dir)])


SANDBOX = cni.Sandbox("c0ffee", "/proc/4242/ns/net", "eth0",
                      args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")),
                      capability_args={"portMappings": [{"hostPort": 80}], "bandwidth": {}})


def test_add_runs_in_order_and_chains_prev_result(bin_dir: Path) -> None:
    c = chain(bin_dir, {"type": "first", "ip": "10.0.0.2/24"}, {"type": "second"},
              {"type": "third"})
    result = cni.add(c, SANDBOX)
    seen = calls(bin_dir)
    assert [s["plugin"] for s in seen] == ["first", "second", "third"]
    assert "prevResult" not in seen[0]["conf"]
    assert seen[1]["conf"]["prevResult"]["ips"][0]["address"] == "10.0.0.2/24"
    assert seen[2]["conf"]["prevResult"] == json.loads(json.dumps(result))
    assert cni.result_addresses(result, "eth0", SANDBOX.netns) == [
        cni.IPConfig("10.0.0.2/24", "10.0.0.1")]


def test_environment_is_the_runtimes(bin_dir: Path) -> None:
    cni.add(chain(bin_dir, {"type": "first"}), SANDBOX)
    env = calls(bin_dir)[0]["env"]
    assert env == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee",
                   "CNI_NETNS": "/proc/4242/ns/net", "CNI_IFNAME": "eth0",
                   "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web", "CNI_PATH": str(bin_dir)}


def test_name_version_and_runtime_config_are_injected(bin_dir: Path) -> None:
    c = chain(bin_dir, {"type": "first", "name": "ignored", "cniVersion": "0.1.0",
                        "capabilities": {"portMappings": True, "bandwidth": False,
                                         "ipRanges": True}},
              {"type": "second"}, version="0.4.0")
    cni.add(c, SANDBOX)
    first, second = (s["conf"] for s in calls(bin_dir))
    assert first["name"] == "net" and first["cniVersion"] == "0.4.0"
    # only declared and enabled capabilities the runtime has a value for
    assert first["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert "runtimeConfig" not in second


def test_del_runs_in_reverse_with_the_cached_result(bin_dir: Path) -> None:
    c = chain(bin_dir, {"type": "first", "ip": "10.0.0.2/24"}, {"type": "second"},
              {"type": "third"})
    result = cni.add(c, SANDBOX)
    (bin_dir.parent / "log").unlink()
    cni.delete(c, SANDBOX, result)
    seen = calls(bin_dir)
    assert [s["plugin"] for s in seen] == ["third", "second", "first"]
    assert all(s["env"]["CNI_COMMAND"] == "DEL" for s in seen)
    assert all(s["conf"]["prevResult"] == result for s in seen)


def test_del_before_0_4_0_has_no_prev_result(bin_dir: Path) -> None:
    c = chain(bin_dir, {"type": "first"}, version="0.3.1")
    cni.delete(c, SANDBOX, {"ips": []})
    assert "prevResult" not in calls(bin_dir)[0]["conf"]


def test_check_is_in_order(bin_dir: Path) -> None:
    cni.check(chain(bin_dir, {"type": "first"}, {"type": "second"}), SANDBOX, {"ips": []})
    assert [(s["plugin"], s["env"]["CNI_COMMAND"]) for s in calls(bin_dir)] == [
        ("first", "CHECK"), ("second", "CHECK")]


def test_check_before_0_4_0_is_not_supported_as_libcni_says(bin_dir: Path) -> None:
    # libcni's CheckNetworkList: ErrorCheckNotSupp, no plugin called
    with pytest.raises(cni.CheckNotSupported, match=re.escape(
            'configuration version "0.3.1" does not support the CHECK command')):
        cni.check(chain(bin_dir, {"type": "first"}, version="0.3.1"), SANDBOX, {})
    assert calls(bin_dir) == []


def test_disable_check_skips_every_plugin(bin_dir: Path) -> None:
    for value in (True, "true"):  # libcni's readBool takes a bool or its text
        c = cni.Chain.from_conflist({"cniVersion": "1.0.0", "name": "net", "disableCheck": value,
                                     "plugins": [{"type": "first"}]}, [str(bin_dir)])
        assert c.disable_check
        cni.check(c, SANDBOX, {"ips": []})
    assert calls(bin_dir) == []


def test_cni_versions_take_the_highest_this_spec_knows() -> None:
    # libcni: cniVersions and cniVersion together, entries above its own (1.1.0) ignored
    assert cni.list_version({"cniVersion": "0.4.0",
                             "cniVersions": ["1.0.0", "1.1.0", "2.0.0"]}) == "1.1.0"
    assert cni.list_version({"cniVersions": ["0.3.1", "1.0.0"]}) == "1.0.0"
    assert cni.list_version({"cniVersion": "1.0.0"}) == "1.0.0"
    assert cni.list_version({"cniVersion": "1.0.0", "cniVersions": ["9.9.9"]}) == "1.0.0"
    assert cni.list_version({}) is None
    assert "1.1.0" in cni.SUPPORTED_VERSIONS


def test_error_json_becomes_the_error(bin_dir: Path) -> None:
    c = chain(bin_dir, {"type": "first"},
              {"type": "second", "fail": {"code": 11, "msg": "no more addresses",
                                          "details": "range 10.0.0.0/30 is full"}},
              {"type": "third"})
    with pytest.raises(CniPluginError) as info:
        cni.add(c, SANDBOX)
    err = info.value
    assert isinstance(err, DeployError)
    assert (err.plugin, err.command, err.code, err.msg, err.details) == (
        "second", "ADD", 11, "no more addresses", "range 10.0.0.0/30 is full")
    assert "second ADD failed: no more addresses (range 10.0.0.0/30 is full)" in str(err)
    assert [s["plugin"] for s in calls(bin_dir)] == ["first", "second"]  # third never ran


def test_a_plugin_without_error_json_is_reported_by_its_stderr(bin_dir: Path) -> None:
    with pytest.raises(CniPluginError) as info:
        cni.add(chain(bin_dir, {"type": "first", "stderr_only": "bridge: permission denied"}),
                SANDBOX)
    assert info.value.code is None and info.value.msg == "bridge: permission denied"


def test_add_needs_a_result_object(bin_dir: Path) -> None:
    with pytest.raises(CniPluginError, match="no result JSON"):
        cni.add(chain(bin_dir, {"type": "first", "garbage": "ok\n"}), SANDBOX)
    with pytest.raises(CniPluginError, match="not a result object"):
        cni.add(chain(bin_dir, {"type": "first", "garbage": "[1]"}), SANDBOX)


def test_missing_and_unexecutable_plugins(bin_dir: Path) -> None:
    with pytest.raises(CniPluginError, match="no executable 'nope'"):
        cni.add(chain(bin_dir, {"type": "nope"}), SANDBOX)
    with pytest.raises(CniPluginError, match="no executable 'not-executable'"):
        cni.add(chain(bin_dir, {"type": "not-executable"}), SANDBOX)
    assert cni.find_plugin("../bin/first", [str(bin_dir)]) is None  # no path escapes


def test_a_hung_plugin_is_killed(bin_dir: Path) -> None:
    with pytest.raises(CniPluginError, match=r"no answer within 0\.5s") as info:
        cni.add(chain(bin_dir, {"type": "first", "sleep": 30}), SANDBOX, timeout=0.5)
    assert info.value.plugin == "first"


def test_supported_versions(bin_dir: Path) -> None:
    assert cni.supported_versions(str(bin_dir / "first")) == ("0.4.0", "1.0.0")


def test_result_cache_round_trip(tmp_path: Path, bin_dir: Path) -> None:
    c = chain(bin_dir, {"type": "first", "ip": "10.0.0.2/24"})
    result = cni.add(c, SANDBOX)
    path = cni.save_result(tmp_path / "cache", c, SANDBOX, result, {"pod": "web"})
    assert path.name == "net-c0ffee-eth0"
    assert cni.cached_results(tmp_path / "cache") == [path]
    back = cni.load_cached(path, netns="")
    assert back.chain == c and back.result == result and back.extra == {"pod": "web"}
    assert back.sandbox == cni.Sandbox("c0ffee", "", "eth0", SANDBOX.args,
                                       SANDBOX.capability_args)
    assert cni.cached_results(tmp_path / "nowhere") == []


# --- results of each spec version --------------------------------------------------------

RESULT_040 = {"cniVersion": "0.4.0",
              "interfaces": [{"name": "cbr0", "mac": "aa"}, {"name": "veth1", "mac": "bb"},
                             {"name": "eth0", "mac": "cc", "sandbox": "/proc/1/ns/net"}],
              "ips": [{"version": "4", "interface": 2, "address": "10.244.0.5/24",
                       "gateway": "10.244.0.1"}],
              "routes": [{"dst": "0.0.0.0/0"}]}


def test_result_addresses_by_version() -> None:
    assert cni.result_addresses(RESULT_040) == [cni.IPConfig("10.244.0.5/24", "10.244.0.1")]
    v1 = {**RESULT_040, "cniVersion": "1.0.0",
          "ips": [{"interface": 2, "address": "10.244.0.5/24"},
                  {"interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"},
                  {"interface": 0, "address": "10.244.0.1/24"}]}  # the bridge's own
    assert [a.address for a in cni.result_addresses(v1)] == ["10.244.0.5/24", "fd00::5/64"]
    assert cni.result_addresses(v1, netns="/proc/2/ns/net") == [
        cni.IPConfig("10.244.0.5/24", None), cni.IPConfig("fd00::5/64", "fd00::1"),
        cni.IPConfig("10.244.0.1/24", None)]  # no interface matches: every address
    ipam_only = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.9/24"}]}
    assert cni.result_addresses(ipam_only) == [cni.IPConfig("10.0.0.9/24", None)]


def test_version_order() -> None:
    assert cni.version_at_least("1.0.0", "0.4.0")
    assert cni.version_at_least("0.4.0", "0.4.0")
    assert not cni.version_at_least("0.3.1", "0.4.0")
    assert not cni.version_at_least("junk", "0.4.0")


def test_environment_keeps_a_path_for_iptables() -> None:
    env = cni.plugin_env("ADD", cni.Chain("n", "1.0.0", (), ("/a", "/b")), SANDBOX, base={})
    assert env["PATH"] and env["CNI_PATH"] == os.pathsep.join(("/a", "/b"))
