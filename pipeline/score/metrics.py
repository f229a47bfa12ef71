"""Word and character error counts, per utterance, from jiwer alignments.

The alignment itself is jiwer's (``process_words`` / ``process_characters``,
a Levenshtein alignment with unit costs); this module only turns jiwer's
alignment chunks into per-utterance counts and sums them.

Choices, stated once:

* WER = (S + D + I) / N_ref_words, corpus-level: errors and reference lengths
  are summed over utterances before dividing (so long utterances weigh more).
* CER is computed on Unicode code points with spaces KEPT as characters, so a
  wrongly split or merged word costs one character error. A Devanagari vowel
  sign (matra) is its own code point: "कि" is two characters, and "कि" -> "का"
  is one substitution.
* SER (sentence error rate) = fraction of utterances with at least one word
  error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class Counts:
    """Edit counts of one alignment (or a sum of them)."""

    sub: int = 0
    dele: int = 0
    ins: int = 0
    hit: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def ref_len(self) -> int:
        """Reference length N = S + D + H."""
        return self.sub + self.dele + self.hit

    @property
    def rate(self) -> float:
        """Error rate errors / N; with an empty reference, the number of insertions."""
        return self.errors / self.ref_len if self.ref_len else float(self.ins)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.sub + other.sub, self.dele + other.dele, self.ins + other.ins, self.hit + other.hit)

    def to_json(self) -> dict:
        return {"S": self.sub, "D": self.dele, "I": self.ins, "H": self.hit}

    @classmethod
    def from_json(cls, d: dict) -> Counts:
        return cls(sub=int(d["S"]), dele=int(d["D"]), ins=int(d["I"]), hit=int(d["H"]))


def sum_counts(items: Sequence[Counts]) -> Counts:
    total = Counts()
    for c in items:
        total = total + c
    return total


def chunk_counts(chunks: Sequence[jiwer.AlignmentChunk]) -> Counts:
    """Count S/D/I/H in one utterance's jiwer alignment chunks."""
    s = d = i = h = 0
    for c in chunks:
        n_ref = c.ref_end_idx - c.ref_start_idx
        if c.type == "equal":
            h += n_ref
        elif c.type == "substitute":
            s += n_ref
        elif c.type == "delete":
            d += n_ref
        elif c.type == "insert":
            i += c.hyp_end_idx - c.hyp_start_idx
    return Counts(s, d, i, h)


@dataclass
class Aligned:
    """jiwer's tokens and alignment of every utterance, at one level (words or chars)."""

    refs: list[list[str]]
    hyps: list[list[str]]
    alignments: list[list[jiwer.AlignmentChunk]]

    def counts(self) -> list[Counts]:
        return [chunk_counts(a) for a in self.alignments]


def align_words(refs: Sequence[str], hyps: Sequence[str]) -> Aligned:
    """Word-level alignment of normalized texts (split on whitespace)."""
    if not refs:
        return Aligned([], [], [])
    out = jiwer.process_words(list(refs), list(hyps))
    return Aligned(out.references, out.hypotheses, out.alignments)


def align_chars(refs: Sequence[str], hyps: Sequence[str]) -> Aligned:
    """Character-level alignment; spaces count as characters (jiwer's default)."""
    if not refs:
        return Aligned([], [], [])
    out = jiwer.process_characters(list(refs), list(hyps))
    return Aligned(out.references, out.hypotheses, out.alignments)
