"""A decoder vocabulary learnt from the target language (``model.vocabulary: bpe``).

Whisper's byte-level BPE has few merges for Indic scripts: an average Sanskrit
train sentence (about 7 words) costs it 62 tokens, a Devanagari character often two.
This module trains a new byte-level BPE on the normalized transcripts of the
TRAIN split and moves a pretrained Whisper onto it:

* **Tokenizer.** ``tokenizers``' BPE trainer learns up to ``size`` text tokens
  (the 256 byte pieces + merges) from the train texts, each with a leading
  space as :class:`pipeline.models.language.LabelEncoder` writes labels. After
  them come the old tokenizer's added tokens in their old order and with their
  old flags (``<|endoftext|>``, ``<|startoftranscript|>``, the language tokens,
  ``<|translate|>`` ... ``<|notimestamps|>``, then the timestamp tokens, and a
  new language token if one was added), so the layout is Whisper's and the
  result is a plain :class:`~transformers.WhisperTokenizer`: an exported model
  loads in ``transformers.pipeline`` with no project code.
* **Pre-tokenization is Whisper's own** (GPT-2's regex, then bytes):
  ``WhisperTokenizer`` imposes it again whenever it is loaded, so the BPE is
  learnt under it. The regex separates letters from combining marks (vowel
  signs, virama, anusvara), so no token spans a matra boundary: the floor is
  the number of pre-tokens (37 for that Sanskrit sentence, not 7), and a
  small corpus saturates the vocabulary early (Sanskrit train text: 1,294
  text tokens; the demo's: 321). ``python -m benchmarks.vocab
  tokens`` shows the lengths for a manifest.
* **Embeddings.** A text token's row is the mean of the pretrained rows of its
  old-tokenizer pieces: the old BPE applied to the token's bytes (both
  tokenizers share the byte alphabet, so this also works for a token that is
  part of a UTF-8 character, where decoding to text would give U+FFFD). An
  added token keeps its own row. The tied output layer follows the input
  embedding (an untied one gets the same treatment from its own rows).
* **Ids.** ``config`` and ``generation_config`` (start/end/pad tokens,
  language and task tokens, ``suppress_tokens``, ``begin_suppress_tokens``,
  ``forced_decoder_ids``) are mapped to the new ids by token string; a text
  token the new vocabulary lacks is dropped from the suppress lists.

The trainer builds the vocabulary once per output directory and saves it in
``<output_dir>/vocab/`` with a key of its inputs, so a resumed run reuses it
(and refuses a changed one when checkpoints exist).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from torch import nn

from data_prep.manifest import Utterance
from data_prep.outputs import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_SIZE = 1000  # text tokens when model.vocabulary_size is 0
MIN_SIZE = 300  # the 256 byte pieces + at least 44 merges
MIN_FREQUENCY = 2  # a merge must occur at least twice in the train text
INFO_FILE = "vocab_info.json"


class VocabularyError(ValueError):
    """A new vocabulary cannot be built or reused."""


def train_texts(utts: Sequence[Utterance]) -> list[str]:
    """The texts the BPE learns from: each non-empty normalized transcript with a leading space."""
    return [" " + u.text.strip() for u in utts if u.text.strip()]


def _added_tokens(tokenizer) -> list[tuple[int, AddedToken]]:
    return sorted(tokenizer.added_tokens_decoder.items())


def train_bpe(texts: Sequence[str], size: int, old_tokenizer):
    """A ``WhisperTokenizer``: a byte-level BPE of <= ``size`` text tokens, then the old added tokens."""
    from transformers import WhisperTokenizer

    if size < MIN_SIZE:
        raise VocabularyError(f"vocabulary size {size} < {MIN_SIZE} (256 byte pieces + merges)")
    if not texts:
        raise VocabularyError("no train text to learn a vocabulary from")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # WhisperTokenizer's, see module doc
    trainer = trainers.BpeTrainer(
        vocab_size=size, min_frequency=MIN_FREQUENCY, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator(list(texts), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    new = WhisperTokenizer(vocab=model["vocab"], merges=merges)

    added = _added_tokens(old_tokenizer)
    runs: list[tuple[bool, list[AddedToken]]] = []  # consecutive tokens with the same "special" flag
    for _, tok in added:
        copy = AddedToken(tok.content, single_word=tok.single_word, lstrip=tok.lstrip, rstrip=tok.rstrip,
                          normalized=tok.normalized, special=tok.special)  # fmt: skip
        if runs and runs[-1][0] == tok.special:
            runs[-1][1].append(copy)
        else:
            runs.append((tok.special, [copy]))
    for special, tokens in runs:
        new.add_tokens(tokens, special_tokens=special)
    # Listed in all_special_ids (as in Whisper's own tokenizer): transformers' ASR pipeline relies on it.
    new.extra_special_tokens = [tok.content for _, tok in added if tok.special]

    base = len(model["vocab"])
    for k, (old_id, tok) in enumerate(added):
        if new.convert_tokens_to_ids(tok.content) != base + k or old_id != added[0][0] + k:
            raise VocabularyError(f"added token {tok.content!r} did not keep its place (old id {old_id})")
    if len(new) != base + len(added):
        raise VocabularyError(f"new tokenizer has {len(new)} tokens, expected {base} + {len(added)}")
    return new


def id_map(old_tokenizer, new_tokenizer) -> dict[int, int]:
    """Old id -> new id for every token string both vocabularies have."""
    new_vocab = new_tokenizer.get_vocab()
    return {i: new_vocab[s] for s, i in old_tokenizer.get_vocab().items() if s in new_vocab}


def embedding_sources(old_tokenizer, new_tokenizer) -> list[list[int]]:
    """For each new id, the old ids whose embedding rows it averages (see the module doc)."""
    old_model = old_tokenizer.backend_tokenizer.model
    added = {tok.content for _, tok in _added_tokens(new_tokenizer)}
    sources = []
    for token in new_tokenizer.convert_ids_to_tokens(list(range(len(new_tokenizer)))):
        if token in added:
            sources.append([old_tokenizer.convert_tokens_to_ids(token)])
        else:
            sources.append([t.id for t in old_model.tokenize(token)])
        if not sources[-1] or any(i is None for i in sources[-1]):
            raise VocabularyError(f"token {token!r} has no pieces in the old vocabulary")
    return sources


def _mean_rows(weight: torch.Tensor, sources: list[list[int]]) -> torch.Tensor:
    return torch.stack([weight[ids].mean(dim=0) for ids in sources])


def _remap_token_ids(cfg, ids: dict[int, int]) -> None:
    """Map every token-id field of a model or generation config (fields it lacks are left out)."""

    def one(i):
        if i is None:
            return None
        if i not in ids:
            raise VocabularyError(f"token id {i} of the config has no counterpart in the new vocabulary")
        return ids[i]

    for key in ("decoder_start_token_id", "bos_token_id", "pad_token_id", "no_timestamps_token_id",
                "prev_sot_token_id"):  # fmt: skip
        if getattr(cfg, key, None) is not None:
            setattr(cfg, key, one(getattr(cfg, key)))
    eos = getattr(cfg, "eos_token_id", None)
    if eos is not None:
        cfg.eos_token_id = [one(i) for i in eos] if isinstance(eos, list) else one(eos)
    for key in ("lang_to_id", "task_to_id"):
        table = getattr(cfg, key, None)
        if table:
            setattr(cfg, key, {k: one(v) for k, v in table.items()})
    for key in ("suppress_tokens", "begin_suppress_tokens"):
        listed = getattr(cfg, key, None)
        if listed is not None:
            setattr(cfg, key, [ids[i] for i in listed if i in ids])
    forced = getattr(cfg, "forced_decoder_ids", None)
    if forced:
        cfg.forced_decoder_ids = [[pos, one(i)] for pos, i in forced]


def adopt_vocabulary(model, processor, new_tokenizer) -> None:
    """Move ``model`` (a plain Whisper) and ``processor`` from their tokenizer to ``new_tokenizer``."""
    from pipeline.models.language import _fill_timestamp_gap

    old = processor.tokenizer
    emb = model.get_input_embeddings()
    _fill_timestamp_gap(old, emb.weight.shape[0])  # the model's timestamp rows must have names
    if len(old) != emb.weight.shape[0]:
        raise VocabularyError(
            f"tokenizer has {len(old)} tokens, the model's embedding {emb.weight.shape[0]} rows"
        )
    ids = id_map(old, new_tokenizer)
    sources = embedding_sources(old, new_tokenizer)
    out = model.get_output_embeddings()
    tied = out.weight.data_ptr() == emb.weight.data_ptr()
    n, d = len(new_tokenizer), emb.weight.shape[1]
    pad = ids.get(emb.padding_idx) if emb.padding_idx is not None else None
    new_emb = nn.Embedding(n, d, padding_idx=pad, device=emb.weight.device, dtype=emb.weight.dtype)
    with torch.no_grad():
        new_emb.weight.copy_(_mean_rows(emb.weight, sources))
        new_out = nn.Linear(d, n, bias=False, device=out.weight.device, dtype=out.weight.dtype)
        if tied:
            new_out.weight = new_emb.weight
        else:
            new_out.weight.copy_(_mean_rows(out.weight, sources))
    model.set_input_embeddings(new_emb)
    model.set_output_embeddings(new_out)
    model.model.decoder.padding_idx = pad  # what from_pretrained sets from config.pad_token_id
    model.config.vocab_size = n
    _remap_token_ids(model.config, ids)
    _remap_token_ids(model.generation_config, ids)
    processor.tokenizer = new_tokenizer


# ------------------------------------------------------------------------------------ on disk


def vocabulary_key(texts: Sequence[str], size: int, old_tokenizer) -> str:
    """Hash of everything the vocabulary depends on: texts, size, trainer settings, old added tokens."""
    what = {
        "texts": list(texts), "size": size, "min_frequency": MIN_FREQUENCY,
        "added": [t.content for _, t in _added_tokens(old_tokenizer)],
    }  # fmt: skip
    return hashlib.sha256(json.dumps(what, ensure_ascii=False).encode("utf-8")).hexdigest()


def mean_tokens(tokenizer, texts: Sequence[str]) -> float:
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts) / max(1, len(texts))


def save_vocabulary(tokenizer, out_dir: str | Path, key: str, info: dict) -> None:
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    atomic_write_text(
        out_dir / INFO_FILE, json.dumps({"key": key, **info}, indent=2, ensure_ascii=False) + "\n"
    )


def saved_key(vocab_dir: str | Path) -> str | None:
    path = Path(vocab_dir) / INFO_FILE
    return json.loads(path.read_text(encoding="utf-8"))["key"] if path.is_file() else None


def load_vocabulary(vocab_dir: str | Path):
    from transformers import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(str(vocab_dir))


def build_vocabulary(
    vocab_dir: str | Path, utts: Sequence[Utterance], size: int, old_tokenizer, *, may_replace: bool
) -> dict:
    """Train and save the vocabulary in ``vocab_dir`` unless the same one is there; returns its info.

    ``may_replace``: whether a different saved vocabulary may be overwritten (not when
    checkpoints were trained on it).
    """
    texts = train_texts(utts)
    key = vocabulary_key(texts, size, old_tokenizer)
    have = saved_key(vocab_dir)
    if have == key:
        return json.loads((Path(vocab_dir) / INFO_FILE).read_text(encoding="utf-8"))
    if have is not None and not may_replace:
        raise VocabularyError(
            f"{vocab_dir}: the saved vocabulary was learnt from other train text or settings than this run's, "
            "and checkpoints were trained on it: use a new output_dir"
        )
    new = train_bpe(texts, size, old_tokenizer)
    info = {
        "size": size, "text_tokens": len(new) - len(_added_tokens(new)), "added_tokens": len(_added_tokens(new)),
        "train_texts": len(texts), "tokens_per_train_text": round(mean_tokens(new, texts), 3),
        "old_tokens_per_train_text": round(mean_tokens(old_tokenizer, texts), 3),
    }  # fmt: skip
    save_vocabulary(new, vocab_dir, key, info)
    log.info("new vocabulary in %s: %d text tokens + %d added; %.1f tokens per train text (was %.1f)",
             vocab_dir, info["text_tokens"], info["added_tokens"], info["tokens_per_train_text"],
             info["old_tokens_per_train_text"])  # fmt: skip
    return {"key": key, **info}
