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
same vocabulary the model was trained on, and ``renormalize_logits`` makes its beam
search (``pipeline()``'s default) rank by probabilities over that vocabulary
(:mod:`pipeline.models.generation`). The generation config carries the trained
language token and task (``generation_config.language`` / ``.task``), so plain
``generate`` and ``pipeline`` prompt as training did. :func:`as_exported` gives the in-memory
model configured exactly so, for the trainer's dev evaluation.

A model trained with joint CTC (``train.ctc_weight``) also gets ``ctc/``: its
encoder and CTC head as a CTC checkpoint (:func:`pipeline.models.ctc.save_ctc_model`),
which ``decode`` and ``rescore --ctc`` load like any CTC system.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from data_prep.outputs import atomic_write_text, replace_dir
from pipeline.models.encoder import ADAPT_FILE
from pipeline.models.generation import search_over_allowed
from pipeline.models.language import PROMPT_FIELDS, prompt_with_language


def _merged(model):
    """A plain Whisper with LoRA merged (a copy; the training model keeps its adapters)."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def restricted_suppress_tokens(suppress: list[int] | None, vocab: int, allowed_ids: list[int]) -> list[int]:
    """``suppress`` plus every token outside ``allowed_ids`` (those the model never trained to score)."""
    allowed = set(allowed_ids)
    return sorted(set(suppress or []) | {i for i in range(vocab) if i not in allowed})


@contextlib.contextmanager
def as_exported(model, info: dict, allowed_ids: list[int] | None = None) -> Iterator:
    """The plain Whisper exactly as :func:`export_model` writes it, in eval mode, for decoding or saving.

    Inside the block the model (a merged copy for LoRA, else ``model`` itself)
    carries the exported ``generation_config.suppress_tokens`` and
    ``asr_adapt`` (what :func:`pipeline.models.whisper.load_whisper` attaches
    on load), so :func:`pipeline.models.whisper.transcribe_detailed` decodes it
    as it decodes the saved ``best/``. Afterwards ``model`` is as it was (its
    train/eval mode included), except that the model config no longer carries
    generation settings (see below).
    """
    plain = _merged(model)
    gen = plain.generation_config
    saved_suppress, saved_renormalize = gen.suppress_tokens, gen.renormalize_logits
    saved_adapt = getattr(plain, "asr_adapt", None)
    saved_prompt = {key: getattr(gen, key, None) for key in PROMPT_FIELDS}
    was_training = [m.training for m in (model, plain)]
    if allowed_ids is not None:
        vocab = plain.get_output_embeddings().weight.shape[0]
        gen.suppress_tokens = restricted_suppress_tokens(saved_suppress, vocab, allowed_ids)
    search_over_allowed(gen)
    if info.get("language_token") or info.get("language"):
        prompt_with_language(gen, info.get("language_token") or info["language"])
    # generate warns when the model config also carries suppress tokens; the generation config owns them.
    for key in ("suppress_tokens", "begin_suppress_tokens", "forced_decoder_ids"):
        if getattr(plain.config, key, None) is not None:
            setattr(plain.config, key, None)
    plain.asr_adapt = dict(info)
    plain.eval()
    try:
        yield plain
    finally:
        gen.suppress_tokens, gen.renormalize_logits = saved_suppress, saved_renormalize
        for key, value in saved_prompt.items():
            setattr(gen, key, value)
        if saved_adapt is None:
            del plain.asr_adapt
        else:
            plain.asr_adapt = saved_adapt
        for m, training in zip((model, plain), was_training):
            m.train(training)


CTC_DIR = "ctc"  # the joint CTC head's checkpoint inside an exported model directory


def export_joint_ctc(plain, head, vocab, out_dir: Path, processor, info: dict) -> None:
    """Write ``plain``'s encoder + the joint CTC ``head`` as a CTC checkpoint in ``out_dir``."""
    from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import save_ctc_model

    config = WhisperCTCConfig(head=copy.deepcopy(head.cfg), trainable_top_layers=0, base_model=info["base_model"])
    ctc = WhisperEncoderCTC(copy.deepcopy(plain.model.encoder), vocab, config)  # a copy: freezing it leaves training alone
    ctc.head.load_state_dict(head.state_dict())
    save_ctc_model(ctc, out_dir, processor.feature_extractor, joint_with_decoder=True, step=info["step"])


def export_model(
    model, processor, out_dir: str | Path, info: dict, allowed_ids: list[int] | None = None, ctc: tuple | None = None
) -> Path:
    """Save ``model`` + ``processor`` + ``asr_adapt.json`` to ``out_dir``, replacing it atomically.

    ``ctc``: (joint CTC head, its CTCVocab), written to ``out_dir/ctc/`` in the same swap. Only a
    folder this toolkit wrote is replaced (:func:`data_prep.outputs.replace_dir`).
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with as_exported(model, info, allowed_ids) as plain, torch.no_grad():
        plain.save_pretrained(tmp)
        if ctc is not None:
            export_joint_ctc(plain, ctc[0], ctc[1], tmp / CTC_DIR, processor, info)
    processor.save_pretrained(tmp)
    atomic_write_text(tmp / ADAPT_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return replace_dir(tmp, out_dir, "train")
