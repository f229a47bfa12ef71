"""What ``prepare --format longform`` asks of an aligner, and what it gets back.

data_prep loads no model: the caller injects an :class:`Aligner` (the command
``prepare`` a CTC model's, :class:`pipeline.align.aligner.CtcAligner`; tests a
hand-built one), so this package needs neither torch nor the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class AlignedWord:
    """Where one word of the transcript lies in the recording, and how well the audio matches it.

    ``start``/``end`` are seconds (None: no character of the word is in the model's
    vocabulary, so nothing of it was aligned). ``logp`` sums the log posterior of the
    word's tokens over the ``frames`` frames the alignment gave them. ``dropped``: the
    word's characters left out of the alignment target (not in the model's vocabulary;
    they stay in the utterance's text).
    """

    start: float | None
    end: float | None
    logp: float = 0.0
    frames: int = 0
    dropped: str = ""

    @property
    def aligned(self) -> bool:
        return self.start is not None


class AlignmentError(ValueError):
    """A transcript that cannot be aligned to its audio at all; the message says why."""


class Aligner(Protocol):
    """Aligns a transcript's words to a recording."""

    #: What the aligner is (model and its files): recorded with the run's settings and keying the
    #: alignment cache, so it changes whenever the alignments could.
    identity: str

    def align(self, wave: np.ndarray, sr: int, words: Sequence[str]) -> list[AlignedWord]:
        """One :class:`AlignedWord` per word of ``words`` (normalized text) in order, for the mono
        recording ``wave`` at ``sr`` Hz; :class:`AlignmentError` when the words cannot be aligned."""
        ...
