"""Generated audio, vocabularies and tiny models for the CTC and LM tests (no hub, no files)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.models.ctc_vocab import CTCVocab  # noqa: E402

SR = 16000
#: One pitch per character: a clip of "ab c" is a sequence of tones and pauses.
PITCHES = {"a": 300.0, "b": 700.0, "c": 1500.0, "d": 3000.0}
TEXTS = ["ab", "ca", "bcd", "da b", "cab", "a dc", "bd", "acb"]


def vocab() -> CTCVocab:
    """The data_prep.vocab layout: <pad> 0, <unk> 1, | 2, then the characters."""
    return CTCVocab({"<pad>": 0, "<unk>": 1, "|": 2, **{c: 3 + i for i, c in enumerate(sorted(PITCHES))}})


def tone_audio(text: str, tone_s: float = 0.12, gap_s: float = 0.04, word_gap_s: float = 0.12) -> np.ndarray:
    """Each character a sine tone, separated by short silences; a space is a longer silence."""
    t = np.arange(int(tone_s * SR)) / SR
    env = np.hanning(len(t))
    parts = [np.zeros(int(gap_s * SR))]
    for ch in text:
        if ch == " ":
            parts.append(np.zeros(int(word_gap_s * SR)))
            continue
        parts.append(0.5 * env * np.sin(2 * np.pi * PITCHES[ch] * t))
        parts.append(np.zeros(int(gap_s * SR)))
    return np.concatenate(parts).astype(np.float32)


def tiny_whisper_encoder(seed: int = 0, layers: int = 2, d_model: int = 32):
    """A random tiny WhisperModel (80 mel bins, 1500 positions) and its feature extractor."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    cfg = WhisperConfig(
        vocab_size=64, num_mel_bins=80, d_model=d_model, encoder_layers=layers, encoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=2 * d_model,
        max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1,
    )
    return WhisperModel(cfg).eval(), WhisperFeatureExtractor(feature_size=80)


def whisper_batch(fe, texts, voc: CTCVocab) -> dict:
    """Trimmed log-mel features, mel lengths and -100-padded labels for ``texts``."""
    from pipeline.models.ctc_loss import pad_labels
    from pipeline.models.encoder import mel_length

    waves = [tone_audio(t) for t in texts]
    feats = fe(waves, sampling_rate=SR, return_tensors="pt").input_features
    lengths = torch.tensor([mel_length(len(w)) for w in waves])
    labels, label_lengths = pad_labels([voc.encode(t) for t in texts])
    return {"features": feats[..., : int(lengths.max())], "feature_lengths": lengths,
            "labels": labels, "label_lengths": label_lengths}


def tiny_wav2vec2_config(vocab_size: int = 10, adapter_attn_dim: int | None = None):
    """A wav2vec2 config with XLS-R's layout (layer norm, stable layer norm, stride 320) but tiny widths."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
        adapter_attn_dim=adapter_attn_dim, pad_token_id=0,
    )
