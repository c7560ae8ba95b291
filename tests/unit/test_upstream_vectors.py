"""What kube-proxy, portmap and ip-masq-agent write, checked against the values their
own unit tests expect (facts copied as data from upstream's tests, not code), so a change
that drifts from upstream fails here:

- kube-proxy: kubernetes pkg/proxy/iptables/proxier_test.go (v1.29): chain-name hashes,
  the KUBE-FIREWALL localnet rule and the last KUBE-SERVICES rule with the default
  `--iptables-localhost-nodeports=true`;
- portmap: containernetworking/plugins plugins/meta/portmap/portmap_iptables_test.go
  (v1.9.0): DN chain names and the per-hostPort rules, `-s` the CNI result's address with
  its prefix;
- ip-masq-agent: kubernetes-sigs/ip-masq-agent cmd/ip-masq-agent/ip-masq-agent_test.go:
  the restore text of the default config and of `--to-ports`.
"""

from __future__ import annotations

from pathlib import Path

from harness.datapath import describe, kubeproxy, portmap
from harness.datapath.iptables import Rule
from harness.host import firewall
from harness.model.addressing import IPV4, IPV6
from harness.model.topology import parse_topology
from harness.plan import Plan, make_plan
from harness.plan.services import HostPortPlan

ROOT = Path(__file__).resolve().parents[2]
SERVICES = (ROOT / "topologies" / "services.clab.yml").read_text()


def services_plan(masquerade: str = "true") -> Plan:
    assert SERVICES.count("  masquerade: true\n") == 1
    return make_plan(parse_topology(SERVICES.replace("  masquerade: true\n",
                                                     f"  masquerade: {masquerade}\n")))

# ------------------------------------------------------------------ kube-proxy

LOCALNET_RULE = ('-A KUBE-FIREWALL -m comment --comment "block incoming localnet '
                 'connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate '
                 'RELATED,ESTABLISHED,DNAT -j DROP')
NODEPORTS_LAST = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; '
                  'NOTE: this must be the last rule in this chain" -m addrtype --dst-type '
                  'LOCAL -j KUBE-NODEPORTS')
NODEPORTS_LAST_V6 = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; '
                     'NOTE: this must be the last rule in this chain" -m addrtype --dst-type '
                     'LOCAL ! -d ::1/128 -j KUBE-NODEPORTS')


def test_kube_proxy_chain_names_are_upstreams() -> None:
    assert kubeproxy.svc_chain("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert kubeproxy.sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == \
        "KUBE-SEP-SXIVWICOYRO3J4NJ"


def test_kube_proxy_allows_localhost_node_ports_by_default_in_ipv4() -> None:
    plan = services_plan()
    rs = kubeproxy.node_rules("node1", plan.services, plan.pod_cidr, IPV4)
    filt = [r.line() for r in rs.rules if r.table == "filter"]
    assert filt[0] == LOCALNET_RULE  # written before any Service's filter rule
    assert ("filter", kubeproxy.KUBELET_FIREWALL) in rs.chains
    services = [r.line() for r in rs.rules_of(kubeproxy.SERVICES)]
    assert services[-1] == NODEPORTS_LAST
    # kubelet's jump chains, which kube-proxy ensures after its own: no comment
    assert [r.line() for r in rs.jumps[-2:]] == ["-A INPUT -j KUBE-FIREWALL",
                                                "-A OUTPUT -j KUBE-FIREWALL"]
    # and the sysctl it sets for them (route_localnet on every interface)
    sysctls = dict(describe(plan).node("node1").container.sysctls)
    assert sysctls["net.ipv4.conf.all.route_localnet"] == "1"


def test_kube_proxy_never_has_localhost_node_ports_in_ipv6() -> None:
    plan = services_plan()
    rs = kubeproxy.node_rules("node1", plan.services, "fd00:10:244::/56", IPV6)
    assert [r.line() for r in rs.rules_of(kubeproxy.SERVICES)][-1] == NODEPORTS_LAST_V6
    assert not [r for r in rs.rules if r.chain == kubeproxy.KUBELET_FIREWALL]
    # the chain and its jumps exist in both families (kube-proxy ensures them per proxier)
    assert ("filter", kubeproxy.KUBELET_FIREWALL) in rs.chains


# ------------------------------------------------------------------ portmap

CONTAINER_ID = ("icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7"
                "shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y")


def test_portmap_chain_names_are_upstreams() -> None:
    assert portmap.dn_chain("testNetName", CONTAINER_ID) == "CNI-DN-bfd599665540dd91d5d28"
    assert portmap.dn_chain("test", CONTAINER_ID) == "CNI-DN-67e92b96e692a494b6b85"


def _hp(port: int, cport: int, proto: str, ips: tuple[str, ...]) -> HostPortPlan:
    return HostPortPlan("p", "c", "n", ips[0], proto, port, cport, ips)


ENTRIES = ((8080, 80, "TCP"), (8081, 80, "TCP"), (8080, 81, "UDP"), (8082, 82, "UDP"))


def test_portmap_rules_are_upstreams_in_ipv4() -> None:
    hps = [_hp(h, c, p, ("10.0.0.2",)) for h, c, p in ENTRIES]
    rs = portmap.node_rules("n", hps, {"p": CONTAINER_ID}, IPV4, {"p": "10.0.0.2/24"})
    chain = portmap.dn_chain(portmap.NETWORK, CONTAINER_ID)
    got = sorted(r.args for r in rs.rules if r.chain == chain)
    want = sorted([
        ("-p", "tcp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"),
        ("-p", "tcp", "--dport", "8081", "-s", "10.0.0.2/24", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "tcp", "--dport", "8081", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "10.0.0.2:80"),
        ("-p", "udp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "udp", "--dport", "8080", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "udp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:81"),
        ("-p", "udp", "--dport", "8082", "-s", "10.0.0.2/24", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "udp", "--dport", "8082", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "udp", "--dport", "8082", "-j", "DNAT", "--to-destination", "10.0.0.2:82")])
    assert got == want
    # and it sets route_localnet on the interface its node routes the pod's address by
    assert rs.localnet == ("10.0.0.2",)


def test_portmap_rules_are_upstreams_in_ipv6() -> None:
    hps = [_hp(h, c, p, ("10.0.0.2", "2001:db8::2")) for h, c, p in ENTRIES[:2]]
    rs = portmap.node_rules("n", hps, {"p": CONTAINER_ID}, IPV6, {"p": "2001:db8::2/64"})
    chain = portmap.dn_chain(portmap.NETWORK, CONTAINER_ID)
    assert [r.args for r in rs.rules if r.chain == chain] == [
        ("-p", "tcp", "--dport", "8080", "-s", "2001:db8::2/64", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "[2001:db8::2]:80"),
        ("-p", "tcp", "--dport", "8081", "-s", "2001:db8::2/64", "-j", "CNI-HOSTPORT-SETMARK"),
        ("-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "[2001:db8::2]:80")]
    assert rs.localnet == ()  # IPv6 has no route_localnet


def test_portmap_mark_chains_are_upstreams() -> None:
    rs = portmap.node_rules("n", [_hp(1, 2, "TCP", ("10.0.0.2",))], {"p": "x"}, IPV4,
                            {"p": "10.0.0.2/24"})
    assert rs.rules_of(portmap.SETMARK)[0] == Rule("nat", portmap.SETMARK, (
        "-m", "comment", "--comment", "CNI portfwd masquerade mark",
        "-j", "MARK", "--set-xmark", "0x2000/0x2000"))
    assert rs.rules_of(portmap.MASQ)[0].args == ("-m", "mark", "--mark", "0x2000/0x2000",
                                                 "-j", "MASQUERADE")


# ------------------------------------------------------------------ ip-masq-agent

NON_MASQ = '-m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE"'
MASQ = ('-m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE '
        '(must be last in chain)"')
JUMP = ('-m comment --comment "ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL '
        'destination traffic to our custom IP-MASQ-AGENT chain"')


def test_ip_masq_agent_rules_are_upstreams() -> None:
    # upstream's "default config" case with --random-fully (the flag's default, and this
    # iptables has it): nonMasqueradeCIDRs 10.244.0.0/16 after link-local
    lines = firewall.masquerade_lines(None, ("169.254.0.0/16", "10.244.0.0/16"),
                                      firewall.AGENT_CHAIN, agent=True, not_local=True,
                                      random_fully=True)
    assert lines == [
        f"-A IP-MASQ-AGENT {NON_MASQ} -d 169.254.0.0/16 -j RETURN",
        f"-A IP-MASQ-AGENT {NON_MASQ} -d 10.244.0.0/16 -j RETURN",
        f"-A IP-MASQ-AGENT {MASQ} -j MASQUERADE --random-fully",
        f"-A POSTROUTING {JUMP} -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT"]


def test_ip_masq_agent_to_ports_only_when_given() -> None:
    # upstream's --to-ports 1024-29999 case: one rule per protocol, then the catch-all
    lines = firewall.masquerade_lines(None, (), firewall.AGENT_CHAIN, agent=True,
                                      not_local=True, random_fully=True,
                                      to_ports="1024-29999")
    assert lines[:4] == [
        f"-A IP-MASQ-AGENT {MASQ} -j MASQUERADE --random-fully -p {p} --to-ports 1024-29999"
        for p in ("tcp", "udp", "sctp")] + [f"-A IP-MASQ-AGENT {MASQ} -j MASQUERADE "
                                           "--random-fully"]


def test_the_cluster_config_runs_the_agent_without_to_ports() -> None:
    plan = services_plan(masquerade="{nonMasqueradeCIDRs: [10.0.0.0/8]}")
    (rule,) = [r for r in describe(plan).node("node1").nat]
    assert rule.chain == "IP-MASQ-AGENT" and rule.to_ports is None and rule.random_fully
