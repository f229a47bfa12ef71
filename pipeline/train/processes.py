"""The processes a training runs in, as far as the training loop is concerned.

The Whisper trainer runs on an ``accelerate.Accelerator``: under ``accelerate launch``
each process trains on its own share of the batches, DDP averages the gradients and
only the main process writes. The CTC trainer runs in one process. The loop
(:mod:`pipeline.train.loop`) talks to either through :class:`Processes`, the few
members of ``Accelerator`` it uses; :class:`SingleProcess` provides them for one
process in plain PyTorch, so the CTC trainer's arithmetic is exactly torch's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class Processes(Protocol):
    """What the training loop needs of the processes it runs in (``accelerate.Accelerator`` has all of it)."""

    device: torch.device
    is_main_process: bool  # the one process that evaluates and writes files
    num_processes: int
    process_index: int
    scaler: Any  # fp16's gradient scaler, or None

    def wait_for_everyone(self) -> None: ...

    def prepare(self, *objects: Any) -> Any: ...

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def clip_grad_norm_(self, parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor | None: ...


@dataclass
class SingleProcess:
    """One process on ``device``: no gradient synchronisation, no loss scaling, nothing wrapped."""

    device: torch.device
    is_main_process: bool = True
    num_processes: int = 1
    process_index: int = 0
    scaler: None = None

    def wait_for_everyone(self) -> None:
        pass

    def prepare(self, *objects: Any) -> tuple:
        return objects

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: Iterable[torch.nn.Parameter], max_norm: float = math.inf) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def broadcast_from_main(value: Any, processes: Processes) -> Any:
    """``value`` of the main process, on every process (a picklable object; others pass anything)."""
    box = [value]
    if processes.num_processes > 1:
        torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
