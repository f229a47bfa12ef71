"""The trainer's dev evaluation is the decode stage + score stage run on the exported best/."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.config import config_from_dict  # noqa: E402
from pipeline.decode.hyps import read_hyps  # noqa: E402
from pipeline.score.scorer import score  # noqa: E402
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus  # noqa: E402
from pipeline.train.trainer import Trainer  # noqa: E402


def save_trapped_tiny_whisper(out_dir):
    """A tiny Whisper in which one token the corpus never uses ("z") wins every unrestricted argmax.

    Its (tied) embedding row is aligned with the decoder's final layer-norm bias, which
    every decoder state carries. Training with ``restrict_vocab`` never sees the row, so
    only a decoder that applies the restriction, as the exported ``best/`` does, avoids it.
    """
    model, processor = build_tiny_whisper(begin_suppress=True)
    trap = processor.tokenizer.convert_tokens_to_ids("z")
    with torch.no_grad():
        bias = torch.randn(model.config.d_model, generator=torch.Generator().manual_seed(1))
        model.model.decoder.layer_norm.bias.copy_(bias)
        model.get_output_embeddings().weight[trap] = 10 * bias / bias.norm() ** 2
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("devdecode")
    model_dir = save_trapped_tiny_whisper(root / "model")
    return model_dir, write_tiny_corpus(root / "data", n_train=12, n_dev=5)


def make_cfg(assets, out, **train):
    model_dir, data = assets
    t = {"lr": 3e-3, "warmup_steps": 1, "max_steps": 6, "batch_seconds": 4.0, "eval_every": 3,
         "log_every": 1, "threads": 1, **train}  # fmt: skip
    return config_from_dict(
        {
            "data": {"lang": "sa", "manifests_dir": str(data)},
            "model": {"name": str(model_dir)},
            "train": t,
            "augment": {"speed_perturb": [1.0]},
            # batch 2 < 5 dev clips: several batches, clips of different lengths padded together.
            "decode": {"batch_size": 2},
            "output_dir": str(out),
        }
    )


@pytest.mark.parametrize(
    "train",
    [
        {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "restrict_vocab": True},
        {"regime": "lora", "lr": 5e-2, "restrict_vocab": True,
         "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj", "out_proj"]}},
        {"regime": "full", "trimmed_encoder": False},
    ],
    ids=["cached-restricted", "lora-restricted", "full-padded"],
)
def test_dev_decoding_equals_decode_stage_on_best(assets, tmp_path, train):
    from pipeline.cli import main

    _, data = assets
    out = tmp_path / "exp"
    summary = Trainer(make_cfg(assets, out, **train), progress=False).train()
    best_step = summary["best_step"]
    assert best_step in (3, 6)
    logged = {r["step"]: r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())}
    dev_hyps = {h.id: h.text for h in read_hyps(out / "dev_hyps" / f"step-{best_step:07d}.jsonl")}

    hyps_path = tmp_path / "decode" / "hyps.jsonl"
    assert main(["decode", "--model", str(out / "best"), "--manifest", str(data / "dev.jsonl"),
                 "--out", str(hyps_path), "--batch-size", "2"]) == 0  # fmt: skip
    decoded = {h.id: h.text for h in read_hyps(hyps_path)}
    assert len(decoded) == 5 and any(decoded.values()), decoded  # something to compare, not all empty
    if train.get("restrict_vocab"):
        assert not any("z" in t for t in decoded.values()), decoded
    assert dev_hyps == decoded

    results = score(data / "dev.jsonl", hyps_path, tmp_path / "decode")
    assert logged[best_step]["dev_cer"] == pytest.approx(results.cer, abs=1e-12)
    assert logged[best_step]["dev_wer"] == pytest.approx(results.wer, abs=1e-12)
    info = json.loads((out / "best" / "asr_adapt.json").read_text())
    assert info["dev_cer"] == pytest.approx(results.cer, abs=1e-12)


def test_dev_evaluation_leaves_the_training_model_as_it_was(assets, tmp_path):
    out = tmp_path / "exp"
    tr = Trainer(make_cfg(assets, out, regime="cached-encoder", restrict_vocab=True, max_steps=1), progress=False)
    tr.setup()
    model = tr.unwrapped.model
    suppress = model.generation_config.suppress_tokens
    adapt = getattr(model, "asr_adapt", None)
    model.train()
    dev = tr._evaluate()
    assert dev.n == 5 and 0 <= dev.cer
    assert model.training and model.generation_config.suppress_tokens == suppress
    assert getattr(model, "asr_adapt", None) == adapt
