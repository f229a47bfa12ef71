"""``fn(task)`` for every task, in forked worker processes, results in task order.

What ``multiprocessing.Pool(...).imap`` gave :func:`data_prep.prepare.run_rows`,
without the pool's three helper threads in the calling process. One of them,
the worker handler, waits on the result pipe as well as on the workers
(CPython's change for bpo-35493), so it wakes up and loops, polling, for as
long as a result lies in that pipe unread: with both cores busy, that is
often. On the Sanskrit train split (2 workers) the pool's threads used 0.5-0.7
CPU seconds of the calling process, the worker handler 0.3-0.4 of them, on the
cores the workers need (the bare loop of benchmarks/prepare_throughput.py still pays that
price). Here the calling thread does it all: it sends each worker the numbers
of its next tasks through a pipe of its own and blocks on the results
(``multiprocessing.connection.wait``); 0.1 CPU seconds on that split.

The workers are forked, so they inherit ``fn`` and ``tasks`` (a closure is fine)
and only task numbers and results are pickled; each has up to :data:`AHEAD` tasks
queued, so it never waits on the caller. A task that raises ends the map with
its exception (its traceback as the cause); a worker that dies ends it with a
:class:`RuntimeError`. Every worker has exited and been reaped (its CPU time is
in ``RUSAGE_CHILDREN``) when the iterator is exhausted or closed.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

AHEAD = 2  # tasks queued per worker
_JOIN_S = 5.0  # how long a worker that was told to stop may take before it is terminated


class RemoteTraceback(Exception):
    """A task's traceback in its worker process (the ``__cause__`` of the exception re-raised here)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _serve(conn: Connection, others: list[Connection], fn: Callable, tasks: Sequence) -> None:
    """A worker: task numbers in, ``(True, result)`` or ``(False, (exception, traceback))`` out, until None."""
    for c in others:  # the caller's ends of the pipes, inherited through fork: a dead caller means EOF here
        c.close()
    while True:
        try:
            k = conn.recv()
        except (EOFError, OSError):  # the caller is gone
            return
        if k is None:
            return
        try:
            out = (True, fn(tasks[k]))
        except Exception as e:  # noqa: BLE001 - handed to the caller, who raises it
            out = (False, (e, traceback.format_exc()))
        try:
            conn.send(out)
        except OSError:  # the caller is gone
            return
        except Exception as e:  # noqa: BLE001 - e.g. a result or an exception that does not pickle
            try:
                conn.send((False, (RuntimeError(f"task {k}: cannot send its result back: {e!r}"),
                                   traceback.format_exc())))
            except OSError:
                return


def fork_map(fn: Callable[[T], R], tasks: Sequence[T], jobs: int) -> Iterator[R]:
    """``fn(task)`` for each of ``tasks``, in order, computed by ``jobs`` forked processes."""
    ctx = mp.get_context("fork")
    procs: list = []
    conns: list[Connection] = []
    finished = False
    try:
        for _ in range(min(max(1, jobs), len(tasks))):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(theirs, [*conns, mine], fn, tasks), daemon=True)
            p.start()
            theirs.close()
            procs.append(p)
            conns.append(mine)
        queued: dict[Connection, deque[int]] = {c: deque() for c in conns}
        pid = {c: p.pid for c, p in zip(conns, procs)}
        sent = 0

        def send(c: Connection) -> None:
            nonlocal sent
            if sent < len(tasks):
                c.send(sent)
                queued[c].append(sent)
                sent += 1

        for _ in range(AHEAD):
            for c in conns:
                send(c)
        done: dict[int, R] = {}
        for k in range(len(tasks)):
            while k not in done:
                for c in wait([c for c in conns if queued[c]]):
                    try:
                        ok, value = c.recv()
                    except (EOFError, OSError) as e:
                        raise RuntimeError(f"worker process {pid[c]} died") from e
                    j = queued[c].popleft()
                    if not ok:
                        exc, tb = value
                        raise exc from RemoteTraceback(tb)
                    done[j] = value
                    send(c)
            yield done.pop(k)
        finished = True
    finally:
        for c in conns:
            if finished:  # else (an error, or the caller stopped early) the workers are stopped at once
                try:
                    c.send(None)
                except OSError:
                    pass
            c.close()
        for p in procs:
            if not finished:
                p.terminate()
            p.join(_JOIN_S)
            if p.exitcode is None:
                p.kill()
                p.join()
