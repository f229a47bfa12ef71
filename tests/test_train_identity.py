"""An output_dir holds one training: a rerun with other settings or inputs is refused, --force starts afresh."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("identity")
    data = write_tiny_corpus(root / "data", n_train=6, n_dev=0)
    write_tiny_char_vocab(data)
    return save_tiny_whisper(root / "model", d_model=32, heads=2, ffn=64), data


def write_config(assets, tmp_path, **model) -> str:
    model_dir, data = assets
    cfg = {
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"name": str(model_dir), **model},
        "train": {"regime": "freeze-encoder", "lr": 3e-3, "max_steps": 2, "warmup_steps": 1, "batch_seconds": 3.0,
                  "eval_every": 0, "log_every": 1, "threads": 1},
        "ctc": {"head": "linear", "trainable_top_layers": 0},
        "output_dir": str(tmp_path / "exp"),
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def model_hash(out) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted((out / "best").rglob("*.safetensors")))).hexdigest()


@pytest.mark.parametrize("kind, lr, old", [("whisper", "train.lr", "0.003"), ("ctc", "ctc.head_lr", "0.001")])
def test_rerun_with_other_settings_is_refused_and_force_starts_afresh(assets, tmp_path, capsys, kind, lr, old):
    config = write_config(assets, tmp_path, type=kind)
    out = tmp_path / "exp"
    train = ["train", "--config", config, "--no-progress"]
    assert main(train) == 0
    first_model, first_config = model_hash(out), (out / "train_config.json").read_text()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()

    assert main([*train, f"{lr}=0.5", "train.seed=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"output_dir {out}" in err
    assert f"setting {lr} ({old} -> 0.5); setting train.seed (0 -> 3)" in err and "--force" in err
    assert model_hash(out) == first_model and (out / "train_config.json").read_text() == first_config

    # Settings that do not change the model resume the finished run (and do not rewrite its config).
    neutral = ["train.log_every=5", "train.threads=2", "train.num_workers=1", "train.keep_checkpoints=3"]
    assert main([*train, *neutral, "ctc.lm_order=4" if kind == "ctc" else "ctc.head_lr=0.9"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    assert model_hash(out) == first_model and (out / "train_config.json").read_text() == first_config

    assert main([*train, f"{lr}=0.5", "--force"]) == 0
    section, key = lr.split(".")
    assert json.loads((out / "train_config.json").read_text())[section][key] == 0.5
    assert model_hash(out) != first_model
    assert (out / "notes.txt").read_text() == "mine"  # --force removes only what training wrote
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_rerun_on_another_base_model_or_an_unrecorded_run_is_refused(assets, tmp_path, capsys):
    config = write_config(assets, tmp_path)
    out = tmp_path / "exp"
    assert main(["train", "--config", config, "--no-progress", "train.max_steps=1"]) == 0
    other = save_tiny_whisper(tmp_path / "other_model", d_model=32, heads=2, ffn=64, seed=1)
    capsys.readouterr()
    assert main(["train", "--config", config, "--no-progress", "train.max_steps=1", f"model.name={other}"]) == 2
    assert "another run: input base_model; rerun" in capsys.readouterr().err

    (out / "train_identity.json").unlink()  # as a run of an older version left it
    assert main(["train", "--config", config, "--no-progress", "train.max_steps=1"]) == 2
    assert "recorded no identity" in capsys.readouterr().err


def test_output_dir_inside_an_input_is_refused(assets, tmp_path, capsys):
    model_dir, data = assets
    config = write_config(assets, tmp_path)
    assert main(["train", "--config", config, f"output_dir={data / 'exp'}"]) == 2
    assert "lies inside the input" in capsys.readouterr().err
    assert not (data / "exp").exists()
