"""Decode a manifest into a hypotheses file (command ``decode``).

Batched, with a progress bar, and resumable (:mod:`pipeline.resumable`): a
killed run continues where it stopped; the final ``hyps.jsonl`` is written
atomically in manifest order. The output may not be (or lie inside) an input,
one run at a time writes it, and a rerun continues only the unfinished work of
the same inputs and settings (``--force`` discards it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from data_prep.manifest import Source, Utterance, read_manifest_lines
from data_prep.outputs import RunIdentity, exclusive, guard_outputs
from pipeline.hyps import Hypothesis, write_hyps
from pipeline.rescore.fusion_options import add_fusion_arguments, fusion_from_args, fusion_settings
from pipeline.resumable import (
    check_output,
    partial_path,
    read_records,
    rejects_path,
    resume_check,
    run_resumable,
    written_paths,
)

#: A batch decoder: 16 kHz mono arrays in, one (text, generated token count) per array out.
BatchDecoder = Callable[[Sequence[np.ndarray]], list[tuple[str, int]]]


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


def load_decoder(model: str, language: str | None, task: str, batch_size: int, num_beams: int,
                 device: str = "cpu", fallback_language: str | None = None) -> BatchDecoder:
    """Load a model and return a function that decodes one batch of audio.

    ``language``: an explicit choice; without one, the model's trained language, else ``fallback_language``.
    """
    from pipeline.models.whisper import batch_decoder, decoding_language, load_whisper

    whisper, processor = load_whisper(model, device=device)
    language = decoding_language(whisper, language, fallback_language)
    return batch_decoder(whisper, processor, language, task, batch_size, num_beams)


def decode_manifest(
    utts: Sequence[Utterance],
    manifest_dir: Path,
    decode_batch: BatchDecoder,
    out: Path,
    batch_size: int = 8,
    model_name: str = "",
    sources: dict[str, Source] | None = None,
) -> tuple[list[Hypothesis], list[str]]:
    """Decode ``utts`` into ``out``, resumably; returns (hypotheses in manifest order, unreadable-audio errors).

    Unreadable clips are also listed in ``hyps.rejects.jsonl``; ``sources``: their manifest lines, by id.
    """

    def work(batch: list[Utterance], audios: list[np.ndarray]) -> list[Hypothesis]:
        t0 = time.perf_counter()
        texts = decode_batch(audios)
        per_utt = round((time.perf_counter() - t0) / len(batch), 4)
        return [Hypothesis(id=u.id, text=text, model=model_name, seconds=per_utt, tokens=n_tokens)
                for u, (text, n_tokens) in zip(batch, texts)]  # fmt: skip

    done = read_records(partial_path(out), Hypothesis.from_json)
    return run_resumable(utts, manifest_dir, out, work, write_hyps, done=done, batch_size=batch_size, desc="decode",
                         sources=sources)  # fmt: skip


def utterances_to_decode(manifest: Path, limit: int = 0) -> tuple[list[Utterance], dict[str, Source]]:
    """The manifest's first ``limit`` utterances (all with 0) and their manifest lines by id.

    A bad line or a repeated id raises ManifestError; an empty result is reported on stderr.
    """
    lines = read_manifest_lines(manifest)
    if limit:
        lines = lines[:limit]
    if not lines:
        print(f"{manifest}: manifest is empty", file=sys.stderr)
    return [u for _, u in lines], {u.id: Source(str(manifest), n) for n, u in lines}


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
    utts, sources = utterances_to_decode(args.manifest, args.limit)
    if not utts:
        return 1
    guard_outputs(written_paths(args.out), decode_inputs(args).values())
    check_output(args.out)  # before the model loads
    with exclusive(args.out, "decode"):
        resume_check(args.out, run_identity(args), force=args.force)
        return _decode(args, utts, sources)


def _decode(args: argparse.Namespace, utts: list[Utterance], sources: dict[str, Source]) -> int:
    fallback = None if args.no_language else utts[0].language
    from pipeline.models.ctc import is_ctc_checkpoint

    if is_ctc_checkpoint(args.model) and args.fusion_weight:
        print(f"error: --fusion-weight needs a Whisper model; {args.model} is a CTC checkpoint (use --lm)",
              file=sys.stderr)
        return 2
    if is_ctc_checkpoint(args.model):
        from pipeline.decode_ctc import load_ctc_decoder

        try:
            decode_batch = load_ctc_decoder(args.model, lm=args.lm, alpha=args.lm_alpha, beta=args.lm_beta,
                                            beam_width=args.beam_width, device=args.device)  # fmt: skip
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.lm is not None:
        print(f"error: --lm needs a CTC checkpoint; {args.model} has no ctc_config.json", file=sys.stderr)
        return 2
    elif args.fusion_weight:
        from pipeline.decode_fused import load_fused_decoder

        try:
            fusion = fusion_from_args(args)
            decode_batch = load_fused_decoder(args.model, None if args.no_language else args.language, fusion,
                                              args.num_beams, args.device, fallback_language=fallback)  # fmt: skip
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    else:
        decode_batch = load_decoder(args.model, None if args.no_language else args.language, args.task,
                                    args.batch_size, args.num_beams, args.device, fallback_language=fallback)
    hyps, errors = decode_manifest(utts, args.manifest.parent, decode_batch, args.out, args.batch_size, args.model,
                                   sources)  # fmt: skip
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    unreadable = f" ({len(errors)} unreadable, listed in {rejects_path(args.out)})" if errors else ""
    print(f"wrote {len(hyps)} hypotheses to {args.out}{unreadable}", file=sys.stderr)
    return 1 if errors else 0
