"""Load a Whisper-style seq2seq model: a bundled name, a CTranslate2 folder, a transformers folder
(a fine-tuned ``best/`` included) or a hub id, with its processor. Decoding it is
:mod:`pipeline.decode.whisper`'s job.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch


def load_whisper(name_or_path: str | os.PathLike, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """(model, processor) for a bundled name, CT2 folder, transformers folder or hub id; model in eval mode.

    A model that cannot be found or read raises
    :class:`~pipeline.models.model_files.ModelFileError` naming the folder or file.
    """
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    from pipeline.models.encoder import read_adapt_info
    from pipeline.models.model_files import ModelFileError, check_model_dir, model_errors
    from pipeline.pretrained.registry import ModelNotAvailable, resolve_model

    check_model_dir(name_or_path)  # a folder's damaged config.json would pass for no model at all
    try:
        path = resolve_model(name_or_path)
    except ModelNotAvailable as e:
        raise ModelFileError.from_message(name_or_path, str(e)) from e
    if path != Path(name_or_path):  # a CT2 model's transformers copy, a hub snapshot
        check_model_dir(path)
    with model_errors(path):
        model = AutoModelForSpeechSeq2Seq.from_pretrained(path, dtype=dtype)
    model.to(device).eval()
    # How a fine-tuned directory was trained (e.g. on trimmed encoder input): decoding must match.
    model.asr_adapt = read_adapt_info(path)
    try:
        processor = AutoProcessor.from_pretrained(path)
    except OSError:
        processor = _rebuild_processor(path, model.config)
    return model, processor


def random_init(model, seed: int):
    """A model of ``model``'s architecture (its config, generation config and ``asr_adapt``) with fresh weights
    from transformers' own initialization, drawn from ``seed`` alone; in eval mode on ``model``'s device.

    Nothing learned is carried over. What is fixed by the architecture stays: the encoder's sinusoidal
    position table is not learned, and transformers sets it to the same sinusoids.
    """
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):  # leaves the caller's random state alone
        torch.manual_seed(seed)
        fresh = type(model)(copy.deepcopy(model.config))
    fresh.generation_config = copy.deepcopy(model.generation_config)
    fresh.asr_adapt = dict(getattr(model, "asr_adapt", None) or {})
    return fresh.to(device=param.device, dtype=param.dtype).eval()


def _rebuild_processor(path, config):
    """A processor for a checkpoint saved without one (e.g. only model + tokenizer).

    Whisper's features are fully determined by the number of mel bins, so the
    feature extractor can be rebuilt from the model config; the tokenizer cannot.
    """
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperProcessor

    if getattr(config, "model_type", None) != "whisper":
        raise FileNotFoundError(f"{path}: no processor files (preprocessor_config.json / processor_config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(f"{path}: no tokenizer files; save the processor with the model") from e
    return WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer)
