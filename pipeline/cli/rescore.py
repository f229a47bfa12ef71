"""``python -m pipeline rescore``: Whisper's N-best, rescored with a CTC model and a word LM.

With ``--fusion-weight`` the character LM also scores inside Whisper's beam search
(shallow fusion, :mod:`pipeline.decode.fusion`), so the N-best already leans to
spellings the LM finds plausible; the rescoring then works on those candidates.
``--fusion-rate-from`` caps the fused search's hypotheses at a speaking rate taken
from a transcribed manifest (the train split), so that the LM's bonus cannot carry
a hypothesis past the end of a short clip.

    # dev: build the scored N-best lists, tune the weights on them, write hyps
    python -m pipeline rescore --model exp/sa/whisper_ft/best --ctc exp/sa/ctc_ft/best \\
        --lm exp/sa/ctc_ft/lm --manifest data/sa/dev.jsonl --out exp/sa/hybrid/dev/hyps.jsonl --tune
    # test: the same models, the dev weights
    python -m pipeline rescore --model exp/sa/whisper_ft/best --ctc exp/sa/ctc_ft/best \\
        --lm exp/sa/ctc_ft/lm --manifest data/sa/test.jsonl --out exp/sa/hybrid/test/hyps.jsonl \\
        --weights exp/sa/hybrid/dev/weights.json
    # the Sanskrit recipe's stage 6 on dev: char LM fused into the 4-beam, the choice tuned for CER
    python -m pipeline rescore --model exp/sa/whisper_soup2/best --lm exp/sa/lm --char-lm exp/sa/lm \\
        --beams 4 --nbest 4 --fusion-weight 0.5 --fusion-bonus 1.0 --fusion-rate-from data/sa/train.jsonl \\
        --manifest data/sa/dev.jsonl --out exp/sa/whisper_soup2_lm/dev/hyps.jsonl --tune --tune-metric cer

Several ``--model`` directories make an ensemble (e.g. the same recipe trained from
other seeds): their N-best lists are pooled and every candidate is scored by each
decoder, ``att`` being the mean of their log-probabilities.

Next to ``hyps.jsonl`` it writes ``nbest.jsonl`` (every candidate with its
scores: rerunning with other weights costs no decoding) and, with ``--tune``,
``weights.json`` (the chosen weights and the whole dev grid) and ``rescore.json``
(the models, LMs and search settings of the run, :mod:`pipeline.rescore.record`:
what ``export --from-rescore`` copies into a system directory). A killed run resumes
its ``nbest.jsonl.partial`` only with the same inputs and settings (``--force``
discards it); none of these files may be (or lie inside) an input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from data_prep.manifest import Source, Utterance
from data_prep.outputs import RunIdentity, exclusive, guard_outputs, remove_stale_temps
from pipeline.cli.options import add_fusion_arguments, fusion_from_args, fusion_settings
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.decode.manifest import utterances_to_decode
from pipeline.decode.resumable import check_output, rejects_path, resume_check, written_paths
from pipeline.rescore.combine import TunedWeights, Weights, choose, load_weights, tune_weights
from pipeline.rescore.record import RECORD_NAME, FusionRecord, RescoreRecord, TuningRecord

#: The N-best file, next to --out.
NBEST_NAME = "nbest.jsonl"
#: The tuned weights (with --tune), next to --out.
WEIGHTS_NAME = "weights.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, nargs="+",
                   help="fine-tuned Whisper directory (or bundled name / hub id); several: an ensemble whose "
                        "N-best lists are pooled and whose log-probabilities are averaged")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="hypotheses file to write (hyps.jsonl)")
    p.add_argument("--ctc", default=None, help="CTC checkpoint directory: scores every candidate, proposes its own")
    p.add_argument("--lm", default=None, help="word LM: lm.arpa, its lm.json or their directory")
    p.add_argument("--char-lm", default=None,
                   help="character LM: char.arpa, or the directory `lm --char-order` wrote it to")
    add_fusion_arguments(p)
    p.add_argument("--beams", type=int, default=8, help="Whisper beam width")
    p.add_argument("--nbest", type=int, default=8, help="candidates kept from Whisper's beam (<= --beams)")
    p.add_argument("--ctc-proposals", type=int, default=4, help="CTC + LM beam texts added as candidates")
    p.add_argument("--language", default=None,
                   help="language token (default: the one each model was fine-tuned with, else the manifest's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=0, help="only the first N utterances (0 = all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true",
                   help="start afresh: discard the unfinished N-best work (nbest.jsonl.partial) of an earlier run, "
                        "even one of other inputs or settings (which is otherwise refused)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--tune", action="store_true", help="tune the weights on this (DEV) manifest -> weights.json")
    w.add_argument("--weights", type=Path, default=None, help="weights.json from a --tune run on dev")
    p.add_argument("--tune-metric", choices=("wer", "cer", "wer+cer"), default="wer",
                   help="what --tune minimizes (ties go to WER, or to CER for wer); cer for scripts where words "
                        "are long and a weak proposer in the pool could buy WER with CER; wer+cer for both")


def _lm_arpa(lm: str) -> Path:
    from pipeline.decode.ctc import read_lm_settings

    path = Path(lm)
    if path.suffix == ".arpa":
        return path
    return read_lm_settings(path).arpa


def origin_of(args: argparse.Namespace) -> str:
    """The N-best records' origin for these command-line arguments (see ``nbest_origin``)."""
    from pipeline.rescore.build import nbest_origin

    return nbest_origin(args.model, args.ctc, args.lm, beams=args.beams, n=args.nbest,
                        ctc_proposals=args.ctc_proposals, language=args.language)  # fmt: skip


def rescore_inputs(args: argparse.Namespace) -> dict[str, str | Path | list[str] | None]:
    """What a rescore run reads, by role: guarded against as outputs, fingerprinted in its identity."""
    return {"manifest": args.manifest, "model": list(args.model), "ctc": args.ctc, "lm": args.lm,
            "char_lm": args.char_lm, "fusion_rate_from": args.fusion_rate_from}  # fmt: skip


def run_identity(args: argparse.Namespace) -> RunIdentity:
    """What decides an N-best record: the inputs and the search settings (not the weights, batch size or --limit)."""
    settings = {"beams": args.beams, "nbest": args.nbest, "ctc_proposals": args.ctc_proposals,
                "language": args.language, **fusion_settings(args)}  # fmt: skip
    return RunIdentity.of("rescore", rescore_inputs(args), settings)


def nbest_path_of(args: argparse.Namespace) -> Path:
    return args.out.parent / NBEST_NAME


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.tune and args.manifest.stem.startswith("test"):
        print(f"error: {args.manifest}: tune the weights on dev, never on the test split", file=sys.stderr)
        return 2
    utts, sources = utterances_to_decode(args.manifest, args.limit)
    if not utts:
        return 1
    inputs = [v for role, v in rescore_inputs(args).items() if role != "model"] + [*args.model, args.weights]
    written = [args.out, *written_paths(nbest_path_of(args))]
    tuned_files = [args.out.parent / WEIGHTS_NAME, args.out.parent / RECORD_NAME]
    guard_outputs([*written, *tuned_files] if args.tune else written, inputs)
    check_output(args.out)  # before the models load
    identity = run_identity(args)
    with exclusive(args.out, "rescore"), exclusive(nbest_path_of(args), "rescore"):
        resume_check(nbest_path_of(args), identity, force=args.force)
        for path in (args.out, *tuned_files):  # what a kill during their writes left
            remove_stale_temps(path)
        return _rescore(args, utts, sources, identity)


def _absolute(path: str | Path | None) -> str | None:
    """An existing path made absolute (a record outlives the working directory); a name as it is."""
    if path is None:
        return None
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def record_of(args: argparse.Namespace, data_language: str, fusion, tuned: TunedWeights,
              identity: RunIdentity) -> RescoreRecord:  # fmt: skip
    """What this ``--tune`` run used (``rescore.json``): enough to rebuild the system it tuned."""
    fused = None if fusion is None else FusionRecord(
        fusion.weight, fusion.bonus, fusion.top_k, fusion.length_penalty, fusion.max_rate,
        _absolute(args.fusion_rate_from), args.fusion_rate_margin)  # fmt: skip
    return RescoreRecord(
        models=[_absolute(m) for m in args.model], ctc=_absolute(args.ctc), lm=_absolute(args.lm),
        char_lm=_absolute(args.char_lm), beams=args.beams, nbest=args.nbest, ctc_proposals=args.ctc_proposals,
        language=args.language, data_language=data_language, batch_size=args.batch_size, fusion=fused,
        weights=tuned.weights, tuning=TuningRecord.of(tuned), manifest=_absolute(args.manifest),
        inputs={role: value for role, value in identity.inputs.items() if role != "manifest"},
    )  # fmt: skip


def _rescore(args: argparse.Namespace, utts: list[Utterance], sources: dict[str, Source],
             identity: RunIdentity) -> int:  # fmt: skip
    try:
        weights = load_weights(args.weights) if args.weights else Weights()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lang = utts[0].language
    from pipeline.decode.fusion import char_arpa
    from pipeline.decode.whisper_nbest import WhisperScorer
    from pipeline.models.whisper import load_whisper
    from pipeline.rescore.build import build_nbest
    from pipeline.rescore.scorers import CharLM, CTCScorer, WordLM

    try:
        whisper = [WhisperScorer(*load_whisper(m, device=args.device), args.language, fallback_language=lang)
                   for m in args.model]
        ctc = CTCScorer(args.ctc, args.lm, args.ctc_proposals, args.device) if args.ctc else None
        lm = WordLM(_lm_arpa(args.lm)) if args.lm else None
        char_lm = CharLM(char_arpa(args.char_lm)) if args.char_lm else None
        fusion = fusion_from_args(args)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    nbest_path = nbest_path_of(args)
    nbests, errors = build_nbest(utts, args.manifest.parent, nbest_path, whisper, ctc, lm, char_lm, lang=lang,
                                 beams=args.beams, n=args.nbest, batch_size=args.batch_size,
                                 fusion=fusion, sources=sources, origin=origin_of(args))  # fmt: skip
    if args.tune:
        refs = {u.id: u.text for u in utts}
        tuned = tune_weights(nbests, [refs[nb.id] for nb in nbests], metric=args.tune_metric)
        tuned.tuned_on = str(args.manifest)
        tuned.save(args.out.parent / WEIGHTS_NAME)
        record_of(args, lang, fusion, tuned, identity).save(args.out.parent / RECORD_NAME)
        weights = tuned.weights
        print(f"weights tuned on {args.manifest}: {weights} (dev WER {tuned.wer:.4f}, CER {tuned.cer:.4f})",
              file=sys.stderr)
    hyps = []
    for nb in nbests:
        best = choose(nb, weights)
        hyps.append(Hypothesis(id=nb.id, text=best.text if best else "", model="+".join(args.model),
                               seconds=nb.seconds))
    write_hyps(args.out, hyps)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    unreadable = f" ({len(errors)} unreadable, listed in {rejects_path(nbest_path)})" if errors else ""
    print(f"wrote {len(hyps)} hypotheses to {args.out}{unreadable}", file=sys.stderr)
    return 1 if errors else 0
