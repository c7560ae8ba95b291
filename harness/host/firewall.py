"""The masquerade rule of a k8s-node (ip-masq-agent style), inside the node's netns.

Pod traffic from the node's pod CIDR whose destination is not exempt (the cluster's pod
CIDR, the k8s-nodes' addresses) is SNATed with MASQUERADE to the egress address. The host's
`iptables-restore` runs under `nsenter --net`, so the rules live in the container's network
namespace and vanish with it: destroy needs no iptables cleanup, and the host's own
ruleset is never touched.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Sequence

from harness.errors import WiringError
from harness.plan import NodePlan

CHAIN = "PODLAB-MASQ"
TIMEOUT_S = 20


def _tool(name: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise WiringError(f"{name} not found on the host; install it with "
                          "`apt-get install -y iptables util-linux` (or run `make setup`)")
    return path


def _in_netns(pid: int, argv: Sequence[str], stdin: str | None = None) -> str:
    """Run a host binary inside the network namespace of `pid` (argv list, no shell)."""
    cmd = [_tool("nsenter"), f"--net=/proc/{pid}/ns/net", "--", _tool(argv[0]), *argv[1:]]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WiringError(f"{argv[0]} in netns of pid {pid} timed out after {TIMEOUT_S}s") \
            from exc
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise WiringError(f"{argv[0]} in netns of pid {pid} failed (exit {done.returncode}): "
                          f"{reason[-1] if reason else 'no output'}")
    return done.stdout


def masquerade_rules(pod_cidr: str, exempt: Sequence[str]) -> str:
    """The iptables-restore input: jump from POSTROUTING for pod sources, RETURN for exempt
    destinations, MASQUERADE for the rest."""
    src = str(ipaddress.IPv4Network(pod_cidr))
    lines = ["*nat", f":{CHAIN} - [0:0]",  # declaring the chain under --noflush empties it
             f"-A POSTROUTING -s {src} -j {CHAIN}"]
    for dst in exempt:
        lines.append(f"-A {CHAIN} -d {ipaddress.IPv4Network(dst)} -j RETURN")
    lines += [f"-A {CHAIN} -j MASQUERADE", "COMMIT", ""]
    return "\n".join(lines)


def apply(pid: int, node: NodePlan) -> None:
    """Install the node's masquerade rule; idempotent (a re-run does not duplicate it)."""
    if not node.masquerade_exempt or not node.pod_cidr:
        return
    rules = masquerade_rules(node.pod_cidr, node.masquerade_exempt)
    if f"-j {CHAIN}" in nat_rules(pid):
        # The jump already exists: keep it, only refill the chain.
        rules = "\n".join(r for r in rules.splitlines() if not r.startswith("-A POSTROUTING"))
        rules += "\n"
    try:
        _in_netns(pid, ["iptables-restore", "--noflush"], stdin=rules)
    except WiringError as exc:
        raise WiringError(f"masquerade on {node.name}: {exc}") from exc


def nat_rules(pid: int) -> str:
    """`iptables-save -t nat` of the namespace (for tests and `podlab inspect`)."""
    return _in_netns(pid, ["iptables-save", "-t", "nat"])


def in_netns(pid: int, argv: Sequence[str], stdin: str | None = None) -> str:
    """Run a host binary (iptables, iptables-restore, ...) inside the netns of `pid`."""
    return _in_netns(pid, argv, stdin)
