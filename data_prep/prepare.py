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

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from data_prep.assemble import SplitOptions, assemble, check_prepared_with, settings_json
from data_prep.forkmap import fork_map
from data_prep.importers import IMPORTERS, CorpusError, Row, import_corpus
from data_prep.manifest import Reject, atomic_write_text, write_jsonl
from data_prep.outputs import exclusive, guard_output
from data_prep.process import (
    CACHE_CHOICES,
    CACHE_DIR,
    REFERENCE,
    OutputError,
    ProcessConfig,
    RowResult,
    process_rows,
)
from data_prep.refcache import ref_cache
from data_prep.segment import VADS
from data_prep.splits import SPLIT_BY, SplitError, parse_ratios, parse_speakers
from data_prep.text.normalize import RulesError, base_language, canonical_name, get_normalizer
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
) -> int:
    """Prepare one corpus (or one shard of it) into ``out``; returns the exit status.

    ``force``: write over a folder prepared with other settings (else refused, naming what differs).
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index {shard_index} must be in [0, {num_shards})")
    if cache_format not in CACHE_CHOICES:
        raise ValueError(f"unknown --cache-format {cache_format!r}; known: {', '.join(CACHE_CHOICES)}")
    src, out = Path(src).resolve(), Path(out).resolve()
    if out.exists() and not out.is_dir():  # found now, not as a cache write failing on every row
        raise ValueError(f"--out {out} exists and is not a folder")
    if fmt == "folder" and out.is_relative_to(src):
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
        rows = mark_duplicates(import_corpus(fmt, src))
        settings = settings_json(cfg, opts, {"format": fmt, "input_rows": len(rows)})
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
            return assemble(out, results, settings, opts)
        return _write_shard(sdir, indices, results, settings, num_shards, shard_index, out)


def _write_shard(sdir: Path, indices: list[int], results: list[RowResult], settings: dict, num_shards: int,
                 shard_index: int, out: Path) -> int:  # fmt: skip
    write_jsonl(sdir / "rows.jsonl", [result_to_json(i, r) for i, r in zip(indices, results)])
    shard = {"settings": settings, "num_shards": num_shards, "shard_index": shard_index, "rows": len(indices)}
    # written last: its presence marks the shard complete
    atomic_write_text(sdir / "shard.json", json.dumps(shard, ensure_ascii=False, indent=1) + "\n")
    print(f"shard {shard_index} of {num_shards}: {len(indices)} rows -> {sdir}; "
          f"when all shards are done: python -m pipeline merge --out {out}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=sorted(IMPORTERS), help="corpus layout")
    p.add_argument("--src", required=True, help="corpus root folder (read-only)")
    p.add_argument("--lang", required=True, help="ISO 639 language code, e.g. sa, pa")
    p.add_argument("--script", help="script of the transcripts when not the language's usual one, e.g. Latn")
    p.add_argument("--rules", help="text rules name or .yaml path (default: LANG or LANG-Script)")
    p.add_argument("--out", required=True, help="output folder, e.g. data/sa")
    p.add_argument("--split-by", choices=SPLIT_BY, default="auto", help="see data_prep/splits.py")
    p.add_argument("--split-ratios", help="train,dev,test duration ratios for --split-by ratio (default 0.8,0.1,0.1)")
    p.add_argument("--split-speakers", default="", help="dev=SPK1,test=SPK2+SPK3 (others are train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-speaker-overlap", action="store_true")
    p.add_argument("--sentencepiece", type=int, default=0, metavar="N", help="also train an N-piece spm model")
    p.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard-index", type=int, default=0)
    p.add_argument("--allow-pipes", action="store_true",
                   help="run the commands written in the corpus's wav.scp (`cmd args |` lines) to get their audio: "
                   "any program they name runs with your rights, without a shell; use only with a corpus you trust")
    p.add_argument("--allow-outside-root", action="store_true", help="accept audio paths outside --src")
    p.add_argument("--max-duration", type=float, default=30.0, help="longer clips are split or rejected")
    p.add_argument("--min-duration", type=float, default=0.3)
    p.add_argument("--vad", choices=VADS, default="auto",
                   help="VAD for pauses in long clips (auto: energy if the clip's SNR allows, else silero)")
    p.add_argument("--trim-vad", choices=("silero", "none"), default="silero",
                   help="who trims clips whose SNR is too low for the energy trimmer (none: keep whole)")
    p.add_argument("--cache-format", choices=CACHE_CHOICES, default="flac",
                   help="16-bit audio cache: flac (default) or wav (~10x cheaper to write, 1.6-2.6x the disk); "
                   "none: write no audio, records point into the source files with offset/gain (fastest, "
                   "no disk, but every load decodes the source again and it must stay in place)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true",
                   help="write over a folder prepared with other settings or from another corpus (else refused)")


def run(args: argparse.Namespace) -> int:
    try:
        ratios = parse_ratios(args.split_ratios or "0.8,0.1,0.1")
        split_by = "ratio" if args.split_ratios and args.split_by == "auto" else args.split_by
        opts = SplitOptions(
            split_by=split_by,
            ratios=tuple(ratios.values()),
            seed=args.seed,
            speakers=tuple(sorted(parse_speakers(args.split_speakers).items())),
            allow_speaker_overlap=args.allow_speaker_overlap,
            sentencepiece=args.sentencepiece,
        )
        return prepare(
            args.src, args.out, args.format, args.lang, script=args.script, rules=args.rules, opts=opts,
            jobs=args.jobs, num_shards=args.num_shards, shard_index=args.shard_index,
            allow_pipes=args.allow_pipes, allow_outside_root=args.allow_outside_root,
            min_duration=args.min_duration, max_duration=args.max_duration, vad=args.vad,
            trim_vad=args.trim_vad, cache_format=args.cache_format, progress=not args.no_progress,
            force=args.force,
        )
    # OSError: e.g. an unreadable corpus file, an output that cannot be written; its message names the file
    except (CorpusError, RulesError, SplitError, ValueError, OutputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
