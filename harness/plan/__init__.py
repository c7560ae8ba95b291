"""The plan: every name, address, route and expected TTL drop of a lab. Pure, no I/O.

Same topology in, same plan out: `make_plan` (harness.plan.build) makes it, deploy
executes it, verify checks the wire against it. What a plan holds is in
harness.plan.model; Services' share of it in harness.plan.services and servicepaths.
"""

from harness.plan.build import make_plan, pod_iface_name, topology_digest
from harness.plan.model import (
    ASSIGNED_BY_CNI,
    POD_BRIDGE,
    POD_IFACE,
    SWITCH_BRIDGE,
    ContainerPlan,
    Expectation,
    Interface,
    LinkPlan,
    NodePlan,
    PeerPlan,
    Plan,
    PodPlan,
    Route,
    SegmentPlan,
    WalkedPath,
)

__all__ = ["ASSIGNED_BY_CNI", "POD_BRIDGE", "POD_IFACE", "SWITCH_BRIDGE", "ContainerPlan",
           "Expectation", "Interface", "LinkPlan", "NodePlan", "PeerPlan", "Plan", "PodPlan",
           "Route", "SegmentPlan", "WalkedPath", "make_plan", "pod_iface_name",
           "topology_digest"]
