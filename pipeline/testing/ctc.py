"""Test scaffolding for CTC models: a minimal training loop and a schedule, for tests and smoke runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from pipeline.models.ctc_heads import CTCOutput


def train_ctc_steps(
    forward: Callable[..., CTCOutput],
    batches: Iterable[dict],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    clip: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
    scheduler=None,
) -> list[float]:
    """A minimal CTC training loop (tests, smoke runs): ``steps`` optimizer steps; returns the losses.

    ``forward(**batch)`` must return a :class:`CTCOutput` with a loss (a
    :class:`WhisperEncoderCTC`, or ``functools.partial(wav2vec2_ctc_forward, model)``).
    Batches are cycled. A non-finite loss raises: it must never happen with :func:`ctc_loss`.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("no batches")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        device_type = next(iter(params)).device.type
        with torch.autocast(device_type=device_type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = forward(**batch)
        if out.loss is None or not torch.isfinite(out.loss):
            raise FloatingPointError(f"step {step}: CTC loss is {out.loss}")
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(out.loss.detach()))
    return losses


def warmup_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up, then cosine decay to 0 (a common CTC fine-tuning schedule)."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f
