"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a directory ``checkpoints/step-<N>/``:

    trainable.safetensors   the weights that train (the rest is rebuilt from the base model)
    heads.safetensors       weights of training-only heads outside the model (joint CTC), if any
    optimizer.safetensors   optimizer state
    scheduler.safetensors   LR scheduler state
    rng-<rank>.safetensors  python / numpy / torch (/ cuda) RNG states of each process
    state.json              step, epoch, position in the epoch, best dev CER, ... (written last)

Nothing is pickled (see :mod:`pipeline.train.state_file`): loading a checkpoint
runs no code from it, and a malformed file is refused, named, as a
:class:`~data_prep.outputs.ResumeError`. Checkpoints of older versions
(``optimizer.pt``) are refused too, never unpickled.

It is written under a temporary name and renamed, so a ``kill -9`` leaves
either the previous checkpoint or the new one, never half of one. The last
``keep`` checkpoints are kept. Which run a checkpoint belongs to is
:mod:`pipeline.train.identity`'s concern.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from data_prep.outputs import ResumeError, atomic_write_text
from pipeline.train.state_file import load_state, save_state

HEADS_FILE = "heads.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")
#: Keys every state.json has (a resume reads them all).
STATE_KEYS = ("step", "epoch", "pos", "best_cer", "best_step", "bad_evals", "elapsed_s", "stopped_early")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (a tied weight appears once)."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, source: str | Path) -> None:
    """Copy the weights of the safetensors file ``source`` into ``model``'s trainable parameters."""
    try:
        state = load_file(str(source))
    except Exception as e:  # noqa: BLE001 - a malformed or missing file, whatever safetensors says
        raise ResumeError(f"{source}: not a readable weights file ({str(e).splitlines()[0] if str(e) else e!r}); "
                          "rerun with --force to start afresh") from None  # fmt: skip
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    wrong = [n for n, t in state.items() if n in params and t.shape != params[n].shape]
    if missing or unknown or wrong:
        raise ResumeError(f"{source}: checkpoint does not match the model (missing {missing[:5]}, unknown "
                          f"{unknown[:5]}, other shapes {wrong[:5]}); rerun with --force to start afresh")  # fmt: skip
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "state.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1][1] if ckpts else None


def tmp_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f".tmp-step-{step:07d}"


def write_rank_rng(root: str | Path, step: int, rank: int) -> None:
    """Each process stores its own RNG state in the temporary checkpoint dir."""
    d = tmp_dir(root, step)
    d.mkdir(parents=True, exist_ok=True)
    save_state(rng_state(), d / f"rng-{rank}.safetensors")


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    keep: int = 2,
    heads: torch.nn.Module | None = None,
) -> Path:
    """Write checkpoint ``step`` (main process; other ranks' RNG files must already be there)."""
    root = Path(root)
    tmp = tmp_dir(root, step)
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    if heads is not None:
        save_file(trainable_state(heads), str(tmp / HEADS_FILE))
    save_state(optimizer.state_dict(), tmp / "optimizer.safetensors")
    save_state(scheduler.state_dict(), tmp / "scheduler.safetensors")
    atomic_write_text(tmp / "state.json", json.dumps({"step": step, **state}, indent=2) + "\n")
    final = root / f"step-{step:07d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, *, model, optimizer, scheduler, rank: int = 0, heads=None) -> dict:
    """Restore weights (and ``heads``), optimizer, scheduler and this rank's RNG; returns the saved state dict.

    A file that is missing, malformed or of another model is a :class:`ResumeError` naming it.
    """
    path = Path(path)
    if (path / "optimizer.pt").exists() and not (path / "optimizer.safetensors").exists():
        raise ResumeError(f"{path}: a checkpoint in the pickle format of older versions; it is not loaded "
                          "(unpickling a file can run code): rerun with --force to start afresh")  # fmt: skip
    state = read_state_json(path)
    load_trainable(model, path / "trainable.safetensors")
    if heads is not None:
        if not (path / HEADS_FILE).is_file():
            raise ResumeError(f"{path}: no {HEADS_FILE} (the run was started without the joint CTC head)")
        load_trainable(heads, path / HEADS_FILE)
    rng_file = path / f"rng-{rank}.safetensors"
    if not rng_file.exists():
        raise ResumeError(f"{path}: no RNG state for process {rank} (was the run started with another world size?)")
    for what, target, file in (("optimizer", optimizer, "optimizer.safetensors"),
                               ("scheduler", scheduler, "scheduler.safetensors")):  # fmt: skip
        saved = load_state(path / file)
        try:
            target.load_state_dict(saved)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise ResumeError(f"{path / file}: not this run's {what} state ({e}); rerun with --force") from None
    saved = load_state(rng_file)
    try:
        set_rng_state(saved)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
        raise ResumeError(f"{rng_file}: not an RNG state ({e}); rerun with --force to start afresh") from None
    return state


def read_state_json(path: str | Path) -> dict:
    """The ``state.json`` of checkpoint ``path``, with every key a resume reads."""
    file = Path(path) / "state.json"
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ResumeError(f"{file}: unreadable ({e}); rerun with --force to start afresh") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ResumeError(f"{file}: lacks {', '.join(missing)}; rerun with --force to start afresh")
    return state


def clean_temporaries(root: str | Path) -> None:
    """Remove half-written checkpoints left by a killed run."""
    root = Path(root)
    if root.is_dir():
        for p in root.glob(".tmp-step-*"):
            shutil.rmtree(p, ignore_errors=True)
