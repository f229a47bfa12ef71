"""``python -m pipeline export``: a trained system as one folder that transcribes anywhere (a system directory).

    # the system a `rescore --tune` run tuned (its dev folder: rescore.json, weights.json)
    python -m pipeline export --from-rescore exp/sa/whisper_st_soup2_ctc_lm/dev --data data/sa \\
        --results exp/sa/whisper_st_soup2_ctc_lm/test/results.json --recipe "recipes/sanskrit/run.sh" \\
        --out exp/sa/final
    # one model, decoded plainly
    python -m pipeline export --model exp/demo/whisper_ft/best --batch-size 16 --data data/demo \\
        --results exp/demo/whisper_ft/test/results.json --out exp/demo/final
    # then, on any machine
    python -m pipeline transcribe --model exp/sa/final clip.mp3
    # with its decoder as a CTranslate2 model inside (ct2/), for `transcribe --speed fast`
    python -m pipeline export --model exp/demo/whisper_ft/best --with-ct2 int8 --data data/demo --out exp/demo/final
    # the decoder as a CTranslate2 model, for faster-whisper (WhisperModel("exp/demo/ct2"))
    python -m pipeline export --format ct2 --quantization int8 --model exp/demo/final --data data/demo \\
        --results exp/demo/whisper_ft/test/results.json --out exp/demo/ct2

The folder holds copies of every model and LM, the search settings, the chosen
weights, the data's text rules, ``system.json`` and a model card (``README.md``):
see :mod:`pipeline.system`. ``--format ct2`` writes one Whisper decoder (``--model``: its
folder, a system directory of kind ``decoder``, or a bundled name) as a CTranslate2 model
with its tokenizer and a model card: see :mod:`pipeline.system.ct2`. ``--out`` may not be,
contain or lie inside an input, and only a folder this toolkit made is replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.system.ct2 import QUANTIZATIONS
from pipeline.system.export import FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-rescore", type=Path, default=None, metavar="DIR",
                        help="the folder of a `rescore --tune` run (its rescore.json and weights.json): its "
                             "decoders, CTC model, LMs, search settings and chosen weights")
    source.add_argument("--model", default=None,
                        help="one model decoded plainly: Whisper directory or bundled name, or CTC checkpoint")
    p.add_argument("--data", required=True, type=Path,
                   help="the prepared data folder the system was trained on (text rules, statistics)")
    p.add_argument("--out", required=True, type=Path, help="the system directory to write")
    p.add_argument("--format", choices=FORMATS, default="system",
                   help="what to write: a system directory (default), or ct2: the decoder as a CTranslate2 model "
                        "(faster-whisper loads it)")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                   help="with --format ct2: the weights' type (default int8; CTranslate2 converts on load where a "
                        "device lacks it)")
    p.add_argument("--with-ct2", choices=QUANTIZATIONS, default=None, metavar="QUANTIZATION",
                   help="also write the system's (first) Whisper decoder as a CTranslate2 model into it (ct2/), "
                        "what `transcribe --speed fast` runs: int8, float16 or float32 (needs ctranslate2)")
    p.add_argument("--results", nargs="+", type=Path, default=[],
                   help="the system's results.json files (score's output), for the model card")
    p.add_argument("--recipe", default="", help="the command that trained the system, for the model card")
    p.add_argument("--license", default="other", help="the system's licence id on the model card (default: other)")
    p.add_argument("--limitation", action="append", default=[],
                   help="a line for the model card's limitations (repeatable)")
    p.add_argument("--name", default=None, help="the system's name (default: its experiment folder's)")
    plain = p.add_argument_group("with --model")
    plain.add_argument("--lm", default=None, help="word LM of a CTC checkpoint's beam search (lm.json's weights)")
    plain.add_argument("--beams", type=int, default=1, help="Whisper beam width (1 = greedy)")
    plain.add_argument("--batch-size", type=int, default=8,
                       help="clips per batch (what the system was evaluated with: the same batches give the "
                            "same transcripts)")
    plain.add_argument("--tail-silence", type=float, default=0.0, metavar="S",
                       help="seconds of silence after every clip, as `decode --tail-silence` scored it (default: 0)")


def run(args: argparse.Namespace) -> int:
    from pipeline.system.export import CardOptions, ExportError, export_decoder, export_rescored

    card = CardOptions(recipe=args.recipe, license=args.license, results=list(args.results),
                       limits=list(args.limitation))  # fmt: skip
    refused = _refused(args)
    if refused:
        print(f"export: error: {refused}", file=sys.stderr)
        return 2
    try:
        ct2 = None
        if args.with_ct2 is not None:
            from pipeline.system.ct2 import ct2_writer

            ct2 = ct2_writer(args.with_ct2)
        if args.format == "ct2":
            from pipeline.system.ct2 import export_ct2

            out = export_ct2(args.model, args.out, args.data, quantization=args.quantization or "int8",
                             name=args.name, card=card)  # fmt: skip
            print(f"wrote the CTranslate2 model {out} (faster-whisper: WhisperModel({str(out)!r}))", file=sys.stderr)
            return 0
        if args.from_rescore is not None:
            out = export_rescored(args.from_rescore, args.out, args.data, name=args.name, card=card, ct2=ct2)
        else:
            out = export_decoder(args.model, args.out, args.data, lm=args.lm, beams=args.beams,
                                 batch_size=args.batch_size, tail_silence_s=args.tail_silence, name=args.name,
                                 card=card, ct2=ct2)  # fmt: skip
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the system directory {out} (transcribe with: python -m pipeline transcribe --model {out} ...)",
          file=sys.stderr)  # fmt: skip
    return 0


def _refused(args: argparse.Namespace) -> str | None:
    """Why the options do not go together (None when they do)."""
    if args.from_rescore is not None and args.lm is not None:
        return "--lm goes with --model (a rescore run names its own LMs)"
    if args.from_rescore is not None and args.tail_silence:
        return "--tail-silence goes with --model (a rescore run decoded its clips as they are)"
    if args.format == "ct2":
        if args.from_rescore is not None:
            return ("--format ct2 converts one Whisper decoder (--model); a rescored system's search needs this "
                    "toolkit")  # fmt: skip
        if args.lm is not None or args.beams != 1 or args.tail_silence:
            return ("--format ct2 converts the decoder only: --lm, --beams and --tail-silence belong to a system "
                    "directory")  # fmt: skip
        if args.with_ct2 is not None:
            return "--with-ct2 adds a CTranslate2 decoder to a system directory; --format ct2 writes only one"
    elif args.quantization is not None:
        return "--quantization goes with --format ct2"
    return None
