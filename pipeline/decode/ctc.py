"""Decoding CTC checkpoints: audio -> logits -> greedy or LM beam-search text.

One path from audio to text serves the decode stage (``python -m pipeline
decode`` on a directory written by :func:`pipeline.models.ctc.save_ctc_model`),
the trainer's dev evaluation and LM weight tuning, so the dev CER in
``log.jsonl`` is the CER the decode + score stages give for ``best/``.

LM settings: ``python -m pipeline lm`` writes ``lm.arpa`` and, next to it,
``lm.json`` (``{"arpa": ..., "alpha": ..., "beta": ..., "beam_width": ...}``).
``--lm`` accepts either file (or their directory); weights given on the command
line override the ones in ``lm.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.models.ctc import WhisperEncoderCTC
from pipeline.models.ctc_checkpoint import load_ctc_model
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.encoder import SAMPLE_RATE, mel_length

LM_SETTINGS = "lm.json"
DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 1.0
DEFAULT_BEAM = 32


def whisper_features(feature_extractor, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Trimmed log-mel features (B, n_mels, T) and mel lengths, computed on the 30 s window as in training."""
    feats = feature_extractor(list(waves), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    lengths = torch.tensor([mel_length(len(w), feats.shape[-1]) for w in waves], dtype=torch.long)
    return feats[..., : int(lengths.max())], lengths


@torch.no_grad()
def ctc_logits(model, waves: Sequence[np.ndarray], feature_extractor=None, device: str | torch.device = "cpu"):
    """(B, T, V) fp32 log-probabilities and (B,) valid frames of a batch of 16 kHz clips (model in eval mode)."""
    if isinstance(model, WhisperEncoderCTC):
        feats, lengths = whisper_features(feature_extractor, waves)
        out = model(features=feats.to(device, model.encoder.conv1.weight.dtype), feature_lengths=lengths.to(device))
    else:
        from pipeline.models.ctc_wav2vec2 import WaveInput, wav2vec2_batch, wav2vec2_ctc_forward

        # a plain transformers folder carries its feature extractor's settings; the toolkit's own take the default
        wave_input = getattr(model, "wave_input", None) or WaveInput()
        batch = wav2vec2_batch(model, waves, wave_input.normalize, wave_input.attention_mask)
        batch = {k: v.to(device) for k, v in batch.items()}
        out = wav2vec2_ctc_forward(model, **batch)
    return out.logits.float().log_softmax(-1).cpu(), out.lengths.cpu()


def whisper_feature_extractor(model_dir: str | os.PathLike | None, model: WhisperEncoderCTC):
    """The feature extractor saved with a checkpoint, else Whisper's default for the encoder's mel bins."""
    from transformers import WhisperFeatureExtractor

    if model_dir is not None and (Path(model_dir) / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(str(model_dir))
    return WhisperFeatureExtractor(feature_size=model.encoder.config.num_mel_bins)


def ctc_batch_decoder(model, vocab: CTCVocab, feature_extractor=None, beam=None, device: str = "cpu"):
    """A :data:`pipeline.decode.BatchDecoder`: greedy, or ``beam`` (a :class:`~pipeline.lm.CTCBeamDecoder`).

    The token count of each hypothesis is its number of characters (``|`` included).
    """
    from pipeline.decode.ctc_beam import greedy_decode_batch
    from pipeline.decode.whisper import split_long

    def decode_pieces(waves: Sequence[np.ndarray]) -> list[str]:
        logp, lengths = ctc_logits(model, waves, feature_extractor, device)
        return beam.decode_batch(logp, lengths) if beam is not None else greedy_decode_batch(logp, lengths, vocab)

    def decode(waves: Sequence[np.ndarray]) -> list[tuple[str, int]]:
        # Whisper's encoder sees at most 30 s: longer audio is decoded in pieces cut at quiet points
        pieces, owner = [], []
        for k, wave in enumerate(waves):
            for piece in split_long(np.asarray(wave, np.float32)) if isinstance(model, WhisperEncoderCTC) else [wave]:
                pieces.append(piece)
                owner.append(k)
        parts: list[list[str]] = [[] for _ in waves]
        for k, text in zip(owner, decode_pieces(pieces)):
            if text:
                parts[k].append(text)
        texts = [" ".join(p) for p in parts]
        return [(t, len(t)) for t in texts]

    return decode


@dataclass
class LMSettings:
    """Where the ARPA file is and the weights to decode with."""

    arpa: Path
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    beam_width: int = DEFAULT_BEAM


def read_lm_settings(lm: str | os.PathLike) -> LMSettings:
    """Settings from an ARPA path, its ``lm.json`` or their directory (defaults when there is no ``lm.json``)."""
    lm = Path(lm)
    settings = lm / LM_SETTINGS if lm.is_dir() else (lm if lm.suffix == ".json" else lm.parent / LM_SETTINGS)
    if settings.is_file():
        try:
            d = json.loads(settings.read_text(encoding="utf-8"))
            arpa = lm if lm.suffix == ".arpa" else settings.parent / d["arpa"]
            return LMSettings(arpa=arpa, alpha=float(d["alpha"]), beta=float(d["beta"]),
                              beam_width=int(d.get("beam_width", DEFAULT_BEAM)))  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{settings}: bad LM settings ({e})") from e
    if lm.is_dir() or lm.suffix == ".json":
        raise FileNotFoundError(f"{settings}: no LM settings file")
    return LMSettings(arpa=lm)


def load_ctc_acoustics(model_dir: str | os.PathLike, device: str = "cpu"):
    """A CTC checkpoint's (model in eval mode, vocabulary, feature extractor or None): what turns audio into
    the log-probabilities :func:`ctc_logits` gives, for decoding and for forced alignment alike."""
    model, vocab = load_ctc_model(model_dir, device=device)
    fe = whisper_feature_extractor(model_dir, model) if isinstance(model, WhisperEncoderCTC) else None
    return model, vocab, fe


def load_ctc_decoder(
    model_dir: str | os.PathLike,
    *,
    lm: str | os.PathLike | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    beam_width: int | None = None,
    device: str = "cpu",
):
    """Load a CTC checkpoint and return a batch decoder (greedy unless ``lm`` or ``beam_width`` is given)."""
    model, vocab, fe = load_ctc_acoustics(model_dir, device)
    beam = None
    if lm is not None or beam_width:
        from pipeline.decode.ctc_beam import CTCBeamDecoder

        s = read_lm_settings(lm) if lm is not None else None
        beam = CTCBeamDecoder(
            vocab, s.arpa if s else None,
            alpha=alpha if alpha is not None else (s.alpha if s else DEFAULT_ALPHA),
            beta=beta if beta is not None else (s.beta if s else DEFAULT_BETA),
            beam_width=beam_width or (s.beam_width if s else DEFAULT_BEAM),
        )  # fmt: skip
    return ctc_batch_decoder(model, vocab, fe, beam, device)
