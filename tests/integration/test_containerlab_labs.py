"""containerlab's own labs run in podlab: lab-examples/frr01 (three FRR routers in OSPF,
three hosts configured by exec) deploys with its images mapped to podlab's, its OSPF
adjacencies come up and PC1 pings PC3; a failing exec fails the deploy and rolls back."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from harness.errors import DeployError
from harness.host import runtime
from harness.lab import Lab
from harness.lab.handle import plan_of
from harness.model.topology import parse_topology
from harness.plan import make_plan
from harness.plan.imagemap import with_images

DATA = Path(__file__).resolve().parents[1] / "unit" / "data" / "containerlab"
FRR01 = DATA / "lab-examples" / "frr01" / "frr01.clab.yml"
IMAGES = {"quay.io/frrouting/frr:10.5.1": "podlab/frr",
          "wbitt/network-multitool:3.22.2": "podlab/node"}
OSPF_TIMEOUT_S = 120.0  # OSPF's wait timer on a broadcast link is 40 s, before any DR


def unique(stem: str) -> str:
    return f"it{uuid.uuid4().hex[:6]}-{stem}"


def router_id(lab: Lab, router: str) -> str:
    out = lab.exec(["vtysh", "-c", "show ip ospf json"], node=router, check=True)
    return str(json.loads(out.output)["routerId"])


def full_neighbours(lab: Lab, router: str) -> set[str]:
    out = lab.exec(["vtysh", "-c", "show ip ospf neighbor json"], node=router, check=True)
    data = json.loads(out.output)
    return {rid for rid, entries in data.get("neighbors", {}).items()
            for e in entries if str(e.get("nbrState", e.get("state", ""))).startswith("Full")}


def test_frr01_deploys_its_ospf_comes_up_and_pc1_pings_pc3(docker_available: None) -> None:
    plan = with_images(plan_of(FRR01, unique("frr01")), IMAGES)
    lab = Lab.deploy(plan)
    try:
        # each router fully adjacent to the two others, by the router IDs they chose (FRR
        # picks one from its addresses as they come up: the loopback's, or an interface's)
        routers = ("router1", "router2", "router3")
        want: dict[str, set[str]] = {}
        seen: dict[str, set[str]] = {}
        deadline = time.monotonic() + OSPF_TIMEOUT_S
        while time.monotonic() < deadline:  # an ID may change until adjacencies form
            ids = {r: router_id(lab, r) for r in routers}
            want = {r: {ids[o] for o in routers if o != r} for r in routers}
            seen = {r: full_neighbours(lab, r) for r in routers}
            if seen == want:
                break
            time.sleep(2)
        assert seen == want
        # PC3's address is its exec's (192.168.13.2): routed PC1 -> r1 -> r3 -> PC3
        deadline = time.monotonic() + 30
        while True:
            ping = lab.exec(["ping", "-c1", "-W2", "192.168.13.2"], node="PC1")
            # until the shortest path is in the kernel: right after the adjacencies are
            # Full, SPF may not have run yet and a longer way round can answer first
            if (ping.code == 0 and "ttl=62" in ping.output) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert ping.code == 0, ping.output
        assert "ttl=62" in ping.output  # two routers on the way, as OSPF's shortest path
    finally:
        lab.destroy()
    assert runtime.containers_of(plan.lab) == []


def test_failing_exec_fails_the_deploy_with_its_output_and_rolls_back(
        docker_available: None) -> None:
    name = unique("badexec")
    plan = make_plan(parse_topology(f"""\
name: {name}
topology:
  nodes:
    a: {{kind: linux, image: podlab/node, exec: ["ip link show e1", "ip link show nosuch"]}}
    b: {{kind: linux, image: podlab/node}}
  links:
    - endpoints: ["a:e1", "b:e1"]
"""))
    try:
        with pytest.raises(DeployError) as info:
            Lab.deploy(plan)
        text = str(info.value)
        assert re.search(r"exec on node a: 'ip link show nosuch' exited [1-9]", text)
        assert "can't find device 'nosuch'" in text  # the command's own output
        assert "rolled back" in text
        assert runtime.containers_of(name) == []
    finally:
        Lab(plan).destroy()
