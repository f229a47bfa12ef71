"""Character vocabulary from the TRAIN split, OOV report for dev/test, optional sentencepiece.

``vocab.json`` maps token -> id: ``<pad>`` 0 (also the CTC blank), ``<unk>`` 1,
the word delimiter ``|`` 2 (it stands for the space), then the training
characters in code point order. This file is the one the model loads.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_prep.manifest import Utterance
from data_prep.outputs import atomic_write_text

PAD, UNK, WORD = "<pad>", "<unk>", "|"


def char_tokens(text: str) -> list[str]:
    """A normalized transcript as vocabulary tokens (spaces become ``|``)."""
    return [WORD if ch == " " else ch for ch in text]


def build_vocab(train: list[Utterance]) -> dict[str, int]:
    """token -> id from the training transcripts only."""
    chars = sorted({t for u in train for t in char_tokens(u.text)} - {WORD})
    vocab = {PAD: 0, UNK: 1, WORD: 2}
    for ch in chars:
        vocab[ch] = len(vocab)
    return vocab


def oov_report(vocab: dict[str, int], utts: list[Utterance], examples: int = 5) -> dict:
    """Per split: characters missing from the vocabulary, their counts and example ids; and the
    running words never seen in the train transcripts (``word_oov_rate``): a word LM of the train
    text cannot propose them, so every one must be spelled from the audio alone.
    """
    out: dict[str, dict] = {}
    train_words = {w for u in utts if u.split == "train" for w in u.text.split()}
    for split in ("dev", "test"):
        rows = [u for u in utts if u.split == split]
        words = [w for u in rows for w in u.text.split()]
        oov_words = sum(w not in train_words for w in words)
        total, counts, where = 0, Counter(), {}
        for u in rows:
            for t in char_tokens(u.text):
                total += 1
                if t not in vocab:
                    counts[t] += 1
                    where.setdefault(t, [])
                    if len(where[t]) < examples and u.id not in where[t]:
                        where[t].append(u.id)
        n_oov = sum(counts.values())
        out[split] = {
            "characters": total,
            "oov_characters": n_oov,
            "oov_rate": round(n_oov / total, 6) if total else 0.0,
            "utterances_with_oov": sum(any(t not in vocab for t in char_tokens(u.text)) for u in rows),
            "words": len(words),
            "oov_words": oov_words,
            "word_oov_rate": round(oov_words / len(words), 6) if words else 0.0,
            "oov": {ch: {"count": c, "codepoint": f"U+{ord(ch):04X}", "examples": where[ch]}
                    for ch, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))},
        }
    return out


def train_sentencepiece(train: list[Utterance], out_dir: Path, vocab_size: int) -> Path:
    """Train ``spm.model``/``spm.vocab`` (unigram) on the training transcripts; returns the model path."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    corpus = out_dir / ".spm_train.txt"
    atomic_write_text(corpus, "".join(u.text + "\n" for u in train))
    try:
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(out_dir / "spm"),
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,  # small alphabets: keep every training character
            hard_vocab_limit=False,  # tiny corpora cannot always fill vocab_size
            num_threads=1,  # deterministic output
            minloglevel=2,
        )
    finally:
        corpus.unlink(missing_ok=True)
    return out_dir / "spm.model"


def write_vocab(path: Path, vocab: dict[str, int]) -> None:
    """Atomically write ``vocab.json``."""
    atomic_write_text(path, json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
