"""CLI_DOC"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from data_prep.outputs import exclusive
from pipeline.train.soup import SoupError, check_soup_output, make_soup


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", required=True, nargs="+", help="model directories fine-tuned from the same start")
    p.add_argument("--out", required=True, type=Path, help="directory to write the averaged model to")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_soup_output(args.models, args.out)  # before the lock: a refused run leaves nothing beside --out
    try:
        with exclusive(args.out, "soup"):
            out = make_soup(args.models, args.out)
    except (SoupError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the average of {len(args.models)} models to {out}", file=sys.stderr)
    return 0
