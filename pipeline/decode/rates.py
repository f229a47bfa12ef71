"""Speaking rates: how many characters a second of speech plausibly holds.

Both the fused search's length ceiling (:mod:`pipeline.decode.fusion`) and the
self-training checks (:mod:`pipeline.pseudo_label`) judge a transcript by its
characters per second against the labeled set's range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data_prep.manifest import Utterance


@dataclass(frozen=True)
class RateBounds:
    """Plausible characters per second (spaces excluded), from the labeled set.

    Short clips carry proportionally more silence, so the lower bound allows
    ``silence_s`` seconds without speech: a truncated output of a long clip is
    caught, a two-word answer in a 2 s clip is not.
    """

    low: float
    high: float
    silence_s: float = 2.0

    @classmethod
    def from_labeled(cls, utts: Sequence[Utterance], margin: float = 1.5) -> RateBounds:
        rates = [rate_chars(u.text) / u.duration for u in utts if u.duration > 0 and u.text.strip()]
        if not rates:
            raise ValueError("the labeled manifest has no transcribed utterances to take a speaking rate from")
        lo, hi = np.percentile(rates, [1, 99])
        return cls(float(lo) / margin, float(hi) * margin)

    def explain(self, text: str, duration: float) -> str:
        """Why ``text`` is implausible for ``duration`` seconds of audio ("" if it is not)."""
        n = rate_chars(text)
        if n > self.high * duration:
            return f"{n} characters in {duration:.2f} s: more than {self.high:.1f}/s (the labeled set's rate)"
        if n < self.low * (duration - self.silence_s):
            return (f"{n} characters in {duration:.2f} s: fewer than {self.low:.1f}/s after "
                    f"{self.silence_s:g} s of silence (the labeled set's rate)")  # fmt: skip
        return ""


def rate_chars(text: str) -> int:
    """The characters a speaking rate counts: all but spaces."""
    return len(text.replace(" ", ""))
