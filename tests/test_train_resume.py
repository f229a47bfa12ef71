"""A run interrupted after a checkpoint and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from data_prep.outputs import ResumeError
from pipeline.config import config_from_dict
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus
from pipeline.train.checkpoint import list_checkpoints
from pipeline.train.trainer import Trainer


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("resume")
    data = write_tiny_corpus(root / "data", n_train=14, n_dev=2)
    write_tiny_char_vocab(data)  # for the joint CTC head
    return save_tiny_whisper(root / "model"), data


def make_cfg(assets, out, train):
    model_dir, data = assets
    return config_from_dict(
        {
            "data": {"lang": "sa", "manifests_dir": str(data)},
            "model": {"name": str(model_dir)},
            "train": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 7, "batch_seconds": 3.0, "grad_accum": 2,
                      "eval_every": 0, "checkpoint_every": 3, "keep_checkpoints": 1, "log_every": 1,
                      "threads": 1, **train},  # fmt: skip
            "augment": {"speed_perturb": [0.9, 1.0, 1.1], "time_masks": 2, "freq_masks": 1, "noise_prob": 0.5},
            "decode": {"batch_size": 2},
            "output_dir": str(out),
        }
    )


def params(trainer):
    """Every weight of the training module: the model's and a joint CTC head's."""
    return {k: v.detach().clone() for k, v in trainer.unwrapped.named_parameters()}


@pytest.mark.parametrize(
    "train",
    [
        # LoRA dropout draws on the global RNG every step: resuming must restore it.
        {"regime": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.2}},
        {"regime": "cached-encoder", "encoder_trainable_top_layers": 1},
        {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "ctc_weight": 0.3},
    ],
    ids=["lora-features", "cached-k1", "cached-k1-joint-ctc"],
)
def test_resume_is_exact(assets, tmp_path, train):
    a = Trainer(make_cfg(assets, tmp_path / "a", train), progress=False)
    sa = a.train()
    pa = params(a)

    out_b = tmp_path / "b"
    b1 = Trainer(make_cfg(assets, out_b, train), progress=False)
    assert b1.train(until_step=5)["interrupted"]  # "killed" two steps after the step-3 checkpoint
    assert [s for s, _ in list_checkpoints(out_b / "checkpoints")] == [3]
    # A checkpoint half-written at the moment of the kill must be ignored (and cleaned up).
    (out_b / "checkpoints" / ".tmp-step-0000006").mkdir()
    (out_b / "checkpoints" / ".tmp-step-0000006" / "trainable.safetensors").write_bytes(b"garbage")
    torch.manual_seed(12345)  # the new process starts with whatever RNG state it has

    b2 = Trainer(make_cfg(assets, out_b, train), progress=False)
    b2.setup()
    assert b2.step == 3
    sb = b2.train()
    pb = params(b2)

    assert sb["step"] == sa["step"] == 7
    assert pa.keys() == pb.keys()
    assert any(k.startswith("ctc_head.") for k in pa) == ("ctc_weight" in train)  # the head resumes too
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert not (out_b / "checkpoints" / ".tmp-step-0000006").exists()
    assert [s for s, _ in list_checkpoints(out_b / "checkpoints")] == [7]  # keep_checkpoints=1
    log_a = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (out_b / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == list(range(1, 8))  # lines after the checkpoint were dropped
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]


def test_resume_on_other_training_data_is_refused(assets, tmp_path):
    """An output_dir reused with another training set (new pseudo-labels, say) must not continue the old run."""
    train = {"regime": "cached-encoder", "encoder_trainable_top_layers": 1}
    out = tmp_path / "run"
    first = Trainer(make_cfg(assets, out, train), progress=False)
    assert first.train(until_step=4)["interrupted"]

    model_dir, data = assets
    other = tmp_path / "other_data"
    shutil.copytree(data, other)
    rows = (other / "train.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(rows[0])
    row["text"] = row["text"] + " x"  # one transcript relabeled
    (other / "train.jsonl").write_text("\n".join([json.dumps(row, ensure_ascii=False), *rows[1:]]) + "\n")
    cfg = make_cfg((model_dir, other), out, train)
    with pytest.raises(ResumeError, match=r"output_dir .*run: .*another run: input train; rerun"):
        Trainer(cfg, progress=False).setup()

    # The same data resumes
    again = Trainer(make_cfg(assets, out, train), progress=False)
    again.setup()
    assert again.step == 3
