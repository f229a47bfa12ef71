"""Per-utterance work over a manifest that survives a kill (``decode``, ``rescore``).

Utterances go through in batches (similar durations together: less padding,
alike generation lengths). Each finished batch's records are appended to
``<out>.partial`` and fsynced, so a killed run continues where it stopped; a
line torn by the kill is dropped and its utterance done again. At the end the
records are written to ``out`` atomically, in manifest order, and the partial
file goes away. Audio that cannot be read is reported, not fatal: its
utterance goes to ``<out stem>.rejects.jsonl`` with the reason, so every
utterance ends up in one of the two files.

What made the partial file (its inputs' fingerprints, the settings) is recorded
beside it (``<out>.run.json``, :func:`resume_check`): a rerun of other inputs or
settings is refused instead of mixing two runs' records.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from data_prep.audio import AudioError
from data_prep.manifest import Reject, Source, Utterance, write_jsonl
from data_prep.outputs import RunIdentity, remove_stale_temps, resume_or_start


class Record(Protocol):
    """One utterance's result: an ``id`` and a JSON form."""

    id: str

    def to_json(self) -> dict: ...


R = TypeVar("R", bound=Record)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def identity_path(out: Path) -> Path:
    """Where the identity of the run that writes ``out``'s partial file is recorded."""
    return out.with_name(out.name + ".run.json")


def written_paths(out: Path) -> list[Path]:
    """Every file a resumable run of ``out`` writes (for :func:`data_prep.outputs.guard_outputs`)."""
    return [out, partial_path(out), identity_path(out), rejects_path(out)]


def resume_check(out: Path, identity: RunIdentity, *, force: bool = False) -> bool:
    """Whether this run (``identity``) continues ``out``'s partial file; the shared run-identity check.

    A partial file of another identity (or of a run that recorded none) is a
    :class:`data_prep.outputs.ResumeError` naming what differs; with ``force``
    it is discarded and the run starts afresh. Records ``identity`` beside it.
    """
    partial = partial_path(out)
    resume = resume_or_start(identity_path(out), identity, has_state=partial.exists(), force=force,
                             what=str(partial))  # fmt: skip
    if not resume:
        partial.unlink(missing_ok=True)
    return resume


def rejects_path(out: Path) -> Path:
    """Where the utterances whose audio could not be read are listed: hyps.jsonl -> hyps.rejects.jsonl."""
    return out.with_name(out.name.removesuffix(".jsonl") + ".rejects.jsonl")


def check_output(out: Path) -> None:
    """Fail before any work (loading a model can take minutes) if ``out`` cannot be written.

    Raises OSError naming the path (the CLI prints it as one line).
    """
    if out.is_dir():
        raise IsADirectoryError(21, "is a directory, not a file to write", str(out))
    for folder in out.parents:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(20, "is a file, not a folder to write into", str(folder))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out.parent):
        pass


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a kill mid-write), so the next record starts a line of its own."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


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
    sources: Mapping[str, Source] | None = None,
) -> tuple[list[R], list[str]]:
    """Run ``work(utterances, waveforms)`` on every utterance not in ``done``.

    ``done`` holds what earlier runs finished (see :func:`read_records`) and is
    filled in. ``sources`` maps an id to its manifest line, named by the errors
    and rejects (without it, a reject names the utterance's own ``source``). Returns (records in
    manifest order, unreadable-audio errors); the unreadable utterances are also
    written to :func:`rejects_path` (removed when there are none).
    """
    check_output(out)
    for path in written_paths(out):  # what a kill during a final write left
        remove_stale_temps(path)
    partial = partial_path(out)
    _drop_torn_tail(partial)
    todo = sorted((u for u in utts if u.id not in done), key=lambda u: u.duration)
    errors: list[str] = []
    rejects: list[Reject] = []
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
                    line = (sources or {}).get(u.id)
                    where = line or u.source
                    errors.append(f"{line}: {u.id}: {e}" if line else f"{u.id}: {e}")
                    reason = "unreadable_audio" if u.audio_path(manifest_dir).is_file() else "missing_audio"
                    rejects.append(Reject(reason, str(e), where, u.id, u.audio, u.text_raw))
            if batch:
                for record in work(batch, waves):
                    done[record.id] = record
                    sink.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
            bar.update(len(chunk))
    records = [done[u.id] for u in utts if u.id in done]
    write_final(out, records)
    if rejects:
        order = {u.id: i for i, u in enumerate(utts)}
        write_jsonl(rejects_path(out), sorted(rejects, key=lambda r: order[r.id]))
    else:
        rejects_path(out).unlink(missing_ok=True)  # from an earlier run whose audio has since been fixed
    partial.unlink(missing_ok=True)
    identity_path(out).unlink(missing_ok=True)  # after the partial: an identity without one is no state
    return records, errors
