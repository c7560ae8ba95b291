"""CNI configuration per node: podlab's built-in `bridge` and `ptp` chains, and the user's
own conflist (loaded, validated, rendered per node). No Docker, no namespaces.

    cni: bridge    the reference `bridge` plugin: bridge cbr0, the node's gateway, no ipMasq
                   (podlab's own masquerade applies as `cluster.masquerade` says)
    cni: ptp       the reference `ptp` plugin: one point-to-point veth per pod and a /32
                   host route on the node, as kindnet does
    cni: {conflist: FILE, bin-dir: DIR}
                   the user's chain, paths relative to the topology file; its text may use
                   containerd's conf_template variables {{.PodCIDR}}, {{.PodCIDRRanges}},
                   {{.Routes}}, rendered per node

Every chain uses `host-local` IPAM over the node's pod CIDRs (the built-ins: one range set
and one default route per family, as containerd's dual-stack template has them) or
whatever the user's says; a host-local `dataDir` is set per lab and node (podlab's nodes
share the host's filesystem, where real nodes would not), so destroy removes the lab's
IPAM state with one directory. Like containerd, podlab attaches the `loopback` plugin as
a network of its own (ifname `lo`) before the pod's chain.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, Problem, TopologyError
from harness.host import cni
from harness.model import gotemplate
from harness.model.yamlsrc import resolve_path

BUILTIN = ("bridge", "ptp")
DISTRO_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
OPT_BIN_DIR = "/opt/cni/bin"  # where CNI installers put plugins
STATE_ROOT = "/var/lib/podlab/cni"  # <root>/<lab>/<node>/: IPAM state and ADD results
STATE_ENV = "PODLAB_CNI_STATE"  # another root (tests)
BUILTIN_VERSION = "1.0.0"
BRIDGE = "cbr0"
LOOPBACK = {"cniVersion": BUILTIN_VERSION, "name": "cni-loopback",
            "plugins": [{"type": "loopback"}]}
MAX_CONFLIST_BYTES = 1 << 20


# --------------------------------------------------------------------------- places


def default_bin_dir() -> str:
    """containerd's default where it exists, else the distribution's plugins."""
    return OPT_BIN_DIR if os.path.isdir(OPT_BIN_DIR) else DISTRO_BIN_DIR


def state_root() -> Path:
    return Path(os.environ.get(STATE_ENV) or STATE_ROOT)


def state_dir(lab: str, node: str | None = None) -> Path:
    """The lab's CNI state (or one node's): host-local's dataDir and the ADD results."""
    base = state_root() / lab
    return base / node if node else base


def results_dir(lab: str, node: str) -> Path:
    return state_dir(lab, node) / "results"


def ipam_dir(lab: str, node: str) -> Path:
    return state_dir(lab, node) / "ipam"


# --------------------------------------------------------------------------- templates


def template_data(pod_cidrs: Sequence[str]) -> dict[str, Any]:
    """containerd's cniConfigTemplate for one node: its CIDR(s), and as `Routes` one
    default route per family they have, IPv4 first (containerd's getRoutes)."""
    versions = {ipaddress.ip_network(c).version for c in pod_cidrs}
    routes = [r for v, r in ((4, "0.0.0.0/0"), (6, "::/0")) if v in versions]
    return {"PodCIDR": pod_cidrs[0] if pod_cidrs else "", "PodCIDRRanges": list(pod_cidrs),
            "Routes": routes}


# --------------------------------------------------------------------------- built-ins


def _host_local(pod_cidrs: Sequence[str], data_dir: str) -> dict[str, Any]:
    data = template_data(pod_cidrs)
    return {"type": "host-local", "ranges": [[{"subnet": c}] for c in pod_cidrs],
            "routes": [{"dst": r} for r in data["Routes"]], "dataDir": data_dir}


def builtin_conflist(which: str, pod_cidrs: Sequence[str], data_dir: str) -> dict[str, Any]:
    """The conflist of `cni: bridge` or `cni: ptp` for a node owning `pod_cidrs`.

    bridge is kubenet's configuration (cbr0, gateway, hairpin, no ipMasq); ptp is kindnet's
    (no ipMasq). host-local hands out the node's CIDR from its second address on, the first
    being the gateway, as podlab's own wiring does.
    """
    ipam = _host_local(pod_cidrs, data_dir)
    if which == "bridge":
        plugin: dict[str, Any] = {"type": "bridge", "bridge": BRIDGE, "isGateway": True,
                                  "ipMasq": False, "hairpinMode": True, "ipam": ipam}
    elif which == "ptp":
        plugin = {"type": "ptp", "ipMasq": False, "ipam": ipam}
    else:
        raise ValueError(f"no built-in CNI configuration {which!r}")
    return {"cniVersion": BUILTIN_VERSION, "name": f"podlab-{which}", "plugins": [plugin]}


def require_plugins(conf: Mapping[str, Any], bin_dirs: Sequence[str]) -> None:
    """For the built-ins: the distribution's plugins must be installed (exit 3 otherwise)."""
    wanted = [str(p.get("type")) for p in conf["plugins"]]
    wanted += [str(p["ipam"]["type"]) for p in conf["plugins"] if isinstance(p.get("ipam"), dict)
               and p["ipam"].get("type")]
    missing = sorted({t for t in wanted if cni.find_plugin(t, bin_dirs) is None})
    if missing:
        raise EnvironmentProblem(
            f"CNI plugin(s) {', '.join(missing)} not found in {os.pathsep.join(bin_dirs)}; "
            "install Debian's containernetworking-plugins (`make setup` does)")


# --------------------------------------------------------------------------- user chain


@dataclass(frozen=True)
class UserConflist:
    """The user's chain as loaded: its text (a template), where it is, its plugins' dirs."""

    file: str  # absolute path of the conflist
    text: str
    bin_dirs: tuple[str, ...]  # bin-dir first, then the distribution's plugins

    def render(self, pod_cidrs: Sequence[str]) -> dict[str, Any]:
        """The conflist of one node (templates rendered, a single .conf made a list)."""
        conf = json.loads(gotemplate.render(self.text, template_data(pod_cidrs)))
        return as_conflist(conf)


def resolve(path: str, topo_path: str | Path | None) -> Path:
    """A path of the topology file, resolved as the file's validation resolves it."""
    return resolve_path(path, Path(topo_path) if topo_path else None)


def search_dirs(bin_dir: str | None, topo_path: str | Path | None) -> tuple[str, ...]:
    """Where the user's plugins are looked for: bin-dir (default: /opt/cni/bin if it
    exists, else /usr/lib/cni), then the distribution's reference plugins."""
    first = str(resolve(bin_dir, topo_path)) if bin_dir else default_bin_dir()
    return (first,) if first == DISTRO_BIN_DIR else (first, DISTRO_BIN_DIR)


def as_conflist(conf: Any) -> Any:
    """A single-plugin .conf (a `type` and no `plugins`) as the list libcni makes of it."""
    if isinstance(conf, dict) and "plugins" not in conf and "type" in conf:
        plugin = {k: v for k, v in conf.items() if k not in ("name", "cniVersion")}
        return {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"),
                "plugins": [plugin]}
    return conf


def load_user(conflist: str, bin_dir: str | None, topo_path: str | Path | None,
              sample_cidrs: Sequence[str], field: str = "cluster.cni") -> UserConflist:
    """Read and validate the user's conflist; TopologyError (exit 2) naming the file and the
    field otherwise: the topology file's `cluster.cni.*` when a path is wrong, the
    conflist's own field (`plugins[1].type`) when its content is. The template is checked
    by rendering it for `sample_cidrs` (a node's pod CIDR(s))."""
    topo_file = str(topo_path) if topo_path else None
    path = resolve(conflist, topo_path)
    dirs = search_dirs(bin_dir, topo_path)
    if bin_dir and not os.path.isdir(dirs[0]):
        raise TopologyError(topo_file, [Problem(f"{field}.bin-dir",
                                                f"{dirs[0]} is not a directory")])
    try:
        if path.stat().st_size > MAX_CONFLIST_BYTES:
            raise TopologyError(topo_file, [Problem(
                f"{field}.conflist", f"{path} is larger than {MAX_CONFLIST_BYTES} bytes")])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TopologyError(topo_file, [Problem(f"{field}.conflist",
                                                f"cannot read {path}: {reason}")]) from None
    problems = validate_text(text, dirs, sample_cidrs)
    if problems:
        raise TopologyError(str(path), problems)
    return UserConflist(str(path), text, dirs)


def validate_text(text: str, bin_dirs: Sequence[str], sample_cidrs: Sequence[str]
                  ) -> list[Problem]:
    """Every problem of a conflist's text (rendered for `sample_cidrs`), with its field."""
    try:
        rendered = gotemplate.render(text, template_data(sample_cidrs))
    except gotemplate.TemplateError as exc:
        return [Problem("<template>", exc.message, exc.line)]
    try:
        conf = json.loads(rendered)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", str(exc))
        return [Problem("", f"not valid JSON: {msg}" + (" (after rendering the template)"
                                                        if rendered != text else ""), line)]
    return validate_conf(as_conflist(conf), bin_dirs)


def validate_conf(conf: Any, bin_dirs: Sequence[str]) -> list[Problem]:
    """libcni's checks of a list (name, cniVersion, plugins with a type), plus podlab's:
    each plugin (and IPAM plugin) is an executable in `bin_dirs` that speaks the list's
    cniVersion (asked with CNI_COMMAND=VERSION, as libcni's validation does)."""
    if not isinstance(conf, dict):
        return [Problem("", "must be a JSON object with name, cniVersion and plugins")]
    problems: list[Problem] = []
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        problems.append(Problem("name", "missing: the network's name (a string)"))
    version = cni.list_version(conf)  # with `cniVersions`, the highest libcni knows
    if not isinstance(version, str) or version not in cni.SUPPORTED_VERSIONS:
        problems.append(Problem("cniVersion", f"{_shown(version)}: podlab calls plugins with "
                                f"spec {', '.join(cni.SUPPORTED_VERSIONS)}"))
        version = None
    plugins = conf.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        problems.append(Problem("plugins", "missing or empty: a list of plugin objects"))
        return problems
    where = os.pathsep.join(bin_dirs)
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict):
            problems.append(Problem(f"plugins[{i}]", "must be an object with a type"))
            continue
        wanted = [(f"plugins[{i}].type", plugin.get("type"))]
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and "type" in ipam:
            wanted.append((f"plugins[{i}].ipam.type", ipam.get("type")))
        for field, ptype in wanted:
            if not isinstance(ptype, str) or not ptype:
                problems.append(Problem(field, "missing: the plugin's binary name"))
                continue
            binary = cni.find_plugin(ptype, bin_dirs)
            if binary is None:
                problems.append(Problem(field, f"no executable {ptype!r} in {where}"))
            elif version is not None:
                problem = _version_problem(field, binary, version)
                if problem:
                    problems.append(problem)
    return problems


def _shown(value: Any) -> str:
    return "missing" if value is None else json.dumps(value)[:40]


_versions: dict[tuple[str, int], tuple[str, ...] | str] = {}


def _version_problem(field: str, binary: str, version: str) -> Problem | None:
    """Whether `binary` speaks `version`; asked once per binary (and mtime)."""
    try:
        key = (binary, os.stat(binary).st_mtime_ns)
    except OSError as exc:
        return Problem(field, f"{binary}: {exc.strerror}")
    if key not in _versions:
        try:
            _versions[key] = cni.supported_versions(binary)
        except cni.CniPluginError as exc:
            _versions[key] = exc.msg or str(exc)
    found = _versions[key]
    if isinstance(found, str):
        return Problem(field, f"{binary} does not answer CNI_COMMAND=VERSION: {found}")
    if found and version not in found:
        return Problem(field, f"{os.path.basename(binary)} speaks CNI {', '.join(found)}, "
                       f"not cniVersion {version}")
    return None


def with_data_dir(conf: Mapping[str, Any], data_dir: str) -> dict[str, Any]:
    """`conf` with every host-local IPAM's `dataDir` set to `data_dir` (one per lab and node:
    podlab's nodes share the host's filesystem, and destroy removes it)."""
    out = json.loads(json.dumps(conf))  # a deep copy of plain JSON
    for plugin in out.get("plugins") or ():
        ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            ipam["dataDir"] = data_dir
    return out


def sets_ip_masq(conf: Mapping[str, Any]) -> bool:
    """Whether a chain masquerades pod traffic itself (bridge/ptp `ipMasq: true`)."""
    return any(isinstance(p, dict) and p.get("ipMasq") is True
               for p in conf.get("plugins") or ())
