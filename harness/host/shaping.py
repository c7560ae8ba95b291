"""Link impairment (delay, jitter, loss, rate) that works on kernels without sch_netem.

netem is an optional module (CONFIG_NET_SCH_NETEM) and some kernels (the dev VM's, among
them) lack it. Whether it exists is found out once per process, on first use. Without it:

- loss becomes a random DROP in the namespace: iptables' `statistic --mode random` on the
  interface's egress (OUTPUT and FORWARD, `-o IF`) for a routed interface, and nftables'
  `numgen random` in the bridge family for a bridge port (iptables never sees bridged
  frames unless br_netfilter is loaded, which podlab does not want on the host);
- a rate is a root tbf, which needs no netem;
- delay and jitter cannot be emulated: NetemUnavailable (exit 3) says so.

The rules live in the container's namespace, so they vanish with it.
"""

from __future__ import annotations

import re
import threading

from harness.errors import EnvironmentProblem, InputError, WiringError
from harness.host import wiring
from harness.host.netns import run_program

CHAIN_PREFIX = "PODLAB-LOSS-"  # + ifname: at most 27 characters, iptables allows 28
NFT_PREFIX = "podlab_loss_"

_netem: bool | None = None  # None: not known yet
_lock = threading.Lock()


class NetemUnavailable(EnvironmentProblem):
    """Delay/jitter asked for on a kernel without sch_netem."""


def _set_netem(value: bool) -> None:
    global _netem
    with _lock:
        _netem = value


def check_args(delay_ms: float | None, jitter_ms: float | None, loss_pct: float | None,
               rate_mbit: float | None) -> None:
    """Bad numbers are the user's fault (exit 2), before anything is touched."""
    if min(delay_ms or 0, jitter_ms or 0) < 0:
        raise InputError("delay and jitter must be >= 0 ms")
    if jitter_ms and not delay_ms:
        raise InputError("jitter needs a delay")
    if loss_pct is not None and not 0 <= loss_pct <= 100:
        raise InputError(f"loss {loss_pct:g}% is not a percentage (0-100)")
    if rate_mbit is not None and rate_mbit <= 0:
        raise InputError("rate must be > 0 kbit/s")


def shape(pid: int, ifname: str, delay_ms: float | None = None,
          jitter_ms: float | None = None, loss_pct: float | None = None,
          rate_mbit: float | None = None) -> str:
    """Impair the egress of `ifname` in the netns of `pid`, replacing any earlier shaping.

    Returns how: "netem", "tbf", "drop" (the loss fallback) or a combination "tbf+drop".
    """
    check_args(delay_ms, jitter_ms, loss_pct, rate_mbit)
    if (delay_ms or jitter_ms) and _netem is False:
        raise _no_netem(ifname)  # before clear(): a refused call changes nothing
    clear(pid, ifname)
    wants_netem = bool(delay_ms or jitter_ms or loss_pct)
    if not wants_netem and not rate_mbit:
        return "none"
    if wants_netem and _netem is not False:
        try:
            wiring.netem(pid, ifname, delay_ms, jitter_ms, loss_pct, rate_mbit)
            _set_netem(True)
            return "netem"
        except WiringError as exc:
            if "no sch_netem" not in str(exc):
                raise
            _set_netem(False)
    if delay_ms or jitter_ms:
        raise _no_netem(ifname)
    how = []
    if rate_mbit:
        wiring.netem(pid, ifname, rate_mbit=rate_mbit)  # a root tbf: no netem needed
        how.append("tbf")
    if loss_pct:
        _drop(pid, ifname, float(loss_pct))
        how.append("drop")
    return "+".join(how)


def _no_netem(ifname: str) -> NetemUnavailable:
    return NetemUnavailable(
        f"this kernel has no sch_netem; delay/jitter need it (asked on {ifname}): use a "
        "kernel with CONFIG_NET_SCH_NETEM, or impair with loss/rate only")


def clear(pid: int, ifname: str) -> None:
    """Remove every impairment podlab put on `ifname` (qdisc and drop rules)."""
    wiring.clear_qdisc(pid, ifname)
    chain = _chain(ifname)
    saved = run_program(pid, ["iptables-save", "-t", "filter"])
    if f":{chain} " in saved:
        lines = ["*filter"]
        lines += [f"-D {hook} -o {ifname} -j {chain}" for hook in ("OUTPUT", "FORWARD")
                  if f"-A {hook} -o {ifname} -j {chain}" in saved]
        lines += [f"-F {chain}", f"-X {chain}", "COMMIT", ""]
        run_program(pid, ["iptables-restore", "--noflush"], stdin="\n".join(lines))
    table = _nft_table(ifname)
    if _nft_has(pid, table):
        _nft(pid, f"add table bridge {table}\ndelete table bridge {table}\n")


def _chain(ifname: str) -> str:
    return CHAIN_PREFIX + ifname


def _nft_table(ifname: str) -> str:
    return NFT_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", ifname)


def _is_bridge_port(pid: int, ifname: str) -> bool:
    return any(link["name"] == ifname and link["master"] for link in wiring.links(pid))


def _drop(pid: int, ifname: str, pct: float) -> None:
    if _is_bridge_port(pid, ifname):
        _drop_bridged(pid, ifname, pct)
        return
    chain = _chain(ifname)
    match = "" if pct >= 100 else f"-m statistic --mode random --probability {pct / 100:.6f} "
    lines = ["*filter", f":{chain} - [0:0]", f"-A {chain} {match}-j DROP"]
    lines += [f"-A {hook} -o {ifname} -j {chain}" for hook in ("OUTPUT", "FORWARD")]
    lines += ["COMMIT", ""]
    try:
        run_program(pid, ["iptables-restore", "--noflush"], stdin="\n".join(lines))
    except WiringError as exc:
        raise WiringError(f"loss on {ifname}: {exc}") from exc


def _drop_bridged(pid: int, ifname: str, pct: float) -> None:
    table = _nft_table(ifname)
    cond = "" if pct >= 100 else f"numgen random mod 10000 < {round(pct * 100)} "
    rule = f'oifname "{ifname}" {cond}drop'
    _nft(pid, f"add table bridge {table}\ndelete table bridge {table}\n"
              f"table bridge {table} {{\n"
              f"  chain fwd {{ type filter hook forward priority 0; {rule}; }}\n"
              f"  chain out {{ type filter hook output priority 0; {rule}; }}\n}}\n")


def _nft_has(pid: int, table: str) -> bool:
    try:
        return table in run_program(pid, ["nft", "list", "tables", "bridge"])
    except WiringError:
        return False  # no nft on the host: nothing of ours can be there


def _nft(pid: int, script: str) -> None:
    try:
        run_program(pid, ["nft", "-f", "-"], stdin=script)
    except WiringError as exc:
        raise WiringError(f"nftables in netns of pid {pid}: {exc}") from exc
