"""Checkpoints hold no pickle: training state round-trips exactly, and a crafted file runs nothing."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from data_prep.outputs import ResumeError
from pipeline.config import config_from_dict
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus
from pipeline.train import checkpoint as ckpt
from pipeline.train.state_file import load_state, save_state
from pipeline.train.trainer import Trainer


class Payload:
    """Unpickling this creates a file: the proof that a loader ran code from a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_optimizer_scheduler_and_rng_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
    random.seed(1)
    np.random.seed(2)
    for name, obj in (("opt", opt.state_dict()), ("sched", sched.state_dict()), ("rng", ckpt.rng_state())):
        save_state(obj, tmp_path / f"{name}.safetensors")
    back = load_state(tmp_path / "opt.safetensors")
    assert back["param_groups"][0]["betas"] == (0.9, 0.98) and list(back["state"]) == [0, 1]  # tuples, int keys
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(back["state"][0][k], v)
    assert load_state(tmp_path / "sched.safetensors") == sched.state_dict()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt.set_rng_state(load_state(tmp_path / "rng.safetensors"))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_objects_that_would_need_pickle_are_not_written(tmp_path):
    with pytest.raises(TypeError, match="cannot store a Payload"):
        save_state({"x": Payload(tmp_path / "m")}, tmp_path / "s.safetensors")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny training stopped after its step-2 checkpoint."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    data = write_tiny_corpus(root / "data", n_train=6, n_dev=0)
    cfg = config_from_dict({
        "data": {"lang": "sa", "manifests_dir": str(data)}, "model": {"name": str(save_tiny_whisper(root / "m"))},
        "train": {"regime": "freeze-encoder", "max_steps": 3, "batch_seconds": 3.0, "checkpoint_every": 2,
                  "eval_every": 0, "threads": 1, "warmup_steps": 1},
        "output_dir": str(root / "exp"),
    })  # fmt: skip
    assert Trainer(cfg, progress=False).train(until_step=2)["interrupted"]
    return cfg, root / "exp" / "checkpoints" / "step-0000002"


@pytest.mark.parametrize("file", ["optimizer.safetensors", "scheduler.safetensors", "rng-0.safetensors",
                                  "trainable.safetensors"])  # fmt: skip
def test_a_crafted_state_file_is_refused_and_runs_nothing(finished_run, tmp_path, file):
    cfg, step_dir = finished_run
    original = (step_dir / file).read_bytes()
    marker = tmp_path / "pwned"
    try:
        (step_dir / file).write_bytes(pickle.dumps(Payload(marker)))
        with pytest.raises(ResumeError, match=rf"{file}: not a") as e:
            Trainer(cfg, progress=False).setup()
        assert "\n" not in str(e.value) and "--force" in str(e.value)
        assert not marker.exists()
    finally:
        (step_dir / file).write_bytes(original)
    assert Trainer(cfg, progress=False).setup().step == 2  # the genuine file resumes


def test_a_checkpoint_in_the_old_pickle_format_is_refused_unread(finished_run, tmp_path):
    cfg, step_dir = finished_run
    marker = tmp_path / "pwned"
    moved = step_dir / "optimizer.safetensors.keep"
    (step_dir / "optimizer.safetensors").rename(moved)
    try:
        torch.save({"x": Payload(marker)}, step_dir / "optimizer.pt")
        with pytest.raises(ResumeError, match=r"step-0000002: a checkpoint in the pickle format of older versions"):
            Trainer(cfg, progress=False).setup()
        assert not marker.exists()
    finally:
        (step_dir / "optimizer.pt").unlink()
        moved.rename(step_dir / "optimizer.safetensors")


def test_a_state_json_without_its_keys_is_refused(finished_run):
    cfg, step_dir = finished_run
    original = (step_dir / "state.json").read_text()
    try:
        (step_dir / "state.json").write_text('{"step": 2}')
        with pytest.raises(ResumeError, match=r"state.json: lacks epoch, pos"):
            Trainer(cfg, progress=False).setup()
    finally:
        (step_dir / "state.json").write_text(original)
