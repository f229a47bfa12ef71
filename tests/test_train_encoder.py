"""Trimmed Whisper encoder, the cross-attention padding mask, and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.augment import add_noise, spec_augment, speed_perturb
from pipeline.models.encoder import (
    CrossAttentionMask,
    encode_for_decoder,
    encode_trimmed,
    finish_encoder,
    generate_trimmed,
    mel_length,
)
from pipeline.testing.tiny import build_tiny_whisper


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    model, processor = build_tiny_whisper(seed=1)
    return model, processor


def test_mel_length():
    assert mel_length(16000) == 100
    assert mel_length(16001) == 101
    assert mel_length(16000 * 40) == 3000  # capped at the 30 s window


def test_full_window_matches_transformers(tiny):
    model, _ = tiny
    enc = model.model.encoder
    feats = torch.randn(2, 80, 3000)
    with torch.no_grad():
        ref = enc(feats).last_hidden_state
        ours, lengths = encode_trimmed(enc, feats, torch.tensor([3000, 3000]))
    assert lengths.tolist() == [1500, 1500]
    assert torch.allclose(ref, ours, atol=1e-5)


def test_padded_batch_equals_single_clips(tiny):
    model, _ = tiny
    enc = model.model.encoder
    torch.manual_seed(0)
    feats = torch.randn(3, 80, 3000)
    lens = torch.tensor([401, 250, 37])
    with torch.no_grad():
        batch, enc_lens = encode_trimmed(enc, feats, lens)
        assert enc_lens.tolist() == [201, 125, 19]
        for i in range(3):
            single, _ = encode_trimmed(enc, feats[i : i + 1, :, : lens[i]], lens[i : i + 1])
            assert torch.allclose(batch[i, : enc_lens[i]], single[0], atol=1e-5)
        # Split at a layer and finish later (the cached-encoder path) gives the same states.
        lower, _ = encode_trimmed(enc, feats, lens, stop=1)
        top = finish_encoder(enc, lower, enc_lens, start=1)
    for i in range(3):
        assert torch.allclose(top[i, : enc_lens[i]], batch[i, : enc_lens[i]], atol=1e-5)


def test_cross_attention_mask_padded_equals_unpadded(tiny):
    model, processor = tiny
    torch.manual_seed(0)
    feats = torch.randn(3, 80, 3000)
    lens = torch.tensor([500, 180, 64])
    sot = model.generation_config.decoder_start_token_id
    dec = torch.tensor([[sot, 270, 100, 101, 102, 103]])
    with torch.no_grad():
        enc_out, keep = encode_for_decoder(model, feats, lens)
        with CrossAttentionMask(model, keep):
            masked = model(encoder_outputs=enc_out, decoder_input_ids=dec.repeat(3, 1)).logits
        unmasked = model(encoder_outputs=enc_out, decoder_input_ids=dec.repeat(3, 1)).logits
        for i in range(3):
            single_out, _ = encode_for_decoder(model, feats[i : i + 1], lens[i : i + 1])
            single = model(encoder_outputs=single_out, decoder_input_ids=dec).logits[0]
            assert (masked[i] - single).abs().max().item() < 1e-4
        # Without the mask the shorter clips attend to padding and differ: the mask matters.
        assert (unmasked[2] - model(encoder_outputs=encode_for_decoder(model, feats[2:], lens[2:])[0],
                                    decoder_input_ids=dec).logits[0]).abs().max().item() > 1e-3  # fmt: skip
    # Hooks are removed on exit.
    assert all(not layer.encoder_attn._forward_pre_hooks for layer in model.model.decoder.layers)


def test_generate_trimmed_batch_equals_singles_with_beams(tiny):
    model, _ = tiny
    torch.manual_seed(1)
    feats = torch.randn(2, 80, 3000)
    lens = [300, 90]
    kw = dict(language="sa", task="transcribe", max_new_tokens=6, num_beams=2)
    batch = generate_trimmed(model, feats, lens, **kw)
    for i in range(2):
        single = generate_trimmed(model, feats[i : i + 1], lens[i : i + 1], **kw)
        assert batch[i, : single.shape[1]].tolist() == single[0].tolist()


def test_speed_perturb_and_noise():
    sr = 16000
    wave = np.sin(2 * np.pi * 300 * np.arange(sr) / sr).astype(np.float32)
    assert speed_perturb(wave, 1.0) is wave
    fast = speed_perturb(wave, 1.1)
    slow = speed_perturb(wave, 0.9)
    assert abs(len(fast) - sr / 1.1) <= 2 and abs(len(slow) - sr / 0.9) <= 2
    noisy = add_noise(wave, 10.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert abs(snr - 10.0) < 0.5


def test_spec_augment_is_seeded_and_respects_length():
    x = torch.randn(80, 200)
    kw = dict(time_masks=2, time_max_width=20, freq_masks=2, freq_max_width=8, length=120, fill=-5.0)
    a = spec_augment(x, generator=torch.Generator().manual_seed(3), **kw)
    b = spec_augment(x, generator=torch.Generator().manual_seed(3), **kw)
    c = spec_augment(x, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a == -5.0).any()
    # Time masks stay within the real frames (a frequency mask spans all frames).
    full_rows = (a == -5.0).all(dim=1)
    masked_cols = (a[~full_rows] == -5.0).all(dim=0)
    assert not masked_cols[120:].any()
    states = torch.randn(50, 16)
    s = spec_augment(states, time_masks=3, time_max_width=5, time_axis=0, generator=torch.Generator().manual_seed(0),
                     fill=0.0)  # fmt: skip
    assert ((s == 0).all(dim=1)).any() and torch.equal(s[~(s == 0).all(dim=1)], states[~(s == 0).all(dim=1)])
