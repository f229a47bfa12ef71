"""Long tone recordings with known sentence boundaries, and a deterministic emission model that hears them.

Each character is a tone (tests/ctc_fixtures.py); :func:`tone_emissions` maps
every 20 ms frame to character posteriors from its FFT, so an alignment of the
true text is exact up to a frame, and a wrong text scores badly.
"""

from __future__ import annotations

import numpy as np
import torch
from ctc_fixtures import PITCHES, SR, tone_audio, vocab

from pipeline.align.aligner import CtcAligner
from pipeline.align.emissions import Emissions

FRAME = 320  # samples: 20 ms


def tone_recording(lines: list[str], pause_s: float = 0.6, edge_s: float = 0.5) -> tuple[np.ndarray, list[float]]:
    """The lines said one after the other with ``pause_s`` between them; and the true boundaries: the
    middle of each pause between two lines (seconds)."""
    parts, bounds, t = [np.zeros(int(edge_s * SR), np.float32)], [], edge_s
    for k, line in enumerate(lines):
        y = tone_audio("".join(ch for ch in line if ch == " " or ch in PITCHES))  # punctuation is not said
        parts.append(y)
        t += len(y) / SR
        if k + 1 < len(lines):
            bounds.append(t + pause_s / 2)
            parts.append(np.zeros(int(pause_s * SR), np.float32))
            t += pause_s
    parts.append(np.zeros(int(edge_s * SR), np.float32))
    return np.concatenate(parts), bounds


def tone_emissions(wave: np.ndarray) -> Emissions:
    """Frame log-posteriors over :func:`ctc_fixtures.vocab`: a loud frame is the character of its
    strongest pitch, a quiet one blank (or the word delimiter, second)."""
    voc = vocab()
    n = len(wave) // FRAME
    frames = np.asarray(wave[: n * FRAME], np.float64).reshape(n, FRAME)
    spectrum = np.abs(np.fft.rfft(frames, axis=1))
    energy = np.stack([spectrum[:, round(p * FRAME / SR)] for p in PITCHES.values()], axis=1)
    loud = energy.max(axis=1) > 2.0
    logits = np.full((n, len(voc)), -4.0)
    logits[:, voc.unk] = -10.0
    logits[~loud, voc.blank], logits[~loud, voc.word] = 6.0, 3.0
    rel = energy[loud] / energy[loud].max(axis=1, keepdims=True)
    logits[loud, voc.blank], logits[loud, voc.word] = 0.0, -4.0
    for k, ch in enumerate(PITCHES):
        logits[loud, voc.token_to_id[ch]] = 8.0 * rel[:, k] - 4.0
    return Emissions(torch.log_softmax(torch.tensor(logits, dtype=torch.float32), -1), FRAME / SR)


def tone_aligner() -> CtcAligner:
    return CtcAligner(tone_emissions, vocab(), identity="tone-fft")
