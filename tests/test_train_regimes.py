"""Every training regime learns on a tiny model; vocabulary options keep a plain Whisper."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pipeline.config import config_from_dict
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus
from pipeline.train.trainer import Trainer


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("regimes")
    model_dir = save_tiny_whisper(root / "model")
    data = write_tiny_corpus(root / "data", n_train=12, n_dev=3)
    return model_dir, data


def make_cfg(assets, out, **train):
    model_dir, data = assets
    t = {"lr": 3e-3, "warmup_steps": 1, "max_steps": 10, "batch_seconds": 4.0, "eval_every": 0,
         "log_every": 1, "threads": 1, **train}  # fmt: skip
    return config_from_dict(
        {
            "data": {"lang": "sa", "manifests_dir": str(data)},
            "model": {"name": str(model_dir)},
            "train": t,
            "augment": {"speed_perturb": [0.9, 1.0, 1.1], "time_masks": 1},
            "decode": {"batch_size": 4},
            "output_dir": str(out),
        }
    )


def losses(out):
    return [json.loads(line)["train_loss"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "train",
    [
        {"regime": "full"},
        {"regime": "freeze-encoder", "encoder_trainable_top_layers": 1},
        {"regime": "cached-encoder"},
        {"regime": "cached-encoder", "encoder_trainable_top_layers": 1},
        {"regime": "lora", "lr": 5e-2, "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj", "out_proj"]}},
        {"regime": "full", "trimmed_encoder": False, "max_steps": 6},
    ],
    ids=["full", "freeze-top1", "cached-k0", "cached-k1", "lora", "full-padded"],
)
def test_loss_decreases(assets, tmp_path, train):
    out = tmp_path / "exp"
    summary = Trainer(make_cfg(assets, out, **train), progress=False).train()
    assert summary["step"] == train.get("max_steps", 10)
    loss = losses(out)
    assert len(loss) == summary["step"]
    # LoRA on a random tiny model only moves attention, so its loss falls less.
    factor = 0.95 if train["regime"] == "lora" else 0.85
    assert sum(loss[-2:]) / 2 < factor * sum(loss[:2]) / 2, loss
    best = out / "best"
    info = json.loads((best / "asr_adapt.json").read_text())
    assert info["regime"] == train["regime"]
    assert info["encoder_input"] == ("padded" if train.get("trimmed_encoder") is False else "trimmed")
    assert (out / "curve.png").stat().st_size > 1000
    if train["regime"] == "lora":  # merged on export: a plain Whisper state dict
        assert not any("lora" in k for k in load_file(str(best / "model.safetensors")))


def test_frozen_lower_layers_do_not_change(assets, tmp_path):
    out = tmp_path / "exp"
    tr = Trainer(make_cfg(assets, out, regime="cached-encoder", encoder_trainable_top_layers=1, max_steps=3),
                 progress=False).setup()  # fmt: skip
    whisper = tr.unwrapped.whisper
    before = {k: v.clone() for k, v in whisper.state_dict().items()}
    tr.train()
    after = whisper.state_dict()
    assert torch.equal(before["model.encoder.layers.0.fc1.weight"], after["model.encoder.layers.0.fc1.weight"])
    assert not torch.equal(before["model.encoder.layers.1.fc1.weight"], after["model.encoder.layers.1.fc1.weight"])
    assert not torch.equal(before["model.decoder.layers.0.fc1.weight"], after["model.decoder.layers.0.fc1.weight"])


def test_restrict_vocab_and_frozen_embeddings(assets, tmp_path):
    out = tmp_path / "exp"
    tr = Trainer(make_cfg(assets, out, regime="cached-encoder", restrict_vocab=True), progress=False).setup()
    emb = tr.unwrapped.whisper.get_input_embeddings().weight
    before = emb.detach().clone()
    tr.train()
    allowed = set(tr.allowed_ids)
    others = [i for i in range(emb.shape[0]) if i not in allowed]
    assert len(allowed) < 30 < len(others)
    assert torch.equal(emb.detach()[others], before[others])  # untouched rows stay as they were
    assert not torch.equal(emb.detach()[sorted(allowed)], before[sorted(allowed)])
    loss = losses(out)
    assert loss[-1] < 0.8 * loss[0]
    gen = json.loads((out / "best" / "generation_config.json").read_text())
    assert set(gen["suppress_tokens"]) == set(others)

    out2 = tmp_path / "exp2"
    tr2 = Trainer(make_cfg(assets, out2, regime="full", freeze_token_embeddings=True, max_steps=3), progress=False)
    tr2.setup()
    emb2 = tr2.unwrapped.whisper.get_input_embeddings().weight
    before2 = emb2.detach().clone()
    tr2.train()
    assert torch.equal(emb2.detach(), before2)
    assert emb2.data_ptr() == tr2.unwrapped.whisper.get_output_embeddings().weight.data_ptr()  # still tied


def test_cli_run_and_early_stopping(assets, tmp_path, capsys):
    import yaml

    from pipeline.cli import main

    model_dir, data = assets
    cfg = {
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"name": str(model_dir)},
        # A learning rate this small cannot change the dev CER: patience 1 stops at the 2nd evaluation.
        "train": {"regime": "cached-encoder", "lr": 1e-12, "warmup_steps": 0, "max_steps": 20, "eval_every": 2,
                  "patience": 1, "batch_seconds": 4.0, "threads": 1},  # fmt: skip
        "output_dir": str(tmp_path / "exp"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--no-progress", "train.log_every=1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stopped_early"] and summary["step"] == 4 and summary["best_step"] == 2
    records = [json.loads(x) for x in (tmp_path / "exp" / "log.jsonl").read_text().splitlines()]
    assert [r["dev_cer"] is not None for r in records] == [False, True, False, True]
    assert all(r["samples_per_s"] > 0 and r["elapsed_s"] >= 0 for r in records)
    assert main(["train", "--config", str(path), "train.bogus=1"]) == 2
    assert "unknown key 'train.bogus'" in capsys.readouterr().err


def _module_and_batch(label_smoothing: float, allowed_ids=None):
    from pipeline.testing.tiny import build_tiny_whisper
    from pipeline.train.regimes import Seq2SeqTrainModule

    model, _ = build_tiny_whisper()
    module = Seq2SeqTrainModule(model, split=0, lower_frozen=False, allowed_ids=allowed_ids,
                                label_smoothing=label_smoothing)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor(allowed_ids or list(range(model.config.vocab_size)))
    tokens = ids[torch.randint(len(ids), (2, 7), generator=g)]
    targets = tokens.clone()
    targets[1, 5:] = -100  # padding is ignored
    batch = {"decoder_input_ids": tokens, "targets": targets, "lengths": torch.tensor([20, 14]),
             "states": torch.randn(2, 20, model.config.d_model, generator=g)}  # fmt: skip
    return module, batch


@pytest.mark.parametrize("allowed", [None, [3, 5, 8, 13, 21, 34]], ids=["full-vocab", "restricted"])
def test_label_smoothing_spreads_over_the_softmax_classes(allowed):
    import math

    loss = {}
    for eps in (0.0, 0.1, 1.0):
        module, batch = _module_and_batch(eps, allowed)
        module.eval()
        with torch.no_grad():
            loss[eps] = float(module(**batch))
    # mixture of the one-hot and the uniform target: linear in eps
    assert loss[0.1] == pytest.approx(0.9 * loss[0.0] + 0.1 * loss[1.0], rel=1e-5)
    # all mass uniform over K classes: mean(-log p) >= log K (equality only for a uniform p)
    classes = len(allowed) if allowed else module.whisper.config.vocab_size
    assert math.log(classes) <= loss[1.0] < math.log(classes) + 1.0


def test_dropout_is_set_everywhere_and_only_acts_in_training(assets, tmp_path):
    from pipeline.train.regimes import set_dropout

    module, batch = _module_and_batch(0.0)
    module.eval()
    with torch.no_grad():
        clean = float(module(**batch))
    set_dropout(module.model, 0.3)
    rates = [m.dropout for m in module.model.modules() if isinstance(getattr(m, "dropout", None), float)]
    assert len(rates) > 10 and set(rates) == {0.3}
    assert module.whisper.config.dropout == module.whisper.config.attention_dropout == 0.3
    with torch.no_grad():
        assert float(module(**batch)) == clean  # eval mode: no dropout
        module.train()
        torch.manual_seed(1)
        a = float(module(**batch))
        torch.manual_seed(2)
        b = float(module(**batch))
    assert a != b and a != clean

    out = tmp_path / "exp"  # the trainer applies both options and still learns
    summary = Trainer(make_cfg(assets, out, regime="cached-encoder", dropout=0.1, label_smoothing=0.1),
                      progress=False).train()  # fmt: skip
    loss = losses(out)
    assert summary["step"] == 10 and loss[-1] < 0.9 * loss[0]
    assert json.loads((out / "best" / "config.json").read_text())["dropout"] == 0.1


def test_joint_ctc_trains_a_character_head_on_the_adapted_encoder(assets, tmp_path):
    from pipeline.models.ctc_loss import ctc_loss
    from pipeline.train.data import collate

    _, data = assets
    write_tiny_char_vocab(data)
    out = tmp_path / "exp"
    tr = Trainer(make_cfg(assets, out, regime="cached-encoder", encoder_trainable_top_layers=1, ctc_weight=0.5,
                          max_steps=12), progress=False).setup()  # fmt: skip
    module = tr.unwrapped
    assert module.ctc_head.out.out_features == len(tr.ctc_vocab) == 3 + 2  # <pad> <unk> | a b
    ex = tr.train_ex[0]
    assert tuple(ex.ctc_labels) == tuple(tr.ctc_vocab.encode(ex.utt.text))
    from pipeline.train.data import Item

    batch = collate([tr.parts.train_set[Item(i, 1.0, 0)] for i in range(4)], pad_id=tr.labels.eot)
    assert batch["ctc_labels"].shape[0] == 4 and batch["ctc_lengths"].tolist() == [
        len(tr.train_ex[i].ctc_labels) for i in range(4)
    ]

    def ctc_of_batch() -> float:
        with torch.no_grad():
            hidden, lengths = module.encode(None, batch["states"], batch["lengths"])
            logits, out_lengths = module.ctc_head(hidden, lengths)
            return float(ctc_loss(logits, out_lengths, batch["ctc_labels"], batch["ctc_lengths"]))

    before = ctc_of_batch()
    head_before = module.ctc_head.out.weight.detach().clone()
    tr.train()
    assert ctc_of_batch() < 0.7 * before  # the head (and the top encoder layer) learned to align characters
    assert not torch.equal(module.ctc_head.out.weight.detach(), head_before)
    # The head is a training aid: best/ stays a plain Whisper state dict.
    assert not any("ctc" in k for k in load_file(str(out / "best" / "model.safetensors")))
    assert (out / "checkpoints").is_dir() and list((out / "checkpoints").glob("step-*/heads.safetensors"))

    # best/ctc/ is a CTC checkpoint of the same encoder + head: its logits are the training module's.
    from pipeline.models.ctc_checkpoint import load_ctc_model
    from pipeline.train.data import FeatureDataset

    ctc_model, vocab = load_ctc_model(out / "best" / "ctc")
    assert vocab == tr.ctc_vocab
    sample = FeatureDataset(tr.train_ex, tr.processor.feature_extractor, None, 0)[Item(0, 1.0, 0)]
    feats, n = sample["features"][None], torch.tensor([sample["length"]])
    module.eval()
    with torch.no_grad():
        hidden, lengths = module.encode(feats, None, n)
        expected, _ = module.ctc_head(hidden, lengths)
        got = ctc_model(feats, n).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    # A run that continues from best/ (self-training) continues its CTC head too.
    cfg2 = make_cfg(assets, tmp_path / "exp2", regime="cached-encoder", encoder_trainable_top_layers=1, ctc_weight=0.5)
    cfg2.model.name = str(out / "best")
    tr2 = Trainer(cfg2, progress=False).setup()
    assert torch.equal(tr2.unwrapped.ctc_head.out.weight, ctc_model.head.out.weight)


def test_joint_ctc_needs_the_character_vocabulary(assets, tmp_path):
    model_dir, data = assets
    cfg = make_cfg(assets, tmp_path / "exp", ctc_weight=0.3)
    cfg.data.manifests_dir = str(tmp_path / "nowhere")
    cfg.data.train = str(data / "train.jsonl")
    with pytest.raises(Exception, match="vocab.json"):
        Trainer(cfg, progress=False).setup()
