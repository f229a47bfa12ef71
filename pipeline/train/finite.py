"""Stopping a training that diverged, before anything non-finite is saved.

The training loop (:mod:`pipeline.train.loop`) checks each micro-batch's loss
(before its backward pass), the gradient norm (before the optimizer step; not
with fp16, whose loss scaler skips such steps by design) and the trainable
weights (before a dev evaluation, a checkpoint or ``best/``). The first non-finite value stops the run with a
:class:`TrainingDiverged` naming the step and the last good checkpoint, which
the CLI prints as one line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch


class TrainingDiverged(RuntimeError):
    """The loss, the gradients or the weights stopped being finite numbers."""


def diverged(step: int, what: str, last_checkpoint: Path | None) -> TrainingDiverged:
    """The error that stops the run at ``step`` because of ``what``."""
    good = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
    return TrainingDiverged(f"step {step}: {what}; training stopped and nothing of this step was saved ({good}): "
                            "fix the data, or lower train.lr / raise train.warmup_steps, then rerun with --force")  # fmt: skip


def all_ranks_finite(value: float, device: torch.device, num_processes: int) -> bool:
    """Whether ``value`` is finite on every process (all of them must stop together, or DDP hangs)."""
    ok = math.isfinite(value)
    if num_processes > 1:
        flag = torch.tensor([1.0 if ok else 0.0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        ok = bool(flag.item() > 0)
    return ok


def nonfinite_weights(named_parameters: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the trainable parameters holding a NaN or an infinity."""
    with torch.no_grad():
        return [n for n, p in named_parameters if p.requires_grad and not bool(torch.isfinite(p).all())]
