"""wav2vec2 / XLS-R / MMS CTC on tiny locally built checkpoints (no hub)."""

from __future__ import annotations

import functools
import logging
import shutil

import pytest
import torch
from ctc_fixtures import TEXTS, tiny_wav2vec2_config, tone_audio, vocab

from pipeline.models.ctc import ctc_param_groups
from pipeline.models.ctc_checkpoint import load_ctc_model, read_ctc_config, save_ctc_model
from pipeline.models.ctc_loss import pad_labels
from pipeline.models.ctc_wav2vec2 import (
    load_wav2vec2_ctc,
    uses_adapters,
    wav2vec2_batch,
    wav2vec2_ctc_forward,
    wav2vec2_output_frames,
)
from pipeline.testing.ctc import train_ctc_steps


@pytest.fixture(autouse=True)
def _quiet_and_one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """An XLS-R-like pretraining checkpoint, a CTC checkpoint with a foreign 10-way head, an MMS-like one."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

    root = tmp_path_factory.mktemp("w2v")
    torch.manual_seed(0)
    Wav2Vec2ForPreTraining(tiny_wav2vec2_config()).save_pretrained(root / "xlsr")
    Wav2Vec2ForCTC(tiny_wav2vec2_config(vocab_size=10)).save_pretrained(root / "ctc10")
    mms = Wav2Vec2ForCTC(tiny_wav2vec2_config(vocab_size=10, adapter_attn_dim=8))
    mms.save_pretrained(root / "mms")
    return root


def _batch(model, voc, texts=TEXTS):
    b = wav2vec2_batch(model, [tone_audio(t) for t in texts])
    b["labels"], b["label_lengths"] = pad_labels([voc.encode(t) for t in texts])
    return b


@pytest.mark.parametrize("name", ["xlsr", "ctc10"])
def test_new_head_sized_to_the_vocabulary(checkpoints, name):
    voc = vocab()
    model = load_wav2vec2_ctc(checkpoints / name, voc)
    assert model.lm_head.out_features == len(voc) == model.config.vocab_size
    assert model.config.pad_token_id == voc.blank == 0
    assert model.config.ctc_zero_infinity and model.config.bos_token_id is None
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    assert model.lm_head.weight.requires_grad and model.wav2vec2.encoder.layers[0].attention.q_proj.weight.requires_grad
    assert model.lm_head.bias.abs().sum() == 0  # a new head, not a copy of the old one
    assert not uses_adapters(model)


def test_same_size_old_head_is_still_replaced(checkpoints, tmp_path):
    """A foreign head of the same size as our vocabulary would be loaded silently: it must be re-initialised."""
    from transformers import Wav2Vec2ForCTC

    voc = vocab()
    old = Wav2Vec2ForCTC(tiny_wav2vec2_config(vocab_size=len(voc)))
    torch.nn.init.constant_(old.lm_head.bias, 3.0)
    old.save_pretrained(tmp_path / "same")
    model = load_wav2vec2_ctc(tmp_path / "same", voc)
    assert model.lm_head.bias.abs().sum() == 0


def test_training_steps_decrease_the_loss(checkpoints):
    voc = vocab()
    torch.manual_seed(0)
    model = load_wav2vec2_ctc(checkpoints / "xlsr", voc).train()
    batch = _batch(model, voc)
    assert "attention_mask" in batch  # XLS-R layout (layer norm) takes a mask
    frames = [wav2vec2_output_frames(model, len(tone_audio(t))) for t in TEXTS]
    opt = torch.optim.AdamW(ctc_param_groups(model, 1e-2, 3e-3), lr=1e-3)
    losses = train_ctc_steps(functools.partial(wav2vec2_ctc_forward, model), [batch], opt, 30)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    with torch.no_grad():
        out = wav2vec2_ctc_forward(model.eval(), **batch)
    assert out.lengths.tolist() == frames and out.logits.dtype == torch.float32


def test_mms_adapter_training_touches_only_adapters_and_head(checkpoints, tmp_path):
    from transformers import Wav2Vec2ForCTC

    voc = vocab()
    with pytest.raises(ValueError, match="no MMS adapters"):
        load_wav2vec2_ctc(checkpoints / "xlsr", voc, adapter="on")
    torch.manual_seed(0)
    model = load_wav2vec2_ctc(checkpoints / "mms", voc, target_lang="san")
    assert uses_adapters(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter_layer." in n or n.startswith("lm_head.") for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = _batch(model, voc)
    opt = torch.optim.AdamW(ctc_param_groups(model, 1e-2, 1e-5), lr=1e-3)
    losses = train_ctc_steps(functools.partial(wav2vec2_ctc_forward, model.train()), [batch], opt, 10)
    assert losses[-1] < losses[0]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable

    # The saved adapter file loads into the ORIGINAL checkpoint with transformers' load_adapter.
    out = save_ctc_model(model.eval(), tmp_path / "ft")
    assert read_ctc_config(out)["adapter_file"] == "adapter.san.safetensors"
    base_dir = tmp_path / "mms_copy"
    shutil.copytree(checkpoints / "mms", base_dir)
    shutil.copy(out / "adapter.san.safetensors", base_dir)
    base = Wav2Vec2ForCTC.from_pretrained(str(base_dir)).eval()
    base.load_adapter("san")
    with torch.no_grad():
        a = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
        b = base(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_save_and_reload_gives_same_vocab_and_outputs(checkpoints, tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    voc = vocab()
    torch.manual_seed(0)
    model = load_wav2vec2_ctc(checkpoints / "ctc10", voc).train()
    batch = _batch(model, voc)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_ctc_steps(functools.partial(wav2vec2_ctc_forward, model), [batch], opt, 3)
    out = save_ctc_model(model.eval(), tmp_path / "ckpt", feature_extractor=Wav2Vec2FeatureExtractor())
    assert read_ctc_config(out)["kind"] == "wav2vec2-ctc"
    reloaded, voc2 = load_ctc_model(out)
    assert voc2 == voc and reloaded.ctc_vocab == voc
    with torch.no_grad():
        a = wav2vec2_ctc_forward(model, **batch)
        b = wav2vec2_ctc_forward(reloaded, **batch)
    assert torch.allclose(a.logits, b.logits, atol=1e-6) and torch.allclose(a.loss, b.loss, atol=1e-6)
    # a vocab.json that disagrees with the weights is refused
    (out / "vocab.json").write_text('{"<pad>": 0, "a": 1}')
    with pytest.raises(ValueError, match="vocab_size"):
        load_ctc_model(out)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_wav2vec2_ctc(tmp_path, vocab())
