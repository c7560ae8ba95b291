"""Links, bridges, addresses, routes and qdiscs inside container namespaces (pyroute2).

The only module that imports pyroute2 (0.9.x) (harness.host.fib reads routing tables
over its `with_iproute`). Every function takes the PID of a process
in the target namespace and works through ``/proc/<pid>/ns/net``: each call runs in a
short-lived thread that entered that namespace (see :mod:`harness.host.netns`) and opens its
own ``IPRoute`` there, so the netlink socket lives in the container's namespace and the
main process never leaves the host's.

pyroute2 0.9 notes (verified by experiment on kernel 6.x):
- ``IPRoute`` is a sync wrapper over an asyncio core with thread-local sockets and event
  loops; an ``IPRoute`` is therefore created, used and closed inside one thread.
- ``IPRoute(netns=...)`` forks a helper process per socket; entering the namespace with
  setns in a thread is cheaper and needs no /var/run/netns entry.
- A veth peer put into another namespace with ``peer={'net_ns_fd': fd}`` is NOT brought up
  by ``state='up'`` (or ifinfmsg flags) in the peer dict: the kernel configures the peer
  without its flags. It must be set up from inside namespace B.
- ``link_lookup`` returns a (possibly empty) list; errors are ``NetlinkError`` with
  ``.code`` = errno.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.errors import WiringError
from harness.host.netns import open_netns, run_in_netns

T = TypeVar("T")

IFNAMSIZ = 15  # usable characters of a Linux interface name
RT_TABLE_MAIN = 254


@dataclass(frozen=True)
class NetConfig:
    """What :func:`configure` applies inside one namespace, in this order.

    bridges:   bridge devices to create and bring up (e.g. ``cbr0``, a switch's ``br0``).
    ports:     ``(ifname, bridge)``: enslave ``ifname`` to ``bridge``.
    addresses: ``(ifname, "a.b.c.d/len")``.
    routes:    ``(dst, gateway)`` or ``(dst, gateway, dev)``; ``dst`` is a CIDR or
               ``"default"``; ``gateway`` may be ``""`` for an on-link route via ``dev``.
    up:        extra links to bring up (``lo`` and every link named above always are).
    sysctls:   ``("net.ipv4.ip_forward", "1")``: written in the namespace's /proc/sys/net.
    hairpin:   bridge ports (among ``ports``) that may send a frame back out where it came
               in (kubelet's hairpin-veth mode: a pod reaching itself through a Service).
    """

    bridges: tuple[str, ...] = ()
    ports: tuple[tuple[str, str], ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()
    routes: tuple[tuple[str, ...], ...] = ()
    up: tuple[str, ...] = ()
    hairpin: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()


def _pyroute2() -> tuple[Any, type[Exception]]:
    # Imported on first use: pyroute2 takes ~0.3 s to import, which `podlab validate`,
    # `plan` and the unit tests should not pay.
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return IPRoute, NetlinkError


def _fail(pid: int, op: str, exc: BaseException, ifname: str | None = None) -> WiringError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    where = f"netns of pid {pid}" + (f", interface {ifname}" if ifname else "")
    return WiringError(f"{op} failed in {where}: {reason}")


def _with_ipr(pid: int, op: str, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(ipr, *args)`` in the namespace of ``pid`` with one fresh IPRoute.

    Netlink/OS errors not already translated by ``fn`` become WiringError naming the
    namespace and the operation.
    """
    iproute, netlink_error = _pyroute2()

    def body() -> T:
        with iproute() as ipr:
            return fn(ipr, *args)

    try:
        return run_in_netns(pid, body)
    except WiringError:
        raise
    except (netlink_error, OSError) as exc:
        raise _fail(pid, op, exc) from exc


def with_iproute(pid: int, op: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(ipr, *args)`` with an IPRoute open in the namespace of ``pid`` (see _with_ipr):
    for a reader of netlink dumps that lives in its own module."""
    return _with_ipr(pid, op, fn, *args)


def _check_ifname(name: str) -> None:
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise WiringError(f"invalid interface name {name!r} (1-{IFNAMSIZ} chars, no '/')")


def _index(ipr: Any, pid: int, ifname: str, op: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise WiringError(f"{op} failed in netns of pid {pid}: no interface {ifname}")
    return int(found[0])


def _call(
    pid: int, op: str, ifname: str | None, fn: Callable[[], Any], ok: tuple[int, ...] = ()
) -> Any:
    """One netlink request; errnos in ``ok`` are tolerated (idempotent re-runs)."""
    _, netlink_error = _pyroute2()
    try:
        return fn()
    except netlink_error as exc:
        if exc.code in ok:  # type: ignore[attr-defined]
            return None
        raise _fail(pid, op, exc, ifname) from exc


# --------------------------------------------------------------------------- links


def create_dummy(pid: int, name: str, mtu: int | None = None) -> None:
    """A dummy interface `name`, up, in the namespace of `pid` (containerlab's dummy link)."""
    _check_ifname(name)
    extra: dict[str, Any] = {"mtu": mtu} if mtu else {}

    def add(ipr: Any) -> None:
        _call(pid, f"create dummy {name}", name,
              lambda: ipr.link("add", ifname=name, kind="dummy", state="up", **extra))

    try:
        _with_ipr(pid, "create dummy", add)
    except WiringError as exc:
        if "not supported" in str(exc):  # EOPNOTSUPP: no dummy driver in this kernel
            raise WiringError(f"{exc}: this host's kernel has no dummy interfaces "
                              "(CONFIG_DUMMY, module `dummy`), which a `type: dummy` link "
                              "needs") from exc
        raise


def create_veth(pid_a: int, name_a: str, pid_b: int, name_b: str, mtu: int | None = None,
                macs: tuple[str | None, str | None] = (None, None)) -> None:
    """Create veth ``name_a``@A <-> ``name_b``@B and bring both ends up.

    The pair is created inside namespace A with the peer placed straight into B
    (IFLA_NET_NS_FD), so no netdev ever exists in the host namespace: a crash leaves
    nothing behind, and removing either container removes the link.
    """
    _check_ifname(name_a)
    _check_ifname(name_b)
    extra: dict[str, Any] = {"mtu": mtu} if mtu else {}
    mac_a = {"address": macs[0]} if macs[0] else {}
    mac_b = {"address": macs[1]} if macs[1] else {}
    fd_b = open_netns(pid_b)
    try:

        def add(ipr: Any) -> None:
            peer = {"ifname": name_b, "net_ns_fd": fd_b, **extra, **mac_b}
            _call(
                pid_a,
                f"create veth {name_a}<->{name_b}@pid {pid_b}",
                name_a,
                lambda: ipr.link("add", ifname=name_a, kind="veth", state="up", peer=peer,
                                 **extra, **mac_a),
            )

        _with_ipr(pid_a, "create veth", add)
    finally:
        os.close(fd_b)
    try:
        # The kernel ignores the peer's flags, so the B end is brought up from inside B.
        link_set(pid_b, name_b, True)
    except WiringError:
        _delete_quietly(pid_a, name_a)  # deleting one end deletes the pair
        raise


def _delete_quietly(pid: int, ifname: str) -> None:
    with contextlib.suppress(WiringError):
        delete_link(pid, ifname)


def delete_link(pid: int, ifname: str) -> None:
    """Delete a link (a veth end takes its peer with it)."""

    def body(ipr: Any) -> None:
        idx = _index(ipr, pid, ifname, "delete link")
        _call(pid, "delete link", ifname, lambda: ipr.link("del", index=idx))

    _with_ipr(pid, "delete link", body)


def link_set(pid: int, ifname: str, up: bool) -> None:
    """Bring a link up or down (a cable pull for failure tests)."""

    def body(ipr: Any) -> None:
        op = f"set link {'up' if up else 'down'}"
        idx = _index(ipr, pid, ifname, op)
        _call(pid, op, ifname, lambda: ipr.link("set", index=idx, state="up" if up else "down"))

    _with_ipr(pid, "set link", body)


def links(pid: int) -> list[dict[str, Any]]:
    """``[{name, index, up, mtu, mac, kind, master}]`` of every link in the namespace."""

    def body(ipr: Any) -> list[dict[str, Any]]:
        rows = list(ipr.get_links())
        names = {m["index"]: m.get("ifname") for m in rows}
        out = []
        for m in rows:
            info = m.get("IFLA_LINKINFO")
            out.append(
                {
                    "name": m.get("ifname"),
                    "index": m["index"],
                    "up": bool(m["flags"] & 1),  # IFF_UP
                    "mtu": m.get("mtu"),
                    "mac": m.get("address"),
                    "kind": info.get("IFLA_INFO_KIND") if info else None,
                    "master": names.get(m.get("IFLA_MASTER")),
                }
            )
        return out

    return _with_ipr(pid, "list links", body)


# --------------------------------------------------------------------------- configure


def _sysctl_path(key: str) -> str:
    if not key.startswith("net.") or ".." in key or "/" in key:
        raise WiringError(f"sysctl {key!r}: only net.* keys are per-namespace")
    return "/proc/sys/" + key.replace(".", "/")


def _apply(ipr: Any, pid: int, cfg: NetConfig) -> None:
    def up(name: str) -> None:
        idx = _index(ipr, pid, name, "set link up")
        _call(pid, "set link up", name, lambda: ipr.link("set", index=idx, state="up"))

    for key, value in cfg.sysctls:
        # /proc/sys/net resolves to the namespace of the *opening thread*: this one.
        try:
            with open(_sysctl_path(key), "w") as fh:
                fh.write(str(value))
        except OSError as exc:
            raise _fail(pid, f"sysctl {key}={value}", exc) from exc

    up("lo")
    for br in cfg.bridges:
        _check_ifname(br)
        _call(
            pid,
            "create bridge",
            br,
            lambda br=br: ipr.link("add", ifname=br, kind="bridge"),
            ok=(errno.EEXIST,),
        )
        up(br)
    for port, br in cfg.ports:
        br_idx = _index(ipr, pid, br, f"enslave {port} to bridge")
        idx = _index(ipr, pid, port, f"enslave to bridge {br}")
        _call(
            pid,
            f"enslave to bridge {br}",
            port,
            lambda idx=idx, br_idx=br_idx: ipr.link("set", index=idx, master=br_idx),
        )
        if port in cfg.hairpin:
            _call(pid, "set hairpin mode", port,
                  lambda idx=idx: ipr.brport("set", index=idx, mode=1))
        up(port)
    for ifname, cidr in cfg.addresses:
        iface = ipaddress.ip_interface(cidr)
        idx = _index(ipr, pid, ifname, f"add address {cidr}")
        _call(
            pid,
            f"add address {cidr}",
            ifname,
            lambda idx=idx, iface=iface: ipr.addr(
                "add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen
            ),
            ok=(errno.EEXIST,),
        )
        up(ifname)
    for name in cfg.up:
        up(name)
    for route in cfg.routes:
        _add_route(ipr, pid, *route)


def _add_route(ipr: Any, pid: int, dst: str, gateway: str = "", dev: str | None = None) -> None:
    spec: dict[str, Any] = {"dst": "default" if dst in ("default", "0.0.0.0/0", "::/0")
                            else dst}
    if gateway:
        spec["gateway"] = gateway
    if dev:
        spec["oif"] = _index(ipr, pid, dev, f"add route {dst}")
    if not gateway and not dev:
        raise WiringError(f"route {dst} in netns of pid {pid}: needs a gateway or a dev")
    _call(
        pid,
        f"add route {dst} via {gateway or '-'}",
        dev,
        lambda: ipr.route("add", **spec),
        ok=(errno.EEXIST,),
    )


def delete_route(pid: int, dst: str) -> None:
    """Remove the main-table route to ``dst`` (a CIDR); a missing one is fine."""
    _with_ipr(pid, f"delete route {dst}", lambda ipr: _call(
        pid, f"delete route {dst}", None, lambda: ipr.route("del", dst=dst),
        ok=(errno.ESRCH, errno.ENOENT)))


def configure(pid: int, cfg: NetConfig) -> None:
    """Apply ``cfg`` in the namespace of ``pid`` over one netlink socket.

    Re-running is tolerated: existing bridges, addresses and routes (EEXIST) are fine.
    """
    _with_ipr(pid, "configure", _apply, pid, cfg)


def sysctl(pid: int, key: str, value: str | None = None) -> str:
    """Read (and with ``value``, first write) a ``net.*`` sysctl of the namespace."""
    path = _sysctl_path(key)

    def body() -> str:
        if value is not None:
            with open(path, "w") as fh:
                fh.write(str(value))
        with open(path) as fh:
            return fh.read().strip()

    try:
        return run_in_netns(pid, body)
    except OSError as exc:
        raise _fail(pid, f"sysctl {key}", exc) from exc


# --------------------------------------------------------------------------- queries


RT_SCOPE_LINK = 253  # an IPv6 link-local address (fe80::/64): made by the kernel, not podlab


def addresses(pid: int) -> dict[str, list[str]]:
    """``{ifname: ["a.b.c.d/len", "x::y/len", ...]}``: IPv4 then IPv6 (without link-local
    addresses), every link incl. lo, links without any too."""

    def body(ipr: Any) -> dict[str, list[str]]:
        names = {m["index"]: m.get("ifname") for m in ipr.get_links()}
        out: dict[str, list[str]] = {name: [] for name in names.values()}
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in ipr.get_addr(family=family):
                if family == socket.AF_INET6 and m["scope"] == RT_SCOPE_LINK:
                    continue
                name = names.get(m["index"], str(m["index"]))
                out.setdefault(name, []).append(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
        return out

    return _with_ipr(pid, "list addresses", body)


RTN_UNICAST = 1


def routes(pid: int) -> list[tuple[str, str | None, str | None]]:
    """Main-table unicast routes, IPv4 then IPv6, as ``(dst, gateway, dev)``; ``dst`` is a
    CIDR or 'default' (either family's). IPv6's link-local fe80::/64 routes, which the
    kernel adds to every link, are left out."""

    def body(ipr: Any) -> list[tuple[str, str | None, str | None]]:
        names = {m["index"]: m.get("ifname") for m in ipr.get_links()}
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in ipr.get_routes(family=family, table=RT_TABLE_MAIN):
                if (m.get("RTA_TABLE") or m["table"]) != RT_TABLE_MAIN:
                    continue
                if family == socket.AF_INET6 and m["type"] != RTN_UNICAST:
                    continue
                dst = m.get("RTA_DST")
                cidr = f"{dst}/{m['dst_len']}" if dst else "default"
                if cidr.startswith("fe80::/"):
                    continue
                out.append((cidr, m.get("RTA_GATEWAY"), names.get(m.get("RTA_OIF"))))
        return out

    return _with_ipr(pid, "list routes", body)


def routes_of_protocol(pid: int, proto: int) -> dict[str, str | None]:
    """``{dst CIDR: gateway}`` of the main-table routes, IPv4 then IPv6, a routing daemon
    installed (``proto``: the kernel's RTPROT number, e.g. 12 for BIRD); a multipath
    route's gateway is its first next hop."""

    def body(ipr: Any) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in ipr.get_routes(family=family, table=RT_TABLE_MAIN, proto=proto):
                if m["proto"] != proto or (m.get("RTA_TABLE") or m["table"]) != RT_TABLE_MAIN:
                    continue
                gateway = m.get("RTA_GATEWAY")
                if gateway is None and m.get("RTA_MULTIPATH"):
                    gateway = m.get("RTA_MULTIPATH")[0].get_attr("RTA_GATEWAY")
                default = "::" if family == socket.AF_INET6 else "0.0.0.0"
                out[f"{m.get('RTA_DST') or default}/{m['dst_len']}"] = gateway
        return out

    return _with_ipr(pid, "list routes", body)


def route_source(pid: int, dst_ip: str) -> str:
    """The source address the kernel picks for ``dst_ip`` (RTM_GETROUTE's RTA_PREFSRC)."""
    ipaddress.ip_address(dst_ip)  # ValueError early, not an obscure netlink error

    def body(ipr: Any) -> str:
        reply = _call(pid, f"route get {dst_ip}", None, lambda: ipr.route("get", dst=dst_ip))
        src = reply[0].get("RTA_PREFSRC") if reply else None
        if not src:
            raise WiringError(f"route get {dst_ip} in netns of pid {pid}: no source address")
        return str(src)

    return _with_ipr(pid, f"route get {dst_ip}", body)


def route_dev(pid: int, dst_ip: str) -> str | None:
    """The interface the kernel routes ``dst_ip`` out of (RTM_GETROUTE's RTA_OIF), or None
    without a route (portmap's getRoutableHostIF)."""
    ipaddress.ip_address(dst_ip)

    def body(ipr: Any) -> str | None:
        try:
            reply = ipr.route("get", dst=dst_ip)
        except Exception:  # no route: portmap then sets nothing either
            return None
        oif = reply[0].get("RTA_OIF") if reply else None
        if oif is None:
            return None
        link = ipr.get_links(oif)
        return str(link[0].get("IFLA_IFNAME")) if link else None

    return _with_ipr(pid, f"route get {dst_ip}", body)


def next_hops(pid: int, dst_ips: list[str]) -> dict[str, str | None]:
    """The gateway the namespace's kernel forwards each destination to (RTA_GATEWAY of
    RTM_GETROUTE; IPv6 RTA_VIA too), None where it is on a connected link or local;
    destinations without a route are left out."""
    def body(ipr: Any) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for dst in dst_ips:
            try:
                reply = ipr.route("get", dst=dst)
            except Exception:  # no route (ENETUNREACH): left out
                continue
            if reply:
                gw = reply[0].get("RTA_GATEWAY")
                out[dst] = str(gw) if gw else None
        return out

    return _with_ipr(pid, "route get", body)


def forget_neighbours(pid: int, addresses: list[str]) -> int:
    """Delete the neighbour entries (ARP, IPv6 neighbour discovery) of `addresses` in the
    namespace of ``pid``, whatever their state; how many went."""
    wanted = {ipaddress.ip_address(a) for a in addresses}

    def body(ipr: Any) -> int:
        gone = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            if not any(a.version == (6 if family == socket.AF_INET6 else 4) for a in wanted):
                continue
            for entry in ipr.neigh("dump", family=family):
                dst = entry.get_attr("NDA_DST")
                if dst and ipaddress.ip_address(dst) in wanted:
                    _call(pid, f"neigh del {dst}", None,
                          lambda e=entry, d=dst, f=family: ipr.neigh(
                              "del", dst=d, ifindex=e["ifindex"], family=f),
                          ok=(errno.ENOENT,))
                    gone += 1
        return gone

    return _with_ipr(pid, "neigh flush", body)


NUD_STATES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY",
              0x10: "PROBE", 0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT", 0x00: "NONE"}


def neighbours(pid: int) -> list[tuple[str, str, str | None, str]]:
    """The neighbour table (ARP and IPv6 neighbour discovery) of the namespace of ``pid``:
    ``(address, state, link-layer address or None, ifname)`` per unicast entry."""

    def body(ipr: Any) -> list[tuple[str, str, str | None, str]]:
        names = {m["index"]: m.get("ifname") for m in ipr.get_links()}
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for e in ipr.neigh("dump", family=family):
                dst = e.get_attr("NDA_DST")
                if not dst or ipaddress.ip_address(dst).is_multicast:
                    continue
                out.append((dst, NUD_STATES.get(e["state"], hex(e["state"])),
                            e.get_attr("NDA_LLADDR"), names.get(e["ifindex"], "")))
        return out

    return _with_ipr(pid, "neigh dump", body)


def route_sources(pid: int, dst_ips: list[str]) -> dict[str, str]:
    """route_source for many destinations, in one trip into the namespace.

    Each is asked the way a sender asks: a UDP socket connected to the destination gets
    the source address the kernel picks (the same route lookup and source selection as
    `ip route get`, without a netlink round trip and its parsing per address; a node of
    a 200-pod lab asks for 200). Destinations the namespace has no route to are left out:
    a broken lab is what verify is there to report, not a reason to stop.
    """
    families = {dst: socket.AF_INET6 if ipaddress.ip_address(dst).version == 6
                else socket.AF_INET for dst in dst_ips}

    def body() -> dict[str, str]:
        out = {}
        for dst in dst_ips:  # a fresh socket each: a connected one keeps its first source
            with socket.socket(families[dst], socket.SOCK_DGRAM) as sock:
                try:
                    sock.connect((dst, 9))  # no packet leaves: UDP connect only routes
                except OSError:  # no route (ENETUNREACH), or unreachable by policy
                    continue
                out[dst] = sock.getsockname()[0]
        return out

    try:
        return run_in_netns(pid, body)
    except OSError as exc:
        raise _fail(pid, "route get", exc) from exc


@dataclass(frozen=True)
class Flow:
    """One conntrack entry: the original and the reply tuple as (src, dst, sport, dport)
    (ICMP: the echo id in both port fields), and whether the kernel NATed it."""

    proto: str
    orig: tuple[str, str, int, int]
    reply: tuple[str, str, int, int]
    nat: bool  # IPS_SRC_NAT or IPS_DST_NAT, or a reply tuple that is not the mirror


IPS_SRC_NAT, IPS_DST_NAT = 0x10, 0x20  # linux/netfilter/nf_conntrack_common.h


def conntrack(pid: int) -> list[Flow]:
    """The conntrack table of the namespace of ``pid``, IPv4 then IPv6 (ctnetlink, no
    binary)."""

    def body() -> list[Flow]:
        from pyroute2 import Conntrack

        def four(t: Any) -> tuple[str, str, int, int]:
            if t.icmp_id is not None:
                return t.saddr, t.daddr, t.icmp_id, t.icmp_id
            return t.saddr, t.daddr, t.sport or 0, t.dport or 0

        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            with Conntrack(nfgen_family=family) as ct:
                for e in ct.dump_entries():
                    orig, reply = four(e.tuple_orig), four(e.tuple_reply)
                    mirror = (orig[1], orig[0], orig[3], orig[2])
                    out.append(Flow(e.tuple_orig.proto_name() or str(e.tuple_orig.proto),
                                    orig, reply, bool(e.status & (IPS_SRC_NAT | IPS_DST_NAT))
                                    or reply != mirror))
        return out

    try:
        return run_in_netns(pid, body)
    except OSError as exc:
        raise _fail(pid, "conntrack dump", exc) from exc


def conntrack_delete(pid: int, flows: Iterable[Flow]) -> int:
    """Delete the conntrack entries of `flows` (matched by protocol and original tuple) in
    the namespace of ``pid``, as `conntrack -D` would; how many went (an entry that timed
    out meanwhile is simply not there)."""
    wanted = {(f.proto, f.orig) for f in flows}
    if not wanted:
        return 0

    def body() -> int:
        from pyroute2 import Conntrack

        gone = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            with Conntrack(nfgen_family=family) as ct:
                doomed = [e for e in ct.dump_entries()
                          if ((e.tuple_orig.proto_name() or str(e.tuple_orig.proto)),
                              (e.tuple_orig.saddr, e.tuple_orig.daddr,
                               e.tuple_orig.sport or 0, e.tuple_orig.dport or 0)) in wanted]
                for entry in doomed:
                    ct.delete(entry)
                    gone += 1
        return gone

    try:
        return run_in_netns(pid, body)
    except OSError as exc:
        raise _fail(pid, "conntrack delete", exc) from exc


# --------------------------------------------------------------------------- tc


def netem(
    pid: int,
    ifname: str,
    delay_ms: float | None = None,
    jitter_ms: float | None = None,
    loss_pct: float | None = None,
    rate_mbit: float | None = None,
) -> None:
    """Shape egress of ``ifname``: replace its root qdisc.

    Delay/jitter/loss use netem at the root, a rate adds a tbf below it (handle 10:). A
    rate alone is a root tbf, which more kernels have: netem is an optional module
    (CONFIG_NET_SCH_NETEM) and e.g. the dev VM's kernel lacks it. Nothing given: clear.
    """
    if jitter_ms and not delay_ms:
        raise WiringError(f"netem on {ifname} (pid {pid}): jitter needs a delay")
    rate_bps = int(rate_mbit * 1_000_000 / 8) if rate_mbit else 0  # bytes per second
    if rate_bps and rate_bps >= 2**32:
        raise WiringError(f"rate {rate_mbit} Mbit/s on {ifname} (pid {pid}): at most 34 Gbit/s")
    netem_opts: dict[str, Any] = {}
    if delay_ms:
        netem_opts["delay"] = int(delay_ms * 1000)  # pyroute2 takes microseconds
    if jitter_ms:
        netem_opts["jitter"] = int(jitter_ms * 1000)
    if loss_pct:
        netem_opts["loss"] = float(loss_pct)
    # burst >= rate/HZ or tbf cannot reach the rate: 10 ms worth, at least 16 KiB.
    tbf_opts = {"rate": rate_bps, "burst": max(rate_bps // 100, 16 * 1024), "latency": "50ms"}
    if not netem_opts and not rate_bps:
        clear_qdisc(pid, ifname)
        return

    def body(ipr: Any) -> None:
        idx = _index(ipr, pid, ifname, "tc")
        # `replace` cannot change a qdisc's kind (EINVAL): drop the old root first.
        _del_root_qdisc(ipr, pid, ifname, idx)
        if netem_opts:
            # pyroute2 0.9's netem `rate` does not encode (int: TypeError, "Nmbit": ERANGE),
            # so a rate goes into a tbf child of netem, iproute2's classic recipe.
            _qdisc_replace(ipr, pid, ifname, idx, "netem", {"root": True}, netem_opts)
            if rate_bps:
                _qdisc_replace(ipr, pid, ifname, idx, "tbf", {"parent": 0x10001}, tbf_opts)
        else:
            _qdisc_replace(ipr, pid, ifname, idx, "tbf", {"root": True}, tbf_opts)

    _with_ipr(pid, "tc", body)


def _qdisc_replace(
    ipr: Any, pid: int, ifname: str, idx: int, kind: str, where: dict[str, Any], opts: dict
) -> None:
    _, netlink_error = _pyroute2()
    handle = 0x10000 if where.get("root") else 0x100000  # 1: at the root, 10: below it
    try:
        ipr.tc("replace", kind, idx, handle, **where, **opts)
    except netlink_error as exc:
        if exc.code == errno.ENOENT:  # type: ignore[attr-defined]
            raise WiringError(
                f"{kind} on {ifname} (netns of pid {pid}): the kernel has no sch_{kind} "
                f"qdisc (CONFIG_NET_SCH_{kind.upper()} not set)"
            ) from exc
        raise _fail(pid, f"tc {kind}", exc, ifname) from exc


def clear_qdisc(pid: int, ifname: str) -> None:
    """Remove the root qdisc of ``ifname`` (back to the default); no-op when there is none."""

    def body(ipr: Any) -> None:
        _del_root_qdisc(ipr, pid, ifname, _index(ipr, pid, ifname, "clear qdisc"))

    _with_ipr(pid, "clear qdisc", body)


def _del_root_qdisc(ipr: Any, pid: int, ifname: str, idx: int) -> None:
    # ENOENT/EINVAL: only the default qdisc is present, nothing to delete.
    _call(pid, "clear qdisc", ifname, lambda: ipr.tc("del", index=idx, root=True),
          ok=(errno.ENOENT, errno.EINVAL))


def qdisc(pid: int, ifname: str) -> str | None:
    """Kind of the root qdisc of ``ifname`` (e.g. 'netem', 'noqueue')."""

    def body(ipr: Any) -> str | None:
        idx = _index(ipr, pid, ifname, "show qdisc")
        for m in ipr.get_qdiscs(index=idx):
            if m["parent"] == 0xFFFFFFFF:  # TC_H_ROOT
                return m.get("TCA_KIND")
        return None

    return _with_ipr(pid, "show qdisc", body)
