"""CTC training and decoding through the CLI: tiny Whisper encoder, generated tone corpus."""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from data_prep.manifest import Utterance, read_jsonl, read_manifest, write_jsonl  # noqa: E402
from data_prep.outputs import ResumeError  # noqa: E402
from data_prep.vocab import build_vocab, write_vocab  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.config import config_from_dict  # noqa: E402
from pipeline.decode.hyps import read_hyps  # noqa: E402
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus  # noqa: E402
from pipeline.train.checkpoint import list_checkpoints  # noqa: E402
from pipeline.train.ctc_trainer import CTCTrainer  # noqa: E402

LONG_ID = "train-long"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ctc_train")
    model_dir = save_tiny_whisper(root / "model", d_model=32, heads=2, ffn=64)
    data = write_tiny_corpus(root / "data", n_train=10, n_dev=3)
    train = read_manifest(data / "train.jsonl")
    write_vocab(data / "vocab.json", build_vocab(train))
    # A 0.3 s clip "saying" 40 characters: no CTC alignment exists (15 encoder frames).
    long = Utterance.from_json({**train[0].to_json(), "id": LONG_ID, "duration": 0.3, "text": "ab ba " * 7})
    write_jsonl(data / "train.jsonl", [*train, long])
    return model_dir, data


def recipe(assets, out, **train) -> dict:
    model_dir, data = assets
    return {
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"type": "ctc", "name": str(model_dir)},
        "train": {"warmup_steps": 2, "max_steps": 8, "batch_seconds": 3.0, "eval_every": 4, "checkpoint_every": 4,
                  "keep_checkpoints": 1, "log_every": 1, "threads": 1, "schedule": "constant", **train},
        "augment": {"speed_perturb": [0.9, 1.0, 1.1], "time_masks": 1},
        "decode": {"batch_size": 4},
        "ctc": {"head": "transformer", "head_dim": 32, "head_layers": 1, "head_heads": 2, "head_ffn": 64,
                "head_dropout": 0.1, "trainable_top_layers": 1, "head_lr": 3e-3, "encoder_lr": 1e-3,
                "lm_order": 2, "lm_alphas": [0.0, 0.5], "lm_betas": [0.0, 1.0], "lm_beam_width": 4},
        "output_dir": str(out),
    }  # fmt: skip


def test_train_decode_lm_cli(assets, tmp_path):
    _, data = assets
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(recipe(assets, tmp_path / "exp")), encoding="utf-8")
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    exp = tmp_path / "exp"
    losses = [r["train_loss"] for _, r in read_jsonl(exp / "log.jsonl")]
    assert len(losses) == 8
    assert sum(losses[-2:]) < sum(losses[:2])
    assert [r["dev_cer"] is not None for _, r in read_jsonl(exp / "log.jsonl")].count(True) == 2
    rejects = [r["id"] for _, r in read_jsonl(exp / "ctc_rejects.jsonl")]
    assert rejects == [LONG_ID]
    best = exp / "best"
    info = json.loads((best / "ctc_config.json").read_text())
    assert info["kind"] == "whisper-encoder-ctc" and info["step"] in (4, 8)
    assert (best / "preprocessor_config.json").is_file()
    dev_ids = [u.id for u in read_manifest(data / "dev.jsonl")]

    hyps = tmp_path / "hyps.jsonl"
    assert main(["decode", "--model", str(best), "--manifest", str(data / "dev.jsonl"), "--out", str(hyps)]) == 0
    assert [h.id for h in read_hyps(hyps)] == dev_ids
    # The decode stage's greedy output is the trainer's dev output of the same weights.
    step_hyps = exp / "dev_hyps" / f"step-{info['step']:07d}.jsonl"
    assert [h.text for h in read_hyps(hyps)] == [h.text for h in read_hyps(step_hyps)]

    lm = tmp_path / "lm"
    # Train manifest, grid and beam from the recipe config (ctc.lm_*); never the dev text.
    assert main(["lm", "--config", str(config), "--out", str(lm), "--tune-on", str(data / "dev.jsonl"),
                 "--model", str(best)]) == 0  # fmt: skip
    settings = json.loads((lm / "lm.json").read_text())
    assert (lm / "lm.arpa").is_file() and len(settings["grid"]) == 4 and settings["tuned_on"]
    assert settings["order"] == 2 and settings["beam_width"] == 4
    assert main(["lm", "--train", str(data / "dev.jsonl"), "--out", str(tmp_path / "bad")]) == 2  # dev text refused
    lm_hyps = tmp_path / "lm_hyps.jsonl"
    assert main(["decode", "--model", str(best), "--manifest", str(data / "dev.jsonl"), "--out", str(lm_hyps),
                 "--lm", str(lm)]) == 0  # fmt: skip
    assert [h.id for h in read_hyps(lm_hyps)] == dev_ids


def test_resume_continues_at_the_same_step(assets, tmp_path):
    a = CTCTrainer(config_from_dict(recipe(assets, tmp_path / "a", max_steps=6, eval_every=0, checkpoint_every=3)),
                   progress=False)  # fmt: skip
    summary = a.train()
    assert summary["step"] == 6 and summary["label_too_long"] == 1
    assert summary["blank_collapse"]  # 6 steps of a random tiny model: dev outputs are all blank, and it is said
    cfg_b = config_from_dict(recipe(assets, tmp_path / "b", max_steps=6, eval_every=3, checkpoint_every=3))
    assert CTCTrainer(cfg_b, progress=False).train(until_step=4)["interrupted"]  # killed after the step-3 checkpoint
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [3]
    b = CTCTrainer(cfg_b, progress=False).setup()
    assert b.step == 3
    assert [r.step for r in b.monitor.history] == [3]  # the blank-collapse monitor resumes too
    assert b.train()["step"] == 6
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(pa, pb), name
    steps = [r["step"] for _, r in read_jsonl(tmp_path / "b" / "log.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]
    # The same output_dir with one transcript relabeled: the finished run is not taken for the new one.
    other = tmp_path / "other_data"
    shutil.copytree(assets[1], other)
    rows = read_manifest(other / "train.jsonl")
    write_jsonl(other / "train.jsonl", [Utterance.from_json({**rows[0].to_json(), "text": "ba ab"}), *rows[1:]])
    cfg_c = config_from_dict(recipe((assets[0], other), tmp_path / "b", max_steps=6, eval_every=3, checkpoint_every=3))
    with pytest.raises(ResumeError, match="another run: input train; rerun"):
        CTCTrainer(cfg_c, progress=False).setup()


def test_continues_a_trained_ctc_checkpoint(assets, tmp_path):
    """model.name = a CTC checkpoint (self-training): the run starts from its head and layers, not a new head."""
    first = CTCTrainer(config_from_dict(recipe(assets, tmp_path / "a", max_steps=4, eval_every=0)), progress=False)
    first.train()
    best = tmp_path / "a" / "best"
    cfg = recipe(assets, tmp_path / "b", max_steps=2, eval_every=0)
    cfg["model"]["name"] = str(best)
    cfg["ctc"]["head_dim"] = 48  # the checkpoint's head shape wins over the config's
    again = CTCTrainer(config_from_dict(cfg), progress=False).setup()
    assert again.step == 0 and again.model.config.base_model == first.model.config.base_model
    for (name, pa), pb in zip(first.model.named_parameters(), again.model.parameters()):
        assert torch.equal(pa, pb), name
    assert again.train()["step"] == 2
    trained = [n for n, p in again.model.named_parameters() if p.requires_grad]
    assert any(n.startswith("head.") for n in trained) and any(n.startswith("encoder.layers.") for n in trained)
    # Another character set: refused, naming the checkpoint
    other = tmp_path / "other_data"
    shutil.copytree(assets[1], other)
    (other / "vocab.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "a": 3}), encoding="utf-8")
    cfg = recipe((assets[0], other), tmp_path / "c", max_steps=1)
    cfg["model"]["name"] = str(best)
    with pytest.raises(ValueError, match="differs"):
        CTCTrainer(config_from_dict(cfg), progress=False).setup()


def test_rejects_ctc_vocab_mismatch_clearly(assets, tmp_path):
    cfg = config_from_dict(recipe(assets, tmp_path / "x", **{"max_steps": 1}))
    cfg.data.manifests_dir = str(tmp_path)  # no vocab.json there
    with pytest.raises(ValueError, match="vocab.json"):
        CTCTrainer(cfg, progress=False).setup()


def test_wav2vec2_encoder_trains_and_decodes(assets, tmp_path):
    from ctc_fixtures import tiny_wav2vec2_config
    from transformers import Wav2Vec2ForCTC

    _, data = assets
    torch.manual_seed(0)
    w2v = tmp_path / "w2v"
    Wav2Vec2ForCTC(tiny_wav2vec2_config()).save_pretrained(str(w2v))
    cfg = recipe(assets, tmp_path / "exp", max_steps=3, eval_every=0, checkpoint_every=0)
    cfg["ctc"]["encoder"] = str(w2v)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    best = tmp_path / "exp" / "best"
    assert json.loads((best / "ctc_config.json").read_text())["kind"] == "wav2vec2-ctc"
    hyps = tmp_path / "hyps.jsonl"
    assert main(["decode", "--model", str(best), "--manifest", str(data / "dev.jsonl"), "--out", str(hyps)]) == 0
    assert [h.id for h in read_hyps(hyps)] == [u.id for u in read_manifest(data / "dev.jsonl")]


def test_decode_stage_matches_the_model_clip_by_clip(assets, tmp_path):
    """The batched decode path (features, padding, greedy) gives each clip's own greedy text."""
    from ctc_fixtures import tiny_whisper_encoder

    from data_prep.audio import load_audio
    from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import save_ctc_model
    from pipeline.models.ctc_heads import HeadConfig
    from pipeline.models.ctc_vocab import CTCVocab
    from pipeline.models.encoder import mel_length

    _, data = assets
    encoder, fe = tiny_whisper_encoder(seed=1)
    model = WhisperEncoderCTC(encoder, CTCVocab.load(data / "vocab.json"),
                              WhisperCTCConfig(head=HeadConfig(kind="linear"))).eval()  # fmt: skip
    save_ctc_model(model, tmp_path / "m", fe)
    dev = read_manifest(data / "dev.jsonl")
    expected = []
    for u in dev:
        wave = load_audio(u.audio_path(data), u.offset, u.duration or None)
        n = mel_length(len(wave))
        feats = fe(wave, sampling_rate=16000, return_tensors="pt").input_features[..., :n]
        with torch.no_grad():
            expected.append(model.greedy(model(features=feats))[0])
    assert any(expected)  # a random head emits characters: the comparison below means something
    hyps = tmp_path / "hyps.jsonl"
    args = ["decode", "--model", str(tmp_path / "m"), "--manifest", str(data / "dev.jsonl"), "--out", str(hyps),
            "--batch-size", "3"]  # fmt: skip
    assert main(args) == 0
    assert [h.text for h in read_hyps(hyps)] == expected
    assert main([*args, "--lm", str(tmp_path / "missing.arpa")]) == 2  # a clear error, not a traceback
