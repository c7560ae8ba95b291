"""The `podlab` command line: containerlab's verbs, kubectl's habits.

Exit codes: 0 success; 1 verification found a violation; 2 bad input (file, flags);
3 environment (no Docker daemon, not root, image missing), always with one line that says
what to do. Heavy modules (docker, pyroute2, scapy) are imported by the commands that
need them, so `validate`, `plan` and `--help` stay fast.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.markup import escape

from harness.cli.console import err, fail, out, sigterm_as_interrupt
from harness.cli.fault import fault_app
from harness.cli.matrix import command as matrix_command
from harness.cli.reporting import write as _write
from harness.errors import InputError, PodlabError

app = typer.Typer(
    name="podlab",
    help="Emulate the Kubernetes networking model on one Docker host and prove it "
    "at the packet level.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
images_app = typer.Typer(help="Build the lab images locally (no registry needed).",
                         no_args_is_help=True)
app.add_typer(images_app, name="images")
app.add_typer(fault_app, name="fault")  # podlab fault -t FILE link-down A:IF ...
app.command("matrix")(matrix_command)  # podlab matrix --set routing=static,bgp ...

TopoOpt = Annotated[Path, typer.Option("-t", "--topo", help="topology file (*.clab.yml)")]
OptTopo = Annotated[Path | None, typer.Option("-t", "--topo", help="topology file")]


class Format(str, Enum):
    table = "table"
    json = "json"


class VerifyFormat(str, Enum):
    table = "table"
    json = "json"
    junit = "junit"
    html = "html"


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"


FormatOpt = Annotated[Format, typer.Option("-o", "--format", help="output format")]


class Runtime(str, Enum):
    podlab = "podlab"
    containerlab = "containerlab"


RuntimeOpt = Annotated[Runtime, typer.Option(
    "--runtime", help="who makes the nodes and their links: podlab itself, or containerlab "
    "(`containerlab deploy` of the same containers; podlab adds the rest)")]


class ExportFormat(str, Enum):
    containerlab = "containerlab"


def _load(topo: Path):  # -> Plan
    from harness.model.topology import load_topology
    from harness.plan import make_plan

    loaded = load_topology(topo)
    for warning in loaded.warnings:  # containerlab keys without effect: said, never silent
        err.print(f"{topo}: warning: {warning}", highlight=False, markup=False)
    return make_plan(loaded)


def _describe(plan) -> None:  # plan: Plan
    """What the datapath makes of the plan: a CNI conflist is read and checked here."""
    from harness import datapath

    datapath.describe(plan)


def _lab_name(topo: Path | None, name: str | None) -> str:
    if name:
        return name
    if topo is None:
        raise InputError("give the lab: -t FILE or --name NAME (or --all)")
    return _load(topo).lab


_sigterm_as_interrupt = sigterm_as_interrupt  # deploy, run, capture roll back on SIGTERM


def _progress(fmt: str = "table"):
    from harness.cli.reporting import progress

    return progress(fmt)


@app.command()
def validate(topo: TopoOpt) -> None:
    """Check a topology file; exit 2 listing every problem with its YAML path.

    Example: podlab validate -t topologies/flat3.clab.yml
    """
    try:
        plan = _load(topo)
        _describe(plan)
    except PodlabError as exc:
        fail(exc)
    out.print(f"{topo}: valid ({len(plan.nodes)} nodes, {len(plan.links)} links, "
              f"{len(plan.pods)} pods)", highlight=False)


@app.command()
def plan(topo: TopoOpt,
         output: FormatOpt = Format.table,
         iptables: Annotated[str | None, typer.Option(
             "--iptables", metavar="NODE",
             help="print the iptables-restore text kube-proxy and portmap write on NODE")]
         = None) -> None:
    """Show the address and route plan; nothing is started.

    Example: podlab plan -t topologies/routed.clab.yml -o json
    """
    try:
        p = _load(topo)
        _describe(p)
        if iptables is not None:
            from harness.datapath.services import restore_text

            if iptables not in {n.name for n in p.k8s_nodes}:
                raise InputError(f"--iptables: {iptables!r} is not a k8s-node of lab {p.lab} "
                                 f"({', '.join(n.name for n in p.k8s_nodes)})")
            _write_text(restore_text(p, iptables) or "# no Services or hostPorts\n", None)
            return
    except PodlabError as exc:
        fail(exc)
    if output is Format.json:
        _write(None, _json(p.to_dict()))
        return
    from harness.render.report import plan_tables

    for table in plan_tables(p):
        out.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the topology file (for editor completion).

    Example: podlab schema > podlab.schema.json
    """
    from harness.model.schema import json_schema

    _write(None, _json(json_schema()))


ImageMapOpt = Annotated[list[str] | None, typer.Option(
    "--image", metavar="FROM=TO", help="run image FROM (as the file names it) as the local "
    "image TO, e.g. quay.io/frrouting/frr:10.5.1=podlab/frr; repeatable")]


def _mapped(plan, items: list[str] | None):  # -> Plan
    from harness.plan.imagemap import parse_image_map, with_images

    try:
        return with_images(plan, parse_image_map(items or []))
    except ValueError as exc:
        raise InputError(str(exc)) from None


@app.command()
def deploy(topo: TopoOpt, runtime: RuntimeOpt = Runtime.podlab,
           image: ImageMapOpt = None) -> None:
    """Bring a lab up: containers, veths, addresses, routes, NAT.

    Example: sudo podlab deploy -t topologies/flat3.clab.yml
    """
    from harness.lab import Lab

    _sigterm_as_interrupt()
    try:
        p = _mapped(_load(topo), image)
        with _progress() as prog:
            Lab.deploy(p, progress=prog, runtime=runtime.value)
    except PodlabError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted: the half-deployed lab was removed")
        raise typer.Exit(130) from None
    err.print(f"lab {p.lab!r} is up: {len(p.containers)} containers "
              f"({len(p.nodes)} nodes, {len(p.pods)} pods)", highlight=False)


@app.command()
def destroy(topo: OptTopo = None,
            name: Annotated[str | None, typer.Option("--name", help="lab name")] = None,
            all_labs: Annotated[bool, typer.Option("--all", help="every podlab lab")] = False,
            ) -> None:
    """Remove a lab (found by its Docker labels; works after a crash).

    Example: podlab destroy -t topologies/flat3.clab.yml   |   podlab destroy --all
    """
    from harness.lab import Lab, running

    try:
        if all_labs:
            removed = Lab.destroy_all()
        else:  # by name only: the lab may be gone half-way, or its file changed
            lab_name = _lab_name(topo, name)
            removed = running.destroy(lab_name)
    except PodlabError as exc:
        fail(exc)
    what = "every lab" if all_labs else f"lab {lab_name!r}"
    err.print(f"{what}: removed {len(removed)} containers", highlight=False)


@app.command()
def inspect(topo: OptTopo = None,
            name: Annotated[str | None, typer.Option("--name")] = None,
            all_labs: Annotated[bool, typer.Option("--all")] = False,
            output: FormatOpt = Format.table) -> None:
    """Show what runs: nodes, pods, containers, addresses.

    Example: podlab inspect --all -o json
    """
    from harness.lab import running
    from harness.render.report import inspect_tables

    try:
        lab_name = None if all_labs else _lab_name(topo, name)
        data = running.inspect(lab_name, all_labs=all_labs)
    except PodlabError as exc:
        fail(exc)
    if output is Format.json:
        _write(None, _json(data))
        return
    for table in inspect_tables(data if isinstance(data, list) else [data]):
        out.print(table)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(ctx: typer.Context, topo: TopoOpt,
         node: Annotated[str | None, typer.Option("--node")] = None,
         pod: Annotated[str | None, typer.Option("--pod")] = None,
         container: Annotated[str | None, typer.Option("-c", "--container")] = None) -> None:
    """Run a command in a node or in a pod's container.

    Example: podlab exec -t topologies/flat3.clab.yml --pod web -c app -- ip addr
    """
    from harness.lab import running

    argv = list(ctx.args)
    if not argv or (node is None) == (pod is None):
        fail(InputError("give exactly one of --node N / --pod P, then -- CMD..."))
    try:
        code, output = running.exec_in(_lab_name(topo, None), node=node, pod=pod,
                                       container=container, argv=argv)
    except PodlabError as exc:
        fail(exc)
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    raise typer.Exit(code)


CheckOpt = Annotated[list[str] | None, typer.Option(
    "--check", help="only these checks (repeatable): pod-identity, intra-pod, pod-to-pod, "
    "node-to-pod, pod-to-node, pod-to-external, mtu, path, pod-to-service, node-to-service, "
    "external-to-nodeport, external-to-hostport")]
VerifyOut = Annotated[VerifyFormat, typer.Option(
    "-o", "--format", help="output format: table (the truth table), json, junit, or html "
    "(one self-contained file; give --output)")]
AllOpt = Annotated[bool, typer.Option("--all-results", help="-o table: one row per result "
                                      "instead of the truth table")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="a smoke test: every check and "
                                        "every node pair once, over one protocol")]
PathOpt = Annotated[Path | None, typer.Option("--output",
                                              help="write the report here instead of stdout")]
PcapOpt = Annotated[Path | None, typer.Option("--pcap-dir", "--pcap", help="write each "
                                              "check's sniffed packets here as pcap files, "
                                              "and each failure's own")]


def _write_text(text: str, path: Path | None) -> None:
    _write(path, lambda f: f.write(text))


def _json(data: object) -> Callable[[TextIO], object]:
    # streamed, not built as one string: a 200-pod report is a hundred megabytes
    return lambda f: (json.dump(data, f, indent=2), f.write("\n"))


def _verify(lab, output: VerifyFormat, out_file: Path | None, pcap_dir: Path | None,
            checks: list[str] | None, all_results: bool = False, quick: bool = False) -> int:
    from harness.cli import reporting

    report, pcaps = reporting.probe(lab, output.value, checks, pcap_dir, quick)
    reporting.emit(report, lab.plan, output.value, out_file, all_results=all_results,
                   pcaps=pcaps)
    return 0 if report.ok else 1


@app.command()
def verify(topo: TopoOpt, output: VerifyOut = VerifyFormat.table, out_file: PathOpt = None,
           pcap_dir: PcapOpt = None, check: CheckOpt = None,
           all_results: AllOpt = False, quick: QuickOpt = False) -> None:
    """Prove the model on a deployed lab with packets; exit 1 on any violation.

    Example: podlab verify -t topologies/flat3.clab.yml -o html --output report.html
    """
    from harness.lab import Lab

    try:
        code = _verify(Lab.attach(topo), output, out_file, pcap_dir, check, all_results,
                       quick)
    except PodlabError as exc:
        fail(exc)
    raise typer.Exit(code)


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="override the topology's cluster.KEY (repeatable), e.g. routing=bgp; "
    "VALUE is read as YAML")]
NameOpt = Annotated[str | None, typer.Option("--name", help="lab name (default: the "
                                             "file's); run several copies side by side")]


@app.command()
def run(topo: TopoOpt, output: VerifyOut = VerifyFormat.table, out_file: PathOpt = None,
        pcap_dir: PcapOpt = None, check: CheckOpt = None, all_results: AllOpt = False,
        quick: QuickOpt = False, sets: SetOpt = None, name: NameOpt = None,
        runtime: RuntimeOpt = Runtime.podlab, image: ImageMapOpt = None) -> None:
    """Deploy, verify and always destroy; exit with verify's code (CI's verb).

    Example: podlab run -t topologies/routed.clab.yml -o junit --output routed.xml
    """
    from harness.cli import reporting
    from harness.lab import Lab
    from harness.model.variants import load_variant, parse_set
    from harness.plan import make_plan

    _sigterm_as_interrupt()
    reporting.preload_verify(pcaps=pcap_dir is not None)  # while deploy waits on Docker
    clock = reporting.Stopwatch()
    try:
        p = _mapped(make_plan(load_variant(topo, [parse_set(s) for s in sets or ()], name)),
                    image)
        with _progress(output.value) as prog, clock("deploy"):
            lab = Lab.deploy(p, progress=prog, runtime=runtime.value)
        try:  # destroyed however verify ends
            with clock("verify"):
                report, pcaps = reporting.probe(lab, output.value, check, pcap_dir, quick)
        finally:
            with clock("destroy"):
                lab.destroy()
        reporting.emit(report, p, output.value, out_file, all_results=all_results,
                       pcaps=pcaps, timings=clock.phases)
    except PodlabError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted: the lab was removed")
        raise typer.Exit(130) from None
    raise typer.Exit(0 if report.ok else 1)


WriteOpt = Annotated[Path | None, typer.Option("--output", help="write to this file "
                                               "instead of stdout")]


@app.command()
def graph(topo: TopoOpt,
          output: Annotated[GraphFormat, typer.Option("-o", "--format", help="output format")]
          = GraphFormat.mermaid,
          out_file: WriteOpt = None) -> None:
    """Draw the lab: nodes, links with addresses, pods inside their node (no side effects).

    Example: podlab graph -t topologies/flat3.clab.yml -o dot --output flat3.dot
    """
    from harness.render import draw

    try:
        p = _load(topo)
    except PodlabError as exc:
        fail(exc)
    _write_text(draw.to_mermaid(p) if output is GraphFormat.mermaid else draw.to_dot(p), out_file)


@app.command()
def export(topo: TopoOpt,
           output: Annotated[ExportFormat, typer.Option("-o", "--format",
                                                        help="output format")],
           out_file: WriteOpt = None) -> None:
    """Export the lab as a topology another tool deploys (containerlab: `clab deploy -t`).

    Example: podlab export -t topologies/flat3.clab.yml -o containerlab --output clab/flat3.clab.yml
    """
    from harness.render.export import to_yaml

    try:
        p = _load(topo)
        if out_file is not None and out_file.resolve() == topo.resolve():
            raise InputError(f"--output {out_file} would overwrite the topology file")
        text = to_yaml(p)
    except PodlabError as exc:
        fail(exc)
    _write_text(text, out_file)


import_app = typer.Typer(help="Write a podlab topology from another tool's config.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("kind")
def import_kind(config: Annotated[Path, typer.Argument(help="a kind Cluster config")],
                out_file: WriteOpt = None,
                cni: Annotated[str | None, typer.Option(
                    "--cni", help="wire pods with podlab, bridge or ptp (default: ptp, as "
                    "kind's kindnet; required with disableDefaultCNI)")] = None) -> None:
    """A topology from a kind Cluster config: one k8s-node per node entry on one switch,
    its podSubnet, serviceSubnet and ipFamily.

    Example: podlab import kind kind-config.yaml --output kind.clab.yml
    """
    import yaml

    from harness.errors import TopologyError
    from harness.model.kindimport import import_kind as convert
    from harness.model.structure import locate
    from harness.model.topology import parse_topology
    from harness.model.yamlsrc import load_yaml, read_text

    try:
        if cni is not None and cni not in ("podlab", "bridge", "ptp"):
            raise InputError(f"--cni {cni!r}: one of podlab, bridge, ptp")
        data, lines = load_yaml(read_text(config), str(config))
        topo, notes, problems = convert(data, cni=cni)
        if problems:
            raise TopologyError(str(config), [locate(p, lines) for p in problems])
        header = f"# written by `podlab import kind {config.name}`\n" + "".join(
            f"# left out: {n}\n" for n in notes)
        text = header + yaml.safe_dump(topo, sort_keys=False)
        parse_topology(text)  # what it writes validates
    except PodlabError as exc:
        fail(exc)
    _write_text(text, out_file)


NodeOpt = Annotated[str | None, typer.Option("--node", help="a node of the lab")]
PodOpt = Annotated[str | None, typer.Option("--pod", help="a pod of the lab")]


@app.command()
def scapy(topo: TopoOpt, node: NodeOpt = None, pod: PodOpt = None) -> None:
    """Interactive scapy inside a node's or a pod's network namespace.

    conf.iface is the pod's eth0 (a node's first lab interface), so get_if_addr(conf.iface)
    is the pod's IP. Only a child process enters the netns. Piped stdin runs as a script.

    Example: sudo podlab scapy -t topologies/flat3.clab.yml --pod web
    """
    import os
    import subprocess

    from harness.lab import Lab, attach

    try:
        target = attach.resolve(Lab.attach(topo).plan, node=node, pod=pod)
    except PodlabError as exc:
        fail(exc)
    env = dict(os.environ)  # the child imports harness from this very checkout
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "harness.cli.shell", str(target.pid), "--label", target.label]
    if target.iface:
        argv += ["--iface", target.iface]
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # Ctrl-C is the session's
    try:
        code = subprocess.call(argv, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


@app.command()
def capture(
    topo: TopoOpt, node: NodeOpt = None, pod: PodOpt = None,
    iface: Annotated[str | None, typer.Option(
        "-i", "--iface", help="interface (default: all of them, like -i any)")] = None,
    write: Annotated[Path | None, typer.Option(
        "-w", "--write", help="write a pcap file instead of printing summaries")] = None,
    count: Annotated[int | None, typer.Option("--count", min=1,
                                              help="stop after N packets")] = None,
    bpf: Annotated[str | None, typer.Option("--filter", help="BPF filter, e.g. 'icmp'")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0,
                                                  help="stop after S seconds")] = None,
) -> None:
    """Sniff inside a node's or pod's namespace: live one-line summaries, or a pcap.

    A line: seconds, interface, > sent or < received, scapy's summary. Ctrl-C flushes the pcap.

    Example: sudo podlab capture -t topologies/flat3.clab.yml --pod db -w db.pcap --count 10
    """
    from harness.host.capture import summary_line
    from harness.lab import Lab

    _sigterm_as_interrupt()
    start = 0.0

    def show(pkt, ifname: str, outgoing: bool) -> None:
        print(summary_line(pkt, ifname, outgoing, start), flush=True)

    sniffer = None
    try:
        lab = Lab.attach(topo)
        sniffer = lab.capture(node=node, pod=pod, iface=iface, bpf=bpf, count=count,
                              timeout=timeout, path=write)
        sniffer.on_packet, sniffer.keep = (None if write else show), False
        sniffer.open()
        if sniffer.note:
            err.print(f"note: {sniffer.note}", highlight=False)
        where = f"{'node ' + node if node else 'pod ' + str(pod)} of lab {lab.name}, " \
                f"{iface or 'all interfaces'}"
        err.print(f"capturing in {where}" + (f" -> {write}" if write else "")
                  + ("" if count or timeout else " (Ctrl-C stops)"), highlight=False)
        import time

        start = time.time()
        sniffer.run()
    except PodlabError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
    seen = sniffer.seen if sniffer else 0
    err.print(f"{seen} packets" + (f" written to {write}" if write else ""), highlight=False)


@images_app.command("build")
def images_build(force: Annotated[bool, typer.Option("--force")] = False) -> None:
    """Build podlab/node, pause, app and bird from images/ (only what changed).

    Example: podlab images build
    """
    from harness.host import images, runtime

    try:
        built = images.build_images(runtime.client(), force=force)
    except PodlabError as exc:
        fail(exc)
    err.print("built: " + (", ".join(built) if built else "nothing (all up to date)"))


def main() -> None:
    """The `podlab` entry point. A failure podlab did not foresee (a bug, an OS error no
    command translated) ends with one line and exit 3, never a traceback with exit 1,
    which would read as "verification found a violation"."""
    try:
        app()  # usage errors and typer.Exit end here as SystemExit, with their own codes
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except PodlabError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))} "
                  f"(at {Path(where.filename).name}:{where.lineno}; please report it)",
                  highlight=False, soft_wrap=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
