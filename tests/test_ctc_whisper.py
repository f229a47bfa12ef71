"""WhisperEncoderCTC: heads, freezing, cached states, training on tones, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from ctc_fixtures import TEXTS, tiny_whisper_encoder, tone_audio, vocab, whisper_batch

from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC, ctc_param_groups
from pipeline.models.ctc_checkpoint import is_ctc_checkpoint, load_ctc_model, read_ctc_config, save_ctc_model
from pipeline.models.ctc_heads import CTCHead, HeadConfig, blank_bias
from pipeline.models.encoder import encode_trimmed
from pipeline.rescore.lm_weights import error_rates
from pipeline.testing.ctc import train_ctc_steps, warmup_lambda

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    voc = vocab()
    whisper, fe = tiny_whisper_encoder()
    return voc, fe, whisper_batch(fe, TEXTS, voc)


def _model(voc, kind="transformer", k=0, seed=0, **head):
    whisper, _ = tiny_whisper_encoder(seed=seed)
    torch.manual_seed(seed)
    hc = HeadConfig(kind=kind, dim=32, layers=1, heads=2, ffn=64, dropout=0.0, **head)
    return WhisperEncoderCTC(whisper, voc, WhisperCTCConfig(head=hc, trainable_top_layers=k))


@pytest.mark.parametrize("kind", ["linear", "transformer", "bilstm"])
@pytest.mark.parametrize("resample", [{}, {"upsample": 2}, {"downsample": 2}])
def test_head_shapes_and_padding_invariance(kind, resample):
    torch.manual_seed(0)
    head = CTCHead(16, 7, HeadConfig(kind=kind, dim=16, layers=1, heads=2, ffn=32, dropout=0.0, **resample)).eval()
    x = torch.randn(2, 9, 16)
    logits, lengths = head(x, torch.tensor([9, 5]))
    k_up, k_down = resample.get("upsample", 1), resample.get("downsample", 1)
    assert logits.dtype == torch.float32 and logits.shape[0] == 2 and logits.shape[2] == 7
    assert lengths.tolist() == [9 * k_up // k_down + (9 % k_down > 0), -(-5 * k_up // k_down)]
    alone, _ = head(x[1:, :5], torch.tensor([5]))  # the padded clip alone gives the same outputs
    n = int(lengths[1])
    assert torch.allclose(logits[1, :n], alone[0, :n], atol=1e-5)


def test_head_init_neutral_or_blank_prior():
    torch.manual_seed(0)
    neutral = CTCHead(16, 7, HeadConfig(kind="linear", dropout=0.0))
    p = neutral(torch.randn(1, 4, 16) * 20, torch.tensor([4]))[0].softmax(-1)
    assert p.max() < 0.3 and p.min() > 0.05  # large encoder states still start near uniform (1/7)
    prior = CTCHead(16, 7, HeadConfig(kind="linear", dropout=0.0, init_blank_prob=0.9))
    assert prior.out.bias[0].item() == pytest.approx(blank_bias(0.9, 7))
    assert torch.softmax(prior.out.bias, 0)[0].item() == pytest.approx(0.9)
    with pytest.raises(ValueError):
        HeadConfig(kind="conv").validate()


def test_freezing_options(data):
    voc, _, _ = data
    trainable = lambda m: {n.split(".")[0] + "." + n.split(".")[1] for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    frozen = _model(voc, k=0)
    assert all(not p.requires_grad for p in frozen.encoder.parameters())
    assert frozen.split_layer == 2
    top = _model(voc, k=1)
    names = {n for n, p in top.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.layers.1.") for n in names) and not any(n.startswith("encoder.layers.0.") for n in names)
    assert "encoder.layer_norm.weight" in names and "encoder.conv1.weight" not in names
    full = _model(voc, k=-1)
    assert "encoder.conv1" in trainable(full) and "encoder.embed_positions.weight" not in {
        n for n, p in full.named_parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="trainable_top_layers"):
        _model(voc, k=3)
    groups = ctc_param_groups(top, head_lr=1e-3, encoder_lr=1e-5, weight_decay=0.01)
    lrs = {(g["lr"], g["weight_decay"]) for g in groups}
    assert lrs == {(1e-3, 0.01), (1e-3, 0.0), (1e-5, 0.01), (1e-5, 0.0)}


@pytest.mark.parametrize("k", [0, 1])
def test_cached_states_give_the_same_output_as_features(data, k):
    voc, _, batch = data
    model = _model(voc, k=k).eval()
    with torch.no_grad():
        from_features = model(batch["features"], batch["feature_lengths"])
        states, lengths = model.encode_lower(batch["features"], batch["feature_lengths"])
        # the training cache's convention: pipeline.models.encoder.encode_trimmed(stop=split_layer)
        cached, _ = encode_trimmed(model.encoder, batch["features"], batch["feature_lengths"], stop=model.split_layer)
        from_states = model(hidden_states=cached, hidden_lengths=lengths)
    assert torch.allclose(states, cached)
    assert torch.equal(from_features.lengths, from_states.lengths)
    assert torch.allclose(from_features.logits, from_states.logits, atol=1e-5)


def test_output_frames_and_real_length(data):
    voc, fe, batch = data
    model = _model(voc)
    n = len(tone_audio(TEXTS[3]))
    with torch.no_grad():
        out = model(batch["features"], batch["feature_lengths"])
    assert model.output_frames(n) == int(out.lengths[3])  # 50 frames/s, not the 1500 of a 30 s window
    assert out.logits.shape[1] == int(out.lengths.max()) < 100


@pytest.mark.parametrize("kind,k", [("linear", -1), ("transformer", 0), ("bilstm", 1)])
def test_training_steps_decrease_the_loss(data, kind, k):
    voc, _, batch = data
    model = _model(voc, kind=kind, k=k).train()
    opt = torch.optim.AdamW(ctc_param_groups(model, 3e-3, 1e-3), lr=1e-3)
    losses = train_ctc_steps(model, [batch], opt, 25)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_trainable_encoder_learns_the_tone_alphabet(data):
    """Top layers + Transformer head, 120 steps: greedy output reproduces the transcripts."""
    voc, _, batch = data
    model = _model(voc, k=-1).train()
    opt = torch.optim.AdamW(ctc_param_groups(model, 1e-2, 3e-3), lr=1e-3)
    train_ctc_steps(model, [batch], opt, 120)
    model.eval()
    with torch.no_grad():
        hyps = model.greedy(model(**batch))
    assert error_rates(TEXTS, hyps)[1] < 0.2, hyps


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_training_step_is_finite(data, dtype):
    voc, _, batch = data
    model = _model(voc, k=1).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = train_ctc_steps(model, [batch], opt, 2, autocast_dtype=dtype)
    assert all(torch.isfinite(torch.tensor(losses)))
    with torch.autocast("cpu", dtype=dtype), torch.no_grad():
        out = model(**batch)
    assert out.logits.dtype == torch.float32 and out.loss.dtype == torch.float32


def test_save_and_reload_gives_same_vocab_and_outputs(data, tmp_path):
    voc, fe, batch = data
    model = _model(voc, k=1, upsample=2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_ctc_steps(model, [batch], opt, 3)
    model.eval()
    out_dir = save_ctc_model(model, tmp_path / "ckpt", feature_extractor=fe, step=3)
    assert {p.name for p in out_dir.iterdir()} >= {"model.safetensors", "vocab.json", "ctc_config.json",
                                                    "preprocessor_config.json"}
    assert is_ctc_checkpoint(out_dir) and not is_ctc_checkpoint(tmp_path)
    cfg = read_ctc_config(out_dir)
    assert cfg["kind"] == "whisper-encoder-ctc" and cfg["step"] == 3 and cfg["frames_per_second"] == 100
    reloaded, voc2 = load_ctc_model(out_dir)
    assert voc2 == voc and voc2.tokens == voc.tokens
    with torch.no_grad():
        a, b = model(**batch), reloaded(**batch)
    assert torch.equal(a.lengths, b.lengths)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert torch.allclose(a.loss, b.loss, atol=1e-6)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ctc_config.json"):
        load_ctc_model(tmp_path)
    (tmp_path / "ctc_config.json").write_text(json.dumps({"format": 9, "kind": "x"}))
    with pytest.raises(ValueError, match="ctc_config.json"):
        read_ctc_config(tmp_path)


def test_from_pretrained_whisper_keeps_only_the_encoder(tmp_path):
    """Through load_whisper (any name or directory it resolves), here a tiny saved Whisper."""
    from pipeline.testing.tiny import save_tiny_whisper

    path = save_tiny_whisper(tmp_path / "tiny")
    voc = vocab()
    model, processor = WhisperEncoderCTC.from_pretrained_whisper(path, voc)
    assert model.config.base_model == str(path)
    assert not any("decoder" in n for n, _ in model.named_parameters())
    feats = processor.feature_extractor(tone_audio("ab"), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = model(feats[..., :40], torch.tensor([40]))
    assert out.logits.shape == (1, 20, len(voc))


def test_padded_batch_equals_clips_alone(data):
    voc, _, batch = data
    model = _model(voc, k=1).eval()
    with torch.no_grad():
        out = model(batch["features"], batch["feature_lengths"])
        for i in (0, 3):
            n = int(batch["feature_lengths"][i])
            alone = model(batch["features"][i : i + 1, :, :n], batch["feature_lengths"][i : i + 1])
            m = int(out.lengths[i])
            assert m == int(alone.lengths[0])
            assert torch.allclose(out.logits[i, :m], alone.logits[0], atol=1e-4)


def test_warmup_lambda():
    f = warmup_lambda(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0) and f(500) == pytest.approx(0.0)
