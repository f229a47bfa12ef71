"""Decoding speed of a fine-tuned Whisper with and without the two decode-time savings, in one run.

    python -m pipeline.decode_bench --model exp/sa/whisper_ft/best --manifest data/sa/dev.jsonl \\
        --limit 32 --beams 1,4 --threads 1

Variants, each timed on the same clips, taken in turns (``--repeats``):

* ``baseline``: logits over the full vocabulary, transformers' default KV cache;
* ``allowed``: logits only for the tokens the model may emit (:func:`allowed_tokens_only`);
* ``allowed+cache`` (beam search only): also the cache that does not reorder the
  cross-attention keys/values (:func:`beam_search_cache`).

Prints seconds per variant, the ratio to the baseline, and how many transcripts
differ from the baseline's (greedy: must be none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

import pipeline.models.whisper as W
from data_prep.manifest import read_manifest


def _variants(beams: int) -> dict[str, tuple]:
    """name -> (projection context, cache factory or None)."""
    out = {"baseline": (lambda m: contextlib.nullcontext(m), None), "allowed": (W.allowed_tokens_only, None)}
    if beams > 1:
        out["allowed+cache"] = (W.allowed_tokens_only, W.beam_search_cache)
    return out


def _run(model, processor, audios, language: str, beams: int, batch_size: int, projection, cache) -> tuple[float, list]:
    saved_projection, saved_cache = W.allowed_tokens_only, W.beam_search_cache
    W.allowed_tokens_only = projection
    # Without the cross-attention saving, beam search gets transformers' own cache.
    W.beam_search_cache = cache or (lambda: None)
    try:
        t0 = time.perf_counter()
        out = W.transcribe_detailed(model, processor, audios, language, batch_size=batch_size, num_beams=beams,
                                    progress=False)  # fmt: skip
        return time.perf_counter() - t0, [t.text for t in out]
    finally:
        W.allowed_tokens_only, W.beam_search_cache = saved_projection, saved_cache


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.decode_bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--beams", default="1,4", help="beam widths, comma-separated")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    utts = read_manifest(args.manifest)[: args.limit]
    audios = [u.load_audio(args.manifest.parent) for u in utts]
    model, processor = W.load_whisper(args.model)
    language = W.decoding_language(model, None, utts[0].language)
    rows = []
    for beams in (int(b) for b in args.beams.split(",")):
        variants = _variants(beams)
        best: dict[str, float] = {}
        texts: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, (projection, cache) in variants.items():
                secs, out = _run(model, processor, audios, language, beams, args.batch_size, projection, cache)
                best[name] = min(best.get(name, float("inf")), secs)
                texts[name] = out
        for name in variants:
            differ = sum(a != b for a, b in zip(texts[name], texts["baseline"]))
            rows.append({"beams": beams, "variant": name, "seconds": round(best[name], 2),
                         "speedup": round(best["baseline"] / best[name], 2), "differ": differ})  # fmt: skip
    print(f"{len(utts)} clips of {args.manifest}, {args.threads} thread(s), best of {args.repeats}", file=sys.stderr)
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
