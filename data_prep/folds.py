"""Speaker folds of a prepared corpus (leave-one-speaker-out by default): ``python -m pipeline folds``.

With few speakers one held-out test speaker is a weak estimate of how a system does
on an unheard voice. :func:`write_folds` turns one prepared folder (``prepare``'s
output; its own split is ignored, every accepted utterance of ``manifest.jsonl``
counts) into one prepared folder per fold, every speaker tested in exactly one::

    OUT/folds.json          the plan: source folder, speakers, number of folds, each fold's
                            test/dev/train speakers
    OUT/fold1 ... foldK/    fold k: test = the speakers k, k+K, k+2K ... (speakers sorted by id;
                            K = ``n_folds``, by default the number of speakers: test = speaker k),
                            dev = the next ``dev_speakers`` speakers after its last test speaker
                            (wrapping round, never one of its test speakers), train = the rest
    OUT/all/                train = every utterance, dev and test empty: the final system's data

Each fold folder holds what ``train``, ``decode``, ``score`` and ``export`` read from a
prepared folder: ``train/dev/test.jsonl`` and ``manifest.jsonl`` (audio paths point into
the source folder's cache, relative to the fold folder), ``vocab.json`` and ``oov.json``
from the fold's train text, ``splits.json``, ``stats.json``/``stats.md``, the source's
``accounting.json`` and ``rejects.jsonl``, and ``prepare.json`` (the source's settings,
whose text rules ``score`` uses, plus a ``fold`` record).

``dev_speakers=0`` gives folds without dev speakers (train = every other speaker): for a
corpus too small to spare one, trained for a fixed number of steps. Fewer folds than
speakers (``n_folds``) train fewer systems, each on fewer voices. The folds are a function
of the source's manifest, ``dev_speakers`` and ``n_folds`` only (no randomness).
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


def plan_folds(speakers: list[str], dev_speakers: int = 1, n_folds: int | None = None) -> list[Fold]:
    """``n_folds`` folds of the sorted speakers (None: one per speaker): fold k tests speakers k, k+K ...,
    its dev speakers are the ``dev_speakers`` after its last test speaker (wrapping round, skipping its
    test speakers), the rest train."""
    spks = sorted(set(speakers))
    if dev_speakers < 0:
        raise FoldError(f"dev speakers {dev_speakers}: must be 0 or more")
    if not spks:
        raise FoldError("no speakers to make folds of")
    if n_folds is not None and not 2 <= n_folds <= len(spks):
        raise FoldError(f"{n_folds} folds of {len(spks)} speakers: folds need 2 or more, and a speaker "
                        f"to test in each (at most {len(spks)})")  # fmt: skip
    k_folds = n_folds or len(spks)
    most_tested = -(-len(spks) // k_folds)  # the largest fold's test speakers
    if len(spks) < most_tested + dev_speakers + 1:
        raise FoldError(f"{len(spks)} speakers: folds with {most_tested} test and {dev_speakers} dev "
                        f"speakers need at least {most_tested + dev_speakers + 1} (one left to train on)")  # fmt: skip
    return [_fold(k, spks, k_folds, dev_speakers) for k in range(k_folds)]


def _fold(k: int, spks: list[str], k_folds: int, dev_speakers: int) -> Fold:
    """Fold ``k + 1`` of ``k_folds`` (see :func:`plan_folds`)."""
    test = tuple(spks[k::k_folds])
    last = spks.index(test[-1])
    after = [spks[(last + j) % len(spks)] for j in range(1, len(spks))]  # every other speaker, in order
    dev = tuple([s for s in after if s not in test][:dev_speakers])
    train = tuple(s for s in spks if s not in test and s not in dev)
    return Fold(f"fold{k + 1}", test, dev, train)


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


def write_folds(data: str | os.PathLike, out: str | os.PathLike, *, dev_speakers: int = 1,
                n_folds: int | None = None) -> list[Fold]:
    """Write the speaker folds of the prepared folder ``data`` into ``out`` (see the module docstring;
    ``n_folds`` None: one per speaker); returns the folds (the ``all`` folder not included).

    Raises :class:`FoldError` (too few speakers, a number of folds out of range, not a prepared folder),
    :class:`~data_prep.manifest.ManifestError` and :class:`~data_prep.outputs.OutputRefused`.
    """
    data, out = Path(data).resolve(), Path(out).resolve()
    guard_output(out, [data])
    check_replaceable(out)
    src = read_prepared(data)
    folds = plan_folds([speaker_key(u) for u in src.utts], dev_speakers, n_folds)
    everyone = Fold(ALL_DIR, (), (), tuple(sorted({speaker_key(u) for u in src.utts})))
    with exclusive(out, "folds"):
        tmp = build_dir(out)
        tmp.mkdir(parents=True)
        for fold in [*folds, everyone]:
            write_fold(tmp / fold.name, out / fold.name, fold, src)
        plan = {"source": str(data), "dev_speakers": dev_speakers, "n_folds": len(folds),
                "speakers": list(everyone.train), "folds": [f.to_json() for f in folds], "all": ALL_DIR}
        atomic_write_text(tmp / FOLDS_JSON, json.dumps(plan, ensure_ascii=False, indent=1) + "\n")
        replace_dir(tmp, out, "folds")
    return folds
