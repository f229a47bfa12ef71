"""The last step of ``prepare`` and ``merge``: per-row results -> every output file.

Both a single run and ``merge`` of sharded runs call :func:`assemble` with the
results of all input rows in source order, so their outputs are identical.

Output folder::

    manifest.jsonl          accepted utterances (split field set), source order
    train.jsonl dev.jsonl test.jsonl
    rejects.jsonl           one line per rejected input row, source order
    accounting.json         input = accepted + rejected, per reason (long recordings: and
                            their seconds = utterances + rejects + gaps)
    splits.json             split sizes, speaker and sentence overlap
    vocab.json oov.json     (spm.model/spm.vocab with --sentencepiece N)
    stats.json stats.md durations.png
    prepare.json            the settings of the run
    cache/                  16 kHz FLAC + sidecars (see data_prep/process.py); with
                            --cache-format none only ref/*.jsonl (data_prep/refcache.py)

The outputs are written under the folder's in-progress mark
(:func:`data_prep.outputs.in_progress`), ``prepare.json`` first: a run killed
among them leaves the mark, every manifest reader refuses the folder, and a
rerun (of the settings ``prepare.json`` then records) writes it whole again.
``prepare.json`` is also the folder's run identity: a run of other settings or
another corpus is refused (:func:`check_prepared_with`) unless forced.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from data_prep.manifest import Reject, Utterance, jsonl_line, write_jsonl
from data_prep.outputs import (
    IN_PROGRESS_FILE,
    RunIdentity,
    atomic_write_text,
    check_resume,
    in_progress,
    remove_stale_temps,
)
from data_prep.process import ProcessConfig, RowResult
from data_prep.splits import SPLITS, SplitError, assign_splits, overlap_report, speaker_key, speaker_overlaps
from data_prep.stats import start_plot_durations, write_stats
from data_prep.validate import Accounting
from data_prep.vocab import build_vocab, oov_report, train_sentencepiece, write_vocab

#: The settings of the run that wrote a prepared folder (settings_json), and its run identity.
PREPARE_JSON = "prepare.json"
#: Every file of a prepared folder but the cache (spm.* only with --sentencepiece).
PREPARED_FILES = (PREPARE_JSON, "rejects.jsonl", "accounting.json", "splits.json", "manifest.jsonl",
                  *(f"{split}.jsonl" for split in SPLITS), "vocab.json", "oov.json", "stats.json", "stats.md",
                  "durations.png", "spm.model", "spm.vocab")  # fmt: skip


@dataclass(frozen=True)
class SplitOptions:
    """How to split and what to build from the splits."""

    split_by: str = "auto"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    speakers: tuple[tuple[str, str], ...] = ()  # (speaker, split) pairs
    allow_speaker_overlap: bool = False
    sentencepiece: int = 0


def settings_json(cfg: ProcessConfig, opts: SplitOptions, extra: dict) -> dict:
    """The record of a run's settings (prepare.json; also how shards prove they belong together)."""
    process = dataclasses.asdict(cfg)
    process.pop("out_dir")  # the file lives in it; leaving it out keeps moved/merged outputs identical
    return {"process": process, "splits": dataclasses.asdict(opts), **extra}


def check_prepared_with(out: str | Path, settings: dict, *, force: bool = False) -> None:
    """Refuse to write ``out`` when its ``prepare.json`` records other settings (or another corpus) than
    ``settings``: the outputs of two runs would mix. A :class:`data_prep.outputs.ResumeError` names what
    differs; ``force`` lets this run replace them.

    A folder whose last run wrote no split manifests (a speaker-overlap error) holds nothing to train
    on, so a rerun of other settings (``--allow-speaker-overlap``) is free to replace it; a torn one is not.
    """
    out = Path(out)
    recorded = out / PREPARE_JSON
    prepared = any((out / f"{split}.jsonl").exists() for split in SPLITS) or (out / IN_PROGRESS_FILE).exists()
    saved = None
    if recorded.is_file():
        try:
            saved = RunIdentity("prepare", {}, json.loads(recorded.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            saved = None
    check_resume(saved, RunIdentity("prepare", {}, json.loads(json.dumps(settings))), has_state=recorded.exists() and prepared,
                 force=force, what=f"--out {out}", state="the prepared outputs", record=str(recorded))  # fmt: skip


def dedupe_segments(results: list[RowResult]) -> list[RowResult]:
    """Reject a later row whose (segment) utterance ids collide with earlier ones (e.g. 'a-1')."""
    seen: dict[str, str] = {}
    out: list[RowResult] = []
    for res in results:
        if isinstance(res, list):
            clash = next((u for u in res if u.id in seen), None)
            if clash is not None:
                u = res[0]
                res = Reject("duplicate_id", f"utterance id {clash.id!r} already used at {seen[clash.id]}",
                             u.source, id=u.id, audio=u.source_audio, text_raw=u.text_raw)
            else:
                seen.update((u.id, str(u.source)) for u in res)
        out.append(res)
    return out


def assemble(out_dir: str | Path, results: list[RowResult], settings: dict, opts: SplitOptions, *,
             seconds: dict | None = None) -> int:  # fmt: skip
    """Write all outputs; returns the exit status (1 on a split error, e.g. speaker overlap).

    ``seconds``: where the seconds of long recordings went (``--format longform``), kept in accounting.json.

    The splits are planned first: a plan that fails writes nothing, so the folder keeps its last run's
    outputs whole. The writes happen under the folder's in-progress mark.
    """
    out = Path(out_dir)
    results = dedupe_segments(results)
    acc = Accounting()
    for res in results:
        acc.add(res)
    if not acc.balanced:  # cannot happen by construction; refuse to write inconsistent outputs
        raise RuntimeError(f"accounting does not balance: {acc.to_json()}")
    rejects = [r for r in results if isinstance(r, Reject)]
    utts: list[Utterance] = [u for r in results if isinstance(r, list) for u in r]
    print(acc.summary())
    corpus_splits = {u.split for u in utts}
    try:
        utts, mode = assign_splits(utts, opts.split_by, dict(zip(SPLITS, opts.ratios)), opts.seed, dict(opts.speakers))
    except SplitError as e:
        print(f"error: {e}")
        return 1
    if mode == "corpus+carved":
        for split in sorted({u.split for u in utts} - corpus_splits):
            spk = sorted({speaker_key(u) for u in utts if u.split == split})
            print(f"note: the corpus has no {split} split; {len(spk)} of its train speakers became {split} "
                  f"({', '.join(spk)}; --split-by corpus keeps the corpus's own splits)")
    accounting = acc.to_json() if seconds is None else {**acc.to_json(), "seconds": seconds}
    with in_progress(out):
        return _write_outputs(out, settings, opts, accounting, rejects, utts, mode)


def _write_outputs(out: Path, settings: dict, opts: SplitOptions, accounting: dict, rejects: list[Reject],
                   utts: list[Utterance], mode: str) -> int:  # fmt: skip
    """Write every output file (``prepare.json`` first: it names the run a torn folder belongs to)."""
    for name in PREPARED_FILES:  # a killed run's: the repaired folder holds this run's files only
        remove_stale_temps(out / name)
    status = 0
    ratios = dict(zip(SPLITS, opts.ratios))
    atomic_write_text(out / PREPARE_JSON, json.dumps(settings, ensure_ascii=False, indent=1) + "\n")
    write_jsonl(out / "rejects.jsonl", rejects)
    atomic_write_text(out / "accounting.json", json.dumps(accounting, indent=1) + "\n")
    plotted = start_plot_durations(utts, out / "durations.png")  # drawn meanwhile, in another process
    try:
        report = {"mode": mode, "seed": opts.seed, "ratios": ratios if mode in ("ratio", "corpus+carved") else None,
                  **overlap_report(utts)}
        atomic_write_text(out / "splits.json", json.dumps(report, indent=1) + "\n")
        overlaps = speaker_overlaps(report)
        if overlaps and not opts.allow_speaker_overlap:
            print("error: speakers appear in more than one split (use --allow-speaker-overlap to accept): "
                  + "; ".join(overlaps))
            status = 1
        lines = {id(u): jsonl_line(u) for u in utts}  # each record serialized once, for two files
        write_jsonl(out / "manifest.jsonl", utts, lines=lines)
        for split in SPLITS:
            # With a speaker-overlap error the split files are not written, so nothing trains on them.
            if status == 0:
                write_jsonl(out / f"{split}.jsonl", [u for u in utts if u.split == split], lines=lines)
            else:
                (out / f"{split}.jsonl").unlink(missing_ok=True)
        train = [u for u in utts if u.split == "train"]
        vocab = build_vocab(train)
        write_vocab(out / "vocab.json", vocab)
        atomic_write_text(out / "oov.json",
                          json.dumps(oov_report(vocab, utts), ensure_ascii=False, indent=1) + "\n")
        if opts.sentencepiece and train:
            train_sentencepiece(train, out, opts.sentencepiece)
        else:  # an earlier run's pieces would pass for this run's
            for name in ("spm.model", "spm.vocab"):
                (out / name).unlink(missing_ok=True)
        write_stats(out, utts, accounting, plot=False)
    finally:
        plotted()
    for split, s in report["splits"].items():
        print(f"  {split:<5} {s['utterances']:>6} utts {s['hours']:8.3f} h {s['speakers']:>4} speakers")
    empty = [split for split, s in report["splits"].items() if not s["utterances"]]
    if utts and empty:  # allowed (e.g. a corpus only to score on), but the recipes need all three
        print(f"warning: no utterances in the {' and '.join(empty)} split{'s' * (len(empty) > 1)}: the recipes "
              "train on train, pick checkpoints and tune weights on dev, and report on test")
    if not utts:  # nothing to train or score on: stop the recipe here, not in a later stage
        print(f"error: no utterance accepted, all {len(rejects)} input rows rejected; "
              f"the reason of each is in {out / 'rejects.jsonl'}")
        status = 1
    return status
