"""Training regimes raced on the same data: samples/s and wall time to reach the same dev CER.

    python -m benchmarks.time_to_cer --config recipes/demo/config.yaml --out exp/bench/regimes \\
        --variant cached= \\
        --variant full_padded=train.regime=full,train.trimmed_encoder=false,train.restrict_vocab=false \\
        [--target-cer 0.3] [--threads 1] [--parallel 1] [--set train.eval_every=200 ...]

Each ``--variant NAME=OVERRIDES`` (comma-separated ``key=value`` config overrides;
empty = the config as it is) trains with ``python -m pipeline train`` in its
own process into ``OUT/NAME``, one after the other on the same machine, so the
variants share the data, the dev split, the evaluation schedule and the CPU.
The first variant is the baseline of the ratios.

What is compared (from each run's ``log.jsonl`` and the measured process time):

* samples/s: training clips per second of optimizer-step time (evaluations and
  set-up excluded), averaged over the run weighted by steps;
* wall time to the target dev CER: set-up (model load, encoder-state cache for
  ``cached-encoder``: everything before the first step) plus the training time
  until the first evaluation whose dev CER is at or below the target. The
  evaluations are counted (each regime decodes its dev set the way it trains:
  a padded-window model decodes padded windows). The default target is the
  worst of the variants' best dev CERs: the lowest CER that every variant reached.

A variant that never reaches the target shows ``not reached``, and the ratio is
a lower bound (``>=``) computed from its whole wall time. With ``--target-cer``
given, a run is stopped as soon as one of its evaluations reaches the target
(the rest of its schedule would not change the answer), so a slow regime costs
only the time it needs to get there; its schedule is still the full one.

``--parallel N`` runs up to N variants at once: a sweep of accuracy on a GPU
(several small trainings share it; with NVIDIA MPS their kernels overlap). The
dev CER/WER columns are then what counts; the speed columns measure runs that
competed for the machine and are marked so. Each run then builds its own
encoder-state cache under its run directory.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.outputs import atomic_write_text


@dataclass
class RunResult:
    """What one variant's training run measured."""

    name: str
    overrides: list[str]
    wall_s: float  # the whole `pipeline train` process
    train_s: float  # elapsed_s of the last log record: the loop, evaluations included
    samples_per_s: float
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (step, elapsed_s, dev CER)
    wers: dict[int, float] = field(default_factory=dict)  # dev WER by evaluation step

    @property
    def setup_s(self) -> float:
        """Everything outside the training loop: start-up, model load, cache, export."""
        return max(0.0, self.wall_s - self.train_s)

    @property
    def best_cer(self) -> float:
        return min((c for _, _, c in self.evals), default=float("inf"))

    @property
    def best_wer(self) -> float | None:
        """Dev WER at the evaluation with the best dev CER (the checkpoint ``best/`` keeps)."""
        if not self.evals:
            return None
        step = min(self.evals, key=lambda e: e[2])[0]
        return self.wers.get(step)

    def time_to(self, target: float) -> float | None:
        """Set-up + loop time until the first evaluation at or below ``target`` (None: never)."""
        for _, elapsed, cer in self.evals:
            if cer <= target + 1e-12:
                return self.setup_s + elapsed
        return None


def split_overrides(text: str) -> list[str]:
    """Split ``k=v,k=[a,b]`` at the commas outside brackets (YAML lists stay whole)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p]


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """``NAME=k=v,k=v`` -> (NAME, [k=v, ...])."""
    name, sep, rest = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"--variant {spec!r}: expected NAME=OVERRIDES (OVERRIDES may be empty)"
        )
    overrides = split_overrides(rest)
    for o in overrides:
        if "=" not in o:
            raise argparse.ArgumentTypeError(f"--variant {spec!r}: override {o!r} is not key=value")
    return name, overrides


def full_overrides(out: Path, name: str, own: list[str], common: list[str], parallel: int) -> list[str]:
    """A variant's overrides: its own cache when runs overlap (two builders of one cache would race),
    then the common ones, then its own (the last word wins)."""
    cache = [f"train.cache_dir={out / name / 'encoder_cache'}"] if parallel > 1 else []
    return [*cache, *common, *own]


def read_log(path: Path) -> tuple[float, float, list[tuple[int, float, float]]]:
    """(final elapsed_s, step-weighted samples/s, evaluations) of a trainer's ``log.jsonl``."""
    return summarize_log(read_log_records(path))


def summarize_log(records: list[dict]) -> tuple[float, float, list[tuple[int, float, float]]]:
    """What :func:`read_log` returns, from records already read."""
    evals = [(r["step"], r["elapsed_s"], r["dev_cer"]) for r in records if r.get("dev_cer") is not None]
    weighted, steps, prev = 0.0, 0, 0
    for r in records:
        n = r["step"] - prev
        prev = r["step"]
        if r.get("samples_per_s"):
            weighted += r["samples_per_s"] * n
            steps += n
    return records[-1]["elapsed_s"], weighted / max(steps, 1), evals


def read_log_records(path: Path) -> list[dict]:
    """The records of a trainer's ``log.jsonl`` (an empty log is an error)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{path}: empty training log")
    return records


def dev_wers(records: list[dict]) -> dict[int, float]:
    """Dev WER by evaluation step of a trainer's log records."""
    return {r["step"]: r["dev_wer"] for r in records if r.get("dev_wer") is not None}


def first_reaching(log: Path, target: float) -> int | None:
    """Step of the first evaluation in ``log`` at or below ``target`` (None: none yet, or no log)."""
    if not log.is_file():
        return None
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("dev_cer") is not None and r["dev_cer"] <= target + 1e-12:
                return r["step"]
    return None


POLL_S = 2.0  # seconds between looks at the running trainings


@dataclass
class _Running:
    name: str
    overrides: list[str]
    run_dir: Path
    cmd: list[str]
    proc: subprocess.Popen
    t0: float
    stopped: bool = False


def _start(config: str, out: Path, name: str, overrides: list[str], threads: int) -> _Running:
    run_dir = out / name
    if (run_dir / "log.jsonl").exists() or (run_dir / "checkpoints").exists():
        raise FileExistsError(f"{run_dir}: already holds a run; remove it (a resumed run would not be timed fairly)")
    cmd = [sys.executable, "-m", "pipeline", "train", "--config", config, f"output_dir={run_dir}",
           f"train.threads={threads}", *overrides]  # fmt: skip
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    return _Running(name, overrides, run_dir, cmd, subprocess.Popen(cmd), time.perf_counter())


def _finished(run: _Running, stop_at: float | None) -> bool:
    """Poll one run; stop it once it reached ``stop_at``. True when its process has ended."""
    if run.proc.poll() is not None:
        return True
    if not run.stopped and stop_at is not None and first_reaching(run.run_dir / "log.jsonl", stop_at) is not None:
        print(f"[{run.name}] reached dev CER <= {stop_at}: stopping the run", flush=True)
        run.proc.send_signal(signal.SIGTERM)
        run.stopped = True
    return False


def _result(run: _Running) -> RunResult:
    if run.proc.returncode != 0 and not run.stopped:
        raise subprocess.CalledProcessError(run.proc.returncode, run.cmd)
    wall = time.perf_counter() - run.t0
    records = read_log_records(run.run_dir / "log.jsonl")
    train_s, sps, evals = summarize_log(records)
    return RunResult(run.name, run.overrides, wall, train_s, sps, evals, dev_wers(records))


def run_variants(
    config: str, out: Path, variants: list[tuple[str, list[str]]], threads: int,
    stop_at: float | None = None, parallel: int = 1,
) -> list[RunResult]:
    """Train every variant, at most ``parallel`` at a time; results in the variants' order."""
    pending, running, done = list(variants), [], {}
    while pending or running:
        while pending and len(running) < max(1, parallel):
            running.append(_start(config, out, *pending.pop(0), threads))
        time.sleep(POLL_S)
        for run in [r for r in running if _finished(r, stop_at)]:
            running.remove(run)
            run.proc.wait()
            done[run.name] = _result(run)
    return [done[name] for name, _ in variants]


def compare(results: list[RunResult], target: float | None = None) -> tuple[float, list[dict]]:
    """The target CER and one row per variant (ratios against the first variant)."""
    if target is None:
        target = max(r.best_cer for r in results)
    base = results[0]
    base_time = base.time_to(target)
    rows = []
    for r in results:
        t = r.time_to(target)
        reached = t is not None
        shown = t if reached else r.wall_s
        if base_time is None:
            ratio = None
        else:
            ratio = shown / base_time  # >1: slower than the baseline
        rows.append({
            "variant": r.name, "overrides": r.overrides, "samples_per_s": round(r.samples_per_s, 3),
            "speed_ratio_vs_baseline": round(base.samples_per_s / r.samples_per_s, 2) if r.samples_per_s else None,
            "setup_s": round(r.setup_s, 1), "best_dev_cer": round(r.best_cer, 4),
            "dev_wer_at_best": None if r.best_wer is None else round(r.best_wer, 4),
            "time_to_target_s": round(shown, 1), "reached": reached,
            "time_ratio_vs_baseline": None if ratio is None else round(ratio, 2),
        })  # fmt: skip
    return target, rows


def markdown(target: float, rows: list[dict], parallel: int = 1) -> str:
    lines = [f"Target dev CER: {100 * target:.1f} %", ""]
    if parallel > 1:
        lines += [f"Up to {parallel} runs at once: the speed and time columns measure runs that shared the machine.", ""]
    lines += [
        "| variant | samples/s | x slower per sample | set-up s | best dev CER | dev WER there | wall s to target "
        "| x slower to target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reach = f"{r['time_to_target_s']}" if r["reached"] else f"not reached ({r['time_to_target_s']} total)"
        ratio = r["time_ratio_vs_baseline"]
        ratio_s = "-" if ratio is None else (f"{ratio}" if r["reached"] else f">= {ratio}")
        wer = "-" if r.get("dev_wer_at_best") is None else f"{100 * r['dev_wer_at_best']:.1f} %"
        lines.append(f"| {r['variant']} | {r['samples_per_s']} | {r['speed_ratio_vs_baseline']} | {r['setup_s']} | "
                     f"{100 * r['best_dev_cer']:.1f} % | {wer} | {reach} | {ratio_s} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.time_to_cer", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--config", required=True, help="recipe config shared by all variants")
    ap.add_argument("--out", required=True, type=Path, help="one run directory per variant goes here")
    ap.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        required=True,
        help="NAME=key=value,key=value (config overrides; the first variant is the baseline)",
    )
    ap.add_argument(
        "--target-cer", type=float, default=None, help="default: the worst best dev CER of the variants"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every run (same for all)")
    ap.add_argument("--parallel", type=int, default=1, help="variants trained at once (a GPU sweep); default 1")
    ap.add_argument("--set", action="append", default=[], metavar="key=value",
                    help="config override for every variant (before the variant's own)")  # fmt: skip
    args = ap.parse_args(argv)
    names = [n for n, _ in args.variant]
    if len(set(names)) != len(names):
        ap.error(f"variant names must differ: {names}")
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [(name, full_overrides(args.out, name, overrides, args.set, args.parallel))
                for name, overrides in args.variant]  # fmt: skip
    results = run_variants(args.config, args.out, variants, args.threads, args.target_cer, args.parallel)
    target, rows = compare(results, args.target_cer)
    table = markdown(target, rows, args.parallel)
    summary = {"target_cer": target, "parallel": args.parallel, "rows": rows}
    atomic_write_text(args.out / "results.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(args.out / "results.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
