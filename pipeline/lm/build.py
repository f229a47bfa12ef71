"""Build the word n-gram LM for CTC beam search from TRAIN transcripts only.

The texts must be the normalized transcripts of the training split (the same
normalizer as the references), never dev or test: an LM that has seen the
test sentences makes any WER it helps to reach meaningless.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from pipeline.lm.arpa import estimate, write_arpa

log = logging.getLogger(__name__)


def build_ngram_lm(texts: Iterable[str], order: int, out_path: str | Path) -> Path:
    """Estimate an interpolated modified Kneser-Ney word ``order``-gram LM and write it as ARPA.

    ``texts``: one normalized sentence each (words split on whitespace).
    Returns ``out_path`` (use a ``.arpa`` suffix: pyctcdecode reads the unigram
    list from it).
    """
    if order < 2:
        raise ValueError(f"LM order must be >= 2 (KenLM, which reads the file, needs at least bigrams), got {order}")
    sentences = [t.split() for t in texts]
    model = estimate(sentences, order)
    fallback = [n + 1 for n, d in enumerate(model.discounts) if d.fallback]
    if fallback:
        log.info("LM orders %s: too little text for Kneser-Ney discount estimates, using 0.5/1.0/1.5", fallback)
    path = write_arpa(model, out_path)
    log.info("wrote %d-gram LM (%d unigrams) from %d sentences to %s", order, len(model.prob[1]), len(sentences), path)
    return path


#: A word boundary as a token of the character LM (KenLM splits its input on whitespace).
WORD_BOUNDARY = "\u2581"


def char_tokens(text: str) -> list[str]:
    """A normalized sentence as character-LM tokens: one per code point, spaces as ``WORD_BOUNDARY``."""
    return [WORD_BOUNDARY if c == " " else c for c in " ".join(text.split())]


def build_char_lm(texts: Iterable[str], order: int, out_path: str | Path) -> Path:
    """A character ``order``-gram LM (same estimator) over :func:`char_tokens` of ``texts``.

    With a third or more of the test words never seen in training (Sanskrit: 43 %),
    a word LM can only help the known words; a character LM also scores how
    plausible the spelling of an unseen word is.
    """
    if order < 2:
        raise ValueError(f"LM order must be >= 2, got {order}")
    sentences = [char_tokens(t) for t in texts if t.strip()]
    path = write_arpa(estimate(sentences, order), out_path)
    log.info("wrote character %d-gram LM from %d sentences to %s", order, len(sentences), path)
    return path


def read_unigrams(arpa_path: str | Path) -> list[str]:
    """The words of an ARPA file's 1-gram section (without <s>, </s>, <unk>)."""
    words, inside = [], False
    path = Path(arpa_path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
                continue
            if inside:
                if not line or line.startswith("\\"):
                    break
                parts = line.split("\t")
                if len(parts) < 2:
                    raise ValueError(f"{path}:{lineno}: malformed 1-gram line {line!r}")
                if parts[1] not in ("<s>", "</s>", "<unk>"):
                    words.append(parts[1])
    if not inside:
        raise ValueError(f"{path}: no \\1-grams: section (not an ARPA file?)")
    return words
