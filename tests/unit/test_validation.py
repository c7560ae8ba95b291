"""One broken file per rule: each problem names its YAML path, its line and what to do.

Every case starts from the valid MINIMAL file and breaks exactly one thing, so the test
also proves the rule fires alone (exactly one problem reported).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from podlab_unit_helpers import DUAL, MINIMAL, V6ONLY, broken, line_of, problems_of, valid

from harness.model.topology import parse_topology

LINK1 = '    - endpoints: ["node1:eth1", "sw:eth1"]\n'
NODES = "    ext: {kind: linux}\n"
WEB = "  web:\n    node: node1\n    containers:\n      - {name: app}\n"
CLUSTER = "  node-mask: 24\n"

# (id, old, new, expected path, message fragment, needle of the expected line)
CASES = [
    # unknown keys, with "did you mean"
    ("unknown-key-endpoint", '- endpoints: ["node1:eth1", "sw:eth1"]',
     '- endpoint: ["node1:eth1", "sw:eth1"]', "topology.links[0].endpoint",
     "unknown key 'endpoint'; did you mean 'endpoints'?", '- endpoint: ["node1'),
    ("unknown-key-pod_cidr", "pod-cidr: 10.244.0.0/16", "pod_cidr: 10.244.0.0/16",
     "cluster.pod_cidr", "unknown key 'pod_cidr'; did you mean 'pod-cidr'?", "pod_cidr"),
    ("unknown-key-containres", WEB, WEB.replace("containers:", "containres:"),
     "pods.web.containres", "did you mean 'containers'?", "containres"),
    ("unknown-key-top-level", "name: lab\n", "name: lab\nnodes: {}\n", "nodes",
     "unknown key 'nodes'", "nodes: {}"),
    ("unknown-key-no-suggestion", "node1: {kind: k8s-node}", "node1: {kind: k8s-node, zzz: 1}",
     "topology.nodes.node1.zzz", "unknown key 'zzz'", "zzz"),
    ("missing-key-topology", "topology:\n  nodes:", "topo:\n  nodes:", "topo",
     "did you mean 'topology'?", "topo:"),
    # kinds
    ("unknown-kind", "node2: {kind: k8s-node}", "node2: {kind: k8snode}",
     "topology.nodes.node2.kind", "unknown kind 'k8snode'; one of k8s-node, router", "k8snode"),
    ("no-kind", "node2: {kind: k8s-node}", "node2: {}", "topology.nodes.node2", "no kind",
     "node2: {}"),
    ("unknown-kind-under-kinds", "topology:\n", "topology:\n  kinds: {bogus: {}}\n",
     "topology.kinds.bogus", "unknown kind 'bogus'", "bogus"),
    # links
    ("link-unknown-node", LINK1, LINK1.replace("node1:eth1", "nodeX:eth1"),
     "topology.links[0].endpoints[0]", "unknown node 'nodeX'; did you mean", "nodeX"),
    ("endpoint-without-colon", LINK1, LINK1.replace("node1:eth1", "node1eth1"),
     "topology.links[0].endpoints[0]", "is not of the form 'node:interface'", "node1eth1"),
    ("endpoint-empty-node", LINK1, LINK1.replace("node1:eth1", ":eth1"),
     "topology.links[0].endpoints[0]", "is not of the form 'node:interface'", '[":eth1"'),
    ("endpoint-empty-interface", LINK1, LINK1.replace("node1:eth1", "node1:"),
     "topology.links[0].endpoints[0]", "is not of the form 'node:interface'", '"node1:"'),
    ("endpoint-two-colons", LINK1, LINK1.replace("node1:eth1", "node1:eth1:x"),
     "topology.links[0].endpoints[0]", "is not of the form 'node:interface'", "eth1:x"),
    ("endpoint-three-entries", LINK1, LINK1.replace('"sw:eth1"]', '"sw:eth1", "sw:eth9"]'),
     "topology.links[0].endpoints", "too many entries", "sw:eth9"),
    ("interface-used-twice", '"ext:eth1", "sw:eth3"', '"node1:eth1", "sw:eth3"',
     "topology.links[2].endpoints[0]", "'node1:eth1' is already used by topology.links[0]",
     '"node1:eth1", "sw:eth3"'),
    ("interface-name-16-chars", LINK1, LINK1.replace("node1:eth1", "node1:abcdefghijklmnop"),
     "topology.links[0].endpoints[0]", "is 16 characters; Linux allows at most 15", "abcdef"),
    ("interface-name-lo", LINK1, LINK1.replace("node1:eth1", "node1:lo"),
     "topology.links[0].endpoints[0]", "'lo' is reserved by podlab", "node1:lo"),
    ("interface-name-eth0", LINK1, LINK1.replace("node1:eth1", "node1:eth0"),
     "topology.links[0].endpoints[0]", "'eth0' is reserved by podlab", "node1:eth0"),
    ("interface-name-cbr0", LINK1, LINK1.replace("node1:eth1", "node1:cbr0"),
     "topology.links[0].endpoints[0]", "'cbr0' is reserved by podlab", "node1:cbr0"),
    ("interface-name-veth", LINK1, LINK1.replace("node1:eth1", "node1:veth1"),
     "topology.links[0].endpoints[0]", "reserved for pod links", "veth1"),
    ("interface-name-pv", LINK1, LINK1.replace("node1:eth1", "node1:pv-web"),
     "topology.links[0].endpoints[0]", "reserved for pod links", "pv-web"),
    ("interface-name-space", LINK1, LINK1.replace("node1:eth1", "node1:e th1"),
     "topology.links[0].endpoints[0]", "may hold only letters, digits", "e th1"),
    ("interface-name-slash", LINK1, LINK1.replace("node1:eth1", "node1:e/1"),
     "topology.links[0].endpoints[0]", "may hold only letters, digits", "e/1"),
    ("interface-name-trailing-newline", LINK1, LINK1.replace("node1:eth1", "node1:eth1\\n"),
     "topology.links[0].endpoints[0]", "may hold only letters, digits", "eth1\\n"),
    ("link-to-itself", '"ext:eth1", "sw:eth3"', '"node1:eth7", "node1:eth8"',
     "topology.links[2].endpoints", "both ends are on node 'node1'", "node1:eth7"),
    # pods
    ("pod-on-linux-node", WEB, WEB.replace("node: node1", "node: ext"), "pods.web.node",
     "'ext' is of kind linux; pods run only on k8s-node nodes", "node: ext"),
    ("pod-on-switch", WEB, WEB.replace("node: node1", "node: sw"), "pods.web.node",
     "of kind switch", "node: sw"),
    ("pod-on-unknown-node", WEB, WEB.replace("node: node1", "node: node9"), "pods.web.node",
     "unknown node 'node9'", "node: node9"),
    ("pod-without-containers", WEB, "  web:\n    node: node1\n    containers: []\n",
     "pods.web.containers", "at least one container", "containers: []"),
    ("pod-without-containers-key", WEB, "  web:\n    node: node1\n", "pods.web.containers",
     "required key 'containers' is missing", "  web:"),
    ("two-containers-one-name", WEB, WEB + "      - {name: app, image: podlab/node}\n",
     "pods.web.containers[1].name", "two containers named 'app' in pod 'web'",
     "image: podlab/node"),
    ("container-bad-image", WEB, WEB.replace("{name: app}", "{name: app, image: 'a b;ls'}"),
     "pods.web.containers[0].image", "is not a Docker image reference", "a b;ls"),
    ("node-bad-image", "node2: {kind: k8s-node}", "node2: {kind: k8s-node, image: UPPER}",
     "topology.nodes.node2.image", "is not a Docker image reference", "UPPER"),
    ("env-name-with-equals", WEB,
     WEB.replace("{name: app}", "{name: app, env: [{name: 'A=B', value: x}]}"),
     "pods.web.containers[0].env[0].name", "is not an environment variable name", "A=B"),
    # CIDRs
    ("pod-cidr-not-a-network", "pod-cidr: 10.244.0.0/16", "pod-cidr: banana",
     "cluster.pod-cidr", "'banana' is not an IPv4 network", "banana"),
    ("pod-cidr-host-bits", "pod-cidr: 10.244.0.0/16", "pod-cidr: 10.244.0.1/16",
     "cluster.pod-cidr", "has host bits set", "10.244.0.1/16"),
    ("pod-cidr-prefix-33", "pod-cidr: 10.244.0.0/16", "pod-cidr: 10.244.0.0/33",
     "cluster.pod-cidr", "is not an IPv4 network", "/33"),
    ("pod-cidr-everything", "pod-cidr: 10.244.0.0/16", "pod-cidr: 0.0.0.0/0",
     "cluster.pod-cidr", "too broad (/0)", "0.0.0.0/0"),
    ("pod-cidr-loopback", "pod-cidr: 10.244.0.0/16", "pod-cidr: 127.0.0.0/8",
     "cluster.pod-cidr", "loopback, multicast", "127.0.0.0/8"),
    ("pod-cidr-ipv6-underlay-ipv4", "pod-cidr: 10.244.0.0/16", "pod-cidr: 'fd00::/56'",
     "cluster.underlay-cidr", "is IPv4 but pod-cidr is IPv6; give one underlay prefix per "
     "family of pod-cidr, e.g. fd00:172:30::/48", "underlay-cidr"),
    ("pod-cidr-slash-32", "pod-cidr: 10.244.0.0/16", "pod-cidr: 10.244.0.0/32",
     "cluster.node-mask", "/24 is larger than the pod CIDR 10.244.0.0/32", "node-mask"),
    ("underlay-cidr-host-bits", "underlay-cidr: 172.30.0.0/16", "underlay-cidr: 172.30.0.9/16",
     "cluster.underlay-cidr", "has host bits set", "172.30.0.9"),
    ("underlay-cidr-slash-32", "underlay-cidr: 172.30.0.0/16", "underlay-cidr: 172.30.0.0/32",
     "cluster.underlay-cidr", "172.30.0.0/32 cannot hold 1 segment(s)", "underlay-cidr"),
    ("segment-mask-larger-than-underlay", "underlay-cidr: 172.30.0.0/16",
     "underlay-cidr: 172.30.0.0/28\n  segment-mask: 24", "cluster.segment-mask",
     "larger than the underlay CIDR", "segment-mask"),
    ("underlay-overlaps-pod-cidr", "underlay-cidr: 172.30.0.0/16", "underlay-cidr: 10.0.0.0/8",
     "cluster.underlay-cidr", "10.0.0.0/8 overlaps the pod CIDR 10.244.0.0/16", "10.0.0.0/8"),
    ("node-mask-31", CLUSTER, "  node-mask: 31\n", "cluster.node-mask",
     "less than or equal to 30", "node-mask: 31"),
    ("node-mask-negative", CLUSTER, "  node-mask: -1\n", "cluster.node-mask",
     "greater than or equal to 8", "node-mask: -1"),
    ("node-mask-string", CLUSTER, "  node-mask: big\n", "cluster.node-mask",
     "must be an integer (got 'big')", "node-mask: big"),
    ("node-mask-bool", CLUSTER, "  node-mask: true\n", "cluster.node-mask",
     "must be an integer (got True)", "node-mask: true"),
    ("pod-cidr-too-small-for-nodes", "pod-cidr: 10.244.0.0/16", "pod-cidr: 10.244.0.0/24",
     "cluster.pod-cidr", "holds 1 node CIDRs of /24 but there are 2 k8s-nodes", "pod-cidr"),
    ("node-cidr-too-small-for-pods",
     [(CLUSTER, "  node-mask: 30\n"), (WEB, WEB + "".join(
         f"  p{i}:\n    node: node1\n    containers: [{{name: app}}]\n" for i in range(2)))],
     None, "cluster.node-mask", "node 'node1' has 3 pods but a /30 node CIDR holds 1",
     "node-mask: 30"),
    # link addresses
    ("link-ipv4-without-prefix", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["172.31.0.1/24", "172.31.0.2"]\n',
     "topology.links[2].ipv4[1]", "'172.31.0.2' needs a prefix length", "ipv4"),
    ("link-ipv4-host-route", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["172.31.0.1/24", "172.31.0.2/32"]\n',
     "topology.links[2].ipv4[1]", "/32 leaves no room", "ipv4"),
    ("link-ipv4-network-address", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["172.31.0.0/24", "172.31.0.2/24"]\n',
     "topology.links[2].ipv4[0]", "network or broadcast address", "ipv4"),
    ("link-ipv4-in-pod-cidr", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["10.0.0.1/8", "10.0.0.2/8"]\n',
     ("topology.links[2].ipv4[0]", "topology.links[2].ipv4[1]"),
     "overlaps cluster.pod-cidr 10.244.0.0/16", "ipv4"),
    ("link-ipv4-two-subnets", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["172.31.0.1/24", "172.31.1.2/24"]\n',
     "topology.links[2].ipv4", "are not in one subnet", "ipv4"),
    ("link-ipv4-same-address-twice", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["172.31.0.1/24", "172.31.0.1/24"]\n',
     "topology.links[2].ipv4[1]", "address 172.31.0.1 is already used at", "ipv4"),
    ("link-ipv4-one-entry", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "node1:eth9"]\n      ipv4: ["172.31.0.1/24"]\n',
     "topology.links[2].ipv4[1]", "write two entries", "ipv4"),
    ("switch-port-with-address", LINK1,
     LINK1 + '      ipv4: ["172.31.0.1/24", "172.31.0.2/24"]\n',
     "topology.links[0].ipv4[1]", "'sw' is a switch: its ports take no address", "ipv4"),
    ("node-port-without-address", LINK1, LINK1 + "      ipv4: [null, null]\n",
     "topology.links[0].ipv4[0]", "'node1' needs an address when ipv4 is given", "ipv4"),
    ("segment-too-small-for-members", CLUSTER, CLUSTER + "  segment-mask: 30\n",
     "cluster.segment-mask", "segment sw has 3 members but a /30 holds 2 addresses",
     "segment-mask"),
    ("underlay-too-small-for-segments", [
        ("underlay-cidr: 172.30.0.0/16", "underlay-cidr: 172.30.0.0/24\n  segment-mask: 24"),
        ('"ext:eth1", "sw:eth3"', '"ext:eth1", "node1:eth3"')], None,
     "cluster.underlay-cidr", "has 1 free /24 blocks but 2 segments need one", "underlay-cidr"),
    ("switch-segment-in-two-subnets", [
        (LINK1, LINK1 + '      ipv4: ["172.31.1.1/24", null]\n'),
        ('"ext:eth1", "sw:eth3"]\n',
         '"ext:eth1", "sw:eth3"]\n      ipv4: ["172.31.0.1/24", null]\n')],
     None, "topology.links[2].ipv4[0]",
     "172.31.0.1/24 is not in 172.31.1.0/24, the subnet of its segment (sw", '"172.31.0.1/24"'),
    ("node-twice-on-one-segment", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "sw:eth3"]\n    - endpoints: ["node1:eth2", "sw:eth4"]\n',
     "topology.links[3].endpoints[0]", "'node1' is already attached to this segment",
     "node1:eth2"),
    ("one-subnet-on-two-segments", '"ext:eth1", "sw:eth3"]\n',
     '"ext:eth1", "sw:eth3"]\n    - endpoints: ["node1:eth2", "node2:eth2"]\n'
     '      ipv4: ["172.31.0.1/30", "172.31.0.2/30"]\n'
     '    - endpoints: ["node1:eth3", "node2:eth3"]\n'
     '      ipv4: ["172.31.0.5/29", "172.31.0.6/29"]\n',
     "topology.links[4].ipv4[0]", "172.31.0.0/29 overlaps 172.31.0.0/30", "/29"),
    ("link-mtu-too-small", LINK1, LINK1 + "      mtu: 100\n", "topology.links[0].mtu",
     "greater than or equal to 576", "mtu"),
    # names that cannot become Docker container names
    ("lab-name-uppercase", "name: lab\n", "name: Lab\n", "name", "must be lowercase", "name:"),
    ("lab-name-underscore", "name: lab\n", "name: my_lab\n", "name", "must be lowercase",
     "name:"),
    ("lab-name-unicode", "name: lab\n", "name: läb\n", "name", "must be lowercase", "name:"),
    ("lab-name-shell", "name: lab\n", "name: 'a;rm -rf /'\n", "name", "must be lowercase",
     "name:"),
    ("lab-name-space", "name: lab\n", "name: my lab\n", "name", "must be lowercase", "name:"),
    ("lab-name-trailing-dash", "name: lab\n", "name: lab-\n", "name", "must be lowercase",
     "name:"),
    ("lab-name-newline", "name: lab\n", 'name: "lab\\n"\n', "name", "must be lowercase",
     "name:"),
    ("lab-name-too-long", "name: lab\n", "name: " + "a" * 41 + "\n", "name",
     "longer than 40 characters", "name:"),
    ("lab-name-number", "name: lab\n", "name: 42\n", "name", "must be a string (got 42)",
     "name:"),
    ("lab-name-missing", "name: lab\n", "", "name", "required key 'name' is missing", None),
    ("node-name-not-for-docker", [("ext: {kind: linux}", "'ext~1': {kind: linux}"),
                                  ('"ext:eth1"', '"ext~1:eth1"')], None,
     "topology.nodes.ext~1", "node name 'ext~1' may hold letters, digits, '_', '.' and '-'",
     "'ext~1': {"),
    ("pod-name-underscore", WEB, WEB.replace("  web:", "  web_1:"), "pods.web_1",
     "pod name 'web_1' must be lowercase", "web_1"),
    ("container-name-dollar", WEB, WEB.replace("{name: app}", "{name: 'a$(id)'}"),
     "pods.web.containers[0].name", "container name 'a$(id)' must be lowercase", "a$(id)"),
    ("container-name-collision", [("ext: {kind: linux}", "web-app: {kind: linux}"),
                                  ('"ext:eth1"', '"web-app:eth1"')], None,
     "pods.web.containers[0]", "podlab-lab-web-app collides with topology.nodes.web-app",
     "{name: app}"),
    ("container-name-collision-pod-vs-node", [("ext: {kind: linux}", "web: {kind: linux}"),
                                              ('"ext:eth1"', '"web:eth1"')], None,
     "pods.web", "podlab-lab-web collides with topology.nodes.web", "^  web:"),
    # labels
    ("reserved-label-on-node", "node2: {kind: k8s-node}",
     "node2: {kind: k8s-node, labels: {io.podlab.role: x}}",
     "topology.nodes.node2.labels.io.podlab.role", "reserved for podlab", "io.podlab.role"),
    ("reserved-label-on-pod", WEB, WEB.replace("    containers:", "    labels: {io.podlab.lab: x}"
                                               "\n    containers:"),
     "pods.web.labels.io.podlab.lab", "reserved for podlab", "io.podlab.lab"),
    ("reserved-label-in-defaults", "topology:\n",
     "topology:\n  defaults: {labels: {io.podlab.x: y}}\n",
     "topology.defaults.labels.io.podlab.x", "reserved for podlab", "io.podlab.x"),
    # netem
    ("netem-bad-unit", LINK1, LINK1 + "      netem: {delay: 10xs}\n",
     "topology.links[0].netem.delay", "'10xs' is not a duration", "netem"),
    ("netem-negative", LINK1, LINK1 + "      netem: {delay: -5}\n",
     "topology.links[0].netem.delay", "-5 is not a duration", "netem"),
    ("netem-negative-string", LINK1, LINK1 + "      netem: {delay: '-5ms'}\n",
     "topology.links[0].netem.delay", "is not a duration", "netem"),
    ("netem-absurd", LINK1, LINK1 + "      netem: {delay: 99999999999s}\n",
     "topology.links[0].netem.delay", "is not a duration", "netem"),
    ("netem-bool", LINK1, LINK1 + "      netem: {delay: true}\n",
     "topology.links[0].netem.delay", "must be a duration", "netem"),
    ("netem-jitter-without-delay", LINK1, LINK1 + "      netem: {jitter: 2ms}\n",
     "topology.links[0].netem.jitter", "jitter needs a delay", "netem"),
    ("netem-bad-jitter", LINK1, LINK1 + "      netem: {delay: 5ms, jitter: soon}\n",
     "topology.links[0].netem.jitter", "'soon' is not a duration", "netem"),
    ("netem-loss-over-100", LINK1, LINK1 + "      netem: {loss: 101}\n",
     "topology.links[0].netem.loss", "less than or equal to 100", "netem"),
    ("netem-rate-zero", LINK1, LINK1 + "      netem: {rate: 0}\n",
     "topology.links[0].netem.rate", "greater than 0", "netem"),
    # datapath choices: in the format, refused until a datapath implements them
    ("routing-unknown", CLUSTER, CLUSTER + "  routing: ospf\n", "cluster.routing",
     "unknown routing 'ospf'; one of static, bgp", "routing: ospf"),
    ("cni-conflist-missing-file", CLUSTER, CLUSTER + "  cni: {conflist: my.conflist}\n",
     "cluster.cni.conflist", "file not found: my.conflist (relative to the topology file)",
     "conflist"),
    ("cni-bin-dir-missing", CLUSTER,
     CLUSTER + "  cni: {conflist: /etc/passwd, bin-dir: /nonexistent/cni}\n",
     "cluster.cni.bin-dir", "not a directory: /nonexistent/cni", "bin-dir"),
    ("cni-unknown", CLUSTER, CLUSTER + "  cni: calico\n", "cluster.cni",
     "unknown cni 'calico'; one of podlab, bridge, ptp, or a mapping {conflist: FILE, "
     "bin-dir: DIR}", "cni: calico"),
    ("cni-number", CLUSTER, CLUSTER + "  cni: 3\n", "cluster.cni", "unknown cni 3", "cni: 3"),
    ("cni-conflist-typo", CLUSTER, CLUSTER + "  cni: {conflst: my.conflist}\n",
     "cluster.cni.conflst", "unknown key 'conflst'; did you mean 'conflist'?", "conflst"),
    ("cni-conflist-not-a-string", CLUSTER, CLUSTER + "  cni: {conflist: [a]}\n",
     "cluster.cni.conflist", "must be a string (got a list)", "conflist"),
]


# Both families: the same, on the dual-stack DUAL (or where said, MINIMAL or V6ONLY).
V6LINK = '"ext:eth1", "sw:eth3"]\n'


def v6link(key: str, a: str, b: str) -> str:
    return f'"ext:eth1", "node1:eth9"]\n      {key}: [{a}, {b}]\n'


DUAL_CASES = [
    ("two-ipv4-pod-cidrs", "fd00:10:244::/56]", "10.245.0.0/16]", "cluster.pod-cidr[1]",
     "10.245.0.0/16 is a second IPv4 prefix (the first is 10.244.0.0/16); give one prefix "
     "per family", "pod-cidr"),
    ("two-ipv6-underlays", "[172.30.0.0/16,", "[fd00:172:31::/48,", "cluster.underlay-cidr[1]",
     "second IPv6 prefix", "underlay-cidr"),
    ("pod-cidr-empty-list", "[10.244.0.0/16, fd00:10:244::/56]", "[]", "cluster.pod-cidr",
     "give a prefix, or one per family", "pod-cidr"),
    ("pod-cidr-entry-not-a-string", "fd00:10:244::/56]", "3]", "cluster.pod-cidr[1]",
     "must be a string (got 3)", "pod-cidr"),
    ("pod-cidr-v6-not-a-network", "fd00:10:244::/56", "fd00:zz::/56", "cluster.pod-cidr[1]",
     "'fd00:zz::/56' is not an IPv6 network", "pod-cidr"),
    ("pod-cidr-v6-host-bits", "fd00:10:244::/56", "fd00:10:244::1/56", "cluster.pod-cidr[1]",
     "has host bits set", "pod-cidr"),
    ("pod-cidr-v6-too-broad", "fd00:10:244::/56", "fd00::/8", "cluster.pod-cidr[1]",
     "too broad (/8); use /16 or longer", "pod-cidr"),
    ("pod-cidr-v6-link-local", "fd00:10:244::/56", "fe80::/56", "cluster.pod-cidr[1]",
     "loopback, multicast, link-local or reserved", "pod-cidr"),
    ("pod-cidr-v6-mapped-ipv4", "fd00:10:244::/56", "'::ffff:0:0/96'", "cluster.pod-cidr[1]",
     "reserved", "pod-cidr"),
    ("node-mask-v6-shorter-than-pod-cidr", CLUSTER, CLUSTER + "  node-mask-v6: 48\n",
     "cluster.node-mask-v6", "/48 is larger than the IPv6 pod CIDR fd00:10:244::/56",
     "node-mask-v6"),
    ("node-mask-v6-too-long", CLUSTER, CLUSTER + "  node-mask-v6: 125\n",
     "cluster.node-mask-v6", "less than or equal to 124", "node-mask-v6"),
    ("node-mask-v6-string", CLUSTER, CLUSTER + "  node-mask-v6: big\n",
     "cluster.node-mask-v6", "must be an integer", "node-mask-v6"),
    ("pod-cidr-v6-too-small-for-nodes", "fd00:10:244::/56", "fd00:10:244::/64",
     "cluster.pod-cidr[1]", "fd00:10:244::/64 holds 1 node CIDRs of /64 but there are 2 "
     "k8s-nodes", "pod-cidr"),
    ("node-cidr-v6-too-small-for-pods",
     [(CLUSTER, "  node-mask-v6: 124\n"), ("fd00:10:244::/56", "fd00:10:244::/120"),
      (WEB, WEB + "".join(f"  p{i}:\n    node: node1\n    containers: [{{name: app}}]\n"
                          for i in range(14)))],
     None, "cluster.node-mask-v6", "node 'node1' has 15 pods but a /124 node CIDR holds 14",
     "node-mask-v6"),
    ("underlay-missing-ipv6", "underlay-cidr: [172.30.0.0/16, fd00:172:30::/48]",
     "underlay-cidr: 172.30.0.0/16", "cluster.underlay-cidr",
     "is IPv4 but pod-cidr is IPv4 and IPv6; give one underlay prefix per family of "
     "pod-cidr, e.g. [172.30.0.0/16, fd00:172:30::/48]", "underlay-cidr"),
    ("underlay-v6-overlaps-pod-cidr", "fd00:172:30::/48", "fd00:10::/32",
     "cluster.underlay-cidr[1]", "fd00:10::/32 overlaps the pod CIDR fd00:10:244::/56",
     "underlay-cidr"),
    ("underlay-v6-too-small", "fd00:172:30::/48", "fd00:172:30::/127",
     "cluster.underlay-cidr[1]", "fd00:172:30::/127 cannot hold 1 segment(s)", "underlay-cidr"),
    ("service-cidr-overlaps-pod-cidr", CLUSTER,
     CLUSTER + "  service-cidr: [10.96.0.0/16, fd00:10:244:ff::/112]\n",
     "cluster.service-cidr[1]", "overlaps the pod CIDR fd00:10:244::/56", "service-cidr"),
    ("service-cidr-overlaps-underlay", CLUSTER, CLUSTER + "  service-cidr: 172.30.1.0/24\n",
     "cluster.service-cidr", "172.30.1.0/24 overlaps cluster.underlay-cidr 172.30.0.0/16",
     "service-cidr"),
    # explicit link addresses
    ("link-mixed-family-ends", V6LINK, v6link("ipv4", '"172.31.0.1/24"', '"fd00:31::2/64"'),
     "topology.links[2].ipv4[1]", "'fd00:31::2/64' is IPv6 but the other end, "
     "'172.31.0.1/24', is IPv4: both ends of a link are of one family (IPv6 addresses go "
     "under ipv6:)", "ipv4"),
    ("link-mixed-family-ends-under-ipv6", V6LINK,
     v6link("ipv6", '"172.31.0.1/24"', '"fd00:31::2/64"'), "topology.links[2].ipv6[0]",
     "is IPv4 but the other end, 'fd00:31::2/64', is IPv6", "ipv6"),
    ("link-ipv6-under-ipv4", V6LINK, v6link("ipv4", '"fd00:31::1/64"', '"fd00:31::2/64"'),
     ("topology.links[2].ipv4[0]", "topology.links[2].ipv4[1]"),
     "is an IPv6 address; write it under ipv6:", "ipv4"),
    ("link-ipv6-without-prefix", V6LINK, v6link("ipv6", '"fd00:31::1/64"', '"fd00:31::2"'),
     "topology.links[2].ipv6[1]", "'fd00:31::2' needs a prefix length, e.g. fd00:31::2/64",
     "ipv6"),
    ("link-ipv6-slash-128", V6LINK, v6link("ipv6", '"fd00:31::1/64"', '"fd00:31::2/128"'),
     "topology.links[2].ipv6[1]", "/128 leaves no room for two hosts; use /127 or shorter",
     "ipv6"),
    ("link-ipv6-anycast", V6LINK, v6link("ipv6", '"fd00:31::/64"', '"fd00:31::2/64"'),
     "topology.links[2].ipv6[0]", "is the subnet-router anycast address", "ipv6"),
    ("link-ipv6-two-subnets", V6LINK, v6link("ipv6", '"fd00:31::1/64"', '"fd00:32::2/64"'),
     "topology.links[2].ipv6", "are not in one subnet", "ipv6"),
    ("link-ipv6-in-pod-cidr", V6LINK,
     v6link("ipv6", '"fd00:10:244:ff::1/64"', '"fd00:10:244:ff::2/64"'),
     ("topology.links[2].ipv6[0]", "topology.links[2].ipv6[1]"),
     "overlaps cluster.pod-cidr fd00:10:244::/56", "ipv6"),
    ("link-ipv6-same-address-twice", V6LINK,
     v6link("ipv6", '"fd00:31::1/64"', '"fd00:31:0::1/64"'), "topology.links[2].ipv6[1]",
     "address fd00:31::1 is already used at topology.links[2].ipv6[0]", "ipv6"),
    ("switch-port-with-ipv6", LINK1, LINK1 + '      ipv6: ["fd00:31::1/64", "fd00:31::2/64"]\n',
     "topology.links[0].ipv6[1]", "'sw' is a switch: its ports take no address", "ipv6"),
    ("node-port-without-ipv6", LINK1, LINK1 + "      ipv6: [null, null]\n",
     "topology.links[0].ipv6[0]", "'node1' needs an address when ipv6 is given", "ipv6"),
    ("link-mtu-below-ipv6-minimum", LINK1, LINK1 + "      mtu: 1200\n",
     "topology.links[0].mtu", "1200 is below IPv6's minimum MTU 1280", "mtu"),
    ("switch-segment-v6-in-two-subnets", [
        (LINK1, LINK1 + '      ipv6: ["fd00:31:1::1/64", null]\n'),
        (V6LINK, V6LINK + '      ipv6: ["fd00:31::1/64", null]\n')],
     None, "topology.links[2].ipv6[0]",
     "fd00:31::1/64 is not in fd00:31:1::/64, the subnet of its segment (sw",
     '"fd00:31::1/64"'),
]
# (id, base, old, new, path, fragment, needle): one family missing from the cluster
FAMILY_CASES = [
    ("ipv6-link-in-ipv4-cluster", MINIMAL, V6LINK,
     v6link("ipv6", '"fd00:31::1/64"', '"fd00:31::2/64"'), "topology.links[2].ipv6",
     "the cluster has no IPv6: pod-cidr is IPv4 only; add an IPv6 prefix to pod-cidr for "
     "dual-stack, or drop ipv6", "ipv6"),
    ("ipv4-link-in-ipv6-cluster", V6ONLY, V6LINK,
     v6link("ipv4", '"172.31.0.1/24"', '"172.31.0.2/24"'), "topology.links[2].ipv4",
     "the cluster has no IPv4: pod-cidr is IPv6 only", "ipv4"),
    ("service-cidr-ipv6-in-ipv4-cluster", MINIMAL, CLUSTER,
     CLUSTER + "  service-cidr: [10.96.0.0/16, fd00:10:96::/112]\n",
     "cluster.service-cidr[1]", "fd00:10:96::/112 is IPv6 but pod-cidr has no IPv6 prefix",
     "service-cidr"),
    ("masq-agent-ipv6-cidr-in-an-ipv4-cluster", MINIMAL, CLUSTER,
     CLUSTER + "  masquerade: {nonMasqueradeCIDRs: [10.0.0.0/8, 'fd00::/8']}\n",
     "cluster.masquerade.nonMasqueradeCIDRs[1]",
     "is IPv6, but the cluster has no IPv6 (pod-cidr), so the agent runs without "
     "--enable-ipv6", "masquerade"),
    ("ipv4-service-in-an-ipv6-cluster", V6ONLY,
     "pods:\n  web:\n    node: node1\n",
     "services:\n  websvc:\n    selector: {app: web}\n    ipFamilies: [IPv4]\n"
     "    ports: [{port: 80}]\n"
     "pods:\n  web:\n    node: node1\n    labels: {app: web}\n",
     "services.websvc.ipFamilies[0]", "IPv4 is not configured on this cluster",
     "ipFamilies: [IPv4]"),
    ("underlay-ipv4-in-ipv6-cluster", V6ONLY, "underlay-cidr: fd00:172:30::/48",
     "underlay-cidr: [172.30.0.0/16, fd00:172:30::/48]", "cluster.underlay-cidr",
     "is IPv4 and IPv6 but pod-cidr is IPv6", "underlay-cidr"),
]


@pytest.mark.parametrize(("old", "new", "path", "fragment", "needle"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_reports_one_problem_with_path_line_and_message(
        old: str | list[tuple[str, str]], new: str | None, path: str | tuple[str, ...],
        fragment: str, needle: str | None) -> None:
    check_one_rule(MINIMAL, old, new, path, fragment, needle)


@pytest.mark.parametrize(("old", "new", "path", "fragment", "needle"),
                         [c[1:] for c in DUAL_CASES], ids=[c[0] for c in DUAL_CASES])
def test_each_dual_stack_rule_reports_one_problem(
        old: str | list[tuple[str, str]], new: str | None, path: str | tuple[str, ...],
        fragment: str, needle: str | None) -> None:
    check_one_rule(DUAL, old, new, path, fragment, needle)


@pytest.mark.parametrize(("base", "old", "new", "path", "fragment", "needle"),
                         [c[1:] for c in FAMILY_CASES], ids=[c[0] for c in FAMILY_CASES])
def test_a_family_the_cluster_lacks_is_refused(
        base: str, old: str, new: str, path: str, fragment: str, needle: str) -> None:
    check_one_rule(base, old, new, path, fragment, needle)


def check_one_rule(base: str, old: str | list[tuple[str, str]], new: str | None,
                   path: str | tuple[str, ...], fragment: str, needle: str | None) -> None:
    text = base
    for a, b in old if isinstance(old, list) else [(old, new)]:
        assert b is not None
        text = broken(a, b, text)
    paths = [path] if isinstance(path, str) else list(path)
    err, problems = problems_of(text, Path("broken.clab.yml"))
    rendered = str(err)
    assert [p.path for p in problems] == paths, rendered
    assert rendered.splitlines()[0] == f"broken.clab.yml: {len(paths)} problem(s)"
    for problem in problems:
        assert fragment in problem.message
        if needle is not None:
            line = line_of(text, needle)
            assert problem.line == line, rendered
            assert f"broken.clab.yml:{line}: {problem.path}: " in rendered
        else:
            assert f"broken.clab.yml: {problem.path}: " in rendered or (
                f": {problem.path}: " in rendered)


def test_minimal_file_is_valid() -> None:
    assert valid(MINIMAL).name == "lab"


def test_dual_stack_and_ipv6_only_files_are_valid() -> None:
    assert valid(DUAL).spec.cluster.families == ("ipv4", "ipv6")
    assert valid(V6ONLY).spec.cluster.families == ("ipv6",)
    # IPv6 first: IPv6 is the primary family
    swapped = DUAL.replace("[10.244.0.0/16, fd00:10:244::/56]", "[fd00:10:244::/56, 10.244.0.0/16]")
    assert valid(swapped).spec.cluster.families == ("ipv6", "ipv4")


def test_an_unset_underlay_defaults_to_one_prefix_per_family_of_the_pod_cidr() -> None:
    cluster = valid(DUAL.replace("  underlay-cidr: [172.30.0.0/16, fd00:172:30::/48]\n", "")
                    ).spec.cluster
    assert cluster.underlay_cidrs == ("172.30.0.0/16", "fd00:172:30::/48")
    assert valid(V6ONLY.replace("  underlay-cidr: fd00:172:30::/48\n", "")
                 ).spec.cluster.underlay_cidrs == ("fd00:172:30::/48",)
    assert valid(MINIMAL.replace("  underlay-cidr: 172.30.0.0/16\n", "")
                 ).spec.cluster.underlay_cidrs == ("172.30.0.0/16",)


@pytest.mark.parametrize("addresses", [
    'ipv6: ["fd00:31::/127", "fd00:31::1/127"]',  # RFC 6164: both addresses of a /127
    'ipv6: ["fd00:31::1/64", "fd00:31::2/64"]\n      ipv4: ["172.31.0.1/30", "172.31.0.2/30"]',
    'ipv4: ["172.31.0.1/30", "172.31.0.2/30"]',  # IPv6 addressed from the underlay
])
def test_explicit_link_addresses_of_either_family_are_accepted(addresses: str) -> None:
    valid(broken(V6LINK, f'"ext:eth1", "node1:eth9"]\n      {addresses}\n', DUAL))


def test_service_cidr_takes_one_prefix_per_family() -> None:
    cluster = valid(broken(CLUSTER, CLUSTER + "  service-cidr: [10.96.0.0/16, "
                           "fd00:10:96::/112]\n", DUAL)).spec.cluster
    assert cluster.service_cidrs == ("10.96.0.0/16", "fd00:10:96::/112")
    # unset: the default range of each family of the cluster
    assert valid(MINIMAL).spec.cluster.service_cidrs == ("10.96.0.0/16",)
    assert valid(DUAL).spec.cluster.service_cidrs == ("10.96.0.0/16", "fd00:10:96::/112")
    assert valid(V6ONLY).spec.cluster.service_cidrs == ("fd00:10:96::/112",)


@pytest.mark.parametrize("choice", ["routing: static", "cni: podlab", "cni: bridge",
                                    "cni: ptp"])
def test_implemented_datapath_choices_are_accepted(choice: str) -> None:
    assert valid(broken(CLUSTER, f"{CLUSTER}  {choice}\n")).spec.cluster.routing == "static"


@pytest.mark.parametrize("value", ["10ms", "1.5s", "250us", " 7 ms ", 0, 12, 2.5, "60s"],
                         ids=str)
def test_valid_netem_durations_are_accepted(value: object) -> None:
    valid(broken(LINK1, LINK1 + f"      netem: {{delay: {value!r}, loss: 1.5, rate: 100}}\n"))


def test_switch_with_no_links_is_reported() -> None:
    _, problems = problems_of(broken(NODES, NODES + "    sw2: {kind: switch}\n"))
    assert [(p.path, p.message) for p in problems] == [
        ("topology.nodes.sw2", "switch 'sw2' has no links")]


def test_isolated_node_is_reported() -> None:
    _, problems = problems_of(broken(NODES, NODES + "    node3: {kind: k8s-node}\n"))
    assert [p.path for p in problems] == ["topology.nodes.node3"]
    assert "has no path to 'node1'" in problems[0].message


ISLANDS = """\
name: islands
topology:
  defaults: {kind: k8s-node}
  nodes: {a: {}, b: {}, c: {}, d: {}}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
    - endpoints: ["c:eth1", "d:eth1"]
"""


def test_two_islands_report_every_node_of_the_far_island() -> None:
    _, problems = problems_of(ISLANDS)
    assert [p.path for p in problems] == ["topology.nodes.c", "topology.nodes.d"]
    assert all("no path to 'a'" in p.message for p in problems)


@pytest.mark.parametrize("order", ["k8s-first", "linux-first"])
def test_path_only_through_a_linux_host_is_no_path(order: str) -> None:
    nodes = ["    n1: {kind: k8s-node}\n", "    n2: {kind: k8s-node}\n"]
    host = "    h: {kind: linux}\n"
    nodes = [host, *nodes] if order == "linux-first" else [*nodes, host]
    text = ("name: lab\ntopology:\n  nodes:\n" + "".join(nodes) + "  links:\n"
            '    - endpoints: ["n1:eth1", "h:eth1"]\n    - endpoints: ["h:eth2", "n2:eth1"]\n')
    _, problems = problems_of(text)
    assert [p.path for p in problems] == ["topology.nodes.n2"]
    assert "a linux host does not forward" in problems[0].message


def test_path_through_a_router_is_a_path() -> None:
    valid("name: lab\ntopology:\n  nodes:\n    h: {kind: linux}\n    r: {kind: router}\n"
          "    n1: {kind: k8s-node}\n  links:\n"
          '    - endpoints: ["h:eth1", "r:eth1"]\n    - endpoints: ["r:eth2", "n1:eth1"]\n')


def test_outside_hosts_without_forwarders_must_share_a_segment() -> None:
    text = ("name: lab\ntopology:\n  defaults: {kind: linux}\n  nodes: {a: {}, b: {}, c: {}}\n"
            '  links:\n    - endpoints: ["a:eth1", "b:eth1"]\n'
            '    - endpoints: ["b:eth2", "c:eth1"]\n')
    _, problems = problems_of(text)
    assert [p.path for p in problems] == ["topology.nodes.c"]


def test_all_problems_are_reported_at_once() -> None:
    text = MINIMAL
    for old, new in [
        ("name: lab\n", "name: Lab\n"),
        ("pod-cidr: 10.244.0.0/16", "pod-cidr: 10.244.0.1/16"),
        ("node2: {kind: k8s-node}", "node2: {kind: k8s-node, labels: {io.podlab.x: y}}"),
        ('"ext:eth1", "sw:eth3"', '"ext:eth1", "sw:eth1"'),
        ("  web:\n    node: node1", "  web:\n    node: ext"),
        ("  db:\n    node: node2\n    containers:\n      - {name: app}\n",
         "  db:\n    node: node2\n    containers:\n      - {name: app}\n      - {name: app}\n"),
    ]:
        text = broken(old, new, text)
    err, problems = problems_of(text, Path("many.clab.yml"))
    assert sorted(p.path for p in problems) == sorted([
        "name", "cluster.pod-cidr", "topology.nodes.node2.labels.io.podlab.x",
        "topology.links[2].endpoints[1]", "pods.web.node", "pods.db.containers[1].name"])
    assert str(err).startswith(f"many.clab.yml: {len(problems)} problem(s)\n")
    assert all(p.line is not None for p in problems)
    assert len(str(err).splitlines()) == len(problems) + 1


def test_all_structural_problems_are_reported_at_once() -> None:
    text = MINIMAL
    for old, new in [
        ("node-mask: 24", "node-mask: big"),
        ('endpoints: ["node1', 'endpoint: ["node1'),
        ("containers:\n      - {name: app}\n  db", "containres:\n      - {name: app}\n  db"),
    ]:
        text = broken(old, new, text)
    _, problems = problems_of(text)
    assert [p.path for p in problems] == [
        "cluster.node-mask", "topology.links[0].endpoint", "pods.web.containres"]


def test_problem_render_includes_file_line_and_path() -> None:
    err, problems = problems_of(broken("node2: {kind: k8s-node}", "node2: {kind: k8snode}"),
                                Path("x.clab.yml"))
    line = problems[0].line
    assert problems[0].render("x.clab.yml") == (
        f"x.clab.yml:{line}: topology.nodes.node2.kind: {problems[0].message}")
    assert problems[0].render("x.clab.yml") in str(err)


def test_defaults_kind_applies_and_a_node_may_override_it() -> None:
    topo = parse_topology(MINIMAL.replace("topology:\n", "topology:\n  defaults: {kind: router}\n")
                          .replace("    ext: {kind: linux}\n", "    ext: {}\n"))
    assert topo.kind_of("ext") == "router" and topo.kind_of("node1") == "k8s-node"
