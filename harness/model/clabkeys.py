"""containerlab's keys, sorted into what podlab honours, ignores (with a warning) and
refuses (with one sentence of why). Data only; harness.model.clab applies it.

The merge codes are containerlab's (types/topology.go, see SEMANTICS.md in the docs):
F the first set value wins (node > group > kind > defaults), C lists concatenated
(defaults + kind + group + node, exact duplicates dropped), M maps merged per key,
N the node's own only.
"""

from __future__ import annotations

FIRST, CONCAT, MAP, NODE_ONLY, STAGES, BINDS = "F", "C", "M", "N", "S", "B"

# node keys podlab honours, with containerlab's merge code
HONOURED: dict[str, str] = {
    "kind": FIRST, "image": FIRST, "image-pull-policy": FIRST, "cmd": FIRST,
    "entrypoint": FIRST, "user": FIRST, "hostname": FIRST, "network-mode": FIRST,
    "startup-delay": FIRST, "memory": FIRST, "cpu": FIRST,
    "env": MAP, "labels": MAP, "sysctls": MAP,
    "env-files": CONCAT, "exec": CONCAT, "cap-add": CONCAT,
    "binds": BINDS, "stages": STAGES,
    "mgmt-ipv4": NODE_ONLY, "mgmt-ipv6": NODE_ONLY,
}
GROUP = "group"  # consumed by the merge itself

_NOS = "applies to a network OS image, not to a container podlab runs"
# accepted without effect, and listed in one warning
IGNORED: dict[str, str] = {
    "certificate": "podlab issues no TLS certificates",
    "healthcheck": "podlab does not poll Docker health checks",
    "restart-policy": "a lab container is not restarted; a crash is a finding",
    "auto-remove": "podlab removes containers itself on destroy",
    "dns": "lab containers have no DNS server outside the lab",
    "aliases": "podlab's management network has no DNS aliases",
    "privileged": "podlab never runs a container privileged (NET_ADMIN, NET_RAW and sysctls "
                  "instead)",
    "type": _NOS, "license": _NOS, "startup-config": _NOS, "enforce-startup-config": _NOS,
    "suppress-startup-config": _NOS, "extras": _NOS, "config": _NOS, "components": _NOS,
    "credentials": _NOS, "link-apply-mode": _NOS, "runtime": "podlab runs Docker only",
    "cgroup-parent": "resource placement has no effect on the network",
    "cpu-set": "resource placement has no effect on the network",
    "shm-size": "resource placement has no effect on the network",
    "cgroupns-mode": "resource placement has no effect on the network",
    "pid-mode": "podlab does not share process namespaces",
    "security-opts": "podlab sets the security options itself",
    "devices": "podlab passes no host devices into the lab",
    "tmpfs": "podlab mounts no tmpfs",
    "volumes": "podlab mounts only binds",
    "publish": "podlab publishes nothing outside the machine",
}

_HOST_JOIN = "join the lab to the host's own network, and podlab keeps lab traffic off it"
_HOST_NET = f"would {_HOST_JOIN}"
REFUSED: dict[str, str] = {
    "ports": f"published ports {_HOST_NET}",
}
NETWORK_MODE_HOST = f"network-mode: host {_HOST_NET}"

# top-level and mgmt keys
TOP_HONOURED = ("name", "topology", "mgmt", "cluster", "pods", "services")
TOP_IGNORED: dict[str, str] = {
    "prefix": "podlab names containers podlab-<lab>-<node>",
    "settings": "podlab issues no certificates and keeps no lab directory",
    "debug": "containerlab's own logging",
}
MGMT_HONOURED = ("network", "bridge", "ipv4-subnet", "ipv6-subnet", "ipv4-range",
                 "ipv6-range", "ipv4-gw", "ipv6-gw", "mtu")
MGMT_IGNORED: dict[str, str] = {
    "external-access": "podlab's management network never has a way out (internal)",
    "driver-opts": "podlab sets the bridge's options itself",
    "skip-when-unused": "podlab creates the management network only when the file asks",
}
# Docker's own networks: the default bridge NATs out, host is the host's, none is none
MGMT_REFUSED_NETWORKS: dict[str, str] = {
    "bridge": "Docker's default bridge network NATs to the outside; podlab's management "
              "network has no way out (name another network)",
    "host": f"the host network {_HOST_NET}",
}

TOPOLOGY_KEYS = ("defaults", "kinds", "groups", "nodes", "links")

# link types
LINK_REFUSED: dict[str, str] = {
    "host": f"a `host` link puts one end in the host's namespace, which would {_HOST_JOIN}",
    "mgmt-net": f"a `mgmt-net` link plugs into the management bridge on the host, which "
                f"would {_HOST_JOIN}",
    "macvlan": f"a `macvlan` link is a child of a host interface, which would {_HOST_JOIN}",
    "vxlan": "a `vxlan` link needs a VXLAN device toward another machine, which this host "
             "does not give a lab (podlab keeps the lab on one machine)",
    "vxlan-stitch": "a `vxlan-stitch` link needs a VXLAN device toward another machine, which "
                    "this host does not give a lab (podlab keeps the lab on one machine)",
    "veth-stitch": "a `veth-stitch` link stitches through the host's namespace, which "
                   f"would {_HOST_JOIN}",
}
SPECIAL_ENDPOINTS = {"host": "host", "mgmt-net": "mgmt-net", "macvlan": "macvlan"}
VETH_LINK_KEYS = ("type", "endpoints", "mtu", "vars", "labels", "ipv4", "ipv6", "netem")
ENDPOINT_KEYS = ("node", "interface", "mac", "ipv4", "ipv6", "vars")
LINK_IGNORED: dict[str, str] = {
    "vars": "link variables feed containerlab's vendor config templates",
    "labels": "link labels feed containerlab's graph and tooling",
}

# kinds
PODLAB_KINDS = ("k8s-node", "router", "switch", "linux")
KIND_ALIASES = {"bridge": "switch"}  # containerlab's bridge is podlab's L2 switch
BRIDGE_KEYS = ("kind", "labels", "network-mode", "startup-delay")  # what a bridge keeps
REFUSED_KINDS: dict[str, str] = {
    "host": "kind `host` stands for the host itself, which podlab keeps out of the lab",
    "ext-container": "kind `ext-container` is a container podlab did not start and does not "
                     "own",
    "k8s-kind": "kind `k8s-kind` runs a kind cluster podlab does not own; write a podlab "
                "topology from its config with `podlab import kind CONFIG`",
    "ovs-bridge": "kind `ovs-bridge` needs an Open vSwitch bridge on the host; use `bridge` "
                  "(podlab's L2 switch, inside the lab)",
}
VENDOR = ("needs a vendor network OS image podlab does not run; podlab runs `linux` and "
          "`bridge` nodes (and its own k8s-node, router, switch)")
# containerlab's kinds (schemas/clab.schema.json at 39ff2b7): any but linux and bridge is
# refused by VENDOR or REFUSED_KINDS rather than called unknown
CONTAINERLAB_KINDS = (
    "nokia_srlinux", "arista_ceos", "juniper_crpd", "juniper_csrx", "sonic-vs", "sonic-vm",
    "nokia_sros", "nokia_srsim", "juniper_vmx", "juniper_vqfx", "juniper_vsrx",
    "juniper_vjunosrouter", "juniper_vjunosswitch", "juniper_vjunosevolved", "cisco_xrv",
    "cisco_xrv9k", "arista_veos", "cisco_csr1000v", "paloalto_panos", "mikrotik_ros",
    "6wind_vsr", "cisco_n9kv", "cisco_ftdv", "dell_ftosv", "dell_sonic", "aruba_aoscx",
    "linux", "bridge", "ovs-bridge", "border0", "host", "keysight_ixia-c-one",
    "ipinfusion_ocnos", "checkpoint_cloudguard", "ciena_saos", "ext-container", "rare",
    "cisco_xrd", "cisco_xrd_vrouter", "cisco_c8000", "cisco_c8000v", "cisco_cat9kv",
    "cisco_iol", "cisco_asav", "cisco_vios", "nvidia_cumulusvx", "huawei_vrp", "openbsd",
    "freebsd", "generic_vm", "fortinet_fortigate", "k8s-kind", "fdio_vpp",
    "vyosnetworks_vyos", "juniper_cjunosevolved", "arrcus_arcos", "f5_bigip-ve",
    "cisco_sdwan", "openwrt", "spirent_stc", "veesix_osvbng", "ostinato", "plvision_sonic",
    # older names containerlab still accepts
    "srl", "ceos", "crpd", "sonic", "vr-sros", "vr-vmx", "vr-xrv", "vr-xrv9k", "vr-veos",
    "vr-csr", "vr-pan", "vr-ros", "vr-n9kv", "vr-ftosv", "vr-aoscx", "xrd", "c8000",
    "cvx", "ipinfusion_ocnos", "checkpoint_cloudguard", "cisco_iol",
)


def kind_refusal(kind: str) -> str | None:
    """Why a containerlab kind is refused; None for podlab's kinds and `bridge`."""
    if kind in PODLAB_KINDS or kind in KIND_ALIASES:
        return None
    if kind in REFUSED_KINDS:
        return REFUSED_KINDS[kind]
    if kind in CONTAINERLAB_KINDS:
        return f"kind `{kind}` {VENDOR}"
    return None
