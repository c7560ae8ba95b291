"""podlab: the Kubernetes networking model on one Docker host, proven packet by packet.

The public API is small: a lab handle, the file model and its plan, and one error tree.

    from harness import Lab

    with Lab.deploy("topologies/minimal.clab.yml") as lab:
        report = lab.verify()
        assert report.ok, [r.detail for r in report.results if not r.ok]

`load_topology` and `make_plan` give the model and the pure plan without starting
anything; every error is a `PodlabError` (see harness.errors for the tree).
"""

from harness.errors import PodlabError
from harness.lab import Lab
from harness.model.topology import Topology, load_topology
from harness.plan import Plan, make_plan

__all__ = ["Lab", "Plan", "PodlabError", "Topology", "load_topology", "make_plan"]
__version__ = "0.1.0"
