"""Splitting clips longer than the model limit at pauses, together with their transcripts.

We have no aligner at this stage, so the transcript is cut where the *amount
of text* before a word boundary matches the *amount of speech* before a pause:

1. Speech regions come from a VAD (the Silero model from the ``silero-vad``
   wheel, or the energy detector in :mod:`data_prep.audio`); a pause is a gap
   of at least ``MIN_PAUSE_S`` between regions, cut at its middle.
2. For a pause at time ``c`` the speech fraction is ``q = speech(0..c) /
   speech(total)``; for the word boundary after token ``j`` the text fraction
   is ``p = chars(tokens[:j+1]) / chars(all)`` on the normalized text, spaces
   not counted (characters track speaking time better than words).
3. A (pause, boundary) pair matches when ``|p - q| * speech(total)`` -- the
   misalignment in seconds of speech -- is within ``TOLERANCE_S``: generous at
   sentence punctuation (danda, ``.?!``), where readers pause, and at clause
   punctuation (``,;:``), strict at a bare word boundary.
4. Greedily from the start: among pauses that leave the current piece between
   ``min`` and ``max`` seconds, take a punctuation match if there is one, else a
   word match, preferring the latest pause (fewest, longest pieces) and then
   the smallest misalignment. If some stretch cannot be cut this way, the clip
   is not split at all and the caller rejects it as ``too_long``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from data_prep.audio import FRAME_S, active_frames, frame_db
from data_prep.text.normalize import TextNormalizer

MIN_PAUSE_S = 0.15
#: allowed misalignment (seconds of speech) by boundary strength: 0 word, 1 clause, 2 sentence
TOLERANCE_S = {0: 0.6, 1: 1.5, 2: 2.5}
SENTENCE_END = "।॥.!?"
CLAUSE_END = ",;:"
VADS = ("auto", "silero", "energy")  # auto: chosen per clip by its SNR (data_prep/process.py)

Region = tuple[float, float]


@dataclass(frozen=True)
class Piece:
    """One segment of a split clip: seconds within the clip, and its raw transcript."""

    start: float
    end: float
    text_raw: str


def energy_speech(y: np.ndarray, sr: int) -> list[Region]:
    """Speech regions (seconds) from frame energies; gaps shorter than MIN_PAUSE_S are bridged."""
    return regions_from_active(active_frames(frame_db(y, sr)), len(y) / sr)


def regions_from_active(act: np.ndarray, duration: float, frame_s: float = FRAME_S) -> list[Region]:
    """Speech regions (seconds) from per-frame activity; gaps shorter than MIN_PAUSE_S are bridged."""
    regions: list[Region] = []
    start = None
    for i, a in enumerate(np.append(act, False)):
        if a and start is None:
            start = i
        elif not a and start is not None:
            s, e = start * frame_s, i * frame_s
            if regions and s - regions[-1][1] < MIN_PAUSE_S:
                regions[-1] = (regions[-1][0], e)
            else:
                regions.append((s, e))
            start = None
    return [(s, min(e, duration)) for s, e in regions]


_SILERO = None
#: Silero's settings, shared by the whole-clip and the streaming detector (data_prep/vad_stream.py).
SILERO_SETTINGS = {"min_silence_duration_ms": int(MIN_PAUSE_S * 1000), "speech_pad_ms": 30}


def silero_model():
    """The Silero VAD model bundled in the ``silero-vad`` wheel, loaded once per process."""
    global _SILERO
    if _SILERO is None:
        from silero_vad import load_silero_vad

        _SILERO = load_silero_vad()
    return _SILERO


def silero_speech(y: np.ndarray, sr: int) -> list[Region]:
    """Speech regions (seconds) from the Silero VAD bundled in the ``silero-vad`` wheel (16 kHz)."""
    import torch
    from silero_vad import get_speech_timestamps

    torch.set_num_threads(1)  # one worker per core already
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), silero_model(), sampling_rate=sr,
        **SILERO_SETTINGS,
    )
    return [(s["start"] / sr, s["end"] / sr) for s in stamps]


def speech_regions(y: np.ndarray, sr: int, vad: str = "silero") -> list[Region]:
    """Speech regions with the chosen VAD (see :data:`VADS`)."""
    if vad == "silero":
        return silero_speech(y, sr)
    if vad == "energy":
        return energy_speech(y, sr)
    raise ValueError(f"unknown VAD {vad!r}; known: {VADS}")


def boundary_strength(token: str) -> int:
    """The boundary after ``token``: 2 at sentence punctuation, 1 at clause punctuation, else 0."""
    tail = token.rstrip("\"'”’)]»")
    if tail and tail[-1] in SENTENCE_END:
        return 2
    if tail and tail[-1] in CLAUSE_END:
        return 1
    return 0


def plan_split(
    speech: list[Region], duration: float, text_raw: str, norm: TextNormalizer, max_dur: float, min_dur: float
) -> list[Piece] | None:
    """Pieces no longer than ``max_dur`` with their transcripts, or None if the clip cannot be split."""
    tokens = text_raw.split()
    ends = np.cumsum([e - s for s, e in speech]) if speech else np.zeros(0)
    total_speech = float(ends[-1]) if len(ends) else 0.0
    if len(tokens) < 2 or total_speech <= 0:
        return None

    def speech_before(t: float) -> float:
        i = bisect.bisect_right([s for s, _ in speech], t)  # regions starting before t
        done = float(ends[i - 2]) if i >= 2 else 0.0
        s, e = speech[i - 1] if i else (0.0, 0.0)
        return done + max(0.0, min(t, e) - s) if i else 0.0

    def nchars(toks: list[str]) -> int:
        return len(norm.normalize(" ".join(toks)).replace(" ", ""))

    total_chars = nchars(tokens)
    if total_chars == 0:
        return None
    # boundary j: after token j; fraction of text before it; strength; left/right both non-empty
    bounds = [(j, nchars(tokens[: j + 1]) / total_chars, boundary_strength(tokens[j])) for j in range(len(tokens) - 1)]
    pauses = [(a_end + b_start) / 2 for (_, a_end), (b_start, _) in zip(speech, speech[1:])
              if b_start - a_end >= MIN_PAUSE_S]

    pieces: list[Piece] = []
    t0, j0 = 0.0, -1
    while duration - t0 > max_dur:
        best = None
        for c in pauses:
            if not (t0 + min_dur <= c <= t0 + max_dur and duration - c >= min_dur):
                continue
            q = speech_before(c) / total_speech
            for j, p, strength in bounds:
                if j <= j0:
                    continue
                err = abs(p - q) * total_speech
                if err > TOLERANCE_S[strength]:
                    continue
                if nchars(tokens[j0 + 1 : j + 1]) == 0 or nchars(tokens[j + 1 :]) == 0:
                    continue
                key = (strength > 0, c, -err, strength)
                if best is None or key > best[0]:
                    best = (key, c, j)
        if best is None:
            return None
        _, c, j = best
        pieces.append(Piece(round(t0, 3), round(c, 3), " ".join(tokens[j0 + 1 : j + 1])))
        t0, j0 = c, j
    pieces.append(Piece(round(t0, 3), round(duration, 3), " ".join(tokens[j0 + 1 :])))
    return pieces
