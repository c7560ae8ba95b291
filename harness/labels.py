"""Docker label keys: the only state podlab keeps (on the daemon, no state file).

Every key is written by deploy and read back by inspect, exec, destroy, attach and the
benchmark, so they are spelled once, here.
"""

from __future__ import annotations

PREFIX = "io.podlab"

LAB = f"{PREFIX}.lab"  # the lab a container belongs to: destroy --all finds them by it
ROLE = f"{PREFIX}.role"  # one of the ROLE_* values below
NODE = f"{PREFIX}.node"  # the topology node (of a node, or of the node a pod runs on)
POD = f"{PREFIX}.pod"
KIND = f"{PREFIX}.kind"  # a node's kind
TOPO = f"{PREFIX}.topo"  # absolute path of the topology file
TOPO_DIGEST = f"{PREFIX}.topo-digest"  # what that file said at deploy, hashed
POD_CIDR = f"{PREFIX}.pod-cidr"  # a k8s-node's pod CIDR (of the primary family)
POD_CIDRS = f"{PREFIX}.pod-cidrs"  # every family's, comma-separated
IP = f"{PREFIX}.ip"  # a pod's address (of the primary family)
IPS = f"{PREFIX}.ips"  # every family's, comma-separated
CIDR = f"{PREFIX}.cidr"  # a pod's address with its prefix length
CONTAINER = f"{PREFIX}.container"  # a pod container's name in the pod spec
ORDER = f"{PREFIX}.order"  # file order, so inspect lists as the file does
DEPLOY = f"{PREFIX}.deploy"  # the deploy attempt: its rollback removes exactly these
IMAGE = f"{PREFIX}.image"  # on podlab's images: which one
CONTEXT_HASH = f"{PREFIX}.context-hash"  # on podlab's images: the build context's digest
EXPORTED_FROM = f"{PREFIX}.exported-from"  # containerlab export: not LAB, destroy skips it

ROLE_NODE, ROLE_INFRA, ROLE_CONTAINER = "node", "pod-infra", "pod-container"
