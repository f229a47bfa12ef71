"""Write a trained model as a plain transformers directory (``best/``).

The directory holds ``model.safetensors`` + ``config.json`` +
``generation_config.json`` + the processor files, so
``transformers.pipeline("automatic-speech-recognition", model=DIR)`` loads it
with no project code. LoRA adapters are merged into a copy of the weights.
``asr_adapt.json`` records what plain transformers cannot know: that the
encoder was trained on trimmed input (decode with
:func:`pipeline.models.encoder.generate_trimmed`), the language, the regime.
With ``restrict_vocab`` the tokens the model never trained to score are listed
in ``generation_config.suppress_tokens``, so plain ``generate`` searches the
same vocabulary the model was trained on.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch

from data_prep.manifest import atomic_write_text
from pipeline.models.encoder import ADAPT_FILE


def _merged(model):
    """A plain Whisper with LoRA merged (a copy; the training model keeps its adapters)."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def export_model(model, processor, out_dir: str | Path, info: dict, allowed_ids: list[int] | None = None) -> Path:
    """Save ``model`` + ``processor`` + ``asr_adapt.json`` to ``out_dir``, replacing it atomically."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    plain = _merged(model)
    gen = plain.generation_config
    saved_suppress = gen.suppress_tokens
    if allowed_ids is not None:
        vocab = plain.get_output_embeddings().weight.shape[0]
        allowed = set(allowed_ids)
        gen.suppress_tokens = sorted(set(saved_suppress or []) | {i for i in range(vocab) if i not in allowed})
    # generate warns when the model config also carries suppress tokens; the generation config owns them.
    for key in ("suppress_tokens", "begin_suppress_tokens", "forced_decoder_ids"):
        if getattr(plain.config, key, None) is not None:
            setattr(plain.config, key, None)
    try:
        with torch.no_grad():
            plain.save_pretrained(tmp)
    finally:
        gen.suppress_tokens = saved_suppress
    processor.save_pretrained(tmp)
    atomic_write_text(tmp / ADAPT_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    old = out_dir.with_name(f".{out_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir
