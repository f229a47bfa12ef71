"""The Whisper encoder on the clip's real length, and the decoder mask that goes with it.

Whisper is trained on 30 s windows; transformers' ``WhisperEncoder`` refuses any
other input length. Running it on the clip's own length (conv layers, then the
first T rows of the positional table, then the layers) is several times cheaper
for short clips, and a model fine-tuned that way must be decoded that way too.

Two things make batches of trimmed clips exact (same result as one clip at a
time, up to float rounding):

- in the encoder, padded mel frames are zeroed before each convolution (a
  single clip sees the convolution's zero padding there) and the self-attention
  ignores padded frames;
- in the decoder, cross-attention must ignore padded encoder frames, but
  transformers' Whisper decoder takes no encoder attention mask:
  :class:`CrossAttentionMask` passes one to every cross-attention module through
  forward pre-hooks, so the model stays a plain ``WhisperForConditionalGeneration``
  (and ``generate`` works unchanged, beams included).

A model directory records how it was trained in ``asr_adapt.json``
(:func:`read_adapt_info`); decoders call :func:`encode_for_decoder` /
:func:`generate_trimmed` when ``encoder_input`` is ``"trimmed"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

HOP_LENGTH = 160  # samples per mel frame at 16 kHz
SAMPLE_RATE = 16000
ADAPT_FILE = "asr_adapt.json"


# ---------------------------------------------------------------------------------------------
# lengths and masks


def mel_length(num_samples: int, max_frames: int = 3000) -> int:
    """Mel frames that cover ``num_samples`` of 16 kHz audio (capped at the 30 s window)."""
    return max(1, min(max_frames, math.ceil(num_samples / HOP_LENGTH)))


def encoder_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
    """Encoder frames for each mel length (the stride-2 convolution halves them, rounding up)."""
    return (mel_lengths - 1) // 2 + 1


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean (B, max_len) mask, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) boolean keep-mask -> (B, 1, 1, S) additive attention mask."""
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    out = out.masked_fill(~mask, torch.finfo(dtype).min)
    return out[:, None, None, :]


# ---------------------------------------------------------------------------------------------
# encoder pieces


def embed_features(encoder: nn.Module, features: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv stem + positions on features cut to the longest clip of the batch.

    ``features``: (B, n_mels, T) log-mel, T >= max(mel_lengths); ``mel_lengths``: (B,).
    Returns hidden states (B, S, d) and encoder lengths (B,), S = encoder length of the longest clip.
    """
    mel_lengths = mel_lengths.to(features.device)
    t = int(mel_lengths.max())
    x = features[..., :t].to(encoder.conv1.weight.dtype)
    keep = padding_mask(mel_lengths, t)[:, None, :]
    x = x * keep  # a clip alone sees the convolution's zero padding after its last frame
    x = nn.functional.gelu(encoder.conv1(x))
    x = x * keep
    x = nn.functional.gelu(encoder.conv2(x))
    x = x.permute(0, 2, 1)
    s = x.shape[1]
    if s > encoder.embed_positions.weight.shape[0]:
        raise ValueError(f"{t} mel frames exceed the encoder's {encoder.embed_positions.weight.shape[0]} positions")
    x = x + encoder.embed_positions.weight[:s]
    x = nn.functional.dropout(x, p=encoder.dropout, training=encoder.training)
    return x, encoder_lengths(mel_lengths)


def run_layers(
    encoder: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """Encoder layers ``start:stop`` on (B, S, d) states, ignoring padded frames."""
    mask = None
    if bool((lengths < hidden.shape[1]).any()):
        mask = additive_mask(padding_mask(lengths.to(hidden.device), hidden.shape[1]), hidden.dtype)
    for layer in encoder.layers[start:stop]:
        hidden = layer(hidden, mask)
    return hidden


def encode_trimmed(
    encoder: nn.Module, features: torch.Tensor, mel_lengths: torch.Tensor, stop: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whisper encoder on the clips' real lengths.

    With ``stop=None`` returns the final states (after the last layer norm); with
    ``stop=j`` returns the states after layer ``j`` (no norm), the input of layer j.
    """
    hidden, lengths = embed_features(encoder, features, mel_lengths)
    hidden = run_layers(encoder, hidden, lengths, 0, stop)
    if stop is None:
        hidden = encoder.layer_norm(hidden)
    return hidden, lengths


def finish_encoder(encoder: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, start: int) -> torch.Tensor:
    """Layers ``start:`` and the final layer norm, on states cached after layer ``start``."""
    hidden = run_layers(encoder, hidden, lengths, start, None)
    return encoder.layer_norm(hidden)


# ---------------------------------------------------------------------------------------------
# decoder cross-attention mask


class CrossAttentionMask:
    """Context manager: the decoder's cross-attention ignores padded encoder frames.

    ``keep`` is a (B, S) boolean mask (True on real frames). Inside ``generate``
    the batch grows to B * num_beams by ``repeat_interleave``; the hook expands
    the mask the same way. ``keep=None`` or an all-True mask installs nothing.
    """

    def __init__(self, model: nn.Module, keep: torch.Tensor | None):
        self.model = model
        self.keep = None if keep is None or bool(keep.all()) else keep
        self._handles: list = []
        self._cache: dict = {}

    def _mask_for(self, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (batch, dtype, device)
        if key not in self._cache:
            keep = self.keep.to(device)
            if batch != keep.shape[0]:
                if batch % keep.shape[0]:
                    raise ValueError(f"cross-attention batch {batch} is not a multiple of mask batch {keep.shape[0]}")
                keep = keep.repeat_interleave(batch // keep.shape[0], dim=0)
            self._cache[key] = additive_mask(keep, dtype)
        return self._cache[key]

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args else kwargs["hidden_states"]
        kwargs["attention_mask"] = self._mask_for(hidden.shape[0], hidden.dtype, hidden.device)
        return args, kwargs

    def __enter__(self) -> CrossAttentionMask:
        if self.keep is not None:
            for layer in _decoder(self.model).layers:
                self._handles.append(layer.encoder_attn.register_forward_pre_hook(self._hook, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._cache.clear()


def _decoder(model: nn.Module) -> nn.Module:
    """The WhisperDecoder inside a WhisperForConditionalGeneration / WhisperModel (or a peft wrapper)."""
    for name in ("model.decoder", "decoder", "base_model.model.model.decoder"):
        obj = model
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if hasattr(obj, "layers"):
            return obj
    raise TypeError(f"no Whisper decoder found in {type(model).__name__}")


def _encoder(model: nn.Module) -> nn.Module:
    if hasattr(model, "get_encoder"):
        return model.get_encoder()
    return model.model.encoder


# ---------------------------------------------------------------------------------------------
# decode-time entry points


def encode_for_decoder(
    model: nn.Module, features: torch.Tensor, lengths: torch.Tensor | Sequence[int]
) -> tuple[BaseModelOutput, torch.Tensor]:
    """Trimmed encoder states for decoding, and the (B, S) keep-mask for cross-attention.

    ``features``: (B, n_mels, T) log-mel as produced by the Whisper feature extractor
    (padded or not); ``lengths``: mel frames of each clip (see :func:`mel_length`).
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    encoder = _encoder(model)
    hidden, enc_lengths = encode_trimmed(encoder, features, lengths)
    keep = padding_mask(enc_lengths.to(hidden.device), hidden.shape[1])
    return BaseModelOutput(last_hidden_state=hidden), keep


@torch.no_grad()
def generate_trimmed(
    model: nn.Module, features: torch.Tensor, lengths: torch.Tensor | Sequence[int], **generate_kwargs
) -> torch.Tensor:
    """``model.generate`` on trimmed encoder states with the cross-attention mask."""
    encoder_outputs, keep = encode_for_decoder(model, features, lengths)
    with CrossAttentionMask(model, keep):
        return model.generate(encoder_outputs=encoder_outputs, **generate_kwargs)


def read_adapt_info(model_dir: str | Path) -> dict:
    """The ``asr_adapt.json`` of a fine-tuned model directory ({} when absent).

    Keys: ``encoder_input`` ("trimmed" | "padded"), ``language``, ``language_token``,
    ``regime``, ``base_model``, ``step``, ``dev_cer``, ``dev_wer``.
    """
    path = Path(model_dir) / ADAPT_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def uses_trimmed_encoder(model_dir: str | Path) -> bool:
    """Whether a model directory must be decoded with :func:`generate_trimmed`."""
    return read_adapt_info(model_dir).get("encoder_input") == "trimmed"
