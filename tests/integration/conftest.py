"""Integration tests: real Docker, root. Skip without them, but fail under CI=true.

A CI runner that has lost its Docker daemon must not turn green by skipping everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import harness  # noqa: F401
except ImportError:  # not installed (pip install -e .): use the checkout
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def docker_available() -> None:
    """Root, a Docker daemon that answers, and podlab's images built locally: the checks
    of the pytest plugin, which fail rather than skip under CI=true."""
    from harness.pytest_plugin import require_host, require_images

    require_images(require_host())
