"""A lab of the user's own nodes under both runtimes: each node's container gets the same
settings from containerlab as from podlab (command, env, binds, user, sysctls,
capabilities, resources, another node's namespace, its address on the lab's internal
management network), its endpoint MAC, and its exec lines run (the two ends ping)."""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_runtimes import containerlab_available  # noqa: F401 (a fixture)

from harness.host import containerlab, runtime
from harness.lab import Lab
from harness.model.topology import load_topology
from harness.plan import make_plan

pytestmark = pytest.mark.docker

MAC = "02:00:00:aa:00:01"
TOPO = """\
name: {name}
mgmt: {{ipv4-subnet: 172.30.{octet}.0/24}}
topology:
  nodes:
    a:
      kind: linux
      image: podlab/node
      entrypoint: /bin/sh -c
      cmd: "'echo started > /tmp/started; exec sleep 3600'"
      env: {{GREETING: "hello world"}}
      binds: [conf.txt:/etc/podlab-conf.txt:ro]
      sysctls: {{net.ipv4.conf.all.arp_ignore: 1}}
      cap-add: [SYS_PTRACE]
      memory: 256M
      cpu: 0.5
      mgmt-ipv4: 172.30.{octet}.9
      exec: ["ip addr add 10.0.0.1/24 dev e1"]
    b: {{kind: linux, image: podlab/node, network-mode: "container:a", cmd: "sleep 3600"}}
    c:
      kind: linux
      image: podlab/node
      network-mode: none
      user: "65534"
      cmd: "sleep 3600"
      exec: ["ip addr add 10.0.0.2/24 dev e1"]
  links:
    - type: veth
      endpoints:
        - {{node: a, interface: e1, mac: "{mac}"}}
        - {{node: c, interface: e1}}
"""


def settings(name: str) -> dict[str, Any]:
    """What a container was given, as Docker holds it (another container by its name)."""
    api = runtime.client().api
    got = api.inspect_container(name)
    cfg, host = got["Config"], got["HostConfig"]
    mode = host["NetworkMode"]
    if mode.startswith("container:"):
        mode = "container:" + api.inspect_container(mode[10:])["Name"].lstrip("/")
    nets = got["NetworkSettings"]["Networks"]
    return {"entrypoint": cfg["Entrypoint"], "cmd": cfg["Cmd"], "user": cfg["User"],
            "env": sorted(e for e in cfg["Env"] or () if not e.startswith("PATH=")),
            "binds": host.get("Binds"), "sysctls": host.get("Sysctls"),
            # containerlab's caps carry Docker's CAP_ prefix, podlab's not: the same set
            "caps": sorted(c.removeprefix("CAP_") for c in host["CapAdd"] or ()),
            "privileged": host["Privileged"], "memory": host["Memory"],
            # CPUs as NanoCpus (podlab's) or a CFS quota per period (containerlab's)
            "cpus": host["NanoCpus"] / 1e9 if host["NanoCpus"] else
            (host["CpuQuota"] / host["CpuPeriod"] if host["CpuPeriod"] else 0),
            "mode": mode,
            "mgmt": {n: (v.get("IPAMConfig") or {}).get("IPv4Address") for n, v in
                     nets.items()}}


def mac_of(pid: int, iface: str) -> str:
    done = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "link",
                           "show", iface], capture_output=True, text=True, check=True)
    return str(json.loads(done.stdout)[0]["address"])


def test_user_nodes_get_the_same_container_settings_under_both_runtimes(
        containerlab_available: str, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "conf.txt").write_text("from the host\n")
    octet = random.randint(64, 250)  # no subnet of a lab running beside (probably)
    seen: dict[str, dict[str, dict[str, Any]]] = {}
    for name in ("podlab", "containerlab"):
        lab_name = f"itu{uuid.uuid4().hex[:6]}"
        path = tmp_path / f"{lab_name}.clab.yml"
        path.write_text(TOPO.format(name=lab_name, octet=octet, mac=MAC))
        plan = make_plan(load_topology(path))
        with Lab.deploy(plan, runtime=name) as lab:
            seen[name] = {n.name: settings(n.container) for n in plan.nodes}
            net = runtime.client().api.inspect_network(plan.mgmt.network)
            assert net["Internal"] is True  # the management network has no way out
            assert mac_of(lab.pids()["a"], "e1") == MAC
            assert lab.exec(["cat", "/etc/podlab-conf.txt"], node="a",
                            check=True).output == "from the host\n"
            assert lab.exec(["cat", "/tmp/started"], node="a", check=True).output == \
                "started\n"  # its own entrypoint and cmd ran
            ping = lab.exec(["ping", "-c1", "-W2", "10.0.0.2"], node="a")
            assert ping.code == 0, ping.output  # both exec lines ran, the link is up
            # containerlab's own network names (prefix, lab) replaced by podlab's
            seen[name] = json.loads(json.dumps(seen[name]).replace(lab_name, "LAB"))
        assert not runtime.containers_of(lab_name)
        assert not runtime.networks_of(lab_name)
        assert not containerlab.has_state(lab_name)
    a, b = seen["podlab"], seen["containerlab"]
    assert a["a"]["mgmt"] == {"podlab-LAB-mgmt": f"172.30.{octet}.9"}
    assert a["b"]["mode"] == "container:podlab-LAB-a" and a["c"]["user"] == "65534"
    assert "GREETING=hello world" in a["a"]["env"]
    # containerlab sets IPv6 on in every linux node (nodes/linux Init), b too, whose
    # namespace is a's: the value a has already, which podlab gives the owner only
    v6 = "net.ipv6.conf.all.disable_ipv6"
    assert b["b"]["sysctls"] == {v6: a["a"]["sysctls"][v6]} and a["b"]["sysctls"] is None
    b["b"]["sysctls"] = None
    for node in ("a", "b", "c"):
        mine, theirs = a[node], b[node]
        # containerlab adds env of its own (CLAB_* of its labels, its node name): podlab's
        # is all there, with the same values
        assert set(mine.pop("env")) <= set(theirs.pop("env")), node
        assert mine == theirs, node
