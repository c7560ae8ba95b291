"""The proof: verify's checks of the Kubernetes networking model, packet by packet.

    targets   pure: which pairs are probed and what their packets must look like, from
              the plan, computed once per run
    probe     pure: the probe's wire format, and the records of what was sent (Probe),
              sniffed on an interface (Seen) and got by a socket (Heard)
    verdict   pure: expected against observed headers, and the diagnosis of what changed
              where; unit-tested with synthetic sightings
    engine    the kernel: sockets in every namespace, sniffers with BPF filters, the loop
    intrapod  the intra-pod check (two containers of one pod over localhost)
    result    Result and Report, which render and the CLI read
    verify    the orchestration: live inputs (pids from the Lab, addresses and route
              sources through harness.host) in, a Report out

Nothing here imports harness.lab: the Lab hands verify what it needs.
"""
