"""Where the command line writes: one stdout console, one stderr console, one way to fail.

Shared by `podlab` (harness.cli) and `podlab fault` (harness.cli.fault), so every command
reports an error the same way and ends with its PodlabError's exit code.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from harness.errors import PodlabError

# wide tables when piped to a file or CI log; a terminal keeps its own width
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def fail(exc: PodlabError) -> NoReturn:
    # rich drops the colour by itself when stderr is not a terminal
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def sigterm_as_interrupt() -> None:
    """SIGTERM rolls back like Ctrl-C: both raise KeyboardInterrupt in the main thread."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
