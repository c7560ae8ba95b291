"""What verify hands back: one Result per (check, src, dst, proto, family), in one Report.

A module of its own so that every producer of results (the probe checks, intra-pod, the
identity check) and every consumer (render, the CLI, tests) depends on it, not on each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.prove.probe import Seen


@dataclass
class Result:
    check: str
    src: str
    dst: str
    proto: str
    ok: bool
    expected: dict[str, Any]
    observed: dict[str, Any]
    detail: str
    probe_ids: list[int] = field(default_factory=list, repr=False)
    family: str = "ipv4"  # the address family probed: "ipv4" or "ipv6"
    # where `expected` comes from: "plan" (the plan's own routes and rules) or "fabric"
    # (the forwarding tables of routers the plan does not own, walked before probing)
    expectation: str = "plan"
    failure: str | None = None  # a check's own failure class (path: "detour", ...)

    def to_dict(self) -> dict[str, Any]:
        out = {"check": self.check, "family": self.family, "src": self.src, "dst": self.dst,
               "proto": self.proto, "ok": self.ok, "expectation": self.expectation,
               "expected": self.expected, "observed": self.observed, "detail": self.detail}
        if self.failure:
            out["failure"] = self.failure
        return out


@dataclass
class Report:
    """The results of one verify. `negative_control` says whether the built-in NAT control
    ran: "observed" (masquerade expected and seen), "failed", "absent" (masquerade is on but
    the lab has no outside host), "not run" (not selected), "not applicable" (masquerade
    off). `notes` are sentences for the reader, e.g. why the control is absent.
    `sample`: None for a full run; `{"targets": n, "of": m}` for `verify --quick`, which
    probed n of the m targets (probe pairs, Service paths, pods) a full run covers."""

    lab: str
    results: list[Result]
    duration_s: float
    sightings: dict[int, list[Seen]] = field(default_factory=dict, repr=False)
    negative_control: str = "not applicable"
    notes: list[str] = field(default_factory=list)
    sample: dict[str, int] | None = None

    @property
    def sample_text(self) -> str:
        """"sample: n of m targets, ...", or "" for a full run: what every view prints."""
        if not self.sample:
            return ""
        return (f"sample: {self.sample['targets']} of {self.sample['of']} targets, one "
                "protocol each")

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        passed = sum(r.ok for r in self.results)
        out: dict[str, Any] = {
            "ok": self.ok, "lab": self.lab,
            "summary": {"passed": passed, "failed": len(self.results) - passed,
                        "total": len(self.results), "duration_s": round(self.duration_s, 3),
                        "negative_control": self.negative_control, "notes": self.notes,
                        "sample": self.sample}}
        if with_results:
            out["results"] = [r.to_dict() for r in self.results]
        return out
