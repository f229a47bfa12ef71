"""Training memory against corpus size: peak RSS and samples/s on a split and on the same split 10x.

    python -m benchmarks.train_memory --prepared data/demo --work /tmp/train_memory \\
        [--config recipes/demo/config.yaml] [--repeat 10] [--max-steps 240] \\
        [--regimes cached-encoder freeze-encoder] [--threads 1] [key=value ...]

The larger split repeats every train clip of ``<prepared>/train.jsonl`` under new ids
(``<id>~r<k>``): as many utterances, and as much cached state, as a corpus ``--repeat``
times larger. Both manifests are written under ``--work`` with absolute audio paths (the
prepared folder is only read). Each (split, regime) trains ``--max-steps`` steps, the same
config otherwise, without dev evaluation, in a subprocess of its own:

- with ``cached-encoder`` twice on one cache folder: the first run builds the encoder-state
  cache (its wall time and peak RSS are the cache build's, reported apart: O(corpus) compute
  by nature), the second reads it, and its peak RSS and samples/s are the training's;
- with a regime that reads features on the fly, once.

``--read-epochs N`` then reads the cached states of every clip N times over (N epochs of the
batch plan, through the training's dataset, loader and collation, no model) for each split, in a
subprocess of its own: what a long training's data path holds, without its hours of compute.

Peak RSS is the child's ``ru_maxrss`` (``os.wait4``); the largest anonymous and file-backed
(``RssAnon``/``RssFile``, polled from ``/proc``) resident sizes say which kind grew.
samples/s is the median of ``log.jsonl``'s windows (training time only). The cache size on disk
is given per hour of train audio (times the speed factors cached) and per padded clip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunResult:
    label: str
    wall_s: float
    peak_rss_mib: float
    peak_anon_mib: float
    peak_file_mib: float
    samples_per_s: float | None
    status: int


def write_split(prepared: Path, out: Path, repeat: int, limit: int) -> float:
    """``out/train.jsonl``: the prepared train clips (the first ``limit``, 0: all) ``repeat`` times
    under new ids, audio paths made absolute; returns hours of audio."""
    lines = (prepared / "train.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if limit:
        records = records[:limit]
    out.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    with open(out / "train.jsonl", "w", encoding="utf-8") as f:
        for k in range(repeat):
            for r in records:
                r = dict(r, audio=str((prepared / r["audio"]).resolve()))
                if k:
                    r["id"] = f"{r['id']}~r{k}"
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                seconds += r["duration"]
    for name in ("vocab.json",):  # the CTC character vocabulary, if a regime needs it
        if (prepared / name).exists():
            (out / name).write_bytes((prepared / name).read_bytes())
    return seconds / 3600


def _poll_rss(pid: int, peaks: dict, done: threading.Event) -> None:
    while not done.is_set():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in text.splitlines():
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                peaks[key] = max(peaks.get(key, 0), int(line.split()[1]))
        done.wait(0.1)


def train_once(label: str, config: str, overrides: list[str], out_dir: Path, threads: int) -> RunResult:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "pipeline", "train", "--config", config, "--no-progress", "--force",
           *overrides, f"output_dir={out_dir}"]  # fmt: skip
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f"{out_dir.name}.log", "w") as logf:
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        peaks: dict[str, int] = {}
        done = threading.Event()
        poller = threading.Thread(target=_poll_rss, args=(proc.pid, peaks, done), daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - start
        done.set()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    rates = []
    log_file = out_dir / "log.jsonl"
    if log_file.exists():
        rates = [json.loads(line)["samples_per_s"] for line in log_file.read_text().splitlines() if line.strip()]
    return RunResult(label, wall, usage.ru_maxrss / 1024, peaks.get("RssAnon", 0) / 1024, peaks.get("RssFile", 0) / 1024,
                     statistics.median(rates) if rates else None, proc.returncode)  # fmt: skip


def read_epochs(manifest: Path, cache_dir: Path, epochs: int, batch_seconds: float) -> None:
    """Child process: every clip's cached states, ``epochs`` times in the batch plan's order; prints samples/s."""
    import torch

    from pipeline.train.cache import EncoderStateCache
    from pipeline.train.data import BatchPlan, StateDataset, collate, load_examples

    torch.set_num_threads(1)
    examples, _ = load_examples(manifest, lambda text: ([0, 0], 1))
    cache = EncoderStateCache(cache_dir.parent, cache_dir.name)
    dataset = StateDataset(examples, cache, None, seed=0)
    plan = BatchPlan([ex.utt.duration for ex in examples], batch_seconds=batch_seconds, max_batch_size=64, seed=0)
    n, start = 0, time.time()
    for epoch in range(epochs):
        batches = plan.epoch_batches(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=lambda s: collate(s, 0))
        for batch in loader:
            n += len(batch["ids"])
    print(json.dumps({"samples": n, "samples_per_s": n / (time.time() - start)}))


def measure_read(label: str, manifest: Path, cache_dir: Path, epochs: int, batch_seconds: float, threads: int) -> RunResult:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "benchmarks.train_memory", "--read-child", str(manifest), str(cache_dir), str(epochs),
           str(batch_seconds)]  # fmt: skip
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    peaks: dict[str, int] = {}
    done = threading.Event()
    poller = threading.Thread(target=_poll_rss, args=(proc.pid, peaks, done), daemon=True)
    poller.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    poller.join()
    rate = json.loads(out.strip().splitlines()[-1])["samples_per_s"] if out.strip() else None
    return RunResult(label, time.time() - start, usage.ru_maxrss / 1024, peaks.get("RssAnon", 0) / 1024,
                     peaks.get("RssFile", 0) / 1024, rate, os.waitstatus_to_exitcode(status))  # fmt: skip


def trimmed_cache(cache_root: Path) -> Path:
    for d in sorted(cache_root.glob("*")):
        if (d / "meta.json").exists() and json.loads((d / "meta.json").read_text()).get("trimmed", True):
            return d
    raise SystemExit(f"no trimmed encoder-state cache under {cache_root}: run the cached-encoder regime first")


def cache_sizes(cache_root: Path) -> dict[str, tuple[float, int]]:
    """(MB on disk, entries) of each cache under ``cache_root``, by kind (trimmed / padded)."""
    out = {}
    for d in sorted(p for p in cache_root.glob("*") if (p / "meta.json").exists()):
        meta = json.loads((d / "meta.json").read_text())
        size = sum(f.stat().st_size for f in d.glob("shard-*"))
        index = d / "index.json"
        entries = len(json.loads(index.read_text())["entries"]) if index.exists() else 0
        out["trimmed" if meta.get("trimmed", True) else "padded"] = (size / 1e6, entries)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--read-child"]:
        read_epochs(Path(argv[1]), Path(argv[2]), int(argv[3]), float(argv[4]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepared", required=True, type=Path, help="a prepared folder (train.jsonl + audio)")
    ap.add_argument("--work", required=True, type=Path, help="a folder for the splits and runs (made fresh)")
    ap.add_argument("--config", default="recipes/demo/config.yaml")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--limit", type=int, default=0, help="base split: the first N train clips (0: all)")
    ap.add_argument("--max-steps", type=int, default=240)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--regimes", nargs="+", default=["cached-encoder", "freeze-encoder"])
    ap.add_argument("--splits", nargs="+", type=int, default=None, help="repeats to run (default: 1 and --repeat)")
    ap.add_argument("--read-epochs", type=int, default=0,
                    help="also read every clip's cached states this many times over, no model (0: not)")
    ap.add_argument("--reuse-cache", action="store_true",
                    help="no cache build run where --work holds a cache already (copied from an earlier measurement)")
    ap.add_argument("--no-train", action="store_true", help="only --read-epochs, on the caches already in --work")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="more config overrides for every run")
    args = ap.parse_args(argv)
    prepared, work = args.prepared.resolve(), args.work.resolve()
    if work == prepared or prepared in work.parents or work in prepared.parents:
        ap.error(f"--work {work} must lie outside --prepared {prepared}")
    results: list[tuple[str, RunResult]] = []
    caches = {}
    for repeat in args.splits or [1, args.repeat]:
        split = work / f"split-{repeat}x"
        hours = write_split(prepared, split, repeat, args.limit)
        n = sum(1 for _ in open(split / "train.jsonl"))
        print(f"split {repeat}x: {n} clips, {hours:.3f} h", flush=True)
        if args.no_train:
            caches[repeat] = (hours, cache_sizes(work / f"cache-{repeat}x"))
        common = [f"data.manifests_dir={split}", f"train.max_steps={args.max_steps}",
                  f"train.threads={args.threads}", "train.checkpoint_every=100000", *args.overrides]  # fmt: skip
        for regime in [] if args.no_train else args.regimes:
            tag = f"{repeat}x-{regime}"
            extra = [*common, f"train.regime={regime}", f"train.cache_dir={work / f'cache-{repeat}x'}"]
            if regime == "cached-encoder" and not (args.reuse_cache and (work / f"cache-{repeat}x").exists()):
                r = train_once(f"{tag} cache build + train", args.config, extra, work / f"run-{tag}-build", args.threads)
                results.append((tag, r))
                print(r, flush=True)
            caches[repeat] = (hours, cache_sizes(work / f"cache-{repeat}x"))
            r = train_once(f"{tag} train", args.config, extra, work / f"run-{tag}", args.threads)
            results.append((tag, r))
            print(r, flush=True)
        if args.read_epochs:
            r = measure_read(f"{repeat}x read states x{args.read_epochs} epochs (no model)", split / "train.jsonl",
                             trimmed_cache(work / f"cache-{repeat}x"), args.read_epochs, 30.0, args.threads)  # fmt: skip
            results.append((f"{repeat}x-read", r))
            print(r, flush=True)
    print("\n| run | wall s | peak RSS MiB | RssAnon MiB | RssFile MiB | samples/s | exit |")
    print("|---|---|---|---|---|---|---|")
    for _, r in results:
        rate = f"{r.samples_per_s:.2f}" if r.samples_per_s is not None else "-"
        print(f"| {r.label} | {r.wall_s:.0f} | {r.peak_rss_mib:.0f} | {r.peak_anon_mib:.0f} | {r.peak_file_mib:.0f} "
              f"| {rate} | {r.status} |")  # fmt: skip
    for repeat, (hours, sizes) in caches.items():
        for kind, (mb, entries) in sizes.items():
            per = f"{mb / hours:.0f} MB per hour of audio" if kind == "trimmed" else f"{mb / max(entries, 1):.2f} MB per clip"
            print(f"cache {repeat}x {kind}: {mb:.1f} MB, {entries} entries: {per}")
    return 0 if all(r.status == 0 for _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
