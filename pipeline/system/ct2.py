"""A Whisper decoder as a CTranslate2 model (``export --format ct2``), for faster-whisper and CTranslate2.

    python -m pipeline export --format ct2 --quantization int8 --model exp/demo/final --data data/demo \\
        --out exp/demo/ct2
    # then, without this toolkit
    from faster_whisper import WhisperModel
    segments, info = WhisperModel("exp/demo/ct2").transcribe("clip.wav")

The weights go through CTranslate2's own converter
(:class:`ctranslate2.converters.TransformersConverter`); LoRA adapters were merged when
the model was exported by training. What a fine-tuned model needs beyond the plain
conversion, so that the runtimes decode it the way it was trained:

- **Language.** ``config.json``'s ``lang_ids`` holds the trained language token only:
  faster-whisper, which detects the language when it is not told one, then always
  finds the trained one (a token :mod:`pipeline.models.language` added included; but
  faster-whisper accepts only Whisper's own language codes, so a model with a new
  language token decodes through CTranslate2 itself, prompt given).
- **Restricted vocabulary** (``train.restrict_vocab``). The tokens the model never
  learnt to score are suppressed by the model itself: the output layer gets a bias
  of :data:`SUPPRESSED_LOGIT` on them. ``config.json``'s ``suppress_ids`` lists them
  too, but faster-whisper passes its own suppress list, which replaces that one.
- **A small vocabulary** (``model.vocabulary: bpe``). CTranslate2 takes a Whisper
  whose vocabulary lacks the multilingual one's marks (:data:`MULTILINGUAL_VOCAB`
  tokens, an empty token) for an English-only model: no language or task token in
  the prompt, no language detection. The vocabulary is padded with unused tokens
  (zero rows, suppressed), the first of them empty, to that size.
- **Files.** ``tokenizer.json`` and ``preprocessor_config.json`` (faster-whisper
  reads them), ``asr_adapt.json`` (how the model was trained) and ``ct2_export.json``
  (:class:`CT2Export`: the prompt, the quantization, what was changed).

A model trained on trimmed encoder input (``asr_adapt.json``: ``encoder_input``
``"trimmed"``) decodes best from the clip's real-length features (CTranslate2 takes
any length up to 30 s): :func:`ct2_features` gives them, :func:`ct2_greedy` decodes.
faster-whisper pads every clip to 30 s, as Whisper was pretrained.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_prep.outputs import atomic_write_text
from pipeline.system.export import (
    DECODER_DIR,
    CardOptions,
    CT2Writer,
    ExportError,
    Prepared,
    system_name,
    write_export,
)
from pipeline.system.spec import SystemSpec, SystemSpecError, is_system_dir, read_spec

#: ``--quantization`` of ``export --format ct2`` (CTranslate2 converts again on load where a device lacks one).
QUANTIZATIONS = ("int8", "float16", "float32")
#: CTranslate2 treats a Whisper with fewer tokens as English-only (its own rule: vocabulary size >= 51865).
MULTILINGUAL_VOCAB = 51865
#: The output bias of a token the model never learnt to score (finite: float16 holds it, softmax stays defined).
SUPPRESSED_LOGIT = -1.0e4
#: The bias of a padding token: below every suppressed token, so that no rule forcing a token class picks one.
PADDING_LOGIT = 2 * SUPPRESSED_LOGIT
EXPORT_FILE = "ct2_export.json"


@dataclass(frozen=True)
class CT2Export:
    """``ct2_export.json``: how to prompt the CTranslate2 model and what the export changed."""

    source: str  # the Whisper folder it was converted from
    quantization: str
    prompt: list[str]  # the decoder prompt training used: start, language, task, no-timestamps tokens
    prompt_ids: list[int]
    language_token: str
    encoder_input: str  # "trimmed": decode from the clip's real-length features; "padded": 30-s windows
    suppressed_in_model: int  # tokens suppressed by the output bias (a restricted vocabulary)
    padded_vocabulary: int  # unused tokens appended to reach CTranslate2's multilingual size (0: none)


# ----------------------------------------------------------------------------------- preparing the model


class _PaddedVocabulary:
    """What CTranslate2's Whisper loader reads of a tokenizer (``get_vocab``), padded to ``size`` tokens.

    The first padding token is the empty string when the vocabulary lacks one: multilingual
    Whisper's vocabulary has it (id 50256), English-only Whisper's has not, and CTranslate2
    tells the two apart by it (older releases by the size, 51865).
    """

    def __init__(self, tokenizer, size: int):
        self.vocab = dict(tokenizer.get_vocab())
        names = ([""] if "" not in self.vocab else []) + [f"<|unused_{k}|>" for k in range(size)]
        for name, i in zip(names, range(len(self.vocab), size)):
            self.vocab[name] = i

    def get_vocab(self) -> dict[str, int]:
        return self.vocab


def runtime_ready(model, tokenizer, language: str, restricted: bool) -> tuple[object, _PaddedVocabulary, int, int]:
    """``model`` changed (in place) so that a CTranslate2 runtime decodes it as trained, and its vocabulary.

    Returns (model, the vocabulary to convert with, tokens suppressed by the output bias, padding tokens
    added). ``language``: the trained language token; ``restricted``: the generation config's
    ``suppress_tokens`` are the tokens outside a restricted training vocabulary.
    """
    import torch

    from pipeline.models.language import prompt_with_language

    gen = model.generation_config
    token = prompt_with_language(gen, language)
    gen.lang_to_id = {token: int(gen.lang_to_id[token])}  # -> config.json lang_ids: detection finds it
    old_vocab = model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) != old_vocab:
        raise ExportError(f"the tokenizer has {len(tokenizer)} tokens but the model {old_vocab}")
    suppressed = sorted(set(gen.suppress_tokens or [])) if restricted else []
    padding = max(0, MULTILINGUAL_VOCAB - old_vocab)
    if not padding and "" not in tokenizer.get_vocab():
        raise ExportError(f"a vocabulary of {old_vocab} tokens without Whisper's empty token (id 50256): "
                             "CTranslate2 would take the model for an English-only one")  # fmt: skip
    if padding:
        model.resize_token_embeddings(old_vocab + padding, mean_resizing=False)
        with torch.no_grad():
            model.get_input_embeddings().weight[old_vocab:] = 0
    if suppressed or padding:
        weight = model.get_output_embeddings().weight
        head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=True)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.weight[old_vocab:] = 0
            head.bias.zero_()
            head.bias[suppressed] = SUPPRESSED_LOGIT
            head.bias[old_vocab:] = PADDING_LOGIT
        model.proj_out = head
    return model, _PaddedVocabulary(tokenizer, old_vocab + padding), len(suppressed), padding


def _converter(model, tokenizer, source: Path):
    """CTranslate2's converter, handed the prepared in-memory model and tokenizer instead of loading ``source``."""
    from ctranslate2.converters import TransformersConverter

    class _Prepared(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            return model

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return tokenizer

    return _Prepared(str(source))


# ----------------------------------------------------------------------------------- the export


def whisper_source(model: str | os.PathLike) -> Path:
    """The Whisper folder to convert: ``model`` itself, a system directory's decoder, or a bundled name's folder."""
    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint

    path = Path(model)
    if is_system_dir(path):
        try:
            spec = read_spec(path)
        except SystemSpecError as e:
            raise ExportError(str(e)) from e
        if spec.kind != "decoder":
            raise ExportError(f"{path}: a {spec.kind} system has no CTranslate2 form (its search needs this "
                                 f"toolkit); export one of its decoders: --model {path / DECODER_DIR}")  # fmt: skip
        path = path / spec.decoders[0]
    elif not path.is_dir():
        from pipeline.pretrained.registry import ModelNotAvailable, resolve_model

        try:
            path = resolve_model(model)
        except ModelNotAvailable as e:
            raise ExportError(f"{model}: {e}") from e
    if is_ctc_checkpoint(path) or not (path / "config.json").is_file():
        raise ExportError(f"{path}: not a Whisper model folder (config.json of a WhisperForConditionalGeneration)")
    return path


def export_ct2(model: str | os.PathLike, out: str | os.PathLike, data: str | os.PathLike, *,
               quantization: str = "int8", name: str | None = None, card: CardOptions = CardOptions()) -> Path:  # fmt: skip
    """Write the Whisper decoder ``model`` (folder, system directory or bundled name) as a CTranslate2 model.

    ``data``: the prepared data folder (the language to prompt with when the model records
    none; the model card's statistics). Only a folder this toolkit made is replaced.
    """
    from pipeline.system.card import ct2_card

    if quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization {quantization}: one of {', '.join(QUANTIZATIONS)}")
    source = whisper_source(model)
    prepared = Prepared.read(data)

    def fill(tmp: Path, results: list) -> None:
        record = _write(source, tmp, prepared.language, quantization)
        system = name or _system_name(model, source)
        atomic_write_text(tmp / "README.md", ct2_card(record, system, prepared, results, card, Path(out).name))

    return write_export(out, [model, source, data, *card.results], card, fill)


def _system_name(model: str | os.PathLike, source: Path) -> str:
    """A system directory's own name, else the experiment folder's (exp/demo/whisper_ft/best -> whisper_ft)."""
    return read_spec(model).name if is_system_dir(model) else system_name(source)


def ct2_writer(quantization: str) -> CT2Writer:
    """What ``export --with-ct2 QUANTIZATION`` adds to a system directory: its first decoder as a CTranslate2
    model (``ct2/``, prompted with the system's language token), for ``transcribe --speed fast``."""
    import importlib.util

    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint

    if quantization not in QUANTIZATIONS:
        raise ExportError(f"--with-ct2 {quantization}: one of {', '.join(QUANTIZATIONS)}")
    if importlib.util.find_spec("ctranslate2") is None:
        raise ExportError("--with-ct2 needs CTranslate2, which is not installed (pip install '.[ct2]')")

    def write(decoder: Path, dst: Path, spec: SystemSpec) -> None:
        if is_ctc_checkpoint(decoder):
            raise ExportError(f"--with-ct2: {spec.decoders[0]} is a CTC checkpoint; CTranslate2 converts a Whisper "
                              "decoder only")  # fmt: skip
        _write(decoder, dst, spec.language, quantization, forced=spec.search.language_token,
               label=spec.decoders[0])  # fmt: skip

    return write


def _write(source: Path, tmp: Path, language: str, quantization: str, *, forced: str | None = None,
           label: str | None = None) -> CT2Export:  # fmt: skip
    """Convert ``source`` into ``tmp``. ``forced``: the language token to prompt with (default: the trained
    one, else ``language``); ``label``: how the record names the source (default: its absolute path)."""
    from pipeline.models.encoder import ADAPT_FILE
    from pipeline.models.language import LanguageError, language_token
    from pipeline.models.whisper import load_whisper

    model, processor = load_whisper(source)
    adapt = dict(model.asr_adapt)
    token = language_token(forced or adapt.get("language_token") or adapt.get("language") or language)
    try:
        model, vocabulary, suppressed, padding = runtime_ready(model, processor.tokenizer, token,
                                                               bool(adapt.get("restricted_vocab")))  # fmt: skip
    except (LanguageError, ExportError) as e:
        raise ExportError(f"{source}: {e}") from e
    _converter(model, vocabulary, source).convert(str(tmp), quantization=quantization, force=True)
    processor.tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
    processor.feature_extractor.to_json_file(tmp / "preprocessor_config.json")
    if (source / ADAPT_FILE).is_file():
        shutil.copyfile(source / ADAPT_FILE, tmp / ADAPT_FILE)
    gen = model.generation_config
    ids = [gen.decoder_start_token_id, gen.lang_to_id[token], gen.task_to_id["transcribe"], gen.no_timestamps_token_id]
    record = CT2Export(source=label or str(source.resolve()), quantization=quantization,
                       prompt=processor.tokenizer.convert_ids_to_tokens(ids), prompt_ids=[int(i) for i in ids],
                       language_token=token, encoder_input=adapt.get("encoder_input", "padded"),
                       suppressed_in_model=suppressed, padded_vocabulary=padding)  # fmt: skip
    atomic_write_text(tmp / EXPORT_FILE, json.dumps(asdict(record), ensure_ascii=False, indent=1) + "\n")
    return record


def read_export(folder: str | os.PathLike) -> CT2Export:
    """The ``ct2_export.json`` of a CTranslate2 folder ``export --format ct2`` wrote."""
    path = Path(folder) / EXPORT_FILE
    try:
        return CT2Export(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:
        raise ExportError(f"{path}: not the record of a CTranslate2 export ({e})") from e


# ----------------------------------------------------------------------------------- decoding


def ct2_features(feature_extractor, audio: np.ndarray, trimmed: bool) -> np.ndarray:
    """(n_mels, T) log-mel of one 16 kHz clip, as this toolkit's decode computes it: the 30-s window's
    features, cut to the clip's own frames when the model was trained on trimmed input."""
    from pipeline.models.encoder import SAMPLE_RATE, mel_length

    feats = feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
    return np.ascontiguousarray(feats[:, : mel_length(len(audio))] if trimmed else feats, dtype=np.float32)


def ct2_greedy(model, features: np.ndarray, prompt_ids: list[int], max_length: int = 448) -> list[int]:
    """Greedy token ids (prompt and end token excluded) of a ``ctranslate2.models.Whisper`` for one clip."""
    import ctranslate2

    batch = ctranslate2.StorageView.from_array(features[None])
    result = model.generate(batch, [list(prompt_ids)], beam_size=1, max_length=max_length)
    return list(result[0].sequences_ids[0])


#: Whisper's decoder positions: the prompt and the generated tokens of one piece together.
WHISPER_POSITIONS = 448


def ct2_batch_decoder(folder: str | os.PathLike, device: str = "cpu", threads: int = 0):
    """A :data:`~pipeline.decode.recognizer.BatchDecoder` of the CTranslate2 folder ``folder`` (``export``'s):
    greedy, as this toolkit's greedy search decodes (pieces of at most 30 s, each piece's token budget, a
    run-away loop cut), on the features the model was trained on (:func:`ct2_features`). Pieces whose
    features have one shape (every piece of a model trained on 30-s windows) share a ``generate`` call."""
    import ctranslate2
    import tokenizers
    from transformers import WhisperFeatureExtractor

    from pipeline.decode.whisper import split_long

    folder = Path(folder)
    record = read_export(folder)
    kind, _, index = device.partition(":")
    model = ctranslate2.models.Whisper(str(folder), device=kind, device_index=int(index or 0), intra_threads=threads)
    features_of = WhisperFeatureExtractor.from_pretrained(folder)
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    trimmed = record.encoder_input == "trimmed"

    def decode(waves) -> list[tuple[str, int]]:
        pieces = [(k, p) for k, wave in enumerate(waves) for p in split_long(np.asarray(wave, dtype=np.float32))]
        features = [ct2_features(features_of, p if len(p) else np.zeros(160, np.float32), trimmed) for _, p in pieces]
        ids = _generate_greedy(model, features, [len(p) for _, p in pieces], record.prompt_ids)
        texts: list[list[str]] = [[] for _ in waves]
        counts = [0] * len(waves)
        for (k, _), piece_ids in zip(pieces, ids):
            texts[k].append(tokenizer.decode(piece_ids, skip_special_tokens=True).strip())
            counts[k] += len(piece_ids)
        return [(" ".join(t for t in texts[k] if t), counts[k]) for k in range(len(waves))]

    return decode


def _generate_greedy(model, features: list[np.ndarray], samples: list[int], prompt: list[int]) -> list[list[int]]:
    """Each piece's content tokens: greedy within its token budget, a run-away loop cut (as
    :func:`pipeline.decode.whisper.clean_tokens` does); pieces of one feature shape in one call."""
    import ctranslate2

    from pipeline.decode.whisper import token_budget, truncate_loop
    from pipeline.models.encoder import SAMPLE_RATE

    budgets = [token_budget(n / SAMPLE_RATE, WHISPER_POSITIONS - len(prompt)) for n in samples]
    out: list[list[int]] = [[] for _ in features]
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(features):
        groups.setdefault(f.shape, []).append(i)
    for members in groups.values():
        batch = ctranslate2.StorageView.from_array(np.stack([features[i] for i in members]))
        longest = max(budgets[i] for i in members)
        # CTranslate2's Whisper generates at most half of max_length new tokens (as Whisper's own sample_len)
        results = model.generate(batch, [list(prompt)] * len(members), beam_size=1,
                                 max_length=2 * longest + 1)  # fmt: skip
        for i, result in zip(members, results):
            ids = list(result.sequences_ids[0])
            ended = len(ids) < longest  # the end token, not the length cap, stopped it
            while ids and ids[0] in prompt:  # a prompt token generated again is no content (as _content drops it)
                ids.pop(0)
            if len(ids) >= budgets[i]:  # ran on past its own piece's budget (for a longer piece of its batch)
                ids, ended = ids[: budgets[i]], False
            out[i] = ids if ended else truncate_loop(ids)[0]  # stopped by itself: repeats are what it heard
    return out
