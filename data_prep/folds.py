"""Leave-one-speaker-out folds of a prepared corpus: ``python -m pipeline folds``.

With few speakers one held-out test speaker is a weak estimate of how a system does
on an unheard voice. :func:`write_folds` turns one prepared folder (``prepare``'s
output; its own split is ignored, every accepted utterance of ``manifest.jsonl``
counts) into one prepared folder per speaker::

    OUT/folds.json          the plan: source folder, speakers, each fold's test/dev/train speakers
    OUT/fold1 ... foldK/    fold k: test = speaker k (speakers sorted by id),
                            dev = the next ``dev_speakers`` speakers (k+1, k+2 ..., wrapping round),
                            train = the rest
    OUT/all/                train = every utterance, dev and test empty: the final system's data

Each fold folder holds what ``train``, ``decode``, ``score`` and ``export`` read from a
prepared folder: ``train/dev/test.jsonl`` and ``manifest.jsonl`` (audio paths point into
the source folder's cache, relative to the fold folder), ``vocab.json`` and ``oov.json``
from the fold's train text, ``splits.json``, ``stats.json``/``stats.md``, the source's
``accounting.json`` and ``rejects.jsonl``, and ``prepare.json`` (the source's settings,
whose text rules ``score`` uses, plus a ``fold`` record).

``dev_speakers=0`` gives folds without dev speakers (train = every other speaker): for a
corpus too small to spare one, trained for a fixed number of steps. The folds are a
function of the source's manifest and ``dev_speakers`` only (no randomness).
``OUT`` is built beside itself and swapped in whole (:func:`data_prep.outputs.replace_dir`);
the source folder is only read.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from data_prep.assemble import PREPARE_JSON
from data_prep.manifest import Utterance, read_manifest, write_jsonl
from data_prep.outputs import (
    atomic_write_text,
    build_dir,
    check_replaceable,
    exclusive,
    guard_output,
    replace_dir,
)
from data_prep.splits import SPLITS, overlap_report, speaker_key, speaker_overlaps
from data_prep.stats import write_stats
from data_prep.vocab import build_vocab, oov_report, write_vocab

FOLDS_JSON = "folds.json"
ALL_DIR = "all"  # every labeled utterance as train: where the final system learns
#: Files of the source folder copied into every fold as they are.
COPIED_FILES = ("accounting.json", "rejects.jsonl")


class FoldError(ValueError):
    """Folds that cannot be made from the prepared folder; the message names it."""


@dataclass(frozen=True)
class Fold:
    """Who is in which split of one fold."""

    name: str  # fold1, fold2 ... (all: the final system's data)
    test: tuple[str, ...]
    dev: tuple[str, ...]
    train: tuple[str, ...]

    def split_of(self, speaker: str) -> str:
        return "test" if speaker in self.test else "dev" if speaker in self.dev else "train"

    def to_json(self) -> dict:
        return {"name": self.name, "test": list(self.test), "dev": list(self.dev), "train": list(self.train)}


def plan_folds(speakers: list[str], dev_speakers: int = 1) -> list[Fold]:
    """One fold per speaker (sorted): test = speaker k, dev = the next ``dev_speakers``, train = the rest."""
    spks = sorted(set(speakers))
    if dev_speakers < 0:
        raise FoldError(f"dev speakers {dev_speakers}: must be 0 or more")
    if len(spks) < dev_speakers + 2:
        raise FoldError(f"{len(spks)} speakers: folds with 1 test and {dev_speakers} dev speakers need at least "
                        f"{dev_speakers + 2} (one left to train on)")  # fmt: skip
    folds = []
    for k, test in enumerate(spks):
        dev = tuple(spks[(k + j) % len(spks)] for j in range(1, dev_speakers + 1))
        train = tuple(s for s in spks if s != test and s not in dev)
        folds.append(Fold(f"fold{k + 1}", (test,), dev, train))
    return folds


@dataclass(frozen=True)
class PreparedSource:
    """What the folds take from a prepared folder."""

    folder: Path
    utts: list[Utterance]  # every accepted utterance, manifest order
    settings: dict  # prepare.json
    accounting: dict  # accounting.json


def read_prepared(data: Path) -> PreparedSource:
    """Every accepted utterance of a prepared folder, its ``prepare.json`` settings and its accounting."""
    if not (data / "manifest.jsonl").is_file():
        raise FoldError(f"--data {data}: no manifest.jsonl; give a folder `prepare` wrote")
    utts = read_manifest(data / "manifest.jsonl")
    if not utts:
        raise FoldError(f"{data / 'manifest.jsonl'}: no utterances")
    anonymous = [u for u in utts if not u.speaker]
    if anonymous:  # each would be a speaker of its own: as many folds as utterances
        raise FoldError(f"{data / 'manifest.jsonl'}: {len(anonymous)} utterances have no speaker id (e.g. "
                        f"{anonymous[0].id!r}); leave-one-speaker-out folds need every speaker known")
    return PreparedSource(data, utts, _read_json(data / PREPARE_JSON, "prepare settings"),
                          _read_json(data / "accounting.json", "accounting"))


def _read_json(path: Path, what: str) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FoldError(f"{path}: cannot read the {what} ({e})") from e
    if not isinstance(d, dict):
        raise FoldError(f"{path}: cannot read the {what} (not a JSON object)")
    return d


def rebase_audio(u: Utterance, source: Path, folder: Path) -> Utterance:
    """``u`` with a relative audio path (relative to ``source``) made relative to ``folder``."""
    if Path(u.audio).is_absolute():
        return u
    return u.replace(audio=os.path.relpath(source / u.audio, folder))


def write_fold(tmp: Path, final: Path, fold: Fold, src: PreparedSource) -> None:
    """Write one fold's prepared folder into ``tmp`` (its audio paths made for where it will live: ``final``)."""
    tmp.mkdir(parents=True)
    source = src.folder
    placed = [rebase_audio(u, source, final).replace(split=fold.split_of(speaker_key(u))) for u in src.utts]
    record = {**src.settings, "fold": {"source": str(source), **fold.to_json()}}
    atomic_write_text(tmp / PREPARE_JSON, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    write_jsonl(tmp / "manifest.jsonl", placed)
    for split in SPLITS:
        write_jsonl(tmp / f"{split}.jsonl", [u for u in placed if u.split == split])
    report = {"mode": "fold", "seed": None, "ratios": None, **overlap_report(placed)}
    if speaker_overlaps(report):  # cannot happen by construction; never write a fold that leaks speakers
        raise RuntimeError(f"{fold.name}: speakers in two splits: {speaker_overlaps(report)}")
    atomic_write_text(tmp / "splits.json", json.dumps(report, indent=1) + "\n")
    vocab = build_vocab([u for u in placed if u.split == "train"])
    write_vocab(tmp / "vocab.json", vocab)
    atomic_write_text(tmp / "oov.json", json.dumps(oov_report(vocab, placed), ensure_ascii=False, indent=1) + "\n")
    write_stats(tmp, placed, src.accounting, plot=False)


def write_folds(data: str | os.PathLike, out: str | os.PathLike, *, dev_speakers: int = 1) -> list[Fold]:
    """Write the leave-one-speaker-out folds of the prepared folder ``data`` into ``out`` (see the module
    docstring); returns the folds (the ``all`` folder not included).

    Raises :class:`FoldError` (too few speakers, not a prepared folder),
    :class:`~data_prep.manifest.ManifestError` and :class:`~data_prep.outputs.OutputRefused`.
    """
    data, out = Path(data).resolve(), Path(out).resolve()
    guard_output(out, [data])
    check_replaceable(out)
    src = read_prepared(data)
    folds = plan_folds([speaker_key(u) for u in src.utts], dev_speakers)
    everyone = Fold(ALL_DIR, (), (), tuple(sorted({speaker_key(u) for u in src.utts})))
    with exclusive(out, "folds"):
        tmp = build_dir(out)
        tmp.mkdir(parents=True)
        for fold in [*folds, everyone]:
            write_fold(tmp / fold.name, out / fold.name, fold, src)
        plan = {"source": str(data), "dev_speakers": dev_speakers, "speakers": list(everyone.train),
                "folds": [f.to_json() for f in folds], "all": ALL_DIR}
        atomic_write_text(tmp / FOLDS_JSON, json.dumps(plan, ensure_ascii=False, indent=1) + "\n")
        replace_dir(tmp, out, "folds")
    return folds
