"""Where every second of the long recordings went: utterances, rejects, and the gaps between them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Rounding slack (seconds) per recording: segment bounds are rounded to 0.1 ms.
SLACK_S = 1e-3


@dataclass
class SecondsAccount:
    """``input_s == utterance_s + sum(rejected_s) + gap_s`` must hold.

    ``gap_s``: silence (or speech the transcript does not hold) before, between and after the
    aligned segments. A rejected recording whose length cannot be read (``unknown_length``)
    adds no seconds anywhere.
    """

    recordings: int = 0
    input_s: float = 0.0
    utterance_s: float = 0.0
    rejected_s: Counter = field(default_factory=Counter)
    gap_s: float = 0.0
    unknown_length: int = 0
    unaligned_words: int = 0  # words with no character in the model's vocabulary (kept in the text)
    dropped_chars: Counter = field(default_factory=Counter)  # characters left out of the alignment target

    @property
    def balanced(self) -> bool:
        rest = self.input_s - self.utterance_s - sum(self.rejected_s.values()) - self.gap_s
        return abs(rest) <= SLACK_S * max(1, self.recordings)

    def to_json(self) -> dict:
        return {
            "recordings": self.recordings,
            "input_s": round(self.input_s, 3),
            "utterance_s": round(self.utterance_s, 3),
            "rejected_s": {k: round(v, 3) for k, v in sorted(self.rejected_s.items())},
            "gap_s": round(self.gap_s, 3),
            "balanced": self.balanced,
            "recordings_of_unknown_length": self.unknown_length,
            "unaligned_words": self.unaligned_words,
            "dropped_characters": dict(self.dropped_chars.most_common()),
        }

    def summary(self) -> str:
        """One line for the terminal."""
        rejected = sum(self.rejected_s.values())
        ok = "OK" if self.balanced else "MISMATCH"
        return (f"{self.recordings} recordings, {self.input_s:.1f} s = utterances {self.utterance_s:.1f} s + rejected "
                f"{rejected:.1f} s + gaps {self.gap_s:.1f} s [{ok}]; {self.unaligned_words} unaligned words, "
                f"{sum(self.dropped_chars.values())} characters not in the model's vocabulary")
