"""How well ``prepare --format longform`` finds the boundaries of clips said one after the other.

    python -m benchmarks.align_boundaries --manifest data/sa/test.jsonl --speaker SPK \\
        --align-model exp/sa/ctc_ft/best --lang sa --work exp/sa/align_bench [--minutes 5] [--pause-s 0.5]

One speaker's clips of a prepared split, in manifest order, are joined into
recordings of at least ``--minutes`` each (the last one takes what is left),
with ``--pause-s`` of silence between two clips; each recording is written with
its transcript (one clip's text a line) to ``WORK/corpus/SPEAKER/``. ``prepare
--format longform`` then cuts them (``WORK/prepared``; its alignments are cached
there, so the segments are read back without aligning again). A true boundary is
the middle of the pause put between two clips; a cut is the middle of the gap
between two consecutive segments of a recording, accepted or rejected. Each true
boundary is matched to the nearest cut: printed are the shares within 0.2 s and
0.5 s, the counts of clips, boundaries, segments and rejects, the seconds
accounting and prepare's wall time.

A clip's own silence before and after its speech moves the middle of the whole
pause off the middle of the silence between the two clips' speech, where a cut
belongs: ``speech 0.2 s`` is the share of cuts within 0.2 s of that middle (each
clip's speech bounds found by the Silero VAD), which is what the aligner and the
cutter control. ``inside a line``: segments that start in the middle of a clip's
line (a cut at a long pause inside a sentence).

``--wrong-lines K``: in each recording, K lines of the transcript (evenly spread)
are replaced by the text of another clip of the recording, which the audio does
not say there; printed are the shares of segments holding a wrong line that
were rejected ``low_alignment_score`` and of the other segments that were.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TOLERANCES_S = (0.2, 0.5)


@dataclass
class Truth:
    """What a recording holds: the middle of each pause between two clips (seconds), and the transcript
    lines (1-based) that hold another clip's text."""

    bounds: list[float] = field(default_factory=list)
    wrong: set[int] = field(default_factory=set)
    speech_bounds: list[float] = field(default_factory=list)  # the middle of the silence between the speech


def wrong_lines(n: int, k: int) -> list[int]:
    """``k`` line indices (0-based) spread evenly over ``n`` lines, the first and last left alone."""
    k = min(k, max(0, n - 2))
    return [1 + round(i * (n - 2) / k) for i in range(k)] if k else []


def write_recordings(manifest: Path, speaker: str, corpus: Path, minutes: float, pause_s: float, wrong: int = 0
                     ) -> dict[str, Truth]:  # fmt: skip
    """The speaker's clips joined into recordings under ``corpus/speaker``; the truth of each recording
    (by its row id, ``speaker-recK``)."""
    import soundfile as sf

    from data_prep.manifest import read_manifest

    clips = [u for u in read_manifest(manifest) if u.speaker == speaker]
    if not clips:
        raise SystemExit(f"error: {manifest} has no clip of speaker {speaker!r}")
    folder = corpus / speaker
    folder.mkdir(parents=True, exist_ok=True)
    groups, current, seconds = [], [], 0.0
    for u in clips:
        current.append(u)
        seconds += u.duration + pause_s
        if seconds >= minutes * 60:
            groups.append(current)
            current, seconds = [], 0.0
    if current:
        groups.append(current)
    truth = {}
    pause = np.zeros(int(pause_s * SR), np.float32)
    for k, group in enumerate(groups):
        parts, bounds, speech_bounds, t, last_speech = [], [], [], 0.0, 0.0
        for i, u in enumerate(group):
            y = u.load_audio(manifest.parent)
            first, last = speech_span(y)
            if i:
                speech_bounds.append((last_speech + t + first) / 2)
            last_speech = t + last
            parts.append(y)
            t += len(y) / SR
            if i + 1 < len(group):
                parts.append(pause)
                bounds.append(t + pause_s / 2)
                t += pause_s
        lines = [u.text_raw for u in group]
        bad = wrong_lines(len(lines), wrong)
        for i in bad:
            lines[i] = group[(i + len(group) // 2) % len(group)].text_raw
        sf.write(folder / f"rec{k}.flac", np.concatenate(parts), SR)
        (folder / f"rec{k}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        truth[f"{speaker}-rec{k}"] = Truth(bounds, {i + 1 for i in bad}, speech_bounds)
    return truth


def speech_span(y: np.ndarray) -> tuple[float, float]:
    """Where a clip's speech starts and ends (seconds; the whole clip when the VAD finds none)."""
    from data_prep.vad_stream import scan_array

    regions = scan_array(y, "silero").regions
    return (regions[0][0], regions[-1][1]) if regions else (0.0, len(y) / SR)


def run_prepare(args: argparse.Namespace, corpus: Path, out: Path) -> float:
    """``prepare --format longform`` in its own process; its wall time (seconds)."""
    cmd = [sys.executable, "-m", "pipeline", "prepare", "--format", "longform", "--src", str(corpus),
           "--align-model", str(args.align_model), "--lang", args.lang, "--out", str(out), "--split-ratios", "1,0,0",
           "--max-utterance-s", str(args.max_utterance_s), "--min-align-score", str(args.min_align_score),
           "--no-progress", "--force"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"prepare failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Cut:
    """A segment as prepare cut it: seconds in its recording, the transcript line it starts on, rejected or not."""

    start: float
    end: float
    line: int
    rejected: bool


def segment_spans(args: argparse.Namespace, corpus: Path, out: Path) -> dict[str, list[Cut]]:
    """Every segment of each recording as prepare cut it, from prepare's cached alignments."""
    from data_prep.importers import import_corpus
    from data_prep.longform.recordings import LongformOptions, cut_recordings
    from data_prep.manifest import Reject
    from data_prep.process import ProcessConfig
    from data_prep.text.normalize import canonical_name
    from pipeline.align.aligner import model_identity

    class CachedOnly:
        identity = model_identity(args.align_model)

        def align(self, *_):
            raise SystemExit("error: an alignment is not in prepare's cache; rerun")

    cfg = ProcessConfig(out_dir=str(out), root=str(corpus.resolve()), rules=canonical_name(args.lang), language=args.lang)
    opts = LongformOptions(max_utterance_s=args.max_utterance_s, min_align_score=args.min_align_score)
    rec = cut_recordings(import_corpus("longform", corpus.resolve()), CachedOnly(), cfg, opts, progress=False)
    spans: dict[str, list[Cut]] = {}
    for row, span in zip(rec.rows, rec.spans):
        if span is not None:
            cut = Cut(*span, row.source.line, isinstance(row, Reject))
            spans.setdefault(row.id.rsplit("-", 1)[0], []).append(cut)
    return {k: sorted(v, key=lambda c: c.start) for k, v in spans.items()}


def recovered(truth: dict[str, Truth], spans: dict[str, list[Cut]], speech: bool = False) -> np.ndarray:
    """For each true boundary (``speech``: the middle of the silence between the clips' speech), the
    distance (seconds) to the nearest cut of its recording (inf: no cut)."""
    dist = []
    for rec, t in truth.items():
        segs = spans.get(rec, [])
        cuts = np.array([(a.end + b.start) / 2 for a, b in zip(segs, segs[1:])])
        bounds = t.speech_bounds if speech else t.bounds
        dist += [float(np.abs(cuts - b).min()) if len(cuts) else float("inf") for b in bounds]
    return np.array(dist)


def cut_inside_lines(spans: dict[str, list[Cut]]) -> int:
    """Segments that start on the line the segment before them started on: cuts inside a sentence."""
    return sum(b.line == a.line for segs in spans.values() for a, b in zip(segs, segs[1:]))


def rejection(truth: dict[str, Truth], spans: dict[str, list[Cut]]) -> tuple[float, float]:
    """(share of segments holding a wrong line that were rejected, share of the other segments that were)."""
    hits = {True: [], False: []}
    for rec, t in truth.items():
        segs = spans.get(rec, [])
        for k, seg in enumerate(segs):
            last = segs[k + 1].line - 1 if k + 1 < len(segs) else max([seg.line, *t.wrong])
            hits[any(seg.line <= w <= last for w in t.wrong)].append(seg.rejected)
    return tuple(float(np.mean(hits[w])) if hits[w] else float("nan") for w in (True, False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.align_boundaries", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, type=Path, help="a prepared split, e.g. data/sa/test.jsonl")
    p.add_argument("--speaker", required=True)
    p.add_argument("--align-model", required=True, type=Path, help="a CTC checkpoint")
    p.add_argument("--lang", required=True)
    p.add_argument("--work", required=True, type=Path, help="folder for the recordings and prepare's output")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--pause-s", type=float, default=0.5)
    p.add_argument("--max-utterance-s", type=float, default=20.0)
    p.add_argument("--min-align-score", type=float, default=-2.0)
    p.add_argument("--wrong-lines", type=int, default=0, help="lines per recording given another clip's text")
    args = p.parse_args(argv)
    corpus, out = args.work / "corpus", args.work / "prepared"
    truth = write_recordings(args.manifest, args.speaker, corpus, args.minutes, args.pause_s, args.wrong_lines)
    wall = run_prepare(args, corpus, out)
    spans = segment_spans(args, corpus, out)
    dist = recovered(truth, spans)
    speech_dist = recovered(truth, spans, speech=True)
    seconds = json.loads((out / "accounting.json").read_text())["seconds"]
    segments = [s for v in spans.values() for s in v]
    wrong_rejected, right_rejected = rejection(truth, spans)
    print("| recordings | clips | boundaries | segments | rejected segments | "
          + " | ".join(f"within {t:g} s" for t in TOLERANCES_S)
          + " | median error s | speech 0.2 s | inside a line | wrong lines | wrong rejected | right rejected"
          " | prepare s |")
    print("|---:" * (12 + len(TOLERANCES_S)) + "|")
    shares = [f"{(dist <= t).mean():.3f}" if len(dist) else "-" for t in TOLERANCES_S]
    print(f"| {len(truth)} | {sum(len(t.bounds) + 1 for t in truth.values())} | {len(dist)} | {len(segments)} | "
          f"{sum(s.rejected for s in segments)} | " + " | ".join(shares)
          + f" | {np.median(dist) if len(dist) else float('nan'):.3f} | "
          f"{(speech_dist <= 0.2).mean() if len(speech_dist) else float('nan'):.3f} | {cut_inside_lines(spans)} | "
          f"{sum(len(t.wrong) for t in truth.values())} | "
          f"{wrong_rejected:.3f} | {right_rejected:.3f} | {wall:.1f} |")
    print(f"seconds: {json.dumps(seconds, ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
