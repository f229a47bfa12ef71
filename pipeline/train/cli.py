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
import contextlib
import json
import logging
import os
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="recipe config YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    p.add_argument("--output-dir", help="shorthand for output_dir=...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    p.add_argument("--force", action="store_true",
                   help="start afresh: remove what an earlier training wrote in output_dir (checkpoints, best/, log)")


def check_manifests(cfg, source: str) -> None:
    """The train manifest (and a dev one that is named explicitly) must exist: fail before loading a model.

    Raises ConfigError naming the config file and the key the path came from.
    """
    from pipeline.config import ConfigError

    d = cfg.data
    try:
        train = Path(d.manifest("train"))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from e
    key = "data.train" if d.train else "data.manifests_dir"
    if not train.is_file():
        raise ConfigError(f"{source}: {key}: train manifest {train} not found")
    if d.dev and not Path(d.dev).is_file():
        raise ConfigError(f"{source}: data.dev: dev manifest {d.dev} not found")


def _inputs(cfg) -> list[str]:
    """The paths training reads (output_dir must not be, contain or lie inside any of them)."""
    d = cfg.data
    paths = [d.manifest("train"), d.dev, cfg.model.name, cfg.ctc.encoder]
    if d.manifests_dir:
        paths.append(d.manifests_dir)
    return [p for p in paths if p]


def run(args: argparse.Namespace) -> int:
    from data_prep.outputs import exclusive, guard_output
    from pipeline.config import ConfigError, load_config
    from pipeline.train.finite import TrainingDiverged

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    try:
        cfg = load_config(args.config, overrides)
        check_manifests(cfg, args.config)
        if not cfg.output_dir:
            raise ConfigError(f"{args.config}: output_dir is not set (give it in the config or with --output-dir)")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    guard_output(cfg.output_dir, _inputs(cfg), flag="output_dir")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Under `accelerate launch` every process runs this; the main one holds the lock for all.
    main_process = os.environ.get("RANK", "0") == "0"
    lock = exclusive(cfg.output_dir, "train") if main_process else contextlib.nullcontext()
    try:
        with lock:
            if cfg.model.type == "ctc":
                from pipeline.train.ctc_trainer import CTCTrainer

                summary = CTCTrainer(cfg, progress=not args.no_progress, force=args.force).train()
            else:
                from pipeline.train.trainer import Trainer

                summary = Trainer(cfg, progress=not args.no_progress, force=args.force).train()
    except TrainingDiverged as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
