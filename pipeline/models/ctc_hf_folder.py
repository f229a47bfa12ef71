"""A plain transformers CTC model folder (the field's aligners and CTC recognizers), read as a CTC checkpoint.

Such a folder holds ``config.json`` (``architectures``: ``Wav2Vec2ForCTC``, ``HubertForCTC``,
``WavLMForCTC``, ``Data2VecAudioForCTC``, ...), the weights, ``vocab.json`` (``<pad>`` is the
CTC blank, ``<unk>``, ``|`` the word delimiter: the convention of
:class:`~pipeline.models.ctc_vocab.CTCVocab`), and optionally ``tokenizer_config.json`` (which may
rename those three tokens, and lists tokens added after ``vocab.json``) and the feature
extractor's settings (``preprocessor_config.json``, or the ``feature_extractor`` of
``processor_config.json``). :func:`load_hf_ctc_folder` gives the model the vocabulary
(``model.ctc_vocab``, in the toolkit's token names) and the input it was trained on
(``model.wave_input``), so it decodes and aligns through the same path as the toolkit's own
wav2vec2 checkpoints (:func:`pipeline.decode.ctc.ctc_logits`).

A vocabulary spelled in capitals only (most English LibriSpeech models) is read in lower case,
since the toolkit's transcripts are case-folded.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

from data_prep.vocab import PAD, UNK, WORD
from pipeline.models.ctc_vocab import CTCVocab, VocabError
from pipeline.models.ctc_wav2vec2 import WaveInput
from pipeline.models.model_files import ModelFileError, model_errors

HF_CONFIG_FILE = "config.json"
HF_VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
ADDED_TOKENS_FILE = "added_tokens.json"
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
SAMPLE_RATE = 16000
#: tokenizer_config.json key -> the toolkit's name of that token
_RENAMABLE = {"pad_token": PAD, "unk_token": UNK, "word_delimiter_token": WORD}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(path, f"cannot be read as JSON ({e})") from e


def is_hf_ctc_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a transformers ``...ForCTC`` model with its ``vocab.json``."""
    folder = Path(folder)
    if not (folder / HF_CONFIG_FILE).is_file() or not (folder / HF_VOCAB_FILE).is_file():
        return False
    try:
        architectures = json.loads((folder / HF_CONFIG_FILE).read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError, AttributeError):
        return False  # the loader names the file; here it is only not recognised
    return any(str(a).endswith("ForCTC") for a in architectures or [])


def _token_name(value) -> str | None:
    """A token of ``tokenizer_config.json``: a string, or an AddedToken object ``{"content": ...}``."""
    return value.get("content") if isinstance(value, dict) else value


def _added_tokens(folder: Path, tokenizer_config: dict) -> dict[str, int]:
    """Tokens the tokenizer numbers after ``vocab.json`` (``<s>``, ``</s>``, ...)."""
    added = {}
    if (folder / ADDED_TOKENS_FILE).is_file():
        added.update(_read_json(folder / ADDED_TOKENS_FILE))
    for i, tok in (tokenizer_config.get("added_tokens_decoder") or {}).items():
        added.setdefault(_token_name(tok), int(i))
    return added


def _case_folded(token_to_id: dict[str, int]) -> dict[str, int]:
    """Capitals-only vocabularies in lower case (unchanged when any letter is lower case or two tokens would merge)."""
    plain = [t for t in token_to_id if t not in (PAD, UNK, WORD) and not (t.startswith("<") and t.endswith(">"))]
    if not any(ch.isupper() for t in plain for ch in t) or any(ch.islower() for t in plain for ch in t):
        return token_to_id
    folded = {t if t not in plain else unicodedata.normalize("NFC", t.casefold()): i for t, i in token_to_id.items()}
    return folded if len(folded) == len(token_to_id) else token_to_id


def hf_ctc_vocab(folder: str | os.PathLike, vocab_size: int) -> CTCVocab:
    """The vocabulary of a plain CTC folder over ``vocab_size`` outputs, in the toolkit's token names
    (:class:`VocabError` naming the file when it cannot be one)."""
    folder = Path(folder)
    path = folder / HF_VOCAB_FILE
    data = _read_json(path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        raise VocabError(f"{path}: one vocabulary per language ({', '.join(list(data)[:3])}, ...: an MMS "
                         "multi-language tokenizer); save the model with one language's adapter and vocabulary")
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise VocabError(f"{path}: expected a JSON object token -> integer id")
    tok_path = folder / TOKENIZER_CONFIG_FILE
    tokenizer_config = _read_json(tok_path) if tok_path.is_file() else {}
    token_to_id = dict(data)
    for tok, i in _added_tokens(folder, tokenizer_config).items():
        if tok not in token_to_id and i not in token_to_id.values() and i < vocab_size:
            token_to_id[tok] = i
    token_to_id = _renamed(token_to_id, tokenizer_config, tok_path)
    if len(token_to_id) != vocab_size:
        raise VocabError(f"{path}: {len(token_to_id)} tokens, but the model ({folder / HF_CONFIG_FILE}) has "
                         f"{vocab_size} outputs")
    return CTCVocab(_case_folded(token_to_id), source=str(path))


def _renamed(token_to_id: dict[str, int], tokenizer_config: dict, tok_path: Path) -> dict[str, int]:
    """The tokenizer's blank, unknown and word delimiter tokens under the toolkit's names."""
    out = dict(token_to_id)
    for key, ours in _RENAMABLE.items():
        theirs = _token_name(tokenizer_config.get(key))
        if not theirs or theirs == ours or theirs not in out:
            continue
        if ours in out:
            raise VocabError(f"{tok_path}: {key} is {theirs!r}, but the vocabulary also has {ours!r} as another token")
        out[ours] = out.pop(theirs)
    return out


def hf_wave_input(folder: str | os.PathLike) -> WaveInput:
    """The input the model was trained on, from its feature extractor's settings (defaults when it has none)."""
    folder = Path(folder)
    for name in PREPROCESSOR_FILES:
        path = folder / name
        if path.is_file():
            settings = _read_json(path)
            settings = settings.get("feature_extractor", settings) if isinstance(settings, dict) else {}
            rate = settings.get("sampling_rate", SAMPLE_RATE)
            if rate != SAMPLE_RATE:
                raise ModelFileError(path, f"sampling_rate {rate}: the toolkit feeds {SAMPLE_RATE} Hz audio")
            return WaveInput(normalize=bool(settings.get("do_normalize", True)),
                             attention_mask=settings.get("return_attention_mask"))  # fmt: skip
    return WaveInput()


def load_hf_ctc_folder(folder: str | os.PathLike):
    """The ``...ForCTC`` model of a plain folder, in eval mode, with ``ctc_vocab`` and ``wave_input`` attached.

    The vocabulary and the input settings are checked before the weights are read."""
    from transformers import AutoConfig, AutoModelForCTC

    folder = Path(folder)
    with model_errors(folder / HF_CONFIG_FILE):
        config = AutoConfig.from_pretrained(str(folder))
    vocab = hf_ctc_vocab(folder, config.vocab_size)
    wave_input = hf_wave_input(folder)
    with model_errors(folder):
        model = AutoModelForCTC.from_pretrained(str(folder), config=config)
    model.ctc_vocab = vocab
    model.wave_input = wave_input
    return model.eval()
