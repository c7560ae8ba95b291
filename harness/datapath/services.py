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
    out = [kubeproxy.node_rules(node, plan.services, plan.pod_cidr)]
    ids = {p.name: p.infra for p in plan.pods}
    rules = portmap.node_rules(node, plan.host_ports, ids)
    if len(rules):
        out.append(rules)
    return tuple(out)


def restore_text(plan: Plan, node: str) -> str:
    """The iptables-restore input that programs `node`'s Services (for `plan --iptables`)."""
    return "".join(f"# {rs.owner} on {node}: {len(rs)} rules\n{rs.restore_text()}"
                   for rs in node_rulesets(plan, node))
