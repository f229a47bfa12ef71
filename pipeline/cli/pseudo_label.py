"""CLI_DOC"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.pseudo_label import pseudo_label


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labeled", required=True, help="manifest of the transcribed training set")
    p.add_argument("--unlabeled", nargs="+", required=True, help="manifests of the audio to label (text unused)")
    p.add_argument("--hyps", nargs="+", required=True, help="hypotheses files covering the unlabeled ids")
    p.add_argument("--out", required=True, help="directory for train.jsonl, rejects.jsonl, pseudo_label.json")
    p.add_argument("--lang", required=True, help="normalizer name, e.g. sa")
    p.add_argument("--max-repeats", type=int, default=3, help="reject an n-gram repeated more often in a row")
    p.add_argument("--rate-margin", type=float, default=1.5,
                   help="widen the labeled set's 1st-99th percentile characters/s range by this factor")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="replace the outputs in --out of a run of other inputs or settings (else refused)")


def run(args: argparse.Namespace) -> int:
    s = pseudo_label(args.labeled, args.unlabeled, args.hyps, args.out, lang=args.lang,
                     max_repeats=args.max_repeats, rate_margin=args.rate_margin, force=args.force)  # fmt: skip
    print(f"{s['accepted']} pseudo-labeled utterances added to {s['labeled']} labeled ones, "
          f"{s['rejected']} rejected -> {Path(args.out) / 'train.jsonl'}")  # fmt: skip
    if s["unused_hyps"]:
        print(f"warning: {s['unused_hyps']} hypotheses have no utterance in {', '.join(args.unlabeled)} "
              f"(first: {', '.join(s['unused_hyps_first'])})", file=sys.stderr)  # fmt: skip
    return 0
