"""`podlab fault -t FILE ...`: inject faults into a running lab (see harness.lab.faults).

Exit codes as everywhere: 2 for a bad endpoint/number or a lab that is not deployed, 3 for
the host (e.g. delay asked on a kernel without sch_netem).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.console import err, fail
from harness.errors import InputError, PodlabError

fault_app = typer.Typer(help="Inject faults into a running lab: cable pulls, node "
                        "crashes, impaired links.", no_args_is_help=True)

Endpoint = Annotated[str, typer.Argument(help="NODE:IFACE (or POD:eth0, NODE:pv-POD)")]
Node = Annotated[str, typer.Argument(help="node name from the topology file")]


@fault_app.callback()
def main(ctx: typer.Context,
         topo: Annotated[Path | None, typer.Option("-t", "--topo", help="topology file")] = None,
         ) -> None:
    """Faults need the lab's topology file: podlab fault -t FILE COMMAND ..."""
    from harness.lab import Lab

    # optional here so that `podlab fault link-down --help` works; _apply insists on it
    if ctx.resilient_parsing or topo is None:
        return
    try:
        ctx.obj = Lab.attach(topo)
    except PodlabError as exc:
        fail(exc)


def _apply(what: str, ctx: typer.Context, target: str, **params: Any) -> Any:
    """Lab.fault(what, target); a PodlabError ends the command with its exit code."""
    if ctx.obj is None:
        fail(InputError(f"podlab fault needs the lab's topology: podlab fault -t FILE {what} ..."))
    try:
        return ctx.obj.fault(what, target, **params)
    except PodlabError as exc:
        fail(exc)


def _done(message: str) -> None:
    err.print(message, highlight=False)


@fault_app.command("link-down")
def link_down(ctx: typer.Context, endpoint: Endpoint) -> None:
    """Both ends of the link go down.

    Example: podlab fault -t topologies/flat3.clab.yml link-down node3:eth1
    """
    _apply("link-down", ctx, endpoint)
    _done(f"{endpoint}: link down (both ends)")


@fault_app.command("link-up")
def link_up(ctx: typer.Context, endpoint: Endpoint) -> None:
    """Both ends up again, addresses and routes restored.

    Example: podlab fault -t topologies/flat3.clab.yml link-up node3:eth1
    """
    _apply("link-up", ctx, endpoint)
    _done(f"{endpoint}: link up (both ends), routes restored")


@fault_app.command("node-stop")
def node_stop(ctx: typer.Context, node: Node) -> None:
    """Stop a node's container: its links and its pods' veths vanish.

    Example: podlab fault -t topologies/flat3.clab.yml node-stop node2
    """
    _apply("node-stop", ctx, node)
    _done(f"node {node}: stopped")


@fault_app.command("node-start")
def node_start(ctx: typer.Context, node: Node) -> None:
    """Start a stopped node and wire it back (links, pods, routes, NAT).

    Example: podlab fault -t topologies/flat3.clab.yml node-start node2
    """
    made = _apply("node-start", ctx, node)
    _done(f"node {node}: started, re-wired {len(made)} veths ({', '.join(made) or 'none'})")


@fault_app.command("daemon-kill")
def daemon_kill(ctx: typer.Context, node: Node,
                family: Annotated[str | None, typer.Option(
                    "--family", help="ipv4 (bird) or ipv6 (bird6): that family's daemon "
                    "only; unset: every daemon of the node")] = None,
                daemon: Annotated[str | None, typer.Option(
                    "--daemon", help="a process of the node, e.g. bgpd or ospfd on a "
                    "user's FRR router (with FRR's watchfrr); default: podlab's BIRD")] = None,
                ) -> None:
    """Kill a node's routing daemons (routing: bgp's BIRD, one per family, or --daemon on a
    user's router) with SIGKILL, as a crash would.

    Example: podlab fault -t topologies/leafspine.clab.yml daemon-kill leaf1 --family ipv4

    Example: podlab fault -t topologies/tor-bgp.clab.yml daemon-kill tor1 --daemon bgpd
    """
    params = {k: v for k, v in (("family", family), ("daemon", daemon)) if v}
    pid = _apply("daemon-kill", ctx, node, **params)
    which = f"{family} routing daemon" if family else daemon or "routing daemon"
    _done(f"node {node}: {which} killed (pid {pid}); its neighbours withdraw its routes")


@fault_app.command("daemon-start")
def daemon_start(ctx: typer.Context, node: Node,
                 daemon: Annotated[str | None, typer.Option(
                     "--daemon", help="an FRR daemon of a user's router, e.g. bgpd; "
                     "default: podlab's BIRD")] = None) -> None:
    """Start a node's routing daemon again.

    Example: podlab fault -t topologies/leafspine.clab.yml daemon-start leaf1

    Example: podlab fault -t topologies/tor-bgp.clab.yml daemon-start tor1 --daemon bgpd
    """
    _apply("daemon-start", ctx, node, **({"daemon": daemon} if daemon else {}))
    _done(f"node {node}: routing daemon started")


@fault_app.command("netem")
def netem(ctx: typer.Context, endpoint: Endpoint,
          delay: Annotated[float | None, typer.Option("--delay", help="ms")] = None,
          jitter: Annotated[float | None, typer.Option("--jitter", help="ms")] = None,
          loss: Annotated[float | None, typer.Option("--loss", help="percent")] = None,
          rate: Annotated[float | None, typer.Option("--rate", help="kbit/s")] = None,
          ) -> None:
    """Impair the egress of one end.

    Example: podlab fault -t topologies/flat3.clab.yml netem node3:eth1 --loss 100
    """
    how = _apply("netem", ctx, endpoint, delay_ms=delay, jitter_ms=jitter, loss_pct=loss,
                 rate_kbit=rate)
    _done(f"{endpoint}: impaired ({how})")


@fault_app.command("netem-clear")
def netem_clear(ctx: typer.Context, endpoint: Endpoint) -> None:
    """Remove the impairment of one end.

    Example: podlab fault -t topologies/flat3.clab.yml netem-clear node3:eth1
    """
    _apply("netem-clear", ctx, endpoint)
    _done(f"{endpoint}: impairment cleared")


@fault_app.command("svc-dnat-elsewhere")
def svc_dnat_elsewhere(ctx: typer.Context,
                       service: Annotated[str, typer.Argument(help="SERVICE[:PORT]")],
                       node: Annotated[str, typer.Argument(help="the node that loses its rule")],
                       at: Annotated[str, typer.Argument(help="the node that DNATs instead")],
                       ) -> None:
    """The endpoint DNAT of a Service port happens on the wrong node.

    Example: podlab fault -t topologies/services.clab.yml svc-dnat-elsewhere web:http node3 node1
    """
    _done(_apply("svc-dnat-elsewhere", ctx, service, node=node, at=at))


@fault_app.command("svc-no-masq")
def svc_no_masq(ctx: typer.Context, node: Node) -> None:
    """Empty a node's KUBE-MARK-MASQ: nothing it should SNAT is.

    Example: podlab fault -t topologies/services.clab.yml svc-no-masq node3
    """
    _done(_apply("svc-no-masq", ctx, node))


@fault_app.command("svc-local-as-cluster")
def svc_local_as_cluster(ctx: typer.Context,
                         service: Annotated[str, typer.Argument(help="a Local Service")]
                         ) -> None:
    """Program an externalTrafficPolicy Local Service as Cluster on every node.

    Example: podlab fault -t topologies/services.clab.yml svc-local-as-cluster echo-local
    """
    _done(_apply("svc-local-as-cluster", ctx, service))


@fault_app.command("svc-restore")
def svc_restore(ctx: typer.Context) -> None:
    """Put kube-proxy's and portmap's rules back as planned on every k8s-node.

    Example: podlab fault -t topologies/services.clab.yml svc-restore
    """
    _done(_apply("svc-restore", ctx, ""))
