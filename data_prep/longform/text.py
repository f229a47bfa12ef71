"""A long transcript as the words to align: each source token, normalized, with the boundary after it.

A transcript holds sentences or lines (``name.txt``). Every whitespace-separated
token of the source is one :class:`TextWord`, normalized on its own by the
language's rules (a token of punctuation only normalizes to ""), so the raw
text of any run of words is the source's own. The boundary after a word is a
sentence end (2) at the end of a line or after sentence punctuation, a clause
end (1) after clause punctuation, else a word boundary (0).
"""

from __future__ import annotations

from dataclasses import dataclass

from data_prep.segment import boundary_strength
from data_prep.text.normalize import TextNormalizer

SENTENCE = 2


@dataclass(frozen=True)
class TextWord:
    raw: str  # the token as the source writes it
    norm: str  # normalized ("" when nothing of it remains, e.g. punctuation)
    line: int  # 1-based line of the transcript
    strength: int  # of the boundary after it: 0 word, 1 clause, 2 sentence or line end


def transcript_words(text: str, norm: TextNormalizer) -> list[TextWord]:
    """The words of a transcript (lines separated by ``\\n``, blank lines counted), in order."""
    words: list[TextWord] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        tokens = line.split()
        for k, tok in enumerate(tokens):
            strength = SENTENCE if k == len(tokens) - 1 else boundary_strength(tok)
            words.append(TextWord(tok, norm.normalize(tok), lineno, strength))
    return words
