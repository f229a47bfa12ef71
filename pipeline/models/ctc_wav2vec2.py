"""wav2vec2 / XLS-R / MMS with a new CTC head over the project's character vocabulary.

:func:`load_wav2vec2_ctc` turns any wav2vec2-family checkpoint directory into a
``Wav2Vec2ForCTC`` whose output layer is NEW and sized to ``vocab.json``:
``vocab_size``, ``pad_token_id`` (= the blank, ``<pad>``) are set together and
``ignore_mismatched_sizes`` drops an old head of another size; a head of the
same size is re-initialised too, since its rows mean other characters. The
convolutional feature encoder is frozen by default (the standard recipe: it is
trained on far more audio than any fine-tuning set).

MMS-style adapters: when the checkpoint's config has ``adapter_attn_dim``
(facebook/mms-1b-all and its kin), ``adapter="auto"`` re-initialises the small
attention adapters and the head and trains only those (about 2 M weights for a
1 B model); :func:`save_mms_adapter` writes ``adapter.<lang>.safetensors`` that
``model.load_adapter(lang)`` of the original checkpoint can read.

Online use (with internet access, not in tests)::

    # XLS-R 300M: full fine-tuning (feature encoder frozen), lr ~3e-4, warm-up 500 steps
    huggingface-cli download facebook/wav2vec2-xls-r-300m --local-dir models/xls-r-300m
    model = load_wav2vec2_ctc("models/xls-r-300m", vocab)
    # MMS 1B all (weights licence CC-BY-NC 4.0: non-commercial use only): adapters only, lr ~1e-3
    huggingface-cli download facebook/mms-1b-all --local-dir models/mms-1b-all
    model = load_wav2vec2_ctc("models/mms-1b-all", vocab, adapter="auto")

Inputs are raw 16 kHz waveforms, zero-mean/unit-variance normalized per clip
(:func:`wav2vec2_batch`); the model gives one frame per 20 ms (stride 320).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from pipeline.models.ctc_heads import CTCOutput
from pipeline.models.ctc_loss import ctc_loss
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.model_files import check_model_dir, model_errors

log = logging.getLogger(__name__)

ADAPTER_MODES = ("auto", "on", "off")


def _ctc_overrides(vocab: CTCVocab, **dropouts) -> dict:
    """Config fields that must agree with the vocabulary (and CTC-friendly defaults)."""
    return {
        "vocab_size": len(vocab),
        "pad_token_id": vocab.blank,
        "bos_token_id": None,  # ids 1/2 are <unk> and | here, not sentence markers
        "eos_token_id": None,
        "ctc_loss_reduction": "mean",
        "ctc_zero_infinity": True,
        **dropouts,
    }


def load_wav2vec2_ctc(
    path: str | os.PathLike,
    vocab: CTCVocab,
    *,
    freeze_feature_encoder: bool = True,
    adapter: str = "auto",
    mask_time_prob: float = 0.05,
    layerdrop: float = 0.0,
    target_lang: str | None = None,
    dtype: torch.dtype = torch.float32,
):
    """A ``Wav2Vec2ForCTC`` from ``path`` with a new head over ``vocab``.

    ``adapter``: ``auto`` trains only MMS adapters + head when the checkpoint
    has adapters, else the whole transformer; ``on`` requires adapters; ``off``
    ignores them (full fine-tuning). ``mask_time_prob`` is wav2vec2's built-in
    SpecAugment (active in train mode only). ``target_lang`` names the adapter
    file :func:`save_wav2vec2_ctc` writes for an adapter model. The vocabulary is
    attached as ``model.ctc_vocab``.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    if adapter not in ADAPTER_MODES:
        raise ValueError(f"adapter must be one of {ADAPTER_MODES}, got {adapter!r}")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (a transformers wav2vec2 checkpoint directory is needed)")
    check_model_dir(path)
    base_cfg = Wav2Vec2Config.from_pretrained(str(path))
    has_adapters = getattr(base_cfg, "adapter_attn_dim", None) is not None
    if adapter == "on" and not has_adapters:
        raise ValueError(f"{path}/config.json has no adapter_attn_dim: this checkpoint has no MMS adapters")
    overrides = _ctc_overrides(vocab, mask_time_prob=mask_time_prob, layerdrop=layerdrop)
    if has_adapters and adapter == "off":
        overrides["adapter_attn_dim"] = None
    with model_errors(path):
        model = Wav2Vec2ForCTC.from_pretrained(str(path), ignore_mismatched_sizes=True, dtype=dtype, **overrides)
    _new_head(model)
    if has_adapters and adapter != "off":
        model.init_adapter_layers()  # re-initialises adapters and head
        model.freeze_base_model()
        for p in model._get_adapters().values():
            p.requires_grad_(True)
    elif freeze_feature_encoder:
        model.freeze_feature_encoder()
    model.lm_head.requires_grad_(True)
    model.ctc_vocab = vocab
    if target_lang:
        model.target_lang = target_lang
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("wav2vec2 CTC from %s: %d outputs, %.2fM trainable weights", path, len(vocab), n_train / 1e6)
    return model


def _new_head(model) -> None:
    """Re-initialise the output layer (same init as a fresh ``Wav2Vec2ForCTC``)."""
    head: nn.Linear = model.lm_head
    with torch.no_grad():
        nn.init.normal_(head.weight, std=model.config.initializer_range)
        nn.init.zeros_(head.bias)


def uses_adapters(model) -> bool:
    """Whether only adapter weights (+ head) train in this model."""
    if getattr(model.config, "adapter_attn_dim", None) is None:
        return False
    return not any(p.requires_grad for n, p in model.wav2vec2.named_parameters() if ".adapter_layer." not in n)


def wav2vec2_output_frames(model, num_samples: int) -> int:
    """Output frames for a clip of ``num_samples`` samples (the conv stack's length formula)."""
    return int(model._get_feat_extract_output_lengths(torch.tensor([num_samples]))[0])


@dataclass(frozen=True)
class WaveInput:
    """How a wav2vec2-family model takes its waveform: what its feature extractor does to a clip."""

    #: zero mean, unit variance per clip (``do_normalize``)
    normalize: bool = True
    #: pass an attention mask (``return_attention_mask``); None: when the feature encoder has layer norm
    attention_mask: bool | None = None


def wav2vec2_batch(model, waves: Sequence[np.ndarray], normalize: bool = True,
                   attention_mask: bool | None = None) -> dict:  # fmt: skip
    """Pad 16 kHz waveforms into ``input_values`` (+ ``attention_mask`` for layer-norm models).

    Models with group norm in the feature encoder (wav2vec2-base) were trained
    on zero-padded input without a mask; XLS-R / MMS (layer norm) take a mask.
    ``attention_mask`` overrides that rule (a model folder's feature extractor says which).
    """
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    x = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        w = torch.as_tensor(np.asarray(w, dtype=np.float32))
        if normalize:
            w = (w - w.mean()) / torch.sqrt(w.var(unbiased=False) + 1e-7)
        x[i, : len(w)] = w
    batch = {"input_values": x, "sample_lengths": lengths}
    if attention_mask is None:
        # Data2VecAudio's config has no feat_extract_norm: its feature encoder always has layer norm
        attention_mask = getattr(model.config, "feat_extract_norm", "layer") == "layer"
    if attention_mask:
        batch["attention_mask"] = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).long()
    return batch


def wav2vec2_ctc_forward(
    model,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    sample_lengths: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    label_lengths: torch.Tensor | None = None,
) -> CTCOutput:
    """Forward a ``Wav2Vec2ForCTC`` and compute the loss with :func:`ctc_loss` (fp32, outside autocast)."""
    out = model(input_values, attention_mask=attention_mask)
    if sample_lengths is None:
        sample_lengths = (
            attention_mask.sum(-1) if attention_mask is not None
            else torch.full((input_values.shape[0],), input_values.shape[1], dtype=torch.long)
        )
    lengths = model._get_feat_extract_output_lengths(sample_lengths.to(out.logits.device)).long()
    logits = out.logits.float()
    loss = None
    if labels is not None:
        loss = ctc_loss(logits, lengths, labels, label_lengths, blank=model.config.pad_token_id)
    return CTCOutput(logits=logits, lengths=lengths, loss=loss)


# ---------------------------------------------------------------------------- save / load


def save_wav2vec2_ctc(model, out_dir: Path) -> dict:
    """Write transformers' files (``config.json``, ``model.safetensors``) + ``vocab.json``; returns config fields.

    Called by :func:`pipeline.models.ctc.save_ctc_model`. With MMS adapters,
    ``adapter.<lang>.safetensors`` is written too when ``model.target_lang`` is set.
    """
    vocab = getattr(model, "ctc_vocab", None)
    if vocab is None:
        raise ValueError("this Wav2Vec2ForCTC carries no ctc_vocab; build it with load_wav2vec2_ctc(..., vocab)")
    model.save_pretrained(str(out_dir), safe_serialization=True)
    vocab.save(out_dir / "vocab.json")
    info = {"adapters": uses_adapters(model), "frames_per_second": 50}
    if info["adapters"] and getattr(model, "target_lang", None):
        info["adapter_file"] = save_mms_adapter(model, out_dir, model.target_lang).name
    return info


def save_mms_adapter(model, out_dir: str | os.PathLike, lang: str) -> Path:
    """``adapter.<lang>.safetensors``: the adapter + head weights, loadable with ``model.load_adapter(lang)``."""
    path = Path(out_dir) / f"adapter.{lang}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in model._get_adapters().items()}, str(path))
    return path


def load_wav2vec2_checkpoint(model_dir: Path, vocab: CTCVocab):
    """Reload a fine-tuned checkpoint (head and all) saved by :func:`save_wav2vec2_ctc`."""
    from transformers import Wav2Vec2ForCTC

    with model_errors(model_dir):  # check_model_dir ran in load_ctc_model
        model = Wav2Vec2ForCTC.from_pretrained(str(model_dir))
    if model.config.vocab_size != len(vocab) or model.config.pad_token_id != vocab.blank:
        raise ValueError(
            f"{model_dir}: config.json has vocab_size {model.config.vocab_size} / pad {model.config.pad_token_id} "
            f"but vocab.json has {len(vocab)} tokens / blank {vocab.blank}"
        )
    model.ctc_vocab = vocab
    return model
