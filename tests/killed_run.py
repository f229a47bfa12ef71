"""``python -m pipeline`` killed with SIGKILL at a chosen point, for the fault-injection tests.

    python tests/killed_run.py KILL_AT TORN -- decode --model M --manifest ... --out ...
    python tests/killed_run.py KILL_AT TORN -- prepare --format cv --src ... --out ...

Every ``os.fsync`` marks a point where a run's work becomes durable: its identity record, a
finished batch of the partial file, a final file just before it replaces the old one. With
``KILL_AT`` = k the process kills itself (SIGKILL: no cleanup, no ``finally``) at the k-th such
point, before that fsync; with ``TORN`` = 1 it first cuts the file being synced in the middle of
its last line, as a kill in the middle of a write leaves it. ``KILL_AT`` 0 never kills; a run that
ends prints how many points it passed (``fsync points: N``) on stderr.

The per-utterance timings (``seconds``) of decode and rescore are the only thing a rerun cannot
reproduce; :func:`stop_clocks` makes them read a clock that always says 0, so that runs compare
byte for byte. Tests import it to run the same way in their own process.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import types
from collections.abc import Callable


def stop_clocks(setattr_: Callable = setattr) -> None:
    """Decode and rescore time every utterance at 0 s (``setattr_``: e.g. a test's ``monkeypatch.setattr``)."""
    import pipeline.decode.manifest
    import pipeline.rescore.build

    still = types.SimpleNamespace(perf_counter=lambda: 0.0)
    setattr_(pipeline.decode.manifest, "time", still)
    setattr_(pipeline.rescore.build, "time", still)


class Points:
    """``os.fsync`` counted, and the process killed at the ``kill_at``-th call (0: never)."""

    def __init__(self, kill_at: int = 0, torn: bool = False):
        self.count, self.kill_at, self.torn = 0, kill_at, torn
        self._fsync = os.fsync

    def fsync(self, fd: int) -> None:
        self.count += 1
        if self.count == self.kill_at:
            if self.torn:
                _cut_last_line(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        self._fsync(fd)


def _cut_last_line(fd: int) -> None:
    with open(f"/proc/self/fd/{fd}", "rb") as f:  # the file may be open for appending only
        data = f.read()
    start = data.rstrip(b"\n").rfind(b"\n") + 1  # where the last line begins
    os.ftruncate(fd, start + (len(data) - start) // 2)


def main() -> None:
    points = Points(int(sys.argv[1]), sys.argv[2] == "1")
    argv = sys.argv[sys.argv.index("--") + 1 :]
    os.fsync = points.fsync
    atexit.register(lambda: print(f"fsync points: {points.count}", file=sys.stderr))
    if argv[0] in ("decode", "rescore"):  # imported only for them: prepare needs no torch
        stop_clocks()
    from pipeline.cli import main as pipeline_main

    raise SystemExit(pipeline_main(argv))


if __name__ == "__main__":
    main()
