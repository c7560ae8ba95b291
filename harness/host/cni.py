"""Call a CNI plugin chain as a container runtime does (libcni's semantics, spec 0.3-1.1).

A chain (a conflist) is run plugin by plugin: ADD in list order, each plugin getting the
list's `name` and `cniVersion`, the previous plugin's result as `prevResult`, and a
`runtimeConfig` holding the capability arguments it declares in `capabilities`; DEL runs
in reverse order, each plugin getting the result cached at ADD as `prevResult` (spec
0.4.0 and later). The environment carries CNI_COMMAND, CNI_CONTAINERID (the pod's infra
container), CNI_NETNS (the pod's `/proc/<pid>/ns/net`), CNI_IFNAME, CNI_ARGS and
CNI_PATH; stdin is the plugin's own configuration, stdout its result or error object.

The plugin process runs in the *node's* network namespace, which is the "host" side the
plugin sees: bridges, host veth ends, routes and iptables rules land in the node, exactly
where a kubelet's runtime would have put them. Only the network namespace changes: the
binary, CNI_NETNS and the IPAM state are paths on the host's filesystem. A subprocess
forked from a thread that entered a namespace with setns(2) starts in that namespace, so
:func:`harness.host.netns.run_in_netns` is all it takes.

Like libcni, the result of an ADD is cached (with the configuration it was made with), so
DEL can be called later with the same configuration and `prevResult`, after a crash too.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import CniPluginError
from harness.host.netns import run_in_netns

# Versions whose conflist and result formats podlab speaks (libcni converts between them;
# podlab hands every plugin the list's own version, as libcni does). 1.1.0 is libcni's own
# (version.Current()): a list may name it, or offer it in `cniVersions`.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
TIMEOUT_S = 30.0  # per plugin call; a hung plugin must not hang the deploy
CACHE_KIND = "cniCacheV1"  # libcni's cache file format, so the files read the same
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CheckNotSupported(CniPluginError):
    """libcni's ErrorCheckNotSupp: CHECK asked of a list older than spec 0.4.0."""


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def list_version(conf: Mapping[str, Any]) -> str | None:
    """The list's spec version as libcni's ConfListFromBytes settles it: the highest of
    `cniVersions` and `cniVersion` that is not above libcni's own (1.1.0); None when
    neither is given. An entry that is not a version is left to validation."""
    current = _version_key(SUPPORTED_VERSIONS[-1])
    given = conf.get("cniVersion")
    offered = conf.get("cniVersions")
    if not isinstance(offered, list):
        return given if isinstance(given, str) else None
    known = []
    for v in [*offered, *([given] if isinstance(given, str) else [])]:
        try:
            if isinstance(v, str) and _version_key(v) <= current:
                known.append(v)
        except ValueError:
            continue
    return max(known, key=_version_key) if known else (
        given if isinstance(given, str) else None)


def _bool(value: Any) -> bool:
    """libcni's readBool: a JSON bool, or its text."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "t"))


@dataclass(frozen=True)
class Chain:
    """A loaded conflist: what is called, and where the binaries are."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    bin_dirs: tuple[str, ...]
    disable_check: bool = False  # the list's `disableCheck`: CHECK then does nothing

    @classmethod
    def from_conflist(cls, conf: Mapping[str, Any], bin_dirs: Sequence[str]) -> Chain:
        return cls(name=str(conf["name"]), cni_version=str(list_version(conf)),
                   plugins=tuple(conf["plugins"]), bin_dirs=tuple(bin_dirs),
                   disable_check=_bool(conf.get("disableCheck")))

    def to_conflist(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": self.cni_version, "name": self.name,
                               "plugins": [dict(p) for p in self.plugins]}
        if self.disable_check:
            out["disableCheck"] = True
        return out


@dataclass(frozen=True)
class Sandbox:
    """The runtime's side of a call: which container, which namespace, which interface."""

    container_id: str  # CNI_CONTAINERID: the pod's infra container
    netns: str  # CNI_NETNS: /proc/<pid>/ns/net of the infra container ("" once it is gone)
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()  # CNI_ARGS, e.g. (("K8S_POD_NAME", "web"),)
    # runtimeConfig sources (portMappings, bandwidth, ...): a plugin gets those it
    # declares in its `capabilities`
    capability_args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IPConfig:
    """One address of a result, on the sandbox's interface."""

    address: str  # a.b.c.d/len (or IPv6)
    gateway: str | None


# --------------------------------------------------------------------------- pure parts


def version_at_least(version: str, minimum: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("."))
    try:
        return key(version) >= key(minimum)
    except ValueError:
        return False


def plugin_config(chain: Chain, plugin: Mapping[str, Any], prev_result: Mapping[str, Any] | None,
                  capability_args: Mapping[str, Any]) -> dict[str, Any]:
    """The stdin of one plugin: its own config with the list's name and version injected,
    `prevResult` when there is one, and `runtimeConfig` for the capabilities it declares
    (libcni's buildOneConfig/injectRuntimeConfig)."""
    conf = {**plugin, "name": chain.name, "cniVersion": chain.cni_version}
    if prev_result is not None:
        conf["prevResult"] = prev_result
    declared = plugin.get("capabilities") or {}
    runtime_config = {cap: capability_args[cap] for cap, on in declared.items()
                      if on and cap in capability_args}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    return conf


def plugin_env(command: str, chain: Chain, sandbox: Sandbox,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one call: the runtime's own (PATH: plugins run iptables) plus
    the CNI_* variables."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": sandbox.container_id,
        "CNI_NETNS": sandbox.netns,
        "CNI_IFNAME": sandbox.ifname,
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in sandbox.args),
        "CNI_PATH": os.pathsep.join(chain.bin_dirs),
    })
    return env


def find_plugin(plugin_type: str, bin_dirs: Sequence[str]) -> str | None:
    """The first executable `plugin_type` in `bin_dirs` (libcni's FindInPath)."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        return None
    for d in bin_dirs:
        path = os.path.join(d, plugin_type)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def parse_error(plugin: str, command: str, returncode: int, stdout: str, stderr: str
                ) -> CniPluginError:
    """A failed call as an error: the spec's `{code, msg, details}` when the plugin printed
    one on stdout, its last stderr line otherwise."""
    code: int | None = None
    msg = details = ""
    try:
        obj = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and ("msg" in obj or "code" in obj):
        raw_code = obj.get("code")
        code = raw_code if isinstance(raw_code, int) else None
        msg, details = str(obj.get("msg") or ""), str(obj.get("details") or "")
    if not msg:
        lines = (stderr.strip() or stdout.strip()).splitlines()
        msg = lines[-1] if lines else f"exit status {returncode} and no output"
    text = f"CNI plugin {plugin} {command} failed: {msg}"
    if details:
        text += f" ({details})"
    if code is not None:
        text += f" [CNI error code {code}]"
    return CniPluginError(text, plugin=plugin, command=command, code=code, msg=msg,
                          details=details)


def result_addresses(result: Mapping[str, Any], ifname: str = "eth0",
                     netns: str | None = None) -> list[IPConfig]:
    """The addresses a result gives the sandbox's `ifname` (0.3.0 and later formats).

    An `ips` entry names its interface by index into `interfaces`; the sandbox's one is
    the interface with the sandbox's name and a `sandbox` (equal to `netns` when given).
    When no entry points there (a chain whose IPAM result was never bound to an
    interface), the entries without an index, and failing those all, are the pod's.
    """
    interfaces = result.get("interfaces") or []
    mine = {i for i, itf in enumerate(interfaces)
            if isinstance(itf, dict) and itf.get("name") == ifname and itf.get("sandbox")
            and (netns is None or itf.get("sandbox") == netns)}
    ips = [ip for ip in result.get("ips") or [] if isinstance(ip, dict) and "address" in ip]
    picked = ([ip for ip in ips if ip.get("interface") in mine]
              or [ip for ip in ips if ip.get("interface") is None] or ips)
    return [IPConfig(str(ip["address"]), ip.get("gateway")) for ip in picked]


# --------------------------------------------------------------------------- calls


def _run(binary: str, env: Mapping[str, str], stdin: bytes, host_pid: int | None,
         timeout: float) -> subprocess.CompletedProcess[bytes]:
    argv = [binary]
    kwargs: dict[str, Any] = {"input": stdin, "env": dict(env), "capture_output": True,
                              "timeout": timeout, "check": False}
    if host_pid is None:
        return subprocess.run(argv, **kwargs)
    # forked from a thread inside the node's namespace, the plugin starts there
    return run_in_netns(host_pid, subprocess.run, argv, **kwargs)


def exec_plugin(chain: Chain, plugin: Mapping[str, Any], command: str, sandbox: Sandbox,
                prev_result: Mapping[str, Any] | None, *, host_pid: int | None = None,
                timeout: float = TIMEOUT_S) -> dict[str, Any] | None:
    """One call of one plugin; its parsed result (ADD), None otherwise."""
    plugin_type = str(plugin.get("type", ""))
    binary = find_plugin(plugin_type, chain.bin_dirs)
    if binary is None:
        raise CniPluginError(
            f"CNI plugin {plugin_type or '<no type>'} {command} failed: no executable "
            f"{plugin_type!r} in {os.pathsep.join(chain.bin_dirs)}", plugin=plugin_type,
            command=command, msg=f"failed to find plugin {plugin_type!r}")
    conf = plugin_config(chain, plugin, prev_result, sandbox.capability_args)
    env = plugin_env(command, chain, sandbox)
    try:
        done = _run(binary, env, json.dumps(conf).encode(), host_pid, timeout)
    except subprocess.TimeoutExpired as exc:
        raise CniPluginError(f"CNI plugin {plugin_type} {command} failed: no answer within "
                             f"{timeout:g}s (killed)", plugin=plugin_type, command=command,
                             msg=f"timed out after {timeout:g}s") from exc
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise parse_error(plugin_type, command, done.returncode, stdout, stderr)
    if command != "ADD":
        return None
    try:
        result = json.loads(stdout)
    except ValueError as exc:
        raise CniPluginError(f"CNI plugin {plugin_type} ADD printed no result JSON: "
                             f"{stdout.strip()[:200]!r}", plugin=plugin_type, command=command,
                             msg="invalid result") from exc
    if not isinstance(result, dict):
        raise CniPluginError(f"CNI plugin {plugin_type} ADD printed {type(result).__name__}, "
                             "not a result object", plugin=plugin_type, command=command,
                             msg="invalid result")
    return result


def add(chain: Chain, sandbox: Sandbox, *, host_pid: int | None = None,
        timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """ADD every plugin in order, chaining results; the last plugin's result.

    A failure leaves what the earlier plugins did in place, as libcni does: the caller
    (a runtime) calls DEL to clean up.
    """
    result: dict[str, Any] | None = None
    for plugin in chain.plugins:
        result = exec_plugin(chain, plugin, "ADD", sandbox, result, host_pid=host_pid,
                             timeout=timeout)
    assert result is not None  # a chain has at least one plugin (validated on load)
    return result


def delete(chain: Chain, sandbox: Sandbox, prev_result: Mapping[str, Any] | None = None, *,
           host_pid: int | None = None, timeout: float = TIMEOUT_S) -> None:
    """DEL every plugin in reverse order, each with the ADD result as `prevResult`
    (spec 0.4.0 and later; none before, as libcni). The first failure is raised."""
    prev = prev_result if version_at_least(chain.cni_version, "0.4.0") else None
    for plugin in reversed(chain.plugins):
        exec_plugin(chain, plugin, "DEL", sandbox, prev, host_pid=host_pid, timeout=timeout)


def check(chain: Chain, sandbox: Sandbox, prev_result: Mapping[str, Any], *,
          host_pid: int | None = None, timeout: float = TIMEOUT_S) -> None:
    """CHECK every plugin in order, as libcni's CheckNetworkList: a list before spec
    0.4.0 raises CheckNotSupported (its ErrorCheckNotSupp), one with `disableCheck` does
    nothing."""
    if not version_at_least(chain.cni_version, "0.4.0"):
        raise CheckNotSupported(
            f'configuration version "{chain.cni_version}" does not support the CHECK command',
            plugin="", command="CHECK", msg="does not support the CHECK command")
    if chain.disable_check:
        return
    for plugin in chain.plugins:
        exec_plugin(chain, plugin, "CHECK", sandbox, prev_result, host_pid=host_pid,
                    timeout=timeout)


def supported_versions(binary: str, timeout: float = TIMEOUT_S) -> tuple[str, ...]:
    """The spec versions a plugin binary speaks (CNI_COMMAND=VERSION), as libcni asks."""
    env = {**os.environ, "CNI_COMMAND": "VERSION", "CNI_CONTAINERID": "", "CNI_NETNS": "",
           "CNI_IFNAME": "", "CNI_PATH": os.path.dirname(binary)}
    plugin = os.path.basename(binary)
    stdin = json.dumps({"cniVersion": SUPPORTED_VERSIONS[-1]}).encode()
    try:
        done = _run(binary, env, stdin, None, timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniPluginError(f"CNI plugin {plugin} VERSION failed: {exc}", plugin=plugin,
                             command="VERSION", msg=str(exc)) from exc
    stdout = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise parse_error(plugin, "VERSION", done.returncode, stdout,
                          done.stderr.decode(errors="replace"))
    try:
        info = json.loads(stdout)
        return tuple(str(v) for v in info.get("supportedVersions") or ())
    except (ValueError, AttributeError) as exc:
        raise CniPluginError(f"CNI plugin {plugin} VERSION printed no version info",
                             plugin=plugin, command="VERSION", msg="invalid output") from exc


# --------------------------------------------------------------------------- result cache


def cache_path(cache_dir: str | Path, chain_name: str, sandbox: Sandbox) -> Path:
    """One file per (network, container, interface), like libcni's /var/lib/cni/results."""
    return Path(cache_dir) / f"{chain_name}-{sandbox.container_id}-{sandbox.ifname}"


def save_result(cache_dir: str | Path, chain: Chain, sandbox: Sandbox,
                result: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> Path:
    """Record an ADD: the configuration it used and its result, so DEL needs nothing else.
    `extra` is free-form (podlab records the pod's name there)."""
    path = cache_path(cache_dir, chain.name, sandbox)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"kind": CACHE_KIND, "containerId": sandbox.container_id,
           "ifName": sandbox.ifname, "networkName": chain.name,
           "cniArgs": [list(kv) for kv in sandbox.args],
           "capabilityArgs": dict(sandbox.capability_args),
           "config": chain.to_conflist(), "binDirs": list(chain.bin_dirs),
           "result": dict(result), **({"podlab": dict(extra)} if extra else {})}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)  # atomic: a crash leaves the old file or the new one
    return path


@dataclass(frozen=True)
class Cached:
    path: Path
    chain: Chain
    sandbox: Sandbox
    result: dict[str, Any]
    extra: dict[str, str]


def load_cached(path: str | Path, netns: str = "") -> Cached:
    """A cache file back as what DEL needs; `netns` is the sandbox's namespace now."""
    doc = json.loads(Path(path).read_text())
    chain = Chain.from_conflist(doc["config"], doc.get("binDirs") or ())
    sandbox = Sandbox(container_id=doc["containerId"], netns=netns, ifname=doc["ifName"],
                      args=tuple((str(k), str(v)) for k, v in doc.get("cniArgs") or ()),
                      capability_args=doc.get("capabilityArgs") or {})
    return Cached(Path(path), chain, sandbox, doc.get("result") or {}, doc.get("podlab") or {})


def cached_results(cache_dir: str | Path) -> list[Path]:
    """Every cache file in `cache_dir` (none when it does not exist)."""
    d = Path(cache_dir)
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix != ".tmp") \
        if d.is_dir() else []
