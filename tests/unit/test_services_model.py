"""Services, labels, hostNetwork and ports in the file: one broken thing per case, each
reported alone with its YAML path, its line and Kubernetes' own rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from podlab_unit_helpers import broken, line_of, problems_of, valid

BASE = (Path(__file__).parent / "golden" / "services.clab.yml").read_text()
NP = "    ports: [{port: 80, targetPort: 8080, nodePort: 30080}]\n"
AGENT = "    clusterIP: 10.96.100.100\n"

# (id, old, new, expected path, message fragment, needle of the expected line)
CASES = [
    ("selector-selects-nothing", "selector: {app: agent}", "selector: {app: agnet}",
     "services.agent.selector", "selects no pod: no pod has all of the labels app=agnet",
     "{app: agnet}"),
    ("selector-needs-all-labels", "selector: {app: solo}", "selector: {app: solo, x: y}",
     "services.solo-local.selector", "selects no pod", "{app: solo, x: y}"),
    ("selector-empty", "selector: {app: agent}", "selector: {}",
     "services.agent.selector", "a selector is required", "selector: {}"),
    ("node-port-below-range", "nodePort: 30080", "nodePort: 29999",
     "services.web-np.ports[0].nodePort", "29999 is outside the node port range 30000-32767",
     "29999"),
    ("node-port-above-range", "nodePort: 30080", "nodePort: 32768",
     "services.web-np.ports[0].nodePort", "outside the node port range", "32768"),
    ("node-port-twice", "ports: [{port: 80, targetPort: 8080}]",
     "ports: [{port: 80, targetPort: 8080, nodePort: 30080}]",
     "services.solo-local.ports[0].nodePort",
     "node port 30080 is already allocated to services.web-np.ports[0].nodePort",
     ("nodePort: 30080", 2)),
    ("node-port-on-cluster-ip", "      - {name: http, port: 80, targetPort: http}",
     "      - {name: http, port: 80, targetPort: http, nodePort: 30500}",
     "services.web.ports[0].nodePort", "a nodePort needs type: NodePort", "30500"),
    ("policy-on-cluster-ip", AGENT, AGENT + "    externalTrafficPolicy: Local\n",
     "services.agent.externalTrafficPolicy", "applies to type NodePort only",
     ("externalTrafficPolicy: Local", 2)),
    ("cluster-ip-outside-cidr", AGENT, "    clusterIP: 10.97.0.1\n",
     "services.agent.clusterIP", "10.97.0.1 is outside cluster.service-cidr 10.96.0.0/16",
     "10.97.0.1"),
    ("cluster-ip-broadcast", AGENT, "    clusterIP: 10.96.255.255\n",
     "services.agent.clusterIP", "network or broadcast address", "10.96.255.255"),
    ("cluster-ip-not-an-address", AGENT, "    clusterIP: 10.96.0.300\n",
     "services.agent.clusterIP", "'10.96.0.300' is not an IPv4 address", "10.96.0.300"),
    ("cluster-ip-headless", AGENT, "    clusterIP: None\n", "services.agent.clusterIP",
     "headless Services", "clusterIP: None"),
    ("cluster-ip-twice", "  web:\n    selector: {app: web}\n",
     "  web:\n    clusterIP: 10.96.100.100\n    selector: {app: web}\n",
     "services.agent.clusterIP", "10.96.100.100 is already the clusterIP of services.web",
     ("clusterIP: 10.96.100.100", 2)),
    ("ports-unnamed-when-several", "      - {name: dns, port: 53,", "      - {port: 53,",
     "services.web.ports[1].name", "each port needs a name when a Service has several",
     "- {port: 53,"),
    ("port-name-twice", "      - {name: dns, port: 53,", "      - {name: http, port: 53,",
     "services.web.ports[1].name", "port name 'http' is used twice", "name: http, port: 53"),
    ("port-twice", "{name: dns, port: 53, targetPort: dns, protocol: UDP}",
     "{name: dns, port: 80, targetPort: http}", "services.web.ports[1].port",
     "TCP port 80 is already declared at services.web.ports[0]", "name: dns, port: 80"),
    ("no-ports", NP, "    ports: []\n", "services.web-np.ports",
     "a Service needs at least one port", "ports: []"),
    ("target-port-name-unknown", "targetPort: http}", "targetPort: htp}",
     "services.web.ports[0].targetPort",
     "no selected pod (web, web2) has a TCP container port named 'htp'", "targetPort: htp"),
    ("target-port-name-bad", "targetPort: http}", "targetPort: HTTP}",
     "services.web.ports[0].targetPort", "'HTTP' is not a port name", "targetPort: HTTP"),
    ("target-port-zero", "targetPort: 8080, nodePort", "targetPort: 0, nodePort",
     "services.web-np.ports[0].targetPort", "0 is not a port (1-65535)", "targetPort: 0"),
    ("type-unknown", "    type: NodePort\n    selector: {app: web}",
     "    type: Nodeport\n    selector: {app: web}", "services.web-np.type",
     "'ClusterIP' or 'NodePort'", "Nodeport"),
    ("policy-unknown", "externalTrafficPolicy: Local", "externalTrafficPolicy: local",
     "services.solo-local.externalTrafficPolicy", "'Cluster' or 'Local'", "Policy: local"),
    ("protocol-unknown", "targetPort: dns, protocol: UDP", "targetPort: dns, protocol: SCTP",
     "services.web.ports[1].protocol", "'TCP' or 'UDP'", "SCTP"),
    ("unknown-key-nodeport", "nodePort: 30080", "nodeport: 30080",
     "services.web-np.ports[0].nodeport", "did you mean 'nodePort'?", "nodeport"),
    ("unknown-key-hostnetwork", "    hostNetwork: true", "    hostnetwork: true",
     "pods.agent.hostnetwork", "did you mean 'hostNetwork'?", "hostnetwork"),
    ("service-name", "  agent:\n    clusterIP", "  Agent:\n    clusterIP", "services.Agent",
     "service name 'Agent' must be 1-63 lowercase", "^  Agent:"),
    ("service-port-out-of-range", "ports: [{port: 9100}]", "ports: [{port: 65536}]",
     "services.agent.ports[0].port", "less than or equal to 65535", "65536"),
    ("label-key", "labels: {app: solo}", "labels: {app: solo, -x: y}", "pods.solo.labels.-x",
     "label key '-x'", "-x: y"),
    ("label-key-prefix", "labels: {app: solo}", "labels: {app: solo, Ex.com/x: y}",
     "pods.solo.labels.Ex.com/x", "the prefix before '/' must be a DNS subdomain", "Ex.com"),
    ("label-value", "labels: {app: solo}", "labels: {app: solo, x: 'a b'}",
     "pods.solo.labels.x", "label value 'a b' of 'x'", "x: 'a b'"),
    ("selector-value", "selector: {app: solo}", "selector: {app: 'so lo'}",
     "services.solo-local.selector.app", "label value 'so lo'", "'so lo'"),
    ("host-port-twice-on-node", "    containers: [{name: app}]\n  agent:",
     "    containers: [{name: app, ports: [{containerPort: 1, hostPort: 9443}]}]\n  agent:",
     "pods.solo.containers[0].ports[0].hostPort",
     "TCP port 9443 on node 'node1' is already taken by "
     "pods.web.containers[0].ports[2].hostPort", "hostPort: 9443}]}]"),
    ("host-network-port-taken", "{name: dns, containerPort: 5353, protocol: UDP}]",
     "{name: dns, containerPort: 5353, protocol: UDP}, {containerPort: 7, hostPort: 9100}]",
     "pods.agent.containers[0].ports[0].containerPort",
     "TCP port 9100 on node 'node2' is already taken by pods.web2.containers[0]",
     "{containerPort: 9100}"),
    ("host-network-host-port-differs", "ports: [{containerPort: 9100}]",
     "ports: [{containerPort: 9100, hostPort: 9101}]",
     "pods.agent.containers[0].ports[0].hostPort", "hostPort must equal containerPort (9100)",
     "hostPort: 9101"),
    ("container-port-twice-in-pod", "{containerPort: 8443, hostPort: 9443}",
     "{containerPort: 8080, hostPort: 9443}", "pods.web.containers[0].ports[2].containerPort",
     "TCP port 8080 is already declared in this pod", "containerPort: 8080, hostPort"),
    ("container-port-name-twice", "{containerPort: 8443, hostPort: 9443}",
     "{name: http, containerPort: 8443, hostPort: 9443}",
     "pods.web.containers[0].ports[2].name", "port name 'http' is already used in this pod",
     "name: http, containerPort: 8443"),
    ("container-port-name-bad", "{containerPort: 8443, hostPort: 9443}",
     "{name: my--port, containerPort: 8443, hostPort: 9443}",
     "pods.web.containers[0].ports[2].name", "'my--port' is not a port name", "my--port"),
    ("host-port-zero", "hostPort: 9443", "hostPort: 0",
     "pods.web.containers[0].ports[2].hostPort", "greater than or equal to 1", "hostPort: 0"),
    ("service-cidr-overlaps-pods", "service-cidr: 10.96.0.0/16", "service-cidr: 10.244.0.0/24",
     "cluster.service-cidr", "10.244.0.0/24 overlaps cluster.pod-cidr 10.244.0.0/16",
     "service-cidr"),
    ("service-cidr-bad", "service-cidr: 10.96.0.0/16", "service-cidr: 10.96.0.1/16",
     "cluster.service-cidr", "is not an IPv4 network", "service-cidr"),
    ("service-cidr-too-small", "service-cidr: 10.96.0.0/16", "service-cidr: 10.96.100.96/30",
     "cluster.service-cidr", "10.96.100.96/30 holds 1 ClusterIPs but there are 4 services",
     "service-cidr"),
]


@pytest.mark.parametrize(("old", "new", "path", "fragment", "needle"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_reports_one_problem(old: str, new: str, path: str, fragment: str,
                                       needle: str | tuple[str, int]) -> None:
    text = broken(old, new, BASE)
    error, problems = problems_of(text, Path("broken.clab.yml"))
    rendered = str(error)
    assert [p.path for p in problems] == [path], rendered
    assert fragment in problems[0].message, rendered
    needle, nth = needle if isinstance(needle, tuple) else (needle, 1)
    assert problems[0].line == line_of(text, needle, nth), rendered


def test_golden_file_is_valid() -> None:
    topo = valid(BASE)
    assert topo.spec.pods["agent"].host_network
    assert topo.spec.services["solo-local"].external_traffic_policy == "Local"
    port = topo.spec.pods["web"].containers[0].ports[2]
    assert (port.container_port, port.host_port, port.protocol) == (8443, 9443, "TCP")


def test_same_node_port_for_tcp_and_udp_of_one_service_is_allowed() -> None:
    valid(broken(NP, "    ports: [{name: a, port: 80, targetPort: 8080, nodePort: 30080},\n"
                     "            {name: b, port: 80, targetPort: 8080, nodePort: 30080,"
                     " protocol: UDP}]\n", BASE))


def test_host_ports_on_different_nodes_or_protocols_are_allowed() -> None:
    valid(broken("{name: dns, containerPort: 5353, protocol: UDP}]",
                 "{name: dns, containerPort: 5353, protocol: UDP},"
                 " {containerPort: 1, hostPort: 9443}, {containerPort: 2, hostPort: 9443,"
                 " protocol: UDP}]", BASE))


def test_host_network_pods_take_no_address_of_the_node_cidr() -> None:
    # a /30 node CIDR holds one pod; node2 has one pod and a hostNetwork pod
    text = broken("cluster:\n", "cluster:\n  node-mask: 30\n", BASE)
    text = broken("  solo:\n    node: node1", "  solo:\n    node: node2", text)
    _, problems = problems_of(text)
    assert [p.path for p in problems] == ["cluster.node-mask"]
    assert "'node1'" not in problems[0].message and "node 'node2' has 2 pods" in \
        problems[0].message
