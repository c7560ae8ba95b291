"""CNI datapaths in both families (pure): host-local's range set and default route per
family, containerd's template variables per family, every address of a plugin's result
parsed, and the plan, the pods' labels and inspect following every family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from podlab_unit_helpers import DUAL, MINIMAL, V6ONLY, broken

from harness import datapath
from harness import labels as L
from harness.datapath import cni as cni_dp
from harness.datapath import cni_conf
from harness.datapath.base import ICMP6_ANSWERS, IPV6_FORWARDING, IPV6_ON, POD_SYSCTLS
from harness.host import cni as plugins
from harness.lab.deploy import container_spec, primary_first
from harness.model.addressing import IPV4, IPV6
from harness.model.topology import parse_topology
from harness.plan import Plan, make_plan

CLUSTER = "  node-mask: 24\n"


def plan_of(base: str, cni: str) -> Plan:
    return make_plan(parse_topology(broken(CLUSTER, f"{CLUSTER}  cni: {cni}\n", base)))


def result(*addresses: str, netns: str = "/proc/7/ns/net") -> dict:
    """A bridge/ptp 1.0.0 result: the host end, the pod's eth0, one ip per family."""
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "veth1"}, {"name": "eth0", "sandbox": netns}],
            "ips": [{"address": a, "interface": 1,
                     "gateway": a.split("/")[0].rsplit("." if "." in a else ":", 1)[0]
                     + ("." if "." in a else ":") + "1"} for a in addresses],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}


# --------------------------------------------------------------------------- conflists


@pytest.mark.parametrize("which", ["bridge", "ptp"])
def test_builtin_chain_has_a_range_set_and_a_default_route_per_family(which: str) -> None:
    conf = cni_conf.builtin_conflist(which, ["10.244.1.0/24", "fd00:10:244:1::/64"], "/d")
    (plugin,) = conf["plugins"]
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}],
                                        [{"subnet": "fd00:10:244:1::/64"}]]
    assert plugin["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    v6 = cni_conf.builtin_conflist(which, ["fd00:10:244:1::/64"], "/d")["plugins"][0]["ipam"]
    assert (v6["ranges"], v6["routes"]) == ([[{"subnet": "fd00:10:244:1::/64"}]],
                                            [{"dst": "::/0"}])


def test_template_variables_per_family_as_containerd_fills_them() -> None:
    v6 = cni_conf.template_data(["fd00:10:244:2::/64"])
    assert v6 == {"PodCIDR": "fd00:10:244:2::/64", "PodCIDRRanges": ["fd00:10:244:2::/64"],
                  "Routes": ["::/0"]}
    v6_first = cni_conf.template_data(["fd00:10:244:2::/64", "10.244.2.0/24"])
    assert v6_first["PodCIDR"] == "fd00:10:244:2::/64"  # the primary family's
    assert v6_first["Routes"] == ["0.0.0.0/0", "::/0"]  # containerd: IPv4 first, always


@pytest.mark.parametrize(("base", "cni"), [(DUAL, "bridge"), (DUAL, "ptp"),
                                          (V6ONLY, "bridge"), (V6ONLY, "ptp")])
def test_each_node_gets_every_family_of_its_pod_cidr(base: str, cni: str) -> None:
    plan = plan_of(base, cni)  # validation accepts a CNI with IPv6 now
    net = datapath.select(plan).describe(plan)
    for pod in plan.pods:
        node = plan.node(pod.node)
        p = net.pod(pod.name)
        (plugin,) = json.loads(p.conflist)["plugins"]
        assert plugin["ipam"]["ranges"] == [[{"subnet": c}] for c in node.pod_cidrs]
        assert [r["dst"] for r in plugin["ipam"]["routes"]] == [
            "0.0.0.0/0" if f == IPV4 else "::/0" for f in plan.families]
        # IPv6 on in the pod as for podlab's own pods: no DAD, no RA, not forwarding
        assert p.infra.sysctls == (*POD_SYSCTLS, *IPV6_ON, (IPV6_FORWARDING, "0"),
                                   *ICMP6_ANSWERS)
    for node in plan.k8s_nodes:
        n = net.node(node.name)
        assert {(k, v) for k, v in IPV6_ON} <= set(n.container.sysctls)
        assert [m.source for m in n.nat] == list(node.pod_cidrs)  # masquerade per family
        # static routes to the other nodes' pod CIDRs, in every family
        other = next(o for o in plan.k8s_nodes if o.name != node.name)
        assert set(other.pod_cidrs) <= {dst for dst, *_ in n.routes}


def test_ipv4_only_cni_pods_are_as_before() -> None:
    plan = plan_of(MINIMAL, "bridge")
    net = datapath.select(plan).describe(plan)
    assert net.pod("web").infra.sysctls == POD_SYSCTLS


def test_a_user_template_is_rendered_per_family_per_node(tmp_path: Path) -> None:
    template = ('{"cniVersion": "1.0.0", "name": "mine", "plugins": [{"type": "ptp", '
                '"ipam": {"type": "host-local", "subnet": "{{.PodCIDR}}", "ranges": ['
                '{{range $i, $r := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$r}}"}]'
                '{{end}}], "routes": [{{range $i, $r := .Routes}}{{if $i}}, {{end}}'
                '{"dst": "{{$r}}"}{{end}}]}}]}')
    user = cni_conf.UserConflist("x.conflist", template, ("/usr/lib/cni",))
    ipam = user.render(["10.244.1.0/24", "fd00:10:244:1::/64"])["plugins"][0]["ipam"]
    assert ipam["subnet"] == "10.244.1.0/24"
    assert ipam["ranges"] == [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


# --------------------------------------------------------------------------- results


def test_every_address_of_a_dual_stack_result_is_the_pods() -> None:
    res = result("10.244.1.2/24", "fd00:10:244:1::2/64")
    found = plugins.result_addresses(res, "eth0", "/proc/7/ns/net")
    assert [(a.address, a.gateway) for a in found] == [
        ("10.244.1.2/24", "10.244.1.1"), ("fd00:10:244:1::2/64", "fd00:10:244:1::1")]
    assert [a.address for a in plugins.result_addresses(res, "eth0", "/proc/8/ns/net")] == [
        "10.244.1.2/24", "fd00:10:244:1::2/64"]  # no interface matches: all of them


def test_primary_first_orders_a_result_by_the_pods_families() -> None:
    pod = plan_of(DUAL, "bridge").pod("web")
    assert primary_first(pod, ("fd00:10:244::5/64", "10.244.0.5/24")) == (
        "10.244.0.5/24", "fd00:10:244::5/64")
    assert primary_first(pod, ()) == ()


def test_with_pod_addresses_takes_every_family() -> None:
    plan = plan_of(DUAL, "ptp")
    assert not plan.pod_ips_known
    seen = plan.with_pod_addresses({"web": ("fd00:10:244::9/64", "10.244.0.9/24"),
                                    "db": ("10.244.1.7/24",)}, pods_bridged=False)
    web, db = seen.pod("web"), seen.pod("db")
    assert web.cidrs == ("10.244.0.9/24", "fd00:10:244::9/64")  # the cluster's order
    assert (web.ip, web.cidr) == ("10.244.0.9", "10.244.0.9/24")
    assert db.cidrs == ("10.244.1.7/24", plan.pod("db").cidr_of(IPV6))  # v6 left: the guess
    assert seen.pod_to_pod("db", "web", IPV6).dst_ip == "fd00:10:244::9"
    assert seen.pod_to_pod("db", "web", IPV4).dst_ip == "10.244.0.9"
    assert seen.pod_ips_known and not seen.pods_bridged
    # a single string is still one address (IPv4-only callers)
    assert plan.with_pod_addresses({"web": "10.244.0.9/24"}).pod("web").cidrs[0] == \
        "10.244.0.9/24"


def test_ipv6_only_pods_take_the_plugins_address() -> None:
    plan = plan_of(V6ONLY, "bridge")
    seen = plan.with_pod_addresses({"web": ("fd00:10:244::42/64",)})
    assert (seen.pod("web").ip, seen.pod("web").cidrs) == ("fd00:10:244::42",
                                                           ("fd00:10:244::42/64",))
    assert seen.pod_to_pod("db", "web").dst_ip == "fd00:10:244::42"


def test_observed_reads_every_family_of_the_saved_results(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv(cni_conf.STATE_ENV, str(tmp_path))
    plan = plan_of(DUAL, "bridge")
    chain = plugins.Chain("podlab-bridge", "1.0.0", ({"type": "bridge"},), ("/x",))
    box = plugins.Sandbox("c1", "/proc/7/ns/net")
    plugins.save_result(cni_conf.results_dir(plan.lab, "node2"), chain, box,
                        result("10.244.1.42/24", "fd00:10:244:1::42/64"),
                        {"pod": "db", "node": "node2"})
    assert cni_dp.pod_addresses(plan.lab) == {"db": ("10.244.1.42/24", "fd00:10:244:1::42/64")}
    db = datapath.select(plan).observed(plan).pod("db")
    assert db.ips == ("10.244.1.42", "fd00:10:244:1::42")


def test_the_pods_containers_carry_every_family() -> None:
    plan = plan_of(DUAL, "bridge")
    pod = plan.pod("web")
    settings = datapath.select(plan).describe(plan).pod("web").containers
    spec = container_spec(pod, settings, 0, "infra", "d1",
                          ("10.244.0.7/24", "fd00:10:244::7/64"))
    assert spec.labels[L.IP] == "10.244.0.7" and spec.labels[L.CIDR] == "10.244.0.7/24"
    assert spec.labels[L.IPS] == "10.244.0.7,fd00:10:244::7"
    v4 = container_spec(pod, settings, 0, "infra", "d1", ("10.244.0.7/24",))
    assert L.IPS not in v4.labels and v4.labels[L.IP] == "10.244.0.7"
    assert IPV6 in pod.families
