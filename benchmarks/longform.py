"""Long recordings transcribed long-form against the same clips decoded one by one; peak memory.

    python -m benchmarks.longform accuracy --model exp/sa/whisper_ft/best --manifest data/sa/test.jsonl \\
        --out exp/sa/longform/test --minutes 10 --seed 0 [--pause 0.3,0.5] [--max-piece 30]
    python -m benchmarks.longform memory --model exp/sa/whisper_ft/best --manifest data/sa/test.jsonl \\
        --out exp/sa/longform/rss --minutes 10,60

``accuracy``: the manifest's clips, in order, are concatenated into recordings of at
least ``--minutes`` each (as many as the clips fill), with a pause of 0.3-0.7 s of
quiet noise (-60 dBFS) drawn with ``--seed`` between clips. Written to ``--out``: the
recordings (``rec<k>.flac``), ``recordings.jsonl`` (a manifest: one utterance per
recording, its text the clips' texts joined) and ``boundaries.tsv`` (each clip's
recording, id, start and end). The clips are decoded one by one (batched as
``transcribe`` batches short files) with the model's own search, greedy; each
recording is transcribed by ``python -m pipeline transcribe --format jsonl`` (one
process per recording and setting, its wall time and peak RSS measured). Both are
scored with ``pipeline.score`` against ``recordings.jsonl``. Boundaries: of the
junctions between clips, the share that a segment start or end lies within
``--tolerance`` s of (the junction: the middle of the pause put between the two
clips); and the shares of clip starts (ends) that a segment start (end) lies within
``--tolerance`` s of. Printed as a Markdown table, one row per system.

``memory``: recordings of each of ``--minutes`` (the clips repeated in order, same
pauses) written at 44.1 kHz (``--format``: FLAC, MP3 or WAV), each transcribed by ``transcribe`` in its own process:
peak RSS and wall time, against a process that only loads the file whole (what
``transcribe`` did before it read long files in windows).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
PAUSE_RANGE_S = (0.3, 0.7)
NOISE_RMS = 0.001  # the quiet put between clips (-60 dBFS)


@dataclass(frozen=True)
class Placed:
    """A clip inside a recording."""

    recording: str
    clip: str
    start: float
    end: float
    pause_after: float  # seconds of quiet after it (0 for a recording's last clip)


# ----------------------------------------------------------------------------- building recordings


def split_in_recordings(durations: list[float], minutes: float, pause_mean: float) -> list[range]:
    """Consecutive runs of clips, as many as fill ``minutes`` each, of about equal length."""
    total = sum(durations) + pause_mean * (len(durations) - 1)
    n = max(1, int(total // (minutes * 60)))
    bounds, acc, target = [0], 0.0, total / n
    for i, d in enumerate(durations):
        acc += d + pause_mean
        if acc >= target * len(bounds) and len(bounds) < n:
            bounds.append(i + 1)
    bounds.append(len(durations))
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def concatenate(name: str, ids: list[str], waves: list[np.ndarray], rng: np.random.Generator
                ) -> tuple[np.ndarray, list[Placed]]:  # fmt: skip
    parts, placed, t = [], [], 0.0
    for k, (clip, wave) in enumerate(zip(ids, waves)):
        pause = float(rng.uniform(*PAUSE_RANGE_S)) if k + 1 < len(waves) else 0.0
        parts.append(wave.astype(np.float32))
        placed.append(Placed(name, clip, round(t, 4), round(t + len(wave) / SR, 4), round(pause, 4)))
        t += len(wave) / SR
        if pause:
            quiet = rng.normal(0, NOISE_RMS, int(round(pause * SR))).astype(np.float32)
            parts.append(quiet)
            t += len(quiet) / SR
    return np.concatenate(parts), placed


def build_recordings(manifest: Path, out: Path, minutes: float, seed: int) -> tuple[Path, list[Placed]]:
    """Write the recordings, their manifest and boundaries; return the manifest's path and the clips placed."""
    import soundfile as sf

    from data_prep.manifest import Utterance, read_manifest, write_jsonl

    utts = read_manifest(manifest)
    rng = np.random.default_rng(seed)
    runs = split_in_recordings([u.duration for u in utts], minutes, sum(PAUSE_RANGE_S) / 2)
    out.mkdir(parents=True, exist_ok=True)
    records, placed = [], []
    for k, run in enumerate(runs):
        name = f"rec{k + 1}"
        chosen = [utts[i] for i in run]
        audio, where = concatenate(name, [u.id for u in chosen], [u.load_audio(manifest.parent) for u in chosen], rng)
        sf.write(out / f"{name}.flac", audio, SR)
        placed += where
        records.append(Utterance(id=name, audio=f"{name}.flac", duration=round(len(audio) / SR, 3),
                                 text=" ".join(u.text for u in chosen), text_raw=" ".join(u.text_raw for u in chosen),
                                 speaker=chosen[0].speaker, language=chosen[0].language, split="longform"))  # fmt: skip
    write_jsonl(out / "recordings.jsonl", records)
    lines = ["recording\tclip\tstart\tend\tpause_after"]
    lines += [f"{p.recording}\t{p.clip}\t{p.start:.3f}\t{p.end:.3f}\t{p.pause_after:.3f}" for p in placed]
    (out / "boundaries.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "recordings.jsonl", placed


# ----------------------------------------------------------------------------- measuring


def boundary_shares(placed: list[Placed], segments: dict[str, list[tuple[float, float]]], tol: float
                    ) -> tuple[float, float, float]:  # fmt: skip
    """(junctions, clip starts, clip ends) that a segment edge lies within ``tol`` s of, as shares."""
    junctions = starts = ends = 0
    n_junctions = 0
    for p in placed:
        segs = segments.get(p.recording, [])
        seg_starts = np.array([s for s, _ in segs]) if segs else np.zeros(0)
        seg_ends = np.array([e for _, e in segs]) if segs else np.zeros(0)
        edges = np.concatenate([seg_starts, seg_ends])
        starts += bool(len(seg_starts)) and float(np.min(np.abs(seg_starts - p.start))) <= tol
        ends += bool(len(seg_ends)) and float(np.min(np.abs(seg_ends - p.end))) <= tol
        if p.pause_after:
            n_junctions += 1
            junction = p.end + p.pause_after / 2
            junctions += bool(len(edges)) and float(np.min(np.abs(edges - junction))) <= tol
    return junctions / max(1, n_junctions), starts / len(placed), ends / len(placed)


#: Runs ``python -m MODULE ARGS`` (or ``-c CODE``) and writes the process's peak RSS (kB) to $LONGFORM_PEAK_FILE at
#: exit. Read inside the child: a parent's wait4() figure starts from the parent's own peak (Linux carries the
#: high-water mark of the address space a child leaves at exec), which would count the recordings built here.
_PEAK_WRAPPER = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    with open(os.environ["LONGFORM_PEAK_FILE"], "w") as f:
        f.write(kb)
atexit.register(_peak)
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class Measured:
    """A child process: its wall time, peak RSS, exit status and what it wrote on stderr."""

    wall: float
    peak_mb: float
    rc: int
    stderr: str

    @property
    def transcribe_s(self) -> float:
        """The seconds ``transcribe`` reports spending after its model was ready."""
        m = re.search(r"transcribed in ([0-9.]+) s", self.stderr)
        return float(m.group(1)) if m else float("nan")


def run_measured(args: list[str]) -> Measured:
    """``python ARGS`` (``-m MODULE ...`` or ``-c CODE``) run and measured."""
    import tempfile

    module_or_code = args[1:] if args[0] == "-m" else args
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        env = dict(os.environ, LONGFORM_PEAK_FILE=str(peak_file),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *module_or_code], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
    return Measured(wall, peak, done.returncode, done.stderr)


def transcribe_args(model: str, files: list[Path], out_dir: Path, extra: list[str]) -> list[str]:
    """``python`` arguments of the transcribe command."""
    return ["-m", "pipeline", "transcribe", "--model", model, "--format", "jsonl", "--out-dir", str(out_dir),
            "--no-progress", *extra, *map(str, files)]  # fmt: skip


def read_segments(path: Path) -> list[tuple[float, float, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["start"], r["end"], r["text"]) for r in rows]


def decode_clips(model: str, manifest: Path, batch_size: int) -> tuple[dict[str, str], float]:
    """Each clip's text, decoded one by one (batched as ``transcribe`` batches short files), and the seconds."""
    from data_prep.manifest import read_manifest
    from pipeline.decode.recognizer import SearchOptions, load_recognizer

    recognizer = load_recognizer(model, SearchOptions(batch_size=batch_size))
    utts = read_manifest(manifest)
    group = batch_size * 4 if recognizer.kind == "whisper" else batch_size
    texts: dict[str, str] = {}
    t0 = time.perf_counter()
    for i in range(0, len(utts), group):
        chunk = utts[i : i + group]
        outs = recognizer.transcribe([u.load_audio(manifest.parent) for u in chunk])
        texts.update({u.id: " ".join(t.split()) for u, t in zip(chunk, outs)})
    return texts, time.perf_counter() - t0


def score_joined(recordings: Path, texts: dict[str, str], out: Path, system: str, model: str, seconds: float):
    from data_prep.manifest import read_manifest
    from pipeline.decode.hyps import Hypothesis, write_hyps
    from pipeline.score.scorer import score

    out.mkdir(parents=True, exist_ok=True)
    recs = read_manifest(recordings)
    total = sum(r.duration for r in recs)
    write_hyps(out / "hyps.jsonl", [Hypothesis(r.id, texts.get(r.id, ""), model, seconds * r.duration / total)
                                    for r in recs])  # fmt: skip
    return score(recordings, out / "hyps.jsonl", out, system=system, n_resamples=200)


# ----------------------------------------------------------------------------- commands


def clip_by_clip_row(args: argparse.Namespace, recordings: Path, placed: list[Placed], audio_s: float) -> dict:
    from data_prep.manifest import read_manifest

    texts, seconds = decode_clips(args.model, args.manifest, args.batch_size)
    joined = {r.id: " ".join(texts[p.clip] for p in placed if p.recording == r.id) for r in read_manifest(recordings)}
    res = score_joined(recordings, joined, args.out / "clips", "clip-by-clip", args.model, seconds)
    return {"system": "clip by clip", "wer": res.wer, "cer": res.cer, "decode": seconds, "wall": None,
            "rtf": seconds / audio_s, "rss": None, "segments": len(placed), "mean_s": None, "bounds": None}  # fmt: skip


def longform_row(args: argparse.Namespace, recordings: Path, placed: list[Placed], audio_s: float, pause: float,
                 max_piece: float) -> dict | None:  # fmt: skip
    """One setting: each recording transcribed by its own ``transcribe`` process; None if one failed."""
    from data_prep.manifest import read_manifest

    recs = read_manifest(recordings)
    tag = f"long_p{pause:g}_m{max_piece:g}"
    extra = ["--pause", str(pause), "--max-piece", str(max_piece), "--vad", args.vad, "--batch-size", str(args.batch_size)]
    wall, rss, decode_s, files = 0.0, 0.0, 0.0, {}
    for r in recs:
        cmd = transcribe_args(args.model, [args.out / r.audio], args.out / tag, extra)
        run = run_measured(cmd)
        if run.rc != 0:
            print(f"longform: python {' '.join(cmd)} exited with {run.rc}:\n{run.stderr[-2000:]}", file=sys.stderr)
            return None
        wall, rss, decode_s = wall + run.wall, max(rss, run.peak_mb), decode_s + run.transcribe_s
        files[r.id] = read_segments(args.out / tag / f"{r.id}.jsonl")
    every = transcribe_args(args.model, [args.out / r.audio for r in recs], args.out / tag, extra)
    print("$ python " + " ".join(every), file=sys.stderr)
    res = score_joined(recordings, {k: " ".join(t for _, _, t in segs) for k, segs in files.items()}, args.out / tag,
                       tag, args.model, decode_s)  # fmt: skip
    spans = {k: [(s, e) for s, e, _ in segs] for k, segs in files.items()}
    n = sum(len(v) for v in spans.values())
    return {"system": f"long-form, pause {pause:g} s, pieces <= {max_piece:g} s", "wer": res.wer, "cer": res.cer,
            "decode": decode_s, "wall": wall, "rtf": decode_s / audio_s, "rss": rss, "segments": n,
            "mean_s": sum(e - s for v in spans.values() for s, e in v) / max(1, n),
            "bounds": boundary_shares(placed, spans, args.tolerance)}  # fmt: skip


def accuracy(args: argparse.Namespace) -> int:
    from data_prep.manifest import read_manifest

    recordings, placed = build_recordings(args.manifest, args.out, args.minutes, args.seed)
    recs = read_manifest(recordings)
    audio_s = sum(r.duration for r in recs)
    print(f"{len(recs)} recording(s) of {', '.join(f'{r.duration / 60:.1f}' for r in recs)} min from "
          f"{len(placed)} clips of {args.manifest}; written to {args.out}", file=sys.stderr)  # fmt: skip
    rows = [clip_by_clip_row(args, recordings, placed, audio_s)]
    for max_piece in args.max_piece:
        for pause in args.pause:
            row = longform_row(args, recordings, placed, audio_s, pause, max_piece)
            if row is None:
                return 1
            rows.append(row)
    print(accuracy_table(rows, args.tolerance))
    return 0


def accuracy_table(rows: list[dict], tol: float) -> str:
    def share(x: float) -> str:
        return f"{100 * x:.1f} %"

    def opt(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    lines = [f"| system | WER % | CER % | decode s | RTF | process wall s | peak RSS MB | segments | mean segment s "
             f"| junctions within {tol:g} s | clip starts | clip ends |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        b = r["bounds"]
        bounds = "- | - | -" if b is None else f"{share(b[0])} | {share(b[1])} | {share(b[2])}"
        lines.append(f"| {r['system']} | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} | {r['decode']:.0f} | "
                     f"{r['rtf']:.3f} | {opt(r['wall'], '.0f')} | {opt(r['rss'], '.0f')} | {r['segments']} | "
                     f"{opt(r['mean_s'], '.1f')} | {bounds} |")  # fmt: skip
    return "\n".join(lines)


def write_resampled(path: Path, audio: np.ndarray, rate: int = 44100) -> None:
    """``audio`` (16 kHz) resampled to ``rate`` and encoded a minute at a time (format from the suffix)."""
    import soundfile as sf
    import soxr

    stream = soxr.ResampleStream(SR, rate, 1, dtype="float32")
    step = 60 * SR
    with sf.SoundFile(path, "w", rate, 1, format=path.suffix[1:].upper()) as f:
        for i in range(0, len(audio), step):
            f.write(stream.resample_chunk(audio[i : i + step], last=i + step >= len(audio)))


def memory(args: argparse.Namespace) -> int:
    from data_prep.manifest import read_manifest

    utts = read_manifest(args.manifest)
    waves = [u.load_audio(args.manifest.parent) for u in utts]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        rng = np.random.default_rng(args.seed)
        per_pass = sum(len(w) for w in waves) / SR + sum(PAUSE_RANGE_S) / 2 * len(waves)
        repeats = math.ceil(minutes * 60 / per_pass)
        path = args.out / f"talk_{minutes:g}min.{args.format}"
        if not path.exists():
            audio, _ = concatenate("x", [u.id for u in utts] * repeats, waves * repeats, rng)
            write_resampled(path, audio[: int(minutes * 60 * SR)])
            del audio
        cmd = transcribe_args(args.model, [path], args.out / "transcripts", ["--vad", args.vad])
        run = run_measured(cmd)
        print("$ python " + " ".join(cmd) + f"  (exit {run.rc})", file=sys.stderr)
        whole = run_measured(["-c", f"from data_prep.audio import load_audio; load_audio({str(path)!r})"])
        rows.append((minutes, path, run.peak_mb, run.wall, whole.peak_mb))
    print("| recording | transcribe: peak RSS MB | wall s | RTF | a process that only loads it whole: peak RSS MB |"
          "\n|---|---:|---:|---:|---:|")  # fmt: skip
    for minutes, path, rss, wall, whole in rows:
        print(f"| {minutes:g} min ({path.name}) | {rss:.0f} | {wall:.0f} | {wall / (minutes * 60):.3f} | {whole:.0f} |")
    return 0


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.longform", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    acc = sub.add_parser("accuracy", help="long-form against clip-by-clip: WER/CER, boundaries, time, RSS")
    mem = sub.add_parser("memory", help="peak RSS of transcribing recordings of several lengths")
    for q in (acc, mem):
        q.add_argument("--model", required=True)
        q.add_argument("--manifest", required=True, type=Path, help="clips of one speaker, in order")
        q.add_argument("--out", required=True, type=Path)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--vad", default="silero", choices=["silero", "energy"])
    acc.add_argument("--minutes", type=float, default=10.0, help="each recording at least this long")
    acc.add_argument("--pause", type=_floats, default=[0.5], help="transcribe --pause values, comma-separated")
    acc.add_argument("--max-piece", type=_floats, default=[30.0], help="transcribe --max-piece values")
    acc.add_argument("--batch-size", type=int, default=8)
    acc.add_argument("--tolerance", type=float, default=0.5, help="seconds a segment edge may lie off a boundary")
    mem.add_argument("--minutes", type=_floats, default=[10.0, 60.0], help="recording lengths, comma-separated")
    mem.add_argument("--format", default="flac", choices=["flac", "mp3", "wav"],
                     help="how the recordings are written, at 44.1 kHz (MP3 encodes slowly: minutes per hour)")
    args = p.parse_args(argv)
    return accuracy(args) if args.what == "accuracy" else memory(args)


if __name__ == "__main__":
    raise SystemExit(main())
