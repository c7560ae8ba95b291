"""The topology file's format: pydantic models of containerlab's keys plus podlab's
`cluster:`, `pods:` and `services:`, and the constants of the format (names, defaults).
pydantic checks structure with them and yields the JSON Schema for editors; what the
values mean is checked afterwards (harness.model.validation).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    Tag,
    field_validator,
)

from harness import datapaths, labels
from harness.kinds import KINDS
from harness.model.addressing import (
    IPV4,
    IPV6,
    Family,
    family_of,
)

SWITCHES = frozenset(k.name for k in KINDS.values() if k.is_switch)

Kind = Literal["k8s-node", "router", "switch", "linux"]
# every value the format knows (harness.datapaths says which are implemented)
Routing = Literal["static", "bgp", "fabric"]
BgpMode = Literal["node-mesh", "route-reflectors", "per-link"]
CALICO_AS = 64512  # Calico's default AS number (its BGPConfiguration's asNumber)
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
    mtu: Int | None = Field(None, ge=576, le=65535)
    netem: Netem | None = None
    mac: tuple[str | None, str | None] | None = Field(
        None, description="MAC addresses of the two ends (containerlab's endpoint `mac`)")

    def addresses(self, family: Family) -> tuple[str | None, str | None] | None:
        """The ends' explicit addresses of `family` (the `ipv4` or `ipv6` key)."""
        return self.ipv6 if family == IPV6 else self.ipv4


StageName = Literal["create", "create-links", "configure", "healthy", "exit"]


class WaitFor(_Model):
    node: str
    stage: StageName = "create"


class StageExec(_Model):
    command: str
    target: Literal["container", "host"] = "container"
    phase: Literal["on-enter", "on-exit"] = "on-enter"


class Stage(_Model):
    wait_for: list[WaitFor] = Field(default_factory=list, alias="wait-for")
    exec: list[StageExec] = Field(default_factory=list)


class NodeSpec(_Model):
    """A node as containerlab writes one (harness.model.clab merged its defaults, kind and
    group into it). Keys past kind, image and labels make a `linux` node the user's."""

    kind: Kind | None = None
    group: str | None = None  # merged away by harness.model.clab
    image: str | None = None
    image_pull_policy: str | None = Field(None, alias="image-pull-policy")
    labels: dict[str, str] = Field(default_factory=dict)
    cmd: str | None = Field(None, description="the container's command (shell words)")
    entrypoint: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_files: list[str] = Field(default_factory=list, alias="env-files",
                                 description="relative to the topology file")
    binds: list[str] = Field(default_factory=list,
                             description="SRC:DST[:ro], SRC relative to the topology file")
    exec: list[str] = Field(default_factory=list,
                            description="run in order once the node's links are up; a "
                            "failing line fails the deploy")
    user: str | None = None
    hostname: str | None = None
    sysctls: dict[str, str] = Field(default_factory=dict)
    cap_add: list[str] = Field(default_factory=list, alias="cap-add")
    network_mode: str | None = Field(None, alias="network-mode",
                                     description="none or container:<node>")
    startup_delay: Int | None = Field(None, alias="startup-delay", ge=0, le=3600)
    stages: dict[StageName, Stage] = Field(default_factory=dict)
    mgmt_ipv4: str | None = Field(None, alias="mgmt-ipv4")
    mgmt_ipv6: str | None = Field(None, alias="mgmt-ipv6")
    memory: str | None = None
    cpu: Float | None = Field(None, gt=0)


# the keys that make a `linux` node the user's: podlab then starts it as containerlab
# would and leaves its addresses and routes to it
USER_KEYS = ("image", "binds", "exec", "cmd", "entrypoint")


class Mgmt(_Model):
    """containerlab's management network: a Docker network with no way out (internal)."""

    network: str | None = None
    bridge: str | None = None
    ipv4_subnet: str | None = Field(None, alias="ipv4-subnet")
    ipv6_subnet: str | None = Field(None, alias="ipv6-subnet")
    ipv4_range: str | None = Field(None, alias="ipv4-range")
    ipv6_range: str | None = Field(None, alias="ipv6-range")
    ipv4_gw: str | None = Field(None, alias="ipv4-gw")
    ipv6_gw: str | None = Field(None, alias="ipv6-gw")
    mtu: Int | None = Field(None, ge=576, le=65535)


class Dummy(_Model):
    """containerlab's `type: dummy` link: a dummy interface inside one node."""

    node: str
    interface: str
    mtu: Int | None = Field(None, ge=576, le=65535)


class TopologyBody(_Model):
    defaults: NodeSpec = Field(default_factory=NodeSpec)
    kinds: dict[str, NodeSpec] = Field(default_factory=dict)
    groups: dict[str, NodeSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec]
    links: list[Link] = Field(default_factory=list)
    dummies: list[Dummy] = Field(default_factory=list,
                                 description="dummy interfaces (containerlab's type: dummy)")


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
    # dual-stack Services, with Kubernetes' names and rules (harness.model.services)
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = (
        Field(None, alias="ipFamilyPolicy", description="default SingleStack"))
    ip_families: list[Literal["IPv4", "IPv6"]] | None = Field(
        None, alias="ipFamilies", description="default: the cluster's primary family")
    cluster_ips: list[str] | None = Field(
        None, alias="clusterIPs", description="one per family; the first is clusterIP")


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


CNI_NAME_TAG, CNI_CHAIN_TAG = "cni-name", "cni-chain"  # union tags, left out of YAML paths
MASQ_FLAG_TAG, MASQ_AGENT_TAG = "masquerade-flag", "masquerade-agent"
# ip-masq-agent's defaults (cmd/ip-masq-agent): RFC 1918 is left alone, and link-local
# unless masqLinkLocal; its reserved-range list is opt-in (a flag), not a default
MASQ_AGENT_DEFAULT_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
LINK_LOCAL = "169.254.0.0/16"
LINK_LOCAL_V6 = "fe80::/10"


class MasqAgentConfig(_Model):
    """ip-masq-agent's own config file (its ConfigMap's `config`), pasted as is. With it, a
    k8s-node masquerades, as the agent does, every packet it sends or forwards to a
    destination that is not one of its own addresses, except to `nonMasqueradeCIDRs`
    (unset: the agent's default, RFC 1918) and, unless `masqLinkLocal`, 169.254/16; in
    a cluster with IPv6, in ip6tables too (the agent's --enable-ipv6): every IPv6 entry of
    `nonMasqueradeCIDRs` and, unless `masqLinkLocalIPv6`, fe80::/10."""

    non_masquerade_cidrs: list[str] | None = Field(
        None, alias="nonMasqueradeCIDRs",
        description="destinations never masqueraded; unset: 10/8, 172.16/12, 192.168/16")
    masq_link_local: bool = Field(False, alias="masqLinkLocal",
                                  description="masquerade 169.254/16 too")
    masq_link_local_ipv6: bool = Field(False, alias="masqLinkLocalIPv6",
                                       description="masquerade fe80::/10 too")
    cidr_limit: Int = Field(64, alias="cidrLimit", ge=1,
                            description="the most nonMasqueradeCIDRs the agent accepts")
    resync_interval: str | None = Field(None, alias="resyncInterval",
                                        description="accepted; podlab applies the rule once")

    @property
    def exempt(self) -> tuple[str, ...]:
        """Every destination left alone, IPv4's then IPv6's, each in the agent's chain
        order (link-local first, then the config's own, in the config's order)."""
        own = (self.non_masquerade_cidrs if self.non_masquerade_cidrs is not None
               else list(MASQ_AGENT_DEFAULT_CIDRS))
        four = [c for c in own if ":" not in c]
        six = [c for c in own if ":" in c]
        return (*(() if self.masq_link_local else (LINK_LOCAL,)), *four,
                *(() if self.masq_link_local_ipv6 else (LINK_LOCAL_V6,)), *six)


class CniChain(_Model):
    """The user's own CNI plugin chain, called as a container runtime calls it."""

    conflist: str = Field(description="path of a CNI network configuration list (.conflist)")
    bin_dir: str | None = Field(None, alias="bin-dir",
                                description="directory of the plugin binaries")


AS_MAX = 4294967295


class BgpPeer(_Model):
    """A BGP session from k8s-nodes to a router of the user's fabric, as Calico's BGPPeer
    spec writes it (projectcalico.org/v3): with `routing: fabric`, the node runs BIRD and
    announces its pod CIDR to `peerIP` over eBGP (or iBGP when the ASes are equal)."""

    node: str | None = Field(None, description="the k8s-node that peers; unset: every one")
    peer_ip: str = Field(alias="peerIP", description="the router's address, on a link of "
                         "the node")
    as_number: Int = Field(alias="asNumber", ge=1, le=AS_MAX, description="the router's AS")
    local_as_number: Int | None = Field(
        None, alias="localASNumber", ge=1, le=AS_MAX,
        description=f"the node's AS toward this peer; unset: {CALICO_AS}, Calico's "
        "default")

    @property
    def local_as(self) -> int:
        return self.local_as_number or CALICO_AS


class BgpConfig(_Model):
    """How `routing: bgp` speaks BGP. `node-mesh` (the default, Calico's): the k8s-nodes
    in one AS (`as`, Calico's 64512 unless given), an iBGP session between every pair,
    each announcing its pod CIDR; routers do not speak BGP and route from the plan's
    static routes. `route-reflectors`: the k8s-nodes and the `reflectors` (k8s-nodes or
    routers) in one AS, every speaker peering with every reflector only. `per-link`: a
    private AS per speaker (routers too), eBGP on every link and segment."""

    mode: BgpMode = Field("node-mesh", description="node-mesh (Calico's default), "
                          "route-reflectors, or per-link (eBGP on every link)")
    as_number: Int = Field(CALICO_AS, alias="as", ge=1, le=4294967294,
                           description="the cluster's AS (node-mesh, route-reflectors)")
    reflectors: list[str] = Field(
        default_factory=list, description="route-reflectors: the k8s-nodes or routers that "
        "reflect routes to every other speaker")


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
    masquerade: Annotated[Annotated[bool, Tag(MASQ_FLAG_TAG)]
                          | Annotated[MasqAgentConfig, Tag(MASQ_AGENT_TAG)],
                          Discriminator(lambda v: MASQ_AGENT_TAG
                                        if isinstance(v, dict | MasqAgentConfig)
                                        else MASQ_FLAG_TAG)] = Field(
        True, description="true: SNAT pod traffic to anything outside the pod CIDR and the "
        "k8s-nodes' addresses; false: no NAT; or ip-masq-agent's config "
        "{nonMasqueradeCIDRs: [...], masqLinkLocal: false} with the agent's semantics")
    routing: Routing = Field(datapaths.DEFAULT_ROUTING,
                             description="how nodes learn the pod CIDRs: static, bgp, or "
                             "fabric (the user's routers carry them)")
    bgp: BgpConfig = Field(default_factory=BgpConfig,
                           description="with routing: bgp, how BGP is spoken: "
                           "{mode: node-mesh|route-reflectors|per-link, as: N, reflectors: "
                           "[...]}")
    bgp_peers: list[BgpPeer] = Field(
        default_factory=list, alias="bgp-peers",
        description="routing: fabric: BGP sessions from k8s-nodes to the user's routers, "
        "Calico's BGPPeer spec {node, peerIP, asNumber, localASNumber}")
    # a name or a mapping, told apart by type so an error speaks of one of them only
    cni: Annotated[Annotated[CniName, Tag(CNI_NAME_TAG)] | Annotated[CniChain, Tag(CNI_CHAIN_TAG)],
                   Discriminator(lambda v: CNI_CHAIN_TAG if isinstance(v, dict | CniChain)
                                 else CNI_NAME_TAG)] = Field(
        datapaths.DEFAULT_CNI, description="how pods are wired: podlab, bridge, ptp or "
        "{conflist: FILE, bin-dir: DIR}")
    service_cidr: Prefixes = Field(
        DEFAULT_SERVICE[IPV4], alias="service-cidr",
        description="ClusterIPs not given in the file come from here: a prefix, or one per "
        f"family of pod-cidr (unset: {DEFAULT_SERVICE[IPV4]} and {DEFAULT_SERVICE[IPV6]}); "
        "each Service takes its ClusterIPs from its families' prefixes")

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
    mgmt: Mgmt | None = None
    cluster: Cluster = Field(default_factory=Cluster)  # type: ignore[arg-type]
    topology: TopologyBody
    pods: dict[str, Pod] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the file format (for editors: yaml-language-server)."""
    schema = TopologyFile.model_json_schema(by_alias=True)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = "podlab topology"
    return schema
