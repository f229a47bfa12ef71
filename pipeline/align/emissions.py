"""A recording of any length -> its CTC frame log-posteriors, computed in overlapping windows.

The model sees at most ``window_s`` (30 s: Whisper's encoder window) at a time.
Windows overlap by ``2 * context_s``; each keeps only its frames at least
``context_s`` from a cut edge (the first and last window keep their outer
edge), so every frame comes from the window where it has the most context and
the kept frames tile the recording exactly. Window starts are whole frames
apart, so a window's frame ``j`` is the recording's frame ``start / spf + j``.
The model's memory is a window's, whatever the recording's length; the result
holds ``T x V`` floats (50 frames/s: 0.7 MB an hour per vocabulary entry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.decode.ctc import ctc_logits
from pipeline.models.ctc import WhisperEncoderCTC
from pipeline.models.encoder import SAMPLE_RATE

WINDOW_S = 30.0
CONTEXT_S = 2.0
#: Whisper's encoder frames are 20 ms (320 samples) before a CTC head up- or down-samples them.
WHISPER_FRAME_SAMPLES = 320


@dataclass(frozen=True)
class Emissions:
    """Frame log-posteriors (T, V) fp32 and the seconds a frame lasts."""

    log_probs: torch.Tensor
    frame_s: float


def samples_per_frame(model) -> int:
    """16 kHz samples per output frame of a CTC model (a Whisper-encoder CTC or a Wav2Vec2ForCTC)."""
    if isinstance(model, WhisperEncoderCTC):
        head = model.config.head
        return WHISPER_FRAME_SAMPLES * head.downsample // head.upsample
    return math.prod(model.config.conv_stride)


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Starts (samples) of the windows covering ``num_samples``: the last one reaches the end."""
    starts = [0]
    while starts[-1] + window < num_samples:
        starts.append(starts[-1] + hop)
    return starts


def emissions(model, wave: np.ndarray, feature_extractor=None, device: str = "cpu", *, window_s: float = WINDOW_S,
              context_s: float = CONTEXT_S, batch: int = 4) -> Emissions:  # fmt: skip
    """The log-posteriors of a 16 kHz mono recording ``wave`` (see the module docstring)."""
    spf = samples_per_frame(model)
    window = int(window_s * SAMPLE_RATE) // spf * spf
    context = int(context_s * SAMPLE_RATE) // spf * spf
    hop = window - 2 * context
    if hop <= 0:
        raise ValueError(f"window {window_s} s leaves nothing between two contexts of {context_s} s")
    wave = np.asarray(wave, dtype=np.float32)
    starts = window_starts(len(wave), window, hop)
    parts = []
    for k in range(0, len(starts), batch):
        group = starts[k : k + batch]
        logp, lengths = ctc_logits(model, [wave[s : s + window] for s in group], feature_extractor, device)
        for s, lp, n in zip(group, logp, lengths.tolist()):
            lo = 0 if s == 0 else context // spf
            hi = n if s + window >= len(wave) else min(n, (window - context) // spf)
            parts.append(lp[lo:hi])
    return Emissions(torch.cat(parts), spf / SAMPLE_RATE)
