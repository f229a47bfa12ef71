"""``python -m pipeline decode``: a manifest -> a hypotheses file, with any system the toolkit trains.

The output may not be (or lie inside) an input, one run at a time writes it,
and a rerun continues only the unfinished work of the same inputs and settings
(``--force`` discards it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.manifest import ManifestError
from data_prep.outputs import OutputRefused, ResumeError
from pipeline.cli.options import add_fusion_arguments, fusion_from_args
from pipeline.decode.recognizer import SearchOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="bundled name (whisper-base), model directory, hub id, or a system directory (`export`); a CTC "
                        "checkpoint is the toolkit's (ctc_config.json) or a plain transformers CTC folder "
                        "(config.json of a Wav2Vec2ForCTC, HubertForCTC, ... with vocab.json)")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="hypotheses file to write (hyps.jsonl)")
    p.add_argument("--language", default=None,
                   help="language token to force (default: the one a fine-tuned model was trained with, "
                        "else the manifest's)")
    p.add_argument("--no-language", action="store_true", help="let the model detect the language")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--tail-silence", type=float, default=0.0, metavar="S",
                   help="seconds of silence appended to every clip: a model fine-tuned on clips that end in "
                        "silence writes on past a last word that ends its clip (default: 0)")
    p.add_argument("--limit", type=int, default=0, help="decode only the first N utterances (0 = all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true",
                   help="start afresh: discard the unfinished work (<out>.partial) of an earlier run, even one of "
                        "other inputs or settings (which is otherwise refused)")
    ctc = p.add_argument_group("CTC checkpoints (directories with ctc_config.json, or plain transformers CTC folders)")
    ctc.add_argument("--lm", default=None, help="word LM for beam search: lm.arpa, its lm.json or their directory")
    ctc.add_argument("--lm-alpha", type=float, default=None, help="LM weight (default: lm.json's)")
    ctc.add_argument("--lm-beta", type=float, default=None, help="word bonus (default: lm.json's)")
    ctc.add_argument("--beam-width", type=int, default=None, help="beam search width (default: greedy without --lm)")
    fused = p.add_argument_group("Whisper with a character LM inside its beam search (--num-beams wide)")
    fused.add_argument("--char-lm", default=None,
                       help="character LM: char.arpa, or the directory `lm --char-order` wrote it to")
    add_fusion_arguments(fused)


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The search the options ask for (ValueError / OSError for an unusable fusion setting)."""
    return SearchOptions(language=args.language, detect_language=args.no_language, task=args.task,
                         beams=args.num_beams, batch_size=args.batch_size, fusion=fusion_from_args(args),
                         lm=args.lm, lm_alpha=args.lm_alpha, lm_beta=args.lm_beta, beam_width=args.beam_width,
                         tail_silence_s=args.tail_silence, device=args.device)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pipeline.decode.manifest import decode_file
    from pipeline.system.recognizer import load_any

    try:
        options = search_options(args)
        result = decode_file(args.manifest, args.model, args.out, options, limit=args.limit, force=args.force,
                             loader=load_any)  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        if isinstance(e, (OutputRefused, ResumeError, ManifestError)):
            raise  # the CLI prints them as one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not result.hyps and not result.errors:  # an empty manifest, reported
        return 1
    for e in result.errors:
        print(f"error: {e}", file=sys.stderr)
    unreadable = f" ({len(result.errors)} unreadable, listed in {result.rejects})" if result.errors else ""
    print(f"wrote {len(result.hyps)} hypotheses to {args.out}{unreadable}", file=sys.stderr)
    return 1 if result.errors else 0
