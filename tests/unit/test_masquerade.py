"""`masquerade:` as true, false, or ip-masq-agent's own config: what the plan expects,
what the datapath installs, what validation refuses. Pure: no Docker, no root."""

from __future__ import annotations

from pathlib import Path

import pytest
from podlab_unit_helpers import problems_of

from harness.datapath import describe
from harness.host import firewall
from harness.model.topology import parse_topology
from harness.plan import Plan, make_plan
from harness.prove import verify
from harness.prove.result import Result
from harness.render.export import masquerade_commands

ROOT = Path(__file__).resolve().parents[2]
FLAT3 = (ROOT / "topologies" / "flat3.clab.yml").read_text()


def flat3(masquerade: str) -> str:
    assert FLAT3.count("  masquerade: true\n") == 1
    return FLAT3.replace("  masquerade: true\n", f"  masquerade: {masquerade}\n")


def plan(masquerade: str) -> Plan:
    return make_plan(parse_topology(flat3(masquerade)))


def test_true_keeps_podlabs_rule() -> None:
    p = plan("true")
    assert p.masquerade and p.masq_agent_exempt is None
    node1 = p.node("node1")
    assert node1.masquerade_exempt[0] == "10.244.0.0/16"
    (rule,) = describe(p).node("node1").nat
    assert (rule.source, rule.exempt, rule.not_local) == (node1.pod_cidr,
                                                          node1.masquerade_exempt, False)
    assert p.pod_to_external("web", "world").snat_to == node1.address


def test_the_agents_config_with_its_defaults_leaves_private_ranges_alone() -> None:
    """No nonMasqueradeCIDRs: the agent's default, RFC 1918 (and link-local) exempt. The
    outside host sits on a 172.30/16 underlay, so it is not masqueraded at all."""
    p = plan("{}")
    assert p.masquerade
    assert p.masq_agent_exempt == ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12",
                                   "192.168.0.0/16")
    assert p.pod_to_external("web", "world").snat_to is None
    control, note = verify._negative_control(p, list(verify.CHECKS), [])
    assert control == "absent" and note and "nonMasqueradeCIDRs" in note


def test_the_agents_config_masquerades_what_it_does_not_exempt() -> None:
    p = plan("{nonMasqueradeCIDRs: [10.0.0.0/8], masqLinkLocal: true}")
    assert p.masq_agent_exempt == ("10.0.0.0/8",)  # masqLinkLocal: 169.254/16 NATed too
    assert p.pod_to_external("web", "world").snat_to == p.node("node1").address
    assert p.masquerades("node1", "169.254.1.1")
    assert not p.masquerades("node1", "10.244.1.2")
    assert not p.masquerades("node1", p.node("node1").address)  # its own: --dst-type LOCAL
    assert p.masquerades("node1", str(p.node("node2").address))  # not exempt: NATed
    # the control is seen only in a result: with none, it did not run
    assert verify._negative_control(p, ["pod-to-external"], [])[0] == "not run"
    e = p.pod_to_external("web", "world")
    seen = Result("pod-to-external", "web", "world", "udp", True, {"src": e.snat_to},
                  {"src": e.snat_to}, "")
    assert verify._negative_control(p, ["pod-to-external"], [seen])[0] == "observed"


def test_the_agents_rule_is_installed_and_exported_as_the_agent_writes_it() -> None:
    p = plan("{nonMasqueradeCIDRs: [10.0.0.0/8]}")
    net = describe(p)
    assert net.node("world").nat == () and net.node("tor").nat == ()
    (rule,) = net.node("node2").nat
    assert rule.source is None and rule.not_local and rule.random_fully
    lines = firewall.masquerade_lines(rule.source, rule.exempt, rule.chain, **rule.how)
    ret = '-m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE"'
    assert lines[:2] == [f"-A IP-MASQ-AGENT {ret} -d 169.254.0.0/16 -j RETURN",
                         f"-A IP-MASQ-AGENT {ret} -d 10.0.0.0/8 -j RETURN"]
    assert lines[2].endswith(" -j MASQUERADE --random-fully") and len(lines) == 4
    assert lines[3].startswith("-A POSTROUTING -m comment --comment ")
    assert lines[3].endswith(" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT")
    assert masquerade_commands(rule)[1:] == [f"iptables -t nat {line}" for line in lines]


def test_false_means_no_nat_anywhere() -> None:
    p = plan("false")
    assert not p.masquerade and all(n.nat == () for n in describe(p).nodes)
    assert p.pod_to_external("web", "world").snat_to is None
    assert verify._negative_control(p, list(verify.CHECKS), [])[0] == "not applicable"


@pytest.mark.parametrize(("value", "path", "message"), [
    ("{nonMasqueradeCIDRs: [10.0.0.1/8]}", "cluster.masquerade.nonMasqueradeCIDRs[0]",
     "not an aligned CIDR"),
    ("{nonMasqueradeCIDRs: [10.0.0.0/8, 172.16.0.0/12], cidrLimit: 1}",
     "cluster.masquerade.nonMasqueradeCIDRs", "cidrLimit is 1"),
    ("{nonMasqCIDRs: [10.0.0.0/8]}", "cluster.masquerade.nonMasqCIDRs", ""),
    ("{masqLinkLocal: 3}", "cluster.masquerade.masqLinkLocal", ""),
    ("maybe", "cluster.masquerade", ""),
])
def test_validation_speaks_of_the_agents_keys(value: str, path: str, message: str) -> None:
    _, problems = problems_of(flat3(value))
    assert [p.path for p in problems] == [path], problems
    assert message in problems[0].message


DUAL = (ROOT / "topologies" / "dual.clab.yml").read_text()


def dual(masquerade: str) -> Plan:
    assert DUAL.count("  masquerade: true\n") == 1
    return make_plan(parse_topology(DUAL.replace("  masquerade: true\n",
                                                 f"  masquerade: {masquerade}\n")))


def test_the_agents_config_in_ipv6_exempts_link_local_and_its_own_ipv6_cidrs() -> None:
    """--enable-ipv6: fe80::/10 (unless masqLinkLocalIPv6) and the config's IPv6 entries;
    the defaults (RFC 1918) have none, so every other IPv6 destination is masqueraded."""
    p = dual("{}")
    assert p.masq_agent_exempt == ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12",
                                   "192.168.0.0/16", "fe80::/10")
    assert p.masquerades("node1", "fd00:10:244:1::2")  # a pod on node2: the agent NATs it
    assert not p.masquerades("node1", "10.244.1.2")
    p = dual("{nonMasqueradeCIDRs: [10.0.0.0/8, 'fd00:10:244::/56'], masqLinkLocalIPv6: true}")
    assert p.masq_agent_exempt == ("169.254.0.0/16", "10.0.0.0/8", "fd00:10:244::/56")
    assert not p.masquerades("node1", "fd00:10:244:1::2")
    assert p.masquerades("node1", "fe80::1")
    assert p.pod_to_external("web", "world", "ipv6").snat_to == \
        p.node("node1").address_of("ipv6")


def test_the_agents_rule_goes_to_each_family_of_the_cluster() -> None:
    p = dual("{nonMasqueradeCIDRs: [10.0.0.0/8, 'fd00:10:244::/56']}")
    four, six = describe(p).node("node1").nat
    assert (four.family, four.exempt) == (4, ("169.254.0.0/16", "10.0.0.0/8"))
    assert (six.family, six.exempt) == (6, ("fe80::/10", "fd00:10:244::/56"))
    lines = firewall.masquerade_lines(six.source, six.exempt, six.chain, **six.how)
    assert [line.split()[-4:] for line in lines[:2]] == [
        ["-d", "fe80::/10", "-j", "RETURN"], ["-d", "fd00:10:244::/56", "-j", "RETURN"]]
    assert lines[-1].endswith(" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT")
    assert masquerade_commands(six)[0] == "ip6tables -t nat -N IP-MASQ-AGENT"
    with pytest.raises(ValueError, match="not of the rule's family"):
        firewall.masquerade_lines(None, ["10.0.0.0/8"], family=6)
    # an IPv4-only cluster's plan is as before: no IPv6 entry, one rule
    assert "fe80::/10" not in (plan("{}").masq_agent_exempt or ())
    assert len(describe(plan("{}")).node("node1").nat) == 1
