"""An interactive scapy session inside one network namespace (the child of `podlab scapy`).

    python -m harness.cli.shell PID [--iface IF] [--label TEXT]

This process enters /proc/PID/ns/net in its main thread *before* it imports scapy, so
scapy's interface list, routes and `conf.iface` are those of that namespace: in a pod,
`get_if_addr(conf.iface)` is the pod's IP. Only this child changes namespace; podlab
itself never leaves the host's. Python 3.11 has no os.setns, hence ctypes (harness.host.netns).

With a terminal on stdin it runs scapy's own console (IPython when installed); with a pipe
or file it runs Python's plain console on the same names, so sessions can be scripted:

    echo 'print(get_if_addr(conf.iface))' | podlab scapy -t lab.clab.yml --pod web
"""

from __future__ import annotations

import argparse
import os
import sys

from harness.host.netns import CLONE_NEWNET, _setns, open_netns


def enter(pid: int) -> None:
    """Move this (main) thread into the network namespace of `pid`."""
    fd = open_netns(pid)
    try:
        _setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def banner(label: str, iface: str | None) -> str:
    from scapy.all import conf, get_if_addr

    where = f"podlab: scapy inside {label}" if label else "podlab: scapy inside a lab netns"
    ifaces = ", ".join(sorted(str(i) for i in conf.ifaces))
    addr = get_if_addr(conf.iface)
    return (f"{where}\n  interfaces: {ifaces}\n  conf.iface = {conf.iface} ({addr})"
            f"{'' if iface else ' (scapy default)'}\n  routes: conf.route\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.cli.shell", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=int, help="a process in the target network namespace")
    parser.add_argument("--iface", help="set conf.iface to this interface")
    parser.add_argument("--label", default="", help="what the namespace is, for the banner")
    args = parser.parse_args(argv)

    try:
        enter(args.pid)
    except Exception as exc:  # WiringError, OSError: one clear line, exit 3 (environment)
        print(f"error: cannot enter the netns of pid {args.pid}: {exc}", file=sys.stderr)
        return 3

    # Only now: scapy reads interfaces and routes when it is first imported.
    from scapy.config import conf

    conf.logLevel = 40  # no "No alternative Python interpreters found" noise
    import scapy.all as scapy_all

    if args.iface:
        if args.iface not in {str(i) for i in conf.ifaces}:
            print(f"error: no interface {args.iface!r} in this namespace", file=sys.stderr)
            return 2
        conf.iface = args.iface
    text = banner(args.label, args.iface)

    if sys.stdin.isatty():
        from scapy.main import interact

        interact(mydict={}, argv=[sys.argv[0]], mybanner=text, loglevel=40)
        return 0
    # Scripted: the plain console reads stdin line by line (prompts go to stderr).
    import code

    names = {k: v for k, v in vars(scapy_all).items() if not k.startswith("__")}
    names["__name__"] = "__console__"
    console = code.InteractiveConsole(names)
    print(text, file=sys.stderr, end="")
    console.interact(banner="", exitmsg="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
