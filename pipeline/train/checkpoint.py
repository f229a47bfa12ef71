"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a directory ``checkpoints/step-<N>/``:

    trainable.safetensors   the weights that train (the rest is rebuilt from the base model)
    heads.safetensors       weights of training-only heads outside the model (joint CTC), if any
    optimizer.pt            optimizer state
    scheduler.pt            LR scheduler state
    rng-<rank>.pt           python / numpy / torch (/ cuda) RNG states of each process
    state.json              step, epoch, position in the epoch, best dev CER, ... (written last)

It is written under a temporary name and renamed, so a ``kill -9`` leaves
either the previous checkpoint or the new one, never half of one. The last
``keep`` checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from data_prep.outputs import atomic_write_text

HEADS_FILE = "heads.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class ResumeError(ValueError):
    """A checkpoint that must not be continued with the present run's inputs."""


def train_data_fingerprint(examples) -> str:
    """A short hash of the training set (utterance ids and texts, in order).

    Stored in every checkpoint: a run resumed on other data (e.g. a recipe's output
    directory reused with new pseudo-labels) would otherwise continue, or simply
    return, the old model without a word.
    """
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex.utt.id.encode("utf-8") + b"\0" + ex.utt.text.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def check_same_train_data(path: str | Path, state: dict, fingerprint: str) -> None:
    """Refuse to resume checkpoint ``path`` when it trained on another training set (older ones carry no hash)."""
    saved = state.get("train_data")
    if saved is not None and saved != fingerprint:
        raise ResumeError(
            f"{path}: this run trained on another training set (fingerprint {saved}, the present one is "
            f"{fingerprint}); resume it on the data it started with, or train into a new output_dir"
        )


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


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise ValueError(f"{source}: checkpoint does not match the model (missing {missing[:5]}, unknown {unknown[:5]})")
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
    torch.save(rng_state(), d / f"rng-{rank}.pt")


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
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    atomic_write_text(tmp / "state.json", json.dumps({"step": step, **state}, indent=2) + "\n")
    final = root / f"step-{step:07d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, *, model, optimizer, scheduler, rank: int = 0, heads=None) -> dict:
    """Restore weights (and ``heads``), optimizer, scheduler and this rank's RNG; returns the saved state dict."""
    path = Path(path)
    load_trainable(model, load_file(str(path / "trainable.safetensors")), str(path))
    if heads is not None:
        if not (path / HEADS_FILE).is_file():
            raise ValueError(f"{path}: no {HEADS_FILE} (the run was started without the joint CTC head)")
        load_trainable(heads, load_file(str(path / HEADS_FILE)), str(path / HEADS_FILE))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng-{rank}.pt"
    if not rng_file.exists():
        raise ValueError(f"{path}: no RNG state for process {rank} (was the run started with another world size?)")
    set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def clean_temporaries(root: str | Path) -> None:
    """Remove half-written checkpoints left by a killed run."""
    root = Path(root)
    if root.is_dir():
        for p in root.glob(".tmp-step-*"):
            shutil.rmtree(p, ignore_errors=True)
