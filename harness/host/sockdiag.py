"""Which TCP ports listen in a namespace: the kernel's socket table, asked over sock_diag.

`/proc/<pid>/net/tcp` walks every TCP socket of the host on each read, all namespaces and
TIME_WAIT included: after a verify's TCP probes, one read costs milliseconds of kernel
time, and intra-pod polls it while its listener comes up. A sock_diag dump that asks for
listeners only walks the listening table. pyroute2's DiagSocket speaks the same protocol
but costs about a millisecond of Python per query; this one is a few structs.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct

from harness.host.netns import run_in_netns

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_seq = itertools.count(1)


def open_diag(pid: int | None = None) -> socket.socket:
    """A sock_diag socket of the namespace of `pid` (None: this process's own); it keeps
    answering for that namespace from any thread."""
    def make() -> socket.socket:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)

    return make() if pid is None else run_in_netns(pid, make)


def tcp_listening(sock: socket.socket) -> set[int]:
    """The local ports of every listening TCP socket (IPv4 and IPv6) in `sock`'s namespace."""
    ports: set[int] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        seq = next(_seq)
        # inet_diag_req_v2: family, protocol, ext, pad, states; then an empty inet_diag_sockid
        body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
        body += bytes(48)
        sock.send(_HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY,
                               NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        ports |= _read_dump(sock, seq)
    return ports


def _read_dump(sock: socket.socket, seq: int) -> set[int]:
    ports: set[int] = set()
    while True:
        data = sock.recv(1 << 16)
        at = 0
        while at + _HEADER.size <= len(data):
            length, kind, _, got_seq, _ = _HEADER.unpack_from(data, at)
            if length < _HEADER.size:
                return ports  # malformed: nothing more to read in this buffer
            payload = at + _HEADER.size
            if got_seq == seq:
                if kind == NLMSG_DONE:
                    return ports
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, payload)[0]
                    if code == errno.ENOENT:  # no such family built in (IPv6 off)
                        return ports
                    raise OSError(code, f"sock_diag: {os.strerror(code)}")
                # inet_diag_msg: family, state, timer, retrans, then the id: sport (BE) first
                ports.add(struct.unpack_from("!H", data, payload + 4)[0])
            at += (length + 3) & ~3
