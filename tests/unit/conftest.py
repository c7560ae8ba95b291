"""Unit tests: pure, no Docker, no root. Make `harness` importable from a plain checkout."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import harness  # noqa: F401
except ImportError:  # not installed (pip install -e .): use the checkout
    sys.path.insert(0, str(ROOT))
