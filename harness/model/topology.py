"""The topology file: its model, its loading, and every check that rejects a bad file.

The format is containerlab's (`name`, `topology: {defaults, kinds, nodes, links}` with the
brief link form) plus podlab's `cluster:` and `pods:`. Structure is checked by pydantic
(which also yields the JSON Schema for editors); meaning (names, interfaces, CIDRs,
reachability) is checked here afterwards, so a file gets every problem reported at once,
each with its YAML path and line.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
)

from harness import datapaths, labels
from harness.errors import Problem, TopologyError
from harness.kinds import KINDS, NAMES, kind
from harness.model.addressing import (
    DEFAULT_MASKS,
    FAMILIES,
    IPV4,
    IPV6,
    TITLE,
    Family,
    Net,
    NoRoom,
    allocate,
    family_of,
    room,
)
from harness.model.graph import LabGraph
from harness.model.services import service_problems
from harness.model.yamlsrc import PathKey, bounded, load_yaml, read_text, render_path

SWITCHES = frozenset(k.name for k in KINDS.values() if k.is_switch)

Kind = Literal["k8s-node", "router", "switch", "linux"]
# every value the format knows (harness.datapaths says which are implemented)
Routing = Literal["static", "bgp"]
CniName = Literal["podlab", "bridge", "ptp"]
DEFAULT_NODE_IMAGE = "podlab/node"
DEFAULT_POD_IMAGE = "podlab/app"
RESERVED_LABEL_PREFIX = f"{labels.PREFIX}."

# Names become parts of Docker container names (podlab-<lab>-<node>) and of labels.
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")  # used with fullmatch
NAME_MAX = 40
# Kubernetes: pod and container names are DNS-1123 labels.
IFNAME_RE = re.compile(r"[A-Za-z0-9_-]+")  # used with fullmatch
IFNAME_MAX = 15  # IFNAMSIZ - 1
RESERVED_IFNAMES = frozenset({"lo", "cbr0", "br0", "eth0"})
MAX_DELAY_MS = 60_000.0  # a netem delay beyond a minute would only make every probe time out
# A Docker image reference: [registry[:port]/]path[:tag][@digest]; no spaces, no shell.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    rf"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?")

# YAML gives ints, floats and bools apart; `true` must not count as 1.
Int = StrictInt
Float = StrictFloat  # accepts ints, not bools


class _Model(BaseModel):
    # by alias only: `pod_cidr:` in a file is a typo of `pod-cidr:`, not a synonym
    model_config = ConfigDict(extra="forbid", frozen=True)


class Netem(_Model):
    """Impairment of one link, applied on both ends with tc netem."""

    delay: str | int | float | None = Field(None, description="one-way delay: '10ms' or ms")
    jitter: str | int | float | None = Field(None, description="delay variation: '2ms' or ms")
    loss: Float | None = Field(None, ge=0, le=100, description="packet loss in percent")
    rate: Int | None = Field(None, gt=0, description="rate limit in kbit/s")

    @field_validator("delay", "jitter", mode="before")
    @classmethod
    def _duration_type(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, str | int | float)):
            raise ValueError("must be a duration like '10ms' or '1.5s', or a number of ms")
        return value


class Link(_Model):
    endpoints: tuple[str, str] = Field(description='two "node:interface" strings')
    ipv4: tuple[str | None, str | None] | None = Field(
        None, description="addresses of the two ends, a.b.c.d/len (null for a switch port)"
    )
    ipv6: tuple[str | None, str | None] | None = Field(
        None, description="IPv6 addresses of the two ends, x::y/len (null for a switch port)"
    )
    mtu: Int | None = Field(None, ge=576, le=9000)
    netem: Netem | None = None

    def addresses(self, family: Family) -> tuple[str | None, str | None] | None:
        """The ends' explicit addresses of `family` (the `ipv4` or `ipv6` key)."""
        return self.ipv6 if family == IPV6 else self.ipv4


class NodeSpec(_Model):
    kind: Kind | None = None
    image: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class TopologyBody(_Model):
    defaults: NodeSpec = Field(default_factory=NodeSpec)
    kinds: dict[Kind, NodeSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec]
    links: list[Link] = Field(default_factory=list)


class EnvVar(_Model):
    name: str
    value: str = ""


Protocol = Literal["TCP", "UDP"]


class ContainerPort(_Model):
    """A port a container listens on; `hostPort` also publishes it on the pod's node (the
    CNI portmap plugin's DNAT). Kubernetes' ContainerPort field names."""

    name: str | None = None
    container_port: Int = Field(alias="containerPort", ge=1, le=65535)
    host_port: Int | None = Field(None, alias="hostPort", ge=1, le=65535)
    protocol: Protocol = "TCP"


class Container(_Model):
    """Field names follow the Kubernetes Pod spec."""

    name: str
    image: str = DEFAULT_POD_IMAGE
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)


class Pod(_Model):
    node: str
    containers: list[Container]
    labels: dict[str, str] = Field(default_factory=dict)
    host_network: bool = Field(False, alias="hostNetwork",
                               description="share the node's network namespace and addresses")


class ServicePort(_Model):
    """Kubernetes' ServicePort: `targetPort` is a number or a container port's name."""

    name: str | None = None
    protocol: Protocol = "TCP"
    port: Int = Field(ge=1, le=65535)
    target_port: Int | str | None = Field(None, alias="targetPort",
                                          description="default: the same as port")
    node_port: Int | None = Field(None, alias="nodePort",
                                  description="NodePort only; default: allocated from 30000")


class Service(_Model):
    """Kubernetes' ServiceSpec, the part kube-proxy's iptables mode acts on."""

    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort]
    cluster_ip: str | None = Field(None, alias="clusterIP",
                                   description="default: allocated from cluster.service-cidr")
    external_traffic_policy: Literal["Cluster", "Local"] | None = Field(
        None, alias="externalTrafficPolicy", description="NodePort only; default Cluster")


# One prefix per family: a string is single-stack, a list of an IPv4 and an IPv6 prefix is
# dual-stack (the first is the primary family, as in Kubernetes).
Prefixes = str | list[str]
DEFAULT_UNDERLAY = {IPV4: "172.30.0.0/16", IPV6: "fd00:172:30::/48"}
DEFAULT_SERVICE = {IPV4: "10.96.0.0/16", IPV6: "fd00:10:96::/112"}


def prefixes(value: Prefixes | None) -> tuple[str, ...]:
    """A `pod-cidr`-style value as a tuple of prefixes, in the file's order."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


_CNI_NAME, _CNI_CHAIN = "cni-name", "cni-chain"  # union tags, left out of YAML paths
_MASQ_FLAG, _MASQ_AGENT = "masquerade-flag", "masquerade-agent"
# ip-masq-agent's defaults (cmd/ip-masq-agent): RFC 1918 is left alone, and link-local
# unless masqLinkLocal; its reserved-range list is opt-in (a flag), not a default
MASQ_AGENT_DEFAULT_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
LINK_LOCAL = "169.254.0.0/16"


class MasqAgentConfig(_Model):
    """ip-masq-agent's own config file (its ConfigMap's `config`), pasted as is. With it, a
    k8s-node masquerades, as the agent does, every packet it sends or forwards to a
    destination that is not one of its own addresses, except to `nonMasqueradeCIDRs`
    (unset: the agent's default, RFC 1918) and, unless `masqLinkLocal`, 169.254/16."""

    non_masquerade_cidrs: list[str] | None = Field(
        None, alias="nonMasqueradeCIDRs",
        description="destinations never masqueraded; unset: 10/8, 172.16/12, 192.168/16")
    masq_link_local: bool = Field(False, alias="masqLinkLocal",
                                  description="masquerade 169.254/16 too")
    masq_link_local_ipv6: bool = Field(False, alias="masqLinkLocalIPv6",
                                       description="accepted; podlab is IPv4 only")
    cidr_limit: Int = Field(64, alias="cidrLimit", ge=1,
                            description="the most nonMasqueradeCIDRs the agent accepts")
    resync_interval: str | None = Field(None, alias="resyncInterval",
                                        description="accepted; podlab applies the rule once")

    @property
    def exempt(self) -> tuple[str, ...]:
        """Every destination left alone, in the agent's chain order."""
        own = (self.non_masquerade_cidrs if self.non_masquerade_cidrs is not None
               else list(MASQ_AGENT_DEFAULT_CIDRS))
        return (*(() if self.masq_link_local else (LINK_LOCAL,)), *own)


class CniChain(_Model):
    """The user's own CNI plugin chain, called as a container runtime calls it."""

    conflist: str = Field(description="path of a CNI network configuration list (.conflist)")
    bin_dir: str | None = Field(None, alias="bin-dir",
                                description="directory of the plugin binaries")


class Cluster(_Model):
    pod_cidr: Prefixes = Field(
        "10.244.0.0/16", alias="pod-cidr",
        description="the pods' addresses: a prefix, or one per family (IPv4 and IPv6) for "
        "dual-stack")
    node_mask: Int = Field(24, alias="node-mask", ge=8, le=30,
                           description="IPv4 prefix length of each k8s-node's pod CIDR")
    node_mask_v6: Int = Field(64, alias="node-mask-v6", ge=16, le=124,
                              description="IPv6 prefix length of each k8s-node's pod CIDR")
    underlay_cidr: Prefixes = Field(
        DEFAULT_UNDERLAY[IPV4], alias="underlay-cidr",
        description="subnets for links and segments without explicit addresses, one prefix "
        f"per family of pod-cidr (unset: {DEFAULT_UNDERLAY[IPV4]} and {DEFAULT_UNDERLAY[IPV6]})")
    segment_mask: Int | None = Field(
        None, alias="segment-mask", ge=8, le=30,
        description="IPv4 prefix length of each auto-addressed segment; unset: a /24 each "
        "(IPv6: a /64) while the underlay has room, else the smallest prefix that holds "
        "each segment's ports")
    masquerade: Annotated[Annotated[bool, Tag(_MASQ_FLAG)]
                          | Annotated[MasqAgentConfig, Tag(_MASQ_AGENT)],
                          Discriminator(lambda v: _MASQ_AGENT
                                        if isinstance(v, dict | MasqAgentConfig)
                                        else _MASQ_FLAG)] = Field(
        True, description="true: SNAT pod traffic to anything outside the pod CIDR and the "
        "k8s-nodes' addresses; false: no NAT; or ip-masq-agent's config "
        "{nonMasqueradeCIDRs: [...], masqLinkLocal: false} with the agent's semantics")
    routing: Routing = Field(datapaths.DEFAULT_ROUTING,
                             description="how nodes learn the pod CIDRs: static or bgp")
    # a name or a mapping, told apart by type so an error speaks of one of them only
    cni: Annotated[Annotated[CniName, Tag(_CNI_NAME)] | Annotated[CniChain, Tag(_CNI_CHAIN)],
                   Discriminator(lambda v: _CNI_CHAIN if isinstance(v, dict | CniChain)
                                 else _CNI_NAME)] = Field(
        datapaths.DEFAULT_CNI, description="how pods are wired: podlab, bridge, ptp or "
        "{conflist: FILE, bin-dir: DIR}")
    service_cidr: Prefixes = Field(
        DEFAULT_SERVICE[IPV4], alias="service-cidr",
        description="ClusterIPs not given in the file come from here: a prefix, or one per "
        f"family of pod-cidr (unset: {DEFAULT_SERVICE[IPV4]} and {DEFAULT_SERVICE[IPV6]}); "
        "Services take the IPv4 one")

    @property
    def pod_cidrs(self) -> tuple[str, ...]:
        return prefixes(self.pod_cidr)

    @property
    def families(self) -> tuple[Family, ...]:
        """The cluster's families, primary first: those of pod-cidr."""
        return tuple(dict.fromkeys(family_of(p) for p in self.pod_cidrs))

    @property
    def underlay_cidrs(self) -> tuple[str, ...]:
        if "underlay_cidr" in self.model_fields_set:
            return prefixes(self.underlay_cidr)
        return tuple(DEFAULT_UNDERLAY[f] for f in self.families)

    @property
    def service_cidrs(self) -> tuple[str, ...]:
        if "service_cidr" in self.model_fields_set:
            return prefixes(self.service_cidr)
        return tuple(DEFAULT_SERVICE[f] for f in self.families)

    def node_mask_of(self, family: Family) -> int:
        return self.node_mask_v6 if family == IPV6 else self.node_mask


class TopologyFile(_Model):
    name: str
    cluster: Cluster = Field(default_factory=Cluster)  # type: ignore[arg-type]
    topology: TopologyBody
    pods: dict[str, Pod] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)


class Topology:
    """A validated topology: the parsed file plus where it came from. Immutable."""

    __slots__ = ("file", "path", "spec")

    def __init__(self, spec: TopologyFile, path: Path | None):
        self.spec = spec
        self.path = path.resolve() if path else None
        self.file = str(path) if path else "<topology>"

    @property
    def name(self) -> str:
        return self.spec.name

    def kind_of(self, node: str) -> str:
        spec = self.spec.topology
        kind = spec.nodes[node].kind or spec.defaults.kind
        assert kind is not None  # validation guarantees it
        return kind

    def image_of(self, node: str) -> str:
        spec = self.spec.topology
        kind = self.kind_of(node)
        kind_spec = spec.kinds.get(kind)  # type: ignore[call-overload]
        return (spec.nodes[node].image or (kind_spec.image if kind_spec else None)
                or spec.defaults.image or DEFAULT_NODE_IMAGE)

    def labels_of(self, node: str) -> dict[str, str]:
        spec = self.spec.topology
        kind_spec = spec.kinds.get(self.kind_of(node))  # type: ignore[call-overload]
        return {**spec.defaults.labels, **(kind_spec.labels if kind_spec else {}),
                **spec.nodes[node].labels}


def json_schema() -> dict[str, Any]:
    """JSON Schema of the file format (for editors: yaml-language-server)."""
    schema = TopologyFile.model_json_schema(by_alias=True)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = "podlab topology"
    return schema


def load_topology(path: str | Path) -> Topology:
    """Read, parse and validate a file. Raises TopologyError listing every problem."""
    path = Path(path)
    text = read_text(path)
    return parse_topology(text, path)


def parse_topology(text: str, path: Path | None = None) -> Topology:
    file = str(path) if path else None
    data, lines = load_yaml(text, file)
    try:
        spec = TopologyFile.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(file, bounded(_structure_problems(exc, lines))) from None
    problems = [*_semantic_problems(spec), *_cni_path_problems(spec, path)]
    if problems:
        raise TopologyError(file, bounded([_locate(p, lines) for p in problems]))
    return Topology(spec, path)


def resolve_path(text: str, topo_path: Path | None) -> Path:
    """A path written in the topology file: relative to the file's directory, as
    containerlab resolves them (to the working directory for a file-less topology)."""
    p = Path(text).expanduser()
    if p.is_absolute():
        return p
    return (topo_path.resolve().parent if topo_path else Path.cwd()) / p


def _cni_path_problems(spec: TopologyFile, path: Path | None) -> Iterator[Problem]:
    """`cni: {conflist, bin-dir}` must name a file and a directory; what the conflist
    says is checked when the datapath reads it (harness.datapath.cni_conf)."""
    chain = spec.cluster.cni
    if not isinstance(chain, CniChain):
        return
    where = "relative to the topology file" if path else "relative to the working directory"
    conflist = resolve_path(chain.conflist, path)
    if not conflist.is_file():
        shown = chain.conflist if conflist.as_posix().endswith(chain.conflist) else conflist
        yield Problem("cluster.cni.conflist", f"file not found: {shown}"
                      + ("" if Path(chain.conflist).is_absolute() else f" ({where})"))
    if chain.bin_dir is not None and not resolve_path(chain.bin_dir, path).is_dir():
        yield Problem("cluster.cni.bin-dir", f"not a directory: {chain.bin_dir}"
                      + ("" if Path(chain.bin_dir).is_absolute() else f" ({where})"))


# --- structural problems (pydantic) -----------------------------------------------------

def _vocabulary() -> list[str]:
    words: set[str] = set()
    for model in (TopologyFile, Cluster, CniChain, TopologyBody, NodeSpec, Link, Netem, Pod,
                  Container, EnvVar, ContainerPort, Service, ServicePort):
        for name, field in model.model_fields.items():
            words.add(field.alias or name)
    return sorted(words)


_EXPECTED = {  # pydantic error type -> what the file should have had there
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list", "string_type": "a string",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def show(value: Any, limit: int = 60) -> str:
    """repr() of a user's value, cut short so that hostile input keeps messages readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'" if text[0] in "'\"" \
        else text[: limit - 3] + "..."


def _structure_problems(exc: ValidationError, lines: dict[PathKey, int]) -> list[Problem]:
    vocab = _vocabulary()
    raw: list[tuple[PathKey, str, dict[str, Any]]] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        if loc[:2] == ("cluster", "cni") and loc[2:3] in ((_CNI_NAME,), (_CNI_CHAIN,)):
            loc = loc[:2] + loc[3:]
        if loc[:2] == ("cluster", "masquerade") and loc[2:3] in ((_MASQ_FLAG,),
                                                                 (_MASQ_AGENT,)):
            loc = loc[:2] + loc[3:]
        key_error = bool(loc) and loc[-1] == "[key]"
        loc = tuple(p for p in loc if p != "[key]")
        kind = "key_" + err["type"] if key_error else err["type"]
        raw.append((loc, kind, err))
    # a union of a string and a list (`pod-cidr`): when the list's entries are wrong, the
    # string branch's "must be a string (got a list)" only adds noise
    deeper = {loc[:n] for loc, _, _ in raw for n in range(len(loc))}
    raw = [r for r in raw if not (r[1] in _EXPECTED and isinstance(r[2].get("input"), list)
                                  and r[0] in deeper)]
    suggested: set[PathKey] = set()  # (parent..., key) that an unknown key was close to
    for loc, kind, _ in raw:
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), vocab, n=1, cutoff=0.6)
            if close:
                suggested.add((*loc[:-1], close[0]))
    expected: dict[PathKey, list[str]] = {}
    got: dict[PathKey, Any] = {}
    messages: list[tuple[PathKey, str]] = []
    for loc, kind, err in raw:
        value = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            msg = f"unknown key {show(key)}"
            close = difflib.get_close_matches(key, vocab, n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
        elif kind == "missing":
            if loc in suggested:
                continue  # the unknown key next to it says "did you mean" this one
            if loc and isinstance(loc[-1], int):
                msg = "missing; write two entries, one per endpoint"
            else:
                msg = f"required key {loc[-1]!r} is missing"
        elif kind == "too_long":
            msg = "too many entries; write two, one per endpoint"
        elif kind in ("literal_error", "key_literal_error") and loc and (
                loc[-1] == "kind" or loc[-2:-1] == ("kinds",)):
            msg = f"unknown kind {show(value)}; one of {', '.join(NAMES)}"
        elif kind == "literal_error" and loc == ("cluster", "routing"):
            msg = f"unknown routing {show(value)}; one of {', '.join(datapaths.ROUTING)}"
        elif kind == "literal_error" and loc == ("cluster", "cni"):
            names = [c for c in datapaths.CNI if c != datapaths.CONFLIST]
            msg = (f"unknown cni {show(value)}; one of {', '.join(names)}, or a mapping "
                   "{conflist: FILE, bin-dir: DIR}")
        elif kind in _EXPECTED:
            if loc not in expected:
                expected[loc] = []
                got[loc] = value
                messages.append((loc, ""))  # filled in below, in first-seen order
            if _EXPECTED[kind] not in expected[loc]:
                expected[loc].append(_EXPECTED[kind])
            continue
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(value, dict | list):
                msg = f"{msg} (got {show(value)})"
        messages.append((loc, msg))
    problems: list[Problem] = []
    for loc, msg in messages:
        if not msg:
            value = got[loc]
            shown = (f"got a {_yaml_type(value)}" if isinstance(value, dict | list)
                     else f"got {show(value)}")
            msg = f"must be {' or '.join(expected[loc])} ({shown})"
        problem = _locate(Problem(render_path(loc), msg), lines, loc)
        if problem not in problems:
            problems.append(problem)
    return problems


def _yaml_type(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list"


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the union member's type name ("str", "int") into locations
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "tuple[str, str]",
                                               "list[EnvVar]", "list[str]"} or part.startswith(
                                                   ("function-", "constrained-")))


def _locate(problem: Problem, lines: dict[PathKey, int], loc: PathKey | None = None) -> Problem:
    if problem.line is not None:
        return problem
    key = loc if loc is not None else _parse_path(problem.path)
    while key and key not in lines:
        key = key[:-1]
    return Problem(problem.path, problem.message, lines.get(key))


def _parse_path(path: str) -> PathKey:
    parts: list[str | int] = []
    for token in re.findall(r"\[(\d+)\]|([^.\[\]]+)", path):
        index, name = token
        parts.append(int(index) if index else name)
    return tuple(parts)


# --- semantic problems -------------------------------------------------------------------

def _name_problem(name: str, what: str) -> str | None:
    if not NAME_RE.fullmatch(name):
        return (f"{what} name {show(name)} must be lowercase letters, digits and '-', starting "
                "and ending with a letter or digit (it becomes a Docker container name)")
    if len(name) > NAME_MAX:
        return f"{what} name {show(name)} is longer than {NAME_MAX} characters"
    return None


def parse_endpoint(endpoint: str) -> tuple[str, str] | None:
    node, sep, iface = endpoint.partition(":")
    if not sep or not node or not iface or ":" in iface:
        return None
    return node, iface


Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
MIN_PREFIX = {IPV4: 8, IPV6: 16}  # broader than this is a typo, not a lab
MAX_LINK_PREFIX = {IPV4: 30, IPV6: 127}  # room for the two ends of a link
IPV6_MIN_MTU = 1280


def _network(text: str) -> Net | str:
    """A CIDR of either family, or the reason it is not a usable one."""
    family = family_of(text)
    cls = ipaddress.IPv6Network if family == IPV6 else ipaddress.IPv4Network
    try:
        net = cls(text, strict=True)
    except ValueError as exc:
        return f"{show(text)} is not an {TITLE[family]} network: {show(str(exc), 100)[1:-1]}"
    return _usable(net, text) or net


def _usable(net: Net, text: str) -> str | None:
    family = family_of(net)
    if net.prefixlen < MIN_PREFIX[family]:
        return (f"{show(text)} is too broad (/{net.prefixlen}); use /{MIN_PREFIX[family]} "
                "or longer")
    bad = net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved
    if isinstance(net, ipaddress.IPv6Network):
        bad = bad or net.is_site_local or net.network_address.ipv4_mapped is not None
    else:
        bad = bad or net.network_address.packed[0] == 0
    if bad:
        return f"{show(text)} is a loopback, multicast, link-local or reserved range"
    return None


def _interface(text: str, family: Family = IPV4) -> Iface | str:
    cls = ipaddress.IPv6Interface if family == IPV6 else ipaddress.IPv4Interface
    try:
        iface = cls(text)
    except ValueError as exc:
        return (f"{show(text)} is not an {TITLE[family]} address with prefix length: "
                f"{show(str(exc), 100)[1:-1]}")
    if "/" not in text:
        return (f"{show(text)} needs a prefix length, e.g. {iface.ip}/"
                f"{DEFAULT_MASKS[family]}")
    limit = MAX_LINK_PREFIX[family]
    if iface.network.prefixlen > limit:
        return (f"{show(text)}: /{iface.network.prefixlen} leaves no room for two hosts; "
                f"use /{limit} or shorter")
    if family == IPV4 and iface.ip in (iface.network.network_address,
                                       iface.network.broadcast_address):
        return f"{show(text)} is the network or broadcast address of its subnet"
    if family == IPV6 and iface.network.prefixlen < 127 and (
            iface.ip == iface.network.network_address):
        return (f"{show(text)} is the subnet-router anycast address of its subnet (all host "
                "bits zero)")
    return _usable(iface.network, text) or iface


def _semantic_problems(spec: TopologyFile) -> Iterator[Problem]:
    body = spec.topology
    if problem := _name_problem(spec.name, "lab"):
        yield Problem("name", problem)

    kinds: dict[str, str] = {}
    for name, node in body.nodes.items():
        path = f"topology.nodes.{name}"
        if problem := _name_problem(name, "node"):
            yield Problem(path, problem)
        kind = node.kind or body.defaults.kind
        if kind is None:
            yield Problem(path, "no kind; set `kind:` (one of " + ", ".join(NAMES)
                          + ") or topology.defaults.kind")
        else:
            kinds[name] = kind
        if node.image is not None and (problem := _image_problem(node.image)):
            yield Problem(f"{path}.image", problem)
        for key in node.labels:
            if key.startswith(RESERVED_LABEL_PREFIX):
                yield Problem(f"{path}.labels.{key}", f"label keys under {RESERVED_LABEL_PREFIX!r}"
                              " are reserved for podlab")
    for where, spec_labels in [("topology.defaults", body.defaults.labels)] + [
            (f"topology.kinds.{k}", v.labels) for k, v in body.kinds.items()]:
        image = body.defaults.image if where == "topology.defaults" else body.kinds[
            where.rsplit(".", 1)[1]].image  # type: ignore[index]
        if image is not None and (problem := _image_problem(image)):
            yield Problem(f"{where}.image", problem)
        for key in spec_labels:
            if key.startswith(RESERVED_LABEL_PREFIX):
                yield Problem(f"{where}.labels.{key}",
                              f"label keys under {RESERVED_LABEL_PREFIX!r} are reserved for podlab")
    if not body.nodes:
        yield Problem("topology.nodes", "a lab needs at least one node")

    yield from _link_problems(spec, kinds)
    yield from _pod_problems(spec, kinds)
    yield from _cidr_problems(spec, kinds)
    yield from _datapath_problems(spec)
    if not any(p for p in _link_problems(spec, kinds)):
        yield from _reachability_problems(spec, kinds)
        if not any(True for _ in _cidr_problems(spec, kinds)):
            yield from _segment_problems(spec, kinds)
    yield from _container_name_problems(spec)
    yield from service_problems(spec, show, _network)


def _datapath_problems(spec: TopologyFile) -> Iterator[Problem]:
    """The format knows more routing and CNI values than podlab implements so far
    (harness.datapaths says which)."""
    cluster = spec.cluster
    for key, value, choices in (("routing", cluster.routing, datapaths.ROUTING),
                                ("cni", datapaths.cni_value(cluster.cni), datapaths.CNI)):
        choice = choices[value]
        if choice.impl is None:
            shown = "{conflist: ..., bin-dir: ...}" if value == datapaths.CONFLIST else value
            yield Problem(f"cluster.{key}", f"{key}: {shown} is not implemented yet "
                          f"({choice.description}); this podlab implements {key}: "
                          + " or ".join(datapaths.implemented(choices)))
        elif IPV6 in cluster.families and key == "routing" and (
                value != datapaths.DEFAULT_ROUTING):
            # BIRD's IPv6 channels are not written yet (every CNI takes both families)
            shown = "{conflist: ..., bin-dir: ...}" if value == datapaths.CONFLIST else value
            yield Problem(f"cluster.{key}", f"{key}: {shown} is IPv4-only so far; a cluster "
                          f"with IPv6 (pod-cidr) takes routing: {datapaths.DEFAULT_ROUTING}")


def _link_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    used: dict[tuple[str, str], str] = {}
    for i, link in enumerate(spec.topology.links):
        ends = []
        for j, endpoint in enumerate(link.endpoints):
            path = f"topology.links[{i}].endpoints[{j}]"
            parsed = parse_endpoint(endpoint)
            if parsed is None:
                yield Problem(path, f"{show(endpoint)} is not of the form 'node:interface'")
                continue
            node, iface = parsed
            if node not in spec.topology.nodes:
                close = difflib.get_close_matches(node, list(spec.topology.nodes), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                yield Problem(path, f"unknown node {show(node)}{hint}")
                continue
            if len(iface) > IFNAME_MAX:
                yield Problem(path, f"interface name {show(iface)} is {len(iface)} characters; "
                              f"Linux allows at most {IFNAME_MAX}")
            elif not IFNAME_RE.fullmatch(iface):
                yield Problem(path, f"interface name {show(iface)} may hold only letters, digits, "
                              "'-' and '_'")
            elif iface in RESERVED_IFNAMES:
                yield Problem(path, f"interface name {show(iface)} is reserved by podlab "
                              f"({', '.join(sorted(RESERVED_IFNAMES))})")
            elif iface.startswith("veth") or iface.startswith("pv-"):
                yield Problem(path, f"interface names starting 'veth' or 'pv-' are reserved for "
                              f"pod links, got {show(iface)}")
            if (node, iface) in used:
                yield Problem(path, f"{show(endpoint)} is already used by {used[(node, iface)]}")
            else:
                used[(node, iface)] = f"topology.links[{i}]"
            ends.append(node)
        if len(ends) == 2 and ends[0] == ends[1]:
            yield Problem(f"topology.links[{i}].endpoints", f"both ends are on node {ends[0]!r}")
        for family in FAMILIES:
            given = link.addresses(family)
            if given is None or len(ends) != 2:
                continue
            for j, (node, addr) in enumerate(zip(ends, given, strict=True)):
                if kinds.get(node) in SWITCHES and addr is not None:
                    yield Problem(f"topology.links[{i}].{family}[{j}]", f"{show(node)} is a "
                                  "switch: its ports take no address; write null")
                if kinds.get(node) not in SWITCHES and addr is None:
                    yield Problem(f"topology.links[{i}].{family}[{j}]", f"{show(node)} needs an "
                                  f"address when {family} is given")
        if link.netem and link.netem.jitter is not None and link.netem.delay is None:
            yield Problem(f"topology.links[{i}].netem.jitter", "jitter needs a delay")
        if link.netem:
            for key in ("delay", "jitter"):
                value = getattr(link.netem, key)
                if value is not None and parse_ms(value) is None:
                    yield Problem(f"topology.links[{i}].netem.{key}",
                                  f"{show(value)} is not a duration like '10ms' or '1.5s' "
                                  f"(0 to {MAX_DELAY_MS / 1000:g}s)")


def parse_ms(value: str | float) -> float | None:
    """'10ms', '1.5s', '250us' or a number of milliseconds -> milliseconds.

    None for anything else: negative, not finite, a bool, or beyond MAX_DELAY_MS.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        ms = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,9})?)\s*(us|ms|s)?\s*", value)
        if not match:
            return None
        number, unit = float(match.group(1)), match.group(2) or "ms"
        ms = number * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    else:
        return None
    return ms if 0 <= ms <= MAX_DELAY_MS else None


def _image_problem(image: str) -> str | None:
    if len(image) > 255 or not IMAGE_RE.fullmatch(image):
        return (f"{show(image)} is not a Docker image reference like 'podlab/app' or "
                "'registry:5000/team/app:1.2'")
    return None


def _pod_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    for name, pod in spec.pods.items():
        path = f"pods.{name}"
        if problem := _name_problem(name, "pod"):
            yield Problem(path, problem)
        if pod.node not in spec.topology.nodes:
            close = difflib.get_close_matches(pod.node, list(spec.topology.nodes), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield Problem(f"{path}.node", f"unknown node {show(pod.node)}{hint}")
        elif (pod.node in kinds and not kind(kinds[pod.node]).hosts_pods):
            yield Problem(f"{path}.node", f"{show(pod.node)} is of kind {kinds[pod.node]}; "
                          "pods run only on k8s-node nodes")
        if not pod.containers:
            yield Problem(f"{path}.containers", "a pod needs at least one container")
        seen: set[str] = set()
        for i, container in enumerate(pod.containers):
            cpath = f"{path}.containers[{i}].name"
            if problem := _name_problem(container.name, "container"):
                yield Problem(cpath, problem)
            if container.name in seen:
                yield Problem(cpath, f"two containers named {show(container.name)} in pod "
                              f"{show(name)}")
            seen.add(container.name)
            base = f"{path}.containers[{i}]"
            if problem := _image_problem(container.image):
                yield Problem(f"{base}.image", problem)
            for key in ("command", "args"):
                for k, word in enumerate(getattr(container, key) or ()):
                    if "\0" in word:
                        yield Problem(f"{base}.{key}[{k}]", "contains a NUL character")
            for k, env in enumerate(container.env):
                if not env.name or "=" in env.name or "\0" in env.name:
                    yield Problem(f"{base}.env[{k}].name", f"{show(env.name)} is not an "
                                  "environment variable name (non-empty, no '=' or NUL)")
                if "\0" in env.value:
                    yield Problem(f"{base}.env[{k}].value", "contains a NUL character")
        for key in pod.labels:
            if key.startswith(RESERVED_LABEL_PREFIX):
                yield Problem(f"{path}.labels.{key}",
                              f"label keys under {RESERVED_LABEL_PREFIX!r} are reserved for podlab")


PrefixMap = dict[Family, tuple[str, Net]]  # family -> (YAML path, network)


def _prefix_entries(key: str, value: Prefixes | None) -> list[tuple[str, str]]:
    """(YAML path, text) of each prefix of a one-per-family value."""
    if isinstance(value, str):
        return [(f"cluster.{key}", value)]
    return [(f"cluster.{key}[{i}]", text) for i, text in enumerate(value or ())]


def _family_prefixes(key: str, value: Prefixes | None) -> tuple[PrefixMap, list[Problem], bool]:
    """A one-prefix-per-family value parsed: its networks by family, its problems, and
    whether every entry was usable (only then do cross-key family checks make sense)."""
    out: PrefixMap = {}
    problems: list[Problem] = []
    if isinstance(value, list) and not value:
        problems.append(Problem(f"cluster.{key}", "give a prefix, or one per family: "
                                "[IPv4 prefix, IPv6 prefix]"))
    for path, text in _prefix_entries(key, value):
        net = _network(text)
        if isinstance(net, str):
            problems.append(Problem(path, net))
            continue
        family = family_of(net)
        if family in out:
            problems.append(Problem(path, f"{net} is a second {TITLE[family]} prefix (the first "
                                    f"is {out[family][1]}); give one prefix per family"))
            continue
        out[family] = (path, net)
    return out, problems, not problems


def _underlay_value(cluster: Cluster) -> Prefixes:
    """underlay-cidr as written, or its default for the families of pod-cidr."""
    if "underlay_cidr" in cluster.model_fields_set:
        return cluster.underlay_cidr
    defaults = cluster.underlay_cidrs
    return defaults[0] if len(defaults) == 1 else list(defaults)


def _example(values: Iterable[str]) -> str:
    shown = list(values)
    return shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"


def _families_text(prefixes: PrefixMap) -> str:
    return " and ".join(TITLE[f] for f in prefixes) or "none"


def _cidr_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    cluster = spec.cluster
    pods, problems, pods_ok = _family_prefixes("pod-cidr", cluster.pod_cidr)
    yield from problems
    unders, problems, unders_ok = _family_prefixes("underlay-cidr", _underlay_value(cluster))
    yield from problems
    # the IPv4 service CIDR is the Services' business (harness.model.services): its overlaps
    # and room are checked there; here, its shape per family
    services, problems, services_ok = _family_prefixes(
        "service-cidr", cluster.service_cidr if "service_cidr" in cluster.model_fields_set
        else None)
    yield from problems
    if pods_ok and unders_ok and set(unders) != set(pods):
        yield Problem("cluster.underlay-cidr", f"is {_families_text(unders)} but pod-cidr is "
                      f"{_families_text(pods)}; give one underlay prefix per family of "
                      "pod-cidr, e.g. " + _example(DEFAULT_UNDERLAY[f] for f in pods))
    if pods_ok and services_ok:
        for family, (path, net) in services.items():
            if family not in pods:
                yield Problem(path, f"{net} is {TITLE[family]} but pod-cidr has no "
                              f"{TITLE[family]} prefix; give one service prefix per family of "
                              "pod-cidr")

    k8s_nodes = [n for n, k in kinds.items() if kind(k).hosts_pods]
    counts: dict[str, int] = {}
    for pod in spec.pods.values():
        if not pod.host_network:  # those take the node's address, not one of its CIDR
            counts[pod.node] = counts.get(pod.node, 0) + 1
    for family, (path, pod_net) in pods.items():
        mask = cluster.node_mask_of(family)
        mask_key = "cluster.node-mask-v6" if family == IPV6 else "cluster.node-mask"
        if mask < pod_net.prefixlen:
            what = "the IPv6 pod CIDR" if family == IPV6 else "the pod CIDR"
            yield Problem(mask_key, f"/{mask} is larger than {what} {pod_net}")
            continue
        capacity = 2 ** (mask - pod_net.prefixlen)
        if len(k8s_nodes) > capacity:
            yield Problem(path, f"{pod_net} holds {capacity} node CIDRs of /{mask} but there "
                          f"are {len(k8s_nodes)} k8s-nodes")
        per_node = room(mask, family) - 1  # the gateway takes one
        for node, count in counts.items():
            if count > per_node:
                yield Problem(mask_key, f"node {show(node)} has {count} pods but a /{mask} node "
                              f"CIDR holds {per_node}")
    for family, (_, under) in unders.items():
        if family == IPV4 and cluster.segment_mask is not None and (
                cluster.segment_mask < under.prefixlen):
            yield Problem("cluster.segment-mask", f"/{cluster.segment_mask} is larger than the "
                          f"underlay CIDR {under}")
    for family, (path, net) in services.items():
        if family == IPV4:
            continue
        for what, other in (("pod CIDR", pods.get(family)), ("underlay CIDR", unders.get(family))):
            if other and net.overlaps(other[1]):  # type: ignore[arg-type]
                yield Problem(path, f"{net} overlaps the {what} {other[1]}")

    yield from _link_address_problems(spec, pods, pods_ok)
    for family, (path, under) in unders.items():
        pod = pods.get(family)
        if pod and under.overlaps(pod[1]):  # type: ignore[arg-type]
            yield Problem(path, f"{under} overlaps the pod CIDR {pod[1]}")
    yield from _masq_agent_problems(cluster, pods)
    if IPV6 in pods:  # below 1280 the kernel turns IPv6 off on the link (RFC 8200)
        for i, link in enumerate(spec.topology.links):
            if link.mtu is not None and link.mtu < IPV6_MIN_MTU:
                yield Problem(f"topology.links[{i}].mtu", f"{link.mtu} is below IPv6's "
                              f"minimum MTU {IPV6_MIN_MTU}; a cluster with IPv6 needs at least "
                              "that on every link")


def _masq_agent_problems(cluster: Cluster, pods: PrefixMap) -> Iterator[Problem]:
    """What ip-masq-agent itself refuses in its config: too many CIDRs, a CIDR that does
    not parse or is not aligned to its block; and an IPv6 one, or a cluster with IPv6
    (podlab applies the agent's config in IPv4; `masquerade: true` covers both families)."""
    masq = cluster.masquerade
    if not isinstance(masq, MasqAgentConfig):
        return
    if IPV6 in pods:
        yield Problem("cluster.masquerade", "ip-masq-agent's config is applied in IPv4 only; "
                      "a cluster with IPv6 (pod-cidr) takes masquerade: true or false")
    if masq.non_masquerade_cidrs is None:
        return
    base = "cluster.masquerade.nonMasqueradeCIDRs"
    cidrs = masq.non_masquerade_cidrs
    if len(cidrs) > masq.cidr_limit:
        yield Problem(base, f"{len(cidrs)} CIDRs, but cidrLimit is {masq.cidr_limit}")
    for i, text in enumerate(cidrs):
        try:
            ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            yield Problem(f"{base}[{i}]", f"{show(text)} is not an aligned IPv4 CIDR: "
                          f"{show(str(exc), 100)[1:-1]}")


def _link_address_problems(spec: TopologyFile, pods: PrefixMap,
                           pods_ok: bool) -> Iterator[Problem]:
    """Each explicit link address: of its key's family (and of a family the cluster has),
    usable, used once, outside the pod CIDR, both ends in one subnet."""
    explicit: dict[str, str] = {}
    for i, link in enumerate(spec.topology.links):
        for family in FAMILIES:
            ends = link.addresses(family)
            if ends is None:
                continue
            key = f"topology.links[{i}].{family}"
            if pods_ok and family not in pods:
                yield Problem(key, f"the cluster has no {TITLE[family]}: pod-cidr is "
                              f"{_families_text(pods)} only; add an {TITLE[family]} prefix to "
                              f"pod-cidr for dual-stack, or drop {family}")
                continue
            ifaces = []
            for j, text in enumerate(ends):
                if text is None:
                    continue
                path = f"{key}[{j}]"
                got, other = family_of(text), ends[1 - j]
                if got != family:
                    if other and family_of(other) == family:
                        yield Problem(path, f"{show(text)} is {TITLE[got]} but the other end, "
                                      f"{show(other)}, is {TITLE[family]}: both ends of a link "
                                      f"are of one family ({TITLE[got]} addresses go under "
                                      f"{got}:)")
                    else:
                        yield Problem(path, f"{show(text)} is an {TITLE[got]} address; write "
                                      f"it under {got}:")
                    continue
                parsed = _interface(text, family)
                if isinstance(parsed, str):
                    yield Problem(path, parsed)
                    continue
                ip = str(parsed.ip)
                if ip in explicit:
                    yield Problem(path, f"address {ip} is already used at {explicit[ip]}")
                explicit[ip] = path
                pod = pods.get(family)  # the pod CIDR belongs to pods alone
                if pod and parsed.network.overlaps(pod[1]):  # type: ignore[arg-type]
                    yield Problem(path, f"{text} overlaps cluster.pod-cidr {pod[1]}")
                ifaces.append((path, parsed))
            if len(ifaces) == 2 and ifaces[0][1].network != ifaces[1][1].network:
                yield Problem(key, f"{ends[0]} and {ends[1]} are not in one subnet")


def _reachability_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    """Every non-switch node must reach every other one, forwarding only through
    k8s-nodes and routers (a `linux` host does not forward)."""
    if len(kinds) != len(spec.topology.nodes):
        return
    graph = LabGraph.from_links(kinds, [(parse_endpoint(a), parse_endpoint(b))  # type: ignore[misc]
                                        for a, b in (lk.endpoints for lk in spec.topology.links)])
    hosts = [n for n in spec.topology.nodes if not kind(kinds[n]).is_switch]
    if len(hosts) >= 2:
        # From a forwarding anchor, "everyone reaches the anchor" means everyone reaches
        # everyone (through it). A `linux` anchor would wrongly join two nodes that reach
        # each other only through it; with no forwarding node at all, check every pair.
        forwarders = [n for n in hosts if kind(kinds[n]).forwards]
        anchors = forwarders[:1] or hosts
        reported: set[str] = set()
        for anchor in anchors:
            reach = graph.reachable_hosts(anchor)
            for node in hosts:
                if node not in reach and node not in reported and anchor not in reported:
                    reported.add(node)
                    yield Problem(f"topology.nodes.{node}", f"node {show(node)} has no path to "
                                  f"{anchor!r} (traffic passes only through k8s-nodes, "
                                  "routers and switches; a linux host does not forward)")
    for node, name in kinds.items():
        if kind(name).is_switch and not graph.segment_of_switch(node):
            yield Problem(f"topology.nodes.{node}", f"switch {show(node)} has no links")


def _segment_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    """What the plan needs of each L2 segment, in each family of the cluster: one subnet,
    room for its members, and enough underlay blocks for the segments addressed
    automatically."""
    if len(kinds) != len(spec.topology.nodes):
        return
    links = spec.topology.links
    ends = [(parse_endpoint(a), parse_endpoint(b)) for a, b in (lk.endpoints for lk in links)]
    graph = LabGraph.from_links(kinds, ends)  # type: ignore[arg-type]
    cluster = spec.cluster
    seen_twice = False
    for seg in graph.segments:
        seen: set[str] = set()
        for node, iface, li in seg.members:
            if node in seen:
                seen_twice = True
                j = 0 if ends[li][0] == (node, iface) else 1
                given = next((f for f in FAMILIES if (links[li].addresses(f) or (None, None))[j]),
                             None)
                path = (f"topology.links[{li}].{given}[{j}]" if given
                        else f"topology.links[{li}].endpoints[{j}]")
                yield Problem(path, f"node {show(node)} is already attached to this segment "
                              f"({seg.name}); one interface per segment")
            seen.add(node)
    if seen_twice:
        return
    pod_nets = [ipaddress.ip_network(p) for p in cluster.pod_cidrs]
    underlays = {family_of(u): u for u in cluster.underlay_cidrs}
    under_paths = dict(_prefix_entries("underlay-cidr", _underlay_value(cluster)))
    for family in cluster.families:
        yield from _family_segment_problems(spec, graph, ends, family, pod_nets,
                                            underlays[family], under_paths)


def _family_segment_problems(spec: TopologyFile, graph: LabGraph, ends: list[Any],
                             family: Family, pod_nets: list[Net], underlay: str,
                             under_paths: dict[str, str]) -> Iterator[Problem]:
    cluster = spec.cluster
    where: dict[tuple[str, str], tuple[str, Iface | None]] = {}
    for i, link in enumerate(spec.topology.links):
        given = link.addresses(family)
        for j, end in enumerate(ends[i]):
            text = given[j] if given else None
            where[end] = (f"topology.links[{i}].{family}[{j}]" if text else
                          f"topology.links[{i}].endpoints[{j}]",
                          ipaddress.ip_interface(text) if text else None)
    explicit: list[tuple[str, Net]] = []
    auto: list[int] = []  # members of each segment addressed automatically
    for seg in graph.segments:
        given = [(where[(n, i)][0], where[(n, i)][1]) for n, i, _ in seg.members
                 if where[(n, i)][1] is not None]
        if given:
            first_path, first = given[0]
            subnet = first.network  # type: ignore[union-attr]
            for path, iface in given[1:]:
                if iface.network != subnet:  # type: ignore[union-attr]
                    yield Problem(path, f"{iface} is not in {subnet}, the subnet of its "
                                  f"segment ({seg.name}, set at {first_path})")
            for other_path, other in explicit:
                if other.overlaps(subnet) and other != subnet:  # type: ignore[arg-type]
                    yield Problem(first_path, f"{subnet} overlaps {other} at {other_path}")
                elif other == subnet:
                    yield Problem(first_path, f"subnet {subnet} is already used by another "
                                  f"segment, at {other_path}")
            explicit.append((first_path, subnet))
            prefix = subnet.prefixlen
        else:
            auto.append(len(seg.members))
            if cluster.segment_mask is None or family != IPV4:
                continue  # sized to fit by addressing.allocate
            prefix = cluster.segment_mask
        holds = room(prefix, family)
        if len(seg.members) > holds:
            path = (where[(seg.members[0][0], seg.members[0][1])][0] if given
                    else "cluster.segment-mask")
            yield Problem(path, f"segment {seg.name} has {len(seg.members)} members but a "
                          f"/{prefix} holds {holds} addresses")
    taken = [*pod_nets, *(net for _, net in explicit)]
    try:
        allocate(underlay, taken, auto, cluster.segment_mask if family == IPV4 else None)
    except NoRoom as exc:
        path = next(p for p, text in under_paths.items() if family_of(text) == family)
        yield Problem(path, str(exc))


def _container_name_problems(spec: TopologyFile) -> Iterator[Problem]:
    owners: dict[str, str] = {}
    candidates = [(f"topology.nodes.{n}", n) for n in spec.topology.nodes]
    for pod_name, pod in spec.pods.items():
        candidates.append((f"pods.{pod_name}", pod_name))
        candidates += [(f"pods.{pod_name}.containers[{i}]", f"{pod_name}-{c.name}")
                       for i, c in enumerate(pod.containers)]
    for path, suffix in candidates:
        owner = owners.get(suffix)
        if owner is not None and owner.rsplit("[", 1)[0] == path.rsplit("[", 1)[0] != path:
            continue  # two containers of one name in one pod: reported by _pod_problems
        if owner is not None and owner != path:
            yield Problem(path, f"its container name podlab-{spec.name}-{suffix} collides with "
                          f"{owners[suffix]}")
        owners.setdefault(suffix, path)
