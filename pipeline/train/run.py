"""Train as a recipe config says: the Whisper decoder trainer or, with ``model.type: ctc``, the CTC trainer.

:func:`train_model` is the whole ``train`` command: the manifests must exist, the
``output_dir`` may not be, contain or lie inside an input, one run at a time trains
into it (under ``accelerate launch`` the main process holds the lock for all), and
a run of other inputs or settings is refused unless ``force`` (:mod:`pipeline.train.identity`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from data_prep.outputs import exclusive, guard_output
from pipeline.config import ConfigError, RecipeConfig


def check_manifests(cfg: RecipeConfig, source: str) -> None:
    """The train manifest (and a dev one that is named explicitly) must exist: fail before loading a model.

    Raises ConfigError naming the config file and the key the path came from.
    """
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


def training_inputs(cfg: RecipeConfig) -> list[str]:
    """The paths training reads (output_dir must not be, contain or lie inside any of them)."""
    d = cfg.data
    paths = [d.manifest("train"), d.dev, cfg.model.name, cfg.ctc.encoder]
    if d.manifests_dir:
        paths.append(d.manifests_dir)
    return [p for p in paths if p]


def train_model(cfg: RecipeConfig, *, source: str = "<config>", progress: bool = True, force: bool = False) -> dict:
    """Train ``cfg`` to the end (or resume it); returns the trainer's summary.

    Raises ConfigError (``source`` names the config in it), OutputRefused / ResumeError,
    and :class:`~pipeline.train.finite.TrainingDiverged` when the loss or weights stop being finite.
    """
    check_manifests(cfg, source)
    if not cfg.output_dir:
        raise ConfigError(f"{source}: output_dir is not set (give it in the config or with --output-dir)")
    guard_output(cfg.output_dir, training_inputs(cfg), flag="output_dir")
    main_process = os.environ.get("RANK", "0") == "0"
    with exclusive(cfg.output_dir, "train") if main_process else contextlib.nullcontext():
        if cfg.model.type == "ctc":
            from pipeline.train.ctc_trainer import CTCTrainer

            return CTCTrainer(cfg, progress=progress, force=force).train()
        from pipeline.train.trainer import Trainer

        return Trainer(cfg, progress=progress, force=force).train()
