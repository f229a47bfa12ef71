"""Training on CPU is deterministic: the same `python -m pipeline train` in two fresh processes (other
hash seeds) writes byte-identical weights, and a run killed (SIGKILL) at random points and rerun ends with
the model of an uninterrupted run, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus

REPO = Path(__file__).resolve().parents[1]
STEPS = 8


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    data = write_tiny_corpus(root / "data", n_train=14, n_dev=2)
    write_tiny_char_vocab(data)
    return save_tiny_whisper(root / "model"), data


def write_config(assets, path: Path, out: Path, kind: str = "whisper") -> Path:
    """A demo-like recipe (new BPE vocabulary, cached encoder with a share of 30-s padded batches, dropout,
    every augmentation) on tiny inputs; ``kind`` ctc: a CTC head with dropout on the top encoder layer."""
    model_dir, data = assets
    cfg = {
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"name": str(model_dir), "vocabulary": "bpe", "vocabulary_size": 300},
        "train": {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "restrict_vocab": True,
                  "dropout": 0.1, "ctc_weight": 0.3, "lr": 3e-3, "warmup_steps": 2, "max_steps": STEPS,
                  "batch_seconds": 3.0, "grad_accum": 2, "eval_every": 4, "checkpoint_every": 2,
                  "keep_checkpoints": 1, "log_every": 1, "padded_share": 0.5},
        "augment": {"speed_perturb": [0.9, 1.0, 1.1], "time_masks": 2, "noise_prob": 0.5},
        "decode": {"batch_size": 2},
        "output_dir": str(out),
    }  # fmt: skip
    if kind == "ctc":
        cfg["model"] = {"name": str(model_dir), "type": "ctc"}
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in ("ctc_weight", "restrict_vocab", "regime",
                                                                   "padded_share")}
        cfg["ctc"] = {"head": "transformer", "head_dim": 32, "head_layers": 1, "head_heads": 2, "head_ffn": 64,
                      "head_dropout": 0.1, "trainable_top_layers": 1, "head_lr": 3e-3, "encoder_lr": 1e-3}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def train_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "train", "--config", str(config), "--no-progress"]


def env(hash_seed: int) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1"}  # fmt: skip


def train(config: Path, hash_seed: int) -> None:
    r = subprocess.run(train_cmd(config), env=env(hash_seed), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` but a checkpoint's state.json (wall-clock time and paths)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "state.json"}  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(request, assets, tmp_path_factory):
    """(model type, output_dir) of a run that was not interrupted."""
    root = tmp_path_factory.mktemp(f"uninterrupted-{request.param}")
    out = root / "exp"
    train(write_config(assets, root / "config.yaml", out, request.param), hash_seed=1)
    return request.param, out


@pytest.mark.parametrize("uninterrupted", ["whisper"], indirect=True)
def test_same_command_twice_gives_the_same_weights(assets, uninterrupted, tmp_path):
    _, first = uninterrupted
    out = tmp_path / "exp"
    train(write_config(assets, tmp_path / "config.yaml", out), hash_seed=2)  # other str hashes, other set orders
    best = digest(out / "best")
    assert "model.safetensors" in best and "ctc/model.safetensors" in best
    assert best == digest(first / "best")
    assert digest(out / "checkpoints") == digest(first / "checkpoints")
    assert digest(out / "vocab") == digest(first / "vocab")  # the BPE learnt from the train text


def logged_steps(out: Path) -> int:
    try:
        return len((out / "log.jsonl").read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return 0


def run_and_kill(config: Path, out: Path, at_step: int, delay: float, hash_seed: int) -> bool:
    """Start a training and SIGKILL it ``delay`` s after the log reached ``at_step`` (-1: after the run's
    identity is recorded, while setting up); False if it ended first."""
    proc = subprocess.Popen(train_cmd(config), env=env(hash_seed), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        started = out / "train_identity.json"
        while (logged_steps(out) <= at_step or not started.exists()) and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("uninterrupted", ["whisper", pytest.param("ctc", marks=pytest.mark.slow)], indirect=True)
def test_killed_runs_resume_to_the_uninterrupted_model(assets, uninterrupted, tmp_path):
    kind, first = uninterrupted
    rng = random.Random(20240607)
    out = tmp_path / "exp"
    config = write_config(assets, tmp_path / "config.yaml", out, kind)
    # Increasing points, so each rerun gets past its checkpoint before it is killed again.
    points = sorted(rng.sample(range(-1, STEPS), 3))
    kills = sum(run_and_kill(config, out, at, rng.uniform(0.0, 0.4), hash_seed=10 + i) for i, at in enumerate(points))
    assert kills >= 2  # the kills landed inside the training
    train(config, hash_seed=99)
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == list(range(1, STEPS + 1))
    assert digest(out / "best") == digest(first / "best")
    assert digest(out / "checkpoints") == digest(first / "checkpoints")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPU threads")
def test_cpu_kernels_add_in_a_fixed_order_with_several_threads():
    """Whisper's position embeddings are indexed (w[ids]): their gradient is an index_put_ with accumulation,
    which torch runs with atomic adds on several threads unless its deterministic kernels are on."""
    import torch

    from pipeline.train.loop import deterministic_kernels

    threads, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    try:
        deterministic_kernels(torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(448, 512, generator=gen, requires_grad=True)
        x = torch.randn(16, 40, 512, generator=gen)
        ids = torch.arange(40).expand(16, 40)
        grads = set()
        for _ in range(30):
            w.grad = None
            (w[ids] * x).sum().backward()
            grads.add(hashlib.sha256(w.grad.numpy().tobytes()).hexdigest())
        assert len(grads) == 1
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was)
