"""``python -m pipeline train --config recipes/<name>/config.yaml [key=value ...]``.

Trains as the recipe config says and writes ``<output_dir>/best/`` (a plain
transformers model directory; with ``model.type: ctc`` a CTC checkpoint, see
:mod:`pipeline.train.ctc_trainer`), ``checkpoints/``, ``log.jsonl`` and
``curve.png``. Running the same command again after an interruption resumes
from the newest checkpoint. Works unchanged under ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="recipe config YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    p.add_argument("--output-dir", help="shorthand for output_dir=...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")


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


def run(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, load_config

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    try:
        cfg = load_config(args.config, overrides)
        check_manifests(cfg, args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if cfg.model.type == "ctc":
        from pipeline.train.ctc_trainer import CTCTrainer

        summary = CTCTrainer(cfg, progress=not args.no_progress).train()
    else:
        from pipeline.train.trainer import Trainer

        summary = Trainer(cfg, progress=not args.no_progress).train()
    print(json.dumps(summary))
    return 0
