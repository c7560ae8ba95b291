"""podlab: the Kubernetes networking model on one Docker host, proven packet by packet.

The public API is small: load a topology, plan it, and drive a lab.

    from harness import load_topology, make_plan, Lab
"""

from harness.errors import PodlabError
from harness.model.topology import Topology, load_topology
from harness.plan import Plan, make_plan

__all__ = ["Plan", "PodlabError", "Topology", "load_topology", "make_plan"]
__version__ = "0.1.0"
