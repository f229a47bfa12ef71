"""``score --pool``: the folds of a leave-one-speaker-out evaluation scored as one test set.

Each fold's ``score`` output (``results.json``, with the per-utterance counts) is read;
the pooled figures count every utterance of every fold once: WER and CER are corpus-level
over all of them, and their 95 % intervals are the same utterance bootstrap that ``score``
uses (:func:`pipeline.score.bootstrap.bootstrap_ci`), drawn over the utterances of all folds.
The folds must be of one system and language, and no utterance may be in two folds' test sets.

Written into ``--out``::

    results.json     the pooled results (the schema of score's, testset "pooled"), so ``report``
                     lists them beside single-split results
    folds.md         per fold WER/CER with intervals, the pooled row, the worst speaker, the steps
    folds.json       the same as data
    per_speaker.tsv  every test speaker of every fold
    median_best_step the median (the lower one of two) of the folds' best steps, one number: the
                     steps to train the final system on every speaker for (written when every fold's
                     training log was found)

A fold's best step is the one its training kept in ``best/``: the lowest dev CER (the earliest
of equals) in its ``log.jsonl``, or its last step when it evaluated no dev set. The log is looked
for in the results' folder and the one above it (``exp/<fold>/<system>/log.jsonl`` beside
``exp/<fold>/<system>/test/results.json``).
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.manifest import ManifestError, read_jsonl
from data_prep.outputs import atomic_write_text, guard_outputs
from pipeline.score.bootstrap import bootstrap_ci
from pipeline.score.metrics import sum_counts
from pipeline.score.results import Results, ResultsError, SpeakerRow, read_results, write_results
from pipeline.score.scorer import ScoreError, per_speaker_tsv

POOL_FILES = ("results.json", "folds.md", "folds.json", "per_speaker.tsv", "median_best_step")
POOLED_TESTSET = "pooled"
RESULTS_NAME = "results.json"
LOG_NAME = "log.jsonl"


@dataclass(frozen=True)
class FoldScore:
    """One fold's results, named by the folder of its test manifest (``data/pa_folds/fold1`` -> fold1)."""

    name: str
    results: Results
    best_step: int | None = None  # the step its training kept (None: no training log found)

    @property
    def speakers(self) -> list[str]:
        return [s.speaker for s in self.results.per_speaker]


@dataclass(frozen=True)
class Pooled:
    """Every fold's results and the pooled ones."""

    folds: list[FoldScore]
    results: Results  # every utterance of every fold; intervals bootstrapped over them

    @property
    def worst_speaker(self) -> SpeakerRow:
        return max(self.results.per_speaker, key=lambda s: (s.wer, s.cer))

    @property
    def median_best_step(self) -> int | None:
        steps = [f.best_step for f in self.folds]
        return None if any(s is None for s in steps) else int(statistics.median_low(steps))


def results_file(path: str | os.PathLike) -> Path:
    """A results.json, or the folder ``score`` wrote it into."""
    path = Path(path)
    return path / RESULTS_NAME if path.is_dir() else path


def fold_name(results: Results, index: int) -> str:
    return Path(results.manifest).parent.name if results.manifest else f"fold{index + 1}"


def best_step(results_path: Path) -> int | None:
    """The step the fold's training kept (see the module docstring); None without a training log."""
    folder = Path(results_path).resolve().parent
    log = next((d / LOG_NAME for d in (folder, folder.parent) if (d / LOG_NAME).is_file()), None)
    if log is None:
        return None
    try:
        records = [o for _, o in read_jsonl(log) if isinstance(o, dict) and isinstance(o.get("step"), int)]
    except ManifestError as e:
        raise ScoreError(str(e)) from e
    if not records:
        return None
    evaluated = [o for o in records if isinstance(o.get("dev_cer"), (int, float))]
    if not evaluated:
        return max(o["step"] for o in records)
    return min(evaluated, key=lambda o: (o["dev_cer"], o["step"]))["step"]


def read_folds(paths: Sequence[str | os.PathLike]) -> list[FoldScore]:
    """The folds' results; ScoreError when they cannot be pooled (naming the files)."""
    if len(paths) < 2:
        raise ScoreError(f"--pool needs the results of two folds or more, got {len(paths)}")
    folds = []
    for i, p in enumerate(paths):
        try:
            r = read_results(results_file(p))
        except ResultsError as e:
            raise ScoreError(str(e)) from e
        if not r.utts:
            raise ScoreError(f"{r.path}: no per-utterance counts to pool; score the fold again")
        folds.append(FoldScore(fold_name(r, i), r, best_step(results_file(p))))
    first = folds[0].results
    for f in folds[1:]:
        r = f.results
        if (r.system, r.lang) != (first.system, first.lang):
            raise ScoreError(f"{r.path}: system {r.system!r} ({r.lang}), but {first.path} is {first.system!r} "
                             f"({first.lang}): pool the folds of one system")  # fmt: skip
    seen: dict[str, str] = {}
    for f in folds:
        for u in f.results.utts:
            if u.id in seen:
                raise ScoreError(f"{f.results.path}: utterance {u.id!r} is also in {seen[u.id]}; "
                                 "each utterance must be in one fold's test set")  # fmt: skip
            seen[u.id] = f.results.path
    return folds


def merge_speakers(rows: Sequence[SpeakerRow]) -> list[SpeakerRow]:
    """One row per speaker (a speaker tested in two folds: its counts summed), sorted by speaker."""
    groups: dict[str, list[SpeakerRow]] = defaultdict(list)
    for r in rows:
        groups[r.speaker].append(r)
    return [SpeakerRow(spk, sum(r.n_utts for r in rs), sum(r.n_missing for r in rs),
                       sum_counts([r.word for r in rs]), sum_counts([r.char for r in rs]))
            for spk, rs in sorted(groups.items())]  # fmt: skip


def _sum_optional(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(sum(values))


def pool_results(folds: Sequence[FoldScore], *, system: str | None = None, testset: str = POOLED_TESTSET,
                 seed: int = 0, n_resamples: int = 1000) -> Pooled:  # fmt: skip
    """The pooled results of ``folds`` (see the module docstring)."""
    rs = [f.results for f in folds]
    utts = [u for r in rs for u in r.utts]
    wer_ci = bootstrap_ci([u.word_errors for u in utts], [u.ref_words for u in utts], n_resamples=n_resamples,
                          seed=seed)  # fmt: skip
    cer_ci = bootstrap_ci([u.char_errors for u in utts], [u.ref_chars for u in utts], n_resamples=n_resamples,
                          seed=seed)  # fmt: skip
    decode_s, audio_s = _sum_optional([r.decode_seconds for r in rs]), _sum_optional([r.audio_seconds for r in rs])
    pooled = Results(
        system=system or rs[0].system, kind=rs[0].kind if len({r.kind for r in rs}) == 1 else "other",
        testset=testset, lang=rs[0].lang, model=", ".join(sorted({r.model for r in rs if r.model})),
        manifest=" + ".join(r.manifest for r in rs), hyps=" + ".join(r.hyps for r in rs),
        n_utts=len(utts), n_missing=sum(r.n_missing for r in rs), missing_ids=[i for r in rs for i in r.missing_ids],
        word=sum_counts([r.word for r in rs]), char=sum_counts([r.char for r in rs]),
        ser=sum(u.word_errors > 0 for u in utts) / len(utts), wer_ci=wer_ci, cer_ci=cer_ci,
        bootstrap={"n_resamples": n_resamples, "seed": seed},
        per_speaker=merge_speakers([s for r in rs for s in r.per_speaker]),
        decode_seconds=decode_s, audio_seconds=audio_s,
        rtf=decode_s / audio_s if decode_s is not None and audio_s else None, utts=utts,
    )  # fmt: skip
    return Pooled(list(folds), pooled)


def _pct(rate: float) -> str:
    return f"{100 * rate:.2f}"


def _row(name: str, speakers: str, r: Results) -> str:
    return (f"| {name} | {speakers} | {r.n_utts} | {_pct(r.wer)} [{_pct(r.wer_ci.low)}, {_pct(r.wer_ci.high)}] "
            f"| {_pct(r.cer)} [{_pct(r.cer_ci.low)}, {_pct(r.cer_ci.high)}] |")


def pooled_markdown(p: Pooled) -> str:
    """folds.md: one row per fold, the pooled row, the worst speaker."""
    r, worst = p.results, p.worst_speaker
    lines = [
        f"# {r.system}: {len(p.folds)} folds pooled ({r.lang})", "",
        "| fold | test speakers | utts | WER % [95 % CI] | CER % [95 % CI] |", "|---|---|---|---|---|",
        *(_row(f.name, ", ".join(f.speakers), f.results) for f in p.folds),
        _row("**pooled**", f"{len(r.per_speaker)} speakers", r), "",
        f"Worst speaker: {worst.speaker or '-'} ({worst.n_utts} utts), WER {_pct(worst.wer)} %, CER {_pct(worst.cer)} %.",
        f"Pooled intervals: {r.bootstrap['n_resamples']} bootstrap resamples of the {r.n_utts} utterances of all "
        f"folds (seed {r.bootstrap['seed']}); each fold's interval is its own score's.",
    ]  # fmt: skip
    if p.median_best_step is not None:
        steps = ", ".join(f"{f.name} {f.best_step}" for f in p.folds)
        lines.append(f"Best steps (dev CER; the last step without dev): {steps}; median {p.median_best_step}.")
    return "\n".join([*lines, ""])


def pooled_json(p: Pooled) -> dict:
    def rates(r: Results) -> dict:
        return {"n_utts": r.n_utts, "wer": r.wer, "wer_ci": r.wer_ci.to_json(), "cer": r.cer,
                "cer_ci": r.cer_ci.to_json()}  # fmt: skip

    return {
        "folds": [{"name": f.name, "results": f.results.path, "speakers": f.speakers, "best_step": f.best_step,
                   **rates(f.results)}
                  for f in p.folds],
        "pooled": rates(p.results),
        "worst_speaker": p.worst_speaker.to_json(),
        "best_steps": {f.name: f.best_step for f in p.folds},
        "median_best_step": p.median_best_step,
    }  # fmt: skip


def score_pool(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, system: str | None = None,
               testset: str = POOLED_TESTSET, seed: int = 0, n_resamples: int = 1000) -> Pooled:  # fmt: skip
    """Pool the folds' results (``inputs``: results.json files or the folders holding them) into ``out``."""
    out = Path(out)
    files = [results_file(p) for p in inputs]
    guard_outputs([out / name for name in POOL_FILES], files)
    pooled = pool_results(read_folds(files), system=system, testset=testset, seed=seed, n_resamples=n_resamples)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out / "results.json", pooled.results)
    atomic_write_text(out / "folds.md", pooled_markdown(pooled))
    atomic_write_text(out / "folds.json", json.dumps(pooled_json(pooled), ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(out / "per_speaker.tsv", per_speaker_tsv(pooled.results.per_speaker))
    if pooled.median_best_step is not None:
        atomic_write_text(out / "median_best_step", f"{pooled.median_best_step}\n")
    else:  # an earlier run's would pass for this one's
        (out / "median_best_step").unlink(missing_ok=True)
    return pooled
