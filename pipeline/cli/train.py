"""``python -m pipeline train --config recipes/<name>/config.yaml [key=value ...]``.

Trains as the recipe config says and writes ``<output_dir>/best/`` (a plain
transformers model directory; with ``model.type: ctc`` a CTC checkpoint, see
:mod:`pipeline.train.ctc_trainer`), ``checkpoints/``, ``log.jsonl`` and
``curve.png``. Running the same command again after an interruption resumes
from the newest checkpoint; an ``output_dir`` that holds a training of other
inputs or settings is refused, naming what differs, and ``--force`` starts
afresh (see :mod:`pipeline.train.identity`). A training whose loss, gradients or
weights stop being finite stops with one line naming the step and the last good
checkpoint (exit status 1). Works unchanged under ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="recipe config YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    p.add_argument("--output-dir", help="shorthand for output_dir=...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    p.add_argument("--force", action="store_true",
                   help="start afresh: remove what an earlier training wrote in output_dir (checkpoints, best/, log)")


def run(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, load_config
    from pipeline.train.finite import TrainingDiverged
    from pipeline.train.run import train_model

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, overrides)
        summary = train_model(cfg, source=args.config, progress=not args.no_progress, force=args.force)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
