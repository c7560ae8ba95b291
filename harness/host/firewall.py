"""The masquerade rule of a k8s-node, inside the node's netns.

Two shapes, both described by the datapath: podlab's `masquerade: true` (traffic from the
node's pod CIDR to anything but the pod CIDR and the k8s-nodes' addresses is SNATed with
MASQUERADE to the egress address), and ip-masq-agent's own rules (every non-local
destination but the config's non-masquerade CIDRs: chain IP-MASQ-AGENT, its comments,
`MASQUERADE --random-fully`, no --to-ports as the agent runs without that flag). A rule
is of one family, its source's (without a source: `family`, IPv4 unless given): an IPv6
one goes to ip6tables,
with the same semantics. The host's `iptables-restore` (or `ip6tables-restore`) runs
inside the container's network namespace
(harness.host.netns.run_program), so the rules vanish with it: destroy needs no iptables
cleanup, and the host's own ruleset is never touched. Which rule a node gets is the
datapath's description (harness.datapath); this module only installs and reads it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from harness.errors import WiringError
from harness.host.netns import run_program

CHAIN = "PODLAB-MASQ"


def rule_family(source: str | None, family: int | None = None) -> int:
    """4 or 6: the family of a masquerade from `source`; without one, `family` (or 4)."""
    return ipaddress.ip_network(source).version if source is not None else family or 4


# ip-masq-agent's chain (its --masq-chain default) and the comments it writes
AGENT_CHAIN = "IP-MASQ-AGENT"
AGENT_RETURN = "ip-masq-agent: local traffic is not subject to MASQUERADE"
AGENT_MASQ = "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)"
AGENT_JUMP = ("ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination "
              "traffic to our custom {} chain")
AGENT_TO_PORTS_PROTOCOLS = ("tcp", "udp", "sctp")


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}" '


def masquerade_lines(source: str | None, exempt: Sequence[str], chain: str = CHAIN, *,
                     not_local: bool = False, to_ports: str | None = None,
                     random_fully: bool = False, family: int | None = None,
                     agent: bool = False) -> list[str]:
    """The nat-table rules of a masquerade, as iptables arguments (`-A CHAIN ...`): exempt
    destinations RETURN, the rest is MASQUERADEd, and POSTROUTING jumps to the chain for
    traffic from `source` (None: from anywhere, in `family`), only to non-local
    destinations with `not_local` (ip-masq-agent's `-m addrtype ! --dst-type LOCAL`).
    `agent`: with ip-masq-agent's comments, and `to_ports` (its --to-ports flag, one
    range) as it writes them: one rule per protocol before the catch-all."""
    version = rule_family(source, family)
    lines = []
    ret = _comment(AGENT_RETURN) if agent else ""
    for dst in exempt:
        net = ipaddress.ip_network(dst)
        if net.version != version:
            raise ValueError(f"masquerade exemption {dst} is not of the rule's family "
                             f"(IPv{version})")
        lines.append(f"-A {chain} {ret}-d {net} -j RETURN")
    masq = f"-A {chain} {_comment(AGENT_MASQ) if agent else ''}-j MASQUERADE"
    masq += " --random-fully" if random_fully else ""
    if to_ports:
        lines += [f"{masq} -p {proto} --to-ports {to_ports}"
                  for proto in AGENT_TO_PORTS_PROTOCOLS]
    lines.append(masq)
    jump = "-A POSTROUTING"
    if agent:
        jump += " " + _comment(AGENT_JUMP.format(chain)).rstrip()
    if source is not None:
        jump += f" -s {ipaddress.ip_network(source)}"
    if not_local:
        jump += " -m addrtype ! --dst-type LOCAL"
    return [*lines, f"{jump} -j {chain}"]


def masquerade_rules(source: str | None, exempt: Sequence[str], chain: str = CHAIN,
                     **how: Any) -> str:
    """The iptables-restore input of `masquerade_lines`."""
    # declaring the chain under --noflush empties it
    return "\n".join(["*nat", f":{chain} - [0:0]",
                      *masquerade_lines(source, exempt, chain, **how), "COMMIT", ""])


def masquerade(pid: int, source: str | None, exempt: Sequence[str], chain: str = CHAIN,
               where: str = "", **how: Any) -> None:
    """Install a masquerade rule in the netns of `pid` (with ip6tables for an IPv6
    `source`, or `family=6` in `how`); idempotent (a re-run does not duplicate it).
    `where` names the namespace in errors; `how` as in masquerade_lines."""
    family = rule_family(source, how.get("family"))
    rules = masquerade_rules(source, exempt, chain, **how)
    if f"-j {chain}" in nat_rules(pid, family):
        # The jump already exists: keep it, only refill the chain.
        rules = "\n".join(r for r in rules.splitlines() if not r.startswith("-A POSTROUTING"))
        rules += "\n"
    try:
        run_program(pid, [_tool(family, "iptables-restore"), "--noflush"], stdin=rules)
    except WiringError as exc:
        raise WiringError(f"masquerade on {where or f'pid {pid}'}: {exc}") from exc


def _tool(family: int, name: str) -> str:
    """iptables-restore / iptables-save, or their ip6tables twins for IPv6 (family 6)."""
    return name.replace("iptables", "ip6tables") if family == 6 else name


def nat_rules(pid: int, family: int = 4) -> str:
    """`iptables-save -t nat` (family 6: `ip6tables-save`) of the namespace (for tests and
    `podlab inspect`)."""
    return run_program(pid, [_tool(family, "iptables-save"), "-t", "nat"])


def restore(pid: int, full: str, refill: str, marker: tuple[str, str], where: str = "",
            family: int = 4) -> None:
    """Install a program's rules (iptables-restore text; family 6: ip6tables-restore) in
    the netns of `pid`; idempotent.

    `full` declares its chains, fills them and adds its jumps from the built-in chains;
    `refill` only refills the chains. Once `marker` ((table, chain), declared by `full`)
    exists the jumps exist too (one restore installed both), so a re-run sends `refill`
    and no jump is doubled."""
    table, chain = marker
    have = run_program(pid, [_tool(family, "iptables-save"), "-t", table])
    text = refill if f"\n:{chain} " in have else full
    try:
        run_program(pid, [_tool(family, "iptables-restore"), "--noflush"], stdin=text)
    except WiringError as exc:
        raise WiringError(f"iptables on {where or f'pid {pid}'}: {exc}") from exc


def saved(pid: int, family: int = 4) -> str:
    """`iptables-save` (family 6: `ip6tables-save`) of every table of the namespace."""
    return run_program(pid, [_tool(family, "iptables-save")])
