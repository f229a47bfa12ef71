"""``python -m pipeline score``: WER/CER with intervals, alignments and error tables; with ``--pool``,
the folds of a leave-one-speaker-out evaluation scored as one test set (:mod:`pipeline.score.pool`).

Imports only numpy, jiwer and the text normalizer: never torch.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.score.results import KINDS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", help="reference manifest (JSONL), e.g. data/sa/test.jsonl")
    p.add_argument("--hyps", help="hypotheses (JSONL), e.g. exp/sa/zeroshot/test/hyps.jsonl")
    p.add_argument("--pool", nargs="+", metavar="FOLD_RESULTS",
                   help="instead of --manifest/--hyps: the folds' score outputs (results.json or its folder, "
                   "e.g. exp/pa_folds/fold*/whisper_ft/test), pooled into --out (testset 'pooled' unless --testset)")
    p.add_argument("--out", default=None, help="output directory (default: the directory of --hyps)")
    p.add_argument("--lang", default=None,
                   help="normalizer name, e.g. sa or pa-Latn (default: the rules recorded in prepare.json "
                        "next to the manifest, else the manifest's language)")
    p.add_argument("--system", default=None,
                   help="system name (default: from the path exp/<lang>/<system>/<testset>/hyps.jsonl)")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="what kind of system (default: guessed from the system name, else 'other')")
    p.add_argument("--testset", default=None, help="test-set name (default: the manifest's file stem)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's random generator")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")


def run(args: argparse.Namespace) -> int:
    from pipeline.score.scorer import ScoreError, score

    if args.pool:
        return run_pool(args)
    if not (args.manifest and args.hyps):
        print("score: error: --manifest and --hyps are required (or --pool with the folds' results)", file=sys.stderr)
        return 2
    try:
        r = score(args.manifest, args.hyps, args.out, lang=args.lang, system=args.system, kind=args.kind,
                  testset=args.testset, seed=args.seed, n_resamples=args.bootstrap)
    except (ScoreError, OSError) as e:
        print(f"score: error: {e}", file=sys.stderr)
        return 1
    missing = f", {r.n_missing} missing" if r.n_missing else ""
    print(
        f"{r.system} ({r.kind}) on {r.testset} [{r.lang}]: {r.n_utts} utts{missing}; "
        f"WER {100 * r.wer:.2f}% [{100 * r.wer_ci.low:.2f}, {100 * r.wer_ci.high:.2f}]  "
        f"CER {100 * r.cer:.2f}% [{100 * r.cer_ci.low:.2f}, {100 * r.cer_ci.high:.2f}]  SER {100 * r.ser:.1f}%"
        + (f"  RTF {r.rtf:.3f}" if r.rtf is not None else "")
    )
    return 0


def run_pool(args: argparse.Namespace) -> int:
    from pipeline.score.pool import POOLED_TESTSET, pooled_markdown, score_pool
    from pipeline.score.scorer import ScoreError

    if args.manifest or args.hyps or args.lang or args.kind or not args.out:
        print("score: error: --pool takes the folds' results and --out (and --system, --testset, --seed, "
              "--bootstrap), not --manifest, --hyps, --lang or --kind", file=sys.stderr)
        return 2
    try:
        pooled = score_pool(args.pool, args.out, system=args.system, testset=args.testset or POOLED_TESTSET,
                            seed=args.seed, n_resamples=args.bootstrap)
    except (ScoreError, OSError) as e:  # folds' results that cannot be read or pooled: bad input
        print(f"score: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(pooled_markdown(pooled))
    return 0
