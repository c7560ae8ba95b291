"""`--image FROM=TO`: run an image a file names as a local one (containerlab's frr01
names quay.io/frrouting/frr:10.5.1; podlab/frr is built here). Pure.
"""

from __future__ import annotations

from dataclasses import replace

from harness.plan.model import Plan


def parse_image_map(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`--image FROM=TO` options as a mapping; ValueError naming a malformed one."""
    out: dict[str, str] = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"--image {item!r}: write FROM=TO, e.g. "
                             "quay.io/frrouting/frr:10.5.1=podlab/frr")
        out[src.strip()] = dst.strip()
    return out


def _same_image(a: str, b: str) -> bool:
    def norm(image: str) -> str:
        last = image.rsplit("/", 1)[-1]
        return image if ":" in last or "@" in image else f"{image}:latest"
    return norm(a) == norm(b)


def with_images(plan: Plan, mapping: dict[str, str]) -> Plan:
    """The plan with every image a FROM of `mapping` names replaced by its TO (nodes' and
    pods' containers'); ValueError for a FROM the plan does not use (a typo would
    otherwise change nothing, silently)."""
    if not mapping:
        return plan

    def mapped(image: str) -> str:
        return next((dst for src, dst in mapping.items() if _same_image(src, image)), image)

    used = [n.image for n in plan.nodes] + [c.image for p in plan.pods for c in p.containers]
    unused = [src for src in mapping if not any(_same_image(src, i) for i in used)]
    if unused:
        raise ValueError(f"--image {unused[0]}=...: lab {plan.lab} uses no image "
                         f"{unused[0]!r} (its images: {', '.join(sorted(set(used)))})")
    nodes = tuple(replace(n, image=mapped(n.image)) for n in plan.nodes)
    pods = tuple(replace(p, containers=tuple(replace(c, image=mapped(c.image))
                                             for c in p.containers)) for p in plan.pods)
    return replace(plan, nodes=nodes, pods=pods)
