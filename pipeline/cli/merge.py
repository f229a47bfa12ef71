"""CLI_DOC"""

from __future__ import annotations

import argparse
import sys

from data_prep.merge import MergeError, merge


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the --out of the sharded prepare runs")
    p.add_argument("--force", action="store_true",
                   help="write over a folder prepared with other settings or from another corpus (else refused)")


def run(args: argparse.Namespace) -> int:
    try:
        return merge(args.out, force=args.force)
    except MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
