"""CTC checkpoints: one directory layout for every CTC model the toolkit trains::

    model.safetensors   weights (Whisper: encoder + head; wav2vec2: transformers' file + config.json)
    vocab.json          the vocabulary the head was built for
    ctc_config.json     {"format": 1, "kind": "whisper-encoder-ctc" | "wav2vec2-ctc", ...}

:func:`save_ctc_model` writes one, :func:`load_ctc_model` rebuilds the model
(:class:`~pipeline.models.ctc.WhisperEncoderCTC` or a ``Wav2Vec2ForCTC``) and its vocabulary.
A plain transformers CTC folder (``config.json`` of a ``...ForCTC``, ``vocab.json``: the field's
aligners and CTC recognizers) is accepted wherever such a checkpoint is
(:mod:`pipeline.models.ctc_hf_folder`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from data_prep.outputs import atomic_write_text
from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC
from pipeline.models.ctc_heads import HeadConfig
from pipeline.models.ctc_hf_folder import is_hf_ctc_folder, load_hf_ctc_folder
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.ctc_wav2vec2 import load_wav2vec2_checkpoint, save_wav2vec2_ctc
from pipeline.models.model_files import check_model_dir, model_errors

CONFIG_FILE = "ctc_config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
WHISPER_KIND = "whisper-encoder-ctc"
WAV2VEC2_KIND = "wav2vec2-ctc"


def _atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_ctc_model(model: nn.Module, out_dir: str | os.PathLike, feature_extractor=None, **extra) -> Path:
    """Write a CTC checkpoint directory (weights, ``vocab.json``, ``ctc_config.json``).

    ``model``: a :class:`WhisperEncoderCTC` or a ``Wav2Vec2ForCTC`` built by
    :func:`~pipeline.models.ctc_wav2vec2.load_wav2vec2_ctc`. A feature extractor
    (Whisper's or wav2vec2's) is saved alongside so decoding needs nothing else.
    ``extra`` keys (step, dev_cer, ...) are recorded in ``ctc_config.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, WhisperEncoderCTC):
        _atomic_save_safetensors(model.state_dict(), out / WEIGHTS_FILE)
        model.vocab.save(out / VOCAB_FILE)
        cfg = {
            "format": FORMAT_VERSION,
            "kind": WHISPER_KIND,
            "head": model.config.head.to_json(),
            "trainable_top_layers": model.config.trainable_top_layers,
            "base_model": model.config.base_model,
            "encoder_config": _whisper_config_dict(model.encoder.config),
            "frames_per_second": 50 * model.config.head.upsample / model.config.head.downsample,
            **extra,
        }
    else:
        cfg = {"format": FORMAT_VERSION, "kind": WAV2VEC2_KIND, **save_wav2vec2_ctc(model, out), **extra}
    if feature_extractor is not None:
        feature_extractor.save_pretrained(str(out))
    atomic_write_text(out / CONFIG_FILE, json.dumps(cfg, indent=1, ensure_ascii=False) + "\n")
    return out


def _whisper_config_dict(config) -> dict:
    d = config.to_dict()
    d.pop("_name_or_path", None)
    return d


def read_ctc_config(model_dir: str | os.PathLike) -> dict:
    """``ctc_config.json`` of a checkpoint directory (error naming the file when missing or bad)."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: not a CTC checkpoint (no {CONFIG_FILE}, nor a transformers "
                                f"...ForCTC config.json with a vocab.json)") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if cfg.get("format") != FORMAT_VERSION or cfg.get("kind") not in (WHISPER_KIND, WAV2VEC2_KIND):
        raise ValueError(f"{path}: unsupported format {cfg.get('format')!r} / kind {cfg.get('kind')!r}")
    return cfg


def is_ctc_checkpoint(model_dir: str | os.PathLike) -> bool:
    """Whether :func:`load_ctc_model` takes ``model_dir``: the toolkit's own checkpoint or a plain transformers
    CTC folder."""
    return is_own_ctc_checkpoint(model_dir) or is_hf_ctc_folder(model_dir)


def is_own_ctc_checkpoint(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` was written by :func:`save_ctc_model` (it has ``ctc_config.json``)."""
    return (Path(model_dir) / CONFIG_FILE).is_file()


def load_ctc_model(model_dir: str | os.PathLike, device: str = "cpu") -> tuple[nn.Module, CTCVocab]:
    """Rebuild a checkpoint written by :func:`save_ctc_model`, or load a plain transformers CTC folder;
    returns (model in eval mode, vocab).

    A file that cannot be read (weights cut short, JSON that does not parse) raises
    :class:`~pipeline.models.model_files.ModelFileError` naming it.
    """
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    if not is_own_ctc_checkpoint(model_dir) and is_hf_ctc_folder(model_dir):
        model = load_hf_ctc_folder(model_dir)
        return model.to(device).eval(), model.ctc_vocab
    cfg = read_ctc_config(model_dir)
    vocab = CTCVocab.load(model_dir / VOCAB_FILE)
    if cfg["kind"] == WAV2VEC2_KIND:
        model = load_wav2vec2_checkpoint(model_dir, vocab)
    else:
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        enc = WhisperEncoder(WhisperConfig.from_dict(cfg["encoder_config"]))
        config = WhisperCTCConfig(
            head=HeadConfig(**cfg["head"]), trainable_top_layers=cfg["trainable_top_layers"], base_model=cfg["base_model"]
        )
        model = WhisperEncoderCTC(enc, vocab, config)
        with model_errors(model_dir / WEIGHTS_FILE):
            state = load_file(str(model_dir / WEIGHTS_FILE))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{model_dir / WEIGHTS_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval(), vocab
