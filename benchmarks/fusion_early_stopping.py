"""The fused beam search with and without early stopping: time and transcripts, in one run.

    python -m benchmarks.fusion_early_stopping --model exp/sa/whisper_soup2/best --lm exp/sa/lm \\
        --manifest data/sa/dev.jsonl --rate-from data/sa/train.jsonl --limit 48 --threads 1

The search of ``rescore`` / ``decode --fusion-weight`` (the character LM fused
into a 4-beam, summed scores, the speaking-rate ceiling) runs over the same
clips with the model's ``generation_config.early_stopping`` False (the default:
the search runs on while a hypothesis could still win) and True (a clip's
search stops as soon as ``--beams`` hypotheses ended), alternating, each
``--repeats`` times, each pass with a fresh fusion processor (an empty LM memo).
Printed as a Markdown table: each pass's seconds, and whether the two settings
wrote the same transcripts (the search's first hypothesis of each clip).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def one_pass(scorer, fusion_settings: dict, audios: list, beams: int, batch_size: int) -> tuple[float, list[str]]:
    """(seconds, first hypothesis per clip) of one fused search over ``audios``."""
    from pipeline.decode.fusion import Fusion

    processor = Fusion(**fusion_settings).processor(scorer)
    texts: list[str] = []
    t0 = time.perf_counter()
    for i in range(0, len(audios), batch_size):
        batch = audios[i : i + batch_size]
        lists = scorer.nbest(scorer.encode(batch), [len(a) / 16000 for a in batch], beams, beams, fusion=processor)
        texts += [t[0] if t else "" for t in lists]
    return time.perf_counter() - t0, texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fusion_early_stopping",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--model", required=True, help="a fine-tuned Whisper's best/")
    p.add_argument("--lm", required=True, help="the character LM: char.arpa or the directory `lm` wrote it to")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--rate-from", type=Path, default=None, help="train manifest for the speaking-rate ceiling")
    p.add_argument("--rate-margin", type=float, default=1.25)
    p.add_argument("--weight", type=float, default=0.5)
    p.add_argument("--bonus", type=float, default=1.0)
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=48, help="the first N clips")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from data_prep.manifest import read_manifest
    from pipeline.decode.fusion import char_arpa, max_rate_of
    from pipeline.decode.whisper_nbest import WhisperScorer
    from pipeline.models.whisper import load_whisper

    torch.set_num_threads(args.threads)
    utts = read_manifest(args.manifest)[: args.limit]
    audios = [u.load_audio(args.manifest.parent) for u in utts]
    scorer = WhisperScorer(*load_whisper(args.model), None, fallback_language=utts[0].language)
    settings = dict(arpa=char_arpa(args.lm), weight=args.weight, bonus=args.bonus, length_penalty=0.0,
                    max_rate=max_rate_of(args.rate_from, args.rate_margin))  # fmt: skip
    gen = scorer.model.generation_config
    saved = gen.early_stopping
    seconds: dict[bool, list[float]] = {False: [], True: []}
    texts: dict[bool, list[str]] = {}
    try:
        for _ in range(args.repeats):
            for early in (False, True):
                gen.early_stopping = early
                secs, out = one_pass(scorer, settings, audios, args.beams, args.batch_size)
                seconds[early].append(secs)
                texts.setdefault(early, out)
    finally:
        gen.early_stopping = saved
    same = texts[False] == texts[True]
    print(f"| early_stopping | s per pass ({len(utts)} clips) | transcripts |\n|---|---|---|")
    for early in (False, True):
        runs = ", ".join(f"{s:.1f}" for s in seconds[early])
        print(f"| {early}{' (default)' if not early else ''} | {runs} | {'the same' if same else 'differ'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
