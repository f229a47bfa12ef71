"""``python -m pipeline decode``: a manifest -> a hypotheses file, with any system the toolkit trains.

The output may not be (or lie inside) an input, one run at a time writes it,
and a rerun continues only the unfinished work of the same inputs and settings
(``--force`` discards it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.manifest import Source, Utterance
from data_prep.outputs import RunIdentity, exclusive, guard_outputs
from pipeline.cli.options import add_fusion_arguments, fusion_from_args, fusion_settings
from pipeline.decode.recognizer import SearchOptions
from pipeline.decode.resumable import check_output, rejects_path, resume_check, written_paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundled name (whisper-base), model directory or hub id")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="hypotheses file to write (hyps.jsonl)")
    p.add_argument("--language", default=None,
                   help="language token to force (default: the one a fine-tuned model was trained with, "
                        "else the manifest's)")
    p.add_argument("--no-language", action="store_true", help="let the model detect the language")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="decode only the first N utterances (0 = all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true",
                   help="start afresh: discard the unfinished work (<out>.partial) of an earlier run, even one of "
                        "other inputs or settings (which is otherwise refused)")
    ctc = p.add_argument_group("CTC checkpoints (directories with ctc_config.json)")
    ctc.add_argument("--lm", default=None, help="word LM for beam search: lm.arpa, its lm.json or their directory")
    ctc.add_argument("--lm-alpha", type=float, default=None, help="LM weight (default: lm.json's)")
    ctc.add_argument("--lm-beta", type=float, default=None, help="word bonus (default: lm.json's)")
    ctc.add_argument("--beam-width", type=int, default=None, help="beam search width (default: greedy without --lm)")
    fused = p.add_argument_group("Whisper with a character LM inside its beam search (--num-beams wide)")
    fused.add_argument("--char-lm", default=None,
                       help="character LM: char.arpa, or the directory `lm --char-order` wrote it to")
    add_fusion_arguments(fused)


def decode_inputs(args: argparse.Namespace) -> dict[str, str | Path | None]:
    """What a decode run reads, by role: guarded against as outputs, fingerprinted in its identity."""
    return {"manifest": args.manifest, "model": args.model, "lm": args.lm, "char_lm": args.char_lm,
            "fusion_rate_from": args.fusion_rate_from}  # fmt: skip


def run_identity(args: argparse.Namespace) -> RunIdentity:
    """What decides a hypothesis: the inputs and the search settings (not the batch size, device or --limit)."""
    settings = {"language": args.language, "no_language": args.no_language, "task": args.task,
                "num_beams": args.num_beams, "lm_alpha": args.lm_alpha, "lm_beta": args.lm_beta,
                "beam_width": args.beam_width, **fusion_settings(args)}  # fmt: skip
    return RunIdentity.of("decode", decode_inputs(args), settings)


def run(args: argparse.Namespace) -> int:
    from pipeline.decode.manifest import utterances_to_decode

    utts, sources = utterances_to_decode(args.manifest, args.limit)
    if not utts:
        return 1
    guard_outputs(written_paths(args.out), decode_inputs(args).values())
    check_output(args.out)  # before the model loads
    with exclusive(args.out, "decode"):
        resume_check(args.out, run_identity(args), force=args.force)
        return _decode(args, utts, sources)


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The search the options ask for (ValueError / OSError for an unusable fusion setting)."""
    return SearchOptions(language=args.language, detect_language=args.no_language, task=args.task,
                         beams=args.num_beams, batch_size=args.batch_size, fusion=fusion_from_args(args),
                         lm=args.lm, lm_alpha=args.lm_alpha, lm_beta=args.lm_beta, beam_width=args.beam_width,
                         device=args.device)  # fmt: skip


def _decode(args: argparse.Namespace, utts: list[Utterance], sources: dict[str, Source]) -> int:
    from pipeline.decode.manifest import decode_manifest
    from pipeline.decode.recognizer import load_recognizer

    try:
        recognizer = load_recognizer(args.model, search_options(args), fallback_language=utts[0].language)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hyps, errors = decode_manifest(utts, args.manifest.parent, recognizer, args.out, args.batch_size, args.model,
                                   sources)  # fmt: skip
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    unreadable = f" ({len(errors)} unreadable, listed in {rejects_path(args.out)})" if errors else ""
    print(f"wrote {len(hyps)} hypotheses to {args.out}{unreadable}", file=sys.stderr)
    return 1 if errors else 0
