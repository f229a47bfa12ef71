"""Aligned words -> utterance segments, each at most ``max_s`` long, cut where the speaker stops.

Units: an aligned word with the unaligned words after it (a word with no
character in the model's vocabulary has no time of its own: it rides with the
aligned word before it; words before the first aligned one ride with that one).
A cut between two units is worth ``STRENGTH_BONUS[strength] + pause - CUT_COST``
seconds: a sentence end (line end or sentence punctuation) always is, a clause end
after a pause of more than a second, a bare word boundary only at a long silence.
Dynamic programming picks the cuts of the highest total worth such that no
segment is longer than ``max_s`` (a hard limit; only a single unit longer than it
is left whole) and each segment shorter than ``min_s`` costs ``SHORT_PENALTY``
(a short sentence joins a neighbour). Inside a sentence longer than ``max_s`` this
picks the fewest cuts, at the longest pauses.

A segment spans its words plus up to ``pad_s`` of silence each side (at most half
the pause to the neighbouring word); the rest of every pause, the silence before
the first word and after the last, is the recording's gap time. Its score is the
mean log posterior per aligned token frame of its words.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_prep.longform.aligner import AlignedWord, AlignmentError
from data_prep.longform.text import TextWord

#: What a boundary's strength adds to the worth of a cut there (seconds): word, clause, sentence.
STRENGTH_BONUS = (0.0, 1.0, 10.0)
#: What any cut costs (seconds of pause): a bare word boundary is cut only at a longer silence.
CUT_COST = 2.0
#: What a segment shorter than ``min_s`` costs: more than a sentence cut is worth.
SHORT_PENALTY = 20.0


@dataclass(frozen=True)
class CutOptions:
    max_s: float = 20.0  # no segment longer (--max-utterance-s)
    min_s: float = 0.3  # shorter segments join a neighbour where they can (--min-duration)
    pad_s: float = 0.2  # silence kept each side of a segment's words


@dataclass(frozen=True)
class Segment:
    """Words ``first..last`` (indices into the transcript's words, inclusive) at ``start..end`` seconds."""

    first: int
    last: int
    start: float
    end: float
    score: float  # mean log posterior per aligned token frame

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class _Unit:
    first: int
    last: int
    start: float
    end: float
    logp: float
    frames: int
    strength: int  # of the boundary after it


def _units(words: list[TextWord], aligned: list[AlignedWord]) -> list[_Unit]:
    anchors = [i for i, a in enumerate(aligned) if a.aligned]
    if not anchors:
        raise AlignmentError("no word of the transcript could be aligned (none has a character of the model's "
                             "vocabulary)")
    units = []
    for k, i in enumerate(anchors):
        first = 0 if k == 0 else i
        last = anchors[k + 1] - 1 if k + 1 < len(anchors) else len(words) - 1
        a = aligned[i]
        units.append(_Unit(first, last, a.start, a.end, a.logp, a.frames, words[last].strength))
    return units


def _bounds(units: list[_Unit], duration: float, pad_s: float) -> tuple[list[float], list[float]]:
    """Where a segment starting at unit j may start, and one ending at unit k may end (seconds)."""
    starts, ends = [], []
    for j, u in enumerate(units):
        before = u.start - (units[j - 1].end if j else 0.0)
        after = (units[j + 1].start if j + 1 < len(units) else duration) - u.end
        starts.append(u.start - min(pad_s, max(0.0, before) / (2 if j else 1)))
        ends.append(u.end + min(pad_s, max(0.0, after) / (2 if j + 1 < len(units) else 1)))
    return starts, ends


def _worth(left: _Unit, right: _Unit) -> float:
    return STRENGTH_BONUS[left.strength] + max(0.0, right.start - left.end) - CUT_COST


def cut_segments(words: list[TextWord], aligned: list[AlignedWord], duration: float,
                 opts: CutOptions = CutOptions()) -> list[Segment]:  # fmt: skip
    """The segments of a recording of ``duration`` seconds whose ``words`` aligned as ``aligned``."""
    if len(words) != len(aligned):
        raise AlignmentError(f"the aligner gave {len(aligned)} words for {len(words)}")
    units = _units(words, aligned)
    starts, ends = _bounds(units, duration, opts.pad_s)
    n = len(units)
    best: list[float] = [0.0] + [float("-inf")] * n  # best[k]: units[:k] cut, a cut after unit k-1
    back = [0] * (n + 1)
    for k in range(1, n + 1):
        for j in range(k - 1, -1, -1):  # the segment units[j:k]
            span = ends[k - 1] - starts[j]
            if span > opts.max_s and j < k - 1:
                break  # longer still for smaller j
            value = best[j] + (_worth(units[j - 1], units[j]) if j else 0.0)
            if span < opts.min_s:
                value -= SHORT_PENALTY
            if value > best[k]:
                best[k], back[k] = value, j
    cuts = [n]
    while cuts[-1]:
        cuts.append(back[cuts[-1]])
    cuts.reverse()
    return [_segment(units[j:k], starts[j], ends[k - 1]) for j, k in zip(cuts, cuts[1:])]


def _segment(units: list[_Unit], start: float, end: float) -> Segment:
    frames = sum(u.frames for u in units)
    score = sum(u.logp for u in units) / frames if frames else float("-inf")
    return Segment(units[0].first, units[-1].last, round(start, 4), round(end, 4), score)
