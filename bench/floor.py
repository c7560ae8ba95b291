"""The Docker floor: start one container per image with the Docker SDK alone, in
parallel (network_mode none, nothing else), then force-remove them in parallel. What any
tool must at least pay to run the same containers.

This file imports the Docker SDK and the standard library only: run as a script (the
whole-process floor of bench/e2e.py), its process pays Python's start-up and docker's
import and nothing of podlab's, as `podlab run` pays its own.

    python bench/floor.py --workers 8 IMAGE [IMAGE...]   # one JSON line: start_s, remove_s
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import docker

LAB_LABEL = "io.podlab.lab"  # harness.labels.LAB: `podlab destroy --all` removes leftovers
FLOOR_PREFIX = "bench-floor-"


def floor(images: list[str], workers: int) -> dict[str, float]:
    """Create+start then force-remove `images` with the Docker SDK alone, in parallel."""
    api = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
                           timeout=120, max_pool_size=workers + 2)
    tag = FLOOR_PREFIX + uuid.uuid4().hex[:8]
    labels = {LAB_LABEL: tag}

    def start(item: tuple[int, str]) -> str:
        i, image = item
        host = api.create_host_config(network_mode="none")
        cid = api.create_container(image=image, name=f"{tag}-{i}", labels=labels,
                                   host_config=host, detach=True)["Id"]
        api.start(cid)
        return cid

    def remove(cid: str) -> None:
        api.remove_container(cid, force=True, v=True)

    ids: list[str] = []
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            t0 = time.perf_counter()
            ids = list(pool.map(start, enumerate(images)))
            t_start = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(pool.map(remove, ids))
            t_remove = time.perf_counter() - t0
        ids = []
    finally:
        if not ids:  # a failure half-way: remove whatever carries the label
            left = api.containers(all=True, filters={"label": f"{LAB_LABEL}={tag}"})
            for row in left:
                api.remove_container(row["Id"], force=True, v=True)
        api.close()
    return {"start_s": t_start, "remove_s": t_remove}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    print(json.dumps({**floor(args.images, args.workers), "containers": len(args.images)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
