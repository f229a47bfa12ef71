"""``python -m pipeline soup``: average the weights of models fine-tuned from the same start.

    python -m pipeline soup --models exp/sa/whisper_ft/best exp/sa/whisper_ft_s1/best --out exp/sa/whisper_soup2/best

A "model soup" (Wortsman et al., 2022): models fine-tuned from the same pretrained
weights with other seeds (or other settings) usually end in one basin of the loss,
and the mean of their weights is a single model that scores like a small ensemble:
on the Sanskrit dev speaker two seeds of the recipe, at 16.1 and 16.7 % CER
greedy, average to 15.7 % (BENCHMARKS.md). Unlike an ensemble (``rescore --model A
B``) it costs one model's time to decode, rescore and train further.

Every file but the weights must be the same in all models (config, tokenizer,
generation config: one vocabulary, one language token, one restricted softmax),
and ``asr_adapt.json`` must agree on how the model decodes (language, encoder
input, vocabulary). Every ``*.safetensors`` file at the same place in all models
is averaged (``model.safetensors``, and ``ctc/model.safetensors`` of joint-CTC
models), in float32, stored in each tensor's own dtype. The output is written
next to ``--out`` and swapped in whole, and its ``asr_adapt.json`` lists the models
it averages (``soup_of``) instead of one of them's dev figures. ``--out`` may not be,
contain or lie inside one of the models, and only a folder this toolkit wrote is
replaced (:mod:`data_prep.outputs`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from data_prep.outputs import atomic_write_text, build_dir, check_replaceable, guard_output, replace_dir
from pipeline.models.encoder import ADAPT_FILE, read_adapt_info

log = logging.getLogger(__name__)

#: asr_adapt.json fields that say how a model decodes: they must agree across the soup.
DECODING_FIELDS = ("language", "language_token", "encoder_input", "vocabulary", "restricted_vocab", "base_model")
#: asr_adapt.json fields of one training run that say nothing true of the average.
RUN_FIELDS = ("step", "dev_cer", "dev_wer")


class SoupError(ValueError):
    """Models that cannot be averaged; the message names the model and the file."""


def _files(model: Path) -> set[str]:
    return {str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()}


def check_compatible(models: list[Path]) -> tuple[dict, set[str]]:
    """Raise :class:`SoupError` unless the models differ only in their weights; returns the first's
    asr_adapt and its files (relative paths)."""
    if len(models) < 2:
        raise SoupError("a soup needs at least two models")
    first = models[0]
    for m in models:
        if not (m / "config.json").is_file() or not list(m.glob("*.safetensors")):
            raise SoupError(f"{m}: not a model directory (config.json and *.safetensors expected)")
    names = _files(first)
    adapt = _read_adapt(first)
    for m in models[1:]:
        other = _files(m)
        if other != names:
            raise SoupError(f"{m}: its files differ from {first}'s ({sorted(other ^ names)})")
        for name in sorted(names):
            if name.endswith(".safetensors") or name == ADAPT_FILE:
                continue
            if (m / name).read_bytes() != (first / name).read_bytes():
                raise SoupError(f"{m / name} differs from {first / name}: only weights may differ in a soup")
        theirs = _read_adapt(m)
        for key in DECODING_FIELDS:
            if theirs.get(key) != adapt.get(key):
                raise SoupError(f"{m / ADAPT_FILE}: {key} is {theirs.get(key)!r}, {first / ADAPT_FILE} says "
                                f"{adapt.get(key)!r}")  # fmt: skip
    return adapt, names


def _read_adapt(model: Path) -> dict:
    try:
        return read_adapt_info(model)
    except ValueError as e:
        raise SoupError(str(e)) from e


def average_file(paths: list[Path], out: Path) -> int:
    """Average one safetensors file over ``paths`` into ``out``; returns how many tensors differed."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    tensors = []
    for p in paths:
        try:
            tensors.append(load_file(str(p)))
        except SafetensorError as e:  # a truncated or corrupt file (a copy cut short, a full disk)
            raise SoupError(f"{p}: not a readable safetensors file ({e})") from e
    keys = tensors[0].keys()
    mean, differing = {}, 0
    for p, t in zip(paths[1:], tensors[1:]):
        if t.keys() != keys:
            raise SoupError(f"{p}: its tensors differ from {paths[0]}'s ({sorted(set(t) ^ set(keys))[:5]})")
    for key in keys:
        first = tensors[0][key]
        for p, t in zip(paths[1:], tensors[1:]):
            if t[key].shape != first.shape or t[key].dtype != first.dtype:
                raise SoupError(f"{p}: {key} is {tuple(t[key].shape)} {t[key].dtype}, "
                                f"{paths[0]} has {tuple(first.shape)} {first.dtype}")  # fmt: skip
        same = all(torch.equal(t[key], first) for t in tensors[1:])
        if same or not first.is_floating_point():
            if not same:
                raise SoupError(f"{key}: an integer tensor differs between {paths[0]} and the others")
            mean[key] = first
            continue
        differing += 1
        mean[key] = (sum(t[key].float() for t in tensors) / len(tensors)).to(first.dtype)
    save_file(mean, str(out), metadata={"format": "pt"})
    return differing


def check_soup_output(models: list[str | Path], out: str | Path) -> None:
    """Raise :class:`data_prep.outputs.OutputRefused` unless ``out`` may take the soup: it is none of
    the models, holds none and lies in none, and is new or a folder this toolkit wrote."""
    guard_output(out, models)
    check_replaceable(out)


def make_soup(models: list[str | Path], out: str | Path) -> Path:
    """Write the weight average of ``models`` to ``out`` (replaced whole); see the module docstring."""
    import shutil

    models = [Path(m) for m in models]
    out = Path(out)
    check_soup_output(models, out)
    adapt, files = check_compatible(models)
    tmp = build_dir(out)
    shutil.copytree(models[0], tmp, ignore=shutil.ignore_patterns("*.safetensors", ADAPT_FILE))
    for name in sorted(n for n in files if n.endswith(".safetensors")):
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        n = average_file([m / name for m in models], tmp / name)
        log.info("%s: %d tensors averaged over %d models", name, n, len(models))
    if adapt:
        info = {k: v for k, v in adapt.items() if k not in RUN_FIELDS}
        info["soup_of"] = [str(m) for m in models]
        atomic_write_text(tmp / ADAPT_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return replace_dir(tmp, out, "soup")
