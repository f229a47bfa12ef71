"""``python -m pipeline prepare``: a corpus -> normalized, validated, split manifests.

Steps: import rows (one module per format) -> reject duplicate ids -> process
every row in a process pool (security screen, text normalization and checks,
cached audio conditioning, duration checks, splitting long clips) -> assemble
the outputs (:mod:`data_prep.assemble`).

With ``--num-shards N --shard-index I`` only rows whose index ``i % N == I``
are processed, and the results go to ``OUT/shards/I-of-N/`` instead; every
shard shares ``OUT/cache``. ``python -m pipeline merge --out OUT`` then writes
the same outputs a single run would have written.

One run at a time writes an output folder (or a shard's folder); ``--out`` may
not be, contain or lie inside the corpus; a folder prepared with other settings
(or from another corpus) is refused unless ``--force`` (:mod:`data_prep.outputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from data_prep.assemble import SplitOptions, assemble, check_prepared_with, settings_json
from data_prep.forkmap import fork_map
from data_prep.importers import HFColumns, Row, import_corpus
from data_prep.longform.aligner import Aligner
from data_prep.longform.recordings import LongformOptions, Recordings, cut_recordings
from data_prep.manifest import Reject, write_jsonl
from data_prep.outputs import atomic_write_text, exclusive, guard_output
from data_prep.process import (
    CACHE_CHOICES,
    CACHE_DIR,
    REFERENCE,
    ProcessConfig,
    RowResult,
    process_rows,
)
from data_prep.refcache import ref_cache
from data_prep.text.normalize import base_language, canonical_name, get_normalizer
from data_prep.validate import forget_folders, mark_duplicates

SHARDS_DIR = "shards"
BATCH = 8  # rows per pool task (and per journal write in reference mode)


def shard_dir(out: Path, index: int, num: int) -> Path:
    """Where shard ``index`` of ``num`` writes its partial results."""
    return Path(out) / SHARDS_DIR / f"{index}-of-{num}"


def result_to_json(index: int, res: RowResult) -> dict:
    """One line of a shard's rows.jsonl."""
    if isinstance(res, Reject):
        return {"row": index, "reject": res.to_json()}
    return {"row": index, "utterances": [u.to_json() for u in res]}


def run_rows(rows: list[Row], indices: list[int], cfg: ProcessConfig, jobs: int, progress: bool = True
             ) -> list[RowResult]:
    """Process the rows at ``indices`` (in that order) on ``jobs`` processes."""
    # set up here what every row needs, once: forked workers inherit it
    forget_folders()  # folders are resolved afresh in each run (data_prep.validate.realpath)
    get_normalizer(cfg.rules)  # the compiled text rules
    if cfg.cache_format == REFERENCE:  # the journals, read once
        ref_cache(Path(cfg.out_dir) / CACHE_DIR, reload=True)
    bar = tqdm(total=len(indices), desc="prepare", unit="row", disable=not progress, file=sys.stderr)
    # batches of rows: each is processed step by step (process_rows) and writes its journal lines at once;
    # small ones keep the bar moving and the load even
    batches = [[rows[i] for i in indices[k : k + BATCH]] for k in range(0, len(indices), BATCH)]
    results: list[RowResult] = []

    def run(batch: list[Row]) -> list[RowResult]:
        return process_rows(batch, cfg)

    # forked workers (jobs > 1) inherit the batches: only batch numbers go to them, only results come back
    with contextlib.closing((run(b) for b in batches) if jobs <= 1 else fork_map(run, batches, jobs)) as done:
        for res in done:  # in source order
            results.extend(res)
            bar.update(len(res))
    bar.close()
    return results


def prepare(
    src: str | Path,
    out: str | Path,
    fmt: str,
    lang: str,
    *,
    script: str | None = None,
    rules: str | None = None,
    opts: SplitOptions = SplitOptions(),
    jobs: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    allow_pipes: bool = False,
    allow_outside_root: bool = False,
    min_duration: float = 0.3,
    max_duration: float = 30.0,
    vad: str = "auto",
    trim_vad: str = "silero",
    cache_format: str = "flac",
    progress: bool = True,
    force: bool = False,
    columns: HFColumns | None = None,
    aligner: Aligner | None = None,
    longform: LongformOptions = LongformOptions(),
) -> int:
    """Prepare one corpus (or one shard of it) into ``out``; returns the exit status.

    ``force``: write over a folder prepared with other settings (else refused, naming what differs).
    ``columns``: the columns and split of a Hugging Face dataset (``fmt`` "hf") to import.
    ``aligner``, ``longform``: for ``fmt`` "longform", what aligns each recording to its transcript and
    how the recordings are cut (:mod:`data_prep.longform`).
    """
    _check_longform(fmt, aligner, longform, num_shards, max_duration)
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index {shard_index} must be in [0, {num_shards})")
    if cache_format not in CACHE_CHOICES:
        raise ValueError(f"unknown --cache-format {cache_format!r}; known: {', '.join(CACHE_CHOICES)}")
    src, out = Path(src).resolve(), Path(out).resolve()
    if out.exists() and not out.is_dir():  # found now, not as a cache write failing on every row
        raise ValueError(f"--out {out} exists and is not a folder")
    if fmt in ("folder", "longform") and out.is_relative_to(src):
        # the folder importer takes every audio file below --src: a rerun would import the cache as corpus audio
        raise ValueError(f"--out {out} lies inside --src {src}; a folder corpus is every audio file below it, "
                         "so choose an output folder outside the corpus")
    guard_output(out, [src, rules if rules and rules.endswith((".yaml", ".yml")) else None])
    rules_name = rules or canonical_name(lang, script)
    get_normalizer(rules_name)  # fail now, not in every worker
    cfg = ProcessConfig(
        out_dir=str(out), root=str(src), rules=rules_name, language=base_language(lang),
        min_duration=min_duration, max_duration=max_duration, vad=vad, trim_vad=trim_vad,
        cache_format=cache_format, allow_pipes=allow_pipes, allow_outside_root=allow_outside_root,
    )
    sdir = shard_dir(out, shard_index, num_shards)
    with exclusive(out if num_shards == 1 else sdir, "prepare"):
        rows = mark_duplicates(import_corpus(fmt, src, columns))
        corpus = {"format": fmt, "input_rows": len(rows)}
        if columns is not None:
            corpus["columns"] = dataclasses.asdict(columns)
        recordings = None
        if fmt == "longform":
            corpus["longform"] = {"aligner": aligner.identity, **dataclasses.asdict(longform)}
            check_prepared_with(out, settings_json(cfg, opts, corpus), force=force)  # before aligning
            recordings = cut_recordings(rows, aligner, cfg, longform, progress)
            rows = recordings.rows
            # the aligner's torch threads and forked workers do not mix; the segments' audio is cheap
            jobs = 1
        settings = settings_json(cfg, opts, corpus)
        if num_shards == 1:
            check_prepared_with(out, settings, force=force)  # before the work: refused at once
        indices = [i for i in range(len(rows)) if i % num_shards == shard_index]
        jobs = max(1, jobs or os.cpu_count() or 1)
        print(f"{fmt} corpus {src}: {len(rows)} input rows; processing {len(indices)} on {jobs} processes "
              f"(text rules {rules_name})")
        results = run_rows(rows, indices, cfg, jobs, progress)
        if len(results) != len(indices):
            raise RuntimeError(f"{len(indices)} rows in, {len(results)} results out")
        if num_shards == 1:
            return assemble(out, results, settings, opts, seconds=_seconds(recordings, results))
        return _write_shard(sdir, indices, results, settings, num_shards, shard_index, out)


def _check_longform(fmt: str, aligner: Aligner | None, longform: LongformOptions, num_shards: int,
                    max_duration: float) -> None:  # fmt: skip
    """Refuse what ``fmt`` "longform" cannot do (or needs) before any work."""
    if fmt != "longform":
        return
    if aligner is None:
        raise ValueError("--format longform needs --align-model (a CTC model that aligns each recording to its text)")
    if num_shards != 1:
        raise ValueError("--format longform aligns in one process: --num-shards is not supported")
    if not 0 < longform.max_utterance_s <= max_duration:
        raise ValueError(f"--max-utterance-s {longform.max_utterance_s:g} must be above 0 and at most "
                         f"--max-duration {max_duration:g}")


def _seconds(recordings: Recordings | None, results: list[RowResult]) -> dict | None:
    """The seconds accounting of long recordings (None for other formats), printed and for accounting.json."""
    if recordings is None:
        return None
    acc = recordings.seconds(results)
    print(acc.summary())
    if not acc.balanced:  # cannot happen by construction; refuse to write inconsistent outputs
        raise RuntimeError(f"the seconds do not add up: {acc.to_json()}")
    return acc.to_json()


def _write_shard(sdir: Path, indices: list[int], results: list[RowResult], settings: dict, num_shards: int,
                 shard_index: int, out: Path) -> int:  # fmt: skip
    write_jsonl(sdir / "rows.jsonl", [result_to_json(i, r) for i, r in zip(indices, results)])
    shard = {"settings": settings, "num_shards": num_shards, "shard_index": shard_index, "rows": len(indices)}
    # written last: its presence marks the shard complete
    atomic_write_text(sdir / "shard.json", json.dumps(shard, ensure_ascii=False, indent=1) + "\n")
    print(f"shard {shard_index} of {num_shards}: {len(indices)} rows -> {sdir}; "
          f"when all shards are done: python -m pipeline merge --out {out}")
    return 0
