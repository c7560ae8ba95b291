"""Probe and judge, in one process or shared among several: one per core for a large lab.

One Python process sends, sniffs, echoes and judges a few thousand probes a second, and
the kernel's work for each packet (every hop's bridge, routing and netfilter) runs in
its syscalls: one process keeps one core busy. A lab of hundreds of pods has over a
hundred thousand probes, so `judge` splits them among processes, one per core, by the
residue of the probe id modulo 16 (harness.host.bpf.residue): each process's share is a
set of residues. Each share has its own engine, so its own listeners (on ephemeral ports)
and its own sniffers, whose kernel filters keep only that share's nonces: no process
reads another's frames, and every probe is sent, seen, heard and judged exactly as in one
process. The caller's process runs the first share (never a larger one: it also hands out
the work and gathers the results); the others run `python -m harness.prove.shard`, read
their work (a pickle) on stdin, and answer on stdout: progress counts while they probe,
then their results.

Only first passes are shared. A traced pass (failures probed again, sniffed everywhere)
follows TCP handshakes, which carry no nonce to share them by; it runs in one process.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from harness.errors import EnvironmentProblem
from harness.host import bpf
from harness.prove import verdict
from harness.prove.engine import Engine, Namespace
from harness.prove.probe import Heard, Probe, Seen
from harness.prove.result import Result
from harness.prove.targets import Target

Work = list[tuple[Target, Probe]]
PER_SHARD = 2000  # probes that pay for a process of their own (start-up, sockets)
MAX_SHARDS = 8
_FRAME = struct.Struct("!cI")  # b"P" + probes done, or b"R" + the results' pickle length
PROGRESS_EVERY = 250


def shards_for(probes: int) -> int:
    """How many processes share `probes` probes: one per usable core, and no more than
    the work is worth."""
    if not sys.executable:  # embedded: no interpreter to start the others with
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_SHARDS, probes // PER_SHARD))


def shares(n: int) -> list[int]:
    """`n` masks of residues (bit r: ids with residue r) that together cover all of them,
    as even as 16 allows; where uneven, the first (the caller's) is a smaller one."""
    base, extra = divmod(bpf.RESIDUES, n)
    counts = [base + (i >= n - extra) for i in range(n)]
    out, first = [], 0
    for count in counts:
        out.append(((1 << count) - 1) << first)
        first += count
    return out


def judge(spaces: list[Namespace], work: Work, *, trace: bool = False, timeout: float = 2.0,
          window: int = 256, shards: int = 1,
          progress: Callable[[int], None] | None = None,
          ) -> tuple[list[Result], dict[int, list[Seen]]]:
    """Send every probe of `work`, at most `window` in flight per process, and judge it
    against its target; `progress(done)` as probes finish. One Result per item, in order.
    Sightings come back from the caller's own share only (pcaps ask for a traced pass,
    which is never shared)."""
    with gc_paused():
        if shards <= 1 or trace:
            return _judge(spaces, work, trace, timeout, window, None, progress)
        return _shared(spaces, work, timeout, window, shards, progress)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic collector off for a while: probing and judging make millions of
    objects (records, results) that form no cycle, and the collector's passes over them
    cost more than the verdicts themselves. Restored on the way out."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _shared(spaces: list[Namespace], work: Work, timeout: float, window: int, shards: int,
            progress: Callable[[int], None] | None,
            ) -> tuple[list[Result], dict[int, list[Seen]]]:
    masks = shares(shards)
    owner = [next(k for k, m in enumerate(masks) if m >> r & 1) for r in range(bpf.RESIDUES)]
    parts: list[Work] = [[] for _ in range(shards)]
    where: list[list[int]] = [[] for _ in range(shards)]
    for i, item in enumerate(work):
        k = owner[bpf.residue(item[1].id)]
        parts[k].append(item)
        where[k].append(i)
    children = [_Child(spaces, parts[k], masks[k], timeout, window)
                for k in range(1, shards)]
    out: list[Result | None] = [None] * len(work)
    try:
        own = 0

        def tick(n: int) -> None:
            nonlocal own
            own = n
            if progress:
                progress(own + sum(c.done for c in children))

        results, sightings = _judge(spaces, parts[0], False, timeout, window, masks[0], tick)
        for i, result in zip(where[0], results, strict=True):
            out[i] = result
        for k, child in enumerate(children, start=1):
            for i, result in zip(where[k], child.results(lambda: tick(own)), strict=True):
                out[i] = result
    finally:
        for child in children:
            child.stop()
    assert all(r is not None for r in out)
    return out, sightings  # type: ignore[return-value]


def _judge(spaces: list[Namespace], work: Work, trace: bool, timeout: float, window: int,
           share: int | None, progress: Callable[[int], None] | None,
           ) -> tuple[list[Result], dict[int, list[Seen]]]:
    done = 0

    def tick(_: Probe) -> None:
        nonlocal done
        done += 1
        if progress and (done % 50 == 0 or done == len(work)):
            progress(done)

    with Engine(spaces, keep_frames=trace, timeout=timeout, window=window,
                share=share) as engine:
        engine.run((p for _, p in work), on_done=tick)
        sightings = engine.sightings
        heard: dict[int, list[Heard]] = engine.heard
        unanswered = frozenset(engine.unanswered)
    results = [verdict.evaluate(t, p, sightings.get(p.id, []), heard.get(p.id, []),
                                unanswered, trace) for t, p in work]
    return results, sightings


# --------------------------------------------------------------------------- other processes


class _Child:
    """One share in a `python -m harness.prove.shard` process."""

    def __init__(self, spaces: list[Namespace], work: Work, share: int, timeout: float,
                 window: int):
        self.share, self.done = share, 0
        self._payload: bytes | None = None
        self._error: BaseException | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        root = str(Path(__file__).resolve().parents[2])  # the harness package's own tree
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.prove.shard"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env)
        # targets and plain fields: a Probe (slots) would pickle through Python code
        rows = [(t, p.proto, p.id, p.error) for t, p in work]
        data = pickle.dumps((spaces, rows, share, timeout, window),
                            protocol=pickle.HIGHEST_PROTOCOL)
        self._writer = threading.Thread(target=self._write, args=(data,), daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer.start()
        self._reader.start()

    def _write(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            with stdin:
                stdin.write(data)
        except OSError as exc:  # it died early: its stderr says why
            self._error = exc

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = stdout.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    return
                kind, value = _FRAME.unpack(head)
                if kind == b"P":
                    self.done = value
                elif kind == b"R":
                    self._payload = stdout.read(value)
                    return
        except BaseException as exc:
            self._error = exc

    def results(self, waiting: Callable[[], None]) -> list[Result]:
        """Its results, once it is done; `waiting()` is called now and then until then."""
        while self._reader.is_alive():
            self._reader.join(0.1)
            waiting()
        code = self.proc.wait()
        if self._payload is None or code != 0:
            self._stderr.seek(0)
            said = self._stderr.read().decode(errors="replace").strip().splitlines()
            why = " / ".join(said[-3:]) or repr(self._error) or f"exit {code}"
            raise EnvironmentProblem(f"the probe process of share {self.share:#06x} failed "
                                     f"(exit {code}): {why}")
        return [Result(*row) for row in pickle.loads(self._payload)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    gc.disable()  # a short life, no cycles worth a pass (gc_paused)
    spaces, rows, share, timeout, window = pickle.load(stdin)
    work = [(t, Probe(i, proto, t.sender, t.receiver, t.src_ip, t.exp.dst_ip, t.expect_reply,
                      error=error)) for t, proto, i, error in rows]
    last = 0.0

    def progress(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last > 0.1 or done == len(work):
            last = now
            stdout.write(_FRAME.pack(b"P", done))
            stdout.flush()

    results, _ = _judge(spaces, work, False, timeout, window, share, progress)
    rows = [(r.check, r.src, r.dst, r.proto, r.ok, r.expected, r.observed, r.detail,
             r.probe_ids, r.family, r.expectation, r.failure) for r in results]
    data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    stdout.write(_FRAME.pack(b"R", len(data)))
    stdout.write(data)
    stdout.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
