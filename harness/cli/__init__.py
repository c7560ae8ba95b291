"""The `podlab` command line."""

from harness.cli.app import app, main

__all__ = ["app", "main"]
