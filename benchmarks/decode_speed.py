"""Decoding speed of a Whisper model as ``decode`` runs it, greedy against beam search, in one run.

    python -m benchmarks.decode_speed --model exp/sa/whisper_soup2/best --manifest data/sa/dev.jsonl \\
        --limit 24 --beams 1,4 --threads 1

Every beam width decodes the same clips with
:func:`pipeline.models.whisper.transcribe_detailed` (the function ``decode`` and
``transcribe`` call, with the savings they always use: logits for the allowed
tokens only and a beam cache that leaves the cross-attention keys/values alone),
the widths taken in turns ``--repeats`` times. Printed as a Markdown table: the
best time of each width, its real-time factor, decoded tokens per clip, its time
over the first width's (the baseline of the run), and how many transcripts
differ from the first width's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def decode_once(model, processor, audios, language, beams: int, batch_size: int) -> tuple[float, list]:
    """(seconds, transcriptions) of one pass over ``audios``."""
    from pipeline.decode.whisper import transcribe_detailed

    t0 = time.perf_counter()
    out = transcribe_detailed(model, processor, audios, language, batch_size=batch_size, num_beams=beams,
                              progress=False)  # fmt: skip
    return time.perf_counter() - t0, out


def table(rows: list[dict]) -> str:
    lines = ["| search | s | real-time factor | tokens per clip | time / first width's | transcripts differing |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        search = "greedy" if r["beams"] == 1 else f"beam {r['beams']}"
        lines.append(f"| {search} | {r['seconds']:.1f} | {r['rtf']:.3f} | {r['tokens']:.1f} | {r['ratio']:.2f} "
                     f"| {r['differ']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decode_speed", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a fine-tuned model's best/ (or a bundled name)")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--limit", type=int, default=32, help="the first N clips")
    p.add_argument("--beams", default="1,4", help="beam widths, comma-separated; the first is the baseline")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from data_prep.manifest import read_manifest
    from pipeline.decode.whisper import decoding_language
    from pipeline.models.whisper import load_whisper

    torch.set_num_threads(args.threads)
    utts = read_manifest(args.manifest)[: args.limit]
    audios = [u.load_audio(args.manifest.parent) for u in utts]
    audio_s = sum(len(a) for a in audios) / 16000
    model, processor = load_whisper(args.model)
    language = decoding_language(model, None, utts[0].language)
    widths = [int(b) for b in args.beams.split(",")]
    best: dict[int, float] = {}
    outs: dict[int, list] = {}
    for _ in range(args.repeats):
        for beams in widths:
            secs, out = decode_once(model, processor, audios, language, beams, args.batch_size)
            best[beams] = min(best.get(beams, float("inf")), secs)
            outs[beams] = out
    first = widths[0]
    rows = [{"beams": b, "seconds": best[b], "rtf": best[b] / audio_s, "ratio": best[b] / best[first],
             "tokens": sum(t.tokens for t in outs[b]) / len(utts),
             "differ": sum(x.text != y.text for x, y in zip(outs[b], outs[first]))} for b in widths]  # fmt: skip
    print(f"{len(utts)} clips ({audio_s:.0f} s) of {args.manifest}, {args.threads} thread(s), "
          f"best of {args.repeats}\n", file=sys.stderr)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
