"""iptables rules as data, and their iptables-restore text. Pure.

A `Ruleset` is what one program (kube-proxy, the CNI portmap plugin) owns in one node's
namespace in one family (`family` 4: iptables, 6: ip6tables; each family's tables are
their own): its chains, its rules, and the jumps from the built-in chains into them. The
jumps are kept apart because their owners add them one by one (kube-proxy's EnsureRule
puts each at the top of its chain, portmap appends most of its own) rather than in the
restore, so re-applying a ruleset refills its chains without duplicating a jump.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.datapath.conntrack import UdpTarget

TABLES = ("filter", "nat")  # in the order iptables-save writes them
BUILTIN = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


def quote(arg: str) -> str:
    """An argument as iptables-restore reads it: double-quoted when it holds a space or a
    quote (inner quotes escaped), as is otherwise."""
    if arg and not any(c in arg for c in ' "\\\t'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    args: tuple[str, ...]

    def line(self, verb: str = "-A") -> str:
        return " ".join([verb, self.chain, *(quote(a) for a in self.args)])

    @property
    def target(self) -> str:
        """What the rule jumps to (`-j X`), or ''."""
        args = self.args
        return next((args[i + 1] for i in range(len(args) - 1) if args[i] == "-j"), "")


@dataclass(frozen=True)
class Ruleset:
    owner: str  # "kube-proxy", "portmap": who writes these in a real cluster
    node: str
    chains: tuple[tuple[str, str], ...]  # (table, chain) declared, in order
    jumps: tuple[Rule, ...]  # into our chains, each put at the top of its built-in chain
    rules: tuple[Rule, ...]  # inside our chains
    appends: tuple[Rule, ...] = ()  # into our chains, appended to a built-in chain
    # prefixes of the chains the owner makes per object (kube-proxy's KUBE-SEP-<hash>...):
    # one such chain not in `chains` is stale (its endpoint moved) and a re-sync deletes it
    prunes: tuple[str, ...] = ()
    family: int = 4  # 4: iptables, 6: ip6tables
    # addresses whose route's interface gets net.ipv4.conf.<it>.route_localnet=1 (portmap
    # with SNAT on, so its 127.0.0.1 hostPort rule can cross to the pod)
    localnet: tuple[str, ...] = ()
    # UDP flows the owner clears when their endpoint is gone (harness.datapath.conntrack)
    udp: tuple[UdpTarget, ...] = ()

    @property
    def tool(self) -> str:
        """The command that installs it: iptables or ip6tables."""
        return "ip6tables" if self.family == 6 else "iptables"

    def __len__(self) -> int:
        return len(self.jumps) + len(self.rules) + len(self.appends)

    def chains_of(self, table: str) -> tuple[str, ...]:
        return tuple(c for t, c in self.chains if t == table)

    def rules_of(self, chain: str, table: str = "nat") -> tuple[Rule, ...]:
        return tuple(r for r in (*self.jumps, *self.appends, *self.rules)
                     if r.chain == chain and r.table == table)

    def restore_text(self, jumps: bool = True,
                     drop: Iterable[tuple[str, str]] = ()) -> str:
        """iptables-restore input (for --noflush: declaring a chain empties it, others are
        untouched). With `jumps`, each jump is inserted (-I) at the top of its built-in
        chain in order, so the last ends first, as kube-proxy's EnsureRule(Prepend) leaves
        them; appended ones follow whatever the chain holds. `drop`: (table, chain) to
        delete, emptied and then removed (-X) in the same transaction, as kube-proxy
        removes a stale chain once nothing of its own jumps there any more."""
        dropped = tuple(dict.fromkeys(drop))
        lines: list[str] = []
        for table in TABLES:
            chains = self.chains_of(table)
            gone = [c for t, c in dropped if t == table and c not in chains]
            rules = [r for r in self.rules if r.table == table]
            inserted = [r for r in self.jumps if r.table == table] if jumps else []
            appended = [r for r in self.appends if r.table == table] if jumps else []
            if not (chains or gone or rules or inserted or appended):
                continue
            lines.append(f"*{table}")
            lines += [f":{c} - [0:0]" for c in (*chains, *gone)]
            lines += [r.line("-I") for r in inserted]
            lines += [r.line() for r in appended]
            lines += [r.line() for r in rules]
            lines += [f"-X {c}" for c in gone]
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def stale(self, saved: str) -> tuple[tuple[str, str], ...]:
        """The chains of `iptables-save` text that this owner made per object (`prunes`)
        and that this ruleset no longer declares."""
        if not self.prunes:
            return ()
        mine = set(self.chains)
        return tuple((t, c) for t, c in declared_chains(saved)
                     if c.startswith(self.prunes) and (t, c) not in mine)


def declared_chains(saved: str) -> tuple[tuple[str, str], ...]:
    """(table, chain) of every chain `iptables-save` text declares, built-in ones too."""
    out: list[tuple[str, str]] = []
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":") and table:
            out.append((table, line[1:].split()[0]))
    return tuple(out)


def merge_chains(*groups: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Chains of several groups, each once, first seen first."""
    return tuple(dict.fromkeys(c for g in groups for c in g))


def count_saved(saved: str) -> dict[str, int]:
    """Rules of `iptables-save` text by owner, as `inspect` shows them: kube-proxy's (in or
    into KUBE-* chains) and portmap's (CNI-HOSTPORT-*, CNI-DN-*)."""
    out = {"kube-proxy": 0, "portmap": 0}
    for line in saved.splitlines():
        if not line.startswith("-A "):
            continue
        words = line.split()
        chain = words[1]
        target = words[words.index("-j") + 1] if "-j" in words[:-1] else ""
        for owner, prefixes in (("kube-proxy", ("KUBE-",)), ("portmap", ("CNI-HOSTPORT-",
                                                                          "CNI-DN-"))):
            if chain.startswith(prefixes) or (chain in BUILTIN and target.startswith(prefixes)):
                out[owner] += 1
    return out
