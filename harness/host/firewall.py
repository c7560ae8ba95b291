"""The masquerade rule of a k8s-node (ip-masq-agent style), inside the node's netns.

Pod traffic from the node's pod CIDR whose destination is not exempt (the cluster's pod
CIDR, the k8s-nodes' addresses) is SNATed with MASQUERADE to the egress address. The host's
`iptables-restore` runs inside the container's network namespace
(harness.host.netns.run_program), so the rules vanish with it: destroy needs no iptables
cleanup, and the host's own ruleset is never touched. Which rule a node gets is the
datapath's description (harness.datapath); this module only installs and reads it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from harness.errors import WiringError
from harness.host.netns import run_program

CHAIN = "PODLAB-MASQ"


def masquerade_rules(source: str, exempt: Sequence[str], chain: str = CHAIN) -> str:
    """The iptables-restore input: jump from POSTROUTING for `source`, RETURN for exempt
    destinations, MASQUERADE for the rest."""
    src = str(ipaddress.IPv4Network(source))
    lines = ["*nat", f":{chain} - [0:0]",  # declaring the chain under --noflush empties it
             f"-A POSTROUTING -s {src} -j {chain}"]
    for dst in exempt:
        lines.append(f"-A {chain} -d {ipaddress.IPv4Network(dst)} -j RETURN")
    lines += [f"-A {chain} -j MASQUERADE", "COMMIT", ""]
    return "\n".join(lines)


def masquerade(pid: int, source: str, exempt: Sequence[str], chain: str = CHAIN,
               where: str = "") -> None:
    """Install a masquerade rule in the netns of `pid`; idempotent (a re-run does not
    duplicate it). `where` names the namespace in errors."""
    rules = masquerade_rules(source, exempt, chain)
    if f"-j {chain}" in nat_rules(pid):
        # The jump already exists: keep it, only refill the chain.
        rules = "\n".join(r for r in rules.splitlines() if not r.startswith("-A POSTROUTING"))
        rules += "\n"
    try:
        run_program(pid, ["iptables-restore", "--noflush"], stdin=rules)
    except WiringError as exc:
        raise WiringError(f"masquerade on {where or f'pid {pid}'}: {exc}") from exc


def nat_rules(pid: int) -> str:
    """`iptables-save -t nat` of the namespace (for tests and `podlab inspect`)."""
    return run_program(pid, ["iptables-save", "-t", "nat"])
