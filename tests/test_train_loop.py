"""The training loop of both trainers always progresses, and stops at the first non-finite loss or weight."""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from pipeline.cli import main
from pipeline.config import config_from_dict
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus
from pipeline.train.checkpoint import list_checkpoints
from pipeline.train.data import step_sizes
from pipeline.train.finite import TrainingDiverged
from pipeline.train.state_file import load_state
from pipeline.train.trainer import Trainer


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the test run) when the block spins longer than ``seconds``."""

    def stop(*_):
        raise TimeoutError(f"no progress in {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_step_sizes_take_every_batch_and_never_nothing():
    assert step_sizes(7, 0, 3) == [3, 3, 1]
    assert step_sizes(7, 3, 3) == [3, 1]
    assert step_sizes(1, 0, 4) == [1]  # fewer micro-batches than grad_accum: one short step
    assert step_sizes(6, 0, 2) == [2, 2, 2]
    assert step_sizes(4, 4, 2) == []


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("loop")
    data = write_tiny_corpus(root / "data", n_train=4, n_dev=0)
    write_tiny_char_vocab(data)
    return save_tiny_whisper(root / "model", d_model=32, heads=2, ffn=64), data


def recipe(assets, out, kind="whisper", **train) -> dict:
    model_dir, data = assets
    return {
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"name": str(model_dir), "type": kind},
        "train": {"regime": "freeze-encoder", "lr": 1e-3, "warmup_steps": 1, "eval_every": 0, "log_every": 1,
                  "threads": 1, **train},
        "ctc": {"head": "linear", "trainable_top_layers": 0},
        "output_dir": str(out),
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["whisper", "ctc"])
def test_an_epoch_with_fewer_batches_than_grad_accum_still_trains(assets, tmp_path, kind):
    """The default 60 s batches put the 4 clips in one micro-batch: with grad_accum 2 each epoch is one step."""
    from pipeline.train.ctc_trainer import CTCTrainer

    cfg = config_from_dict(recipe(assets, tmp_path / "exp", kind, epochs=3, grad_accum=2))
    trainer = (CTCTrainer if kind == "ctc" else Trainer)(cfg, progress=False)
    with deadline(120):
        summary = trainer.train()
    assert trainer.steps_per_epoch == 1 and summary["step"] == 3 and summary["epoch"] == 3
    assert (tmp_path / "exp" / "best").is_dir()


def poison(data, tmp_path, value: float = 3e38):
    """A copy of the corpus whose first train clip holds ``value`` samples (a float WAV): finite samples
    so large that the log-mel features overflow and the loss turns NaN, or NaN samples themselves."""
    import shutil

    copy = tmp_path / "nan_data"
    shutil.copytree(data, copy)
    rows = [json.loads(x) for x in (copy / "train.jsonl").read_text().splitlines()]
    wav = copy / rows[0]["audio"]
    wave, sr = sf.read(wav, dtype="float32")
    wave[100:200] = value
    sf.write(wav, wave, sr, subtype="FLOAT")
    return copy, rows[0]["id"]


def test_a_training_clip_whose_audio_went_bad_is_one_error_line_naming_it(assets, tmp_path, capsys):
    data, bad_id = poison(assets[1], tmp_path, value=np.nan)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(recipe((assets[0], data), tmp_path / "exp", "whisper", epochs=1,
                                            batch_seconds=1.0)), encoding="utf-8")  # fmt: skip
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train: error: ") and "NaN/infinite samples" in err and "nan_data" in err


@pytest.mark.parametrize("kind", ["whisper", "ctc"])
def test_a_nan_loss_stops_the_run_naming_the_step_and_the_last_good_checkpoint(assets, tmp_path, capsys, kind):
    data, bad_id = poison(assets[1], tmp_path)
    cfg = recipe((assets[0], data), tmp_path / "exp", kind, max_steps=6, batch_seconds=1.0, checkpoint_every=1,
                 keep_checkpoints=0)  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["train", "--config", str(config), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the model loader's progress bar
    assert err.startswith("train: error: step ") and f"is nan (clips {bad_id})" in err
    done = [s for s, _ in list_checkpoints(tmp_path / "exp" / "checkpoints")]
    bad_step = int(err.split("step ")[1].split(":")[0])
    assert done == list(range(1, bad_step))  # nothing of the bad step was saved
    assert (f"last good checkpoint is {tmp_path / 'exp' / 'checkpoints' / f'step-{bad_step - 1:07d}'}" in err
            if done else "no checkpoint was written yet" in err)  # fmt: skip
    assert not (tmp_path / "exp" / "best").exists()
    for _, path in list_checkpoints(tmp_path / "exp" / "checkpoints"):
        for t in load_state(path / "optimizer.safetensors")["state"].values():
            assert all(bool(torch.isfinite(v).all()) for v in t.values())


def test_non_finite_weights_are_never_saved(assets, tmp_path):
    cfg = config_from_dict(recipe(assets, tmp_path / "exp", max_steps=2, checkpoint_every=1))
    trainer = Trainer(cfg, progress=False)
    trainer.train(until_step=1)
    name, param = next((n, p) for n, p in trainer.unwrapped.named_parameters() if p.requires_grad)
    with torch.no_grad():
        param.view(-1)[0] = math.inf
    with pytest.raises(TrainingDiverged, match=rf"step 1: 1 weight tensors are not finite \(e.g. {name}\).*"
                                               r"last good checkpoint is .*step-0000001"):  # fmt: skip
        trainer._checkpoint()
    with pytest.raises(TrainingDiverged):
        trainer._export_best(None)
    assert not (tmp_path / "exp" / "best").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.max_duration=0.1", r"train.jsonl: no usable training clips"),
        ("train.encoder_trainable_top_layers=3", r"train.encoder_trainable_top_layers must be in \[0, 2\]"),
    ],
)
def test_settings_the_data_or_model_cannot_meet_are_one_line(assets, tmp_path, capsys, override, message):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(recipe(assets, tmp_path / "exp", max_steps=1)), encoding="utf-8")
    assert main(["train", "--config", str(config), "--no-progress", override]) == 2
    assert re.search(message, capsys.readouterr().err.strip().splitlines()[-1])


def test_both_trainers_run_the_one_loop():
    """"Where is the training loop?" has one answer: the trainers specialize it, neither has its own."""
    from pipeline.train.ctc_trainer import CTCTrainer
    from pipeline.train.loop import TrainingLoop

    shared = ("setup", "train", "summary", "_optimizer_step", "_evaluate", "_checkpoint", "_resume", "_log")
    for trainer in (Trainer, CTCTrainer):
        assert issubclass(trainer, TrainingLoop)
        overridden = [n for n in shared if getattr(trainer, n) is not getattr(TrainingLoop, n)]
        assert overridden == (["summary"] if trainer is CTCTrainer else []), trainer.__name__


def test_progress_is_what_a_checkpoint_records_and_a_resume_restores():
    from pipeline.train.checkpoint import STATE_KEYS
    from pipeline.train.loop import Progress

    p = Progress(step=3, epoch=1, pos=2, best_cer=0.25, best_step=2, bad_evals=1, stopped_early=True, elapsed_s=9.5)
    state = {"step": 3, **p.state()}
    assert sorted(state) == sorted(STATE_KEYS)
    assert Progress.from_state(json.loads(json.dumps(state))) == p
    fresh = {"step": 0, **Progress().state()}
    assert fresh["best_cer"] is None and Progress.from_state(json.loads(json.dumps(fresh))) == Progress()
