"""Per-utterance work over a manifest that survives a kill (``decode``, ``rescore``).

Utterances go through in batches (similar durations together: less padding,
alike generation lengths). Each finished batch's records are appended to
``<out>.partial`` and fsynced, so a killed run continues where it stopped; a
line torn by the kill is dropped and its utterance done again. At the end the
records are written to ``out`` atomically, in manifest order, and the partial
file goes away. Audio that cannot be read is reported, not fatal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from data_prep.audio import AudioError
from data_prep.manifest import Utterance


class Record(Protocol):
    """One utterance's result: an ``id`` and a JSON form."""

    id: str

    def to_json(self) -> dict: ...


R = TypeVar("R", bound=Record)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def read_records(path: Path, from_json: Callable[[dict], R]) -> dict[str, R]:
    """Records of a finished or partial file by id (none if it does not exist); torn lines are dropped."""
    done: dict[str, R] = {}
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = from_json(json.loads(line))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line cut by a kill: that utterance is done again
                done[record.id] = record
    return done


def run_resumable(
    utts: Sequence[Utterance],
    manifest_dir: Path,
    out: Path,
    work: Callable[[list[Utterance], list[np.ndarray]], list[R]],
    write_final: Callable[[Path, list[R]], None],
    *,
    done: dict[str, R],
    batch_size: int,
    desc: str,
) -> tuple[list[R], list[str]]:
    """Run ``work(utterances, waveforms)`` on every utterance not in ``done``.

    ``done`` holds what earlier runs finished (see :func:`read_records`) and is
    filled in. Returns (records in manifest order, unreadable-audio errors).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(out)
    todo = sorted((u for u in utts if u.id not in done), key=lambda u: u.duration)
    errors: list[str] = []
    with open(partial, "a", encoding="utf-8") as sink, tqdm(
        total=len(utts), initial=len(utts) - len(todo), desc=desc, unit="utt", file=sys.stderr
    ) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            batch, waves = [], []
            for u in chunk:
                try:
                    waves.append(u.load_audio(manifest_dir))
                    batch.append(u)
                except AudioError as e:
                    errors.append(f"{u.id}: {e}")
            if batch:
                for record in work(batch, waves):
                    done[record.id] = record
                    sink.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
            bar.update(len(chunk))
    records = [done[u.id] for u in utts if u.id in done]
    write_final(out, records)
    partial.unlink(missing_ok=True)
    return records, errors
