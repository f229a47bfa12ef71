"""``python -m pipeline report``: compare scored experiments in report.html / report.md.

``--markdown-table`` prints the results table as Markdown to stdout (for README
and BENCHMARKS); it writes files only when ``--out`` is given too.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.report.build import report
from pipeline.report.collect import CollectError, collect
from pipeline.report.render import markdown_table
from pipeline.report.verdict import METRICS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="EXPDIR_OR_RESULTS",
                   help="experiment directories (searched recursively for results.json) or results.json files")
    p.add_argument("--out", default=None, help="output directory, e.g. exp/sa/report (required unless --markdown-table)")
    p.add_argument("--title", default=None, help="report title (default: from the languages)")
    p.add_argument("--metric", choices=METRICS, default="wer", help="metric that decides the verdict's flags")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstraps")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for paired tests and domain-shift gaps")
    p.add_argument("--markdown-table", action="store_true", help="print the results table as Markdown to stdout")


def run(args: argparse.Namespace) -> int:
    if args.out is None and not args.markdown_table:
        print("report: error: --out is required (unless --markdown-table)", file=sys.stderr)
        return 2
    try:
        if args.markdown_table:
            sys.stdout.write(markdown_table([x.results for x in collect(args.inputs)]))
        if args.out is not None:
            path = report(args.inputs, args.out, title=args.title, metric=args.metric, seed=args.seed,
                          n_resamples=args.bootstrap)
            print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr if args.markdown_table else sys.stdout)
    except CollectError as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 1
    return 0
