"""Progress of long steps, to a rich Progress, a `(phase, done, total)` callback, or nowhere."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Phase progress to a `(phase, done, total)` callback or a rich Progress (or nowhere)."""

    def __init__(self, progress: Any = None):
        self._progress = progress
        self._task: Any = None
        self._phase = ""
        self._done = self._total = 0
        self._phases: dict[str, list[Any]] = {}  # phase -> [rich task, done, total]

    def start(self, phase: str, total: int) -> None:
        self._phase, self._done, self._total = phase, 0, total
        if hasattr(self._progress, "add_task"):  # rich.progress.Progress
            self._task = self._progress.add_task(phase, total=total or 1)
            if not total:
                self._progress.update(self._task, completed=1)
        elif callable(self._progress):
            self._progress(phase, 0, total)

    def begin(self, totals: dict[str, int]) -> None:
        """Phases that run at once (the deploy pipeline): one bar or callback stream each."""
        for phase, total in totals.items():
            self._task = None
            self.start(phase, total)
            self._phases[phase] = [self._task, 0, total]

    def advance(self, phase: str | None = None) -> None:
        if phase in self._phases:
            entry = self._phases[phase]
            entry[1] += 1
            if entry[0] is not None:
                self._progress.advance(entry[0])
            elif callable(self._progress):
                self._progress(phase, entry[1], entry[2])
            return
        self._done += 1
        if self._task is not None:
            self._progress.advance(self._task)
        elif callable(self._progress):
            self._progress(self._phase, self._done, self._total)

    def note(self, message: str) -> None:
        """A one-off message (image builds) as a zero-length phase."""
        self.start(message, 0)


