"""CLI_DOC"""

from __future__ import annotations

import argparse
import sys

from data_prep.folds import FoldError, write_folds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="a folder `prepare` wrote, e.g. data/pa (read only; its split is ignored)")
    p.add_argument("--out", required=True, help="output folder, e.g. data/pa_folds (fold1 ... foldK, all, folds.json)")
    p.add_argument("--dev-speakers", type=int, default=1, metavar="N",
                   help="dev speakers per fold: the N speakers after its last test speaker, wrapping round "
                   "(0: no dev, train on every other speaker)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="number of folds: the sorted speakers dealt round-robin, fold k tests speakers "
                   "k, k+K ... (default: one fold per speaker, leave-one-speaker-out)")


def run(args: argparse.Namespace) -> int:
    try:
        folds = write_folds(args.data, args.out, dev_speakers=args.dev_speakers, n_folds=args.folds)
    except FoldError as e:
        print(f"folds: error: {e}", file=sys.stderr)
        return 2
    for f in folds:
        print(f"{args.out}/{f.name}: test {'+'.join(f.test)}  dev {'+'.join(f.dev) or '-'}  "
              f"train {'+'.join(f.train)}")
    print(f"{args.out}/all: train on all {sum(len(f.test) for f in folds)} speakers")
    return 0
