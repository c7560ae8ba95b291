"""Kernel-side filters for the probe sniffers (classic BPF, SO_ATTACH_FILTER).

A lab of hundreds of pods carries millions of frames during verify; Python should see
only the few it needs. The filter accepts IPv4 frames whose payload starts with a probe
nonce ("PL..."), and optionally only those arriving for one of the namespace's own
addresses. It is a dozen instructions, written out here because scapy's compiler needs
tcpdump, which the host may not have.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the frame's direction
PACKET_OUTGOING = 4
MAGIC = 0x504C  # "PL": both request (PLB) and reply (PLR) nonces
SNAP = 256

# opcodes (linux/filter.h)
LDB_ABS, LDH_ABS, LDW_ABS = 0x30, 0x28, 0x20
LDXB_MSH = 0xB1  # X = 4 * (byte & 0xf): the IPv4 header length
LDH_IND, LDB_IND = 0x48, 0x50
JEQ, JA = 0x15, 0x05
RSH, LSH, AND, ADD_X, TAX = 0x74, 0x64, 0x54, 0x0C, 0x07
RET = 0x06

Insn = tuple[int, int, int, int]  # code, jump-if-true, jump-if-false, k
Target = int | str  # a relative jump (0: next) or a label


def assemble(lines: list[tuple[int, Target, Target, int] | str]) -> list[Insn]:
    """Resolve label jumps; a plain string in `lines` defines a label."""
    labels: dict[str, int] = {}
    insns: list[tuple[int, Target, Target, int]] = []
    for line in lines:
        if isinstance(line, str):
            labels[line] = len(insns)
        else:
            insns.append(line)

    def rel(target: Target, i: int) -> int:
        return target if isinstance(target, int) else labels[target] - i - 1

    out = []
    for i, (code, jt, jf, k) in enumerate(insns):
        if code == JA:
            k, jt, jf = rel(jt, i), 0, 0
        out.append((code, rel(jt, i), rel(jf, i), k) if code != JA else (code, 0, 0, k))
    return out


def probe_filter(local: list[str] | None = None, handshakes: bool = False) -> list[Insn]:
    """Accept probe frames; with `local`, only arriving ones addressed to those IPs; with
    `handshakes`, TCP SYN and SYN-ACK segments too (they carry no nonce)."""
    prog: list[tuple[int, Target, Target, int] | str] = []
    if local:
        prog += [(LDB_ABS, 0, 0, SKF_AD_PKTTYPE), (JEQ, "drop", 0, PACKET_OUTGOING)]
    prog += [(LDH_ABS, 0, 0, 12), (JEQ, 0, "drop", 0x0800)]
    if local:
        prog.append((LDW_ABS, 0, 0, 30))  # the destination address
        prog += [(JEQ, "payload", 0, struct.unpack("!I", socket.inet_aton(a))[0])
                 for a in local]
        prog.append((JA, "drop", 0, 0))
    prog += [
        "payload",
        (LDB_ABS, 0, 0, 23), (JEQ, 0, "udp_icmp", 6),
        (LDXB_MSH, 0, 0, 14),
    ]
    if handshakes:  # flags SYN without ACK, or SYN+ACK
        prog += [(LDB_IND, 0, 0, 27), (AND, 0, 0, 0x12), (JEQ, "accept", 0, 0x02),
                 (JEQ, "accept", 0, 0x12)]
    prog += [
        # TCP: the payload starts after the IP header and the TCP header (data offset)
        (LDB_IND, 0, 0, 26), (RSH, 0, 0, 4), (LSH, 0, 0, 2),
        (ADD_X, 0, 0, 0), (TAX, 0, 0, 0), (LDH_IND, 0, 0, 14), (JA, "compare", 0, 0),
        "udp_icmp",
        (LDXB_MSH, 0, 0, 14), (LDH_IND, 0, 0, 22),  # 14 + 8-byte UDP or ICMP header
        "compare",
        (JEQ, 0, "drop", MAGIC),
        "accept",
        (RET, 0, 0, SNAP),
        "drop",
        (RET, 0, 0, 0),
    ]
    return assemble(prog)


def attach(sock: socket.socket, program: list[Insn]) -> None:
    insns = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
