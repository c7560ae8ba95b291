"""What the file must get right about Services, labels, host networking and ports.

Kubernetes' own rules, with its field names and each problem's YAML path: label syntax,
a selector that selects a pod, port names and ranges, a nodePort inside 30000-32767 and
used once, a hostPort used once per node, a clusterIP inside `cluster.service-cidr`, and
the dual-stack fields (`ipFamilyPolicy`, `ipFamilies`, `clusterIPs`) as the API server
checks and defaults them (`service_families` is the defaulting, shared with the plan). Pure;
called by harness.model.topology's semantic pass (so every problem is reported at once),
which hands over the parsed file and its own helpers (this module does not import it: the
file's classes are duck-typed here).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Any

from harness.errors import Problem
from harness.model.addressing import FAMILIES, IPV4, TITLE, Family, family_of

# the file's parsed classes (harness.model.topology), duck-typed: that module calls this one
TopologyFile = Pod = Service = Any

NAMESPACE = "default"  # every podlab Service and pod lives in one namespace
NODE_PORT_RANGE = (30000, 32767)  # kube-apiserver's default --service-node-port-range
# Kubernetes label syntax: [prefix/]name, name <= 63 of [A-Za-z0-9._-] starting and ending
# alphanumeric; prefix a DNS subdomain; values the same as names, or empty.
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # RFC 1123: port names
_DNS_1035 = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")  # Service names start with a letter
_IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")  # container port names


POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
FAMILY_NAMES = {TITLE[f]: f for f in FAMILIES}  # Kubernetes' "IPv4" -> podlab's "ipv4"

_helpers: dict[str, Callable[..., Any]] = {"show": repr}


def _show(value: object) -> str:
    return str(_helpers["show"](value))


def label_key_problem(key: str) -> str | None:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return (f"label key {_show(key)}: the prefix before '/' must be a DNS subdomain "
                "(lowercase letters, digits, '-' and '.')")
    if not _LABEL_NAME.fullmatch(name):
        return (f"label key {_show(key)}: the name must be 1-63 letters, digits, '-', '_' or "
                "'.', starting and ending with a letter or digit")
    return None


def label_value_problem(key: str, value: str) -> str | None:
    if value and not _LABEL_NAME.fullmatch(value):
        return (f"label value {_show(value)} of {_show(key)}: at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit (or empty)")
    return None


def iana_name_problem(name: str) -> str | None:
    """Kubernetes' IANA_SVC_NAME: what a container port's name (and a named targetPort) is."""
    if not _IANA_SVC_NAME.fullmatch(name) or "--" in name or not re.search("[a-z]", name):
        return (f"{_show(name)} is not a port name: 1-15 lowercase letters, digits and '-', "
                "with at least one letter, no '--', not starting or ending with '-'")
    return None


def selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    """A Service's selector matches a pod when every key=value of it is among the labels."""
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


def named_port(pod: Pod, name: str, protocol: str) -> int | None:
    """The containerPort called `name` (with that protocol) in any of the pod's containers."""
    for container in pod.containers:
        for port in container.ports:
            if port.name == name and port.protocol == protocol:
                return port.container_port
    return None


def service_problems(spec: TopologyFile, show: Callable[[object], str],
                     network: Callable[[str], ipaddress.IPv4Network | str]
                     ) -> Iterator[Problem]:
    """Every problem of the file's Services, labels and ports. `show` renders a user's
    value in a message, `network` parses a CIDR (or says why it is not one)."""
    _helpers.update(show=show, network=network)
    yield from _label_problems(spec)
    yield from _pod_port_problems(spec)
    yield from _service_cidr_problems(spec)
    node_ports: dict[int, str] = {}  # nodePort -> the path that took it first
    cluster_ips: dict[str, str] = {}
    for name, svc in spec.services.items():
        yield from _service_problems(spec, name, svc, node_ports, cluster_ips)


def _label_problems(spec: TopologyFile) -> Iterator[Problem]:
    for pod_name, pod in spec.pods.items():
        for key, value in pod.labels.items():
            path = f"pods.{pod_name}.labels.{key}"
            if problem := label_key_problem(key) or label_value_problem(key, value):
                yield Problem(path, problem)
    for svc_name, svc in spec.services.items():
        for key, value in svc.selector.items():
            path = f"services.{svc_name}.selector.{key}"
            if problem := label_key_problem(key) or label_value_problem(key, value):
                yield Problem(path, problem)


def _pod_port_problems(spec: TopologyFile) -> Iterator[Problem]:
    on_node: dict[tuple[str, int, str], str] = {}  # (node, port, protocol) -> who has it
    for pod_name, pod in spec.pods.items():
        names: dict[str, str] = {}
        ports: dict[tuple[int, str], str] = {}
        for i, container in enumerate(pod.containers):
            for j, port in enumerate(container.ports):
                path = f"pods.{pod_name}.containers[{i}].ports[{j}]"
                if port.name is not None:
                    if problem := iana_name_problem(port.name):
                        yield Problem(f"{path}.name", problem)
                    elif port.name in names:
                        yield Problem(f"{path}.name", f"port name {_show(port.name)} is "
                                      f"already used in this pod, at {names[port.name]}")
                    else:
                        names[port.name] = path
                key = (port.container_port, port.protocol)
                if key in ports:
                    yield Problem(f"{path}.containerPort", f"{port.protocol} port "
                                  f"{port.container_port} is already declared in this pod, at "
                                  f"{ports[key]} (its containers share one network namespace)")
                ports.setdefault(key, path)
                if pod.host_network and port.host_port not in (None, port.container_port):
                    yield Problem(f"{path}.hostPort", f"a hostNetwork pod listens on the node "
                                  f"itself: hostPort must equal containerPort "
                                  f"({port.container_port}) or be left out")
                    continue
                # a hostNetwork pod's container ports are the node's own ports
                taken = port.container_port if pod.host_network else port.host_port
                if taken is None:
                    continue
                where = (f"{path}.containerPort" if pod.host_network and port.host_port is None
                         else f"{path}.hostPort")
                slot = (pod.node, taken, port.protocol)
                if slot in on_node:
                    yield Problem(where, f"{port.protocol} port {taken} on node "
                                  f"{_show(pod.node)} is already taken by {on_node[slot]}")
                else:
                    on_node[slot] = where


def service_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    if "network" in _helpers:
        return _helpers["network"](text)  # type: ignore[no-any-return]
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        return str(exc)


def service_cidrs(spec: TopologyFile) -> dict[Family, tuple[str, str]]:
    """{family: (YAML path, text)} of the service CIDRs Services take ClusterIPs from
    (service-cidr takes one prefix per family; the first is the primary, as kube-apiserver's
    --service-cluster-ip-range lists it), in the file's order."""
    value = spec.cluster.service_cidr
    if "service_cidr" not in spec.cluster.model_fields_set:
        value = list(spec.cluster.service_cidrs)  # the defaults of the cluster's families
    entries = ([("cluster.service-cidr", value)] if isinstance(value, str)
               else [(f"cluster.service-cidr[{i}]", t) for i, t in enumerate(value)])
    out: dict[Family, tuple[str, str]] = {}
    for path, text in entries:
        out.setdefault(family_of(text), (path, text))
    return out


def service_cidr(spec: TopologyFile) -> tuple[str, str] | None:
    """(YAML path, text) of the primary family's service CIDR; None if it has none."""
    return next(iter(service_cidrs(spec).values()), None)


def given_cluster_ips(svc: Service) -> list[str]:
    """The ClusterIPs the file gives: `clusterIPs`, else `clusterIP` alone (the API
    server's defaulting: clusterIPs[0] is clusterIP)."""
    if svc.cluster_ips:
        return list(svc.cluster_ips)
    return [svc.cluster_ip] if svc.cluster_ip else []


def _ip_family(text: str) -> Family | None:
    try:
        return family_of(ipaddress.ip_address(text))
    except ValueError:
        return None


def service_families(svc: Service, available: tuple[Family, ...]) -> tuple[Family, ...]:
    """The Service's families, primary first, as the API server defaults them on create:
    `ipFamilies` if given, else the families of its ClusterIPs, else the cluster's primary
    one (`available`: the service CIDRs' families, primary first); a PreferDualStack or
    RequireDualStack Service on a dual-stack cluster gets the other family too."""
    families: list[Family] = [FAMILY_NAMES[f] for f in svc.ip_families or ()]
    if not families:
        families = [f for ip in given_cluster_ips(svc) if (f := _ip_family(ip))]
    if not families and available:
        families = [available[0]]
    families = list(dict.fromkeys(families))
    policy = svc.ip_family_policy or "SingleStack"
    if policy != "SingleStack" and len(families) == 1 and len(available) > 1:
        families += [f for f in available if f not in families][:1]
    return tuple(families)


def _service_cidr_problems(spec: TopologyFile) -> Iterator[Problem]:
    if not spec.services and "service_cidr" not in spec.cluster.model_fields_set:
        return  # the default range of a lab without Services takes nothing
    cidrs = service_cidrs(spec)
    wanted = _families_used(spec, tuple(cidrs))
    for family, (path, text) in cidrs.items():
        net = service_network(text)
        if isinstance(net, str):
            continue  # the cluster's CIDR checks say why (harness.model.topology)
        # IPv6 overlaps are the cluster's CIDR checks' (harness.model.topology)
        overlaps = (("pod-cidr", spec.cluster.pod_cidrs),
                    ("underlay-cidr", spec.cluster.underlay_cidrs)) if family == IPV4 else ()
        for key, prefixes in overlaps:
            for other_text in prefixes:
                if family_of(other_text) != family:
                    continue
                other = service_network(other_text)
                if not isinstance(other, str) and other.overlaps(net):
                    yield Problem(path, f"{net} overlaps cluster.{key} {other}")
        for i, link in enumerate(spec.topology.links if family == IPV4 else ()):
            key = "ipv4"
            for j, text in enumerate(getattr(link, key, None) or ()):
                try:
                    iface = ipaddress.ip_interface(text) if text else None
                except ValueError:
                    continue  # reported by the link checks
                if iface is not None and family_of(iface) == family \
                        and iface.network.overlaps(net):
                    yield Problem(f"topology.links[{i}].{key}[{j}]", f"{text} overlaps "
                                  f"cluster.service-cidr {net}")
        # the first address is the `kubernetes` Service's in a real cluster: kept free
        room = net.num_addresses - (3 if family == IPV4 else 2)
        if wanted.get(family, 0) > room:
            yield Problem(path, f"{net} holds {room} ClusterIPs but there are "
                          f"{wanted[family]} services" + ("" if len(cidrs) < 2 else
                                                          f" of {TITLE[family]}"))


def _families_used(spec: TopologyFile, available: tuple[Family, ...]) -> dict[Family, int]:
    """How many Services take a ClusterIP of each family."""
    out: dict[Family, int] = {}
    for svc in spec.services.values():
        for family in service_families(svc, available):
            out[family] = out.get(family, 0) + 1
    return out


def _service_problems(spec: TopologyFile, name: str, svc: Service,
                      node_ports: dict[int, str], cluster_ips: dict[str, str]
                      ) -> Iterator[Problem]:
    path = f"services.{name}"
    if not _DNS_1035.fullmatch(name):
        yield Problem(path, f"service name {_show(name)} must be 1-63 lowercase letters, "
                      "digits and '-', starting with a letter and ending with a letter or digit")
    chosen = {p: pod for p, pod in spec.pods.items() if selects(svc.selector, pod.labels)}
    if not svc.selector:
        yield Problem(f"{path}.selector", "a selector is required: podlab picks a Service's "
                      "endpoints from the pods whose labels match it")
    elif not chosen and not any(label_key_problem(k) or label_value_problem(k, v)
                                for k, v in svc.selector.items()):  # that one is told
        pairs = ", ".join(f"{k}={v}" for k, v in svc.selector.items())
        yield Problem(f"{path}.selector", f"selects no pod: no pod has all of the labels {pairs}")
    if not svc.ports:
        yield Problem(f"{path}.ports", "a Service needs at least one port")
    if svc.type == "ClusterIP" and svc.external_traffic_policy is not None:
        yield Problem(f"{path}.externalTrafficPolicy", "applies to type NodePort only (traffic "
                      "that enters through a node port); this Service is ClusterIP")
    yield from _cluster_ip_problems(spec, path, svc, cluster_ips)
    names: set[str] = set()
    seen: dict[tuple[int, str], int] = {}
    own_node_ports: dict[tuple[int, str], int] = {}
    for i, port in enumerate(svc.ports):
        ppath = f"{path}.ports[{i}]"
        if port.name is None and len(svc.ports) > 1:
            yield Problem(f"{ppath}.name", "each port needs a name when a Service has several")
        elif port.name is not None:
            if not _DNS_LABEL.fullmatch(port.name):
                yield Problem(f"{ppath}.name", f"{_show(port.name)} is not a port name: "
                              "lowercase letters, digits and '-', at most 63")
            elif port.name in names:
                yield Problem(f"{ppath}.name", f"port name {_show(port.name)} is used twice")
            names.add(port.name)
        key = (port.port, port.protocol)
        if key in seen:
            yield Problem(f"{ppath}.port", f"{port.protocol} port {port.port} is already "
                          f"declared at {path}.ports[{seen[key]}]")
        seen.setdefault(key, i)
        yield from _target_port_problems(ppath, port.target_port, port.protocol, chosen)
        if port.node_port is None:
            continue
        if svc.type != "NodePort":
            yield Problem(f"{ppath}.nodePort", "a nodePort needs type: NodePort")
            continue
        low, high = NODE_PORT_RANGE
        if not low <= port.node_port <= high:
            yield Problem(f"{ppath}.nodePort", f"{port.node_port} is outside the node port "
                          f"range {low}-{high}")
            continue
        nkey = (port.node_port, port.protocol)
        if nkey in own_node_ports:
            yield Problem(f"{ppath}.nodePort", f"{port.protocol} node port {port.node_port} is "
                          f"already used at {path}.ports[{own_node_ports[nkey]}]")
        elif port.node_port in node_ports and not node_ports[port.node_port].startswith(
                f"{path}.ports["):
            yield Problem(f"{ppath}.nodePort", f"node port {port.node_port} is already "
                          f"allocated to {node_ports[port.node_port]}")
        own_node_ports.setdefault(nkey, i)
        node_ports.setdefault(port.node_port, f"{ppath}.nodePort")


def _target_port_problems(path: str, target: int | str | None, protocol: str,
                          chosen: dict[str, Pod]) -> Iterator[Problem]:
    if target is None:
        return
    if isinstance(target, int):
        if not 1 <= target <= 65535:
            yield Problem(f"{path}.targetPort", f"{target} is not a port (1-65535)")
        return
    if problem := iana_name_problem(target):
        yield Problem(f"{path}.targetPort", problem)
    elif chosen and all(named_port(pod, target, protocol) is None for pod in chosen.values()):
        yield Problem(f"{path}.targetPort", f"no selected pod ({', '.join(chosen)}) has a "
                      f"{protocol} container port named {_show(target)}")


def _cluster_ip_problems(spec: TopologyFile, path: str, svc: Service,
                         cluster_ips: dict[str, str]) -> Iterator[Problem]:
    """clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy, with the API server's rules
    (ValidateServiceClusterIPsRelatedFields and the allocator's checks)."""
    if svc.cluster_ip == "None" or "None" in (svc.cluster_ips or ()):
        where = f"{path}.clusterIP" if svc.cluster_ip == "None" else f"{path}.clusterIPs"
        yield Problem(where, "headless Services (clusterIP: None) have no kube-proxy rules; "
                      "podlab does not model them")
        return
    cidrs = service_cidrs(spec)
    available = tuple(cidrs)
    policy = svc.ip_family_policy or "SingleStack"
    ips = given_cluster_ips(svc)

    def ip_path(i: int) -> str:
        return f"{path}.clusterIPs[{i}]" if svc.cluster_ips else f"{path}.clusterIP"

    bad = False
    if svc.cluster_ips is not None and not svc.cluster_ips:
        yield Problem(f"{path}.clusterIPs", "is empty: leave it out to have ClusterIPs "
                      "allocated")
        bad = True
    if svc.cluster_ips and svc.cluster_ip and svc.cluster_ips[0] != svc.cluster_ip:
        yield Problem(f"{path}.clusterIPs[0]", f"{_show(svc.cluster_ips[0])} must be equal "
                      f"to clusterIP {_show(svc.cluster_ip)}")
        bad = True
    if len(ips) > 2:
        yield Problem(f"{path}.clusterIPs", "at most two: one per family")
        bad = True
    ip_families: list[Family | None] = []
    for i, ip in enumerate(ips):
        family = _ip_family(ip)
        ip_families.append(family)
        if family is None:
            yield Problem(ip_path(i), f"{_show(ip)} is not an "
                          f"{'IPv6' if ':' in ip else 'IPv4'} address")
            bad = True
    if len(ips) == 2 and None not in ip_families and ip_families[0] == ip_families[1]:
        yield Problem(f"{path}.clusterIPs[1]", "may specify no more than one IP for each IP "
                      f"family: both are {TITLE[ip_families[0] or IPV4]}")
        bad = True
    named = list(svc.ip_families or ())
    if svc.ip_families is not None and not named:
        yield Problem(f"{path}.ipFamilies", "is empty: leave it out for the cluster's "
                      "primary family")
        bad = True
    if len(named) > 2:
        yield Problem(f"{path}.ipFamilies", "at most two: IPv4 and IPv6")
        bad = True
    for i, name in enumerate(named):
        if name in named[:i]:
            yield Problem(f"{path}.ipFamilies[{i}]", f"{name} is listed twice")
            bad = True
    multiple = len(ips) > 1 or len(named) > 1
    if policy == "SingleStack" and multiple:
        where = f"{path}.ipFamilies" if len(named) > 1 else f"{path}.clusterIPs"
        yield Problem(where, "a SingleStack Service has one family: set ipFamilyPolicy to "
                      "PreferDualStack or RequireDualStack for two")
        bad = True
    for i, (ip, family) in enumerate(zip(ips, ip_families, strict=True)):
        if i < len(named) and family is not None and FAMILY_NAMES[named[i]] != family:
            yield Problem(ip_path(i), f"{ip} is {TITLE[family]}, but ipFamilies[{i}] is "
                          f"{named[i]}: they must be in the same order")
            bad = True
    if bad:
        return
    for i, name in enumerate(named):
        if FAMILY_NAMES[name] not in available:
            yield Problem(f"{path}.ipFamilies[{i}]", f"{name} is not configured on this "
                          f"cluster: cluster.service-cidr has no {name} prefix")
            bad = True
    for i, family in enumerate(ip_families):
        if family is not None and family not in available:
            yield Problem(ip_path(i), f"may not use {TITLE[family]} on a cluster which is "
                          f"not configured for it (cluster.service-cidr has no "
                          f"{TITLE[family]} prefix)")
            bad = True
    if policy == "RequireDualStack" and len(available) < 2:
        yield Problem(f"{path}.ipFamilyPolicy", "RequireDualStack needs a dual-stack "
                      "cluster: give cluster.service-cidr (and pod-cidr) one prefix per "
                      "family, or use PreferDualStack")
        bad = True
    if bad:
        return
    for i, (ip_text, family) in enumerate(zip(ips, ip_families, strict=True)):
        assert family is not None
        ip = ipaddress.ip_address(ip_text)
        where = ip_path(i)
        net = service_network(cidrs[family][1])
        if not isinstance(net, str) and not any(_service_cidr_problems(spec)):
            if ip not in net:
                yield Problem(where, f"{ip} is outside cluster.service-cidr {net}")
            elif ip == net.network_address or (
                    isinstance(net, ipaddress.IPv4Network) and ip == net.broadcast_address):
                yield Problem(where, f"{ip} is the network or broadcast address of {net}"
                              if family == IPV4 else f"{ip} is the network address of {net}")
            elif ip == net.network_address + 1:
                yield Problem(where, f"{ip} is already allocated: the first address of "
                              f"{net} is the `kubernetes` Service's")
        if str(ip) in cluster_ips:
            yield Problem(where, f"{ip} is already the clusterIP of {cluster_ips[str(ip)]}")
        cluster_ips.setdefault(str(ip), path)
