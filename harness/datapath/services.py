"""The Service datapath of one k8s-node: kube-proxy's rules and the portmap plugin's. Pure.

Every datapath programs Services the same way (kube-proxy in iptables mode runs on every
node whatever the CNI), so this is shared rather than a datapath choice.
"""

from __future__ import annotations

from harness.datapath import kubeproxy, portmap
from harness.datapath.iptables import Ruleset
from harness.plan import Plan


def node_rulesets(plan: Plan, node: str) -> tuple[Ruleset, ...]:
    """What kube-proxy and portmap write on `node`; nothing in a lab without Services
    and hostPorts, so such a lab's nodes stay as they were. Before a CNI plugin gave the
    pods their addresses, their endpoints are not there yet (Plan.programmable); the
    plan with the addresses observed (Plan.with_pod_addresses) has them all."""
    if not plan.services and not plan.host_ports:
        return ()
    plan = plan.programmable()
    out = []
    ids = {p.name: p.infra for p in plan.pods}
    for family in plan.families:  # one kube-proxy proxier (and portmap call) per family
        out.append(kubeproxy.node_rules(node, plan.services,
                                        plan.pod_cidr_of(family) or plan.pod_cidr, family))
        cidrs = {p.name: p.cidr_of(family) or "" for p in plan.pods}
        rules = portmap.node_rules(node, plan.host_ports, ids, family, cidrs)
        if len(rules):
            out.append(rules)
    # each program's IPv4 rules first, as before dual-stack
    return tuple(sorted(out, key=lambda rs: (rs.owner != kubeproxy.OWNER, rs.family)))


def restore_text(plan: Plan, node: str) -> str:
    """The iptables-restore input that programs `node`'s Services (for `plan --iptables`;
    an IPv6 ruleset is ip6tables-restore's input, and says so)."""
    return "".join(f"# {rs.owner} on {node}{' (ip6tables)' if rs.family == 6 else ''}: "
                   f"{len(rs)} rules\n{rs.restore_text()}"
                   for rs in node_rulesets(plan, node))
