"""What the file must get right about Services, labels, host networking and ports.

Kubernetes' own rules, with its field names and each problem's YAML path: label syntax,
a selector that selects a pod, port names and ranges, a nodePort inside 30000-32767 and
used once, a hostPort used once per node, a clusterIP inside `cluster.service-cidr`. Pure;
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
    families = spec.cluster.families
    if spec.services and families and families[0] != "ipv4":
        yield Problem("services", "Services are IPv4 in podlab (single-stack, of the "
                      "cluster's primary family): list pod-cidr's IPv4 prefix first")
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


def service_network(text: str) -> ipaddress.IPv4Network | str:
    if "network" in _helpers:
        return _helpers["network"](text)  # type: ignore[no-any-return]
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        return str(exc)


def service_cidr(spec: TopologyFile) -> tuple[str, str] | None:
    """(YAML path, text) of the service CIDR Services take ClusterIPs from: the IPv4 one
    (service-cidr takes one prefix per family); None if it has none."""
    value = spec.cluster.service_cidr
    entries = ([("cluster.service-cidr", value)] if isinstance(value, str)
               else [(f"cluster.service-cidr[{i}]", t) for i, t in enumerate(value)])
    return next(((p, t) for p, t in entries if ":" not in t), None)


def _service_cidr_problems(spec: TopologyFile) -> Iterator[Problem]:
    if not spec.services and "service_cidr" not in spec.cluster.model_fields_set:
        return  # the default range of a lab without Services takes nothing
    found = service_cidr(spec)
    if found is None:
        if spec.services:
            yield Problem("cluster.service-cidr", "Services take IPv4 ClusterIPs in podlab: "
                          "give service-cidr an IPv4 prefix")
        return
    path, text = found
    net = service_network(text)
    if isinstance(net, str):
        return  # the cluster's CIDR checks say why (harness.model.topology)
    for key, prefixes in (("pod-cidr", spec.cluster.pod_cidrs),
                          ("underlay-cidr", spec.cluster.underlay_cidrs)):
        for other_text in prefixes:
            other = service_network(other_text) if ":" not in other_text else None
            if isinstance(other, ipaddress.IPv4Network) and other.overlaps(net):
                yield Problem(path, f"{net} overlaps cluster.{key} {other}")
    for i, link in enumerate(spec.topology.links):
        for j, text in enumerate(link.ipv4 or ()):
            try:
                iface = ipaddress.IPv4Interface(text) if text else None
            except ValueError:
                continue  # reported by the link checks
            if iface is not None and iface.network.overlaps(net):
                yield Problem(f"topology.links[{i}].ipv4[{j}]", f"{text} overlaps "
                              f"cluster.service-cidr {net}")
    # the first address is the `kubernetes` Service's in a real cluster: kept free
    room = net.num_addresses - 3
    if len(spec.services) > room:
        yield Problem(path, f"{net} holds {room} ClusterIPs but there are "
                      f"{len(spec.services)} services")


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
    if svc.cluster_ip is None:
        return
    where = f"{path}.clusterIP"
    if svc.cluster_ip == "None":
        yield Problem(where, "headless Services (clusterIP: None) have no kube-proxy rules; "
                      "podlab does not model them")
        return
    try:
        ip = ipaddress.IPv4Address(svc.cluster_ip)
    except ValueError:
        yield Problem(where, f"{_show(svc.cluster_ip)} is not an IPv4 address")
        return
    found = service_cidr(spec)
    net = service_network(found[1]) if found else ""
    if isinstance(net, ipaddress.IPv4Network) and not any(_service_cidr_problems(spec)):
        if ip not in net:
            yield Problem(where, f"{ip} is outside cluster.service-cidr {net}")
        elif ip in (net.network_address, net.broadcast_address):
            yield Problem(where, f"{ip} is the network or broadcast address of {net}")
    if str(ip) in cluster_ips:
        yield Problem(where, f"{ip} is already the clusterIP of {cluster_ips[str(ip)]}")
    cluster_ips.setdefault(str(ip), path)
