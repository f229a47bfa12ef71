"""Throughput of ``prepare`` against a bare decode+resample loop, in the same run.

    python -m benchmarks.prepare_throughput --src ../shared/corpora/sanskrit_cv --format cv --lang sa \
        --split train --jobs 2 --repeats 3 --cache-formats flac,wav,none

Both loops use the same rows, the same number of processes and a warm page
cache (every file is read once first). The bare loop only decodes and
resamples (:func:`data_prep.audio.load_audio`); ``prepare`` does everything
(import, text, conditioning, the audio cache from cold -- or, for ``none``,
reference mode's journal and no audio -- splits, vocab, stats). Reported:
times real time for each and their ratio (what matters on a shared
machine), the resumed rerun with a warm cache, and the cache's size on disk. Each loop's CPU seconds
(user + system, this process and its reaped workers) are reported too: on a
machine other jobs share, wall time swings with their load while the CPU
ratio stays put, so it tells whether a change helped. Printed as a Markdown
table (``--json``: the whole report as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

from data_prep.assemble import SplitOptions, assemble, settings_json
from data_prep.audio import TARGET_SR, load_audio
from data_prep.importers import RawRow, import_corpus
from data_prep.prepare import run_rows
from data_prep.process import CACHE_DIR, ProcessConfig
from data_prep.validate import mark_duplicates


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _bare(path: str) -> float:
    return len(load_audio(path)) / TARGET_SR


def bare_loop(paths: list[str], jobs: int) -> tuple[float, float, float]:
    """(seconds of audio, wall seconds, CPU seconds) of decoding + resampling every file."""
    t, c = time.perf_counter(), cpu_seconds()
    with mp.get_context("fork").Pool(jobs) as pool:  # leaving the block reaps the workers
        audio_s = sum(pool.imap(_bare, paths, chunksize=8))
    return audio_s, time.perf_counter() - t, cpu_seconds() - c


def prepare_loop(rows: list, src: Path, out: Path, lang: str, jobs: int, cache_format: str
                 ) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of processing and assembling ``rows`` into ``out``."""
    t, c = time.perf_counter(), cpu_seconds()
    cfg = ProcessConfig(out_dir=str(out), root=str(src), rules=lang, language=lang, cache_format=cache_format)
    results = run_rows(rows, list(range(len(rows))), cfg, jobs, progress=False)
    opts = SplitOptions(split_by="ratio")
    with contextlib.redirect_stdout(io.StringIO()):  # the per-run summary, repeated, would hide the report
        assemble(out, results, settings_json(cfg, opts, {"input_rows": len(rows)}), opts)
    return time.perf_counter() - t, cpu_seconds() - c


def tree_mb(folder: Path) -> float:
    """Bytes of the files under ``folder``, in MB (what a cache format costs on disk)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.prepare_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True)
    p.add_argument("--format", default="cv")
    p.add_argument("--lang", default="sa")
    p.add_argument("--split", default="train", help="corpus split to use ('' = all rows)")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--limit", type=int, default=0, help="first N rows only (0 = all)")
    p.add_argument("--cache-formats", default="flac,wav,none",
                   help="cache formats to time, comma-separated (none: reference mode, no audio written)")
    p.add_argument("--repeats", type=int, default=1, help="repeat both loops, report the best of each")
    p.add_argument("--tmp", default=None, help="folder for the temporary output (default: system temp)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON instead of a table")
    args = p.parse_args(argv)
    src = Path(args.src).resolve()
    rows = [r for r in mark_duplicates(import_corpus(args.format, src))
            if isinstance(r, RawRow) and (not args.split or r.split == args.split)]
    rows = rows[: args.limit or None]
    paths = [r.audio for r in rows]
    for path in paths:  # warm the page cache so neither loop pays for the disk
        Path(path).read_bytes()
    formats = args.cache_formats.split(",")
    bare: list[tuple[float, float]] = []
    cold: dict[str, list[tuple[float, float]]] = {f: [] for f in formats}
    warm: dict[str, list[tuple[float, float]]] = {f: [] for f in formats}
    disk: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so load from other users hits both alike
        audio_s, t, c = bare_loop(paths, args.jobs)
        bare.append((t, c))
        for fmt in formats:
            with tempfile.TemporaryDirectory(prefix="bench_prep_", dir=args.tmp) as tmp:
                cold[fmt].append(prepare_loop(rows, src, Path(tmp), args.lang, args.jobs, fmt))
                warm[fmt].append(prepare_loop(rows, src, Path(tmp), args.lang, args.jobs, fmt))
                disk[fmt] = tree_mb(Path(tmp) / CACHE_DIR)
    bare_s, bare_cpu = min(t for t, _ in bare), min(c for _, c in bare)
    report = {
        "rows": len(rows), "audio_hours": round(audio_s / 3600, 4), "jobs": args.jobs, "repeats": args.repeats,
        "note": "best of the repeats for each loop and measure",
        "bare_decode_resample": {"wall_s": round(bare_s, 2), "x_realtime": round(audio_s / bare_s, 1),
                                 "cpu_s": round(bare_cpu, 2)},
    }
    for fmt in formats:
        cold_s, warm_s = min(t for t, _ in cold[fmt]), min(t for t, _ in warm[fmt])
        cold_cpu, warm_cpu = min(c for _, c in cold[fmt]), min(c for _, c in warm[fmt])
        report[f"prepare_{fmt}"] = {
            "cold_wall_s": round(cold_s, 2), "cold_x_realtime": round(audio_s / cold_s, 1),
            "resumed_wall_s": round(warm_s, 2), "resumed_x_realtime": round(audio_s / warm_s, 1),
            "cold_over_bare": round(cold_s / bare_s, 3),
            "cold_cpu_s": round(cold_cpu, 2), "resumed_cpu_s": round(warm_cpu, 2),
            "cold_cpu_over_bare": round(cold_cpu / bare_cpu, 3),
            "cache_mb": round(disk[fmt], 3),
        }
    print(json.dumps(report, indent=1) if args.json else table(report, formats))
    return 0


def table(report: dict, formats: list[str]) -> str:
    """The report as a Markdown table: one row per loop, ratios against the bare loop of the same run."""
    bare = report["bare_decode_resample"]
    lines = [f"{report['rows']} rows, {report['audio_hours']} h of audio, {report['jobs']} processes, "
             f"best of {report['repeats']}", "",
             "| pipeline | x real time | wall / bare | CPU / bare | resumed: x real time | cache MB |",
             "|---|---:|---:|---:|---:|---:|",
             f"| bare decode + resample loop (baseline; {bare['wall_s']} s, {bare['cpu_s']} CPU s) "
             f"| {bare['x_realtime']:.0f} | 1.00 | 1.00 | | |"]
    for fmt in formats:
        r = report[f"prepare_{fmt}"]
        lines.append(f"| `prepare --cache-format {fmt}` | {r['cold_x_realtime']:.0f} | {r['cold_over_bare']:.3f} "
                     f"| {r['cold_cpu_over_bare']:.3f} | {r['resumed_x_realtime']:.0f} | {r['cache_mb']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
