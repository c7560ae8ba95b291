"""The lab lifecycle: deploy a plan, the running lab (inspect, exec, destroy), faults.

`Lab` (harness.lab.handle) is the public handle; the modules under it:

    deploy    the deploy pipeline, rolled back on any failure
    running   what runs, found by Docker labels: destroy, inspect, pids, exec
    faults    cable pulls, node crashes, impaired links
    attach    the namespace of one node or pod (scapy shell, capture)
    progress  progress of long steps
"""

from harness.lab.handle import ExecResult, Lab, plan_of, unique_name

__all__ = ["ExecResult", "Lab", "plan_of", "unique_name"]
