"""Semantic problems: what a structurally valid topology file means, checked all at once
(names, interfaces, CIDRs per family, link addresses, reachability, segments, the
datapath's choices, Services), each problem with its YAML path.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness import datapaths
from harness.errors import Problem
from harness.kinds import NAMES, kind
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
from harness.model.containers import container_problems, user_nodes
from harness.model.fabric import fabric_problems
from harness.model.graph import LabGraph
from harness.model.schema import (
    DEFAULT_UNDERLAY,
    IFNAME_MAX,
    IFNAME_RE,
    IMAGE_RE,
    MAX_DELAY_MS,
    NAME_MAX,
    NAME_RE,
    RESERVED_IFNAMES,
    RESERVED_LABEL_PREFIX,
    SWITCHES,
    Cluster,
    CniChain,
    MasqAgentConfig,
    Prefixes,
    TopologyFile,
)
from harness.model.services import service_problems
from harness.model.structure import show
from harness.model.yamlsrc import resolve_path

# Docker's container names (and so containerlab's node names): letters of either case,
# digits, '_', '.', '-', starting with a letter or digit
DOCKER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def _node_name_problem(name: str, spec: TopologyFile) -> str | None:
    node = spec.topology.nodes[name]
    if (node.kind == "switch" and node.network_mode
            and node.network_mode.startswith("container:")):
        # containerlab's bridge inside a node's namespace: named <bridge>|<node>, no container
        bridge, sep, owner = name.partition("|")
        if not sep:
            return None
        if owner != node.network_mode.removeprefix("container:"):
            return (f"a bridge in {node.network_mode}'s namespace is named <bridge>|<node>, "
                    f"and {show(name)} names another node")
        name = bridge
        if len(name) > IFNAME_MAX:
            return f"bridge name {show(name)} is longer than {IFNAME_MAX} characters"
    if not DOCKER_NAME_RE.fullmatch(name):
        return (f"node name {show(name)} may hold letters, digits, '_', '.' and '-', starting "
                "with a letter or digit (it becomes a Docker container name)")
    if len(name) > NAME_MAX:
        return f"node name {show(name)} is longer than {NAME_MAX} characters"
    return None


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


def semantic_problems(spec: TopologyFile) -> Iterator[Problem]:
    body = spec.topology
    if problem := _name_problem(spec.name, "lab"):
        yield Problem("name", problem)

    kinds: dict[str, str] = {}
    for name, node in body.nodes.items():
        path = f"topology.nodes.{name}"
        if problem := _node_name_problem(name, spec):
            yield Problem(path, problem)
        kind = node.kind or body.defaults.kind
        if kind is None:
            yield Problem(path, "no kind; set `kind:` (one of " + ", ".join(NAMES)
                          + ") or topology.defaults.kind")
        else:
            kinds[name] = kind
        if node.image is not None and (problem := _image_problem(node.image)):
            yield Problem(f"{path}.image", problem)
    # reserved label keys: said where they are written (harness.model.clab), as the
    # nodes inherit them
    if not body.nodes:
        yield Problem("topology.nodes", "a lab needs at least one node")

    yield from _link_problems(spec, kinds)
    yield from _pod_problems(spec, kinds)
    yield from _cidr_problems(spec, kinds)
    yield from _datapath_problems(spec)
    yield from _bgp_problems(spec, kinds)
    yield from fabric_problems(spec, kinds)
    if not any(p for p in _link_problems(spec, kinds)):
        yield from _reachability_problems(spec, kinds)
        if not any(True for _ in _cidr_problems(spec, kinds)):
            yield from _segment_problems(spec, kinds)
    yield from _container_name_problems(spec)
    yield from service_problems(spec, show, _network)
    yield from container_problems(spec, kinds)


def _bgp_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    """`cluster.bgp` (read with routing: bgp only, so a variant may switch routing):
    route reflectors named, each a k8s-node or a router, and only in that mode."""
    bgp = spec.cluster.bgp
    if bgp.mode == "route-reflectors" and not bgp.reflectors:
        yield Problem("cluster.bgp.reflectors", "route-reflectors needs at least one "
                      "reflector: a k8s-node or a router")
    if bgp.mode != "route-reflectors" and bgp.reflectors:
        yield Problem("cluster.bgp.reflectors", f"reflectors apply to mode: route-reflectors, "
                      f"not {bgp.mode}")
    for i, name in enumerate(bgp.reflectors):
        if name not in kinds:
            yield Problem(f"cluster.bgp.reflectors[{i}]", f"no node {name!r} in the topology")
        elif not kind(kinds[name]).pod_routes:
            yield Problem(f"cluster.bgp.reflectors[{i}]", f"{name} is a {kinds[name]}: a "
                          "reflector is a k8s-node or a router")
    if bgp.reflectors and len(set(bgp.reflectors)) != len(bgp.reflectors):
        yield Problem("cluster.bgp.reflectors", "a reflector is named twice")


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


def _link_problems(spec: TopologyFile, kinds: dict[str, str]) -> Iterator[Problem]:
    used: dict[tuple[str, str], str] = {}
    users = user_nodes(spec, kinds)  # their interfaces are named as containerlab allows
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
            elif node in users:
                if iface in ("eth0", "lo") and (iface == "lo" or spec.topology.nodes[
                        node].network_mode != "none"):
                    yield Problem(path, f"interface name {show(iface)} is the node's own "
                                  "(eth0: the management interface, unless network-mode: "
                                  "none)")
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
    not parse or is not aligned to its block, and an IPv6 one when IPv6 is not enabled
    (podlab runs the agent with --enable-ipv6 exactly when the cluster has IPv6)."""
    masq = cluster.masquerade
    if not isinstance(masq, MasqAgentConfig) or masq.non_masquerade_cidrs is None:
        return
    base = "cluster.masquerade.nonMasqueradeCIDRs"
    cidrs = masq.non_masquerade_cidrs
    if len(cidrs) > masq.cidr_limit:
        yield Problem(base, f"{len(cidrs)} CIDRs, but cidrLimit is {masq.cidr_limit}")
    for i, text in enumerate(cidrs):
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            yield Problem(f"{base}[{i}]", f"{show(text)} is not an aligned CIDR: "
                          f"{show(str(exc), 100)[1:-1]}")
            continue
        if net.version == 6 and IPV6 not in pods:
            yield Problem(f"{base}[{i}]", f"{show(text)} is IPv6, but the cluster has no "
                          "IPv6 (pod-cidr), so the agent runs without --enable-ipv6 and "
                          "refuses it")


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
    # a user's node routes as its own config says: it may carry traffic, and its own
    # paths are not podlab's to check
    users = user_nodes(spec, kinds)
    graph = LabGraph.from_links({n: "router" if n in users else k for n, k in kinds.items()},
                                [(parse_endpoint(a), parse_endpoint(b))  # type: ignore[misc]
                                 for a, b in (lk.endpoints for lk in spec.topology.links)])
    hosts = [n for n in spec.topology.nodes if not kind(kinds[n]).is_switch and n not in users]
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
    users = user_nodes(spec, kinds)  # not addressed by podlab: as many ports as they like
    for seg in graph.segments:
        seen: set[str] = set()
        for node, iface, li in seg.members:
            if node in seen and node not in users:
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


def cni_path_problems(spec: TopologyFile, path: Path | None) -> Iterator[Problem]:
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
