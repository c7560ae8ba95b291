"""Lab.scapy and Lab.ip without Docker: names are checked against the plan, addresses come
from it, and a packet crosses to the child as written (fields left unset stay unset, so
the child's namespace fills in the source, not the parent's)."""

from __future__ import annotations

import pickle

import pytest
from podlab_unit_helpers import EXAMPLES
from scapy.layers.inet import ICMP, IP, UDP

from harness import Lab
from harness.errors import InputError
from harness.host import scapyd
from harness.model.topology import load_topology
from harness.plan import make_plan


def lab(name: str) -> Lab:
    return Lab(make_plan(load_topology(next(p for p in EXAMPLES
                                            if p.name == f"{name}.clab.yml"))))


def test_ip_names_a_pods_or_a_nodes_address_in_either_family() -> None:
    dual = lab("dual")
    pod = dual.plan.pods[0]
    assert dual.ip(pod.name) == pod.ip_of("ipv4")
    assert dual.ip(pod.name, family=6) == pod.ip_of("ipv6")
    node = dual.plan.k8s_nodes[0]
    assert dual.ip(node.name, 6) == node.address_of("ipv6")
    with pytest.raises(InputError, match="no pod or node 'nope'"):
        dual.ip("nope")
    with pytest.raises(InputError, match="has no IPv6 address"):
        lab("minimal").ip("a", 6)
    with pytest.raises(InputError, match="4 or 6"):
        dual.ip(pod.name, 5)


def test_scapy_refuses_names_the_plan_does_not_have() -> None:
    with pytest.raises(InputError, match="no pod 'nope'"):
        lab("minimal").scapy("nope")
    with pytest.raises(InputError, match="exactly one"):
        lab("minimal").scapy("a", node="node1")


def test_a_packet_crosses_as_written_and_is_built_on_the_other_side() -> None:
    pkts = [IP(dst="10.244.1.2", ttl=t) / UDP(dport=33434) for t in (1, 2)]
    sent = pickle.loads(pickle.dumps(scapyd._outbound((pkts,))))
    [recipes] = sent
    assert "src" not in recipes[0].fields  # left for the child's own routes
    [built] = scapyd._inbound((recipes,))
    assert [p.ttl for p in built] == [1, 2] and built[0][UDP].dport == 33434
    one = scapyd._inbound(pickle.loads(pickle.dumps(scapyd._outbound(IP() / ICMP(id=7)))))
    assert one[ICMP].id == 7
